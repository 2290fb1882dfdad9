//! The `ipam-controller` command line, parsed with lexopt into a [`Command`].
//!
//! Owns: flag names and defaults (the reference's, plus `--node-release-grace-period` and the
//! webhook's address and certificates), usage text and [`ArgsError`]. Value syntax (durations,
//! booleans, `-v`) is `crate::flags`', shared with `ipam-node`; the logging flags every
//! Kubernetes component has (`-v`, `--vmodule`, `--logging-format`, `--feature-gates`, ...)
//! and the table of the reference's flags are `crate::upstream_flags`'; default paths are
//! `crate::default_paths`'. Must not: touch the files the flags name (see `plan`) or open
//! sockets (see `run`).

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::default_paths;
use crate::flags::{self, ValueError, shown};
use crate::upstream_flags::{self, Logging, LoggingFlags};

/// The usage text `--help` prints: [`USAGE`] and the logging flags' section.
pub fn usage() -> String {
    format!("{USAGE}\n\n{}", upstream_flags::help_section())
}

/// Usage text of the controller's own flags (see [`usage`]).
pub const USAGE: &str = "usage: ipam-controller [FLAGS]          (cluster mode)
       ipam-controller plan --pools FILE --nodes FILE
       ipam-controller --version

cluster mode watches IPPools and CIDRPools in --ippools-namespace and Nodes, and writes each
pool's status.allocations (one block or prefix per matching node) and status.conditions.

flags:
  --kubeconfig FILE                   kubeconfig (default: $KUBECONFIG, else in-cluster)
  --ippools-namespace NS              namespace of the pools (default kube-system)
  --leader-elect                      run leader election (Lease dd1643cf.nvidia.com)
  --leader-elect-namespace NS         namespace of the Lease (default kube-system)
  --metrics-bind-address ADDR         /metrics address, \"0\" disables (default :8080)
  --health-probe-bind-address ADDR    /healthz, /readyz address, \"0\" disables (default :8081)
  --node-release-grace-period DUR     how long a deleted or unlabelled node keeps its block
                                      before another node may get it, e.g. 30s, 1.5m, 0s
                                      (default 5m, at most 720h)
  --webhook                           serve the validating admission webhook (HTTPS, on every
                                      replica, leader or not; /readyz fails until a certificate
                                      is loaded)
  --webhook-bind-address ADDR         webhook address (default :9443)
  --webhook-cert-dir DIR              directory with tls.crt and tls.key, re-read when they
                                      change (default /tmp/k8s-webhook-server/serving-certs)
  -h, --help                          print this and exit
  --version                           print the version and exit

webhook (paths /validate-nv-ipam-nvidia-com-v1alpha1-ippool and -cidrpool; CREATE, UPDATE):
  refuses a pool the controller would mark invalid (same checks, every broken field named);
  an UPDATE that would move a block or prefix a node holds (annotation
  nv-ipam.nvidia.com/allow-reallocation: \"true\" allows it); a pool whose subnet or cidr
  overlaps another pool of the same kind in --ippools-namespace (an IPPool over a CIDRPool
  only warns; nv-ipam.nvidia.com/allow-overlap: \"true\" allows it, e.g. for isolated L2
  networks).

commands:
  plan    plan every IPPool and CIDRPool of --pools for the nodes of --nodes and print the
          pools with status.allocations filled in, as a JSON List (files: JSON or YAML)";

/// Default of `--ippools-namespace`, shared with ipam-node.
pub use crate::flags::DEFAULT_IPPOOLS_NAMESPACE;
/// Default of `--leader-elect-namespace`: the reference's, whatever `--ippools-namespace`
/// says, so that a replica of either holds the same Lease in a rolling upgrade.
pub const DEFAULT_LEADER_ELECT_NAMESPACE: &str = "kube-system";
/// Default of `--metrics-bind-address` (controller-runtime's).
pub const DEFAULT_METRICS_BIND_ADDRESS: &str = ":8080";
/// Default of `--health-probe-bind-address` (the reference's).
pub const DEFAULT_HEALTH_PROBE_BIND_ADDRESS: &str = ":8081";
/// Default of `--node-release-grace-period`: long enough for a drain or a reboot to finish.
pub const DEFAULT_NODE_RELEASE_GRACE: Duration = Duration::from_secs(300);
/// Default of `--webhook-bind-address` (controller-runtime's webhook port).
pub const DEFAULT_WEBHOOK_BIND_ADDRESS: &str = ":9443";
/// Longest `--node-release-grace-period` accepted (30 days); longer is surely a typo.
pub const MAX_NODE_RELEASE_GRACE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Cluster-mode settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterArgs {
    pub kubeconfig: Option<PathBuf>,
    pub ippools_namespace: String,
    pub leader_elect: bool,
    pub leader_elect_namespace: String,
    pub metrics_bind_address: String,
    pub health_probe_bind_address: String,
    pub node_release_grace: Duration,
    /// Serve the validating admission webhook.
    pub webhook: bool,
    pub webhook_bind_address: String,
    /// Holds `tls.crt` and `tls.key`.
    pub webhook_cert_dir: PathBuf,
    /// `-v`, `--vmodule`, `--logging-format`, and warnings for the flags with no effect.
    pub logging: Logging,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Version,
    Help,
    /// No subcommand: cluster mode.
    Cluster(ClusterArgs),
    Plan {
        pools: PathBuf,
        nodes: PathBuf,
    },
}

/// A command line that cannot be run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgsError {
    UnknownCommand {
        command: String,
    },
    UnexpectedArgument {
        argument: String,
    },
    MissingFlag {
        flag: &'static str,
    },
    MissingValue {
        flag: String,
    },
    Invalid {
        message: String,
    },
    /// A value `crate::flags` refused (durations, booleans, `-v`, `--logging-format`).
    Value(ValueError),
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgsError::UnknownCommand { command } => write!(f, "unknown command {command:?}: use plan"),
            ArgsError::UnexpectedArgument { argument } => {
                write!(f, "unexpected argument {argument:?}: see --help")
            }
            ArgsError::MissingFlag { flag } => write!(f, "plan needs {flag} FILE"),
            ArgsError::MissingValue { flag } => write!(f, "{flag} needs a value"),
            ArgsError::Invalid { message } => write!(f, "{message}: see --help"),
            ArgsError::Value(e) => write!(f, "{e}: see --help"),
        }
    }
}

