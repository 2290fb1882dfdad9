//! Truthful answers of the real `ipam-node` over its socket: every way a static-IP request can
//! be wrong gets its own error naming the address(es), the pool and the fix, with nothing
//! reserved; and the `status` op answers as protocol/README.md §4.1 says (a full pool is listed
//! with `free: 0`, not refused; addresses in their released-IP cooldown are not free).
#![allow(clippy::unwrap_used)]

mod common;

use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::daemon::{Daemon, START_DEADLINE};
use common::{cni, wait_until};
use nv_ipam::api::PoolType;
use nv_ipam::protocol::{
    AllocateRequest, ErrorCode, PoolStatus, Reply, Request, Response, StatusRequest, client,
};

/// `p`: 10.1.0.0/24, gateway .1, node1's block .1-.100. `t`: 10.2.0.0/24, gateway .1, block
/// .1-.4 (3 free). `v6`: fd00:10::/64, block ::1-::4, gateway ::1.
const POOLS: &str = "
apiVersion: nv-ipam.nvidia.com/v1alpha1
kind: IPPool
metadata: {name: p}
spec: {subnet: 10.1.0.0/24, perNodeBlockSize: 100, gateway: 10.1.0.1}
status: {allocations: [{nodeName: node1, startIP: 10.1.0.1, endIP: 10.1.0.100}]}
---
apiVersion: nv-ipam.nvidia.com/v1alpha1
kind: IPPool
metadata: {name: t}
spec: {subnet: 10.2.0.0/24, perNodeBlockSize: 4, gateway: 10.2.0.1}
status: {allocations: [{nodeName: node1, startIP: 10.2.0.1, endIP: 10.2.0.4}]}
---
apiVersion: nv-ipam.nvidia.com/v1alpha1
kind: IPPool
metadata: {name: v6}
spec: {subnet: 'fd00:10::/64', perNodeBlockSize: 4, gateway: 'fd00:10::1'}
status: {allocations: [{nodeName: node1, startIP: 'fd00:10::1', endIP: 'fd00:10::4'}]}
";

fn call(socket: &std::path::Path, req: Request) -> Result<Reply, (ErrorCode, String)> {
    match client::call(socket, req, Duration::from_secs(5)).expect("daemon answers") {
        Response::Ok(r) => Ok(r),
        Response::Error(e) => Err((e.code, e.message)),
    }
}

fn allocate(cid: &str, pools: &[&str], ips: &[&str]) -> Request {
    Request::Allocate(AllocateRequest {
        requested_ips: ips.iter().map(|s| s.parse::<IpAddr>().unwrap()).collect(),
        ..common::allocate_request("net1", cid, pools)
    })
}

fn release(cid: &str, pool: &str) -> Request {
    Request::Release(common::release_request("net1", cid, &[pool]))
}

fn status(pools: &[&str]) -> Request {
    Request::Status(StatusRequest {
        pools: pools.iter().map(|p| p.to_string()).collect(),
        pool_type: PoolType::IpPool,
    })
}

fn counts(st: &[PoolStatus]) -> Vec<(String, u64, u64)> {
    st.iter().map(|s| (s.pool.clone(), s.allocated, s.free)).collect()
}

