//! `cargo bench --bench decode`: what the worst inputs cost the decoders — a command, not a
//! test (`tests/decode_limits.rs` asserts the bounds; this prints the figures).
//!
//! - Frames: for each hostile 4 MiB frame of `tests/common/hostile.rs`, a fresh release
//!   `ipam-node` (standalone, one IPPool) gets it over its real socket; printed: the answer, the
//!   daemon's peak RSS growth (`VmHWM` after its peak was reset to the current RSS, from
//!   /proc/PID/status), and whether an ADD still succeeds afterwards.
//! - Reviews: this binary re-runs itself per hostile 4 MiB AdmissionReview (`--child N`) and
//!   does what the webhook does with a body (`parse_review`, `decide`, `response_body`);
//!   printed: the verdict and that process's peak RSS growth.
//! - Depth: 100,000-deep pools files, `plan` input and kubeconfig given to the release
//!   binaries; printed: exit code, wall time (each run is killed after 300 s) and the error.
//!
//! Without `--bench` (e.g. `cargo test --all-targets`) it prints one line and exits 0.
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/hostile.rs"]
mod hostile;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nv_ipam::api::PoolType;
use nv_ipam::controller::admission::{decide, parse_review, response_body};

const POOLS: &str = "kind: IPPool\nmetadata: {name: pool1}\nspec: {subnet: 10.0.0.0/16, perNodeBlockSize: 100, gateway: 10.0.0.1}\n";
const RUN_LIMIT: Duration = Duration::from_secs(300);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(args[i + 1].parse().unwrap());
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        println!("decode bench: skipped (run `cargo bench --bench decode`)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("nv-ipam-decode-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    frames(&dir);
    reviews();
    depth(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

struct Daemon {
    child: Child,
    socket: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_daemon(dir: &Path, n: usize) -> Daemon {
    let d = dir.join(format!("node{n}"));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("pools.yaml"), POOLS).unwrap();
    let socket = d.join("daemon.sock");
    let child = Command::new(env!("CARGO_BIN_EXE_ipam-node"))
        .args(["--node-name", "n1", "--cni-skip-nv-ipam-binary-copy", "--cni-skip-nv-ipam-config-creation"])
        .arg("--bind-address")
        .arg(format!("unix://{}", socket.display()))
        .arg("--store-file")
        .arg(d.join("store"))
        .arg("--pools-file")
        .arg(d.join("pools.yaml"))
        .arg("--cni-bin-dir")
        .arg(d.join("bin"))
        .arg("--cni-conf-dir")
        .arg(d.join("conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "ipam-node did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Daemon { child, socket }
}

/// Sends one frame, returns the answer's error code ("ok" for success, "closed" for none).
fn call(socket: &Path, body: &[u8]) -> String {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(RUN_LIMIT)).unwrap();
    s.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut head = [0u8; 4];
    if s.read_exact(&mut head).is_err() {
        return "closed".into();
    }
    let mut reply = vec![0u8; u32::from_be_bytes(head) as usize];
    s.read_exact(&mut reply).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&reply).unwrap();
    match v["error"]["code"].as_str() {
        Some(code) => code.to_string(),
        None => "ok".into(),
    }
}

fn frames(dir: &Path) {
    println!("\nframes (4 MiB max) to a real ipam-node: peak RSS growth of the daemon");
    println!(
        "{:<34} {:>9} {:>16} {:>9} {:>7} {:>9}",
        "frame", "bytes", "answer", "peak MiB", "x size", "ADD after"
    );
    for (n, (name, body)) in hostile::frames().into_iter().enumerate() {
        let d = start_daemon(dir, n);
        let pid = d.child.id().to_string();
        std::thread::sleep(Duration::from_millis(200));
        hostile::reset_peak(&pid);
        let (_, base) = hostile::memory_kib(&pid);
        let answer = call(&d.socket, &body);
        let (peak, _) = hostile::memory_kib(&pid);
        let add = call(
            &d.socket,
            br#"{"version":1,"op":"allocate","network":"n","containerId":"ok","ifname":"eth0","pools":["pool1"],"poolType":"ippool","pod":{}}"#,
        );
        let growth = peak.saturating_sub(base);
        println!(
            "{name:<34} {:>9} {answer:>16} {:>9.1} {:>7.1} {:>9}",
            body.len(),
            mib(growth),
            (growth * 1024) as f64 / body.len() as f64,
            add
        );
    }
}

/// One review in this process: built first, then the peak reset, then decoded as the webhook
/// does; prints `verdict growth_kib`.
fn child(n: usize) {
    let (_, body) = hostile::reviews().swap_remove(n);
    hostile::reset_peak("self");
    let (_, base) = hostile::memory_kib("self");
    let verdict = match parse_review(PoolType::IpPool, &body) {
        Ok(req) => {
            let v = decide(&req, Some(&[]));
            let out = response_body(&req.uid, &v);
            format!("{} ({}B)", if v.allowed { "allowed".to_string() } else { v.code.to_string() }, out.len())
        }
        Err(_) => "HTTP-400".into(),
    };
    let (peak, _) = hostile::memory_kib("self");
    println!("{verdict} {}", peak.saturating_sub(base));
}

fn reviews() {
    println!("\nAdmissionReviews (4 MiB max), parse_review + decide + response_body: peak RSS growth");
    println!(
        "{:<45} {:>9} {:>22} {:>9} {:>7}",
        "review", "bytes", "verdict (response)", "peak MiB", "x size"
    );
    let me = std::env::current_exe().unwrap();
    for (n, (name, body)) in hostile::reviews().into_iter().enumerate() {
        let out = Command::new(&me).args(["--child", &n.to_string()]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let (verdict, kib) = text.trim().rsplit_once(' ').unwrap_or(("crashed", "0"));
        let kib: u64 = kib.parse().unwrap_or(0);
        println!(
            "{name:<45} {:>9} {verdict:>22} {:>9.1} {:>7.1}",
            body.len(),
            mib(kib),
            (kib * 1024) as f64 / body.len() as f64
        );
    }
}

/// Runs a command to its end (killed after [`RUN_LIMIT`]): exit code, seconds, stderr's first line.
fn run(cmd: &mut Command) -> (String, f64, String) {
    let started = Instant::now();
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code().map_or("signal".to_string(), |c| c.to_string());
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break "killed".into();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    let line = err
        .lines()
        .find(|l| l.contains("nested") || l.contains("recursion") || l.contains("deep"))
        .unwrap_or("")
        .to_string();
    // the path is the bench's temp dir: keep what the error says
    let line = line.rsplit(".yaml: ").next().or_else(|| line.rsplit("kubeconfig: ").next()).unwrap_or(&line);
    (status, started.elapsed().as_secs_f64(), line.chars().take(110).collect())
}

fn depth(dir: &Path) {
    println!("\n100,000-deep input to the release binaries: exit code, wall time, error");
    let n = 100_000;
    let nodes = dir.join("nodes.yaml");
    std::fs::write(&nodes, "kind: Node\nmetadata: {name: n1}\n").unwrap();
    let files = [
        (
            "flow-seq.yaml",
            format!("kind: IPPool\nmetadata: {{name: a}}\nspec: {{x: {}}}\n", hostile::nested(n)),
        ),
        ("flow-map.yaml", format!("a: {}1{}\n", "{a: ".repeat(n), "}".repeat(n))),
        ("deep.json", format!("{{\"kind\":\"IPPool\",\"x\":{}}}", hostile::nested(n))),
        ("block.yaml", format!("kind: IPPool\nx:\n{}a\n", "- ".repeat(n))),
    ];
    let controller = env!("CARGO_BIN_EXE_ipam-controller");
    for (file, text) in &files {
        let path = dir.join(file);
        std::fs::write(&path, text).unwrap();
        let (code, secs, err) =
            run(Command::new(controller).arg("plan").arg("--pools").arg(&path).arg("--nodes").arg(&nodes));
        println!("plan --pools {file:<14} exit {code:<7} {secs:>7.2} s  {err}");
    }
    let path = dir.join("flow-seq.yaml");
    let pools = dir.join("pools.yaml");
    std::fs::write(&pools, POOLS).unwrap();
    let (code, secs, err) =
        run(Command::new(controller).arg("plan").arg("--pools").arg(&pools).arg("--nodes").arg(&path));
    println!("plan --nodes {:<14} exit {code:<7} {secs:>7.2} s  {err}", "flow-seq.yaml");
    let node_dir = dir.join("node-x");
    std::fs::create_dir_all(&node_dir).unwrap();
    let (code, secs, err) = run(Command::new(env!("CARGO_BIN_EXE_ipam-node"))
        .args(["--node-name", "n1", "--cni-skip-nv-ipam-binary-copy", "--cni-skip-nv-ipam-config-creation"])
        .arg("--bind-address")
        .arg(format!("unix://{}", node_dir.join("sock").display()))
        .arg("--store-file")
        .arg(node_dir.join("store"))
        .arg("--pools-file")
        .arg(&path)
        .arg("--cni-conf-dir")
        .arg(node_dir.join("conf")));
    println!("ipam-node --pools-file {:<14} exit {code:<7} {secs:>7.2} s  {err}", "flow-seq.yaml");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, format!("apiVersion: v1\nkind: Config\nclusters: {}\n", hostile::nested(n)))
        .unwrap();
    let (code, secs, err) = run(Command::new(controller).arg("--kubeconfig").arg(&kubeconfig).args([
        "--metrics-bind-address",
        "0",
        "--health-probe-bind-address",
        "0",
    ]));
    println!("ipam-controller --kubeconfig (flow)  exit {code:<7} {secs:>7.2} s  {err}");
}
