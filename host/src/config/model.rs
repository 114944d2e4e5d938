//! Validated configuration: types that cannot hold an invalid value.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::url::ProxyUrl;

/// cryptofeed's default for `timeout_seconds`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// cryptofeed's default pool member weight.
pub const DEFAULT_WEIGHT: f64 = 1.0;
/// cryptofeed's default health-check interval.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(30);
/// cryptofeed's default health-check timeout.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
/// cryptofeed's default health-check retry count.
pub const DEFAULT_HEALTH_RETRIES: u32 = 3;
/// Successes before a down proxy is up again: HAProxy's `rise 2`, so one lucky probe
/// does not bring a flapping proxy back.
pub const DEFAULT_RISE: u32 = 2;
/// Failures before an up proxy is down: HAProxy's `fall 3`; passive detection and the
/// breaker react faster than probes do, so probes can afford to be patient.
pub const DEFAULT_FALL: u32 = 3;

/// While a proxy is down or changing state it is probed this often: a recovered
/// proxy is back within `rise` × 1 s, and a failing one is confirmed as fast (HAProxy's
/// `fastinter` idea; its default equals `inter`, which we find too slow for sub-second
/// failover).
pub const DEFAULT_FAST_INTERVAL: Duration = Duration::from_secs(1);
/// Consecutive proxy faults that open a proxy's breaker. One: every failed attempt is
/// retried on another proxy at once, so ejecting costs the client nothing, while a
/// dead proxy left in rotation costs every Nth connection a failed attempt. A refused
/// connect or a broken handshake is a definite proxy fault, unlike the request-level
/// errors behind Envoy's 5 and linkerd's 7.
pub const DEFAULT_BREAKER_FAILURES: u32 = 1;
/// First open period of a breaker; doubles on every reopen (linkerd: 1 s → 60 s).
pub const DEFAULT_BREAKER_COOLDOWN: Duration = Duration::from_secs(1);
/// Cap of the doubling cooldown (linkerd's 60 s; Envoy's 300 s cap is for hosts that
/// serve traffic directly, where a probe does not bring them back first).
pub const DEFAULT_BREAKER_MAX_COOLDOWN: Duration = Duration::from_secs(60);
/// Attempts per connection: the first proxy and two others (HAProxy's `retries 3` with
/// `redispatch`), bounded by the pool size.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Lower bound of the hedge delay: below this, a normal handshake over a WAN proxy is
/// still in flight and hedging would double the load for nothing.
pub const DEFAULT_HEDGE_MIN: Duration = Duration::from_millis(50);
/// Upper bound of the hedge delay: the failover goal is well under a second.
pub const DEFAULT_HEDGE_MAX: Duration = Duration::from_secs(1);
/// The hedge delay of a pool with nothing measured yet (no handshake, no probe): a
/// proxy handshake across a continent takes 100–200 ms, so a silent first proxy
/// costs a quarter of a second, not the one-second ceiling.
pub const DEFAULT_HEDGE_INITIAL: Duration = Duration::from_millis(250);
/// A rate-limited proxy rests this long for that exchange when the exchange sent no
/// Retry-After (Binance's limits are per minute).
pub const DEFAULT_RATE_LIMITED: Duration = Duration::from_secs(60);
/// A banned proxy rests this long for that exchange when no Retry-After came with the
/// ban (Binance's 418 bans run from 2 minutes to 3 days and say how long).
pub const DEFAULT_BANNED: Duration = Duration::from_secs(3600);

/// The longest ban a report can ask for: Binance's IP bans run up to 3 days, so a
/// week is generous, and it keeps an absurd Retry-After from overflowing a clock.
pub const MAX_BAN: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest any other duration of a pool may be (timeouts, intervals,
/// cooldowns), however it was given: a day is past every sensible setting, and no
/// deadline computed from it can overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// The shortest probe interval, however it was given: a zero interval would spin.
pub const MIN_PROBE_INTERVAL: Duration = Duration::from_millis(10);
/// The longest host name a destination or probe URL may name (RFC 1035).
pub const MAX_HOST_LEN: usize = 253;

/// Why `host` cannot name a destination, if it cannot: empty, longer than
/// [`MAX_HOST_LEN`], or holding whitespace or a control character (CR, LF and NUL
/// would let a name smuggle a second line into a handshake).
pub fn host_problem(host: &str) -> Option<&'static str> {
    if host.is_empty() {
        Some("empty host")
    } else if host.len() > MAX_HOST_LEN {
        Some("host name longer than 253 characters")
    } else if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("host name holds whitespace or a control character")
    } else {
        None
    }
}

