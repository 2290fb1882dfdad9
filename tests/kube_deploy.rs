//! The deploy/ manifests against a real kube-apiserver: the CRDs (installed by
//! `hack/control-plane.sh --crds deploy/crds`) are served with the schema, CEL rules, status
//! subresource and printer columns we claim; the examples are accepted unchanged; the RBAC of
//! deploy/rbac gives the controller and node tokens exactly their rights. Skips (one line on
//! stderr) when not run under the control plane; fails instead under hack/test.sh.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::kube::{Kube, Reply, allowed, create_or_exists, unique_name, yaml_docs};
use common::wait_until;
use nv_ipam::api::{CidrPool, IpPool, validate};
use serde_json::{Value, json};

const API: &str = "/apis/nv-ipam.nvidia.com/v1alpha1";
const TABLE: &str = "application/json;as=Table;g=meta.k8s.io;v=v1";
/// RBAC changes reach the authorizer through an informer; this bounds the wait for that.
const RBAC_PROPAGATION: Duration = Duration::from_secs(30);

/// Deletes the namespace when the test ends, also when it panics. Without a
/// controller-manager it stays Terminating; that is fine for a throw-away cluster.
struct Namespace<'a> {
    kube: &'a Kube,
    name: String,
}

impl Namespace<'_> {
    fn pools(&self, plural: &str) -> String {
        format!("{API}/namespaces/{}/{plural}", self.name)
    }
}

impl Drop for Namespace<'_> {
    fn drop(&mut self) {
        let r = self.kube.delete(&format!("/api/v1/namespaces/{}", self.name));
        if r.status != 200 && r.status != 202 && !std::thread::panicking() {
            panic!("deleting namespace {}: status {}, {}", self.name, r.status, r.body);
        }
    }
}

fn namespace<'a>(kube: &'a Kube, prefix: &str) -> Namespace<'a> {
    let name = unique_name(prefix);
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    kube.post("/api/v1/namespaces", &ns).expect_status(201, "create namespace");
    Namespace { kube, name }
}

fn yaml_doc(rel: &str) -> Value {
    let mut docs = yaml_docs(rel);
    assert_eq!(docs.len(), 1, "{rel}: expected one document");
    docs.remove(0)
}

/// Applies deploy/base/namespace.yaml and deploy/rbac/*.yaml as admin (idempotent) and waits until
/// the authorizer grants both identities one of their rights, so the 403s asserted afterwards
/// come from the rules and not from a binding still on its way.
fn ensure_rbac(admin: &Kube) -> (Kube, Kube) {
    for rel in ["deploy/base/namespace.yaml", "deploy/rbac/controller.yaml", "deploy/rbac/node.yaml"] {
        for obj in yaml_docs(rel) {
            create_or_exists(admin, &obj);
        }
    }
    let controller = Kube::from_cp_kubeconfig("controller");
    let node = Kube::from_cp_kubeconfig("node");
    let status = json!({"group": "nv-ipam.nvidia.com", "resource": "ippools", "subresource": "status", "verb": "update"});
    wait_until(RBAC_PROPAGATION, "the controller may update ippools/status", || {
        allowed(&controller, status.clone())
    });
    let lease = json!({"group": "coordination.k8s.io", "resource": "leases", "namespace": "nv-ipam", "verb": "update"});
    wait_until(RBAC_PROPAGATION, "the controller may update leases in nv-ipam", || {
        allowed(&controller, lease.clone())
    });
    let pods = json!({"resource": "pods", "verb": "watch"});
    wait_until(RBAC_PROPAGATION, "the node may watch pods", || allowed(&node, pods.clone()));
    (controller, node)
}

