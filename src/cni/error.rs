//! Every way a plugin call can fail, with its CNI error code, and the error JSON.
//!
//! ```text
//! {"cniVersion":"1.0.0","code":11,"msg":"ipam-node daemon unreachable","details":"ipam-node daemon is not reachable at ..."}
//! ```
//!
//! | code | when |
//! |------|------|
//! | 1    | unsupported `cniVersion` (missing means 0.1.0); CHECK below 0.4.0; GC, STATUS below 1.1.0 |
//! | 4    | missing/empty/invalid `CNI_*` variable, unknown `CNI_COMMAND`, malformed `CNI_ARGS` |
//! | 5    | stdin unreadable or larger than [`super::MAX_STDIN_BYTES`] |
//! | 6    | stdin not a JSON object, `cniVersion` not a version string |
//! | 7    | invalid network config: name, `ipam`, conf file, `args.cni`, `runtimeConfig.ips`, `prevResult`, GC list |
//! | 11   | daemon unreachable, timed out, or dropped the connection (also on DEL: the runtime retries) |
//! | 50   | STATUS: the daemon is unreachable, refuses, or a pool is exhausted |
//! | 100+ | the daemon refused the request: `ErrorCode::cni_code()` (100 also: protocol version mismatch, bad reply, a reply no result of the request's version can carry) |
//!
//! Owns: the mapping to codes, the short `msg` and the longer `details`. Must not: print.

use std::fmt;
use std::io;

use serde_json::{Value, json};

use super::args::ArgsError;
use super::config::{ConfigError, DecodeError};
use super::env::{Command, EnvError};
use super::result::ConvertError;
use super::version::{self, Version};
use crate::protocol::client::ClientError;
use crate::protocol::{ErrorCode, ErrorReply};

/// A failed plugin call.
#[derive(Debug)]
pub enum CniError {
    StdinUnreadable(io::Error),
    StdinTooLarge {
        max: usize,
    },
    Decode(DecodeError),
    UnsupportedVersion {
        requested: String,
    },
    CommandNeedsVersion {
        command: Command,
        since: Version,
        requested: Version,
    },
    Env(EnvError),
    Args(ArgsError),
    Config(ConfigError),
    /// No daemon answer: unreachable, timeout, broken exchange, or another protocol version.
    Daemon(ClientError),
    /// The daemon answered with an error.
    Refused {
        op: &'static str,
        reply: ErrorReply,
    },
    /// The daemon answered `ok` with something the operation cannot use.
    BadReply {
        op: &'static str,
        problem: &'static str,
    },
    /// The daemon's answer cannot be printed in the request's `cniVersion` (a 0.1.0/0.2.0
    /// result without an address).
    Convert(ConvertError),
    /// STATUS: an ADD could not succeed now.
    NotAvailable(Unavailable),
}

/// Why STATUS reports code 50.
#[derive(Debug)]
pub enum Unavailable {
    Daemon(ClientError),
    Refused(ErrorReply),
    Exhausted { pool: String },
    PoolMissing { pool: String },
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::Daemon(e) => write!(f, "{e}"),
            Unavailable::Refused(r) => write!(f, "ipam-node answered {}: {}", r.code, r.message),
            Unavailable::Exhausted { pool } => {
                write!(f, "pool {pool:?} has no free address on this node; free addresses or grow the pool")
            }
            Unavailable::PoolMissing { pool } => {
                write!(
                    f,
                    "ipam-node reported no status for pool {pool:?}; check the pool exists for this node"
                )
            }
        }
    }
}

impl CniError {
    /// The CNI error code (spec table; 100 and up are ours).
    pub fn code(&self) -> u32 {
        match self {
            CniError::UnsupportedVersion { .. } | CniError::CommandNeedsVersion { .. } => 1,
            CniError::Env(_) | CniError::Args(_) => 4,
            CniError::StdinUnreadable(_) | CniError::StdinTooLarge { .. } => 5,
            CniError::Decode(_) => 6,
            CniError::Config(_) => 7,
            CniError::Daemon(ClientError::VersionMismatch { .. }) => 100,
            CniError::Daemon(_) => 11,
            CniError::Refused { reply, .. } => reply.code.cni_code(),
            CniError::BadReply { .. } | CniError::Convert(_) => 100,
            CniError::NotAvailable(_) => 50,
        }
    }

    /// The short `msg`.
    pub fn msg(&self) -> String {
        match self {
            CniError::StdinUnreadable(_) => "cannot read stdin".into(),
            CniError::StdinTooLarge { .. } => "stdin too large".into(),
            CniError::Decode(_) => "cannot decode network config".into(),
            CniError::UnsupportedVersion { .. } => "incompatible CNI versions".into(),
            CniError::CommandNeedsVersion { command, .. } => {
                format!("config version does not allow {command}")
            }
            CniError::Env(EnvError::UnknownCommand { .. }) => "unknown CNI_COMMAND".into(),
            CniError::Env(EnvError::Missing { var } | EnvError::Invalid { var, .. }) => {
                format!("invalid or missing {var}")
            }
            CniError::Args(_) => "invalid CNI_ARGS".into(),
            CniError::Config(_) => "invalid network config".into(),
            CniError::Daemon(ClientError::Timeout { .. }) => "ipam-node daemon timed out".into(),
            CniError::Daemon(ClientError::VersionMismatch { .. }) => {
                "ipam-node protocol version mismatch".into()
            }
            CniError::Daemon(_) => "ipam-node daemon unreachable".into(),
            CniError::Refused { reply, .. } => short_reason(reply.code).into(),
            CniError::BadReply { .. } | CniError::Convert(_) => "unexpected reply from ipam-node".into(),
            CniError::NotAvailable(_) => "nv-ipam not available".into(),
        }
    }

