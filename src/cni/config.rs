//! The network configuration on stdin, the `ipam` section, and its layering with
//! `<confDir>/nv-ipam.conf`.
//!
//! ```text
//! value = stdin ipam.<field>        (a non-empty value wins)
//!       | <confDir>/nv-ipam.conf    (fills what stdin left empty; written by ipam-node)
//!       | default                   (DEFAULT_* below)
//! paths: confDir, logFile and daemonSocket from stdin only where the node allows (`paths`)
//! pools = args.cni.poolNames | ipam.poolName | file poolName | network name (unless forcePoolName)
//! type  = args.cni.poolType  | ipam.poolType | file poolType | ippool
//! static IPs (ADD only) = runtimeConfig.ips | args.cni.ips | CNI_ARGS IP=   (first non-empty source)
//! ```
//!
//! Owns: decoding stdin into a JSON object, the typed reading of every field the plugin
//! uses (errors name the field: `ipam.poolType`, `args.cni.ips[1]`, or the conf file's path),
//! the defaults, and the ADD-only request parameters. Tolerates every key it does not use:
//! the main plugin's keys, `capabilities`, `runtimeConfig.*`, `args` without `cni` (the
//! reference crashes on that, W17), `prevResult`, `cni.dev/*`.
//! Must not: talk to the daemon, print, or touch the file system (`host` reads the conf file).

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use log::LevelFilter;
use serde_json::{Map, Value};

use super::args::{self, CniArgs};
use super::env::is_valid_id;
use super::paths::{self, Problem, Refusal, Warning};
use super::version::{IMPLIED, Version};
use crate::api::PoolType;
use crate::logging;
use crate::protocol::Attachment;

/// The daemon's socket when neither stdin nor the conf file names one (the reference's).
pub const DEFAULT_DAEMON_SOCKET: &str = "/var/lib/cni/nv-ipam/daemon.sock";
/// Per daemon call (the reference's `daemonCallTimeoutSeconds` default).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound on `daemonCallTimeoutSeconds`: ten minutes is already longer than any runtime
/// waits for a CNI call (kubelet's CRI call deadline is 4 minutes), so a larger value is a typo.
pub const MAX_CALL_TIMEOUT_SECONDS: i64 = 600;
/// Where `nv-ipam.conf` lives when stdin has no `ipam.confDir` (the reference's).
pub const DEFAULT_CONF_DIR: &str = "/etc/cni/net.d/nv-ipam.d";
/// The layered conf file's name inside `confDir`.
pub const CONF_FILE_NAME: &str = "nv-ipam.conf";
/// The plugin's log when neither stdin nor the conf file names one (the reference's).
pub const DEFAULT_LOG_FILE: &str = "/var/log/nv-ipam-cni.log";
pub const DEFAULT_LOG_LEVEL: LevelFilter = LevelFilter::Info;
/// One pool, or two for dual stack (the reference's limit; the daemon allocates one address
/// per pool).
pub const MAX_POOLS: usize = 2;
/// The conf file is a few hundred bytes; anything above 1 MiB is not ours.
pub const MAX_CONF_FILE_BYTES: u64 = 1 << 20;

/// The node's side of the layering: where the conf file is looked for when stdin names no
/// (acceptable) `confDir`, and the log and socket when the conf file names none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    pub conf_dir: PathBuf,
    pub log_file: PathBuf,
    pub daemon_socket: PathBuf,
}

impl Defaults {
    /// The built-in ones: [`DEFAULT_CONF_DIR`], [`DEFAULT_LOG_FILE`], [`DEFAULT_DAEMON_SOCKET`].
    pub fn host() -> Defaults {
        Defaults {
            conf_dir: PathBuf::from(DEFAULT_CONF_DIR),
            log_file: PathBuf::from(DEFAULT_LOG_FILE),
            daemon_socket: PathBuf::from(DEFAULT_DAEMON_SOCKET),
        }
    }
}

