//! A tiny HTTP/1.1 server for `/healthz`, `/readyz` and `/metrics`, shared by `ipam-controller`
//! and `ipam-node`.
//!
//! One accept thread; one short-lived named thread per connection, at most
//! [`MAX_CONNECTIONS`] at a time and [`MAX_CONNECTIONS_PER_PEER`] from one address
//! ([`crate::slots`]: when they are all taken, the oldest connection still sending its request
//! is closed to make room; a newcomer is answered 503 only when every slot serves a complete
//! request). A request is one GET without a body, read by [`http::read_request`] within
//! [`REQUEST_DEADLINE`] in total, answered within [`RESPONSE_DEADLINE`]; the response always
//! closes the connection (`Connection: close`), so there is no keep-alive state.
//!
//! Routes: `GET /healthz` and `GET /readyz` answer 200 `ok` or 503 `not ok`; `GET /metrics`
//! answers the Prometheus text format 0.0.4 from [`Probe::metrics`]; any other path goes to
//! [`Probe::route`] (`ipam-node`'s `/v1/allocations`), which answers 404 unless the program
//! serves it; a method other than GET/HEAD is 405.
//!
//! Owns: the socket, the routes and [`HealthError`]. Must not: decide health; the
//! [`Probe`] the program passes in does. Rendering metric lines is `metrics`.

use std::fmt;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::deadline::Deadline;
use crate::http;
use crate::slots::{Limits, Slot, Slots};

/// Connections served at once; kubelet probes and one Prometheus need a handful.
pub const MAX_CONNECTIONS: usize = 16;
/// Connections at once from one address: half the slots, so that kubelet (the node's address,
/// which host-network pods share) and Prometheus (a pod address) always find room beside a
/// peer that floods complete requests.
pub const MAX_CONNECTIONS_PER_PEER: usize = MAX_CONNECTIONS / 2;
/// The whole request head, however it trickles in: kubelet gives up on a probe after its
/// `timeoutSeconds` (1 s by default) and sends the head in one segment; twice that leaves room
/// for a retransmission.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// Writing the answer to a client that does not read: `/metrics` is a few KiB, which the socket
/// buffer takes at once; 5 s is for a scraper on a slow link (Prometheus' `scrape_timeout` is
/// 10 s by default, and it waits for the whole exchange).
pub const RESPONSE_DEADLINE: Duration = Duration::from_secs(5);

/// What the server asks the program.
pub trait Probe: Send + Sync {
    /// The process works (liveness).
    fn healthy(&self) -> bool;
    /// The process can do its job (readiness).
    fn ready(&self) -> bool;
    /// The metrics in Prometheus text format 0.0.4 (see `metrics`).
    fn metrics(&self) -> String;
    /// A path other than the probes' and `/metrics`; `None` answers 404. The answer is written
    /// until `deadline` ([`RESPONSE_DEADLINE`] after the request was read): whatever the route
    /// waits for on the way (API calls) must end well before it.
    fn route(&self, _req: &http::Request, _deadline: Instant) -> Option<Answer> {
        None
    }
}

/// The answer of a [`Probe::route`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    /// More header lines, the server's own constants (e.g. `WWW-Authenticate` of a 401).
    pub headers: Vec<(&'static str, &'static str)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// A `text/plain` answer.
    pub fn text(status: u16, body: impl Into<String>) -> Answer {
        Answer { status, content_type: "text/plain", headers: Vec::new(), body: body.into().into_bytes() }
    }
}

/// Why the server could not start.
#[derive(Debug)]
pub enum HealthError {
    /// The address is not `HOST:PORT` or `:PORT`.
    Address {
        flag_value: String,
    },
    Bind {
        addr: String,
        source: std::io::Error,
    },
    Spawn {
        source: std::io::Error,
    },
}

impl fmt::Display for HealthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HealthError::Address { flag_value } => write!(
                f,
                "bind address {flag_value:?} is not HOST:PORT or :PORT: use e.g. \":8081\", \
                 \"127.0.0.1:8081\", or \"0\" to disable"
            ),
            HealthError::Bind { addr, source } => {
                write!(f, "cannot listen on {addr}: {source}: pick a free port or another address")
            }
            HealthError::Spawn { source } => write!(f, "cannot start the http server thread: {source}"),
        }
    }
}

