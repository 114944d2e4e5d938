//! Every metric family proxypool exports, in one table: the collectors name a family
//! from here, and `docs/gateway.md` lists each (a test holds the two together).

/// What a family's samples are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only grows; the name ends in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution of durations; the name ends in `_seconds`.
    Histogram,
}

/// One metric family: its name, its help line, its kind and the labels of every
/// sample in it, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Family {
    /// `proxypool_…` (or `process_…`, as the Prometheus client libraries name them).
    pub name: &'static str,
    /// One line of help.
    pub help: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// Label names, in the order each sample carries them.
    pub labels: &'static [&'static str],
}

/// `proxypool_proxy_up`.
pub(crate) const PROXY_UP: Family = Family {
    name: "proxypool_proxy_up",
    help: "1 if the proxy's health verdict is up.",
    kind: Kind::Gauge,
    labels: &["pool", "proxy"],
};

/// `proxypool_proxy_probed`.
pub(crate) const PROXY_PROBED: Family = Family {
    name: "proxypool_proxy_probed",
    help: "1 once a probe result has arrived.",
    kind: Kind::Gauge,
    labels: &["pool", "proxy"],
};

/// `proxypool_proxy_eligible`.
pub(crate) const PROXY_ELIGIBLE: Family = Family {
    name: "proxypool_proxy_eligible",
    help: "1 if picks may choose the proxy now.",
    kind: Kind::Gauge,
    labels: &["pool", "proxy"],
};

/// `proxypool_proxy_breaker_state`.
pub(crate) const PROXY_BREAKER_STATE: Family = Family {
    name: "proxypool_proxy_breaker_state",
    help: "0 closed, 1 half-open, 2 open.",
    kind: Kind::Gauge,
    labels: &["pool", "proxy"],
};

/// `proxypool_proxy_active_leases`.
pub(crate) const PROXY_ACTIVE_LEASES: Family = Family {
    name: "proxypool_proxy_active_leases",
    help: "Connections through the proxy now.",
    kind: Kind::Gauge,
    labels: &["pool", "proxy"],
};

/// `proxypool_proxy_bans`.
pub(crate) const PROXY_BANS: Family = Family {
    name: "proxypool_proxy_bans",
    help: "Exchanges the proxy is banned for now.",
    kind: Kind::Gauge,
    labels: &["pool", "proxy"],
};

/// `proxypool_proxy_picks_total`.
pub(crate) const PROXY_PICKS_TOTAL: Family = Family {
    name: "proxypool_proxy_picks_total",
    help: "Leases handed out on the proxy (each pick, failover and hedge dial).",
    kind: Kind::Counter,
    labels: &["pool", "proxy"],
};

/// `proxypool_proxy_bytes_total`.
pub(crate) const PROXY_BYTES_TOTAL: Family = Family {
    name: "proxypool_proxy_bytes_total",
    help: "Bytes relayed through the proxy by the gateway (up: client to upstream).",
    kind: Kind::Counter,
    labels: &["pool", "proxy", "direction"],
};

/// `proxypool_health_transitions_total`.
pub(crate) const HEALTH_TRANSITIONS_TOTAL: Family = Family {
    name: "proxypool_health_transitions_total",
    help: "Health transitions (up and down).",
    kind: Kind::Counter,
    labels: &["pool"],
};

/// `proxypool_breaker_opened_total`.
pub(crate) const BREAKER_OPENED_TOTAL: Family = Family {
    name: "proxypool_breaker_opened_total",
    help: "Breakers opened.",
    kind: Kind::Counter,
    labels: &["pool"],
};

/// `proxypool_breaker_half_opened_total`.
pub(crate) const BREAKER_HALF_OPENED_TOTAL: Family = Family {
    name: "proxypool_breaker_half_opened_total",
    help: "Breakers half-opened.",
    kind: Kind::Counter,
    labels: &["pool"],
};

/// `proxypool_breaker_closed_total`.
pub(crate) const BREAKER_CLOSED_TOTAL: Family = Family {
    name: "proxypool_breaker_closed_total",
    help: "Breakers closed.",
    kind: Kind::Counter,
    labels: &["pool"],
};

/// `proxypool_bans_total`.
pub(crate) const BANS_TOTAL: Family = Family {
    name: "proxypool_bans_total",
    help: "Bans reported by clients.",
    kind: Kind::Counter,
    labels: &["pool"],
};

/// `proxypool_misconfigured_total`.
pub(crate) const MISCONFIGURED_TOTAL: Family = Family {
    name: "proxypool_misconfigured_total",
    help: "Proxies that refused our credentials.",
    kind: Kind::Counter,
    labels: &["pool"],
};

