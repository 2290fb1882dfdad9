//! The node's allocation store: every reservation this node handed out, durable before the
//! caller hears about it.
//!
//! Files (default `/var/lib/cni/nv-ipam/`), all mode 0600:
//! ```text
//! store        the journal: a header line, then one line per committed request
//! store.lock   stable lock file; flock'ed for the daemon's lifetime (never renamed over)
//! store.prev   the previous generation, kept at every compaction
//! store.tmp    a compaction in progress (removed on failure)
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
//! Compaction keeps cooldowns that have not ended and drops the rest.
//! Why a journal and not a whole-file rewrite per request: rewriting 10,000 reservations on
//! every ADD costs milliseconds and grows with the store; an append plus `fdatasync` costs the
//! same at any size. Compaction rewrites the file atomically (temp, fsync, rename, fsync dir)
//! once the journal holds more lines than live reservations, so the amortised cost stays flat.
//!
//! Recovery: a last line that is incomplete or fails its checksum is a write torn by a crash
//! (it was never acknowledged) and is cut off. Any other bad line means the file is damaged:
//! the store refuses to open and is never overwritten, and the error says how to recover.
//! A store in the reference implementation's JSON format is imported on open.
//!
//! Owns: the files above and their durability. Must not: decide allocations (see `alloc`) or
//! be shared across processes except through the lock.

mod durability;
mod legacy;
pub mod record;
pub mod state;

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use durability::{Durability, Ticket};
pub use record::{AttachmentKey, Header, Op, Reservation, Txn};
pub use state::{StateError, StoreState};

/// Largest store file read at start: 512 MiB. At ~300 bytes a reservation that is 1.7 million
/// reservations, far past any node; a bigger file is damage, not data.
pub const MAX_STORE_BYTES: u64 = 512 << 20;

/// Compaction runs when the journal holds more lines than this, or than live reservations,
/// whichever is larger: the rewrite then costs O(1) amortised per request.
pub const COMPACT_MIN_LINES: usize = 1024;

/// Why the store could not be opened or changed. Display says what to do.
#[derive(Debug)]
pub enum StoreError {
    Io { action: &'static str, path: PathBuf, source: io::Error },
    Locked { lock: PathBuf },
    TooLarge { path: PathBuf, len: u64 },
    Corrupt { path: PathBuf, line: usize, reason: String },
    UnsupportedVersion { path: PathBuf, version: u32 },
    MissingWithPrevious { path: PathBuf, prev: PathBuf },
    Commit { path: PathBuf, source: io::Error },
    Inconsistent(StateError),
    Poisoned { path: PathBuf },
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
            StoreError::Locked { lock } => write!(
                f,
                "store: {} is locked by another process; another ipam-node already runs on this node (stop it first)",
                lock.display()
            ),
            StoreError::TooLarge { path, len } => write!(
                f,
                "store: {} is {len} bytes, more than the {MAX_STORE_BYTES}-byte limit; it is damaged: move it aside and restore {}.prev",
                path.display(),
                path.display()
            ),
            StoreError::Corrupt { path, line, reason } => write!(
                f,
                "store: {} is damaged at line {line} ({reason}); it was left untouched. Inspect it, then either restore the previous generation (mv {p}.prev {p}) or move it aside to start empty (running pods keep their addresses but the node forgets them)",
                path.display(),
                p = path.display()
            ),
            StoreError::UnsupportedVersion { path, version } => write!(
                f,
                "store: {} has format version {version}, which this ipam-node cannot read; run a newer ipam-node or restore {}.prev",
                path.display(),
                path.display()
            ),
            StoreError::MissingWithPrevious { path, prev } => write!(
                f,
                "store: {} is missing but {} exists; restore it (mv {} {}) or remove {} to start empty",
                path.display(),
                prev.display(),
                prev.display(),
                path.display(),
                prev.display()
            ),
            StoreError::Commit { path, source } => write!(
                f,
                "store: could not persist the change to {} ({source}); nothing was changed; free disk space or fix the disk",
                path.display()
            ),
            StoreError::Inconsistent(e) => write!(f, "store: refused an inconsistent change: {e}"),
            StoreError::Poisoned { path } => write!(
                f,
                "store: {} is in an unknown state after a failed sync; restart ipam-node to reload it",
                path.display()
            ),
        }
    }
}

impl std::error::Error for StoreError {}

/// An open store: lock held, state loaded, journal open for appending.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    dir: PathBuf,
    _lock: File,
    journal: Arc<File>,
    journal_len: u64,
    durability: Arc<Durability>,
    journal_lines: usize,
    next_seq: u64,
    generation: u64,
    state: StoreState,
    poisoned: bool,
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

