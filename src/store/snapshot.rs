//! Read-only access to a store that a daemon may be serving and writing at the same moment:
//! [`Snapshot::read`], for `kubectl-nv_ipam --store-file` on a standalone host.
//!
//! It never writes anything (no file is created, truncated, renamed or re-moded; a torn last
//! line is ignored, not cut off and not kept aside) and never blocks or disturbs the daemon:
//! - **Lock.** It takes `store.lock` *shared* (`try_lock_shared`, never waiting) when the file
//!   exists. The daemon holds that lock shared too, so both hold it at once; an exclusive holder
//!   (an ipam-node older than the directory lock, or a tool rewriting the store offline) makes
//!   the read fail at once with [`StoreError::ReadLocked`] naming the holder. It takes neither
//!   the directory lock nor the journal's: a starting daemon takes those exclusively with
//!   `try_lock`, which a reader's lock would make fail. Without `store.lock` (no ipam-node of
//!   ours ever ran on the directory: an upstream store, a copy) it reads without a lock.
//! - **Consistency.** The daemon only ever appends whole lines to the journal, or replaces it
//!   by an atomic rename with a complete new generation (compaction, import), so any prefix of
//!   the file read through one descriptor is a journal of complete lines plus, at most, an
//!   unterminated tail: a line being written (not acknowledged yet), which is ignored. The one
//!   exception is a cut: the daemon cuts an unterminated tail back (at its start, or after a
//!   failed append) and later appends at that offset, so a read that straddles both can see
//!   the old tail's prefix glued to a new line's end: a line that fails its checksum. So a
//!   damaged line is read again, from a fresh open, up to [`MAX_SNAPSHOT_ATTEMPTS`] times in
//!   all; damage that every attempt sees is reported as the daemon would report it. A read of
//!   the file that a compaction renamed over goes on from the descriptor: the old generation is
//!   complete up to the rename (it is kept as `store.prev`), so it is an older snapshot, still
//!   consistent.
//! - **Formats.** Our journal (versions 1 and 2) and the reference's JSON store (`legacy`),
//!   which is what a node has until ipam-node first starts on it.
//!
//! What it reads is the daemon's in-memory state at some instant: a line on disk but not yet
//! fsynced (its request not yet acknowledged) is included, as the daemon would.
//!
//! Owns: [`Snapshot`] and the read loop. Must not: change any file, take an exclusive lock, or
//! wait for a lock.

use std::fs::{self, File};
use std::io::Read;
use std::path::Path;

use super::journal::{self, Content, ReplayError};
use super::state::StoreState;
use super::{MAX_STORE_BYTES, Prev, Recovery, StoreError, files, legacy, lock, recovery, sibling};

/// Reads of the store file before damage is believed: a read can straddle a cut and a new
/// append once, and the next read (from a fresh open, after the cut) cannot straddle the same
/// cut again; a third read covers a second cut in between (a failed append while disk-full).
pub const MAX_SNAPSHOT_ATTEMPTS: usize = 3;

/// What kind of file the snapshot came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Our journal: its generation, complete record lines read, and whether an unterminated
    /// last line (a write in progress, or one a crash tore) was ignored.
    Journal { generation: u64, lines: usize, torn_ignored: bool },
    /// The reference implementation's JSON store, not yet imported by an ipam-node.
    Reference,
}

/// The store's state as read once, consistently.
#[derive(Debug)]
pub struct Snapshot {
    pub state: StoreState,
    pub source: Source,
    /// `store.lock` existed and was held shared during the read.
    pub locked: bool,
    /// Reads it took (more than one: a read straddled a cut; see the module docs).
    pub attempts: usize,
}

impl Snapshot {
    /// Reads the store at `path` (see the module docs). A missing store is an error (a path
    /// typed wrong should not read as "no reservations"), unless nothing says there ever was one.
    pub fn read(path: &Path) -> Result<Snapshot, StoreError> {
        let lock_path = sibling(path, ".lock");
        let guard = lock_shared(&lock_path)?;
        let mut attempt = 0;
        let (state, source) = read_consistent(path, || {
            attempt += 1;
            read_file(path)
        })?;
        let locked = guard.is_some();
        drop(guard);
        Ok(Snapshot { state, source, locked, attempts: attempt })
    }
}

