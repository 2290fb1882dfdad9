//! The controller's cache and work queue: every pool of the namespace (typed, shared by
//! `Arc`), every node (name and labels, one sorted list), what we last wrote, holds, rechecks,
//! failures and gauges per pool, and the queue of pool keys the worker pops. The reflectors'
//! callbacks ([`pool_changed`], [`nodes_changed`]) decide what to enqueue.
//!
//! Owns: [`Shared`] (the cache behind one mutex, the worker's condvar, the counters). Must
//! not: talk to the API server or decide allocations (see `worker` and `reconcile`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::SystemTime;

use serde_json::Value;

use super::MAX_LOGGED_NAMES;
use super::node_sets::NodeSets;
use crate::alloc::PoolKind;
use crate::api::{AnyPool, Condition, Node, ObjectMeta, PoolType};
use crate::controller::reconcile::{Event, NodeChange, nodes_matter};
use crate::kube::Change;

/// Key of a pool in the queue: kind and name (the namespace is fixed).
pub(super) type Key = (PoolType, String);

/// A pool as the cache keeps it: typed, so a 5,000-entry status is compact structs rather than
/// a `serde_json::Value` tree (~10x the JSON); plus `status.conditions` (not in the api types)
/// and a hash of the status as stored, to recognise our own write's echo without a copy.
#[derive(Debug, Clone)]
pub(super) struct CachedPool {
    pub(super) pool: AnyPool,
    pub(super) conditions: Vec<Condition>,
    pub(super) status_hash: u64,
    /// The spec passes validation (NodeBlockSets carry a valid spec trimmed, an invalid one as is).
    pub(super) valid: bool,
}

impl CachedPool {
    pub(super) fn meta(&self) -> &ObjectMeta {
        self.pool.meta()
    }

    pub(super) fn generation(&self) -> Option<i64> {
        self.meta().rest.get("generation").and_then(Value::as_i64)
    }

    pub(super) fn resource_version(&self) -> &str {
        self.meta().rest.get("resourceVersion").and_then(Value::as_str).unwrap_or_default()
    }
}

#[derive(Default)]
pub(super) struct Cache {
    /// `Arc`: a reconcile takes its pool out of the lock without copying 5,000 entries.
    pub(super) pools: BTreeMap<Key, Arc<CachedPool>>,
    /// Every node (name + labels), sorted by name: the planner's input as is, shared with a
    /// running reconcile instead of copied for each (5,000 nodes with labels are megabytes).
    pub(super) nodes: Arc<Vec<Node>>,
    /// The pool kinds whose reflector has listed once.
    pub(super) synced_pools: BTreeSet<PoolType>,
    pub(super) synced_nodes: bool,
    pub(super) queue: BTreeSet<Key>,
    /// Pools a reconcile loop holds now: no other loop takes them until it is done.
    pub(super) in_flight: BTreeSet<Key>,
    /// Status writes under way (at most `MAX_CONCURRENT_STATUS_WRITES`).
    pub(super) status_writes: usize,
    /// Hash ([`status_hash`]) of the status we last wrote per pool: a watch event carrying it
    /// is our own echo. A hash, not a copy: a copy of a 5,000-entry status is megabytes.
    pub(super) written: HashMap<Key, u64>,
    pub(super) holds: HashMap<Key, BTreeMap<String, SystemTime>>,
    pub(super) recheck: HashMap<Key, SystemTime>,
    pub(super) last_events: HashMap<Key, Vec<Event>>,
    /// Consecutive failed reconciles per pool, for the retry backoff.
    pub(super) failures: HashMap<Key, u32>,
    pub(super) gauges: BTreeMap<Key, PoolGauges>,
    /// The NodeBlockSets: what is stored, what must be written.
    pub(super) node_sets: NodeSets,
}

