//! `ipam-node` in cluster mode against the real kube-apiserver of `hack/control-plane.sh`:
//! pools from the node's NodeBlockSet (pools and status written here as admin and delivered as
//! the controller would, `common::cluster`; the controller is not under test except in the one
//! test that starts it), the pools cache across an apiserver outage, readiness, the stale
//! cleaner, the released-IP cooldown, and the node identity's read-only RBAC. Every daemon runs
//! as the node token user (`$NV_IPAM_CP_DIR/node.kubeconfig`) with `deploy/rbac/node.yaml`
//! applied. How the node follows its NodeBlockSet is `tests/kube_node_blocks.rs`.
//!
//! Skips (one line on stderr) when not run under the control plane (fails instead under
//! hack/test.sh). Waits only on conditions (`common::wait`). Parallel-safe: unique namespaces,
//! node and pod names; the one test that stops the apiserver holds [`OUTAGE`] for writing,
//! every other test holds it for reading.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::sync::{RwLock, RwLockReadGuard};
use std::time::Duration;

use common::cluster::{FOLLOW, TestNs, add, anon_env, call, holds, ip_of, last_octet, pod_env, start_ready};
use common::controller::{Controller, cluster_args};
use common::daemon::Daemon;
use common::kube::{Kube, apply_manifests, control_plane, unique_name};
use common::netns::{HostLink, Netns};
use common::node_blocks;
use common::{env_refs, run_plugin, wait_until};
use serde_json::{Value, json};

/// Held for writing while the apiserver is stopped; for reading by every other test.
static OUTAGE: RwLock<()> = RwLock::new(());
/// How long a daemon may take to come back after the apiserver did (reflector backoff is
/// capped at 30 s).
const RECOVER: Duration = Duration::from_secs(45);
/// Bound for a released address to be handed out again under `--released-ip-cooldown=5s`:
/// the cooldown plus slack for a busy machine.
const COOLDOWN_END: Duration = Duration::from_secs(5 + 10);

fn shared() -> RwLockReadGuard<'static, ()> {
    OUTAGE.read().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn two_nodes_get_their_own_blocks_and_follow_status_changes() {
    crate::needs_control_plane!();
    let _g = shared();
    let t = TestNs::new();
    let (n1, n2) = (unique_name("n1"), unique_name("n2"));
    t.create_pool(
        "p",
        "10.80.0.0/24",
        "10.80.0.1",
        &[(&n1, "10.80.0.1", "10.80.0.10"), (&n2, "10.80.0.11", "10.80.0.20")],
    );
    let mut d1 = t.daemon(&n1, &[]);
    let mut d2 = t.daemon(&n2, &[]);
    start_ready(&mut d1);
    start_ready(&mut d2);

    let mut seen = std::collections::HashSet::new();
    let mut first = None;
    for i in 0..3 {
        let e1 = anon_env(&format!("a{i}"));
        let o1 = add(&d1, "p", &e1).ok();
        let o2 = add(&d2, "p", &anon_env(&format!("b{i}"))).ok();
        let (ip1, ip2) = (ip_of(&o1), ip_of(&o2));
        assert!((2..=10).contains(&last_octet(&ip1)), "node 1 got {ip1} outside .1-.10");
        assert!((11..=20).contains(&last_octet(&ip2)), "node 2 got {ip2} outside .11-.20");
        assert!(seen.insert(ip1.clone()) && seen.insert(ip2.clone()), "duplicate address {ip1} or {ip2}");
        if i == 0 {
            first = Some((e1, o1));
        }
    }
    let (first_env, first_out) = first.unwrap();

    // Node 1's block moves: new ADDs come from the new block; the old reservation stays.
    t.set_status("p", &[(&n1, "10.80.0.21", "10.80.0.30"), (&n2, "10.80.0.11", "10.80.0.20")]);
    let mut k = 0;
    wait_until(FOLLOW, "node 1 allocates from its moved block .21-.30", || {
        k += 1;
        let o = add(&d1, "p", &anon_env(&format!("m{k}")));
        o.exit == 0 && (21..=30).contains(&last_octet(&ip_of(&o)))
    });
    assert!(holds(&d1, "p", &first_env, &first_out), "a moved block must not drop existing reservations");

    // Metrics name the pool and count ADDs.
    let (code, metrics) = d1.http_get("/metrics").expect("metrics");
    assert_eq!(code, 200);
    assert!(metrics.contains("nv_ipam_node_pool_allocated{pool=\"p\",pool_type=\"ippool\"}"), "{metrics}");
    assert!(metrics.contains("nv_ipam_node_pool_free{pool=\"p\",pool_type=\"ippool\"}"), "{metrics}");
    assert!(metrics.contains("nv_ipam_node_request_duration_seconds_count{op=\"add\"}"), "{metrics}");
    assert!(metrics.contains("nv_ipam_node_stale_released_total 0"), "{metrics}");
    assert_eq!(d1.http_get("/healthz").map(|r| r.0), Some(200));

    // The pool is deleted: new ADDs fail, the old reservation is still released by DEL.
    t.delete_pool("p");
    let mut k = 0;
    wait_until(FOLLOW, "ADD fails once the pool is deleted", || {
        k += 1;
        add(&d2, "p", &anon_env(&format!("x{k}"))).exit != 0
    });
    assert!(holds(&d1, "p", &first_env, &first_out), "a deleted pool keeps reservations until DEL");
    call("DEL", &d1.config("1.0.0", "net1", "p"), &first_env).ok();
    assert!(!holds(&d1, "p", &first_env, &first_out));
}