/// stdin cannot be decoded at all. CNI code 6.
#[derive(Debug)]
pub enum DecodeError {
    BadJson(serde_json::Error),
    NotAnObject,
    VersionNotAString,
    BadVersionString { value: String },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
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

/// Decodes stdin into the top-level object.
pub fn decode(stdin: &[u8]) -> Result<Map<String, Value>, DecodeError> {
    match serde_json::from_slice::<Value>(stdin).map_err(DecodeError::BadJson)? {
        Value::Object(obj) => Ok(obj),
        _ => Err(DecodeError::NotAnObject),
    }
}

/// `cniVersion` as sent (for echoing) and parsed. Missing means 0.1.0 (spec).
pub fn cni_version(obj: &Map<String, Value>) -> Result<(String, Version), DecodeError> {
    match present(obj, "cniVersion") {
        None => Ok((IMPLIED.to_string(), IMPLIED)),
        Some(Value::String(s)) => match Version::parse(s) {
            Some(v) => Ok((s.clone(), v)),
            None => Err(DecodeError::BadVersionString { value: s.clone() }),
        },
        Some(_) => Err(DecodeError::VersionNotAString),
    }
}

/// The `cniVersion` string for echoing in an error, read leniently from raw stdin (any
/// string, even one we cannot parse). `None` when stdin has none.
pub fn echo_version(stdin: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(stdin).ok()?;
    v.get("cniVersion")?.as_str().filter(|s| !s.is_empty()).map(str::to_string)
}

/// The network name: the key of the allocation space.
pub fn network_name(obj: &Map<String, Value>) -> Result<String, ConfigError> {
    let name = opt_str(obj, "name", "name")?.ok_or(ConfigError::MissingName)?;
    if !is_valid_id(name) {
        return Err(ConfigError::InvalidName { name: name.to_string() });
    }
    Ok(name.to_string())
}

/// One source's `ipam` fields, before layering. Empty strings count as absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawIpam {
    pub pool_name: Option<String>,
    pub pool_type: Option<String>,
    pub force_pool_name: Option<bool>,
    pub daemon_socket: Option<String>,
    pub daemon_call_timeout_seconds: Option<i64>,
    pub conf_dir: Option<String>,
    pub log_file: Option<String>,
    pub log_level: Option<String>,
}

impl RawIpam {
    /// Reads the fields of one object; `field` turns a key into the name errors use.
    fn from_object(obj: &Map<String, Value>, field: &dyn Fn(&str) -> String) -> Result<RawIpam, ConfigError> {
        let s = |key: &str| -> Result<Option<String>, ConfigError> {
            Ok(opt_str(obj, key, &field(key))?.filter(|v| !v.is_empty()).map(str::to_string))
        };
        Ok(RawIpam {
            pool_name: s("poolName")?,
            pool_type: s("poolType")?,
            force_pool_name: opt_bool(obj, "forcePoolName", &field("forcePoolName"))?,
            daemon_socket: s("daemonSocket")?,
            daemon_call_timeout_seconds: opt_int(
                obj,
                "daemonCallTimeoutSeconds",
                &field("daemonCallTimeoutSeconds"),
            )?,
            conf_dir: s("confDir")?,
            log_file: s("logFile")?,
            log_level: s("logLevel")?,
        })
    }
}

/// The stdin `ipam` section.
pub fn stdin_ipam(obj: &Map<String, Value>) -> Result<RawIpam, ConfigError> {
    match present(obj, "ipam") {
        None => Err(ConfigError::MissingIpam),
        Some(Value::Object(ipam)) => RawIpam::from_object(ipam, &|k| format!("ipam.{k}")),
        Some(_) => Err(ConfigError::WrongType { field: "ipam".into(), expected: "an object" }),
    }
}

/// Parses the conf file's bytes (`host` reads them; the layering tests need no files).
pub fn parse_conf_file(path: &Path, bytes: &[u8]) -> Result<RawIpam, ConfigError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|source| ConfigError::ConfFileInvalid { path: path.to_path_buf(), source })?;
    let Value::Object(obj) = value else {
        return Err(ConfigError::ConfFileNotAnObject { path: path.to_path_buf() });
    };
    RawIpam::from_object(&obj, &|k| format!("{k} in {}", path.display()))
}

/// The `args.cni` keys every command uses (pool selection).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArgsCni {
    pub pool_names: Option<Vec<String>>,
    pub pool_type: Option<String>,
}

/// `args.cni`, when present. `args` or `args.cni` of another shape is ignored: it is reserved
/// metadata that other tools fill, not our config.
fn args_cni_object(obj: &Map<String, Value>) -> Option<&Map<String, Value>> {
    present(obj, "args")?.as_object()?.get("cni")?.as_object()
}

pub fn args_cni(obj: &Map<String, Value>) -> Result<ArgsCni, ConfigError> {
    let Some(cni) = args_cni_object(obj) else {
        return Ok(ArgsCni::default());
    };
    Ok(ArgsCni {
        pool_names: opt_str_list(cni, "poolNames", "args.cni.poolNames")?.filter(|l| !l.is_empty()),
        pool_type: opt_str(cni, "poolType", "args.cni.poolType")?
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    })
}

/// The resolved plugin settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamConf {
    pub pools: Vec<String>,
    pub pool_type: PoolType,
    pub daemon_socket: PathBuf,
    pub call_timeout: Duration,
    /// The log the call writes to: the node's, or the tenant's when [`paths`] allowed it.
    pub log_file: PathBuf,
    /// `log_file` is the tenant's: `host` opens it with the tenant-file checks.
    pub log_file_is_tenant: bool,
    pub log_level: LevelFilter,
    /// The node's log (conf file or default): where refusals are reported.
    pub node_log_file: PathBuf,
    /// The node's level (conf file or default), which refusals follow.
    pub node_log_level: LevelFilter,
    /// The stdin paths that were ignored, for the node's log.
    pub warnings: Vec<Warning>,
}

