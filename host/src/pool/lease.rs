//! Leases: one active connection through a proxy, counted while it lives, and the
//! dirty bits that tell a load-aware strategy which counts changed.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{self, SeqCst};

use super::{Outcome, Pool, PoolInner, ProxyId};
use crate::config::ProxyUrl;
use tokio::time::Instant;

/// A proxy's number of active leases at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseCount {
    /// The proxy.
    pub id: ProxyId,
    /// Its active leases.
    pub active: u32,
}

/// Which members' lease counts changed: one bit per member, and one bit per word of
/// those. A drain swaps the top level first, so a bit set during a drain is either
/// taken by it or left for the next.
pub(super) struct DirtyBits {
    leaves: Box<[AtomicU64]>,
    top: Box<[AtomicU64]>,
}

impl DirtyBits {
    pub(super) fn new(members: usize) -> DirtyBits {
        let words = members.div_ceil(64);
        let zeroes = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect();
        DirtyBits {
            leaves: zeroes(words),
            top: zeroes(words.div_ceil(64)),
        }
    }

    fn mark(&self, id: ProxyId) {
        let (w, b) = (id as usize / 64, id % 64);
        self.leaves[w].fetch_or(1 << b, SeqCst);
        // Set the summary bit even if another marker is about to: this lease must be
        // visible to the next drain once it returns.
        let (t, tb) = (w / 64, w % 64);
        if self.top[t].load(SeqCst) & (1 << tb) == 0 {
            self.top[t].fetch_or(1 << tb, SeqCst);
        }
    }

    pub(super) fn drain(&self, mut each: impl FnMut(ProxyId)) {
        for (t, top) in self.top.iter().enumerate() {
            let mut words = top.swap(0, SeqCst);
            while words != 0 {
                let w = t * 64 + words.trailing_zeros() as usize;
                words &= words - 1;
                let mut bits = self.leaves[w].swap(0, SeqCst);
                while bits != 0 {
                    each((w * 64) as ProxyId + bits.trailing_zeros());
                    bits &= bits - 1;
                }
            }
        }
    }
}

impl PoolInner {
    pub(super) fn count(&self, id: ProxyId, delta: i32) {
        // Count first, then look at the flag: if tracking was off at the look, it was
        // turned on later, and the fresh read that follows includes this change.
        self.members[id as usize]
            .cells
            .active
            .fetch_add(delta as u32, SeqCst);
        self.mark(id);
    }

    /// Marks `id`'s count changed here and in the pools that replaced this one.
    pub(super) fn mark(&self, id: ProxyId) {
        if self.tracking.load(SeqCst) {
            self.dirty.mark(id);
        }
        if let Some(next) = self.successor.get()
            && let Some(Some(new_id)) = next.ids.get(id as usize)
        {
            next.pool.mark(*new_id);
        }
    }
}

/// One active connection through a proxy. Owned by whatever holds the stream; the
/// count goes down when it drops, on every path (early returns and panics included).
pub struct Lease {
    pub(super) pool: Arc<PoolInner>,
    pub(super) id: ProxyId,
}

impl Lease {
    /// The proxy's id in its pool.
    pub fn id(&self) -> ProxyId {
        self.id
    }

    /// The proxy.
    pub fn url(&self) -> &ProxyUrl {
        &self.pool.members[self.id as usize].url
    }

    /// The pool it came from.
    pub fn pool(&self) -> Pool {
        Pool {
            inner: self.pool.clone(),
        }
    }

    /// Counts bytes relayed through this proxy (up: client → upstream).
    pub fn add_bytes(&self, up: u64, down: u64) {
        let m = &self.pool.members[self.id as usize];
        m.cells.bytes_up.fetch_add(up, Ordering::Relaxed);
        m.cells.bytes_down.fetch_add(down, Ordering::Relaxed);
    }

    /// A tunnel through this proxy went silent: its health task counts one failed
    /// observation and probes at once (see [`Pool::suspect`]).
    pub fn suspect(&self) {
        self.pool().suspect(self.id);
    }

    /// Reports what `exchange` said through this proxy (see [`Pool::report`]).
    pub fn report(&self, exchange: &str, outcome: Outcome) {
        self.pool()
            .report(self.id, exchange, outcome, Instant::now());
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("pool", &self.pool.name)
            .field("id", &self.id)
            .field("proxy", &self.pool.members[self.id as usize].label)
            .finish()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.pool.count(self.id, -1);
    }
}
