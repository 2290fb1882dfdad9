//! NodeBlockSets (`api::node_block_set`): one per Node, what it needs from every pool. The
//! controller keeps per object only its resourceVersion, a hash of its spec and which pools it
//! names (never a copy: 5,000 of them would be megabytes), marks a node dirty when something
//! that concerns it changed (a pool decision or spec, the Node appearing or going, its object
//! changed by someone else), recomputes the node's desired spec from the cache
//! (`alloc::node_blocks::desired`) and writes it when its hash differs: one write per object
//! per change, [`MAX_CONCURRENT_NODE_SET_WRITES`] in flight.
//!
//! Order: a node's entry is written as soon as a reconcile has decided it, in parallel with the
//! pool's status write (a status write of a 5,000-node pool costs the API server hundreds of
//! milliseconds; a joining node should not wait for ten of them). Node writes start once no
//! pool is queued or being decided, so that a burst (start, a join matching ten pools) is one
//! write per node, not one per pool. A NodeBlockSet may thus name a block its pool's status
//! does not hold yet; a reconcile plans those entries as "intents" after the status's own
//! ([`intents`], read back from the objects), so a controller restarted between the two writes
//! leaves the node its block.
//!
//! Objects exist for every Node (an empty spec says "no pools", which a node daemon must be
//! able to tell from "not written yet") and for nodes that still hold entries; others are
//! deleted.
//!
//! Owns: [`NodeSets`], the reflector callback [`sets_changed`], the writer loop [`writer`].
//! Must not: decide allocations or write pool status.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::cache::{Key, Shared};
use super::wire::json_hash;
use super::{ERROR_REQUEUE, MAX_CONCURRENT_NODE_SET_WRITES, WORKER_POLL};
use crate::alloc::PoolKind;
use crate::alloc::node_blocks::{Source, desired};
use crate::api::{
    API_VERSION, AnyAllocations, KIND_NODE_BLOCK_SET, NodeBlockSet, NodeBlockSetSpec, ObjectMeta,
};
use crate::kube::{Change, Client, KubeError, NODEBLOCKSETS};

/// What the controller remembers of one stored NodeBlockSet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SetState {
    resource_version: String,
    /// [`json_hash`] of the spec as decoded into our types.
    hash: u64,
    /// [`pool_tag`] of every pool the object names, sorted.
    pools: Vec<u64>,
}

impl SetState {
    fn of(o: &NodeBlockSet) -> SetState {
        let rv = o.metadata.rest.get("resourceVersion").and_then(|v| v.as_str()).unwrap_or_default();
        SetState { resource_version: rv.to_string(), hash: json_hash(&o.spec), pools: pool_tags(&o.spec) }
    }
}

/// A pool's identity in [`SetState::pools`]: a hash, not the name (5,000 objects × 10 names).
pub(super) fn pool_tag(k: &Key) -> u64 {
    json_hash(&(k.0, &k.1))
}

fn pool_tags(spec: &NodeBlockSetSpec) -> Vec<u64> {
    let mut tags = Vec::with_capacity(spec.len());
    for t in crate::api::PoolType::ALL {
        crate::with_kind!(t, K => {
            tags.extend(K::node_blocks(spec).iter().map(|b| pool_tag(&(t, b.name.clone()))));
        });
    }
    tags.sort_unstable();
    tags
}

