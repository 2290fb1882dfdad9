//! Request frames from a peer, decoded into typed requests without a value tree: memory stays
//! bounded by the bytes received (spec: `protocol/README.md` §7).
//!
//! ```text
//! body ─ UTF-8? ─ depth ≤ MAX_DEPTH? ─ an object? ─ head {version, op}, all else skipped
//!      ─ version 1? ─ the op's own struct from the same bytes, unknown fields skipped
//! ```
//!
//! Each pass skips what it does not need with serde's `IgnoredAny`, which serde_json parses
//! and drops without allocating (nesting is tracked on a one-byte-per-level stack). No
//! `#[serde(flatten)]` and no internally tagged enum on this path: both buffer the entire input
//! in serde's private content tree (a 4 MiB frame of `[{},{},…]` cost 90 MiB that way).
//!
//! Owns: [`decode_request`], [`DecodeError`]. Must not: do I/O, judge a request's values (the
//! service does), or echo unbounded input in a message.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::message::{
    AllocateRequest, CheckRequest, ErrorCode, GcRequest, PROTOCOL_VERSION, ReleaseRequest, Request,
    RequestFrame, StatusRequest,
};
use crate::bounded::clip;
use crate::prescan::{self, MAX_DEPTH};

/// Why a request frame was refused: the code and message of the error frame that answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub code: ErrorCode,
    pub message: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for DecodeError {}

fn bad_frame(message: String) -> DecodeError {
    DecodeError { code: ErrorCode::BadFrame, message: clip(message) }
}

/// Longest op name quoted back in an "unknown op" message.
const MAX_OP_ECHO: usize = 32;

/// Decodes one request frame body. Refusals, in order: not UTF-8, nested deeper than
/// [`MAX_DEPTH`], not a JSON object, no numeric `version` (`bad_frame`); a `version` other than
/// [`PROTOCOL_VERSION`] (`unsupported_version`, whatever the rest holds); no or an unknown `op`,
/// a missing or mistyped field of the op, a list over its limit (`bad_frame`). Unknown fields
/// are skipped unread; a repeated field is refused.
pub fn decode_request(body: &[u8]) -> Result<RequestFrame, DecodeError> {
    let text = std::str::from_utf8(body).map_err(|e| bad_frame(format!("request is not UTF-8: {e}")))?;
    prescan::check_json(body, MAX_DEPTH).map_err(|e| bad_frame(format!("request {e}")))?;
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(match serde_json::from_str::<IgnoredAny>(text) {
            Err(e) => bad_frame(format!("request is not valid JSON: {e}")),
            Ok(_) => bad_frame("request is not a JSON object".into()),
        });
    }
    let head: Head =
        serde_json::from_str(text).map_err(|e| bad_frame(format!("request is not valid JSON: {e}")))?;
    match head.version.0 {
        Some(v) if v == u64::from(PROTOCOL_VERSION) => {}
        Some(v) => {
            return Err(DecodeError {
                code: ErrorCode::UnsupportedVersion,
                message: format!(
                    "protocol version {v} is not supported, this ipam-node speaks {PROTOCOL_VERSION}; install matching nv-ipam and ipam-node"
                ),
            });
        }
        None => return Err(bad_frame("request has no numeric \"version\" field".into())),
    }
    let request = match head.op {
        None => return Err(bad_frame("malformed request: missing field `op`".into())),
        Some(Op::Allocate) => Request::Allocate(typed::<AllocateRequest>(text)?),
        Some(Op::Check) => Request::Check(typed::<CheckRequest>(text)?),
        Some(Op::Release) => Request::Release(typed::<ReleaseRequest>(text)?),
        Some(Op::Gc) => Request::Gc(typed::<GcRequest>(text)?),
        Some(Op::Status) => Request::Status(typed::<StatusRequest>(text)?),
        Some(Op::Unknown(name)) => {
            return Err(bad_frame(format!(
                "malformed request: unknown op {name:?}; expected one of allocate, check, release, gc, status"
            )));
        }
        Some(Op::NotAString) => {
            return Err(bad_frame("malformed request: \"op\" must be a string".into()));
        }
    };
    Ok(RequestFrame { version: PROTOCOL_VERSION, request })
}

/// The op's struct from the whole body; `version`, `op` and unknown fields are skipped.
fn typed<T: DeserializeOwned>(text: &str) -> Result<T, DecodeError> {
    serde_json::from_str(text).map_err(|e| bad_frame(format!("malformed request: {e}")))
}

/// What is read before the op is known. Both fields accept any JSON value, so that the
/// version is judged first whatever the other fields hold.
#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    version: Version,
    #[serde(default)]
    op: Option<Op>,
}

/// `version` when it is a non-negative integer, else `None`.
#[derive(Default)]
struct Version(Option<u64>);

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Version, D::Error> {
        d.deserialize_any(AnyValue(|v: Scalar<'_>| match v {
            Scalar::U64(n) => Version(Some(n)),
            _ => Version(None),
        }))
    }
}

enum Op {
    Allocate,
    Check,
    Release,
    Gc,
    Status,
    /// Its name, cut to [`MAX_OP_ECHO`] characters.
    Unknown(String),
    NotAString,
}

impl<'de> Deserialize<'de> for Op {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Op, D::Error> {
        d.deserialize_any(AnyValue(|v: Scalar<'_>| match v {
            Scalar::Str("allocate") => Op::Allocate,
            Scalar::Str("check") => Op::Check,
            Scalar::Str("release") => Op::Release,
            Scalar::Str("gc") => Op::Gc,
            Scalar::Str("status") => Op::Status,
            Scalar::Str(other) => Op::Unknown(other.chars().take(MAX_OP_ECHO).collect()),
            _ => Op::NotAString,
        }))
    }
}

/// What [`AnyValue`] saw: the scalars its callers care about, or something else.
enum Scalar<'a> {
    U64(u64),
    Str(&'a str),
    Other,
}

/// Accepts any JSON value and maps it through `F`; arrays and objects are skipped unread.
struct AnyValue<F>(F);

impl<'de, T, F: FnOnce(Scalar<'_>) -> T> Visitor<'de> for AnyValue<F> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<T, E> {
        Ok((self.0)(Scalar::U64(n)))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<T, E> {
        Ok((self.0)(u64::try_from(n).map_or(Scalar::Other, Scalar::U64)))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<T, E> {
        Ok((self.0)(Scalar::Other))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<T, E> {
        Ok((self.0)(Scalar::Other))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
        Ok((self.0)(Scalar::Str(s)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        Ok((self.0)(Scalar::Other))
    }
    fn visit_none<E: de::Error>(self) -> Result<T, E> {
        Ok((self.0)(Scalar::Other))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok((self.0)(Scalar::Other))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok((self.0)(Scalar::Other))
    }
}

#[cfg(test)]
mod tests;
