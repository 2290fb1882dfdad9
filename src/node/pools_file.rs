//! Standalone mode's pool source: a YAML or JSON file of IPPool/CIDRPool manifests, read at
//! start and re-read when it changes.
//!
//! A pool's `status.allocations` entry for this node gives its block or prefix; a pool with no
//! status at all is planned as if this node were the cluster's only node. A pool that is
//! invalid, or has no entry for this node, is left out (and logged) while the others work.
//!
//! Owns: reading and polling the file. Must not: derive configs itself (see `alloc::node_pool`).

use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::alloc;
use crate::api;

use super::pools::PoolSet;
use super::server::StopHandle;
use super::service::Service;

/// Largest pools file read: 16 MiB, thousands of pools with full status; more is a mistake.
pub const MAX_POOLS_FILE_BYTES: u64 = 16 << 20;

#[derive(Debug)]
pub enum PoolsFileError {
    Read { path: PathBuf, source: io::Error },
    TooLarge { path: PathBuf, len: u64 },
    Decode { path: PathBuf, source: Box<api::ManifestError> },
}

impl fmt::Display for PoolsFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolsFileError::Read { path, source } => {
                write!(f, "pools file {}: cannot read: {source}; check --pools-file", path.display())
            }
            PoolsFileError::TooLarge { path, len } => write!(
                f,
                "pools file {}: {len} bytes is more than the {MAX_POOLS_FILE_BYTES}-byte limit",
                path.display()
            ),
            PoolsFileError::Decode { path, source } => write!(f, "pools file {}: {source}", path.display()),
        }
    }
}

impl std::error::Error for PoolsFileError {}

/// The node's pools from the file, plus one message per pool that was left out.
pub fn load(path: &Path, node: &str) -> Result<(PoolSet, Vec<String>), PoolsFileError> {
    let read_err = |source| PoolsFileError::Read { path: path.to_path_buf(), source };
    let f = fs::File::open(path).map_err(read_err)?;
    let len = f.metadata().map_err(read_err)?.len();
    if len > MAX_POOLS_FILE_BYTES {
        return Err(PoolsFileError::TooLarge { path: path.to_path_buf(), len });
    }
    let mut text = String::new();
    f.take(MAX_POOLS_FILE_BYTES).read_to_string(&mut text).map_err(read_err)?;
    let manifest = api::decode(&text)
        .map_err(|e| PoolsFileError::Decode { path: path.to_path_buf(), source: Box::new(e) })?;
    let (pools, errors) = alloc::node_pools(&manifest, node);
    let skipped = errors.iter().map(ToString::to_string).collect();
    Ok((PoolSet::new(pools), skipped))
}

/// Identity of the file's content for change detection: a rewrite in place changes mtime or
/// size; an atomic replace (editors, kubectl-style tools) changes the inode.
fn fingerprint(path: &Path) -> Option<(u64, u64, i64, i64, u64)> {
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.size()))
}

pub fn log_loaded(pools: &PoolSet, skipped: &[String]) {
    for line in pools.describe() {
        log::info!("pool ready: {line}");
    }
    for s in skipped {
        log::warn!("pool left out: {s}");
    }
}

/// Polls the file every `interval` and swaps the service's pools when it changed and still
/// decodes; a broken edit keeps the previous pools (and says why).
pub fn watch(path: PathBuf, node: String, interval: Duration, service: Arc<Service>, stop: StopHandle) {
    let mut last = fingerprint(&path);
    while !stop.is_stopping() {
        thread::sleep(interval);
        let now = fingerprint(&path);
        if now == last {
            continue;
        }
        last = now;
        match load(&path, &node) {
            Ok((pools, skipped)) => {
                if *service.pools() != pools {
                    log::info!("pools file changed: {} pools for node {node}", pools.len());
                    log_loaded(&pools, &skipped);
                    service.set_pools(pools);
                }
            }
            Err(e) => log::error!("{e}; keeping the previous pools"),
        }
    }
}
