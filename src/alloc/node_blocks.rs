//! What a node's NodeBlockSet holds, decided without I/O: for one node, every pool's entry
//! for it with the spec as it applies to it (`api::node_block_set` documents the object).
//!
//! The spec of a valid pool is trimmed to the node (`PoolKind::node_spec`): no `nodeSelector`,
//! only the exclusions that touch the node's block or prefix, only its own static allocations.
//! So an edit that concerns one node (an exclusion inside its block, its static allocation)
//! changes only that node's object, and an object stays small whatever the pool's lists hold.
//! What the node serves from the trimmed spec and its entry equals what it would serve from
//! the whole pool (tested below for both kinds). An invalid pool's spec is copied verbatim,
//! so that the node refuses it exactly as it would refuse the pool and keeps its last valid
//! configuration (`node::pools::derive`).
//!
//! Owns: [`desired`], [`Source`], [`touching`]. Must not: do I/O or decide allocations.

use crate::alloc::PoolKind;
use crate::api::{AnyAllocations, AnyPool, ExcludeRange, NodeBlock, NodeBlockSetSpec};
use crate::ip::IpRange;

/// One pool as the projection reads it.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub pool: &'a AnyPool,
    /// The spec passed validation; an invalid one is copied verbatim.
    pub valid: bool,
    /// Entries to project instead of the pool's status (a decision not written yet); `None`:
    /// the status. Either way sorted by node name (the planner's order, see `PoolKind::plan`).
    pub allocations: Option<&'a AnyAllocations>,
}

/// The NodeBlockSet spec of `node`: an entry for every source that holds one for it, each kind's
/// list sorted by pool name.
pub fn desired<'a>(node: &str, sources: impl IntoIterator<Item = Source<'a>>) -> NodeBlockSetSpec {
    let mut set = NodeBlockSetSpec::default();
    for s in sources {
        crate::with_pool_kind!(s.pool, p, K => push::<K>(&mut set, p, s, node));
    }
    set.ip_pools.sort_by(|a, b| a.name.cmp(&b.name));
    set.cidr_pools.sort_by(|a, b| a.name.cmp(&b.name));
    set
}

fn push<K: PoolKind>(set: &mut NodeBlockSetSpec, pool: &K::Pool, s: Source<'_>, node: &str) {
    let entries = match s.allocations {
        Some(a) => K::of_allocations(a).unwrap_or(&[]),
        None => K::allocations(pool),
    };
    let Some(entry) = find_sorted::<K>(entries, node) else { return };
    let spec = if s.valid { K::node_spec(K::spec(pool), entry) } else { K::spec(pool).clone() };
    K::node_blocks_mut(set).push(NodeBlock {
        name: K::meta(pool).name.clone(),
        spec,
        allocation: entry.clone(),
    });
}

/// The first entry of `node` in entries sorted by node name (binary search: a pool of 5,000
/// nodes is searched for each of 5,000 nodes).
fn find_sorted<'e, K: PoolKind>(entries: &'e [K::Allocation], node: &str) -> Option<&'e K::Allocation> {
    let i = entries.partition_point(|e| K::node_name(e) < node);
    entries.get(i).filter(|e| K::node_name(e) == node)
}

/// The exclusions that overlap `range`; all of them when the range or an exclusion does not
/// parse (never drop what validation would have to judge).
pub fn touching(exclusions: &[ExcludeRange], range: Option<&IpRange>) -> Vec<ExcludeRange> {
    let Some(range) = range else { return exclusions.to_vec() };
    exclusions
        .iter()
        .filter(|e| {
            let r = e.start_ip.parse().ok().zip(e.end_ip.parse().ok()).and_then(|(s, e)| IpRange::new(s, e));
            r.is_none_or(|r| r.intersect(range).is_some())
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests;
