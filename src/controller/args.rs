//! The `ipam-controller` command line, parsed with lexopt into a [`Command`].
//!
//! Owns: flag names and defaults (the reference's `cmd/ipam-controller/app/options`, plus
//! `--node-release-grace-period`), usage text and [`ArgsError`]. Must not: touch the files the
//! flags name (see `plan`) or open sockets (see `run`).

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::logging::LogFormat;

/// Usage text printed for `--help` and on usage errors.
pub const USAGE: &str = "usage: ipam-controller [FLAGS]          (cluster mode)
       ipam-controller plan --pools FILE --nodes FILE
       ipam-controller --version

cluster mode watches IPPools and CIDRPools in --ippools-namespace and Nodes, and writes each
pool's status.allocations (one block or prefix per matching node) and status.conditions.

flags:
  --kubeconfig FILE                   kubeconfig (default: $KUBECONFIG, else in-cluster)
  --ippools-namespace NS              namespace of the pools (default kube-system)
  --leader-elect                      run leader election (Lease dd1643cf.nvidia.com)
  --leader-elect-namespace NS         namespace of the Lease (default: --ippools-namespace)
  --metrics-bind-address ADDR         /metrics address, \"0\" disables (default :8080)
  --health-probe-bind-address ADDR    /healthz, /readyz address, \"0\" disables (default :8081)
  --node-release-grace-period DUR     how long a deleted or unlabelled node keeps its block
                                      before another node may get it, e.g. 30s, 5m, 0s (default 5m)
  --webhook                           serve the validating admission webhook (HTTPS, on every
                                      replica, leader or not; /readyz fails until a certificate
                                      is loaded)
  --webhook-bind-address ADDR         webhook address (default :9443)
  --webhook-cert-dir DIR              directory with tls.crt and tls.key, re-read when they
                                      change (default /tmp/k8s-webhook-server/serving-certs)
  -v, --v N                           log verbosity: 0 info, 1-3 debug, 4+ trace (default 0)
  --logging-format text|json          log line format (default text)

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

/// Default of `--ippools-namespace` (the reference's).
pub const DEFAULT_IPPOOLS_NAMESPACE: &str = "kube-system";
/// Default of `--metrics-bind-address` (controller-runtime's).
pub const DEFAULT_METRICS_BIND_ADDRESS: &str = ":8080";
/// Default of `--health-probe-bind-address` (the reference's).
pub const DEFAULT_HEALTH_PROBE_BIND_ADDRESS: &str = ":8081";
/// Default of `--node-release-grace-period`: long enough for a drain or a reboot to finish.
pub const DEFAULT_NODE_RELEASE_GRACE: Duration = Duration::from_secs(300);
/// Default of `--webhook-bind-address` (controller-runtime's webhook port).
pub const DEFAULT_WEBHOOK_BIND_ADDRESS: &str = ":9443";
/// Default of `--webhook-cert-dir`: controller-runtime's, where the reference manifests mount
/// the certificate Secret.
pub const DEFAULT_WEBHOOK_CERT_DIR: &str = "/tmp/k8s-webhook-server/serving-certs";
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
    pub verbosity: u32,
    pub logging_format: LogFormat,
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
    UnknownCommand { command: String },
    UnexpectedArgument { argument: String },
    MissingFlag { flag: &'static str },
    MissingValue { flag: String },
    Invalid { message: String },
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
        }
    }
}

impl std::error::Error for ArgsError {}

fn from_lexopt(e: lexopt::Error) -> ArgsError {
    match e {
        lexopt::Error::MissingValue { option: Some(o) } => ArgsError::MissingValue { flag: o },
        other => ArgsError::Invalid { message: other.to_string() },
    }
}

