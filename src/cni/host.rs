//! The file-system shell under [`paths`]: `lstat` the components of a tenant's `confDir`,
//! read the selected `nv-ipam.conf`, open the node's and the tenant's log files, install the
//! logger and write the refusal warnings to the node's log.
//!
//! Every file is opened without following a symlink in its last component and without
//! blocking on a FIFO, after an `lstat` that refuses anything but a regular file (opening a
//! device can have effects), and judged again on the opened file's `fstat`; the path must
//! still name that same file afterwards (dev and inode), which also catches a symlink followed
//! on an architecture whose `O_NOFOLLOW` we had wrong. Directories are never created.
//!
//! Owns: that I/O. Must not: decide (the rules are [`paths`]'), or fail a call over a tenant's
//! path (a refusal is a warning; only the node's own broken conf file is an error).

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use log::{Level, LevelFilter};

use super::config::{self, CONF_FILE_NAME, ConfigError, IpamConf, MAX_CONF_FILE_BYTES, RawIpam};
use super::paths::{self, Facts, Kind, Problem, Refusal, Warning};
use crate::logging::{self, LogFormat};
use crate::oflags;

/// The `nv-ipam.conf` the call uses.
#[derive(Debug)]
pub struct SelectedConf {
    /// `<dir>/nv-ipam.conf` (for errors naming its fields).
    pub path: PathBuf,
    /// Its fields; `None` when the default dir has none.
    pub file: Option<RawIpam>,
    /// Why the tenant's `confDir` was not used.
    pub warning: Option<Warning>,
}

/// The tenant's `confDir` when [`paths`] and the disk allow it, else `default_dir` (whose file
/// may be missing; a broken one is the node's error, code 7).
pub fn select_conf(stdin_conf_dir: Option<&str>, default_dir: &Path) -> Result<SelectedConf, ConfigError> {
    let mut warning = None;
    if let Some(value) = stdin_conf_dir
        && Path::new(value).as_os_str() != default_dir.as_os_str()
    {
        match tenant_conf(value) {
            Ok(bytes) => {
                let path = Path::new(value).join(CONF_FILE_NAME);
                let file = config::parse_conf_file(&path, &bytes)?;
                return Ok(SelectedConf { path, file: Some(file), warning: None });
            }
            Err(refusal) => {
                warning = Some(Warning {
                    field: "ipam.confDir",
                    value: crate::bounded::clip_str(value),
                    refusal,
                    using: default_dir.to_path_buf(),
                });
            }
        }
    }
    let path = default_dir.join(CONF_FILE_NAME);
    let file = match read_regular(&path, paths::judge_node_conf_file) {
        Ok(bytes) => Some(config::parse_conf_file(&path, &bytes)?),
        Err(Problem::Missing) => None,
        Err(problem) => return Err(ConfigError::ConfFileRefused { path, problem }),
    };
    Ok(SelectedConf { path, file, warning })
}

/// The bytes of `<value>/nv-ipam.conf` if every component and the file pass the rule.
fn tenant_conf(value: &str) -> Result<Vec<u8>, Refusal> {
    paths::normal_absolute(value)?;
    let chain = paths::dir_chain(value);
    for (i, dir) in chain.iter().enumerate() {
        let on_disk = |problem| Refusal::OnDisk { path: dir.clone(), problem };
        let facts = lstat(dir).map_err(on_disk)?;
        paths::judge_conf_dir_component(&facts, i + 1 == chain.len()).map_err(on_disk)?;
    }
    let path = Path::new(value).join(CONF_FILE_NAME);
    read_regular(&path, paths::judge_tenant_conf_file).map_err(|problem| Refusal::OnDisk { path, problem })
}

/// `lstat` as [`Facts`]; a missing path is [`Problem::Missing`].
fn lstat(path: &Path) -> Result<Facts, Problem> {
    fs::symlink_metadata(path).map(|m| facts(&m)).map_err(io_problem)
}

fn io_problem(e: io::Error) -> Problem {
    if e.kind() == io::ErrorKind::NotFound {
        Problem::Missing
    } else if e.raw_os_error() == Some(oflags::ELOOP) {
        Problem::Kind(Kind::Symlink)
    } else {
        Problem::Io(e.to_string())
    }
}

pub fn facts(m: &Metadata) -> Facts {
    let t = m.file_type();
    let kind = if t.is_symlink() {
        Kind::Symlink
    } else if t.is_dir() {
        Kind::Dir
    } else if t.is_fifo() {
        Kind::Fifo
    } else if t.is_socket() {
        Kind::Socket
    } else if t.is_char_device() {
        Kind::CharDevice
    } else if t.is_block_device() {
        Kind::BlockDevice
    } else {
        Kind::File
    };
    Facts { kind, uid: m.uid(), mode: m.mode() & 0o7777, size: m.size(), nlink: m.nlink() }
}

