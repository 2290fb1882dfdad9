//! `kubectl-nv_ipam`'s command line, parsed once into [`Args`] (no I/O).
//!
//! Owns: which commands and flags exist, their defaults and the usage text. Must not: act on
//! them.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use lexopt::prelude::*;

use crate::flags::{self, DEFAULT_IPPOOLS_NAMESPACE};

/// The ServiceAccount whose audience-bound token is sent to the nodes (deploy/rbac/viewer.yaml).
pub const DEFAULT_SERVICE_ACCOUNT: &str = "nv-ipam-viewer";
/// The labels of the ipam-node pods (deploy/base/node.yaml's DaemonSet selector).
pub const DEFAULT_DAEMON_SELECTOR: &str = "app.kubernetes.io/name=nv-ipam,app.kubernetes.io/component=node";
/// The port of the node's health/metrics listener, which serves `/v1/allocations`
/// (`ipam-node --health-probe-bind-address`, default `:8083`).
pub const DEFAULT_DAEMON_PORT: u16 = 8083;

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    WhoHas(IpAddr),
    Usage,
    /// `fix`: remove the status entries of missing nodes that no pod is bound to; `force`: those
    /// with pods too.
    Check {
        fix: bool,
        force: bool,
    },
    Help,
    Version,
}

/// Output format (`-o`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

/// Everything the command line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub command: Command,
    pub output: Output,
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    /// The pools' namespace (`-n`): the daemons' `--ippools-namespace`.
    pub namespace: String,
    /// Where the ipam-node pods and the ServiceAccount are (`--node-namespace`, default `-n`).
    pub node_namespace: String,
    /// `usage --pool`: one pool's rows.
    pub pool: Option<String>,
    /// `--node`: only this node is asked and shown.
    pub node: Option<String>,
    pub service_account: String,
    pub token_file: Option<PathBuf>,
    pub daemon_selector: String,
    pub daemon_port: u16,
    /// For tests and debugging: ask these nodes directly (`NODE=http://HOST:PORT`) instead of
    /// through the pod proxy; only they are asked.
    pub node_endpoints: Vec<(String, String)>,
    /// Standalone host: read this store instead of a cluster.
    pub store_file: Option<PathBuf>,
    pub pools_file: Option<PathBuf>,
    /// Standalone: the node name the pools file's status entries are for.
    pub node_name: Option<String>,
}

/// A usage error (exit code 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; see kubectl-nv_ipam --help", self.0)
    }
}

impl std::error::Error for UsageError {}

impl From<lexopt::Error> for UsageError {
    fn from(e: lexopt::Error) -> UsageError {
        UsageError(e.to_string())
    }
}

impl From<flags::ValueError> for UsageError {
    fn from(e: flags::ValueError) -> UsageError {
        UsageError(e.to_string())
    }
}

pub const USAGE: &str = "usage: kubectl nv-ipam COMMAND [flags]      (the kubectl-nv_ipam plugin)

Commands:
  who-has IP          the pool and node block holding IP and, if it is allocated, the pod
                      (namespace, name, UID), container ID, interface and since when
  usage               per pool and node: block, size, allocated, free, static, released in
                      cooldown; fullest blocks first (--pool P, --node N to narrow)
  check [--fix [--force]]
                      inconsistencies, each with the command that fixes it: allocations of
                      pods that are gone, addresses outside their node's block, one address on
                      two nodes, pool status entries of deleted nodes (--fix removes those no
                      pod is bound to any more; --force those too), nodes a pool selects that
                      have no block