/// Layers stdin over the conf file over the defaults; `args.cni` overrides pool selection;
/// paths from stdin are chosen by [`paths`] (a refusal becomes a warning, not an error).
pub fn resolve(
    network: &str,
    stdin: &RawIpam,
    file: Option<&RawIpam>,
    args: &ArgsCni,
    conf_path: &Path,
    defaults: &Defaults,
) -> Result<IpamConf, ConfigError> {
    let empty = RawIpam::default();
    let file = file.unwrap_or(&empty);
    let in_file = |k: &str| format!("{k} in {}", conf_path.display());
    // The field name of whichever source supplied the value, for errors.
    let pick = |s: &Option<String>, f: &Option<String>, key: &str| -> Option<(String, String)> {
        match (s, f) {
            (Some(v), _) => Some((v.clone(), format!("ipam.{key}"))),
            (None, Some(v)) => Some((v.clone(), in_file(key))),
            (None, None) => None,
        }
    };

    let force = stdin.force_pool_name.or(file.force_pool_name).unwrap_or(false);
    let pools = if let Some(list) = &args.pool_names {
        check_pools(list.clone(), "args.cni.poolNames")?
    } else if let Some((value, field)) = pick(&stdin.pool_name, &file.pool_name, "poolName") {
        check_pools(value.split(',').map(|p| p.trim().to_string()).collect(), &field)?
    } else if force {
        return Err(ConfigError::NoPool);
    } else {
        vec![network.to_string()]
    };

    let pool_type = match args
        .pool_type
        .clone()
        .map(|v| (v, "args.cni.poolType".to_string()))
        .or_else(|| pick(&stdin.pool_type, &file.pool_type, "poolType"))
    {
        None => PoolType::default(),
        Some((value, field)) => {
            PoolType::parse(&value).ok_or(ConfigError::UnknownPoolType { field, value })?
        }
    };

    let mut warnings = Vec::new();
    // The node's socket is trusted as written; a tenant's must be a unix path (tcp:// stays an
    // error, as before) and then lie where the node allows.
    let node_socket = match &file.daemon_socket {
        None => defaults.daemon_socket.clone(),
        Some(value) => parse_socket(value, &in_file("daemonSocket"))?,
    };
    let socket = match &stdin.daemon_socket {
        None => paths::choose_socket(None, &node_socket),
        Some(value) => match socket_path(value, "ipam.daemonSocket")? {
            Ok(path) => paths::choose_socket(Some(path), &node_socket),
            Err(_) => paths::refuse("ipam.daemonSocket", value, Refusal::NotAbsolute, &node_socket),
        },
    };
    // The warning quotes the value as the config wrote it (with its unix://).
    warnings.extend(
        socket.warning.map(|w| Warning { value: stdin.daemon_socket.clone().unwrap_or_default(), ..w }),
    );
    let daemon_socket = socket.path;

    let call_timeout = match (stdin.daemon_call_timeout_seconds, file.daemon_call_timeout_seconds) {
        // 0 counts as unset, as in the reference (Go's zero value).
        (Some(v), _) if v != 0 => timeout(v, "ipam.daemonCallTimeoutSeconds".into())?,
        (_, Some(v)) if v != 0 => timeout(v, in_file("daemonCallTimeoutSeconds"))?,
        _ => DEFAULT_CALL_TIMEOUT,
    };

    let node_log_file = match &file.log_file {
        None => defaults.log_file.clone(),
        Some(v) if v.starts_with('/') => PathBuf::from(v),
        Some(v) => {
            return Err(ConfigError::LogFileNotAbsolute { field: in_file("logFile"), value: v.clone() });
        }
    };
    let log = paths::choose_log(stdin.log_file.as_deref(), &node_log_file);
    warnings.extend(log.warning);
    let node_log_level = match &file.log_level {
        None => DEFAULT_LOG_LEVEL,
        Some(value) => logging::parse_level(value)
            .ok_or_else(|| ConfigError::BadLogLevel { field: in_file("logLevel"), value: value.clone() })?,
    };
    let log_level = match &stdin.log_level {
        None => node_log_level,
        Some(value) => logging::parse_level(value).ok_or_else(|| ConfigError::BadLogLevel {
            field: "ipam.logLevel".into(),
            value: value.clone(),
        })?,
    };

    Ok(IpamConf {
        pools,
        pool_type,
        daemon_socket,
        call_timeout,
        log_file: log.path,
        log_file_is_tenant: log.tenant,
        log_level,
        node_log_file,
        node_log_level,
        warnings,
    })
}

fn check_pools(list: Vec<String>, field: &str) -> Result<Vec<String>, ConfigError> {
    if list.iter().any(|p| p.trim().is_empty()) {
        return Err(ConfigError::EmptyPoolName { field: field.to_string() });
    }
    if list.len() > MAX_POOLS {
        return Err(ConfigError::TooManyPools { field: field.to_string(), count: list.len() });
    }
    Ok(list)
}

