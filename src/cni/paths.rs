//! Which host paths a tenant's network config may name: `ipam.confDir`, `ipam.logFile` and
//! `ipam.daemonSocket`. The network config is written by namespace users (a
//! NetworkAttachmentDefinition) and the plugin runs as root, so a path from it is honoured only
//! inside what the node's administrator chose; anything else is ignored with a [`Warning`] and
//! the node's value is used (never an error: a refused path must not break pod creation).
//!
//! ```text
//! confDir       honoured if absolute and normal (no ".", "..", empty components, trailing "/"),
//!               every component a real directory (no symlink) owned by root and not writable
//!               by group/other (a sticky one such as /tmp is fine above the last), holding an
//!               nv-ipam.conf that is a regular file (not a symlink), root-owned, not writable by
//!               group/other, at most MAX_CONF_FILE_BYTES          else: the default conf dir
//! node value    of logFile and daemonSocket = the selected nv-ipam.conf's | the default
//! logFile       = the node value, or "nv-ipam*" directly inside the node value's directory,
//!               which must then be (or become, created 0600) a regular file, root-owned, mode
//!               & 0o077 == 0, one link                                   else: the node value
//! daemonSocket  = the node value, or one name directly inside the node value's directory
//!                                                                        else: the node value
//! ```
//!
//! Owns: these decisions, as pure functions of the values and of what `lstat`/`fstat` said
//! ([`Facts`]). Must not: touch the file system (`host` does, and asks these functions).

use std::fmt;
use std::path::{Path, PathBuf};

use super::config::MAX_CONF_FILE_BYTES;
use crate::bounded::clip_str;

/// A tenant's log file name must start with this. Why: in `/var/log` the system's own logs
/// can look exactly like ours (RHEL's `secure`, `messages`, `maillog` and `boot.log` are
/// root-owned 0600), so the name is what keeps a tenant from appending to them.
pub const TENANT_LOG_PREFIX: &str = "nv-ipam";

/// The node log value that means "no log": no tenant log file is honoured then either.
pub const NULL_LOG: &str = "/dev/null";

/// What a file is, as `lstat`/`fstat` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl Kind {
    fn article(self) -> &'static str {
        match self {
            Kind::File => "a regular file",
            Kind::Dir => "a directory",
            Kind::Symlink => "a symlink",
            Kind::Fifo => "a FIFO",
            Kind::Socket => "a socket",
            Kind::CharDevice => "a character device",
            Kind::BlockDevice => "a block device",
        }
    }
}

/// What `lstat`/`fstat` said about one path, all the decisions need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    pub kind: Kind,
    pub uid: u32,
    /// Permission bits with the sticky bit (`st_mode & 0o7777`).
    pub mode: u32,
    pub size: u64,
    pub nlink: u64,
}

/// What is wrong with one file or directory on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Missing,
    /// It is not the kind the rule asks for (a directory, or a regular file).
    Kind(Kind),
    NotRoot {
        uid: u32,
    },
    /// Group or others may write it.
    Writable {
        mode: u32,
    },
    /// Group or others may read or write it (a tenant log file must be root-only).
    Shared {
        mode: u32,
    },
    HardLinked {
        nlink: u64,
    },
    TooLarge {
        size: u64,
    },
    /// The path changed between the checks and the open.
    Replaced,
    /// An I/O error, as text.
    Io(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Missing => write!(f, "does not exist"),
            Problem::Kind(k) => write!(f, "is {}", k.article()),
            Problem::NotRoot { uid } => write!(f, "is owned by uid {uid}, not root"),
            Problem::Writable { mode } => write!(f, "is writable by group or others (mode {mode:04o})"),
            Problem::Shared { mode } => {
                write!(f, "is readable or writable by group or others (mode {mode:04o}); it must be 0600")
            }
            Problem::HardLinked { nlink } => write!(f, "has {nlink} hard links"),
            Problem::TooLarge { size } => write!(f, "is {size} bytes, more than {MAX_CONF_FILE_BYTES}"),
            Problem::Replaced => write!(f, "was replaced while it was being opened"),
            Problem::Io(e) => write!(f, "cannot be used: {e}"),
        }
    }
}

