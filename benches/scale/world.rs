//! The objects one size of the scale bench creates as admin (a namespace, 10 pools, N labelled
//! Nodes), their removal on every exit path, and the reads that decide convergence: each
//! pool's `status.allocations` and each node's NodeBlockSet.
//!
//! Owns: the run's objects in the apiserver. Must not: start processes (`procs.rs`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::apiserver::Own;
use crate::kube::{self, Kube};
use crate::procs::pause;

pub const API: &str = "/apis/nv-ipam.nvidia.com/v1alpha1";
pub const LABEL: &str = "nv-ipam.bench/scale";
/// Pools per run; every node gets one entry of each.
pub const POOLS: usize = 10;
/// Threads that create and delete nodes (the apiserver, not the bench, is the limit).
const THREADS: usize = 16;
/// Items per page of the NodeBlockSet list check (what a reflector asks for).
const PAGE: usize = 500;
const RBAC_PROPAGATION: Duration = Duration::from_secs(30);

/// One size's namespace, nodes and temp dir; all deleted on drop.
pub struct World {
    pub admin: Kube,
    pub ns: String,
    pub group: String,
    /// Every node name this run may have created (listed before the create).
    pub nodes: Vec<String>,
    pub dir: PathBuf,
}

impl Drop for World {
    fn drop(&mut self) {
        let t = Instant::now();
        // the namespace's objects first: without kube-controller-manager a deleted namespace
        // keeps them (Terminating) and they would fill the next size's apiserver
        for plural in ["nodeblocksets", "ippools", "cidrpools"] {
            let _ = self.admin.delete(&format!("{API}/namespaces/{}/{plural}", self.ns));
        }
        let _ = self.admin.delete(&format!("/api/v1/nodes?labelSelector={LABEL}%3D{}", self.group));
        // whatever the collection delete left
        let sel = format!("/api/v1/nodes?labelSelector={LABEL}%3D{}", self.group);
        let rest: Vec<String> = self.admin.try_get(&sel).ok().map(|r| names(&r.body)).unwrap_or_default();
        delete_nodes(&self.admin, &rest);
        let _ = self.admin.delete(&format!("/api/v1/namespaces/{}", self.ns));
        let _ = std::fs::remove_dir_all(&self.dir);
        eprintln!(
            "scale: cleaned up ({} nodes, namespace {}) in {:.1} s",
            self.nodes.len(),
            self.ns,
            t.elapsed().as_secs_f64()
        );
    }
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["metadata"]["name"].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// Runs `f(i)` for `0..n` on [`THREADS`] threads.
fn parallel(n: usize, f: impl Fn(usize) + Sync) {
    let next = AtomicUsize::new(0);
    thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    f(i);
                }
            });
        }
    });
}

fn delete_nodes(admin: &Kube, nodes: &[String]) {
    parallel(nodes.len(), |i| {
        let path = format!("/api/v1/nodes/{}", nodes[i]);
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| admin.delete(&path)));
    });
}

/// Polls `cond` (5 ms doubling to 250 ms) until it holds; panics naming `what` at the deadline.
pub fn wait_for(deadline: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    let mut wait = Duration::from_millis(5);
    loop {
        if cond() {
            return;
        }
        assert!(Instant::now() < end, "timed out after {deadline:?} waiting until {what}");
        pause(wait);
        wait = (wait * 2).min(Duration::from_millis(250));
    }
}

/// deploy/base/namespace.yaml and deploy/rbac/*.yaml as admin (AlreadyExists is fine); waits
/// until the controller may write pool status and the node identity may watch pools, and, where
/// the manifests grant it, write and watch NodeBlockSets.
pub fn ensure_rbac(admin: &Kube) {
    let files = ["deploy/base/namespace.yaml", "deploy/rbac/controller.yaml", "deploy/rbac/node.yaml"];
    kube::apply_manifests(admin, &files);
    let grants = |file: &str| kube::yaml_docs(file).iter().any(|d| d.to_string().contains("nodeblocksets"));
    let mut checks = vec![
        (
            "controller",
            json!({"group": "nv-ipam.nvidia.com", "resource": "cidrpools", "subresource": "status", "verb": "update"}),
        ),
        ("node", json!({"group": "nv-ipam.nvidia.com", "resource": "ippools", "verb": "watch"})),
    ];
    if grants("deploy/rbac/controller.yaml") {
        checks.push((
            "controller",
            json!({"group": "nv-ipam.nvidia.com", "resource": "nodeblocksets", "verb": "create"}),
        ));
    }
    if grants("deploy/rbac/node.yaml") {
        checks.push((
            "node",
            json!({"group": "nv-ipam.nvidia.com", "resource": "nodeblocksets", "verb": "watch"}),
        ));
    }
    for (who, attrs) in checks {
        let k = Kube::from_cp_kubeconfig(who);
        wait_for(RBAC_PROPAGATION, &format!("RBAC for {who} allows {attrs}"), || {
            kube::allowed(&k, attrs.clone())
        });
    }
}

