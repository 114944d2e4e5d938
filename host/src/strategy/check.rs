//! The conformance suite behind `proxypool strategy check`: what a strategy author
//! runs before shipping a component.

use std::time::{Duration, Instant};

use super::{
    Compiled, Fault, Instance, LeaseCount, PickContext, StrategyEngine, check_pick, splitmix64,
};
use crate::config::Transport;

/// Picks in the distribution report.
pub const DISTRIBUTION_PICKS: u64 = 100_000;
/// Proxies in the distribution report.
pub const DISTRIBUTION_PROXIES: u32 = 10;

/// One line of the report.
#[derive(Clone, Debug)]
pub struct CheckRow {
    /// What was checked.
    pub name: &'static str,
    /// Whether it passed.
    pub passed: bool,
    /// What was seen.
    pub detail: String,
}

/// The whole report.
#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    /// One row per check, in order.
    pub rows: Vec<CheckRow>,
    /// Picks per proxy over [`DISTRIBUTION_PICKS`] first picks, if the suite got there.
    pub distribution: Vec<u64>,
}

impl CheckReport {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        !self.rows.is_empty() && self.rows.iter().all(|r| r.passed)
    }
}

fn ctx(tried: &[u32]) -> PickContext<'_> {
    PickContext {
        exchange: "check",
        transport: Transport::Http,
        attempt: tried.len() as u32,
        tried,
        affinity: None,
    }
}

/// Runs the suite on `bytes` under `engine`'s limits. Each check gets a fresh instance,
/// so one fault does not hide the next.
pub fn run(engine: &StrategyEngine, bytes: &[u8]) -> CheckReport {
    let mut report = CheckReport::default();
    let mut row = |name, result: Result<String, String>| {
        let (passed, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        report.rows.push(CheckRow {
            name,
            passed,
            detail,
        });
    };
    let compiled = match engine.compile(bytes) {
        Ok(c) => c,
        Err(e) => {
            row("loads, imports only the WIT", Err(e.to_string()));
            return report;
        }
    };
    row(
        "loads, imports only the WIT",
        Ok(format!("imports: {}", list_or_none(compiled.imports()))),
    );
    let mut slowest = Duration::ZERO;
    let mut limit_fault: Option<String> = None;
    let mut record = |name: &'static str, result: Result<String, String>| {
        if let Err(e) = &result
            && (e.contains(&Fault::Deadline.to_string())
                || e.contains(&Fault::OutOfMemory.to_string()))
        {
            limit_fault = Some(e.clone());
        }
        row(name, result);
    };

    // Candidates, tried, whether an untried id remains, picks to make.
    let cases: [(&'static str, u32, u32, bool, u32); 4] = [
        ("handles an empty set", 0, 0, false, 10),
        ("handles one proxy", 1, 0, true, 10),
        ("handles 10,000 proxies", 10_000, 0, true, 1_000),
        ("everything tried gives none", 10_000, 10_000, false, 3),
    ];
    for (name, n, tried_n, untried_left, picks) in cases {
        let shape = Shape {
            n,
            tried: tried_n,
            untried_left,
            picks,
        };
        record(name, shape.check(engine, &compiled, &mut slowest));
    }
    let result = random_sets(engine, &compiled, &mut slowest);
    record("never an ineligible or tried id", result);
    let mut counts = vec![0u64; DISTRIBUTION_PROXIES as usize];
    let dist = distribution(engine, &compiled, &mut counts);
    record("distribution", dist);

    let limits = engine.limits();
    let margin = match limit_fault {
        // The checks above ran under these limits: a fault there fails this too.
        Some(e) => Err(format!("{e} in a check above")),
        None => Ok(format!(
            "slowest pick {:.1} µs of a {:.1} ms deadline; memory cap {} MiB",
            slowest.as_secs_f64() * 1e6,
            limits.deadline.as_secs_f64() * 1e3,
            limits.memory >> 20
        )),
    };
    report.rows.push(CheckRow {
        name: "within the deadline and memory cap",
        passed: margin.is_ok(),
        detail: margin.unwrap_or_else(|e| e),
    });
    report.distribution = counts;
    report
}

/// The ids 0 to `n - 1`.
fn ids(n: u32) -> Vec<u32> {
    (0..n).collect()
}

/// One shape of candidate set: `n` proxies, the first `tried` of them tried,
/// whether an untried one remains, and how many picks to make.
struct Shape {
    n: u32,
    tried: u32,
    untried_left: bool,
    picks: u32,
}

impl Shape {
    fn check(
        &self,
        engine: &StrategyEngine,
        compiled: &Compiled,
        slowest: &mut Duration,
    ) -> Result<String, String> {
        let mut s = Subject::new(engine, compiled)?;
        s.set_candidates(ids(self.n))?;
        let tried = ids(self.tried);
        for _ in 0..self.picks {
            let t = Instant::now();
            let answer = s.call(|i| i.pick(ctx(&tried), &[]))?;
            *slowest = (*slowest).max(t.elapsed());
            check_pick(answer, &tried, |id| id < self.n, self.untried_left)
                .map_err(|f| f.to_string())?;
        }
        Ok(format!("{} picks", self.picks))
    }
}

/// 50 proxies, a changing eligible set, random tried lists: never an ineligible or
/// tried id.
fn random_sets(
    engine: &StrategyEngine,
    compiled: &Compiled,
    slowest: &mut Duration,
) -> Result<String, String> {
    let mut s = Subject::new(engine, compiled)?;
    let mut rng = 42u64;
    for round in 0..100 {
        let eligible: Vec<u32> = ids(50)
            .into_iter()
            .filter(|_| !splitmix64(&mut rng).is_multiple_of(4))
            .collect();
        s.set_candidates(eligible.clone())?;
        for _ in 0..50 {
            let tried: Vec<u32> = eligible
                .iter()
                .copied()
                .filter(|_| splitmix64(&mut rng).is_multiple_of(3))
                .collect();
            let left = eligible.iter().any(|id| !tried.contains(id));
            let t = Instant::now();
            let answer = s
                .call(|i| i.pick(ctx(&tried), &[]))
                .map_err(|f| format!("round {round}: {f}"))?;
            *slowest = (*slowest).max(t.elapsed());
            check_pick(answer, &tried, |id| eligible.contains(&id), left)
                .map_err(|f| format!("round {round}: {f}"))?;
        }
    }
    Ok("5,000 picks over 100 eligible sets".into())
}

/// Picks over equal proxies, each connection closed before the next opens, counted
/// into `counts`: the chi-square the report shows.
fn distribution(
    engine: &StrategyEngine,
    compiled: &Compiled,
    counts: &mut [u64],
) -> Result<String, String> {
    let n = DISTRIBUTION_PROXIES;
    let mut s = Subject::new(engine, compiled)?;
    s.set_candidates(ids(n))?;
    // Each connection closes before the next opens: the last one's count is 0 again.
    let mut closed: Option<LeaseCount> = None;
    for _ in 0..DISTRIBUTION_PICKS {
        let id = match s.call(|i| i.pick(ctx(&[]), closed.as_slice()))? {
            Some(id) if id < n => id,
            other => return Err(format!("{} ({other:?})", Fault::NoneWithEligible)),
        };
        counts[id as usize] += 1;
        closed = Some(LeaseCount { id, active: 0 });
    }
    let expected = DISTRIBUTION_PICKS as f64 / n as f64;
    let chi: f64 = counts
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum();
    let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
    Ok(format!(
        "{DISTRIBUTION_PICKS} picks over {n} equal proxies: min {min}, max {max}, chi-square {chi:.1} (9 df)"
    ))
}

/// The component under test, with its last candidate set, so that a call can be
/// retried on a fresh instance.
struct Subject<'a> {
    engine: &'a StrategyEngine,
    compiled: &'a Compiled,
    instance: Instance,
    ids: Vec<u32>,
    synced: bool,
}