/// Lets the controller hold its Lease in `namespace` (as for `--leader-elect-namespace`): the
/// RoleBinding deploy/rbac/controller.yaml has for nv-ipam, in another namespace. Returns
/// its name.
fn bind_leader_election(admin: &Kube, namespace: &str) -> String {
    let mut binding = yaml_docs("deploy/rbac/controller.yaml")
        .into_iter()
        .find(|o| o["kind"] == "RoleBinding")
        .expect("deploy/rbac/controller.yaml has the leader-election RoleBinding");
    binding["metadata"]["namespace"] = json!(namespace);
    create_or_exists(admin, &binding);
    binding["metadata"]["name"].as_str().unwrap().to_string()
}

fn ippool(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "nv-ipam.nvidia.com/v1alpha1", "kind": "IPPool", "metadata": {"name": name}, "spec": spec})
}

fn cidrpool(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "nv-ipam.nvidia.com/v1alpha1", "kind": "CIDRPool", "metadata": {"name": name}, "spec": spec})
}

/// A 403 from authorization (not a 404 or a validation error that happens to fail too).
fn assert_forbidden(r: Reply, what: &str) {
    assert_eq!(r.status, 403, "{what}: expected 403, got {}", r.body);
    assert_eq!(r.body["reason"], "Forbidden", "{what}: {}", r.body);
}

#[test]
fn crds_are_established_and_discoverable() {
    crate::needs_control_plane!();
    let admin = Kube::from_env();
    for (crd, kind) in
        [("ippools.nv-ipam.nvidia.com", "IPPool"), ("cidrpools.nv-ipam.nvidia.com", "CIDRPool")]
    {
        let obj = admin
            .get(&format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd}"))
            .expect_status(200, crd);
        let conds = obj["status"]["conditions"].as_array().cloned().unwrap_or_default();
        for want in ["Established", "NamesAccepted"] {
            assert!(
                conds.iter().any(|c| c["type"] == want && c["status"] == "True"),
                "{crd}: not {want}: {conds:?}"
            );
        }
        assert_eq!(obj["spec"]["names"]["kind"], kind, "{crd}");
        assert_eq!(obj["spec"]["scope"], "Namespaced", "{crd}");
    }

    let disco = admin.get(API).expect_status(200, "discovery of nv-ipam.nvidia.com/v1alpha1");
    let resources = disco["resources"].as_array().cloned().unwrap_or_default();
    let find = |name: &str| {
        resources
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not in discovery: {disco}"))
    };
    for (plural, kind) in [("ippools", "IPPool"), ("cidrpools", "CIDRPool")] {
        let r = find(plural);
        assert_eq!(r["kind"], kind, "{r}");
        assert_eq!(r["namespaced"], true, "{r}");
        let status = find(&format!("{plural}/status"));
        let verbs: Vec<&str> = status["verbs"]
            .as_array()
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert!(verbs.contains(&"update") && verbs.contains(&"patch"), "{status}");
    }
}

#[test]
fn readme_examples_are_accepted_unchanged() {
    crate::needs_control_plane!();
    let admin = Kube::from_env();
    let ns = namespace(&admin, "it-deploy-examples");
    for (file, plural) in
        [("deploy/examples/ippool.yaml", "ippools"), ("deploy/examples/cidrpool.yaml", "cidrpools")]
    {
        let example = yaml_doc(file);
        let created = admin.post(&ns.pools(plural), &example).expect_status(201, file);
        // Nothing was pruned or defaulted: the stored spec is the file's spec.
        assert_eq!(created["spec"], example["spec"], "{file}: stored spec differs from the file");
        let read = admin
            .get(&format!("{}/{}", ns.pools(plural), example["metadata"]["name"].as_str().unwrap()))
            .expect_status(200, file);
        assert_eq!(read["spec"], example["spec"], "{file}: read-back spec differs from the file");
        // The examples are also valid for our controller, so they are worth copying.
        match plural {
            "ippools" => {
                let pool: IpPool = serde_json::from_value(read).unwrap();
                validate::validate_ip_pool(&pool).unwrap_or_else(|e| panic!("{file}: {e}"));
            }
            _ => {
                let pool: CidrPool = serde_json::from_value(read).unwrap();
                validate::validate_cidr_pool(&pool).unwrap_or_else(|e| panic!("{file}: {e}"));
            }
        }
    }
}