/// The 10 pools: (plural, kind, name, spec without nodeSelector). Each has room for 16,384 or
/// more nodes (IPPools: /14 and /110 in blocks of 8 = 32,768; CIDRPools: /10 in /24s = 16,384,
/// /48 in /64s = 65,536), so 10,000 nodes and the joins all get an entry.
pub fn pool_specs() -> Vec<(&'static str, &'static str, String, Value)> {
    let mut v = Vec::new();
    for i in 0..4 {
        v.push((
            "ippools",
            "IPPool",
            format!("ip4-{i}"),
            json!({"subnet": format!("10.{}.0.0/14", 16 + 4 * i), "perNodeBlockSize": 8,
                   "gateway": format!("10.{}.0.1", 16 + 4 * i)}),
        ));
    }
    for i in 0..2 {
        v.push((
            "ippools",
            "IPPool",
            format!("ip6-{i}"),
            json!({"subnet": format!("fd00:{}::/110", i + 1), "perNodeBlockSize": 8,
                   "gateway": format!("fd00:{}::1", i + 1)}),
        ));
    }
    for (i, cidr) in ["10.64.0.0/10", "10.128.0.0/10"].iter().enumerate() {
        v.push((
            "cidrpools",
            "CIDRPool",
            format!("cidr4-{i}"),
            json!({"cidr": cidr, "perNodeNetworkPrefix": 24, "gatewayIndex": 1}),
        ));
    }
    for i in 0..2 {
        v.push((
            "cidrpools",
            "CIDRPool",
            format!("cidr6-{i}"),
            json!({"cidr": format!("fd{}0:0:0::/48", i + 1), "perNodeNetworkPrefix": 64, "gatewayIndex": 1}),
        ));
    }
    assert_eq!(v.len(), POOLS);
    v
}

impl World {
    /// A fresh namespace with the 10 pools, all selecting the nodes labelled with `group`.
    pub fn new(admin: &Kube, ns: String, group: String, dir: PathBuf) -> World {
        std::fs::create_dir_all(&dir).expect("create the temp dir");
        let world = World { admin: admin.clone(), ns, group, nodes: Vec::new(), dir };
        admin
            .post(
                "/api/v1/namespaces",
                &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": world.ns}}),
            )
            .expect_status(201, "create namespace");
        let selector = json!({"nodeSelectorTerms": [{"matchExpressions": [
            {"key": LABEL, "operator": "In", "values": [world.group]}]}]});
        for (plural, kind, name, mut spec) in pool_specs() {
            spec["nodeSelector"] = selector.clone();
            let obj = json!({"apiVersion": "nv-ipam.nvidia.com/v1alpha1", "kind": kind,
                "metadata": {"name": name, "namespace": world.ns}, "spec": spec});
            admin
                .post(&format!("{API}/namespaces/{}/{plural}", world.ns), &obj)
                .expect_status(201, "create pool");
        }
        world
    }

    fn node_object(&self, name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {LABEL: self.group}}})
    }

    /// Creates `names` (16 threads); they are recorded first, so a partial run is cleaned up.
    pub fn create_nodes(&mut self, names: Vec<String>) {
        self.nodes.extend(names.iter().cloned());
        let failed = AtomicUsize::new(0);
        parallel(names.len(), |i| {
            if self.admin.post("/api/v1/nodes", &self.node_object(&names[i])).status != 201 {
                failed.fetch_add(1, Ordering::Relaxed);
            }
        });
        assert_eq!(failed.load(Ordering::Relaxed), 0, "some node creates failed");
    }

    /// Creates one node (a join); counted in `own`.
    pub fn create_node(&mut self, name: &str, own: &Own) {
        self.nodes.push(name.to_string());
        own.add("nodes POST");
        self.admin
            .post("/api/v1/nodes", &self.node_object(name))
            .expect_status(201, "create the joining node");
    }

    /// Allocations per pool in the apiserver (one GET each, counted in `own`).
    pub fn allocations(&self, own: &Own) -> Vec<(String, usize)> {
        pool_specs()
            .into_iter()
            .map(|(plural, _, name, _)| {
                own.add(&format!("{plural} GET"));
                let p = self
                    .admin
                    .get(&format!("{API}/namespaces/{}/{plural}/{name}", self.ns))
                    .expect_status(200, "get pool");
                (name, p["status"]["allocations"].as_array().map_or(0, Vec::len))
            })
            .collect()
    }

    /// NodeBlockSets of the namespace that hold an entry of every pool, by a paged list (pages
    /// counted in `own`).
    pub fn complete_block_sets(&self, own: &Own) -> usize {
        let mut complete = 0;
        let mut cont = String::new();
        loop {
            own.add("nodeblocksets LIST");
            let mut path = format!("{API}/namespaces/{}/nodeblocksets?limit={PAGE}", self.ns);
            if !cont.is_empty() {
                path.push_str(&format!("&continue={}", escape(&cont)));
            }
            let r = self.admin.get(&path);
            if r.status != 200 {
                // e.g. 404 when the CRD is not installed: nothing is complete
                return complete;
            }
            let items = r.body["items"].as_array().cloned().unwrap_or_default();
            complete += items.iter().filter(|o| entries(o) == POOLS).count();
            cont = r.body["metadata"]["continue"].as_str().unwrap_or_default().to_string();
            if cont.is_empty() {
                return complete;
            }
        }
    }

    /// Entries of `node`'s NodeBlockSet (0 when it does not exist); one GET counted in `own`.
    pub fn block_set_entries(&self, node: &str, own: &Own) -> usize {
        own.add("nodeblocksets GET");
        let r = self.admin.get(&format!("{API}/namespaces/{}/nodeblocksets/{node}", self.ns));
        if r.status == 200 { entries(&r.body) } else { 0 }
    }
}

fn entries(nbs: &Value) -> usize {
    let len = |k: &str| nbs["spec"][k].as_array().map_or(0, Vec::len);
    len("ipPools") + len("cidrPools")
}

/// Percent-encodes a query value (continue tokens are base64).
fn escape(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
