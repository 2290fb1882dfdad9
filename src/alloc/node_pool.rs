//! What one node allocates container IPs from, derived from a validated pool and its status
//! (as the reference's node does), plus standalone mode: a pool without status is planned as if
//! this node were the cluster's only node.
//!
//! Owns: the kind-generic steps ([`pool_for_node`], [`standalone_node_pool`],
//! [`node_pool_from`]) around each kind's `PoolKind::node_pool`, and [`NodePoolError`]. Does
//! better than the reference, which fails every ADD on overlapping exclusions: pool and
//! per-node exclusions come out clamped and merged, never overlapping. Must not: read the pool
//! from anywhere; callers pass it in.

use std::fmt;

use super::NodePool;
use super::cidrpool_planner::AllocationError;
use super::kind::PoolKind;
use crate::api::{Manifest, Object, PoolErrors, PoolKey};

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

/// Standalone mode for a pool with no status: the block/prefix the planner would give `node`
/// if it were the only node (for a CIDRPool, its static allocation or the first free prefix).
pub fn standalone_node_pool<K: PoolKind>(pool: &K::Valid, node: &str) -> Result<NodePool, NodePoolError> {
    let plan = K::plan(pool, &[node.to_string()], &[]);
    if plan.allocations.is_empty() {
        let key = PoolKey::new(K::TYPE, K::pool_name(pool));
        return Err(NodePoolError::NoFreeBlock { pool: key, node: node.to_string() });
    }
    K::node_pool(pool, node, &plan.allocations)
}

/// The configuration of `node`: from `status` when the pool has one, else standalone.
pub fn pool_for_node<K: PoolKind>(
    pool: &K::Valid,
    node: &str,
    status: Option<&[K::Allocation]>,
) -> Result<NodePool, NodePoolError> {
    match status {
        Some(s) => K::node_pool(pool, node, s),
        None => standalone_node_pool::<K>(pool, node),
    }
}

/// The node's configuration for a raw pool: validated, then from its status, or standalone
/// when the pool has no `status` at all (an empty status means "planned, not for this node").
pub fn node_pool_from<K: PoolKind>(pool: &K::Pool, node: &str) -> Result<NodePool, NodePoolError> {
    let v = K::validate(pool).map_err(|errors| NodePoolError::InvalidPool { errors })?;
    pool_for_node::<K>(&v, node, K::status(pool))
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
            Object::Pool(p) => crate::with_pool_kind!(p, p, K => node_pool_from::<K>(p, node)),
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
