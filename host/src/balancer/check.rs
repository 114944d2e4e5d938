//! `proxypool check`'s work: every configured proxy probed once, now, all at once,
//! with the probe its pool's health check names (a single proxy's: a greeting
//! within its timeout).

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, HealthCheck, ProxyUrl, RoutePath, Transport, Upstream};
use crate::dial::{DialProbe, Dialer};
use crate::health::Probe;

/// One proxy probed once.
#[derive(Clone, Debug)]
pub struct ProxyCheck {
    /// Its route (`exchanges.binance.http`).
    pub route: String,
    /// The proxy (redacted when shown).
    pub proxy: ProxyUrl,
    /// The probe method used.
    pub method: &'static str,
    /// How long the probe took, or why it failed (redacted).
    pub result: Result<Duration, String>,
}

/// Every proxy of every route, with its route and the health check to probe it by.
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
        for t in Transport::ALL {
            let route = config.route(name, t);
            let Some(Upstream::Proxy(p)) = route.upstream else {
                continue;
            };
            let exchange = name.filter(|_| route.origin == crate::config::RouteOrigin::Exchange);
            let path = RoutePath::new(exchange, t).to_string();
            if !out.iter().any(|(r, _, _)| *r == path) {
                let hc = HealthCheck {
                    timeout: p.timeout,
                    ..HealthCheck::default()
                };
                out.push((path, p.url.clone(), hc));
            }
        }
    }
    out
}

/// How many proxies [`check_proxies`] will probe.
pub fn proxies_to_check(config: &Config) -> usize {
    targets(config).len()
}

/// Probes every configured proxy at once, calling `done` as each finishes; the
/// results come back in configuration order.
pub async fn check_proxies(
    config: &Config,
    done: impl Fn() + Clone + Send + 'static,
) -> Vec<ProxyCheck> {
    let dialer = Dialer::new();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (route, url, hc)) in targets(config).into_iter().enumerate() {
        let probe = Arc::new(DialProbe::new(dialer.clone(), &hc));
        let done = done.clone();
        tasks.spawn(async move {
            let result = probe
                .probe(&url, hc.timeout)
                .await
                .map_err(|why| crate::config::redact_text(&why));
            done();
            let check = ProxyCheck {
                route,
                proxy: url,
                method: probe.method(),
                result,
            };
            (i, check)
        });
    }
    let mut checks = Vec::new();
    while let Some(Ok(c)) = tasks.join_next().await {
        checks.push(c);
    }
    checks.sort_by_key(|(i, _)| *i);
    checks.into_iter().map(|(_, c)| c).collect()
}
