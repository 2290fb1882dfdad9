//! Proves the integration-test path end to end: the project's client stack (ureq + rustls/ring,
//! kubeconfig via yaml_serde) against the real kube-apiserver and etcd that
//! `hack/control-plane.sh` starts. Skips (one line on stderr) when not run
//! under it; fails instead under hack/test.sh.

mod common;

use std::time::{Duration, Instant};

use common::kube::{Kube, unique_name};
use serde_json::{Value, json};

/// Deletes the namespace when the test ends, also when it panics. Without a
/// controller-manager the namespace stays Terminating; that is fine for a throw-away cluster.
struct NamespaceGuard<'a> {
    kube: &'a Kube,
    name: String,
}

impl Drop for NamespaceGuard<'_> {
    fn drop(&mut self) {
        let r = self.kube.delete(&format!("/api/v1/namespaces/{}", self.name));
        if r.status != 200 && r.status != 202 && !std::thread::panicking() {
            panic!("deleting namespace {}: status {}, {}", self.name, r.status, r.body);
        }
    }
}

fn create_namespace(kube: &Kube) -> NamespaceGuard<'_> {
    let name = unique_name("it-cp");
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    kube.post("/api/v1/namespaces", &ns).expect_status(201, "create namespace");
    NamespaceGuard { kube, name }
}

fn resource_version(obj: &Value) -> String {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_else(|| panic!("no metadata.resourceVersion in {obj}"))
        .to_string()
}

#[test]
fn configmap_update_arrives_on_watch() {
    crate::needs_control_plane!();
    let kube = Kube::from_env();
    let ns = create_namespace(&kube);
    let base = format!("/api/v1/namespaces/{}/configmaps", ns.name);

    let cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "probe"},
        "data": {"step": "created"},
    });
    let created = kube.post(&base, &cm).expect_status(201, "create configmap");
    let rv = resource_version(&created);

    // The watch starts at the create's resourceVersion, so the update is delivered even if it
    // is committed before the apiserver registered the watch.
    let mut watch = kube.watch(&base, &rv, Duration::from_secs(30));

    let mut updated = created.clone();
    updated["data"]["step"] = json!("updated");
    let after = kube.put(&format!("{base}/probe"), &updated).expect_status(200, "update configmap");
    let new_rv = resource_version(&after);
    assert_ne!(new_rv, rv, "update did not change resourceVersion");

    let deadline = Instant::now() + Duration::from_secs(30);
    let ev = watch
        .wait_for(deadline, |ev| ev["type"] == "MODIFIED" && ev["object"]["metadata"]["name"] == "probe");
    assert_eq!(ev["object"]["data"]["step"], "updated", "event: {ev}");
    assert_eq!(resource_version(&ev["object"]), new_rv, "event: {ev}");
}

#[test]
fn rbac_is_enforced_for_the_node_identity() {
    crate::needs_control_plane!();
    let admin = Kube::from_env();
    let node = Kube::from_cp_kubeconfig("node");

    // The token file maps the node token to the service-account-like user and groups.
    let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
    let me = node
        .post("/apis/authentication.k8s.io/v1/selfsubjectreviews", &review)
        .expect_status(201, "self subject review");
    let info = &me["status"]["userInfo"];
    assert_eq!(info["username"], "system:serviceaccount:nv-ipam:nv-ipam-node", "{me}");
    let groups: Vec<&str> =
        info["groups"].as_array().map(|g| g.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    for g in ["system:serviceaccounts", "system:serviceaccounts:nv-ipam", "system:authenticated"] {
        assert!(groups.contains(&g), "group {g} missing in {me}");
    }

    // No RBAC rule grants it anything: creating a namespace is forbidden.
    let name = unique_name("it-forbidden");
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    let r = node.post("/api/v1/namespaces", &ns);
    assert_eq!(r.status, 403, "node identity must not create namespaces: {}", r.body);
    assert_eq!(r.body["reason"], "Forbidden", "{}", r.body);

    // The admin may, which shows the 403 came from authorization and not from the request.
    let _guard = NamespaceGuard { kube: &admin, name: name.clone() };
    admin.post("/api/v1/namespaces", &ns).expect_status(201, "admin creates the same namespace");
}
