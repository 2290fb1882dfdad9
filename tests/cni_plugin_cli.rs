//! The real `nv-ipam` binary, run as a runtime runs it, for every case that needs no daemon
//! (the CNI spec's errors and the config errors, https://www.cni.dev/docs/spec/).
//!
//! Each test gets its own temp dir holding `confDir` (so /etc is never read) with the node's
//! `nv-ipam.conf` naming `logFile` and the daemon socket in that dir, as ipam-node writes it
//! (the plugin honours a config's `logFile`/`daemonSocket` only where the node's are). A one-shot stand-in on that socket checks the plugin's side of the
//! wire (request fields, result per version, error pass-through). Must not: depend on a running
//! ipam-node (allocation itself is tested with the daemon).

mod common;

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use nv_ipam::api::PoolType;
use nv_ipam::protocol::frame;
use nv_ipam::protocol::{Allocation, ErrorCode, Reply, Request, RequestFrame, ResponseFrame};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_nv-ipam");

struct Run {
    status: i32,
    stdout: String,
    stderr: String,
    json: Value,
}

/// Runs the plugin with exactly `env` (nothing inherited) and `stdin`.
fn run(env: &[(&str, &str)], stdin: &[u8]) -> Run {
    run_within(env, stdin, common::PLUGIN_DEADLINE)
}

/// [`run`], failing the test if the plugin has not exited within `deadline`.
fn run_within(env: &[(&str, &str)], stdin: &[u8], deadline: Duration) -> Run {
    let mut child = Command::new(BIN)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nv-ipam");
    let mut pipe = child.stdin.take().expect("stdin piped");
    let input = stdin.to_vec();
    // A writer thread: the plugin may stop reading early (oversized stdin) and exit.
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let out = common::wait::output_within(child, deadline, "nv-ipam exits");
    let _ = writer.join();
    let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
    let json = if stdout.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {stdout:?}"))
    };
    Run {
        status: out.status.code().expect("exited, not killed"),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        json,
    }
}

/// The plugin's files for one test: conf dir, log file and socket path in one temp dir.
struct PluginDir {
    dir: common::Sandbox,
}

impl PluginDir {
    /// The temp dir (root-owned 0755, as the plugin wants a tenant-named confDir) with
    /// `conf.d/nv-ipam.conf` (0600) naming the sandbox's log and socket.
    fn new(label: &str) -> PluginDir {
        use std::os::unix::fs::PermissionsExt;
        let s = PluginDir { dir: common::Sandbox::labelled(label) };
        let conf_dir = s.dir.root().join("conf.d");
        std::fs::create_dir(&conf_dir).expect("mkdir conf.d");
        for d in [s.dir.root(), conf_dir.as_path()] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        s.write_node_conf(json!({}));
        s
    }

    /// Writes the node's conf file: the sandbox's log and socket, with `more` merged over.
    fn write_node_conf(&self, more: Value) {
        use std::os::unix::fs::PermissionsExt;
        let mut c = json!({"logFile": self.log_path(), "daemonSocket": format!("unix://{}", self.socket())});
        if let (Value::Object(c), Value::Object(more)) = (&mut c, more) {
            c.extend(more);
        }
        let path = self.dir.root().join("conf.d/nv-ipam.conf");
        std::fs::write(&path, c.to_string()).expect("write nv-ipam.conf");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }

    fn socket(&self) -> String {
        self.dir.root().join("daemon.sock").display().to_string()
    }

