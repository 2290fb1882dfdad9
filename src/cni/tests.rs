//! The plugin's order of checks and outcomes per command and version, against a stand-in daemon.

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
    for v in version::SUPPORTED.map(|v| v.to_string()) {
        let fake = Fake::ok(dual_stack_reply());
        let out = call(&env("ADD", &[]), &mut conf(&v, json!({})).as_slice(), &fake);
        assert!(out.success, "{v}: {}", out.stdout);
        let got = stdout_json(&out);
        assert_eq!(got["cniVersion"], v.as_str());
        if v.starts_with("0.1.") || v.starts_with("0.2.") {
            assert_eq!(
                got,
                json!({"cniVersion": v,
                       "ip4":{"ip":"10.0.0.5/24","gateway":"10.0.0.1","routes":[{"dst":"0.0.0.0/0","gw":"10.0.0.1"}]},
                       "ip6":{"ip":"fd00::5/64"},"dns":{}})
            );
            continue;
        }
        assert_eq!(got["ips"][0]["address"], "10.0.0.5/24");
        assert_eq!(got["ips"][1]["address"], "fd00::5/64");
        assert_eq!(got["routes"], json!([{"dst":"0.0.0.0/0","gw":"10.0.0.1"}]));
        let has_version = got["ips"][0].get("version").is_some();
        assert_eq!(has_version, v.starts_with("0."), "{v}: {got}");
        assert_eq!(got.get("dns").is_some(), v.starts_with("0."), "{v}: {got}");
    }
}

#[test]
fn a_config_without_cni_version_is_0_1_0() {
    for missing in [json!({"cniVersion": null}), json!({"cniVersion": ""})] {
        let mut c: Value = serde_json::from_slice(&conf("x", json!({}))).expect("conf");
        c.as_object_mut().expect("object").remove("cniVersion");
        let with = |c: &Value, extra: &Value| {
            let mut c = c.clone();
            if let (Value::Object(c), Value::Object(extra)) = (&mut c, extra) {
                c.extend(extra.clone());
            }
            c.to_string().into_bytes()
        };
        for stdin in [with(&c, &json!({})), with(&c, &missing)] {
            let out = call(&env("ADD", &[]), &mut stdin.as_slice(), &Fake::ok(dual_stack_reply()));
            let got = stdout_json(&out);
            assert!(out.success, "{got}");
            assert_eq!(
                (got["cniVersion"].as_str(), got["ip4"]["ip"].as_str()),
                (Some("0.1.0"), Some("10.0.0.5/24"))
            );
            // errors answer in the version the config means
            let out = call(&env("ADD", &[]), &mut stdin.as_slice(), &Fake::down());
            assert_eq!(stdout_json(&out)["cniVersion"], "0.1.0");
            let out = call(&env("CHECK", &[]), &mut stdin.as_slice(), &Fake::down());
            assert_eq!(
                (stdout_json(&out)["code"].as_u64(), stdout_json(&out)["cniVersion"].as_str()),
                (Some(1), Some("0.1.0"))
            );
            // VERSION answers in the newest
            let out = call(&env("VERSION", &[]), &mut stdin.as_slice(), &Fake::down());
            assert_eq!(stdout_json(&out)["cniVersion"], LATEST.to_string());
        }
    }
    // stdin that is no config: errors answer in the newest
    let out = call(&env("ADD", &[]), &mut &b"[]"[..], &Fake::down());
    assert_eq!(stdout_json(&out)["cniVersion"], LATEST.to_string());
}

#[test]
fn errors_keep_the_request_version() {
    for v in version::SUPPORTED.map(|v| v.to_string()) {
        let out = call(&env("ADD", &[]), &mut conf(&v, json!({})).as_slice(), &Fake::down());
        let got = stdout_json(&out);
        assert_eq!((got["code"].as_u64(), got["cniVersion"].as_str()), (Some(11), Some(v.as_str())));
    }
}

