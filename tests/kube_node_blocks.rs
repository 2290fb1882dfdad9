//! `ipam-node` in cluster mode follows its own NodeBlockSet (`<ns>/<node>`) and nothing else,
//! against the real kube-apiserver of `hack/control-plane.sh`: pools added and removed, a block
//! moved, an invalid spec (kept: the last valid one serves), the object deleted (no pools,
//! reservations kept, said once), other nodes' objects (never received: the node logs every
//! event of the object it watches and would warn about another's), and a restart with the
//! object absent (served from the pools cache; a node with neither waits without serving). The
//! test plays ipam-controller (`common::cluster`, `common::node_blocks`); daemons run as the node
//! token user with `deploy/rbac/node.yaml` applied.
//!
//! Skips (one line on stderr) when not run under the control plane (fails instead under
//! hack/test.sh). Waits only on conditions (`common::wait`). Parallel-safe: unique namespaces
//! and node names.
#![allow(clippy::unwrap_used)]

mod common;

use common::cluster::{FOLLOW, TestNs, add, anon_env, holds, ip_of, last_octet, start_ready};
use common::daemon::Daemon;
use common::kube::unique_name;
use common::node_blocks;
use common::wait_until;
use serde_json::{Value, json};

/// The line the daemon logs for each version of its object it receives.
fn received(t: &TestNs, node: &str) -> String {
    format!("NodeBlockSet {}/{node} (resourceVersion ", t.name)
}

/// Waits until an ADD from `pool` succeeds with an address whose last octet is in `octets`.
fn wait_add_in(d: &Daemon, pool: &str, octets: std::ops::RangeInclusive<u32>, what: &str) -> Value {
    let mut k = 0;
    let mut got = Value::Null;
    wait_until(FOLLOW, what, || {
        k += 1;
        let o = add(d, pool, &anon_env(&format!("{pool}-w{k}")));
        let ok = o.exit == 0 && octets.contains(&last_octet(&ip_of(&o)));
        if ok {
            got = o.json;
        }
        ok
    });
    got
}

#[test]
fn the_node_follows_its_node_block_set_and_serves_nothing_once_it_is_deleted() {
    crate::needs_control_plane!();
    let t = TestNs::new();
    let node = unique_name("nf");
    t.create_pool("a", "10.91.0.0/24", "10.91.0.1", &[(&node, "10.91.0.1", "10.91.0.10")]);
    let mut d = t.daemon(&node, &[]);
    start_ready(&mut d);
    let e0 = anon_env("a0");
    let first = add(&d, "a", &e0).ok();
    assert_eq!(ip_of(&first), "10.91.0.2");

    t.create_pool("b", "10.92.0.0/24", "10.92.0.1", &[(&node, "10.92.0.11", "10.92.0.20")]);
    wait_add_in(&d, "b", 11..=20, "the node allocates from the pool added to its object");

    t.set_status("a", &[(&node, "10.91.0.21", "10.91.0.30")]);
    wait_add_in(&d, "a", 21..=30, "the node allocates from its moved block .21-.30");
    assert!(holds(&d, "a", &e0, &first), "a moved block must not drop existing reservations");

    t.delete_pool("b");
    let mut k = 0;
    wait_until(FOLLOW, "ADDs from the pool removed from the object fail", || {
        k += 1;
        add(&d, "b", &anon_env(&format!("gone{k}"))).exit != 0
    });

    // an invalid spec, copied verbatim into the object: the last valid one keeps serving
    let mut obj = t.get_pool("a");
    obj["spec"]["gateway"] = json!("10.99.0.1");
    t.put_pool(&obj);
    wait_until(FOLLOW, "the node log says it keeps the last valid spec", || {
        d.stderr()
            .lines()
            .any(|l| l.contains("\"a\"") && l.contains("spec.gateway") && l.contains("last valid spec"))
    });
    let held = add(&d, "a", &anon_env("held")).ok();
    assert!((21..=30).contains(&last_octet(&ip_of(&held))), "{held}");
    assert_eq!(held.json["ips"][0]["gateway"], "10.91.0.1", "{held}");

    // the object deleted after it was seen (ipam-controller deletes it only when the node has
    // no entries left): no pools, reservations kept, the node still ready (it knows its pools)
    node_blocks::delete(&t.admin, &t.name, &node);
    let gone = format!("NodeBlockSet {}/{node} was deleted: no pools on this node", t.name);
    wait_until(FOLLOW, "the node logs that it has no pools", || d.stderr().contains(&gone));
    let mut k = 0;
    wait_until(FOLLOW, "ADDs fail once the object is deleted", || {
        k += 1;
        add(&d, "a", &anon_env(&format!("deleted{k}"))).exit != 0
    });
    assert!(d.ready(), "a deleted object must not make the node unready");

    // written again (spec fixed, block moved): followed, the reservation made before kept
    let mut obj = t.get_pool("a");
    obj["spec"]["gateway"] = json!("10.91.0.1");
    t.put_pool(&obj);
    t.set_status("a", &[(&node, "10.91.0.31", "10.91.0.40")]);
    wait_add_in(&d, "a", 31..=40, "the node follows its object written again");
    assert!(holds(&d, "a", &e0, &first), "dropping the pools must not drop reservations");
    assert_eq!(d.stderr().matches(&gone).count(), 1, "the deletion is logged once");
}

