//! What differs between pool kinds, behind one trait (as netavark puts each network driver
//! behind one): validation, the per-node planner, what a node serves from its status entry,
//! capacity, and the spec fields that place blocks. Code above this module is written once,
//! generic over [`PoolKind`], and reaches a kind through [`with_pool_kind!`] (from a value) or
//! [`with_kind!`] (from a `PoolType`): the only `match`es over the kinds here, beside
//! `api::kind` (their fixed names) and `api::pool` (the any-kind values).
//!
//! Owns: [`PoolKind`], [`Plan`], the dispatch macros, and one module per kind ([`ippool`],
//! [`cidrpool`]). Must not: do I/O; callers pass pools, nodes and status in.

use std::fmt;

use ipnet::IpNet;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::NodePool;
use super::node_pool::NodePoolError;
use crate::api::{
    AnyAllocations, AnyPool, NodeBlock, NodeBlockSetSpec, ObjectMeta, PoolErrors, PoolType, ValidNodeSelector,
};

pub mod cidrpool;
pub mod ippool;

pub use cidrpool::CidrPoolKind;
pub use ippool::IpPoolKind;

/// A planner's decision for one pool of kind `A`'s entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan<A> {
    /// The new `status.allocations`, sorted by node name.
    pub allocations: Vec<A>,
    /// Nodes that got nothing (the kind's `NoFree*` Events), sorted.
    pub unallocated: Vec<String>,
}

/// One pool kind: its wire object, its validated form, its status entry, and the decisions
/// that differ between kinds. Implemented by a unit type per kind.
pub trait PoolKind: 'static {
    /// The kind's tag (its names are `TYPE.info()`).
    const TYPE: PoolType;
    /// `spec` as stored.
    type Spec: Clone + Default + PartialEq + fmt::Debug + Serialize + DeserializeOwned;
    /// `status` as the api types hold it (the allocations only).
    type Status: DeserializeOwned;
    /// The object as stored (`api`'s wire type).
    type Pool: Clone + PartialEq + fmt::Debug + Serialize + DeserializeOwned;
    /// The pool after validation: cannot be wrong.
    type Valid;
    /// One `status.allocations` entry.
    type Allocation: Clone + PartialEq + Eq + fmt::Debug + Serialize + DeserializeOwned;

    /// The pool out of the any-kind value; `None` for another kind.
    fn of(pool: &AnyPool) -> Option<&Self::Pool>;
    /// The pool as an any-kind value.
    fn into_any(pool: Self::Pool) -> AnyPool;
    /// The object from its parts (`status`: `None` when there is none).
    fn from_parts(
        api_version: String,
        kind: String,
        metadata: ObjectMeta,
        spec: Self::Spec,
        status: Option<Self::Status>,
    ) -> Self::Pool;
    /// A status holding `allocations`.
    fn status_of(allocations: Vec<Self::Allocation>) -> Self::Status;
    /// Replaces the pool's `status.allocations` (creating the status).
    fn set_allocations(pool: &mut Self::Pool, allocations: Vec<Self::Allocation>);
    /// A status list as an any-kind value.
    fn into_any_allocations(a: Vec<Self::Allocation>) -> AnyAllocations;
    fn meta(pool: &Self::Pool) -> &ObjectMeta;
    /// The status entries, empty when there is no status.
    fn allocations(pool: &Self::Pool) -> &[Self::Allocation];
    /// The status entries, `None` when the pool has no `status` at all (standalone mode).
    fn status(pool: &Self::Pool) -> Option<&[Self::Allocation]>;
    fn node_name(a: &Self::Allocation) -> &str;

    /// Checks every CRD rule; the errors name each field.
    fn validate(pool: &Self::Pool) -> Result<Self::Valid, PoolErrors>;
    /// `metadata.name`, as validated.
    fn pool_name(v: &Self::Valid) -> &str;
    fn node_selector(v: &Self::Valid) -> Option<&ValidNodeSelector>;
    /// The whole range (`TYPE.info().range_field`), as written (it may not parse).
    fn range_text(pool: &Self::Pool) -> &str;
    /// The whole range, validated.
    fn net(v: &Self::Valid) -> IpNet;
    /// (blocks or prefixes in total, addresses), both saturated at u64::MAX.
    fn capacity_and_size(v: &Self::Valid) -> (u64, u64);
    /// The spec fields that decide where entries lie and that differ between `old` and `new`.
    fn placement_changes(old: &Self::Pool, new: &Self::Pool) -> Vec<&'static str>;

    /// Plans `nodes` (any order; duplicates ignored), keeping the still valid entries of
    /// `previous`. Planning the output again returns it unchanged.
    fn plan(v: &Self::Valid, nodes: &[String], previous: &[Self::Allocation]) -> Plan<Self::Allocation>;
    /// What `node` serves from its entry of `status`.
    fn node_pool(v: &Self::Valid, node: &str, status: &[Self::Allocation])
    -> Result<NodePool, NodePoolError>;
    /// `entry` as text when it gives its node something other than `served` (for a log line).
    fn entry_differs(entry: &Self::Allocation, served: &NodePool) -> Option<String>;

    /// The spec of a valid pool as it applies to the node of `entry`: no `nodeSelector`, only
    /// the exclusions that touch the entry's block or prefix, only that node's static
    /// allocations. What the node serves from it with `entry` is what it would serve from the
    /// whole pool (`alloc::node_blocks` tests it).
    fn node_spec(spec: &Self::Spec, entry: &Self::Allocation) -> Self::Spec;
    /// This kind's entries of a NodeBlockSet.
    fn node_blocks(set: &NodeBlockSetSpec) -> &[NodeBlock<Self::Spec, Self::Allocation>];
    fn node_blocks_mut(set: &mut NodeBlockSetSpec) -> &mut Vec<NodeBlock<Self::Spec, Self::Allocation>>;
    /// The pool's spec.
    fn spec(pool: &Self::Pool) -> &Self::Spec;
    /// This kind's entries out of an any-kind list; `None` for another kind.
    fn of_allocations(a: &AnyAllocations) -> Option<&[Self::Allocation]>;
}

