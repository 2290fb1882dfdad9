//! Atomic file replacement, the one way this crate swaps a file for a new version: write a
//! temp file beside it (created fresh: `O_EXCL`, never through a symlink, with the final
//! mode), fsync it, rename it over the old name, fsync the directory. A reader, or a crash at
//! any instant, sees the old file or the whole new one, never a part.
//!
//! Used by the store's compaction, the node's pools cache and the CNI install (plugin binary
//! and conf file). `std::fs::rename` is disallowed elsewhere (clippy.toml), so a new writer
//! cannot skip a step.
//!
//! Owns: the temp file's life and the order of the steps. Must not: choose paths, modes or
//! contents (the callers do), or create directories.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::oflags::{O_DIRECTORY, O_NOFOLLOW};

/// A new version written whole and fsynced beside its destination, not yet under its name.
/// Dropped without [`Staged::rename`], its temp file is removed.
#[derive(Debug)]
pub struct Staged {
    tmp: PathBuf,
    dest: PathBuf,
    renamed: bool,
}

/// `dest` with `suffix` appended to its file name: the temp file's name. Fixed (not random) so
/// that a leftover of a killed run is found and replaced by the next one instead of piling up.
pub fn temp_path(dest: &Path, suffix: &str) -> PathBuf {
    let mut name = dest.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// The directory that holds `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Writes the new version of `dest` to [`temp_path`]`(dest, tmp_suffix)` with `fill` and
/// fsyncs it. A leftover temp file is removed first; the new one is created with `mode`
/// (less the umask), failing rather than following a symlink or reusing a file someone put
/// there. On any error the temp file is gone and `dest` is untouched.
pub fn stage(
    dest: &Path,
    tmp_suffix: &str,
    mode: u32,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<Staged> {
    let staged = Staged { tmp: temp_path(dest, tmp_suffix), dest: dest.to_path_buf(), renamed: false };
    match fs::remove_file(&staged.tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(O_NOFOLLOW)
        .open(&staged.tmp)?;
    fill(&mut f)?;
    // Without this fsync the rename could expose an empty or partial file after a power loss.
    f.sync_all()?;
    Ok(staged)
}

impl Staged {
    /// The temp file.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// The atomic switch: renames the temp file over the destination. The directory is not
    /// fsynced here (see [`sync_dir`]): a caller may have more to do first. On error the temp
    /// file is removed and the destination is untouched.
    pub fn rename(mut self) -> io::Result<()> {
        #[allow(clippy::disallowed_methods)] // the one sanctioned rename: the steps above ran
        fs::rename(&self.tmp, &self.dest)?;
        self.renamed = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.renamed {
            // Best effort: a leftover is removed by the next stage() anyway.
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// fsyncs a directory, so that a rename or create inside it survives a power loss.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    OpenOptions::new().read(true).custom_flags(O_DIRECTORY).open(dir)?.sync_all()
}

/// The whole replacement: [`stage`], [`Staged::rename`], [`sync_dir`] of `dest`'s directory.
/// When it returns `Ok`, the new version is what any reader, and any restart after a crash,
/// sees.
pub fn write(
    dest: &Path,
    tmp_suffix: &str,
    mode: u32,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    stage(dest, tmp_suffix, mode, fill)?.rename()?;
    // Without this the rename itself may be lost on power failure, leaving the old version.
    sync_dir(parent_dir(dest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    struct Dir(PathBuf);
    impl Dir {
        fn new(name: &str) -> Dir {
            let d = std::env::temp_dir().join(format!("nv-ipam-replace-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&d);
            fs::create_dir_all(&d).expect("mkdir");
            Dir(d)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn replaces_whole_with_the_mode_and_no_temp_left() {
        let d = Dir::new("whole");
        let dest = d.0.join("f.conf");
        fs::write(&dest, "old").expect("old");
        let old_ino = fs::metadata(&dest).expect("stat").ino();
        write(&dest, ".tmp", 0o600, |f| f.write_all(b"new")).expect("replace");
        assert_eq!(fs::read_to_string(&dest).expect("read"), "new");
        let m = fs::metadata(&dest).expect("stat");
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        assert_ne!(m.ino(), old_ino, "a new file, not the old one rewritten in place");
        assert!(!temp_path(&dest, ".tmp").exists());
        write(&d.0.join("bin"), ".x", 0o755, |f| f.write_all(b"#!")).expect("binary");
        assert_eq!(fs::metadata(d.0.join("bin")).expect("stat").permissions().mode() & 0o111, 0o111);
    }

    #[test]
    fn a_failed_fill_leaves_the_old_file_and_no_temp() {
        let d = Dir::new("fail");
        let dest = d.0.join("f");
        fs::write(&dest, "old").expect("old");
        let e = write(&dest, ".tmp", 0o600, |f| {
            f.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        })
        .expect_err("fill failed");
        assert_eq!(e.to_string(), "disk full");
        assert_eq!(fs::read_to_string(&dest).expect("read"), "old");
        assert!(!temp_path(&dest, ".tmp").exists());
        // Staged but dropped before the rename: the same.
        let staged = stage(&dest, ".tmp", 0o600, |f| f.write_all(b"new")).expect("stage");
        assert!(staged.path().exists());
        drop(staged);
        assert_eq!(fs::read_to_string(&dest).expect("read"), "old");
        assert!(!temp_path(&dest, ".tmp").exists());
    }

    #[test]
    fn leftovers_and_symlinks_at_the_temp_name_are_replaced_not_followed() {
        let d = Dir::new("links");
        let dest = d.0.join("f");
        let tmp = temp_path(&dest, ".tmp");
        fs::write(&tmp, "leftover of a killed run").expect("leftover");
        write(&dest, ".tmp", 0o600, |f| f.write_all(b"one")).expect("over a leftover");
        assert_eq!(fs::read_to_string(&dest).expect("read"), "one");
        let victim = d.0.join("victim");
        fs::write(&victim, "keep").expect("victim");
        std::os::unix::fs::symlink(&victim, &tmp).expect("symlink");
        write(&dest, ".tmp", 0o600, |f| f.write_all(b"two")).expect("over a symlink");
        assert_eq!(fs::read_to_string(&victim).expect("read"), "keep", "nothing written through it");
        assert_eq!(fs::read_to_string(&dest).expect("read"), "two");
        assert!(fs::symlink_metadata(&dest).expect("stat").is_file());
    }

    #[test]
    fn a_missing_directory_is_an_error_not_created() {
        let d = Dir::new("nodir");
        let dest = d.0.join("no/such/f");
        assert_eq!(
            write(&dest, ".tmp", 0o600, |f| f.write_all(b"x")).expect_err("no dir").kind(),
            io::ErrorKind::NotFound
        );
        assert!(!d.0.join("no").exists());
        assert_eq!(parent_dir(Path::new("f")), Path::new("."));
        assert_eq!(temp_path(Path::new("/a/store"), ".tmp"), PathBuf::from("/a/store.tmp"));
    }
}
