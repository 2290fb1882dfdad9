//! The frame codec: a 4-byte big-endian length followed by that many bytes of one UTF-8 JSON
//! object.
//!
//! ```text
//! +----------------+-------------------------------+
//! | len: u32 (BE)  | len bytes: {"version":1,...}  |
//! +----------------+-------------------------------+
//! ```
//!
//! Owns: framing and the size limit. Must not: know about requests or responses beyond serde,
//! trust a peer's length before checking it against [`MAX_FRAME_BYTES`], or allocate more than
//! the bytes that actually arrived.

use std::fmt;
use std::io::{self, Read, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Largest frame body accepted or sent: 4 MiB. The biggest legitimate frame is a CNI GC request
/// listing every valid attachment on a node; at ~100 bytes an attachment this leaves room for
/// 40,000 of them (kubelet's default max-pods is 110).
pub const MAX_FRAME_BYTES: usize = 4 << 20;

/// Why a frame could not be read or written.
#[derive(Debug)]
pub enum FrameError {
    /// The peer closed the connection before sending a length header (a clean end).
    Closed,
    /// The length header exceeds [`MAX_FRAME_BYTES`]; nothing of the body was read.
    TooLarge {
        len: usize,
        max: usize,
    },
    /// The connection ended inside a header or body.
    Truncated {
        expected: usize,
        got: usize,
    },
    /// The body is not one valid UTF-8 JSON value of the expected shape.
    BadJson(serde_json::Error),
    Io(io::Error),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Closed => write!(f, "connection closed by peer"),
            FrameError::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the maximum of {max} bytes")
            }
            FrameError::Truncated { expected, got } => {
                write!(f, "truncated frame: expected {expected} bytes, got {got}")
            }
            FrameError::BadJson(e) => write!(f, "frame body is not a valid message: {e}"),
            FrameError::Io(e) => write!(f, "i/o error on the daemon socket: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> FrameError {
        FrameError::Io(e)
    }
}

/// Serializes `msg` into one complete frame (header and body).
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut buf = vec![0u8; 4];
    serde_json::to_writer(&mut buf, msg).map_err(FrameError::BadJson)?;
    let len = buf.len() - 4;
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge { len, max: MAX_FRAME_BYTES });
    }
    let header = u32::try_from(len).expect("len <= MAX_FRAME_BYTES fits in u32").to_be_bytes();
    buf[..4].copy_from_slice(&header);
    Ok(buf)
}

/// Writes `msg` as one frame and flushes.
pub fn write_frame<T: Serialize>(w: &mut impl Write, msg: &T) -> Result<(), FrameError> {
    let buf = encode(msg)?;
    w.write_all(&buf)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame's body bytes. The buffer grows only as bytes arrive, so a peer that claims
/// a large length and sends nothing costs nothing.
pub fn read_frame_bytes(r: &mut impl Read) -> Result<Vec<u8>, FrameError> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Truncated { expected: 4, got }),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge { len, max: MAX_FRAME_BYTES });
    }
    let mut body = Vec::with_capacity(len.min(64 * 1024));
    r.take(len as u64).read_to_end(&mut body)?;
    if body.len() < len {
        return Err(FrameError::Truncated { expected: len, got: body.len() });
    }
    Ok(body)
}

/// Decodes a frame body into a message.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    serde_json::from_slice(body).map_err(FrameError::BadJson)
}

/// Reads and decodes one frame.
pub fn read_frame<T: DeserializeOwned>(r: &mut impl Read) -> Result<T, FrameError> {
    let body = read_frame_bytes(r)?;
    decode(&body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn round_trip() {
        let msg = json!({"version": 1, "op": "status"});
        let buf = encode(&msg).expect("encode");
        assert_eq!(&buf[..4], &(buf.len() as u32 - 4).to_be_bytes());
        let back: Value = read_frame(&mut buf.as_slice()).expect("decode");
        assert_eq!(back, msg);
    }

    #[test]
    fn empty_stream_is_closed() {
        assert!(matches!(read_frame::<Value>(&mut &b""[..]), Err(FrameError::Closed)));
    }

    #[test]
    fn truncated_header_and_body() {
        assert!(matches!(
            read_frame::<Value>(&mut &[0u8, 0][..]),
            Err(FrameError::Truncated { expected: 4, got: 2 })
        ));
        let mut buf = framed(br#"{"a":1}"#);
        buf.truncate(buf.len() - 2);
        assert!(matches!(read_frame::<Value>(&mut buf.as_slice()), Err(FrameError::Truncated { .. })));
    }

    #[test]
    fn oversized_length_rejected_before_reading() {
        let header = ((MAX_FRAME_BYTES + 1) as u32).to_be_bytes();
        match read_frame::<Value>(&mut &header[..]) {
            Err(FrameError::TooLarge { len, max }) => {
                assert_eq!((len, max), (MAX_FRAME_BYTES + 1, MAX_FRAME_BYTES))
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        let header = u32::MAX.to_be_bytes();
        assert!(matches!(read_frame::<Value>(&mut &header[..]), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn frame_at_the_limit_is_accepted() {
        // A JSON string whose frame body is exactly MAX_FRAME_BYTES long.
        let s = "x".repeat(MAX_FRAME_BYTES - 2);
        let buf = encode(&s).expect("encode at limit");
        assert_eq!(buf.len() - 4, MAX_FRAME_BYTES);
        let back: String = read_frame(&mut buf.as_slice()).expect("decode at limit");
        assert_eq!(back.len(), s.len());
        let too_big = "x".repeat(MAX_FRAME_BYTES - 1);
        assert!(matches!(encode(&too_big), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn garbage_never_panics() {
        for body in [&b"not json"[..], &[0xff, 0xfe, 0x00][..], b"{\"a\":", b"", b"[1,2"] {
            let buf = framed(body);
            assert!(matches!(read_frame::<Value>(&mut buf.as_slice()), Err(FrameError::BadJson(_))));
        }
    }
}