/// An argument as the user typed it.
fn shown(arg: &lexopt::Arg) -> String {
    match arg {
        lexopt::Arg::Long(l) => format!("--{l}"),
        lexopt::Arg::Short(c) => format!("-{c}"),
        lexopt::Arg::Value(v) => v.to_string_lossy().into_owned(),
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
        leader_elect_namespace: String::new(),
        metrics_bind_address: DEFAULT_METRICS_BIND_ADDRESS.into(),
        health_probe_bind_address: DEFAULT_HEALTH_PROBE_BIND_ADDRESS.into(),
        node_release_grace: DEFAULT_NODE_RELEASE_GRACE,
        webhook: false,
        webhook_bind_address: DEFAULT_WEBHOOK_BIND_ADDRESS.into(),
        webhook_cert_dir: PathBuf::from(DEFAULT_WEBHOOK_CERT_DIR),
        verbosity: 0,
        logging_format: LogFormat::Text,
    };
    let mut first = true;
    while let Some(arg) = p.next().map_err(from_lexopt)? {
        let string = |p: &mut lexopt::Parser| -> Result<String, ArgsError> {
            p.value()
                .map_err(from_lexopt)?
                .into_string()
                .map_err(|v| ArgsError::Invalid { message: format!("{} is not UTF-8", v.to_string_lossy()) })
        };
        match arg {
            Long("version") | Short('V') => return Ok(Command::Version),
            Long("help") | Short('h') => return Ok(Command::Help),
            Value(v) if first && v == "plan" => return parse_plan(&mut p),
            Value(v) if first => {
                return Err(ArgsError::UnknownCommand { command: v.to_string_lossy().into_owned() });
            }
            Long("kubeconfig") => c.kubeconfig = Some(PathBuf::from(p.value().map_err(from_lexopt)?)),
            Long("ippools-namespace") => c.ippools_namespace = string(&mut p)?,
            Long("leader-elect") => {
                c.leader_elect = match p.optional_value() {
                    None => true,
                    Some(v) => parse_bool("--leader-elect", &v.to_string_lossy())?,
                }
            }
            Long("webhook") => {
                c.webhook = match p.optional_value() {
                    None => true,
                    Some(v) => parse_bool("--webhook", &v.to_string_lossy())?,
                }
            }
            Long("webhook-bind-address") => c.webhook_bind_address = string(&mut p)?,
            Long("webhook-cert-dir") => c.webhook_cert_dir = PathBuf::from(p.value().map_err(from_lexopt)?),
            Long("leader-elect-namespace") => c.leader_elect_namespace = string(&mut p)?,
            Long("metrics-bind-address") => c.metrics_bind_address = string(&mut p)?,
            Long("health-probe-bind-address") => c.health_probe_bind_address = string(&mut p)?,
            Long("node-release-grace-period") => {
                let v = string(&mut p)?;
                c.node_release_grace = parse_duration(&v).filter(|d| *d <= MAX_NODE_RELEASE_GRACE).ok_or(
                    ArgsError::Invalid {
                        message: format!(
                            "--node-release-grace-period {v:?} is not a duration up to 720h: use e.g. 30s, 5m, 1h30m"
                        ),
                    },
                )?;
            }
            Short('v') | Long("v") => {
                let v = string(&mut p)?;
                c.verbosity = v.parse().map_err(|_| ArgsError::Invalid {
                    message: format!("-v {v:?} is not a number: use e.g. -v 2"),
                })?;
            }
            Long("logging-format") => {
                let v = string(&mut p)?;
                c.logging_format = match v.as_str() {
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    _ => {
                        return Err(ArgsError::Invalid {
                            message: format!("--logging-format {v:?}: use text or json"),
                        });
                    }
                }
            }
            other => return Err(ArgsError::UnexpectedArgument { argument: shown(&other) }),
        }
        first = false;
    }
    if c.leader_elect_namespace.is_empty() {
        c.leader_elect_namespace = c.ippools_namespace.clone();
    }
    Ok(Command::Cluster(c))
}

fn parse_bool(flag: &str, v: &str) -> Result<bool, ArgsError> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ArgsError::Invalid { message: format!("{flag}={v:?}: use true or false") }),
    }
}

/// A Go-style duration of whole units: `0`, `30s`, `5m`, `1h30m`, `500ms`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let d = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60)?),
            "h" => Duration::from_secs(n.checked_mul(3600)?),
            _ => return None,
        };
        total = total.checked_add(d)?;
        rest = &rest[unit_len..];
    }
    Some(total)
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

    fn parse_str(a: &[&str]) -> Result<Command, String> {
        parse(a.iter().map(OsString::from)).map_err(|e| e.to_string())
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
        assert_eq!((c.ippools_namespace.as_str(), c.leader_elect_namespace.as_str()), ("ns1", "ns1"));
        assert!(c.leader_elect);
        assert_eq!(c.node_release_grace, Duration::from_secs(90));
        assert_eq!((c.verbosity, c.logging_format), (2, LogFormat::Json));
        assert_eq!(parse_str(&["--version"]), Ok(Command::Version));
        assert_eq!(parse_str(&["-h"]), Ok(Command::Help));
        assert_eq!(
            parse_str(&["plan", "--pools", "p.yaml", "--nodes=n.json"]),
            Ok(Command::Plan { pools: "p.yaml".into(), nodes: "n.json".into() })
        );
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
            assert_eq!(c.verbosity, v, "{args:?}");
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
