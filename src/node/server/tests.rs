//! Tests of the socket server with real unix sockets: a frame's deadline, a connection's
//! lifetime, what is at the socket path before binding, the stop handle.
//!
//! Owns: those tests. Must not: be compiled outside `cfg(test)`.

use super::*;
use crate::node::pools::PoolSet;
use crate::protocol::{Request, Response, StatusRequest};
use crate::store::Store;
use crate::store::tests::TempDir;
use std::io::{Read, Write};

fn status() -> RequestFrame {
    RequestFrame::new(Request::Status(StatusRequest { pools: Vec::new(), pool_type: Default::default() }))
}

/// Serves one end of a socket pair with `timing` on a thread; returns the other end and the
/// thread, which ends when the connection does.
fn serve_pair(dir: &TempDir, timing: Timing) -> (UnixStream, thread::JoinHandle<()>) {
    let store = Store::open(&dir.join("store")).expect("store");
    let service = Service::new("node1".into(), store, PoolSet::default());
    let (client, server) = UnixStream::pair().expect("pair");
    let slots = Slots::new("test", Limits { max: 1, per_peer: 1 });
    let slot = slots.enter(None, Box::new(server.try_clone().expect("clone"))).expect("slot");
    let t = thread::spawn(move || handle_connection(server, &slot, &service, &StopHandle::default(), timing));
    (client, t)
}

/// Waits (bounded) until the connection thread has ended.
fn ended_within(t: &thread::JoinHandle<()>, bound: Duration) -> bool {
    let until = Instant::now() + bound;
    while !t.is_finished() && Instant::now() < until {
        thread::sleep(Duration::from_millis(5)); // a poll interval
    }
    t.is_finished()
}

/// Waits (bounded) until the server side closed: a read returns end of file.
fn closed_within(mut c: &UnixStream, bound: Duration) -> bool {
    c.set_read_timeout(Some(bound)).expect("timeout");
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).is_ok()
}

#[test]
fn a_frame_that_trickles_is_cut_at_its_deadline() {
    let dir = TempDir::new("server-frame");
    let timing = Timing { frame: Duration::from_millis(300), ..TIMING };
    let (mut c, t) = serve_pair(&dir, timing);
    let start = Instant::now();
    c.write_all(&[0, 0, 1, 0]).expect("header");
    // a byte every 50 ms: each read succeeds, the frame never completes
    while start.elapsed() < Duration::from_millis(600) && c.write_all(b" ").is_ok() {
        thread::sleep(Duration::from_millis(50));
    }
    assert!(ended_within(&t, Duration::from_secs(5)), "the frame deadline ends the connection");
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert!(closed_within(&c, Duration::from_secs(5)));
}

#[test]
fn several_frames_on_one_connection_until_its_lifetime() {
    let dir = TempDir::new("server-life");
    let timing = Timing { lifetime: Duration::from_millis(300), ..TIMING };
    let (mut c, t) = serve_pair(&dir, timing);
    let start = Instant::now();
    let mut answered = 0;
    // exchanges go on until the lifetime is over; the one in progress then is answered
    while frame::write_frame(&mut c, &status()).is_ok() {
        match frame::read_frame::<ResponseFrame>(&mut c) {
            Ok(r) => {
                assert!(matches!(r.response, Response::Ok(_)), "{r:?}");
                answered += 1;
            }
            Err(_) => break,
        }
        thread::sleep(Duration::from_millis(20));
    }
    assert!(ended_within(&t, Duration::from_secs(5)), "the lifetime ends the connection");
    assert!(answered >= 2, "several exchanges on one connection ({answered})");
    assert!(start.elapsed() >= Duration::from_millis(300));
}

#[test]
fn the_socket_path_is_looked_at_before_it_is_bound() {
    let dir = TempDir::new("server-bind");
    let path = dir.join("d.sock");
    assert_eq!(look(&path).ok(), Some(AtPath::Nothing));
    let live = bind(&path).expect("bind");
    assert_eq!(look(&path).ok(), Some(AtPath::Live));
    let e = bind(&path).map(|_| ()).map_err(|e| e.to_string());
    assert_eq!(
        e,
        Err(format!(
            "bind address {} is served by another ipam-node (it accepts connections); stop it first or \
             choose another --bind-address",
            path.display()
        ))
    );
    assert!(check_free(&path).is_err());
    // the listener is gone, its file stays: stale, replaced by a new bind
    drop(live);
    assert_eq!(look(&path).ok(), Some(AtPath::Stale));
    assert!(check_free(&path).is_ok());
    let again = bind(&path).expect("a stale socket is replaced");
    // a stopping daemon removes only its own socket
    fs::remove_file(&path).expect("rm");
    let other = UnixListener::bind(&path).expect("another socket at the path");
    remove_if_ours(&path, again.file);
    assert!(path.exists(), "another socket is left in place");
    drop(other);
    fs::remove_file(&path).expect("rm");
    fs::write(&path, "x").expect("a regular file");
    assert!(matches!(look(&path), Err(ServerError::NotASocket { .. })));
    remove_if_ours(&path, again.file);
    assert!(path.exists());
}

#[test]
fn stop_wakes_a_waiter() {
    let stop = StopHandle::default();
    let s2 = stop.clone();
    let t = thread::spawn(move || s2.wait());
    stop.stop();
    t.join().expect("the waiter wakes");
    assert!(stop.is_stopping() && stop.flag().load(Ordering::SeqCst));
}