fn timeout(v: i64, field: String) -> Result<Duration, ConfigError> {
    match u64::try_from(v) {
        Ok(secs) if v <= MAX_CALL_TIMEOUT_SECONDS => Ok(Duration::from_secs(secs)),
        _ => Err(ConfigError::BadTimeout { field, value: v }),
    }
}

/// `unix:///path` or `/path`. Anything else (`tcp://`, relative paths) is refused.
pub fn parse_socket(value: &str, field: &str) -> Result<PathBuf, ConfigError> {
    match socket_path(value, field)? {
        Ok(path) => Ok(PathBuf::from(path)),
        Err(_) => Err(ConfigError::SocketNotAbsolute { field: field.into(), value: value.into() }),
    }
}

/// The path of `unix:///path` or `/path`: `Ok(Ok(absolute))`, `Ok(Err(relative))` for
/// the caller to refuse as it sees fit; another scheme (`tcp://`) is an error.
fn socket_path<'a>(value: &'a str, field: &str) -> Result<Result<&'a str, &'a str>, ConfigError> {
    let path = match value.strip_prefix("unix://") {
        Some(p) => p,
        None if value.contains("://") => {
            return Err(ConfigError::SocketNotUnix { field: field.into(), value: value.into() });
        }
        None => value,
    };
    Ok(if path.starts_with('/') { Ok(path) } else { Err(path) })
}

/// What an ADD asks for beyond the attachment and pools.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddParams {
    pub requested_ips: Vec<IpAddr>,
    pub allocate_default_gateway: bool,
    pub allocate_ip_with_index: Option<u32>,
    pub device_id: Option<String>,
}

/// Reads the ADD-only fields. Kept out of the other commands so that a DEL never fails
/// over a request parameter it does not use.
pub fn add_params(obj: &Map<String, Value>, cni_args: &CniArgs) -> Result<AddParams, ConfigError> {
    let runtime = present(obj, "runtimeConfig").and_then(Value::as_object);
    let cni = args_cni_object(obj);

    let mut requested_ips = match runtime {
        Some(rc) => ip_list(rc, "ips", "runtimeConfig.ips")?,
        None => Vec::new(),
    };
    if requested_ips.is_empty()
        && let Some(cni) = cni
    {
        requested_ips = ip_list(cni, "ips", "args.cni.ips")?;
    }
    if requested_ips.is_empty() {
        requested_ips = cni_args.ips.clone();
    }

    let (allocate_default_gateway, index) = match cni {
        Some(cni) => (
            opt_bool(cni, "allocateDefaultGateway", "args.cni.allocateDefaultGateway")?.unwrap_or(false),
            opt_int(cni, "allocateIPWithIndex", "args.cni.allocateIPWithIndex")?,
        ),
        None => (false, None),
    };
    let allocate_ip_with_index = match index {
        None => None,
        Some(v) if (0..=i64::from(i32::MAX)).contains(&v) => {
            Some(u32::try_from(v).expect("0..=i32::MAX fits in u32"))
        }
        Some(value) => return Err(ConfigError::IndexOutOfRange { value }),
    };
    if allocate_default_gateway && !requested_ips.is_empty() {
        return Err(ConfigError::DefaultGatewayWithStaticIps);
    }
    if allocate_default_gateway && allocate_ip_with_index.is_some() {
        return Err(ConfigError::DefaultGatewayWithIndex);
    }

    // The reference reads the top-level deviceID (multus puts it there for SR-IOV); the
    // `deviceID` capability puts it under runtimeConfig.
    let device_id = match opt_str(obj, "deviceID", "deviceID")? {
        Some(d) if !d.is_empty() => Some(d.to_string()),
        _ => match runtime {
            Some(rc) => opt_str(rc, "deviceID", "runtimeConfig.deviceID")?
                .filter(|d| !d.is_empty())
                .map(str::to_string),
            None => None,
        },
    };
    Ok(AddParams { requested_ips, allocate_default_gateway, allocate_ip_with_index, device_id })
}

fn ip_list(obj: &Map<String, Value>, key: &str, field: &str) -> Result<Vec<IpAddr>, ConfigError> {
    let Some(list) = opt_str_list(obj, key, field)? else {
        return Ok(Vec::new());
    };
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            args::parse_ip(s.trim())
                .ok_or_else(|| ConfigError::BadStaticIp { field: format!("{field}[{i}]"), value: s.clone() })
        })
        .collect()
}

