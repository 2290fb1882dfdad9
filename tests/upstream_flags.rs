//! Every flag the reference's daemons accept (nvidia-k8s-ipam; the table is
//! `nv_ipam::upstream_flags::FLAGS`), given to the real binaries: `ipam-node` in standalone
//! mode, and `ipam-controller` against the test control plane (skipped without it), run,
//! serve, and log exactly one warning per flag that has no effect here. `--vmodule` really
//! changes the verbosity of one module and not of another. The arguments of our deploy/
//! manifests and of the reference's manifests parse.

mod common;

use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::time::Duration;

use common::controller::{Controller, cluster_args};
use common::daemon::Daemon;
use common::kube::{Kube, allowed, apply_manifests, unique_name, yaml_docs};
use common::{Sandbox, free_port, http_get, wait_until};
use nv_ipam::upstream_flags::{self, Handling, Kind, Program};
use serde_json::{Value, json};

/// node1 holds 10.3.0.1-10.3.0.4 of pool1.
const POOLS: &str = "
apiVersion: nv-ipam.nvidia.com/v1alpha1
kind: IPPool
metadata: {name: pool1, namespace: kube-system}
spec: {subnet: 10.3.0.0/24, perNodeBlockSize: 4, gateway: 10.3.0.1}
status:
  allocations:
  - {nodeName: node1, startIP: 10.3.0.1, endIP: 10.3.0.4}
";

/// [`POOLS`] and a second pool: a change the pools-file poller reports at info.
fn pools_plus_one() -> String {
    format!(
        "{POOLS}---
apiVersion: nv-ipam.nvidia.com/v1alpha1
kind: IPPool
metadata: {{name: pool2, namespace: kube-system}}
spec: {{subnet: 10.4.0.0/24, perNodeBlockSize: 4, gateway: 10.4.0.1}}
status:
  allocations:
  - {{nodeName: node1, startIP: 10.4.0.1, endIP: 10.4.0.4}}
"
    )
}

/// How long a log line may take to appear after what causes it (a poll of the pools file is
/// at most a second away; the rest is a busy machine).
const LOG_DEADLINE: Duration = Duration::from_secs(15);

/// Every flag of `program` in the reference, as `--name=example` (a boolean bare or with its
/// example), except those in `given` (the harness passes them already) and with `overrides`
/// where the sandbox needs another value. Returns the arguments and every flag name covered.
fn every_flag(program: Program, given: &[&str], overrides: &[(&str, String)]) -> (Vec<String>, Vec<String>) {
    let mut args = Vec::new();
    let mut covered: Vec<String> = given.iter().map(|s| s.to_string()).collect();
    for f in upstream_flags::flags_of(program) {
        if given.contains(&f.name) {
            continue;
        }
        covered.push(f.name.to_string());
        args.push(match overrides.iter().find(|(n, _)| *n == f.name) {
            Some((_, v)) => format!("--{}={v}", f.name),
            None if f.kind == Kind::Bool && f.example.is_empty() => format!("--{}", f.name),
            None => format!("--{}={}", f.name, f.example),
        });
    }
    (args, covered)
}

/// Each flag of `program` that has no effect here is named by exactly one warning in `log`, and
/// no other warning says "no effect".
fn one_warning_per_ignored_flag(program: Program, log: &str) {
    let mut ignored = 0;
    for f in upstream_flags::flags_of(program).filter(|f| f.handling == Handling::NoEffect) {
        ignored += 1;
        let line =
            format!("--{} is accepted for compatibility with nvidia-k8s-ipam and has no effect here", f.name);
        let n = log.lines().filter(|l| l.contains(&line) && l.contains("WARN")).count();
        assert_eq!(n, 1, "one warning for --{}:\n{log}", f.name);
    }
    assert_eq!(log.matches("has no effect here").count(), ignored, "{log}");
    assert_eq!(
        ignored, 6,
        "the four --log-*-split-stream/buffer-size, --log-flush-frequency, --feature-gates"
    );
}

/// Waits until the daemon's stderr holds `needle`.
fn wait_log(d: &Daemon, needle: &str) {
    wait_until(LOG_DEADLINE, &format!("ipam-node logs {needle:?}"), || d.stderr().contains(needle));
}

