//! The `CNI_*` environment: which command runs, and the attachment it is about.
//!
//! Owns: the rules of CNI spec §3.2 as they apply to an IPAM plugin: `CNI_COMMAND` always;
//! `CNI_CONTAINERID` and `CNI_IFNAME` on ADD, CHECK and DEL; `CNI_NETNS` on ADD and CHECK
//! only (DEL must work with a gone netns); `CNI_PATH` never (we delegate to nothing); an empty
//! variable counts as missing (libcni sets all six and leaves unused ones empty).
//! Must not: read the process environment except in [`Env::from_process`], or touch the
//! netns (an IPAM plugin only computes addresses).

use std::collections::BTreeMap;
use std::fmt;

/// The plugin's environment: the `CNI_*` variables only (the rest is the runtime's business).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// Reads every `CNI_*` variable of this process. A value that is not UTF-8 is kept with
    /// replacement characters, so validation rejects it with the variable's name instead of
    /// the plugin failing somewhere less clear.
    pub fn from_process() -> Env {
        Env::from_pairs(std::env::vars_os().filter_map(|(k, v)| {
            let k = k.into_string().ok()?;
            k.starts_with("CNI_").then(|| (k, v.to_string_lossy().into_owned()))
        }))
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Env {
        Env { vars: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }

    /// The variable's value, `None` when unset or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Gc,
    Status,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Gc => "GC",
            Command::Status => "STATUS",
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the environment is unusable. All of these are CNI code 4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvError {
    Missing { var: &'static str },
    UnknownCommand { value: String },
    Invalid { var: &'static str, value: String, rule: &'static str },
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvError::Missing { var } => write!(f, "required environment variable {var} is missing or empty"),
            EnvError::UnknownCommand { value } => {
                write!(f, "unknown CNI_COMMAND {value:?}; expected ADD, DEL, CHECK, GC, STATUS or VERSION")
            }
            EnvError::Invalid { var, value, rule } => write!(f, "{var} {value:?} is invalid: {rule}"),
        }
    }
}

impl std::error::Error for EnvError {}

/// The attachment an ADD, CHECK or DEL is about: the allocation key with the network name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentEnv {
    pub container_id: String,
    pub ifname: String,
    /// Present on ADD and CHECK; only logged (the plugin never enters it).
    pub netns: Option<String>,
}

/// Reads `CNI_COMMAND`. Names are case-sensitive upper case, as libcni sends them.
pub fn command(env: &Env) -> Result<Command, EnvError> {
    let value = env.get("CNI_COMMAND").ok_or(EnvError::Missing { var: "CNI_COMMAND" })?;
    Ok(match value {
        "ADD" => Command::Add,
        "DEL" => Command::Del,
        "CHECK" => Command::Check,
        "VERSION" => Command::Version,
        "GC" => Command::Gc,
        "STATUS" => Command::Status,
        other => return Err(EnvError::UnknownCommand { value: other.to_string() }),
    })
}

