//! Compaction: rewriting the journal as the current state (a new generation) once it holds
//! more lines than live reservations, atomically (temp file, fsync, `.prev` hard link, rename,
//! directory fsync), and poisoning the store when a failure after the rename leaves it unsure.
//!
//! Owns: the `.tmp` and `.prev` files and the switch to a new journal. Must not: refuse or
//! acknowledge requests (see `Store::commit_deferred`) or change what the state holds, except
//! dropping cooldowns that have ended.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use crate::replace;

use super::journal::encode_line;
use super::{
    COMPACT_MIN_LINES, Header, Op, Reservation, Store, StoreError, Txn, files, io_err, lock_journal, record,
    sibling, unix_ms,
};

impl Store {
    /// Rewrites the journal as the current state; on failure keeps the (valid) old journal.
    pub(super) fn compact(&mut self) {
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
    pub(super) fn rewrite(&mut self) -> Result<(), StoreError> {
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
    pub(super) fn poison(&mut self, kind: io::ErrorKind) {
        self.poisoned = true;
        self.durability.fail(kind);
    }
}