#[test]
fn bridge_plugin_in_a_netns_allocates_from_the_cluster_pool() {
    crate::needs_control_plane!();
    let bridge = PathBuf::from("/usr/lib/cni/bridge");
    assert!(bridge.is_file(), "{} is missing: apt-get install containernetworking-plugins", bridge.display());
    let _g = shared();
    let t = TestNs::new();
    let node = unique_name("nb");
    t.create_pool("br", "10.81.0.0/24", "10.81.0.1", &[(&node, "10.81.0.1", "10.81.0.10")]);
    let mut d = t.daemon(&node, &[]);
    start_ready(&mut d);
    let br = HostLink::bridge();
    let ns = Netns::new();
    let mut cfg = d.config("1.0.0", &format!("br-{}", br.name), "br");
    cfg["type"] = json!("bridge");
    cfg["bridge"] = json!(br.name);
    cfg["isGateway"] = json!(false);
    let env: Vec<(String, String)> = vec![
        ("CNI_CONTAINERID".into(), "brc1".into()),
        ("CNI_NETNS".into(), ns.path()),
        ("CNI_IFNAME".into(), "eth0".into()),
        ("CNI_PATH".into(), format!("{}:/usr/lib/cni", d.bin_dir.display())),
        ("CNI_ARGS".into(), "IgnoreUnknown=1".into()),
    ];
    let out = run_plugin(&bridge, "ADD", &cfg, &env_refs(&env)).ok();
    let addr = out.json["ips"][0]["address"].as_str().unwrap_or_default().to_string();
    assert!(addr.starts_with("10.81.0.") && addr.ends_with("/24"), "{out}");
    assert!(ns.addrs("eth0").contains(&format!("inet {addr} ")), "{addr} not in the netns");
    let mut del = cfg.clone();
    del["prevResult"] = out.json.clone();
    run_plugin(&bridge, "DEL", &del, &env_refs(&env)).ok();
}

/// Starts the apiserver again if the test fails while it is stopped.
struct ApiserverDown;

impl ApiserverDown {
    fn stop() -> ApiserverDown {
        control_plane("stop-apiserver");
        ApiserverDown
    }
}

impl Drop for ApiserverDown {
    fn drop(&mut self) {
        control_plane("start-apiserver");
    }
}

