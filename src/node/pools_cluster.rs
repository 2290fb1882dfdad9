//! Cluster mode's pool source: IPPool and CIDRPool objects of `--ippools-namespace`, kept
//! current by two reflectors, turned into this node's [`PoolSet`] on every change, and
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
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use serde::{Deserialize, Serialize};

use crate::api::{self, CidrPool, IpPool};
use crate::kube::{self, Change, Client, ListOptions};

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
pub fn derive(ip_pools: &[IpPool], cidr_pools: &[CidrPool], node: &str, previous: &PoolSet) -> PoolSet {
    let objects = ip_pools.iter().map(PoolRef::Ip).chain(cidr_pools.iter().map(PoolRef::Cidr));
    pools::derive(objects, node, Planning::Controller, previous)
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

/// Writes the cache atomically (temp, fsync, rename, fsync dir; mode 0600).
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
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let write = || -> io::Result<()> {
        let mut f = OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(&bytes)?;
        // Without this fsync the rename below could expose an empty cache after a power loss.
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // Without this the rename itself may be lost, leaving the older cache.
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        File::open(dir)?.sync_all()
    };
    write().map_err(|source| {
        let _ = fs::remove_file(&tmp);
        CacheError::Io { action: "write", path: path.to_path_buf(), source }
    })
}

/// The reflectors' shared view: objects by name, and whether each kind has been listed since
/// start (a PoolSet from half a view would drop the other kind's pools).
#[derive(Debug, Default)]
struct View {
    ip: BTreeMap<String, IpPool>,
    cidr: BTreeMap<String, CidrPool>,
    ip_listed: bool,
    cidr_listed: bool,
    /// The last object of each pool whose spec was valid: what the cache keeps for a pool whose
    /// current spec is invalid.
    last_valid_ip: BTreeMap<String, IpPool>,
    last_valid_cidr: BTreeMap<String, CidrPool>,
}

impl View {
    /// Remembers the valid objects of the current view, forgets deleted pools, and returns the
    /// objects to cache: each pool's current object, or its last valid one while it is invalid.
    fn objects_to_cache(&mut self) -> (Vec<IpPool>, Vec<CidrPool>) {
        let ip = remember(&self.ip, &mut self.last_valid_ip, |p| api::validate_ip_pool(p).is_ok());
        let cidr = remember(&self.cidr, &mut self.last_valid_cidr, |p| api::validate_cidr_pool(p).is_ok());
        (ip, cidr)
    }
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
                let pools = derive(&c.ip_pools, &c.cidr_pools, &cp.node, &PoolSet::default());
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
                let ip = c.ip_pools.iter().filter(|p| api::validate_ip_pool(p).is_ok());
                v.last_valid_ip = ip.map(|p| (p.metadata.name.clone(), p.clone())).collect();
                let cidr = c.cidr_pools.iter().filter(|p| api::validate_cidr_pool(p).is_ok());
                v.last_valid_cidr = cidr.map(|p| (p.metadata.name.clone(), p.clone())).collect();
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
        if !(view.ip_listed && view.cidr_listed) {
            return;
        }
        let ip: Vec<IpPool> = view.ip.values().cloned().collect();
        let cidr: Vec<CidrPool> = view.cidr.values().cloned().collect();
        let current = self.service.pools();
        let pools = derive(&ip, &cidr, &self.node, &current);
        let (cache_ip, cache_cidr) = view.objects_to_cache();
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

    fn on_ip(&self, c: Change<IpPool>) {
        let mut v = self.view();
        {
            match c {
                Change::Reset(items) => {
                    v.ip = items.into_iter().map(|p| (p.metadata.name.clone(), p)).collect();
                    v.ip_listed = true;
                }
                Change::Applied(p) => {
                    v.ip.insert(p.metadata.name.clone(), p);
                }
                Change::Deleted(p) => {
                    v.ip.remove(&p.metadata.name);
                }
            }
        }
        self.changed(&mut v);
    }

    fn on_cidr(&self, c: Change<CidrPool>) {
        let mut v = self.view();
        {
            match c {
                Change::Reset(items) => {
                    v.cidr = items.into_iter().map(|p| (p.metadata.name.clone(), p)).collect();
                    v.cidr_listed = true;
                }
                Change::Applied(p) => {
                    v.cidr.insert(p.metadata.name.clone(), p);
                }
                Change::Deleted(p) => {
                    v.cidr.remove(&p.metadata.name);
                }
            }
        }
        self.changed(&mut v);
    }

    /// Starts the two reflector threads; they end when `stop` is set (and the client is shut
    /// down, which unblocks their watches).
    pub fn start(
        self: &Arc<Self>,
        client: &Client,
        stop: Arc<AtomicBool>,
    ) -> io::Result<Vec<JoinHandle<()>>> {
        let namespace = self.namespace.as_str();
        let mut threads = Vec::new();
        {
            let (me, client, ns, stop) = (self.clone(), client.clone(), namespace.to_string(), stop.clone());
            threads.push(thread::Builder::new().name("reflect-ippools".into()).spawn(move || {
                kube::reflect(&client, &kube::IPPOOLS, Some(&ns), &ListOptions::default(), &stop, &mut |c| {
                    me.on_ip(c)
                })
            })?);
        }
        {
            let (me, client, ns) = (self.clone(), client.clone(), namespace.to_string());
            threads.push(thread::Builder::new().name("reflect-cidrpools".into()).spawn(move || {
                kube::reflect(
                    &client,
                    &kube::CIDRPOOLS,
                    Some(&ns),
                    &ListOptions::default(),
                    &stop,
                    &mut |c| me.on_cidr(c),
                )
            })?);
        }
        Ok(threads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{IpAllocation, IpPoolStatus};
    use crate::api::{PoolKey, PoolType};

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
        let set = derive(&pools, &[], "n2", &PoolSet::default());
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
        let good = ippool("a", Some(vec![("n1", "192.168.0.1", "192.168.0.10")]));
        v.ip.insert("a".into(), good.clone());
        assert_eq!(v.objects_to_cache().0, vec![good.clone()]);
        let mut bad = good.clone();
        bad.spec.gateway = "10.9.9.9".into();
        v.ip.insert("a".into(), bad.clone());
        assert_eq!(v.objects_to_cache().0, vec![good.clone()], "the invalid spec is not cached");
        // a pool created invalid has nothing better to cache than itself
        let mut never = bad.clone();
        never.metadata.name = "z".into();
        v.ip.insert("z".into(), never.clone());
        assert_eq!(v.objects_to_cache().0, vec![good.clone(), never]);
        // deleted pools are forgotten: a pool re-created invalid is not served from its past
        v.ip.clear();
        assert!(v.objects_to_cache().0.is_empty());
        v.ip.insert("a".into(), bad.clone());
        assert_eq!(v.objects_to_cache().0, vec![bad]);
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
}