/// The NodeBlockSet part of the cache.
#[derive(Debug, Default)]
pub(super) struct NodeSets {
    pub(super) objects: HashMap<String, SetState>,
    pub(super) synced: bool,
    /// Every Node and object was marked dirty since the last (re)start or leadership.
    pub(super) primed: bool,
    pub(super) dirty: BTreeSet<String>,
    pub(super) writing: HashSet<String>,
    /// A reconcile's decision until the cached status holds it (newer than the cache).
    pub(super) decided: HashMap<Key, Arc<AnyAllocations>>,
    /// Pools decided since this term began. Until a pool is, its status may lack entries that
    /// objects hold (intents: a restart between a node write and its status write), and no
    /// write may drop those before the reconcile has read them.
    pub(super) decided_in_term: HashSet<Key>,
    /// Nodes not written because that would drop an entry of a pool not decided this term:
    /// dirty again at each decision.
    pub(super) held: BTreeSet<String>,
    /// Pools popped by a reconcile loop and not decided yet: node writes wait for them.
    pub(super) deciding: BTreeSet<Key>,
    /// Hash of each pool's spec (and validity) as last projected: a change dirties its nodes.
    pub(super) spec_hash: HashMap<Key, u64>,
    /// Since when dirty nodes wait for pools to settle (see [`MAX_SETTLE_WAIT`]).
    pub(super) waiting_since: Option<Instant>,
    /// Nodes not to write before the given time (after a conflict or an error).
    pub(super) retry_at: HashMap<String, Instant>,
}

/// Longest time dirty nodes wait for pool decisions to settle: under a steady stream of joins
/// the queue is never empty, and a joining node must not wait for it to be.
pub const MAX_SETTLE_WAIT: Duration = Duration::from_millis(200);
/// Wait before writing a node again after a 409 or 404 (the watch brings the stored state).
pub const CONFLICT_RETRY: Duration = Duration::from_millis(100);

impl NodeSets {
    /// Nodes whose object is not written as desired yet (dirty, held or being written).
    pub(super) fn pending(&self) -> usize {
        self.dirty.len() + self.held.len() + self.writing.len()
    }

    /// A new leadership term: every pool is decided again before its entries may be dropped.
    pub(super) fn new_term(&mut self) {
        self.primed = false;
        // decisions of an earlier term may be stale
        self.decided.clear();
        self.decided_in_term.clear();
        self.release_held();
    }

    /// Pool `k` was decided: the nodes held for it may be written.
    pub(super) fn decided_now(&mut self, k: &Key) {
        self.decided_in_term.insert(k.clone());
        self.release_held();
    }

    /// Pool `k` is gone: nothing of it is held back any more.
    pub(super) fn forget(&mut self, k: &Key) {
        self.decided_in_term.remove(k);
        self.release_held();
    }

    fn release_held(&mut self) {
        let held = std::mem::take(&mut self.held);
        self.dirty.extend(held);
    }
}

/// Whether the cached status of pool `p` holds decision `d` (the watch brought our write).
pub(super) fn status_holds(d: &AnyAllocations, p: &crate::api::AnyPool) -> bool {
    crate::with_pool_kind!(p, p, K => K::of_allocations(d).is_some_and(|a| a == K::allocations(p)))
}

/// The reflector's callback: records the object's state and marks the node dirty unless the
/// change is our own write's echo. Wakes the loops only when there is work: an echo per write
/// waking 18 threads cost more CPU than the writes at 5,000 nodes.
pub(super) fn sets_changed(shared: &Shared, ch: Change<NodeBlockSet>) {
    let mut c = shared.lock();
    let s = &mut c.node_sets;
    let work = match ch {
        Change::Reset(items) => {
            let fresh: HashMap<String, SetState> =
                items.iter().map(|o| (o.metadata.name.clone(), SetState::of(o))).collect();
            let changed: Vec<String> = s
                .objects
                .keys()
                .chain(fresh.keys())
                .filter(|n| s.objects.get(*n) != fresh.get(*n))
                .cloned()
                .collect();
            s.dirty.extend(changed);
            s.objects = fresh;
            s.synced = true;
            true
        }
        Change::Applied(o) => {
            let st = SetState::of(&o);
            let own = s.objects.get(&o.metadata.name).is_some_and(|old| old.hash == st.hash);
            if !own {
                s.dirty.insert(o.metadata.name.clone());
            }
            s.objects.insert(o.metadata.name, st);
            !own
        }
        Change::Deleted(o) => {
            s.objects.remove(&o.metadata.name);
            s.dirty.insert(o.metadata.name);
            true
        }
    };
    if work {
        shared.wake.notify_all();
    }
}