/// The kind of traffic a route carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// REST over HTTP (cryptofeed's `http`, alias `rest`).
    Http,
    /// WebSocket streams (cryptofeed's `websocket`, alias `ws`).
    Websocket,
}

impl Transport {
    /// Both transports, in display order.
    pub const ALL: [Transport; 2] = [Transport::Http, Transport::Websocket];

    /// The name used in YAML and log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::Websocket => "websocket",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "http" | "rest" => Ok(Transport::Http),
            "websocket" | "ws" => Ok(Transport::Websocket),
            _ => Err(format!(
                "unknown transport {s:?} (expected http or websocket)"
            )),
        }
    }
}

/// Where a value came from; later sources win: env > YAML > code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// The built-in default (nothing set it).
    #[default]
    Default,
    /// The programmatic builder.
    Code,
    /// The YAML `proxy:` block.
    Yaml,
    /// `CRYPTOFEED_PROXY_*` variables.
    Env,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Default => "default",
            Source::Code => "code",
            Source::Yaml => "yaml",
            Source::Env => "env",
        })
    }
}

/// One proxy and the bound on connect plus handshake through it.
#[derive(Clone, Debug, PartialEq)]
pub struct ProxyEndpoint {
    /// The proxy.
    pub url: ProxyUrl,
    /// Bounds the TCP connect, TLS and proxy handshake together.
    pub timeout: Duration,
}

/// A built-in selection strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BuiltinStrategy {
    /// Each eligible proxy in turn.
    RoundRobin,
    /// Uniform, or proportional to weight.
    Random,
    /// The proxy with the fewest active leases.
    LeastConnections,
}

impl BuiltinStrategy {
    /// All built-ins.
    pub const ALL: [BuiltinStrategy; 3] = [
        BuiltinStrategy::RoundRobin,
        BuiltinStrategy::Random,
        BuiltinStrategy::LeastConnections,
    ];

    /// The one snake_case name used everywhere.
    pub fn as_str(self) -> &'static str {
        match self {
            BuiltinStrategy::RoundRobin => "round_robin",
            BuiltinStrategy::Random => "random",
            BuiltinStrategy::LeastConnections => "least_connections",
        }
    }
}

/// Which strategy selects from a pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StrategyRef {
    /// A module shipped inside proxypool.
    Builtin(BuiltinStrategy),
    /// A WebAssembly component file, relative to the working directory.
    Wasm(PathBuf),
}

impl Default for StrategyRef {
    fn default() -> Self {
        StrategyRef::Builtin(BuiltinStrategy::RoundRobin)
    }
}

impl fmt::Display for StrategyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StrategyRef::Builtin(b) => f.write_str(b.as_str()),
            StrategyRef::Wasm(p) => write!(f, "{}", p.display()),
        }
    }
}

/// How an active health probe tests a proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProbeMethod {
    /// A TCP connect to the proxy (cryptofeed's default).
    Tcp,
    /// A TCP connect and the proxy protocol's first exchange, which needs no target:
    /// SOCKS5 method negotiation, an HTTP request (`OPTIONS *`) any CONNECT proxy
    /// answers, after TLS for https; a connect alone for SOCKS4, which has none. It
    /// catches a proxy that accepts and never answers (hung, stopped). The default.
    Greeting,
    /// A full proxy handshake to `target` (`host:port`).
    Handshake {
        /// Where the probe asks the proxy to connect.
        target: String,
    },
    /// An HTTP GET of `url` through the proxy.
    Http {
        /// What to fetch.
        url: String,
    },
    /// ICMP echo to the proxy's host.
    Ping,
}

impl ProbeMethod {
    /// The YAML name of the method.
    pub fn as_str(&self) -> &'static str {
        match self {
            ProbeMethod::Tcp => "tcp",
            ProbeMethod::Greeting => "greeting",
            ProbeMethod::Handshake { .. } => "handshake",
            ProbeMethod::Http { .. } => "http",
            ProbeMethod::Ping => "ping",
        }
    }
}

