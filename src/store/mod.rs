//! The node's allocation store: every reservation this node handed out, durable before the
//! caller hears about it, and never lost without a word.
//!
//! Files (default `/var/lib/cni/nv-ipam/`), all regular files of the daemon's uid, mode 0600:
//! ```text
//! store             the journal: a header line, then one line per committed request
//! store.lock        flock'ed for the daemon's lifetime, names the holder (never renamed over)
//! store.prev        the previous generation, kept at every compaction
//! store.tmp         a compaction in progress (removed on failure, and at start)
//! store.torn-<ms>   the bytes of a torn last line cut off at a start (at most 8, 1 MiB each)
//! ```
//! Line format (format version 2): `<16 hex digits FNV-1a-64 of JSON> <JSON>\n`.
//! ```text
//! 1a2b...  {"format":"nv-ipam-store","version":2,"generation":3}
//! 3c4d...  {"seq":1,"ops":[{"op":"reserve","pool":"blue","containerId":"c1","ifname":"eth0",
//!                           "ip":"192.168.0.2","network":"net1","podName":"p","created":1764...},
//!                          {"op":"cursor","pool":"blue","ip":"192.168.0.2"}]}
//! 5e6f...  {"seq":2,"ops":[{"op":"release","pool":"blue","containerId":"c1","ifname":"eth0"},
//!                          {"op":"cooldown","pool":"blue","ip":"192.168.0.2","untilMs":1764...}]}
//! ```
//! Versions: 1 had `reserve`, `release`, `cursor`. 2 adds `cooldown` (a released address that
//! round-robin allocation skips until `untilMs`, ms since the epoch; `--released-ip-cooldown`).
//! Version 1 files are read unchanged; new files and compactions write version 2, which an
//! older ipam-node refuses with an "unsupported version" error rather than misreading it.
//! Sequence numbers only grow within a file (gaps are allowed: a line deleted by hand).
//! Compaction keeps cooldowns that have not ended and drops the rest.
//! Why a journal and not a whole-file rewrite per request: rewriting 10,000 reservations on
//! every ADD costs milliseconds and grows with the store; an append plus `fdatasync` costs the
//! same at any size. Compaction rewrites the file atomically (`crate::replace`: write `store.tmp`, fsync, hard-link
//! `store` to `store.prev`, rename `store.tmp` over `store`, fsync the directory) once the
//! journal holds more lines than live reservations, so the amortised cost stays flat.
//!
//! # Torn write or damage
//! A request is acknowledged only after `fdatasync` covered its whole line, newline included.
//! So only an **unterminated last line** can be a write torn by a crash (never acknowledged):
//! its bytes are kept in `store.torn-<unix ms>` (fsynced, mode 0600; the oldest beyond
//! [`MAX_TORN_FILES`] are removed, at most [`MAX_TORN_BYTES`] of a line are kept), the cut is
//! logged (line, bytes, file), and the line is cut off. Any **complete** line that fails its
//! checksum, does not decode, repeats or reorders a sequence number or contradicts the state
//! (the same address reserved twice), a header that is missing or bad, and a complete line
//! whose final newline byte was damaged are damage: the store refuses to open, leaves every
//! file untouched, and the error names the line and the ways out that exist
//! ([`Recovery`]: delete that line; restore `store.prev` if it loads; move the files aside).
//!
//! # State of the files at start
//! | `store` | `store.prev` | `store.tmp` | arises from | at start |
//! |---|---|---|---|---|
//! | valid | any | absent | normal | load |
//! | valid | any | present | crash during a compaction, before its rename | load `store` (the compaction never happened), remove `store.tmp` |
//! | unterminated last line | any | any | crash during an append | keep the line aside, cut it, load |
//! | bad complete line or header | any | any | damage, hand edits | refuse, untouched, name the line and the ways out |
//! | the reference's JSON | any | any | upgrade | import, keep the original as `store.prev` |
//! | missing | absent | absent | a new node | start empty |
//! | missing | absent | no record line | crash during the very first start | start empty |
//! | missing or empty | present | any | `store` deleted or truncated by hand or by the disk (ipam-node never does) | refuse: restore `store.prev`, or move it aside to start empty |
//! | missing or empty | absent | record lines | same, during an unfinished compaction | refuse: inspect `store.tmp`, move it aside to start empty |
//! | empty | absent | no record line | truncated by hand; the reference's empty file | start empty (warned) |
//! | not a regular file, a symlink, another user's, over [`MAX_STORE_BYTES`], a newer version | | | | refuse, untouched |
//!
//! Every instant of a compaction leaves a valid `store` (the old one until the rename, the new
//! one after), so its crashes fall in the first two rows. Modes other than 0600 (the reference
//! writes 0664) are set to 0600 with a warning: the files name every pod of the node, and
//! tightening loses nothing. Files owned by another uid are refused (that user could have
//! rewritten them). The directory must be owned by root or the daemon's uid and not writable
//! by others unless sticky. `--store-file` is the node admin's choice, so a symlink in its
//! directory part is followed; the files themselves are opened without following symlinks
//! (`O_NOFOLLOW`: compaction replaces `store` by rename, which would replace a link) and
//! without blocking (`O_NONBLOCK`, then `fstat`: a FIFO is refused, not waited on).
//!
//! # Lock
//! See `lock`: a `flock` on the store's directory (survives `store.lock` being deleted or
//! replaced, and the directory being renamed, because the lock is on the inode that holds the
//! files) plus one on `store.lock` (older ipam-node versions) and one on the journal file (the
//! reference's ipam-node flocks the store file itself). So one daemon serves one store
//! directory (its pools cache lives there too). A refused daemon names the holder's pid and
//! command line. While serving, every commit first checks (one `stat`) that the store path
//! still names the journal it appends to; if the file was moved, replaced or deleted, or its
//! directory renamed, every later change is refused ([`StoreError::Moved`]) so that nothing is
//! acknowledged into a file the next start would not read.
//!
//! Owns: the files above and their durability. Must not: decide allocations (see `alloc`) or
//! be shared across processes except through the lock.

