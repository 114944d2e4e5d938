//! `proxypool check`: every configured proxy probed once, now, all at once.

use std::io::IsTerminal;
use std::process::ExitCode;

use proxypool::balancer;
use proxypool::config::Config;

/// Exit status when some route has no working proxy (64 stays "bad configuration").
pub const EXIT_NONE_HEALTHY: u8 = 1;

/// One probed proxy.
#[derive(serde::Serialize)]
struct Row {
    route: String,
    /// Redacted.
    proxy: String,
    method: &'static str,
    ok: bool,
    latency_ms: Option<f64>,
    /// Why it failed (redacted).
    error: Option<String>,
}

/// Probes every proxy, prints a table (or JSON), and says whether every route has
/// a working proxy.
pub fn run(config: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let count = balancer::proxies_to_check(config);
    let bar = if std::io::stderr().is_terminal() && count > 0 {
        indicatif::ProgressBar::new(count as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let each = bar.clone();
    let checks = rt.block_on(balancer::check_proxies(config, move || each.inc(1)));
    bar.finish_and_clear();
    let rows: Vec<Row> = checks
        .into_iter()
        .map(|c| Row {
            route: c.route,
            proxy: c.proxy.to_string(),
            method: c.method,
            ok: c.result.is_ok(),
            latency_ms: c.result.as_ref().ok().map(|t| t.as_secs_f64() * 1e3),
            error: c.result.err(),
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print_table(&rows);
    }
    let mut routes: Vec<&str> = rows.iter().map(|r| r.route.as_str()).collect();
    routes.dedup();
    let dead: Vec<&str> = routes
        .into_iter()
        .filter(|route| !rows.iter().any(|r| r.route == *route && r.ok))
        .collect();
    if dead.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("no working proxy: {}", dead.join(", "));
        Ok(ExitCode::from(EXIT_NONE_HEALTHY))
    }
}

fn print_table(rows: &[Row]) {
    let header = ["ROUTE", "PROXY", "METHOD", "RESULT", "LATENCY"];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.route.clone(),
                r.proxy.clone(),
                r.method.to_owned(),
                match &r.error {
                    None => "ok".to_owned(),
                    Some(e) => format!("failed: {e}"),
                },
                r.latency_ms
                    .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1} ms")),
            ]
        })
        .collect();
    super::print_columns(&header, &cells);
}