#[test]
fn pools_cache_serves_through_an_apiserver_outage_and_readyz_waits_for_pools() {
    crate::needs_control_plane!();
    let _g = OUTAGE.write().unwrap_or_else(|p| p.into_inner());
    let t = TestNs::new();
    let (node, fresh) = (unique_name("nc"), unique_name("nf"));
    t.create_pool(
        "c",
        "10.82.0.0/24",
        "10.82.0.1",
        &[(&node, "10.82.0.1", "10.82.0.10"), (&fresh, "10.82.0.11", "10.82.0.20")],
    );
    let mut d = t.daemon(&node, &[]);
    start_ready(&mut d);
    let e0 = anon_env("before");
    let before = add(&d, "c", &e0).ok();

    let down = ApiserverDown::stop();
    // A restart during the outage serves from the pools cache.
    d.restart();
    wait_until(FOLLOW, "the restarted daemon is ready from its cache", || d.ready());
    let during = add(&d, "c", &anon_env("during")).ok();
    assert!((2..=10).contains(&last_octet(&ip_of(&during))), "{during}");
    assert!(holds(&d, "c", &e0, &before));

    // A daemon without a cache neither serves nor reports ready until the pools are known.
    let mut f = t.daemon(&fresh, &[]);
    f.spawn_detached();
    wait_until(FOLLOW, "the fresh daemon's health server answers", || f.http_get("/readyz").is_some());
    // it has tried the API server and failed (the reflector logs each failed attempt)
    wait_until(FOLLOW, "the fresh daemon's first attempt to list pools fails", || {
        f.stderr().lines().any(|l| l.contains("reflector") && l.contains("failed") && l.contains("retrying"))
    });
    assert_eq!(f.http_get("/readyz").map(|r| r.0), Some(503), "ready without pools");
    assert!(!f.socket.exists(), "the socket must not serve before pools are known");
    drop(down); // start-apiserver

    f.wait_serving(RECOVER);
    wait_until(RECOVER, "the fresh daemon is ready", || f.ready());
    let o = add(&f, "c", &anon_env("fresh1")).ok();
    assert!((11..=20).contains(&last_octet(&ip_of(&o))), "{o}");

    // Nothing was lost, and status changes are followed again.
    assert!(holds(&d, "c", &e0, &before));
    t.set_status("c", &[(&node, "10.82.0.31", "10.82.0.40"), (&fresh, "10.82.0.11", "10.82.0.20")]);
    let mut k = 0;
    wait_until(RECOVER, "the cached daemon follows a status change after the outage", || {
        k += 1;
        let o = add(&d, "c", &anon_env(&format!("after{k}")));
        o.exit == 0 && (31..=40).contains(&last_octet(&ip_of(&o)))
    });
}

#[test]
fn stale_reservations_of_deleted_or_recreated_pods_are_released() {
    crate::needs_control_plane!();
    let _g = shared();
    let t = TestNs::new();
    let node = unique_name("ns");
    t.create_pool("s", "10.83.0.0/24", "10.83.0.1", &[(&node, "10.83.0.1", "10.83.0.20")]);
    let mut d = t.daemon(&node, &["--stale-ip-check-interval=1s", "--stale-ip-check-count-before-release=2"]);
    start_ready(&mut d);

    let uid_a = t.create_pod("pod-a", &node);
    let uid_b = t.create_pod("pod-b", &node);
    let ea = pod_env("ca", &t.name, "pod-a", &uid_a);
    let eb = pod_env("cb", &t.name, "pod-b", &uid_b);
    let en = anon_env("cn");
    let (oa, ob, on) = (add(&d, "s", &ea).ok(), add(&d, "s", &eb).ok(), add(&d, "s", &en).ok());

    // Live pods keep their addresses over several passes: a pod deleted now is released after
    // two passes (the threshold), which the live ones must survive.
    stale_passes(&t, &d, &node, "pod-w1");
    assert!(holds(&d, "s", &ea, &oa) && holds(&d, "s", &eb, &ob), "live pods lost their addresses");

    // pod-a deleted; pod-b deleted and re-created under the same name (another UID).
    t.delete_pod_now("pod-a");
    t.delete_pod_now("pod-b");
    let uid_b2 = t.create_pod("pod-b", &node);
    assert_ne!(uid_b, uid_b2);
    wait_until(FOLLOW, "the deleted pod's address is released", || !holds(&d, "s", &ea, &oa));
    wait_until(FOLLOW, "the re-created pod's old address is released", || !holds(&d, "s", &eb, &ob));
    let (_, metrics) = d.http_get("/metrics").expect("metrics");
    // pod-w1, pod-a, pod-b
    assert!(metrics.contains("nv_ipam_node_stale_released_total 3"), "{metrics}");

    // Without pod metadata a reservation is never released by the cleaner, over two more passes.
    stale_passes(&t, &d, &node, "pod-w2");
    assert!(holds(&d, "s", &en, &on), "a reservation without pod metadata was released");
    let (_, metrics) = d.http_get("/metrics").expect("metrics");
    assert!(metrics.contains("nv_ipam_node_stale_released_total 4"), "{metrics}");
}

