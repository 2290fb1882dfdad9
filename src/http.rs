//! The minimal HTTP/1.1 server side shared by the health/metrics server (`health`) and the
//! admission webhook (`controller::webhook`): read one request, write one response.
//!
//! A request is a request line, headers of at most [`MAX_HEADER_BYTES`] and, when the caller
//! allows one, a body of exactly `Content-Length` bytes up to the caller's limit. Chunked bodies
//! are refused (411): both clients we serve (kubelet probes, Prometheus, the API server's
//! webhook client) send `Content-Length`. Every response closes the connection
//! (`Connection: close`), so there is no keep-alive state.
//!
//! Owns: [`accept_loop`] (a thread per connection, admitted by the server's [`Slots`]),
//! [`read_request`], [`respond`], [`ReadError`]. Must not: route, or choose deadlines (the
//! servers wrap their streams in a [`crate::deadline::Deadline`]; a timed-out read is
//! [`ReadError::Closed`]).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::slots::{Slot, Slots};

/// How often the accept loop looks at the stop flag (the listener is non-blocking). A probe or
/// review that arrives meanwhile waits at most this long, against kubelet's 1 s probe timeout
/// and the API server's 10 s webhook timeout.
pub const ACCEPT_POLL: Duration = Duration::from_millis(50);

/// Accepts on the non-blocking `listener` until `stop` is set (within [`ACCEPT_POLL`]). Each
/// connection is made blocking, admitted by `slots` (which may close a slow one to make room,
/// see [`crate::slots`]) and served by `handle` on a thread of its own named `name`; one that
/// `slots` refuses goes to `busy` on the accept thread instead, which must not block (the
/// stream is non-blocking then).
pub fn accept_loop(
    listener: TcpListener,
    stop: &AtomicBool,
    slots: &Arc<Slots>,
    name: &str,
    mut busy: impl FnMut(TcpStream, SocketAddr),
    handle: impl Fn(TcpStream, Slot) + Send + Sync + 'static,
) {
    let handle = Arc::new(handle);
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, peer)) => {
                let Ok(shut) = stream.try_clone() else { continue };
                if stream.set_nonblocking(false).is_err() {
                    continue;
                }
                let Some(slot) = slots.enter(Some(peer.ip().to_canonical()), Box::new(shut)) else {
                    if stream.set_nonblocking(true).is_ok() {
                        busy(stream, peer);
                    }
                    continue;
                };
                let handle = Arc::clone(&handle);
                // a failed spawn drops the closure, the stream and the slot: the peer sees a close
                let _ = std::thread::Builder::new()
                    .name(format!("{name}-conn"))
                    .spawn(move || handle(stream, slot));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(ACCEPT_POLL),
            Err(e) => {
                log::debug!("{name}: accept: {e}");
                std::thread::sleep(ACCEPT_POLL);
            }
        }
    }
}

/// Largest request head (request line + headers) read; a probe, scrape or webhook call needs a
/// few hundred bytes, 8 KiB is the common server default (nginx `large_client_header_buffers`).
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// A parsed request.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The target without its query string.
    pub path: String,
    /// Every header line as (name, value), values trimmed, in order (bounded by
    /// [`MAX_HEADER_BYTES`]).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The values of every header named `name` (case-insensitive), in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Why a request could not be read; each maps to one response ([`ReadError::status`]).
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    TooLarge,
    BodyTooLarge {
        limit: usize,
    },
    /// A body without `Content-Length` (chunked).
    LengthRequired,
    Malformed,
    /// The peer closed the connection or a read timed out: nothing to answer.
    Closed,
}

impl ReadError {
    /// Status and body of the answer, `None` for [`ReadError::Closed`].
    pub fn response(&self) -> Option<(u16, String)> {
        match self {
            ReadError::TooLarge => Some((431, "request header too large\n".into())),
            ReadError::BodyTooLarge { limit } => {
                Some((413, format!("request body larger than {limit} bytes\n")))
            }
            ReadError::LengthRequired => Some((411, "send the body with Content-Length\n".into())),
            ReadError::Malformed => Some((400, "bad request\n".into())),
            ReadError::Closed => None,
        }
    }
}

/// Reads one request; a body is accepted up to `max_body` bytes (0: requests carry none).
pub fn read_request(stream: &mut impl Read, max_body: usize) -> Result<Request, ReadError> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let end = loop {
        if let Some(end) = find_head_end(&buf) {
            break end;
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
    };
    let (head_len, sep_len) = end;
    let (method, path, length, headers) = parse_head(&buf[..head_len])?;
    let length = length.unwrap_or(0);
    if length > max_body {
        return Err(ReadError::BodyTooLarge { limit: max_body });
    }
    // body bytes that arrived with the head
    let mut body = buf.split_off(head_len + sep_len);
    if body.len() > length {
        body.truncate(length);
    }
    let have = body.len();
    body.resize(length, 0);
    stream.read_exact(&mut body[have..]).map_err(|_| ReadError::Closed)?;
    Ok(Request { method, path, headers, body })
}

/// (end of head, length of the blank-line separator): the first blank line, CRLF or bare LF,
/// so that a blank line inside a body that arrived with the head is not taken for it.
fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n");
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n");
    match (crlf, lf) {
        (Some(c), Some(l)) if l < c => Some((l, 2)),
        (Some(c), _) => Some((c, 4)),
        (None, Some(l)) => Some((l, 2)),
        (None, None) => None,
    }
}