/// Active health checking of a pool's members.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthCheck {
    /// Whether probes run at all.
    pub enabled: bool,
    /// What a probe does.
    pub method: ProbeMethod,
    /// Time between probes of one proxy.
    pub interval: Duration,
    /// Bound on one probe.
    pub timeout: Duration,
    /// Attempts per probe before it counts as failed.
    pub retry_count: u32,
    /// Consecutive successes that bring a proxy up.
    pub rise: u32,
    /// Consecutive failures that take a proxy down.
    pub fall: u32,
    /// Time between probes of a proxy that is down or changing state.
    pub fast_interval: Duration,
    /// HTTP statuses that count as success for method `http` (inclusive ranges).
    pub expected_status: Vec<(u16, u16)>,
    /// The module that turns probe results into up/down decisions.
    pub verdict: VerdictRef,
}

/// Which health-verdict module a pool uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum VerdictRef {
    /// The built-in rise/fall counter.
    #[default]
    Threshold,
    /// A component of the `health-verdict` world, watched for hot swap.
    Wasm(PathBuf),
}

impl fmt::Display for VerdictRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerdictRef::Threshold => f.write_str("threshold"),
            VerdictRef::Wasm(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Passive detection: a circuit breaker per proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Breaker {
    /// Consecutive proxy faults that open it.
    pub failures: u32,
    /// The first open period; doubled on each reopen, with jitter.
    pub cooldown: Duration,
    /// The cap of the doubled cooldown.
    pub max_cooldown: Duration,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            failures: DEFAULT_BREAKER_FAILURES,
            cooldown: DEFAULT_BREAKER_COOLDOWN,
            max_cooldown: DEFAULT_BREAKER_MAX_COOLDOWN,
        }
    }
}

/// Retries and hedging of one connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failover {
    /// Proxies tried per connection at most (bounded by the pool size).
    pub max_attempts: u32,
    /// Bound on the whole connect, retries included; `None`: the pool's timeout.
    pub deadline: Option<Duration>,
    /// Bounds of the adaptive hedge delay, or `None` for no hedging.
    pub hedge: Option<(Duration, Duration)>,
}

impl Default for Failover {
    fn default() -> Self {
        Failover {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            deadline: None,
            hedge: Some((DEFAULT_HEDGE_MIN, DEFAULT_HEDGE_MAX)),
        }
    }
}

/// What a connect does when no proxy of the pool is eligible.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WhenAllDown {
    /// Try every enabled proxy anyway (Envoy's panic mode; cryptofeed's behaviour).
    #[default]
    Panic,
    /// Use the default route for this transport (the seed's FR-1). Never direct
    /// unless the default route itself says direct.
    FallbackDefault,
    /// Fail with an error that names the pool and why each proxy is out.
    Fail,
}

impl WhenAllDown {
    /// The YAML name.
    pub fn as_str(self) -> &'static str {
        match self {
            WhenAllDown::Panic => "panic",
            WhenAllDown::FallbackDefault => "fallback_default",
            WhenAllDown::Fail => "fail",
        }
    }
}

/// How long a reported ban keeps a proxy away from one exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bans {
    /// After "rate limited" without a Retry-After.
    pub rate_limited: Duration,
    /// After "banned" without a Retry-After.
    pub banned: Duration,
}

impl Default for Bans {
    fn default() -> Self {
        Bans {
            rate_limited: DEFAULT_RATE_LIMITED,
            banned: DEFAULT_BANNED,
        }
    }
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            enabled: true,
            method: ProbeMethod::Greeting,
            interval: DEFAULT_HEALTH_INTERVAL,
            timeout: DEFAULT_HEALTH_TIMEOUT,
            retry_count: DEFAULT_HEALTH_RETRIES,
            rise: DEFAULT_RISE,
            fall: DEFAULT_FALL,
            fast_interval: DEFAULT_FAST_INTERVAL,
            expected_status: vec![(200, 399)],
            verdict: VerdictRef::Threshold,
        }
    }
}