/// Waits until the stale cleaner has made at least two passes (its release threshold): a pod
/// `name` gets an address of pool `s`, is deleted, and its address is released.
fn stale_passes(t: &TestNs, d: &Daemon, node: &str, name: &str) {
    let uid = t.create_pod(name, node);
    let env = pod_env(name, &t.name, name, &uid);
    let out = add(d, "s", &env).ok();
    t.delete_pod_now(name);
    wait_until(FOLLOW, "the stale cleaner releases a deleted pod's address (two passes)", || {
        !holds(d, "s", &env, &out)
    });
}

#[test]
fn released_ip_cooldown_delays_reuse() {
    crate::needs_control_plane!();
    let _g = shared();
    let t = TestNs::new();
    let node = unique_name("nk");
    // Block .1-.3 with gateway .1: two addresses.
    t.create_pool("k", "10.84.0.0/24", "10.84.0.1", &[(&node, "10.84.0.1", "10.84.0.3")]);
    let mut d = t.daemon(&node, &["--released-ip-cooldown=5s"]);
    start_ready(&mut d);
    let (ea, eb) = (anon_env("ka"), anon_env("kb"));
    let a = ip_of(&add(&d, "k", &ea).ok());
    let _b = ip_of(&add(&d, "k", &eb).ok());
    let before_release = std::time::Instant::now();
    call("DEL", &d.config("1.0.0", "net1", "k"), &ea).ok();
    // (only a check that took over 5 s, on a very slow machine, could see the address free)
    let e = add(&d, "k", &anon_env("kc"));
    assert_ne!(e.exit, 0, "the released {a} was handed out again within the cooldown:\n{e}");
    // The only free address is `a`: an ADD succeeds once the cooldown is over, and a refused
    // ADD reserves nothing, so asking until then changes nothing.
    let mut k = 0;
    let mut again = None;
    wait_until(COOLDOWN_END, "the address is free again after the 5 s cooldown", || {
        k += 1;
        let o = add(&d, "k", &anon_env(&format!("kd{k}")));
        let ok = o.exit == 0;
        // Not before the cooldown: the release happened after `before_release`, so an address
        // handed out again sooner than 5 s after it was handed out within the cooldown. (A
        // lower bound: a slow machine only makes the success later, never this fail.)
        assert!(
            !ok || before_release.elapsed() >= Duration::from_secs(5),
            "{a} was handed out again {:?} after its release, within the 5 s cooldown",
            before_release.elapsed()
        );
        again = ok.then_some(o);
        ok
    });
    assert_eq!(ip_of(&again.unwrap()), a, "after the cooldown the address is free again");
}

#[test]
fn node_identity_reads_but_cannot_write_pools_or_node_block_sets() {
    crate::needs_control_plane!();
    let _g = shared();
    let t = TestNs::new();
    let node = unique_name("nr");
    t.create_pool("r", "10.85.0.0/24", "10.85.0.1", &[(&node, "10.85.0.1", "10.85.0.10")]);
    let as_node = Kube::from_cp_kubeconfig("node");
    let mut obj = as_node.get(&format!("{}/r", t.pools())).expect_status(200, "node reads pools");
    obj["spec"]["perNodeBlockSize"] = json!(20);
    let r = as_node.put(&format!("{}/r", t.pools()), &obj);
    assert_eq!(r.status, 403, "the node identity must not update pools: {}", r.body);
    let r = as_node.put(&format!("{}/r/status", t.pools()), &obj);
    assert_eq!(r.status, 403, "the node identity must not write pool status: {}", r.body);
    let r = as_node.delete(&format!("{}/r", t.pools()));
    assert_eq!(r.status, 403, "the node identity must not delete pools: {}", r.body);

    // its NodeBlockSet: read (get, and list by name as ipam-node does), never written
    let path = node_blocks::path(&t.name, &node);
    let mut own = as_node.get(&path).expect_status(200, "the node reads its NodeBlockSet");
    let by_name = format!("{}?fieldSelector=metadata.name%3D{node}", node_blocks::collection(&t.name));
    let list = as_node.get(&by_name).expect_status(200, "the node lists its NodeBlockSet by name");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    own["spec"] = json!({});
    let r = as_node.put(&path, &own);
    assert_eq!(r.status, 403, "the node identity must not update NodeBlockSets: {}", r.body);
    let r = as_node.delete(&path);
    assert_eq!(r.status, 403, "the node identity must not delete NodeBlockSets: {}", r.body);
    let other = json!({"apiVersion": "nv-ipam.nvidia.com/v1alpha1", "kind": "NodeBlockSet",
        "metadata": {"name": unique_name("nr-other")}, "spec": own["spec"].clone()});
    let r = as_node.post(&node_blocks::collection(&t.name), &other);
    assert_eq!(r.status, 403, "the node identity must not create NodeBlockSets: {}", r.body);
}

