//! Pure decisions: the per-node block/prefix planners (controller side), the node's pool
//! configuration derived from a pool and its status, and the container-IP allocator.
//!
//! Owns: what differs between pool kinds ([`kind::PoolKind`], one module per kind) and what a
//! node serves from one pool ([`NodePool`]). The kinds' names and a pool's key are `api::kind`'s.
//! Must not: do I/O, read clocks or spawn threads; callers pass time and state in.

use std::collections::HashSet;
use std::net::IpAddr;

use crate::api::PoolKey;
use crate::ip::{self, Family, IpRange};
use ipnet::IpNet;

pub mod cidrpool_planner;
pub mod ippool_planner;
pub mod kind;
pub mod node_blocks;
pub mod node_pool;

pub use cidrpool_planner::{AllocationError, CidrPlan, plan_cidr_pool, validate_allocation};
pub use ippool_planner::{IpPlan, plan_ip_pool};
pub use kind::{CidrPoolKind, IpPoolKind, Plan, PoolKind};
pub use node_pool::{NodePoolError, node_pool_from, node_pools, pool_for_node, standalone_node_pool};

/// What this node allocates container IPs from, for one pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePool {
    pub key: PoolKey,
    /// The pool's subnet (IPPool) or this node's prefix (CIDRPool): gives pod IPs their mask.
    pub subnet: IpNet,
    /// The block (IPPool) or the prefix's usable span (CIDRPool): `[rangeStart, rangeEnd]`.
    /// `allocateIPWithIndex` counts from its start.
    pub range: IpRange,
    pub gateway: Option<IpAddr>,
    /// Pool exclusions and per-node index exclusions as addresses, clamped to the block (IPPool;
    /// outside it they change nothing) or the prefix (CIDRPool) and
    /// merged (overlaps and adjacency joined; the reference fails every ADD on an overlap).
    pub exclusions: Vec<IpRange>,
    /// `spec.routes[].dst`, parsed.
    pub routes: Vec<IpNet>,
    pub default_gateway: bool,
}

impl NodePool {
    /// Addresses a round-robin ADD could still take: the range minus exclusions, the gateway
    /// and `unavailable` (reserved, or in their released-IP cooldown; an address in both
    /// counts once; addresses outside the range, e.g. static ones, take nothing from it).
    pub fn free_count(&self, unavailable: &HashSet<IpAddr>) -> u128 {
        let excluded = ip::covered_count(&self.exclusions, &self.range);
        let in_play =
            |a: IpAddr| self.range.contains(a) && ip::find_containing(&self.exclusions, a).is_none();
        let gw =
            self.gateway.filter(|g| Family::of(*g) == self.range.family() && in_play(*g)).is_some() as u128;
        let taken = unavailable.iter().filter(|a| in_play(**a) && Some(**a) != self.gateway).count() as u128;
        self.range.len().saturating_sub(excluded).saturating_sub(gw).saturating_sub(taken)
    }
}
pub mod allocator;
