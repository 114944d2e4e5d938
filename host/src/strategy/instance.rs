//! One live strategy store: the host functions a guest may call, the pick context,
//! and the calls into the guest with their deadlines and limits.

use super::*;

/// What a guest sees of the host.
pub(super) struct HostState {
    pub(super) limits: StoreLimits,
    pub(super) rng: u64,
    /// The pool a selection instance serves, for `handshake-latency-us`.
    pub(super) pool: Option<crate::pool::Pool>,
    pub(super) clock: Arc<EpochClock>,
}

/// Before a guest call: the deadline, `ticks` from now, and a ticking clock.
pub(super) fn arm(store: &mut Store<HostState>, ticks: u64) {
    store.data().clock.enter();
    store.set_epoch_deadline(ticks);
}

impl bindings::proxypool::strategy::types::Host for HostState {}

impl bindings::proxypool::strategy::host::Host for HostState {
    fn random(&mut self) -> u64 {
        splitmix64(&mut self.rng)
    }

    fn handshake_latency_us(&mut self, id: ProxyId) -> u32 {
        self.pool
            .as_ref()
            .and_then(|p| p.members().get(id as usize))
            .map_or(0, |m| m.latency_us())
    }
}

/// The context of one pick, borrowed: building it allocates nothing.
#[derive(Clone, Copy, Debug)]
pub struct PickContext<'a> {
    /// The exchange (lowercase), or "default".
    pub exchange: &'a str,
    /// The transport.
    pub transport: crate::config::Transport,
    /// 0 for a connection's first pick, then 1, 2, … for retries.
    pub attempt: u32,
    /// Proxies already tried for this connection.
    pub tried: &'a [ProxyId],
    /// An optional affinity key.
    pub affinity: Option<u64>,
}

impl<'a> PickContext<'a> {
    /// The first pick of a connection: nothing tried yet, no affinity key.
    pub const fn first(exchange: &'a str, transport: crate::config::Transport) -> Self {
        PickContext {
            exchange,
            transport,
            attempt: 0,
            tried: &[],
            affinity: None,
        }
    }
}

/// One live instance of a strategy. Not `Sync`: the pool serialises calls.
pub struct Instance {
    pub(super) store: Store<HostState>,
    pub(super) bindings: wit_selector::Guest,
    /// Reused for every pick's lease counts.
    pub(super) leases: Vec<WitLeaseCount>,
    pub(super) ticks: u64,
    pub(super) update_ticks: u64,
}

impl fmt::Debug for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instance").finish_non_exhaustive()
    }
}

impl Instance {
    /// Replaces the eligible set (see the WIT for the meaning of each list).
    pub fn set_candidates(
        &mut self,
        ids: &[ProxyId],
        weights: &[u32],
        active: &[u32],
    ) -> Result<(), Fault> {
        arm(&mut self.store, self.update_ticks);
        self.bindings
            .call_set_candidates(&mut self.store, ids, weights, active)
            .map_err(|e| Fault::from_wasmtime(&e))
    }

    /// The guest's raw answer to one pick, given the lease counts that changed since
    /// the last call; the caller checks it against the eligible set (`check_pick`).
    pub fn pick(
        &mut self,
        ctx: PickContext<'_>,
        leases: &[LeaseCount],
    ) -> Result<Option<ProxyId>, Fault> {
        arm(&mut self.store, self.ticks);
        self.leases.clear();
        self.leases.extend(leases.iter().map(|l| WitLeaseCount {
            id: l.id,
            active: l.active,
        }));
        let wit = bindings::proxypool::strategy::types::PickContext {
            exchange: ctx.exchange,
            transport: match ctx.transport {
                crate::config::Transport::Http => WitTransport::Http,
                crate::config::Transport::Websocket => WitTransport::Websocket,
            },
            attempt: ctx.attempt,
            tried: ctx.tried,
            affinity: ctx.affinity,
            leases: &self.leases,
        };
        self.bindings
            .call_pick(&mut self.store, wit)
            .map_err(|e| Fault::from_wasmtime(&e))
    }

    /// Up to `max` upcoming picks; empty for load-dependent strategies.
    pub fn pick_batch(&mut self, max: u32) -> Result<Vec<ProxyId>, Fault> {
        arm(&mut self.store, self.ticks);
        let batch = self
            .bindings
            .call_pick_batch(&mut self.store, max)
            .map_err(|e| Fault::from_wasmtime(&e))?;
        if batch.len() > max as usize {
            return Err(Fault::Trap(format!(
                "pick-batch returned {} ids for max {max}",
                batch.len()
            )));
        }
        Ok(batch)
    }
}

/// Checks a guest's answer: an eligible, untried id, or none only when nothing is left.
/// `eligible(id)` must be O(1).
pub(crate) fn check_pick(
    answer: Option<ProxyId>,
    tried: &[ProxyId],
    eligible: impl Fn(ProxyId) -> bool,
    untried_left: bool,
) -> Result<Option<ProxyId>, Fault> {
    match answer {
        Some(id) if !eligible(id) => Err(Fault::NotEligible(id)),
        Some(id) if tried.contains(&id) => Err(Fault::AlreadyTried(id)),
        None if untried_left => Err(Fault::NoneWithEligible),
        ok => Ok(ok),
    }
}
