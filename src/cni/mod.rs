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
//! system under it, [`version`] spec versions, [`result`] the success JSON, [`error`] the
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
use config::Defaults;
use env::Command;
pub use env::Env;
pub use error::CniError;
use version::{CHECK_SINCE, GC_STATUS_SINCE, LATEST};

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
    // Errors echo the request's cniVersion when it sent one, whatever it is.
    let echo = config::echo_version(&bytes).unwrap_or_else(|| LATEST.to_string());
    match dispatch(env, &bytes, &echo, daemon, defaults) {
        Ok(value) => Outcome::ok(value),
        Err(e) => Outcome::error(env, &echo, &e),
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
mod tests {
    use super::*;
    use crate::api::PoolType;
    use crate::protocol::client::ClientError;
    use crate::protocol::{Allocation, ErrorCode, ErrorReply, PoolStatus, Reply, Request, Response};
    use serde_json::json;
    use std::cell::RefCell;
    use std::path::Path;
    use std::time::Duration;

    /// Records the request and answers with a canned response.
    struct Fake {
        answer: Result<Response, fn() -> ClientError>,
        seen: RefCell<Vec<Request>>,
    }

    impl Fake {
        fn ok(reply: Reply) -> Fake {
            Fake { answer: Ok(Response::Ok(reply)), seen: RefCell::default() }
        }
        fn refuse(code: ErrorCode) -> Fake {
            let reply = ErrorReply { code, message: format!("daemon says {code}") };
            Fake { answer: Ok(Response::Error(reply)), seen: RefCell::default() }
        }
        fn down() -> Fake {
            Fake {
                answer: Err(|| ClientError::Unreachable {
                    path: "/nowhere".into(),
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                }),
                seen: RefCell::default(),
            }
        }
        fn only_request(&self) -> Request {
            let seen = self.seen.borrow();
            assert_eq!(seen.len(), 1, "exactly one daemon call: {seen:?}");
            seen[0].clone()
        }
    }

    impl Daemon for Fake {
        fn call(&self, _: &Path, request: Request, _: Duration) -> Result<Response, ClientError> {
            self.seen.borrow_mut().push(request);
            match &self.answer {
                Ok(r) => Ok(r.clone()),
                Err(make) => Err(make()),
            }
        }
    }

    fn env(command: &str, extra: &[(&str, &str)]) -> Env {
        let mut pairs = vec![
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_UID=u"),
        ];
        pairs.extend_from_slice(extra);
        Env::from_pairs(pairs)
    }

    /// Node defaults that touch nothing on the host: no conf dir, logs to /dev/null.
    fn test_defaults() -> Defaults {
        Defaults {
            conf_dir: "/nonexistent/nv-ipam-test".into(),
            log_file: "/dev/null".into(),
            daemon_socket: config::DEFAULT_DAEMON_SOCKET.into(),
        }
    }

    fn call(env: &Env, stdin: &mut dyn Read, daemon: &dyn Daemon) -> Outcome {
        run_with(env, stdin, daemon, &test_defaults())
    }

    /// A config naming the test defaults' conf dir (which does not exist, so /etc is never
    /// read) and log.
    fn conf(version: &str, more: Value) -> Vec<u8> {
        let mut c = json!({"cniVersion": version, "name": "net1", "type": "bridge",
            "ipam": {"type": "nv-ipam", "poolName": "pool4,pool6", "confDir": "/nonexistent/nv-ipam-test",
                     "logFile": "/dev/null"}});
        if let (Value::Object(c), Value::Object(more)) = (&mut c, more) {
            c.extend(more);
        }
        c.to_string().into_bytes()
    }

    fn dual_stack_reply() -> Reply {
        Reply {
            allocations: vec![
                Allocation {
                    pool: "pool4".into(),
                    pool_type: PoolType::IpPool,
                    ip: "10.0.0.5/24".parse().expect("net"),
                    gateway: Some("10.0.0.1".parse().expect("gw")),
                    routes: vec!["0.0.0.0/0".parse().expect("dst")],
                },
                Allocation {
                    pool: "pool6".into(),
                    pool_type: PoolType::IpPool,
                    ip: "fd00::5/64".parse().expect("net"),
                    gateway: None,
                    routes: vec![],
                },
            ],
            ..Reply::default()
        }
    }

    fn stdout_json(o: &Outcome) -> Value {
        serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", o.stdout))
    }

    #[test]
    fn add_at_every_version() {
        for v in ["0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
            let fake = Fake::ok(dual_stack_reply());
            let out = call(&env("ADD", &[]), &mut conf(v, json!({})).as_slice(), &fake);
            assert!(out.success, "{v}: {}", out.stdout);
            let got = stdout_json(&out);
            assert_eq!(got["cniVersion"], v);
            assert_eq!(got["ips"][0]["address"], "10.0.0.5/24");
            assert_eq!(got["ips"][1]["address"], "fd00::5/64");
            assert_eq!(got["routes"], json!([{"dst":"0.0.0.0/0","gw":"10.0.0.1"}]));
            let has_version = got["ips"][0].get("version").is_some();
            assert_eq!(has_version, v.starts_with("0."), "{v}: {got}");
        }
    }

    #[test]
    fn add_request_carries_everything() {
        let fake = Fake::ok(dual_stack_reply());
        let stdin = conf(
            "1.0.0",
            json!({"deviceID":"0000:03:00.1","args":{"cni":{"ips":["10.0.0.5/24"],"poolType":"CIDRPool"}}}),
        );
        let out = call(&env("ADD", &[]), &mut stdin.as_slice(), &fake);
        assert!(out.success, "{}", out.stdout);
        let Request::Allocate(req) = fake.only_request() else { panic!("not an allocate") };
        assert_eq!(
            (req.network.as_str(), req.container_id.as_str(), req.ifname.as_str()),
            ("net1", "c1", "eth0")
        );
        assert_eq!(req.pools, vec!["pool4".to_string(), "pool6".to_string()]);
        assert_eq!(req.pool_type, PoolType::CidrPool);
        assert_eq!(req.requested_ips, vec!["10.0.0.5".parse::<std::net::IpAddr>().expect("ip")]);
        assert_eq!(req.pod.name.as_deref(), Some("p"));
        assert_eq!(req.pod.namespace.as_deref(), Some("ns"));
        assert_eq!(req.pod.uid.as_deref(), Some("u"));
        assert_eq!(req.device_id.as_deref(), Some("0000:03:00.1"));
    }

    #[test]
    fn add_errors_map_to_codes() {
        let cases = [
            (ErrorCode::PoolExhausted, ErrorCode::PoolExhausted.cni_code()),
            (ErrorCode::NotReady, 11),
            (ErrorCode::PoolNotFound, ErrorCode::PoolNotFound.cni_code()),
        ];
        for (code, cni) in cases {
            let out = call(&env("ADD", &[]), &mut conf("1.0.0", json!({})).as_slice(), &Fake::refuse(code));
            let got = stdout_json(&out);
            assert!(!out.success);
            assert_eq!(got["code"], cni, "{code}");
            assert_eq!(got["details"], format!("allocate refused by ipam-node ({code}): daemon says {code}"));
        }
        let out = call(&env("ADD", &[]), &mut conf("1.0.0", json!({})).as_slice(), &Fake::down());
        assert_eq!(stdout_json(&out)["code"], 11);
        // One allocation for two pools is a broken daemon, not a result.
        let mut short = dual_stack_reply();
        short.allocations.truncate(1);
        let out = call(&env("ADD", &[]), &mut conf("1.0.0", json!({})).as_slice(), &Fake::ok(short));
        assert_eq!(stdout_json(&out)["code"], 100);
    }

    #[test]
    fn del_prints_nothing_and_needs_no_netns() {
        let fake = Fake::ok(Reply { released: Some(0), ..Reply::default() });
        let e = Env::from_pairs([("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "c9"), ("CNI_IFNAME", "eth0")]);
        let out = call(&e, &mut conf("0.4.0", json!({})).as_slice(), &fake);
        assert_eq!(out, Outcome { stdout: String::new(), success: true });
        assert!(matches!(fake.only_request(), Request::Release(r) if r.container_id == "c9"));
        let out = call(&e, &mut conf("0.4.0", json!({})).as_slice(), &Fake::down());
        assert_eq!(stdout_json(&out)["code"], 11, "DEL with the daemon down asks the runtime to retry");
    }

    #[test]
    fn del_ignores_add_only_problems() {
        // A bad IP= or allocateIPWithIndex must not make DEL fail forever.
        let fake = Fake::ok(Reply::default());
        let e = env("DEL", &[("CNI_ARGS", "IP=not-an-ip;junk")]);
        let stdin = conf("1.0.0", json!({"args":{"cni":{"allocateIPWithIndex":-1}}}));
        assert!(call(&e, &mut stdin.as_slice(), &fake).success);
    }

    #[test]
    fn check_sends_prev_result_addresses() {
        let fake = Fake::ok(Reply::default());
        let prev = json!({"prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],
            "ips":[{"interface":0,"address":"10.0.0.5/24"},{"address":"fd00::5/64"}]}});
        let out = call(&env("CHECK", &[]), &mut conf("1.0.0", prev).as_slice(), &fake);
        assert_eq!(out, Outcome { stdout: String::new(), success: true });
        let Request::Check(req) = fake.only_request() else { panic!("not a check") };
        assert_eq!(req.ips.len(), 2);
        let out =
            call(&env("CHECK", &[]), &mut conf("1.0.0", json!({})).as_slice(), &Fake::ok(Reply::default()));
        assert_eq!(stdout_json(&out)["code"], 7, "CHECK without prevResult");
        let out =
            call(&env("CHECK", &[]), &mut conf("0.3.1", json!({})).as_slice(), &Fake::ok(Reply::default()));
        assert_eq!(stdout_json(&out)["code"], 1);
        let out = call(
            &env("CHECK", &[]),
            &mut conf("1.0.0", json!({"prevResult":{}})).as_slice(),
            &Fake::refuse(ErrorCode::Mismatch),
        );
        assert_eq!(stdout_json(&out)["code"], ErrorCode::Mismatch.cni_code());
    }

    fn empty_env(command: &str) -> Env {
        Env::from_pairs([
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", ""),
            ("CNI_NETNS", ""),
            ("CNI_IFNAME", ""),
            ("CNI_ARGS", ""),
            ("CNI_PATH", "/opt/cni/bin"),
        ])
    }

    #[test]
    fn gc_with_valid_attachments() {
        let fake = Fake::ok(Reply { released: Some(2), ..Reply::default() });
        let stdin =
            conf("1.1.0", json!({"cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]}));
        let out = call(&empty_env("GC"), &mut stdin.as_slice(), &fake);
        assert_eq!(out, Outcome { stdout: String::new(), success: true });
        let Request::Gc(req) = fake.only_request() else { panic!("not a gc") };
        assert_eq!(req.network, "net1");
        assert_eq!(req.valid_attachments.len(), 1);
        let out =
            call(&empty_env("GC"), &mut conf("1.0.0", json!({})).as_slice(), &Fake::ok(Reply::default()));
        assert_eq!(stdout_json(&out)["code"], 1);
    }

    #[test]
    fn status_answers() {
        let pool = |name: &str, free| PoolStatus {
            pool: name.into(),
            pool_type: PoolType::IpPool,
            allocated: 3,
            free,
        };
        let ok = Fake::ok(Reply { pools: vec![pool("pool4", 10), pool("pool6", 1)], ..Reply::default() });
        let out = call(&empty_env("STATUS"), &mut conf("1.1.0", json!({})).as_slice(), &ok);
        assert_eq!(out, Outcome { stdout: String::new(), success: true });
        let full = Fake::ok(Reply { pools: vec![pool("pool4", 10), pool("pool6", 0)], ..Reply::default() });
        let got = stdout_json(&call(&empty_env("STATUS"), &mut conf("1.1.0", json!({})).as_slice(), &full));
        assert_eq!(got["code"], 50);
        assert!(got["details"].as_str().unwrap_or_default().contains("pool6"), "{got}");
        for fake in [Fake::down(), Fake::refuse(ErrorCode::PoolNotFound), Fake::ok(Reply::default())] {
            let got =
                stdout_json(&call(&empty_env("STATUS"), &mut conf("1.1.0", json!({})).as_slice(), &fake));
            assert_eq!(got["code"], 50, "{got}");
        }
    }

    #[test]
    fn stdin_is_bounded() {
        let big = vec![b' '; MAX_STDIN_BYTES + 1];
        let out = call(&env("ADD", &[]), &mut big.as_slice(), &Fake::down());
        assert_eq!(stdout_json(&out)["code"], 5);
        let at_limit = vec![b' '; MAX_STDIN_BYTES];
        let out = call(&env("ADD", &[]), &mut at_limit.as_slice(), &Fake::down());
        assert_eq!(stdout_json(&out)["code"], 6, "1 MiB of blanks is read, then fails to decode");
    }

    #[test]
    fn no_input_panics() {
        // Mangled configs: truncations of a valid one, odd JSON values, random bytes.
        let valid = conf(
            "1.0.0",
            json!({"args":{"cni":{"ips":["10.0.0.5"]}},"prevResult":{"ips":[{"address":"10.0.0.5/24"}]}}),
        );
        let mut inputs: Vec<Vec<u8>> = (0..valid.len()).map(|n| valid[..n].to_vec()).collect();
        for v in [
            json!(null),
            json!(1),
            json!("s"),
            json!([]),
            json!({"cniVersion":null}),
            json!({"cniVersion":"1.0.0","name":"n","ipam":null}),
        ] {
            inputs.push(v.to_string().into_bytes());
        }
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..200 {
            let mut buf = Vec::new();
            for _ in 0..(seed % 64) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                buf.push((seed & 0xff) as u8);
            }
            inputs.push(buf);
        }
        for command in ["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION"] {
            for input in &inputs {
                let out = call(&env(command, &[]), &mut input.as_slice(), &Fake::ok(Reply::default()));
                let _ = stdout_json(&out);
            }
        }
    }
}
