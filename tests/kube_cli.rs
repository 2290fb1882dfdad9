//! `kubectl-nv_ipam` and ipam-node's allocations endpoint against the real kube-apiserver of
//! `hack/control-plane.sh` and real cluster-mode `ipam-node` daemons (as the node identity,
//! `deploy/rbac/node.yaml` applied), with `deploy/rbac/viewer.yaml`'s ServiceAccount
//! `nv-ipam-viewer` and its RoleBinding (to ClusterRole `nv-ipam-allocations-reader`) in the
//! test's namespace.
//!
//! - Who may read the endpoint: no token, a bad one, a token the apiserver accepts but not
//!   for the audience, a ServiceAccount token of the audience without the RBAC (401, 401, 401,
//!   403), with it (200), and the ServiceAccount has no right but that one; tokens come from
//!   the apiserver's TokenRequest API. The probes and `/metrics` still answer without a
//!   token. A token at and over its length limit.
//! - Planted inconsistencies (a leaked allocation of a pod that does not exist, the same
//!   address on two nodes, a status entry of a deleted node, a node a pool selects without a
//!   block): `who-has`, `usage` and `check` report exactly those, in each output format, with
//!   the documented exit codes; `check --fix` removes the status entry once no pod is bound to
//!   that node name (and says why not before), `--fix --force` even then; a node that does not
//!   answer is reported (exit 3), not fatal. The CLI mints its own token (TokenRequest) and,
//!   there being no pods to proxy to here, reaches the daemons with `--node-endpoint`; the pod
//!   proxy path is tests/e2e_cluster.rs's.
//!
//! Skips (one line on stderr) when not run under the control plane (fails instead under
//! hack/test.sh). Parallel-safe: unique namespaces, node names and label values.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output};
use std::sync::Once;
use std::time::Duration;

use common::daemon::Daemon;
use common::kube::{Kube, apply_manifests, cp_dir, unique_name, yaml_docs};
use common::{CniOut, cni, env_refs, wait_until};
use serde_json::{Value, json};

const POOL_API: &str = "/apis/nv-ipam.nvidia.com/v1alpha1";
/// How long a daemon may take to follow the API, and RBAC to reach the authorizer.
const SETTLE: Duration = Duration::from_secs(30);
/// The token length limit of the endpoint (node::allocations::access::MAX_TOKEN_BYTES).
const MAX_TOKEN_BYTES: usize = nv_ipam::node::allocations::access::MAX_TOKEN_BYTES;

fn apply_rbac(admin: &Kube) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        apply_manifests(
            admin,
            &["deploy/base/namespace.yaml", "deploy/rbac/node.yaml", "deploy/rbac/viewer.yaml"],
        );
    });
}

/// A namespace for the pools, the daemons' SubjectAccessReviews and the viewer
/// ServiceAccount; Nodes made for the test. All deleted on drop.
struct Env {
    admin: Kube,
    ns: String,
    nodes: Vec<String>,
}

impl Env {
    fn new() -> Env {
        let admin = Kube::from_env();
        apply_rbac(&admin);
        let ns = unique_name("it-cli");
        admin
            .post(
                "/api/v1/namespaces",
                &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            )
            .expect_status(201, "create namespace");
        Env { admin, ns, nodes: Vec::new() }
    }

    /// `deploy/rbac/viewer.yaml`'s ServiceAccount and RoleBinding, in this namespace.
    fn viewer(&self) {
        for mut obj in yaml_docs("deploy/rbac/viewer.yaml") {
            match obj["kind"].as_str().unwrap() {
                "ServiceAccount" => {
                    obj["metadata"]["namespace"] = json!(self.ns);
                    self.admin
                        .post(&format!("/api/v1/namespaces/{}/serviceaccounts", self.ns), &obj)
                        .expect_status(201, "viewer ServiceAccount");
                }
                "RoleBinding" => {
                    obj["metadata"]["namespace"] = json!(self.ns);
                    obj["subjects"][0]["namespace"] = json!(self.ns);
                    self.admin
                        .post(
                            &format!(
                                "/apis/rbac.authorization.k8s.io/v1/namespaces/{}/rolebindings",
                                self.ns
                            ),
                            &obj,
                        )
                        .expect_status(201, "viewer RoleBinding");
                }
                _ => {}
            }
        }
    }

