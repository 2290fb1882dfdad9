//! The `ipam` section, the pool selection in `args.cni`, the node's `nv-ipam.conf`, and the
//! layering of the three over the defaults into the settings of one call ([`IpamConf`]).
//!
//! ```text
//! value = stdin ipam.<field>        (a non-empty value wins)
//!       | <confDir>/nv-ipam.conf    (fills what stdin left empty; written by ipam-node)
//!       | default                   (DEFAULT_* below)
//! paths: confDir, logFile and daemonSocket from stdin only where the node allows (`paths`)
//! pools = args.cni.poolNames | ipam.poolName | file poolName | network name (unless forcePoolName)
//! type  = args.cni.poolType  | ipam.poolType | file poolType | ippool
//! ```
//!
//! Owns: [`RawIpam`] (one source's fields, stdin's or the conf file's, read by the same code),
//! [`ArgsCni`], [`resolve`], the defaults and the pool-count rule. Must not: read the file
//! system (`host` reads the conf file and hands its bytes to [`parse_conf_file`]), or keep more
//! of a pool list than [`MAX_POOLS`] names.

use std::path::{Path, PathBuf};
use std::time::Duration;

use log::LevelFilter;
use serde_json::value::RawValue;

use super::json::{self, DocumentError, NotAnObject};
use super::stdin::NetConf;
use super::{ConfigError, echo, not_an_object, opt_bool, opt_int, opt_str};
use crate::api::PoolType;
use crate::cni::paths::{self, Refusal, Warning};
use crate::default_paths;
use crate::logging;
use crate::prescan::{self, MAX_DEPTH};

/// The daemon's socket when neither stdin nor the conf file names one (the reference's).
pub const DEFAULT_DAEMON_SOCKET: &str = default_paths::DAEMON_SOCKET;
/// Per daemon call (the reference's `daemonCallTimeoutSeconds` default).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound on `daemonCallTimeoutSeconds`: ten minutes is already longer than any runtime
/// waits for a CNI call (kubelet's CRI call deadline is 4 minutes), so a larger value is a typo.
pub const MAX_CALL_TIMEOUT_SECONDS: i64 = 600;
/// Where `nv-ipam.conf` lives when stdin has no `ipam.confDir` (the reference's).
pub const DEFAULT_CONF_DIR: &str = default_paths::CNI_CONF_DIR;
/// The layered conf file's name inside `confDir`.
pub const CONF_FILE_NAME: &str = "nv-ipam.conf";
/// The plugin's log when neither stdin nor the conf file names one (the reference's).
pub const DEFAULT_LOG_FILE: &str = default_paths::CNI_LOG_FILE;
/// The log level when neither stdin nor the conf file sets one (the reference's).
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

/// The fields of the `ipam` section and of the conf file, in [`RawIpam::read`]'s order.
const IPAM_KEYS: [&str; 8] = [
    "poolName",
    "poolType",
    "forcePoolName",
    "daemonSocket",
    "daemonCallTimeoutSeconds",
    "confDir",
    "logFile",
    "logLevel",
];

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
    /// Reads the members of one object ([`IPAM_KEYS`]); `field` turns a key into the name
    /// errors use.
    fn read(members: [Option<&RawValue>; 8], field: &dyn Fn(&str) -> String) -> Result<RawIpam, ConfigError> {
        let [pool_name, pool_type, force, socket, timeout, conf_dir, log_file, log_level] = members;
        let s = |raw: Option<&RawValue>, key: &str| -> Result<Option<String>, ConfigError> {
            Ok(opt_str(raw, || field(key))?.filter(|v| !v.is_empty()))
        };
        Ok(RawIpam {
            pool_name: s(pool_name, "poolName")?,
            pool_type: s(pool_type, "poolType")?,
            force_pool_name: opt_bool(force, || field("forcePoolName"))?,
            daemon_socket: s(socket, "daemonSocket")?,
            daemon_call_timeout_seconds: opt_int(timeout, || field("daemonCallTimeoutSeconds"))?,
            conf_dir: s(conf_dir, "confDir")?,
            log_file: s(log_file, "logFile")?,
            log_level: s(log_level, "logLevel")?,
        })
    }
}

