//! `ipam-controller` in cluster mode against the real kube-apiserver of `hack/control-plane.sh`:
//! the real binary, as the controller's service-account token with deploy/rbac applied.
//! Skips (one line on stderr) when not run under the control plane; fails instead under
//! hack/test.sh (`NV_IPAM_REQUIRE_CONTROL_PLANE=1`).
//!
//! Isolation: each test has its own namespace (pools, Lease, Events) and its own node label
//! value, and its pools select only nodes with that value, so tests sharing the apiserver never
//! see each other's Nodes. Every wait is bounded (`common::wait`); "not before" properties (grace
//! periods, live leases) are checked at every poll over their window, never by measuring time.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use common::controller::{Controller, cluster_args};
use common::kube::{Kube, allowed, apply_manifests, unique_name};
use common::wait::{stays_true_until, wait_stable};
use common::{Sandbox, unique, wait_until};
use serde_json::{Value, json};

const API: &str = "/apis/nv-ipam.nvidia.com/v1alpha1";
/// Label key every test node carries; the value is unique per test.
const LABEL: &str = "nv-ipam.test/group";
/// Bound for a status to appear after a change (watch + reconcile + write, on a busy machine).
const SETTLE: Duration = Duration::from_secs(30);
/// `--node-release-grace-period` of the grace test: long enough that planning a new node
/// (a watch event, a reconcile, a status write) fits inside it on a busy machine.
const GRACE: Duration = Duration::from_secs(5);
/// RBAC changes reach the authorizer through an informer; this bounds the wait for that.
const RBAC_PROPAGATION: Duration = Duration::from_secs(30);

/// Tests take this shared; a test that restarts the apiserver takes it exclusively, so the
/// restart cannot break the others.
static LIFECYCLE: RwLock<()> = RwLock::new(());