/// One proxy of a pool.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolMember {
    /// The proxy.
    pub url: ProxyUrl,
    /// Relative share for weighted strategies, 0.1 to 10.
    pub weight: f64,
    /// A disabled member is never selected.
    pub enabled: bool,
}

/// A pool of proxies behind one route.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolSpec {
    /// The members, never empty.
    pub members: Vec<PoolMember>,
    /// How a member is chosen.
    pub strategy: StrategyRef,
    /// Active health checking.
    pub health_check: HealthCheck,
    /// Bounds connect plus handshake through any member.
    pub timeout: Duration,
    /// Passive detection.
    pub breaker: Breaker,
    /// Retries and hedging.
    pub failover: Failover,
    /// What happens when no proxy is eligible.
    pub when_all_down: WhenAllDown,
    /// Ban durations.
    pub bans: Bans,
}

impl PoolSpec {
    /// The same spec with every duration within bounds ([`MAX_DURATION`],
    /// [`MAX_BAN`], [`MIN_PROBE_INTERVAL`]) and every count at least 1. Validated
    /// configuration is unchanged by it; a spec built in code cannot overflow a
    /// deadline or spin a timer.
    pub fn bounded(&self) -> PoolSpec {
        let d = |v: Duration, min: Duration| v.clamp(min, MAX_DURATION);
        let ms = Duration::from_millis(1);
        let mut s = self.clone();
        s.timeout = d(s.timeout, ms);
        let hc = &mut s.health_check;
        hc.interval = d(hc.interval, MIN_PROBE_INTERVAL);
        hc.fast_interval = d(hc.fast_interval, MIN_PROBE_INTERVAL);
        hc.timeout = d(hc.timeout, ms);
        hc.retry_count = hc.retry_count.max(1);
        hc.rise = hc.rise.max(1);
        hc.fall = hc.fall.max(1);
        let b = &mut s.breaker;
        b.failures = b.failures.max(1);
        b.cooldown = d(b.cooldown, ms);
        b.max_cooldown = d(b.max_cooldown, b.cooldown);
        let f = &mut s.failover;
        f.max_attempts = f.max_attempts.max(1);
        f.deadline = f.deadline.map(|v| d(v, ms));
        f.hedge = f.hedge.map(|(lo, hi)| {
            let lo = d(lo, ms);
            (lo, d(hi, lo))
        });
        s.bans.rate_limited = s.bans.rate_limited.min(MAX_BAN);
        s.bans.banned = s.bans.banned.min(MAX_BAN);
        s
    }
}

/// What one transport of one entry says.
#[derive(Clone, Debug, PartialEq)]
pub enum Upstream {
    /// Connect directly, on purpose.
    Direct,
    /// Through one proxy.
    Proxy(ProxyEndpoint),
    /// Through a pool of proxies (boxed: it is much larger than the other variants).
    Pool(Box<PoolSpec>),
    /// A pool switched off (`enabled: false`): the route goes `instead` (its `url` as
    /// a single proxy, or direct), and the pool's settings are kept so that a reload
    /// that switches it on again brings its members back with their state.
    /// [`Connection::upstream`] and [`Config::route`] give `instead`.
    SwitchedOff {
        /// The pool, validated as if it were on.
        pool: Box<PoolSpec>,
        /// What the route does meanwhile: [`Upstream::Proxy`] or [`Upstream::Direct`].
        instead: Box<Upstream>,
    },
}

/// Connection-proxies: one optional upstream per transport.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Connection {
    /// REST traffic.
    pub http: Option<Upstream>,
    /// WebSocket traffic.
    pub websocket: Option<Upstream>,
}

impl Connection {
    /// The upstream for `transport`, if this entry sets one; for a pool switched
    /// off, what the route does instead.
    pub fn upstream(&self, transport: Transport) -> Option<&Upstream> {
        match self.configured(transport) {
            Some(Upstream::SwitchedOff { instead, .. }) => Some(instead),
            other => other,
        }
    }

    /// The upstream for `transport` as configured, a switched-off pool included.
    pub fn configured(&self, transport: Transport) -> Option<&Upstream> {
        match transport {
            Transport::Http => self.http.as_ref(),
            Transport::Websocket => self.websocket.as_ref(),
        }
    }

