//! Decoding limits tried the way an attacker would: hostile 4 MiB frames over a real
//! `ipam-node`'s socket, 100,000-deep pools files, `plan` input and kubeconfigs given to the
//! real binaries, and hostile 4 MiB AdmissionReviews decoded in a process of their own.
//!
//! Memory is asserted as a bound on peak RSS growth (`VmHWM` from /proc/PID/status, after the
//! peak was reset): 8 times the input, which a regression to `Value` trees exceeds many times
//! over (before: up to 72 times for frames, 33 for reviews). Deep input is asserted on the
//! error and the exit, with deadlines generous enough for a slow machine; before the depth
//! pre-scan each of these took 44 to 86 s of CPU (`cargo bench --bench decode` prints the
//! figures).

mod common;
#[path = "common/hostile.rs"]
mod hostile;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::daemon::Daemon;
use common::{Sandbox, wait_until};
use serde_json::Value;

const POOLS: &str = "kind: IPPool\nmetadata: {name: pool1}\nspec: {subnet: 10.0.0.0/16, perNodeBlockSize: 100, gateway: 10.0.0.1}\n";
/// Peak RSS growth allowed per input byte.
const MEMORY_FACTOR: u64 = 8;
/// A refusal of deep input takes milliseconds; before the pre-scan it took 44-86 s of CPU.
const EXIT_DEADLINE: Duration = Duration::from_secs(30);
const ADD: &[u8] = br#"{"version":1,"op":"allocate","network":"n","containerId":"c-ok","ifname":"eth0","pools":["pool1"],"poolType":"ippool","pod":{}}"#;

/// One exchange on a fresh connection: the answer frame, `None` if the daemon closed first.
fn call(socket: &Path, body: &[u8]) -> Option<Value> {
    let mut s = UnixStream::connect(socket).expect("connect to the daemon");
    s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    s.write_all(&(body.len() as u32).to_be_bytes()).expect("write header");
    s.write_all(body).expect("write body");
    let mut head = [0u8; 4];
    s.read_exact(&mut head).ok()?;
    let mut reply = vec![0u8; u32::from_be_bytes(head) as usize];
    s.read_exact(&mut reply).expect("read the answer");
    Some(serde_json::from_slice(&reply).expect("the answer is JSON"))
}

fn code(answer: &Value) -> &str {
    answer["error"]["code"].as_str().unwrap_or("ok")
}

#[test]
fn hostile_frames_cost_the_daemon_a_small_multiple_of_their_size() {
    let d = Daemon::start(POOLS, "n1");
    let pid = d.pid().expect("running").to_string();
    for (name, body) in hostile::frames() {
        hostile::reset_peak(&pid);
        let (_, base) = hostile::memory_kib(&pid);
        let answer = call(&d.socket, &body).unwrap_or_else(|| panic!("{name}: no answer frame"));
        let (peak, _) = hostile::memory_kib(&pid);
        let growth = (peak.saturating_sub(base)) * 1024;
        eprintln!(
            "{name}: {} bytes, answer {}, peak RSS growth {} KiB",
            body.len(),
            code(&answer),
            growth / 1024
        );
        assert!(
            growth <= MEMORY_FACTOR * hostile::MAX_INPUT as u64,
            "{name}: peak RSS grew by {growth} bytes for a {}-byte frame",
            body.len()
        );
        if name.starts_with("100,000") {
            assert_eq!(code(&answer), "bad_frame", "{name}");
            let msg = answer["error"]["message"].as_str().expect("message");
            assert!(msg.contains("nested deeper than the limit of 64 levels"), "{msg}");
        }
        if name.starts_with("pools") {
            assert_eq!(code(&answer), "bad_frame", "{name}: more than 16 pools");
        }
        // and the daemon keeps serving ADDs
        let add = call(&d.socket, ADD).expect("an answer to ADD");
        assert_eq!(code(&add), "ok", "ADD after {name}: {add}");
    }
}

#[test]
fn a_deep_pools_file_is_refused_at_start_naming_the_limit() {
    for deep in [
        format!("kind: IPPool\nmetadata: {{name: a}}\nspec: {{x: {}}}\n", hostile::nested(100_000)),
        format!("{{\"kind\":\"IPPool\",\"x\":{}}}", hostile::nested(100_000)),
        format!("kind: IPPool\nx:\n{}a\n", "- ".repeat(100_000)),
    ] {
        let d = Daemon::prepare(&deep, "n1", None);
        let (status, stderr) = d.run_to_exit();
        assert!(!status.success(), "ipam-node started with a 100,000-deep pools file");
        assert!(stderr.contains("nested deeper than the limit of 64 levels"), "{stderr}");
    }
}

#[test]
fn a_deep_pools_file_edit_keeps_the_previous_pools() {
    let d = Daemon::start(POOLS, "n1");
    d.write_pools(&format!("a: {}1{}\n", "{a: ".repeat(100_000), "}".repeat(100_000)));
    wait_until(EXIT_DEADLINE, "the daemon logs the refused edit", || {
        d.stderr().contains("nested deeper than the limit of 64 levels")
    });
    let add = call(&d.socket, ADD).expect("an answer to ADD");
    assert_eq!(code(&add), "ok", "ADD from the previous pools: {add}");
}

