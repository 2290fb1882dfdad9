//! The plugin's side of the socket: connect, send one request frame, read one response frame,
//! all within a deadline.
//!
//! Owns: the connection lifetime and its timeouts. Must not: retry (the runtime retries on CNI
//! code 11) or interpret the reply beyond the protocol version.

use std::fmt;
use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::frame::{self, FrameError};
use super::message::{PROTOCOL_VERSION, Request, RequestFrame, Response, ResponseFrame};

/// Why a call did not produce a daemon response.
#[derive(Debug)]
pub enum ClientError {
    /// The socket is missing or refuses connections: the daemon is not running (yet).
    Unreachable { path: PathBuf, source: io::Error },
    /// The daemon did not answer within the timeout.
    Timeout { path: PathBuf, after: Duration },
    /// The exchange failed after connecting (daemon crashed mid-request, bad frame).
    Exchange { path: PathBuf, source: FrameError },
    /// The daemon speaks another protocol version.
    VersionMismatch { ours: u32, theirs: u32 },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Unreachable { path, source } => write!(
                f,
                "ipam-node daemon is not reachable at {}: {source}; check that the ipam-node pod runs on this node",
                path.display()
            ),
            ClientError::Timeout { path, after } => write!(
                f,
                "ipam-node daemon at {} did not answer within {}s; it may be overloaded or stuck",
                path.display(),
                after.as_secs_f64()
            ),
            ClientError::Exchange { path, source } => {
                write!(f, "exchange with ipam-node daemon at {} failed: {source}", path.display())
            }
            ClientError::VersionMismatch { ours, theirs } => write!(
                f,
                "ipam-node speaks protocol version {theirs}, this plugin speaks {ours}; install matching versions"
            ),
        }
    }
}

impl std::error::Error for ClientError {}

/// Sends `request` to the daemon at `socket` and waits at most `timeout` for the answer.
pub fn call(socket: &Path, request: Request, timeout: Duration) -> Result<Response, ClientError> {
    let mut stream = UnixStream::connect(socket)
        .map_err(|source| ClientError::Unreachable { path: socket.to_path_buf(), source })?;
    let io_err =
        |e: io::Error| ClientError::Exchange { path: socket.to_path_buf(), source: FrameError::Io(e) };
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
    let map = |source: FrameError| match &source {
        FrameError::Io(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
            ClientError::Timeout { path: socket.to_path_buf(), after: timeout }
        }
        _ => ClientError::Exchange { path: socket.to_path_buf(), source },
    };
    frame::write_frame(&mut stream, &RequestFrame::new(request)).map_err(map)?;
    let reply: ResponseFrame = frame::read_frame(&mut stream).map_err(map)?;
    if reply.version != PROTOCOL_VERSION {
        return Err(ClientError::VersionMismatch { ours: PROTOCOL_VERSION, theirs: reply.version });
    }
    Ok(reply.response)
}
