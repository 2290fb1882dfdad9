//! `ipam-node` flags: the reference's names and defaults, parsed once into [`NodeConfig`].
//!
//! Owns: flag syntax (`--flag value`, `--flag=value`, bare booleans) and defaults. Must not:
//! act on the values.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use lexopt::prelude::*;

/// Default daemon socket, as in the reference.
pub const DEFAULT_BIND_ADDRESS: &str = "unix:///var/lib/cni/nv-ipam/daemon.sock";
/// Default store file, as in the reference.
pub const DEFAULT_STORE_FILE: &str = "/var/lib/cni/nv-ipam/store";
/// How often the pools file is checked for changes (standalone mode).
pub const DEFAULT_POOLS_FILE_POLL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    pub node_name: String,
    pub bind_socket: PathBuf,
    pub store_file: PathBuf,
    pub pools_file: Option<PathBuf>,
    pub pools_file_poll: Duration,
    pub cni_bin_dir: PathBuf,
    pub cni_nv_ipam_bin_file: PathBuf,
    pub cni_skip_binary_copy: bool,
    pub cni_skip_config_creation: bool,
    pub cni_conf_dir: PathBuf,
    pub cni_daemon_socket: String,
    pub cni_daemon_call_timeout: u64,
    pub cni_log_file: String,
    pub cni_log_level: String,
    pub cni_force_pool_name: bool,
    pub verbosity: u8,
    pub json_logs: bool,
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Command {
    Run(Box<NodeConfig>),
    Version,
    Help,
}

#[derive(Debug)]
pub struct FlagError(pub String);

impl fmt::Display for FlagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; see ipam-node --help", self.0)
    }
}

impl std::error::Error for FlagError {}

impl From<lexopt::Error> for FlagError {
    fn from(e: lexopt::Error) -> FlagError {
        FlagError(e.to_string())
    }
}

