//! `proxypool check`: every configured proxy probed once, now, all at once.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use proxypool::config::{Config, HealthCheck, ProxyUrl, Upstream};
use proxypool::dial::{DialProbe, Dialer};
use proxypool::health::Probe;

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

/// Every proxy of every route: its route path, URL and the health check to use (a
/// pool's own; a single proxy's is a TCP connect within its timeout).
fn targets(config: &Config) -> Vec<(String, ProxyUrl, HealthCheck)> {
    let mut out = Vec::new();
    for (route, spec) in config.pools() {
        for m in &spec.members {
            out.push((route.clone(), m.url.clone(), spec.health_check.clone()));
        }
    }
    let mut names: Vec<Option<&str>> = vec![None];
    names.extend(config.exchanges().keys().map(|k| Some(k.as_str())));
    for name in names {
        for t in proxypool::config::Transport::ALL {
            let route = config.route(name, t);
            if let Some(Upstream::Proxy(p)) = route.upstream {
                let path = match (route.origin, name) {
                    (proxypool::config::RouteOrigin::Exchange, Some(e)) => {
                        format!("exchanges.{e}.{t}")
                    }
                    _ => format!("default.{t}"),
                };
                if !out.iter().any(|(r, _, _)| *r == path) {
                    let hc = HealthCheck {
                        timeout: p.timeout,
                        ..HealthCheck::default()
                    };
                    out.push((path, p.url.clone(), hc));
                }
            }
        }
    }
    out
}

/// Probes every proxy, prints a table (or JSON), and says whether every route has
/// a working proxy.
pub fn run(config: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let targets = targets(config);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let bar = if std::io::stderr().is_terminal() && !targets.is_empty() {
        indicatif::ProgressBar::new(targets.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let rows: Vec<Row> = rt.block_on(async {
        let dialer = Dialer::new();
        let mut tasks = tokio::task::JoinSet::new();
        for (i, (route, url, hc)) in targets.iter().cloned().enumerate() {
            let probe = Arc::new(DialProbe::new(dialer.clone(), &hc));
            let bar = bar.clone();
            tasks.spawn(async move {
                let result = probe.probe(&url, hc.timeout).await;
                bar.inc(1);
                let (ok, latency_ms, error) = match result {
                    Ok(took) => (true, Some(took.as_secs_f64() * 1e3), None),
                    Err(why) => (false, None, Some(proxypool::config::redact_text(&why))),
                };
                (
                    i,
                    Row {
                        route,
                        proxy: url.to_string(),
                        method: probe.method(),
                        ok,
                        latency_ms,
                        error,
                    },
                )
            });
        }
        let mut rows: Vec<(usize, Row)> = Vec::new();
        while let Some(done) = tasks.join_next().await {
            if let Ok(row) = done {
                rows.push(row);
            }
        }
        rows.sort_by_key(|(i, _)| *i);
        rows.into_iter().map(|(_, r)| r).collect()
    });
    bar.finish_and_clear();
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