/// The opened file is still what `path` names (dev and inode), and `path` is no symlink.
fn still_at(path: &Path, opened: &Metadata) -> Result<(), Problem> {
    match fs::symlink_metadata(path) {
        Ok(now)
            if !now.file_type().is_symlink() && now.dev() == opened.dev() && now.ino() == opened.ino() =>
        {
            Ok(())
        }
        Ok(_) => Err(Problem::Replaced),
        Err(e) => Err(io_problem(e)),
    }
}

/// Reads a conf file that `judge` accepts on `lstat` and again on `fstat`, at most
/// [`MAX_CONF_FILE_BYTES`] (a file growing past it while read is refused too).
fn read_regular(path: &Path, judge: fn(&Facts) -> Result<(), Problem>) -> Result<Vec<u8>, Problem> {
    judge(&lstat(path)?)?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(oflags::O_NOFOLLOW | oflags::O_NONBLOCK | oflags::O_NOCTTY)
        .open(path)
        .map_err(io_problem)?;
    let opened = file.metadata().map_err(io_problem)?;
    judge(&facts(&opened))?;
    still_at(path, &opened)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONF_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(io_problem)?;
    if bytes.len() as u64 > MAX_CONF_FILE_BYTES {
        return Err(Problem::TooLarge { size: bytes.len() as u64 });
    }
    Ok(bytes)
}

