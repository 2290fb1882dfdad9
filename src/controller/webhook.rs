//! The validating admission webhook's HTTPS server (`ipam-controller --webhook`): the shell
//! around [`admission`](super::admission).
//!
//! One accept thread; one named thread per connection, at most [`MAX_CONNECTIONS`] at a time
//! and [`MAX_CONNECTIONS_PER_PEER`] from one address ([`crate::slots`]: when they are all
//! taken, the oldest connection still in its handshake or request is closed to make room; a
//! newcomer is closed at once only when every slot holds a complete review, and the API server
//! applies its failure policy), and one review decoded at a time (memory, see
//! [`MAX_CONNECTIONS`]). TLS is rustls with the ring provider, as for the kube client. Each
//! connection carries one request (`POST <path>` with a `Content-Length` body of at most
//! [`MAX_BODY_BYTES`]); the TLS handshake, the request, the wait for the decoder and the answer
//! all end at one [`DEADLINE`], however the bytes trickle in, and the connection is closed after
//! the answer (`Connection: close`). Pool writes are rare, so a TLS handshake per review costs
//! nothing that matters.
//!
//! Certificates: `tls.crt` (chain) and `tls.key` of the certificate directory are read at
//! start and again when their modification time, size or inode changes (a Secret volume
//! update swaps the files), looked at most every [`CERT_CHECK_INTERVAL`] from the handshake and
//! the readiness probe. A pair that does not load keeps the previous one and logs an error.
//! While no certificate is loaded every handshake fails and `/readyz` says not ready.
//!
//! Owns: [`serve`], [`CertReloader`], [`Stats`], [`WebhookError`]. Must not: decide (that is
//! `admission`) or read the cluster (the caller passes the pools of its cache).

use std::fmt;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::admission::{self, PoolRange};
use crate::deadline::Deadline;
use crate::http;
use crate::slots::{Limits, Slot, Slots};

/// Largest AdmissionReview body: it carries `object` and, for UPDATE, `oldObject`, each at
/// most etcd's 1.5 MiB object limit (a 5,000-node status is ~0.5 MiB), plus the envelope.
pub const MAX_BODY_BYTES: usize = 4 << 20;
/// Connections served at once. Anyone who can reach the pod may connect (no client
/// certificate), so this bounds memory under the 256Mi limit of deploy/base: each connection
/// holds at most one body, and decoding one takes far more than its size (a 4 MiB body of
/// small JSON values measured 137 MiB peak RSS), which is why only one is decoded at a time
/// ([`DECIDING`]). 8 x 4 MiB + one decode + the caches fit; pool writes are rare and each review
/// takes milliseconds, so 8 is plenty for the API server.
pub const MAX_CONNECTIONS: usize = 8;
/// Connections at once from one address: half the slots, so that a peer sending complete
/// reviews as fast as it can (they wait for [`DECIDING`], serving, so they cannot be closed to
/// make room) leaves room for the API server.
pub const MAX_CONNECTIONS_PER_PEER: usize = MAX_CONNECTIONS / 2;
/// Held while a body is decoded and decided: one at a time, see [`MAX_CONNECTIONS`].
static DECIDING: OneAtATime = OneAtATime { busy: Mutex::new(false), freed: Condvar::new() };
/// A connection's whole life: TLS handshake, request, the wait for [`DECIDING`] and the answer,
/// however the bytes trickle in. The API server's default webhook `timeoutSeconds` is 10 s (as
/// in deploy/components/webhook/validating-webhook.yaml): past it the caller has given up.
pub const DEADLINE: Duration = Duration::from_secs(10);
/// How often the certificate files are looked at (stat, no read unless they changed).
pub const CERT_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// File names in the certificate directory (controller-runtime's and cert-manager's).
pub const CERT_FILE: &str = "tls.crt";
pub const KEY_FILE: &str = "tls.key";

/// The pools of a namespace for the overlap check, `None` when they are not known.
pub type Others = dyn Fn(&str) -> Option<Vec<PoolRange>> + Send + Sync;

/// Counters for `/metrics` (`nv_ipam_webhook_reviews_total`).
#[derive(Debug, Default)]
pub struct Stats {
    pub allowed: AtomicU64,
    /// Reviews answered `allowed: false`.
    pub refused: AtomicU64,
    /// Requests that were not a review (HTTP 4xx: wrong path or method, not a review, too large).
    pub errors: AtomicU64,
}

/// Why the webhook server could not start.
#[derive(Debug)]
pub enum WebhookError {
    Address(crate::health::HealthError),
    /// `--webhook` with `--webhook-bind-address 0`.
    NoAddress,
    Bind {
        addr: String,
        source: std::io::Error,
    },
    Tls(rustls::Error),
    Spawn(std::io::Error),
}