/// The stdin `ipam` section.
pub fn stdin_ipam(conf: &NetConf<'_>) -> Result<RawIpam, ConfigError> {
    let raw = conf.ipam.ok_or(ConfigError::MissingIpam)?;
    let members = json::members(raw.get(), &IPAM_KEYS).map_err(|NotAnObject| not_an_object("ipam"))?;
    RawIpam::read(members, &|k| format!("ipam.{k}"))
}

/// Parses the conf file's bytes (`host` reads them; the layering tests need no files). The
/// node writes it, but it is decoded as carefully as stdin: depth first, then JSON, no tree.
pub fn parse_conf_file(path: &Path, bytes: &[u8]) -> Result<RawIpam, ConfigError> {
    let path_buf = || path.to_path_buf();
    prescan::check_json(bytes, MAX_DEPTH)
        .map_err(|source| ConfigError::ConfFileTooDeep { path: path_buf(), source })?;
    let text = json::document(bytes).map_err(|e| match e {
        DocumentError::Json(source) => ConfigError::ConfFileInvalid { path: path_buf(), source },
        // Unreachable (valid JSON is UTF-8); "not an object" is the nearest true statement.
        DocumentError::NotUtf8 { .. } => ConfigError::ConfFileNotAnObject { path: path_buf() },
    })?;
    let members = json::members(text, &IPAM_KEYS)
        .map_err(|NotAnObject| ConfigError::ConfFileNotAnObject { path: path_buf() })?;
    RawIpam::read(members, &|k| format!("{k} in {}", path.display()))
}

/// The `args.cni` keys every command uses (pool selection).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArgsCni {
    /// At most [`MAX_POOLS`] names: a longer list is an error.
    pub pool_names: Option<Vec<String>>,
    pub pool_type: Option<String>,
}

/// The members `keys` of `args.cni`, when present. `args` or `args.cni` of another shape is
/// ignored: it is reserved metadata that other tools fill, not our config.
pub(super) fn args_cni_members<'a, const N: usize>(
    conf: &NetConf<'a>,
    keys: &[&'static str; N],
) -> Option<[Option<&'a RawValue>; N]> {
    let [cni] = json::members(conf.args?.get(), &["cni"]).ok()?;
    json::members(cni?.get(), keys).ok()
}

/// `args.cni.poolNames` and `args.cni.poolType`. Types are checked first, then the pool list
/// (empty names, more than [`MAX_POOLS`]), which is walked without being collected.
pub fn args_cni(conf: &NetConf<'_>) -> Result<ArgsCni, ConfigError> {
    const FIELD: &str = "args.cni.poolNames";
    let Some([names, pool_type]) = args_cni_members(conf, &["poolNames", "poolType"]) else {
        return Ok(ArgsCni::default());
    };
    let names = match names {
        None => None,
        Some(raw) => {
            let not_strings =
                || ConfigError::WrongType { field: FIELD.into(), expected: "a list of strings" };
            let mut pools = Pools::default();
            let mut all_strings = true;
            json::items(raw, |_, item| {
                match json::string(item) {
                    Some(name) => pools.push(&name),
                    None => all_strings = false,
                }
                all_strings
            })
            .map_err(|_| not_strings())?;
            if !all_strings {
                return Err(not_strings());
            }
            Some(pools)
        }
    };
    let pool_type = opt_str(pool_type, || "args.cni.poolType".into())?.filter(|s| !s.is_empty());
    let pool_names = match names {
        Some(pools) if pools.count > 0 => Some(pools.finish(FIELD)?),
        _ => None,
    };
    Ok(ArgsCni { pool_names, pool_type })
}

/// Pool names as they are read: all counted, the first [`MAX_POOLS`] kept, so that a list of
/// any length costs two names.
#[derive(Debug, Default)]
struct Pools {
    kept: Vec<String>,
    count: usize,
    /// Some name is empty or blank.
    empty: bool,
}