/// A Node object (no kubelet) labelled for one test's pools; deleted on drop.
struct TestNode {
    admin: Kube,
    name: String,
    label: (String, String),
}

impl TestNode {
    fn new(admin: &Kube) -> TestNode {
        let name = unique_name("nv");
        let label = ("nv-ipam.test/node".to_string(), name.clone());
        let node = json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {label.0.clone(): label.1.clone()}}});
        admin.post("/api/v1/nodes", &node).expect_status(201, "create node");
        TestNode { admin: admin.clone(), name, label }
    }

    /// A nodeSelector that matches only this node.
    fn selector(&self) -> Value {
        json!({"nodeSelectorTerms": [{"matchExpressions": [
            {"key": self.label.0, "operator": "In", "values": [self.label.1]}]}]})
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let _ = self.admin.delete(&format!("/api/v1/nodes/{}", self.name));
    }
}

/// The real `ipam-controller` for one namespace (no leader election), as its service account,
/// once it may write pool status there; ready.
fn start_controller(admin: &Kube, ns: &str, log: PathBuf) -> Controller {
    apply_manifests(admin, &["deploy/base/namespace.yaml", "deploy/rbac/controller.yaml"]);
    let controller = Kube::from_cp_kubeconfig("controller");
    let attrs = json!({"group": "nv-ipam.nvidia.com", "resource": "ippools", "subresource": "status",
        "verb": "update", "namespace": ns});
    wait_until(FOLLOW, "the controller may update ippools/status", || {
        common::kube::allowed(&controller, attrs.clone())
    });
    let mut c = Controller::spawn(log, &cluster_args(ns));
    c.wait_ready(FOLLOW);
    c
}

#[test]
fn an_invalid_spec_edit_keeps_the_node_serving_across_a_restart_until_fixed() {
    crate::needs_control_plane!();
    let _g = shared();
    let t = TestNs::new();
    let n = TestNode::new(&t.admin);
    let pool = json!({
        "apiVersion": "nv-ipam.nvidia.com/v1alpha1", "kind": "IPPool", "metadata": {"name": "v"},
        "spec": {"subnet": "10.86.0.0/24", "perNodeBlockSize": 10, "gateway": "10.86.0.1",
                 "nodeSelector": n.selector()},
    });
    t.admin.post(&t.pools(), &pool).expect_status(201, "create pool");
    let mut d = t.daemon(&n.name, &[]);
    let _c = start_controller(&t.admin, &t.name, d.sandbox.path("controller.log"));
    let get = || t.admin.get(&format!("{}/v", t.pools())).expect_status(200, "get pool");
    let want = json!([{"nodeName": n.name, "startIP": "10.86.0.1", "endIP": "10.86.0.10"}]);
    wait_until(FOLLOW, "the controller gives the node a block", || get()["status"]["allocations"] == want);
    start_ready(&mut d);
    let e0 = anon_env("v0");
    let first = add(&d, "v", &e0).ok();
    assert_eq!(ip_of(&first), "10.86.0.2");

    // schema-valid, but the gateway leaves the subnet: only nv-ipam can tell
    let mut obj = get();
    obj["spec"]["gateway"] = json!("10.99.0.1");
    t.admin.put(&format!("{}/v", t.pools()), &obj).expect_status(200, "invalid edit");
    wait_until(FOLLOW, "SpecValid=False", || get()["status"]["conditions"][0]["status"] == "False");
    assert_eq!(get()["status"]["allocations"], want, "the controller keeps the allocations");
    let events = format!("/api/v1/namespaces/{}/events", t.name);
    wait_until(FOLLOW, "an InvalidSpec Event", || {
        let list = t.admin.get(&events).expect_status(200, "events");
        list["items"].as_array().is_some_and(|items| {
            items.iter().any(|e| e["reason"] == "InvalidSpec" && e["involvedObject"]["name"] == "v")
        })
    });
    wait_until(FOLLOW, "the node log says why", || {
        d.stderr()
            .lines()
            .any(|l| l.contains("\"v\"") && l.contains("spec.gateway") && l.contains("last valid spec"))
    });
    let during = add(&d, "v", &anon_env("v1")).ok();
    assert_eq!(ip_of(&during), "10.86.0.3", "ADDs continue from the last valid spec:\n{during}");
    assert_eq!(during.json["ips"][0]["gateway"], "10.86.0.1", "{during}");

    // the cache keeps the last valid spec, so a restart under the invalid spec still serves
    let cache = d.store_file.parent().unwrap().join("pools-cache.json");
    let cached: Value = serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    assert_eq!(cached["ipPools"][0]["spec"]["gateway"], "10.86.0.1", "{cached}");
    d.restart();
    wait_until(FOLLOW, "the restarted node is ready", || d.ready());
    let after = add(&d, "v", &anon_env("v2")).ok();
    assert_eq!(ip_of(&after), "10.86.0.4", "{after}");
    assert!(holds(&d, "v", &e0, &first));

    // a valid edit (another gateway) is followed
    let mut obj = get();
    obj["spec"]["gateway"] = json!("10.86.0.254");
    t.admin.put(&format!("{}/v", t.pools()), &obj).expect_status(200, "valid edit");
    let mut k = 0;
    wait_until(FOLLOW, "the node follows the valid edit", || {
        k += 1;
        let o = add(&d, "v", &anon_env(&format!("w{k}")));
        o.exit == 0 && o.json["ips"][0]["gateway"] == "10.86.0.254"
    });
    wait_until(FOLLOW, "SpecValid=True again", || get()["status"]["conditions"][0]["status"] == "True");
    assert_eq!(get()["status"]["allocations"], want);
}