impl<'a> Subject<'a> {
    fn new(engine: &'a StrategyEngine, compiled: &'a Compiled) -> Result<Self, String> {
        let instance = engine.instantiate(compiled, 1).map_err(|e| e.to_string())?;
        Ok(Subject {
            engine,
            compiled,
            instance,
            ids: Vec::new(),
            synced: false,
        })
    }

    fn set_candidates(&mut self, ids: Vec<u32>) -> Result<(), String> {
        self.ids = ids;
        self.synced = false;
        self.call(|_| Ok(()))
    }

    /// Runs `f` after making sure the instance has the candidates. A deadline counts
    /// only if a fresh instance hits it too: the first may have been the OS
    /// descheduling this thread, a looping guest hits it every time.
    fn call<T>(&mut self, f: impl Fn(&mut Instance) -> Result<T, Fault>) -> Result<T, String> {
        match self.sync_and(&f) {
            Err(Fault::Deadline) => {
                self.instance = self
                    .engine
                    .instantiate(self.compiled, 1)
                    .map_err(|e| e.to_string())?;
                self.synced = false;
                self.sync_and(&f).map_err(|e| e.to_string())
            }
            other => other.map_err(|e| e.to_string()),
        }
    }

    fn sync_and<T>(&mut self, f: &impl Fn(&mut Instance) -> Result<T, Fault>) -> Result<T, Fault> {
        if !self.synced {
            let n = self.ids.len();
            self.instance
                .set_candidates(&self.ids, &vec![1000; n], &vec![0; n])?;
            self.synced = true;
        }
        f(&mut self.instance)
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}
