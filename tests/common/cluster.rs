//! The real `ipam-node` in cluster mode against the API server of `hack/control-plane.sh`, with
//! the test playing ipam-controller: a namespace of its own ([`TestNs`]) where pools and their
//! status are written as admin and every change is delivered to the nodes' NodeBlockSets as the
//! controller would deliver it ([`super::node_blocks`]). Daemons run as the node token user
//! (`$NV_IPAM_CP_DIR/node.kubeconfig`) with `deploy/rbac/node.yaml` applied. Also the small CNI
//! calls these tests make ([`add`], [`holds`], ...).

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::sync::Once;
use std::time::Duration;

use serde_json::{Value, json};

use super::daemon::Daemon;
use super::kube::{Kube, apply_manifests, cp_dir, unique_name};
use super::node_blocks::{self, API, settled};
use super::{CniOut, cni, env_refs, wait_until};

/// How long a daemon may take to follow a change made through the API.
pub const FOLLOW: Duration = Duration::from_secs(30);

/// Applies deploy/base/namespace.yaml and deploy/rbac/node.yaml once per process (AlreadyExists is fine).
pub fn apply_node_rbac(admin: &Kube) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        apply_manifests(admin, &["deploy/base/namespace.yaml", "deploy/rbac/node.yaml"]);
    });
}

/// A fresh namespace for the test's pools, NodeBlockSets and pods; deleted on drop.
pub struct TestNs {
    pub admin: Kube,
    pub name: String,
    /// Nodes that get a NodeBlockSet on every delivery: each daemon's, and every node a pool's
    /// status ever named (the controller writes one for every Node, empty when it has no pools).
    nodes: RefCell<BTreeSet<String>>,
}

impl TestNs {
    pub fn new() -> TestNs {
        let admin = Kube::from_env();
        apply_node_rbac(&admin);
        let name = unique_name("it-node");
        admin
            .post(
                "/api/v1/namespaces",
                &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
            )
            .expect_status(201, "create namespace");
        TestNs { admin, name, nodes: RefCell::new(BTreeSet::new()) }
    }

    /// The IPPool collection.
    pub fn pools(&self) -> String {
        format!("{API}/namespaces/{}/ippools", self.name)
    }

    /// Creates an IPPool, writes its status (`(node, start, end)` per node) and delivers.
    pub fn create_pool(&self, name: &str, subnet: &str, gateway: &str, allocs: &[(&str, &str, &str)]) {
        let pool = json!({
            "apiVersion": "nv-ipam.nvidia.com/v1alpha1",
            "kind": "IPPool",
            "metadata": {"name": name},
            "spec": {"subnet": subnet, "perNodeBlockSize": 10, "gateway": gateway},
        });
        settled("create pool", || self.admin.post(&self.pools(), &pool)).expect_status(201, "create pool");
        self.set_status(name, allocs);
    }

    /// Creates a pool object as given (any kind, spec as written) without status; delivers.
    pub fn create_raw(&self, plural: &str, obj: &Value) {
        let path = format!("{API}/namespaces/{}/{plural}", self.name);
        settled("create pool", || self.admin.post(&path, obj)).expect_status(201, "create pool");
        self.deliver();
    }

    pub fn get_pool(&self, name: &str) -> Value {
        settled("get pool", || self.admin.get(&format!("{}/{name}", self.pools())))
            .expect_status(200, "get pool")
    }

    /// Replaces an IPPool (a spec edit, `obj` as read with [`TestNs::get_pool`]); delivers.
    pub fn put_pool(&self, obj: &Value) {
        let name = obj["metadata"]["name"].as_str().expect("name");
        self.admin.put(&format!("{}/{name}", self.pools()), obj).expect_status(200, "replace pool");
        self.deliver();
    }

    /// Writes an IPPool's status as the controller would; delivers.
    pub fn set_status(&self, name: &str, allocs: &[(&str, &str, &str)]) {
        let mut obj = self.get_pool(name);
        let allocations: Vec<Value> =
            allocs.iter().map(|(n, s, e)| json!({"nodeName": n, "startIP": s, "endIP": e})).collect();
        obj["status"] = json!({ "allocations": allocations });
        self.admin
            .put(&format!("{}/{name}/status", self.pools()), &obj)
            .expect_status(200, "write pool status");
        self.deliver();
    }

    pub fn delete_pool(&self, name: &str) {
        self.admin.delete(&format!("{}/{name}", self.pools())).expect_status(200, "delete pool");
        self.deliver();
    }