/// (what, pools, requested IPs, expected code, words the message must contain).
type Case =
    (&'static str, &'static [&'static str], &'static [&'static str], ErrorCode, &'static [&'static str]);

#[test]
fn each_wrong_static_request_gets_its_own_truthful_error_and_reserves_nothing() {
    let d = Daemon::start(POOLS, "node1");
    call(&d.socket, allocate("holder", &["p"], &["10.1.0.7"])).expect("a static address");
    let cases: &[Case] = &[
        (
            "the same address twice",
            &["p"],
            &["10.1.0.5", "10.1.0.5"],
            ErrorCode::InvalidRequest,
            &["10.1.0.5", "twice", "once"],
        ),
        (
            "the same address twice, dual stack",
            &["p", "v6"],
            &["10.1.0.5", "fd00:10::3", "10.1.0.5"],
            ErrorCode::InvalidRequest,
            &["10.1.0.5", "twice"],
        ),
        (
            "two addresses of one pool",
            &["p"],
            &["10.1.0.5", "10.1.0.6"],
            ErrorCode::InvalidRequest,
            &["10.1.0.5", "10.1.0.6", "pool \"p\"", "10.1.0.0/24", "one address per pool"],
        ),
        (
            "two addresses of one pool, dual stack",
            &["p", "v6"],
            &["10.1.0.5", "10.1.0.6"],
            ErrorCode::InvalidRequest,
            &["10.1.0.5", "10.1.0.6", "pool \"p\""],
        ),
        (
            "an address outside every requested pool",
            &["p", "v6"],
            &["10.9.9.9"],
            ErrorCode::IpOutOfRange,
            &["10.9.9.9", "\"p\" 10.1.0.0/24", "\"v6\" fd00:10::/64", "inside"],
        ),
        (
            "the network address",
            &["p"],
            &["10.1.0.0"],
            ErrorCode::InvalidRequest,
            &["10.1.0.0", "pool \"p\"", "network address"],
        ),
        (
            "the broadcast address",
            &["p"],
            &["10.1.0.255"],
            ErrorCode::InvalidRequest,
            &["10.1.0.255", "pool \"p\"", "broadcast address"],
        ),
        (
            "the gateway",
            &["p"],
            &["10.1.0.1"],
            ErrorCode::InvalidRequest,
            &["10.1.0.1", "pool \"p\"", "gateway", "allocateDefaultGateway"],
        ),
        (
            "an address another attachment holds",
            &["p"],
            &["10.1.0.7"],
            ErrorCode::IpUnavailable,
            &["10.1.0.7", "pool \"p\"", "another attachment"],
        ),
    ];
    for (what, pools, ips, code, needles) in cases {
        let before = d.store_bytes();
        let (got, msg) = call(&d.socket, allocate("c1", pools, ips)).expect_err(what);
        assert_eq!(got, *code, "{what}: {msg}");
        for n in *needles {
            assert!(msg.contains(n), "{what}: {n:?} missing from {msg:?}");
        }
        assert!(!msg.contains("none of the requested pools"), "{what}: {msg}");
        assert_eq!(d.store_bytes(), before, "{what}: nothing may be reserved");
    }
    // the plugin passes the message on as the CNI error's details
    let mut cfg = d.config("1.0.0", "net1", "p");
    cfg["args"] = serde_json::json!({"cni": {"ips": ["10.1.0.5", "10.1.0.6"]}});
    let out = d.call("ADD", &cfg, "c2", "eth0").fails_with(108);
    assert!(out.json["details"].as_str().unwrap_or("").contains("one address per pool"), "{out}");
    // a dual-stack request with one address per pool still works
    let r = call(&d.socket, allocate("c3", &["p", "v6"], &["fd00:10::3", "10.1.0.5"])).expect("dual stack");
    let got: Vec<String> = r.allocations.iter().map(|a| a.ip.to_string()).collect();
    assert_eq!(got, ["10.1.0.5/24", "fd00:10::3/64"]);
}

#[test]
fn status_lists_full_and_empty_pools_as_section_4_1_says() {
    let d = Daemon::start(POOLS, "node1");
    let all = call(&d.socket, status(&[])).expect("status of every pool");
    assert_eq!(
        counts(&all.pools),
        [("p".into(), 0, 99), ("t".into(), 0, 3), ("v6".into(), 0, 3)],
        "empty pools list their whole range less the gateway"
    );
    for c in ["a", "b", "c"] {
        call(&d.socket, allocate(c, &["t"], &[])).expect("fill t");
    }
    let full = call(&d.socket, status(&["t"])).expect("a full pool is listed, not refused");
    assert_eq!(counts(&full.pools), [("t".into(), 3, 0)]);
    let both = call(&d.socket, status(&["p", "t"])).expect("status of two pools, one full");
    assert_eq!(counts(&both.pools), [("p".into(), 0, 99), ("t".into(), 3, 0)]);
    let all = call(&d.socket, status(&[])).expect("status of every pool");
    assert_eq!(counts(&all.pools)[1], ("t".into(), 3, 0));
    let (code, msg) = call(&d.socket, status(&["nope"])).expect_err("unknown pool");
    assert_eq!(code, ErrorCode::PoolNotFound, "{msg}");
    // the plugin's STATUS still reports the full pool as CNI 50
    let cfg = d.config("1.1.0", "net1", "t");
    let env = [("CNI_CONTAINERID", ""), ("CNI_NETNS", ""), ("CNI_IFNAME", ""), ("CNI_PATH", "/x")];
    cni("STATUS", &cfg, &env).fails_with(50);
}

/// A standalone daemon of `d`'s sandbox with `--released-ip-cooldown 1h`; killed on drop.
struct Cooling(Child);

impl Drop for Cooling {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn status_does_not_count_cooling_addresses_as_free() {
    let d = Daemon::prepare(POOLS, "node1", None);
    let mut cmd = d.command();
    cmd.args(["--released-ip-cooldown", "1h"]).stdin(Stdio::null()).stdout(Stdio::null());
    let _child = Cooling(cmd.stderr(Stdio::null()).spawn().unwrap());
    wait_until(START_DEADLINE, "the daemon serves", || UnixStream::connect(&d.socket).is_ok());

    call(&d.socket, allocate("a", &["t"], &[])).expect("a gets .2");
    call(&d.socket, release("a", "t")).expect("release .2: it cools for 1h");
    let st = call(&d.socket, status(&["t"])).expect("status");
    assert_eq!(counts(&st.pools), [("t".into(), 0, 2)], ".2 is cooling: two left for round robin");
    call(&d.socket, allocate("b", &["t"], &[])).expect(".3");
    call(&d.socket, allocate("c", &["t"], &[])).expect(".4");
    let st = call(&d.socket, status(&["t"])).expect("status");
    assert_eq!(counts(&st.pools), [("t".into(), 2, 0)]);
    let (code, _) =
        call(&d.socket, allocate("d", &["t"], &[])).expect_err("free 0 means a dynamic ADD fails");
    assert_eq!(code, ErrorCode::PoolExhausted);
    // a static request may still take the cooling address; it is then held, not double-counted
    call(&d.socket, allocate("d", &["t"], &["10.2.0.2"])).expect("static takes a cooling address");
    let st = call(&d.socket, status(&["t"])).expect("status");
    assert_eq!(counts(&st.pools), [("t".into(), 3, 0)]);
}