#[test]
fn invalid_pools_are_rejected_naming_the_field() {
    crate::needs_control_plane!();
    let admin = Kube::from_env();
    let ns = namespace(&admin, "it-deploy-invalid");
    let good_ip = json!({"subnet": "10.0.0.0/16", "perNodeBlockSize": 10});
    let with = |base: &Value, key: &str, v: Value| {
        let mut s = base.clone();
        s[key] = v;
        s
    };
    let good_cidr = json!({"cidr": "10.0.0.0/16", "perNodeNetworkPrefix": 24});
    // (what, object, field the message must name, words it must contain)
    let cases = [
        (
            "perNodeExclusions endIndex < startIndex (CEL)",
            ippool("bad-cel", with(&good_ip, "perNodeExclusions", json!([{"startIndex": 5, "endIndex": 2}]))),
            "spec.perNodeExclusions[0].endIndex",
            "endIndex must be greater than or equal to startIndex",
        ),
        (
            "CIDRPool perNodeExclusions endIndex < startIndex (CEL)",
            cidrpool(
                "bad-cel",
                with(
                    &good_cidr,
                    "perNodeExclusions",
                    json!([{"startIndex": 0, "endIndex": 1}, {"startIndex": 9, "endIndex": 8}]),
                ),
            ),
            "spec.perNodeExclusions[1].endIndex",
            "endIndex must be greater than or equal to startIndex",
        ),
        (
            "negative perNodeBlockSize",
            ippool("bad-block", with(&good_ip, "perNodeBlockSize", json!(-1))),
            "spec.perNodeBlockSize",
            "greater than or equal to 1",
        ),
        (
            "negative startIndex",
            ippool(
                "bad-index",
                with(&good_ip, "perNodeExclusions", json!([{"startIndex": -1, "endIndex": 3}])),
            ),
            "spec.perNodeExclusions[0].startIndex",
            "greater than or equal to 0",
        ),
        (
            "missing subnet",
            ippool("no-subnet", json!({"perNodeBlockSize": 10})),
            "spec.subnet",
            "Required value",
        ),
        (
            "missing perNodeBlockSize",
            ippool("no-block", json!({"subnet": "10.0.0.0/16"})),
            "spec.perNodeBlockSize",
            "Required value",
        ),
        (
            "negative gatewayIndex",
            cidrpool("bad-gw", with(&good_cidr, "gatewayIndex", json!(-1))),
            "spec.gatewayIndex",
            "greater than or equal to 0",
        ),
        (
            "perNodeNetworkPrefix 0",
            cidrpool("bad-prefix", with(&good_cidr, "perNodeNetworkPrefix", json!(0))),
            "spec.perNodeNetworkPrefix",
            "greater than or equal to 1",
        ),
        (
            "missing cidr",
            cidrpool("no-cidr", json!({"perNodeNetworkPrefix": 24})),
            "spec.cidr",
            "Required value",
        ),
        (
            "staticAllocations entry without prefix",
            cidrpool("no-prefix", with(&good_cidr, "staticAllocations", json!([{"nodeName": "n1"}]))),
            "spec.staticAllocations[0].prefix",
            "Required value",
        ),
    ];
    for (what, obj, field, words) in cases {
        let plural = if obj["kind"] == "IPPool" { "ippools" } else { "cidrpools" };
        let r = admin.post(&ns.pools(plural), &obj);
        assert_eq!(r.status, 422, "{what}: expected 422 Invalid, got {} {}", r.status, r.body);
        let msg = r.body["message"].as_str().unwrap_or("");
        assert!(msg.contains(field), "{what}: message does not name {field}: {msg}");
        assert!(msg.contains(words), "{what}: message lacks {words:?}: {msg}");
    }

    // The boundaries themselves are accepted: index 0, equal ends, block size 1, gatewayIndex 0.
    let edge_ip = json!({"subnet": "10.0.0.0/16", "perNodeBlockSize": 1,
        "perNodeExclusions": [{"startIndex": 0, "endIndex": 0}, {"startIndex": 3, "endIndex": 3}]});
    admin.post(&ns.pools("ippools"), &ippool("edge", edge_ip)).expect_status(201, "edge IPPool");
    let edge_cidr = json!({"cidr": "10.0.0.0/16", "perNodeNetworkPrefix": 31, "gatewayIndex": 0});
    admin.post(&ns.pools("cidrpools"), &cidrpool("edge", edge_cidr)).expect_status(201, "edge CIDRPool");
}