/// FNV-1a, 64 bit: a checksum against torn or damaged lines, not against tampering.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn encode_line<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let json = serde_json::to_vec(value).expect("store records always serialize");
    let mut line = format!("{:016x} ", fnv1a64(&json)).into_bytes();
    line.extend_from_slice(&json);
    line.push(b'\n');
    line
}

fn decode_line(line: &[u8]) -> Result<&[u8], String> {
    if line.len() < 18 || line[16] != b' ' {
        return Err("not a store line".into());
    }
    let sum = std::str::from_utf8(&line[..16])
        .ok()
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or("bad checksum field")?;
    let json = &line[17..];
    if fnv1a64(json) != sum {
        return Err("checksum mismatch".into());
    }
    Ok(json)
}

fn open_private(path: &Path, append: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.create(true).mode(0o600);
    if append {
        o.append(true).read(true);
    } else {
        o.write(true).truncate(true);
    }
    o.open(path)
}

/// fsync a directory so that a rename or create inside it survives a power loss.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Store {
    /// Locks and loads the store at `path`, creating it (and its directory, mode 0700) when
    /// absent. Fails without writing anything when the file cannot be read.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_err("create directory", &dir))?;
        let lock_path = sibling(path, ".lock");
        let lock = open_private(&lock_path, true).map_err(io_err("open lock file", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(StoreError::Locked { lock: lock_path }),
            Err(fs::TryLockError::Error(e)) => return Err(io_err("lock", &lock_path)(e)),
        }
        let prev = sibling(path, ".prev");
        let bytes = match File::open(path) {
            Ok(f) => {
                let len = f.metadata().map_err(io_err("stat", path))?.len();
                if len > MAX_STORE_BYTES {
                    return Err(StoreError::TooLarge { path: path.to_path_buf(), len });
                }
                let mut buf = Vec::with_capacity(len as usize);
                f.take(MAX_STORE_BYTES).read_to_end(&mut buf).map_err(io_err("read", path))?;
                Some(buf)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if prev.exists() {
                    return Err(StoreError::MissingWithPrevious { path: path.to_path_buf(), prev });
                }
                None
            }
            Err(e) => return Err(io_err("read", path)(e)),
        };
        let mut store = Store {
            path: path.to_path_buf(),
            dir,
            _lock: lock,
            journal: Arc::new(File::open("/dev/null").map_err(io_err("open", Path::new("/dev/null")))?),
            journal_len: 0,
            durability: Arc::new(Durability::default()),
            journal_lines: 0,
            next_seq: 1,
            generation: 0,
            state: StoreState::default(),
            poisoned: false,
            compact_at: COMPACT_MIN_LINES,
        };
        match bytes {
            None => store.rewrite()?,
            Some(b) if b.iter().all(u8::is_ascii_whitespace) => store.rewrite()?,
            Some(b) if b.first() == Some(&b'{') => {
                // The reference implementation's single-JSON store: import, keep the original.
                store.state = legacy::import(&b).map_err(|reason| StoreError::Corrupt {
                    path: path.to_path_buf(),
                    line: 1,
                    reason,
                })?;
                log::info!("imported {} reservations from the reference store format", store.state.len());
                store.rewrite()?;
            }
            Some(b) => store.replay(&b)?,
        }
        Ok(store)
    }

    /// Rebuilds the state from the journal bytes, cutting off a torn last line.
    fn replay(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let corrupt =
            |line: usize, reason: String| StoreError::Corrupt { path: self.path.clone(), line, reason };
        let mut pos = 0usize;
        let mut lineno = 0usize;
        let mut valid_end = 0usize;
        while pos < bytes.len() {
            lineno += 1;
            let (line, next, complete) = match bytes[pos..].iter().position(|b| *b == b'\n') {
                Some(i) => (&bytes[pos..pos + i], pos + i + 1, true),
                None => (&bytes[pos..], bytes.len(), false),
            };
            let is_last = next >= bytes.len();
            let parsed = decode_line(line).and_then(|json| {
                if !complete {
                    return Err("incomplete line".into());
                }
                if lineno == 1 {
                    let h: Header = serde_json::from_slice(json).map_err(|e| format!("bad header: {e}"))?;
                    if h.format != record::FORMAT_NAME {
                        return Err(format!("not an nv-ipam store (format {:?})", h.format));
                    }
                    if !(record::FORMAT_VERSION_MIN..=record::FORMAT_VERSION).contains(&h.version) {
                        return Ok(Err(h.version));
                    }
                    self.generation = h.generation;
                } else {
                    let t: Txn = serde_json::from_slice(json).map_err(|e| format!("bad record: {e}"))?;
                    self.state.apply_all(&t.ops).map_err(|e| format!("inconsistent record: {e}"))?;
                    self.next_seq = self.next_seq.max(t.seq + 1);
                }
                Ok(Ok(()))
            });
            match parsed {
                Ok(Ok(())) => {}
                Ok(Err(version)) => {
                    return Err(StoreError::UnsupportedVersion { path: self.path.clone(), version });
                }
                Err(reason) if is_last && lineno > 1 => {
                    log::warn!(
                        "store {}: cutting off a torn last line {lineno} ({reason}); it was never acknowledged",
                        self.path.display()
                    );
                    break;
                }
                Err(reason) => return Err(corrupt(lineno, reason)),
            }
            valid_end = next;
            pos = next;
        }
        self.journal_lines = lineno.saturating_sub(1);
        let journal = open_private(&self.path, true).map_err(io_err("open", &self.path))?;
        if (valid_end as u64) < bytes.len() as u64 {
            journal.set_len(valid_end as u64).map_err(io_err("truncate torn line of", &self.path))?;
            journal.sync_all().map_err(io_err("sync", &self.path))?;
        }
        self.journal = Arc::new(journal);
        self.journal_len = valid_end as u64;
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
        if self.poisoned || self.durability.failed() {
            return Err(StoreError::Poisoned { path: self.path.clone() });
        }
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
            Err(e) => {
                log::warn!("store compaction failed, the journal keeps growing until it succeeds: {e}");
                self.compact_at = self.journal_lines + COMPACT_MIN_LINES;
            }
        }
    }

    /// Writes a new generation holding the current state: temp file, fsync, keep the current
    /// file as `.prev`, rename, fsync dir.
    fn rewrite(&mut self) -> Result<(), StoreError> {
        let tmp = sibling(&self.path, ".tmp");
        let generation = self.generation + 1;
        // Ended cooldowns carry no information; dropping them here bounds their number by the
        // releases of one cooldown period.
        self.state.drop_expired_cooldowns(unix_ms());
        let write = || -> io::Result<(File, u64, usize)> {
            let mut f = open_private(&tmp, false)?;
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
            f.write_all(&buf)?;
            // Without this fsync the rename below could expose an empty file after a power loss.
            f.sync_all()?;
            Ok((f, buf.len() as u64, lines))
        };
        let (_, len, lines) = write().map_err(|source| {
            let _ = fs::remove_file(&tmp);
            StoreError::Commit { path: self.path.clone(), source }
        })?;
        // Keep the current generation as .prev; a crash here leaves the current file intact.
        let prev = sibling(&self.path, ".prev");
        if self.path.exists() {
            let _ = fs::remove_file(&prev);
            if let Err(e) = fs::hard_link(&self.path, &prev) {
                log::warn!("store: could not keep previous generation as {}: {e}", prev.display());
            }
        }
        // The rename is the atomic switch to the new generation.
        fs::rename(&tmp, &self.path)
            .map_err(|source| StoreError::Commit { path: self.path.clone(), source })?;
        // Without the directory fsync the rename itself may be lost on power failure.
        sync_dir(&self.dir).map_err(io_err("sync directory", &self.dir))?;
        self.journal = Arc::new(open_private(&self.path, true).map_err(io_err("open", &self.path))?);
        self.journal_len = len;
        // The new generation was fsynced whole: every ticket issued so far is durable.
        self.durability.reset(self.journal.clone(), len);
        self.journal_lines = lines;
        self.next_seq = lines as u64 + 1;
        self.generation = generation;
        self.compact_at = COMPACT_MIN_LINES.max(2 * self.state.len());
        Ok(())
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
    fn torn_last_line_is_cut_off() {
        let d = tempdir();
        let p = d.join("store");
        {
            let mut s = Store::open(&p).expect("open");
            s.commit(vec![Op::Reserve(res("a", "10.0.0.2"))]).expect("commit");
        }
        let good = fs::read(&p).expect("read");
        let mut torn = good.clone();
        torn.extend_from_slice(b"0123456789abcdef {\"seq\":9,\"ops\":[{\"op\":\"res");
        fs::write(&p, &torn).expect("write");
        {
            let s = Store::open(&p).expect("open with torn tail");
            assert_eq!(s.state().len(), 1);
        }
        assert_eq!(fs::read(&p).expect("read"), good, "torn tail removed");
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
