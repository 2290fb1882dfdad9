//! `kubectl-nv_ipam --store-file` on a standalone host: the real binary reads the store of a
//! real `ipam-node` (pools file mode) while the daemon runs and writes, read-only under the
//! shared lock on `store.lock`: every read succeeds and is consistent while ADDs and DELs
//! (and compactions) go on, the daemon's requests all succeed, a daemon starts beside a
//! reader's lock, a stopped store's files are left byte for byte as they were (a torn last
//! line included), an exclusive holder of `store.lock` refuses the read at once, and a store
//! in upstream's format is read as it is.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};

use common::daemon::Daemon;
use serde_json::Value;

/// node1's block of `blue` is .1-.10 (gateway .1); `red`'s prefix is 10.61.1.0/24.
const POOLS: &str = "
apiVersion: nv-ipam.nvidia.com/v1alpha1
kind: IPPool
metadata: {name: blue}
spec: {subnet: 10.60.0.0/24, perNodeBlockSize: 10, gateway: 10.60.0.1}
status: {allocations: [{nodeName: node1, startIP: 10.60.0.1, endIP: 10.60.0.10}]}
---
apiVersion: nv-ipam.nvidia.com/v1alpha1
kind: CIDRPool
metadata: {name: red}
spec: {cidr: 10.61.0.0/16, perNodeNetworkPrefix: 24}
status: {allocations: [{nodeName: node1, prefix: 10.61.1.0/24}]}
";

fn cli(d: &Daemon, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubectl-nv_ipam"))
        .env_clear()
        .arg("--store-file")
        .arg(&d.store_file)
        .arg("--pools-file")
        .arg(&d.pools_file)
        .args(["--node-name", "node1"])
        .args(args)
        .output()
        .unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    })
}

fn add(d: &Daemon, pool: &str, container: &str, ips: Option<&[&str]>) -> String {
    let mut cfg = d.config("1.0.0", "net1", pool);
    if pool == "red" {
        cfg["ipam"]["poolType"] = "cidrpool".into();
    }
    if let Some(ips) = ips {
        cfg["args"] = serde_json::json!({"cni": {"ips": ips}});
    }
    let out = d.call("ADD", &cfg, container, "eth0").ok();
    out.addresses()[0].split('/').next().unwrap().to_string()
}

