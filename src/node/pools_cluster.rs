//! Cluster mode's pool source: IPPool and CIDRPool objects of `--ippools-namespace`, kept
//! current by one reflector per kind, turned into this node's [`PoolSet`] on every change, and
//! persisted to a cache file so that the node keeps allocating from known blocks across API
//! outages and restarts.
//!
//! Derivation ([`derive`], pure): a pool serves this node only through its
//! `status.allocations` entry for the node (the controller plans; a node never plans for itself
//! in cluster mode, since two nodes planning alone would pick the same block). A pool without an
//! entry is left out and logged; the others work. A pool whose spec turns invalid keeps its last
//! valid spec and block (`pools::derive`), as the controller keeps its allocations.
//!
//! Cache (`<store dir>/pools-cache.json`, mode 0600, written atomically: temp, fsync, rename,
//! fsync dir): `{"format":"nv-ipam-pools-cache","version":1,"node":..,"namespace":..,
//! "ipPools":[..],"cidrPools":[..]}` — the pool objects of the last complete view (both kinds listed), from
//! which the PoolSet is derived again at start. For a pool whose current spec is invalid the
//! cache keeps the last object of it whose spec was valid, never the invalid one, so that a
//! restart under an invalid spec still serves (from the cache, then held over the API's view).
//! It is only a fallback: the first complete view from the API server replaces it.
//!
//! Owns: the view of the pool objects, the cache file, and when the service's pools change.
//! Must not: plan blocks (the controller does) or write to the API server.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use serde::{Deserialize, Serialize};

use crate::alloc::PoolKind;
use crate::api::{AnyPool, CidrPool, IpPool, PoolType};
use crate::kube::{self, Change, Client, ListOptions};
use crate::prescan::{self, MAX_DEPTH};
use crate::replace;

use super::pools::{self, Planning, PoolRef, PoolSet};
use super::service::Service;

/// Largest cache file read: 16 MiB, as the pools file (thousands of pools with full status).
pub const MAX_CACHE_BYTES: u64 = 16 << 20;
/// The cache file's name, next to the store.
pub const CACHE_FILE_NAME: &str = "pools-cache.json";
const CACHE_FORMAT: &str = "nv-ipam-pools-cache";
const CACHE_VERSION: u32 = 1;

/// Why the cache could not be read or written.
#[derive(Debug)]
pub enum CacheError {
    Io { action: &'static str, path: PathBuf, source: io::Error },
    TooLarge { path: PathBuf, len: u64 },
    Decode { path: PathBuf, reason: String },
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheError::Io { action, path, source } => write!(
                f,
                "pools cache {}: cannot {action}: {source}; check the store directory's permissions and free space",
                path.display()
            ),
            CacheError::TooLarge { path, len } => write!(
                f,
                "pools cache {}: {len} bytes is more than the {MAX_CACHE_BYTES}-byte limit; remove it (it is rebuilt from the API server)",
                path.display()
            ),
            CacheError::Decode { path, reason } => write!(
                f,
                "pools cache {}: {reason}; remove it (it is rebuilt from the API server)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for CacheError {}

/// The node's pools from pool objects, derived over `previous` (the pools served now).
pub fn derive(objects: &[AnyPool], node: &str, previous: &PoolSet) -> PoolSet {
    pools::derive(objects.iter().map(PoolRef::from), node, Planning::Controller, previous)
}

/// What the cache file holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cache {
    pub format: String,
    pub version: u32,
    pub node: String,
    /// `--ippools-namespace` the objects came from; a cache of another namespace is ignored.
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub ip_pools: Vec<IpPool>,
    #[serde(default)]
    pub cidr_pools: Vec<CidrPool>,
}

impl Cache {
    /// The cached objects, kind by kind.
    fn objects(&self) -> Vec<AnyPool> {
        let ip = self.ip_pools.iter().cloned().map(AnyPool::Ip);
        ip.chain(self.cidr_pools.iter().cloned().map(AnyPool::Cidr)).collect()
    }
}

/// Objects split into the cache file's per-kind lists (its format).
fn split(objects: Vec<AnyPool>) -> (Vec<IpPool>, Vec<CidrPool>) {
    let (mut ip, mut cidr) = (Vec::new(), Vec::new());
    for o in objects {
        match o {
            AnyPool::Ip(p) => ip.push(p),
            AnyPool::Cidr(p) => cidr.push(p),
        }
    }
    (ip, cidr)
}

/// The cache path for a store file: its sibling [`CACHE_FILE_NAME`].
pub fn cache_path(store_file: &Path) -> PathBuf {
    store_file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).join(CACHE_FILE_NAME)
}

/// Reads the cache; `Ok(None)` when there is none.
pub fn load_cache(path: &Path) -> Result<Option<Cache>, CacheError> {
    let io_err = |action| move |source| CacheError::Io { action, path: path.to_path_buf(), source };
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("open")(e)),
    };
    let len = f.metadata().map_err(io_err("stat"))?.len();
    if len > MAX_CACHE_BYTES {
        return Err(CacheError::TooLarge { path: path.to_path_buf(), len });
    }
    let mut buf = Vec::new();
    f.take(MAX_CACHE_BYTES).read_to_end(&mut buf).map_err(io_err("read"))?;
    // Damage that nests deep is refused in microseconds, before serde_json's recursion.
    prescan::check_json(&buf, MAX_DEPTH)
        .map_err(|e| CacheError::Decode { path: path.to_path_buf(), reason: e.to_string() })?;
    let c: Cache = serde_json::from_slice(&buf)
        .map_err(|e| CacheError::Decode { path: path.to_path_buf(), reason: e.to_string() })?;
    if c.format != CACHE_FORMAT || c.version != CACHE_VERSION {
        return Err(CacheError::Decode {
            path: path.to_path_buf(),
            reason: format!(
                "format {:?} version {} is not {CACHE_FORMAT} {CACHE_VERSION}",
                c.format, c.version
            ),
        });
    }
    Ok(Some(c))
}

