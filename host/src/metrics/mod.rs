//! A pull-model metrics registry: each layer keeps its own atomic counters, gauges
//! and [`Histogram`]s, and registers a [`Collect`] source; [`Registry::render`]
//! gathers them at scrape time and has the `prometheus-client` crate write the
//! Prometheus text format (version 0.0.4). Nothing is locked or allocated when a
//! counter moves or a histogram observes. Labels that name a proxy carry its
//! redacted label only.

pub(crate) mod families;

use crate::sync::Locked as _;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

pub use families::{FAMILIES, Family, Kind};

/// One value of one metric.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Only grows.
    Counter(u64),
    /// Goes up and down.
    Gauge(f64),
    /// A distribution of durations, in seconds.
    Histogram(HistogramSnapshot),
}

/// A histogram read at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    /// Per bucket, its upper bound in seconds and the observations in it alone
    /// (not cumulative); observations above the last bound are only in `count`.
    pub buckets: Vec<(f64, u64)>,
    /// Observations.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum: f64,
}

/// One sample of one metric.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Its family: name, help, kind and label names.
    pub family: &'static Family,
    /// Label pairs, in the family's order.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: Value,
}

impl Sample {
    fn new(family: &'static Family, labels: Vec<(&'static str, String)>, value: Value) -> Sample {
        // A collector that drifts from the table is a bug the tests should catch.
        debug_assert!(
            family
                .labels
                .iter()
                .copied()
                .eq(labels.iter().map(|(k, _)| *k)),
            "{}: labels {labels:?} against {:?}",
            family.name,
            family.labels
        );
        Sample {
            family,
            labels,
            value,
        }
    }

    /// A counter sample.
    pub fn counter(
        family: &'static Family,
        labels: Vec<(&'static str, String)>,
        value: u64,
    ) -> Sample {
        debug_assert_eq!(family.kind, Kind::Counter, "{}", family.name);
        Sample::new(family, labels, Value::Counter(value))
    }

    /// A gauge sample.
    pub fn gauge(
        family: &'static Family,
        labels: Vec<(&'static str, String)>,
        value: f64,
    ) -> Sample {
        debug_assert_eq!(family.kind, Kind::Gauge, "{}", family.name);
        Sample::new(family, labels, Value::Gauge(value))
    }
}

/// A source of samples.
pub trait Collect: Send + Sync {
    /// Appends the current samples.
    fn collect(&self, out: &mut Vec<Sample>);
}

/// Bucket bounds for a pick: a pick is microseconds, a slow guest far more.
pub const PICK_BUCKETS: &[Duration] = &[
    Duration::from_micros(1),
    Duration::from_micros(2),
    Duration::from_micros(5),
    Duration::from_micros(10),
    Duration::from_micros(25),
    Duration::from_micros(50),
    Duration::from_micros(100),
    Duration::from_micros(250),
    Duration::from_micros(1000),
    Duration::from_millis(10),
    Duration::from_millis(100),
];

/// Bucket bounds for a connect through a pool, failover and hedges included.
pub const CONNECT_BUCKETS: &[Duration] = &[
    Duration::from_millis(1),
    Duration::from_micros(2500),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_millis(2500),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(30),
];

/// A histogram of durations with fixed bounds: one atomic add per bucket, count
/// and sum on each observation.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [Duration],
    /// One more than the bounds: the last counts what is above every bound.
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// An empty histogram over `bounds` (ascending).
    pub fn new(bounds: &'static [Duration]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let i = self.bounds.partition_point(|b| *b < d);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The bound of the bucket holding the `q` quantile (0–1) of the observations
    /// so far, or the last bound for what lies above every bound; `None` if empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let count = self.count.load(Ordering::Relaxed);
        if count == 0 {
            return None;
        }
        let rank = ((count as f64 * q).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n.load(Ordering::Relaxed);
            if seen >= rank {
                return Some(*self.bounds.get(i).unwrap_or(self.bounds.last()?));
            }
        }
        self.bounds.last().copied()
    }

    /// The observations so far.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: self
                .bounds
                .iter()
                .zip(self.buckets.iter())
                .map(|(b, n)| (b.as_secs_f64(), n.load(Ordering::Relaxed)))
                .collect(),
            count: self.count.load(Ordering::Relaxed),
            sum: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }

    /// A histogram sample of it.
    pub fn sample(&self, family: &'static Family, labels: Vec<(&'static str, String)>) -> Sample {
        debug_assert_eq!(family.kind, Kind::Histogram, "{}", family.name);
        Sample::new(family, labels, Value::Histogram(self.snapshot()))
    }
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
        self.sources.locked().push(source);
    }

    /// Removes a source registered before (the same `Arc`); no-op otherwise.
    pub fn unregister(&self, source: &Arc<dyn Collect>) {
        self.sources.locked().retain(|s| !Arc::ptr_eq(s, source));
    }

    /// Every sample of every source.
    pub fn gather(&self) -> Vec<Sample> {
        let sources = self.sources.locked().clone();
        let mut out = Vec::new();
        for s in sources {
            s.collect(&mut out);
        }
        out
    }

    /// The Prometheus text exposition of [`Registry::gather`]: one family per name,
    /// whichever sources contributed to it.
    pub fn render(&self) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(Families::from(self.gather())));
        let mut text = String::new();
        // Writing to a String cannot fail; an encoder error would be a bug in a
        // family's shape, and a scrape then gets what was written so far.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
        text
    }
}

