//! The IPPool kind: one fixed-size block of `perNodeBlockSize` addresses of `spec.subnet` per
//! node, recorded as `{nodeName, startIP, endIP}`.
//!
//! Owns: [`IpPoolKind`]. Must not: hold the planner itself (`alloc::ippool_planner`).

use std::net::IpAddr;

use ipnet::IpNet;

use super::{Plan, PoolKind, sat};
use crate::alloc::NodePool;
use crate::alloc::ippool_planner::plan_ip_pool;
use crate::alloc::node_blocks::touching;
use crate::alloc::node_pool::NodePoolError;
use crate::api::{
    AnyAllocations, AnyPool, IpAllocation, IpPool, IpPoolSpec, IpPoolStatus, NodeBlock, NodeBlockSetSpec,
    ObjectMeta, PoolErrors, PoolKey, PoolType, ValidIpPool, ValidNodeSelector, validate_ip_pool,
};
use crate::ip::{self, Family, IpRange, host_count};

/// The IPPool kind.
#[derive(Debug, Clone, Copy)]
pub struct IpPoolKind;

impl PoolKind for IpPoolKind {
    const TYPE: PoolType = PoolType::IpPool;
    type Spec = IpPoolSpec;
    type Status = IpPoolStatus;
    type Pool = IpPool;
    type Valid = ValidIpPool;
    type Allocation = IpAllocation;

    fn of(pool: &AnyPool) -> Option<&IpPool> {
        match pool {
            AnyPool::Ip(p) => Some(p),
            _ => None,
        }
    }

    fn into_any(pool: IpPool) -> AnyPool {
        AnyPool::Ip(pool)
    }

    fn from_parts(
        api_version: String,
        kind: String,
        metadata: ObjectMeta,
        spec: IpPoolSpec,
        status: Option<IpPoolStatus>,
    ) -> IpPool {
        IpPool { api_version, kind, metadata, spec, status }
    }

    fn status_of(allocations: Vec<IpAllocation>) -> IpPoolStatus {
        IpPoolStatus { allocations }
    }

    fn set_allocations(pool: &mut IpPool, allocations: Vec<IpAllocation>) {
        pool.status = Some(Self::status_of(allocations));
    }

    fn into_any_allocations(a: Vec<IpAllocation>) -> AnyAllocations {
        AnyAllocations::Ip(a)
    }

    fn meta(pool: &IpPool) -> &ObjectMeta {
        &pool.metadata
    }

    fn allocations(pool: &IpPool) -> &[IpAllocation] {
        pool.allocations()
    }

    fn status(pool: &IpPool) -> Option<&[IpAllocation]> {
        pool.status.as_ref().map(|s| s.allocations.as_slice())
    }

    fn node_name(a: &IpAllocation) -> &str {
        &a.node_name
    }

    fn validate(pool: &IpPool) -> Result<ValidIpPool, PoolErrors> {
        validate_ip_pool(pool)
    }

    fn pool_name(v: &ValidIpPool) -> &str {
        &v.name
    }

    fn node_selector(v: &ValidIpPool) -> Option<&ValidNodeSelector> {
        v.node_selector.as_ref()
    }

    fn range_text(pool: &IpPool) -> &str {
        &pool.spec.subnet
    }

    fn net(v: &ValidIpPool) -> IpNet {
        v.subnet
    }

    fn capacity_and_size(v: &ValidIpPool) -> (u64, u64) {
        let host_bits = u32::from(v.subnet.max_prefix_len() - v.subnet.prefix_len());
        let size = 1u128.checked_shl(host_bits).unwrap_or(u128::MAX);
        let usable = host_count(Family::of_net(&v.subnet), v.subnet.prefix_len());
        (sat(usable / v.block_size.max(1)), sat(size))
    }

    fn placement_changes(old: &IpPool, new: &IpPool) -> Vec<&'static str> {
        let (o, n) = (&old.spec, &new.spec);
        [
            (o.subnet != n.subnet, "spec.subnet"),
            (o.per_node_block_size != n.per_node_block_size, "spec.perNodeBlockSize"),
            (o.gateway != n.gateway, "spec.gateway"),
            (o.exclusions != n.exclusions, "spec.exclusions"),
            (o.per_node_exclusions != n.per_node_exclusions, "spec.perNodeExclusions"),
        ]
        .into_iter()
        .filter_map(|(changed, field)| changed.then_some(field))
        .collect()
    }

    fn plan(v: &ValidIpPool, nodes: &[String], previous: &[IpAllocation]) -> Plan<IpAllocation> {
        let p = plan_ip_pool(v, nodes, previous);
        Plan { allocations: p.allocations, unallocated: p.unallocated }
    }

    /// The node's configuration from this node's status entry: the block must lie in the subnet.
    fn node_pool(pool: &ValidIpPool, node: &str, status: &[IpAllocation]) -> Result<NodePool, NodePoolError> {
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
        let exclusions = ip::clamp_and_merge(pool.exclusions.iter().copied().chain(per_node), &block);
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

    fn entry_differs(e: &IpAllocation, served: &NodePool) -> Option<String> {
        let now = e.start_ip.parse::<IpAddr>().ok().zip(e.end_ip.parse::<IpAddr>().ok());
        let same = now.and_then(|(s, e)| IpRange::new(s, e)) == Some(served.range);
        (!same).then(|| format!("{}-{}", e.start_ip, e.end_ip))
    }

    fn node_spec(spec: &IpPoolSpec, entry: &IpAllocation) -> IpPoolSpec {
        let block =
            entry.start_ip.parse().ok().zip(entry.end_ip.parse().ok()).and_then(|(s, e)| IpRange::new(s, e));
        IpPoolSpec {
            node_selector: None,
            exclusions: touching(&spec.exclusions, block.as_ref()),
            ..spec.clone()
        }
    }

    fn of_allocations(a: &AnyAllocations) -> Option<&[IpAllocation]> {
        match a {
            AnyAllocations::Ip(a) => Some(a),
            _ => None,
        }
    }

    fn node_blocks(set: &NodeBlockSetSpec) -> &[NodeBlock<IpPoolSpec, IpAllocation>] {
        &set.ip_pools
    }

    fn node_blocks_mut(set: &mut NodeBlockSetSpec) -> &mut Vec<NodeBlock<IpPoolSpec, IpAllocation>> {
        &mut set.ip_pools
    }

    fn spec(pool: &IpPool) -> &IpPoolSpec {
        &pool.spec
    }
}