impl std::error::Error for HealthError {}

/// Turns a Go-style address into a bindable one: `":8081"` → `"[::]:8081"` (every address, IPv4
/// and IPv6: [`bind_listener`]), `"0"` or `""` → `None` (disabled), anything with a port is kept.
pub fn parse_bind_address(addr: &str) -> Result<Option<String>, HealthError> {
    let addr = addr.trim();
    if addr.is_empty() || addr == "0" {
        return Ok(None);
    }
    let bad = || HealthError::Address { flag_value: addr.to_string() };
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().map_err(|_| bad())?;
    if host.is_empty() { Ok(Some(format!("[::]:{port}"))) } else { Ok(Some(addr.to_string())) }
}

/// Binds an address of [`parse_bind_address`]. `[::]:PORT` (from Go's `:PORT`) is dual-stack, as
/// in Go: on an IPv6-only or IPv6-first cluster the kubelet probes, and a Service forwards to, the
/// pod's IPv6 address. A kernel without IPv6 gets `0.0.0.0:PORT` instead.
pub fn bind_listener(bind: &str) -> std::io::Result<TcpListener> {
    match (TcpListener::bind(bind), bind.strip_prefix("[::]:")) {
        (Err(e), Some(port))
            if !matches!(e.kind(), std::io::ErrorKind::AddrInUse | std::io::ErrorKind::PermissionDenied) =>
        {
            TcpListener::bind(format!("0.0.0.0:{port}")).map_err(|_| e)
        }
        (r, _) => r,
    }
}

/// Listens on `addr` (see [`parse_bind_address`]) and serves until `stop` is set. Returns
/// `Ok(None)` when the address disables the server, else the bound address (useful with port
/// 0) and the accept thread, which ends within [`http::ACCEPT_POLL`] of `stop`.
pub fn serve(
    addr: &str,
    probe: Arc<dyn Probe>,
    stop: Arc<AtomicBool>,
) -> Result<Option<(SocketAddr, JoinHandle<()>)>, HealthError> {
    let Some(bind) = parse_bind_address(addr)? else { return Ok(None) };
    let listener = bind_listener(&bind).map_err(|source| HealthError::Bind { addr: bind.clone(), source })?;
    let local = listener.local_addr().map_err(|source| HealthError::Bind { addr: bind.clone(), source })?;
    listener.set_nonblocking(true).map_err(|source| HealthError::Bind { addr: bind.clone(), source })?;
    let handle = std::thread::Builder::new()
        .name(format!("http-{}", local.port()))
        .spawn(move || accept_loop(listener, probe, stop))
        .map_err(|source| HealthError::Spawn { source })?;
    Ok(Some((local, handle)))
}

fn accept_loop(listener: TcpListener, probe: Arc<dyn Probe>, stop: Arc<AtomicBool>) {
    let slots = Slots::new("http", Limits { max: MAX_CONNECTIONS, per_peer: MAX_CONNECTIONS_PER_PEER });
    // non-blocking: a fresh socket's send buffer takes the whole answer
    let busy = |mut stream: TcpStream, _| {
        let _ = http::respond(&mut stream, 503, "text/plain", b"too many connections\n", false);
    };
    http::accept_loop(listener, &stop, &slots, "http", busy, move |stream, slot| {
        handle_connection(stream, &slot, probe.as_ref());
    });
}

fn handle_connection(stream: TcpStream, slot: &Slot, probe: &dyn Probe) {
    if !slot.reading() {
        return;
    }
    let mut stream = Deadline::new(stream, Instant::now() + REQUEST_DEADLINE);
    let req = http::read_request(&mut stream, 0);
    if !slot.serving() {
        return; // closed to make room while it was still sending
    }
    let deadline = Instant::now() + RESPONSE_DEADLINE;
    stream.set(deadline);
    let req = match req {
        Ok(r) => r,
        Err(e) => {
            if let Some((status, body)) = e.response() {
                let _ = http::respond(&mut stream, status, "text/plain", body.as_bytes(), false);
            }
            return;
        }
    };
    let a = route(&req, probe, deadline);
    let _ =
        http::respond_with(&mut stream, a.status, a.content_type, &a.headers, &a.body, req.method == "HEAD");
}