/// Every file of `dir` with its bytes, mode and mtime.
fn files_of(dir: &Path) -> Vec<(String, Vec<u8>, u32, i64, i64)> {
    let mut out: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            let bytes = if m.is_file() { fs::read(e.path()).unwrap() } else { Vec::new() };
            (e.file_name().to_string_lossy().to_string(), bytes, m.mode(), m.mtime(), m.mtime_nsec())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn usage_who_has_and_check_of_a_served_store() {
    let d = Daemon::start(POOLS, "node1");
    assert_eq!(add(&d, "blue", "a", None), "10.60.0.2");
    assert_eq!(add(&d, "blue", "b", None), "10.60.0.3");
    // static, outside the block but in the subnet: counted, never "outside the block"
    assert_eq!(add(&d, "blue", "s", Some(&["10.60.0.200"])), "10.60.0.200");
    assert_eq!(add(&d, "red", "a", None), "10.61.1.1");

    let o = cli(&d, &["usage", "-o", "json"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let u = json_of(&o);
    let rows: Vec<(String, String, u64, u64, u64)> = u["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["pool"].as_str().unwrap().into(),
                r["block"].as_str().unwrap().into(),
                r["allocated"].as_u64().unwrap(),
                r["free"].as_u64().unwrap(),
                r["static"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("blue".into(), "10.60.0.1-10.60.0.10".into(), 3, 7, 1),
            ("red".into(), "10.61.1.1-10.61.1.254".into(), 1, 253, 0),
        ]
    );

    let o = cli(&d, &["who-has", "10.60.0.3", "-o", "json"]);
    assert_eq!(code(&o), 0);
    let w = json_of(&o);
    assert_eq!(w["pools"][0]["node"], "node1");
    assert_eq!(w["holders"][0]["podName"], "pod-b");
    assert_eq!(w["holders"][0]["podUid"], "uid-b");
    assert_eq!(w["holders"][0]["containerId"], "b");
    let t = String::from_utf8(cli(&d, &["who-has", "10.60.0.3"]).stdout).unwrap();
    assert!(t.contains("pod-b") && t.contains("uid-b"), "{t}");
    assert_eq!(code(&cli(&d, &["who-has", "10.60.0.9"])), 1, "not allocated");

    let o = cli(&d, &["check"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stdout));
    assert!(String::from_utf8_lossy(&o.stdout).contains("no inconsistencies found"));

    // the pools file moves node1's block: the round-robin addresses are now outside it
    d.write_pools(
        &POOLS.replace("startIP: 10.60.0.1, endIP: 10.60.0.10", "startIP: 10.60.0.11, endIP: 10.60.0.20"),
    );
    let o = cli(&d, &["check", "-o", "yaml"]);
    assert_eq!(code(&o), 1);
    let c: Value = yaml_serde::from_str(&String::from_utf8_lossy(&o.stdout)).unwrap();
    let found: Vec<(&str, &str)> = c["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["kind"].as_str().unwrap(), f["ip"].as_str().unwrap()))
        .collect();
    assert_eq!(found, [("outside-block", "10.60.0.2"), ("outside-block", "10.60.0.3")]);
    assert_eq!(c["findings"][0]["fix"], "kubectl -n ns1 delete pod pod-a");
}

#[test]
fn reads_beside_a_daemon_under_load_without_disturbing_it() {
    let d = Daemon::start(POOLS, "node1");
    let held = add(&d, "blue", "keep", None);
    // enough ADD/DEL pairs for compactions (a journal line each; at 1,024 lines it compacts)
    const PAIRS: usize = 600;
    let prev = d.sandbox.path("state/store.prev");
    assert!(!prev.exists());
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let cfg = d.config("1.0.0", "net1", "blue");
            for i in 0..PAIRS {
                let c = format!("w{i}");
                d.call("ADD", &cfg, &c, "eth0").ok();
                d.call("DEL", &cfg, &c, "eth0").ok();
            }
        });
        let mut reads = 0;
        while !writer.is_finished() || reads < 5 {
            let o = cli(&d, &["usage", "-o", "json"]);
            assert_eq!(code(&o), 0, "read {reads}: {}", String::from_utf8_lossy(&o.stderr));
            let allocated = json_of(&o)["rows"][0]["allocated"].as_u64().unwrap();
            assert!(
                (1..=2).contains(&allocated),
                "read {reads}: {allocated} reservations, a consistent state has 1 or 2"
            );
            let w = json_of(&cli(&d, &["who-has", &held, "-o", "json"]));
            assert_eq!(
                w["holders"][0]["containerId"], "keep",
                "read {reads}: the held address is always seen"
            );
            reads += 1;
        }
        writer.join().unwrap();
        assert!(reads >= 5);
    });
    assert!(prev.exists(), "the journal was compacted while it was read");
    // the daemon still serves, and its state is what the requests made
    add(&d, "blue", "after", None);
    let u = json_of(&cli(&d, &["usage", "-o", "json"]));
    assert_eq!(u["rows"][0]["allocated"], 2);
}