/// Runs a command that must exit within [`EXIT_DEADLINE`]; its exit code and stderr.
fn run_to_exit(cmd: &mut Command) -> (Option<i32>, String) {
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn");
    let out = common::wait::output_within(child, EXIT_DEADLINE, &format!("{cmd:?} exits"));
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn plan_refuses_deep_input_naming_the_limit() {
    let s = Sandbox::new();
    let write = |name: &str, text: &str| {
        let p = s.path(name);
        std::fs::write(&p, text).expect("write");
        p
    };
    let pools = write("pools.yaml", POOLS);
    let nodes = write("nodes.yaml", "kind: Node\nmetadata: {name: n1}\n");
    let deep = [
        write(
            "flow.yaml",
            &format!("kind: IPPool\nmetadata: {{name: a}}\nspec: {{x: {}}}\n", hostile::nested(100_000)),
        ),
        write("map.yaml", &format!("a: {}1{}\n", "{a: ".repeat(100_000), "}".repeat(100_000))),
        write("deep.json", &format!("{{\"kind\":\"Node\",\"x\":{}}}", hostile::nested(100_000))),
    ];
    let plan = |p: &Path, n: &Path| {
        run_to_exit(
            Command::new(env!("CARGO_BIN_EXE_ipam-controller"))
                .arg("plan")
                .arg("--pools")
                .arg(p)
                .arg("--nodes")
                .arg(n),
        )
    };
    for d in &deep {
        for (flag, (code, err)) in [("--pools", plan(d, &nodes)), ("--nodes", plan(&pools, d))] {
            assert_eq!(code, Some(2), "{flag} {}: {err}", d.display());
            assert!(
                err.contains(&format!("{flag} {}: nested deeper than the limit of 64 levels", d.display())),
                "{err}"
            );
        }
    }
    // at the limit: a pool is level 1, an unknown field may nest 63 more
    let ok = write(
        "ok.json",
        &format!("{{\"kind\":\"Node\",\"metadata\":{{\"name\":\"n2\"}},\"x\":{}}}", hostile::nested(63)),
    );
    let (code, err) = plan(&pools, &ok);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_deep_kubeconfig_is_refused_naming_the_limit() {
    let s = Sandbox::new();
    let kc = s.path("kubeconfig");
    std::fs::write(&kc, format!("apiVersion: v1\nkind: Config\nclusters: {}\n", hostile::nested(100_000)))
        .expect("write");
    let (code, err) =
        run_to_exit(Command::new(env!("CARGO_BIN_EXE_ipam-controller")).arg("--kubeconfig").arg(&kc).args([
            "--metrics-bind-address",
            "0",
            "--health-probe-bind-address",
            "0",
        ]));
    assert!(code.is_some_and(|c| c != 0), "{err}");
    assert!(err.contains("not a kubeconfig: nested deeper than the limit of 64 levels"), "{err}");
    let d = Daemon::prepare_cluster("n1", kc, "kube-system", &[]);
    let (status, err) = d.run_to_exit();
    assert!(!status.success());
    assert!(err.contains("not a kubeconfig: nested deeper than the limit of 64 levels"), "{err}");
}

/// The child half of the review test: decodes one hostile review (`NV_IPAM_REVIEW_CASE`) as the
/// webhook does and prints its peak RSS growth. Does nothing in a normal run.
#[test]
fn review_child() {
    let Ok(n) = std::env::var("NV_IPAM_REVIEW_CASE") else { return };
    use nv_ipam::api::PoolType;
    use nv_ipam::controller::admission::{decide, parse_review, response_body};
    let (_, body) = hostile::reviews().swap_remove(n.parse().expect("case number"));
    hostile::reset_peak("self");
    let (_, base) = hostile::memory_kib("self");
    let verdict = match parse_review(PoolType::IpPool, &body) {
        Ok(req) => {
            let v = decide(&req, Some(&[]));
            let out = response_body(&req.uid, &v);
            format!("{}/{}B", v.code, out.len())
        }
        Err(e) => format!("400:{e}").replace(' ', "_"),
    };
    let (peak, _) = hostile::memory_kib("self");
    println!("\nREVIEW-CHILD {verdict} {}", peak.saturating_sub(base));
}

#[test]
fn hostile_reviews_cost_a_small_multiple_of_their_size() {
    let me = std::env::current_exe().expect("this test binary");
    for (n, (name, body)) in hostile::reviews().into_iter().enumerate() {
        assert!(body.len() <= hostile::MAX_INPUT, "{name}: the webhook reads at most 4 MiB");
        let out = Command::new(&me)
            .args(["review_child", "--exact", "--nocapture", "--test-threads=1"])
            .env("NV_IPAM_REVIEW_CASE", n.to_string())
            .output()
            .expect("run the child");
        let text = String::from_utf8_lossy(&out.stdout);
        let line =
            text.lines().find_map(|l| l.split_once("REVIEW-CHILD ").map(|(_, r)| r)).unwrap_or_else(|| {
                panic!(
                    "{name}: the child printed no result:\n{text}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        let (verdict, kib) = line.rsplit_once(' ').expect("verdict and KiB");
        let growth = kib.parse::<u64>().expect("KiB") * 1024;
        eprintln!("{name}: {} bytes, {verdict}, peak RSS growth {} KiB", body.len(), growth / 1024);
        assert!(
            growth <= MEMORY_FACTOR * hostile::MAX_INPUT as u64,
            "{name}: peak RSS grew by {growth} bytes for a {}-byte review",
            body.len()
        );
        if name.starts_with("100,000") {
            assert!(verdict.contains("nested_deeper_than_the_limit_of_64_levels"), "{verdict}");
        }
    }
}