mod durability;
mod files;
mod journal;
mod legacy;
mod lock;
pub mod record;
mod recovery;
pub mod state;

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use durability::{Durability, Ticket};

use crate::replace;
pub use files::{MAX_TORN_BYTES, MAX_TORN_FILES};
pub use record::{AttachmentKey, Header, Op, Reservation, Txn};
pub use recovery::{Prev, Recovery};
pub use state::{StateError, StoreState};

use journal::{Content, ReplayError, Replayed, encode_line};

/// Largest store file read at start: 512 MiB. At ~300 bytes a reservation that is 1.7 million
/// reservations, far past any node; a bigger file is damage, not data.
pub const MAX_STORE_BYTES: u64 = 512 << 20;

/// Compaction runs when the journal holds more lines than this, or than live reservations,
/// whichever is larger: the rewrite then costs O(1) amortised per request.
pub const COMPACT_MIN_LINES: usize = 1024;

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

/// An open store: locks held, state loaded, journal open for appending.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    dir: PathBuf,
    /// flock'ed: the store's directory (see `lock`).
    _dir_lock: File,
    /// flock'ed: `store.lock`.
    _lock_file: File,
    euid: Option<u32>,
    journal: Arc<File>,
    /// (st_dev, st_ino) of the journal: the store path must still name it at every commit.
    journal_id: (u64, u64),
    /// A flock on the journal through its own open file (so that it ends with the Store, not
    /// with the last `Durability` handle): the reference's ipam-node flocks the store file.
    journal_lock: Option<File>,
    journal_len: u64,
    durability: Arc<Durability>,
    journal_lines: usize,
    next_seq: u64,
    generation: u64,
    state: StoreState,
    poisoned: bool,
    moved: bool,
    /// After a failed compaction, wait for this many lines before trying again.
    compact_at: usize,
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io { action, path: path.to_path_buf(), source }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// Milliseconds since the Unix epoch (0 if the clock is before it): cooldown deadlines.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Opens `path` once more and flocks it, if it is still the file `meta` describes.
fn lock_journal(path: &Path, meta: &fs::Metadata, lock_path: &Path) -> Result<File, StoreError> {
    let o = files::open_existing(path, false, None)?.ok_or_else(|| StoreError::Io {
        action: "lock",
        path: path.to_path_buf(),
        source: io::ErrorKind::NotFound.into(),
    })?;
    if (o.meta.dev(), o.meta.ino()) != (meta.dev(), meta.ino()) {
        return Err(StoreError::Moved { path: path.to_path_buf() });
    }
    lock::try_lock(&o.file, path, lock_path)?;
    Ok(o.file)
}

/// What `open` found, decided before any file is changed.
// One value, once per start: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Found {
    /// No store, and nothing that says there was one: a new node.
    Fresh,
    /// A file without a header (no bytes, or only whitespace), and nothing that says there was
    /// more; its length.
    Empty(usize),
    /// The reference implementation's store, imported.
    Reference(StoreState),
    /// Our journal, replayed; the file stays open for appending.
    Journal { file: File, meta: fs::Metadata, replayed: Replayed, bytes: Vec<u8> },
}

