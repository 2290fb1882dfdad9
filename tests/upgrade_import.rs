//! The migration from the reference (docs/upgrade.md): the real `ipam-node` started on a store
//! file in the reference's format imports it, keeps the original as `store.prev`, and serves
//! the imported reservations to the real `nv-ipam` plugin exactly as its own: a retried ADD gets
//! the same address, CHECK passes, DEL releases, the allocation cursor carries on after the
//! reference's last address. CNI GC leaves imported reservations alone (the reference stores no
//! network name to scope them by).
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;

use common::daemon::Daemon;
use serde_json::{Value, json};

/// node1 holds 10.1.0.1-10.1.0.100 of 10.1.0.0/24 (gateway .1).
const POOLS: &str = "
apiVersion: nv-ipam.nvidia.com/v1alpha1
kind: IPPool
metadata:
  name: pool1
  namespace: kube-system
spec:
  subnet: 10.1.0.0/24
  perNodeBlockSize: 100
  gateway: 10.1.0.1
status:
  allocations:
  - nodeName: node1
    startIP: 10.1.0.1
    endIP: 10.1.0.100
";

/// A store file in the reference's format (one JSON document, `<containerID>_<ifname>` keys,
/// metadata with a pool config snapshot, Go's field order, no whitespace): two reservations of
/// pool1 and an empty CIDRPool record. Its checksum is not checked on import (src/store/legacy.rs
/// checks the structure instead), so any number stands in.
const REFERENCE_STORE: &str = concat!(
    r#"{"version":1,"checksum":2290851471,"pools":{"#,
    r#""cidrpool/rail":{"name":"cidrpool/rail","entries":{},"last_pool_config":"","last_reserved_ip":""},"#,
    r#""pool1":{"name":"pool1","entries":{"#,
    r#""c1_eth0":{"container_id":"c1","interface_name":"eth0","ip_address":"10.1.0.2","metadata":{"#,
    r#""create_time":"2026-07-01T10:00:00.123456789Z","pod_uuid":"uid-c1","pod_name":"pod-c1","#,
    r#""pod_namespace":"ns1","device_id":"0000:03:00.1","pool_config_snapshot":"{\"subnet\":\"10.1.0.0/24\"}"}},"#,
    r#""c2_net1":{"container_id":"c2","interface_name":"net1","ip_address":"10.1.0.3","metadata":{"#,
    r#""create_time":"2026-07-01T10:00:01Z","pod_uuid":"uid-c2","pod_name":"pod-c2","pod_namespace":"ns1","#,
    r#""pool_config_snapshot":"{\"subnet\":\"10.1.0.0/24\"}"}}},"#,
    r#""last_pool_config":"{\"subnet\":\"10.1.0.0/24\"}","last_reserved_ip":"10.1.0.3"}}}"#,
);

fn with_prev(cfg: &Value, address: &str) -> Value {
    let mut c = cfg.clone();
    c["prevResult"] = json!({"cniVersion": cfg["cniVersion"], "ips": [{"address": address}]});
    c
}

#[test]
fn a_reference_store_is_imported_and_served_as_our_own() {
    let mut d = Daemon::prepare(POOLS, "node1", None);
    fs::write(&d.store_file, REFERENCE_STORE).expect("write the reference store");
    d.spawn();
    assert!(
        d.stderr().contains("imported 2 reservations from the reference store format"),
        "ipam-node should log the import:\n{}",
        d.stderr()
    );
    let prev = d.store_file.with_file_name("store.prev");
    assert_eq!(fs::read_to_string(&prev).expect("store.prev"), REFERENCE_STORE, "the original is kept as is");
    assert_ne!(d.store_bytes(), REFERENCE_STORE.as_bytes(), "the store is now in our format");

    let cfg = d.config("1.0.0", "net1", "pool1");
    // the pods' runtimes only ever CHECK, DEL, or retry an ADD for them
    d.call("CHECK", &with_prev(&cfg, "10.1.0.2/24"), "c1", "eth0").ok();
    d.call("CHECK", &with_prev(&cfg, "10.1.0.3/24"), "c2", "net1").ok();
    d.call("CHECK", &with_prev(&cfg, "10.1.0.9/24"), "c1", "eth0").fails_with(106);
    let again = d.call("ADD", &cfg, "c1", "eth0").ok();
    assert_eq!(again.addresses(), ["10.1.0.2/24"], "a retried ADD gets the imported address:\n{again}");
    // a new pod gets the address after the reference's last one
    let new = d.call("ADD", &cfg, "c3", "eth0").ok();
    assert_eq!(new.addresses(), ["10.1.0.4/24"], "the cursor continues after 10.1.0.3:\n{new}");
    // GC of this network keeps the imported reservations: they name no network
    let mut gc = cfg.clone();
    gc["cniVersion"] = json!("1.1.0");
    gc["cni.dev/valid-attachments"] = json!([]);
    let empty = [
        ("CNI_CONTAINERID", ""),
        ("CNI_NETNS", ""),
        ("CNI_IFNAME", ""),
        ("CNI_ARGS", ""),
        ("CNI_PATH", "/x"),
    ];
    common::cni("GC", &gc, &empty).ok();
    d.call("CHECK", &with_prev(&cfg, "10.1.0.2/24"), "c1", "eth0").ok();
    d.call("CHECK", &with_prev(&cfg, "10.1.0.4/24"), "c3", "eth0").fails_with(105);
    // DEL releases an imported reservation, and the restarted daemon reads its own format
    d.call("DEL", &cfg, "c2", "net1").ok();
    d.restart();
    d.call("CHECK", &with_prev(&cfg, "10.1.0.3/24"), "c2", "net1").fails_with(105);
    d.call("CHECK", &with_prev(&cfg, "10.1.0.2/24"), "c1", "eth0").ok();
    assert_eq!(
        d.stderr().matches("from the reference store format").count(),
        1,
        "one import:\n{}",
        d.stderr()
    );
}
