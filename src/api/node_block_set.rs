//! The NodeBlockSet custom resource (`nv-ipam.nvidia.com/v1alpha1`, kind `NodeBlockSet`): what
//! one node needs from every pool, written by ipam-controller, read by that node's ipam-node.
//!
//! One object per Node, named after it, in the pools' namespace. For each pool that holds a
//! block (IPPool) or prefix (CIDRPool) for the node: the pool's name, the spec that applies to
//! the node, and the node's `status.allocations` entry. So a node daemon watches one small
//! object (by `metadata.name` field selector) instead of every pool's whole status: another
//! node joining writes other objects and costs this node nothing. The pools' `status` stays
//! the record users and tools read; this object is derived from it (see `alloc::node_blocks`).
//!
//! Owns: [`NodeBlockSet`], [`NodeBlockSetSpec`], [`NodeBlock`] and turning the object back
//! into pool objects with one status entry ([`NodeBlockSetSpec::pools`]), the input the node's
//! derivation already takes. Must not: decide what goes in (that is `alloc::node_blocks`).

use serde::{Deserialize, Serialize};

use super::{
    AnyPool, CidrAllocation, CidrPool, CidrPoolSpec, CidrPoolStatus, IpAllocation, IpPool, IpPoolSpec,
    IpPoolStatus, ObjectMeta,
};

/// `kind` of a NodeBlockSet object.
pub const KIND_NODE_BLOCK_SET: &str = "NodeBlockSet";

/// A NodeBlockSet object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeBlockSet {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: NodeBlockSetSpec,
}

/// `spec`: the node's entries, one list per pool kind, each sorted by pool name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeBlockSetSpec {
    #[serde(
        default,
        deserialize_with = "crate::bounded::vec::<_, _, { super::MAX_LIST_ITEMS }>",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ip_pools: Vec<NodeBlock<IpPoolSpec, IpAllocation>>,
    #[serde(
        default,
        deserialize_with = "crate::bounded::vec::<_, _, { super::MAX_LIST_ITEMS }>",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub cidr_pools: Vec<NodeBlock<CidrPoolSpec, CidrAllocation>>,
}

/// One pool's part for the node: `spec` is the pool's spec as it applies to this node (a valid
/// pool's without `nodeSelector`, with only the exclusions that touch the node's block and the
/// node's own static allocations; an invalid pool's verbatim, so that the node keeps its last
/// valid one as it would reading the pool), `allocation` the node's status entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    bound(deserialize = "S: Default + Deserialize<'de>, A: Default + Deserialize<'de>")
)]
pub struct NodeBlock<S, A> {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub spec: S,
    #[serde(default)]
    pub allocation: A,
}

impl NodeBlockSetSpec {
    /// Number of pool entries.
    pub fn len(&self) -> usize {
        self.ip_pools.len() + self.cidr_pools.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries as pool objects whose status holds only this node's entry, kind by kind,
    /// by name: what a node daemon derives its pools from.
    pub fn pools(&self) -> Vec<AnyPool> {
        let ip = self.ip_pools.iter().map(|b| {
            AnyPool::Ip(IpPool {
                metadata: ObjectMeta::named(b.name.clone()),
                spec: b.spec.clone(),
                status: Some(IpPoolStatus { allocations: vec![b.allocation.clone()] }),
                ..IpPool::default()
            })
        });
        let cidr = self.cidr_pools.iter().map(|b| {
            AnyPool::Cidr(CidrPool {
                metadata: ObjectMeta::named(b.name.clone()),
                spec: b.spec.clone(),
                status: Some(CidrPoolStatus { allocations: vec![b.allocation.clone()] }),
                ..CidrPool::default()
            })
        });
        ip.chain(cidr).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_and_round_trip() {
        let text = r#"{"apiVersion":"nv-ipam.nvidia.com/v1alpha1","kind":"NodeBlockSet",
            "metadata":{"name":"n1","namespace":"nv-ipam","resourceVersion":"7"},
            "spec":{"ipPools":[{"name":"a","spec":{"subnet":"10.0.0.0/24","perNodeBlockSize":8,"gateway":"10.0.0.1"},
                                "allocation":{"nodeName":"n1","startIP":"10.0.0.1","endIP":"10.0.0.8"}}],
                    "cidrPools":[{"name":"b","spec":{"cidr":"10.1.0.0/16","perNodeNetworkPrefix":24},
                                  "allocation":{"nodeName":"n1","prefix":"10.1.3.0/24","gateway":"10.1.3.1"}}]}}"#;
        let o: NodeBlockSet = serde_json::from_str(text).expect("decode");
        assert_eq!(o.spec.len(), 2);
        assert_eq!(o.spec.ip_pools[0].allocation.end_ip, "10.0.0.8");
        assert_eq!(o.spec.cidr_pools[0].spec.per_node_network_prefix, 24);
        let again: NodeBlockSet =
            serde_json::from_value(serde_json::to_value(&o).expect("encode")).expect("decode");
        assert_eq!(again, o);
        let pools = o.spec.pools();
        assert_eq!(pools.len(), 2);
        assert_eq!((pools[0].name(), pools[1].name()), ("a", "b"));
        match &pools[1] {
            AnyPool::Cidr(p) => {
                assert_eq!(p.allocations(), std::slice::from_ref(&o.spec.cidr_pools[0].allocation))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn its_lists_are_capped_while_decoding() {
        let set = |list: &str, n: usize| {
            let entries = vec![serde_json::json!({}); n];
            serde_json::json!({"metadata": {"name": "n"}, "spec": {list: entries}}).to_string()
        };
        for list in ["ipPools", "cidrPools"] {
            let o: NodeBlockSet =
                serde_json::from_str(&set(list, super::super::MAX_LIST_ITEMS)).expect("at the limit");
            assert_eq!(o.spec.len(), super::super::MAX_LIST_ITEMS);
            let e = serde_json::from_str::<NodeBlockSet>(&set(list, super::super::MAX_LIST_ITEMS + 1))
                .expect_err("one more");
            assert!(e.to_string().contains("more than 65536 entries"), "{list}: {e}");
        }
    }

    #[test]
    fn an_empty_spec_is_an_empty_object() {
        let o: NodeBlockSet = serde_json::from_str(r#"{"metadata":{"name":"n"}}"#).expect("decode");
        assert!(o.spec.is_empty() && o.spec.pools().is_empty());
        assert_eq!(serde_json::to_string(&o.spec).expect("encode"), "{}");
    }
}
