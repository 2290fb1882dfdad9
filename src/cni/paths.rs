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
mod tests {
    use super::*;

    fn facts(kind: Kind, uid: u32, mode: u32) -> Facts {
        Facts { kind, uid, mode, size: 10, nlink: 1 }
    }

    const KINDS: [Kind; 7] =
        [Kind::File, Kind::Dir, Kind::Symlink, Kind::Fifo, Kind::Socket, Kind::CharDevice, Kind::BlockDevice];

    #[test]
    fn normal_absolute_paths() {
        for ok in ["/", "/a", "/a/b.c", "/tmp/x/nv-ipam.d", "/a/...", "/a/.b"] {
            assert_eq!(normal_absolute(ok), Ok(()), "{ok:?}");
        }
        for (bad, want) in [
            ("", Refusal::NotAbsolute),
            ("a", Refusal::NotAbsolute),
            ("./a", Refusal::NotAbsolute),
            ("~/a", Refusal::NotAbsolute),
            ("//a", Refusal::NotNormal),
            ("/a//b", Refusal::NotNormal),
            ("/a/", Refusal::NotNormal),
            ("/a/.", Refusal::NotNormal),
            ("/a/./b", Refusal::NotNormal),
            ("/a/..", Refusal::NotNormal),
            ("/a/../b", Refusal::NotNormal),
            ("/..", Refusal::NotNormal),
            ("/a\0b", Refusal::NotNormal),
        ] {
            assert_eq!(normal_absolute(bad), Err(want), "{bad:?}");
        }
    }

    #[test]
    fn log_choice() {
        let node = Path::new("/var/log/nv-ipam-cni.log");
        assert_eq!(choose_log(None, node), Choice::node(node));
        assert_eq!(choose_log(Some("/var/log/nv-ipam-cni.log"), node), Choice::node(node), "the node's own");
        for ok in ["/var/log/nv-ipam-net1.log", "/var/log/nv-ipam", "/var/log/nv-ipam.x_y-z"] {
            assert_eq!(choose_log(Some(ok), node), Choice { path: ok.into(), tenant: true, warning: None });
        }
        let cases = [
            ("/root/.ssh/authorized_keys", Refusal::NotDirectlyInside { dir: "/var/log".into() }),
            ("/var/log/sub/nv-ipam.log", Refusal::NotDirectlyInside { dir: "/var/log".into() }),
            ("/var/nv-ipam.log", Refusal::NotDirectlyInside { dir: "/var/log".into() }),
            ("/var/log/../../root/.ssh/authorized_keys", Refusal::NotNormal),
            ("/var/log/./nv-ipam.log", Refusal::NotNormal),
            ("/var/log//nv-ipam.log", Refusal::NotNormal),
            ("/var/log/nv-ipam.log/", Refusal::NotNormal),
            ("nv-ipam.log", Refusal::NotAbsolute),
            ("../log/nv-ipam.log", Refusal::NotAbsolute),
            ("/var/log/secure", Refusal::BadLogName),
            ("/var/log/syslog", Refusal::BadLogName),
            ("/var/log/nv-ipam\nx.log", Refusal::BadLogName),
            ("/var/log/nv-ipam x.log", Refusal::BadLogName),
            ("/var/log/nv-ipam\u{1b}.log", Refusal::BadLogName),
            ("/var/log/.nv-ipam.log", Refusal::BadLogName),
            ("/var/log/NV-IPAM.log", Refusal::BadLogName),
        ];
        for (value, refusal) in cases {
            let got = choose_log(Some(value), node);
            let want = Warning { field: "ipam.logFile", value: value.into(), refusal, using: node.into() };
            assert_eq!(got, Choice { path: node.into(), tenant: false, warning: Some(want) }, "{value:?}");
        }
        // The node's directory, whatever it is; a node value written oddly still has one.
        let odd = Path::new("/srv//logs/cni.log");
        assert!(choose_log(Some("/srv/logs/nv-ipam-a.log"), odd).tenant);
        let root_level = Path::new("/cni.log");
        assert!(choose_log(Some("/nv-ipam-a.log"), root_level).tenant);
        // /dev/null means no log: nothing else either.
        let null = Path::new(NULL_LOG);
        let got = choose_log(Some("/dev/nv-ipam.log"), null);
        assert_eq!(got.warning.map(|w| w.refusal), Some(Refusal::NoLogDir));
        assert_eq!(got.path, null);
        // A relative node value (the config layer refuses those) has no directory to honour.
        assert!(!choose_log(Some("/nv-ipam.log"), Path::new("x.log")).tenant);
    }

    #[test]
    fn socket_choice() {
        let node = Path::new("/var/lib/cni/nv-ipam/daemon.sock");
        assert_eq!(choose_socket(None, node), Choice::node(node));
        assert_eq!(choose_socket(Some("/var/lib/cni/nv-ipam/daemon.sock"), node), Choice::node(node));
        let other = choose_socket(Some("/var/lib/cni/nv-ipam/other.sock"), node);
        assert_eq!(
            other,
            Choice { path: "/var/lib/cni/nv-ipam/other.sock".into(), tenant: true, warning: None }
        );
        for (value, refusal) in [
            ("/run/docker.sock", Refusal::NotDirectlyInside { dir: "/var/lib/cni/nv-ipam".into() }),
            (
                "/var/lib/cni/nv-ipam/sub/x.sock",
                Refusal::NotDirectlyInside { dir: "/var/lib/cni/nv-ipam".into() },
            ),
            ("/var/lib/cni/nv-ipam/../x.sock", Refusal::NotNormal),
            ("x.sock", Refusal::NotAbsolute),
            ("/var/lib/cni/nv-ipam/.x", Refusal::BadSocketName),
            ("/var/lib/cni/nv-ipam/a\nb", Refusal::BadSocketName),
        ] {
            let got = choose_socket(Some(value), node);
            assert_eq!(got.path, node, "{value:?}");
            assert_eq!(
                got.warning.map(|w| (w.field, w.refusal)),
                Some(("ipam.daemonSocket", refusal)),
                "{value:?}"
            );
        }
    }