/// The nodes whose NodeBlockSet names pool `k` though the pool's status (sorted `status_nodes`)
/// has no entry for them: where [`intents`] must look.
pub(super) fn intent_candidates(s: &NodeSets, k: &Key, has_entry: impl Fn(&str) -> bool) -> Vec<String> {
    let tag = pool_tag(k);
    s.objects
        .iter()
        .filter(|(name, st)| st.pools.binary_search(&tag).is_ok() && !has_entry(name))
        .map(|(name, _)| name.clone())
        .collect()
}

/// The entries of pool `k` in the NodeBlockSets of `nodes`, read from the API server (only
/// after a restart between a node write and its status write, or an object written by someone
/// else: normally there are none).
pub(super) fn intents(
    client: &Client,
    ns: &str,
    k: &Key,
    nodes: &[String],
) -> Result<AnyAllocations, KubeError> {
    crate::with_kind!(k.0, K => {
        let mut found = Vec::new();
        for n in nodes {
            let o: NodeBlockSet = match client.get(&NODEBLOCKSETS, Some(ns), n) {
                Ok(o) => o,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            };
            found.extend(
                K::node_blocks(&o.spec)
                    .iter()
                    .filter(|b| b.name == k.1 && K::node_name(&b.allocation) == n)
                    .map(|b| b.allocation.clone()),
            );
        }
        Ok(K::into_any_allocations(found))
    })
}

/// What a write needs to do for one node.
enum Action {
    Create(NodeBlockSetSpec),
    Replace(String, NodeBlockSetSpec),
    Delete,
}

/// The answer of a write: only its metadata is read (not the spec we just sent).
#[derive(Deserialize)]
struct Written {
    #[serde(default)]
    metadata: ObjectMeta,
}

/// Writes dirty nodes' objects until `stop`, in [`MAX_CONCURRENT_NODE_SET_WRITES`] threads.
pub(super) fn writer(client: &Client, ns: &str, shared: &Shared, stop: &AtomicBool) {
    std::thread::scope(|s| {
        for i in 1..MAX_CONCURRENT_NODE_SET_WRITES {
            let spawned = std::thread::Builder::new()
                .name(format!("node-sets-{i}"))
                .spawn_scoped(s, move || write_loop(client, ns, shared, stop));
            if let Err(e) = spawned {
                log::warn!("cannot start node-set writer {i}: {e}; continuing with fewer");
            }
        }
        write_loop(client, ns, shared, stop);
    });
}

fn write_loop(client: &Client, ns: &str, shared: &Shared, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let next = {
            let mut c = shared.lock();
            let leader = shared.is_leader.load(Ordering::SeqCst);
            let ready = leader && c.pools_synced() && c.synced_nodes && c.node_sets.synced;
            if ready && !c.node_sets.primed {
                let mut all: Vec<String> = c.nodes.iter().map(|n| n.metadata.name.clone()).collect();
                all.extend(c.node_sets.objects.keys().cloned());
                c.node_sets.dirty.extend(all);
                c.node_sets.primed = true;
            }
            // decisions first: a burst becomes one write per node, unless it lasts
            let now = Instant::now();
            let settled = c.queue.is_empty() && c.node_sets.deciding.is_empty();
            let since = match (settled || c.node_sets.dirty.is_empty(), c.node_sets.waiting_since) {
                (true, _) => None,
                (false, None) => Some(now),
                (false, Some(t)) => Some(t),
            };
            c.node_sets.waiting_since = since;
            let go = since.is_none_or(|t| now.duration_since(t) >= MAX_SETTLE_WAIT);
            c.node_sets.retry_at.retain(|_, at| *at > now);
            let s = &c.node_sets;
            let pick = (ready && go)
                .then(|| {
                    s.dirty.iter().find(|n| !s.writing.contains(*n) && !s.retry_at.contains_key(*n)).cloned()
                })
                .flatten();
            match pick {
                Some(name) => {
                    c.node_sets.dirty.remove(&name);
                    match plan_write(&c, &name) {
                        Plan::Write(action) => {
                            c.node_sets.writing.insert(name.clone());
                            Some((name, action))
                        }
                        Plan::Hold => {
                            c.node_sets.held.insert(name);
                            None
                        }
                        Plan::Nothing => None,
                    }
                }
                None => {
                    let _ = shared.wake.wait_timeout(c, WORKER_POLL);
                    None
                }
            }
        };
        let Some((name, action)) = next else { continue };
        let result = write(client, ns, &name, &action);
        let mut c = shared.lock();
        c.node_sets.writing.remove(&name);
        match result {
            Ok(Some(st)) => {
                shared.node_set_writes.fetch_add(1, Ordering::Relaxed);
                c.node_sets.objects.insert(name, st);
            }
            Ok(None) => {
                shared.node_set_writes.fetch_add(1, Ordering::Relaxed);
                c.node_sets.objects.remove(&name);
            }
            Err(e) if e.is_conflict() || (e.is_not_found() && !matches!(action, Action::Create(_))) => {
                // changed or deleted meanwhile: its watch event brings the state; decide again
                log::debug!("node block set {ns}/{name} changed meanwhile: {e}");
                if e.is_not_found() {
                    c.node_sets.objects.remove(&name);
                }
                c.node_sets.retry_at.insert(name.clone(), Instant::now() + CONFLICT_RETRY);
                c.node_sets.dirty.insert(name);
            }
            Err(e) => {
                log::warn!("cannot write node block set {ns}/{name}: {e}; retrying in {ERROR_REQUEUE:?}");
                c.node_sets.retry_at.insert(name.clone(), Instant::now() + ERROR_REQUEUE);
                c.node_sets.dirty.insert(name);
            }
        }
        // no wake-up: this writer picks the next dirty node itself, and nothing else waits
        // for a write (a wake-up per write of 18 waiting threads cost more CPU than the writes)
    }
}