    fn log_path(&self) -> String {
        self.dir.root().join("nv-ipam-cni.log").display().to_string()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// A valid config at `version`, with `ipam` fields merged over the sandbox's.
    fn conf(&self, version: &str, ipam: Value) -> Value {
        let mut i = json!({"type": "nv-ipam", "confDir": self.dir.root().join("conf.d"),
            "logFile": self.log_path(), "logLevel": "debug",
            "daemonSocket": format!("unix://{}", self.socket()), "daemonCallTimeoutSeconds": 1});
        if let (Value::Object(i), Value::Object(more)) = (&mut i, ipam) {
            i.extend(more);
        }
        json!({"cniVersion": version, "name": "net1", "type": "bridge", "ipam": i})
    }
}

fn bytes(v: &Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

const ADD: [(&str, &str); 6] = [
    ("CNI_COMMAND", "ADD"),
    ("CNI_CONTAINERID", "c1"),
    ("CNI_NETNS", "/run/netns/nv-ipam-test-nonexistent"),
    ("CNI_IFNAME", "eth0"),
    ("CNI_PATH", "/opt/cni/bin"),
    ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_UID=u"),
];

fn with(
    command: &str,
    changes: &[(&'static str, &'static str)],
    drop: &[&str],
) -> Vec<(&'static str, &'static str)> {
    let mut env: Vec<_> = ADD.iter().copied().filter(|(k, _)| !drop.contains(k)).collect();
    env[0].1 = match command {
        "ADD" => "ADD",
        "DEL" => "DEL",
        "CHECK" => "CHECK",
        "GC" => "GC",
        "STATUS" => "STATUS",
        _ => "VERSION",
    };
    for &(k, v) in changes {
        match env.iter_mut().find(|(key, _)| *key == k) {
            Some(e) => e.1 = v,
            None => env.push((k, v)),
        }
    }
    env
}

fn assert_error(r: &Run, code: u64, needle: &str) {
    assert_eq!(r.status, 1, "non-zero exit expected: {}", r.stdout);
    assert_eq!(r.json["code"], code, "{}", r.stdout);
    let text = format!(
        "{} {}",
        r.json["msg"].as_str().unwrap_or_default(),
        r.json["details"].as_str().unwrap_or_default()
    );
    assert!(text.contains(needle), "{needle:?} not in {}", r.stdout);
    assert!(r.json["cniVersion"].is_string(), "errors carry cniVersion: {}", r.stdout);
}

#[test]
fn version_with_empty_stdin_and_no_other_env() {
    let r = run(&[("CNI_COMMAND", "VERSION")], b"");
    assert_eq!(r.status, 0, "{}", r.stdout);
    // libcni's version.All, which the reference lists
    assert_eq!(r.json["supportedVersions"], json!(common::VERSIONS), "{}", r.stdout);
    assert_eq!(r.json["cniVersion"], "1.1.0", "{}", r.stdout);
    assert!(r.stderr.is_empty(), "nothing on stderr: {}", r.stderr);
}

#[test]
fn version_echoes_the_request() {
    let r = run(&[("CNI_COMMAND", "VERSION")], br#"{"cniVersion":"0.4.0"}"#);
    assert_eq!((r.status, r.json["cniVersion"].clone()), (0, json!("0.4.0")), "{}", r.stdout);
}

#[test]
fn unsupported_version_is_1() {
    let s = PluginDir::new("cli-version");
    let r = run(&with("ADD", &[], &[]), &bytes(&s.conf("2.0.0", json!({}))));
    assert_error(&r, 1, "2.0.0");
    assert_error(&r, 1, "0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0");
    assert_eq!(r.json["cniVersion"], "2.0.0");
    for v in ["0.0.9", "0.5.0", "1.2.0"] {
        assert_error(&run(&with("ADD", &[], &[]), &bytes(&s.conf(v, json!({})))), 1, v);
    }
}

#[test]
fn garbage_is_6() {
    assert_error(&run(&with("ADD", &[], &[]), b"garbage"), 6, "not valid JSON");
}

#[test]
fn missing_or_bad_name_is_7() {
    let s = PluginDir::new("cli-name");
    let mut c = s.conf("1.0.0", json!({}));
    c.as_object_mut().expect("object").remove("name");
    assert_error(&run(&with("ADD", &[], &[]), &bytes(&c)), 7, "no name");
    c["name"] = json!("bad/name");
    assert_error(&run(&with("ADD", &[], &[]), &bytes(&c)), 7, "\"bad/name\" is invalid");
}

#[test]
fn missing_env_is_4_naming_the_variable() {
    let s = PluginDir::new("cli-env");
    let c = bytes(&s.conf("1.0.0", json!({})));
    assert_error(&run(&with("ADD", &[], &["CNI_CONTAINERID"]), &c), 4, "CNI_CONTAINERID");
    assert_error(&run(&with("ADD", &[("CNI_CONTAINERID", "")], &[]), &c), 4, "CNI_CONTAINERID");
    assert_error(&run(&with("ADD", &[], &["CNI_NETNS"]), &c), 4, "CNI_NETNS");
    assert_error(&run(&with("CHECK", &[("CNI_NETNS", "")], &[]), &c), 4, "CNI_NETNS");
    assert_error(&run(&with("ADD", &[("CNI_IFNAME", "0123456789abcdef")], &[]), &c), 4, "CNI_IFNAME");
    assert_error(&run(&with("ADD", &[("CNI_IFNAME", "a/b")], &[]), &c), 4, "CNI_IFNAME");
    assert_error(&run(&with("ADD", &[("CNI_CONTAINERID", "-bad")], &[]), &c), 4, "CNI_CONTAINERID");
    assert_error(&run(&with("ADD", &[], &["CNI_COMMAND"]), &c), 4, "CNI_COMMAND");
}

#[test]
fn unknown_command_is_4() {
    let s = PluginDir::new("cli-cmd");
    let r = run(&with("ADD", &[("CNI_COMMAND", "FOO")], &[]), &bytes(&s.conf("1.0.0", json!({}))));
    assert_error(&r, 4, "unknown CNI_COMMAND");
    assert_eq!(r.json["msg"], "unknown CNI_COMMAND");
}

#[test]
fn invalid_ipam_is_7_naming_the_field() {
    let s = PluginDir::new("cli-ipam");
    let cases = [
        (json!({"poolName": "a,b,c"}), "ipam.poolName names 3 pools"),
        (json!({"poolType": "foobar"}), "ipam.poolType \"foobar\""),
        (json!({"daemonSocket": "tcp://127.0.0.1:9999"}), "ipam.daemonSocket"),
        (json!({"logLevel": "loud"}), "ipam.logLevel"),
        (json!({"forcePoolName": true}), "no pool provided"),
    ];
    for (ipam, needle) in cases {
        assert_error(&run(&with("ADD", &[], &[]), &bytes(&s.conf("1.0.0", ipam))), 7, needle);
    }
}

#[test]
fn invalid_conf_file_is_7_naming_the_file() {
    let s = PluginDir::new("cli-conffile");
    std::fs::write(s.dir.root().join("conf.d/nv-ipam.conf"), "{broken").expect("write");
    assert_error(&run(&with("ADD", &[], &[]), &bytes(&s.conf("1.0.0", json!({})))), 7, "nv-ipam.conf");
}

#[test]
fn conf_file_fills_what_stdin_leaves_empty() {
    // stdin names no socket; the file points at one that does not exist, so the error shows it.
    let s = PluginDir::new("cli-layer");
    let from_file = s.dir.root().join("from-file.sock");
    s.write_node_conf(json!({"daemonSocket": from_file}));
    let mut c = s.conf("1.0.0", json!({}));
    c["ipam"].as_object_mut().expect("ipam").remove("daemonSocket");
    assert_error(&run(&with("ADD", &[], &[]), &bytes(&c)), 11, "from-file.sock");
}

#[test]
fn bad_cni_args_ip_is_4_naming_it() {
    let s = PluginDir::new("cli-args");
    let r = run(
        &with("ADD", &[("CNI_ARGS", "IgnoreUnknown=1;IP=10.0.0.300")], &[]),
        &bytes(&s.conf("1.0.0", json!({}))),
    );
    assert_error(&r, 4, "CNI_ARGS IP=\"10.0.0.300\"");
}

#[test]
fn check_below_0_4_0_and_gc_below_1_1_0_are_1() {
    let s = PluginDir::new("cli-verbs");
    for v in ["0.1.0", "0.2.0", "0.3.0", "0.3.1"] {
        let r = run(&with("CHECK", &[], &[]), &bytes(&s.conf(v, json!({}))));
        assert_error(&r, 1, "config version does not allow CHECK");
        assert_eq!(r.json["cniVersion"], v, "the error keeps the request's version");
    }
    let mut gc = s.conf("1.0.0", json!({}));
    gc["cni.dev/valid-attachments"] = json!([]);
    let empty = [("CNI_CONTAINERID", ""), ("CNI_NETNS", ""), ("CNI_IFNAME", ""), ("CNI_ARGS", "")];
    assert_error(&run(&with("GC", &empty, &[]), &bytes(&gc)), 1, "GC");
    assert_error(&run(&with("STATUS", &empty, &[]), &bytes(&s.conf("1.0.0", json!({})))), 1, "STATUS");
}

#[test]
fn add_with_daemon_socket_missing_is_11_quickly() {
    let s = PluginDir::new("cli-add-down");
    // no socket: the plugin answers at once, long before this deadline
    let r = run_within(&with("ADD", &[], &[]), &bytes(&s.conf("1.0.0", json!({}))), Duration::from_secs(5));
    assert_error(&r, 11, &s.socket());
    assert!(r.stderr.is_empty(), "logs go to the log file, not stderr: {}", r.stderr);
    assert!(s.log().contains("ipam-node daemon unreachable"), "log file: {}", s.log());
}

#[test]
fn add_with_a_stuck_daemon_times_out_with_11() {
    // A listener that never accepts: connect and write succeed (backlog), the read times out.
    let s = PluginDir::new("cli-add-stuck");
    let _listener = UnixListener::bind(s.socket()).expect("bind");
    // bounded by daemonCallTimeoutSeconds (1 s): the plugin has answered before this deadline
    let r = run_within(&with("ADD", &[], &[]), &bytes(&s.conf("1.0.0", json!({}))), Duration::from_secs(4));
    assert_error(&r, 11, "did not answer within 1s");
}

#[test]
fn status_with_daemon_socket_missing_is_50() {
    let s = PluginDir::new("cli-status-down");
    let empty = [("CNI_CONTAINERID", ""), ("CNI_NETNS", ""), ("CNI_IFNAME", ""), ("CNI_ARGS", "")];
    assert_error(&run(&with("STATUS", &empty, &[]), &bytes(&s.conf("1.1.0", json!({})))), 50, &s.socket());
}

#[test]
fn del_with_daemon_socket_missing_is_11() {
    // Also: no CNI_NETNS and no CNI_PATH are fine for DEL; it gets as far as the daemon.
    let s = PluginDir::new("cli-del-down");
    let r = run(&with("DEL", &[], &["CNI_NETNS", "CNI_PATH"]), &bytes(&s.conf("0.4.0", json!({}))));
    assert_error(&r, 11, "ipam-node daemon unreachable");
}

#[test]
fn gc_with_daemon_socket_missing_is_11() {
    let s = PluginDir::new("cli-gc-down");
    let mut c = s.conf("1.1.0", json!({}));
    c["cni.dev/attachments"] = json!([{"containerID": "c1", "ifname": "eth0"}]);
    let empty = [("CNI_CONTAINERID", ""), ("CNI_NETNS", ""), ("CNI_IFNAME", ""), ("CNI_ARGS", "")];
    assert_error(&run(&with("GC", &empty, &[]), &bytes(&c)), 11, "unreachable");
}

#[test]
fn oversized_stdin_is_refused() {
    let r = run(&with("ADD", &[], &[]), &vec![b' '; (1 << 20) + 1]);
    assert_error(&r, 5, "larger than 1048576 bytes");
}

/// A one-shot stand-in for ipam-node on the sandbox socket: reads one request frame, answers
/// `reply`, and hands the request back. It checks the plugin's side of the wire, not allocation.
fn serve_once(s: &PluginDir, reply: ResponseFrame) -> std::thread::JoinHandle<RequestFrame> {
    let listener = UnixListener::bind(s.socket()).expect("bind stand-in socket");
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let request: RequestFrame = frame::read_frame(&mut conn).expect("one request frame");
        frame::write_frame(&mut conn, &reply).expect("write reply");
        request
    })
}

fn allocation_reply() -> ResponseFrame {
    ResponseFrame::ok(Reply {
        allocations: vec![Allocation {
            pool: "net1".into(),
            pool_type: PoolType::IpPool,
            ip: "192.168.0.7/16".parse().expect("net"),
            gateway: Some("192.168.0.1".parse().expect("gw")),
            routes: vec!["0.0.0.0/0".parse().expect("dst")],
        }],
        ..Reply::default()
    })
}

#[test]
fn add_over_the_socket_at_every_version() {
    // `None`: a config without cniVersion, which means 0.1.0
    let versions = common::VERSIONS.map(Some).into_iter().chain([None]);
    for v in versions {
        let s = PluginDir::new("cli-add-ok");
        let daemon = serve_once(&s, allocation_reply());
        let mut c = s.conf(v.unwrap_or("0.1.0"), json!({}));
        if v.is_none() {
            c.as_object_mut().expect("object").remove("cniVersion");
        }
        let r = run(&with("ADD", &[], &[]), &bytes(&c));
        assert_eq!(r.status, 0, "{v:?}: {}", r.stdout);
        let v = v.unwrap_or("0.1.0");
        let route = json!({"dst": "0.0.0.0/0", "gw": "192.168.0.1"});
        let want = match v {
            "0.1.0" | "0.2.0" => json!({"cniVersion": v,
                "ip4": {"ip": "192.168.0.7/16", "gateway": "192.168.0.1", "routes": [route]}, "dns": {}}),
            "0.3.0" | "0.3.1" | "0.4.0" => json!({"cniVersion": v,
                "ips": [{"version": "4", "address": "192.168.0.7/16", "gateway": "192.168.0.1"}],
                "routes": [route], "dns": {}}),
            _ => json!({"cniVersion": v, "ips": [{"address": "192.168.0.7/16", "gateway": "192.168.0.1"}],
                "routes": [route]}),
        };
        assert_eq!(r.json, want, "{v}");
        assert_eq!(r.stdout.lines().count(), 1, "stdout holds only the result");
        let Request::Allocate(req) = daemon.join().expect("stand-in").request else {
            panic!("not an allocate")
        };
        assert_eq!(
            (req.network.as_str(), req.container_id.as_str(), req.ifname.as_str()),
            ("net1", "c1", "eth0")
        );
        assert_eq!(req.pools, vec!["net1".to_string()], "pool defaults to the network name");
        assert_eq!(req.pod.name.as_deref(), Some("p"));
    }
}

#[test]
fn del_and_check_over_the_socket_print_nothing() {
    let s = PluginDir::new("cli-del-ok");
    let daemon = serve_once(&s, ResponseFrame::ok(Reply { released: Some(1), ..Reply::default() }));
    let r = run(&with("DEL", &[], &["CNI_NETNS"]), &bytes(&s.conf("1.0.0", json!({}))));
    assert_eq!((r.status, r.stdout.as_str()), (0, ""), "{}", r.stdout);
    assert!(matches!(daemon.join().expect("stand-in").request, Request::Release(_)));

    let s = PluginDir::new("cli-check-ok");
    let daemon = serve_once(&s, ResponseFrame::ok(Reply::default()));
    let mut c = s.conf("0.4.0", json!({}));
    c["prevResult"] = json!({"cniVersion": "0.4.0", "interfaces": [{"name": "eth0", "sandbox": "/x"}],
        "ips": [{"version": "4", "interface": 0, "address": "192.168.0.7/16"}]});
    let r = run(&with("CHECK", &[], &[]), &bytes(&c));
    assert_eq!((r.status, r.stdout.as_str()), (0, ""), "{}", r.stdout);
    let Request::Check(req) = daemon.join().expect("stand-in").request else { panic!("not a check") };
    assert_eq!(req.ips, vec!["192.168.0.7".parse::<std::net::IpAddr>().expect("ip")]);
}

#[test]
fn daemon_error_reply_reaches_the_runtime() {
    let s = PluginDir::new("cli-refused");
    let daemon =
        serve_once(&s, ResponseFrame::error(ErrorCode::PoolExhausted, "pool \"net1\": no free addresses"));
    let r = run(&with("ADD", &[], &[]), &bytes(&s.conf("1.0.0", json!({}))));
    assert_error(&r, u64::from(ErrorCode::PoolExhausted.cni_code()), "no free addresses");
    daemon.join().expect("stand-in");
}