/// `store.lock` opened read-only and flocked shared, `None` when there is no such file.
fn lock_shared(lock_path: &Path) -> Result<Option<File>, StoreError> {
    let Some(opened) = files::open_existing(lock_path, false, None)? else { return Ok(None) };
    match opened.file.try_lock_shared() {
        Ok(()) => Ok(Some(opened.file)),
        Err(fs::TryLockError::WouldBlock) => Err(StoreError::ReadLocked {
            path: lock_path.to_path_buf(),
            holder: lock::holder_of(&opened.file, lock_path),
        }),
        Err(fs::TryLockError::Error(source)) => {
            Err(StoreError::Io { action: "lock (shared)", path: lock_path.to_path_buf(), source })
        }
    }
}

/// The bytes of the store file, read through one descriptor (regular file, size limit), or
/// `None` when there is no file.
fn read_file(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    let Some(opened) = files::open_existing(path, false, None)? else { return Ok(None) };
    if opened.meta.len() > MAX_STORE_BYTES {
        return Err(StoreError::TooLarge {
            path: path.to_path_buf(),
            len: opened.meta.len(),
            recovery: Box::new(Recovery::new(path, None)),
        });
    }
    let mut bytes = Vec::with_capacity(opened.meta.len() as usize);
    // A file that grew past the limit while read is cut here, at a line the replay then sees
    // as unterminated: a consistent prefix still.
    opened.file.take(MAX_STORE_BYTES).read_to_end(&mut bytes).map_err(|source| StoreError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Some(bytes))
}