    #[test]
    fn conf_dir_components_every_kind_owner_and_mode() {
        // Exhaustive over kinds, two owners, every write bit pattern and the sticky bit, as the
        // last component and above it.
        for kind in KINDS {
            for uid in [0, 65534] {
                for mode in [0o755, 0o775, 0o757, 0o777, 0o1755, 0o1775, 0o1777, 0o700, 0o1700] {
                    for last in [false, true] {
                        let got = judge_conf_dir_component(&facts(kind, uid, mode), last);
                        let writable = mode & 0o022 != 0;
                        let want = if kind != Kind::Dir {
                            Err(Problem::Kind(kind))
                        } else if uid != 0 {
                            Err(Problem::NotRoot { uid })
                        } else if writable && (last || mode & 0o1000 == 0) {
                            Err(Problem::Writable { mode })
                        } else {
                            Ok(())
                        };
                        assert_eq!(got, want, "{kind:?} uid={uid} mode={mode:o} last={last}");
                    }
                }
            }
        }
        // The usual shapes: /tmp above, a root-owned 0755 dir below.
        assert_eq!(judge_conf_dir_component(&facts(Kind::Dir, 0, 0o1777), false), Ok(()));
        assert!(judge_conf_dir_component(&facts(Kind::Dir, 0, 0o1777), true).is_err());
        assert_eq!(judge_conf_dir_component(&facts(Kind::Dir, 0, 0o755), true), Ok(()));
    }

    #[test]
    fn dir_chains() {
        assert_eq!(dir_chain("/"), vec![PathBuf::from("/")]);
        assert_eq!(
            dir_chain("/tmp/h/nv-ipam.d"),
            ["/", "/tmp", "/tmp/h", "/tmp/h/nv-ipam.d"].map(PathBuf::from).to_vec()
        );
    }

    #[test]
    fn conf_files() {
        for kind in KINDS {
            let want = if kind == Kind::File { Ok(()) } else { Err(Problem::Kind(kind)) };
            assert_eq!(judge_tenant_conf_file(&facts(kind, 0, 0o600)), want);
            assert_eq!(judge_node_conf_file(&facts(kind, 0, 0o600)), want);
        }
        for mode in [0o600, 0o644, 0o400, 0o444, 0o604, 0o640] {
            assert_eq!(judge_tenant_conf_file(&facts(Kind::File, 0, mode)), Ok(()), "{mode:o}");
        }
        for mode in [0o620, 0o602, 0o666, 0o660] {
            assert_eq!(judge_tenant_conf_file(&facts(Kind::File, 0, mode)), Err(Problem::Writable { mode }));
            assert_eq!(judge_node_conf_file(&facts(Kind::File, 0, mode)), Ok(()), "the node's own: trusted");
        }
        assert_eq!(judge_tenant_conf_file(&facts(Kind::File, 1, 0o600)), Err(Problem::NotRoot { uid: 1 }));
        // At the size limit and one byte over.
        let at = Facts { size: MAX_CONF_FILE_BYTES, ..facts(Kind::File, 0, 0o600) };
        assert_eq!(judge_tenant_conf_file(&at), Ok(()));
        let over = Facts { size: MAX_CONF_FILE_BYTES + 1, ..at };
        assert_eq!(judge_tenant_conf_file(&over), Err(Problem::TooLarge { size: MAX_CONF_FILE_BYTES + 1 }));
        assert_eq!(judge_node_conf_file(&over), Err(Problem::TooLarge { size: MAX_CONF_FILE_BYTES + 1 }));
    }

    #[test]
    fn tenant_log_files() {
        assert_eq!(judge_tenant_log(&facts(Kind::File, 0, 0o600)), Ok(()));
        assert_eq!(judge_tenant_log(&facts(Kind::File, 0, 0o400)), Ok(()));
        for kind in KINDS.into_iter().filter(|k| *k != Kind::File) {
            assert_eq!(judge_tenant_log(&facts(kind, 0, 0o600)), Err(Problem::Kind(kind)));
        }
        for mode in [0o640, 0o604, 0o610, 0o601, 0o644, 0o660, 0o666] {
            assert_eq!(
                judge_tenant_log(&facts(Kind::File, 0, mode)),
                Err(Problem::Shared { mode }),
                "{mode:o}"
            );
        }
        assert_eq!(judge_tenant_log(&facts(Kind::File, 65534, 0o600)), Err(Problem::NotRoot { uid: 65534 }));
        let linked = Facts { nlink: 2, ..facts(Kind::File, 0, 0o600) };
        assert_eq!(judge_tenant_log(&linked), Err(Problem::HardLinked { nlink: 2 }));
    }

    #[test]
    fn warning_is_one_line_naming_field_value_reason_and_replacement() {
        let w = choose_log(Some("/root/.ssh/authorized_keys\nx"), Path::new("/var/log/nv-ipam-cni.log"))
            .warning
            .expect("refused");
        assert_eq!(
            w.to_string(),
            "ignoring ipam.logFile \"/root/.ssh/authorized_keys\\nx\" from the network config: it is not directly inside /var/log, the directory the node chose; using /var/log/nv-ipam-cni.log (set by the node)"
        );
        let r = Refusal::OnDisk { path: "/tmp/x".into(), problem: Problem::Writable { mode: 0o777 } };
        assert_eq!(r.to_string(), "/tmp/x is writable by group or others (mode 0777)");
    }
}
