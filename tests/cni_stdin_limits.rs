//! The limits on the network config a tenant writes, tried on the real `nv-ipam` binary the way
//! an attacker would: 100,000-deep nesting, stdin over `cni::MAX_STDIN_BYTES`, and stdin just
//! under it made of many tiny objects, deep-ish arrays or escaped strings in members the plugin
//! never reads (and in `prevResult` and `args`, which it does read).
//!
//! Refusals are asserted on the CNI error (JSON on stdout, code, the message naming the limit).
//! Memory is asserted as a bound on peak RSS (`VmHWM` from /proc/PID/status) at the moment the
//! plugin has decoded its config and sent its request to a stand-in daemon, compared with the
//! same call on a small config: growth at most [`MEMORY_FACTOR`] times the input, which the
//! old `Value` tree exceeded many times over (75 MB for 1 MiB of 30-deep arrays). The figures
//! are printed (`cargo test --test cni_stdin_limits -- --nocapture`); no test asserts on time.
//!
//! Must not: depend on a running ipam-node, or touch host paths (confDir, log and socket are
//! in a temp dir of the test's own).

mod common;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use nv_ipam::cni::MAX_STDIN_BYTES;
use nv_ipam::prescan::MAX_DEPTH;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_nv-ipam");
/// Peak RSS growth allowed per input byte (measured: under 3; the `Value` tree: 14 to 70).
const MEMORY_FACTOR: u64 = 8;

const ADD: [(&str, &str); 5] = [
    ("CNI_COMMAND", "ADD"),
    ("CNI_CONTAINERID", "c1"),
    ("CNI_NETNS", "/run/netns/nv-ipam-test-nonexistent"),
    ("CNI_IFNAME", "eth0"),
    ("CNI_PATH", "/opt/cni/bin"),
];

/// What the plugin printed and how it exited.
struct Run {
    status: i32,
    json: Value,
    /// Peak RSS in KiB when the stand-in daemon had the request, if it got one.
    peak_kib: Option<u64>,
}

/// A temp dir with `conf.d/nv-ipam.conf` naming the dir's log and socket, as ipam-node writes it.
struct PluginDir {
    dir: common::Sandbox,
}

impl PluginDir {
    fn new(label: &str) -> PluginDir {
        use std::os::unix::fs::PermissionsExt;
        let s = PluginDir { dir: common::Sandbox::labelled(label) };
        let conf_dir = s.dir.root().join("conf.d");
        std::fs::create_dir(&conf_dir).expect("mkdir conf.d");
        // root-owned 0755: the plugin honours a config's confDir only then
        for d in [s.dir.root(), conf_dir.as_path()] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let conf = json!({"logFile": s.path("nv-ipam-cni.log"), "daemonSocket": s.path("daemon.sock")});
        let file = conf_dir.join("nv-ipam.conf");
        std::fs::write(&file, conf.to_string()).expect("write nv-ipam.conf");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        s
    }

    fn path(&self, name: &str) -> String {
        self.dir.root().join(name).display().to_string()
    }