impl std::error::Error for ArgsError {}

impl From<ValueError> for ArgsError {
    fn from(e: ValueError) -> ArgsError {
        ArgsError::Value(e)
    }
}

fn from_lexopt(e: lexopt::Error) -> ArgsError {
    match e {
        lexopt::Error::MissingValue { option: Some(o) } => ArgsError::MissingValue { flag: o },
        other => ArgsError::Invalid { message: other.to_string() },
    }
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, ArgsError> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let mut c = ClusterArgs {
        kubeconfig: None,
        ippools_namespace: DEFAULT_IPPOOLS_NAMESPACE.into(),
        leader_elect: false,
        leader_elect_namespace: DEFAULT_LEADER_ELECT_NAMESPACE.into(),
        metrics_bind_address: DEFAULT_METRICS_BIND_ADDRESS.into(),
        health_probe_bind_address: DEFAULT_HEALTH_PROBE_BIND_ADDRESS.into(),
        node_release_grace: DEFAULT_NODE_RELEASE_GRACE,
        webhook: false,
        webhook_bind_address: DEFAULT_WEBHOOK_BIND_ADDRESS.into(),
        webhook_cert_dir: PathBuf::from(default_paths::WEBHOOK_CERT_DIR),
        logging: Logging::default(),
    };
    let mut logging = LoggingFlags::default();
    let mut first = true;
    while let Some(arg) = p.next().map_err(from_lexopt)? {
        let flag = shown(&arg);
        let string = |p: &mut lexopt::Parser| -> Result<String, ArgsError> {
            Ok(flags::text(&flag, p.value().map_err(from_lexopt)?)?)
        };
        let boolean = |p: &mut lexopt::Parser| -> Result<bool, ArgsError> {
            Ok(flags::boolean(&flag, p.optional_value())?)
        };
        let Some(name) = upstream_flags::name(&arg) else {
            let Value(v) = arg else { continue };
            match v {
                // cobra lets the reference's daemons run with empty arguments (a blank
                // templated line), and nothing else.
                v if v.is_empty() => continue,
                v if first && v == "plan" => return parse_plan(&mut p),
                v if first => {
                    return Err(ArgsError::UnknownCommand { command: v.to_string_lossy().into_owned() });
                }
                v => {
                    return Err(ArgsError::UnexpectedArgument { argument: v.to_string_lossy().into_owned() });
                }
            }
        };
        first = false;
        if let Some(f) = upstream_flags::logging_flag(&name) {
            let v = upstream_flags::value(f, &mut p).map_err(from_lexopt)?;
            logging.set(f, &flag, v)?;
            continue;
        }
        match name.as_str() {
            "version" | "-V" if boolean(&mut p)? => return Ok(Command::Version),
            "help" | "-h" if boolean(&mut p)? => return Ok(Command::Help),
            "version" | "-V" | "help" | "-h" => {}
            // empty: not given (controller-runtime then reads $KUBECONFIG, else in-cluster)
            "kubeconfig" => {
                c.kubeconfig =
                    Some(PathBuf::from(p.value().map_err(from_lexopt)?)).filter(|v| !v.as_os_str().is_empty())
            }
            "ippools-namespace" => c.ippools_namespace = string(&mut p)?,
            "leader-elect" => c.leader_elect = boolean(&mut p)?,
            "webhook" => c.webhook = boolean(&mut p)?,
            "webhook-bind-address" => c.webhook_bind_address = string(&mut p)?,
            "webhook-cert-dir" => c.webhook_cert_dir = PathBuf::from(p.value().map_err(from_lexopt)?),
            "leader-elect-namespace" => c.leader_elect_namespace = string(&mut p)?,
            "metrics-bind-address" => c.metrics_bind_address = string(&mut p)?,
            "health-probe-bind-address" => c.health_probe_bind_address = string(&mut p)?,
            "node-release-grace-period" => {
                c.node_release_grace = flags::duration(&flag, &string(&mut p)?, MAX_NODE_RELEASE_GRACE)?;
            }
            _ => return Err(ArgsError::UnexpectedArgument { argument: flag }),
        }
    }
    if c.leader_elect_namespace.is_empty() {
        // a blank templated value: not given
        c.leader_elect_namespace = DEFAULT_LEADER_ELECT_NAMESPACE.into();
    }
    c.logging = logging.finish()?;
    Ok(Command::Cluster(c))
}

