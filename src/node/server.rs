//! The daemon's unix socket: bind (mode 0600, never over a socket a live daemon serves),
//! accept on a thread of its own, one named thread per connection admitted by a slot table
//! ([`crate::slots`]: [`MAX_CONNECTIONS`]; when full, the oldest connection still waiting for
//! its frame is closed to make room), frames in and out within deadlines, and a graceful stop
//! that lets in-flight requests finish and removes the socket file only if it is still ours.
//!
//! Deadlines: a request frame must arrive whole within [`FRAME_DEADLINE`] of the daemon
//! starting to wait for it, its answer be written within [`REPLY_DEADLINE`], and a connection
//! lives at most [`MAX_CONNECTION_LIFETIME`] (several exchanges on one connection are allowed).
//!
//! Stopping does not depend on the socket file: [`serve`] waits on the [`StopHandle`], not on
//! `accept()`, and returns while the accept thread may still be blocked (the process exit ends
//! it), so a removed or replaced socket file cannot keep the daemon from stopping.
//!
//! Owns: connection lifetimes, per-request deadlines, decoding failures as error frames, the
//! socket file. Must not: interpret requests (see `service`).

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::deadline::Deadline;
use crate::protocol::frame::{self, FrameError};
use crate::protocol::{ErrorCode, RequestFrame, ResponseFrame};
use crate::slots::{Limits, Slot, Slots};

use super::service::Service;

/// Connections served at once. Each costs a thread with a small stack; a 256-way burst of CNI
/// ADDs (the benchmark's largest) fits four times over. When all are taken the oldest one
/// still waiting for its frame is closed to make room; only when all are handling a request
/// does a caller get `not_ready` (CNI code 11), and the runtime retries.
pub const MAX_CONNECTIONS: usize = 1024;

/// A whole request frame, from the moment the daemon waits for it (after accepting, or after
/// the previous answer): the plugin writes its frame right after connecting (a 4 MiB GC frame
/// takes milliseconds on a unix socket) and itself gives up after `daemonCallTimeoutSeconds`,
/// 5 s by default; anything slower is a stuck or hostile peer.
pub const FRAME_DEADLINE: Duration = Duration::from_secs(5);

/// Writing an answer (at most a few KiB) to a peer that is already reading it: as generous as
/// [`FRAME_DEADLINE`].
pub const REPLY_DEADLINE: Duration = Duration::from_secs(5);

/// How long one connection may live, whatever it sends: the plugin's connections last
/// milliseconds; a tool sending several frames on one connection gets a minute.
pub const MAX_CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// The deadlines of a connection (the constants above; tests shorten them).
#[derive(Debug, Clone, Copy)]
struct Timing {
    frame: Duration,
    reply: Duration,
    lifetime: Duration,
}

const TIMING: Timing =
    Timing { frame: FRAME_DEADLINE, reply: REPLY_DEADLINE, lifetime: MAX_CONNECTION_LIFETIME };

/// How long a stop waits for in-flight requests (a commit takes milliseconds).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long a start waits for a connection to a socket already at the bind path. A live daemon
/// accepts at once; one whose backlog stays full this long is alive but stuck, and is not taken
/// over either.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Stack of a connection thread: requests are small and handling is shallow.
const CONNECTION_STACK_BYTES: usize = 256 * 1024;

/// After a failed `accept()` (e.g. out of file descriptors) the accept thread pauses this long,
/// so that a persistent failure does not spin a core.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(10);

#[derive(Debug)]
pub enum ServerError {
    NotASocket {
        path: PathBuf,
    },
    /// A live daemon answers on the path.
    InUse {
        path: PathBuf,
    },
    Bind {
        path: PathBuf,
        source: io::Error,
    },
    Spawn(io::Error),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::NotASocket { path } => write!(
                f,
                "bind address {} exists and is not a socket; remove it or choose another --bind-address",
                path.display()
            ),
            ServerError::InUse { path } => write!(
                f,
                "bind address {} is served by another ipam-node (it accepts connections); stop it first or \
                 choose another --bind-address",
                path.display()
            ),
            ServerError::Bind { path, source } => {
                write!(
                    f,
                    "cannot listen on {}: {source}; check --bind-address and its directory",
                    path.display()
                )
            }
            ServerError::Spawn(e) => write!(f, "cannot start the accept thread: {e}"),
        }
    }
}