    /// Writes every known node's NodeBlockSet from the pools as they are now, as ipam-controller
    /// does after a change (an unchanged object is a no-op for the API server: no event).
    pub fn deliver(&self) {
        let pools = node_blocks::pools_of(&self.admin, &self.name);
        let mut nodes = self.nodes.borrow_mut();
        for p in &pools {
            for a in p["status"]["allocations"].as_array().into_iter().flatten() {
                if let Some(n) = a["nodeName"].as_str() {
                    nodes.insert(n.to_string());
                }
            }
        }
        for node in nodes.iter() {
            node_blocks::write(&self.admin, &self.name, node, &pools);
        }
    }

    /// Creates a pod bound to `node` (no kubelet runs: it stays Pending); returns its UID.
    pub fn create_pod(&self, name: &str, node: &str) -> String {
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
        });
        let p = self
            .admin
            .post(&format!("/api/v1/namespaces/{}/pods", self.name), &pod)
            .expect_status(201, "create pod");
        p["metadata"]["uid"].as_str().expect("uid").to_string()
    }

    pub fn delete_pod_now(&self, name: &str) {
        let path = format!("/api/v1/namespaces/{}/pods/{name}?gracePeriodSeconds=0", self.name);
        let r = self.admin.delete(&path);
        assert_eq!(r.status, 200, "delete pod: {}", r.body);
        wait_until(FOLLOW, "the pod is gone", || {
            self.admin.get(&format!("/api/v1/namespaces/{}/pods/{name}", self.name)).status == 404
        });
    }

    /// A cluster-mode daemon for `node` as the node identity (not started); the node gets its
    /// NodeBlockSet from the next delivery on.
    pub fn daemon(&self, node: &str, extra: &[&str]) -> Daemon {
        self.nodes.borrow_mut().insert(node.to_string());
        Daemon::prepare_cluster(node, cp_dir().join("node.kubeconfig"), &self.name, extra)
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = self.admin.delete(&format!("/api/v1/namespaces/{}", self.name));
    }
}

/// The pod-less environment of an attachment (runtimes without Kubernetes metadata).
pub fn anon_env(container: &str) -> Vec<(String, String)> {
    vec![
        ("CNI_CONTAINERID".into(), container.into()),
        ("CNI_NETNS".into(), format!("/var/run/netns/nvt-absent-{container}")),
        ("CNI_IFNAME".into(), "eth0".into()),
        ("CNI_PATH".into(), "/nonexistent-cni-path".into()),
        ("CNI_ARGS".into(), "IgnoreUnknown=1".into()),
    ]
}

/// The environment of an attachment of pod `ns/name` with `uid`.
pub fn pod_env(container: &str, ns: &str, name: &str, uid: &str) -> Vec<(String, String)> {
    let mut env = anon_env(container);
    env[4].1 = format!("IgnoreUnknown=1;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={name};K8S_POD_UID={uid}");
    env
}

pub fn call(cmd: &str, cfg: &Value, env: &[(String, String)]) -> CniOut {
    cni(cmd, cfg, &env_refs(env))
}

/// An ADD from `pool` on network `net1`.
pub fn add(d: &Daemon, pool: &str, env: &[(String, String)]) -> CniOut {
    call("ADD", &d.config("1.0.0", "net1", pool), env)
}

/// The address (no prefix length) of a successful ADD.
pub fn ip_of(out: &CniOut) -> String {
    let a = out.addresses();
    assert_eq!(a.len(), 1, "{out}");
    a[0].split('/').next().expect("address").to_string()
}

pub fn last_octet(ip: &str) -> u32 {
    ip.rsplit('.').next().and_then(|o| o.parse().ok()).unwrap_or_else(|| panic!("not IPv4: {ip}"))
}

/// CHECK with the ADD's result: does the daemon still hold it?
pub fn holds(d: &Daemon, pool: &str, env: &[(String, String)], result: &CniOut) -> bool {
    let mut cfg = d.config("1.0.0", "net1", pool);
    cfg["prevResult"] = result.json.clone();
    call("CHECK", &cfg, env).exit == 0
}

/// Starts the daemon and waits until it serves and `/readyz` answers 200.
pub fn start_ready(d: &mut Daemon) {
    d.spawn();
    wait_until(FOLLOW, "/readyz answers 200", || d.ready());
}
