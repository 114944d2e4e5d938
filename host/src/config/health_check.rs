//! Validation of a pool's `health_check:` block.

use std::path::PathBuf;
use std::time::Duration;

use super::model::*;
use super::raw::*;
use super::validate::{Checker, is_http_url, valid_host_port};

impl Checker<'_> {
    /// The health check of the pool at `path`, every default applied; `None` after
    /// recording each of its problems.
    pub(super) fn health(&mut self, path: &str, h: RawHealthCheck) -> Option<HealthCheck> {
        let d = HealthCheck::default();
        let mut ok = true;
        let mut secs = |c: &mut Self, key: &str, s: &Option<Scalar>, lo, hi, dflt: Duration| match s
        {
            Some(s) => match c.whole(&format!("{path}.{key}"), s, lo, hi) {
                Some(n) => Duration::from_secs(n as u64),
                None => {
                    ok = false;
                    dflt
                }
            },
            None => dflt,
        };
        let (interval_key, interval_raw) = self.interval(path, &h);
        let interval = secs(self, interval_key, &interval_raw, 1, 300, d.interval);
        let timeout = secs(
            self,
            "timeout_seconds",
            &h.timeout_seconds,
            1,
            30,
            d.timeout,
        );
        let count = |c: &mut Self, key: &str, s: &Option<Scalar>, dflt: u32| match s {
            Some(s) => c
                .whole(&format!("{path}.{key}"), s, 1, 10)
                .map(|n| n as u32)
                .unwrap_or(dflt),
            None => dflt,
        };
        let retry_count = count(self, "retry_count", &h.retry_count, d.retry_count);
        let rise = count(self, "rise", &h.rise, d.rise);
        let fall = count(self, "fall", &h.fall, d.fall);
        let enabled = match &h.enabled {
            Some(e) => self.bool(&format!("{path}.enabled"), e).unwrap_or(true),
            None => true,
        };
        let method = self.probe_method(path, &h);
        let fast_interval = match &h.fast_interval_ms {
            Some(v) => self
                .whole(&format!("{path}.fast_interval_ms"), v, 100, 300_000)
                .map(|n| Duration::from_millis(n as u64)),
            None => Some(d.fast_interval),
        };
        let expected_status = match &h.expected_status {
            Some(list) => self.statuses(&format!("{path}.expected_status"), list),
            None => Some(d.expected_status),
        };
        let verdict = self.verdict(path, &h.verdict);
        if !ok {
            return None;
        }
        Some(HealthCheck {
            enabled,
            method: method?,
            interval,
            timeout,
            retry_count,
            rise,
            fall,
            fast_interval: fast_interval?,
            expected_status: expected_status?,
            verdict: verdict?,
        })
    }

    /// `[200, "300-399"]`: codes and inclusive ranges, 100 to 599.
    fn statuses(&mut self, path: &str, list: &[Scalar]) -> Option<Vec<(u16, u16)>> {
        let mut out = Vec::with_capacity(list.len());
        let mut ok = true;
        for (i, s) in list.iter().enumerate() {
            let range = match s {
                Scalar::Int(n) => Some((*n, *n)),
                Scalar::Str(s) => match s.trim().split_once('-') {
                    Some((lo, hi)) => lo.trim().parse().ok().zip(hi.trim().parse().ok()),
                    None => s.trim().parse().ok().map(|n| (n, n)),
                },
                _ => None,
            };
            match range {
                Some((lo, hi)) if (100..=599).contains(&lo) && (lo..=599).contains(&hi) => {
                    out.push((lo as u16, hi as u16));
                }
                _ => {
                    self.fail(
                        &format!("{path}[{i}]"),
                        "must be an HTTP status (100 to 599) or a range like \"200-399\"",
                    );
                    ok = false;
                }
            }
        }
        if list.is_empty() {
            self.fail(path, "needs at least one status");
            ok = false;
        }
        ok.then_some(out)
    }

    /// The probe method, with the `url` or `target` it needs; `ping` only where the
    /// kernel lets an unprivileged process send ICMP echo.
    fn probe_method(&mut self, path: &str, h: &RawHealthCheck) -> Option<ProbeMethod> {
        let url = h
            .url
            .as_ref()
            .and_then(|u| self.string(&format!("{path}.url"), u));
        let target = h
            .target
            .as_ref()
            .and_then(|t| self.string(&format!("{path}.target"), t));
        let method_name = match &h.method {
            Some(m) => self.string(&format!("{path}.method"), m),
            None => Some("greeting".to_owned()),
        };
        let method = match method_name
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("tcp") => Some(ProbeMethod::Tcp),
            Some("greeting") => Some(ProbeMethod::Greeting),
            Some("ping") => Some(ProbeMethod::Ping),
            Some("http") => match url {
                Some(u) if is_http_url(&u) => Some(ProbeMethod::Http { url: u }),
                Some(_) => {
                    self.fail(
                        &format!("{path}.url"),
                        "must be an http:// or https:// URL with a host, and no credentials, spaces or control characters",
                    );
                    None
                }
                None => {
                    self.fail(&format!("{path}.url"), "method http needs a url to fetch");
                    None
                }
            },
            Some("handshake") => match target {
                Some(t) if valid_host_port(&t) => Some(ProbeMethod::Handshake { target: t }),
                Some(_) => {
                    self.fail(&format!("{path}.target"), "must be host:port");
                    None
                }
                None => {
                    self.fail(
                        &format!("{path}.target"),
                        "method handshake needs a target host:port",
                    );
                    None
                }
            },
            Some(other) => {
                self.fail(
                    &format!("{path}.method"),
                    format!(
                        "unknown method {other:?} (expected greeting, tcp, handshake, http or ping)"
                    ),
                );
                None
            }
            None => None,
        };
        if method == Some(ProbeMethod::Ping)
            && let Err(why) = super::ping::unprivileged_icmp_allowed()
        {
            self.fail(&format!("{path}.method"), why);
        }
        method
    }

    /// `threshold` (the built-in) or a `.wasm` verdict file.
    fn verdict(&mut self, path: &str, v: &Option<Scalar>) -> Option<VerdictRef> {
        match v {
            Some(v) => match self.string(&format!("{path}.verdict"), v) {
                Some(name) if name == "threshold" => Some(VerdictRef::Threshold),
                Some(name) if name.ends_with(".wasm") => {
                    Some(VerdictRef::Wasm(PathBuf::from(name)))
                }
                Some(name) => {
                    self.fail(
                        &format!("{path}.verdict"),
                        format!("unknown verdict {name:?} (expected threshold or a path to a .wasm file)"),
                    );
                    None
                }
                None => None,
            },
            None => Some(VerdictRef::Threshold),
        }
    }

    /// `interval_seconds`, or its alias `interval` (not both), and the key it came by.
    fn interval(&mut self, path: &str, h: &RawHealthCheck) -> (&'static str, Option<Scalar>) {
        let interval_raw = match (&h.interval_seconds, &h.interval) {
            (Some(_), Some(_)) => {
                self.fail(
                    &format!("{path}.interval"),
                    "give interval_seconds or its alias interval, not both",
                );
                None
            }
            (Some(_), None) => h.interval_seconds.clone(),
            (None, i) => i.clone(),
        };
        let key = if h.interval.is_some() {
            "interval"
        } else {
            "interval_seconds"
        };
        (key, interval_raw)
    }
}
