//! The `nv-ipam` CNI plugin: one process per call; env and stdin in, one JSON object out.
//!
//! ```text
//! run: read stdin (bounded) -> CNI_COMMAND -> VERSION? answer
//!      -> CNI_CONTAINERID/NETNS/IFNAME (ADD, CHECK, DEL) -> decode stdin -> cniVersion
//!      -> name, ipam + nv-ipam.conf + args.cni -> logger -> command (ADD/DEL/CHECK/GC/STATUS)
//! ```
//!
//! Layout: [`env`] the `CNI_*` variables, [`args`] `CNI_ARGS`, [`config`] stdin and its
//! layering, [`paths`] which host paths a tenant's config may name and [`host`] the file
//! system under it, [`version`] spec versions, [`result`] the success JSON in each version's layout, [`error`] the
//! error JSON and codes, [`command`] the operations against the daemon.
//!
//! Owns: the order of checks and the single exit point ([`Outcome`]). Must not: print (the
//! binary prints [`Outcome::stdout`]), exit, or panic on any input.

pub mod args;
pub mod command;
pub mod config;
pub mod env;
pub mod error;
pub mod host;
pub mod paths;
pub mod result;
pub mod version;

use std::io::Read;

use serde_json::Value;

use command::{Call, Daemon, SocketDaemon};
use config::{Defaults, SentVersion};
use env::Command;
pub use env::Env;
pub use error::CniError;
use version::{CHECK_SINCE, GC_STATUS_SINCE, IMPLIED, LATEST};

/// Largest network config accepted on stdin: 1 MiB. Real configs are a few KiB; a GC list of
/// 5,000 attachments is ~400 KiB. The config is tenant-written (a NAD), so more is refused
/// (code 5) without being buffered; what is read is decoded without a value tree
/// (`config::json`), so the plugin's peak RSS grows by about the input's size (1 MiB of tiny
/// objects or 30-deep arrays: ~1.1 MiB; tests/cni_stdin_limits.rs).
pub const MAX_STDIN_BYTES: usize = 1 << 20;

/// What the binary prints and how it exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The result or error JSON; empty for DEL, CHECK, GC and STATUS successes.
    pub stdout: String,
    /// Exit 0, else 1 (the error code is in the JSON, as the spec asks; `bin/nv-ipam.rs`).
    pub success: bool,
}

impl Outcome {
    fn ok(value: Option<Value>) -> Outcome {
        Outcome { stdout: value.map(|v| v.to_string()).unwrap_or_default(), success: true }
    }

    fn error(env: &Env, cni_version: &str, e: &CniError) -> Outcome {
        let var = |name| env.get(name).unwrap_or("-");
        log::error!(
            "command={} container={} ifname={} code={}: {e}",
            var("CNI_COMMAND"),
            var("CNI_CONTAINERID"),
            var("CNI_IFNAME"),
            e.code()
        );
        Outcome { stdout: e.to_json(cni_version).to_string(), success: false }
    }
}

/// Runs one plugin call against the real daemon socket, with the built-in defaults.
pub fn run(env: &Env, stdin: &mut dyn Read) -> Outcome {
    run_with(env, stdin, &SocketDaemon, &Defaults::host())
}

/// Runs one plugin call against `daemon` with the node-side `defaults` (tests pass a stand-in
/// and their own directories).
pub fn run_with(env: &Env, stdin: &mut dyn Read, daemon: &dyn Daemon, defaults: &Defaults) -> Outcome {
    let bytes = match read_stdin(stdin) {
        Ok(b) => b,
        Err(e) => return Outcome::error(env, &LATEST.to_string(), &e),
    };
    // VERSION and errors echo the request's cniVersion when it sent one, whatever it is. An
    // error for a config without one answers in 0.1.0, the version that config means; VERSION
    // then answers in the newest, as libcni's skel always does.
    let sent = config::sent_version(&bytes);
    let echo = match &sent {
        SentVersion::Sent(s) => s.clone(),
        SentVersion::Missing | SentVersion::Unknown => LATEST.to_string(),
    };
    match dispatch(env, &bytes, &echo, daemon, defaults) {
        Ok(value) => Outcome::ok(value),
        Err(e) => {
            let version = match sent {
                SentVersion::Missing => IMPLIED.to_string(),
                SentVersion::Sent(_) | SentVersion::Unknown => echo,
            };
            Outcome::error(env, &version, &e)
        }
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

fn dispatch(
    env: &Env,
    bytes: &[u8],
    echo: &str,
    daemon: &dyn Daemon,
    defaults: &Defaults,
) -> Result<Option<Value>, CniError> {
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
    let netconf = config::decode(bytes)?;
    let (cni_version, version) = config::cni_version(&netconf)?;
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
    let network = config::network_name(&netconf)?;
    let stdin_ipam = config::stdin_ipam(&netconf)?;
    // The tenant's confDir only if root administers it; its file then fixes the node values.
    let conf = host::select_conf(stdin_ipam.conf_dir.as_deref(), &defaults.conf_dir)?;
    let args_cni = config::args_cni(&netconf)?;
    let ipam = config::resolve(&network, &stdin_ipam, conf.file.as_ref(), &args_cni, &conf.path, defaults)?;
    let warnings = conf.warning.into_iter().chain(ipam.warnings.iter().cloned()).collect();
    host::start_logging(&ipam, warnings);
    log::debug!(
        "call command={command} network={network} cniVersion={cni_version} pools={} poolType={}",
        ipam.pools.join(","),
        ipam.pool_type
    );

    let call =
        Call { cni_version: &cni_version, version, network: &network, ipam: &ipam, config: &netconf, daemon };
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

#[cfg(test)]
mod tests;
