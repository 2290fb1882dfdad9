//! A socket whose reads and writes all end at one instant: a whole-request deadline, not a
//! per-read timeout. A peer that sends one byte just before each read would time out cannot
//! hold a connection past the deadline, however the bytes trickle in.
//!
//! Before every read or write [`Deadline`] sets the socket's timeout to the time left, so it
//! works under any reader that only sees `Read`/`Write` (the HTTP reader, the frame codec,
//! rustls' `StreamOwned`, whose TLS handshake then counts against the same deadline).
//!
//! Owns: [`Deadline`] and [`Timeouts`]. Must not: choose deadlines (each server names its own)
//! or retry.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// A socket whose read and write timeouts can be set (TCP and unix streams).
pub trait Timeouts {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()>;
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()>;
}

impl Timeouts for TcpStream {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, t)
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, t)
    }
}

impl Timeouts for UnixStream {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        UnixStream::set_read_timeout(self, t)
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        UnixStream::set_write_timeout(self, t)
    }
}

/// `stream` whose every read and write fails with `TimedOut` once `until` has passed.
#[derive(Debug)]
pub struct Deadline<S> {
    stream: S,
    until: Instant,
}

impl<S: Timeouts> Deadline<S> {
    pub fn new(stream: S, until: Instant) -> Deadline<S> {
        Deadline { stream, until }
    }

    /// Moves the deadline (e.g. from reading a request to writing its answer).
    pub fn set(&mut self, until: Instant) {
        self.until = until;
    }

    pub fn until(&self) -> Instant {
        self.until
    }

    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The time left, or `TimedOut` when none is.
    fn left(&self) -> io::Result<Duration> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() { Err(io::ErrorKind::TimedOut.into()) } else { Ok(left) }
    }
}

/// A timed-out socket read or write reports `WouldBlock` (EAGAIN); say what it is.
fn timed_out(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::WouldBlock { io::ErrorKind::TimedOut.into() } else { e }
}

impl<S: Timeouts + Read> Read for Deadline<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.left()?;
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf).map_err(timed_out)
    }
}

impl<S: Timeouts + Write> Write for Deadline<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.left()?;
        self.stream.set_write_timeout(Some(left))?;
        self.stream.write(buf).map_err(timed_out)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_trickling_peer_cannot_outlast_the_deadline() {
        let (mut a, b) = UnixStream::pair().expect("pair");
        let start = Instant::now();
        let mut d = Deadline::new(b, start + Duration::from_millis(300));
        // one byte every 50 ms: each read alone would succeed, the whole never completes
        let writer = std::thread::spawn(move || {
            for _ in 0..40 {
                if a.write_all(b"x").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let mut buf = [0u8; 1000];
        let err = d.read_exact(&mut buf).expect_err("the deadline ends the read");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(Instant::now() >= d.until());
        drop(d);
        writer.join().expect("writer");
    }

    #[test]
    fn a_silent_tcp_peer_times_out_and_later_calls_fail_at_once() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let _peer = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (stream, _) = l.accept().expect("accept");
        let mut d = Deadline::new(stream, Instant::now() + Duration::from_millis(100));
        let mut buf = [0u8; 8];
        assert_eq!(d.read(&mut buf).map_err(|e| e.kind()), Err(io::ErrorKind::TimedOut));
        assert_eq!(d.read(&mut buf).map_err(|e| e.kind()), Err(io::ErrorKind::TimedOut));
        assert_eq!(d.write(b"late").map_err(|e| e.kind()), Err(io::ErrorKind::TimedOut));
        // a new deadline for the answer
        d.set(Instant::now() + Duration::from_secs(5));
        assert_eq!(d.write(b"answer").ok(), Some(6));
    }

    #[test]
    fn writes_to_a_peer_that_does_not_read_end_at_the_deadline() {
        let (_a, b) = UnixStream::pair().expect("pair");
        let mut d = Deadline::new(b, Instant::now() + Duration::from_millis(200));
        let big = vec![0u8; 64 << 20];
        assert_eq!(d.write_all(&big).map_err(|e| e.kind()), Err(io::ErrorKind::TimedOut));
    }
}