    /// A valid ADD config whose top level also holds `extra` verbatim (`,"x":[...]`).
    fn config(&self, extra: &str) -> Vec<u8> {
        let ipam = json!({"type": "nv-ipam", "confDir": self.path("conf.d"), "daemonCallTimeoutSeconds": 30});
        format!(r#"{{"cniVersion":"1.0.0","name":"net1","type":"bridge","ipam":{ipam}{extra}}}"#).into_bytes()
    }

    /// Runs ADD with `stdin`. With `daemon`, a stand-in listens on the socket: it reads one
    /// request frame, notes the plugin's peak RSS, and closes (the plugin then answers 11).
    fn run(&self, stdin: &[u8], daemon: bool) -> Run {
        let socket = self.path("daemon.sock");
        let _ = std::fs::remove_file(&socket);
        let listener = daemon.then(|| UnixListener::bind(&socket).expect("bind the stand-in daemon"));
        let mut child = Command::new(BIN)
            .env_clear()
            .envs(ADD)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nv-ipam");
        let pid = child.id();
        let mut pipe = child.stdin.take().expect("stdin piped");
        let input = stdin.to_vec();
        // A writer thread: the plugin stops reading at the limit and exits.
        let writer = std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
        let (tx, rx) = mpsc::channel();
        let daemon = listener.map(|l| {
            std::thread::spawn(move || {
                // The plugin's call deadline (30 s) bounds the wait; it exits if it never calls.
                let Ok((mut conn, _)) = l.accept() else { return };
                let mut head = [0u8; 4];
                if conn.read_exact(&mut head).is_err() {
                    return;
                }
                let mut body = vec![0u8; u32::from_be_bytes(head) as usize];
                if conn.read_exact(&mut body).is_ok() {
                    // The plugin waits for the answer: its decoding is over, its peak is in.
                    let _ = tx.send((vm_hwm_kib(pid), body));
                }
            })
        });
        let out = child.wait_with_output().expect("wait for nv-ipam");
        let _ = writer.join();
        let peak_kib = match daemon {
            Some(d) => {
                // A plugin that never called leaves the stand-in in accept: release it.
                let _ = UnixStream::connect(&socket);
                d.join().expect("stand-in daemon");
                rx.try_recv().ok().map(|(peak, body)| {
                    let request: Value = serde_json::from_slice(&body).expect("the request frame is JSON");
                    assert_eq!(request["network"], "net1", "{request}");
                    peak
                })
            }
            None => None,
        };
        let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
        let json = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {stdout:?}"));
        Run { status: out.status.code().expect("exited, not killed"), json, peak_kib }
    }
}

/// `VmHWM` (peak RSS) of a live process, in KiB.
fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// A CNI error: exit 1, `code`, and `needle` in its msg or details.
fn assert_error(r: &Run, code: u64, needle: &str) {
    assert_eq!(r.status, 1, "non-zero exit expected: {}", r.json);
    assert_eq!(r.json["code"], code, "{}", r.json);
    let text = format!("{} {}", r.json["msg"].as_str().unwrap_or_default(), r.json["details"]);
    assert!(text.contains(needle), "{needle:?} not in {}", r.json);
    assert!(r.json["cniVersion"].is_string(), "errors carry cniVersion: {}", r.json);
}

/// `count` copies of `item` joined by commas.
fn repeat(item: &str, count: usize) -> String {
    let mut s = String::with_capacity((item.len() + 1) * count);
    for i in 0..count {
        if i > 0 {
            s.push(',');
        }
        s.push_str(item);
    }
    s
}

/// `,"<key>":[item,item,…]` (or `{item,…}` when `item` is a member) with as many items as
/// keep the config within `budget` bytes.
fn filler(s: &PluginDir, key: &str, item: &str, budget: usize) -> Vec<u8> {
    let (open, close) = if item.starts_with("\"k\":") { ("{", "}") } else { ("[", "]") };
    let base = s.config(&format!(r#","{key}":{open}{close}"#)).len();
    // count items take count × (len + 1) - 1 bytes (commas between them)
    let count = (budget - base + 1) / (item.len() + 1);
    let stdin = s.config(&format!(r#","{key}":{open}{}{close}"#, repeat(item, count)));
    assert!(stdin.len() <= budget && budget - stdin.len() <= item.len(), "{} of {budget}", stdin.len());
    stdin
}

#[test]
fn a_100k_deep_member_is_refused_with_code_6_naming_the_limit() {
    let s = PluginDir::new("stdin-deep");
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for (where_, extra) in [
        ("an unknown member", format!(r#","x":{deep}"#)),
        ("prevResult", format!(r#","prevResult":{{"ips":{deep}}}"#)),
        ("unterminated", format!(r#","x":{}"#, "{\"a\":".repeat(100_000))),
    ] {
        let r = s.run(&s.config(&extra), false);
        assert_error(&r, 6, "nested deeper than the limit of 64 levels");
        assert_error(&r, 6, "flatten it");
        eprintln!("{where_}: {}", r.json);
    }
}

#[test]
fn nesting_at_the_depth_limit_is_read_and_one_more_level_is_refused() {
    let s = PluginDir::new("stdin-depth-limit");
    // The top-level object is level 1, so MAX_DEPTH - 1 arrays inside it reach the limit.
    let nested = |n: usize| format!(r#","x":{}0{}"#, "[".repeat(n), "]".repeat(n));
    let r = s.run(&s.config(&nested(MAX_DEPTH - 1)), true);
    assert_error(&r, 11, "daemon");
    assert!(r.peak_kib.is_some(), "at the limit the config is read and the daemon called: {}", r.json);
    let r = s.run(&s.config(&nested(MAX_DEPTH)), true);
    assert_error(&r, 6, &format!("nested deeper than the limit of {MAX_DEPTH} levels"));
    assert!(r.peak_kib.is_none(), "refused before any daemon call");
}

#[test]
fn stdin_over_the_limit_is_refused_with_code_5_and_at_the_limit_is_read() {
    let s = PluginDir::new("stdin-size");
    let at_limit = filler(&s, "x", "0", MAX_STDIN_BYTES);
    let mut at_limit = at_limit;
    // Pad with whitespace to exactly the limit: still one valid config.
    at_limit.resize(MAX_STDIN_BYTES, b' ');
    let r = s.run(&at_limit, true);
    assert_error(&r, 11, "daemon");
    assert!(r.peak_kib.is_some(), "read whole and the daemon called: {}", r.json);

    let mut over = at_limit;
    over.push(b' ');
    let r = s.run(&over, true);
    assert_error(&r, 5, &MAX_STDIN_BYTES.to_string());
    assert!(r.peak_kib.is_none(), "refused before any daemon call");
    // Far over (a stream that never ends before the limit): refused the same way.
    let r = s.run(&vec![b'['; 8 * MAX_STDIN_BYTES], false);
    assert_error(&r, 5, &MAX_STDIN_BYTES.to_string());
}

#[test]
fn many_tiny_objects_just_under_the_limit_cost_a_small_multiple_of_the_input() {
    let s = PluginDir::new("stdin-memory");
    let small = s.config("");
    let base = s.run(&small, true);
    assert_error(&base, 11, "daemon");
    let base_kib = base.peak_kib.expect("the small config reaches the daemon");
    eprintln!("small config ({} bytes): peak RSS {base_kib} KiB", small.len());
    let deep30 = format!("{}{}", "[".repeat(30), "]".repeat(30));
    let cases = [
        ("x", "{}"),
        ("x", "[]"),
        ("x", r#"{"a":0}"#),
        ("x", &deep30),
        ("x", r#""\u00e9\n""#),
        // members the plugin reads, with the bulk in what it skips or walks
        ("runtimeConfig", r#""k":{}"#),
        ("args", r#""k":[]"#),
        ("prevResult", r#""k":{}"#),
    ];
    for (key, item) in cases {
        let stdin = filler(&s, key, item, MAX_STDIN_BYTES);
        let r = s.run(&stdin, true);
        let name = format!("{key}: {:.12}, … ({} bytes)", item, stdin.len());
        // Accepted (read whole, the daemon called) or refused cleanly as a config error.
        let Some(peak_kib) = r.peak_kib else {
            assert!(r.json["code"] == 7 || r.json["code"] == 6, "{name}: {}", r.json);
            eprintln!("{name}: refused {}", r.json);
            continue;
        };
        assert_error(&r, 11, "daemon");
        let growth = peak_kib.saturating_sub(base_kib) * 1024;
        eprintln!("{name}: peak RSS {peak_kib} KiB, growth {} KiB", growth / 1024);
        assert!(
            growth <= MEMORY_FACTOR * stdin.len() as u64,
            "{name}: peak RSS grew by {growth} bytes for {} bytes of stdin",
            stdin.len()
        );
    }
}