/// Opens a tenant's log file (already allowed by [`paths::choose_log`]): created 0600 if
/// missing, else appended to only if [`paths::judge_tenant_log`] accepts it.
fn open_tenant_log(path: &Path) -> Result<File, Problem> {
    match lstat(path) {
        Ok(f) => paths::judge_tenant_log(&f)?,
        Err(Problem::Missing) => {}
        Err(p) => return Err(p),
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(oflags::O_NOFOLLOW | oflags::O_NONBLOCK | oflags::O_NOCTTY)
        .open(path)
        .map_err(io_problem)?;
    let opened = file.metadata().map_err(io_problem)?;
    paths::judge_tenant_log(&facts(&opened))?;
    still_at(path, &opened)?;
    Ok(file)
}

/// The node's log: [`logging::open_log_file`] (no symlink, regular files only, 0600 when
/// created); `/dev/null` discards. `Err` says why, for stderr.
fn open_node_log(path: &Path) -> Result<Box<dyn Write + Send>, String> {
    if path == Path::new(paths::NULL_LOG) {
        return Ok(Box::new(io::sink()));
    }
    match logging::open_log_file(path) {
        Ok(f) => Ok(Box::new(f)),
        Err(e) => Err(format!("cannot open log file {}: {e}; logging to stderr instead", path.display())),
    }
}

/// Opens the logs, writes the refusal `warnings` (plus any about the tenant's log file) to
/// the node's log, and installs the process logger on the log the call uses. The warnings
/// follow the node's level, not the tenant's: a config cannot hide them with `logLevel`.
pub fn start_logging(ipam: &IpamConf, mut warnings: Vec<Warning>) {
    let (mut node, node_problem) = match open_node_log(&ipam.node_log_file) {
        Ok(w) => (w, None),
        Err(why) => (Box::new(io::stderr()) as Box<dyn Write + Send>, Some(why)),
    };
    let tenant = if ipam.log_file_is_tenant {
        match open_tenant_log(&ipam.log_file) {
            Ok(f) => Some(f),
            Err(problem) => {
                let value = ipam.log_file.display().to_string();
                let refusal = Refusal::OnDisk { path: ipam.log_file.clone(), problem };
                warnings.extend(paths::refuse("ipam.logFile", &value, refusal, &ipam.node_log_file).warning);
                None
            }
        }
    } else {
        None
    };
    let target = module_path!();
    if let Some(why) = &node_problem
        && ipam.node_log_level >= LevelFilter::Warn
    {
        logging::write_record(&mut node, LogFormat::Text, Level::Warn, target, why);
    }
    if ipam.node_log_level >= LevelFilter::Warn {
        for w in &warnings {
            logging::write_record(&mut node, LogFormat::Text, Level::Warn, target, &w.to_string());
        }
    }
    let sink: Box<dyn Write + Send> = match tenant {
        Some(f) => Box::new(f),
        None => node,
    };
    // A second init (tests running several calls in one process) keeps the first logger.
    let _ = logging::init_writer(ipam.log_level, LogFormat::Text, sink);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    /// A root-owned 0755 temp dir, removed on drop (labels are unique per test).
    struct Dir(PathBuf);
    impl Dir {
        fn new(label: &str) -> Dir {
            let p = std::env::temp_dir().join(format!("nv-ipam-host-{label}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).expect("mkdir");
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn running_as_root() -> bool {
        fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
    }

    #[test]
    fn default_conf_dir_missing_file_is_none_and_broken_ones_are_errors() {
        let d = Dir::new("default");
        let sel = select_conf(None, &d.0).expect("missing is fine");
        assert!(sel.file.is_none() && sel.warning.is_none());
        fs::write(d.0.join(CONF_FILE_NAME), br#"{"logLevel":"debug"}"#).expect("write");
        let sel = select_conf(None, &d.0).expect("valid");
        assert_eq!(sel.file.and_then(|f| f.log_level).as_deref(), Some("debug"));
        fs::write(d.0.join(CONF_FILE_NAME), b"{not json").expect("write");
        let e = select_conf(None, &d.0).expect_err("invalid");
        assert!(
            e.to_string().starts_with(&format!("{} is not valid JSON", d.0.join(CONF_FILE_NAME).display())),
            "{e}"
        );
        fs::remove_file(d.0.join(CONF_FILE_NAME)).expect("rm");
        symlink("/etc/hostname", d.0.join(CONF_FILE_NAME)).expect("symlink");
        let e = select_conf(None, &d.0).expect_err("symlink");
        assert!(
            matches!(e, ConfigError::ConfFileRefused { problem: Problem::Kind(Kind::Symlink), .. }),
            "{e}"
        );
        assert!(e.to_string().contains("is a symlink"), "{e}");
    }

    #[test]
    fn tenant_conf_dir_is_honoured_only_when_root_administered() {
        if !running_as_root() {
            return; // the rule is about root-owned files; as another user nothing is root's
        }
        let d = Dir::new("tenant");
        let default = d.0.join("default.d");
        let good = d.0.join("good.d");
        fs::create_dir(&good).expect("mkdir");
        fs::set_permissions(&good, fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::write(good.join(CONF_FILE_NAME), br#"{"logLevel":"error"}"#).expect("write");
        let value = good.display().to_string();
        let sel = select_conf(Some(&value), &default).expect("honoured");
        assert_eq!((sel.path, sel.warning), (good.join(CONF_FILE_NAME), None));
        fs::set_permissions(good.join(CONF_FILE_NAME), fs::Permissions::from_mode(0o666)).expect("chmod");
        let sel = select_conf(Some(&value), &default).expect("refused, not an error");
        assert_eq!(sel.path, default.join(CONF_FILE_NAME));
        let w = sel.warning.expect("warned");
        assert_eq!(w.field, "ipam.confDir");
        assert!(
            matches!(w.refusal, Refusal::OnDisk { problem: Problem::Writable { mode: 0o666 }, .. }),
            "{w}"
        );
        // The default named explicitly is the default: no checks, no warning.
        let sel = select_conf(Some(&default.display().to_string()), &default).expect("default");
        assert!(sel.warning.is_none());
    }

    #[test]
    fn a_path_replaced_after_open_is_noticed() {
        let d = Dir::new("replaced");
        let path = d.0.join("nv-ipam.log");
        fs::write(&path, "a").expect("write");
        let opened = File::open(&path).and_then(|f| f.metadata()).expect("open");
        assert_eq!(still_at(&path, &opened), Ok(()));
        fs::write(d.0.join("other"), "b").expect("write");
        fs::rename(d.0.join("other"), &path).expect("replace");
        assert_eq!(still_at(&path, &opened), Err(Problem::Replaced));
        fs::remove_file(&path).expect("rm");
        symlink(d.0.join("x"), &path).expect("symlink");
        assert_eq!(still_at(&path, &opened), Err(Problem::Replaced));
    }

    #[test]
    fn tenant_log_files_open_only_when_root_only_regular_and_single_linked() {
        if !running_as_root() {
            return;
        }
        let d = Dir::new("log");
        let new = d.0.join("nv-ipam-new.log");
        open_tenant_log(&new).expect("created");
        assert_eq!(fs::metadata(&new).expect("stat").permissions().mode() & 0o777, 0o600);
        open_tenant_log(&new).expect("ours, appended to");
        fs::hard_link(&new, d.0.join("nv-ipam-link.log")).expect("link");
        assert_eq!(open_tenant_log(&new).expect_err("two links"), Problem::HardLinked { nlink: 2 });
        let shared = d.0.join("nv-ipam-shared.log");
        fs::write(&shared, "x").expect("write");
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o640)).expect("chmod");
        assert_eq!(open_tenant_log(&shared).expect_err("shared"), Problem::Shared { mode: 0o640 });
        let sym = d.0.join("nv-ipam-sym.log");
        symlink(&new, &sym).expect("symlink");
        assert_eq!(open_tenant_log(&sym).expect_err("symlink"), Problem::Kind(Kind::Symlink));
        fs::create_dir(d.0.join("nv-ipam-dir.log")).expect("mkdir");
        assert_eq!(open_tenant_log(&d.0.join("nv-ipam-dir.log")).expect_err("dir"), Problem::Kind(Kind::Dir));
        assert_eq!(
            open_tenant_log(&d.0.join("missing-dir/nv-ipam.log")).expect_err("no dirs are created"),
            Problem::Missing
        );
        assert!(!d.0.join("missing-dir").exists());
    }
}
