//! The pools cache file of cluster mode (`<store dir>/pools-cache.json`): the pool objects the
//! node derived its pools from last, so that it serves from known blocks across API outages and
//! restarts.
//!
//! Format (unchanged since version 1, so that an older ipam-node reads it after a rollback and
//! a newer one reads an older one's): `{"format":"nv-ipam-pools-cache","version":1,"node":..,
//! "namespace":..,"ipPools":[..],"cidrPools":[..]}`. Since ipam-node reads its NodeBlockSet,
//! each object is a pool rebuilt from one entry of it (spec as it applies to the node, one status
//! entry: `NodeBlockSetSpec::pools`); an older version wrote whole pools, which the reader
//! projects to the node (`pools_cluster`). Mode 0600, written atomically: temp, fsync, rename,
//! fsync dir.
//!
//! Owns: [`Cache`], [`load_cache`], [`save_cache`], [`cache_path`], [`CacheError`]. Must not:
//! decide what is cached (`pools_cluster` does).

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::api::{AnyPool, CidrPool, IpPool};
use crate::prescan::{self, MAX_DEPTH};
use crate::replace;

/// Largest cache file read: 16 MiB, as the pools file (a cache of an older version holds whole
/// pools: thousands of nodes' entries).
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
    pub fn objects(&self) -> Vec<AnyPool> {
        let ip = self.ip_pools.iter().cloned().map(AnyPool::Ip);
        ip.chain(self.cidr_pools.iter().cloned().map(AnyPool::Cidr)).collect()
    }
}

/// Objects split into the cache file's per-kind lists (its format).
pub fn split(objects: Vec<AnyPool>) -> (Vec<IpPool>, Vec<CidrPool>) {
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