impl Store {
    /// Locks and loads the store at `path`, creating it (and its directory, mode 0700) when
    /// absent. What it refuses (see the module doc's table) it refuses before changing or
    /// creating any file.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_err("create directory", &dir))?;
        let euid = files::euid();
        let dir_lock = files::open_dir(&dir, euid)?;
        let lock_path = sibling(path, ".lock");
        lock::try_lock(&dir_lock, &dir, &lock_path)?;
        let prev = sibling(path, ".prev");
        let tmp = sibling(path, ".tmp");
        files::regular_or_absent(&lock_path)?;
        let prev_meta = files::regular_or_absent(&prev)?;
        let tmp_meta = files::regular_or_absent(&tmp)?;
        let leftovers = |empty: bool| -> Result<(), StoreError> {
            if prev_meta.is_some() || (tmp_meta.is_some() && recovery::tmp_has_records(&tmp)) {
                let prev = if prev_meta.is_some() { recovery::inspect(&prev) } else { Prev::Absent };
                return Err(StoreError::MissingWithPrevious {
                    path: path.to_path_buf(),
                    empty,
                    prev,
                    tmp: tmp_meta.is_some(),
                });
            }
            Ok(())
        };
        let mut journal_lock = None;
        let found = match files::open_existing(path, true, euid)? {
            None => {
                leftovers(false)?;
                Found::Fresh
            }
            Some(opened) => {
                // The reference's ipam-node flocks the store file itself: keep it out too.
                journal_lock = Some(lock_journal(path, &opened.meta, &lock_path)?);
                let len = opened.meta.len();
                if len > MAX_STORE_BYTES {
                    return Err(StoreError::TooLarge {
                        path: path.to_path_buf(),
                        len,
                        recovery: Box::new(Recovery::new(path, None)),
                    });
                }
                let mut bytes = Vec::with_capacity(len as usize);
                (&opened.file).take(MAX_STORE_BYTES).read_to_end(&mut bytes).map_err(io_err("read", path))?;
                match journal::content(&bytes) {
                    Content::Empty => {
                        leftovers(true)?;
                        Found::Empty(bytes.len())
                    }
                    Content::Reference => {
                        Found::Reference(legacy::import(&bytes).map_err(|reason| StoreError::Corrupt {
                            path: path.to_path_buf(),
                            line: 1,
                            reason,
                            recovery: Box::new(Recovery::new(path, None)),
                        })?)
                    }
                    Content::Journal => match journal::replay(&bytes) {
                        Ok(replayed) => {
                            Found::Journal { file: opened.file, meta: opened.meta, replayed, bytes }
                        }
                        Err(ReplayError::Damaged { line, reason }) => {
                            return Err(StoreError::Corrupt {
                                path: path.to_path_buf(),
                                line,
                                reason,
                                recovery: Box::new(Recovery::new(path, Some(line))),
                            });
                        }
                        Err(ReplayError::Version(version)) => {
                            return Err(StoreError::UnsupportedVersion { path: path.to_path_buf(), version });
                        }
                    },
                }
            }
        };
        // Nothing was changed or created so far. `store.lock` is taken before the first change
        // (an older ipam-node locks only that file).
        let lock_file = lock::lock_file(&lock_path, euid)?;
        let mut store = Store {
            path: path.to_path_buf(),
            dir,
            _dir_lock: dir_lock,
            _lock_file: lock_file.file.try_clone().map_err(io_err("open", &lock_path))?,
            euid,
            journal: Arc::new(File::open("/dev/null").map_err(io_err("open", Path::new("/dev/null")))?),
            journal_id: (0, 0),
            journal_lock,
            journal_len: 0,
            durability: Arc::new(Durability::default()),
            journal_lines: 0,
            next_seq: 1,
            generation: 0,
            state: StoreState::default(),
            poisoned: false,
            moved: false,
            compact_at: COMPACT_MIN_LINES,
        };
        match found {
            Found::Fresh => store.rewrite()?,
            Found::Empty(len) => {
                log::warn!(
                    "store {}: the file is empty ({len} bytes, no header) and no {} exists: starting with no reservations",
                    path.display(),
                    prev.display()
                );
                store.rewrite()?;
            }
            Found::Reference(state) => {
                // Import; the rewrite keeps the original as store.prev.
                store.state = state;
                log::info!("imported {} reservations from the reference store format", store.state.len());
                store.rewrite()?;
            }
            Found::Journal { file, meta, replayed, bytes } => {
                store.load(file, replayed, &bytes)?;
                files::tighten(path, &store.journal, &meta);
            }
        }
        store.remove_tmp(tmp_meta.is_some());
        if prev_meta.is_some()
            && let Ok(Some(p)) = files::open_existing(&prev, false, None)
        {
            files::tighten(&prev, &p.file, &p.meta);
        }
        lock::record_holder(&lock_file, &lock_path);
        Ok(store)
    }

    /// Removes a `store.tmp` left by an unfinished compaction: `store` is the current generation.
    fn remove_tmp(&self, present: bool) {
        if !present {
            return;
        }
        let tmp = sibling(&self.path, ".tmp");
        match fs::remove_file(&tmp) {
            Ok(()) => log::info!(
                "store: removed {} left by an unfinished compaction; {} is the current generation",
                tmp.display(),
                self.path.display()
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("store: cannot remove {}: {e}", tmp.display()),
        }
    }

    /// Takes over a replayed journal; a torn last line is kept aside, then cut off.
    fn load(&mut self, file: File, r: Replayed, bytes: &[u8]) -> Result<(), StoreError> {
        let mut valid_end = bytes.len();
        if let Some(torn) = &r.torn {
            let tail = &bytes[torn.offset..];
            let (kept, n) = files::keep_torn(&self.path, &self.dir, tail, unix_ms())
                .map_err(|source| StoreError::KeepTorn { path: self.path.clone(), source })?;
            file.set_len(torn.offset as u64).map_err(io_err("cut the torn last line of", &self.path))?;
            file.sync_all().map_err(io_err("sync", &self.path))?;
            log::warn!(
                "store {}: line {} was unterminated, a write torn by a crash and never acknowledged: cut off {} bytes, kept {n} of them in {}",
                self.path.display(),
                torn.line,
                tail.len(),
                kept.display()
            );
            valid_end = torn.offset;
        }
        let meta = file.metadata().map_err(io_err("stat", &self.path))?;
        self.journal_id = (meta.dev(), meta.ino());
        self.journal = Arc::new(file);
        self.journal_len = valid_end as u64;
        self.state = r.state;
        self.generation = r.generation;
        self.next_seq = r.next_seq;
        self.journal_lines = r.lines;
        // Everything replayed was on disk already (it was read back from it).
        self.durability.reset(self.journal.clone(), self.journal_len);
        self.compact_at = COMPACT_MIN_LINES.max(self.state.len());
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn state(&self) -> &StoreState {
        &self.state
    }

    /// The durability tracker: callers wait on a [`Ticket`] after releasing their lock on the
    /// store, so that concurrent requests share one `fdatasync` (group commit).
    pub fn durability(&self) -> Arc<Durability> {
        self.durability.clone()
    }

    /// A ticket for everything written so far: a reader that answers from the in-memory state
    /// waits on it, so it never acknowledges a change that could still be lost.
    pub fn ticket(&self) -> Ticket {
        self.durability.ticket()
    }

    /// Applies `ops` and makes them durable before returning. On any failure nothing changes,
    /// in memory or on disk.
    pub fn commit(&mut self, ops: Vec<Op>) -> Result<(), StoreError> {
        let ticket = self.commit_deferred(ops)?;
        self.durability.wait(ticket).map_err(|source| StoreError::Commit { path: self.path.clone(), source })
    }

    /// Applies `ops` and writes them to the journal without waiting for the disk; the change
    /// may be acknowledged only after `durability().wait(ticket)` succeeded. Later requests may
    /// build on it at once: the journal is sequential, so their own ticket covers it.
    pub fn commit_deferred(&mut self, ops: Vec<Op>) -> Result<Ticket, StoreError> {
        if ops.is_empty() {
            return Ok(self.ticket());
        }
        if self.moved {
            return Err(StoreError::Moved { path: self.path.clone() });
        }
        if self.poisoned || self.durability.failed() {
            return Err(StoreError::Poisoned { path: self.path.clone() });
        }
        self.check_in_place()?;
        let undo = self.state.apply_all(&ops).map_err(StoreError::Inconsistent)?;
        let line = encode_line(&Txn { seq: self.next_seq, ops });
        if let Err(source) = self.append(&line) {
            self.state.revert(undo);
            return Err(StoreError::Commit { path: self.path.clone(), source });
        }
        self.next_seq += 1;
        self.journal_lines += 1;
        let ticket = self.durability.written(self.journal_len);
        if self.journal_lines > self.compact_at {
            self.compact();
        }
        Ok(ticket)
    }

    /// Checks that the store path still names the journal this process appends to (one
    /// `stat`): after a move, a replacement or a directory rename, a line appended here would
    /// be acknowledged but not read by the next start, so every later change is refused.
    fn check_in_place(&mut self) -> Result<(), StoreError> {
        let seen = match fs::metadata(&self.path) {
            Ok(m) => Some((m.dev(), m.ino())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => return Err(StoreError::Commit { path: self.path.clone(), source }),
        };
        if seen == Some(self.journal_id) {
            return Ok(());
        }
        self.moved = true;
        let e = StoreError::Moved { path: self.path.clone() };
        log::error!("{e}");
        Err(e)
    }

    /// Appends one line (not yet synced); on failure cuts the file back to where it was.
    fn append(&mut self, line: &[u8]) -> io::Result<()> {
        if let Err(e) = (&*self.journal).write_all(line) {
            // A partial line would read as a torn write; remove it so the file stays clean.
            if let Err(cut) = self.journal.set_len(self.journal_len) {
                self.poisoned = true;
                log::error!("store {}: could not undo a failed append ({e}): {cut}", self.path.display());
            }
            return Err(e);
        }
        self.journal_len += line.len() as u64;
        Ok(())
    }

    /// Rewrites the journal as the current state; on failure keeps the (valid) old journal.
    fn compact(&mut self) {
        match self.rewrite() {
            Ok(()) => {
                log::debug!("store {}: compacted to generation {}", self.path.display(), self.generation)
            }
            Err(e) if self.poisoned => log::error!("store compaction failed after its rename: {e}"),
            Err(e) => {
                log::warn!("store compaction failed, the journal keeps growing until it succeeds: {e}");
                self.compact_at = self.journal_lines + COMPACT_MIN_LINES;
            }
        }
    }

    /// Writes a new generation holding the current state: temp file, fsync, keep the current
    /// file as `.prev`, rename, fsync dir. A failure before the rename keeps the old journal;
    /// after it, the new file is the store whatever happens, and a failure poisons the store.
    fn rewrite(&mut self) -> Result<(), StoreError> {
        let generation = self.generation + 1;
        // Ended cooldowns carry no information; dropping them here bounds their number by the
        // releases of one cooldown period.
        self.state.drop_expired_cooldowns(unix_ms());
        let mut buf = encode_line(&Header {
            format: record::FORMAT_NAME.into(),
            version: record::FORMAT_VERSION,
            generation,
        });
        let mut lines = 0usize;
        let mut seq = 0u64;
        let mut cursors: Vec<Op> =
            self.state.cursors().map(|(pool, ip)| Op::Cursor { pool: pool.clone(), ip: *ip }).collect();
        if !cursors.is_empty() {
            cursors.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
            seq += 1;
            buf.extend(encode_line(&Txn { seq, ops: cursors }));
            lines += 1;
        }
        let mut cooling: Vec<Op> = self
            .state
            .cooldowns()
            .map(|(pool, ip, until_ms)| Op::Cooldown { pool: pool.to_string(), ip, until_ms })
            .collect();
        if !cooling.is_empty() {
            cooling.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
            seq += 1;
            buf.extend(encode_line(&Txn { seq, ops: cooling }));
            lines += 1;
        }
        let mut res: Vec<&Reservation> = self.state.reservations().collect();
        res.sort_by_key(|r| r.key());
        for r in res {
            seq += 1;
            buf.extend(encode_line(&Txn { seq, ops: vec![Op::Reserve(r.clone())] }));
            lines += 1;
        }
        // A leftover from a crash is removed first: the new file is always created by us
        // (O_EXCL, O_NOFOLLOW), never an existing file or link someone else put there.
        let staged = replace::stage(&self.path, ".tmp", 0o600, |f| f.write_all(&buf))
            .map_err(|source| StoreError::Commit { path: self.path.clone(), source })?;
        // Keep the current generation as .prev; a crash here leaves the current file intact.
        let prev = sibling(&self.path, ".prev");
        if fs::symlink_metadata(&self.path).is_ok() {
            let _ = fs::remove_file(&prev);
            if let Err(e) = fs::hard_link(&self.path, &prev) {
                log::warn!("store: could not keep previous generation as {}: {e}", prev.display());
            }
        }
        // The rename is the atomic switch to the new generation.
        if let Err(source) = staged.rename() {
            return Err(StoreError::Commit { path: self.path.clone(), source });
        }
        // From here on the new file is the store: appending to the old one would put
        // acknowledged lines where the next start does not read them.
        let switched = files::open_existing(&self.path, true, self.euid).and_then(|o| {
            o.ok_or_else(|| StoreError::Io {
                action: "reopen",
                path: self.path.clone(),
                source: io::ErrorKind::NotFound.into(),
            })
        });
        let opened = match switched {
            Ok(o) => o,
            Err(e) => {
                self.poison(io::ErrorKind::Other);
                return Err(e);
            }
        };
        self.journal_lock = lock_journal(&self.path, &opened.meta, &sibling(&self.path, ".lock"))
            .inspect_err(|e| log::warn!("store: cannot flock the new journal: {e}"))
            .ok();
        self.journal_id = (opened.meta.dev(), opened.meta.ino());
        self.journal = Arc::new(opened.file);
        self.journal_len = buf.len() as u64;
        self.journal_lines = lines;
        self.next_seq = seq + 1;
        self.generation = generation;
        self.compact_at = COMPACT_MIN_LINES.max(2 * self.state.len());
        // Without the directory fsync the rename itself may be lost on power failure, and with
        // it every line appended to the new file.
        if let Err(e) = files::sync_dir(&self.dir) {
            self.poison(e.kind());
            return Err(io_err("sync directory", &self.dir)(e));
        }
        // The new generation was fsynced whole: every ticket issued so far is durable.
        self.durability.reset(self.journal.clone(), self.journal_len);
        Ok(())
    }

    /// No change is accepted or acknowledged any more (until a restart reloads the store).
    fn poison(&mut self, kind: io::ErrorKind) {
        self.poisoned = true;
        self.durability.fail(kind);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A directory for one test, removed with its contents when dropped.
    pub(crate) struct TempDir(PathBuf);

    impl TempDir {
        pub(crate) fn new(prefix: &str) -> TempDir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let d = std::env::temp_dir().join(format!(
                "nv-ipam-{prefix}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            let _ = fs::remove_dir_all(&d);
            fs::create_dir_all(&d).expect("temp dir");
            TempDir(d)
        }
    }

    impl std::ops::Deref for TempDir {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn tempdir() -> TempDir {
        TempDir::new("store-test")
    }

    fn res(cid: &str, ip: &str) -> Reservation {
        Reservation {
            pool: "blue".into(),
            container_id: cid.into(),
            ifname: "eth0".into(),
            ip: ip.parse().expect("ip"),
            network: "net1".into(),
            pod_name: Some(format!("pod-{cid}")),
            pod_namespace: Some("default".into()),
            pod_uid: None,
            device_id: None,
            created: 1,
        }
    }

    fn release(cid: &str) -> Op {
        Op::Release { pool: "blue".into(), container_id: cid.into(), ifname: "eth0".into() }
    }

    #[test]
    fn commits_survive_reopen() {
        let d = tempdir();
        let p = d.join("store");
        {
            let mut s = Store::open(&p).expect("open");
            s.commit(vec![
                Op::Reserve(res("a", "10.0.0.2")),
                Op::Cursor { pool: "blue".into(), ip: "10.0.0.2".parse().expect("ip") },
            ])
            .expect("commit");
            s.commit(vec![Op::Reserve(res("b", "10.0.0.3"))]).expect("commit");
            s.commit(vec![release("a")]).expect("commit");
        }
        let s = Store::open(&p).expect("reopen");
        assert_eq!(s.state().len(), 1);
        assert!(s.state().is_held("blue", "10.0.0.3".parse().expect("ip")));
        assert_eq!(s.state().cursor("blue"), Some("10.0.0.2".parse().expect("ip")));
        use std::os::unix::fs::PermissionsExt;
        for f in ["store", "store.lock"] {
            let mode = fs::metadata(d.join(f)).expect("stat").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
    }

    #[test]
    fn second_open_is_refused_by_the_lock() {
        let d = tempdir();
        let p = d.join("store");
        let _s = Store::open(&p).expect("open");
        let e = Store::open(&p).expect_err("locked");
        assert!(e.to_string().contains("another ipam-node already runs"), "{e}");
    }

    #[test]
    fn torn_last_line_is_kept_aside_then_cut_off() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempdir();
        let p = d.join("store");
        {
            let mut s = Store::open(&p).expect("open");
            s.commit(vec![Op::Reserve(res("a", "10.0.0.2"))]).expect("commit");
        }
        let good = fs::read(&p).expect("read");
        let tail = b"0123456789abcdef {\"seq\":9,\"ops\":[{\"op\":\"res";
        let mut torn = good.clone();
        torn.extend_from_slice(tail);
        fs::write(&p, &torn).expect("write");
        {
            let mut s = Store::open(&p).expect("open with torn tail");
            assert_eq!(s.state().len(), 1);
            s.commit(vec![Op::Reserve(res("b", "10.0.0.3"))]).expect("commit after the cut");
        }
        let kept: Vec<PathBuf> = fs::read_dir(&*d)
            .expect("ls")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().contains("store.torn-"))
            .collect();
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(fs::read(&kept[0]).expect("read torn"), tail);
        assert_eq!(fs::metadata(&kept[0]).expect("stat").permissions().mode() & 0o777, 0o600);
        let after = fs::read(&p).expect("read");
        assert!(after.starts_with(&good) && !after.windows(tail.len()).any(|w| w == tail), "torn tail cut");
        assert_eq!(Store::open(&p).expect("reopen").state().len(), 2);
    }

    #[test]
    fn bit_flip_in_the_last_complete_line_refuses_and_leaves_the_file() {
        let d = tempdir();
        let p = d.join("store");
        {
            let mut s = Store::open(&p).expect("open");
            s.commit(vec![Op::Reserve(res("a", "10.0.0.2"))]).expect("commit");
            s.commit(vec![Op::Reserve(res("b", "10.0.0.3"))]).expect("commit");
        }
        let mut bytes = fs::read(&p).expect("read");
        let i = bytes.windows(8).position(|w| w == b"10.0.0.3").expect("ip in file");
        bytes[i + 7] ^= 0x04;
        fs::write(&p, &bytes).expect("write");
        let e = Store::open(&p).expect_err("damaged last line");
        let msg = e.to_string();
        assert!(msg.contains("damaged at line 3 (checksum mismatch)"), "{msg}");
        assert!(msg.contains("sed -i '3d'"), "{msg}");
        assert_eq!(fs::read(&p).expect("read"), bytes, "never overwritten or cut");
        assert_eq!(fs::read_dir(&*d).expect("ls").count(), 2, "store and store.lock only");
    }

    #[test]
    fn damaged_middle_line_refuses_and_leaves_file_untouched() {
        let d = tempdir();
        let p = d.join("store");
        {
            let mut s = Store::open(&p).expect("open");
            s.commit(vec![Op::Reserve(res("a", "10.0.0.2"))]).expect("commit");
            s.commit(vec![Op::Reserve(res("b", "10.0.0.3"))]).expect("commit");
        }
        let mut bytes = fs::read(&p).expect("read");
        let i = bytes.windows(8).position(|w| w == b"10.0.0.2").expect("ip in file");
        bytes[i + 7] = b'9';
        fs::write(&p, &bytes).expect("write");
        let e = Store::open(&p).expect_err("corrupt");
        let msg = e.to_string();
        assert!(msg.contains("damaged at line 2") && msg.contains("checksum mismatch"), "{msg}");
        assert!(msg.contains(".prev"), "{msg}");
        assert_eq!(fs::read(&p).expect("read"), bytes, "never overwritten");
    }

    #[test]
    fn a_file_over_the_size_limit_is_refused_unread() {
        let d = tempdir();
        let p = d.join("store");
        let f = File::create(&p).expect("create");
        f.set_len(MAX_STORE_BYTES + 1).expect("sparse file");
        match Store::open(&p) {
            Err(e @ StoreError::TooLarge { .. }) => {
                assert!(e.to_string().contains(&format!("more than the {MAX_STORE_BYTES}-byte limit")), "{e}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(fs::metadata(&p).expect("stat").len(), MAX_STORE_BYTES + 1);
    }

    #[test]
    fn garbage_file_refuses() {
        let d = tempdir();
        let p = d.join("store");
        fs::write(&p, b"something\nelse\n").expect("write");
        let e = Store::open(&p).expect_err("garbage");
        assert!(e.to_string().contains("damaged at line 1"), "{e}");
    }

    #[test]
    fn compaction_keeps_state_and_previous_generation() {
        let d = tempdir();
        let p = d.join("store");
        {
            let mut s = Store::open(&p).expect("open");
            for i in 0..(COMPACT_MIN_LINES + 10) {
                let ip = format!("10.0.{}.{}", i / 250, i % 250 + 1);
                s.commit(vec![Op::Reserve(res(&format!("c{i}"), &ip))]).expect("commit");
                if i % 2 == 0 {
                    s.commit(vec![release(&format!("c{i}"))]).expect("commit");
                }
            }
            assert!(s.generation >= 2, "compacted at least once");
        }
        assert!(d.join("store.prev").exists());
        let s = Store::open(&p).expect("reopen");
        assert_eq!(s.state().len(), (COMPACT_MIN_LINES + 10) / 2);
        assert!(!d.join("store.tmp").exists());
    }

    #[test]
    fn deferred_commits_from_many_threads_are_durable_after_wait() {
        let d = tempdir();
        let p = d.join("store");
        let store = std::sync::Arc::new(std::sync::Mutex::new(Store::open(&p).expect("open")));
        let durability = store.lock().expect("lock").durability();
        let threads: Vec<_> = (0..32)
            .map(|i| {
                let (store, durability) = (store.clone(), durability.clone());
                std::thread::spawn(move || {
                    let ticket = store
                        .lock()
                        .expect("lock")
                        .commit_deferred(vec![Op::Reserve(res(
                            &format!("c{i}"),
                            &format!("10.0.1.{}", i + 1),
                        ))])
                        .expect("commit");
                    durability.wait(ticket).expect("durable");
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        drop(store);
        let s = Store::open(&p).expect("reopen");
        assert_eq!(s.state().len(), 32);
    }

    #[test]
    fn missing_store_with_previous_generation_refuses() {
        let d = tempdir();
        fs::write(d.join("store.prev"), b"x").expect("write");
        let e = Store::open(&d.join("store")).expect_err("missing");
        assert!(e.to_string().contains("is missing but"), "{e}");
        assert!(!d.join("store").exists(), "nothing created");
    }

    /// A store with reservations and a real previous generation (one compaction).
    fn store_with_prev(p: &Path) {
        let mut s = Store::open(p).expect("open");
        s.commit(vec![Op::Reserve(res("keep", "10.0.9.9"))]).expect("commit");
        s.rewrite().expect("compact");
        s.commit(vec![Op::Reserve(res("new", "10.0.9.10"))]).expect("commit");
    }

    #[test]
    fn empty_store_with_previous_generation_refuses_and_the_advice_works() {
        let d = tempdir();
        let p = d.join("store");
        store_with_prev(&p);
        fs::write(&p, b"").expect("truncate");
        let e = Store::open(&p).expect_err("empty with prev");
        let msg = e.to_string();
        assert!(msg.contains("is empty (no header) but") && msg.contains("1 reservations"), "{msg}");
        assert_eq!(fs::read(&p).expect("read"), b"", "untouched");
        // the first way out: restore the previous generation
        fs::rename(d.join("store.prev"), &p).expect("mv store.prev store");
        let s = Store::open(&p).expect("restored");
        assert!(s.state().is_held("blue", "10.0.9.9".parse().expect("ip")));
    }

    #[test]
    fn empty_store_alone_starts_empty() {
        let d = tempdir();
        let p = d.join("store");
        fs::write(&p, b"\n").expect("write");
        assert!(Store::open(&p).expect("empty").state().is_empty());
    }

    #[test]
    fn leftover_tmp_is_removed_or_refused_by_what_it_holds() {
        let d = tempdir();
        let p = d.join("store");
        let tmp = d.join("store.tmp");
        {
            let mut s = Store::open(&p).expect("open");
            s.commit(vec![Op::Reserve(res("a", "10.0.0.2"))]).expect("commit");
        }
        // a valid store: the tmp of an unfinished compaction is dropped
        let store_bytes = fs::read(&p).expect("read");
        fs::write(&tmp, &store_bytes[..store_bytes.len() - 5]).expect("write tmp");
        drop(Store::open(&p).expect("open"));
        assert!(!tmp.exists());
        // no store, a tmp with records: refused
        fs::rename(&p, &tmp).expect("mv store store.tmp");
        let e = Store::open(&p).expect_err("tmp with records");
        assert!(e.to_string().contains("store.tmp (an unfinished compaction"), "{e}");
        assert!(tmp.exists() && !p.exists(), "untouched");
        // no store, a tmp with a header only (a crash during the first start): starts empty
        let header = store_bytes.iter().position(|b| *b == b'\n').expect("header") + 1;
        fs::write(&tmp, &store_bytes[..header]).expect("write tmp");
        assert!(Store::open(&p).expect("first start").state().is_empty());
        assert!(!tmp.exists());
    }

    #[test]
    fn deleted_or_replaced_lock_file_keeps_a_second_store_out() {
        let d = tempdir();
        let p = d.join("store");
        let _s = Store::open(&p).expect("open");
        fs::remove_file(d.join("store.lock")).expect("rm store.lock");
        let e = Store::open(&p).expect_err("locked");
        let msg = e.to_string();
        assert!(msg.contains(&format!("pid {}", std::process::id())), "{msg}");
        assert!(!d.join("store.lock").exists(), "the refused open created nothing");
        fs::write(d.join("store.lock"), b"{}").expect("replace store.lock");
        assert!(matches!(Store::open(&p), Err(StoreError::Locked { .. })));
    }

    #[test]
    fn a_moved_or_replaced_store_refuses_every_later_change() {
        let d = tempdir();
        let p = d.join("store");
        let mut s = Store::open(&p).expect("open");
        s.commit(vec![Op::Reserve(res("a", "10.0.0.2"))]).expect("commit");
        let bytes = fs::read(&p).expect("read");
        fs::write(d.join("copy"), &bytes).expect("copy");
        fs::rename(d.join("copy"), &p).expect("replace the store");
        let e = s.commit(vec![Op::Reserve(res("b", "10.0.0.3"))]).expect_err("moved");
        assert!(matches!(e, StoreError::Moved { .. }), "{e}");
        assert_eq!(s.state().len(), 1, "nothing applied");
        assert!(matches!(s.commit(vec![release("a")]), Err(StoreError::Moved { .. })));
        assert_eq!(fs::read(&p).expect("read"), bytes);
    }

    #[test]
    fn wider_modes_are_set_to_0600() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempdir();
        let p = d.join("store");
        store_with_prev(&p);
        for f in ["store", "store.prev", "store.lock"] {
            fs::set_permissions(d.join(f), fs::Permissions::from_mode(0o664)).expect("chmod");
        }
        drop(Store::open(&p).expect("open"));
        for f in ["store", "store.prev", "store.lock"] {
            let mode = fs::metadata(d.join(f)).expect("stat").permissions().mode() & 0o7777;
            assert_eq!(mode, 0o600, "{f}");
        }
    }

    #[test]
    fn inconsistent_commit_changes_nothing() {
        let d = tempdir();
        let p = d.join("store");
        let mut s = Store::open(&p).expect("open");
        s.commit(vec![Op::Reserve(res("a", "10.0.0.2"))]).expect("commit");
        let before = fs::read(&p).expect("read");
        assert!(s.commit(vec![Op::Reserve(res("b", "10.0.0.2"))]).is_err());
        assert_eq!(fs::read(&p).expect("read"), before);
        assert_eq!(s.state().len(), 1);
    }

    #[test]
    fn cooldowns_survive_reopen_and_compaction_drops_ended_ones() {
        let d = tempdir();
        let p = d.join("store");
        let ip = |s: &str| -> std::net::IpAddr { s.parse().expect("ip") };
        let far = unix_ms() + 3_600_000;
        {
            let mut s = Store::open(&p).expect("open");
            s.commit(vec![
                Op::Cooldown { pool: "blue".into(), ip: ip("10.0.0.2"), until_ms: far },
                Op::Cooldown { pool: "blue".into(), ip: ip("10.0.0.3"), until_ms: 1 },
            ])
            .expect("commit");
        }
        let mut s = Store::open(&p).expect("reopen");
        assert!(s.state().is_cooling("blue", ip("10.0.0.2"), unix_ms()));
        assert_eq!(s.state().cooldowns().count(), 2, "replay keeps what the journal says");
        s.rewrite().expect("compact");
        drop(s);
        let s = Store::open(&p).expect("reopen after compaction");
        let left: Vec<_> = s.state().cooldowns().map(|(_, a, _)| a).collect();
        assert_eq!(left, vec![ip("10.0.0.2")]);
    }

    #[test]
    fn version_1_files_are_read_and_future_versions_refused() {
        let d = tempdir();
        let p = d.join("store");
        let mut v1 = encode_line(&Header { format: record::FORMAT_NAME.into(), version: 1, generation: 1 });
        v1.extend(encode_line(&Txn { seq: 1, ops: vec![Op::Reserve(res("a", "10.0.0.2"))] }));
        fs::write(&p, &v1).expect("write v1");
        {
            let s = Store::open(&p).expect("open v1");
            assert_eq!(s.state().len(), 1);
        }
        let v9 = encode_line(&Header { format: record::FORMAT_NAME.into(), version: 9, generation: 1 });
        fs::write(&p, &v9).expect("write v9");
        let e = Store::open(&p).expect_err("v9");
        assert!(e.to_string().contains("format version 9"), "{e}");
    }
}