impl Pools {
    fn push(&mut self, name: &str) {
        self.count += 1;
        self.empty |= name.trim().is_empty();
        if self.kept.len() < MAX_POOLS {
            self.kept.push(name.to_string());
        }
    }

    /// The names, unless one is empty or there are more than [`MAX_POOLS`].
    fn finish(self, field: &str) -> Result<Vec<String>, ConfigError> {
        if self.empty {
            return Err(ConfigError::EmptyPoolName { field: field.to_string() });
        }
        if self.count > MAX_POOLS {
            return Err(ConfigError::TooManyPools { field: field.to_string(), count: self.count });
        }
        Ok(self.kept)
    }
}

fn check_pools<'s>(names: impl Iterator<Item = &'s str>, field: &str) -> Result<Vec<String>, ConfigError> {
    let mut pools = Pools::default();
    names.for_each(|n| pools.push(n));
    pools.finish(field)
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

    let force = stdin.force_pool_name.or(file.force_pool_name).unwrap_or(false);
    let pools = if let Some(list) = &args.pool_names {
        check_pools(list.iter().map(String::as_str), "args.cni.poolNames")?
    } else if let Some((value, field)) =
        pick(stdin.pool_name.as_deref(), file.pool_name.as_deref(), "poolName", &in_file)
    {
        check_pools(value.split(',').map(str::trim), &field)?
    } else if force {
        return Err(ConfigError::NoPool);
    } else {
        vec![network.to_string()]
    };

    let pool_type = match args
        .pool_type
        .as_deref()
        .map(|v| (v, "args.cni.poolType".to_string()))
        .or_else(|| pick(stdin.pool_type.as_deref(), file.pool_type.as_deref(), "poolType", &in_file))
    {
        None => PoolType::default(),
        Some((value, field)) => PoolType::parse(value)
            .ok_or_else(|| ConfigError::UnknownPoolType { field, value: echo(value) })?,
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
        socket
            .warning
            .map(|w| Warning { value: echo(stdin.daemon_socket.as_deref().unwrap_or_default()), ..w }),
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
            return Err(ConfigError::LogFileNotAbsolute { field: in_file("logFile"), value: echo(v) });
        }
    };
    let log = paths::choose_log(stdin.log_file.as_deref(), &node_log_file);
    warnings.extend(log.warning);
    let node_log_level = match &file.log_level {
        None => DEFAULT_LOG_LEVEL,
        Some(value) => logging::parse_level(value)
            .ok_or_else(|| ConfigError::BadLogLevel { field: in_file("logLevel"), value: echo(value) })?,
    };
    let log_level = match &stdin.log_level {
        None => node_log_level,
        Some(value) => logging::parse_level(value)
            .ok_or_else(|| ConfigError::BadLogLevel { field: "ipam.logLevel".into(), value: echo(value) })?,
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

/// The stdin value, else the file's, with the field name errors use.
fn pick<'v>(
    stdin: Option<&'v str>,
    file: Option<&'v str>,
    key: &str,
    in_file: &dyn Fn(&str) -> String,
) -> Option<(&'v str, String)> {
    match (stdin, file) {
        (Some(v), _) => Some((v, format!("ipam.{key}"))),
        (None, Some(v)) => Some((v, in_file(key))),
        (None, None) => None,
    }
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
        Err(_) => Err(ConfigError::SocketNotAbsolute { field: field.into(), value: echo(value) }),
    }
}

/// The path of `unix:///path` or `/path`: `Ok(Ok(absolute))`, `Ok(Err(relative))` for
/// the caller to refuse as it sees fit; another scheme (`tcp://`) is an error.
fn socket_path<'a>(value: &'a str, field: &str) -> Result<Result<&'a str, &'a str>, ConfigError> {
    let path = match value.strip_prefix("unix://") {
        Some(p) => p,
        None if value.contains("://") => {
            return Err(ConfigError::SocketNotUnix { field: field.into(), value: echo(value) });
        }
        None => value,
    };
    Ok(if path.starts_with('/') { Ok(path) } else { Err(path) })
}

#[cfg(test)]
mod tests;