impl fmt::Display for WebhookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebhookError::Address(e) => write!(f, "--webhook-bind-address: {e}"),
            WebhookError::NoAddress => f.write_str(
                "--webhook-bind-address \"0\" cannot turn the webhook off: drop --webhook instead",
            ),
            WebhookError::Bind { addr, source } => {
                write!(
                    f,
                    "--webhook-bind-address: cannot listen on {addr}: {source}: pick a free port or another address"
                )
            }
            WebhookError::Tls(e) => write!(f, "TLS setup: {e}"),
            WebhookError::Spawn(e) => write!(f, "cannot start the webhook thread: {e}"),
        }
    }
}

impl std::error::Error for WebhookError {}

/// Why a certificate pair did not load.
#[derive(Debug)]
pub enum CertError {
    Read { path: PathBuf, source: std::io::Error },
    Pem { path: PathBuf, detail: String },
    NoCertificate { path: PathBuf },
    Mismatch { detail: String },
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertError::Read { path, source } => write!(f, "{}: {source}", path.display()),
            CertError::Pem { path, detail } => write!(f, "{}: not PEM: {detail}", path.display()),
            CertError::NoCertificate { path } => write!(f, "{}: no CERTIFICATE block", path.display()),
            CertError::Mismatch { detail } => {
                write!(f, "{CERT_FILE} and {KEY_FILE} do not belong together: {detail}")
            }
        }
    }
}

impl std::error::Error for CertError {}

/// (modification time, size, inode) of both files: what changes when they are replaced.
type Stamp = [Option<(SystemTime, u64, u64)>; 2];

/// The serving certificate from `tls.crt`/`tls.key`, re-read when they change.
pub struct CertReloader {
    dir: PathBuf,
    state: Mutex<CertState>,
}

#[derive(Default)]
struct CertState {
    checked: Option<Instant>,
    stamp: Option<Stamp>,
    current: Option<Arc<CertifiedKey>>,
}

impl fmt::Debug for CertReloader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertReloader").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl CertReloader {
    /// Reads the pair once now (an error is logged; the files may appear later).
    pub fn new(dir: &Path) -> Arc<CertReloader> {
        let r = Arc::new(CertReloader { dir: dir.to_path_buf(), state: Mutex::new(CertState::default()) });
        r.current();
        r
    }

    /// The loaded certificate, after looking whether the files changed (at most every
    /// [`CERT_CHECK_INTERVAL`]).
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if s.checked.is_some_and(|t| now.duration_since(t) < CERT_CHECK_INTERVAL) {
            return s.current.clone();
        }
        s.checked = Some(now);
        let stamp = [self.stat(CERT_FILE), self.stat(KEY_FILE)];
        if s.stamp == Some(stamp) {
            return s.current.clone();
        }
        // remembered also on failure: a broken pair is reported once, not every second
        s.stamp = Some(stamp);
        match load_pair(&self.dir.join(CERT_FILE), &self.dir.join(KEY_FILE)) {
            Ok(k) => {
                log::info!("webhook certificate loaded from {}", self.dir.display());
                s.current = Some(Arc::new(k));
            }
            Err(e) if s.current.is_some() => {
                log::error!("webhook certificate not reloaded, the previous one stays in use: {e}")
            }
            Err(e) => log::error!("no webhook certificate: {e}: write {CERT_FILE} and {KEY_FILE}"),
        }
        s.current.clone()
    }

    /// A certificate is loaded (readiness).
    pub fn loaded(&self) -> bool {
        self.current().is_some()
    }

    fn stat(&self, name: &str) -> Option<(SystemTime, u64, u64)> {
        let m = std::fs::metadata(self.dir.join(name)).ok()?;
        Some((m.modified().ok()?, m.len(), m.ino()))
    }
}

impl ResolvesServerCert for CertReloader {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

/// Reads a PEM chain and key and checks that they belong together.
pub fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, CertError> {
    let read =
        |p: &Path| std::fs::read(p).map_err(|source| CertError::Read { path: p.to_path_buf(), source });
    let (cert_pem, key_pem) = (read(cert)?, read(key)?);
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Pem { path: cert.to_path_buf(), detail: e.to_string() })?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate { path: cert.to_path_buf() });
    }
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| CertError::Pem { path: key.to_path_buf(), detail: e.to_string() })?;
    CertifiedKey::from_der(chain, key_der, &rustls::crypto::ring::default_provider())
        .map_err(|e| CertError::Mismatch { detail: e.to_string() })
}

