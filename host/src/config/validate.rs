//! Layering (env > YAML > code) and validation of the raw layer into [`Config`].
//!
//! Validation never stops at the first problem: every check runs, and each problem
//! is recorded with its path.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::Problem;
use super::model::*;
use super::raw::*;
use super::url::ProxyUrl;

/// The keyword that forces a direct connection where a URL could stand.
pub(crate) const DIRECT: &str = "direct";

/// Merges the layers, lowest precedence first, per top-level field: `enabled` and
/// `default` are replaced whole, exchanges merge per key and a later layer replaces
/// that exchange's whole entry.
pub(crate) fn merge(layers: Vec<(Source, RawSettings)>, problems: &mut Vec<Problem>) -> Merged {
    let mut m = Merged::default();
    for (source, layer) in layers {
        if let Some(e) = layer.enabled {
            m.enabled = Some((source, e));
        }
        if let Some(d) = layer.default {
            m.default = Some((source, d));
        }
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for (key, entry) in layer.exchanges.into_iter().flatten() {
            let lower = key.to_ascii_lowercase();
            if let Some(first) = seen.insert(lower.clone(), key.clone()) {
                problems.push(Problem::new(
                    Source::Default,
                    format!("exchanges.{key}"),
                    format!("duplicate of exchanges.{first} (exchange names are case-insensitive)"),
                ));
                continue;
            }
            m.exchanges.insert(lower, (source, key, entry));
        }
    }
    m
}

/// The layers merged, each value with the source that set it.
#[derive(Default)]
pub(crate) struct Merged {
    enabled: Option<(Source, Scalar)>,
    default: Option<(Source, RawConnection)>,
    exchanges: BTreeMap<String, (Source, String, Option<RawConnection>)>,
}

/// Expands the root shorthand `proxy: "<url>"`: enabled, default for both transports.
pub(crate) fn root_to_settings(root: RawRoot) -> RawSettings {
    match root {
        RawRoot::Settings(s) => s,
        RawRoot::Shorthand(url) => RawSettings {
            enabled: Some(Scalar::Bool(true)),
            default: Some(RawConnection::Map(RawConnectionMap {
                http: Some(RawProxy::Shorthand(url.clone())),
                websocket: Some(RawProxy::Shorthand(url)),
                ..Default::default()
            })),
            exchanges: None,
        },
    }
}

pub(crate) fn validate(merged: Merged, problems: &mut Vec<Problem>) -> Config {
    let mut v = Checker {
        problems,
        source: Source::Default,
        unset_policies: Vec::new(),
    };
    let mut sources = Sources::default();
    let enabled = match merged.enabled {
        Some((source, s)) => {
            sources.enabled = source;
            v.source = source;
            v.bool("enabled", &s).unwrap_or(false)
        }
        None => false,
    };
    let default = merged.default.map(|(source, c)| {
        sources.default = source;
        v.source = source;
        v.connection("default", c)
    });
    // The default route's own pools keep `panic`: there is nothing to fall back to.
    v.unset_policies.clear();
    let mut exchanges = BTreeMap::new();
    for (lower, (source, key, entry)) in merged.exchanges {
        // An explicit null falls back to the default, as in cryptofeed.
        let Some(entry) = entry else { continue };
        v.source = source;
        let mut conn = v.connection(&format!("exchanges.{key}"), entry);
        // FR-1: a pool with no eligible member falls back to the default route,
        // unless it says otherwise or there is no default for its transport.
        for path in std::mem::take(&mut v.unset_policies) {
            let transport = match path.rsplit('.').next() {
                Some("http" | "rest") => Transport::Http,
                _ => Transport::Websocket,
            };
            let has_default = default
                .as_ref()
                .is_some_and(|d| d.upstream(transport).is_some());
            if has_default && let Some(pool) = conn.pool_mut(transport) {
                pool.when_all_down = WhenAllDown::FallbackDefault;
            }
        }
        sources.exchanges.insert(lower.clone(), source);
        exchanges.insert(lower, conn);
    }
    Config {
        enabled,
        default,
        exchanges,
        sources,
        warnings: Vec::new(),
        gateway: super::Gateway::default(),
    }
}

