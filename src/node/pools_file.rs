//! Standalone mode's pool source: a YAML or JSON file of IPPool/CIDRPool manifests, read at
//! start and re-read when it changes.
//!
//! A pool's `status.allocations` entry for this node gives its block or prefix; a pool with no
//! status at all is planned as if this node were the cluster's only node. A pool that has no
//! entry for this node, or is invalid and was not served before, is left out (and logged) while
//! the others work; a pool whose edit made its spec invalid keeps its last valid spec (see
//! `pools::derive`). Across a restart nothing is remembered: a pool invalid at start is refused
//! with the reason.
//!
//! The file is node-root configuration (`--pools-file`), read as a regular file only: the path
//! is looked up (symlinks followed, as ConfigMap mounts need) and refused unless it is a regular
//! file, then opened with `O_NONBLOCK` so that a FIFO swapped in meanwhile cannot block the
//! open, checked again on the open descriptor, and read to at most [`MAX_POOLS_FILE_BYTES`]
//! however much it grows while read. At start a bad file is a start error; while running the
//! previous pools are kept and one log line per change of the file's identity says why.
//!
//! Owns: reading and polling the file. Must not: derive configs itself (see `pools::derive`).

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::api::{self, Object};

use super::pools::{self, Planning, PoolRef, PoolSet};
use super::server::StopHandle;
use super::service::Service;

/// Largest pools file read: 16 MiB, thousands of pools with full status; more is a mistake.
pub const MAX_POOLS_FILE_BYTES: u64 = 16 << 20;

// `libc` is not a dependency and `unsafe` is denied, so the two open(2) flags are spelled out:
// the values of Linux's generic ABI (asm-generic/fcntl.h: x86_64, aarch64, arm, riscv, ppc).
use crate::oflags::{self, O_NOCTTY, O_NONBLOCK};

#[derive(Debug)]
pub enum PoolsFileError {
    Read {
        path: PathBuf,
        source: io::Error,
    },
    /// A FIFO, socket, device or directory: refused without reading (a FIFO would block).
    NotRegular {
        path: PathBuf,
        kind: &'static str,
    },
    TooLarge {
        path: PathBuf,
        len: u64,
    },
    Decode {
        path: PathBuf,
        source: Box<api::ManifestError>,
    },
}

impl fmt::Display for PoolsFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolsFileError::Read { path, source } => {
                write!(f, "pools file {}: cannot read: {source}; check --pools-file", path.display())
            }
            PoolsFileError::NotRegular { path, kind } => write!(
                f,
                "pools file {} is {kind}, not a regular file; replace it with a regular file of IPPool/CIDRPool manifests (or point --pools-file at one)",
                path.display()
            ),
            PoolsFileError::TooLarge { path, len } => write!(
                f,
                "pools file {}: {len} bytes or more is over the {MAX_POOLS_FILE_BYTES}-byte limit; remove unused pools or status entries",
                path.display()
            ),
            PoolsFileError::Decode { path, source } => write!(f, "pools file {}: {source}", path.display()),
        }
    }
}

impl std::error::Error for PoolsFileError {}

/// `None` for a regular file, else what it is (for the error).
fn not_regular(m: &fs::Metadata) -> Option<&'static str> {
    (!m.file_type().is_file()).then(|| oflags::file_kind(m))
}

/// At most `limit` bytes of `r`; `None` when it has more (a file that grows while it is read
/// is cut off here, not by its size at open).
pub fn read_bounded(r: impl Read, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    r.take(limit.saturating_add(1)).read_to_end(&mut buf)?;
    Ok((buf.len() as u64 <= limit).then_some(buf))
}

/// The file's text: a regular file only, opened without blocking, bounded (module docs).
pub fn read(path: &Path) -> Result<String, PoolsFileError> {
    let read_err = |source| PoolsFileError::Read { path: path.to_path_buf(), source };
    let check = |m: &fs::Metadata| match not_regular(m) {
        Some(kind) => Err(PoolsFileError::NotRegular { path: path.to_path_buf(), kind }),
        None => Ok(()),
    };
    // Before opening: a device or directory is never opened at all.
    check(&fs::metadata(path).map_err(read_err)?)?;
    let f = OpenOptions::new().read(true).custom_flags(O_NONBLOCK | O_NOCTTY).open(path).map_err(read_err)?;
    // The path may have been replaced since: what counts is the file that was opened.
    let meta = f.metadata().map_err(read_err)?;
    check(&meta)?;
    if meta.len() > MAX_POOLS_FILE_BYTES {
        return Err(PoolsFileError::TooLarge { path: path.to_path_buf(), len: meta.len() });
    }
    let bytes = read_bounded(f, MAX_POOLS_FILE_BYTES).map_err(read_err)?.ok_or_else(|| {
        PoolsFileError::TooLarge { path: path.to_path_buf(), len: MAX_POOLS_FILE_BYTES + 1 }
    })?;
    String::from_utf8(bytes).map_err(|e| read_err(io::Error::new(io::ErrorKind::InvalidData, e)))
}