/// Writes the cache atomically (`crate::replace`: temp, fsync, rename, fsync dir; mode 0600).
pub fn save_cache(
    path: &Path,
    node: &str,
    namespace: &str,
    ip_pools: &[IpPool],
    cidr_pools: &[CidrPool],
) -> Result<(), CacheError> {
    let cache = Cache {
        format: CACHE_FORMAT.into(),
        version: CACHE_VERSION,
        node: node.into(),
        namespace: namespace.into(),
        ip_pools: ip_pools.to_vec(),
        cidr_pools: cidr_pools.to_vec(),
    };
    let bytes = serde_json::to_vec(&cache).map_err(|e| CacheError::Decode {
        path: path.to_path_buf(),
        reason: format!("cannot encode: {e}"),
    })?;
    replace::write(path, ".tmp", 0o600, |f| f.write_all(&bytes)).map_err(|source| CacheError::Io {
        action: "write",
        path: path.to_path_buf(),
        source,
    })
}

/// One kind's objects in the reflectors' view, by name.
#[derive(Debug, Default)]
struct KindView {
    objects: BTreeMap<String, AnyPool>,
    /// Listed since start (a PoolSet from half a view would drop the other kinds' pools).
    listed: bool,
    /// The last object of each pool whose spec was valid: what the cache keeps for a pool whose
    /// current spec is invalid.
    last_valid: BTreeMap<String, AnyPool>,
}

/// The reflectors' shared view: every kind's objects.
#[derive(Debug, Default)]
struct View {
    kinds: BTreeMap<PoolType, KindView>,
}

impl View {
    fn kind(&mut self, t: PoolType) -> &mut KindView {
        self.kinds.entry(t).or_default()
    }

    fn all_listed(&self) -> bool {
        PoolType::ALL.iter().all(|t| self.kinds.get(t).is_some_and(|k| k.listed))
    }

    /// Every kind's current objects, kind by kind, by name.
    fn objects(&self) -> Vec<AnyPool> {
        self.kinds.values().flat_map(|k| k.objects.values().cloned()).collect()
    }

    /// Remembers the valid objects of the current view, forgets deleted pools, and returns the
    /// objects to cache: each pool's current object, or its last valid one while it is invalid.
    fn objects_to_cache(&mut self) -> Vec<AnyPool> {
        let mut out = Vec::new();
        for k in self.kinds.values_mut() {
            out.extend(remember(&k.objects, &mut k.last_valid, spec_valid));
        }
        out
    }
}

