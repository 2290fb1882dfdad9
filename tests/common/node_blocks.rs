//! Plays ipam-controller's per-node delivery for tests that run the real `ipam-node` without the
//! controller: writes a node's NodeBlockSet (`<ns>/<node>`) from whole pool objects exactly as
//! the controller projects them, through the library's `alloc::node_blocks::desired` (a valid
//! pool's spec trimmed to the node with its status entry; an invalid spec copied verbatim), so
//! the tests do not re-implement the projection.
//!
//! Pools are JSON objects as the API server returns them (`kind`, `metadata.name`, `spec`,
//! `status`): tests keep writing pools and their status as admin, then deliver them. Requests
//! are made again while the API server answers 429 ([`settled`]).

use std::time::Duration;

use nv_ipam::alloc::node_blocks::{Source, desired};
use nv_ipam::alloc::{CidrPoolKind, IpPoolKind, PoolKind};
use nv_ipam::api::{AnyPool, CidrPool, IpPool, NodeBlockSetSpec};
use serde_json::{Value, json};

use super::kube::{Kube, Reply};

/// How long [`settled`] asks again while the API server answers 429.
pub const SETTLE: Duration = Duration::from_secs(30);

/// Makes `request` again while it answers 429 TooManyRequests, up to [`SETTLE`]: right after
/// `hack/control-plane.sh` installed the CRDs, a kind's storage may still be initializing
/// ("storage is (re)initializing", retryAfterSeconds 1) for the first requests of a test binary.
pub fn settled(what: &str, mut request: impl FnMut() -> Reply) -> Reply {
    let mut last = None;
    super::wait_until(SETTLE, &format!("{what}: an answer other than 429"), || {
        let r = request();
        let done = r.status != 429;
        last = Some(r);
        done
    });
    last.expect("one request was made")
}

/// The nv-ipam API group's path.
pub const API: &str = "/apis/nv-ipam.nvidia.com/v1alpha1";

/// The NodeBlockSets of namespace `ns`.
pub fn collection(ns: &str) -> String {
    format!("{API}/namespaces/{ns}/nodeblocksets")
}

/// `<ns>/<node>`'s path.
pub fn path(ns: &str, node: &str) -> String {
    format!("{}/{node}", collection(ns))
}

/// A pool object (IPPool or CIDRPool JSON) as the library's value, its status entries sorted by
/// node name as the controller writes them.
fn any_pool(obj: &Value) -> AnyPool {
    let mut obj = obj.clone();
    // (not `obj["status"]["allocations"]`: indexing a Value mutably inserts nulls)
    if let Some(a) = obj.pointer_mut("/status/allocations").and_then(Value::as_array_mut) {
        a.sort_by(|x, y| x["nodeName"].as_str().cmp(&y["nodeName"].as_str()));
    }
    match obj["kind"].as_str() {
        Some("IPPool") => AnyPool::Ip(serde_json::from_value::<IpPool>(obj).expect("an IPPool")),
        Some("CIDRPool") => AnyPool::Cidr(serde_json::from_value::<CidrPool>(obj).expect("a CIDRPool")),
        other => panic!("not a pool kind: {other:?} in {obj}"),
    }
}

fn valid(p: &AnyPool) -> bool {
    match p {
        AnyPool::Ip(p) => IpPoolKind::validate(p).is_ok(),
        AnyPool::Cidr(p) => CidrPoolKind::validate(p).is_ok(),
    }
}

/// `node`'s NodeBlockSet spec for whole `pools`, as ipam-controller computes it.
pub fn spec_for(node: &str, pools: &[Value]) -> NodeBlockSetSpec {
    let any: Vec<AnyPool> = pools.iter().map(any_pool).collect();
    desired(node, any.iter().map(|pool| Source { pool, valid: valid(pool), allocations: None }))
}

/// Creates or replaces `<ns>/<node>` with `spec` as `admin`; returns the stored object.
pub fn write_spec(admin: &Kube, ns: &str, node: &str, spec: &NodeBlockSetSpec) -> Value {
    let mut obj = json!({
        "apiVersion": "nv-ipam.nvidia.com/v1alpha1",
        "kind": "NodeBlockSet",
        "metadata": {"name": node},
        "spec": serde_json::to_value(spec).expect("encode spec"),
    });
    let current = settled("get NodeBlockSet", || admin.get(&path(ns, node)));
    match current.status {
        200 => {
            obj["metadata"]["resourceVersion"] = current.body["metadata"]["resourceVersion"].clone();
            settled("replace NodeBlockSet", || admin.put(&path(ns, node), &obj))
                .expect_status(200, "replace NodeBlockSet")
        }
        404 => settled("create NodeBlockSet", || admin.post(&collection(ns), &obj))
            .expect_status(201, "create NodeBlockSet"),
        s => panic!("get NodeBlockSet {ns}/{node}: status {s}, {}", current.body),
    }
}

/// Writes `node`'s NodeBlockSet for whole `pools` (see [`spec_for`]); returns the stored object.
pub fn write(admin: &Kube, ns: &str, node: &str, pools: &[Value]) -> Value {
    write_spec(admin, ns, node, &spec_for(node, pools))
}

/// Every pool (IPPools, then CIDRPools) of namespace `ns`, read as `admin`.
pub fn pools_of(admin: &Kube, ns: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for plural in ["ippools", "cidrpools"] {
        let path = format!("{API}/namespaces/{ns}/{plural}");
        let list = settled("list pools", || admin.get(&path)).expect_status(200, "list pools");
        let kind = if plural == "ippools" { "IPPool" } else { "CIDRPool" };
        for mut item in list["items"].as_array().cloned().unwrap_or_default() {
            item["kind"] = json!(kind); // list items carry no kind
            out.push(item);
        }
    }
    out
}

/// Deletes `<ns>/<node>` (it must exist).
pub fn delete(admin: &Kube, ns: &str, node: &str) {
    settled("delete NodeBlockSet", || admin.delete(&path(ns, node)))
        .expect_status(200, "delete NodeBlockSet");
}