/// Records every problem with its path, and the source the values came from.
pub(crate) struct Checker<'a> {
    pub(crate) problems: &'a mut Vec<Problem>,
    pub(crate) source: Source,
    /// Paths of pools that left `when_all_down` unset: their default depends on
    /// whether the route has a default route to fall back to.
    pub(crate) unset_policies: Vec<String>,
}

impl Checker<'_> {
    pub(crate) fn fail(&mut self, path: &str, message: impl Into<String>) {
        self.problems
            .push(Problem::new(self.source, path.to_owned(), message.into()));
    }

    fn connection(&mut self, path: &str, raw: RawConnection) -> Connection {
        match raw {
            RawConnection::Shorthand(s) if s.trim().eq_ignore_ascii_case(DIRECT) => Connection {
                http: Some(Upstream::Direct),
                websocket: Some(Upstream::Direct),
            },
            // A bare string means http only, as in cryptofeed.
            RawConnection::Shorthand(s) => Connection {
                http: self.proxy(&format!("{path}.http"), RawProxy::Shorthand(s)),
                websocket: None,
            },
            RawConnection::Map(m) => {
                let http = m.http.map(|p| ("http", p)).or(m.rest.map(|p| ("rest", p)));
                let ws = m
                    .websocket
                    .map(|p| ("websocket", p))
                    .or(m.ws.map(|p| ("ws", p)));
                Connection {
                    http: http.and_then(|(k, p)| self.proxy(&format!("{path}.{k}"), p)),
                    websocket: ws.and_then(|(k, p)| self.proxy(&format!("{path}.{k}"), p)),
                }
            }
        }
    }

    fn proxy(&mut self, path: &str, raw: RawProxy) -> Option<Upstream> {
        let m = match raw {
            RawProxy::Shorthand(s) if s.trim().eq_ignore_ascii_case(DIRECT) => {
                return Some(Upstream::Direct);
            }
            RawProxy::Shorthand(s) => RawProxyMap {
                url: Some(Scalar::Str(s)),
                ..Default::default()
            },
            RawProxy::Map(m) => m,
        };
        let timeout = match &m.timeout_seconds {
            Some(t) => self
                .whole(&format!("{path}.timeout_seconds"), t, 1, 300)
                .map(|n| Duration::from_secs(n as u64)),
            None => Some(DEFAULT_TIMEOUT),
        };
        let direct = match &m.direct {
            Some(d) => self.bool(&format!("{path}.direct"), d).unwrap_or(false),
            None => false,
        };
        let url = m
            .url
            .as_ref()
            .and_then(|u| self.url(&format!("{path}.url"), u));
        if direct && (m.url.is_some() || m.pool.is_some()) {
            self.fail(path, "`direct: true` cannot be combined with url or pool");
        }
        // The pool-level keys beside `pool`, shaped like a pool mapping without proxies.
        let beside = RawPoolMap {
            enabled: m.enabled,
            proxies: None,
            strategy: m.strategy,
            health_check: m.health_check,
            breaker: m.breaker,
            failover: m.failover,
            when_all_down: m.when_all_down,
            bans: m.bans,
        };
        let pool = match m.pool {
            Some(pool) => self.pool(path, pool, beside),
            None => {
                self.refuse_pool_keys(path, &beside);
                None
            }
        };
        let timeout = timeout?;
        if direct {
            return Some(Upstream::Direct);
        }
        // Invalid url: already reported. Neither url nor pool: cryptofeed's "no proxy".
        let single = match (url, m.url.is_some()) {
            (Some(url), _) => Some(Upstream::Proxy(ProxyEndpoint { url, timeout })),
            (None, true) => None,
            (None, false) => Some(Upstream::Direct),
        };
        // cryptofeed: with both url and pool set, the pool wins.
        let Some((mut pool, on)) = pool else {
            return single;
        };
        pool.timeout = timeout;
        if on {
            return Some(Upstream::Pool(Box::new(pool)));
        }
        // FR-4: switched off, the route is what it would be without the pool.
        Some(Upstream::SwitchedOff {
            pool: Box::new(pool),
            instead: Box::new(single?),
        })
    }

    /// Pool-level keys given where there is no pool.
    fn refuse_pool_keys(&mut self, path: &str, beside: &RawPoolMap) {
        for (key, given) in [
            ("enabled", beside.enabled.is_some()),
            ("strategy", beside.strategy.is_some()),
            ("health_check", beside.health_check.is_some()),
            ("breaker", beside.breaker.is_some()),
            ("failover", beside.failover.is_some()),
            ("when_all_down", beside.when_all_down.is_some()),
            ("bans", beside.bans.is_some()),
        ] {
            if given {
                let message = format!("{key} applies only to a pool");
                self.fail(&format!("{path}.{key}"), message);
            }
        }
    }

    /// The pool, and whether it is on.
    fn pool(&mut self, path: &str, pool: RawPool, beside: RawPoolMap) -> Option<(PoolSpec, bool)> {
        let pool_path = format!("{path}.pool");
        let (members_path, mut inside) = match pool {
            RawPool::List(list) => (
                pool_path.clone(),
                RawPoolMap {
                    proxies: Some(list),
                    ..Default::default()
                },
            ),
            RawPool::Map(m) => (format!("{pool_path}.proxies"), m),
        };
        let members = inside.proxies.take();
        // Each key may sit beside the pool or inside its mapping, not both.
        macro_rules! key {
            ($key:ident, $default:expr, |$c:ident, $p:ident, $v:ident| $parse:expr) => {
                match (beside.$key, inside.$key) {
                    (Some(_), Some(_)) => {
                        self.fail(
                            &format!("{path}.{}", stringify!($key)),
                            format!(
                                "{} given both beside the pool and inside it",
                                stringify!($key)
                            ),
                        );
                        None
                    }
                    (Some($v), None) => {
                        let ($c, $p) = (&mut *self, format!("{path}.{}", stringify!($key)));
                        $parse
                    }
                    (None, Some($v)) => {
                        let ($c, $p) = (&mut *self, format!("{pool_path}.{}", stringify!($key)));
                        $parse
                    }
                    (None, None) => Some($default),
                }
            };
        }
        let strategy = key!(strategy, StrategyRef::default(), |c, p, v| c
            .strategy(&p, &v));
        let health = key!(health_check, HealthCheck::default(), |c, p, v| c
            .health(&p, v));
        let breaker = key!(breaker, Breaker::default(), |c, p, v| c.breaker(&p, v));
        let failover = key!(failover, Failover::default(), |c, p, v| c.failover(&p, v));
        if beside.when_all_down.is_none() && inside.when_all_down.is_none() {
            self.unset_policies.push(path.to_owned());
        }
        let when_all_down = key!(when_all_down, WhenAllDown::default(), |c, p, v| c
            .when_all_down(&p, &v));
        let enabled = key!(enabled, true, |c, p, v| c.bool(&p, &v));
        let bans = key!(bans, Bans::default(), |c, p, v| c.bans(&p, v));
        let members = self.members(&members_path, members)?;
        let enabled = enabled?;
        Some((
            PoolSpec {
                members,
                strategy: strategy?,
                health_check: health?,
                timeout: DEFAULT_TIMEOUT,
                breaker: breaker?,
                failover: failover?,
                when_all_down: when_all_down?,
                bans: bans?,
            },
            enabled,
        ))
    }

    /// A pool's `proxies`: at least one, each valid.
    fn members(&mut self, path: &str, raw: Option<Vec<RawMember>>) -> Option<Vec<PoolMember>> {
        let Some(raw) = raw else {
            self.fail(path, "a pool needs a `proxies` list");
            return None;
        };
        if raw.is_empty() {
            self.fail(path, "a pool needs at least one proxy");
        }
        let mut members = Vec::with_capacity(raw.len());
        let mut ok = true;
        for (i, raw) in raw.into_iter().enumerate() {
            match self.member(&format!("{path}[{i}]"), raw) {
                Some(m) => members.push(m),
                None => ok = false,
            }
        }
        (ok && !members.is_empty()).then_some(members)
    }

    fn member(&mut self, path: &str, raw: RawMember) -> Option<PoolMember> {
        let m = match raw {
            RawMember::Shorthand(s) => RawMemberMap {
                url: Some(Scalar::Str(s)),
                ..Default::default()
            },
            RawMember::Map(m) => m,
        };
        let url = match &m.url {
            Some(u) => self.url(&format!("{path}.url"), u),
            None => {
                self.fail(&format!("{path}.url"), "a pool member needs a url");
                None
            }
        };
        let weight = match &m.weight {
            Some(w) => self.weight(&format!("{path}.weight"), w),
            None => Some(DEFAULT_WEIGHT),
        };
        let enabled = match &m.enabled {
            Some(e) => self.bool(&format!("{path}.enabled"), e),
            None => Some(true),
        };
        Some(PoolMember {
            url: url?,
            weight: weight?,
            enabled: enabled?,
        })
    }

    fn breaker(&mut self, path: &str, b: RawBreaker) -> Option<Breaker> {
        let d = Breaker::default();
        let failures = self.opt_whole(path, "failures", &b.failures, 1, 100, d.failures as i64);
        let cooldown = self.opt_whole(
            path,
            "cooldown_ms",
            &b.cooldown_ms,
            10,
            3_600_000,
            d.cooldown.as_millis() as i64,
        );
        let max = self.opt_whole(
            path,
            "max_cooldown_seconds",
            &b.max_cooldown_seconds,
            1,
            86_400,
            d.max_cooldown.as_secs() as i64,
        );
        let b = Breaker {
            failures: failures? as u32,
            cooldown: Duration::from_millis(cooldown? as u64),
            max_cooldown: Duration::from_secs(max? as u64),
        };
        if b.max_cooldown < b.cooldown {
            self.fail(
                &format!("{path}.max_cooldown_seconds"),
                "must not be below cooldown_ms",
            );
            return None;
        }
        Some(b)
    }

    fn failover(&mut self, path: &str, f: RawFailover) -> Option<Failover> {
        let d = Failover::default();
        let attempts = self.opt_whole(
            path,
            "max_attempts",
            &f.max_attempts,
            1,
            10,
            d.max_attempts as i64,
        );
        let deadline = match &f.deadline_seconds {
            Some(v) => self
                .whole(&format!("{path}.deadline_seconds"), v, 1, 300)
                .map(|n| Some(Duration::from_secs(n as u64))),
            None => Some(None),
        };
        let hedge = match &f.hedge {
            Some(v) => self.bool(&format!("{path}.hedge"), v),
            None => Some(true),
        };
        let (dmin, dmax) = d.hedge.expect("hedging is on by default");
        let min = self.opt_whole(
            path,
            "hedge_min_ms",
            &f.hedge_min_ms,
            1,
            60_000,
            dmin.as_millis() as i64,
        );
        let max = self.opt_whole(
            path,
            "hedge_max_ms",
            &f.hedge_max_ms,
            1,
            60_000,
            dmax.as_millis() as i64,
        );
        let (min, max) = (min?, max?);
        if max < min {
            self.fail(
                &format!("{path}.hedge_max_ms"),
                "must not be below hedge_min_ms",
            );
            return None;
        }
        let hedge = hedge?.then(|| {
            (
                Duration::from_millis(min as u64),
                Duration::from_millis(max as u64),
            )
        });
        Some(Failover {
            max_attempts: attempts? as u32,
            deadline: deadline?,
            hedge,
        })
    }

    fn when_all_down(&mut self, path: &str, s: &Scalar) -> Option<WhenAllDown> {
        let name = self.string(path, s)?;
        let all = [
            WhenAllDown::Panic,
            WhenAllDown::FallbackDefault,
            WhenAllDown::Fail,
        ];
        match all
            .into_iter()
            .find(|w| w.as_str() == name.to_ascii_lowercase())
        {
            Some(w) => Some(w),
            None => {
                self.fail(
                    path,
                    format!("unknown policy {name:?} (expected panic, fallback_default or fail)"),
                );
                None
            }
        }
    }

    fn bans(&mut self, path: &str, b: RawBans) -> Option<Bans> {
        let d = Bans::default();
        let limited = self.opt_whole(
            path,
            "rate_limited_seconds",
            &b.rate_limited_seconds,
            1,
            604_800,
            d.rate_limited.as_secs() as i64,
        );
        let banned = self.opt_whole(
            path,
            "banned_seconds",
            &b.banned_seconds,
            1,
            604_800,
            d.banned.as_secs() as i64,
        );
        Some(Bans {
            rate_limited: Duration::from_secs(limited? as u64),
            banned: Duration::from_secs(banned? as u64),
        })
    }

    /// `path.key` as a whole number in `lo..=hi`, or `default` when absent.
    pub(crate) fn opt_whole(
        &mut self,
        path: &str,
        key: &str,
        s: &Option<Scalar>,
        lo: i64,
        hi: i64,
        default: i64,
    ) -> Option<i64> {
        match s {
            Some(s) => self.whole(&format!("{path}.{key}"), s, lo, hi),
            None => Some(default),
        }
    }

    fn strategy(&mut self, path: &str, s: &Scalar) -> Option<StrategyRef> {
        let name = self.string(path, s)?;
        if let Some(b) = BuiltinStrategy::ALL.iter().find(|b| b.as_str() == name) {
            return Some(StrategyRef::Builtin(*b));
        }
        if name.ends_with(".wasm") {
            return Some(StrategyRef::Wasm(PathBuf::from(name)));
        }
        self.fail(
            path,
            format!(
                "unknown strategy {name:?} (expected round_robin, random, least_connections, or a path to a .wasm file)"
            ),
        );
        None
    }

    fn url(&mut self, path: &str, s: &Scalar) -> Option<ProxyUrl> {
        let Scalar::Str(s) = s else {
            self.fail(path, "must be a string");
            return None;
        };
        ProxyUrl::parse(s)
            .map_err(|e| self.fail(path, e.to_string()))
            .ok()
    }

    pub(crate) fn string(&mut self, path: &str, s: &Scalar) -> Option<String> {
        match s {
            Scalar::Str(s) => Some(s.clone()),
            _ => {
                self.fail(path, "must be a string");
                None
            }
        }
    }

    pub(crate) fn bool(&mut self, path: &str, s: &Scalar) -> Option<bool> {
        let parsed = match s {
            Scalar::Bool(b) => Some(*b),
            Scalar::Int(1) => Some(true),
            Scalar::Int(0) => Some(false),
            Scalar::Str(s) => parse_bool(s),
            _ => None,
        };
        if parsed.is_none() {
            self.fail(
                path,
                "must be a boolean (true/false, 1/0, yes/no, on/off, t/f, y/n)",
            );
        }
        parsed
    }

    /// A whole number in `lo..=hi`; "30" and 3.0 count, 2.5 does not.
    pub(crate) fn whole(&mut self, path: &str, s: &Scalar, lo: i64, hi: i64) -> Option<i64> {
        let n = match s {
            Scalar::Int(n) => Some(*n),
            Scalar::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => Some(*f as i64),
            Scalar::Str(s) => {
                let s = s.trim();
                s.parse::<i64>().ok().or_else(|| {
                    s.parse::<f64>()
                        .ok()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
                        .map(|f| f as i64)
                })
            }
            _ => None,
        };
        match n {
            Some(n) if (lo..=hi).contains(&n) => Some(n),
            Some(_) => {
                self.fail(path, format!("must be between {lo} and {hi}"));
                None
            }
            None => {
                self.fail(path, "must be a whole number");
                None
            }
        }
    }

    fn weight(&mut self, path: &str, s: &Scalar) -> Option<f64> {
        let w = match s {
            Scalar::Int(n) => Some(*n as f64),
            Scalar::Float(f) => Some(*f),
            Scalar::Str(s) => s.trim().parse::<f64>().ok(),
            Scalar::Bool(_) => None,
        };
        match w {
            Some(w) if (0.1..=10.0).contains(&w) => Some(w),
            Some(_) => {
                self.fail(path, "must be between 0.1 and 10");
                None
            }
            None => {
                self.fail(path, "must be a number");
                None
            }
        }
    }
}

/// cryptofeed's (Pydantic's) boolean strings, any case.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" | "t" | "y" => Some(true),
        "false" | "0" | "no" | "off" | "f" | "n" => Some(false),
        _ => None,
    }
}

/// An `http://` or `https://` URL a probe may put in a request line: no whitespace
/// or control character anywhere (CR and LF would start a second header), and a host
/// that [`super::host_problem`] accepts.
pub(super) fn is_http_url(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    let Some(rest) = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))
    else {
        return false;
    };
    if s.len() > 2048 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    !authority.contains('@') && super::host_problem(host).is_none()
}

pub(super) fn valid_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((h, p)) => {
            super::host_problem(h.trim_matches(['[', ']'])).is_none()
                && p.parse::<u16>().is_ok_and(|p| p != 0)
        }
        None => false,
    }
}