/// Method, path, `Content-Length` and the headers of a request head.
type Head = (String, String, Option<usize>, Vec<(String, String)>);

fn parse_head(head: &[u8]) -> Result<Head, ReadError> {
    let text = std::str::from_utf8(head).map_err(|_| ReadError::Malformed)?;
    let mut lines = text.lines();
    let line = lines.next().ok_or(ReadError::Malformed)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(ReadError::Malformed);
    };
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return Err(ReadError::Malformed);
    }
    let mut length = None;
    let mut headers = Vec::new();
    for h in lines {
        let Some((name, value)) = h.split_once(':') else { return Err(ReadError::Malformed) };
        let (name, value) = (name.trim(), value.trim());
        headers.push((name.to_string(), value.to_string()));
        if name.eq_ignore_ascii_case("content-length") {
            // digits only (RFC 9110): `+5` parses as a usize but other parsers may disagree
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ReadError::Malformed);
            }
            let n: usize = value.parse().map_err(|_| ReadError::Malformed)?;
            // two different lengths is request smuggling territory
            if length.is_some_and(|l| l != n) {
                return Err(ReadError::Malformed);
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ReadError::LengthRequired);
        }
    }
    let path = target.split('?').next().unwrap_or(target).to_string();
    Ok((method.to_string(), path, length, headers))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Writes a whole response and closes the exchange (`Connection: close`).
pub fn respond(
    stream: &mut impl Write,
    status: u16,
    ctype: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    respond_with(stream, status, ctype, &[], body, head_only)
}

/// [`respond`] with more header lines (`WWW-Authenticate` of a 401); names and values are the
/// server's own constants, never request input.
pub fn respond_with(
    stream: &mut impl Write,
    status: u16,
    ctype: &str,
    extra: &[(&str, &str)],
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\nContent-Type: {ctype}\r\n", reason(status));
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
    let mut out = head.into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    stream.write_all(&out)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_at_the_limit() {
        let mut big = b"GET /healthz HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEADER_BYTES + 10, b'a');
        assert_eq!(read_request(&mut &big[..], 0), Err(ReadError::TooLarge));
        let mut fits = b"GET /healthz HTTP/1.1\r\nX: ".to_vec();
        fits.resize(MAX_HEADER_BYTES - 4, b'a');
        fits.extend_from_slice(b"\r\n\r\n");
        assert_eq!(read_request(&mut &fits[..], 0).map(|r| r.path), Ok("/healthz".into()));
    }

    #[test]
    fn bodies_by_content_length() {
        let raw = b"POST /x?timeout=10s HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello, and more";
        let r = read_request(&mut &raw[..], 5).expect("request");
        assert_eq!((r.method.as_str(), r.path.as_str(), r.body.as_slice()), ("POST", "/x", &b"hello"[..]));
        assert_eq!(read_request(&mut &raw[..], 4), Err(ReadError::BodyTooLarge { limit: 4 }));
        let short = b"POST /x HTTP/1.1\r\nContent-Length: 9\r\n\r\nhello";
        assert_eq!(read_request(&mut &short[..], 100), Err(ReadError::Closed));
        let chunked = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        assert_eq!(read_request(&mut &chunked[..], 100), Err(ReadError::LengthRequired));
        let two = b"POST /x HTTP/1.1\r\nContent-Length: 1\r\ncontent-length: 2\r\n\r\nab";
        assert_eq!(read_request(&mut &two[..], 100), Err(ReadError::Malformed));
        let plus = b"POST /x HTTP/1.1\r\nContent-Length: +2\r\n\r\nab";
        assert_eq!(read_request(&mut &plus[..], 100), Err(ReadError::Malformed));
        // a bare-LF head whose body holds a CRLF blank line: the head ends at the first one
        let lf = b"POST /x HTTP/1.1\nContent-Length: 6\n\na\r\n\r\nb";
        assert_eq!(read_request(&mut &lf[..], 100).map(|r| r.body), Ok(b"a\r\n\r\nb".to_vec()));
        let none = b"GET /x HTTP/1.0\r\n\r\n";
        assert_eq!(read_request(&mut &none[..], 0).map(|r| r.body), Ok(Vec::new()));
    }

    #[test]
    fn headers_are_kept_in_order_and_found_by_any_case() {
        let raw = b"GET /x HTTP/1.1\r\nAuthorization:  Bearer abc \r\nX-Nv-Ipam-Token: t\r\nauthorization: Basic x\r\n\r\n";
        let r = read_request(&mut &raw[..], 0).expect("request");
        assert_eq!(r.header_values("AUTHORIZATION").collect::<Vec<_>>(), ["Bearer abc", "Basic x"]);
        assert_eq!(r.header_values("x-nv-ipam-token").collect::<Vec<_>>(), ["t"]);
        assert_eq!(r.header_values("host").count(), 0);
        let mut out = Vec::new();
        respond_with(&mut out, 401, "text/plain", &[("WWW-Authenticate", "Bearer")], b"no", false)
            .expect("write");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain\r\nWWW-Authenticate: Bearer\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno"
        );
    }
}
