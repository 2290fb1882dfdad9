//! The pools file as a node-root surface (standalone mode): only a regular file is read, never
//! blocking on a FIFO, never a directory or a device; at start anything else is a start error
//! that names the file; while running, the previous pools keep serving, one log line per bad
//! state says why, and the file is followed again once it is a regular file.
//!
//! Real `ipam-node` processes on real files (mkfifo, mkdir, /dev/null); every wait has a
//! deadline and polls the protocol `status` op or the daemon's log.
#![allow(clippy::unwrap_used)]
// Renames here play an operator or another tool replacing a file (clippy.toml, docs/style.md).
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::daemon::Daemon;
use common::{CniOut, sh, wait_until};
use nv_ipam::api::PoolType;
use nv_ipam::protocol::{Request, Response, StatusRequest, client};

/// How long the daemon may take to notice a change of its pools file (it polls every second).
const FOLLOW: Duration = Duration::from_secs(15);

/// An IPPool whose status gives `node1` the block `start`-`end` of `10.<n>.0.0/24`.
fn pool(name: &str, n: u8) -> String {
    format!(
        "---
apiVersion: nv-ipam.nvidia.com/v1alpha1
kind: IPPool
metadata: {{name: {name}}}
spec: {{subnet: 10.{n}.0.0/24, perNodeBlockSize: 50, gateway: 10.{n}.0.1}}
status:
  allocations: [{{nodeName: node1, startIP: 10.{n}.0.1, endIP: 10.{n}.0.50}}]
"
    )
}

/// Pool names the daemon's `status` op lists (every pool with configuration on the node).
fn status_pools(d: &Daemon) -> Vec<String> {
    let req = Request::Status(StatusRequest { pools: Vec::new(), pool_type: PoolType::IpPool });
    match client::call(&d.socket, req, Duration::from_secs(5)) {
        Ok(Response::Ok(r)) => r.pools.into_iter().map(|p| p.pool).collect(),
        other => panic!("status: {other:?}"),
    }
}

fn add(d: &Daemon, pool: &str, container: &str) -> CniOut {
    d.call("ADD", &d.config("1.0.0", "net1", pool), container, "eth0")
}

/// Log lines of the daemon that contain every one of `needles`.
fn log_lines(d: &Daemon, needles: &[&str]) -> usize {
    d.stderr().lines().filter(|l| needles.iter().all(|n| l.contains(n))).count()
}

/// Replaces the pools file by a FIFO (atomically: made next to it, renamed over it).
fn replace_with_fifo(d: &Daemon) {
    let tmp = d.sandbox.path("pools.fifo");
    sh("mkfifo", &[tmp.to_str().unwrap()]);
    fs::rename(&tmp, &d.pools_file).unwrap();
}

fn remove_any(p: &Path) {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p).unwrap(),
        Ok(_) => fs::remove_file(p).unwrap(),
        Err(_) => {}
    }
}

#[test]
fn a_fifo_at_start_is_refused_at_once_naming_the_file() {
    let d = Daemon::prepare(&pool("a", 1), "node1", None);
    replace_with_fifo(&d);
    // run_to_exit fails the test if the daemon is still running at its deadline (a blocked open)
    let (st, err) = d.run_to_exit();
    assert!(!st.success(), "a FIFO pools file must stop the start:\n{err}");
    let file = d.pools_file.display().to_string();
    assert!(err.contains(&file) && err.contains("FIFO") && err.contains("regular file"), "{err}");
    assert!(!d.socket.exists(), "nothing may be served");
}

#[test]
fn a_directory_or_a_device_at_start_is_refused_naming_the_file() {
    for (what, make) in [
        ("directory", Box::new(|p: &Path| fs::create_dir(p).unwrap()) as Box<dyn Fn(&Path)>),
        ("character device", Box::new(|p: &Path| std::os::unix::fs::symlink("/dev/zero", p).unwrap())),
    ] {
        let d = Daemon::prepare(&pool("a", 1), "node1", None);
        remove_any(&d.pools_file);
        make(&d.pools_file);
        let (st, err) = d.run_to_exit();
        assert!(!st.success(), "{what}: start must fail:\n{err}");
        let file = d.pools_file.display().to_string();
        assert!(err.contains(&file) && err.contains(what) && err.contains("regular file"), "{what}: {err}");
    }
}

#[test]
fn fifo_then_directory_then_a_valid_edit_while_serving() {
    let d = Daemon::start(&pool("a", 1), "node1");
    add(&d, "a", "c0").ok();
    let file = d.pools_file.display().to_string();

    replace_with_fifo(&d);
    wait_until(FOLLOW, "one log line says the pools file is a FIFO", || {
        log_lines(&d, &[&file, "FIFO", "keeping the previous pools"]) == 1
    });
    add(&d, "a", "c1").ok();
    assert_eq!(status_pools(&d), ["a"]);

    remove_any(&d.pools_file);
    fs::create_dir(&d.pools_file).unwrap();
    wait_until(FOLLOW, "one log line says the pools file is a directory", || {
        log_lines(&d, &[&file, "directory", "keeping the previous pools"]) == 1
    });
    add(&d, "a", "c2").ok();

    // back to a regular file: the edit (a second pool) is followed
    remove_any(&d.pools_file);
    d.write_pools(&format!("{}{}", pool("a", 1), pool("b", 2)));
    wait_until(FOLLOW, "the edit after the bad states is followed", || status_pools(&d) == ["a", "b"]);
    let out = add(&d, "b", "c3").ok();
    assert_eq!(out.addresses(), ["10.2.0.2/24"], "{out}");
    add(&d, "a", "c4").ok();
    // one line per bad state, not one per poll
    assert_eq!(log_lines(&d, &[&file, "FIFO"]), 1, "{}", d.stderr());
    assert_eq!(log_lines(&d, &[&file, "directory"]), 1, "{}", d.stderr());
}

#[test]
fn an_oversized_pools_file_keeps_the_previous_pools() {
    let d = Daemon::start(&pool("a", 1), "node1");
    let file = d.pools_file.display().to_string();
    // a valid manifest padded with a YAML comment to one byte over the limit
    let limit = nv_ipam::node::pools_file::MAX_POOLS_FILE_BYTES as usize;
    let mut text = format!("{}{}#", pool("a", 1), pool("b", 2));
    text.push_str(&"x".repeat(limit + 1 - text.len()));
    d.write_pools(&text);
    wait_until(FOLLOW, "the oversized file is refused with one log line", || {
        log_lines(&d, &[&file, "limit", "keeping the previous pools"]) == 1
    });
    assert_eq!(status_pools(&d), ["a"]);
    add(&d, "a", "c1").ok();
    // exactly at the limit it is read
    text.truncate(limit);
    d.write_pools(&text);
    wait_until(FOLLOW, "a file at the limit is read", || status_pools(&d) == ["a", "b"]);
}
