//! A tiny HTTP/1.1 server for `/healthz`, `/readyz` and `/metrics`, shared by `ipam-controller`
//! and `ipam-node`.
//!
//! One accept thread; one short-lived named thread per connection, at most
//! [`MAX_CONNECTIONS`] at a time (more are answered 503 and closed). A request is one GET with
//! headers of at most [`MAX_HEADER_BYTES`], read within [`READ_TIMEOUT`]; the response always
//! closes the connection (`Connection: close`), so there is no keep-alive state.
//!
//! Routes: `GET /healthz` and `GET /readyz` answer 200 `ok` or 503 `not ok`; `GET /metrics`
//! answers the Prometheus text format 0.0.4 from [`Probe::metrics`]; anything else is 404, a
//! method other than GET/HEAD is 405.
//!
//! Owns: the socket, the request parser and [`HealthError`]. Must not: decide health; the
//! [`Probe`] the program passes in does. Rendering metric lines is `metrics`.

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Largest request head (request line + headers) read; a probe or scrape needs a few hundred
/// bytes, 8 KiB is the common server default (nginx `large_client_header_buffers`).
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Connections served at once; kubelet probes and one Prometheus need a handful.
pub const MAX_CONNECTIONS: usize = 16;
/// How long a client may take to send its request head (kubelet's probe timeout is 1 s by default).
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long writing a response may block on a client that does not read.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the accept loop looks at the stop flag (the listener is non-blocking).
pub const ACCEPT_POLL: Duration = Duration::from_millis(50);

/// What the server asks the program.
pub trait Probe: Send + Sync {
    /// The process works (liveness).
    fn healthy(&self) -> bool;
    /// The process can do its job (readiness).
    fn ready(&self) -> bool;
    /// The metrics in Prometheus text format 0.0.4 (see `metrics`).
    fn metrics(&self) -> String;
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

/// Turns a Go-style address into a bindable one: `":8081"` → `"0.0.0.0:8081"`, `"0"` or `""` →
/// `None` (disabled), anything with a port is kept.
pub fn parse_bind_address(addr: &str) -> Result<Option<String>, HealthError> {
    let addr = addr.trim();
    if addr.is_empty() || addr == "0" {
        return Ok(None);
    }
    let bad = || HealthError::Address { flag_value: addr.to_string() };
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().map_err(|_| bad())?;
    if host.is_empty() { Ok(Some(format!("0.0.0.0:{port}"))) } else { Ok(Some(addr.to_string())) }
}

/// Listens on `addr` (see [`parse_bind_address`]) and serves until `stop` is set. Returns
/// `Ok(None)` when the address disables the server, else the bound address (useful with port
/// 0) and the accept thread, which ends within [`ACCEPT_POLL`] of `stop`.
pub fn serve(
    addr: &str,
    probe: Arc<dyn Probe>,
    stop: Arc<AtomicBool>,
) -> Result<Option<(SocketAddr, JoinHandle<()>)>, HealthError> {
    let Some(bind) = parse_bind_address(addr)? else { return Ok(None) };
    let listener =
        TcpListener::bind(&bind).map_err(|source| HealthError::Bind { addr: bind.clone(), source })?;
    let local = listener.local_addr().map_err(|source| HealthError::Bind { addr: bind.clone(), source })?;
    listener.set_nonblocking(true).map_err(|source| HealthError::Bind { addr: bind.clone(), source })?;
    let handle = std::thread::Builder::new()
        .name(format!("http-{}", local.port()))
        .spawn(move || accept_loop(listener, probe, stop))
        .map_err(|source| HealthError::Spawn { source })?;
    Ok(Some((local, handle)))
}

fn accept_loop(listener: TcpListener, probe: Arc<dyn Probe>, stop: Arc<AtomicBool>) {
    let active = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut stream, _)) => {
                if stream.set_nonblocking(false).is_err() {
                    continue;
                }
                let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
                let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
                if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                    active.fetch_sub(1, Ordering::SeqCst);
                    let _ = respond(&mut stream, 503, "text/plain", "too many connections\n", false);
                    continue;
                }
                let (probe, active2) = (Arc::clone(&probe), Arc::clone(&active));
                let spawned = std::thread::Builder::new().name("http-conn".into()).spawn(move || {
                    handle_connection(stream, probe.as_ref());
                    active2.fetch_sub(1, Ordering::SeqCst);
                });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::SeqCst);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(ACCEPT_POLL),
            Err(e) => {
                log::debug!("health: accept: {e}");
                std::thread::sleep(ACCEPT_POLL);
            }
        }
    }
}