#[test]
fn ipam_node_runs_serves_and_warns_once_with_every_flag_of_the_reference() {
    let mut d = Daemon::prepare(POOLS, "node1", None);
    let (health, metrics) = (free_port(), free_port());
    // Daemon::command passes these already, with the sandbox's paths.
    let given = [
        "node-name",
        "bind-address",
        "store-file",
        "cni-bin-dir",
        "cni-nv-ipam-bin-file",
        "cni-conf-dir",
        "cni-daemon-socket",
        "cni-log-file",
        "cni-log-level",
        "v",
    ];
    let (mut args, covered) = every_flag(
        Program::Node,
        &given,
        &[
            ("help", "false".into()),
            ("version", "false".into()),
            // standalone mode reads no kubeconfig; the flag is still taken
            ("kubeconfig", d.sandbox.path("absent.kubeconfig").display().to_string()),
            ("health-probe-bind-address", format!("127.0.0.1:{health}")),
            ("metrics-bind-address", format!("127.0.0.1:{metrics}")),
        ],
    );
    let mut names: Vec<&str> = upstream_flags::flags_of(Program::Node).map(|f| f.name).collect();
    names.sort_unstable();
    let mut got: Vec<&str> = covered.iter().map(String::as_str).collect();
    got.sort_unstable();
    assert_eq!(got, names, "every flag of the reference's ipam-node is on the command line");
    // Given twice, once with `_`: still one warning. `-v 0` after the harness's `-v 2`.
    args.extend(["--log_flush_frequency=1s".into(), "-v".into(), "0".into()]);
    d.extra = args;
    d.spawn();

    let out = d.call("ADD", &d.config("1.0.0", "net1", "pool1"), "c1", "eth0").ok();
    assert_eq!(out.addresses(), ["10.3.0.2/24"], "{out}");
    wait_until(LOG_DEADLINE, "/readyz answers 200", || http_get(health, "/readyz").0 == 200);
    let (code, body) = http_get(metrics, "/metrics");
    assert_eq!(code, 200);
    assert!(body.contains("nv_ipam_"), "{body}");
    let log = d.stderr();
    one_warning_per_ignored_flag(Program::Node, &log);
    // --vmodule=server=1 under -v 0: the request's debug line is there.
    assert!(log.contains("allocate handled in"), "{log}");
}

#[test]
fn vmodule_raises_the_module_it_names_and_no_other() {
    // server=1: the socket server's debug line, not the pools-file poller's.
    let mut d = Daemon::prepare(POOLS, "node1", None);
    d.extra = vec!["-v=0".into(), "--vmodule".into(), "server=1".into()];
    d.spawn();
    d.call("ADD", &d.config("1.0.0", "net1", "pool1"), "c1", "eth0").ok();
    d.write_pools(&pools_plus_one());
    // The poller logs its debug line before this info line, in the same thread.
    wait_log(&d, "pools file changed: 2 pools");
    let log = d.stderr();
    assert!(log.contains("DEBUG nv_ipam::node::server: allocate handled in"), "{log}");
    assert!(!log.contains("re-read"), "pools_file stays at info:\n{log}");
    assert!(!log.contains("DEBUG nv_ipam::node::pools_file"), "{log}");
    drop(d);

    // The other way round, with a two-segment glob.
    let mut d = Daemon::prepare(POOLS, "node1", None);
    d.extra = vec!["-v=0".into(), "--vmodule=nv_ipam::node::pools*=2,server=0".into()];
    d.spawn();
    d.write_pools(&pools_plus_one());
    wait_log(&d, "pools file changed: 2 pools");
    d.call("ADD", &d.config("1.0.0", "net1", "pool1"), "c1", "eth0").ok();
    let log = d.stderr();
    assert!(log.contains("DEBUG nv_ipam::node::pools_file: pools file"), "{log}");
    // The reply is written after the debug line would have been: its absence is final.
    assert!(!log.contains("handled in"), "server stays at info:\n{log}");
}

