//! The network configuration on stdin, the `ipam` section, and its layering with
//! `<confDir>/nv-ipam.conf`.
//!
//! ```text
//! stdin (≤ MAX_STDIN_BYTES) ─ depth ≤ MAX_DEPTH? ─ valid JSON? ─ an object? ─ NetConf: the
//!       top-level members we read, as raw slices, all else skipped (no value tree: memory is
//!       the input and a few small structs) ─ each command reads the members it uses
//! value = stdin ipam.<field>        (a non-empty value wins)
//!       | <confDir>/nv-ipam.conf    (fills what stdin left empty; written by ipam-node)
//!       | default                   (DEFAULT_* in `ipam`)
//! paths: confDir, logFile and daemonSocket from stdin only where the node allows (`paths`)
//! pools = args.cni.poolNames | ipam.poolName | file poolName | network name (unless forcePoolName)
//! type  = args.cni.poolType  | ipam.poolType | file poolType | ippool
//! static IPs (ADD only) = runtimeConfig.ips | args.cni.ips | CNI_ARGS IP=   (first non-empty source)
//! ```
//!
//! Layout: [`json`] raw members and lists without a value tree, [`stdin`] decoding stdin and
//! the top-level fields, [`ipam`] the `ipam` section, `args.cni` pool selection, the conf file
//! and the layering, [`params`] what ADD, CHECK and GC read beyond that. This file: the errors.
//!
//! Owns: the typed reading of every field the plugin uses (errors name the field:
//! `ipam.poolType`, `args.cni.ips[1]`, or the conf file's path), the defaults, and the
//! per-command request parameters. Tolerates every key it does not use: the main plugin's
//! keys, `capabilities`, `runtimeConfig.*`, `args` without `cni` (the reference crashes on
//! that), `prevResult`, `cni.dev/*`. A key given twice counts once, the last (as when
//! stdin was read into a `Map`).
//! Must not: talk to the daemon, print, or touch the file system (`host` reads the conf file).

pub mod ipam;
pub mod json;
pub mod params;
pub mod stdin;

use std::fmt;
use std::path::PathBuf;

use serde_json::value::RawValue;

pub use ipam::{
    ArgsCni, CONF_FILE_NAME, DEFAULT_CALL_TIMEOUT, DEFAULT_CONF_DIR, DEFAULT_DAEMON_SOCKET, DEFAULT_LOG_FILE,
    DEFAULT_LOG_LEVEL, Defaults, IpamConf, MAX_CALL_TIMEOUT_SECONDS, MAX_CONF_FILE_BYTES, MAX_POOLS, RawIpam,
    args_cni, parse_conf_file, parse_socket, resolve, stdin_ipam,
};
pub use params::{AddParams, add_params, prev_result_ips, valid_attachments};
pub use stdin::{NetConf, SentVersion, cni_version, decode, echo_version, network_name, sent_version};

use super::paths::Problem;
use crate::bounded::clip_str;
use crate::prescan::TooDeep;