Flags:
  -o, --output table|json|yaml   output format (default table)
  -n, --namespace NS      namespace of the IPPools/CIDRPools (default kube-system, as the
                          daemons'; the manifests of deploy/ use nv-ipam)
  --node-namespace NS     namespace of the ipam-node pods and the ServiceAccount (default: -n)
  --kubeconfig PATH       kubeconfig (default $KUBECONFIG, then ~/.kube/config, then in-cluster)
  --context NAME          kubeconfig context (default its current-context)
  --node NAME             ask and show only this node
  --pool NAME             usage: only this pool
  --service-account NAME  ServiceAccount whose token (audience nv-ipam-node) is sent to the
                          nodes (default nv-ipam-viewer, deploy/rbac/viewer.yaml)
  --token-file PATH       send this token instead (it must be for audience nv-ipam-node)
  --daemon-selector SEL   labels of the ipam-node pods (default app.kubernetes.io/name=nv-ipam,
                          app.kubernetes.io/component=node)
  --daemon-port PORT      ipam-node's --health-probe-bind-address port (default 8083)
  --store-file PATH       standalone host: read this store (read-only, shared lock) instead of
                          a cluster; needs the store's owner (root)
  --pools-file PATH       standalone: the ipam-node --pools-file, for the blocks (without it
                          check judges no blocks)
  --node-name NAME        standalone: the ipam-node --node-name (default $NODE_NAME, then the
                          host name)
  -h, --help              this text
  --version               the version

Exit codes: 0 done (who-has: the address is allocated; check: nothing found); 1 who-has: the
address is not allocated on any node that answered, check: inconsistencies remain; 2 usage
error; 3 the API server, the store or at least one node could not be read (what could be read
is still printed).
";

/// The one IP address of `who-has`.
fn one_ip(v: &[String]) -> Result<IpAddr, UsageError> {
    match v {
        [x] => x.parse().map_err(|_| UsageError(format!("who-has: {x:?} is not an IP address"))),
        [] => Err(UsageError("who-has needs an IP address".into())),
        _ => Err(UsageError(format!("who-has takes one IP address, got {}", v.len()))),
    }
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = std::ffi::OsString>) -> Result<Args, UsageError> {
    let mut p = lexopt::Parser::from_args(args);
    let mut a = Args {
        command: Command::Help,
        output: Output::Table,
        kubeconfig: None,
        context: None,
        namespace: DEFAULT_IPPOOLS_NAMESPACE.into(),
        node_namespace: String::new(),
        pool: None,
        node: None,
        service_account: DEFAULT_SERVICE_ACCOUNT.into(),
        token_file: None,
        daemon_selector: DEFAULT_DAEMON_SELECTOR.into(),
        daemon_port: DEFAULT_DAEMON_PORT,
        node_endpoints: Vec::new(),
        store_file: None,
        pools_file: None,
        node_name: None,
    };
    let mut node_namespace = None;
    let mut positional: Vec<String> = Vec::new();
    let mut fix = false;
    let mut force = false;
    let mut help = false;
    let mut version = false;
    while let Some(arg) = p.next()? {
        let flag = flags::shown(&arg);
        let s =
            |p: &mut lexopt::Parser| -> Result<String, UsageError> { Ok(flags::text(&flag, p.value()?)?) };
        match arg {
            Short('o') | Long("output") => {
                a.output = match s(&mut p)?.as_str() {
                    "table" | "wide" => Output::Table,
                    "json" => Output::Json,
                    "yaml" => Output::Yaml,
                    other => return Err(UsageError(format!("{flag} {other:?}: use table, json or yaml"))),
                }
            }
            Short('n') | Long("namespace") => a.namespace = s(&mut p)?,
            Long("node-namespace") => node_namespace = Some(s(&mut p)?),
            // empty: not given, as kubectl takes it
            Long("kubeconfig") => a.kubeconfig = Some(s(&mut p)?).filter(|v| !v.is_empty()).map(Into::into),
            Long("context") => a.context = Some(s(&mut p)?),
            Long("node") => a.node = Some(s(&mut p)?),
            Long("pool") => a.pool = Some(s(&mut p)?),
            Long("service-account") => a.service_account = s(&mut p)?,
            Long("token-file") => a.token_file = Some(s(&mut p)?.into()),
            Long("daemon-selector") => a.daemon_selector = s(&mut p)?,
            Long("daemon-port") => {
                let v = s(&mut p)?;
                a.daemon_port = v
                    .parse()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| UsageError(format!("{flag} {v:?} is not a port: use e.g. 8083")))?;
            }
            Long("node-endpoint") => {
                let v = s(&mut p)?;
                let (node, url) =
                    v.split_once('=')
                        .filter(|(n, u)| !n.is_empty() && u.starts_with("http"))
                        .ok_or_else(|| UsageError(format!("{flag} {v:?}: use NODE=http://HOST:PORT")))?;
                a.node_endpoints.push((node.to_string(), url.trim_end_matches('/').to_string()));
            }
            Long("store-file") => a.store_file = Some(s(&mut p)?.into()),
            Long("pools-file") => a.pools_file = Some(s(&mut p)?.into()),
            Long("node-name") => a.node_name = Some(s(&mut p)?),
            Long("fix") => fix = flags::boolean(&flag, p.optional_value())?,
            Long("force") => force = flags::boolean(&flag, p.optional_value())?,
            Short('h') | Long("help") => help = true,
            Long("version") => version = true,
            Value(v) => positional.push(flags::text("argument", v)?),
            other => return Err(other.unexpected().into()),
        }
    }
    a.node_namespace = node_namespace.unwrap_or_else(|| a.namespace.clone());
    if help {
        return Ok(Args { command: Command::Help, ..a });
    }
    if version {
        return Ok(Args { command: Command::Version, ..a });
    }
    let Some((cmd, rest)) = positional.split_first() else {
        return Err(UsageError("no command: use who-has, usage or check".into()));
    };
    a.command = match cmd.as_str() {
        "who-has" => Command::WhoHas(one_ip(rest)?),
        "usage" if rest.is_empty() => Command::Usage,
        "check" if rest.is_empty() => Command::Check { fix, force },
        "usage" | "check" => {
            return Err(UsageError(format!("{cmd} takes no arguments, got {:?}", rest.join(" "))));
        }
        other => return Err(UsageError(format!("unknown command {other:?}: use who-has, usage or check"))),
    };
    if fix && !matches!(a.command, Command::Check { .. }) {
        return Err(UsageError("--fix is a flag of check".into()));
    }
    if force && !fix {
        return Err(UsageError("--force goes with check --fix".into()));
    }
    if a.pool.is_some() && a.command != Command::Usage {
        return Err(UsageError("--pool is a flag of usage".into()));
    }
    if a.store_file.is_none() && (a.pools_file.is_some() || a.node_name.is_some()) {
        return Err(UsageError(
            "--pools-file and --node-name go with --store-file (a standalone host)".into(),
        ));
    }
    if a.store_file.is_some() && matches!(a.command, Command::Check { fix: true, .. }) {
        return Err(UsageError("check --fix needs a cluster; a store file is only read".into()));
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(args: &[&str]) -> Result<Args, UsageError> {
        parse(args.iter().map(std::ffi::OsString::from))
    }

    #[test]
    fn commands_and_defaults() {
        let a = parse_str(&["who-has", "192.168.0.5"]).expect("who-has");
        assert_eq!(a.command, Command::WhoHas("192.168.0.5".parse().expect("ip")));
        assert_eq!((a.namespace.as_str(), a.node_namespace.as_str()), ("kube-system", "kube-system"));
        assert_eq!(
            (a.output, a.daemon_port, a.service_account.as_str()),
            (Output::Table, 8083, "nv-ipam-viewer")
        );
        let a =
            parse_str(&["-n", "nv-ipam", "usage", "--pool=p1", "-o", "yaml", "--node", "n1"]).expect("usage");
        assert_eq!((a.command, a.output), (Command::Usage, Output::Yaml));
        assert_eq!(
            (a.pool.as_deref(), a.node.as_deref(), a.node_namespace.as_str()),
            (Some("p1"), Some("n1"), "nv-ipam")
        );
        let a = parse_str(&["check", "--fix", "--node-namespace", "sys", "--context", "c"]).expect("check");
        assert_eq!(
            (a.command, a.node_namespace.as_str(), a.context.as_deref()),
            (Command::Check { fix: true, force: false }, "sys", Some("c"))
        );
        let a = parse_str(&["check", "--fix", "--force"]).expect("force");
        assert_eq!(a.command, Command::Check { fix: true, force: true });
        let a = parse_str(&["--node-endpoint", "n1=http://127.0.0.1:9/", "check"]).expect("endpoint");
        assert_eq!(a.node_endpoints, vec![("n1".to_string(), "http://127.0.0.1:9".to_string())]);
        let a = parse_str(&["--store-file", "/s", "--pools-file", "/p", "--node-name", "h", "usage"])
            .expect("local");
        assert_eq!(a.store_file, Some(PathBuf::from("/s")));
        assert_eq!(parse_str(&["--help"]).expect("help").command, Command::Help);
        assert_eq!(parse_str(&["usage", "--version"]).expect("v").command, Command::Version);
    }

    #[test]
    fn empty_kubeconfig_is_not_given() {
        let a = parse_str(&["usage", "--kubeconfig="]).expect("usage");
        assert_eq!(a.kubeconfig, None);
        let a = parse_str(&["usage", "--kubeconfig", "/k"]).expect("usage");
        assert_eq!(a.kubeconfig, Some(std::path::PathBuf::from("/k")));
    }

    #[test]
    fn usage_errors_name_the_problem() {
        let e = |args: &[&str]| parse_str(args).expect_err("usage error").to_string();
        assert_eq!(e(&[]), "no command: use who-has, usage or check; see kubectl-nv_ipam --help");
        assert!(e(&["who-has"]).contains("who-has needs an IP address"));
        assert!(e(&["who-has", "10.0.0.300"]).contains("\"10.0.0.300\" is not an IP address"));
        assert!(e(&["who-has", "1.2.3.4", "5.6.7.8"]).contains("who-has takes one IP address, got 2"));
        assert!(e(&["frobnicate"]).contains("unknown command \"frobnicate\""));
        assert!(e(&["usage", "extra"]).contains("usage takes no arguments"));
        assert!(e(&["usage", "--fix"]).contains("--fix is a flag of check"));
        assert!(e(&["check", "--force"]).contains("--force goes with check --fix"));
        assert!(e(&["check", "--pool", "p"]).contains("--pool is a flag of usage"));
        assert!(e(&["-o", "xml", "usage"]).contains("-o \"xml\": use table, json or yaml"));
        assert!(e(&["--daemon-port", "0", "usage"]).contains("is not a port"));
        assert!(e(&["--node-endpoint", "n1", "usage"]).contains("use NODE=http://HOST:PORT"));
        assert!(e(&["--pools-file", "/p", "usage"]).contains("go with --store-file"));
        assert!(e(&["--store-file", "/s", "check", "--fix"]).contains("check --fix needs a cluster"));
        assert!(e(&["--bogus", "usage"]).contains("--bogus"));
    }
}