    fn service_account(&self, name: &str) {
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}});
        self.admin
            .post(&format!("/api/v1/namespaces/{}/serviceaccounts", self.ns), &sa)
            .expect_status(201, "ServiceAccount");
    }

    /// A token of ServiceAccount `sa` from the TokenRequest API (`audience`: `None` = the
    /// apiserver's own).
    fn token(&self, sa: &str, audience: Option<&str>) -> String {
        let mut spec = json!({"expirationSeconds": 600});
        if let Some(a) = audience {
            spec["audiences"] = json!([a]);
        }
        let req = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec});
        let r = self.admin.post(&format!("/api/v1/namespaces/{}/serviceaccounts/{sa}/token", self.ns), &req);
        r.expect_status(201, "TokenRequest")["status"]["token"].as_str().unwrap().to_string()
    }

    /// Whether the apiserver's authorizer lets ServiceAccount `sa` do `attrs` (the
    /// SubjectAccessReview's resourceAttributes, in this namespace).
    fn allowed(&self, sa: &str, mut attrs: Value) -> bool {
        attrs["namespace"] = json!(self.ns);
        let user = format!("system:serviceaccount:{}:{sa}", self.ns);
        let review = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": user, "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{}", self.ns), "system:authenticated"],
                "resourceAttributes": attrs}});
        let r = self.admin.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", &review);
        r.expect_status(201, "SubjectAccessReview")["status"]["allowed"] == true
    }

    /// Waits until the apiserver's authorizer lets ServiceAccount `sa` read `node`'s allocations.
    fn wait_allowed(&self, sa: &str, node: &str) {
        let attrs = json!({"verb": "get", "group": "nv-ipam.nvidia.com", "resource": "nodeallocations", "name": node});
        wait_until(SETTLE, "the viewer binding reaches the authorizer", || self.allowed(sa, attrs.clone()));
    }

    /// A Node object with `labels`, deleted on drop.
    fn node(&mut self, prefix: &str, labels: Value) -> String {
        let name = unique_name(prefix);
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}});
        self.admin.post("/api/v1/nodes", &node).expect_status(201, "create node");
        self.nodes.push(name.clone());
        name
    }

    /// An IPPool with `spec` and its `status.allocations` written as admin.
    fn pool(&self, name: &str, spec: Value, allocs: &[(&str, &str, &str)]) {
        let path = format!("{POOL_API}/namespaces/{}/ippools", self.ns);
        let pool = json!({"apiVersion": "nv-ipam.nvidia.com/v1alpha1", "kind": "IPPool", "metadata": {"name": name}, "spec": spec});
        self.admin.post(&path, &pool).expect_status(201, "create pool");
        let mut obj = self.admin.get(&format!("{path}/{name}")).expect_status(200, "get pool");
        let allocations: Vec<Value> =
            allocs.iter().map(|(n, s, e)| json!({"nodeName": n, "startIP": s, "endIP": e})).collect();
        obj["status"] = json!({ "allocations": allocations });
        self.admin.put(&format!("{path}/{name}/status"), &obj).expect_status(200, "write status");
        // deliver to the nodes as ipam-controller would (their NodeBlockSets)
        let pools = common::node_blocks::pools_of(&self.admin, &self.ns);
        let mut nodes: Vec<&str> = allocs.iter().map(|(n, _, _)| *n).collect();
        nodes.sort_unstable();
        nodes.dedup();
        for n in nodes {
            common::node_blocks::write(&self.admin, &self.ns, n, &pools);
        }
    }

    fn pool_status(&self, name: &str) -> Value {
        self.admin.get(&format!("{POOL_API}/namespaces/{}/ippools/{name}", self.ns)).expect_status(200, "get")
            ["status"]
            .clone()
    }

    /// A pod bound to `node` (no kubelet: it stays Pending); its UID.
    fn pod(&self, name: &str, node: &str) -> String {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}});
        let p =
            self.admin.post(&format!("/api/v1/namespaces/{}/pods", self.ns), &pod).expect_status(201, "pod");
        p["metadata"]["uid"].as_str().unwrap().to_string()
    }

    /// A cluster-mode daemon for `node`, started and ready.
    fn daemon(&self, node: &str) -> Daemon {
        let mut d = Daemon::prepare_cluster(node, cp_dir().join("node.kubeconfig"), &self.ns, &[]);
        d.spawn();
        wait_until(SETTLE, "/readyz answers 200", || d.ready());
        d
    }

    /// Runs the real `kubectl-nv_ipam` as admin on this namespace.
    fn cli(&self, args: &[&str]) -> Output {
        let kubeconfig = std::env::var("KUBECONFIG").unwrap();
        Command::new(env!("CARGO_BIN_EXE_kubectl-nv_ipam"))
            .env_clear()
            .args(["--kubeconfig", &kubeconfig, "-n", &self.ns])
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for n in &self.nodes {
            let _ = self.admin.delete(&format!("/api/v1/nodes/{n}"));
        }
        let _ = self.admin.delete(&format!("/api/v1/namespaces/{}", self.ns));
    }
}