/// A held [`LIFECYCLE`] lock.
enum Lifecycle {
    Shared(#[allow(dead_code)] RwLockReadGuard<'static, ()>),
    Exclusive(#[allow(dead_code)] RwLockWriteGuard<'static, ()>),
}

/// One test's world: a namespace and a label value, with the nodes it made; all deleted on drop.
struct World {
    _lifecycle: Lifecycle,
    admin: Kube,
    ns: String,
    group: String,
    nodes: std::cell::RefCell<Vec<String>>,
    sandbox: Sandbox,
}

impl World {
    fn new(prefix: &str) -> World {
        let guard = LIFECYCLE.read().unwrap_or_else(|p| p.into_inner());
        World::with_lifecycle(prefix, Lifecycle::Shared(guard))
    }

    /// A world whose test may stop and restart the apiserver.
    fn exclusive(prefix: &str) -> World {
        let guard = LIFECYCLE.write().unwrap_or_else(|p| p.into_inner());
        World::with_lifecycle(prefix, Lifecycle::Exclusive(guard))
    }

    fn with_lifecycle(prefix: &str, lifecycle: Lifecycle) -> World {
        let admin = Kube::from_env();
        ensure_rbac(&admin);
        let ns = unique_name(prefix);
        admin
            .post(
                "/api/v1/namespaces",
                &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            )
            .expect_status(201, "create namespace");
        // the Lease rights are granted per namespace (deploy/rbac/controller.yaml)
        let rb = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "nv-ipam-controller-leader-election", "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "nv-ipam-controller-leader-election"},
            "subjects": [{"kind": "ServiceAccount", "name": "nv-ipam-controller", "namespace": "nv-ipam"}],
        });
        admin
            .post(&format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"), &rb)
            .expect_status(201, "create lease rolebinding");
        let controller = Kube::from_cp_kubeconfig("controller");
        let lease =
            json!({"group": "coordination.k8s.io", "resource": "leases", "namespace": ns, "verb": "update"});
        wait_until(RBAC_PROPAGATION, "the controller may update leases in the test namespace", || {
            allowed(&controller, lease.clone())
        });
        let group = format!("g{}", unique());
        World { _lifecycle: lifecycle, admin, ns, group, nodes: Default::default(), sandbox: Sandbox::new() }
    }

    /// A node name unique to this test that sorts like `base`.
    fn node_name(&self, base: &str) -> String {
        format!("{}-{base}", self.group)
    }

    fn create_node(&self, base: &str, sel: &str) -> String {
        let name = self.node_name(base);
        let node = json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {LABEL: format!("{}-{sel}", self.group)}}});
        self.admin.post("/api/v1/nodes", &node).expect_status(201, "create node");
        self.nodes.borrow_mut().push(name.clone());
        name
    }

    fn delete_node(&self, name: &str) {
        self.admin.delete(&format!("/api/v1/nodes/{name}")).expect_status(200, "delete node");
        self.nodes.borrow_mut().retain(|n| n != name);
    }

    fn set_node_label(&self, name: &str, value: Option<&str>) {
        let path = format!("/api/v1/nodes/{name}");
        let mut node = self.admin.get(&path).expect_status(200, "get node");
        match value {
            Some(v) => node["metadata"]["labels"][LABEL] = json!(format!("{}-{v}", self.group)),
            None => {
                if let Some(l) = node["metadata"]["labels"].as_object_mut() {
                    l.remove(LABEL);
                }
            }
        }
        self.admin.put(&path, &node).expect_status(200, "update node labels");
    }

    /// A nodeSelector for nodes labelled with `sel` in this test.
    fn selector(&self, sel: &str) -> Value {
        json!({"nodeSelectorTerms": [{"matchExpressions": [
            {"key": LABEL, "operator": "In", "values": [format!("{}-{sel}", self.group)]}]}]})
    }

    fn create_pool(&self, plural: &str, kind: &str, name: &str, spec: Value) {
        let obj = json!({"apiVersion": "nv-ipam.nvidia.com/v1alpha1", "kind": kind,
            "metadata": {"name": name, "namespace": self.ns}, "spec": spec});
        self.admin
            .post(&format!("{API}/namespaces/{}/{plural}", self.ns), &obj)
            .expect_status(201, "create pool");
    }

    fn pool(&self, plural: &str, name: &str) -> Value {
        self.admin
            .get(&format!("{API}/namespaces/{}/{plural}/{name}", self.ns))
            .expect_status(200, "get pool")
    }

    fn update_pool(&self, plural: &str, name: &str, f: impl Fn(&mut Value)) {
        let path = format!("{API}/namespaces/{}/{plural}/{name}", self.ns);
        let mut p = self.admin.get(&path).expect_status(200, "get pool");
        f(&mut p);
        self.admin.put(&path, &p).expect_status(200, "update pool");
    }

    /// `status.allocations` as (node without the test prefix, startIP, endIP) triples.
    fn ip_allocations(&self, name: &str) -> Vec<(String, String, String)> {
        self.allocations("ippools", name, "startIP", "endIP")
    }

    /// `status.allocations` as (node without the test prefix, prefix, gateway) triples.
    fn cidr_allocations(&self, name: &str) -> Vec<(String, String, String)> {
        self.allocations("cidrpools", name, "prefix", "gateway")
    }

    fn allocations(&self, plural: &str, name: &str, a: &str, b: &str) -> Vec<(String, String, String)> {
        let p = self.pool(plural, name);
        let prefix = format!("{}-", self.group);
        let field = |e: &Value, k: &str| e[k].as_str().unwrap_or("").to_string();
        p["status"]["allocations"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|e| {
                        let n = field(e, "nodeName").trim_start_matches(&prefix).to_string();
                        (n, field(e, a), field(e, b))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn events(&self) -> Vec<Value> {
        let r = self
            .admin
            .get(&format!("/api/v1/namespaces/{}/events", self.ns))
            .expect_status(200, "list events");
        r["items"].as_array().cloned().unwrap_or_default()
    }

    fn start(&self, name: &str, extra: &[&str]) -> Controller {
        let mut args = cluster_args(&self.ns);
        args.extend(["--leader-elect-namespace".to_string(), self.ns.clone()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut c = Controller::spawn(self.sandbox.path(&format!("{name}.log")), &args);
        c.wait_ready(SETTLE);
        c
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for n in self.nodes.borrow().iter() {
            let _ = self.admin.delete(&format!("/api/v1/nodes/{n}"));
        }
        let _ = self.admin.delete(&format!("/api/v1/namespaces/{}", self.ns));
    }
}

/// Applies deploy/base/namespace.yaml and deploy/rbac/controller.yaml as admin, accepting
/// AlreadyExists (tests share the apiserver), and waits until the controller may write status.
fn ensure_rbac(admin: &Kube) {
    apply_manifests(admin, &["deploy/base/namespace.yaml", "deploy/rbac/controller.yaml"]);
    let controller = Kube::from_cp_kubeconfig("controller");
    let status = json!({"group": "nv-ipam.nvidia.com", "resource": "ippools", "subresource": "status", "verb": "update"});
    wait_until(RBAC_PROPAGATION, "the controller may update ippools/status", || {
        allowed(&controller, status.clone())
    });
}

fn triple(n: &str, a: &str, b: &str) -> (String, String, String) {
    (n.into(), a.into(), b.into())
}

#[test]
fn seed_and_reference_examples_come_out_exactly() {
    crate::needs_control_plane!();
    let w = World::new("it-ctl-seed");
    for n in ["node1", "node2"] {
        w.create_node(n, "a");
    }
    for n in ["n1", "n2", "n3", "n4"] {
        w.create_node(n, "b");
    }
    for n in ["node-1", "node-2"] {
        w.create_node(n, "c");
    }
    w.create_pool(
        "ippools",
        "IPPool",
        "pool1",
        json!({"subnet": "192.168.0.0/16", "gateway": "192.168.0.1", "perNodeBlockSize": 4, "nodeSelector": w.selector("a")}),
    );
    w.create_pool(
        "cidrpools",
        "CIDRPool",
        "pool1",
        json!({"cidr": "192.168.0.0/16", "gatewayIndex": 1, "perNodeNetworkPrefix": 24, "nodeSelector": w.selector("a")}),
    );
    // worked examples with the reference planner's results (as in src/alloc/*_planner/tests.rs)
    w.create_pool(
        "ippools",
        "IPPool",
        "example1",
        json!({"subnet": "192.168.0.0/24", "gateway": "192.168.0.1", "perNodeBlockSize": 15, "nodeSelector": w.selector("b")}),
    );
    w.create_pool(
        "cidrpools",
        "CIDRPool",
        "example22",
        json!({"cidr": "10.10.0.0/16", "gatewayIndex": 1, "perNodeNetworkPrefix": 24, "nodeSelector": w.selector("c")}),
    );
    let c = w.start("ctl", &[]);
    let want_seed =
        vec![triple("node1", "192.168.0.1", "192.168.0.4"), triple("node2", "192.168.0.5", "192.168.0.8")];
    wait_until(SETTLE, "IPPool pool1 has the seed allocations", || w.ip_allocations("pool1") == want_seed);
    let want_cidr = vec![
        triple("node1", "192.168.0.0/24", "192.168.0.1"),
        triple("node2", "192.168.1.0/24", "192.168.1.1"),
    ];
    wait_until(SETTLE, "CIDRPool pool1 has the seed allocations", || {
        w.cidr_allocations("pool1") == want_cidr
    });
    let want1 = vec![
        triple("n1", "192.168.0.1", "192.168.0.15"),
        triple("n2", "192.168.0.16", "192.168.0.30"),
        triple("n3", "192.168.0.31", "192.168.0.45"),
        triple("n4", "192.168.0.46", "192.168.0.60"),
    ];
    wait_until(SETTLE, "example 1 allocations", || w.ip_allocations("example1") == want1);
    let want22 =
        vec![triple("node-1", "10.10.0.0/24", "10.10.0.1"), triple("node-2", "10.10.1.0/24", "10.10.1.1")];
    wait_until(SETTLE, "example 22 allocations", || w.cidr_allocations("example22") == want22);
    // The count behind the CRDs' "Nodes" printer column is written with the allocations.
    assert_eq!(w.pool("ippools", "example1")["status"]["allocatedNodes"], 4);
    assert_eq!(w.pool("cidrpools", "example22")["status"]["allocatedNodes"], 2);
    let cond = &w.pool("ippools", "pool1")["status"]["conditions"][0];
    assert_eq!((cond["type"].as_str(), cond["status"].as_str()), (Some("SpecValid"), Some("True")), "{cond}");
    wait_until(SETTLE, "pool gauges are exported", || {
        c.metric("nv_ipam_pool_nodes_allocated{pool=\"example1\",pool_type=\"ippool\"}") == Some(4.0)
            && c.metric("nv_ipam_pool_free_blocks{pool=\"example1\",pool_type=\"ippool\"}") == Some(12.0)
            && c.metric("nv_ipam_pool_size{pool=\"pool1\",pool_type=\"cidrpool\"}") == Some(65536.0)
    });
    assert_eq!(c.healthz(), 200);
}

#[test]
fn unlabelled_node_with_zero_grace_frees_its_block_for_a_new_node() {
    crate::needs_control_plane!();
    let w = World::new("it-ctl-grace0");
    let n1 = w.create_node("node1", "a");
    w.create_node("node2", "a");
    w.create_pool(
        "ippools",
        "IPPool",
        "p",
        json!({"subnet": "192.168.0.0/16", "perNodeBlockSize": 4, "nodeSelector": w.selector("a")}),
    );
    let _c = w.start("ctl", &["--node-release-grace-period", "0s"]);
    wait_until(SETTLE, "two blocks", || w.ip_allocations("p").len() == 2);
    w.set_node_label(&n1, None);
    wait_until(SETTLE, "node1's block is released", || {
        w.ip_allocations("p") == vec![triple("node2", "192.168.0.5", "192.168.0.8")]
    });
    w.create_node("node3", "a");
    wait_until(SETTLE, "node3 gets the freed block", || {
        w.ip_allocations("p")
            == vec![
                triple("node2", "192.168.0.5", "192.168.0.8"),
                triple("node3", "192.168.0.1", "192.168.0.4"),
            ]
    });
}

#[test]
fn departed_node_keeps_its_block_for_the_grace_period() {
    crate::needs_control_plane!();
    let w = World::new("it-ctl-grace");
    let n1 = w.create_node("node1", "a");
    w.create_node("node2", "a");
    w.create_pool(
        "ippools",
        "IPPool",
        "p",
        json!({"subnet": "192.168.0.0/16", "perNodeBlockSize": 4, "nodeSelector": w.selector("a")}),
    );
    let c = w.start("ctl", &["--node-release-grace-period", &format!("{}s", GRACE.as_secs())]);
    wait_until(SETTLE, "two blocks", || w.ip_allocations("p").len() == 2);
    // the grace period starts when the controller sees the deletion, after this instant
    let grace_end = Instant::now() + GRACE;
    w.delete_node(&n1);
    w.create_node("node3", "a");
    let held = vec![
        triple("node1", "192.168.0.1", "192.168.0.4"),
        triple("node2", "192.168.0.5", "192.168.0.8"),
        triple("node3", "192.168.0.9", "192.168.0.12"),
    ];
    // node3 is planned while node1 is held: it gets the next block, not node1's
    wait_until(SETTLE, "node3 gets a block", || w.ip_allocations("p").iter().any(|a| a.0 == "node3"));
    assert_eq!(w.ip_allocations("p"), held, "node1 is still held when node3 is planned");
    // and node1 stays held, in status and metrics, until the grace period has passed
    stays_true_until(grace_end, 1, "node1 is held until the grace period ended", || {
        w.ip_allocations("p") == held
            && c.metric("nv_ipam_pool_nodes_held{pool=\"p\",pool_type=\"ippool\"}") == Some(1.0)
    });
    wait_until(SETTLE, "node1's block is released after the grace period", || {
        w.ip_allocations("p").len() == 2
    });
    assert_eq!(
        w.ip_allocations("p"),
        vec![triple("node2", "192.168.0.5", "192.168.0.8"), triple("node3", "192.168.0.9", "192.168.0.12")]
    );
}

#[test]
fn invalid_spec_update_keeps_allocations_and_reports_why() {
    crate::needs_control_plane!();
    let w = World::new("it-ctl-invalid");
    w.create_node("node1", "a");
    w.create_pool(
        "ippools",
        "IPPool",
        "p",
        json!({"subnet": "192.168.0.0/16", "gateway": "192.168.0.1", "perNodeBlockSize": 4, "nodeSelector": w.selector("a")}),
    );
    let _c = w.start("ctl", &[]);
    let want = vec![triple("node1", "192.168.0.1", "192.168.0.4")];
    wait_until(SETTLE, "one block", || w.ip_allocations("p") == want);
    // schema-valid (a string) but outside the subnet: only the controller can tell
    w.update_pool("ippools", "p", |p| p["spec"]["gateway"] = json!("10.99.0.1"));
    wait_until(SETTLE, "SpecValid goes False", || {
        w.pool("ippools", "p")["status"]["conditions"][0]["status"] == "False"
    });
    let p = w.pool("ippools", "p");
    let cond = &p["status"]["conditions"][0];
    assert_eq!(cond["reason"], "InvalidSpec");
    let msg = cond["message"].as_str().unwrap_or("");
    assert!(msg.starts_with("ippool \"p\": spec.gateway"), "{msg}");
    assert_eq!(w.ip_allocations("p"), want, "allocations are kept");
    wait_until(SETTLE, "an InvalidSpec Event names the field", || {
        w.events().iter().any(|e| {
            e["reason"] == "InvalidSpec"
                && e["type"] == "Warning"
                && e["involvedObject"]["name"] == "p"
                && e["involvedObject"]["kind"] == "IPPool"
                && e["message"].as_str() == Some(msg)
        })
    });
    w.update_pool("ippools", "p", |p| p["spec"]["gateway"] = json!("192.168.0.1"));
    wait_until(SETTLE, "SpecValid goes True again", || {
        w.pool("ippools", "p")["status"]["conditions"][0]["status"] == "True"
    });
    assert_eq!(w.ip_allocations("p"), want);
}

#[test]
fn exhausted_pool_emits_no_free_ranges() {
    crate::needs_control_plane!();
    let w = World::new("it-ctl-exhausted");
    w.create_node("n1", "a");
    w.create_node("n2", "a");
    w.create_pool(
        "ippools",
        "IPPool",
        "small",
        json!({"subnet": "192.168.0.0/24", "perNodeBlockSize": 200, "nodeSelector": w.selector("a")}),
    );
    let _c = w.start("ctl", &[]);
    let n2 = w.node_name("n2");
    wait_until(SETTLE, "a NoFreeRanges Event for n2", || {
        w.events().iter().any(|e| {
            e["reason"] == "NoFreeRanges"
                && e["message"].as_str() == Some(&format!("failed to allocate IPs on Node: {n2}"))
        })
    });
    assert_eq!(w.ip_allocations("small"), vec![triple("n1", "192.168.0.1", "192.168.0.200")]);
}

#[test]
fn node_heartbeats_do_not_reconcile() {
    crate::needs_control_plane!();
    let w = World::new("it-ctl-heartbeat");
    let n1 = w.create_node("node1", "a");
    w.create_pool(
        "ippools",
        "IPPool",
        "p",
        json!({"subnet": "192.168.0.0/16", "perNodeBlockSize": 4, "nodeSelector": w.selector("a")}),
    );
    let c = w.start("ctl", &[]);
    wait_until(SETTLE, "one block", || w.ip_allocations("p").len() == 1);
    // the status write's own watch echo must not trigger anything either: let the count settle
    let before = wait_stable(SETTLE, Duration::from_secs(1), "the reconcile count is stable for 1 s", || {
        c.reconciles()
    });
    for i in 0..5 {
        let path = format!("/api/v1/nodes/{n1}/status");
        let mut node = w.admin.get(&format!("/api/v1/nodes/{n1}")).expect_status(200, "get node");
        node["status"]["conditions"] = json!([{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": format!("heartbeat {i}"), "lastHeartbeatTime": "2026-01-01T00:00:00Z",
            "lastTransitionTime": "2026-01-01T00:00:00Z"}]);
        w.admin.put(&path, &node).expect_status(200, "node status heartbeat");
    }
    // barrier: a real pool change after the heartbeats is seen after them (watches are ordered
    // per resource; the node and pool watches are separate, so also wait for the node's last
    // resourceVersion to be past by making the pool change after the heartbeat PUTs returned)
    w.update_pool("ippools", "p", |p| p["spec"]["perNodeBlockSize"] = json!(8));
    wait_until(SETTLE, "the block size change is applied", || {
        w.ip_allocations("p").first().map(|a| a.2.clone()) == Some("192.168.0.8".into())
    });
    assert_eq!(c.reconciles(), before + 1.0, "heartbeats reconciled something; only the pool change may");
}

#[test]
fn leader_election_one_reconciles_kill_and_release_hand_over() {
    crate::needs_control_plane!();
    let w = World::new("it-ctl-leader");
    w.create_node("node1", "a");
    w.create_pool(
        "ippools",
        "IPPool",
        "p",
        json!({"subnet": "192.168.0.0/16", "perNodeBlockSize": 4, "nodeSelector": w.selector("a")}),
    );
    let mut a = w.start("a", &["--leader-elect"]);
    let mut b = w.start("b", &["--leader-elect"]);
    wait_until(SETTLE, "exactly one leader", || a.is_leader() != b.is_leader());
    wait_until(SETTLE, "the leader allocated", || w.ip_allocations("p").len() == 1);
    let (leader, follower) = if a.is_leader() { (&mut a, &mut b) } else { (&mut b, &mut a) };
    assert_eq!(follower.reconciles(), 0.0, "the follower must not reconcile");

    // kill -9: the follower takes over within the lease duration (15 s) plus retry margin
    leader.signal("-KILL");
    let killed_at = Instant::now();
    stays_true_until(
        killed_at + Duration::from_secs(10),
        1,
        "the follower waits for the lease to expire",
        || !follower.is_leader(),
    );
    // within the lease duration (15 s) plus retry margin: 25 s after the kill in all
    wait_until(Duration::from_secs(15), "the follower becomes leader", || follower.is_leader());
    w.create_node("node2", "a");
    wait_until(SETTLE, "the new leader reconciles", || w.ip_allocations("p").len() == 2);

    // a third candidate; SIGTERM on the leader releases the lease: fast hand-over
    let c = w.start("c", &["--leader-elect"]);
    assert!(!c.is_leader());
    follower.signal("-TERM");
    assert_eq!(follower.wait_exit(Duration::from_secs(20)).code(), Some(0), "graceful exit code");
    wait_until(Duration::from_secs(8), "the third candidate takes the released lease", || c.is_leader());
    let lease = w
        .admin
        .get(&format!("/apis/coordination.k8s.io/v1/namespaces/{}/leases/dd1643cf.nvidia.com", w.ns))
        .expect_status(200, "get lease");
    assert!(lease["spec"]["holderIdentity"].as_str().is_some_and(|h| !h.is_empty()));
}

#[test]
fn restart_writes_nothing_when_nothing_changed() {
    crate::needs_control_plane!();
    let w = World::new("it-ctl-restart");
    let nodes = [w.create_node("node1", "a"), w.create_node("node2", "a")];
    w.create_pool(
        "ippools",
        "IPPool",
        "p",
        json!({"subnet": "192.168.0.0/16", "perNodeBlockSize": 4, "nodeSelector": w.selector("a")}),
    );
    let set_rv = |node: &str| {
        let path = format!("{API}/namespaces/{}/nodeblocksets/{node}", w.ns);
        let r = w.admin.get(&path);
        (r.status == 200 && r.body["spec"]["ipPools"].as_array().is_some_and(|p| p.len() == 1))
            .then(|| r.body["metadata"]["resourceVersion"].clone())
    };
    let mut c = w.start("first", &[]);
    wait_until(SETTLE, "two blocks", || w.ip_allocations("p").len() == 2);
    wait_until(SETTLE, "both NodeBlockSets written", || nodes.iter().all(|n| set_rv(n).is_some()));
    c.signal("-TERM");
    assert_eq!(c.wait_exit(Duration::from_secs(20)).code(), Some(0));
    let rv = w.pool("ippools", "p")["metadata"]["resourceVersion"].clone();
    let set_rvs: Vec<_> = nodes.iter().map(|n| set_rv(n)).collect();
    // status.allocations is the only truth: a new process decides the same and writes nothing,
    // neither the pool nor the NodeBlockSets (compared by hash, not rewritten; the apiserver
    // would not bump the resourceVersion of a no-op update, so its debug log tells)
    let c2 = w.start("second", &["--v=1"]);
    wait_until(SETTLE, "the new process reconciled the pool", || c2.reconciles() >= 1.0);
    assert_eq!(w.pool("ippools", "p")["metadata"]["resourceVersion"], rv, "the pool was rewritten");
    // a node added after the restart is written only once the writers went through the
    // existing ones (they are taken in name order, and its name sorts after theirs)
    let node3 = w.create_node("node3", "a");
    wait_until(SETTLE, "the new node's NodeBlockSet", || set_rv(&node3).is_some());
    wait_until(SETTLE, "nothing pending", || c2.metric("nv_ipam_node_block_sets_pending") == Some(0.0));
    let after: Vec<_> = nodes.iter().map(|n| set_rv(n)).collect();
    assert_eq!(after, set_rvs, "a restart rewrote NodeBlockSets that were as desired");
    let log = c2.log();
    assert!(log.contains(&format!("node block set {}/{node3} ", w.ns)), "writes are logged at -v 1: {log}");
    for n in &nodes {
        assert!(
            !log.contains(&format!("node block set {}/{n} ", w.ns)),
            "{n} rewritten after a restart: {log}"
        );
    }
}

#[test]
fn a_stolen_lease_stops_reconciling_until_won_back() {
    crate::needs_control_plane!();
    let w = World::new("it-ctl-stolen");
    w.create_node("node1", "a");
    w.create_pool(
        "ippools",
        "IPPool",
        "p",
        json!({"subnet": "192.168.0.0/16", "perNodeBlockSize": 4, "nodeSelector": w.selector("a")}),
    );
    let c = w.start("ctl", &["--leader-elect"]);
    wait_until(SETTLE, "leader", || c.is_leader());
    wait_until(SETTLE, "one block", || w.ip_allocations("p").len() == 1);
    // another holder takes the lease (as a partitioned-then-returning peer would)
    let path = format!("/apis/coordination.k8s.io/v1/namespaces/{}/leases/dd1643cf.nvidia.com", w.ns);
    let mut lease = w.admin.get(&path).expect_status(200, "get lease");
    let now = lease["spec"]["renewTime"].clone();
    lease["spec"]["holderIdentity"] = json!("intruder");
    lease["spec"]["acquireTime"] = now;
    w.admin.put(&path, &lease).expect_status(200, "steal lease");
    let stolen_at = Instant::now();
    wait_until(Duration::from_secs(10), "the controller steps down", || !c.is_leader());
    let count = c.reconciles();
    w.create_node("node2", "a");
    // without the lease nothing is reconciled and no status written
    let leader_again = || {
        // one scrape for both values, and a second one to know the status read happened
        // while still not leader
        let (leader, n) = c.leader_and_reconciles();
        if leader {
            return true;
        }
        let allocated = w.ip_allocations("p").len();
        if !c.leader_and_reconciles().0 {
            assert_eq!(n, count, "reconciled without the lease");
            assert_eq!(allocated, 1, "status written without the lease");
        }
        false
    };
    // the intruder's lease looks live for its duration (15 s from its renewTime): not taken back
    stays_true_until(
        stolen_at + Duration::from_secs(12),
        1,
        "the controller leaves a live lease alone",
        || !leader_again(),
    );
    // the intruder never renews: after the lease duration the controller takes it back
    wait_until(Duration::from_secs(15 + 10 - 12), "the controller is leader again", leader_again);
    wait_until(SETTLE, "node2 is allocated after winning the lease back", || {
        w.ip_allocations("p").len() == 2
    });
}

#[test]
fn keeps_reconciling_across_an_apiserver_restart() {
    crate::needs_control_plane!();
    let w = World::exclusive("it-ctl-apirestart");
    w.create_node("node1", "a");
    w.create_pool(
        "ippools",
        "IPPool",
        "p",
        json!({"subnet": "192.168.0.0/16", "perNodeBlockSize": 4, "nodeSelector": w.selector("a")}),
    );
    let c = w.start("ctl", &[]);
    wait_until(SETTLE, "one block", || w.ip_allocations("p").len() == 1);
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/control-plane.sh"))
        .arg("restart-apiserver")
        .output()
        .expect("run hack/control-plane.sh restart-apiserver");
    assert!(out.status.success(), "restart-apiserver: {}", String::from_utf8_lossy(&out.stderr));
    w.create_node("node2", "a");
    wait_until(Duration::from_secs(60), "node2 is allocated after the restart", || {
        w.ip_allocations("p").len() == 2
    });
    assert_eq!(c.healthz(), 200);
    assert_eq!(c.readyz(), 200);
}
