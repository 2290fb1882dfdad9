//! Opening the store's files so that nothing but a regular file of ours is ever read or
//! written: no symlink followed, no FIFO blocked on, no file of another user trusted, modes
//! tightened to 0600. Also the torn-line files kept beside the store.
//!
//! Owns: the open flags, the file-type/owner/mode checks, the store directory's check, and the
//! `<store>.torn-<ms>` files (written, fsynced, pruned). Must not: parse or decide store content.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::StoreError;

pub(super) use crate::oflags::{O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK};

/// Most `<store>.torn-<ms>` files kept: one is written per start that found a torn last line
/// (one per crash mid-append); the newest 8 show a crash loop's history while a loop of
/// crashes cannot fill the disk (at most 8 × [`MAX_TORN_BYTES`]).
pub const MAX_TORN_FILES: usize = 8;

/// Most bytes of one torn line kept aside: 1 MiB. A torn line was never acknowledged, so its
/// bytes are for inspection only; an ADD's line is under 2 KiB and only a release of thousands
/// of reservations at once (GC, stale cleanup) is longer, so the first MiB says what it was.
pub const MAX_TORN_BYTES: usize = 1 << 20;

pub(super) use crate::oflags::file_kind as kind;

/// The effective uid this process runs as (from `/proc/self/status`), `None` if unreadable.
pub(super) fn euid() -> Option<u32> {
    let s = fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn not_regular(path: &Path, m: &Metadata) -> StoreError {
    StoreError::NotRegular { path: path.to_path_buf(), kind: kind(m) }
}

/// After a failed open: a clearer error when the path is there but is not a regular file.
fn open_failed(path: &Path, action: &'static str, source: io::Error) -> StoreError {
    match fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_file() => not_regular(path, &m),
        _ => StoreError::Io { action, path: path.to_path_buf(), source },
    }
}

/// An opened store file and what `fstat` said about it.
#[derive(Debug)]
pub(super) struct Opened {
    pub file: File,
    pub meta: Metadata,
}

/// Opens an existing `path` without following a symlink or blocking on a FIFO, and checks it
/// is a regular file owned by `euid` (when known). `Ok(None)` when it does not exist.
pub(super) fn open_existing(
    path: &Path,
    write: bool,
    euid: Option<u32>,
) -> Result<Option<Opened>, StoreError> {
    let mut o = OpenOptions::new();
    o.read(true).custom_flags(O_NOFOLLOW | O_NONBLOCK);
    if write {
        o.append(true);
    }
    let file = match o.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(open_failed(path, "open", e)),
    };
    checked(path, file, euid).map(Some)
}

/// Opens `path` for appending, creating it (mode 0600) when absent; same checks.
pub(super) fn open_or_create(path: &Path, euid: Option<u32>) -> Result<Opened, StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(O_NOFOLLOW | O_NONBLOCK)
        .open(path)
        .map_err(|e| open_failed(path, "open", e))?;
    checked(path, file, euid)
}

