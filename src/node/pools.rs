//! The pool configurations this node allocates from, keyed by pool key, and the rule that turns
//! pool objects into them ([`derive`]), shared by both pool sources.
//!
//! Invalid specs ([`derive`]): a pool whose current spec is invalid keeps serving the
//! configuration the node served before (its last valid spec and block), so allocations and
//! ADDs continue until a valid spec arrives; the set records why ([`PoolSet::held`]). While the
//! spec is invalid the node also ignores status changes of the pool: a block can only be judged
//! against a valid spec, and the controller itself never moves blocks of an invalid pool (a
//! status that does is noted in the log line). A pool that is invalid and was not served
//! before (created invalid, or invalid at a start with nothing earlier to keep: no pools cache
//! entry in cluster mode, always in standalone mode) is refused with the reason
//! ([`PoolSet::refused`]), which the ADD error repeats instead of "not found".
//!
//! Owns: the lookup table the request handler reads, [`derive`], and the log lines of a change
//! ([`log_changes`]). Must not: read files or the API server (see `pools_file`, `pools_cluster`)
//! or derive a single pool's configuration itself (see `alloc::node_pool`).

use std::collections::BTreeMap;

use crate::alloc::{self, NodePool, NodePoolError, PoolKind};
use crate::api::PoolKey;
use crate::api::{AnyPool, CidrPool, IpPool, PoolErrors};

/// An immutable snapshot of the node's pools; replaced whole on every change.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PoolSet {
    pools: BTreeMap<PoolKey, NodePool>,
    /// Served pools whose current spec is invalid: why the last valid one is still used.
    held: BTreeMap<PoolKey, String>,
    /// Pools known to the source but not served on this node: why.
    refused: BTreeMap<PoolKey, String>,
}

impl PoolSet {
    pub fn new(pools: impl IntoIterator<Item = NodePool>) -> PoolSet {
        PoolSet { pools: pools.into_iter().map(|p| (p.key.clone(), p)).collect(), ..PoolSet::default() }
    }

    pub fn get(&self, key: &PoolKey) -> Option<&NodePool> {
        self.pools.get(key)
    }

    pub fn keys(&self) -> impl Iterator<Item = &PoolKey> {
        self.pools.keys()
    }

    /// Served pools (fresh or held).
    pub fn len(&self) -> usize {
        self.pools.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pools.is_empty()
    }

    /// Why a served pool uses its last valid spec, when it does.
    pub fn held(&self, key: &PoolKey) -> Option<&str> {
        self.held.get(key).map(String::as_str)
    }

    /// Why a known pool is not served on this node, when it is not.
    pub fn refused(&self, key: &PoolKey) -> Option<&str> {
        self.refused.get(key).map(String::as_str)
    }

    /// Every refusal reason, in key order (for the start log).
    pub fn refusals(&self) -> Vec<String> {
        self.refused.values().cloned().collect()
    }

    /// One line per served pool for the log: `blue 192.168.0.1-192.168.0.4 gw 192.168.0.1`.
    pub fn describe(&self) -> Vec<String> {
        self.pools.values().map(describe).collect()
    }
}

fn describe(p: &NodePool) -> String {
    match p.gateway {
        Some(g) => format!("{} {} gw {g}", p.key, p.range),
        None => format!("{} {}", p.key, p.range),
    }
}

/// A pool object as a source holds it, borrowed (the cluster source keeps one list per kind).
#[derive(Debug, Clone, Copy)]
pub enum PoolRef<'a> {
    Ip(&'a IpPool),
    Cidr(&'a CidrPool),
}

impl<'a> From<&'a AnyPool> for PoolRef<'a> {
    fn from(p: &'a AnyPool) -> PoolRef<'a> {
        match p {
            AnyPool::Ip(p) => PoolRef::Ip(p),
            AnyPool::Cidr(p) => PoolRef::Cidr(p),
        }
    }
}

impl PoolRef<'_> {
    pub fn key(&self) -> PoolKey {
        crate::with_pool_kind!(PoolRef: self, p, K => PoolKey::new(K::TYPE, K::meta(p).name.clone()))
    }

    /// The spec's errors, if it is invalid.
    pub fn spec_errors(&self) -> Option<PoolErrors> {
        crate::with_pool_kind!(PoolRef: self, p, K => K::validate(p).err())
    }
}

/// What a pool without `status` means for the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Planning {
    /// Standalone mode: planned as if this node were the cluster's only node.
    Alone,
    /// Cluster mode: not planned yet (the controller plans; a node never plans for itself).
    Controller,
}