/// Prometheus text exposition format version 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn route(req: &http::Request, probe: &dyn Probe, deadline: Instant) -> Answer {
    if req.method != "GET" && req.method != "HEAD" {
        return Answer::text(405, "method not allowed\n");
    }
    let yes_no = |ok: bool| if ok { Answer::text(200, "ok") } else { Answer::text(503, "not ok") };
    match req.path.as_str() {
        "/healthz" | "/livez" => yes_no(probe.healthy()),
        "/readyz" => yes_no(probe.ready()),
        "/metrics" => Answer {
            status: 200,
            content_type: METRICS_CONTENT_TYPE,
            headers: Vec::new(),
            body: probe.metrics().into_bytes(),
        },
        _ => probe.route(req, deadline).unwrap_or_else(|| Answer::text(404, "not found\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Fixed {
        ready: AtomicBool,
    }
    impl Probe for Fixed {
        fn healthy(&self) -> bool {
            true
        }
        fn ready(&self) -> bool {
            self.ready.load(Ordering::SeqCst)
        }
        fn metrics(&self) -> String {
            "# TYPE x gauge\nx 1\n".into()
        }
        fn route(&self, req: &http::Request, deadline: Instant) -> Option<Answer> {
            assert!(deadline > Instant::now(), "the route gets the answer's deadline");
            (req.path == "/extra").then(|| Answer {
                status: 401,
                content_type: "text/plain",
                headers: vec![("WWW-Authenticate", "Bearer")],
                body: b"who?".to_vec(),
            })
        }
    }

    fn get(addr: SocketAddr, raw: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        s.write_all(raw).expect("write");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    #[test]
    fn addresses_in_go_style() {
        assert_eq!(parse_bind_address(":8081").expect("ok"), Some("[::]:8081".into()));
        // `:PORT` answers on IPv4 and, where the kernel has it, IPv6 (Go's behaviour)
        let any = parse_bind_address(":0").expect("ok").expect("enabled");
        let l = bind_listener(&any).expect("bind :0");
        let port = l.local_addr().expect("addr").port();
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("IPv4 connect to :PORT");
        if l.local_addr().expect("addr").is_ipv6() {
            std::net::TcpStream::connect(("::1", port)).expect("IPv6 connect to :PORT");
        }
        assert_eq!(parse_bind_address("127.0.0.1:0").expect("ok"), Some("127.0.0.1:0".into()));
        assert_eq!(parse_bind_address("0").expect("ok"), None);
        assert_eq!(parse_bind_address("").expect("ok"), None);
        assert_eq!(
            parse_bind_address("8081").map_err(|e| e.to_string()).err(),
            Some(
                "bind address \"8081\" is not HOST:PORT or :PORT: use e.g. \":8081\", \"127.0.0.1:8081\", or \
                 \"0\" to disable"
                    .into()
            )
        );
    }

    #[test]
    fn serves_routes_and_stops() {
        let probe = Arc::new(Fixed { ready: AtomicBool::new(false) });
        let stop = Arc::new(AtomicBool::new(false));
        let (addr, handle) =
            serve("127.0.0.1:0", probe.clone(), stop.clone()).expect("serve").expect("enabled");
        let r = get(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\nok"), "{r}");
        let r = get(addr, b"GET /readyz HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 503 "), "{r}");
        probe.ready.store(true, Ordering::SeqCst);
        let r = get(addr, b"GET /readyz?verbose HTTP/1.0\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
        let r = get(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(r.contains("version=0.0.4") && r.ends_with("x 1\n"), "{r}");
        assert!(get(addr, b"GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
        let r = get(addr, b"GET /extra HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 401 ") && r.contains("\r\nWWW-Authenticate: Bearer\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\nwho?"), "{r}");
        assert!(get(addr, b"POST /healthz HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405 "));
        assert!(get(addr, b"garbage\r\n\r\n").starts_with("HTTP/1.1 400 "));
        stop.store(true, Ordering::SeqCst);
        handle.join().expect("accept thread ends");
    }
}
