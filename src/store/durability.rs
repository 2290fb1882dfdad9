//! Group commit: which journal bytes are known to be on disk, and one `fdatasync` shared by
//! every request waiting for it.
//!
//! A request writes its line under the store lock, takes a [`Ticket`] (the journal length
//! after its line), releases the lock and waits here. The first waiter to find no sync running
//! syncs everything written so far; the others wait for it. Under a burst of 64 ADDs this turns
//! 64 sequential flushes into a handful.
//!
//! Owns: the synced/written offsets and the sync failure state. Must not: write the journal.

use std::fs::File;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// A point in the journal a caller needs on disk before it may acknowledge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    epoch: u64,
    offset: u64,
}

#[derive(Debug, Default)]
struct Progress {
    /// Bumped whenever the journal file is replaced by a fully synced one (open, compaction):
    /// tickets of an older epoch are durable.
    epoch: u64,
    file: Option<Arc<File>>,
    written: u64,
    synced: u64,
    syncing: bool,
    failed: Option<io::ErrorKind>,
}

#[derive(Debug, Default)]
pub struct Durability {
    progress: Mutex<Progress>,
    done: Condvar,
}

impl Durability {
    fn lock(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new journal file whose first `len` bytes are already on disk.
    pub(super) fn reset(&self, file: Arc<File>, len: u64) {
        let mut p = self.lock();
        p.epoch += 1;
        p.file = Some(file);
        p.written = len;
        p.synced = len;
        self.done.notify_all();
    }

    /// Records that the journal now holds `len` bytes; returns the ticket for them.
    pub(super) fn written(&self, len: u64) -> Ticket {
        let mut p = self.lock();
        p.written = len;
        Ticket { epoch: p.epoch, offset: len }
    }

    pub(super) fn ticket(&self) -> Ticket {
        let p = self.lock();
        Ticket { epoch: p.epoch, offset: p.written }
    }

    /// Marks the journal's state on disk unknown (a failed directory sync after a compaction's
    /// rename): waiters get an error instead of an acknowledgement.
    pub(super) fn fail(&self, kind: io::ErrorKind) {
        let mut p = self.lock();
        p.failed = Some(kind);
        self.done.notify_all();
    }

    /// True once a sync failed: the file's state on disk is unknown from then on.
    pub fn failed(&self) -> bool {
        self.lock().failed.is_some()
    }

    /// Returns when the ticket's bytes are on disk, syncing them if nobody else is.
    pub fn wait(&self, t: Ticket) -> io::Result<()> {
        let mut p = self.lock();
        loop {
            if let Some(kind) = p.failed {
                return Err(io::Error::new(kind, "an earlier sync of the store failed; restart ipam-node"));
            }
            if p.epoch != t.epoch || p.synced >= t.offset {
                return Ok(());
            }
            if p.syncing {
                p = self.done.wait(p).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            let (Some(file), target, epoch) = (p.file.clone(), p.written, p.epoch) else {
                return Ok(()); // no journal yet: nothing was written
            };
            p.syncing = true;
            drop(p);
            let result = file.sync_data();
            p = self.lock();
            p.syncing = false;
            match result {
                Ok(()) if p.epoch == epoch => p.synced = p.synced.max(target),
                Ok(()) => {}
                Err(e) => {
                    log::error!("store sync failed: {e}; the store refuses changes until ipam-node restarts");
                    p.failed = Some(e.kind());
                }
            }
            self.done.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_fail_waiters_get_an_error_not_an_acknowledgement() {
        let d = Durability::default();
        let f = Arc::new(File::open("/dev/null").expect("open"));
        d.reset(f, 0);
        let t = d.written(10);
        d.fail(io::ErrorKind::Other);
        assert!(d.failed());
        assert!(d.wait(t).is_err());
    }
}