#[test]
fn a_reader_changes_nothing_and_never_holds_up_a_daemon() {
    let mut d = Daemon::start(POOLS, "node1");
    add(&d, "blue", "a", None);
    d.stop();
    let dir = d.sandbox.path("state");
    // a torn last line (a write cut by a crash): the daemon would cut it; a reader ignores it
    let mut bytes = fs::read(&d.store_file).unwrap();
    bytes.extend_from_slice(b"0123456789abcdef {\"seq\":9,\"ops\":[{\"op\":\"rel");
    fs::write(&d.store_file, &bytes).unwrap();
    let before = files_of(&dir);
    let o = cli(&d, &["usage", "-o", "json"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json_of(&o)["rows"][0]["allocated"], 1);
    assert_eq!(files_of(&dir), before, "no file created, cut, re-moded or touched");

    // an exclusive holder of store.lock (an older ipam-node) refuses the read at once
    let lock = File::open(dir.join("store.lock")).unwrap();
    lock.try_lock().unwrap();
    let o = cli(&d, &["usage"]);
    assert_eq!(code(&o), 3);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        err.contains("is locked exclusively") && err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    // unlock, not just close: a child another test forks at this moment shares the open file
    // until its exec, and a close alone would leave the lock held that long
    lock.unlock().unwrap();
    drop(lock);

    // what a reader holds while it reads (store.lock, shared) does not keep a daemon out
    let reader = File::open(dir.join("store.lock")).unwrap();
    reader.try_lock_shared().unwrap();
    d.spawn();
    assert_eq!(add(&d, "blue", "b", None), "10.60.0.3", "the daemon cut the torn line and serves");
    drop(reader);
}

#[test]
fn reads_upstream_format_and_names_a_missing_store() {
    let d = Daemon::prepare(POOLS, "node1", None);
    let reference = r#"{"version":1,"checksum":42,"pools":{"blue":{"name":"blue","entries":{
        "c1_eth0":{"container_id":"c1","interface_name":"eth0","ip_address":"10.60.0.4",
          "metadata":{"create_time":"2024-01-01T00:00:00Z","pod_uuid":"u1","pod_name":"p1","pod_namespace":"ns","device_id":""}}},
        "last_reserved_ip":"10.60.0.4"}}}"#;
    let o = cli(&d, &["usage"]);
    assert_eq!(code(&o), 3, "no store yet");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot open"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    fs::write(&d.store_file, reference).unwrap();
    let dir = d.sandbox.path("state");
    let before = files_of(&dir);
    let o = cli(&d, &["who-has", "10.60.0.4", "-o", "json"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let w = json_of(&o);
    assert_eq!(
        (w["holders"][0]["podName"].as_str(), w["holders"][0]["podUid"].as_str()),
        (Some("p1"), Some("u1"))
    );
    assert!(w["holders"][0].get("created").is_none(), "upstream keeps no creation time we read");
    assert_eq!(files_of(&dir), before, "not imported: that is ipam-node's job");
}

/// Runs the CLI on `d`'s store with only `files` (no pools file unless given there).
fn cli_with(d: &Daemon, files: &[&str], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubectl-nv_ipam"))
        .env_clear()
        .arg("--store-file")
        .arg(&d.store_file)
        .args(files)
        .args(args)
        .output()
        .unwrap()
}

fn findings(o: &Output) -> Vec<(String, String)> {
    json_of(o)["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["kind"].as_str().unwrap().into(), f["ip"].as_str().unwrap_or_default().into()))
        .collect()
}

#[test]
fn check_judges_blocks_only_when_the_pools_file_gives_the_node_one() {
    let mut d = Daemon::start(POOLS, "node1");
    assert_eq!(add(&d, "blue", "a", None), "10.60.0.2");
    assert_eq!(add(&d, "blue", "b", None), "10.60.0.3");
    assert_eq!(add(&d, "red", "a", None), "10.61.1.1");
    d.stop();
    let pools = d.pools_file.to_str().unwrap().to_string();

    // no pools file: the blocks are unknown, nothing is outside them
    let o = cli_with(&d, &["--node-name", "node1"], &["check", "-o", "json"]);
    assert_eq!(code(&o), 0, "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(findings(&o), []);
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");

    // a pools file but another node name: one warning, no findings
    let o = cli_with(&d, &["--pools-file", &pools, "--node-name", "other"], &["check", "-o", "json"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(findings(&o), []);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("warning: no pool of") && err.contains("\"other\"") && err.contains("--node-name"),
        "{err}"
    );

    // the pools file with node1's block shrunk to .1-.2: 10.60.0.3 is outside it, only that
    d.write_pools(&POOLS.replace("endIP: 10.60.0.10", "endIP: 10.60.0.2"));
    let o = cli_with(&d, &["--pools-file", &pools, "--node-name", "node1"], &["check", "-o", "json"]);
    assert_eq!(code(&o), 1, "{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(findings(&o), [("outside-block".to_string(), "10.60.0.3".to_string())]);
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
}
