//! `ipam-node` flags: the reference's names and defaults, parsed once into [`NodeConfig`].
//!
//! Owns: which flags exist, their defaults and usage text. Value syntax (durations, booleans)
//! is `crate::flags`', shared with `ipam-controller`; the logging flags every Kubernetes
//! component has (`-v`, `--vmodule`, `--logging-format`, `--feature-gates`, ...) and the table
//! of the reference's flags are `crate::upstream_flags`'; default paths are
//! `crate::default_paths`'. Must not: act on the values.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use lexopt::prelude::*;

use crate::default_paths;
use crate::flags::{self, ValueError};
use crate::upstream_flags::{self, Logging, LoggingFlags};

/// How often the pools file is checked for changes (standalone mode).
pub const DEFAULT_POOLS_FILE_POLL: Duration = Duration::from_secs(1);
/// Namespace of the IPPool and CIDRPool objects, shared with ipam-controller.
pub use crate::flags::DEFAULT_IPPOOLS_NAMESPACE;
/// `/healthz`, `/readyz` and `/metrics` in cluster mode: :8083, clear of the controller's
/// :8080 (metrics) and :8081 (probes), which may share a host network with it. Standalone mode
/// serves none unless the flag is given (no kubelet probes there, and no port to claim).
pub const DEFAULT_HEALTH_PROBE_BIND_ADDRESS: &str = ":8083";
/// How often the stale cleaner looks at reservations (the reference's hard-coded 1 min).
pub const DEFAULT_STALE_IP_CHECK_INTERVAL: Duration = Duration::from_secs(60);
/// Consecutive stale observations before a release (the reference's hard-coded 3).
pub const DEFAULT_STALE_IP_CHECK_COUNT: u32 = 3;
/// Longest accepted duration flag: a day; anything longer is a typo (e.g. a missing unit).
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

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
    /// `-v`, `--vmodule`, `--logging-format`, and warnings for the flags with no effect.
    pub logging: Logging,
    /// Cluster mode: kubeconfig path (else $KUBECONFIG, else in-cluster).
    pub kubeconfig: Option<PathBuf>,
    pub ippools_namespace: String,
    /// `HOST:PORT`, `:PORT`, or `0` (off); serves /healthz, /readyz and /metrics.
    pub health_probe_bind_address: String,
    /// A second listener for /metrics only when set to another address; `0` (default) = metrics
    /// are on the health address.
    pub metrics_bind_address: String,
    pub stale_ip_check_interval: Duration,
    pub stale_ip_check_count: u32,
    /// Zero = off.
    pub released_ip_cooldown: Duration,
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

impl From<ValueError> for FlagError {
    fn from(e: ValueError) -> FlagError {
        FlagError(e.to_string())
    }
}

impl From<lexopt::Error> for FlagError {
    fn from(e: lexopt::Error) -> FlagError {
        FlagError(e.to_string())
    }
}

/// The usage text `--help` prints: [`USAGE`] and the logging flags' section.
pub fn usage() -> String {
    format!("{USAGE}\n{}", upstream_flags::help_section())
}

/// Usage text of the node daemon's own flags (see [`usage`]).
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
  --kubeconfig PATH                   cluster mode: kubeconfig (default $KUBECONFIG, else in-cluster)
  --ippools-namespace NS              cluster mode: namespace of the pools and of this node's NodeBlockSet (default kube-system)
  --health-probe-bind-address ADDR    /healthz /readyz /metrics (default :8083 in cluster mode, off standalone; 0 = off)
  --metrics-bind-address ADDR         extra /metrics listener (default 0: metrics are on the health address)
  --stale-ip-check-interval DUR       cluster mode: stale reservation check period (default 1m)
  --stale-ip-check-count-before-release N  consecutive stale checks before release (default 3)
  --released-ip-cooldown DUR          released IPs are not reused by round-robin for DUR (default 0 = off)
  -h, --help                          print this and exit
  --version                           print the version and exit