/// Reads and validates the attachment variables for ADD, CHECK or DEL.
pub fn attachment(env: &Env, command: Command) -> Result<AttachmentEnv, EnvError> {
    let container_id = env.get("CNI_CONTAINERID").ok_or(EnvError::Missing { var: "CNI_CONTAINERID" })?;
    if !is_valid_id(container_id) {
        return Err(EnvError::Invalid {
            var: "CNI_CONTAINERID",
            value: container_id.to_string(),
            rule: "must match ^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        });
    }
    let netns = env.get("CNI_NETNS").map(str::to_string);
    if netns.is_none() && matches!(command, Command::Add | Command::Check) {
        return Err(EnvError::Missing { var: "CNI_NETNS" });
    }
    let ifname = env.get("CNI_IFNAME").ok_or(EnvError::Missing { var: "CNI_IFNAME" })?;
    if let Some(rule) = ifname_problem(ifname) {
        return Err(EnvError::Invalid { var: "CNI_IFNAME", value: ifname.to_string(), rule });
    }
    Ok(AttachmentEnv { container_id: container_id.to_string(), ifname: ifname.to_string(), netns })
}

/// `^[A-Za-z0-9][A-Za-z0-9_.-]*$`: the spec's rule for container IDs and network names.
pub fn is_valid_id(s: &str) -> bool {
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The Linux rules for an interface name (the kernel's `dev_valid_name`), as the spec
/// adopts them. `None` when the name is valid.
fn ifname_problem(name: &str) -> Option<&'static str> {
    /// IFNAMSIZ (16) minus the terminating NUL.
    const MAX_IFNAME_BYTES: usize = 15;
    if name.len() > MAX_IFNAME_BYTES {
        return Some("must be at most 15 bytes");
    }
    if name == "." || name == ".." {
        return Some("must not be . or ..");
    }
    if name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
        return Some("must not contain /, : or whitespace");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs.iter().copied())
    }

    const FULL: [(&str, &str); 4] = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
    ];

    #[test]
    fn commands() {
        for (s, c) in [
            ("ADD", Command::Add),
            ("DEL", Command::Del),
            ("CHECK", Command::Check),
            ("VERSION", Command::Version),
            ("GC", Command::Gc),
            ("STATUS", Command::Status),
        ] {
            assert_eq!(command(&env(&[("CNI_COMMAND", s)])), Ok(c));
        }
        assert_eq!(command(&env(&[])), Err(EnvError::Missing { var: "CNI_COMMAND" }));
        assert_eq!(command(&env(&[("CNI_COMMAND", "")])), Err(EnvError::Missing { var: "CNI_COMMAND" }));
        let e = command(&env(&[("CNI_COMMAND", "FOO")])).expect_err("unknown");
        assert!(e.to_string().starts_with("unknown CNI_COMMAND \"FOO\""), "{e}");
    }

    #[test]
    fn add_needs_all_three() {
        let a = attachment(&env(&FULL), Command::Add).expect("valid");
        assert_eq!((a.container_id.as_str(), a.ifname.as_str()), ("c1", "eth0"));
        for var in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
            let without: Vec<_> = FULL.iter().copied().filter(|(k, _)| *k != var).collect();
            assert_eq!(attachment(&env(&without), Command::Add), Err(EnvError::Missing { var }));
            let empty: Vec<_> = FULL.iter().map(|&(k, v)| if k == var { (k, "") } else { (k, v) }).collect();
            assert_eq!(attachment(&env(&empty), Command::Check), Err(EnvError::Missing { var }));
        }
    }

    #[test]
    fn del_does_not_need_netns() {
        let a = attachment(&env(&[("CNI_CONTAINERID", "c1"), ("CNI_IFNAME", "eth0")]), Command::Del)
            .expect("DEL without netns");
        assert_eq!(a.netns, None);
    }

    #[test]
    fn container_id_and_ifname_rules() {
        assert!(is_valid_id("abc-1_2.3"));
        for bad in ["", "-a", ".a", "a/b", "a b", "ä"] {
            assert!(!is_valid_id(bad), "{bad:?}");
        }
        for bad in ["0123456789abcdef", "a/b", "a:b", "a b", ".", "..", "a\tb"] {
            let mut e = FULL.to_vec();
            e[3] = ("CNI_IFNAME", bad);
            assert!(
                matches!(
                    attachment(&env(&e), Command::Add),
                    Err(EnvError::Invalid { var: "CNI_IFNAME", .. })
                ),
                "{bad:?}"
            );
        }
        let mut e = FULL.to_vec();
        e[3] = ("CNI_IFNAME", "0123456789abcde");
        assert!(attachment(&env(&e), Command::Add).is_ok(), "15 bytes is allowed");
        e[1] = ("CNI_CONTAINERID", "bad/id");
        assert!(matches!(
            attachment(&env(&e), Command::Add),
            Err(EnvError::Invalid { var: "CNI_CONTAINERID", .. })
        ));
    }
}
