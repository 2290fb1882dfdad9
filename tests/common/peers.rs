//! Hostile peers for the slow-peer and shutdown tests: connections that trickle a request one
//! byte at a time (reconnecting when the server drops them, as an attacker would), idle TCP
//! connections, `ipam-node` started as a [`Proc`], and a few /proc readings of the daemon.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::process::Proc;
use super::wait_until;

/// Where a trickler connects.
#[derive(Debug, Clone)]
pub enum Target {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    fn open(t: &Target) -> Option<Conn> {
        let c = match t {
            Target::Tcp(a) => Conn::Tcp(TcpStream::connect_timeout(a, Duration::from_secs(2)).ok()?),
            Target::Unix(p) => Conn::Unix(UnixStream::connect(p).ok()?),
        };
        match &c {
            Conn::Tcp(s) => s.set_nonblocking(true).ok()?,
            Conn::Unix(s) => s.set_nonblocking(true).ok()?,
        }
        Some(c)
    }

    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(b),
            Conn::Unix(s) => s.write(b),
        }
    }

    /// The server closed (or reset) the connection; a non-blocking look.
    fn closed(&mut self) -> bool {
        let mut buf = [0u8; 512];
        let r = match self {
            Conn::Tcp(s) => s.read(&mut buf),
            Conn::Unix(s) => s.read(&mut buf),
        };
        match r {
            Ok(0) => true,
            Ok(_) => false, // an answer (503, not_ready): the server closes next
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        }
    }
}

/// Connections that each send `prefix` one byte every `every`, then `filler` bytes forever,
/// never completing a request. With `reconnect`, a connection the server drops is opened
/// again at the next round, so the count stays at `n`. Stopped and closed on drop.
pub struct Trickle {
    stop: Arc<AtomicBool>,
    /// Connections the server has closed so far.
    pub dropped: Arc<AtomicUsize>,
    /// Connections open now.
    pub open: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Trickle {
    pub fn start(target: Target, n: usize, prefix: &[u8], every: Duration, reconnect: bool) -> Trickle {
        Trickle::run(target, n, Some(prefix), every, reconnect)
    }

    /// Connections that send nothing at all (e.g. no TLS ClientHello), looked at every `every`.
    pub fn idle(target: Target, n: usize, every: Duration, reconnect: bool) -> Trickle {
        Trickle::run(target, n, None, every, reconnect)
    }

    fn run(target: Target, n: usize, prefix: Option<&[u8]>, every: Duration, reconnect: bool) -> Trickle {
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (stop2, dropped2, open2) = (stop.clone(), dropped.clone(), open.clone());
        let send = prefix.is_some();
        let prefix = prefix.unwrap_or_default().to_vec();
        // all connections are opened before the first round, so the server sees them at once
        let mut conns: Vec<Option<(Conn, usize)>> =
            (0..n).map(|_| Conn::open(&target).map(|c| (c, 0))).collect();
        open.store(conns.iter().flatten().count(), Ordering::SeqCst);
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                for slot in conns.iter_mut() {
                    if let Some((c, sent)) = slot {
                        let byte = prefix.get(*sent).copied().unwrap_or(b'a');
                        let gone = c.closed()
                            || (send
                                && matches!(c.write(&[byte]), Err(e) if e.kind() != std::io::ErrorKind::WouldBlock));
                        if gone {
                            *slot = None;
                            dropped2.fetch_add(1, Ordering::SeqCst);
                        } else {
                            *sent += 1;
                        }
                    }
                    if slot.is_none() && reconnect {
                        *slot = Conn::open(&target).map(|c| (c, 0));
                    }
                }
                open2.store(conns.iter().flatten().count(), Ordering::SeqCst);
                std::thread::sleep(every); // the trickle rate, not a synchronisation guess
            }
        });
        Trickle { stop, dropped, open, thread: Some(thread) }
    }
}

impl Drop for Trickle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An HTTP request head that never ends: `GET /healthz HTTP/1.1`, then a header growing by a
/// byte at a time.
pub const SLOW_HTTP: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";

/// A frame header announcing 4,096 bytes, whose body then arrives a byte at a time.
pub const SLOW_FRAME: &[u8] = &[0, 0, 16, 0, b'{'];

/// Idle TCP connections (no byte sent, e.g. no TLS ClientHello), open until dropped.
pub fn idle_tcp(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n).filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()).collect()
}

/// Number of file descriptors `pid` holds (its sockets among them).
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// A `/proc/<pid>/status` field in kB (`VmHWM`, `VmRSS`), or its number (`Threads`).
pub fn proc_status(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.split_whitespace().next()?.parse().ok())
}

/// Starts `ipam-node` for `d`'s sandbox with `extra` flags, without touching the socket path
/// first (unlike [`super::daemon::Daemon::spawn`]); returns once the daemon answers on
/// its socket. The log is the sandbox's daemon stderr file.
pub fn spawn_node(d: &super::daemon::Daemon, extra: &[&str]) -> Proc {
    let log = d.stderr_file.clone();
    let child = d
        .command()
        .args(extra)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("create the daemon log"))
        .spawn()
        .expect("spawn ipam-node");
    let mut p = Proc::new(child, &log);
    // a whole exchange, not just a connect (which the backlog accepts before the accept
    // loop runs): the daemon is in its accept loop
    wait_until(super::daemon::START_DEADLINE, "ipam-node answers on its socket", || {
        assert!(p.running(), "ipam-node exited:\n{}", p.log());
        let status = nv_ipam::protocol::Request::Status(nv_ipam::protocol::StatusRequest {
            pools: Vec::new(),
            pool_type: Default::default(),
        });
        nv_ipam::protocol::client::call(&d.socket, status, Duration::from_secs(2)).is_ok()
    });
    p
}
