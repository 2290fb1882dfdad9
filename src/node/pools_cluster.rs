//! Cluster mode's pool source: this node's NodeBlockSet (`<--ippools-namespace>/<--node-name>`,
//! written by ipam-controller), kept current by one reflector that lists and watches only that
//! object (`fieldSelector=metadata.name=<node>`), turned into this node's [`PoolSet`] on every
//! change, and persisted to the pools cache ([`cache`]) so that the node keeps allocating from
//! known blocks across API outages and restarts.
//!
//! Why one object and not the pools: every pool's status holds every node's entry, so a node
//! that watched the pools received, on each node join, every pool's whole status again (4 MiB
//! per join per node at 5,000 nodes × 10 pools) and held the whole cluster's entries in memory.
//! The NodeBlockSet holds, per pool with an entry for this node, the spec as it applies to the
//! node and that entry (`api::node_block_set`, `alloc::node_blocks`): another node joining
//! writes another object, and nothing held here grows with the number of nodes.
//!
//! The view is the object's entries as pool objects (`NodeBlockSetSpec::pools`: spec and one
//! status entry each), by pool key:
//! - object present: authoritative; a pool not in it is dropped, as a deleted pool always was;
//! - object absent from the start (not written yet, e.g. while an older ipam-controller runs
//!   during an upgrade): nothing changes. The node keeps serving what it has (the cache; without
//!   one it does not serve and `/readyz` stays 503) and logs once that it waits for
//!   ipam-controller;
//! - object deleted after it was seen (a delete event, or a relist without it): "no pools", like
//!   an empty object. ipam-controller deletes a node's object only when no pool holds an entry
//!   for the node any more (its Node gone past the release grace period), so serving the last
//!   object would hand out blocks that are another node's by now; an object deleted by hand is
//!   written again at once (its Node exists);
//! - the CRD missing (404): the reflector retries with its backoff; the cache serves meanwhile;
//! - an object of another name (the API server applies the field selector, so none arrives):
//!   ignored, with a warning.
//!
//! Derivation ([`derive`], pure): a pool serves this node only through its `status.allocations`
//! entry for the node (the controller plans; a node never plans for itself in cluster mode,
//! since two nodes planning alone would pick the same block). A pool whose spec turns invalid
//! (the controller copies an invalid spec verbatim) keeps its last valid spec and block
//! (`pools::derive`), as the controller keeps its allocations.
//!
//! The cache holds the view's objects; for a pool whose current spec is invalid, the last object
//! of it whose spec was valid, never the invalid one, so that a restart under an invalid spec
//! still serves (from the cache, then held over the API's view). A cache written by an older
//! version holds whole pools (every node's entry): it is projected to this node at load, as the
//! controller would (`alloc::node_blocks::desired`), and rewritten at the first object. It is
//! only a fallback: the first object from the API server replaces it.
//!
//! Owns: the view of the node's object, when the service's pools change, and what is cached.
//! Must not: plan blocks (the controller does) or write to the API server.

pub mod cache;

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use crate::alloc::PoolKind;
use crate::alloc::node_blocks::{self, Source};
use crate::api::{AnyAllocations, AnyPool, NodeBlockSet, PoolKey};
use crate::kube::{self, Change, Client, ListOptions, NODEBLOCKSETS};

use super::pools::{self, Planning, PoolRef, PoolSet};
use super::service::Service;

pub use cache::{CACHE_FILE_NAME, Cache, CacheError, MAX_CACHE_BYTES, cache_path, load_cache, save_cache};

/// The node's pools from pool objects, derived over `previous` (the pools served now).
pub fn derive(objects: &[AnyPool], node: &str, previous: &PoolSet) -> PoolSet {
    pools::derive(objects.iter().map(PoolRef::from), node, Planning::Controller, previous)
}

/// Pool objects as this node's entries would carry them (spec as it applies to the node, its
/// status entry), as the controller projects them: what a cache of an older version (whole
/// pools) becomes. A pool without an entry for the node is left out; an invalid spec is kept
/// verbatim. Idempotent: the view's own objects come back unchanged.
pub fn project(objects: &[AnyPool], node: &str) -> Vec<AnyPool> {
    let own: Vec<AnyAllocations> = objects
        .iter()
        .map(|p| {
            crate::with_pool_kind!(p, q, K => K::into_any_allocations(
                K::allocations(q).iter().filter(|e| K::node_name(e) == node).take(1).cloned().collect()
            ))
        })
        .collect();
    let sources = objects.iter().zip(&own).map(|(pool, a)| Source {
        pool,
        valid: spec_valid(pool),
        allocations: Some(a),
    });
    node_blocks::desired(node, sources).pools()
}

