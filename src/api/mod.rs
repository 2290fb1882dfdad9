//! The Kubernetes-facing data: IPPool, CIDRPool and Node as serde types with the reference's
//! wire names (`nv-ipam.nvidia.com/v1alpha1`), manifest decoding, and validation into types
//! that cannot be wrong.
//!
//! Owns: the pool kinds and their fixed names ([`kind`]), the raw wire shapes ([`IpPool`],
//! [`CidrPool`], [`Node`]), a pool of any kind as one value ([`pool`]), the status both kinds
//! share ([`status`]: conditions, allocatedNodes), the parse step from raw to validated
//! ([`validate`]), node selection ([`selector`]) and reading manifests ([`manifest`]). Must not: plan allocations (that is `alloc`), or do any I/O; callers pass
//! text in and get values out.

pub mod cidrpool;
pub mod exclusion;
pub mod ippool;
pub mod kind;
pub mod manifest;
pub mod meta;
pub mod node;
pub mod node_block_set;
pub mod pool;
pub mod route;
pub mod selector;
pub mod status;
pub mod validate;

pub use cidrpool::{CidrAllocation, CidrPool, CidrPoolSpec, CidrPoolStatus, StaticAllocation};
pub use exclusion::{ExcludeIndexRange, ExcludeRange, IndexRange};
pub use ippool::{IpAllocation, IpPool, IpPoolSpec, IpPoolStatus};
pub use kind::{KindInfo, PoolKey, PoolType};
pub use manifest::{Manifest, ManifestError, Object, decode};
pub use meta::ObjectMeta;
pub use node::Node;
pub use node_block_set::{KIND_NODE_BLOCK_SET, NodeBlock, NodeBlockSet, NodeBlockSetSpec};
pub use pool::{AnyAllocations, AnyPool};
pub use route::Route;
pub use selector::{NodeSelector, ValidNodeSelector, select_nodes};
pub use status::{Condition, PoolStatus, StatusRef};
pub use validate::{
    FieldError, PoolErrors, ValidCidrPool, ValidIpPool, ValidStaticAllocation, validate_cidr_pool,
    validate_ip_pool,
};

/// The API group and version of both pool kinds.
pub const API_VERSION: &str = "nv-ipam.nvidia.com/v1alpha1";
/// `kind` of an IPPool object.
pub const KIND_IPPOOL: &str = PoolType::IpPool.info().kind;
/// `kind` of a CIDRPool object.
pub const KIND_CIDRPOOL: &str = PoolType::CidrPool.info().kind;
/// `kind` of a core/v1 Node object.
pub const KIND_NODE: &str = "Node";

/// Most entries decoded into a per-node list of a pool object (`status.allocations`,
/// `spec.staticAllocations`) and into one requirement's `values`: at most one entry per node,
/// and Kubernetes supports clusters of up to 5,000 nodes; 65,536 leaves 13× headroom. A longer
/// list is refused while decoding: an entry decoded from `{}` (3 bytes) costs 72 bytes, so
/// without a cap a 4 MiB AdmissionReview could cost 24 times its size.
pub const MAX_LIST_ITEMS: usize = 65_536;

/// Most entries in `spec.exclusions`, `spec.perNodeExclusions` and `spec.routes`: lists a person
/// writes (ranges, not addresses one by one). Lower than [`MAX_LIST_ITEMS`] because each bad
/// entry also costs a validation error: 4,096 keeps the worst review within a small multiple of
/// its size.
pub const MAX_SPEC_LIST_ITEMS: usize = 4_096;

/// Most `values` in one node selector, over all its terms and requirements together (the
/// caps of the nesting lists multiply, so the strings get one budget of their own): `In` over
/// node names of a 5,000-node cluster fits three times over. 16,384 one-letter names cost
/// under 1 MiB decoded.
pub const MAX_SELECTOR_VALUES: usize = 16_384;

/// Most `nodeSelectorTerms` in a selector, and most `matchExpressions` (and `matchFields`) in
/// one term. These lists nest, so their caps multiply: 64 × 2 × 64 requirements is already far
/// beyond any selector a person writes (Kubernetes itself sets no limit).
pub const MAX_SELECTOR_ITEMS: usize = 64;

/// serde helper: skip `false` booleans so optional flags round-trip as absent.
pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}