/// `proxypool_gateway_accepted_total`.
pub(crate) const GATEWAY_ACCEPTED_TOTAL: Family = Family {
    name: "proxypool_gateway_accepted_total",
    help: "Client connections accepted, by listener and the protocol of their first byte.",
    kind: Kind::Counter,
    labels: &["listener", "protocol"],
};

/// `proxypool_gateway_rejected_total`.
pub(crate) const GATEWAY_REJECTED_TOTAL: Family = Family {
    name: "proxypool_gateway_rejected_total",
    help: "Client connections rejected (bad request, auth, unknown exchange, no tunnel).",
    kind: Kind::Counter,
    labels: &["listener", "protocol"],
};

/// `proxypool_gateway_tunnels_total`.
pub(crate) const GATEWAY_TUNNELS_TOTAL: Family = Family {
    name: "proxypool_gateway_tunnels_total",
    help: "Client connections that got a tunnel.",
    kind: Kind::Counter,
    labels: &["listener", "protocol"],
};

/// `proxypool_gateway_active_tunnels`.
pub(crate) const GATEWAY_ACTIVE_TUNNELS: Family = Family {
    name: "proxypool_gateway_active_tunnels",
    help: "Tunnels open now.",
    kind: Kind::Gauge,
    labels: &["listener", "protocol"],
};

/// `proxypool_runtime_alive_tasks`.
pub(crate) const RUNTIME_ALIVE_TASKS: Family = Family {
    name: "proxypool_runtime_alive_tasks",
    help: "Tasks alive in the gateway's runtime (connections, probes, watchers).",
    kind: Kind::Gauge,
    labels: &[],
};

/// `process_open_fds`.
pub(crate) const PROCESS_OPEN_FDS: Family = Family {
    name: "process_open_fds",
    help: "Open file descriptors.",
    kind: Kind::Gauge,
    labels: &[],
};

/// `process_resident_memory_bytes`.
pub(crate) const PROCESS_RESIDENT_MEMORY_BYTES: Family = Family {
    name: "process_resident_memory_bytes",
    help: "Resident memory.",
    kind: Kind::Gauge,
    labels: &[],
};

/// `proxypool_probes_total`.
pub(crate) const PROBES_TOTAL: Family = Family {
    name: "proxypool_probes_total",
    help: "Active health probes, by method and result.",
    kind: Kind::Counter,
    labels: &["pool", "method", "result"],
};

/// `proxypool_verdict_faults_total`.
pub(crate) const VERDICT_FAULTS_TOTAL: Family = Family {
    name: "proxypool_verdict_faults_total",
    help: "Health-verdict calls that faulted (no opinion), since the verdict was installed.",
    kind: Kind::Counter,
    labels: &["pool"],
};

/// `proxypool_strategy_generation`.
pub(crate) const STRATEGY_GENERATION: Family = Family {
    name: "proxypool_strategy_generation",
    help: "The installed strategy generation (1 for the first; each swap adds one).",
    kind: Kind::Gauge,
    labels: &["pool"],
};

/// `proxypool_strategy_quarantined`.
pub(crate) const STRATEGY_QUARANTINED: Family = Family {
    name: "proxypool_strategy_quarantined",
    help: "1 while the strategy generation is quarantined after repeated faults.",
    kind: Kind::Gauge,
    labels: &["pool"],
};

/// `proxypool_strategy_faults_total`.
pub(crate) const STRATEGY_FAULTS_TOTAL: Family = Family {
    name: "proxypool_strategy_faults_total",
    help: "Strategy calls that faulted (trap, deadline, memory, bad answer).",
    kind: Kind::Counter,
    labels: &["pool"],
};

/// `proxypool_strategy_fallback_picks_total`.
pub(crate) const STRATEGY_FALLBACK_PICKS_TOTAL: Family = Family {
    name: "proxypool_strategy_fallback_picks_total",
    help: "Picks the native fallback served while the strategy faulted.",
    kind: Kind::Counter,
    labels: &["pool"],
};

/// `proxypool_strategy_reloads_total`.
pub(crate) const STRATEGY_RELOADS_TOTAL: Family = Family {
    name: "proxypool_strategy_reloads_total",
    help: "Strategy and verdict file swaps, by result.",
    kind: Kind::Counter,
    labels: &["pool", "component", "result"],
};

/// `proxypool_connects_total`.
pub(crate) const CONNECTS_TOTAL: Family = Family {
    name: "proxypool_connects_total",
    help: "Tunnels opened through the pool.",
    kind: Kind::Counter,
    labels: &["pool"],
};