/// The samples of one scrape, grouped by name, for the encoder.
#[derive(Debug)]
struct Families(BTreeMap<&'static str, Vec<Sample>>);

impl From<Vec<Sample>> for Families {
    fn from(samples: Vec<Sample>) -> Families {
        let mut families: BTreeMap<&'static str, Vec<Sample>> = BTreeMap::new();
        for s in samples {
            families.entry(s.family.name).or_default().push(s);
        }
        Families(families)
    }
}

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, samples) in &self.0 {
            let first = &samples[0];
            let (name, kind) = match first.value {
                // The encoder adds `_total` to a counter's name.
                Value::Counter(_) => (
                    name.strip_suffix("_total").unwrap_or(name),
                    MetricType::Counter,
                ),
                Value::Gauge(_) => (*name, MetricType::Gauge),
                Value::Histogram(_) => (*name, MetricType::Histogram),
            };
            let mut metric = encoder.encode_descriptor(name, first.family.help, None, kind)?;
            for s in samples {
                let labels: &[(&'static str, String)] = &s.labels;
                let mut family = metric.encode_family(&labels)?;
                match (&s.value, kind) {
                    (Value::Counter(v), MetricType::Counter) => {
                        family.encode_counter::<NoLabelSet, _, u64>(v, None)?
                    }
                    (Value::Gauge(v), MetricType::Gauge) => family.encode_gauge(v)?,
                    (Value::Histogram(h), MetricType::Histogram) => {
                        family.encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)?
                    }
                    // A source that gave one name two kinds: its odd samples are left
                    // out rather than written under the wrong type.
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROBES: Family = Family {
        name: "proxypool_probes_total",
        help: "Probes.",
        kind: Kind::Counter,
        labels: &["proxy"],
    };

    struct Fixed;
    impl Collect for Fixed {
        fn collect(&self, out: &mut Vec<Sample>) {
            for (proxy, v) in [("socks5://a:1", 2), ("socks5://b\"x:1", 0)] {
                out.push(Sample::counter(&PROBES, vec![("proxy", proxy.into())], v));
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

    #[test]
    fn two_sources_of_one_name_make_one_family() {
        let r = Registry::new();
        r.register(Arc::new(Fixed));
        r.register(Arc::new(Fixed));
        let text = r.render();
        assert_eq!(text.matches("# TYPE proxypool_probes_total").count(), 1);
        assert_eq!(text.matches("proxypool_probes_total{").count(), 4);
    }

    #[test]
    fn a_histogram_counts_each_observation_in_its_bucket_and_renders_cumulative() {
        const BOUNDS: &[Duration] = &[Duration::from_millis(1), Duration::from_millis(10)];
        let h = Histogram::new(BOUNDS);
        for ms in [0, 1, 5, 20] {
            h.observe(Duration::from_millis(ms));
        }
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![(0.001, 2), (0.01, 1)]);
        assert_eq!(h.quantile(0.5), Some(Duration::from_millis(1)));
        assert_eq!(h.quantile(0.75), Some(Duration::from_millis(10)));
        assert_eq!(
            h.quantile(1.0),
            Some(Duration::from_millis(10)),
            "above every bound"
        );
        assert_eq!(s.count, 4);
        assert!((s.sum - 0.026).abs() < 1e-9);
        struct One(Histogram);
        impl Collect for One {
            fn collect(&self, out: &mut Vec<Sample>) {
                const X: Family = Family {
                    name: "proxypool_x_seconds",
                    help: "X.",
                    kind: Kind::Histogram,
                    labels: &["pool"],
                };
                out.push(self.0.sample(&X, vec![("pool", "p".into())]));
            }
        }
        let r = Registry::new();
        r.register(Arc::new(One(h)));
        let text = r.render();
        assert!(
            text.contains("# TYPE proxypool_x_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("proxypool_x_seconds_bucket{pool=\"p\",le=\"0.01\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("proxypool_x_seconds_bucket{pool=\"p\",le=\"+Inf\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("proxypool_x_seconds_count{pool=\"p\"} 4"),
            "{text}"
        );
    }

    #[test]
    fn unregistered_sources_are_gone() {
        let r = Registry::new();
        let s: Arc<dyn Collect> = Arc::new(Fixed);
        r.register(s.clone());
        r.unregister(&s);
        assert!(r.gather().is_empty());
    }
}

#[cfg(test)]
mod table {
    use super::*;

    #[test]
    fn every_family_is_named_once_and_shaped_by_its_kind() {
        let mut names: Vec<_> = FAMILIES.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FAMILIES.len(), "a name twice");
        for f in FAMILIES {
            match f.kind {
                Kind::Counter => assert!(f.name.ends_with("_total"), "{}", f.name),
                Kind::Histogram => assert!(f.name.ends_with("_seconds"), "{}", f.name),
                Kind::Gauge => assert!(!f.name.ends_with("_total"), "{}", f.name),
            }
            assert!(f.help.ends_with('.'), "{}: help is a sentence", f.name);
        }
    }
}