#[test]
fn other_nodes_objects_never_reach_the_node() {
    crate::needs_control_plane!();
    let t = TestNs::new();
    let (node, other, stranger) = (unique_name("no"), unique_name("nx"), unique_name("ny"));
    t.create_pool(
        "o",
        "10.93.0.0/24",
        "10.93.0.1",
        &[(&node, "10.93.0.1", "10.93.0.10"), (&other, "10.93.0.11", "10.93.0.20")],
    );
    let mut d = t.daemon(&node, &[]);
    start_ready(&mut d);
    let line = received(&t, &node);
    wait_until(FOLLOW, "the node logged the object it listed", || d.stderr().contains(&line));

    // another node's object changes, and a new node's object appears, several times
    let pools = node_blocks::pools_of(&t.admin, &t.name);
    for i in 0..5u32 {
        let mut moved = pools.clone();
        let start = format!("10.93.0.{}", 101 + 10 * i);
        let end = format!("10.93.0.{}", 110 + 10 * i);
        moved[0]["status"]["allocations"][1] = json!({"nodeName": other, "startIP": start, "endIP": end});
        node_blocks::write(&t.admin, &t.name, &other, &moved);
        moved[0]["status"]["allocations"][1]["nodeName"] = json!(stranger);
        node_blocks::write(&t.admin, &t.name, &stranger, &moved);
    }
    // then the node's own object changes: its watch delivers events in order, so once the node
    // logged this version, any event of the other objects would have been logged before it
    t.set_status("o", &[(&node, "10.93.0.21", "10.93.0.30"), (&other, "10.93.0.11", "10.93.0.20")]);
    let own = t.admin.get(&node_blocks::path(&t.name, &node)).expect_status(200, "own object");
    let rv = own["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    wait_until(FOLLOW, "the node logged its own object's new version", || {
        d.stderr().contains(&format!("{line}{rv})"))
    });
    wait_add_in(&d, "o", 21..=30, "the node allocates from its moved block");
    let log = d.stderr();
    assert!(
        !log.contains(&other) && !log.contains(&stranger),
        "another node's object reached the node:\n{log}"
    );
    assert_eq!(log.matches(&line).count(), 2, "events received: the list and the one change only:\n{log}");
}

#[test]
fn a_restart_with_its_object_absent_serves_from_the_cache_and_a_node_with_neither_waits() {
    crate::needs_control_plane!();
    let t = TestNs::new();
    let (node, fresh) = (unique_name("nr"), unique_name("nw"));
    t.create_pool("c", "10.94.0.0/24", "10.94.0.1", &[(&node, "10.94.0.1", "10.94.0.10")]);
    let mut d = t.daemon(&node, &[]);
    start_ready(&mut d);
    let e0 = anon_env("c0");
    let before = add(&d, "c", &e0).ok();

    // the cache holds the node's own entry (in the format older versions read), nothing else
    let cache = d.store_file.parent().unwrap().join("pools-cache.json");
    let cached: Value = serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    assert_eq!(
        (cached["format"].as_str(), cached["version"].as_u64()),
        (Some("nv-ipam-pools-cache"), Some(1))
    );
    assert_eq!(
        cached["ipPools"][0]["status"]["allocations"],
        json!([{"nodeName": node, "startIP": "10.94.0.1", "endIP": "10.94.0.10"}]),
        "{cached}"
    );

    // as during an upgrade whose controller does not write NodeBlockSets yet
    let seen_before = d.stderr().matches(&received(&t, &node)).count();
    d.kill9();
    node_blocks::delete(&t.admin, &t.name, &node);
    d.spawn();
    wait_until(FOLLOW, "the restarted daemon is ready from its cache", || d.ready());
    let waits = format!(
        "NodeBlockSet {}/{node} does not exist: waiting for ipam-controller to write it; serving the pools it knows (1)",
        t.name
    );
    wait_until(FOLLOW, "the daemon logs that it waits for its object", || d.stderr().contains(&waits));
    let during = add(&d, "c", &anon_env("c1")).ok();
    assert!((2..=10).contains(&last_octet(&ip_of(&during))), "{during}");
    assert_ne!(ip_of(&during), ip_of(&before));
    assert!(holds(&d, "c", &e0, &before));

    // a node with neither object nor cache does not serve: absent is not "no pools"
    let mut f = t.daemon(&fresh, &[]);
    f.spawn_detached();
    let no_cache = format!(
        "NodeBlockSet {}/{fresh} does not exist: waiting for ipam-controller to write it; not serving until then",
        t.name
    );
    wait_until(FOLLOW, "the fresh daemon logs that it waits", || f.stderr().contains(&no_cache));
    assert_eq!(f.http_get("/readyz").map(|r| r.0), Some(503), "ready without pools");
    assert!(!f.socket.exists(), "the socket must not serve before pools are known");

    // the controller writes both objects: both follow
    t.set_status("c", &[(&node, "10.94.0.1", "10.94.0.10"), (&fresh, "10.94.0.11", "10.94.0.20")]);
    f.wait_serving(FOLLOW);
    wait_until(FOLLOW, "the fresh daemon is ready", || f.ready());
    let o = add(&f, "c", &anon_env("f0")).ok();
    assert!((11..=20).contains(&last_octet(&ip_of(&o))), "{o}");
    wait_until(FOLLOW, "the restarted daemon received its object again", || {
        d.stderr().matches(&received(&t, &node)).count() > seen_before
    });
    assert!(holds(&d, "c", &e0, &before));
}