fn spec_valid(p: &AnyPool) -> bool {
    crate::with_pool_kind!(p, p, K => K::validate(p).is_ok())
}

fn remember<T: Clone>(
    current: &BTreeMap<String, T>,
    last_valid: &mut BTreeMap<String, T>,
    valid: impl Fn(&T) -> bool,
) -> Vec<T> {
    last_valid.retain(|name, _| current.contains_key(name));
    current
        .iter()
        .map(|(name, obj)| {
            if valid(obj) {
                last_valid.insert(name.clone(), obj.clone());
                obj.clone()
            } else {
                last_valid.get(name).unwrap_or(obj).clone()
            }
        })
        .collect()
}

/// The running pool source: see the module docs.
pub struct ClusterPools {
    node: String,
    namespace: String,
    cache: PathBuf,
    service: Arc<Service>,
    view: Mutex<View>,
    /// Set once the service holds pools from the cache or from a complete view.
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
                let objects = c.objects();
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
                // The cached objects are the last valid ones the node knew: if the API server
                // now has an invalid spec of one of them, the next cache keeps this one.
                let mut v = cp.view();
                for o in objects.into_iter().filter(spec_valid) {
                    v.kind(o.pool_type()).last_valid.insert(o.name().to_string(), o);
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

    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Recomputes the PoolSet after a change; applies and caches it once both kinds are listed.
    /// Runs under the view lock (taken by the caller), so that two reflectors cannot apply
    /// their results out of order; derivation is pure and the cache write is one small file.
    fn changed(&self, view: &mut View) {
        if !view.all_listed() {
            return;
        }
        let current = self.service.pools();
        let pools = derive(&view.objects(), &self.node, &current);
        let (cache_ip, cache_cidr) = split(view.objects_to_cache());
        let first = !self.known();
        if first || *current != pools {
            log::info!("pools changed: {} pools for node {}", pools.len(), self.node);
            pools::log_changes(&current, &pools);
            self.service.set_pools(pools);
            self.known.store(true, Ordering::SeqCst);
            if let Err(e) = save_cache(&self.cache, &self.node, &self.namespace, &cache_ip, &cache_cidr) {
                log::warn!("{e}; the node still serves, but a restart during an API outage would not");
            }
        }
    }

    fn on_change<K: PoolKind>(&self, c: Change<K::Pool>) {
        let mut v = self.view();
        {
            let k = v.kind(K::TYPE);
            let name = |p: &K::Pool| K::meta(p).name.clone();
            match c {
                Change::Reset(items) => {
                    k.objects = items.into_iter().map(|p| (name(&p), K::into_any(p))).collect();
                    k.listed = true;
                }
                Change::Applied(p) => {
                    k.objects.insert(name(&p), K::into_any(p));
                }
                Change::Deleted(p) => {
                    k.objects.remove(&K::meta(&p).name);
                }
            }
        }
        self.changed(&mut v);
    }

    /// Starts one reflector thread per pool kind; they end when `stop` is set (and the client
    /// is shut down, which unblocks their watches).
    pub fn start(
        self: &Arc<Self>,
        client: &Client,
        stop: Arc<AtomicBool>,
    ) -> io::Result<Vec<JoinHandle<()>>> {
        let mut threads = Vec::new();
        for t in PoolType::ALL {
            let (me, client, ns, stop) = (self.clone(), client.clone(), self.namespace.clone(), stop.clone());
            let r = t.info().resource;
            let spawned = thread::Builder::new().name(format!("reflect-{}", r.plural)).spawn(move || {
                crate::with_kind!(t, K => {
                    kube::reflect(&client, r, Some(&ns), &ListOptions::default(), &stop, &mut |c| {
                        me.on_change::<K>(c)
                    })
                })
            })?;
            threads.push(spawned);
        }
        Ok(threads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::PoolKey;
    use crate::api::{IpAllocation, IpPoolStatus};
    use std::fs;

    fn ippool(name: &str, alloc: Option<Vec<(&str, &str, &str)>>) -> IpPool {
        let mut p = IpPool::default();
        p.metadata.name = name.into();
        p.spec.subnet = "192.168.0.0/24".into();
        p.spec.per_node_block_size = 10;
        p.spec.gateway = "192.168.0.1".into();
        p.status = alloc.map(|a| IpPoolStatus {
            allocations: a
                .into_iter()
                .map(|(n, s, e)| IpAllocation { node_name: n.into(), start_ip: s.into(), end_ip: e.into() })
                .collect(),
        });
        p
    }

    #[test]
    fn derive_needs_this_nodes_status_entry() {
        let pools = vec![
            ippool(
                "a",
                Some(vec![("n1", "192.168.0.1", "192.168.0.10"), ("n2", "192.168.0.11", "192.168.0.20")]),
            ),
            ippool("b", None),
            ippool("c", Some(vec![("n2", "192.168.0.1", "192.168.0.10")])),
        ];
        let set = derive(&pools.into_iter().map(AnyPool::Ip).collect::<Vec<_>>(), "n2", &PoolSet::default());
        assert_eq!(set.len(), 2);
        let a = set.get(&PoolKey::new(PoolType::IpPool, "a")).expect("a");
        assert_eq!(a.range.to_string(), "192.168.0.11-192.168.0.20");
        let skipped = set.refusals();
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].contains("pool b") && skipped[0].contains("n2"), "{skipped:?}");
    }

    #[test]
    fn the_cache_keeps_the_last_valid_object_of_an_invalid_pool() {
        let mut v = View::default();
        let ip = |p: &IpPool| AnyPool::Ip(p.clone());
        let good = ippool("a", Some(vec![("n1", "192.168.0.1", "192.168.0.10")]));
        v.kind(PoolType::IpPool).objects.insert("a".into(), ip(&good));
        assert_eq!(v.objects_to_cache(), vec![ip(&good)]);
        let mut bad = good.clone();
        bad.spec.gateway = "10.9.9.9".into();
        v.kind(PoolType::IpPool).objects.insert("a".into(), ip(&bad));
        assert_eq!(v.objects_to_cache(), vec![ip(&good)], "the invalid spec is not cached");
        // a pool created invalid has nothing better to cache than itself
        let mut never = bad.clone();
        never.metadata.name = "z".into();
        v.kind(PoolType::IpPool).objects.insert("z".into(), ip(&never));
        assert_eq!(v.objects_to_cache(), vec![ip(&good), ip(&never)]);
        // deleted pools are forgotten: a pool re-created invalid is not served from its past
        v.kind(PoolType::IpPool).objects.clear();
        assert!(v.objects_to_cache().is_empty());
        v.kind(PoolType::IpPool).objects.insert("a".into(), ip(&bad));
        assert_eq!(v.objects_to_cache(), vec![ip(&bad)]);
    }

    #[test]
    fn cache_round_trips_atomically_and_privately() {
        let dir = crate::store::tests::TempDir::new("pools-cache");
        let path = cache_path(&dir.join("store"));
        assert!(load_cache(&path).expect("none").is_none());
        let pools = vec![ippool("a", Some(vec![("n1", "192.168.0.1", "192.168.0.10")]))];
        save_cache(&path, "n1", "ns", &pools, &[]).expect("save");
        let c = load_cache(&path).expect("load").expect("some");
        assert_eq!((c.node.as_str(), c.ip_pools.clone()), ("n1", pools));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&path).expect("stat").permissions().mode() & 0o777, 0o600);
        fs::write(&path, b"{not json").expect("damage");
        let e = load_cache(&path).expect_err("damaged");
        assert!(e.to_string().contains("remove it"), "{e}");
    }

    #[test]
    fn a_deeply_nested_cache_is_refused_by_the_depth_check() {
        let dir = crate::store::tests::TempDir::new("pools-cache-deep");
        let path = cache_path(&dir.join("store"));
        fs::write(&path, format!("{{\"x\":{}", "[".repeat(100_000))).expect("damage");
        let e = load_cache(&path).expect_err("deep");
        assert!(e.to_string().contains("nested deeper than the limit of 64 levels"), "{e}");
    }
}