impl std::error::Error for ServerError {}

/// What is at the bind path.
#[derive(Debug, PartialEq, Eq)]
enum AtPath {
    Nothing,
    /// A socket nobody listens on (a daemon killed with -9 leaves one).
    Stale,
    /// A socket that accepts connections, or whose backlog is full (a live daemon).
    Live,
}

/// Looks at the bind path without changing it: the file type, and for a socket whether
/// something accepts connections on it.
fn look(path: &Path) -> Result<AtPath, ServerError> {
    let err = |source| ServerError::Bind { path: path.to_path_buf(), source };
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {}
        Ok(_) => return Err(ServerError::NotASocket { path: path.to_path_buf() }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(AtPath::Nothing),
        Err(e) => return Err(err(e)),
    }
    // connect() blocks while the listener's backlog is full: on a thread of its own, waited
    // for at most PROBE_TIMEOUT (a thread left blocked ends with the process, which then exits)
    let (tx, rx) = std::sync::mpsc::channel();
    let target = path.to_path_buf();
    thread::Builder::new()
        .name("socket-probe".into())
        .spawn(move || {
            let _ = tx.send(UnixStream::connect(&target).map(drop));
        })
        .map_err(ServerError::Spawn)?;
    match rx.recv_timeout(PROBE_TIMEOUT) {
        Ok(Ok(())) | Err(_) => Ok(AtPath::Live),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(AtPath::Stale),
        Ok(Err(e)) if e.kind() == io::ErrorKind::NotFound => Ok(AtPath::Nothing),
        Ok(Err(e)) => Err(err(e)),
    }
}

/// Refuses a bind path that a live daemon serves or that is not a socket; changes nothing.
/// Called early at start, so that a second daemon stops before installing anything.
pub fn check_free(path: &Path) -> Result<(), ServerError> {
    match look(path)? {
        AtPath::Live => Err(ServerError::InUse { path: path.to_path_buf() }),
        AtPath::Nothing | AtPath::Stale => Ok(()),
    }
}

/// A bound, root-only socket and the identity of its file.
#[derive(Debug)]
pub struct Bound {
    listener: UnixListener,
    path: PathBuf,
    /// (device, inode) of the socket file we created: removed on stop only if still there.
    file: (u64, u64),
}

/// Binds the socket at `path`: a stale socket from a previous run is replaced; a socket a live
/// daemon serves, or any other file, is refused; the socket is made root-only before anyone
/// can be served.
pub fn bind(path: &Path) -> Result<Bound, ServerError> {
    let err = |source| ServerError::Bind { path: path.to_path_buf(), source };
    match look(path)? {
        AtPath::Live => return Err(ServerError::InUse { path: path.to_path_buf() }),
        AtPath::Stale => match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(err(e)),
            _ => log::info!("removed the stale socket {} (nothing listened on it)", path.display()),
        },
        AtPath::Nothing => {}
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(err)?;
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(err)?;
    let m = fs::symlink_metadata(path).map_err(err)?;
    Ok(Bound { listener, path: path.to_path_buf(), file: (m.dev(), m.ino()) })
}

/// Removes the socket file if it is still the one we bound: a stopping daemon never deletes a
/// newer daemon's socket or a file someone put there.
fn remove_if_ours(path: &Path, file: (u64, u64)) {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() && (m.dev(), m.ino()) == file => {
            if let Err(e) = fs::remove_file(path) {
                log::warn!("cannot remove the socket {}: {e}", path.display());
            }
        }
        Ok(_) => log::info!("{} is no longer our socket; left in place", path.display()),
        Err(_) => {}
    }
}

/// Stops a running [`serve`] from another thread (the signal handler).
#[derive(Clone, Default)]
pub struct StopHandle {
    stopping: Arc<AtomicBool>,
    wake: Arc<(Mutex<()>, Condvar)>,
}

impl StopHandle {
    pub fn stop(&self) {
        let (lock, cv) = &*self.wake;
        let _held = lock.lock().unwrap_or_else(|p| p.into_inner());
        self.stopping.store(true, Ordering::SeqCst);
        cv.notify_all();
    }

