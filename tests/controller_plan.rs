//! `ipam-controller plan` through the real binary: pools and nodes files in YAML multi-doc,
//! JSON array and `kind: List` forms, exact JSON output, stderr lines and exit codes.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::Sandbox;

const BIN: &str = env!("CARGO_BIN_EXE_ipam-controller");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).expect("fixture readable")
}

/// Copies a fixture into the test's directory (the test owns what it runs on).
fn copy(dir: &Sandbox, name: &str) -> PathBuf {
    let to = dir.path(name);
    std::fs::copy(fixture(name), &to).expect("copy fixture");
    to
}

fn write(dir: &Sandbox, name: &str, text: &str) -> PathBuf {
    let to = dir.path(name);
    std::fs::write(&to, text).expect("write temp file");
    to
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run ipam-controller")
}

fn plan(pools: &Path, nodes: &Path) -> Output {
    run(&["plan", "--pools", &pools.to_string_lossy(), "--nodes", &nodes.to_string_lossy()])
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[track_caller]
fn assert_same(got: &str, want: &str) {
    if got != want {
        panic!("output differs\n--- want\n{want}\n--- got\n{got}");
    }
}

#[test]
fn yaml_multidoc_pools_with_json_array_nodes_and_an_invalid_pool() {
    let dir = Sandbox::labelled("plan-multidoc");
    let out = plan(&copy(&dir, "pools.yaml"), &copy(&dir, "nodes.json"));
    assert_same(&text(&out.stdout), &read(&fixture("pools.planned.json")));
    assert_eq!(
        text(&out.stderr),
        "error: ippool \"broken\": spec.perNodeBlockSize: must be at least 1; spec.gateway: 10.1.0.1 is not \
         inside the subnet 10.0.0.0/24\n"
    );
    assert_eq!(out.status.code(), Some(1), "an invalid pool exits 1");
}

#[test]
fn kind_list_nodes_give_the_same_plan() {
    let dir = Sandbox::labelled("plan-kindlist");
    let out = plan(&copy(&dir, "pools.yaml"), &copy(&dir, "nodes-kind-list.yaml"));
    assert_same(&text(&out.stdout), &read(&fixture("pools.planned.json")));
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn json_list_pools_with_selector_keep_existing_blocks_and_warn() {
    let dir = Sandbox::labelled("plan-jsonlist");
    let out = plan(&copy(&dir, "pools-list.json"), &copy(&dir, "nodes.yaml"));
    assert_same(&text(&out.stdout), &read(&fixture("pools-list.planned.json")));
    assert_eq!(
        text(&out.stderr),
        "warning: ippool \"small\": no free block for node node2: widen the subnet, lower perNodeBlockSize \
         or shrink the exclusions\n"
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn planning_the_output_again_changes_nothing() {
    let dir = Sandbox::labelled("plan-stable");
    let planned = read(&fixture("pools-list.planned.json"));
    let out = plan(&write(&dir, "again.json", &planned), &copy(&dir, "nodes.yaml"));
    assert_same(&text(&out.stdout), &planned);
}

#[test]
fn file_errors_name_the_flag_and_path_and_exit_2() {
    let dir = Sandbox::labelled("plan-errors");
    let nodes = copy(&dir, "nodes.yaml");
    let missing = dir.path("missing.yaml");
    let out = plan(&missing, &nodes);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.starts_with(&format!("ipam-controller: --pools {}: cannot read: ", missing.display())),
        "{err}"
    );
    let bad = write(&dir, "bad.yaml", "kind: IPPool\nmetadata: {name: x}\n---\nkind: Pod\n");
    let out = plan(&copy(&dir, "pools.yaml"), &bad);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        format!(
            "ipam-controller: --nodes {}: document 1: kind \"Pod\" is not handled: use IPPool, CIDRPool, Node \
             or a List of them\n",
            bad.display()
        )
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn usage_and_version() {
    let out = run(&["--version"]);
    assert_eq!(text(&out.stdout), format!("ipam-controller {}\n", env!("CARGO_PKG_VERSION")));
    assert_eq!(out.status.code(), Some(0));
    let out = run(&["--help"]);
    assert!(text(&out.stdout).contains("--node-release-grace-period DUR"));
    let out = run(&["--node-release-grace-period", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--node-release-grace-period \"soon\" is not a duration"));
    let out = run(&["plan", "--pools", "x"]);
    assert_eq!(text(&out.stderr), "ipam-controller: plan needs --nodes FILE\n");
    assert_eq!(out.status.code(), Some(2));
}