/// GC's list of attachments to keep: `cni.dev/valid-attachments`, or the legacy
/// `cni.dev/attachments` when only that is present.
pub fn valid_attachments(obj: &Map<String, Value>) -> Result<Vec<Attachment>, ConfigError> {
    let (key, value) = match present(obj, "cni.dev/valid-attachments") {
        Some(v) => ("cni.dev/valid-attachments", v),
        None => match present(obj, "cni.dev/attachments") {
            Some(v) => ("cni.dev/attachments", v),
            None => return Err(ConfigError::MissingAttachments),
        },
    };
    let Value::Array(list) = value else {
        return Err(ConfigError::WrongType {
            field: key.into(),
            expected: "a list of {containerID, ifname}",
        });
    };
    list.iter()
        .enumerate()
        .map(|(i, entry)| {
            let field = format!("{key}[{i}]");
            let Value::Object(e) = entry else {
                return Err(ConfigError::BadAttachment { field, problem: "must be an object" });
            };
            let get =
                |k: &str| e.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
            match (get("containerID"), get("ifname")) {
                (Some(container_id), Some(ifname)) => Ok(Attachment { container_id, ifname }),
                (None, _) => {
                    Err(ConfigError::BadAttachment { field, problem: "needs a non-empty containerID" })
                }
                (_, None) => Err(ConfigError::BadAttachment { field, problem: "needs a non-empty ifname" }),
            }
        })
        .collect()
}

/// A key's value, `None` when missing or `null` (JSON null means "not set" in every CNI config
/// we have seen).
pub(crate) fn present<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn opt_str<'a>(obj: &'a Map<String, Value>, key: &str, field: &str) -> Result<Option<&'a str>, ConfigError> {
    match present(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ConfigError::WrongType { field: field.into(), expected: "a string" }),
    }
}

fn opt_bool(obj: &Map<String, Value>, key: &str, field: &str) -> Result<Option<bool>, ConfigError> {
    match present(obj, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ConfigError::WrongType { field: field.into(), expected: "true or false" }),
    }
}

fn opt_int(obj: &Map<String, Value>, key: &str, field: &str) -> Result<Option<i64>, ConfigError> {
    match present(obj, key) {
        None => Ok(None),
        Some(v) => {
            v.as_i64().map(Some).ok_or(ConfigError::WrongType { field: field.into(), expected: "an integer" })
        }
    }
}