#[test]
fn verbs_below_their_version_answer_code_1_as_libcni_skel_does() {
    for v in ["0.1.0", "0.2.0", "0.3.0", "0.3.1"] {
        let prev = json!({"prevResult":{"cniVersion": v, "ip4":{"ip":"10.0.0.5/24"}}});
        let fake = Fake::ok(Reply::default());
        let got = stdout_json(&call(&env("CHECK", &[]), &mut conf(v, prev).as_slice(), &fake));
        assert_eq!(
            got,
            json!({"cniVersion": v, "code": 1, "msg": "config version does not allow CHECK",
                   "details": format!("CHECK needs cniVersion 0.4.0 or later; the config says {v}")})
        );
        assert!(fake.seen.borrow().is_empty(), "the daemon is not asked");
    }
    for v in ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"] {
        for command in ["GC", "STATUS"] {
            let stdin = conf(v, json!({"cni.dev/valid-attachments": []}));
            let got = stdout_json(&call(&empty_env(command), &mut stdin.as_slice(), &Fake::down()));
            assert_eq!((got["code"].as_u64(), got["cniVersion"].as_str()), (Some(1), Some(v)), "{command}");
        }
    }
}

#[test]
fn del_at_old_versions_ignores_any_prev_result() {
    for v in ["0.1.0", "0.2.0", "0.3.0"] {
        for prev in [
            json!({"prevResult":{"cniVersion": v,"ip4":{"ip":"10.0.0.5/24"},"dns":{}}}),
            json!({"prevResult":{"cniVersion": v,"ips":[{"version":"4","address":"10.0.0.5/24"}]}}),
            json!({"prevResult": 5}),
            json!({}),
        ] {
            let fake = Fake::ok(Reply { released: Some(1), ..Reply::default() });
            let out = call(&env("DEL", &[]), &mut conf(v, prev).as_slice(), &fake);
            assert_eq!(out, Outcome { stdout: String::new(), success: true }, "{v}");
            assert!(matches!(fake.only_request(), Request::Release(_)));
        }
    }
}

#[test]
fn check_reads_an_old_prev_result() {
    // A 0.2.0 prevResult inside a 0.4.0 config (a runtime's cached result): its own
    // layout is read, and both addresses reach the daemon.
    let fake = Fake::ok(Reply::default());
    let prev =
        json!({"prevResult":{"cniVersion":"0.2.0","ip4":{"ip":"10.0.0.5/24"},"ip6":{"ip":"fd00::5/64"}}});
    let out = call(&env("CHECK", &[]), &mut conf("0.4.0", prev).as_slice(), &fake);
    assert!(out.success, "{}", out.stdout);
    let Request::Check(req) = fake.only_request() else { panic!("not a check") };
    assert_eq!(
        req.ips,
        vec!["10.0.0.5".parse::<std::net::IpAddr>().expect("v4"), "fd00::5".parse().expect("v6")]
    );
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
    let out = call(&env("CHECK", &[]), &mut conf("1.0.0", json!({})).as_slice(), &Fake::ok(Reply::default()));
    assert_eq!(stdout_json(&out)["code"], 7, "CHECK without prevResult");
    let out = call(&env("CHECK", &[]), &mut conf("0.3.1", json!({})).as_slice(), &Fake::ok(Reply::default()));
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
    let stdin = conf("1.1.0", json!({"cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]}));
    let out = call(&empty_env("GC"), &mut stdin.as_slice(), &fake);
    assert_eq!(out, Outcome { stdout: String::new(), success: true });
    let Request::Gc(req) = fake.only_request() else { panic!("not a gc") };
    assert_eq!(req.network, "net1");
    assert_eq!(req.valid_attachments.len(), 1);
    let out = call(&empty_env("GC"), &mut conf("1.0.0", json!({})).as_slice(), &Fake::ok(Reply::default()));
    assert_eq!(stdout_json(&out)["code"], 1);
}

#[test]
fn status_answers() {
    let pool =
        |name: &str, free| PoolStatus { pool: name.into(), pool_type: PoolType::IpPool, allocated: 3, free };
    let ok = Fake::ok(Reply { pools: vec![pool("pool4", 10), pool("pool6", 1)], ..Reply::default() });
    let out = call(&empty_env("STATUS"), &mut conf("1.1.0", json!({})).as_slice(), &ok);
    assert_eq!(out, Outcome { stdout: String::new(), success: true });
    let full = Fake::ok(Reply { pools: vec![pool("pool4", 10), pool("pool6", 0)], ..Reply::default() });
    let got = stdout_json(&call(&empty_env("STATUS"), &mut conf("1.1.0", json!({})).as_slice(), &full));
    assert_eq!(got["code"], 50);
    assert!(got["details"].as_str().unwrap_or_default().contains("pool6"), "{got}");
    for fake in [Fake::down(), Fake::refuse(ErrorCode::PoolNotFound), Fake::ok(Reply::default())] {
        let got = stdout_json(&call(&empty_env("STATUS"), &mut conf("1.1.0", json!({})).as_slice(), &fake));
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