/// What a writer does with a dirty node.
enum Plan {
    Write(Action),
    /// The stored object is as desired.
    Nothing,
    /// Writing now would drop an entry of a pool not decided this term (see
    /// [`NodeSets::decided_in_term`]): wait for that decision.
    Hold,
}

/// What to do for `name` now, from the cache.
fn plan_write(c: &super::cache::Cache, name: &str) -> Plan {
    let s = &c.node_sets;
    let sources = c.pools.iter().map(|(k, p)| Source {
        pool: &p.pool,
        valid: p.valid,
        allocations: s.decided.get(k).map(|a| &**a),
    });
    let spec = desired(name, sources);
    let node_exists = c.nodes.binary_search_by(|n| n.name().cmp(name)).is_ok();
    let stored = s.objects.get(name);
    if let Some(st) = stored {
        let kept = pool_tags(&spec);
        let undecided = || c.pools.keys().filter(|k| !s.decided_in_term.contains(*k)).map(pool_tag);
        let drops_undecided =
            undecided().any(|t| st.pools.binary_search(&t).is_ok() && kept.binary_search(&t).is_err());
        if drops_undecided {
            return Plan::Hold;
        }
    }
    match stored {
        Some(st) if node_exists || !spec.is_empty() => match st.hash != json_hash(&spec) {
            true => Plan::Write(Action::Replace(st.resource_version.clone(), spec)),
            false => Plan::Nothing,
        },
        Some(_) => Plan::Write(Action::Delete),
        None if node_exists || !spec.is_empty() => Plan::Write(Action::Create(spec)),
        None => Plan::Nothing,
    }
}

