//! `ipam-node`'s socket file across its life, with the real binary: SIGTERM ends the daemon
//! within its grace whatever happened to the socket file (removed, replaced by a regular file
//! or by another listener), a stopping daemon removes only the socket it bound, a starting
//! daemon never takes over a socket a live daemon serves, and a stale socket is replaced.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use common::daemon::Daemon;
use common::peers::{SLOW_FRAME, Target, Trickle, fd_count, spawn_node};
use common::process::Proc;
use common::wait_until;

const POOLS: &str = "
apiVersion: nv-ipam.nvidia.com/v1alpha1
kind: IPPool
metadata:
  name: pool1
  namespace: kube-system
spec:
  subnet: 10.61.0.0/24
  perNodeBlockSize: 16
  gateway: 10.61.0.1
status:
  allocations:
  - nodeName: node1
    startIP: 10.61.0.1
    endIP: 10.61.0.16
";

/// The daemon's grace (`SHUTDOWN_GRACE`, 10 s) plus slack for a loaded machine.
const EXIT: Duration = Duration::from_secs(20);

/// A sandboxed daemon started by [`spawn_node`] (the socket path is not cleared first).
fn start() -> (Daemon, Proc) {
    let d = Daemon::prepare(POOLS, "node1", None);
    let p = spawn_node(&d, &[]);
    (d, p)
}

fn stop(p: &mut Proc) {
    let st = p.term_and_wait(EXIT, "ipam-node exits after SIGTERM");
    assert!(st.success(), "{st}:\n{}", p.log());
}

#[test]
fn sigterm_ends_the_daemon_after_its_socket_file_was_removed() {
    let (d, mut p) = start();
    fs::remove_file(&d.socket).expect("remove the socket file");
    stop(&mut p);
}

#[test]
fn sigterm_ends_the_daemon_after_its_socket_file_was_replaced_by_a_regular_file() {
    let (d, mut p) = start();
    fs::remove_file(&d.socket).expect("remove the socket file");
    fs::write(&d.socket, "not a socket\n").expect("write a regular file");
    stop(&mut p);
    assert_eq!(
        fs::read_to_string(&d.socket).ok().as_deref(),
        Some("not a socket\n"),
        "the file is left alone"
    );
}

#[test]
fn sigterm_ends_the_daemon_after_another_listener_took_its_path() {
    let (d, mut p) = start();
    fs::remove_file(&d.socket).expect("remove the socket file");
    let other = UnixListener::bind(&d.socket).expect("bind another listener");
    let ino = fs::metadata(&d.socket).expect("stat").ino();
    stop(&mut p);
    let m = fs::symlink_metadata(&d.socket).expect("the other listener's socket file is still there");
    assert!(
        m.file_type().is_socket() && m.ino() == ino,
        "a stopping daemon removed a socket it did not bind"
    );
    drop(other);
}

#[test]
fn sigterm_ends_the_daemon_while_slow_connections_are_open() {
    let (d, mut p) = start();
    let pid = p.pid();
    let base = fd_count(pid);
    let _t =
        Trickle::start(Target::Unix(d.socket.clone()), 200, SLOW_FRAME, Duration::from_millis(500), true);
    wait_until(EXIT, "the daemon holds the slow connections", || fd_count(pid) >= base + 190);
    stop(&mut p);
    assert!(!d.socket.exists(), "the daemon removes the socket it bound");
}

#[test]
fn a_second_daemon_refuses_a_socket_a_live_daemon_serves() {
    let (first, mut p) = start();
    let ino = fs::metadata(&first.socket).expect("stat").ino();
    // another store (so the store lock does not stop it first), the same socket path
    let mut second = Daemon::prepare(POOLS, "node1", None);
    second.socket = first.socket.clone();
    let (st, stderr) = second.run_to_exit();
    assert!(!st.success(), "the second daemon started:\n{stderr}");
    let path = first.socket.display().to_string();
    assert!(
        stderr.contains(&path) && stderr.contains("another ipam-node"),
        "the error names the path and the live daemon:\n{stderr}"
    );
    assert_eq!(fs::metadata(&first.socket).expect("stat").ino(), ino, "the live socket was not replaced");
    // the first one still serves its socket
    let conf = first.config("1.0.0", "net1", "pool1");
    let out = first.call("ADD", &conf, "c-live", "net1").ok();
    assert_eq!(out.addresses().len(), 1, "{out}");
    assert!(p.running());
    stop(&mut p);
    assert!(!first.socket.exists(), "the daemon removes the socket it bound");
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let d = Daemon::prepare(POOLS, "node1", None);
    // a socket nobody listens on any more (a daemon killed with -9 leaves one)
    drop(UnixListener::bind(&d.socket).expect("bind"));
    // a process that another test forks meanwhile holds the listener until its exec (the fd is
    // close-on-exec, not close-on-fork): it is stale once that child has exec'd
    wait_until(Duration::from_secs(5), "stale: connection refused", || {
        UnixStream::connect(&d.socket).is_err()
    });
    let mut p = spawn_node(&d, &[]);
    let conf = d.config("1.0.0", "net1", "pool1");
    d.call("ADD", &conf, "c-stale", "net1").ok();
    stop(&mut p);
}