#[test]
fn every_field_round_trips_and_unknown_fields_are_pruned() {
    crate::needs_control_plane!();
    let admin = Kube::from_env();
    let ns = namespace(&admin, "it-deploy-roundtrip");
    let selector = json!({"nodeSelectorTerms": [
        {"matchExpressions": [
            {"key": "zone", "operator": "In", "values": ["a", "b"]},
            {"key": "node-role.kubernetes.io/worker", "operator": "Exists"}]},
        {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n9"]}]}]});
    let ip_spec = json!({
        "subnet": "2001:db8::/64", "perNodeBlockSize": 256, "gateway": "2001:db8::1",
        "exclusions": [{"startIP": "2001:db8::10", "endIP": "2001:db8::20"}],
        "perNodeExclusions": [{"startIndex": 0, "endIndex": 3}],
        "nodeSelector": selector, "defaultGateway": true, "routes": [{"dst": "2001:db8:1::/48"}],
    });
    let cidr_spec = json!({
        "cidr": "10.10.0.0/16", "perNodeNetworkPrefix": 24, "gatewayIndex": 0,
        "exclusions": [{"startIP": "10.10.0.1", "endIP": "10.10.0.9"}],
        "perNodeExclusions": [{"startIndex": 250, "endIndex": 255}],
        "staticAllocations": [{"nodeName": "n1", "prefix": "10.10.7.0/24", "gateway": "10.10.7.254"},
                              {"prefix": "10.10.8.0/24"}],
        "nodeSelector": selector, "defaultGateway": false, "routes": [{"dst": "10.20.0.0/16"}],
    });

    for (plural, obj, spec) in [
        ("ippools", ippool("full", ip_spec.clone()), ip_spec),
        ("cidrpools", cidrpool("full", cidr_spec.clone()), cidr_spec),
    ] {
        // Unknown fields at every level the schema describes.
        let mut sent = obj.clone();
        sent["bogusTop"] = json!(1);
        sent["spec"]["bogusSpec"] = json!("x");
        sent["spec"]["exclusions"][0]["bogusItem"] = json!(true);
        sent["spec"]["perNodeExclusions"][0]["bogusIndex"] = json!(2);
        sent["spec"]["nodeSelector"]["nodeSelectorTerms"][0]["bogusTerm"] = json!([]);
        sent["spec"]["nodeSelector"]["nodeSelectorTerms"][0]["matchExpressions"][0]["bogusReq"] = json!({});
        sent["spec"]["routes"][0]["gw"] = json!("10.0.0.1");
        admin.post(&ns.pools(plural), &sent).expect_status(201, plural);
        let read = admin.get(&format!("{}/full", ns.pools(plural))).expect_status(200, plural);

        assert_eq!(read["spec"], spec, "{plural}: read-back spec is not what was sent minus unknown fields");
        assert!(read.get("bogusTop").is_none(), "{plural}: unknown top-level field kept: {read}");

        // Our serde types read what the apiserver stores and write the same wire names back.
        let ours = match plural {
            "ippools" => serde_json::to_value(serde_json::from_value::<IpPool>(read.clone()).unwrap().spec),
            _ => serde_json::to_value(serde_json::from_value::<CidrPool>(read.clone()).unwrap().spec),
        }
        .unwrap();
        let mut want = spec.clone();
        if want["defaultGateway"] == false {
            // Go's and our omitempty drop a false bool; the apiserver keeps what was sent.
            want.as_object_mut().unwrap().remove("defaultGateway");
        }
        assert_eq!(ours, want, "{plural}: src/api types and the CRD disagree on field names");
    }
}

#[test]
fn status_subresource_takes_status_only_with_the_controller_token() {
    crate::needs_control_plane!();
    let admin = Kube::from_env();
    let (controller, _node) = ensure_rbac(&admin);
    let ns = namespace(&admin, "it-deploy-status");
    let spec = json!({"subnet": "192.168.0.0/16", "perNodeBlockSize": 100, "gateway": "192.168.0.1"});
    let mut obj = ippool("st", spec.clone());
    obj["status"] =
        json!({"allocations": [{"nodeName": "sneaky", "startIP": "192.168.0.1", "endIP": "192.168.0.100"}]});
    let created = admin.post(&ns.pools("ippools"), &obj).expect_status(201, "create");
    assert!(created.get("status").is_none(), "status on create must be dropped: {created}");

    let path = format!("{}/st", ns.pools("ippools"));
    let mut current = controller.get(&path).expect_status(200, "controller reads the pool");
    let allocations = json!([
        {"nodeName": "node-a", "startIP": "192.168.0.1", "endIP": "192.168.0.100"},
        {"nodeName": "node-b", "startIP": "192.168.0.101", "endIP": "192.168.0.200"},
    ]);
    current["status"] = json!({"allocations": allocations});
    current["spec"]["subnet"] = json!("10.0.0.0/8"); // must be ignored by /status
    let after =
        controller.put(&format!("{path}/status"), &current).expect_status(200, "controller updates status");
    assert_eq!(after["status"]["allocations"], allocations, "{after}");
    assert_eq!(after["spec"], spec, "a spec change through /status must be ignored: {after}");

    let read = admin.get(&path).expect_status(200, "read back");
    assert_eq!(read["status"]["allocations"], allocations, "{read}");
    assert_eq!(read["spec"], spec, "{read}");

    // And the other way round: a write to the main resource leaves status alone.
    let mut edit = read.clone();
    edit["spec"]["perNodeBlockSize"] = json!(50);
    edit["status"] = json!({"allocations": []});
    let after = admin.put(&path, &edit).expect_status(200, "admin updates spec");
    assert_eq!(after["spec"]["perNodeBlockSize"], 50, "{after}");
    assert_eq!(after["status"]["allocations"], allocations, "a spec write must not change status: {after}");

    // The same for a CIDRPool (gateway optional in its allocations).
    let cspec = json!({"cidr": "10.1.0.0/16", "perNodeNetworkPrefix": 24, "gatewayIndex": 1});
    admin.post(&ns.pools("cidrpools"), &cidrpool("st", cspec.clone())).expect_status(201, "create CIDRPool");
    let cpath = format!("{}/st", ns.pools("cidrpools"));
    let mut cur = controller.get(&cpath).expect_status(200, "controller reads the CIDRPool");
    let calloc = json!([{"nodeName": "node-a", "prefix": "10.1.0.0/24", "gateway": "10.1.0.1"},
                        {"nodeName": "node-b", "prefix": "10.1.1.0/24"}]);
    cur["status"] = json!({"allocations": calloc});
    let after = controller.put(&format!("{cpath}/status"), &cur).expect_status(200, "CIDRPool status");
    assert_eq!(after["status"]["allocations"], calloc, "{after}");
    assert_eq!(after["spec"], cspec, "{after}");
}

#[test]
fn rbac_gives_node_and_controller_exactly_their_rights() {
    crate::needs_control_plane!();
    let admin = Kube::from_env();
    let (controller, node) = ensure_rbac(&admin);
    let ns = namespace(&admin, "it-deploy-rbac");
    let spec = json!({"subnet": "192.168.0.0/16", "perNodeBlockSize": 100});
    admin.post(&ns.pools("ippools"), &ippool("p", spec)).expect_status(201, "create pool");
    let path = format!("{}/p", ns.pools("ippools"));
    let pool = admin.get(&path).expect_status(200, "read pool");

    // Node: reads pools and (its) pods, writes nothing.
    node.get(&ns.pools("ippools")).expect_status(200, "node lists ippools");
    node.get(&ns.pools("cidrpools")).expect_status(200, "node lists cidrpools");
    node.get(&path).expect_status(200, "node gets an ippool");
    let rv = pool["metadata"]["resourceVersion"].as_str().unwrap();
    drop(node.watch(&ns.pools("ippools"), rv, Duration::from_secs(1)));
    node.get("/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-a").expect_status(200, "node lists its pods");
    drop(node.watch("/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-a", "0", Duration::from_secs(1)));
    assert_forbidden(node.put(&path, &pool), "node updates a pool");
    let mut with_status = pool.clone();
    with_status["status"] = json!({"allocations": []});
    assert_forbidden(node.put(&format!("{path}/status"), &with_status), "node updates pool status");
    assert_forbidden(node.delete(&path), "node deletes a pool");
    let new_node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": unique_name("it-node")}});
    assert_forbidden(node.post("/api/v1/nodes", &new_node), "node creates a node");
    assert_forbidden(node.delete("/api/v1/nodes/it-no-such-node"), "node deletes a node");
    assert_forbidden(node.get(&format!("/api/v1/namespaces/{}/secrets", ns.name)), "node reads secrets");

    // Node: reads NodeBlockSets (its own, by name, as ipam-node does), writes none.
    let nbs = ns.pools("nodeblocksets");
    let own = json!({"apiVersion": "nv-ipam.nvidia.com/v1alpha1", "kind": "NodeBlockSet",
        "metadata": {"name": "node-a"}, "spec": {}});
    let created = admin.post(&nbs, &own).expect_status(201, "admin creates a NodeBlockSet");
    let by_name = format!("{nbs}?fieldSelector=metadata.name%3Dnode-a");
    let list = node.get(&by_name).expect_status(200, "node lists its NodeBlockSet by name");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    node.get(&format!("{nbs}/node-a")).expect_status(200, "node gets its NodeBlockSet");
    let rv = created["metadata"]["resourceVersion"].as_str().unwrap();
    drop(node.watch(&by_name, rv, Duration::from_secs(1)));
    assert_forbidden(node.put(&format!("{nbs}/node-a"), &created), "node updates a NodeBlockSet");
    assert_forbidden(node.delete(&format!("{nbs}/node-a")), "node deletes a NodeBlockSet");
    let mut other = own.clone();
    other["metadata"]["name"] = json!("node-b");
    assert_forbidden(node.post(&nbs, &other), "node creates a NodeBlockSet");

    // Controller: pools, status, nodes (read), events, its lease namespace; nothing more.
    controller.get("/api/v1/nodes").expect_status(200, "controller lists nodes");
    controller.get(&format!("{API}/ippools")).expect_status(200, "controller lists ippools cluster-wide");
    controller.put(&format!("{path}/status"), &with_status).expect_status(200, "controller updates status");
    let event = json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": unique_name("it-ev")},
        "involvedObject": {"apiVersion": "nv-ipam.nvidia.com/v1alpha1", "kind": "IPPool", "namespace": ns.name, "name": "p"},
        "reason": "InvalidSpec", "message": "test", "type": "Warning"});
    controller
        .post(&format!("/api/v1/namespaces/{}/events", ns.name), &event)
        .expect_status(201, "controller emits an event");
    controller
        .get("/apis/coordination.k8s.io/v1/namespaces/nv-ipam/leases")
        .expect_status(200, "controller reads leases in nv-ipam");
    assert_forbidden(
        controller.get("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases"),
        "controller reads leases in kube-system",
    );
    // --leader-elect-namespace elsewhere takes one RoleBinding there (deploy/README.md).
    let leases = format!("/apis/coordination.k8s.io/v1/namespaces/{}/leases", ns.name);
    assert_forbidden(controller.get(&leases), "controller reads leases before the RoleBinding");
    let binding = bind_leader_election(&admin, &ns.name);
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "dd1643cf.nvidia.com"}, "spec": {"holderIdentity": "it"}});
    wait_until(RBAC_PROPAGATION, "the controller may create leases in the test namespace", || {
        allowed(
            &controller,
            json!({"group": "coordination.k8s.io", "resource": "leases", "namespace": ns.name, "verb": "create"}),
        )
    });
    controller
        .post(&leases, &lease)
        .expect_status(201, &format!("controller creates a lease after {binding}"));
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    assert_forbidden(
        controller.post(&format!("/api/v1/namespaces/{}/pods", ns.name), &pod),
        "controller creates a pod",
    );
    assert_forbidden(controller.delete("/api/v1/nodes/it-no-such-node"), "controller deletes a node");
    assert_forbidden(controller.post("/api/v1/nodes", &new_node), "controller creates a node");
    assert_forbidden(
        controller.get(&format!("/api/v1/namespaces/{}/secrets", ns.name)),
        "controller reads secrets",
    );
    assert_forbidden(controller.get("/api/v1/secrets"), "controller lists secrets cluster-wide");
}