/// A parsed request line.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    method: String,
    path: String,
}

/// Why a request head could not be read; each maps to one response.
#[derive(Debug, PartialEq, Eq)]
enum ReadError {
    TooLarge,
    Malformed,
    Closed,
}

fn read_head(stream: &mut impl Read) -> Result<Request, ReadError> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = find_head_end(&buf) {
            return parse_request_line(&buf[..end]);
        }
        if buf.len() >= MAX_HEADER_BYTES {
            return Err(ReadError::TooLarge);
        }
        let want = chunk.len().min(MAX_HEADER_BYTES - buf.len());
        let n = stream.read(&mut chunk[..want]).map_err(|_| ReadError::Closed)?;
        if n == 0 {
            return Err(ReadError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").or_else(|| buf.windows(2).position(|w| w == b"\n\n"))
}

fn parse_request_line(head: &[u8]) -> Result<Request, ReadError> {
    let text = std::str::from_utf8(head).map_err(|_| ReadError::Malformed)?;
    let line = text.lines().next().ok_or(ReadError::Malformed)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(ReadError::Malformed);
    };
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return Err(ReadError::Malformed);
    }
    let path = target.split('?').next().unwrap_or(target).to_string();
    Ok(Request { method: method.to_string(), path })
}

fn handle_connection(mut stream: TcpStream, probe: &dyn Probe) {
    let req = match read_head(&mut stream) {
        Ok(r) => r,
        Err(ReadError::TooLarge) => {
            let _ = respond(&mut stream, 431, "text/plain", "request header too large\n", false);
            return;
        }
        Err(ReadError::Malformed) => {
            let _ = respond(&mut stream, 400, "text/plain", "bad request\n", false);
            return;
        }
        Err(ReadError::Closed) => return,
    };
    let (status, ctype, body) = route(&req, probe);
    let _ = respond(&mut stream, status, ctype, &body, req.method == "HEAD");
}

/// Prometheus text exposition format version 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn route(req: &Request, probe: &dyn Probe) -> (u16, &'static str, String) {
    if req.method != "GET" && req.method != "HEAD" {
        return (405, "text/plain", "method not allowed\n".into());
    }
    let yes_no = |ok: bool| {
        if ok { (200, "text/plain", "ok".to_string()) } else { (503, "text/plain", "not ok".into()) }
    };
    match req.path.as_str() {
        "/healthz" | "/livez" => yes_no(probe.healthy()),
        "/readyz" => yes_no(probe.ready()),
        "/metrics" => (200, METRICS_CONTENT_TYPE, probe.metrics()),
        _ => (404, "text/plain", "not found\n".into()),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

fn respond(
    stream: &mut impl Write,
    status: u16,
    ctype: &str,
    body: &str,
    head_only: bool,
) -> std::io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    if !head_only {
        out.push_str(body);
    }
    stream.write_all(out.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

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
        assert_eq!(parse_bind_address(":8081").expect("ok"), Some("0.0.0.0:8081".into()));
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
        assert!(get(addr, b"POST /healthz HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405 "));
        assert!(get(addr, b"garbage\r\n\r\n").starts_with("HTTP/1.1 400 "));
        stop.store(true, Ordering::SeqCst);
        handle.join().expect("accept thread ends");
    }

    #[test]
    fn header_at_the_limit() {
        let mut big = b"GET /healthz HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEADER_BYTES + 10, b'a');
        assert_eq!(read_head(&mut &big[..]), Err(ReadError::TooLarge));
        let mut fits = b"GET /healthz HTTP/1.1\r\nX: ".to_vec();
        fits.resize(MAX_HEADER_BYTES - 4, b'a');
        fits.extend_from_slice(b"\r\n\r\n");
        assert_eq!(read_head(&mut &fits[..]).map(|r| r.path), Ok("/healthz".into()));
    }
}
