//! The pool kinds: which kinds exist and every fixed fact about each (its names on the wire,
//! in the CNI config, in a node's pool key, in Events and messages). This is the one place a
//! kind is registered; what a kind *does* (validate, plan, serve a node) is the `alloc::kind`
//! trait, implemented once per kind.
//!
//! Owns: [`PoolType`], [`KindInfo`], [`PoolKey`]. Must not: know a kind's spec or status
//! shape (those are [`super::ippool`], [`super::cidrpool`]), or do any I/O.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::kube::{self, Resource};

/// The kinds of pool. Serialized lower-case (`ippool`, `cidrpool`) as in the CNI config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PoolType {
    #[default]
    #[serde(rename = "ippool")]
    IpPool,
    #[serde(rename = "cidrpool")]
    CidrPool,
}

/// The fixed facts of one kind: every string that differs between kinds lives here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindInfo {
    /// The CNI config's `poolType` value and the protocol's `pool_type` (lower case).
    pub name: &'static str,
    /// `kind` of the Kubernetes object.
    pub kind: &'static str,
    /// The REST collection the pools of this kind live in (a pure data constant of `kube`).
    pub resource: &'static Resource,
    /// Prefix of a pool key's string form (`cidrpool/name`); empty for the default kind.
    pub key_prefix: &'static str,
    /// The spec field holding the pool's whole range.
    pub range_field: &'static str,
    /// What one node gets, in messages (`block`, `prefix`), and its plural.
    pub unit: &'static str,
    pub units: &'static str,
    /// The fix a message gives when a node got nothing.
    pub no_free_fix: &'static str,
    /// Reason of the Warning Event for a node that got nothing (the reference's).
    pub no_free_reason: &'static str,
    /// The validating webhook's path (controller-runtime's `/validate-<group>-<version>-<kind>`).
    pub webhook_path: &'static str,
}

const IPPOOL: KindInfo = KindInfo {
    name: "ippool",
    kind: "IPPool",
    resource: &kube::IPPOOLS,
    key_prefix: "",
    range_field: "spec.subnet",
    unit: "block",
    units: "blocks",
    no_free_fix: "widen the subnet, lower perNodeBlockSize or shrink the exclusions",
    no_free_reason: "NoFreeRanges",
    webhook_path: "/validate-nv-ipam-nvidia-com-v1alpha1-ippool",
};

const CIDRPOOL: KindInfo = KindInfo {
    name: "cidrpool",
    kind: "CIDRPool",
    resource: &kube::CIDRPOOLS,
    key_prefix: "cidrpool/",
    range_field: "spec.cidr",
    unit: "prefix",
    units: "prefixes",
    no_free_fix: "widen the cidr, raise perNodeNetworkPrefix or shrink the exclusions",
    no_free_reason: "NoFreePrefixes",
    webhook_path: "/validate-nv-ipam-nvidia-com-v1alpha1-cidrpool",
};

impl PoolType {
    /// Every kind, in the order reflectors start and listings print.
    pub const ALL: [PoolType; 2] = [PoolType::IpPool, PoolType::CidrPool];

    /// The kind's fixed facts.
    pub const fn info(self) -> &'static KindInfo {
        match self {
            PoolType::IpPool => &IPPOOL,
            PoolType::CidrPool => &CIDRPOOL,
        }
    }

    /// Case-insensitive `ippool` / `cidrpool`, as the reference's CNI config accepts.
    pub fn parse(s: &str) -> Option<PoolType> {
        let s = s.to_ascii_lowercase();
        PoolType::ALL.into_iter().find(|t| t.info().name == s)
    }

    pub fn as_str(self) -> &'static str {
        self.info().name
    }

    /// `kind` of the Kubernetes object (`IPPool`, `CIDRPool`).
    pub fn kind(self) -> &'static str {
        self.info().kind
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

    /// Parses the string form (`name` or `<prefix>name`); a name without a known prefix is of
    /// the default kind.
    pub fn parse(s: &str) -> PoolKey {
        PoolType::ALL
            .into_iter()
            .filter(|t| !t.info().key_prefix.is_empty())
            .find_map(|t| s.strip_prefix(t.info().key_prefix).map(|name| PoolKey::new(t, name)))
            .unwrap_or_else(|| PoolKey::new(PoolType::default(), s))
    }
}

impl fmt::Display for PoolKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.pool_type.info().key_prefix, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_keys_are_the_wire_forms() {
        assert_eq!(PoolType::parse("IPPool"), Some(PoolType::IpPool));
        assert_eq!(PoolType::parse("cidrPOOL"), Some(PoolType::CidrPool));
        assert_eq!(PoolType::parse("pool"), None);
        assert_eq!(serde_json::to_string(&PoolType::CidrPool).ok().as_deref(), Some("\"cidrpool\""));
        assert_eq!(PoolType::default(), PoolType::IpPool);
        for t in PoolType::ALL {
            let k = PoolKey::new(t, "a");
            assert_eq!(PoolKey::parse(&k.to_string()), k, "{t} key round-trips");
            assert_eq!(PoolType::parse(t.as_str()), Some(t));
        }
        assert_eq!(PoolKey::new(PoolType::CidrPool, "a").to_string(), "cidrpool/a");
        assert_eq!(PoolKey::new(PoolType::IpPool, "a").to_string(), "a");
        assert_eq!((PoolType::IpPool.kind(), PoolType::CidrPool.kind()), ("IPPool", "CIDRPool"));
    }

    #[test]
    fn every_kind_has_names_of_its_own() {
        let all: Vec<&KindInfo> = PoolType::ALL.iter().map(|t| t.info()).collect();
        let fields: [fn(&KindInfo) -> &'static str; 6] = [
            |i| i.name,
            |i| i.kind,
            |i| i.resource.plural,
            |i| i.key_prefix,
            |i| i.webhook_path,
            |i| i.no_free_reason,
        ];
        for f in fields {
            let mut names: Vec<&str> = all.iter().map(|i| f(i)).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), all.len(), "{:?}", all.iter().map(|i| f(i)).collect::<Vec<_>>());
        }
        // only the default kind may have an empty key prefix, or PoolKey::parse is ambiguous
        for t in PoolType::ALL {
            assert_eq!(t.info().key_prefix.is_empty(), t == PoolType::default(), "{t}");
        }
    }
}