fn opt_str_list(
    obj: &Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Option<Vec<String>>, ConfigError> {
    match present(obj, key) {
        None => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .map(Some)
            .ok_or(ConfigError::WrongType { field: field.into(), expected: "a list of strings" }),
        Some(_) => Err(ConfigError::WrongType { field: field.into(), expected: "a list of strings" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(o) => o,
            other => panic!("not an object: {other}"),
        }
    }

    /// Resolves a stdin config with an optional conf file body, as the plugin does.
    fn resolve_with(stdin: Value, file: Option<Value>) -> Result<IpamConf, ConfigError> {
        let o = obj(stdin);
        let name = network_name(&o)?;
        let path = Path::new("/conf/nv-ipam.conf");
        let file = match file {
            Some(f) => Some(parse_conf_file(path, f.to_string().as_bytes())?),
            None => None,
        };
        resolve(&name, &stdin_ipam(&o)?, file.as_ref(), &args_cni(&o)?, path, &Defaults::host())
    }

    #[test]
    fn defaults_from_a_bare_config() {
        // reference example 54: {"name":"my-net","ipam":{}} -> pool my-net, ippool, info
        let c = resolve_with(json!({"name":"my-net","ipam":{}}), None).expect("valid");
        assert_eq!(
            c,
            IpamConf {
                pools: vec!["my-net".into()],
                pool_type: PoolType::IpPool,
                daemon_socket: PathBuf::from(DEFAULT_DAEMON_SOCKET),
                call_timeout: Duration::from_secs(5),
                log_file: PathBuf::from(DEFAULT_LOG_FILE),
                log_file_is_tenant: false,
                log_level: LevelFilter::Info,
                node_log_file: PathBuf::from(DEFAULT_LOG_FILE),
                node_log_level: LevelFilter::Info,
                warnings: vec![],
            }
        );
    }

    #[test]
    fn tenant_paths_follow_the_node_and_are_ignored_with_a_warning() {
        let node = json!({"daemonSocket":"unix:///run/nv/daemon.sock","logFile":"/srv/log/cni.log","logLevel":"error"});
        // Inside the node's directories: honoured.
        let c = resolve_with(
            json!({"name":"n","ipam":{"daemonSocket":"unix:///run/nv/b.sock","logFile":"/srv/log/nv-ipam-n.log",
                   "logLevel":"debug"}}),
            Some(node.clone()),
        )
        .expect("valid");
        assert_eq!(c.daemon_socket, PathBuf::from("/run/nv/b.sock"));
        assert_eq!((c.log_file, c.log_file_is_tenant), (PathBuf::from("/srv/log/nv-ipam-n.log"), true));
        assert_eq!((c.log_level, c.node_log_level), (LevelFilter::Debug, LevelFilter::Error));
        assert_eq!(c.node_log_file, PathBuf::from("/srv/log/cni.log"));
        assert!(c.warnings.is_empty());
        // Outside: the node's values, one warning each, the config's value quoted as written.
        let c = resolve_with(
            json!({"name":"n","ipam":{"daemonSocket":"unix:///run/docker.sock","logFile":"/root/.ssh/authorized_keys"}}),
            Some(node.clone()),
        )
        .expect("ignored, not an error");
        assert_eq!(c.daemon_socket, PathBuf::from("/run/nv/daemon.sock"));
        assert_eq!((c.log_file, c.log_file_is_tenant), (PathBuf::from("/srv/log/cni.log"), false));
        let fields: Vec<_> = c.warnings.iter().map(|w| (w.field, w.value.as_str())).collect();
        assert_eq!(
            fields,
            vec![
                ("ipam.daemonSocket", "unix:///run/docker.sock"),
                ("ipam.logFile", "/root/.ssh/authorized_keys")
            ]
        );
        // A relative socket is ignored too; a relative log file from the node is its error.
        let c =
            resolve_with(json!({"name":"n","ipam":{"daemonSocket":"unix://run/x.sock"}}), None).expect("ok");
        assert_eq!(c.daemon_socket, PathBuf::from(DEFAULT_DAEMON_SOCKET));
        assert_eq!(c.warnings[0].refusal, Refusal::NotAbsolute);
        let e =
            resolve_with(json!({"name":"n","ipam":{}}), Some(json!({"logFile":"cni.log"}))).expect_err("rel");
        assert_eq!(e.to_string(), "logFile in /conf/nv-ipam.conf \"cni.log\" must be an absolute path");
        // Without a conf file the defaults' directories apply.
        let c =
            resolve_with(json!({"name":"n","ipam":{"logFile":"/var/log/nv-ipam-n.log"}}), None).expect("ok");
        assert!(c.log_file_is_tenant && c.warnings.is_empty());
    }

    #[test]
    fn stdin_wins_file_fills() {
        let c = resolve_with(
            json!({"name":"n","ipam":{"logLevel":"error","poolName":""}}),
            Some(json!({"logLevel":"debug","daemonSocket":"unix:///run/x.sock","daemonCallTimeoutSeconds":9,
                        "poolType":"CIDRPool","logFile":"/tmp/f.log"})),
        )
        .expect("valid");
        assert_eq!(c.log_level, LevelFilter::Error, "stdin logLevel wins");
        assert_eq!(c.daemon_socket, PathBuf::from("/run/x.sock"));
        assert_eq!(c.call_timeout, Duration::from_secs(9));
        assert_eq!(c.pool_type, PoolType::CidrPool, "file poolType, case-insensitive");
        assert_eq!(c.log_file, PathBuf::from("/tmp/f.log"));
        assert_eq!(c.node_log_level, LevelFilter::Debug, "refusals follow the node's level");
        assert_eq!(c.pools, vec!["n".to_string()], "empty poolName falls back to the network name");
    }

    #[test]
    fn pool_selection() {
        let c = resolve_with(json!({"name":"n","ipam":{"poolName":"a, b"}}), None).expect("two");
        assert_eq!(c.pools, vec!["a".to_string(), "b".to_string()]);
        let c = resolve_with(
            json!({"name":"n","ipam":{"poolName":"x","poolType":"ippool"},
                   "args":{"cni":{"poolNames":["a","b"],"poolType":"cidrpool"}}}),
            None,
        )
        .expect("args win");
        assert_eq!((c.pools, c.pool_type), (vec!["a".to_string(), "b".to_string()], PoolType::CidrPool));

        let e =
            resolve_with(json!({"name":"n","ipam":{"poolName":"pool1,pool2,pool3"}}), None).expect_err("3");
        assert_eq!(e.to_string(), "ipam.poolName names 3 pools; at most 2 are allowed (one per IP family)");
        let e = resolve_with(json!({"name":"n","ipam":{"poolName":"a,,b"}}), None).expect_err("empty item");
        assert!(matches!(e, ConfigError::EmptyPoolName { .. }), "{e}");
        let e = resolve_with(json!({"name":"n","ipam":{},"args":{"cni":{"poolNames":["a",""]}}}), None)
            .expect_err("empty item");
        assert_eq!(e.to_string(), "args.cni.poolNames contains an empty pool name; remove it");
    }

    #[test]
    fn force_pool_name() {
        let e = resolve_with(json!({"name":"n","ipam":{"forcePoolName":true}}), None).expect_err("no pool");
        assert!(matches!(e, ConfigError::NoPool));
        let e = resolve_with(json!({"name":"n","ipam":{}}), Some(json!({"forcePoolName":true})))
            .expect_err("file");
        assert!(matches!(e, ConfigError::NoPool));
        let c =
            resolve_with(json!({"name":"n","ipam":{"forcePoolName":true,"poolName":"p"}}), None).expect("ok");
        assert_eq!(c.pools, vec!["p".to_string()]);
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases = [
            (json!({"name":"n","ipam":{"poolType":"foobar"}}), "ipam.poolType \"foobar\" is not a pool type"),
            (
                json!({"name":"n","ipam":{"daemonSocket":"tcp://1.2.3.4:9"}}),
                "ipam.daemonSocket \"tcp://1.2.3.4:9\" is not a unix socket",
            ),
            (
                json!({"name":"n","ipam":{"daemonCallTimeoutSeconds":-1}}),
                "ipam.daemonCallTimeoutSeconds -1 is out of range",
            ),
            (
                json!({"name":"n","ipam":{"daemonCallTimeoutSeconds":601}}),
                "ipam.daemonCallTimeoutSeconds 601 is out of range",
            ),
            (
                json!({"name":"n","ipam":{"daemonCallTimeoutSeconds":"5"}}),
                "ipam.daemonCallTimeoutSeconds must be an integer",
            ),
            (json!({"name":"n","ipam":{"logLevel":"loud"}}), "ipam.logLevel \"loud\" is not a log level"),
            (json!({"name":"n","ipam":{"forcePoolName":"yes"}}), "ipam.forcePoolName must be true or false"),
            (
                json!({"name":"n","ipam":{},"args":{"cni":{"poolNames":"a"}}}),
                "args.cni.poolNames must be a list of strings",
            ),
            (json!({"name":"n"}), "network config has no \"ipam\" object"),
            (json!({"name":"n","ipam":[]}), "ipam must be an object"),
        ];
        for (stdin, want) in cases {
            let e = resolve_with(stdin.clone(), None).expect_err(&stdin.to_string());
            assert!(e.to_string().starts_with(want), "{stdin}: got {e}");
        }
        let e = resolve_with(json!({"name":"n","ipam":{}}), Some(json!({"poolType":"x"}))).expect_err("file");
        assert!(e.to_string().starts_with("poolType in /conf/nv-ipam.conf \"x\""), "{e}");
    }

    #[test]
    fn socket_forms() {
        assert_eq!(parse_socket("unix:///a/b.sock", "f").expect("unix"), PathBuf::from("/a/b.sock"));
        assert_eq!(parse_socket("/a/b.sock", "f").expect("bare"), PathBuf::from("/a/b.sock"));
        assert!(matches!(parse_socket("unix://rel", "f"), Err(ConfigError::SocketNotAbsolute { .. })));
        assert!(matches!(parse_socket("http://x", "f"), Err(ConfigError::SocketNotUnix { .. })));
    }

    #[test]
    fn tolerates_foreign_keys() {
        // W17: args without cni; also the main plugin's keys, capabilities, prevResult, cni.dev/*.
        let c = resolve_with(
            json!({"cniVersion":"1.0.0","name":"n","type":"macvlan","master":"eth1","mode":"bridge",
                   "capabilities":{"ips":true},"args":{"other":1},"prevResult":{"ips":[]},
                   "cni.dev/valid-attachments":[],"runtimeConfig":{"mac":"x"},"dns":{},
                   "ipam":{"type":"nv-ipam","unknownKey":{"deep":[1,2]}}}),
            None,
        )
        .expect("tolerant");
        assert_eq!(c.pools, vec!["n".to_string()]);
        for args in [json!("x"), json!({"cni":"x"}), json!({"cni":null}), json!(null)] {
            let o = obj(json!({"name":"n","ipam":{},"args":args}));
            assert_eq!(args_cni(&o).expect("ignored"), ArgsCni::default());
            assert_eq!(add_params(&o, &CniArgs::default()).expect("ignored"), AddParams::default());
        }
    }

    #[test]
    fn names_and_versions() {
        assert!(matches!(network_name(&obj(json!({}))), Err(ConfigError::MissingName)));
        assert!(matches!(network_name(&obj(json!({"name":""}))), Err(ConfigError::InvalidName { .. })));
        assert!(matches!(
            network_name(&obj(json!({"name":"bad/name"}))),
            Err(ConfigError::InvalidName { .. })
        ));
        assert!(matches!(network_name(&obj(json!({"name":1}))), Err(ConfigError::WrongType { .. })));
        assert_eq!(cni_version(&obj(json!({}))).expect("implied"), ("0.1.0".to_string(), IMPLIED));
        assert!(matches!(
            cni_version(&obj(json!({"cniVersion":"abc"}))),
            Err(DecodeError::BadVersionString { .. })
        ));
        assert!(matches!(cni_version(&obj(json!({"cniVersion":1}))), Err(DecodeError::VersionNotAString)));
        assert!(matches!(decode(b"[1]"), Err(DecodeError::NotAnObject)));
        assert!(matches!(decode(b"garbage"), Err(DecodeError::BadJson(_))));
        assert_eq!(echo_version(br#"{"cniVersion":"9.9"}"#).as_deref(), Some("9.9"));
        assert_eq!(echo_version(b"garbage"), None);
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().expect("ip")).collect()
    }

    #[test]
    fn static_ip_priority() {
        let cni_args = args::parse("IP=192.168.77.52").expect("args");
        let both = obj(json!({"args":{"cni":{"ips":["192.168.77.51"]}}}));
        assert_eq!(add_params(&both, &cni_args).expect("ok").requested_ips, ips(&["192.168.77.51"]));
        let all =
            obj(json!({"runtimeConfig":{"ips":["1.1.1.1","2.2.2.2/24"]},"args":{"cni":{"ips":["3.3.3.3"]}}}));
        assert_eq!(add_params(&all, &cni_args).expect("ok").requested_ips, ips(&["1.1.1.1", "2.2.2.2"]));
        let only_env = obj(json!({"runtimeConfig":{"ips":[]},"args":{"cni":{}}}));
        assert_eq!(add_params(&only_env, &cni_args).expect("ok").requested_ips, ips(&["192.168.77.52"]));
        let bad = obj(json!({"runtimeConfig":{"ips":["1.1.1.1","nope"]}}));
        let e = add_params(&bad, &CniArgs::default()).expect_err("bad");
        assert_eq!(
            e.to_string(),
            "runtimeConfig.ips[1] \"nope\" is not an IP address; use <ip> or <ip>/<len>"
        );
    }

    #[test]
    fn index_and_default_gateway() {
        let p = add_params(&obj(json!({"args":{"cni":{"allocateIPWithIndex":5}}})), &CniArgs::default())
            .expect("ok");
        assert_eq!(p.allocate_ip_with_index, Some(5));
        let e = add_params(&obj(json!({"args":{"cni":{"allocateIPWithIndex":-1}}})), &CniArgs::default())
            .expect_err("negative");
        assert!(e.to_string().contains("can't be negative"), "{e}");
        let e = add_params(
            &obj(json!({"args":{"cni":{"allocateIPWithIndex":2147483648_i64}}})),
            &CniArgs::default(),
        )
        .expect_err("too large");
        assert!(matches!(e, ConfigError::IndexOutOfRange { .. }));
        let gw = json!({"args":{"cni":{"allocateDefaultGateway":true,"ips":["10.0.0.5"]}}});
        assert!(matches!(
            add_params(&obj(gw), &CniArgs::default()),
            Err(ConfigError::DefaultGatewayWithStaticIps)
        ));
        let gw_env = obj(json!({"args":{"cni":{"allocateDefaultGateway":true}}}));
        let cni_args = args::parse("IP=10.0.0.5").expect("args");
        assert!(matches!(add_params(&gw_env, &cni_args), Err(ConfigError::DefaultGatewayWithStaticIps)));
        let gw_idx = json!({"args":{"cni":{"allocateDefaultGateway":true,"allocateIPWithIndex":0}}});
        assert!(matches!(
            add_params(&obj(gw_idx), &CniArgs::default()),
            Err(ConfigError::DefaultGatewayWithIndex)
        ));
        let p = add_params(&gw_env, &CniArgs::default()).expect("gateway alone");
        assert!(p.allocate_default_gateway);
    }

    #[test]
    fn device_id_sources() {
        let p = add_params(
            &obj(json!({"deviceID":"0000:03:00.1","runtimeConfig":{"deviceID":"x"}})),
            &CniArgs::default(),
        )
        .expect("ok");
        assert_eq!(p.device_id.as_deref(), Some("0000:03:00.1"));
        let p = add_params(&obj(json!({"runtimeConfig":{"deviceID":"x"}})), &CniArgs::default()).expect("ok");
        assert_eq!(p.device_id.as_deref(), Some("x"));
    }

    #[test]
    fn gc_attachments() {
        let both = obj(json!({"cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}],
                              "cni.dev/attachments":[{"containerID":"c2","ifname":"eth0"}]}));
        let got = valid_attachments(&both).expect("valid");
        assert_eq!(got, vec![Attachment { container_id: "c1".into(), ifname: "eth0".into() }]);
        let legacy = obj(json!({"cni.dev/attachments":[{"containerID":"c2","ifname":"net1"}]}));
        assert_eq!(valid_attachments(&legacy).expect("legacy")[0].container_id, "c2");
        assert_eq!(valid_attachments(&obj(json!({"cni.dev/valid-attachments":[]}))).expect("empty"), vec![]);
        assert!(matches!(valid_attachments(&obj(json!({}))), Err(ConfigError::MissingAttachments)));
        let e = valid_attachments(&obj(json!({"cni.dev/valid-attachments":[{"containerID":"c1"}]})))
            .expect_err("x");
        assert_eq!(e.to_string(), "cni.dev/valid-attachments[0] needs a non-empty ifname");
    }
}
