//! Standalone mode under an invalid pool spec: a pool whose new spec is invalid keeps serving
//! from its last valid spec (ADDs and `status` continue), the log names the pool and the broken
//! field once, and a later valid edit is followed. A pool that never had a valid spec on this
//! node is refused with the reason, never "not found".
//!
//! Real `ipam-node` processes and real pools files; waits poll the protocol `status` op or the
//! daemon's log with a deadline.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::daemon::Daemon;
use common::{CniOut, wait_until};
use nv_ipam::api::PoolType;
use nv_ipam::protocol::{ErrorCode, PoolStatus, Request, Response, StatusRequest, client};

/// How long the daemon may take to notice a change of its pools file (it polls every second).
const FOLLOW: Duration = Duration::from_secs(15);

/// An IPPool `10.<n>.0.0/24` (gateway `gw`) whose status gives `node1` the block `.<lo>`-`.<hi>`.
fn pool(name: &str, n: u8, gw: &str, lo: u8, hi: u8) -> String {
    format!(
        "---
apiVersion: nv-ipam.nvidia.com/v1alpha1
kind: IPPool
metadata: {{name: {name}}}
spec: {{subnet: 10.{n}.0.0/24, perNodeBlockSize: 10, gateway: {gw}}}
status:
  allocations: [{{nodeName: node1, startIP: 10.{n}.0.{lo}, endIP: 10.{n}.0.{hi}}}]
"
    )
}

fn status(d: &Daemon, pools: &[&str]) -> Result<Vec<PoolStatus>, (ErrorCode, String)> {
    let req = Request::Status(StatusRequest {
        pools: pools.iter().map(|p| p.to_string()).collect(),
        pool_type: PoolType::IpPool,
    });
    match client::call(&d.socket, req, Duration::from_secs(5)).expect("status call") {
        Response::Ok(r) => Ok(r.pools),
        Response::Error(e) => Err((e.code, e.message)),
    }
}

fn add(d: &Daemon, pool: &str, container: &str) -> CniOut {
    d.call("ADD", &d.config("1.0.0", "net1", pool), container, "eth0")
}

fn ip(out: &CniOut) -> String {
    let a = out.addresses();
    assert_eq!(a.len(), 1, "{out}");
    a[0].clone()
}

fn log_lines(d: &Daemon, needles: &[&str]) -> usize {
    d.stderr().lines().filter(|l| needles.iter().all(|n| l.contains(n))).count()
}

#[test]
fn an_invalid_edit_keeps_the_last_valid_spec_until_a_valid_one_arrives() {
    let good_a = pool("a", 1, "10.1.0.1", 1, 10);
    let b = pool("b", 2, "10.2.0.1", 1, 10);
    let d = Daemon::start(&format!("{good_a}{b}"), "node1");
    assert_eq!(ip(&add(&d, "a", "c0").ok()), "10.1.0.2/24");

    // a's gateway leaves its subnet: invalid; b is edited validly in the same write
    let bad_a = pool("a", 1, "10.99.0.1", 1, 10);
    let b2 = pool("b", 2, "10.2.0.1", 11, 20);
    d.write_pools(&format!("{bad_a}{b2}"));
    wait_until(FOLLOW, "the log names pool a and its broken field", || {
        log_lines(&d, &["\"a\"", "spec.gateway", "last valid spec"]) == 1
    });
    let mut k = 0;
    wait_until(FOLLOW, "b's valid edit (block .11-.20) is followed meanwhile", || {
        k += 1;
        let o = add(&d, "b", &format!("b{k}"));
        o.exit == 0 && ip(&o) == "10.2.0.11/24"
    });
    // a keeps serving from its last valid spec (block .1-.10, gateway .1)
    let out = add(&d, "a", "c1").ok();
    assert_eq!(ip(&out), "10.1.0.3/24", "{out}");
    assert_eq!(out.json["ips"][0]["gateway"], "10.1.0.1", "{out}");
    let st = status(&d, &["a"]).expect("a has configuration");
    assert_eq!((st[0].allocated, st[0].free), (2, 7), "{st:?}");
    // more ADDs do not log again (once per change, not per ADD)
    add(&d, "a", "c2").ok();
    assert_eq!(log_lines(&d, &["\"a\"", "spec.gateway"]), 1, "{}", d.stderr());

    // a valid edit (another block) is followed
    d.write_pools(&format!("{}{b2}", pool("a", 1, "10.1.0.1", 21, 30)));
    let mut k = 0;
    wait_until(FOLLOW, "a serves from its new block .21-.30", || {
        k += 1;
        let o = add(&d, "a", &format!("n{k}"));
        o.exit == 0 && ip(&o) == "10.1.0.21/24"
    });
}

#[test]
fn a_pool_that_never_had_a_valid_spec_is_refused_with_the_reason() {
    let bad = pool("bad", 3, "10.99.0.1", 1, 10);
    let d = Daemon::start(&format!("{}{bad}", pool("a", 1, "10.1.0.1", 1, 10)), "node1");
    let out = add(&d, "bad", "c0").fails_with(101);
    let details = out.json["details"].as_str().unwrap_or("");
    assert!(
        details.contains("\"bad\"") && details.contains("invalid spec") && details.contains("spec.gateway"),
        "the ADD error names the reason:\n{out}"
    );
    assert!(!details.contains("not found"), "{out}");
    let (code, msg) = status(&d, &["bad"]).expect_err("no configuration");
    assert_eq!(code, ErrorCode::PoolNotFound);
    assert!(msg.contains("spec.gateway"), "{msg}");
    add(&d, "a", "c1").ok();
}

#[test]
fn a_restart_with_an_invalid_file_refuses_that_pool_with_the_reason() {
    let mut d = Daemon::start(&pool("a", 1, "10.1.0.1", 1, 10), "node1");
    add(&d, "a", "c0").ok();
    d.write_pools(&pool("a", 1, "10.99.0.1", 1, 10));
    wait_until(FOLLOW, "the invalid edit is logged", || log_lines(&d, &["\"a\"", "spec.gateway"]) == 1);
    add(&d, "a", "c1").ok();
    // standalone mode keeps no copy of the last valid spec across a restart
    d.restart();
    let out = add(&d, "a", "c2").fails_with(101);
    assert!(out.json["details"].as_str().unwrap_or("").contains("spec.gateway"), "{out}");
    // the reservations are kept; DEL still releases them
    let del = d.call("DEL", &d.config("1.0.0", "net1", "a"), "c0", "eth0").ok();
    assert_eq!(del.exit, 0);
}
