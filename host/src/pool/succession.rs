//! What a reload does to a pool's members: which new member is which old one, the
//! link from a replaced pool to its successor, and the bans that carry over.

use std::sync::Arc;

use super::{Ban, Member, Pool, PoolInner, ProxyId};
use crate::config::ProxyUrl;
use crate::sync::Locked as _;

/// Where a replaced pool's changes go on to.
pub(super) struct Successor {
    /// Strong: a pool replaced twice must still reach the newest through the one
    /// between, which nothing else holds. Only forward, so no cycle.
    pub(super) pool: Arc<PoolInner>,
    /// Old id → new id, for the members that stayed.
    pub(super) ids: Vec<Option<ProxyId>>,
}

/// What a reload did to a pool's members.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Succession {
    /// (old id, new id) of each member that stayed, with its state.
    pub kept: Vec<(ProxyId, ProxyId)>,
    /// New ids of members that are new.
    pub added: Vec<ProxyId>,
    /// Old ids of members that left (they drain).
    pub removed: Vec<ProxyId>,
}

/// Which old member each new member is ([`ProxyUrl::same_member`], first match
/// first), and the succession that makes.
pub(crate) fn match_members(
    old: &[&ProxyUrl],
    new: &[&ProxyUrl],
) -> (Vec<Option<usize>>, Succession) {
    let mut taken = vec![false; old.len()];
    let mut succession = Succession::default();
    let found = new
        .iter()
        .enumerate()
        .map(|(i, url)| {
            let j = (0..old.len()).find(|&j| !taken[j] && old[j].same_member(url));
            match j {
                Some(j) => {
                    taken[j] = true;
                    succession.kept.push((j as ProxyId, i as ProxyId));
                }
                None => succession.added.push(i as ProxyId),
            }
            j
        })
        .collect();
    succession.removed = (0..old.len() as ProxyId)
        .filter(|j| !taken[*j as usize])
        .collect();
    (found, succession)
}

/// The bans of `previous` that stay with their members in a pool of `members`: a
/// timed ban stays; a geo-block lasts until the member changes (another password
/// may mean another exit region).
pub(super) fn carry_bans(previous: &Pool, succession: &Succession, members: &[Member]) -> Vec<Ban> {
    previous
        .inner
        .bans
        .locked()
        .iter()
        .filter_map(|b| {
            let (_, new) = succession.kept.iter().find(|(o, _)| *o == b.id)?;
            let changed = previous.inner.members[b.id as usize].url != members[*new as usize].url;
            if b.until.is_none() && changed {
                return None;
            }
            Some(Ban {
                id: *new,
                ..b.clone()
            })
        })
        .collect()
}
