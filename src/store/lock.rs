//! The store's exclusive lock: one `ipam-node` per store, whatever happens to the files in its
//! directory, and a refused second daemon that can say who holds it.
//!
//! Three `flock(2)`s are held for the daemon's lifetime:
//! - on the store's **directory** (opened with `O_DIRECTORY`, taken first): the directory inode
//!   holds every store file, cannot be deleted while it holds files, and keeps its lock when it
//!   is renamed, so deleting or replacing `store.lock` does not let a second daemon in, and a
//!   daemon pointed at the renamed directory is kept out too. (A lock checked by path at every
//!   commit would instead stop the running daemon when `store.lock` is deleted.)
//! - on `store.lock`, **shared**: ipam-node versions before the directory lock took it
//!   exclusively, and a shared lock and an exclusive one exclude each other, so an older
//!   daemon started next to a newer one (a rolling update) is still kept out, either way
//!   round. Two daemons of this version both get it shared; the directory lock, taken first,
//!   keeps the second out. Shared, because read-only readers (`snapshot`, `kubectl-nv_ipam
//!   --store-file`) take it shared too: reading "under the shared lock" then keeps out exactly
//!   the exclusive holders (an older daemon, a future offline tool that rewrites the store),
//!   and a reader never makes a starting daemon fail its lock;
//! - on the journal file, through its own open file (see `Store::open`): the reference's
//!   `ipam-node` flocks the store file at start, so it refuses to start next to ours.
//!
//! What a lock cannot catch (the store replaced or its directory renamed under the running
//! daemon) the per-commit path check in `Store::commit_deferred` does.
//!
//! The holder writes `{"pid":..,"host":..,"since":..}` into `store.lock`. A refused daemon looks
//! the locked inode up in `/proc/locks` (this works when `store.lock` was deleted) and reads
//! the holder's `/proc/<pid>/cmdline`; it adds what `store.lock` says, which still names the
//! holder when it runs in another pid namespace (`/proc/locks` then shows pid 0).
//!
//! Owns: taking the locks and describing a holder. Must not: read or write the store.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::StoreError;
use super::files;

/// Longest holder command line or lock-file field shown in an error (characters): enough
/// for an `ipam-node` command line with its flags, short enough for one log line.
const MAX_SHOWN: usize = 300;

/// Most bytes of `store.lock` read for the holder's description: what we write is under 200
/// bytes; anything longer is not ours and is ignored.
const MAX_HOLDER_INFO_BYTES: u64 = 1024;

/// What the holder writes into `store.lock`.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct HolderInfo {
    pid: u32,
    host: String,
    since: String,
}

/// Opens (creating it, mode 0600) and flocks `lock_path` shared (see the module docs), or
/// says who holds it exclusively.
pub(super) fn lock_file(lock_path: &Path, euid: Option<u32>) -> Result<files::Opened, StoreError> {
    let lock = files::open_or_create(lock_path, euid)?;
    match lock.file.try_lock_shared() {
        Ok(()) => Ok(lock),
        Err(fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: lock_path.to_path_buf(),
            holder: holder_of(&lock.file, lock_path),
        }),
        Err(fs::TryLockError::Error(source)) => {
            Err(StoreError::Io { action: "lock", path: lock_path.to_path_buf(), source })
        }
    }
}

/// Who holds a lock on `file`'s inode (for an error message).
pub(super) fn holder_of(file: &File, lock_path: &Path) -> String {
    match file.metadata() {
        Ok(m) => describe_holder(m.dev(), m.ino(), lock_path),
        Err(e) => format!("holder unknown: {e}"),
    }
}

/// Sets the lock file's mode to 0600 and records this process as the holder in it (once the
/// store is open: a refused start changes no file).
pub(super) fn record_holder(lock: &files::Opened, lock_path: &Path) {
    files::tighten(lock_path, &lock.file, &lock.meta);
    let info = HolderInfo {
        pid: std::process::id(),
        host: fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string(),
        since: crate::logging::format_utc(SystemTime::now()),
    };
    let write = || -> io::Result<()> {
        use std::io::Write;
        lock.file.set_len(0)?;
        let mut line = serde_json::to_vec(&info).map_err(io::Error::other)?;
        line.push(b'\n');
        (&lock.file).write_all(&line)
    };
    // Informational only: the locks are what keep others out.
    if let Err(e) = write() {
        log::warn!("store: cannot record this process in {}: {e}", lock_path.display());
    }
}

/// Flocks `file` (shown as `what`) or says who holds it.
pub(super) fn try_lock(file: &File, what: &Path, lock_path: &Path) -> Result<(), StoreError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(fs::TryLockError::WouldBlock) => {
            Err(StoreError::Locked { path: what.to_path_buf(), holder: holder_of(file, lock_path) })
        }
        Err(fs::TryLockError::Error(source)) => {
            Err(StoreError::Io { action: "lock", path: what.to_path_buf(), source })
        }
    }
}