/// Performs one write; the new state, or `None` when the object was deleted.
fn write(client: &Client, ns: &str, name: &str, action: &Action) -> Result<Option<SetState>, KubeError> {
    let object = |rv: Option<&str>, spec: &NodeBlockSetSpec| {
        let mut metadata = ObjectMeta::named(name);
        metadata.rest.insert("namespace".into(), ns.into());
        if let Some(rv) = rv {
            metadata.rest.insert("resourceVersion".into(), rv.into());
        }
        NodeBlockSet {
            api_version: API_VERSION.into(),
            kind: KIND_NODE_BLOCK_SET.into(),
            metadata,
            spec: spec.clone(),
        }
    };
    let state = |w: Written, spec: &NodeBlockSetSpec| SetState {
        resource_version: w
            .metadata
            .rest
            .get("resourceVersion")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .into(),
        hash: json_hash(spec),
        pools: pool_tags(spec),
    };
    match action {
        Action::Create(spec) => {
            let w: Written = match client.create_as(&NODEBLOCKSETS, Some(ns), &object(None, spec)) {
                Ok(w) => w,
                // there though the watch has not shown it: not yet, or never, because it does
                // not decode (written by someone else); replace it with the one we want
                Err(e) if e.is_conflict() => {
                    let found: Written = client.get(&NODEBLOCKSETS, Some(ns), name)?;
                    let rv = found.metadata.rest.get("resourceVersion").and_then(|v| v.as_str());
                    log::info!("node block set {ns}/{name} exists unseen by the watch: replacing it");
                    client.replace_as(&NODEBLOCKSETS, Some(ns), name, &object(rv, spec))?
                }
                Err(e) => return Err(e),
            };
            log::debug!("node block set {ns}/{name} created ({} pools)", spec.len());
            Ok(Some(state(w, spec)))
        }
        Action::Replace(rv, spec) => {
            let w: Written = client.replace_as(&NODEBLOCKSETS, Some(ns), name, &object(Some(rv), spec))?;
            log::debug!("node block set {ns}/{name} written ({} pools)", spec.len());
            Ok(Some(state(w, spec)))
        }
        Action::Delete => {
            match client.delete(&NODEBLOCKSETS, Some(ns), name) {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
            log::debug!("node block set {ns}/{name} deleted (no node, no entries)");
            Ok(None)
        }
    }
}

/// Marks dirty the nodes whose entry of pool `k` differs between what nodes may hold now
/// (`held`: the stored status, the previous decision, the intents) and `after`, or every node of
/// any when the pool's spec changed.
pub(super) fn mark_decision(
    s: &mut NodeSets,
    k: &Key,
    spec_hash: u64,
    held: &[&AnyAllocations],
    after: &AnyAllocations,
) {
    let spec_changed = s.spec_hash.insert(k.clone(), spec_hash) != Some(spec_hash);
    for before in held {
        crate::with_pool_kind!(AnyAllocations: *before, b, K => {
            let a = K::of_allocations(after).unwrap_or(&[]);
            changed_nodes::<K>(b, a, spec_changed, &mut s.dirty)
        });
    }
}

/// The nodes whose entry differs between two versions of one pool's status.
pub(super) fn nodes_differing(old: &crate::api::AnyPool, new: &crate::api::AnyPool) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    crate::with_pool_kind!(old, o, K => {
        if let Some(n) = K::of(new) {
            changed_nodes::<K>(K::allocations(o), K::allocations(n), false, &mut out);
        }
    });
    out
}

/// The node names of an allocation list.
pub(super) fn node_names(a: &AnyAllocations) -> Vec<String> {
    crate::with_pool_kind!(AnyAllocations: a, a, K => a.iter().map(|e| K::node_name(e).to_string()).collect())
}

/// The nodes whose stored object names pool `k`.
pub(super) fn objects_naming(s: &NodeSets, k: &Key) -> Vec<String> {
    let tag = pool_tag(k);
    s.objects.iter().filter(|(_, st)| st.pools.binary_search(&tag).is_ok()).map(|(n, _)| n.clone()).collect()
}

fn changed_nodes<K: PoolKind>(
    b: &[K::Allocation],
    a: &[K::Allocation],
    all: bool,
    out: &mut BTreeSet<String>,
) {
    if all {
        out.extend(b.iter().chain(a).map(|e| K::node_name(e).to_string()));
        return;
    }
    let old: HashMap<&str, &K::Allocation> = b.iter().map(|e| (K::node_name(e), e)).collect();
    let new: HashMap<&str, &K::Allocation> = a.iter().map(|e| (K::node_name(e), e)).collect();
    for (n, e) in &new {
        if old.get(n) != Some(e) {
            out.insert(n.to_string());
        }
    }
    for n in old.keys() {
        if !new.contains_key(n) {
            out.insert(n.to_string());
        }
    }
}

#[cfg(test)]
mod tests;
