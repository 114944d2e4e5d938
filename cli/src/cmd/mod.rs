//! The subcommands that are more than a few lines, and what they share.

pub mod check;
pub mod demo;
pub mod run;
pub mod scaffold;
pub mod status;

use std::time::Duration;

use anyhow::Context as _;

/// Prints `rows` under `header`, each column as wide as its widest cell.
pub fn print_columns<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let mut width = header.map(str::len);
    for row in rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(width)
            .map(|(c, w)| format!("{c:w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// One request to a gateway's admin endpoint, with `PROXYPOOL_ADMIN_TOKEN` as the
/// bearer token if set: the status and the body.
pub fn admin_request(
    admin: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&admin, Duration::from_secs(5))
        .with_context(|| format!("cannot reach the admin endpoint at {admin}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let auth = std::env::var("PROXYPOOL_ADMIN_TOKEN")
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {admin}\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, text) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("not an HTTP answer")?;
    Ok((status, text.to_owned()))
}