/// Why a tenant's path is not honoured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotAbsolute,
    NotNormal,
    /// The parent directory is not the one the node chose.
    NotDirectlyInside {
        dir: PathBuf,
    },
    BadLogName,
    BadSocketName,
    /// The node logs to /dev/null.
    NoLogDir,
    /// One file or directory on the way fails the rule.
    OnDisk {
        path: PathBuf,
        problem: Problem,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotAbsolute => write!(f, "it is not an absolute path"),
            Refusal::NotNormal => {
                write!(f, "it is not a normal path (no \".\", \"..\", empty components or trailing \"/\")")
            }
            Refusal::NotDirectlyInside { dir } => {
                write!(f, "it is not directly inside {}, the directory the node chose", dir.display())
            }
            Refusal::BadLogName => write!(
                f,
                "the file name must start with {TENANT_LOG_PREFIX:?} and use only letters, digits, '.', '_' and '-'"
            ),
            Refusal::BadSocketName => {
                write!(
                    f,
                    "the socket name must use only letters, digits, '.', '_' and '-', and not start with '.'"
                )
            }
            Refusal::NoLogDir => write!(f, "the node logs to {NULL_LOG}, so no other log file is honoured"),
            Refusal::OnDisk { path, problem } => write!(f, "{} {problem}", path.display()),
        }
    }
}

/// A tenant value that was ignored: one line in the node's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// `ipam.confDir`, `ipam.logFile` or `ipam.daemonSocket`.
    pub field: &'static str,
    /// The value as the config wrote it, cut to `bounded::MAX_MESSAGE_BYTES` ([`refuse`] cuts
    /// it): one warning costs the same whatever the value's length.
    pub value: String,
    pub refusal: Refusal,
    /// What is used instead.
    pub using: PathBuf,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ignoring {} {:?} from the network config: {}; using {} (set by the node)",
            self.field,
            self.value,
            self.refusal,
            self.using.display()
        )
    }
}

/// The outcome for one path field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub path: PathBuf,
    /// The path is the tenant's (the file checks for tenant files apply), not the node's.
    pub tenant: bool,
    pub warning: Option<Warning>,
}

impl Choice {
    fn node(node: &Path) -> Choice {
        Choice { path: node.to_path_buf(), tenant: false, warning: None }
    }
}

/// Absolute and normal: starts with `/`, and no component is empty, `.` or `..` (so no `//`
/// and no trailing `/`); no NUL. `/` itself is normal.
pub fn normal_absolute(value: &str) -> Result<(), Refusal> {
    let Some(rest) = value.strip_prefix('/') else {
        return Err(Refusal::NotAbsolute);
    };
    if value.contains('\0') {
        return Err(Refusal::NotNormal);
    }
    if rest.is_empty() {
        return Ok(());
    }
    if rest.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(Refusal::NotNormal);
    }
    Ok(())
}

/// One name of letters, digits, `.`, `_`, `-`, not starting with `.` (so never `.`/`..`).
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A tenant log file name: [`TENANT_LOG_PREFIX`] then plain name characters.
pub fn tenant_log_name(name: &str) -> bool {
    name.starts_with(TENANT_LOG_PREFIX) && plain_name(name)
}

/// `value` is a normal absolute path whose parent is exactly `dir` and whose last component
/// passes `name_ok`.
fn directly_inside(
    value: &str,
    dir: &Path,
    name_ok: fn(&str) -> bool,
    bad_name: Refusal,
) -> Result<(), Refusal> {
    normal_absolute(value)?;
    let (parent, name) = value.rsplit_once('/').unwrap_or(("", value));
    let parent = if parent.is_empty() { Path::new("/") } else { Path::new(parent) };
    // Path equality compares components, so a node value written "/var//log/x" still matches.
    if parent != dir {
        return Err(Refusal::NotDirectlyInside { dir: dir.to_path_buf() });
    }
    if !name_ok(name) {
        return Err(bad_name);
    }
    Ok(())
}

/// `logFile`: the tenant's value if it is the node's or an `nv-ipam*` name directly inside the
/// node log's directory (the file checks then follow, in `host`); otherwise the node's value.
pub fn choose_log(stdin: Option<&str>, node: &Path) -> Choice {
    let Some(value) = stdin else { return Choice::node(node) };
    if Path::new(value).as_os_str() == node.as_os_str() {
        return Choice::node(node);
    }
    let decision = if node == Path::new(NULL_LOG) {
        Err(Refusal::NoLogDir)
    } else {
        match node.parent() {
            Some(dir) => directly_inside(value, dir, tenant_log_name, Refusal::BadLogName),
            None => Err(Refusal::NoLogDir),
        }
    };
    match decision {
        Ok(()) => Choice { path: PathBuf::from(value), tenant: true, warning: None },
        Err(refusal) => refuse("ipam.logFile", value, refusal, node),
    }
}

