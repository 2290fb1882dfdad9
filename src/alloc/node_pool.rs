//! What one node allocates container IPs from, derived from a validated pool and its status
//! (reference §2.4), plus standalone mode: a pool without status is planned as if this node
//! were the cluster's only node.
//!
//! Owns: [`ip_node_pool`], [`cidr_node_pool`], [`standalone_ip_node_pool`],
//! [`standalone_cidr_node_pool`], [`NodePoolError`]. Does better than the reference on W11:
//! pool and per-node exclusions come out clamped and merged, never overlapping. Must not: read
//! the pool from anywhere; callers pass it in.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use super::NodePool;
use super::cidrpool_planner::{AllocationError, plan_cidr_pool, validate_allocation};
use super::ippool_planner::plan_ip_pool;
use crate::api::{
    CidrAllocation, CidrPool, IpAllocation, IpPool, Manifest, Object, PoolErrors, ValidCidrPool, ValidIpPool,
    validate_cidr_pool, validate_ip_pool,
};
use crate::api::{PoolKey, PoolType};
use crate::ip::{self, IpRange};

/// Why a node has no configuration for a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodePoolError {
    /// The status holds no entry for this node (not selected, or not planned yet).
    NoAllocation { pool: PoolKey, node: String },
    /// The IPPool status entry does not describe a block of the subnet.
    BadBlock { pool: PoolKey, node: String, start: String, end: String },
    /// The CIDRPool status entry failed `validateAllocation`.
    InvalidAllocation { pool: PoolKey, node: String, reason: AllocationError },
    /// Standalone planning found no free block/prefix for this node.
    NoFreeBlock { pool: PoolKey, node: String },
    /// The pool's spec breaks a CRD rule; the node serves nothing from it.
    InvalidPool { errors: PoolErrors },
}

impl fmt::Display for NodePoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodePoolError::NoAllocation { pool, node } => write!(
                f,
                "pool {pool}: status has no allocation for node {node}: check the pool's nodeSelector and \
                 that ipam-controller runs"
            ),
            NodePoolError::BadBlock { pool, node, start, end } => write!(
                f,
                "pool {pool}: allocation {start}-{end} of node {node} is not a range of the subnet: let \
                 ipam-controller re-plan it"
            ),
            NodePoolError::InvalidAllocation { pool, node, reason } => write!(
                f,
                "pool {pool}: allocation of node {node} is invalid ({reason}): let ipam-controller re-plan it"
            ),
            NodePoolError::InvalidPool { errors } => write!(f, "{errors}"),
            NodePoolError::NoFreeBlock { pool, node } => {
                write!(f, "pool {pool}: no free block for node {node}: enlarge the pool or shrink its blocks")
            }
        }
    }
}

impl std::error::Error for NodePoolError {}

/// The node's configuration for an IPPool from this node's status entry.
pub fn ip_node_pool(
    pool: &ValidIpPool,
    node: &str,
    status: &[IpAllocation],
) -> Result<NodePool, NodePoolError> {
    let key = PoolKey::new(PoolType::IpPool, pool.name.clone());
    let e = status
        .iter()
        .find(|e| e.node_name == node)
        .ok_or_else(|| NodePoolError::NoAllocation { pool: key.clone(), node: node.to_string() })?;
    let bad = || NodePoolError::BadBlock {
        pool: key.clone(),
        node: node.to_string(),
        start: e.start_ip.clone(),
        end: e.end_ip.clone(),
    };
    let start: IpAddr = e.start_ip.parse().map_err(|_| bad())?;
    let end: IpAddr = e.end_ip.parse().map_err(|_| bad())?;
    let block = IpRange::new(start, end).ok_or_else(bad)?;
    let subnet_span = IpRange::of_net(&pool.subnet);
    if !subnet_span.covers(&block) {
        return Err(bad());
    }
    let per_node = pool.per_node_exclusions.iter().filter_map(|r| r.to_ip_range(start, &block));
    let exclusions = ip::clamp_and_merge(pool.exclusions.iter().copied().chain(per_node), &subnet_span);
    Ok(NodePool {
        key,
        subnet: pool.subnet,
        range: block,
        gateway: pool.gateway,
        exclusions,
        routes: pool.routes.clone(),
        default_gateway: pool.default_gateway,
    })
}

/// The node's configuration for a CIDRPool from this node's status entry, which must pass
/// `validateAllocation` against the whole status (as the reference's node does).
pub fn cidr_node_pool(
    pool: &ValidCidrPool,
    node: &str,
    status: &[CidrAllocation],
) -> Result<NodePool, NodePoolError> {
    let key = PoolKey::new(PoolType::CidrPool, pool.name.clone());
    let index = status
        .iter()
        .position(|e| e.node_name == node)
        .ok_or_else(|| NodePoolError::NoAllocation { pool: key.clone(), node: node.to_string() })?;
    let v = validate_allocation(pool, status, index).map_err(|reason| NodePoolError::InvalidAllocation {
        pool: key.clone(),
        node: node.to_string(),
        reason,
    })?;
    Ok(cidr_pool_for_prefix(pool, key, v.prefix, v.gateway))
}