fn parse_plan(p: &mut lexopt::Parser) -> Result<Command, ArgsError> {
    use lexopt::prelude::*;
    let (mut pools, mut nodes) = (None, None);
    while let Some(arg) = p.next().map_err(from_lexopt)? {
        match arg {
            Long("pools") => pools = Some(PathBuf::from(p.value().map_err(from_lexopt)?)),
            Long("nodes") => nodes = Some(PathBuf::from(p.value().map_err(from_lexopt)?)),
            Long("help") | Short('h') => return Ok(Command::Help),
            other => return Err(ArgsError::UnexpectedArgument { argument: shown(&other) }),
        }
    }
    Ok(Command::Plan {
        pools: pools.ok_or(ArgsError::MissingFlag { flag: "--pools" })?,
        nodes: nodes.ok_or(ArgsError::MissingFlag { flag: "--nodes" })?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::{LogFormat, VModuleRule};
    use crate::upstream_flags::{Handling, Program};

    fn parse_str(a: &[&str]) -> Result<Command, String> {
        parse(a.iter().map(OsString::from)).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_kubeconfig_is_not_given() {
        let Ok(Command::Cluster(c)) = parse_str(&["--kubeconfig="]) else { panic!("cluster mode") };
        assert_eq!(c.kubeconfig, None);
        let Ok(Command::Cluster(c)) = parse_str(&["--kubeconfig", "/k"]) else { panic!("cluster mode") };
        assert_eq!(c.kubeconfig, Some(PathBuf::from("/k")));
    }

    #[test]
    fn commands() {
        let Ok(Command::Cluster(c)) = parse_str(&[]) else { panic!("cluster mode") };
        assert_eq!(c.ippools_namespace, "kube-system");
        assert_eq!(c.leader_elect_namespace, "kube-system");
        assert!(!c.leader_elect);
        assert_eq!(
            (c.metrics_bind_address.as_str(), c.health_probe_bind_address.as_str()),
            (":8080", ":8081")
        );
        assert_eq!(c.node_release_grace, Duration::from_secs(300));
        let Ok(Command::Cluster(c)) = parse_str(&[
            "--ippools-namespace=ns1",
            "--leader-elect",
            "--node-release-grace-period",
            "1m30s",
            "-v",
            "2",
            "--logging-format",
            "json",
        ]) else {
            panic!("cluster mode")
        };
        // the Lease stays where the reference keeps it, wherever the pools are
        assert_eq!((c.ippools_namespace.as_str(), c.leader_elect_namespace.as_str()), ("ns1", "kube-system"));
        let lease_ns = |a: &[&str]| match parse_str(a) {
            Ok(Command::Cluster(c)) => c.leader_elect_namespace,
            other => panic!("cluster mode: {other:?}"),
        };
        assert_eq!(lease_ns(&["--ippools-namespace=ns1", "--leader-elect-namespace", "ns2"]), "ns2");
        assert_eq!(lease_ns(&["--ippools-namespace=ns1", "--leader-elect-namespace="]), "kube-system");
        assert!(c.leader_elect);
        assert_eq!(c.node_release_grace, Duration::from_secs(90));
        assert_eq!((c.logging.config.verbosity, c.logging.config.format), (2, LogFormat::Json));
        assert_eq!(parse_str(&["--version"]), Ok(Command::Version));
        assert_eq!(parse_str(&["-h"]), Ok(Command::Help));
        assert_eq!(
            parse_str(&["plan", "--pools", "p.yaml", "--nodes=n.json"]),
            Ok(Command::Plan { pools: "p.yaml".into(), nodes: "n.json".into() })
        );
    }

    fn cluster(a: &[&str]) -> ClusterArgs {
        match parse_str(a) {
            Ok(Command::Cluster(c)) => c,
            other => panic!("{a:?}: {other:?}"),
        }
    }

    #[test]
    fn every_flag_of_the_reference_in_every_spelling() {
        for f in upstream_flags::flags_of(Program::Controller) {
            for args in upstream_flags::spellings(f) {
                let on = !args[0].ends_with("=false");
                match (f.name, parse(args.iter().map(OsString::from))) {
                    ("help", Ok(Command::Help)) | ("version", Ok(Command::Version)) if on => {}
                    (_, Ok(Command::Cluster(c))) => {
                        assert!(!(on && ["help", "version"].contains(&f.name)), "{args:?}");
                        let warned =
                            c.logging.warnings.iter().any(|w| w.starts_with(&format!("--{} ", f.name)));
                        assert_eq!(warned, f.handling == Handling::NoEffect, "{args:?}: {:?}", c.logging);
                    }
                    (_, other) => panic!("{args:?}: {other:?}"),
                }
            }
        }
        assert_eq!(parse_str(&["-h"]), Ok(Command::Help));
        assert_eq!(parse_str(&["--version=true"]), Ok(Command::Version));
        // pflag has no single-dash long flags: `-kubeconfig` is -k, unknown there and here.
        assert_eq!(parse_str(&["-kubeconfig", "k"]), Err("unexpected argument \"-k\": see --help".into()));
    }

    #[test]
    fn the_logging_flags_reach_the_config() {
        let c = cluster(&[
            "--v=3",
            "--vmodule=reconcile*=4",
            "--vmodule",
            "webhook=2",
            "--log_flush_frequency=1s",
            "--feature-gates=LoggingAlphaOptions=true",
            "--log-text-split-stream",
            "--log-json-info-buffer-size=1Mi",
        ]);
        assert_eq!(c.logging.config.verbosity, 3);
        assert_eq!(
            c.logging.config.vmodule,
            [
                VModuleRule { pattern: "reconcile*".into(), verbosity: 4 },
                VModuleRule { pattern: "webhook".into(), verbosity: 2 }
            ]
        );
        assert_eq!(c.logging.warnings.len(), 4, "{:?}", c.logging.warnings);
        assert_eq!(
            parse_str(&["--log-text-split-stream"]),
            Err("--log-text-split-stream: needs the LoggingAlphaOptions feature gate, as in nvidia-k8s-ipam: \
                 add --feature-gates=LoggingAlphaOptions=true: see --help"
                .into())
        );
        assert_eq!(
            parse_str(&["--vmodule=x"]),
            Err("--vmodule \"x\" is not PATTERN=N: use comma-separated entries such as server=2,store*=4 \
                 (N from 0 to 2147483647): see --help"
                .into())
        );
    }

    #[test]
    fn blank_arguments_are_skipped_as_cobra_skips_them() {
        assert!(cluster(&["", "--leader-elect", ""]).leader_elect);
        assert_eq!(cluster(&["--", ""]).ippools_namespace, "kube-system");
        assert_eq!(parse_str(&["--leader-elect", "x"]), Err("unexpected argument \"x\": see --help".into()));
    }

    #[test]
    fn errors_name_the_flag() {
        assert_eq!(parse_str(&["plan", "--pools", "p"]), Err("plan needs --nodes FILE".into()));
        assert_eq!(parse_str(&["plan", "--nodes", "n"]), Err("plan needs --pools FILE".into()));
        assert_eq!(parse_str(&["plan", "--pools"]), Err("--pools needs a value".into()));
        assert_eq!(
            parse_str(&["plan", "--bogus"]),
            Err("unexpected argument \"--bogus\": see --help".into())
        );
        assert_eq!(parse_str(&["apply"]), Err("unknown command \"apply\": use plan".into()));
        assert_eq!(
            parse_str(&["--node-release-grace-period", "5 minutes"]),
            Err("--node-release-grace-period \"5 minutes\" is not a duration up to 720h: use e.g. 30s, 5m, \
                 1h30m: see --help"
                .into())
        );
    }

    #[test]
    fn go_style_spellings() {
        for (args, v) in [(&["-v=2"][..], 2), (&["--v=3"][..], 3), (&["-v4"][..], 4)] {
            let Ok(Command::Cluster(c)) = parse_str(args) else { panic!("{args:?}") };
            assert_eq!(c.logging.config.verbosity, v, "{args:?}");
        }
        let Ok(Command::Cluster(c)) = parse_str(&["--leader-elect=false", "--metrics-bind-address=0"]) else {
            panic!("cluster mode")
        };
        assert!(!c.leader_elect);
        assert_eq!(c.metrics_bind_address, "0");
        assert_eq!(
            parse_str(&["--leader-elect=maybe"]),
            Err("--leader-elect=\"maybe\": use true or false: see --help".into())
        );
    }

    #[test]
    fn webhook_flags() {
        let Ok(Command::Cluster(c)) = parse_str(&[]) else { panic!("cluster mode") };
        assert!(!c.webhook);
        assert_eq!(c.webhook_bind_address, ":9443");
        assert_eq!(c.webhook_cert_dir, PathBuf::from("/tmp/k8s-webhook-server/serving-certs"));
        let Ok(Command::Cluster(c)) =
            parse_str(&["--webhook", "--webhook-bind-address=127.0.0.1:0", "--webhook-cert-dir", "/certs"])
        else {
            panic!("cluster mode")
        };
        assert!(c.webhook);
        assert_eq!((c.webhook_bind_address.as_str(), c.webhook_cert_dir), ("127.0.0.1:0", "/certs".into()));
        let Ok(Command::Cluster(c)) = parse_str(&["--webhook=false"]) else { panic!("cluster mode") };
        assert!(!c.webhook);
        assert_eq!(
            parse_str(&["--webhook=yes"]),
            Err("--webhook=\"yes\": use true or false: see --help".into())
        );
        assert_eq!(parse_str(&["--webhook-cert-dir"]), Err("--webhook-cert-dir needs a value".into()));
        for flag in ["--webhook ", "--webhook-bind-address", "--webhook-cert-dir", "allow-reallocation"] {
            assert!(USAGE.contains(flag), "--help mentions {flag}");
        }
    }

    #[test]
    fn help_names_every_flag_of_the_reference() {
        let help = usage();
        for f in upstream_flags::flags_of(Program::Controller) {
            assert!(
                help.contains(&format!("--{} ", f.name)) || help.contains(&format!("--{}\n", f.name)),
                "{}",
                f.name
            );
        }
    }

    /// The grace period's duration syntax (crate::flags, shared with ipam-node).
    fn parse_duration(s: &str) -> Option<Duration> {
        flags::duration("--node-release-grace-period", s, MAX_NODE_RELEASE_GRACE).ok()
    }

    #[test]
    fn the_node_daemons_durations_are_accepted() {
        // Before crate::flags the controller refused decimals and sub-second units the node took.
        for (v, want) in
            [("1.5m", 90_000u64), ("1.5h", 5_400_000), ("90s", 90_000), ("250ms", 250), ("0.5s", 500)]
        {
            let Ok(Command::Cluster(c)) = parse_str(&["--node-release-grace-period", v]) else {
                panic!("{v}")
            };
            assert_eq!(c.node_release_grace, Duration::from_millis(want), "{v}");
        }
        let Ok(Command::Cluster(c)) = parse_str(&["--node-release-grace-period=720h"]) else {
            panic!("limit")
        };
        assert_eq!(c.node_release_grace, MAX_NODE_RELEASE_GRACE);
        assert_eq!(
            parse_str(&["--node-release-grace-period=720h1s"]),
            Err("--node-release-grace-period \"720h1s\" is not a duration up to 720h: use e.g. 30s, 5m, 1h30m: \
                 see --help"
                .into())
        );
        let Ok(Command::Cluster(c)) = parse_str(&["--leader-elect=t", "--webhook=TRUE"]) else {
            panic!("bools")
        };
        assert!(c.leader_elect && c.webhook, "Go's boolean spellings, as ipam-node takes them");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("m"), None);
    }
}