/// `GET path` on the daemon's health listener with `headers`: status and body.
fn get(d: &Daemon, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let port = d.cluster.as_ref().unwrap().health_port;
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

#[test]
fn the_endpoint_answers_only_whom_the_apiserver_vouches_for() {
    crate::needs_control_plane!();
    let mut env = Env::new();
    let node = env.node("it-cli-auth", json!({}));
    env.pool(
        "p",
        json!({"subnet": "10.92.0.0/24", "perNodeBlockSize": 10}),
        &[(&node, "10.92.0.1", "10.92.0.10")],
    );
    env.viewer();
    env.service_account("nobody");
    let d = env.daemon(&node);
    let path = "/v1/allocations";

    let (code, body) = get(&d, path, &[]);
    assert_eq!(code, 401, "no token: {body}");
    assert!(body.contains("no bearer token"), "{body}");
    assert_eq!(get(&d, path, &[("Authorization", &bearer("not-a-token"))]).0, 401, "bad token");
    // the admin's static token: valid for the apiserver, not for the audience nv-ipam-node
    let admin_token = std::fs::read_to_string(cp_dir().join("admin.token")).unwrap();
    assert_eq!(get(&d, path, &[("Authorization", &bearer(admin_token.trim()))]).0, 401, "admin token");
    // the viewer's token for the apiserver's own audience
    let plain = env.token("nv-ipam-viewer", None);
    assert_eq!(get(&d, path, &[("Authorization", &bearer(&plain))]).0, 401, "token of another audience");
    // a ServiceAccount of the audience without the RBAC
    let nobody = env.token("nobody", Some("nv-ipam-node"));
    let (code, body) = get(&d, path, &[("Authorization", &bearer(&nobody))]);
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains(&format!("\"system:serviceaccount:{}:nobody\" may not get nodeallocations", env.ns)),
        "{body}"
    );
    // with it: the report, through either header
    env.wait_allowed("nv-ipam-viewer", &node);
    // and nothing else: its tokens reach the nodes, so they carry only that right
    for (verb, resource, sub) in [
        ("get", "pods", "proxy"),
        ("list", "pods", ""),
        ("create", "serviceaccounts", "token"),
        ("list", "ippools", ""),
    ] {
        let group = if resource == "ippools" { "nv-ipam.nvidia.com" } else { "" };
        let attrs = json!({"verb": verb, "group": group, "resource": resource, "subresource": sub});
        assert!(!env.allowed("nv-ipam-viewer", attrs), "the ServiceAccount may {verb} {resource}/{sub}");
    }
    let viewer = env.token("nv-ipam-viewer", Some("nv-ipam-node"));
    for header in ["Authorization", "X-Nv-Ipam-Token"] {
        let value = if header == "Authorization" { bearer(&viewer) } else { viewer.clone() };
        let (code, body) = get(&d, path, &[(header, &value)]);
        assert_eq!(code, 200, "{header}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!((v["kind"].as_str(), v["node"].as_str()), (Some("NodeAllocations"), Some(node.as_str())));
        assert_eq!(v["pools"][0]["rangeStart"], "10.92.0.1", "{v}");
    }
    // the probes and /metrics need no token (kubelet has none)
    assert_eq!(get(&d, "/healthz", &[]).0, 200);
    assert_eq!(get(&d, "/readyz", &[]).0, 200);
    assert_eq!(get(&d, "/metrics", &[]).0, 200);
    // a token at the length limit is reviewed (and refused by the apiserver); one byte more is
    // refused before any review
    let (code, body) = get(&d, path, &[("Authorization", &bearer(&"a".repeat(MAX_TOKEN_BYTES)))]);
    assert_eq!(code, 401);
    assert!(body.contains("not valid for this endpoint"), "reviewed: {body}");
    let (code, body) = get(&d, path, &[("Authorization", &bearer(&"a".repeat(MAX_TOKEN_BYTES + 1)))]);
    assert_eq!(code, 401);
    assert!(body.contains("longer than 4096 bytes"), "not reviewed: {body}");
}

fn pod_env(container: &str, ns: &str, name: &str, uid: &str) -> Vec<(String, String)> {
    vec![
        ("CNI_CONTAINERID".into(), container.into()),
        ("CNI_NETNS".into(), format!("/var/run/netns/nvt-absent-{container}")),
        ("CNI_IFNAME".into(), "net1".into()),
        ("CNI_PATH".into(), "/nonexistent-cni-path".into()),
        (
            "CNI_ARGS".into(),
            format!("IgnoreUnknown=1;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={name};K8S_POD_UID={uid}"),
        ),
    ]
}

fn add(d: &Daemon, env: &[(String, String)], ips: Option<&[&str]>) -> String {
    let mut cfg = d.config("1.0.0", "macvlan", "blue");
    if let Some(ips) = ips {
        cfg["args"] = json!({"cni": {"ips": ips}});
    }
    let out: CniOut = cni("ADD", &cfg, &env_refs(env)).ok();
    out.addresses()[0].split('/').next().unwrap().to_string()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(o), String::from_utf8_lossy(&o.stderr)))
}

