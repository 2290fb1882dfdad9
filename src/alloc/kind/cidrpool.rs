//! The CIDRPool kind: one `/perNodeNetworkPrefix` prefix of `spec.cidr` per node (or its static
//! allocation), recorded as `{nodeName, prefix, gateway?}`.
//!
//! Owns: [`CidrPoolKind`]. Must not: hold the planner itself (`alloc::cidrpool_planner`).

use std::net::IpAddr;

use ipnet::IpNet;

use super::{Plan, PoolKind, sat};
use crate::alloc::NodePool;
use crate::alloc::cidrpool_planner::{plan_cidr_pool, validate_allocation};
use crate::alloc::node_blocks::touching;
use crate::alloc::node_pool::NodePoolError;
use crate::api::{
    AnyAllocations, AnyPool, CidrAllocation, CidrPool, CidrPoolSpec, CidrPoolStatus, NodeBlock,
    NodeBlockSetSpec, ObjectMeta, PoolErrors, PoolKey, PoolType, ValidCidrPool, ValidNodeSelector,
    validate_cidr_pool,
};
use crate::ip::{self, IpRange};

/// The CIDRPool kind.
#[derive(Debug, Clone, Copy)]
pub struct CidrPoolKind;

impl PoolKind for CidrPoolKind {
    const TYPE: PoolType = PoolType::CidrPool;
    type Spec = CidrPoolSpec;
    type Status = CidrPoolStatus;
    type Pool = CidrPool;
    type Valid = ValidCidrPool;
    type Allocation = CidrAllocation;

    fn of(pool: &AnyPool) -> Option<&CidrPool> {
        match pool {
            AnyPool::Cidr(p) => Some(p),
            _ => None,
        }
    }

    fn into_any(pool: CidrPool) -> AnyPool {
        AnyPool::Cidr(pool)
    }

    fn from_parts(
        api_version: String,
        kind: String,
        metadata: ObjectMeta,
        spec: CidrPoolSpec,
        status: Option<CidrPoolStatus>,
    ) -> CidrPool {
        CidrPool { api_version, kind, metadata, spec, status }
    }

    fn status_of(allocations: Vec<CidrAllocation>) -> CidrPoolStatus {
        CidrPoolStatus { allocations }
    }

    fn set_allocations(pool: &mut CidrPool, allocations: Vec<CidrAllocation>) {
        pool.status = Some(Self::status_of(allocations));
    }

    fn into_any_allocations(a: Vec<CidrAllocation>) -> AnyAllocations {
        AnyAllocations::Cidr(a)
    }

    fn meta(pool: &CidrPool) -> &ObjectMeta {
        &pool.metadata
    }

    fn allocations(pool: &CidrPool) -> &[CidrAllocation] {
        pool.allocations()
    }

    fn status(pool: &CidrPool) -> Option<&[CidrAllocation]> {
        pool.status.as_ref().map(|s| s.allocations.as_slice())
    }

    fn node_name(a: &CidrAllocation) -> &str {
        &a.node_name
    }

    fn validate(pool: &CidrPool) -> Result<ValidCidrPool, PoolErrors> {
        validate_cidr_pool(pool)
    }

    fn pool_name(v: &ValidCidrPool) -> &str {
        &v.name
    }

    fn node_selector(v: &ValidCidrPool) -> Option<&ValidNodeSelector> {
        v.node_selector.as_ref()
    }

    fn range_text(pool: &CidrPool) -> &str {
        &pool.spec.cidr
    }

    fn net(v: &ValidCidrPool) -> IpNet {
        v.cidr
    }

    fn capacity_and_size(v: &ValidCidrPool) -> (u64, u64) {
        let bits = u32::from(v.prefix_len.saturating_sub(v.cidr.prefix_len()));
        let size = 1u128.checked_shl(u32::from(v.cidr.max_prefix_len() - v.cidr.prefix_len()));
        (sat(1u128.checked_shl(bits).unwrap_or(u128::MAX)), sat(size.unwrap_or(u128::MAX)))
    }

    fn placement_changes(old: &CidrPool, new: &CidrPool) -> Vec<&'static str> {
        let (o, n) = (&old.spec, &new.spec);
        [
            (o.cidr != n.cidr, "spec.cidr"),
            (o.per_node_network_prefix != n.per_node_network_prefix, "spec.perNodeNetworkPrefix"),
            (o.gateway_index != n.gateway_index, "spec.gatewayIndex"),
            (o.exclusions != n.exclusions, "spec.exclusions"),
            (o.per_node_exclusions != n.per_node_exclusions, "spec.perNodeExclusions"),
            (o.static_allocations != n.static_allocations, "spec.staticAllocations"),
        ]
        .into_iter()
        .filter_map(|(changed, field)| changed.then_some(field))
        .collect()
    }

    fn plan(v: &ValidCidrPool, nodes: &[String], previous: &[CidrAllocation]) -> Plan<CidrAllocation> {
        let p = plan_cidr_pool(v, nodes, previous);
        Plan { allocations: p.allocations, unallocated: p.unallocated }
    }

    /// The node's configuration from this node's status entry, which must pass
    /// `validateAllocation` against the whole status (as the reference's node does).
    fn node_pool(
        pool: &ValidCidrPool,
        node: &str,
        status: &[CidrAllocation],
    ) -> Result<NodePool, NodePoolError> {
        let key = PoolKey::new(PoolType::CidrPool, pool.name.clone());
        let index = status
            .iter()
            .position(|e| e.node_name == node)
            .ok_or_else(|| NodePoolError::NoAllocation { pool: key.clone(), node: node.to_string() })?;
        let v = validate_allocation(pool, status, index).map_err(|reason| {
            NodePoolError::InvalidAllocation { pool: key.clone(), node: node.to_string(), reason }
        })?;
        Ok(pool_for_prefix(pool, key, v.prefix, v.gateway))
    }

    fn entry_differs(e: &CidrAllocation, served: &NodePool) -> Option<String> {
        let same = e.prefix.parse::<IpNet>().ok() == Some(served.subnet);
        (!same).then(|| e.prefix.clone())
    }

    fn node_spec(spec: &CidrPoolSpec, entry: &CidrAllocation) -> CidrPoolSpec {
        let prefix = entry.prefix.parse::<IpNet>().ok().map(|p| IpRange::of_net(&p.trunc()));
        CidrPoolSpec {
            node_selector: None,
            exclusions: touching(&spec.exclusions, prefix.as_ref()),
            static_allocations: spec
                .static_allocations
                .iter()
                .filter(|s| s.node_name == entry.node_name)
                .cloned()
                .collect(),
            ..spec.clone()
        }
    }

    fn of_allocations(a: &AnyAllocations) -> Option<&[CidrAllocation]> {
        match a {
            AnyAllocations::Cidr(a) => Some(a),
            _ => None,
        }
    }

    fn node_blocks(set: &NodeBlockSetSpec) -> &[NodeBlock<CidrPoolSpec, CidrAllocation>] {
        &set.cidr_pools
    }

    fn node_blocks_mut(set: &mut NodeBlockSetSpec) -> &mut Vec<NodeBlock<CidrPoolSpec, CidrAllocation>> {
        &mut set.cidr_pools
    }

    fn spec(pool: &CidrPool) -> &CidrPoolSpec {
        &pool.spec
    }
}

fn pool_for_prefix(pool: &ValidCidrPool, key: PoolKey, prefix: IpNet, gateway: Option<IpAddr>) -> NodePool {
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