/// The node's pools from the file, derived over `previous` (the pools served now; see
/// `pools::derive`).
pub fn load_over(path: &Path, node: &str, previous: &PoolSet) -> Result<PoolSet, PoolsFileError> {
    let text = read(path)?;
    let manifest = api::decode(&text)
        .map_err(|e| PoolsFileError::Decode { path: path.to_path_buf(), source: Box::new(e) })?;
    let objects = manifest.objects.iter().filter_map(|o| match o {
        Object::Pool(p) => Some(PoolRef::from(p)),
        Object::Node(_) => None,
    });
    Ok(pools::derive(objects, node, Planning::Alone, previous))
}

/// The node's pools at start, plus one message per pool that was left out.
pub fn load(path: &Path, node: &str) -> Result<(PoolSet, Vec<String>), PoolsFileError> {
    let set = load_over(path, node, &PoolSet::default())?;
    let skipped = set.refusals();
    Ok((set, skipped))
}

/// Identity of the file's content for change detection: a rewrite in place changes mtime or
/// size; an atomic replace (editors, kubectl-style tools, ConfigMap updates) changes the inode;
/// a FIFO or directory put in its place changes the inode and the mode.
type Fingerprint = (u64, u64, u32, i64, i64, u64);

fn fingerprint(path: &Path) -> Option<Fingerprint> {
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino(), m.mode(), m.mtime(), m.mtime_nsec(), m.size()))
}

/// Logs the pools loaded at start (`skipped`: the pools left out, as [`load`] returns them).
pub fn log_loaded(pools: &PoolSet, skipped: &[String]) {
    for line in pools.describe() {
        log::info!("pool ready: {line}");
    }
    for s in skipped {
        log::warn!("pool left out: {s}");
    }
}

/// The poller's state: the identity of the file it read last.
pub struct Watcher {
    path: PathBuf,
    node: String,
    /// `None` before the first poll, so that an edit made between the start's read and the
    /// poller's start is not missed (an unchanged file yields the same set: nothing happens).
    last: Option<Option<Fingerprint>>,
}

impl Watcher {
    pub fn new(path: PathBuf, node: String) -> Watcher {
        Watcher { path, node, last: None }
    }

    /// Looks at the file once: `None` when its identity did not change since the last poll,
    /// else the pools derived over `current`, or why the file cannot be used (reported once per
    /// change of identity, however long the bad state lasts).
    pub fn poll(&mut self, current: &PoolSet) -> Option<Result<PoolSet, PoolsFileError>> {
        let now = fingerprint(&self.path);
        if self.last == Some(now) {
            return None;
        }
        self.last = Some(now);
        Some(load_over(&self.path, &self.node, current))
    }
}