/// stdin cannot be decoded at all. CNI code 6.
#[derive(Debug)]
pub enum DecodeError {
    /// Valid JSON that is not UTF-8 (cannot happen: serde_json checks it; kept so that no
    /// path panics). `offset` is the first byte that is not.
    NotUtf8 {
        offset: usize,
    },
    TooDeep(TooDeep),
    BadJson(serde_json::Error),
    NotAnObject,
    VersionNotAString,
    BadVersionString {
        value: String,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::NotUtf8 { offset } => {
                write!(f, "stdin is not UTF-8 text (byte {offset}); send the network config as JSON")
            }
            DecodeError::TooDeep(e) => write!(f, "stdin is {e}"),
            DecodeError::BadJson(e) => write!(f, "stdin is not valid JSON: {e}"),
            DecodeError::NotAnObject => write!(f, "stdin must be a JSON object (the network configuration)"),
            DecodeError::VersionNotAString => write!(f, "cniVersion must be a string such as \"1.0.0\""),
            DecodeError::BadVersionString { value } => {
                write!(
                    f,
                    "cniVersion {value:?} is not a version; expected major.minor.patch such as \"1.0.0\""
                )
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// The network configuration is invalid. CNI code 7.
///
/// Values from the config are kept to [`crate::bounded::MAX_MESSAGE_BYTES`] (see [`echo`]):
/// an error about a 1 MiB value must not cost megabytes to print and log.
#[derive(Debug)]
pub enum ConfigError {
    MissingName,
    InvalidName { name: String },
    MissingIpam,
    WrongType { field: String, expected: &'static str },
    NoPool,
    TooManyPools { field: String, count: usize },
    EmptyPoolName { field: String },
    UnknownPoolType { field: String, value: String },
    SocketNotUnix { field: String, value: String },
    SocketNotAbsolute { field: String, value: String },
    BadTimeout { field: String, value: i64 },
    BadLogLevel { field: String, value: String },
    ConfFileRefused { path: PathBuf, problem: Problem },
    LogFileNotAbsolute { field: String, value: String },
    ConfFileInvalid { path: PathBuf, source: serde_json::Error },
    ConfFileTooDeep { path: PathBuf, source: TooDeep },
    ConfFileNotAnObject { path: PathBuf },
    BadStaticIp { field: String, value: String },
    IndexOutOfRange { value: i64 },
    DefaultGatewayWithStaticIps,
    DefaultGatewayWithIndex,
    MissingPrevResult,
    BadPrevResultAddress { field: String, value: String },
    MissingAttachments,
    BadAttachment { field: String, problem: &'static str },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::MissingName => write!(f, "network config has no name; set the top-level \"name\""),
            ConfigError::InvalidName { name } => {
                write!(f, "network name {name:?} is invalid: it must match ^[A-Za-z0-9][A-Za-z0-9_.-]*$")
            }
            ConfigError::MissingIpam => {
                write!(f, "network config has no \"ipam\" object; add one with \"type\":\"nv-ipam\"")
            }
            ConfigError::WrongType { field, expected } => write!(f, "{field} must be {expected}"),
            ConfigError::NoPool => write!(
                f,
                "no pool provided: forcePoolName is set, so set ipam.poolName or args.cni.poolNames"
            ),
            ConfigError::TooManyPools { field, count } => {
                write!(f, "{field} names {count} pools; at most {MAX_POOLS} are allowed (one per IP family)")
            }
            ConfigError::EmptyPoolName { field } => {
                write!(f, "{field} contains an empty pool name; remove it")
            }
            ConfigError::UnknownPoolType { field, value } => {
                write!(f, "{field} {value:?} is not a pool type; use \"ippool\" or \"cidrpool\"")
            }
            ConfigError::SocketNotUnix { field, value } => write!(
                f,
                "{field} {value:?} is not a unix socket; use unix:///path or an absolute path (tcp is refused: the root-only socket file is the access control)"
            ),
            ConfigError::SocketNotAbsolute { field, value } => {
                write!(f, "{field} {value:?} must be an absolute path")
            }
            ConfigError::BadTimeout { field, value } => write!(
                f,
                "{field} {value} is out of range; use 1 to {MAX_CALL_TIMEOUT_SECONDS} seconds, or 0 for the default"
            ),
            ConfigError::BadLogLevel { field, value } => write!(
                f,
                "{field} {value:?} is not a log level; use verbose, debug, info, warning, error or panic"
            ),
            ConfigError::ConfFileRefused { path, problem } => write!(
                f,
                "{} {problem}; nv-ipam.conf must be a readable regular file (not a symlink, FIFO or device) of at most {MAX_CONF_FILE_BYTES} bytes: fix or remove it",
                path.display()
            ),
            ConfigError::LogFileNotAbsolute { field, value } => {
                write!(f, "{field} {value:?} must be an absolute path")
            }
            ConfigError::ConfFileInvalid { path, source } => {
                write!(f, "{} is not valid JSON: {source}; fix or remove it", path.display())
            }
            ConfigError::ConfFileTooDeep { path, source } => {
                write!(f, "{} is {source}; fix or remove it", path.display())
            }
            ConfigError::ConfFileNotAnObject { path } => {
                write!(f, "{} must hold one JSON object; fix or remove it", path.display())
            }
            ConfigError::BadStaticIp { field, value } => {
                write!(f, "{field} {value:?} is not an IP address; use <ip> or <ip>/<len>")
            }
            ConfigError::IndexOutOfRange { value } => write!(
                f,
                "args.cni.allocateIPWithIndex {value} is out of range: it can't be negative and must fit in int32"
            ),
            ConfigError::DefaultGatewayWithStaticIps => write!(
                f,
                "args.cni.allocateDefaultGateway can't be combined with static IPs; drop one of them"
            ),
            ConfigError::DefaultGatewayWithIndex => write!(
                f,
                "args.cni.allocateDefaultGateway can't be combined with args.cni.allocateIPWithIndex; drop one of them"
            ),
            ConfigError::MissingPrevResult => {
                write!(f, "CHECK needs prevResult (the ADD result) in the network config")
            }
            ConfigError::BadPrevResultAddress { field, value } => {
                write!(f, "{field} {value:?} is not an address in CIDR notation")
            }
            ConfigError::MissingAttachments => write!(
                f,
                "GC needs cni.dev/valid-attachments (or cni.dev/attachments) in the network config; refusing to release everything"
            ),
            ConfigError::BadAttachment { field, problem } => write!(f, "{field} {problem}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A value from the config as an error quotes it: cut to
/// [`crate::bounded::MAX_MESSAGE_BYTES`] (`…` marks the cut).
pub(crate) fn echo(value: &str) -> String {
    clip_str(value)
}

/// The error for a member `field` (`ipam`, `prevResult`) that must be an object and is not.
fn not_an_object(field: &str) -> ConfigError {
    ConfigError::WrongType { field: field.to_string(), expected: "an object" }
}

/// `raw` as a string, `None` when absent; another type is an error naming `field`.
fn opt_str(raw: Option<&RawValue>, field: impl FnOnce() -> String) -> Result<Option<String>, ConfigError> {
    raw.map(|r| {
        json::string(r).ok_or_else(|| ConfigError::WrongType { field: field(), expected: "a string" })
    })
    .transpose()
}

/// `raw` as true or false, `None` when absent; another type is an error naming `field`.
fn opt_bool(raw: Option<&RawValue>, field: impl FnOnce() -> String) -> Result<Option<bool>, ConfigError> {
    raw.map(|r| {
        json::boolean(r).ok_or_else(|| ConfigError::WrongType { field: field(), expected: "true or false" })
    })
    .transpose()
}

/// `raw` as an integer, `None` when absent; anything else is an error naming `field`.
fn opt_int(raw: Option<&RawValue>, field: impl FnOnce() -> String) -> Result<Option<i64>, ConfigError> {
    raw.map(|r| {
        json::integer(r).ok_or_else(|| ConfigError::WrongType { field: field(), expected: "an integer" })
    })
    .transpose()
}
