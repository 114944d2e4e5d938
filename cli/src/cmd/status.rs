//! `proxypool status`: a running gateway's upstreams as a table, from its `/status`.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

/// How often `--watch` redraws.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Prints the table once, or with `watch` again every second until interrupted.
pub fn run(admin: std::net::SocketAddr, watch: bool) -> anyhow::Result<ExitCode> {
    loop {
        let (code, body) = super::admin_request(admin, "GET", "/status", &[])?;
        anyhow::ensure!(code == 200, "{admin}/status answered {code}: {body}");
        let status: serde_json::Value = serde_json::from_str(&body)?;
        if watch && std::io::stdout().is_terminal() {
            // Home and clear: the table redraws in place.
            print!("\x1b[H\x1b[2J");
        }
        print_status(&status);
        if !watch {
            return Ok(ExitCode::SUCCESS);
        }
        pause();
    }
}

fn print_status(status: &serde_json::Value) {
    let reload = match &status["last_reload"] {
        serde_json::Value::Null => "none".to_owned(),
        r => format!(
            "{} ({})",
            if r["ok"] == true { "ok" } else { "rejected" },
            r["summary"].as_str().unwrap_or("")
        ),
    };
    println!(
        "generation {}, {}, last reload: {reload}",
        status["generation"],
        if status["ready"] == true {
            "ready"
        } else {
            "draining"
        }
    );
    let header = [
        "POOL", "UPSTREAM", "HEALTH", "BREAKER", "ACTIVE", "PICKS", "BANS", "P50",
    ];
    let mut rows = Vec::new();
    for pool in status["pools"].as_array().into_iter().flatten() {
        for m in pool["members"].as_array().into_iter().flatten() {
            let health = if m["misconfigured"] == true {
                "misconfigured"
            } else if m["enabled"] == false {
                "disabled"
            } else if m["healthy"] == true {
                "up"
            } else {
                "down"
            };
            let bans: Vec<String> = m["bans"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|b| {
                    format!(
                        "{}:{}",
                        b["exchange"].as_str().unwrap_or(""),
                        b["reason"].as_str().unwrap_or("")
                    )
                })
                .collect();
            rows.push([
                pool["route"].as_str().unwrap_or("").to_owned(),
                m["proxy"].as_str().unwrap_or("").to_owned(),
                health.to_owned(),
                m["breaker"].as_str().unwrap_or("").to_owned(),
                m["active"].to_string(),
                m["picks"].to_string(),
                if bans.is_empty() {
                    "-".to_owned()
                } else {
                    bans.join(",")
                },
                m["handshake_p50_ms"]
                    .as_f64()
                    .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1} ms")),
            ]);
        }
    }
    super::print_columns(&header, &rows);
}

#[expect(
    clippy::disallowed_methods,
    reason = "the redraw interval of a plain command-line loop, with no runtime to block"
)]
fn pause() {
    std::thread::sleep(WATCH_EVERY);
}
