//! Requests and responses of the `nv-ipam` ⇄ `ipam-node` protocol (spec: `protocol/README.md`).
//!
//! Owns: the message shapes and the stable error codes. Must not: do I/O (see `frame` and
//! `client`) or decide anything about allocation.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::api::PoolType;

/// Version of the message schema. A peer answers a request of another version with
/// [`ErrorCode::UnsupportedVersion`].
pub const PROTOCOL_VERSION: u32 = 1;

/// Most pool names in one request's `pools`. The plugin sends one, or two for dual stack;
/// 16 leaves room for tools. A name costs a heap allocation, so a 4 MiB list of one-letter names
/// would cost 14 times its size decoded: longer lists are refused while decoding (`bad_frame`).
pub const MAX_POOLS_PER_REQUEST: usize = 16;

/// One request frame: `{"version":1,"op":"allocate",...}`.
///
/// Bytes from a peer are decoded by [`super::decode_request`], which builds no value tree.
/// The `Deserialize` impl goes through a `serde_json::Value` and then the same decoder: it is
/// for trusted input (tests, tools), never for the socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestFrame {
    pub version: u32,
    #[serde(flatten)]
    pub request: Request,
}

impl<'de> Deserialize<'de> for RequestFrame {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RequestFrame, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let bytes = serde_json::to_vec(&v).map_err(serde::de::Error::custom)?;
        super::decode_request(&bytes).map_err(|e| serde::de::Error::custom(e.message))
    }
}

impl RequestFrame {
    pub fn new(request: Request) -> RequestFrame {
        RequestFrame { version: PROTOCOL_VERSION, request }
    }
}

/// The five operations. Serialized with `op` inside the object; decoded by
/// [`super::decode_request`] (an internally tagged enum would buffer the whole frame).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    Allocate(AllocateRequest),
    Check(CheckRequest),
    Release(ReleaseRequest),
    Gc(GcRequest),
    Status(StatusRequest),
}

impl Request {
    pub fn op_name(&self) -> &'static str {
        match self {
            Request::Allocate(_) => "allocate",
            Request::Check(_) => "check",
            Request::Release(_) => "release",
            Request::Gc(_) => "gc",
            Request::Status(_) => "status",
        }
    }
}

/// Pod identity from `CNI_ARGS` (`K8S_POD_*`); every field optional (non-Kubernetes runtimes).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// An attachment: what CNI keys an allocation by, together with the network name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
}

/// Allocate one address per pool for an attachment (CNI ADD). Idempotent: the same
/// attachment gets its existing addresses back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllocateRequest {
    /// The CNI network name (stdin `name`).
    pub network: String,
    pub container_id: String,
    pub ifname: String,
    /// One pool, or two for dual-stack (all-or-nothing).
    #[serde(deserialize_with = "crate::bounded::vec::<_, _, MAX_POOLS_PER_REQUEST>")]
    pub pools: Vec<String>,
    #[serde(default)]
    pub pool_type: PoolType,
    /// Static addresses, strongest source first resolved by the plugin; each pool takes the
    /// first one inside its subnet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requested_ips: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allocate_default_gateway: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocate_ip_with_index: Option<u32>,
    #[serde(default)]
    pub pod: PodRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
}

/// Confirm an attachment's reservations exist and match `ips` (CNI CHECK).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckRequest {
    pub network: String,
    pub container_id: String,
    pub ifname: String,
    #[serde(deserialize_with = "crate::bounded::vec::<_, _, MAX_POOLS_PER_REQUEST>")]
    pub pools: Vec<String>,
    #[serde(default)]
    pub pool_type: PoolType,
    /// The addresses the runtime believes the attachment has (from `prevResult`).
    #[serde(default)]
    pub ips: Vec<IpAddr>,
}

/// Release an attachment's reservations (CNI DEL). Succeeds when nothing is reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseRequest {
    pub network: String,
    pub container_id: String,
    pub ifname: String,
    #[serde(deserialize_with = "crate::bounded::vec::<_, _, MAX_POOLS_PER_REQUEST>")]
    pub pools: Vec<String>,
    #[serde(default)]
    pub pool_type: PoolType,
}

/// Release every reservation of `network` whose attachment is not listed (CNI GC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GcRequest {
    pub network: String,
    pub valid_attachments: Vec<Attachment>,
}

/// Can an ADD on these pools succeed now? (CNI STATUS). Empty `pools`: is the daemon ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusRequest {
    #[serde(default, deserialize_with = "crate::bounded::vec::<_, _, MAX_POOLS_PER_REQUEST>")]
    pub pools: Vec<String>,
    #[serde(default)]
    pub pool_type: PoolType,
}