/// Listens on `addr` (Go style, see [`crate::health::parse_bind_address`]; `0` is refused: the
/// webhook was asked for) and serves until `stop`. Returns the bound address and the accept
/// thread, which ends within [`http::ACCEPT_POLL`] of `stop`.
pub fn serve(
    addr: &str,
    certs: Arc<CertReloader>,
    others: Arc<Others>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) -> Result<(SocketAddr, JoinHandle<()>), WebhookError> {
    let bind = crate::health::parse_bind_address(addr)
        .map_err(WebhookError::Address)?
        .ok_or(WebhookError::NoAddress)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(WebhookError::Tls)?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    let tls = Arc::new(tls);
    let bind_err = |source| WebhookError::Bind { addr: bind.clone(), source };
    let listener = crate::health::bind_listener(&bind).map_err(bind_err)?;
    let local = listener.local_addr().map_err(bind_err)?;
    listener.set_nonblocking(true).map_err(bind_err)?;
    let handle = std::thread::Builder::new()
        .name(format!("webhook-{}", local.port()))
        .spawn(move || accept_loop(listener, tls, others, stats, stop))
        .map_err(WebhookError::Spawn)?;
    Ok((local, handle))
}

fn accept_loop(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    others: Arc<Others>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) {
    let slots = Slots::new("webhook", Limits { max: MAX_CONNECTIONS, per_peer: MAX_CONNECTIONS_PER_PEER });
    // refused: closed at once (no handshake to answer on); `slots` logs it
    let busy = |_, _| {};
    http::accept_loop(listener, &stop, &slots, "webhook", busy, move |stream, slot| {
        handle_connection(stream, &slot, Arc::clone(&tls), others.as_ref(), &stats);
    });
}

fn handle_connection(
    stream: TcpStream,
    slot: &Slot,
    tls: Arc<rustls::ServerConfig>,
    others: &Others,
    stats: &Stats,
) {
    if !slot.reading() {
        return;
    }
    let conn = match rustls::ServerConnection::new(tls) {
        Ok(c) => c,
        Err(e) => {
            log::warn!("webhook: TLS: {e}");
            return;
        }
    };
    let until = Instant::now() + DEADLINE;
    // the handshake happens inside the first read, so it counts against the deadline too
    let mut s = rustls::StreamOwned::new(conn, Deadline::new(stream, until));
    let req = http::read_request(&mut s, MAX_BODY_BYTES);
    if !slot.serving() {
        return; // closed to make room while still in its handshake or request
    }
    let (status, ctype, body) = match req {
        Ok(req) => {
            // waiting for the decoder is serving (not evictable), and ends at the deadline
            let Some(_turn) = DECIDING.enter(until) else {
                log::warn!("webhook: {:?}: no turn to decide before the deadline ({DEADLINE:?})", req.path);
                return;
            };
            route(&req, others, stats)
        }
        Err(e) => match e.response() {
            Some((status, text)) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                (status, "text/plain", text.into_bytes())
            }
            None => {
                log::debug!("webhook: connection closed before a request (TLS handshake or deadline)");
                return;
            }
        },
    };
    if http::respond(&mut s, status, ctype, &body, false).is_ok() {
        s.conn.send_close_notify();
        let _ = s.flush();
    }
}

/// A turn of one at a time that a caller waits for only until its deadline (a `Mutex` cannot).
struct OneAtATime {
    busy: Mutex<bool>,
    freed: Condvar,
}

/// Holding the turn; dropping it passes the turn on.
struct Turn<'a>(&'a OneAtATime);

impl OneAtATime {
    /// The turn, or `None` when `until` passes first.
    fn enter(&self, until: Instant) -> Option<Turn<'_>> {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        while *busy {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            busy = self.freed.wait_timeout(busy, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        *busy = true;
        Some(Turn(self))
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        *self.0.busy.lock().unwrap_or_else(|p| p.into_inner()) = false;
        self.0.freed.notify_one();
    }
}