/// The node's pools from pool objects: see the module docs for invalid specs. `previous` is the
/// set the node serves now: empty for a source's first load, but in cluster mode the first view
/// from the API server is derived over the set loaded from the pools cache (`pools_cluster`).
pub fn derive<'a>(
    objects: impl IntoIterator<Item = PoolRef<'a>>,
    node: &str,
    planning: Planning,
    previous: &PoolSet,
) -> PoolSet {
    let mut set = PoolSet::default();
    for obj in objects {
        let key = obj.key();
        // A later object of the same key replaces an earlier one (as a map of names does).
        set.pools.remove(&key);
        set.held.remove(&key);
        set.refused.remove(&key);
        match node_pool(obj, node, planning) {
            Ok(np) => {
                set.pools.insert(key, np);
            }
            Err(NodePoolError::InvalidPool { errors }) => match previous.get(&key) {
                Some(last) => {
                    let mut why = format!(
                        "{}; serving its last valid spec ({}) until the spec is fixed",
                        invalid_spec(&errors),
                        describe(last)
                    );
                    if let Some(moved) = status_moved(obj, node, last) {
                        why.push_str(&format!(
                            "; its status now gives this node {moved}, which is followed once the spec is valid"
                        ));
                    }
                    set.pools.insert(key.clone(), last.clone());
                    set.held.insert(key, why);
                }
                None => {
                    set.refused.insert(key, format!("{}; fix the pool", invalid_spec(&errors)));
                }
            },
            Err(e) => {
                set.refused.insert(key, e.to_string());
            }
        }
    }
    set
}

/// `ippool "blue" has an invalid spec: spec.gateway: ...; spec.x: ...`.
fn invalid_spec(errors: &PoolErrors) -> String {
    let fields: Vec<String> = errors.errors.iter().map(ToString::to_string).collect();
    format!("{} {:?} has an invalid spec: {}", errors.pool_type, errors.name, fields.join("; "))
}

fn node_pool(obj: PoolRef<'_>, node: &str, planning: Planning) -> Result<NodePool, NodePoolError> {
    crate::with_pool_kind!(PoolRef: obj, p, K => node_pool_of::<K>(p, node, planning))
}

fn node_pool_of<K: PoolKind>(p: &K::Pool, node: &str, planning: Planning) -> Result<NodePool, NodePoolError> {
    match planning {
        Planning::Alone => alloc::node_pool_from::<K>(p, node),
        Planning::Controller => {
            let v = K::validate(p).map_err(|errors| NodePoolError::InvalidPool { errors })?;
            match K::status(p) {
                Some(s) => K::node_pool(&v, node, s),
                None => Err(NodePoolError::NoAllocation {
                    pool: PoolKey::new(K::TYPE, K::meta(p).name.clone()),
                    node: node.to_string(),
                }),
            }
        }
    }
}

/// What the pool's status gives `node` now, when that differs from the served block/prefix.
fn status_moved(obj: PoolRef<'_>, node: &str, served: &NodePool) -> Option<String> {
    crate::with_pool_kind!(PoolRef: obj, p, K => status_moved_of::<K>(p, node, served))
}

fn status_moved_of<K: PoolKind>(p: &K::Pool, node: &str, served: &NodePool) -> Option<String> {
    match K::status(p)?.iter().find(|e| K::node_name(e) == node) {
        None => Some(format!("no {}", K::TYPE.info().unit)),
        Some(e) => K::entry_differs(e, served),
    }
}

