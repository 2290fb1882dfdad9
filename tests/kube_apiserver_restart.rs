//! The control plane can restart its apiserver under a running test (for watch-resilience
//! tests): same URL and credentials, data kept in etcd. Its own test binary, so the restart
//! cannot disturb tests of other binaries (cargo runs test binaries one after another).

mod common;

use std::time::Duration;

use common::kube::{Kube, control_plane, unique_name};
use serde_json::json;

#[test]
fn apiserver_restart_keeps_url_credentials_and_data() {
    crate::needs_control_plane!();
    let kube = Kube::from_env();
    let name = unique_name("it-restart");
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    kube.post("/api/v1/namespaces", &ns).expect_status(201, "create namespace");

    control_plane("stop-apiserver");
    // Nothing listens any more: the request fails at the transport level.
    let probe = kube.try_get("/readyz");
    assert!(probe.is_err(), "apiserver still answers after stop-apiserver: {probe:?}");

    control_plane("start-apiserver");
    kube.get(&format!("/api/v1/namespaces/{name}")).expect_status(200, "namespace after start");

    control_plane("restart-apiserver");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "after-restart"}});
    let created = kube
        .post(&format!("/api/v1/namespaces/{name}/configmaps"), &cm)
        .expect_status(201, "create after restart");
    let rv = created["metadata"]["resourceVersion"].as_str().unwrap_or("0");
    // watches work against the restarted server
    let mut w = kube.watch(&format!("/api/v1/namespaces/{name}/configmaps"), rv, Duration::from_secs(10));
    kube.delete(&format!("/api/v1/namespaces/{name}/configmaps/after-restart"))
        .expect_status(200, "delete configmap");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    w.wait_for(deadline, |ev| ev["type"] == "DELETED");

    kube.delete(&format!("/api/v1/namespaces/{name}")).expect_status(200, "delete namespace");
}