#[test]
fn vmodule_with_json_and_malformed_values_are_refused_as_the_reference_refuses_them() {
    for (extra, why) in [
        (
            &["--vmodule=server=1", "--logging-format=json"][..],
            "--vmodule: works only with --logging-format=text",
        ),
        (&["--vmodule=server"][..], "--vmodule \"server\" is not PATTERN=N"),
        (&["--log-json-split-stream"][..], "needs the LoggingAlphaOptions feature gate"),
        (&["--feature-gates=Nope=true"][..], "unrecognized feature gate \"Nope\""),
        (&["--log-text-info-buffer-size=1KB"][..], "is not a quantity"),
        (&["--log-flush-frequency=0s"][..], "--log-flush-frequency: must be more than 0"),
        (&["-v=-1"][..], "-v \"-1\" is not a number"),
    ] {
        let mut d = Daemon::prepare(POOLS, "node1", None);
        d.extra = extra.iter().map(|s| s.to_string()).collect();
        let (status, err) = d.run_to_exit();
        assert_eq!(status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(why), "{extra:?}: {err}");
    }
}

#[test]
fn ipam_controller_runs_and_warns_once_with_every_flag_of_the_reference() {
    crate::needs_control_plane!();
    let admin = Kube::from_env();
    apply_manifests(&admin, &["deploy/base/namespace.yaml", "deploy/rbac/controller.yaml"]);
    let controller = Kube::from_cp_kubeconfig("controller");
    let list = json!({"group": "nv-ipam.nvidia.com", "resource": "ippools", "verb": "list"});
    wait_until(Duration::from_secs(30), "the controller may list ippools", || {
        allowed(&controller, list.clone())
    });
    let ns = unique_name("it-flags");
    admin
        .post(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .expect_status(201, "create namespace");
    // cluster_args gives --kubeconfig and --ippools-namespace; Controller::spawn the health and
    // metrics addresses and -v.
    let mut args = cluster_args(&ns);
    let given = ["kubeconfig", "ippools-namespace", "health-probe-bind-address", "metrics-bind-address", "v"];
    let (flags, covered) = every_flag(
        Program::Controller,
        &given,
        &[
            ("help", "false".into()),
            ("version", "false".into()),
            // no Lease rights in this namespace: the flag is given, election stays off
            ("leader-elect", "false".into()),
            ("leader-elect-namespace", ns.clone()),
        ],
    );
    let mut names: Vec<&str> = upstream_flags::flags_of(Program::Controller).map(|f| f.name).collect();
    names.sort_unstable();
    let mut got: Vec<&str> = covered.iter().map(String::as_str).collect();
    got.sort_unstable();
    assert_eq!(got, names, "every flag of the reference's ipam-controller is on the command line");
    args.extend(flags);
    args.extend(["--log_flush_frequency=1s".to_string(), "--vmodule=worker=2".into(), "-v=0".into()]);
    let sandbox = Sandbox::new();
    let mut c = Controller::spawn(sandbox.path("controller.log"), &args);
    c.wait_ready(Duration::from_secs(30));
    assert_eq!(c.healthz(), 200);
    assert!(c.scrape().contains("nv_ipam_"), "metrics served");
    one_warning_per_ignored_flag(Program::Controller, &c.log());
    c.signal("-TERM");
    assert!(c.wait_exit(Duration::from_secs(10)).success(), "{}", c.log());
    let _ = admin.delete(&format!("/api/v1/namespaces/{ns}"));
}

/// `$(VAR)` references (the kubelet expands them) replaced by a plain value.
fn expand(arg: &str) -> String {
    let mut out = String::new();
    let mut rest = arg;
    while let Some(i) = rest.find("$(") {
        out.push_str(&rest[..i]);
        let Some(j) = rest[i..].find(')') else { break };
        out.push_str("value");
        rest = &rest[i + j + 1..];
    }
    out.push_str(rest);
    out
}

fn parses(program: Program, args: &[String], what: &str) {
    let args: Vec<OsString> = args.iter().map(|a| expand(a).into()).collect();
    match program {
        Program::Controller => match nv_ipam::controller::args::parse(args.clone()) {
            Ok(nv_ipam::controller::args::Command::Cluster(c)) => {
                assert!(c.logging.warnings.is_empty(), "{what}: {:?}", c.logging.warnings)
            }
            other => panic!("{what}: {args:?}: {other:?}"),
        },
        Program::Node => match nv_ipam::node::config::parse(args.clone()) {
            Ok(nv_ipam::node::Command::Run(c)) => {
                assert!(c.logging.warnings.is_empty(), "{what}: {:?}", c.logging.warnings)
            }
            other => panic!("{what}: {args:?}: {other:?}"),
        },
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// Every YAML file under `dir`, relative to the repository root.
fn yaml_files(dir: &Path, out: &mut Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for e in fs::read_dir(root.join(dir)).expect("read deploy/") {
        let p = e.expect("entry").path();
        let rel = p.strip_prefix(root).expect("under the root").to_path_buf();
        if p.is_dir() {
            yaml_files(&rel, out);
        } else if p.extension().is_some_and(|x| x == "yaml") {
            out.push(rel.display().to_string());
        }
    }
}

#[test]
fn every_argument_of_our_manifests_and_the_references_parses() {
    // nvidia-k8s-ipam's deploy/manifests (main of 2026-07): controller/deployment.yaml, then
    // what its certmanager and openshift overlays append; node/daemonset.yaml.
    let reference_controller = [
        "--leader-elect=true",
        "--leader-elect-namespace=$(POD_NAMESPACE)",
        "--ippools-namespace=$(POD_NAMESPACE)",
    ];
    let reference_node = [
        "--node-name=$(NODE_NAME)",
        "--v=1",
        "--logging-format=json",
        "--bind-address=unix:///var/lib/cni/nv-ipam/daemon.sock",
        "--store-file=/var/lib/cni/nv-ipam/store",
        "--cni-daemon-socket=unix:///var/lib/cni/nv-ipam/daemon.sock",
        "--cni-daemon-call-timeout=5",
        "--cni-bin-dir=/opt/cni/bin",
        "--cni-conf-dir=/etc/cni/net.d/nv-ipam.d",
        "--cni-log-file=/var/log/nv-ipam-cni.log",
        "--cni-log-level=info",
        "--ippools-namespace=$(POD_NAMESPACE)",
    ];
    let owned = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    parses(Program::Controller, &owned(&reference_controller), "the reference's controller");
    let mut with_webhook = owned(&reference_controller);
    with_webhook.push("--webhook=true".into());
    parses(Program::Controller, &with_webhook, "the reference's controller with its webhook overlay");
    parses(Program::Node, &owned(&reference_node), "the reference's node");

    // Ours: every container's args, and every JSON patch that appends to them.
    let mut files = Vec::new();
    yaml_files(Path::new("deploy"), &mut files);
    // (program, a container's args), (program, one argument a patch appends)
    let mut base: Vec<(Program, Vec<String>)> = vec![];
    let mut appended: Vec<(Program, String)> = vec![];
    let program = |kind: &str| match kind {
        "Deployment" => Some(Program::Controller),
        "DaemonSet" => Some(Program::Node),
        _ => None,
    };
    for file in &files {
        for doc in yaml_docs(file) {
            if let Some(p) = program(doc["kind"].as_str().unwrap_or("")) {
                for c in doc["spec"]["template"]["spec"]["containers"].as_array().into_iter().flatten() {
                    let args = strings(&c["args"]);
                    if !args.is_empty() {
                        base.push((p, args));
                    }
                }
            }
            for patch in doc["patches"].as_array().into_iter().flatten() {
                let (Some(p), Some(text)) =
                    (program(patch["target"]["kind"].as_str().unwrap_or("")), patch["patch"].as_str())
                else {
                    continue;
                };
                let ops: Value = yaml_serde::from_str(text).expect("a JSON patch");
                for op in ops.as_array().into_iter().flatten() {
                    if op["path"].as_str().is_some_and(|path| path.contains("/args")) {
                        appended.push((p, op["value"].as_str().expect("one argument").to_string()));
                    }
                }
            }
        }
    }
    assert_eq!(base.len(), 2, "deploy/ has one Deployment and one DaemonSet with args: {base:?}");
    assert!(appended.contains(&(Program::Controller, "--webhook".into())), "{appended:?}");
    for (p, args) in &base {
        parses(*p, args, "deploy/");
        let mut all = args.clone();
        all.extend(appended.iter().filter(|(q, _)| q == p).map(|(_, a)| a.clone()));
        parses(*p, &all, "deploy/ with every patch");
    }
}