    fn configured_mut(&mut self, transport: Transport) -> Option<&mut Upstream> {
        match transport {
            Transport::Http => self.http.as_mut(),
            Transport::Websocket => self.websocket.as_mut(),
        }
    }

    /// The pool for `transport`, on or switched off, to change its settings.
    pub(crate) fn pool_mut(&mut self, transport: Transport) -> Option<&mut PoolSpec> {
        match self.configured_mut(transport)? {
            Upstream::Pool(p) | Upstream::SwitchedOff { pool: p, .. } => Some(p),
            _ => None,
        }
    }
}

/// The validated proxy configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub(crate) enabled: bool,
    pub(crate) default: Option<Connection>,
    pub(crate) exchanges: BTreeMap<String, Connection>,
    pub(crate) sources: Sources,
    pub(crate) warnings: Vec<String>,
    pub(crate) gateway: super::Gateway,
}

/// Which source set each top-level field (the unit of precedence).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sources {
    /// Who set `enabled`.
    pub enabled: Source,
    /// Who set `default`.
    pub default: Source,
    /// Who set each exchange's entry (lowercase names).
    pub exchanges: BTreeMap<String, Source>,
}

/// Why a route is what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteOrigin {
    /// `enabled` is false: everything is direct.
    Disabled,
    /// The exchange's own entry.
    Exchange,
    /// The default entry (the exchange had none for this transport).
    Default,
    /// Neither the exchange nor the default says anything.
    Unset,
}

/// What `(exchange, transport)` resolves to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Route<'a> {
    /// Direct, one proxy, or a pool; `None` for an implicit direct connection.
    pub upstream: Option<&'a Upstream>,
    /// Which entry decided.
    pub origin: RouteOrigin,
    /// Which source set that entry.
    pub source: Source,
}

impl Route<'_> {
    /// Whether this route connects without any proxy.
    pub fn is_direct(&self) -> bool {
        matches!(self.upstream, None | Some(Upstream::Direct))
    }
}

impl Config {
    /// Whether proxying is on at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The default entry.
    pub fn default_connection(&self) -> Option<&Connection> {
        self.default.as_ref()
    }

    /// The per-exchange entries, by lowercase name.
    pub fn exchanges(&self) -> &BTreeMap<String, Connection> {
        &self.exchanges
    }

    /// Which source set each top-level value.
    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// Things worth knowing that are not errors (an ignored variable, say).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The exchange's entry and its stored (lowercase) name, matched case-insensitively
    /// without allocating for names up to 64 bytes.
    fn exchange(&self, name: &str) -> Option<(&str, &Connection)> {
        if let Some((k, c)) = self.exchanges.get_key_value(name) {
            return Some((k, c));
        }
        let mut buf = [0u8; 64];
        let lowered = buf.get_mut(..name.len()).and_then(|b| {
            b.copy_from_slice(name.as_bytes());
            b.make_ascii_lowercase();
            std::str::from_utf8(b).ok()
        });
        match lowered {
            Some(l) => self.exchanges.get_key_value(l),
            None => self
                .exchanges
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name)),
        }
        .map(|(k, c)| (k.as_str(), c))
    }

    /// Resolves `(exchange, transport)` as cryptofeed does: disabled is direct; then the
    /// exchange's entry for the transport (names match case-insensitively); then the
    /// default's; then direct. The entry is taken whole.
    pub fn route(&self, exchange: Option<&str>, transport: Transport) -> Route<'_> {
        if !self.enabled {
            return Route {
                upstream: None,
                origin: RouteOrigin::Disabled,
                source: self.sources.enabled,
            };
        }
        if let Some(name) = exchange {
            let found = self.exchange(name);
            if let Some((key, up)) = found.and_then(|(k, c)| c.upstream(transport).map(|u| (k, u)))
            {
                return Route {
                    upstream: Some(up),
                    origin: RouteOrigin::Exchange,
                    source: self.sources.exchanges.get(key).copied().unwrap_or_default(),
                };
            }
        }
        match self.default.as_ref().and_then(|d| d.upstream(transport)) {
            Some(up) => Route {
                upstream: Some(up),
                origin: RouteOrigin::Default,
                source: self.sources.default,
            },
            None => Route {
                upstream: None,
                origin: RouteOrigin::Unset,
                source: Source::Default,
            },
        }
    }
}