#[test]
fn who_has_usage_and_check_report_exactly_the_planted_inconsistencies() {
    crate::needs_control_plane!();
    let mut env = Env::new();
    // nodes the pool selects (a unique label: other tests' Nodes share this apiserver)
    let mark = unique_name("sel");
    let (a, b, c) = (
        env.node("it-cli-a", json!({"nv-ipam-cli": mark})),
        env.node("it-cli-b", json!({"nv-ipam-cli": mark})),
        // planted: selected, but no block
        env.node("it-cli-c", json!({"nv-ipam-cli": mark})),
    );
    // planted: a status entry of a node that does not exist
    let gone = unique_name("it-cli-gone");
    let selector = json!({"nodeSelectorTerms": [{"matchExpressions": [{"key": "nv-ipam-cli", "operator": "In", "values": [mark]}]}]});
    env.pool(
        "blue",
        json!({"subnet": "10.91.0.0/24", "perNodeBlockSize": 10, "gateway": "10.91.0.1", "nodeSelector": selector}),
        &[(&a, "10.91.0.1", "10.91.0.10"), (&b, "10.91.0.11", "10.91.0.20"), (&gone, "10.91.0.21", "10.91.0.30")],
    );
    env.viewer();
    let (da, db) = (env.daemon(&a), env.daemon(&b));
    let ns = env.ns.clone();
    let web_uid = env.pod("web", &a);
    let db_uid = env.pod("db", &b);
    let dup_uid = env.pod("dup", &b);
    assert_eq!(add(&da, &pod_env("c-web", &ns, "web", &web_uid), None), "10.91.0.2");
    // planted: a leaked allocation, for a pod that does not exist
    assert_eq!(add(&da, &pod_env("c-ghost", &ns, "ghost", "uid-ghost"), None), "10.91.0.3");
    assert_eq!(add(&db, &pod_env("c-db", &ns, "db", &db_uid), None), "10.91.0.11");
    // planted: the same address on two nodes (a static request on b for a's 10.91.0.2)
    assert_eq!(add(&db, &pod_env("c-dup", &ns, "dup", &dup_uid), Some(&["10.91.0.2"])), "10.91.0.2");
    env.wait_allowed("nv-ipam-viewer", &a);
    env.wait_allowed("nv-ipam-viewer", &b);
    let port = |d: &Daemon| d.cluster.as_ref().unwrap().health_port;
    let ea = format!("{a}=http://127.0.0.1:{}", port(&da));
    let eb = format!("{b}=http://127.0.0.1:{}", port(&db));
    let eps =
        ["--node-namespace", ns.as_str(), "--node-endpoint", ea.as_str(), "--node-endpoint", eb.as_str()];
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = eps.to_vec();
        all.extend_from_slice(args);
        env.cli(&all)
    };

    // who-has: the pool, the block's node, and both holders
    let o = run(&["who-has", "10.91.0.2", "-o", "json"]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    let w = json_of(&o);
    assert_eq!(
        w["pools"],
        json!([{"pool": "blue", "poolType": "ippool", "range": "10.91.0.0/24", "node": a, "block": "10.91.0.1-10.91.0.10"}])
    );
    let holders: Vec<(String, String, String)> = w["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["node"].as_str().unwrap().into(),
                h["podName"].as_str().unwrap().into(),
                h["podUid"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        holders,
        [(a.clone(), "web".into(), web_uid.clone()), (b.clone(), "dup".into(), dup_uid.clone())]
    );
    assert_eq!(w["holders"][0]["containerId"], "c-web");
    assert_eq!(w["holders"][0]["interface"], "net1");
    assert!(w["holders"][0]["created"].as_str().unwrap().ends_with('Z'), "{w}");
    assert_eq!(w["holders"][1]["static"], true);
    let t = run(&["who-has", "10.91.0.2"]);
    assert_eq!(code(&t), 0);
    let table = stdout(&t);
    assert!(table.contains("BLOCK NODE") && table.contains("c-web") && table.contains(&web_uid), "{table}");
    let y: Value = yaml_serde::from_str(&stdout(&run(&["who-has", "10.91.0.2", "-o", "yaml"]))).unwrap();
    assert_eq!(y, w, "yaml says what json says");
    let free = run(&["who-has", "10.91.0.5"]);
    assert_eq!(code(&free), 1, "not allocated: exit 1\n{}", stdout(&free));
    assert!(stdout(&free).contains("10.91.0.5 is not allocated on any node that answered"));

    // usage: fullest first, the missing node's block from status only
    let o = run(&["usage", "-o", "json"]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    let u = json_of(&o);
    type Row = (String, Option<u64>, Option<u64>, Option<u64>);
    let rows: Vec<Row> = u["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["node"].as_str().unwrap().into(),
                r["allocated"].as_u64(),
                r["free"].as_u64(),
                r["static"].as_u64(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (a.clone(), Some(2), Some(7), Some(0)),
            (b.clone(), Some(2), Some(9), Some(1)),
            (gone.clone(), None, None, None)
        ]
    );
    assert_eq!(u["rows"][0]["block"], "10.91.0.1-10.91.0.10");
    let table = stdout(&run(&["usage"]));
    assert!(table.starts_with("POOL  TYPE    NODE"), "{table}");
    assert_eq!(yaml_serde::from_str::<Value>(&stdout(&run(&["usage", "-o", "yaml"]))).unwrap(), u);
    let one = json_of(&run(&["usage", "--node", &b, "-o", "json"]));
    assert_eq!(one["rows"].as_array().unwrap().len(), 1);

    // check: exactly the four planted inconsistencies, each once
    let o = run(&["check", "-o", "json"]);
    assert_eq!(code(&o), 1, "inconsistencies: exit 1\n{}", stdout(&o));
    let ch = json_of(&o);
    let found: Vec<(String, String, Value)> = ch["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["kind"].as_str().unwrap().into(), f["node"].as_str().unwrap().into(), f["ip"].clone()))
        .collect();
    assert_eq!(
        found,
        [
            ("stale-allocation".to_string(), a.clone(), json!("10.91.0.3")),
            ("duplicate-address".to_string(), format!("{a}, {b}"), json!("10.91.0.2")),
            ("status-for-missing-node".to_string(), gone.clone(), Value::Null),
            ("node-without-block".to_string(), c.clone(), Value::Null),
        ],
        "{ch:#}"
    );
    assert_eq!(ch["findings"][0]["pod"], format!("{ns}/ghost"));
    assert!(ch["findings"][0]["fix"].as_str().unwrap().contains("CNI_CONTAINERID=c-ghost"), "{ch:#}");
    assert_eq!(ch["findings"][1]["fix"], format!("kubectl -n {ns} delete pod dup"), "the newer holder goes");
    assert_eq!(ch["findings"][2]["fixable"], true);
    assert!(ch["unreachable"].as_array().unwrap().is_empty());
    let table = stdout(&run(&["check"]));
    assert!(table.contains("4 inconsistencies found, 4 open (1 fixable by check --fix)"), "{table}");
    assert_eq!(yaml_serde::from_str::<Value>(&stdout(&run(&["check", "-o", "yaml"]))).unwrap(), ch);

    // check --fix while a pod is still bound to the missing node's name: the entry stays, and
    // the finding says why and what to run
    env.pod("orphan", &gone);
    let o = run(&["check", "--fix", "-o", "json"]);
    assert_eq!(code(&o), 1, "{}", stdout(&o));
    let held = json_of(&o);
    let why = held["findings"][2]["fixed"].as_str().unwrap();
    assert!(why.starts_with(&format!("not fixed: pods are still bound to node {gone}")), "{held:#}");
    assert!(why.contains(&format!("kubectl delete pods -A --field-selector spec.nodeName={gone}")), "{why}");
    assert_eq!(env.pool_status("blue")["allocations"].as_array().unwrap().len(), 3, "nothing written");
    // no kubelet will confirm the deletion: delete it at once, as the pod GC would
    env.admin
        .delete(&format!("/api/v1/namespaces/{ns}/pods/orphan?gracePeriodSeconds=0"))
        .expect_status(200, "delete pod");

    // check --fix: the status entry of the missing node goes, nothing else is written
    let o = run(&["check", "--fix", "-o", "json"]);
    assert_eq!(code(&o), 1, "three remain open\n{}", stdout(&o));
    let fixed = json_of(&o);
    assert_eq!(fixed["findings"][2]["fixed"], "fixed", "{fixed:#}");
    let status = env.pool_status("blue");
    let nodes: Vec<&str> =
        status["allocations"].as_array().unwrap().iter().map(|x| x["nodeName"].as_str().unwrap()).collect();
    assert_eq!(nodes, [a.as_str(), b.as_str()]);
    assert_eq!(status["allocatedNodes"], 2);
    let after = json_of(&run(&["check", "-o", "json"]));
    assert_eq!(after["findings"].as_array().unwrap().len(), 3);

    // --fix --force removes an entry even while pods are bound to its node
    let gone2 = unique_name("it-cli-gone");
    let path = format!("{POOL_API}/namespaces/{ns}/ippools/blue");
    let mut obj = env.admin.get(&path).expect_status(200, "get pool");
    obj["status"]["allocations"]
        .as_array_mut()
        .unwrap()
        .push(json!({"nodeName": gone2, "startIP": "10.91.0.31", "endIP": "10.91.0.40"}));
    env.admin.put(&format!("{path}/status"), &obj).expect_status(200, "write status");
    env.pod("orphan2", &gone2);
    let o = run(&["check", "--fix", "-o", "json"]);
    assert!(
        stdout(&o).contains(&format!("not fixed: pods are still bound to node {gone2}")),
        "{}",
        stdout(&o)
    );
    assert_eq!(env.pool_status("blue")["allocations"].as_array().unwrap().len(), 3);
    let o = run(&["check", "--fix", "--force", "-o", "json"]);
    assert_eq!(code(&o), 1, "three remain open\n{}", stdout(&o));
    assert_eq!(json_of(&o)["findings"][2]["fixed"], "fixed", "{}", stdout(&o));
    let status = env.pool_status("blue");
    let nodes: Vec<&str> =
        status["allocations"].as_array().unwrap().iter().map(|x| x["nodeName"].as_str().unwrap()).collect();
    assert_eq!(nodes, [a.as_str(), b.as_str()]);

    // a node that does not answer is reported, the others still are, exit 3
    let dead = format!("it-cli-dead=http://127.0.0.1:{}", common::free_port());
    let o = run(&["--node-endpoint", &dead, "usage", "-o", "json"]);
    assert_eq!(code(&o), 3, "{}", stdout(&o));
    let u = json_of(&o);
    assert_eq!(u["unreachable"][0]["node"], "it-cli-dead");
    assert_eq!(u["rows"].as_array().unwrap().len(), 2, "the nodes that answered are still there");
    // a node asked by who-has that is down: the answer is incomplete
    drop(da);
    let o = run(&["who-has", "10.91.0.3", "-o", "json"]);
    assert_eq!(code(&o), 3, "node a is down: incomplete\n{}", stdout(&o));
}

#[test]
fn exit_codes_for_usage_errors_and_an_unreachable_apiserver() {
    crate::needs_control_plane!();
    let env = Env::new();
    let o = env.cli(&["who-has", "not-an-ip"]);
    assert_eq!(code(&o), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("\"not-an-ip\" is not an IP address"));
    let o = Command::new(env!("CARGO_BIN_EXE_kubectl-nv_ipam"))
        .env_clear()
        .args(["--kubeconfig", "/nonexistent/kubeconfig", "usage"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 3, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("kubeconfig"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // a ServiceAccount whose token cannot be had: exit 3, naming the RBAC to fix
    let node = unique_name("it-cli-lone");
    env.pool("p", json!({"subnet": "10.93.0.0/24", "perNodeBlockSize": 10}), &[]);
    let ep = format!("{node}=http://127.0.0.1:{}", common::free_port());
    let o = env.cli(&["--node-endpoint", &ep, "--service-account", "no-such-sa", "usage"]);
    assert_eq!(code(&o), 3);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains("cannot get a token of ServiceAccount") && err.contains("nv-ipam-viewer"), "{err}");
}