/// `proxypool_connects_failed_total`.
pub(crate) const CONNECTS_FAILED_TOTAL: Family = Family {
    name: "proxypool_connects_failed_total",
    help: "Connects through the pool that failed.",
    kind: Kind::Counter,
    labels: &["pool"],
};

/// `proxypool_failovers_total`.
pub(crate) const FAILOVERS_TOTAL: Family = Family {
    name: "proxypool_failovers_total",
    help: "Attempts moved to another proxy after a fault.",
    kind: Kind::Counter,
    labels: &["pool"],
};

/// `proxypool_hedges_total`.
pub(crate) const HEDGES_TOTAL: Family = Family {
    name: "proxypool_hedges_total",
    help: "Second dials raced against a slow first one.",
    kind: Kind::Counter,
    labels: &["pool"],
};

/// `proxypool_hedges_won_total`.
pub(crate) const HEDGES_WON_TOTAL: Family = Family {
    name: "proxypool_hedges_won_total",
    help: "Hedge dials that won.",
    kind: Kind::Counter,
    labels: &["pool"],
};

/// `proxypool_hedges_lost_total`.
pub(crate) const HEDGES_LOST_TOTAL: Family = Family {
    name: "proxypool_hedges_lost_total",
    help: "Hedge dials cancelled because the first won.",
    kind: Kind::Counter,
    labels: &["pool"],
};

/// `proxypool_all_down_total`.
pub(crate) const ALL_DOWN_TOTAL: Family = Family {
    name: "proxypool_all_down_total",
    help: "Connects that found no eligible proxy, by policy.",
    kind: Kind::Counter,
    labels: &["pool", "policy"],
};

/// `proxypool_pick_duration_seconds`.
pub(crate) const PICK_DURATION_SECONDS: Family = Family {
    name: "proxypool_pick_duration_seconds",
    help: "Time a pick takes: the strategy's answer and the breaker's admission.",
    kind: Kind::Histogram,
    labels: &["pool"],
};

/// `proxypool_connect_duration_seconds`.
pub(crate) const CONNECT_DURATION_SECONDS: Family = Family {
    name: "proxypool_connect_duration_seconds",
    help: "Time from the start of a connect to an open tunnel, failover and hedges included.",
    kind: Kind::Histogram,
    labels: &["pool"],
};

/// `proxypool_reloads_total`.
pub(crate) const RELOADS_TOTAL: Family = Family {
    name: "proxypool_reloads_total",
    help: "Configuration reloads, by result.",
    kind: Kind::Counter,
    labels: &["result"],
};

/// `proxypool_config_generation`.
pub(crate) const CONFIG_GENERATION: Family = Family {
    name: "proxypool_config_generation",
    help: "The configuration generation in force (1 at start; each applied reload adds one).",
    kind: Kind::Gauge,
    labels: &[],
};

/// Every family proxypool exports.
pub const FAMILIES: &[&Family] = &[
    &PROXY_UP,
    &PROXY_PROBED,
    &PROXY_ELIGIBLE,
    &PROXY_BREAKER_STATE,
    &PROXY_ACTIVE_LEASES,
    &PROXY_BANS,
    &PROXY_PICKS_TOTAL,
    &PROXY_BYTES_TOTAL,
    &HEALTH_TRANSITIONS_TOTAL,
    &BREAKER_OPENED_TOTAL,
    &BREAKER_HALF_OPENED_TOTAL,
    &BREAKER_CLOSED_TOTAL,
    &BANS_TOTAL,
    &MISCONFIGURED_TOTAL,
    &GATEWAY_ACCEPTED_TOTAL,
    &GATEWAY_REJECTED_TOTAL,
    &GATEWAY_TUNNELS_TOTAL,
    &GATEWAY_ACTIVE_TUNNELS,
    &RUNTIME_ALIVE_TASKS,
    &PROCESS_OPEN_FDS,
    &PROCESS_RESIDENT_MEMORY_BYTES,
    &PROBES_TOTAL,
    &VERDICT_FAULTS_TOTAL,
    &STRATEGY_GENERATION,
    &STRATEGY_QUARANTINED,
    &STRATEGY_FAULTS_TOTAL,
    &STRATEGY_FALLBACK_PICKS_TOTAL,
    &STRATEGY_RELOADS_TOTAL,
    &CONNECTS_TOTAL,
    &CONNECTS_FAILED_TOTAL,
    &FAILOVERS_TOTAL,
    &HEDGES_TOTAL,
    &HEDGES_WON_TOTAL,
    &HEDGES_LOST_TOTAL,
    &ALL_DOWN_TOTAL,
    &PICK_DURATION_SECONDS,
    &CONNECT_DURATION_SECONDS,
    &RELOADS_TOTAL,
    &CONFIG_GENERATION,
];
