//! Pure decisions: the per-node block/prefix planners (controller side), the node's pool
//! configuration derived from a pool and its status, and the container-IP allocator.
//!
//! Owns: the shared vocabulary of pools on a node ([`PoolType`], [`PoolKey`], [`NodePool`]).
//! Must not: do I/O, read clocks or spawn threads; callers pass time and state in.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::ip::IpRange;

pub mod cidrpool_planner;
pub mod ippool_planner;
pub mod node_pool;

pub use cidrpool_planner::{AllocationError, CidrPlan, plan_cidr_pool, validate_allocation};
pub use ippool_planner::{IpPlan, plan_ip_pool};
pub use node_pool::{
    NodePoolError, cidr_node_pool, cidr_pool_for_node, ip_node_pool, ip_pool_for_node,
    node_pool_from_cidr_pool, node_pool_from_ip_pool, node_pools, standalone_cidr_node_pool,
    standalone_ip_node_pool,
};

/// The two kinds of pool. Serialized lower-case (`ippool`, `cidrpool`) as in the CNI config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PoolType {
    #[default]
    #[serde(rename = "ippool")]
    IpPool,
    #[serde(rename = "cidrpool")]
    CidrPool,
}

impl PoolType {
    /// Case-insensitive `ippool` / `cidrpool`, as the reference's CNI config accepts.
    pub fn parse(s: &str) -> Option<PoolType> {
        match s.to_ascii_lowercase().as_str() {
            "ippool" => Some(PoolType::IpPool),
            "cidrpool" => Some(PoolType::CidrPool),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PoolType::IpPool => "ippool",
            PoolType::CidrPool => "cidrpool",
        }
    }
}

impl fmt::Display for PoolType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A pool's identity on a node: `name` for an IPPool, `cidrpool/name` for a CIDRPool (the
/// reference's keys, so that an IPPool and a CIDRPool may share a name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolKey {
    pub pool_type: PoolType,
    pub name: String,
}

impl PoolKey {
    pub fn new(pool_type: PoolType, name: impl Into<String>) -> PoolKey {
        PoolKey { pool_type, name: name.into() }
    }

    /// Parses the string form (`name` or `cidrpool/name`).
    pub fn parse(s: &str) -> PoolKey {
        match s.strip_prefix("cidrpool/") {
            Some(name) => PoolKey::new(PoolType::CidrPool, name),
            None => PoolKey::new(PoolType::IpPool, s),
        }
    }
}

impl fmt::Display for PoolKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pool_type {
            PoolType::IpPool => f.write_str(&self.name),
            PoolType::CidrPool => write!(f, "cidrpool/{}", self.name),
        }
    }
}

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
    /// Pool exclusions and per-node index exclusions as addresses, clamped to `subnet` and
    /// merged (overlaps and adjacency joined; the reference fails every ADD on an overlap).
    pub exclusions: Vec<IpRange>,
    /// `spec.routes[].dst`, parsed.
    pub routes: Vec<IpNet>,
    pub default_gateway: bool,
}
pub mod allocator;