    /// The longer `details`: which field or variable, and how to fix it.
    pub fn details(&self) -> String {
        match self {
            CniError::StdinUnreadable(e) => format!("reading the network config from stdin failed: {e}"),
            CniError::StdinTooLarge { max } => {
                format!("the network config on stdin is larger than {max} bytes; no CNI config is that big")
            }
            CniError::Decode(e) => e.to_string(),
            CniError::UnsupportedVersion { requested } => format!(
                "cniVersion {requested:?} is not supported; supported versions: {}",
                version::supported_list()
            ),
            CniError::CommandNeedsVersion { command, since, requested } => {
                format!("{command} needs cniVersion {since} or later; the config says {requested}")
            }
            CniError::Env(e) => e.to_string(),
            CniError::Args(e) => e.to_string(),
            CniError::Config(e) => e.to_string(),
            CniError::Daemon(e) => e.to_string(),
            CniError::Refused { op, reply } => {
                format!("{op} refused by ipam-node ({}): {}", reply.code, reply.message)
            }
            CniError::BadReply { op, problem } => {
                format!("{op}: {problem}; ipam-node and nv-ipam may be mismatched versions")
            }
            CniError::Convert(e) => e.to_string(),
            CniError::NotAvailable(u) => u.to_string(),
        }
    }

    /// The error JSON, in the request's `cniVersion` (as sent).
    pub fn to_json(&self, cni_version: &str) -> Value {
        json!({"cniVersion": cni_version, "code": self.code(), "msg": self.msg(), "details": self.details()})
    }
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.msg(), self.details())
    }
}

impl std::error::Error for CniError {}

impl From<EnvError> for CniError {
    fn from(e: EnvError) -> CniError {
        CniError::Env(e)
    }
}

impl From<ArgsError> for CniError {
    fn from(e: ArgsError) -> CniError {
        CniError::Args(e)
    }
}

impl From<ConfigError> for CniError {
    fn from(e: ConfigError) -> CniError {
        CniError::Config(e)
    }
}

impl From<DecodeError> for CniError {
    fn from(e: DecodeError) -> CniError {
        CniError::Decode(e)
    }
}

/// A few words per daemon error code, for `msg`; the daemon's own message goes to `details`.
fn short_reason(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::InvalidRequest => "ipam-node rejected the request",
        ErrorCode::UnsupportedVersion => "ipam-node protocol version mismatch",
        ErrorCode::BadFrame => "ipam-node could not decode the request",
        ErrorCode::PoolNotFound => "pool not found on this node",
        ErrorCode::PoolExhausted => "no free IP addresses in the pool",
        ErrorCode::IpUnavailable => "requested IP is already reserved",
        ErrorCode::IpOutOfRange => "requested IP is outside the pools",
        ErrorCode::NotAllocated => "no reservation for this attachment",
        ErrorCode::Mismatch => "reservation differs from prevResult",
        ErrorCode::StoreFailed => "ipam-node could not persist the change",
        ErrorCode::NotReady => "ipam-node is not ready",
        ErrorCode::Internal => "ipam-node internal error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Duration;

    #[test]
    fn error_json_shape() {
        let e = CniError::UnsupportedVersion { requested: "2.0.0".into() };
        assert_eq!(
            e.to_json("2.0.0"),
            json!({"cniVersion":"2.0.0","code":1,"msg":"incompatible CNI versions",
                   "details":"cniVersion \"2.0.0\" is not supported; supported versions: 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"})
        );
    }

    #[test]
    fn codes() {
        let path = PathBuf::from("/x.sock");
        let unreachable = || ClientError::Unreachable {
            path: path.clone(),
            source: io::Error::from(io::ErrorKind::NotFound),
        };
        assert_eq!(CniError::Daemon(unreachable()).code(), 11);
        assert_eq!(
            CniError::Daemon(ClientError::Timeout { path: path.clone(), after: Duration::from_secs(5) })
                .code(),
            11
        );
        assert_eq!(CniError::Daemon(ClientError::VersionMismatch { ours: 1, theirs: 2 }).code(), 100);
        assert_eq!(CniError::NotAvailable(Unavailable::Daemon(unreachable())).code(), 50);
        assert_eq!(CniError::Env(EnvError::Missing { var: "CNI_NETNS" }).code(), 4);
        assert_eq!(
            CniError::Env(EnvError::Missing { var: "CNI_NETNS" }).msg(),
            "invalid or missing CNI_NETNS"
        );
        assert_eq!(CniError::Config(ConfigError::MissingName).code(), 7);
        assert_eq!(CniError::StdinTooLarge { max: 1 }.code(), 5);
        let refused = CniError::Refused {
            op: "allocate",
            reply: ErrorReply {
                code: ErrorCode::PoolExhausted,
                message: "pool \"a\": no free address".into(),
            },
        };
        assert_eq!(refused.code(), ErrorCode::PoolExhausted.cni_code());
        assert_eq!(refused.msg(), "no free IP addresses in the pool");
        let convert = CniError::Convert(ConvertError::NoAddress { cni_version: "0.2.0".into() });
        assert_eq!((convert.code(), convert.msg().as_str()), (100, "unexpected reply from ipam-node"));
        assert_eq!(
            refused.details(),
            "allocate refused by ipam-node (pool_exhausted): pool \"a\": no free address"
        );
    }
}
