//! The node's allocation store: every reservation this node handed out, durable before the
//! caller hears about it, and never lost without a word.
//!
//! Files (default `/var/lib/cni/nv-ipam/`), all regular files of the daemon's uid, mode 0600:
//! ```text
//! store             the journal: a header line, then one line per committed request
//! store.lock        flock'ed (shared) for the daemon's lifetime, names the holder (never renamed over)
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
//! files) plus a shared one on `store.lock` (older ipam-node versions lock it exclusively;
//! readers share it) and one on the journal file (the reference's ipam-node flocks the store
//! file itself). So one daemon serves one store directory (its pools cache lives there too). A refused daemon names the holder's pid and
//! command line. While serving, every commit first checks (one `stat`) that the store path
//! still names the journal it appends to; if the file was moved, replaced or deleted, or its
//! directory renamed, every later change is refused ([`StoreError::Moved`]) so that nothing is
//! acknowledged into a file the next start would not read.
//!
//! # Read-only access
//! [`Snapshot::read`] reads a store while a daemon serves it, under the shared lock on
//! `store.lock` and without writing anything; `snapshot` says why that read is consistent and
//! why it cannot disturb the daemon (which is why the daemon holds `store.lock` shared).
//!
//! Rooms: `record` (the line types), `journal` (encode, replay), `state` (the in-memory
//! state), `files` (opening and creating safely), `lock`, `durability` (group commit),
//! `compact` (new generations), `recovery` (the ways out of damage), `legacy` (the
//! reference's JSON), `snapshot` (read-only readers), `error` ([`StoreError`]); this file opens the store and commits.
//!
//! Owns: the files above and their durability. Must not: decide allocations (see `alloc`) or
//! be shared across processes except through the lock.

mod compact;
mod durability;
mod error;
mod files;
mod journal;
mod legacy;
mod lock;
pub mod record;
mod recovery;
pub mod snapshot;
pub mod state;

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use durability::{Durability, Ticket};
pub use error::StoreError;
use error::io_err;
pub use files::{MAX_TORN_BYTES, MAX_TORN_FILES};
pub use record::{AttachmentKey, Header, Op, Reservation, Txn};
pub use recovery::{Prev, Recovery};
pub use snapshot::Snapshot;
pub use state::{StateError, StoreState};

use journal::{Content, ReplayError, Replayed, encode_line};

/// Largest store file read at start: 512 MiB. At ~300 bytes a reservation that is 1.7 million
/// reservations, far past any node; a bigger file is damage, not data.
pub const MAX_STORE_BYTES: u64 = 512 << 20;

/// Compaction runs when the journal holds more lines than this, or than live reservations,
/// whichever is larger: the rewrite then costs O(1) amortised per request.
pub const COMPACT_MIN_LINES: usize = 1024;

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

pub(super) fn sibling(path: &Path, suffix: &str) -> PathBuf {
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
pub(super) fn lock_journal(path: &Path, meta: &fs::Metadata, lock_path: &Path) -> Result<File, StoreError> {
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
}

#[cfg(test)]
pub(crate) mod tests;