#[test]
fn under_an_invalid_spec_the_node_does_not_follow_status_and_refuses_new_invalid_pools_truthfully() {
    crate::needs_control_plane!();
    let _g = shared();
    let t = TestNs::new();
    let node = unique_name("ns");
    t.create_pool("s", "10.87.0.0/24", "10.87.0.1", &[(&node, "10.87.0.1", "10.87.0.10")]);
    let mut d = t.daemon(&node, &[]);
    start_ready(&mut d);
    assert_eq!(ip_of(&add(&d, "s", &anon_env("s0")).ok()), "10.87.0.2");

    let mut obj = t.get_pool("s");
    obj["spec"]["gateway"] = json!("10.99.0.1");
    t.put_pool(&obj); // the controller copies an invalid spec verbatim
    wait_until(FOLLOW, "the node log says why", || d.stderr().contains("spec.gateway"));
    // a status that moves this node's block while the spec is invalid is not followed
    t.set_status("s", &[(&node, "10.87.0.101", "10.87.0.110")]);
    wait_until(FOLLOW, "the node logs that it does not follow the status", || {
        d.stderr().lines().any(|l| l.contains("\"s\"") && l.contains("10.87.0.101-10.87.0.110"))
    });
    assert_eq!(ip_of(&add(&d, "s", &anon_env("s1")).ok()), "10.87.0.3");

    // a pool created invalid: the ADD error says why, not "not found"
    let bad = json!({"apiVersion": "nv-ipam.nvidia.com/v1alpha1", "kind": "IPPool", "metadata": {"name": "bad"},
        "spec": {"subnet": "10.88.0.0/24", "perNodeBlockSize": 10, "gateway": "10.99.0.1"}});
    t.create_raw("ippools", &bad);
    t.set_status("bad", &[(&node, "10.88.0.1", "10.88.0.10")]);
    wait_until(FOLLOW, "the ADD error names the invalid spec", || {
        let o = add(&d, "bad", &anon_env("b0"));
        o.exit != 0
            && o.json["details"]
                .as_str()
                .is_some_and(|m| m.contains("invalid spec") && m.contains("spec.gateway"))
    });

    // the spec is fixed: the node follows the status as it is now
    let mut obj = t.get_pool("s");
    obj["spec"]["gateway"] = json!("10.87.0.1");
    t.put_pool(&obj);
    let mut k = 0;
    wait_until(FOLLOW, "the node follows the moved block once the spec is valid", || {
        k += 1;
        let o = add(&d, "s", &anon_env(&format!("m{k}")));
        o.exit == 0 && (101..=110).contains(&last_octet(&ip_of(&o)))
    });
}
