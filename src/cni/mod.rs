//! The `nv-ipam` CNI plugin: one process per call; env and stdin in, one JSON object out.
//!
//! ```text
//! run: read stdin (bounded) -> CNI_COMMAND -> VERSION? answer
//!      -> CNI_CONTAINERID/NETNS/IFNAME (ADD, CHECK, DEL) -> decode stdin -> cniVersion
//!      -> name, ipam + nv-ipam.conf + args.cni -> logger -> command (ADD/DEL/CHECK/GC/STATUS)
//! ```
//!
//! Layout: [`env`] the `CNI_*` variables, [`args`] `CNI_ARGS`, [`config`] stdin and its
//! layering, [`version`] spec versions, [`result`] the success JSON, [`error`] the error JSON
//! and codes, [`command`] the operations against the daemon.
//!
//! Owns: the order of checks and the single exit point ([`Outcome`]). Must not: print (the
//! binary prints [`Outcome::stdout`]), exit, or panic on any input.

pub mod args;
pub mod command;
pub mod config;
pub mod env;
pub mod error;
pub mod result;
pub mod version;

use std::io::Read;

use serde_json::Value;

use crate::logging::{self, LogFormat, LogTarget};
use command::{Call, Daemon, SocketDaemon};
use env::Command;
pub use env::Env;
pub use error::CniError;
use version::{CHECK_SINCE, GC_STATUS_SINCE, LATEST};

/// Largest network config accepted on stdin: 1 MiB. Real configs are a few KiB; a GC list of
/// 5,000 attachments is ~400 KiB.
pub const MAX_STDIN_BYTES: usize = 1 << 20;

/// What the binary prints and how it exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The result or error JSON; empty for DEL, CHECK, GC and STATUS successes.
    pub stdout: String,
    pub success: bool,
}

impl Outcome {
    /// 0 on success, 1 on error (the error code is in the JSON, as the spec asks).
    pub fn exit_code(&self) -> i32 {
        if self.success { 0 } else { 1 }
    }

    fn ok(value: Option<Value>) -> Outcome {
        Outcome { stdout: value.map(|v| v.to_string()).unwrap_or_default(), success: true }
    }

    fn error(cni_version: &str, e: &CniError) -> Outcome {
        log::error!("{e}");
        Outcome { stdout: e.to_json(cni_version).to_string(), success: false }
    }
}

/// Runs one plugin call against the real daemon socket.
pub fn run(env: &Env, stdin: &mut dyn Read) -> Outcome {
    run_with(env, stdin, &SocketDaemon)
}

/// Runs one plugin call against `daemon` (tests pass a stand-in).
pub fn run_with(env: &Env, stdin: &mut dyn Read, daemon: &dyn Daemon) -> Outcome {
    let bytes = match read_stdin(stdin) {
        Ok(b) => b,
        Err(e) => return Outcome::error(&LATEST.to_string(), &e),
    };
    // Errors echo the request's cniVersion when it sent one, whatever it is.
    let echo = config::echo_version(&bytes).unwrap_or_else(|| LATEST.to_string());
    match dispatch(env, &bytes, &echo, daemon) {
        Ok(value) => Outcome::ok(value),
        Err(e) => Outcome::error(&echo, &e),
    }
}

/// Reads all of stdin, refusing more than [`MAX_STDIN_BYTES`] without buffering it.
pub fn read_stdin(stdin: &mut dyn Read) -> Result<Vec<u8>, CniError> {
    let mut bytes = Vec::new();
    stdin.take(MAX_STDIN_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(CniError::StdinUnreadable)?;
    if bytes.len() > MAX_STDIN_BYTES {
        return Err(CniError::StdinTooLarge { max: MAX_STDIN_BYTES });
    }
    Ok(bytes)
}

fn dispatch(env: &Env, bytes: &[u8], echo: &str, daemon: &dyn Daemon) -> Result<Option<Value>, CniError> {
    let command = env::command(env)?;
    // Environment first, as the Go skel does: a runtime bug shows as code 4 whatever stdin is.
    let verb = match command {
        // VERSION needs nothing but CNI_COMMAND; stdin may be empty or anything.
        Command::Version => return Ok(Some(version::version_reply(echo))),
        Command::Add => Verb::Add(env::attachment(env, command)?),
        Command::Del => Verb::Del(env::attachment(env, command)?),
        Command::Check => Verb::Check(env::attachment(env, command)?),
        Command::Gc => Verb::Gc,
        Command::Status => Verb::Status,
    };
    let obj = config::decode(bytes)?;
    let (cni_version, version) = config::cni_version(&obj)?;
    if !version.is_supported() {
        return Err(CniError::UnsupportedVersion { requested: cni_version });
    }
    let since = match command {
        Command::Check => Some(CHECK_SINCE),
        Command::Gc | Command::Status => Some(GC_STATUS_SINCE),
        _ => None,
    };
    if let Some(since) = since
        && version < since
    {
        return Err(CniError::CommandNeedsVersion { command, since, requested: version });
    }
    let network = config::network_name(&obj)?;
    let stdin_ipam = config::stdin_ipam(&obj)?;
    let conf_dir = config::conf_dir(&stdin_ipam);
    let file = config::read_conf_file(&conf_dir)?;
    let args_cni = config::args_cni(&obj)?;
    let conf_path = conf_dir.join(config::CONF_FILE_NAME);
    let ipam = config::resolve(&network, &stdin_ipam, file.as_ref(), &args_cni, &conf_path)?;
    // A second init (tests running several calls in one process) keeps the first logger.
    let _ = logging::init(ipam.log_level, LogFormat::Text, LogTarget::File(ipam.log_file.clone()));
    log::debug!(
        "call command={command} network={network} cniVersion={cni_version} pools={} poolType={}",
        ipam.pools.join(","),
        ipam.pool_type
    );

    let call =
        Call { cni_version: &cni_version, version, network: &network, ipam: &ipam, config: &obj, daemon };
    match verb {
        Verb::Add(att) => command::add(&call, &att, env).map(Some),
        Verb::Del(att) => command::del(&call, &att).map(|()| None),
        Verb::Check(att) => command::check(&call, &att).map(|()| None),
        Verb::Gc => command::gc(&call).map(|()| None),
        Verb::Status => command::status(&call).map(|()| None),
    }
}

/// A command with what it is about.
enum Verb {
    Add(env::AttachmentEnv),
    Del(env::AttachmentEnv),
    Check(env::AttachmentEnv),
    Gc,
    Status,
}