fn spec_valid(p: &AnyPool) -> bool {
    crate::with_pool_kind!(p, p, K => K::validate(p).is_ok())
}

/// Whether the node's object has been seen.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// The API server has not answered the list yet.
    #[default]
    NotYet,
    /// Listed or deleted, and not there: waiting for ipam-controller.
    Absent,
    Present,
}

/// The node's object as pool objects, and what the cache remembers.
#[derive(Debug, Default)]
struct View {
    /// The entries of the last object seen, by pool key.
    objects: BTreeMap<PoolKey, AnyPool>,
    seen: Seen,
    /// The last object of each pool whose spec was valid: what the cache keeps for a pool whose
    /// current spec is invalid.
    last_valid: BTreeMap<PoolKey, AnyPool>,
    /// What the cache file holds now (written again only when this changes).
    cached: Vec<AnyPool>,
}

impl View {
    /// Remembers the valid objects of the current view, forgets dropped pools, and returns the
    /// objects to cache: each pool's current object, or its last valid one while it is invalid.
    fn objects_to_cache(&mut self) -> Vec<AnyPool> {
        self.last_valid.retain(|key, _| self.objects.contains_key(key));
        let mut out = Vec::with_capacity(self.objects.len());
        for (key, obj) in &self.objects {
            if spec_valid(obj) {
                self.last_valid.insert(key.clone(), obj.clone());
                out.push(obj.clone());
            } else {
                out.push(self.last_valid.get(key).unwrap_or(obj).clone());
            }
        }
        out
    }
}

/// The running pool source: see the module docs.
pub struct ClusterPools {
    node: String,
    namespace: String,
    cache: PathBuf,
    service: Arc<Service>,
    view: Mutex<View>,
    /// Set once the service holds pools from the cache or from the node's object.
    known: AtomicBool,
}

impl ClusterPools {
    /// Loads the cache into the service when there is one (the node can serve at once).
    pub fn new(node: String, namespace: String, cache: PathBuf, service: Arc<Service>) -> Arc<ClusterPools> {
        let cp = ClusterPools {
            node,
            namespace,
            cache,
            service,
            view: Mutex::new(View::default()),
            known: AtomicBool::new(false),
        };
        match load_cache(&cp.cache) {
            Ok(Some(c)) if c.node == cp.node && c.namespace == cp.namespace => {
                let raw = c.objects();
                let objects = project(&raw, &cp.node);
                let pools = derive(&objects, &cp.node, &PoolSet::default());
                log::info!(
                    "pools cache {}: {} pools for node {} until the API server answers",
                    cp.cache.display(),
                    pools.len(),
                    cp.node
                );
                pools::log_changes(&PoolSet::default(), &pools);
                cp.service.set_pools(pools);
                cp.known.store(true, Ordering::SeqCst);
                // The cached objects are the last valid ones the node knew: if its object now
                // holds an invalid spec of one of them, the next cache keeps this one.
                let mut v = cp.view();
                v.cached = raw;
                for o in objects.into_iter().filter(spec_valid) {
                    v.last_valid.insert(o.key(), o);
                }
            }
            Ok(Some(c)) => log::warn!(
                "pools cache {} belongs to node {:?}, namespace {:?}, not {:?}, {:?}; ignoring it",
                cp.cache.display(),
                c.node,
                c.namespace,
                cp.node,
                cp.namespace
            ),
            Ok(None) => log::info!("no pools cache at {}; waiting for the API server", cp.cache.display()),
            Err(e) => log::warn!("{e}; waiting for the API server"),
        }
        Arc::new(cp)
    }

    /// The service holds pools (from the cache or the API server).
    pub fn known(&self) -> bool {
        self.known.load(Ordering::SeqCst)
    }

    /// `<namespace>/<node>`: the node's object.
    fn object_name(&self) -> String {
        format!("{}/{}", self.namespace, self.node)
    }