/// Runs `$body` with `$p` bound to the pool inside `$pool` and `$K` naming its kind's
/// [`PoolKind`] type. `$pool` is an `AnyPool` (or a reference to one); `Enum: $pool` names
/// another enum with one variant per kind, named as `AnyPool`'s (`Ip`, `Cidr`). This and
/// [`with_kind!`] are the only `match`es over the kinds: a new kind adds its arm to both.
#[macro_export]
macro_rules! with_pool_kind {
    ($E:ident : $pool:expr, $p:ident, $K:ident => $body:expr) => {
        match $pool {
            $E::Ip($p) => {
                type $K = $crate::alloc::kind::IpPoolKind;
                $body
            }
            $E::Cidr($p) => {
                type $K = $crate::alloc::kind::CidrPoolKind;
                $body
            }
        }
    };
    ($pool:expr, $p:ident, $K:ident => $body:expr) => {{
        use $crate::api::AnyPool;
        $crate::with_pool_kind!(AnyPool: $pool, $p, $K => $body)
    }};
}

/// Runs `$body` with `$K` naming the [`PoolKind`] type of `$t` (a `PoolType`).
#[macro_export]
macro_rules! with_kind {
    ($t:expr, $K:ident => $body:expr) => {
        match $t {
            $crate::api::PoolType::IpPool => {
                type $K = $crate::alloc::kind::IpPoolKind;
                $body
            }
            $crate::api::PoolType::CidrPool => {
                type $K = $crate::alloc::kind::CidrPoolKind;
                $body
            }
        }
    };
}

/// Saturates a count at u64::MAX (metrics are u64).
pub(crate) fn sat(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CidrPool, IpPool};

    fn type_of<K: PoolKind>() -> PoolType {
        K::TYPE
    }

    #[test]
    fn dispatch_reaches_the_kind_of_the_tag_and_of_the_value() {
        for t in PoolType::ALL {
            assert_eq!(crate::with_kind!(t, K => type_of::<K>()), t);
        }
        let pools = [AnyPool::Ip(IpPool::default()), AnyPool::Cidr(CidrPool::default())];
        for p in &pools {
            let (t, back) = crate::with_pool_kind!(p, q, K => (K::TYPE, K::of(&K::into_any(q.clone())).cloned().map(K::into_any)));
            assert_eq!(t, p.pool_type(), "{p:?}");
            assert_eq!(back.as_ref(), Some(p), "of(into_any(p)) is p");
        }
        assert!(IpPoolKind::of(&pools[1]).is_none() && CidrPoolKind::of(&pools[0]).is_none());
    }
}