/// Logs what changed from `old` to `new`, one line per pool whose state changed: ready (info),
/// held under an invalid spec or refused (warning, with the reason), or gone (info). A pool
/// whose state did not change is not logged again.
pub fn log_changes(old: &PoolSet, new: &PoolSet) {
    for (key, np) in &new.pools {
        let held = new.held.get(key);
        let same = old.pools.get(key) == Some(np) && old.held.get(key) == held;
        if same {
            continue;
        }
        match held {
            Some(why) => log::warn!("pool {key}: {why}"),
            None => log::info!("pool ready: {}", describe(np)),
        }
    }
    for (key, why) in &new.refused {
        if old.refused.get(key) != Some(why) {
            log::warn!("pool left out: {why}");
        }
    }
    for key in old.pools.keys().chain(old.refused.keys()) {
        if !new.pools.contains_key(key) && !new.refused.contains_key(key) {
            log::info!("pool {key} is gone from the pool source; its reservations stay until released");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CidrAllocation, CidrPoolStatus, IpAllocation, IpPoolStatus, PoolType};

    fn ippool(name: &str, gateway: &str, block: Option<(&str, &str)>) -> IpPool {
        let mut p = IpPool::default();
        p.metadata.name = name.into();
        p.spec.subnet = "10.1.0.0/24".into();
        p.spec.per_node_block_size = 10;
        p.spec.gateway = gateway.into();
        p.status = block.map(|(s, e)| IpPoolStatus {
            allocations: vec![IpAllocation { node_name: "n1".into(), start_ip: s.into(), end_ip: e.into() }],
        });
        p
    }

    fn cidrpool(name: &str, gateway_index: Option<i64>, prefix: &str, gateway: &str) -> CidrPool {
        let mut p = CidrPool::default();
        p.metadata.name = name.into();
        p.spec.cidr = "10.2.0.0/16".into();
        p.spec.per_node_network_prefix = 24;
        p.spec.gateway_index = gateway_index;
        p.status = Some(CidrPoolStatus {
            allocations: vec![CidrAllocation {
                node_name: "n1".into(),
                prefix: prefix.into(),
                gateway: gateway.into(),
            }],
        });
        p
    }

    fn key(name: &str) -> PoolKey {
        PoolKey::new(PoolType::IpPool, name)
    }

    #[test]
    fn an_invalid_spec_keeps_the_served_config_and_says_why() {
        let good = ippool("a", "10.1.0.1", Some(("10.1.0.1", "10.1.0.10")));
        let first = derive([PoolRef::Ip(&good)], "n1", Planning::Controller, &PoolSet::default());
        let served = first.get(&key("a")).expect("served").clone();
        assert_eq!(first.held(&key("a")), None);

        let bad = ippool("a", "10.99.0.1", Some(("10.1.0.1", "10.1.0.10")));
        let second = derive([PoolRef::Ip(&bad)], "n1", Planning::Controller, &first);
        assert_eq!(second.get(&key("a")), Some(&served), "the last valid config is kept");
        let why = second.held(&key("a")).expect("held");
        assert!(why.starts_with("ippool \"a\" has an invalid spec: spec.gateway"), "{why}");
        assert!(why.contains("last valid spec (a 10.1.0.1-10.1.0.10 gw 10.1.0.1)"), "{why}");
        // kept across further invalid edits, including a status that moves the block
        let moved = ippool("a", "10.99.0.1", Some(("10.1.0.21", "10.1.0.30")));
        let third = derive([PoolRef::Ip(&moved)], "n1", Planning::Controller, &second);
        assert_eq!(third.get(&key("a")), Some(&served));
        assert!(third.held(&key("a")).expect("held").contains("now gives this node 10.1.0.21-10.1.0.30"));
        // a valid spec is followed at once, with the status as it is then
        let fixed = ippool("a", "10.1.0.1", Some(("10.1.0.21", "10.1.0.30")));
        let fourth = derive([PoolRef::Ip(&fixed)], "n1", Planning::Controller, &third);
        assert_eq!(fourth.get(&key("a")).expect("served").range.to_string(), "10.1.0.21-10.1.0.30");
        assert_eq!(fourth.held(&key("a")), None);
    }

    #[test]
    fn a_pool_never_served_is_refused_with_its_reason() {
        let bad = ippool("b", "10.99.0.1", Some(("10.1.0.1", "10.1.0.10")));
        let set = derive([PoolRef::Ip(&bad)], "n1", Planning::Controller, &PoolSet::default());
        assert!(set.get(&key("b")).is_none());
        let why = set.refused(&key("b")).expect("refused");
        assert!(
            why.contains("\"b\" has an invalid spec: spec.gateway") && why.ends_with("fix the pool"),
            "{why}"
        );
        // valid but without an entry for this node: refused, and an invalid edit keeps that
        let unplanned = ippool("c", "10.1.0.1", None);
        let set = derive([PoolRef::Ip(&unplanned)], "n1", Planning::Controller, &PoolSet::default());
        assert!(set.refused(&key("c")).expect("refused").contains("no allocation for node n1"));
        let alone = derive([PoolRef::Ip(&unplanned)], "n1", Planning::Alone, &PoolSet::default());
        assert!(alone.get(&key("c")).is_some(), "standalone plans a pool without status");
        let bad_c = ippool("c", "10.99.0.1", None);
        let after = derive([PoolRef::Ip(&bad_c)], "n1", Planning::Controller, &set);
        assert!(after.refused(&key("c")).expect("refused").contains("invalid spec"));
    }

    #[test]
    fn cidr_pools_are_held_too_and_deleted_pools_go() {
        let good = cidrpool("c", Some(1), "10.2.3.0/24", "10.2.3.1");
        let k = PoolKey::new(PoolType::CidrPool, "c");
        let first = derive([PoolRef::Cidr(&good)], "n1", Planning::Controller, &PoolSet::default());
        assert_eq!(first.get(&k).expect("served").gateway, Some("10.2.3.1".parse().expect("ip")));
        let mut bad = cidrpool("c", Some(1), "10.2.4.0/24", "10.2.4.1");
        bad.spec.per_node_network_prefix = 8;
        let second = derive([PoolRef::Cidr(&bad)], "n1", Planning::Controller, &first);
        assert_eq!(second.get(&k), first.get(&k));
        let why = second.held(&k).expect("held");
        assert!(why.contains("spec.perNodeNetworkPrefix") && why.contains("10.2.4.0/24"), "{why}");
        let gone = derive([], "n1", Planning::Controller, &second);
        assert!(gone.is_empty() && gone.refused(&k).is_none());
    }
}