/// Who holds a lock on inode (dev, ino): pids from `/proc/locks` with their command lines, and
/// what `lock_path` says.
fn describe_holder(dev: u64, ino: u64, lock_path: &Path) -> String {
    let mut parts = Vec::new();
    let pids = fs::read_to_string("/proc/locks").map(|t| lock_pids(&t, dev, ino)).unwrap_or_default();
    for pid in pids {
        if pid == 0 {
            parts.push("a process in another pid namespace".to_string());
            continue;
        }
        let mut cmd = Vec::new();
        let read =
        // More than MAX_SHOWN characters are never shown, so a few KiB are plenty.
            File::open(format!("/proc/{pid}/cmdline")).and_then(|f| f.take(4096).read_to_end(&mut cmd));
        let cmd: String = String::from_utf8_lossy(&cmd).replace('\0', " ").trim().to_string();
        match read {
            Ok(_) if !cmd.is_empty() => parts.push(format!("pid {pid}: {}", shown(&cmd))),
            _ => parts.push(format!("pid {pid}")),
        }
    }
    if let Some(info) = read_info(lock_path) {
        parts.push(format!(
            "{} names pid {} on host {} since {}",
            lock_path.display(),
            info.pid,
            shown(&info.host),
            shown(&info.since)
        ));
    }
    if parts.is_empty() { "holder not found in /proc/locks".to_string() } else { parts.join("; ") }
}

fn read_info(lock_path: &Path) -> Option<HolderInfo> {
    let f = files::open_existing(lock_path, false, None).ok()??;
    let mut buf = Vec::new();
    f.file.take(MAX_HOLDER_INFO_BYTES).read_to_end(&mut buf).ok()?;
    serde_json::from_slice(&buf).ok()
}

/// `s` with control characters escaped and cut at [`MAX_SHOWN`] characters: it came from
/// another process and goes into a log line.
fn shown(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == MAX_SHOWN {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// glibc's `major()`/`minor()` of a `st_dev`.
fn major_minor(dev: u64) -> (u64, u64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major, minor)
}

/// Pids holding a lock on (dev, ino) per `/proc/locks` text; 0 for a holder this pid namespace
/// cannot see. Lines look like `1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF` (major and
/// minor in hex, inode in decimal); `->` lines are waiters, not holders.
fn lock_pids(text: &str, dev: u64, ino: u64) -> Vec<u32> {
    let (major, minor) = major_minor(dev);
    let mut pids = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || f[1] == "->" {
            continue;
        }
        let mut id = f[5].split(':');
        let (Some(ma), Some(mi), Some(i)) = (id.next(), id.next(), id.next()) else { continue };
        let matches = u64::from_str_radix(ma, 16).ok() == Some(major)
            && u64::from_str_radix(mi, 16).ok() == Some(minor)
            && i.parse::<u64>().ok() == Some(ino);
        if matches {
            let pid = f[4].parse::<i64>().ok().and_then(|p| u32::try_from(p).ok()).unwrap_or(0);
            if !pids.contains(&pid) {
                pids.push(pid);
            }
        }
    }
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_locks_lines_are_matched_by_device_and_inode() {
        let text = "1: FLOCK  ADVISORY  WRITE 3345 fe:00:5327106 0 EOF\n\
                    1: -> FLOCK  ADVISORY  WRITE 999 fe:00:5327106 0 EOF\n\
                    2: FLOCK  ADVISORY  WRITE 77 fe:01:5327106 0 EOF\n\
                    3: OFDLCK ADVISORY  WRITE -1 fe:00:5327106 0 EOF\n\
                    4: POSIX  ADVISORY  WRITE 12 103:02:42 0 EOF\n\
                    garbage\n";
        assert_eq!(lock_pids(text, 0xfe00, 5_327_106), vec![3345, 0]);
        // major 0x103 = 259, minor 2: st_dev 0x10302 (major > 0xff spills into bits 8..20)
        assert_eq!(major_minor(0x10302), (0x103, 2));
        assert_eq!(lock_pids(text, 0x10302, 42), vec![12]);
        assert!(lock_pids(text, 0xfe00, 1).is_empty());
    }

    #[test]
    fn holder_info_is_read_up_to_its_limit() {
        let d = crate::store::tests::TempDir::new("holderinfo");
        let p = d.join("store.lock");
        let line = |len: usize| {
            let mut s = r#"{"pid":7,"host":"h","since":"t"}"#.to_string();
            s.push_str(&" ".repeat(len - s.len()));
            s
        };
        fs::write(&p, line(MAX_HOLDER_INFO_BYTES as usize)).expect("write");
        assert_eq!(read_info(&p).map(|i| i.pid), Some(7));
        // a byte past the limit is not read (here it would make the JSON invalid)
        fs::write(&p, format!("{}x", line(MAX_HOLDER_INFO_BYTES as usize))).expect("write");
        assert_eq!(read_info(&p).map(|i| i.pid), Some(7));
        fs::write(&p, format!("{}x", line(MAX_HOLDER_INFO_BYTES as usize - 1))).expect("write");
        assert_eq!(read_info(&p), None, "trailing garbage inside the limit is not ours");
    }

    #[test]
    fn shown_escapes_and_bounds() {
        assert_eq!(shown("a\nb\u{1b}c"), "a\\nb\\u{1b}c");
        assert_eq!(shown(&"x".repeat(1000)).len(), MAX_SHOWN + 3);
    }

    #[test]
    fn our_own_lock_is_found_in_proc_locks() {
        let d = crate::store::tests::TempDir::new("lockholder");
        let f = File::open(&*d).expect("open dir");
        f.try_lock().expect("lock");
        let m = f.metadata().expect("stat");
        let pids = lock_pids(&fs::read_to_string("/proc/locks").expect("/proc/locks"), m.dev(), m.ino());
        assert_eq!(pids, vec![std::process::id()]);
        let g = File::open(&*d).expect("open dir again");
        match try_lock(&g, &d, &d.join("store.lock")) {
            Err(StoreError::Locked { holder, .. }) => {
                assert!(holder.starts_with(&format!("pid {}: ", std::process::id())), "{holder}")
            }
            other => panic!("{other:?}"),
        }
    }
}