#[test]
fn printer_columns_show_pool_shape_and_first_node() {
    crate::needs_control_plane!();
    let admin = Kube::from_env();
    let ns = namespace(&admin, "it-deploy-columns");
    let cells_by_name = |plural: &str| -> (Vec<String>, Vec<(String, Vec<Value>)>) {
        let t = admin.get_accept(&ns.pools(plural), TABLE).expect_status(200, plural);
        assert_eq!(t["kind"], "Table", "{t}");
        let names = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect();
        let mut rows: Vec<(String, Vec<Value>)> = t["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["cells"][0].as_str().unwrap().to_string(), r["cells"].as_array().unwrap().clone()))
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        (names, rows)
    };

    admin.post(&ns.pools("ippools"), &yaml_doc("deploy/examples/ippool.yaml")).expect_status(201, "example");
    let spec = json!({"subnet": "10.0.0.0/24", "perNodeBlockSize": 8});
    admin.post(&ns.pools("ippools"), &ippool("zz-allocated", spec)).expect_status(201, "second pool");
    let path = format!("{}/zz-allocated", ns.pools("ippools"));
    let mut cur = admin.get(&path).expect_status(200, "read");
    // allocatedNodes is what ipam-controller writes beside the allocations.
    cur["status"] = json!({"allocatedNodes": 2, "allocations": [
        {"nodeName": "node-a", "startIP": "10.0.0.1", "endIP": "10.0.0.8"},
        {"nodeName": "node-b", "startIP": "10.0.0.9", "endIP": "10.0.0.16"}]});
    admin.put(&format!("{path}/status"), &cur).expect_status(200, "status");

    let (names, rows) = cells_by_name("ippools");
    assert_eq!(names, ["Name", "Subnet", "Gateway", "Block Size", "Nodes", "Age"]);
    let (pool1, alloc) = (&rows[0].1, &rows[1].1);
    assert_eq!(
        pool1[..5],
        [json!("pool1"), json!("192.168.0.0/16"), json!("192.168.0.1"), json!(100), Value::Null]
    );
    assert_eq!(alloc[..5], [json!("zz-allocated"), json!("10.0.0.0/24"), Value::Null, json!(8), json!(2)]);
    assert!(alloc[5].is_string(), "Age is a duration string: {alloc:?}");

    admin
        .post(&ns.pools("cidrpools"), &yaml_doc("deploy/examples/cidrpool.yaml"))
        .expect_status(201, "example");
    let (names, rows) = cells_by_name("cidrpools");
    assert_eq!(names, ["Name", "CIDR", "Gateway index", "Per Node Network Prefix", "Nodes", "Age"]);
    assert_eq!(rows[0].1[..5], [json!("pool1"), json!("192.168.0.0/16"), json!(1), json!(24), Value::Null]);
}
