//! `open(2)` flags std has no names for, used with `OpenOptionsExt::custom_flags` by every
//! module that opens a path an operator or a tenant may have tampered with (the log files, the
//! CNI conf file, the pools file, the store).
//!
//! Values from the Linux UAPI headers: `asm-generic/fcntl.h`, except that arm, arm64 and
//! powerpc move `O_DIRECTORY` and `O_NOFOLLOW` in their own `asm/fcntl.h`. Other architectures
//! (mips, sparc, alpha, parisc use other values) do not build: a wrong flag would silently turn
//! a refusal into a follow. `unsafe` and libc are not used in this crate, hence the constants.
//! std opens every file with `O_CLOEXEC` already.
//!
//! Owns: the constants, and [`file_kind`]: the one wording of what a file that is not what was
//! expected turned out to be, for the messages of every module that refuses one. Must not: open
//! anything.

#[cfg(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "riscv64",
    target_arch = "s390x",
    target_arch = "loongarch64"
))]
mod arch {
    pub const O_DIRECTORY: i32 = 0o200_000;
    pub const O_NOFOLLOW: i32 = 0o400_000;
}
#[cfg(any(target_arch = "aarch64", target_arch = "arm", target_arch = "powerpc", target_arch = "powerpc64"))]
mod arch {
    pub const O_DIRECTORY: i32 = 0o40_000;
    pub const O_NOFOLLOW: i32 = 0o100_000;
}
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "riscv64",
    target_arch = "s390x",
    target_arch = "loongarch64",
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "powerpc",
    target_arch = "powerpc64"
)))]
compile_error!(
    "oflags: add this architecture's O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK and O_NOCTTY (asm/fcntl.h)"
);

/// Fail with ENOTDIR unless the path is a directory (so a FIFO is never opened for a lock).
pub const O_DIRECTORY: i32 = arch::O_DIRECTORY;
/// Fail with ELOOP instead of following a symlink in the last path component.
pub const O_NOFOLLOW: i32 = arch::O_NOFOLLOW;
/// Do not wait for a FIFO's other end: the open returns at once (then `fstat` refuses it).
pub const O_NONBLOCK: i32 = 0o4_000;
/// A terminal opened by path does not become the process's controlling terminal.
pub const O_NOCTTY: i32 = 0o400;
/// The errno of an `O_NOFOLLOW` open that met a symlink (the same on every Linux above).
pub const ELOOP: i32 = 40;

/// What a file is, for a refusal's message: "a symbolic link", "a directory", "a FIFO", ...
pub fn file_kind(m: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "a regular file"
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::os::unix::fs::OpenOptionsExt;

    use super::*;

    #[test]
    fn the_flags_do_what_their_names_say_on_this_machine() {
        let dir = std::env::temp_dir().join(format!("nv-ipam-oflags-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("temp dir");
        let file = dir.join("f");
        std::fs::write(&file, b"x").expect("file");
        let link = dir.join("l");
        std::os::unix::fs::symlink(&file, &link).expect("symlink");
        let e = OpenOptions::new().read(true).custom_flags(O_NOFOLLOW).open(&link).expect_err("symlink");
        assert_eq!(e.raw_os_error(), Some(ELOOP));
        assert!(OpenOptions::new().read(true).custom_flags(O_DIRECTORY).open(&file).is_err());
        assert!(OpenOptions::new().read(true).custom_flags(O_DIRECTORY).open(&dir).is_ok());
        assert!(
            OpenOptions::new()
                .read(true)
                .custom_flags(O_NOFOLLOW | O_NONBLOCK | O_NOCTTY)
                .open(&file)
                .is_ok()
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