/// `daemonSocket` (already stripped of `unix://`): the tenant's value if it is the node's or
/// one plain name directly inside the node socket's directory; otherwise the node's value.
pub fn choose_socket(stdin: Option<&str>, node: &Path) -> Choice {
    let Some(value) = stdin else { return Choice::node(node) };
    if Path::new(value).as_os_str() == node.as_os_str() {
        return Choice::node(node);
    }
    let decision = match node.parent() {
        Some(dir) => directly_inside(value, dir, plain_name, Refusal::BadSocketName),
        None => Err(Refusal::NotDirectlyInside { dir: PathBuf::from("/") }),
    };
    match decision {
        Ok(()) => Choice { path: PathBuf::from(value), tenant: true, warning: None },
        Err(refusal) => refuse("ipam.daemonSocket", value, refusal, node),
    }
}

/// A refused value: the node's path, and the warning that says so.
pub fn refuse(field: &'static str, value: &str, refusal: Refusal, node: &Path) -> Choice {
    Choice {
        path: node.to_path_buf(),
        tenant: false,
        warning: Some(Warning { field, value: clip_str(value), refusal, using: node.to_path_buf() }),
    }
}

/// The components `lstat` must check for a tenant's `confDir`, outermost first: `/a/b` gives
/// `/`, `/a`, `/a/b`. Only for a value [`normal_absolute`] accepted.
pub fn dir_chain(value: &str) -> Vec<PathBuf> {
    let mut chain = vec![PathBuf::from("/")];
    let mut at = PathBuf::from("/");
    for c in value.split('/').filter(|c| !c.is_empty()) {
        at.push(c);
        chain.push(at.clone());
    }
    chain
}

/// One component of a tenant's `confDir`: a real directory (not a symlink) owned by root that
/// group and others cannot write, except that above the last component a sticky one (such as
/// `/tmp`) may be: there only an entry's owner can rename or remove it, and the next component
/// must itself be root-owned (sshd's StrictModes and sudo reason the same way).
pub fn judge_conf_dir_component(facts: &Facts, last: bool) -> Result<(), Problem> {
    if facts.kind != Kind::Dir {
        return Err(Problem::Kind(facts.kind));
    }
    if facts.uid != 0 {
        return Err(Problem::NotRoot { uid: facts.uid });
    }
    let writable = facts.mode & 0o022 != 0;
    let sticky = facts.mode & 0o1000 != 0;
    if writable && (last || !sticky) {
        return Err(Problem::Writable { mode: facts.mode });
    }
    Ok(())
}

/// `nv-ipam.conf` in a tenant's `confDir` (`fstat` of the file opened without following a
/// symlink): a regular file, root-owned, not writable by group/other, not too large.
pub fn judge_tenant_conf_file(facts: &Facts) -> Result<(), Problem> {
    judge_node_conf_file(facts)?;
    if facts.uid != 0 {
        return Err(Problem::NotRoot { uid: facts.uid });
    }
    if facts.mode & 0o022 != 0 {
        return Err(Problem::Writable { mode: facts.mode });
    }
    Ok(())
}

/// `nv-ipam.conf` in the default conf dir (the node's own): a regular file, not too large.
pub fn judge_node_conf_file(facts: &Facts) -> Result<(), Problem> {
    if facts.kind != Kind::File {
        return Err(Problem::Kind(facts.kind));
    }
    if facts.size > MAX_CONF_FILE_BYTES {
        return Err(Problem::TooLarge { size: facts.size });
    }
    Ok(())
}

/// A tenant's log file once opened (or created, 0600): a regular file, root-owned, root-only
/// (mode & 0o077 == 0: `/var/log/syslog` and `auth.log` are group-readable), one link (a hard
/// link would make another file's content ours to append to).
pub fn judge_tenant_log(facts: &Facts) -> Result<(), Problem> {
    if facts.kind != Kind::File {
        return Err(Problem::Kind(facts.kind));
    }
    if facts.uid != 0 {
        return Err(Problem::NotRoot { uid: facts.uid });
    }
    if facts.mode & 0o077 != 0 {
        return Err(Problem::Shared { mode: facts.mode });
    }
    if facts.nlink != 1 {
        return Err(Problem::HardLinked { nlink: facts.nlink });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
