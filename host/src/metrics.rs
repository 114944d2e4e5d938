//! A small pull-model metrics registry: each layer keeps its own atomic counters and
//! gauges, and registers a [`Collect`] source; [`Registry::render`] gathers them at
//! scrape time in the Prometheus text format. Nothing is locked or allocated when a
//! counter moves. Labels that name a proxy carry its redacted URL only.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

/// Whether a value only grows or goes up and down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only grows.
    Counter,
    /// Goes up and down.
    Gauge,
}

/// One value of one metric.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Metric name (`proxypool_…`).
    pub name: &'static str,
    /// One line of help.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// Label pairs.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: f64,
}

/// A source of samples.
pub trait Collect: Send + Sync {
    /// Appends the current samples.
    fn collect(&self, out: &mut Vec<Sample>);
}

/// The sources a gateway serves.
#[derive(Default)]
pub struct Registry {
    sources: Mutex<Vec<Arc<dyn Collect>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds a source.
    pub fn register(&self, source: Arc<dyn Collect>) {
        self.sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(source);
    }

    /// Every sample of every source.
    pub fn gather(&self) -> Vec<Sample> {
        let sources = self
            .sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut out = Vec::new();
        for s in sources {
            s.collect(&mut out);
        }
        out
    }

    /// The Prometheus text exposition of [`Registry::gather`], grouped by name.
    pub fn render(&self) -> String {
        let mut samples = self.gather();
        samples.sort_by(|a, b| a.name.cmp(b.name));
        let mut text = String::new();
        let mut last = "";
        for s in &samples {
            if s.name != last {
                let kind = match s.kind {
                    Kind::Counter => "counter",
                    Kind::Gauge => "gauge",
                };
                let _ = writeln!(
                    text,
                    "# HELP {} {}\n# TYPE {} {kind}",
                    s.name, s.help, s.name
                );
                last = s.name;
            }
            text.push_str(s.name);
            if !s.labels.is_empty() {
                text.push('{');
                for (i, (k, v)) in s.labels.iter().enumerate() {
                    if i > 0 {
                        text.push(',');
                    }
                    let v = v
                        .replace('\\', "\\\\")
                        .replace('"', "\\\"")
                        .replace('\n', "\\n");
                    let _ = write!(text, "{k}=\"{v}\"");
                }
                text.push('}');
            }
            let _ = writeln!(text, " {}", s.value);
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Collect for Fixed {
        fn collect(&self, out: &mut Vec<Sample>) {
            for (proxy, v) in [("socks5://a:1", 2.0), ("socks5://b\"x:1", 0.0)] {
                out.push(Sample {
                    name: "proxypool_probes_total",
                    help: "Probes.",
                    kind: Kind::Counter,
                    labels: vec![("proxy", proxy.into())],
                    value: v,
                });
            }
        }
    }

    #[test]
    fn renders_prometheus_text_with_escaped_labels() {
        let r = Registry::new();
        r.register(Arc::new(Fixed));
        assert_eq!(
            r.render(),
            "# HELP proxypool_probes_total Probes.\n# TYPE proxypool_probes_total counter\n\
             proxypool_probes_total{proxy=\"socks5://a:1\"} 2\n\
             proxypool_probes_total{proxy=\"socks5://b\\\"x:1\"} 0\n"
        );
    }
}