DUR is a Go duration: 90s, 1.5m, 1h30m, 500ms (units ns, us, ms, s, m, h), at most 24h.
";

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
    let mut bind = default_paths::DAEMON_SOCKET_ADDRESS.to_string();
    let mut cni_socket: Option<String> = None;
    let mut c = NodeConfig {
        node_name: String::new(),
        bind_socket: PathBuf::new(),
        store_file: PathBuf::from(default_paths::STORE_FILE),
        pools_file: None,
        pools_file_poll: DEFAULT_POOLS_FILE_POLL,
        cni_bin_dir: PathBuf::from(default_paths::CNI_BIN_DIR),
        cni_nv_ipam_bin_file: PathBuf::from(default_paths::PLUGIN_BINARY),
        cni_skip_binary_copy: false,
        cni_skip_config_creation: false,
        cni_conf_dir: PathBuf::from(default_paths::CNI_CONF_DIR),
        cni_daemon_socket: default_paths::DAEMON_SOCKET_ADDRESS.to_string(),
        cni_daemon_call_timeout: 5,
        cni_log_file: default_paths::CNI_LOG_FILE.into(),
        cni_log_level: "info".into(),
        cni_force_pool_name: false,
        logging: Logging::default(),
        kubeconfig: None,
        ippools_namespace: DEFAULT_IPPOOLS_NAMESPACE.into(),
        health_probe_bind_address: String::new(),
        metrics_bind_address: "0".into(),
        stale_ip_check_interval: DEFAULT_STALE_IP_CHECK_INTERVAL,
        stale_ip_check_count: DEFAULT_STALE_IP_CHECK_COUNT,
        released_ip_cooldown: Duration::ZERO,
    };
    let mut health: Option<String> = None;
    let mut logging = LoggingFlags::default();
    while let Some(arg) = p.next()? {
        let flag = flags::shown(&arg);
        let s = |p: &mut lexopt::Parser| -> Result<String, FlagError> { Ok(flags::text(&flag, p.value()?)?) };
        let boolean = |p: &mut lexopt::Parser| -> Result<bool, FlagError> {
            Ok(flags::boolean(&flag, p.optional_value())?)
        };
        let duration =
            |v: &str| -> Result<Duration, FlagError> { Ok(flags::duration(&flag, v, MAX_DURATION)?) };
        let Some(name) = upstream_flags::name(&arg) else {
            match arg {
                // cobra lets the reference's daemons run with empty arguments (a blank
                // templated line), and nothing else.
                Value(v) if v.is_empty() => continue,
                other => return Err(other.unexpected().into()),
            }
        };
        if let Some(f) = upstream_flags::logging_flag(&name) {
            let v = upstream_flags::value(f, &mut p)?;
            logging.set(f, &flag, v)?;
            continue;
        }
        match name.as_str() {
            "version" if boolean(&mut p)? => return Ok(Command::Version),
            "help" | "-h" if boolean(&mut p)? => return Ok(Command::Help),
            "version" | "help" | "-h" => {}
            "node-name" => node_name = s(&mut p)?,
            "bind-address" => bind = s(&mut p)?,
            "store-file" => c.store_file = s(&mut p)?.into(),
            "pools-file" => c.pools_file = Some(s(&mut p)?.into()),
            "cni-bin-dir" => c.cni_bin_dir = s(&mut p)?.into(),
            "cni-nv-ipam-bin-file" => c.cni_nv_ipam_bin_file = s(&mut p)?.into(),
            "cni-skip-nv-ipam-binary-copy" => c.cni_skip_binary_copy = boolean(&mut p)?,
            "cni-skip-nv-ipam-config-creation" => c.cni_skip_config_creation = boolean(&mut p)?,
            "cni-conf-dir" => c.cni_conf_dir = s(&mut p)?.into(),
            "cni-daemon-socket" => cni_socket = Some(s(&mut p)?),
            "cni-daemon-call-timeout" => {
                let v = s(&mut p)?;
                c.cni_daemon_call_timeout = v.trim_end_matches('s').parse().map_err(|_| {
                    FlagError(format!("--cni-daemon-call-timeout: {v:?} is not a number of seconds"))
                })?;
            }
            "cni-log-file" => c.cni_log_file = s(&mut p)?,
            "cni-log-level" => c.cni_log_level = s(&mut p)?,
            "cni-force-pool-name" => c.cni_force_pool_name = boolean(&mut p)?,
            // empty: not given (controller-runtime then reads $KUBECONFIG, else in-cluster)
            "kubeconfig" => c.kubeconfig = Some(s(&mut p)?).filter(|v| !v.is_empty()).map(Into::into),
            "ippools-namespace" => c.ippools_namespace = s(&mut p)?,
            "health-probe-bind-address" => health = Some(s(&mut p)?),
            "metrics-bind-address" => c.metrics_bind_address = s(&mut p)?,
            "stale-ip-check-interval" => {
                c.stale_ip_check_interval = duration(&s(&mut p)?)?;
                if c.stale_ip_check_interval.is_zero() {
                    return Err(FlagError("--stale-ip-check-interval must be more than 0".into()));
                }
            }
            "stale-ip-check-count-before-release" => {
                let v = s(&mut p)?;
                c.stale_ip_check_count = v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    FlagError(format!(
                        "--stale-ip-check-count-before-release: {v:?} is not a count of 1 or more"
                    ))
                })?;
            }
            "released-ip-cooldown" => c.released_ip_cooldown = duration(&s(&mut p)?)?,
            _ => return Err(lexopt::Error::UnexpectedOption(flag).into()),
        }
    }
    c.logging = logging.finish()?;
    if node_name.is_empty() {
        return Err(FlagError("--node-name is required (or set NODE_NAME)".into()));
    }
    c.node_name = node_name;
    c.health_probe_bind_address = health.unwrap_or_else(|| {
        if c.pools_file.is_some() { "0".into() } else { DEFAULT_HEALTH_PROBE_BIND_ADDRESS.into() }
    });
    c.bind_socket = socket_path("bind-address", &bind)?;
    // Unset, the plugin dials where the daemon listens.
    c.cni_daemon_socket = cni_socket.unwrap_or(bind);
    socket_path("cni-daemon-socket", &c.cni_daemon_socket)?;
    Ok(Command::Run(Box::new(c)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::LogFormat;
    use crate::upstream_flags::{Handling, Program};
    use std::ffi::OsString;

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
    fn empty_kubeconfig_is_not_given() {
        let c = run(&["--node-name=n1", "--kubeconfig="]).expect("parse");
        assert_eq!(c.kubeconfig, None);
        let c = run(&["--node-name=n1", "--kubeconfig", "/k"]).expect("parse");
        assert_eq!(c.kubeconfig, Some(PathBuf::from("/k")));
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
        assert!(c.cni_skip_binary_copy && !c.cni_skip_config_creation);
        assert_eq!(c.logging.config.format, LogFormat::Json);
        assert_eq!(c.logging.config.verbosity, 4);
    }

    /// A duration flag's syntax (crate::flags, shared with ipam-controller).
    fn parse_duration(flag: &str, v: &str) -> Result<Duration, FlagError> {
        Ok(flags::duration(&format!("--{flag}"), v, MAX_DURATION)?)
    }

    #[test]
    fn durations_and_booleans_at_the_edges() {
        let c = run(&["--node-name=n", "--released-ip-cooldown=24h", "--stale-ip-check-interval=1ms"])
            .expect("limit");
        assert_eq!(
            (c.released_ip_cooldown, c.stale_ip_check_interval),
            (MAX_DURATION, Duration::from_millis(1))
        );
        let e = run(&["--node-name=n", "--released-ip-cooldown=24h1ns"]).expect_err("over the limit");
        assert_eq!(
            e.to_string(),
            "--released-ip-cooldown \"24h1ns\" is not a duration up to 24h: use e.g. 30s, 5m, 1h30m; \
             see ipam-node --help"
        );
        let e = run(&["--node-name=n", "--stale-ip-check-interval=0s"]).expect_err("zero");
        assert!(e.to_string().contains("--stale-ip-check-interval must be more than 0"), "{e}");
        let c = run(&["--node-name=n", "--cni-force-pool-name=T", "--cni-skip-nv-ipam-binary-copy=0"])
            .expect("bools");
        assert!(c.cni_force_pool_name && !c.cni_skip_binary_copy);
        let e = run(&["--node-name=n", "--cni-force-pool-name=yes"]).expect_err("not a boolean");
        assert_eq!(e.to_string(), "--cni-force-pool-name=\"yes\": use true or false; see ipam-node --help");
        let e = run(&["--node-name=n", "-v", "loud"]).expect_err("not a number");
        assert_eq!(
            e.to_string(),
            "-v \"loud\" is not a number from 0 to 2147483647: use e.g. -v 2; see ipam-node --help"
        );
        assert_eq!(run(&["--node-name=n", "--v=9"]).expect("-v").logging.config.verbosity, 9);
    }

    #[test]
    fn cluster_flags_and_durations() {
        let c = run(&["--node-name", "n1"]).expect("parse");
        assert_eq!(c.ippools_namespace, "kube-system");
        assert_eq!(c.health_probe_bind_address, ":8083");
        assert_eq!(c.stale_ip_check_interval, Duration::from_secs(60));
        assert_eq!((c.stale_ip_check_count, c.released_ip_cooldown), (3, Duration::ZERO));
        let c = run(&["--node-name", "n1", "--pools-file", "/p"]).expect("parse");
        assert_eq!(c.health_probe_bind_address, "0", "standalone: off unless asked");
        let c = run(&[
            "--node-name=n1",
            "--kubeconfig=/k",
            "--ippools-namespace=ns",
            "--stale-ip-check-interval=1s",
            "--stale-ip-check-count-before-release=2",
            "--released-ip-cooldown=1m30s",
        ])
        .expect("parse");
        assert_eq!(c.kubeconfig, Some(PathBuf::from("/k")));
        assert_eq!(c.stale_ip_check_interval, Duration::from_secs(1));
        assert_eq!((c.stale_ip_check_count, c.released_ip_cooldown), (2, Duration::from_secs(90)));
        for (v, want) in [("500ms", 500u64), ("1.5s", 1500), ("0", 0), ("2h", 7_200_000)] {
            assert_eq!(parse_duration("x", v).expect(v), Duration::from_millis(want), "{v}");
        }
        for v in ["", "5", "1d", "s", "25h", "-1s"] {
            let e = parse_duration("released-ip-cooldown", v).expect_err(v);
            assert!(e.to_string().contains("--released-ip-cooldown"), "{e}");
        }
        assert!(run(&["--node-name=n", "--stale-ip-check-count-before-release=0"]).is_err());
    }

    #[test]
    fn every_flag_of_the_reference_in_every_spelling() {
        for f in upstream_flags::flags_of(Program::Node) {
            for spelled in upstream_flags::spellings(f) {
                let on = !spelled[0].ends_with("=false");
                // the reference's node takes any --bind-address scheme; ours unix only (the
                // examples are unix), and needs --node-name (given first, unless spelled here).
                let mut args = vec!["--node-name=n0".to_string()];
                args.extend(spelled.iter().cloned());
                match (f.name, parse(args.iter().map(OsString::from))) {
                    ("help", Ok(Command::Help)) | ("version", Ok(Command::Version)) if on => {}
                    (_, Ok(Command::Run(c))) => {
                        assert!(!(on && ["help", "version"].contains(&f.name)), "{args:?}");
                        let warned =
                            c.logging.warnings.iter().any(|w| w.starts_with(&format!("--{} ", f.name)));
                        assert_eq!(warned, f.handling == Handling::NoEffect, "{args:?}: {:?}", c.logging);
                        if f.name == "node-name" {
                            assert_eq!(c.node_name, "node1", "{args:?}: the later one wins");
                        }
                    }
                    (_, other) => panic!("{args:?}: {other:?}"),
                }
            }
        }
        assert!(matches!(parse(["-h".into()]), Ok(Command::Help)));
        // pflag has no single-dash long flags: `-node-name` is -n, unknown there and here.
        assert!(run(&["-node-name", "n"]).is_err());
    }

    #[test]
    fn the_logging_flags_reach_the_config() {
        let c = run(&[
            "--node-name=n",
            "-v=1",
            "--vmodule=server=2",
            "--logging-format=text",
            "--feature-gates=",
        ])
        .expect("parse");
        assert_eq!(c.logging.config.verbosity, 1);
        assert_eq!(c.logging.config.vmodule.len(), 1);
        assert_eq!(
            c.logging.warnings,
            ["--feature-gates is accepted for compatibility with nvidia-k8s-ipam and has no effect here"]
        );
        let e = run(&["--node-name=n", "--vmodule=server=2", "--logging-format=json"]).expect_err("json");
        assert_eq!(
            e.to_string(),
            "--vmodule: works only with --logging-format=text, as in nvidia-k8s-ipam: drop one of them; \
             see ipam-node --help"
        );
        let e = run(&["--node-name=n", "--log-flush-frequency"]).expect_err("no value");
        assert!(e.to_string().contains("--log-flush-frequency"), "{e}");
        assert!(
            run(&["--node-name=n", "", "--cni-force-pool-name", ""]).is_ok(),
            "blank arguments, as cobra"
        );
    }

    #[test]
    fn help_names_every_flag_of_the_reference() {
        let help = usage();
        for f in upstream_flags::flags_of(Program::Node) {
            assert!(
                help.contains(&format!("--{} ", f.name)) || help.contains(&format!("--{}\n", f.name)),
                "{}",
                f.name
            );
        }
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