    /// What the node waits for while no pools are known, for the start log.
    pub fn waiting_for(&self) -> String {
        match self.view().seen {
            Seen::NotYet => {
                format!("the API server has not answered the list of NodeBlockSet {}", self.object_name())
            }
            Seen::Absent => format!(
                "NodeBlockSet {} does not exist yet (ipam-controller writes one per Node: is an ipam-controller of this version running?)",
                self.object_name()
            ),
            Seen::Present => "nothing".into(),
        }
    }

    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Recomputes the PoolSet from the view and applies it; writes the cache when what it would
    /// hold changed. Runs under the view lock (taken by the caller), so that changes apply in
    /// order; derivation is pure and the cache write is one small file.
    fn changed(&self, view: &mut View) {
        let current = self.service.pools();
        let objects: Vec<AnyPool> = view.objects.values().cloned().collect();
        let pools = derive(&objects, &self.node, &current);
        let first = !self.known();
        if first || *current != pools {
            log::info!("pools changed: {} pools for node {}", pools.len(), self.node);
            pools::log_changes(&current, &pools);
            self.service.set_pools(pools);
            self.known.store(true, Ordering::SeqCst);
        }
        let to_cache = view.objects_to_cache();
        if to_cache != view.cached {
            let (ip, cidr) = cache::split(to_cache.clone());
            match save_cache(&self.cache, &self.node, &self.namespace, &ip, &cidr) {
                Ok(()) => view.cached = to_cache,
                Err(e) => {
                    log::warn!("{e}; the node still serves, but a restart during an API outage would not")
                }
            }
        }
    }

    /// The node's object is there: it is the view now.
    fn present(&self, view: &mut View, o: NodeBlockSet) {
        let rv = o.metadata.rest.get("resourceVersion").and_then(|v| v.as_str()).unwrap_or("?");
        log::info!(
            "NodeBlockSet {} (resourceVersion {rv}): {} IPPools, {} CIDRPools",
            self.object_name(),
            o.spec.ip_pools.len(),
            o.spec.cidr_pools.len()
        );
        view.objects = o.spec.pools().into_iter().map(|p| (p.key(), p)).collect();
        view.seen = Seen::Present;
        self.changed(view);
    }

    /// The node's object is not there. Never seen: keep everything (an older ipam-controller
    /// writes none), say so once per absence. Seen before: deleted, which ipam-controller does
    /// only when the node has no entries left: no pools.
    fn absent(&self, view: &mut View, how: &str) {
        if view.seen == Seen::Present {
            view.objects.clear();
            view.seen = Seen::Absent;
            log::warn!(
                "NodeBlockSet {} {how}: no pools on this node until ipam-controller writes it again",
                self.object_name()
            );
            self.changed(view);
            return;
        }
        if view.seen == Seen::Absent {
            return;
        }
        view.seen = Seen::Absent;
        let serving = if self.known() {
            format!("serving the pools it knows ({}) until then", self.service.pools().len())
        } else {
            "not serving until then (no pools cache)".to_string()
        };
        log::warn!(
            "NodeBlockSet {} {how}: waiting for ipam-controller to write it; {serving}",
            self.object_name()
        );
    }

    /// Whether `o` is this node's object; another one is logged and ignored (the watch's field
    /// selector keeps them out, so this is never expected).
    fn mine(&self, o: &NodeBlockSet) -> bool {
        if o.metadata.name == self.node {
            return true;
        }
        log::warn!(
            "NodeBlockSet {}/{} is not this node's ({}): ignoring it",
            self.namespace,
            o.metadata.name,
            self.node
        );
        false
    }

    fn on_change(&self, c: Change<NodeBlockSet>) {
        let mut v = self.view();
        match c {
            Change::Reset(items) => {
                let mut own = None;
                for o in items {
                    if self.mine(&o) {
                        own = Some(o);
                    }
                }
                match own {
                    Some(o) => self.present(&mut v, o),
                    None if v.seen == Seen::Present => {
                        self.absent(&mut v, "was deleted (relisted without it)")
                    }
                    None => self.absent(&mut v, "does not exist"),
                }
            }
            Change::Applied(o) => {
                if self.mine(&o) {
                    self.present(&mut v, o)
                }
            }
            Change::Deleted(o) => {
                if self.mine(&o) {
                    self.absent(&mut v, "was deleted")
                }
            }
        }
    }

    /// Starts the reflector thread of the node's object; it ends when `stop` is set (and the
    /// client is shut down, which unblocks its watch).
    pub fn start(self: &Arc<Self>, client: &Client, stop: Arc<AtomicBool>) -> io::Result<JoinHandle<()>> {
        let (me, client) = (self.clone(), client.clone());
        let opts = ListOptions {
            field_selector: Some(kube::field_equals("metadata.name", &self.node)),
            ..ListOptions::default()
        };
        thread::Builder::new().name(format!("reflect-{}", NODEBLOCKSETS.plural)).spawn(move || {
            kube::reflect(&client, &NODEBLOCKSETS, Some(&me.namespace), &opts, &stop, &mut |c| {
                me.on_change(c)
            })
        })
    }
}

#[cfg(test)]
mod tests;
