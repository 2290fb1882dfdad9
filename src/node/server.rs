//! The daemon's unix socket: bind (mode 0600), accept, one named thread per connection up to
//! [`MAX_CONNECTIONS`], frames in and out, and a graceful stop that lets in-flight requests
//! finish.
//!
//! Owns: connection lifetimes, per-connection deadlines, decoding failures as error frames.
//! Must not: interpret requests (see `service`).

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::protocol::frame::{self, FrameError};
use crate::protocol::{ErrorCode, RequestFrame, ResponseFrame};

use super::service::Service;

/// Connections served at once. Each costs a thread with a small stack; a 256-way burst of CNI
/// ADDs (the benchmark's largest) fits four times over. Past it, callers get `not_ready` (CNI
/// code 11) and the runtime retries.
pub const MAX_CONNECTIONS: usize = 1024;

/// How long a connection may sit between frames before it is closed: the plugin sends its
/// request right after connecting, so anything slower is a stuck or hostile peer.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a stop waits for in-flight requests (a commit takes milliseconds).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Stack of a connection thread: requests are small and handling is shallow.
const CONNECTION_STACK_BYTES: usize = 256 * 1024;

#[derive(Debug)]
pub enum ServerError {
    NotASocket { path: PathBuf },
    Bind { path: PathBuf, source: io::Error },
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::NotASocket { path } => write!(
                f,
                "bind address {} exists and is not a socket; remove it or choose another --bind-address",
                path.display()
            ),
            ServerError::Bind { path, source } => {
                write!(
                    f,
                    "cannot listen on {}: {source}; check --bind-address and its directory",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for ServerError {}

/// Binds the socket at `path`: a stale socket from a previous run is replaced, any other file
/// is refused; the socket is made root-only before anyone can be served.
pub fn bind(path: &Path) -> Result<UnixListener, ServerError> {
    let err = |source| ServerError::Bind { path: path.to_path_buf(), source };
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => fs::remove_file(path).map_err(err)?,
        Ok(_) => return Err(ServerError::NotASocket { path: path.to_path_buf() }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(err)?;
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
}

/// Counts live connections so that a stop can wait for them.
#[derive(Default)]
struct Inflight {
    count: Mutex<usize>,
    idle: Condvar,
}

impl Inflight {
    fn try_enter(&self) -> bool {
        let mut n = self.count.lock().unwrap_or_else(|p| p.into_inner());
        if *n >= MAX_CONNECTIONS {
            return false;
        }
        *n += 1;
        true
    }

    fn leave(&self) {
        let mut n = self.count.lock().unwrap_or_else(|p| p.into_inner());
        *n -= 1;
        if *n == 0 {
            self.idle.notify_all();
        }
    }

    /// Waits until no connection is live, or `grace` passes; returns the count left.
    fn wait_idle(&self, grace: Duration) -> usize {
        let deadline = Instant::now() + grace;
        let mut n = self.count.lock().unwrap_or_else(|p| p.into_inner());
        while *n > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            n = self.idle.wait_timeout(n, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        *n
    }
}

/// A handle that stops a running [`serve`] loop from another thread (the signal handler).
#[derive(Clone)]
pub struct StopHandle {
    stopping: Arc<AtomicBool>,
    path: PathBuf,
}

impl StopHandle {
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept(); the loop sees the flag and returns.
        let _ = UnixStream::connect(&self.path);
    }

    /// The flag itself, for loops that poll it (reflectors, the health server).
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.stopping.clone()
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

pub fn stop_handle(path: &Path) -> StopHandle {
    StopHandle { stopping: Arc::new(AtomicBool::new(false)), path: path.to_path_buf() }
}

/// Serves until `stop` is triggered, then waits up to [`SHUTDOWN_GRACE`] for in-flight
/// connections and removes the socket file.
pub fn serve(listener: UnixListener, path: &Path, service: Arc<Service>, stop: &StopHandle) {
    let inflight = Arc::new(Inflight::default());
    for conn in listener.incoming() {
        if stop.is_stopping() {
            break;
        }
        let mut stream = match conn {
            Ok(s) => s,
            Err(e) => {
                log::warn!("accept failed: {e}");
                continue;
            }
        };
        if !inflight.try_enter() {
            let busy =
                ResponseFrame::error(ErrorCode::NotReady, "ipam-node is at its connection limit; retry");
            let _ = stream.set_write_timeout(Some(IDLE_TIMEOUT));
            let _ = frame::write_frame(&mut stream, &busy);
            continue;
        }
        let service = service.clone();
        let guard = inflight.clone();
        let stop = stop.clone();
        let spawned = thread::Builder::new()
            .name("ipam-conn".into())
            .stack_size(CONNECTION_STACK_BYTES)
            .spawn(move || {
                handle_connection(stream, &service, &stop);
                guard.leave();
            });
        if let Err(e) = spawned {
            log::error!("cannot start a connection thread: {e}");
            inflight.leave();
        }
    }
    let left = inflight.wait_idle(SHUTDOWN_GRACE);
    if left > 0 {
        log::warn!("stopping with {left} connections still open after {SHUTDOWN_GRACE:?}");
    }
    let _ = fs::remove_file(path);
}

/// Decodes a request frame body; a frame of another protocol version gets its own answer.
/// The decoding (typed, no value tree, depth-limited) is `protocol::decode_request`'s.
fn decode_request(body: &[u8]) -> Result<RequestFrame, ResponseFrame> {
    crate::protocol::decode_request(body).map_err(|e| ResponseFrame::error(e.code, e.message))
}

fn handle_connection(mut stream: UnixStream, service: &Service, stop: &StopHandle) {
    if stream.set_read_timeout(Some(IDLE_TIMEOUT)).is_err()
        || stream.set_write_timeout(Some(IDLE_TIMEOUT)).is_err()
    {
        return;
    }
    loop {
        let body = match frame::read_frame_bytes(&mut stream) {
            Ok(b) => b,
            Err(FrameError::Closed) => return,
            Err(FrameError::Io(e)) => {
                log::debug!("connection closed: {e}");
                return;
            }
            Err(e) => {
                // Too large, truncated: answer once (the peer may still read) and close.
                let _ = frame::write_frame(
                    &mut stream,
                    &ResponseFrame::error(ErrorCode::BadFrame, e.to_string()),
                );
                return;
            }
        };
        let reply = match decode_request(&body) {
            Err(reply) => {
                // A peer that sends garbage or another protocol gets one answer, then the door.
                let _ = frame::write_frame(&mut stream, &reply);
                return;
            }
            Ok(_) if stop.is_stopping() => {
                ResponseFrame::error(ErrorCode::NotReady, "ipam-node is stopping; retry")
            }
            Ok(req) => {
                let op = req.request.op_name();
                let started = Instant::now();
                let reply = match service.handle(req.request) {
                    Ok(r) => ResponseFrame::ok(r),
                    Err(e) => {
                        log::info!("{op} failed: {e}");
                        ResponseFrame::error(e.code, e.message)
                    }
                };
                log::debug!("{op} handled in {:?}", started.elapsed());
                reply
            }
        };
        if frame::write_frame(&mut stream, &reply).is_err() {
            return;
        }
    }
}