fn checked(path: &Path, file: File, euid: Option<u32>) -> Result<Opened, StoreError> {
    let meta = file.metadata().map_err(|source| StoreError::Io {
        action: "stat",
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.file_type().is_file() {
        return Err(not_regular(path, &meta));
    }
    check_owner(path, &meta, euid)?;
    Ok(Opened { file, meta })
}

fn check_owner(path: &Path, meta: &Metadata, euid: Option<u32>) -> Result<(), StoreError> {
    match euid {
        Some(me) if meta.uid() != me => {
            Err(StoreError::Owner { path: path.to_path_buf(), uid: meta.uid(), euid: me })
        }
        _ => Ok(()),
    }
}

/// `path` as `lstat` sees it: absent, or a regular file (else the error says what it is).
pub(super) fn regular_or_absent(path: &Path) -> Result<Option<Metadata>, StoreError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => Ok(Some(m)),
        Ok(m) => Err(not_regular(path, &m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Io { action: "stat", path: path.to_path_buf(), source }),
    }
}

/// Sets mode 0600 on a store file that has any other mode (the reference writes 0664), and
/// says so: the store names every pod of the node, and only root may read or write it.
pub(super) fn tighten(path: &Path, file: &File, meta: &Metadata) {
    let mode = meta.permissions().mode() & 0o7777;
    if mode == 0o600 {
        return;
    }
    match file.set_permissions(fs::Permissions::from_mode(0o600)) {
        Ok(()) => log::warn!("store: {} had mode {mode:04o}; set it to 0600", path.display()),
        Err(e) => log::warn!("store: {} has mode {mode:04o} and cannot be set to 0600: {e}", path.display()),
    }
}

/// Opens (following symlinks: the admin chose the path) and checks the store's directory: a
/// directory that no other user can change files in (owned by root or us, and not writable
/// by group/others unless sticky, where others cannot rename or remove our files).
pub(super) fn open_dir(dir: &Path, euid: Option<u32>) -> Result<File, StoreError> {
    let f = OpenOptions::new().read(true).custom_flags(O_DIRECTORY).open(dir).map_err(
        |e| match fs::metadata(dir) {
            Ok(m) if !m.is_dir() => StoreError::NotDirectory { path: dir.to_path_buf(), kind: kind(&m) },
            _ => StoreError::Io { action: "open directory", path: dir.to_path_buf(), source: e },
        },
    )?;
    let m =
        f.metadata().map_err(|source| StoreError::Io { action: "stat", path: dir.to_path_buf(), source })?;
    let mode = m.permissions().mode() & 0o7777;
    let owner_ok = m.uid() == 0 || Some(m.uid()) == euid;
    let others_write = mode & 0o022 != 0 && mode & 0o1000 == 0;
    if !owner_ok || others_write {
        return Err(StoreError::UnsafeDirectory { dir: dir.to_path_buf(), mode, uid: m.uid() });
    }
    Ok(f)
}

/// fsync a directory so that a rename or create inside it survives a power loss.
pub(super) use crate::replace::sync_dir;

/// Creates `path` (mode 0600, failing if anything is there, never through a symlink).
pub(super) fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(O_NOFOLLOW).open(path)
}

/// `<store>.torn-`: the prefix of the files that keep cut-off torn lines.
fn torn_prefix(store: &Path) -> String {
    format!("{}.torn-", store.file_name().map(|n| n.to_string_lossy()).unwrap_or_default())
}

/// Writes `tail` (at most [`MAX_TORN_BYTES`] of it) to a new `<store>.torn-<unix ms>` beside
/// the store, fsyncs it and the directory, then removes the oldest such files beyond
/// [`MAX_TORN_FILES`]. Returns the new file's path and how many bytes it holds.
pub(super) fn keep_torn(store: &Path, dir: &Path, tail: &[u8], now_ms: u64) -> io::Result<(PathBuf, usize)> {
    let kept = &tail[..tail.len().min(MAX_TORN_BYTES)];
    let mut attempt = 0u64;
    let (path, mut f) = loop {
        let p = dir.join(format!("{}{}", torn_prefix(store), now_ms + attempt));
        match create_new(&p) {
            Ok(f) => break (p, f),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
            Err(e) => return Err(e),
        }
    };
    let written = f.write_all(kept).and_then(|()| f.sync_all()).and_then(|()| sync_dir(dir));
    if let Err(e) = written {
        let _ = fs::remove_file(&path);
        return Err(e);
    }
    prune_torn(store, dir);
    Ok((path, kept.len()))
}

