//! The pool configurations this node allocates from, keyed by pool key.
//!
//! Owns: the lookup table the request handler reads. Must not: decide how configs are derived
//! (see `alloc::node_pool`) or where they come from (`pools_file`, later the cluster watch).

use std::collections::BTreeMap;

use crate::alloc::{NodePool, PoolKey};

/// An immutable snapshot of the node's pools; replaced whole on every change.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PoolSet {
    pools: BTreeMap<PoolKey, NodePool>,
}

impl PoolSet {
    pub fn new(pools: impl IntoIterator<Item = NodePool>) -> PoolSet {
        PoolSet { pools: pools.into_iter().map(|p| (p.key.clone(), p)).collect() }
    }

    pub fn get(&self, key: &PoolKey) -> Option<&NodePool> {
        self.pools.get(key)
    }

    pub fn keys(&self) -> impl Iterator<Item = &PoolKey> {
        self.pools.keys()
    }

    pub fn len(&self) -> usize {
        self.pools.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pools.is_empty()
    }

    /// One line per pool for the log: `blue 192.168.0.1-192.168.0.4 gw 192.168.0.1`.
    pub fn describe(&self) -> Vec<String> {
        self.pools
            .values()
            .map(|p| match p.gateway {
                Some(g) => format!("{} {} gw {g}", p.key, p.range),
                None => format!("{} {}", p.key, p.range),
            })
            .collect()
    }
}