/// Polls the file every `interval` and swaps the service's pools when it changed and still
/// decodes; a file that cannot be used keeps the previous pools (and says why, once).
pub fn watch(path: PathBuf, node: String, interval: Duration, service: Arc<Service>, stop: StopHandle) {
    let mut w = Watcher::new(path, node);
    while !stop.is_stopping() {
        let current = service.pools();
        let polled = w.poll(&current);
        if let Some(Ok(pools)) = &polled {
            // The file's identity changed: say what the poller saw, even when the pools did not.
            log::debug!("pools file {} re-read: {} pools for node {}", w.path.display(), pools.len(), w.node);
        }
        match polled {
            Some(Ok(pools)) if *current != pools => {
                log::info!("pools file changed: {} pools for node {}", pools.len(), w.node);
                pools::log_changes(&current, &pools);
                service.set_pools(pools);
            }
            Some(Err(e)) => log::error!("{e}; keeping the previous pools"),
            None | Some(Ok(_)) => {}
        }
        thread::sleep(interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{PoolKey, PoolType};
    use crate::store::tests::TempDir;

    const POOL: &str = "apiVersion: nv-ipam.nvidia.com/v1alpha1
kind: IPPool
metadata: {name: a}
spec: {subnet: 10.1.0.0/24, perNodeBlockSize: 10, gateway: 10.1.0.1}
";

    fn mkfifo(p: &Path) {
        let ok = std::process::Command::new("mkfifo").arg(p).status().expect("run mkfifo").success();
        assert!(ok, "mkfifo {}", p.display());
    }

    #[test]
    fn only_regular_files_are_read_and_a_fifo_never_blocks() {
        let dir = TempDir::new("pools-file");
        let fifo = dir.join("fifo");
        mkfifo(&fifo);
        // with a blocking open this would wait for a writer forever
        let e = read(&fifo).expect_err("a FIFO");
        assert!(matches!(e, PoolsFileError::NotRegular { kind: "a FIFO", .. }), "{e}");
        assert!(
            e.to_string().contains(&fifo.display().to_string()) && e.to_string().contains("regular file")
        );
        let e = read(&dir.join(".")).expect_err("a directory");
        assert!(matches!(e, PoolsFileError::NotRegular { kind: "a directory", .. }), "{e}");
        let e = read(Path::new("/dev/null")).expect_err("a device");
        assert!(matches!(e, PoolsFileError::NotRegular { kind: "a character device", .. }), "{e}");
        // a symlink to a regular file is fine (ConfigMap mounts)
        let real = dir.join("real.yaml");
        fs::write(&real, POOL).expect("write");
        let link = dir.join("link.yaml");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        assert_eq!(read(&link).expect("read through a symlink"), POOL);
        let e = read(&dir.join("missing")).expect_err("missing");
        assert!(matches!(e, PoolsFileError::Read { .. }), "{e}");
    }

    #[test]
    fn reads_are_bounded_at_the_limit_even_when_the_file_keeps_growing() {
        assert_eq!(read_bounded(&b"abc"[..], 3).expect("read"), Some(b"abc".to_vec()));
        assert_eq!(read_bounded(&b"abcd"[..], 3).expect("read"), None);
        // an endless source (a file that grows while read) stops one byte past the limit
        assert_eq!(read_bounded(io::repeat(b'x'), 1 << 20).expect("read"), None);

        let dir = TempDir::new("pools-file");
        let p = dir.join("pools.yaml");
        let mut text = format!("{POOL}#");
        text.push_str(&"x".repeat(MAX_POOLS_FILE_BYTES as usize - text.len()));
        fs::write(&p, &text).expect("write");
        assert_eq!(read(&p).expect("exactly at the limit").len() as u64, MAX_POOLS_FILE_BYTES);
        text.push('x');
        fs::write(&p, &text).expect("write");
        let e = read(&p).expect_err("one byte over");
        assert!(matches!(e, PoolsFileError::TooLarge { len, .. } if len == MAX_POOLS_FILE_BYTES + 1), "{e}");
    }

    #[test]
    fn the_watcher_reports_a_bad_file_once_and_follows_it_when_it_is_regular_again() {
        let dir = TempDir::new("pools-file");
        let p = dir.join("pools.yaml");
        fs::write(&p, POOL).expect("write");
        let mut w = Watcher::new(p.clone(), "n1".into());
        let first = w.poll(&PoolSet::default()).expect("first poll reads").expect("valid");
        assert_eq!(first.describe(), ["a 10.1.0.1-10.1.0.10 gw 10.1.0.1"]);
        assert!(w.poll(&first).is_none(), "unchanged");

        fs::remove_file(&p).expect("rm");
        mkfifo(&p);
        assert!(matches!(w.poll(&first), Some(Err(PoolsFileError::NotRegular { .. }))));
        for _ in 0..5 {
            assert!(w.poll(&first).is_none(), "a FIFO that stays is reported once");
        }
        fs::remove_file(&p).expect("rm");
        fs::create_dir(&p).expect("mkdir");
        assert!(matches!(w.poll(&first), Some(Err(PoolsFileError::NotRegular { kind: "a directory", .. }))));
        assert!(w.poll(&first).is_none());
        fs::remove_dir(&p).expect("rmdir");
        assert!(matches!(w.poll(&first), Some(Err(PoolsFileError::Read { .. }))), "missing");
        assert!(w.poll(&first).is_none());
        fs::write(&p, POOL.replace("name: a", "name: b")).expect("write");
        let back = w.poll(&first).expect("changed").expect("valid");
        assert!(back.get(&PoolKey::new(PoolType::IpPool, "b")).is_some());
    }

    #[test]
    fn an_invalid_edit_of_one_pool_keeps_its_last_valid_spec() {
        let dir = TempDir::new("pools-file");
        let p = dir.join("pools.yaml");
        fs::write(&p, POOL).expect("write");
        let (start, skipped) = load(&p, "n1").expect("load");
        assert!(skipped.is_empty());
        fs::write(&p, POOL.replace("gateway: 10.1.0.1", "gateway: 10.9.0.1")).expect("write");
        let held = load_over(&p, "n1", &start).expect("load");
        let key = PoolKey::new(PoolType::IpPool, "a");
        assert_eq!(held.get(&key), start.get(&key));
        assert!(held.held(&key).expect("held").contains("spec.gateway"));
        // at start there is nothing to hold on to: refused with the reason
        let (fresh, skipped) = load(&p, "n1").expect("load");
        assert!(fresh.is_empty());
        assert!(skipped[0].contains("\"a\" has an invalid spec: spec.gateway"), "{skipped:?}");
    }
}