/// Removes the oldest `<store>.torn-<ms>` regular files beyond [`MAX_TORN_FILES`].
fn prune_torn(store: &Path, dir: &Path) {
    let prefix = torn_prefix(store);
    let Ok(entries) = fs::read_dir(dir) else { return };
    let mut torn: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let ms: u64 = name.strip_prefix(&prefix)?.parse().ok()?;
            e.file_type().ok()?.is_file().then(|| (ms, e.path()))
        })
        .collect();
    torn.sort();
    let excess = torn.len().saturating_sub(MAX_TORN_FILES);
    for (_, p) in torn.into_iter().take(excess) {
        match fs::remove_file(&p) {
            Ok(()) => {
                log::info!("store: removed {} (more than {MAX_TORN_FILES} torn-line files)", p.display())
            }
            Err(e) => log::warn!("store: cannot remove old torn-line file {}: {e}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::TempDir;

    #[test]
    fn torn_files_are_private_and_bounded_in_count_and_size() {
        let d = TempDir::new("torn");
        let store = d.join("store");
        let big = vec![b'x'; MAX_TORN_BYTES + 10];
        let mut kept = Vec::new();
        for i in 0..(MAX_TORN_FILES as u64 + 3) {
            let (p, n) = keep_torn(&store, &d, &big, 1000 + i).expect("keep");
            assert_eq!(n, MAX_TORN_BYTES, "at the limit");
            assert_eq!(fs::metadata(&p).expect("stat").permissions().mode() & 0o777, 0o600);
            kept.push(p);
        }
        // a same-millisecond collision gets the next name
        let (p, _) = keep_torn(&store, &d, b"y", 1000 + MAX_TORN_FILES as u64 + 2).expect("keep");
        assert!(p.to_string_lossy().ends_with(&format!(".torn-{}", 1000 + MAX_TORN_FILES as u64 + 3)));
        let left: Vec<_> = fs::read_dir(&*d).expect("ls").filter_map(Result::ok).map(|e| e.path()).collect();
        assert_eq!(left.len(), MAX_TORN_FILES, "{left:?}");
        assert!(left.contains(&p), "newest kept");
        assert!(!left.contains(&kept[0]), "oldest removed");
    }

    #[test]
    fn special_files_are_refused_without_blocking() {
        let d = TempDir::new("special");
        fs::create_dir(d.join("dir")).expect("mkdir");
        std::os::unix::fs::symlink(d.join("target"), d.join("link")).expect("symlink");
        fs::write(d.join("target"), b"x").expect("write");
        assert!(std::process::Command::new("mkfifo").arg(d.join("fifo")).status().expect("mkfifo").success());
        for (name, want) in [("dir", "a directory"), ("link", "a symbolic link"), ("fifo", "a FIFO")] {
            for write in [false, true] {
                match open_existing(&d.join(name), write, None) {
                    Err(StoreError::NotRegular { kind, .. }) => assert_eq!(kind, want, "{name}"),
                    other => panic!("{name}: {other:?}"),
                }
            }
            assert!(
                matches!(open_or_create(&d.join(name), None), Err(StoreError::NotRegular { .. })),
                "{name}"
            );
        }
        assert!(open_existing(&d.join("absent"), false, None).expect("absent").is_none());
    }

    #[test]
    fn another_users_file_is_refused() {
        let d = TempDir::new("owner");
        fs::write(d.join("f"), b"x").expect("write");
        let mine = fs::metadata(d.join("f")).expect("stat").uid();
        match open_existing(&d.join("f"), false, Some(mine + 1)) {
            Err(StoreError::Owner { uid, euid, .. }) => assert_eq!((uid, euid), (mine, mine + 1)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn directories_others_can_change_are_refused_unless_sticky() {
        let d = TempDir::new("dirmode");
        for (mode, ok) in [(0o700, true), (0o755, true), (0o775, false), (0o777, false), (0o1777, true)] {
            fs::set_permissions(&*d, fs::Permissions::from_mode(mode)).expect("chmod");
            assert_eq!(open_dir(&d, euid()).is_ok(), ok, "mode {mode:o}");
        }
        assert!(matches!(open_dir(&d.join("nope"), None), Err(StoreError::Io { .. })));
        fs::write(d.join("file"), b"").expect("write");
        assert!(matches!(open_dir(&d.join("file"), None), Err(StoreError::NotDirectory { .. })));
    }
}