impl Cache {
    /// Every pool kind's reflector has listed once.
    pub(super) fn pools_synced(&self) -> bool {
        PoolType::ALL.iter().all(|t| self.synced_pools.contains(t))
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub(super) struct PoolGauges {
    pub(super) allocated: u64,
    pub(super) free: Option<u64>,
    pub(super) size: Option<u64>,
    pub(super) held: u64,
}

pub(super) struct Shared {
    pub(super) cache: Mutex<Cache>,
    pub(super) wake: Condvar,
    pub(super) is_leader: Arc<AtomicBool>,
    pub(super) reconciles: AtomicU64,
    pub(super) reconcile_errors: AtomicU64,
    pub(super) node_set_writes: AtomicU64,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Cache> {
        // Release builds abort on panic (Cargo.toml), so poisoning happens only in unwinding
        // builds (tests); there a panicked thread's half-updated cache is repaired by relists.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn enqueue_all(&self) {
        let mut c = self.lock();
        let keys: Vec<Key> = c.pools.keys().cloned().collect();
        c.queue.extend(keys);
        c.node_sets.new_term();
        self.wake.notify_all();
    }
}

/// Caches a pool change and enqueues the pool unless the change is our own status echo.
pub(super) fn pool_changed(shared: &Shared, t: PoolType, ch: Change<CachedPool>) {
    let mut c = shared.lock();
    match ch {
        Change::Reset(items) => {
            let fresh: BTreeMap<Key, Arc<CachedPool>> =
                items.into_iter().map(|p| ((t, p.pool.name().to_string()), Arc::new(p))).collect();
            let gone: Vec<Key> =
                c.pools.keys().filter(|k| k.0 == t && !fresh.contains_key(k)).cloned().collect();
            for k in gone {
                forget(&mut c, &k);
            }
            for (k, v) in fresh {
                // what changed while the watch was down reaches the nodes it concerns
                let changed = c
                    .pools
                    .get(&k)
                    .filter(|o| o.status_hash != v.status_hash)
                    .map(|o| super::node_sets::nodes_differing(&o.pool, &v.pool));
                c.node_sets.dirty.extend(changed.into_iter().flatten());
                drop_stored_decision(&mut c, &k, &v);
                c.queue.insert(k.clone());
                c.pools.insert(k, v);
            }
            c.synced_pools.insert(t);
        }
        Change::Applied(v) => {
            let k = (t, v.pool.name().to_string());
            let old = c.pools.get(&k);
            let same_gen = old.is_some_and(|o| o.generation() == v.generation());
            let own_echo = c.written.get(&k).is_some_and(|w| *w == v.status_hash);
            let same_status = old.is_some_and(|o| o.status_hash == v.status_hash);
            if !own_echo && !same_status {
                // a status we did not write (an old leader, kubectl): its nodes' objects follow
                let changed =
                    old.map(|o| super::node_sets::nodes_differing(&o.pool, &v.pool)).unwrap_or_default();
                c.node_sets.dirty.extend(changed);
            }
            if !(same_gen && (own_echo || same_status)) {
                log::debug!(
                    "pool {} {:?} changed (generation changed: {}, status: {}): queued",
                    k.0,
                    k.1,
                    !same_gen,
                    if same_status { "same" } else { "changed" }
                );
                c.queue.insert(k.clone());
            }
            drop_stored_decision(&mut c, &k, &v);
            c.pools.insert(k, Arc::new(v));
        }
        Change::Deleted(v) => {
            let k = (t, v.pool.name().to_string());
            forget(&mut c, &k);
        }
    }
    shared.wake.notify_all();
}

/// The nodes read the status again once it holds the decision they were sent (our write's echo,
/// also when the write's answer could not replace the cache: see `worker::record`).
fn drop_stored_decision(c: &mut Cache, k: &Key, v: &CachedPool) {
    if c.node_sets.decided.get(k).is_some_and(|d| super::node_sets::status_holds(d, &v.pool)) {
        c.node_sets.decided.remove(k);
    }
}

pub(super) fn forget(c: &mut Cache, k: &Key) {
    // its nodes lose their entry
    if let Some(p) = c.pools.remove(k) {
        let nodes: Vec<String> = crate::with_pool_kind!(&p.pool, p, K => {
            K::allocations(p).iter().map(|a| K::node_name(a).to_string()).collect()
        });
        c.node_sets.dirty.extend(nodes);
    }
    if let Some(d) = c.node_sets.decided.remove(k) {
        let nodes = super::node_sets::node_names(&d);
        c.node_sets.dirty.extend(nodes);
    }
    let named = super::node_sets::objects_naming(&c.node_sets, k);
    c.node_sets.dirty.extend(named);
    c.node_sets.spec_hash.remove(k);
    c.node_sets.forget(k);
    c.queue.remove(k);
    c.written.remove(k);
    c.holds.remove(k);
    c.recheck.remove(k);
    c.last_events.remove(k);
    c.failures.remove(k);
    c.gauges.remove(k);
}

/// Caches names and labels; enqueues the pools a name or label change matters to
/// ([`nodes_matter`]). Heartbeats change neither and enqueue nothing.
pub(super) fn nodes_changed(shared: &Shared, ch: Change<Node>) {
    let mut c = shared.lock();
    let mut changes = Vec::new();
    let find = |nodes: &[Node], name: &str| nodes.binary_search_by(|n| n.name().cmp(name));
    // a (re)list may make the cache synced: the loops wait for that
    let relisted = matches!(ch, Change::Reset(_));
    match ch {
        Change::Reset(mut fresh) => {
            fresh.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            fresh.dedup_by(|a, b| a.metadata.name == b.metadata.name);
            // Before the first sync every pool is queued already (its list queued it and the
            // worker waits for the nodes; becoming leader queues all): no per-node changes.
            if c.synced_nodes {
                for before in c.nodes.iter() {
                    let after = find(&fresh, before.name()).ok().map(|i| &fresh[i]);
                    if after.map(Node::labels) != Some(before.labels()) {
                        changes.push(NodeChange {
                            name: before.metadata.name.clone(),
                            before: Some(before.metadata.labels.clone()),
                            after: after.map(|a| a.metadata.labels.clone()),
                        });
                    }
                }
                for after in &fresh {
                    if find(&c.nodes, after.name()).is_err() {
                        changes.push(NodeChange {
                            name: after.metadata.name.clone(),
                            before: None,
                            after: Some(after.metadata.labels.clone()),
                        });
                    }
                }
            }
            c.nodes = Arc::new(fresh);
            c.synced_nodes = true;
        }
        Change::Applied(n) => {
            let (name, labels) = (n.metadata.name.clone(), n.metadata.labels.clone());
            // copies the list only while a reconcile still holds the previous one
            let nodes = Arc::make_mut(&mut c.nodes);
            let before = match find(nodes, &name) {
                Ok(i) => Some(std::mem::replace(&mut nodes[i], n).metadata.labels),
                Err(i) => {
                    nodes.insert(i, n);
                    None
                }
            };
            if before.as_ref() != Some(&labels) {
                changes.push(NodeChange { name, before, after: Some(labels) });
            }
        }
        Change::Deleted(n) => {
            if let Ok(i) = find(&c.nodes, n.name()) {
                let before = Arc::make_mut(&mut c.nodes).remove(i);
                changes.push(NodeChange {
                    name: before.metadata.name,
                    before: Some(before.metadata.labels),
                    after: None,
                });
            }
        }
    }
    // a Node appearing gets its (maybe empty) object; one going may lose it
    let appeared_or_gone: Vec<String> = changes
        .iter()
        .filter(|ch| ch.before.is_none() || ch.after.is_none())
        .map(|ch| ch.name.clone())
        .collect();
    if relisted || !appeared_or_gone.is_empty() {
        c.node_sets.dirty.extend(appeared_or_gone);
        shared.wake.notify_all();
    }
    if changes.is_empty() {
        log::trace!("node change without name or label change ignored");
        return;
    }
    let keys: Vec<Key> =
        c.pools.iter().filter(|(_, p)| nodes_matter(&p.pool, &changes)).map(|(k, _)| k.clone()).collect();
    if !keys.is_empty() {
        log::debug!(
            "{} nodes added, deleted or relabelled (first: {:?}): {} pools queued",
            changes.len(),
            changes.iter().take(MAX_LOGGED_NAMES).map(|c| c.name.as_str()).collect::<Vec<_>>(),
            keys.len()
        );
        c.queue.extend(keys);
        shared.wake.notify_all();
    }
}
