//! The CIDRPool custom resource (`nv-ipam.nvidia.com/v1alpha1`, kind `CIDRPool`) as it travels
//! on the wire.
//!
//! Owns: [`CidrPool`], its spec and status shapes. Field names and omit-when-empty behaviour
//! follow the reference CRD. Must not: validate or plan (see `validate`, `alloc`).

use serde::{Deserialize, Serialize};

use super::{ExcludeIndexRange, ExcludeRange, NodeSelector, ObjectMeta, Route, is_false};

/// A CIDRPool object: one `/perNodeNetworkPrefix` prefix of `cidr` per node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CidrPool {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: CidrPoolSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<CidrPoolStatus>,
}

/// `spec` of a CIDRPool. int32 fields are read as i64 so that validation reports bad values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CidrPoolSpec {
    #[serde(default)]
    pub cidr: String,
    #[serde(default)]
    pub per_node_network_prefix: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_index: Option<i64>,
    #[serde(
        default,
        deserialize_with = "crate::bounded::vec::<_, _, { super::MAX_SPEC_LIST_ITEMS }>",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub exclusions: Vec<ExcludeRange>,
    #[serde(
        default,
        deserialize_with = "crate::bounded::vec::<_, _, { super::MAX_SPEC_LIST_ITEMS }>",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub per_node_exclusions: Vec<ExcludeIndexRange>,
    #[serde(
        default,
        deserialize_with = "crate::bounded::vec::<_, _, { super::MAX_LIST_ITEMS }>",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub static_allocations: Vec<StaticAllocation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<NodeSelector>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub default_gateway: bool,
    #[serde(
        default,
        deserialize_with = "crate::bounded::vec::<_, _, { super::MAX_SPEC_LIST_ITEMS }>",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub routes: Vec<Route>,
}

/// `{nodeName?, prefix, gateway?}`: a prefix pinned to a node, or only reserved when nodeName
/// is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StaticAllocation {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_name: String,
    #[serde(default)]
    pub prefix: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gateway: String,
}

/// `status` of a CIDRPool: the prefix of every node, sorted by node name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CidrPoolStatus {
    #[serde(default, deserialize_with = "crate::bounded::vec::<_, _, { super::MAX_LIST_ITEMS }>")]
    pub allocations: Vec<CidrAllocation>,
}

/// `{nodeName, prefix, gateway?}`: one node's prefix, as text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CidrAllocation {
    #[serde(default)]
    pub node_name: String,
    #[serde(default)]
    pub prefix: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gateway: String,
}

impl CidrPool {
    /// The status allocations, empty when there is no status.
    pub fn allocations(&self) -> &[CidrAllocation] {
        self.status.as_ref().map(|s| s.allocations.as_slice()).unwrap_or(&[])
    }
}
