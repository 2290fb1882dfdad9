//! [`StoreError`]: why the store could not be opened or changed, each with a Display that says
//! what to do.
//!
//! Owns: the error type and its messages. Must not: decide what is refused (see `files`,
//! `lock`, `journal` and `Store::open`).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::{MAX_STORE_BYTES, Prev, Recovery, StateError};

/// Why the store could not be opened or changed. Display says what to do.
#[derive(Debug)]
pub enum StoreError {
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// Another process holds the lock on `path`; `holder` says who.
    Locked {
        path: PathBuf,
        holder: String,
    },
    /// A read-only reader found `store.lock` held exclusively; `holder` says who.
    ReadLocked {
        path: PathBuf,
        holder: String,
    },
    /// A store file is a directory, FIFO, socket, device or symlink.
    NotRegular {
        path: PathBuf,
        kind: &'static str,
    },
    /// The store's directory is not a directory.
    NotDirectory {
        path: PathBuf,
        kind: &'static str,
    },
    /// A store file belongs to another user.
    Owner {
        path: PathBuf,
        uid: u32,
        euid: u32,
    },
    /// Other users can create, rename or remove files in the store's directory.
    UnsafeDirectory {
        dir: PathBuf,
        mode: u32,
        uid: u32,
    },
    TooLarge {
        path: PathBuf,
        len: u64,
        recovery: Box<Recovery>,
    },
    Corrupt {
        path: PathBuf,
        line: usize,
        reason: String,
        recovery: Box<Recovery>,
    },
    UnsupportedVersion {
        path: PathBuf,
        version: u32,
    },
    /// `path` is missing or empty (no header) while `store.prev` exists, or `store.tmp` holds
    /// records: the node had reservations, so it does not start empty.
    MissingWithPrevious {
        path: PathBuf,
        empty: bool,
        prev: Prev,
        tmp: bool,
    },
    Commit {
        path: PathBuf,
        source: io::Error,
    },
    /// A torn last line could not be kept aside (so it was not cut).
    KeepTorn {
        path: PathBuf,
        source: io::Error,
    },
    Inconsistent(StateError),
    Poisoned {
        path: PathBuf,
    },
    /// The store path no longer names the file this process appends to.
    Moved {
        path: PathBuf,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io { action, path, source } => {
                write!(
                    f,
                    "store: cannot {action} {}: {source}; check the path and its permissions",
                    path.display()
                )
            }
            StoreError::Locked { path, holder } => write!(
                f,
                "store: {} is locked by another process ({holder}); another ipam-node already runs on this store: stop it first (two daemons on one store would hand out the same address)",
                path.display()
            ),
            StoreError::ReadLocked { path, holder } => write!(
                f,
                "store: {} is locked exclusively ({holder}): an ipam-node older than this version, or a tool rewriting the store, is changing it; read it again when that process is done (a running ipam-node of this version shares the lock with readers)",
                path.display()
            ),
            StoreError::NotRegular { path, kind } if *kind == "a symbolic link" => write!(
                f,
                "store: {} is a symbolic link; set --store-file to a path of regular files (compaction replaces the store by rename, which would replace the link)",
                path.display()
            ),
            StoreError::NotRegular { path, kind } => write!(
                f,
                "store: {} is {kind}, not a regular file; move it aside (ipam-node keeps only regular files there) and check --store-file",
                path.display()
            ),
            StoreError::NotDirectory { path, kind } => write!(
                f,
                "store: {} is {kind}, not a directory; set --store-file to a file inside a directory",
                path.display()
            ),
            StoreError::Owner { path, uid, euid } => write!(
                f,
                "store: {} is owned by uid {uid}, not by uid {euid} that ipam-node runs as, so another user could have rewritten it; check its content, then chown {euid} {}",
                path.display(),
                path.display()
            ),
            StoreError::UnsafeDirectory { dir, mode, uid } => write!(
                f,
                "store: directory {} (mode {mode:04o}, owner uid {uid}) lets other users replace the store's files; chown root and chmod go-w it, or choose another --store-file",
                dir.display()
            ),
            StoreError::TooLarge { path, len, recovery } => write!(
                f,
                "store: {} is {len} bytes, more than the {MAX_STORE_BYTES}-byte limit, so it is damaged; {recovery}",
                path.display()
            ),
            StoreError::Corrupt { path, line, reason, recovery } => {
                write!(f, "store: {} is damaged at line {line} ({reason}); {recovery}", path.display())
            }
            StoreError::UnsupportedVersion { path, version } => write!(
                f,
                "store: {} has format version {version}, which this ipam-node cannot read (a newer one wrote it); run a newer ipam-node; the file was left untouched",
                path.display()
            ),
            StoreError::MissingWithPrevious { path, empty, prev, tmp } => {
                let p = path.display();
                let state = if *empty { "is empty (no header)" } else { "is missing" };
                let tmp_aside = if *tmp { format!("; mv {p}.tmp {p}.tmp.old") } else { String::new() };
                match prev {
                    Prev::Valid(what) => write!(
                        f,
                        "store: {p} {state} but {p}.prev exists ({what}), so this node had reservations and does not start empty; restore them (mv {p}.prev {p}; loses the changes since the last compaction) or, to start empty, move it aside (mv {p}.prev {p}.prev.old{tmp_aside})"
                    ),
                    Prev::Damaged(why) => write!(
                        f,
                        "store: {p} {state} but {p}.prev exists (damaged: {why}), so this node had reservations and does not start empty; inspect them, then move them aside to start empty (mv {p}.prev {p}.prev.old{tmp_aside}); restart the pods on this node afterwards, as the node forgets their addresses"
                    ),
                    Prev::Absent => write!(
                        f,
                        "store: {p} {state} but {p}.tmp (an unfinished compaction, which may lack reservations) holds records, so this node had reservations and does not start empty; inspect it, then move it aside to start empty (mv {p}.tmp {p}.tmp.old); restart the pods on this node afterwards, as the node forgets their addresses"
                    ),
                }
            }
            StoreError::Commit { path, source } => write!(
                f,
                "store: could not persist the change to {} ({source}); nothing was changed; free disk space or fix the disk",
                path.display()
            ),
            StoreError::KeepTorn { path, source } => write!(
                f,
                "store: {} ends in a torn line (a write cut by a crash, never acknowledged) whose bytes are kept aside in a {}.torn-<ms> file before it is cut, and that file cannot be written ({source}); nothing was changed; free disk space next to it",
                path.display(),
                path.display()
            ),
            StoreError::Inconsistent(e) => write!(f, "store: refused an inconsistent change: {e}"),
            StoreError::Poisoned { path } => write!(
                f,
                "store: {} is in an unknown state after a failed sync; restart ipam-node to reload it",
                path.display()
            ),
            StoreError::Moved { path } => write!(
                f,
                "store: {} is no longer the file this ipam-node writes (moved, replaced or deleted, or its directory renamed); changes are refused so that none is acknowledged into a file the next start would not read; put the file back or restart ipam-node",
                path.display()
            ),
        }
    }
}

impl std::error::Error for StoreError {}

pub(super) fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io { action, path: path.to_path_buf(), source }
}