/// Replays what `read` returns, reading again (at most [`MAX_SNAPSHOT_ATTEMPTS`] reads in all)
/// while a complete line is damaged: a read that straddled a cut (module docs).
fn read_consistent(
    path: &Path,
    mut read: impl FnMut() -> Result<Option<Vec<u8>>, StoreError>,
) -> Result<(StoreState, Source), StoreError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Some(bytes) = read()? else { return missing(path) };
        match journal::content(&bytes) {
            Content::Empty => return empty(path),
            Content::Reference => {
                return match legacy::import(&bytes) {
                    Ok(state) => Ok((state, Source::Reference)),
                    // The reference rewrites its file in place; a half-written one reads again.
                    Err(_) if attempt < MAX_SNAPSHOT_ATTEMPTS => continue,
                    Err(reason) => Err(StoreError::Corrupt {
                        path: path.to_path_buf(),
                        line: 1,
                        reason,
                        recovery: Box::new(Recovery::new(path, None)),
                    }),
                };
            }
            Content::Journal => match journal::replay(&bytes) {
                Ok(r) => {
                    let source = Source::Journal {
                        generation: r.generation,
                        lines: r.lines,
                        torn_ignored: r.torn.is_some(),
                    };
                    return Ok((r.state, source));
                }
                Err(ReplayError::Damaged { .. }) if attempt < MAX_SNAPSHOT_ATTEMPTS => continue,
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
}

/// No store file: the daemon's refusal when leftovers say there was one, else "not found".
fn missing(path: &Path) -> Result<(StoreState, Source), StoreError> {
    leftovers(path, false)?;
    Err(StoreError::Io {
        action: "open",
        path: path.to_path_buf(),
        source: std::io::ErrorKind::NotFound.into(),
    })
}

/// A store file without a header: empty, as the daemon would start, unless leftovers say the
/// node had reservations (then the daemon's refusal).
fn empty(path: &Path) -> Result<(StoreState, Source), StoreError> {
    leftovers(path, true)?;
    Ok((StoreState::default(), Source::Journal { generation: 0, lines: 0, torn_ignored: false }))
}

/// The daemon's `MissingWithPrevious` refusal, when `store.prev` exists or `store.tmp` holds
/// records.
fn leftovers(path: &Path, empty: bool) -> Result<(), StoreError> {
    let prev = sibling(path, ".prev");
    let tmp = sibling(path, ".tmp");
    let prev_there = files::regular_or_absent(&prev)?.is_some();
    let tmp_there = files::regular_or_absent(&tmp)?.is_some();
    if prev_there || (tmp_there && recovery::tmp_has_records(&tmp)) {
        let prev = if prev_there { recovery::inspect(&prev) } else { Prev::Absent };
        return Err(StoreError::MissingWithPrevious {
            path: path.to_path_buf(),
            empty,
            prev,
            tmp: tmp_there,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::{FORMAT_NAME, Header, Op, Reservation, Txn};
    use crate::store::tests::TempDir;
    use crate::store::{Store, journal::encode_line};
    use std::os::unix::fs::MetadataExt;

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
            is_static: cid == "s",
        }
    }

    /// Every file of the directory with its bytes, mode and mtime: "nothing changed".
    fn files_of(d: &Path) -> Vec<(String, Vec<u8>, u32, i64, i64)> {
        let mut out: Vec<_> = fs::read_dir(d)
            .expect("ls")
            .map(|e| {
                let e = e.expect("entry");
                let m = e.metadata().expect("stat");
                let name = e.file_name().to_string_lossy().to_string();
                (name, fs::read(e.path()).expect("read"), m.mode(), m.mtime(), m.mtime_nsec())
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn reads_what_a_serving_store_holds_and_changes_nothing() {
        let d = TempDir::new("snapshot-serving");
        let p = d.join("store");
        let mut s = Store::open(&p).expect("open");
        s.commit(vec![Op::Reserve(res("a", "10.0.0.2")), Op::Reserve(res("s", "10.0.0.9"))]).expect("commit");
        s.commit(vec![Op::Cooldown {
            pool: "blue".into(),
            ip: "10.0.0.5".parse().expect("ip"),
            until_ms: 9,
        }])
        .expect("commit");
        let before = files_of(&d);
        // the daemon (this Store) holds the directory, store.lock (shared) and the journal
        let snap = Snapshot::read(&p).expect("read while the store is open");
        assert_eq!(files_of(&d), before, "a read changes no file, not even a mode or mtime");
        assert!(snap.locked, "store.lock was taken shared beside the daemon's");
        assert_eq!(snap.attempts, 1);
        assert_eq!(snap.state.len(), 2);
        assert!(snap.state.reservations().any(|r| r.is_static && r.ip.to_string() == "10.0.0.9"));
        assert_eq!(snap.state.cooldowns().count(), 1);
        assert!(matches!(snap.source, Source::Journal { generation: 1, lines: 2, torn_ignored: false }));
        // a commit after the read is in the next read
        s.commit(vec![Op::Reserve(res("b", "10.0.0.3"))]).expect("commit");
        assert_eq!(Snapshot::read(&p).expect("read").state.len(), 3);
    }

    #[test]
    fn a_torn_tail_is_ignored_not_cut() {
        let d = TempDir::new("snapshot-torn");
        let p = d.join("store");
        drop(Store::open(&p).expect("create"));
        let line = encode_line(&Txn { seq: 1, ops: vec![Op::Reserve(res("a", "10.0.0.2"))] });
        let mut f = fs::OpenOptions::new().append(true).open(&p).expect("open");
        std::io::Write::write_all(&mut f, &line[..line.len() - 5]).expect("append half a line");
        let before = files_of(&d);
        let snap = Snapshot::read(&p).expect("read");
        assert!(snap.state.is_empty());
        assert!(matches!(snap.source, Source::Journal { torn_ignored: true, .. }));
        assert_eq!(files_of(&d), before, "no cut, no store.torn-* file");
    }

    #[test]
    fn a_reader_never_keeps_a_daemon_from_starting() {
        let d = TempDir::new("snapshot-start");
        let p = d.join("store");
        drop(Store::open(&p).expect("create"));
        // what a reader holds during its read: store.lock, shared
        let reader = File::open(d.join("store.lock")).expect("open");
        reader.try_lock_shared().expect("shared");
        let s = Store::open(&p).expect("a daemon starts beside a reader");
        drop(reader);
        drop(s);
    }

    #[test]
    fn an_exclusive_holder_refuses_the_read_at_once() {
        let d = TempDir::new("snapshot-exclusive");
        let p = d.join("store");
        drop(Store::open(&p).expect("create"));
        // an ipam-node older than the directory lock held store.lock exclusively
        let old = File::open(d.join("store.lock")).expect("open");
        old.try_lock().expect("exclusive");
        match Snapshot::read(&p) {
            Err(StoreError::ReadLocked { holder, .. }) => {
                assert!(holder.contains(&format!("pid {}", std::process::id())), "{holder}")
            }
            other => panic!("{other:?}"),
        }
        let e = Store::open(&p).expect_err("and a daemon is refused too");
        assert!(matches!(e, StoreError::Locked { .. }), "{e}");
    }

    #[test]
    fn a_read_that_straddles_a_cut_reads_again() {
        let d = TempDir::new("snapshot-straddle");
        let p = d.join("store");
        let mut good = encode_line(&Header { format: FORMAT_NAME.into(), version: 2, generation: 1 });
        good.extend(encode_line(&Txn { seq: 1, ops: vec![Op::Reserve(res("a", "10.0.0.2"))] }));
        let torn = encode_line(&Txn { seq: 2, ops: vec![Op::Reserve(res("t", "10.0.0.7"))] });
        let next = encode_line(&Txn { seq: 2, ops: vec![Op::Reserve(res("b", "10.0.0.3"))] });
        // the old torn tail's first 30 bytes, then the new line from offset 30 on
        let mut straddled = good.clone();
        straddled.extend_from_slice(&torn[..30]);
        straddled.extend_from_slice(&next[30..]);
        let mut after = good.clone();
        after.extend_from_slice(&next);
        let mut reads = vec![straddled.clone(), after].into_iter();
        let (state, _) = read_consistent(&p, || Ok(reads.next())).expect("second read is clean");
        assert_eq!(state.len(), 2);
        // damage that every read sees is damage, named as the daemon names it
        let mut n = 0;
        let e = read_consistent(&p, || {
            n += 1;
            Ok(Some(straddled.clone()))
        })
        .expect_err("damaged every time");
        assert_eq!(n, MAX_SNAPSHOT_ATTEMPTS, "read at most this often");
        assert!(matches!(e, StoreError::Corrupt { line: 3, .. }), "{e}");
    }

    #[test]
    fn reads_the_reference_format_and_refuses_like_the_daemon() {
        let d = TempDir::new("snapshot-formats");
        let p = d.join("store");
        let reference = br#"{"version":1,"checksum":1,"pools":{"pool1":{"name":"pool1","entries":{
            "c1_eth0":{"container_id":"c1","interface_name":"eth0","ip_address":"192.168.0.2",
            "metadata":{"pod_uuid":"u1","pod_name":"p1","pod_namespace":"ns"}}},"last_reserved_ip":"192.168.0.2"}}}"#;
        fs::write(&p, reference).expect("write");
        let before = files_of(&d);
        let snap = Snapshot::read(&p).expect("reference store");
        assert_eq!((snap.state.len(), snap.source, snap.locked), (1, Source::Reference, false));
        assert_eq!(files_of(&d), before, "not imported, nothing created");
        // missing: an error, not "no reservations"
        let e = Snapshot::read(&d.join("nope")).expect_err("missing");
        assert!(e.to_string().contains("cannot open") && e.to_string().contains("not found"), "{e}");
        // missing while store.prev exists: the daemon's refusal
        fs::rename(&p, d.join("store.prev")).expect("mv");
        assert!(matches!(Snapshot::read(&p), Err(StoreError::MissingWithPrevious { .. })));
    }
}