/// One response frame: `{"version":1,"ok":{...}}` or `{"version":1,"error":{...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResponseFrame {
    pub version: u32,
    #[serde(flatten)]
    pub response: Response,
}

/// The response as it is decoded: `#[serde(flatten)]` would buffer the whole frame in serde's
/// private value tree first; this reads it in one pass, unknown fields skipped unread.
#[derive(Deserialize)]
struct WireResponse {
    version: u32,
    #[serde(default)]
    ok: Option<Reply>,
    #[serde(default)]
    error: Option<ErrorReply>,
}

impl<'de> Deserialize<'de> for ResponseFrame {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ResponseFrame, D::Error> {
        let w = WireResponse::deserialize(d)?;
        let response = match (w.ok, w.error) {
            (Some(ok), None) => Response::Ok(ok),
            (None, Some(e)) => Response::Error(e),
            _ => return Err(serde::de::Error::custom("a response has exactly one of \"ok\" and \"error\"")),
        };
        Ok(ResponseFrame { version: w.version, response })
    }
}

impl ResponseFrame {
    pub fn ok(reply: Reply) -> ResponseFrame {
        ResponseFrame { version: PROTOCOL_VERSION, response: Response::Ok(reply) }
    }

    pub fn error(code: ErrorCode, message: impl Into<String>) -> ResponseFrame {
        ResponseFrame {
            version: PROTOCOL_VERSION,
            response: Response::Error(ErrorReply { code, message: message.into() }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Response {
    Ok(Reply),
    Error(ErrorReply),
}

/// A successful answer. Which fields are set depends on the operation (see the spec).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reply {
    /// allocate: one entry per requested pool, in request order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allocations: Vec<Allocation>,
    /// release, gc: how many reservations were removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released: Option<u64>,
    /// status: one entry per requested pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<PoolStatus>,
}

/// An address handed to an attachment from one pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Allocation {
    pub pool: String,
    pub pool_type: PoolType,
    /// The address with the prefix length of the pool's subnet (or node prefix).
    pub ip: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Route destinations via `gateway`, sorted and de-duplicated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<IpNet>,
}

/// Usage of one pool on this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    pub pool: String,
    pub pool_type: PoolType,
    pub allocated: u64,
    /// Addresses still free; saturates for huge IPv6 ranges (a decimal string would be exact
    /// but nobody needs more than 2^64 - 1 here).
    pub free: u64,
}

/// A failed request: a stable machine-readable code and a human message that says what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub code: ErrorCode,
    pub message: String,
}

/// Stable error codes. Adding one is a compatible change; renaming or removing one is not.
/// Each maps to one CNI error code (see `protocol/README.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed or its parameters conflict.
    InvalidRequest,
    /// The request's `version` is not one this daemon speaks.
    UnsupportedVersion,
    /// The frame could not be decoded (too large, truncated, not JSON).
    BadFrame,
    /// No configuration for this pool on this node (unknown pool, or no block for this node).
    PoolNotFound,
    /// The pool's block on this node has no free address.
    PoolExhausted,
    /// A requested static address (or index) is held by another attachment.
    IpUnavailable,
    /// A requested static address or index lies outside every requested pool's range.
    IpOutOfRange,
    /// CHECK: the attachment holds no reservation in a requested pool.
    NotAllocated,
    /// CHECK: the reservation exists but differs from the addresses the runtime holds.
    Mismatch,
    /// The store could not persist the change (e.g. disk full); nothing was changed.
    StoreFailed,
    /// The daemon is starting or stopping and cannot serve this now; retry.
    NotReady,
    /// A bug or an unexpected condition in the daemon.
    Internal,
}

impl ErrorCode {
    /// The CNI error code the plugin reports for this daemon error.
    pub fn cni_code(self) -> u32 {
        match self {
            ErrorCode::NotReady => 11,
            ErrorCode::Internal | ErrorCode::BadFrame | ErrorCode::UnsupportedVersion => 100,
            ErrorCode::PoolNotFound => 101,
            ErrorCode::PoolExhausted => 102,
            ErrorCode::IpUnavailable => 103,
            ErrorCode::IpOutOfRange => 104,
            ErrorCode::NotAllocated => 105,
            ErrorCode::Mismatch => 106,
            ErrorCode::StoreFailed => 107,
            ErrorCode::InvalidRequest => 108,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::PoolNotFound => "pool_not_found",
            ErrorCode::PoolExhausted => "pool_exhausted",
            ErrorCode::IpUnavailable => "ip_unavailable",
            ErrorCode::IpOutOfRange => "ip_out_of_range",
            ErrorCode::NotAllocated => "not_allocated",
            ErrorCode::Mismatch => "mismatch",
            ErrorCode::StoreFailed => "store_failed",
            ErrorCode::NotReady => "not_ready",
            ErrorCode::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