/// The answer to one request: (status, content type, body).
fn route(req: &http::Request, others: &Others, stats: &Stats) -> (u16, &'static str, Vec<u8>) {
    let answer = answer(req, others);
    let counter = match &answer {
        (200, _, _, Some(true)) => &stats.allowed,
        (200, _, _, _) => &stats.refused,
        _ => &stats.errors,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    (answer.0, answer.1, answer.2)
}

/// [`route`]'s answer plus, for a review, whether it was allowed.
fn answer(req: &http::Request, others: &Others) -> (u16, &'static str, Vec<u8>, Option<bool>) {
    let Some(kind) = admission::path_kind(&req.path) else {
        return (
            404,
            "text/plain",
            b"not found: use /validate-nv-ipam-nvidia-com-v1alpha1-{ippool,cidrpool}\n".to_vec(),
            None,
        );
    };
    if req.method != "POST" {
        return (405, "text/plain", b"method not allowed: POST an AdmissionReview\n".to_vec(), None);
    }
    let review = match admission::parse_review(kind, &req.body) {
        Ok(r) => r,
        Err(e) => {
            log::warn!("webhook {}: {e}", req.path);
            return (400, "text/plain", format!("{e}\n").into_bytes(), None);
        }
    };
    let known = others(&review.namespace);
    let verdict = admission::decide(&review, known.as_deref());
    let name = match &review.object {
        Ok(p) => p.name().to_string(),
        Err(_) => String::new(),
    };
    if verdict.allowed {
        log::debug!("webhook: {} {kind} {}/{name} allowed", review.operation, review.namespace);
    } else {
        log::info!(
            "webhook: {} {kind} {}/{name} refused: {}",
            review.operation,
            review.namespace,
            verdict.message
        );
    }
    (200, "application/json", admission::response_body(&review.uid, &verdict), Some(verdict.allowed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, path: &str, body: &[u8]) -> http::Request {
        http::Request { method: method.into(), path: path.into(), headers: Vec::new(), body: body.to_vec() }
    }

    #[test]
    fn routes_and_counts() {
        let none: &Others = &|_| None;
        let stats = Stats::default();
        assert_eq!(route(&req("POST", "/validate", b"{}"), none, &stats).0, 404);
        assert_eq!(route(&req("GET", admission::PATH_IPPOOL, b""), none, &stats).0, 405);
        let (status, _, body) = route(&req("POST", admission::PATH_CIDRPOOL, b"[]"), none, &stats);
        assert_eq!(status, 400);
        assert!(String::from_utf8_lossy(&body).contains("not an admission.k8s.io/v1 AdmissionReview"));
        let review = |spec: &str| {
            format!(
                r#"{{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {{"uid": "u",
                "operation": "CREATE", "namespace": "ns", "object": {{"metadata": {{"name": "p"}}, "spec": {spec}}}}}}}"#
            )
        };
        let ok = review(r#"{"subnet": "10.0.0.0/24", "perNodeBlockSize": 4}"#);
        let (status, ctype, body) = route(&req("POST", admission::PATH_IPPOOL, ok.as_bytes()), none, &stats);
        assert_eq!((status, ctype), (200, "application/json"));
        assert!(String::from_utf8_lossy(&body).contains(r#""allowed":true"#));
        let bad = review(r#"{"subnet": "10.0.0.0/24"}"#);
        let (status, _, body) = route(&req("POST", admission::PATH_IPPOOL, bad.as_bytes()), none, &stats);
        assert_eq!(status, 200);
        assert!(String::from_utf8_lossy(&body).contains("spec.perNodeBlockSize: must be at least 1"));
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        assert_eq!((n(&stats.allowed), n(&stats.refused), n(&stats.errors)), (1, 1, 3));
    }

    #[test]
    fn a_turn_is_waited_for_only_until_the_deadline() {
        let one = OneAtATime { busy: Mutex::new(false), freed: Condvar::new() };
        let turn = one.enter(Instant::now()).expect("a free turn is taken even at the deadline");
        let start = Instant::now();
        assert!(one.enter(start + Duration::from_millis(50)).is_none(), "busy until the deadline");
        assert!(start.elapsed() >= Duration::from_millis(50));
        std::thread::scope(|s| {
            let waiter = s.spawn(|| one.enter(Instant::now() + Duration::from_secs(10)).is_some());
            drop(turn);
            assert!(waiter.join().expect("join"), "the turn passes on when dropped");
        });
    }

    #[test]
    fn the_webhook_cannot_be_turned_off_by_address() {
        let r = CertReloader::new(Path::new("/nonexistent"));
        let none: Arc<Others> = Arc::new(|_| None);
        let stats = Arc::new(Stats::default());
        let e = serve("0", r, none, stats, Arc::new(AtomicBool::new(true))).err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("--webhook-bind-address \"0\" cannot turn the webhook off: drop --webhook instead")
        );
    }

    #[test]
    fn missing_certificates_are_reported_not_fatal() {
        let dir = std::env::temp_dir().join(format!("nv-ipam-webhook-none-{}", std::process::id()));
        let r = CertReloader::new(&dir);
        assert!(!r.loaded());
        let e = load_pair(&dir.join(CERT_FILE), &dir.join(KEY_FILE)).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("tls.crt")));
    }
}