pub const USAGE: &str = "usage: ipam-node --node-name NAME [flags]

  --node-name NAME                    this node's name (required; default $NODE_NAME)
  --bind-address ADDR                 daemon socket (default unix:///var/lib/cni/nv-ipam/daemon.sock)
  --store-file PATH                   allocation store (default /var/lib/cni/nv-ipam/store)
  --pools-file PATH                   standalone mode: IPPool/CIDRPool manifests (YAML or JSON), re-read on change
  --cni-bin-dir DIR                   where to install nv-ipam (default /opt/cni/bin)
  --cni-nv-ipam-bin-file PATH         plugin binary to install (default /nv-ipam)
  --cni-skip-nv-ipam-binary-copy      do not install the plugin binary
  --cni-skip-nv-ipam-config-creation  do not write <cni-conf-dir>/nv-ipam.conf
  --cni-conf-dir DIR                  plugin config dir (default /etc/cni/net.d/nv-ipam.d)
  --cni-daemon-socket ADDR            socket the plugin dials (default: the --bind-address)
  --cni-daemon-call-timeout SECONDS   plugin call timeout (default 5)
  --cni-log-file PATH                 plugin log file (default /var/log/nv-ipam-cni.log)
  --cni-log-level LEVEL               plugin log level (default info)
  --cni-force-pool-name               plugin: require poolName, no fallback to the network name
  -v, --v LEVEL                       log verbosity (0 info, 1-3 debug, 4+ trace)
  --logging-format text|json          log line format (default text)
  --version                           print the version and exit
";

fn parse_bool(flag: &str, v: Option<std::ffi::OsString>) -> Result<bool, FlagError> {
    match v.map(|s| s.to_string_lossy().to_ascii_lowercase()) {
        None => Ok(true),
        Some(s) if ["true", "1", "t"].contains(&s.as_str()) => Ok(true),
        Some(s) if ["false", "0", "f"].contains(&s.as_str()) => Ok(false),
        Some(s) => Err(FlagError(format!("--{flag}: {s:?} is not a boolean (true or false)"))),
    }
}

/// `unix:///path` or a plain absolute path; TCP is refused (the socket's file mode is the
/// access control).
pub fn socket_path(flag: &str, addr: &str) -> Result<PathBuf, FlagError> {
    let path = addr.strip_prefix("unix://").unwrap_or(addr);
    if addr.contains("://") && !addr.starts_with("unix://") {
        return Err(FlagError(format!(
            "--{flag}: {addr:?} is not supported; only unix sockets are (unix:///path), whose file mode keeps them root-only"
        )));
    }
    if !path.starts_with('/') {
        return Err(FlagError(format!(
            "--{flag}: {addr:?} must be an absolute unix socket path (unix:///path)"
        )));
    }
    Ok(PathBuf::from(path))
}

pub fn parse(args: impl IntoIterator<Item = std::ffi::OsString>) -> Result<Command, FlagError> {
    let mut p = lexopt::Parser::from_args(args);
    let mut node_name = std::env::var("NODE_NAME").unwrap_or_default();
    let mut bind = DEFAULT_BIND_ADDRESS.to_string();
    let mut cni_socket: Option<String> = None;
    let mut c = NodeConfig {
        node_name: String::new(),
        bind_socket: PathBuf::new(),
        store_file: PathBuf::from(DEFAULT_STORE_FILE),
        pools_file: None,
        pools_file_poll: DEFAULT_POOLS_FILE_POLL,
        cni_bin_dir: PathBuf::from("/opt/cni/bin"),
        cni_nv_ipam_bin_file: PathBuf::from("/nv-ipam"),
        cni_skip_binary_copy: false,
        cni_skip_config_creation: false,
        cni_conf_dir: PathBuf::from("/etc/cni/net.d/nv-ipam.d"),
        cni_daemon_socket: DEFAULT_BIND_ADDRESS.to_string(),
        cni_daemon_call_timeout: 5,
        cni_log_file: "/var/log/nv-ipam-cni.log".into(),
        cni_log_level: "info".into(),
        cni_force_pool_name: false,
        verbosity: 0,
        json_logs: false,
    };
    while let Some(arg) = p.next()? {
        let s = |p: &mut lexopt::Parser| -> Result<String, FlagError> { Ok(p.value()?.string()?) };
        match arg {
            Long("node-name") => node_name = s(&mut p)?,
            Long("bind-address") => bind = s(&mut p)?,
            Long("store-file") => c.store_file = s(&mut p)?.into(),
            Long("pools-file") => c.pools_file = Some(s(&mut p)?.into()),
            Long("cni-bin-dir") => c.cni_bin_dir = s(&mut p)?.into(),
            Long("cni-nv-ipam-bin-file") => c.cni_nv_ipam_bin_file = s(&mut p)?.into(),
            Long("cni-skip-nv-ipam-binary-copy") => {
                c.cni_skip_binary_copy = parse_bool("cni-skip-nv-ipam-binary-copy", p.optional_value())?
            }
            Long("cni-skip-nv-ipam-config-creation") => {
                c.cni_skip_config_creation =
                    parse_bool("cni-skip-nv-ipam-config-creation", p.optional_value())?
            }
            Long("cni-conf-dir") => c.cni_conf_dir = s(&mut p)?.into(),
            Long("cni-daemon-socket") => cni_socket = Some(s(&mut p)?),
            Long("cni-daemon-call-timeout") => {
                let v = s(&mut p)?;
                c.cni_daemon_call_timeout = v.trim_end_matches('s').parse().map_err(|_| {
                    FlagError(format!("--cni-daemon-call-timeout: {v:?} is not a number of seconds"))
                })?;
            }
            Long("cni-log-file") => c.cni_log_file = s(&mut p)?,
            Long("cni-log-level") => c.cni_log_level = s(&mut p)?,
            Long("cni-force-pool-name") => {
                c.cni_force_pool_name = parse_bool("cni-force-pool-name", p.optional_value())?
            }
            Short('v') | Long("v") => {
                let v = s(&mut p)?;
                c.verbosity = v
                    .trim_start_matches('=')
                    .parse()
                    .map_err(|_| FlagError(format!("-v: {v:?} is not a verbosity level (0-10)")))?;
            }
            Long("logging-format") => {
                c.json_logs = match s(&mut p)?.as_str() {
                    "text" => false,
                    "json" => true,
                    other => {
                        return Err(FlagError(format!("--logging-format: {other:?} must be text or json")));
                    }
                }
            }
            Long("version") => return Ok(Command::Version),
            Short('h') | Long("help") => return Ok(Command::Help),
            other => return Err(other.unexpected().into()),
        }
    }
    if node_name.is_empty() {
        return Err(FlagError("--node-name is required (or set NODE_NAME)".into()));
    }
    c.node_name = node_name;
    c.bind_socket = socket_path("bind-address", &bind)?;
    // Unset, the plugin dials where the daemon listens.
    c.cni_daemon_socket = cni_socket.unwrap_or(bind);
    socket_path("cni-daemon-socket", &c.cni_daemon_socket)?;
    Ok(Command::Run(Box::new(c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<NodeConfig, FlagError> {
        match parse(args.iter().map(|a| a.into()))? {
            Command::Run(c) => Ok(*c),
            other => panic!("expected run, got {other:?}"),
        }
    }

    #[test]
    fn defaults_match_the_reference() {
        let c = run(&["--node-name", "n1"]).expect("parse");
        assert_eq!(c.bind_socket, PathBuf::from("/var/lib/cni/nv-ipam/daemon.sock"));
        assert_eq!(c.store_file, PathBuf::from("/var/lib/cni/nv-ipam/store"));
        assert_eq!(c.cni_bin_dir, PathBuf::from("/opt/cni/bin"));
        assert_eq!(c.cni_conf_dir, PathBuf::from("/etc/cni/net.d/nv-ipam.d"));
        assert_eq!(c.cni_nv_ipam_bin_file, PathBuf::from("/nv-ipam"));
        assert_eq!((c.cni_daemon_call_timeout, c.cni_log_level.as_str()), (5, "info"));
    }

    #[test]
    fn go_style_flags() {
        let c = run(&[
            "--node-name=n1",
            "--bind-address=unix:///tmp/x.sock",
            "--cni-skip-nv-ipam-binary-copy",
            "--cni-skip-nv-ipam-config-creation=false",
            "-v",
            "4",
            "--logging-format=json",
        ])
        .expect("parse");
        assert_eq!(c.bind_socket, PathBuf::from("/tmp/x.sock"));
        assert!(c.cni_skip_binary_copy && !c.cni_skip_config_creation && c.json_logs);
        assert_eq!(c.verbosity, 4);
    }

    #[test]
    fn errors_name_the_flag() {
        let e = run(&[]).expect_err("no node");
        assert!(e.to_string().contains("--node-name is required"), "{e}");
        let e = run(&["--node-name", "n", "--bind-address", "tcp://1.2.3.4:5"]).expect_err("tcp");
        assert!(
            e.to_string().contains("--bind-address") && e.to_string().contains("only unix sockets"),
            "{e}"
        );
        let e = run(&["--node-name", "n", "--logging-format", "xml"]).expect_err("format");
        assert!(e.to_string().contains("--logging-format"), "{e}");
    }
}