    /// The flag itself, for loops that poll it (reflectors, the health server).
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.stopping.clone()
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Blocks until [`StopHandle::stop`].
    pub fn wait(&self) {
        let (lock, cv) = &*self.wake;
        let mut held = lock.lock().unwrap_or_else(|p| p.into_inner());
        while !self.is_stopping() {
            held = cv.wait(held).unwrap_or_else(|p| p.into_inner());
        }
    }
}

pub fn stop_handle() -> StopHandle {
    StopHandle::default()
}

/// Serves on a thread of its own until `stop` is triggered, then closes the connections still
/// waiting for a frame, waits up to [`SHUTDOWN_GRACE`] for those handling a request, removes
/// the socket file if it is still ours and returns (the accept thread ends with the process).
pub fn serve(bound: Bound, service: Arc<Service>, stop: &StopHandle) -> Result<(), ServerError> {
    let Bound { listener, path, file } = bound;
    let slots = Slots::new("ipam-node socket", Limits { max: MAX_CONNECTIONS, per_peer: MAX_CONNECTIONS });
    let (slots2, stop2) = (slots.clone(), stop.clone());
    let spawned = thread::Builder::new()
        .name("ipam-accept".into())
        .spawn(move || accept_loop(listener, &slots2, service, &stop2));
    if let Err(e) = spawned {
        remove_if_ours(&path, file);
        return Err(ServerError::Spawn(e));
    }
    stop.wait();
    slots.close_readers();
    let left = slots.wait_empty(SHUTDOWN_GRACE);
    if left > 0 {
        log::warn!("stopping with {left} connections still open after {SHUTDOWN_GRACE:?}");
    }
    remove_if_ours(&path, file);
    Ok(())
}

/// Answers `not_ready` without blocking the accept thread (a fresh socket's buffer takes the
/// frame) and closes.
fn turn_away(stream: UnixStream, message: &str) {
    if stream.set_nonblocking(true).is_ok() {
        let _ = frame::write_frame(&mut &stream, &ResponseFrame::error(ErrorCode::NotReady, message));
    }
}

fn accept_loop(listener: UnixListener, slots: &Arc<Slots>, service: Arc<Service>, stop: &StopHandle) {
    let mut last_error_log: Option<Instant> = None;
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                if last_error_log.is_none_or(|t| t.elapsed() >= crate::slots::LOG_EVERY) {
                    log::warn!("accept failed: {e}");
                    last_error_log = Some(Instant::now());
                }
                thread::sleep(ACCEPT_ERROR_PAUSE);
                continue;
            }
        };
        if stop.is_stopping() {
            turn_away(stream, "ipam-node is stopping; retry");
            continue;
        }
        let Ok(shut) = stream.try_clone() else { continue };
        let Some(slot) = slots.enter(None, Box::new(shut)) else {
            turn_away(
                stream,
                "ipam-node is at its connection limit, every connection handling a request; retry",
            );
            continue;
        };
        let (service, stop) = (service.clone(), stop.clone());
        let spawned = thread::Builder::new()
            .name("ipam-conn".into())
            .stack_size(CONNECTION_STACK_BYTES)
            .spawn(move || handle_connection(stream, &slot, &service, &stop, TIMING));
        if let Err(e) = spawned {
            // the closure, with the stream and the slot, is dropped: the peer sees a close
            log::error!("cannot start a connection thread: {e}");
        }
    }
}

/// Decodes a request frame body; a frame of another protocol version gets its own answer.
/// The decoding (typed, no value tree, depth-limited) is `protocol::decode_request`'s.
fn decode_request(body: &[u8]) -> Result<RequestFrame, ResponseFrame> {
    crate::protocol::decode_request(body).map_err(|e| ResponseFrame::error(e.code, e.message))
}

fn handle_connection(stream: UnixStream, slot: &Slot, service: &Service, stop: &StopHandle, timing: Timing) {
    let end_of_life = Instant::now() + timing.lifetime;
    let mut stream = Deadline::new(stream, end_of_life);
    loop {
        if !slot.reading() {
            return; // closed to make room while it waited for this frame
        }
        stream.set((Instant::now() + timing.frame).min(end_of_life));
        let body = frame::read_frame_bytes(&mut stream);
        if !slot.serving() {
            return; // closed to make room while its frame was still arriving: not acted on
        }
        stream.set(Instant::now() + timing.reply);
        let body = match body {
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
        if frame::write_frame(&mut stream, &reply).is_err()
            || stop.is_stopping()
            || Instant::now() >= end_of_life
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