fn cidr_pool_for_prefix(
    pool: &ValidCidrPool,
    key: PoolKey,
    prefix: IpNet,
    gateway: Option<IpAddr>,
) -> NodePool {
    let first = ip::add(prefix.network(), ip::first_usable_offset(&prefix)).unwrap_or(prefix.network());
    let range =
        IpRange::new(first, ip::last_ip(&prefix)).expect("network+1 <= lastIP for prefixes wider than /31");
    let whole = IpRange::of_net(&prefix);
    let per_node = pool.per_node_exclusions.iter().filter_map(|r| r.to_ip_range(prefix.network(), &whole));
    let exclusions = ip::clamp_and_merge(pool.exclusions.iter().copied().chain(per_node), &whole);
    NodePool {
        key,
        subnet: prefix,
        range,
        gateway,
        exclusions,
        routes: pool.routes.clone(),
        default_gateway: pool.default_gateway,
    }
}

/// Standalone mode for an IPPool with no status: the block the planner would give `node` if it
/// were the only node.
pub fn standalone_ip_node_pool(pool: &ValidIpPool, node: &str) -> Result<NodePool, NodePoolError> {
    let plan = plan_ip_pool(pool, &[node.to_string()], &[]);
    if plan.allocations.is_empty() {
        let key = PoolKey::new(PoolType::IpPool, pool.name.clone());
        return Err(NodePoolError::NoFreeBlock { pool: key, node: node.to_string() });
    }
    ip_node_pool(pool, node, &plan.allocations)
}

/// Standalone mode for a CIDRPool with no status: the prefix the planner would give `node` if
/// it were the only node (its static allocation, or the first free prefix).
pub fn standalone_cidr_node_pool(pool: &ValidCidrPool, node: &str) -> Result<NodePool, NodePoolError> {
    let plan = plan_cidr_pool(pool, &[node.to_string()], &[]);
    if plan.allocations.is_empty() {
        let key = PoolKey::new(PoolType::CidrPool, pool.name.clone());
        return Err(NodePoolError::NoFreeBlock { pool: key, node: node.to_string() });
    }
    cidr_node_pool(pool, node, &plan.allocations)
}

/// The IPPool configuration of `node`: from `status` when the pool has one, else standalone.
pub fn ip_pool_for_node(
    pool: &ValidIpPool,
    node: &str,
    status: Option<&[IpAllocation]>,
) -> Result<NodePool, NodePoolError> {
    match status {
        Some(s) => ip_node_pool(pool, node, s),
        None => standalone_ip_node_pool(pool, node),
    }
}

/// The CIDRPool configuration of `node`: from `status` when the pool has one, else standalone.
pub fn cidr_pool_for_node(
    pool: &ValidCidrPool,
    node: &str,
    status: Option<&[CidrAllocation]>,
) -> Result<NodePool, NodePoolError> {
    match status {
        Some(s) => cidr_node_pool(pool, node, s),
        None => standalone_cidr_node_pool(pool, node),
    }
}

/// The node's configuration for a raw IPPool: validated, then from its status, or standalone
/// when the pool has no `status` at all (an empty status means "planned, not for this node").
pub fn node_pool_from_ip_pool(pool: &IpPool, node: &str) -> Result<NodePool, NodePoolError> {
    let v = validate_ip_pool(pool).map_err(|errors| NodePoolError::InvalidPool { errors })?;
    ip_pool_for_node(&v, node, pool.status.as_ref().map(|s| s.allocations.as_slice()))
}

/// The node's configuration for a raw CIDRPool, as [`node_pool_from_ip_pool`].
pub fn node_pool_from_cidr_pool(pool: &CidrPool, node: &str) -> Result<NodePool, NodePoolError> {
    let v = validate_cidr_pool(pool).map_err(|errors| NodePoolError::InvalidPool { errors })?;
    cidr_pool_for_node(&v, node, pool.status.as_ref().map(|s| s.allocations.as_slice()))
}

/// Every pool of a manifest for `node`: the configurations it can serve, and why each other
/// pool gives it nothing (a pool that does not select this node shows up as `NoAllocation`).
/// Node selectors are not applied here: in a cluster the status already reflects them, and in
/// standalone mode the node's labels are not known.
pub fn node_pools(manifest: &Manifest, node: &str) -> (Vec<NodePool>, Vec<NodePoolError>) {
    let mut pools = Vec::new();
    let mut errors = Vec::new();
    for o in &manifest.objects {
        let r = match o {
            Object::IpPool(p) => node_pool_from_ip_pool(p, node),
            Object::CidrPool(p) => node_pool_from_cidr_pool(p, node),
            Object::Node(_) => continue,
        };
        match r {
            Ok(p) => pools.push(p),
            Err(e) => errors.push(e),
        }
    }
    (pools, errors)
}

#[cfg(test)]
mod tests;
