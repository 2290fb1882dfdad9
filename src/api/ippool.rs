//! The IPPool custom resource (`nv-ipam.nvidia.com/v1alpha1`, kind `IPPool`) as it travels on
//! the wire.
//!
//! Owns: [`IpPool`], its spec and status shapes. Field names and omit-when-empty behaviour follow
//! the reference CRD so objects round-trip. Must not: validate or plan (see `validate`, `alloc`).

use serde::{Deserialize, Serialize};

use super::{ExcludeIndexRange, ExcludeRange, NodeSelector, ObjectMeta, Route, is_false};

/// An IPPool object: one fixed-size block of `perNodeBlockSize` addresses per node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpPool {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: IpPoolSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<IpPoolStatus>,
}

/// `spec` of an IPPool. Required fields default to empty/zero so that validation, not serde,
/// reports them by field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpPoolSpec {
    #[serde(default)]
    pub subnet: String,
    #[serde(default)]
    pub per_node_block_size: i64,
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
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gateway: String,
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

/// `status` of an IPPool: the block of every node, sorted by node name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpPoolStatus {
    #[serde(default, deserialize_with = "crate::bounded::vec::<_, _, { super::MAX_LIST_ITEMS }>")]
    pub allocations: Vec<IpAllocation>,
}

/// `{nodeName, startIP, endIP}`: one node's block, as text (status may hold anything).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpAllocation {
    #[serde(rename = "nodeName", default)]
    pub node_name: String,
    #[serde(rename = "startIP", default)]
    pub start_ip: String,
    #[serde(rename = "endIP", default)]
    pub end_ip: String,
}

impl IpPool {
    /// The status allocations, empty when there is no status.
    pub fn allocations(&self) -> &[IpAllocation] {
        self.status.as_ref().map(|s| s.allocations.as_slice()).unwrap_or(&[])
    }
}
