//! `cargo bench --bench cni`: nv-ipam + ipam-node against Debian's host-local, in the same run,
//! through the real exec path a runtime uses (fork+exec of the IPAM plugin with the CNI
//! environment and the network config on stdin; IPAM only, `CNI_NETNS` names a path that does
//! not exist).
//!
//! Measures: ADD/DEL p50/p99 over 1,000 sequential calls; the span (release → last exit) of 64
//! and 256 concurrent ADDs released by a barrier (duplicates counted); ADD p50 with 10,000
//! live allocations against an empty store; ipam-node's RSS; binary sizes. Prints a table with
//! the ratio ours/host-local and the targets.
//!
//! Everything lives in one temp dir (store, socket, host-local `dataDir`), removed at the end;
//! the daemon is killed on any exit path. Needs `containernetworking-plugins`
//! (`/usr/lib/cni/host-local`).
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use nv_ipam::api::PoolType;
use nv_ipam::protocol::client::call;
use nv_ipam::protocol::message::{AllocateRequest, PodRef, Request, Response};

const HOST_LOCAL: &str = "/usr/lib/cni/host-local";
const SEQ_CALLS: usize = 1000;
const LIVE_BIG: usize = 10_000;
/// ADD+DEL pairs timed at a constant live count (empty, and 10k).
const PAIRS_OURS: usize = 300;
const PAIRS_HOST_LOCAL: usize = 100;
/// Repetitions of the concurrent runs; the table shows the median span.
const REPS_64: usize = 5;
const REPS_256: usize = 3;
const START_DEADLINE: Duration = Duration::from_secs(10);

const POOLS: &str = "apiVersion: nv-ipam.nvidia.com/v1alpha1
kind: IPPool
metadata:
  name: bench
  namespace: kube-system
spec:
  subnet: 10.80.0.0/16
  perNodeBlockSize: 65000
  gateway: 10.80.0.1
";

/// Removes the temp dir and kills the daemon however the bench ends.
struct Env {
    dir: PathBuf,
    daemon: Option<Child>,
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Env {
    fn socket(&self) -> PathBuf {
        self.dir.join("daemon.sock")
    }

    fn start_daemon(&mut self) {
        let _ = fs::remove_file(self.socket());
        fs::write(self.dir.join("pools.yaml"), POOLS).expect("write pools file");
        let stderr = fs::File::create(self.dir.join("ipam-node.stderr")).expect("stderr file");
        let child = Command::new(env!("CARGO_BIN_EXE_ipam-node"))
            .env_clear()
            .args(["--node-name", "bench-node", "--bind-address"])
            .arg(format!("unix://{}", self.socket().display()))
            .arg("--store-file")
            .arg(self.dir.join("state/store"))
            .arg("--pools-file")
            .arg(self.dir.join("pools.yaml"))
            // The node's nv-ipam.conf names the log and socket the config repeats: the plugin
            // honours a config's logFile/daemonSocket only where the node's are.
            .arg("--cni-skip-nv-ipam-binary-copy")
            .arg("--cni-conf-dir")
            .arg(self.dir.join("nv-ipam.d"))
            .arg("--cni-log-file")
            .arg(self.dir.join("nv-ipam-cni.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn ipam-node");
        self.daemon = Some(child);
        let end = Instant::now() + START_DEADLINE;
        let mut pause = Duration::from_millis(2);
        loop {
            if UnixStream::connect(self.socket()).is_ok() {
                return;
            }
            if let Some(Ok(Some(st))) = self.daemon.as_mut().map(|c| c.try_wait()) {
                let err = fs::read_to_string(self.dir.join("ipam-node.stderr")).unwrap_or_default();
                panic!("ipam-node exited during start ({st}): {err}");
            }
            assert!(Instant::now() < end, "ipam-node did not accept connections within {START_DEADLINE:?}");
            thread::sleep(pause); // poll interval
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    fn daemon_rss_kib(&self) -> u64 {
        let pid = self.daemon.as_ref().expect("daemon running").id();
        let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }
}

/// One IPAM plugin under test: binary and the exact stdin bytes a main plugin would forward.
struct Plugin {
    name: &'static str,
    binary: PathBuf,
    config: Vec<u8>,
}

impl Plugin {
    fn ours(env: &Env) -> Plugin {
        let config = serde_json::json!({
            "cniVersion": "1.0.0", "name": "bench-net", "type": "bridge",
            "ipam": {
                "type": "nv-ipam", "poolName": "bench",
                "daemonSocket": format!("unix://{}", env.socket().display()),
                "confDir": env.dir.join("nv-ipam.d").display().to_string(),
                "logFile": env.dir.join("nv-ipam-cni.log").display().to_string(),
                "logLevel": "info",
            }
        });
        Plugin {
            name: "nv-ipam",
            binary: PathBuf::from(env!("CARGO_BIN_EXE_nv-ipam")),
            config: config.to_string().into_bytes(),
        }
    }

    fn host_local(data_dir: &Path) -> Plugin {
        let config = serde_json::json!({
            "cniVersion": "1.0.0", "name": "bench-hl", "type": "bridge",
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": "10.81.0.0/16", "gateway": "10.81.0.1"}]],
                "dataDir": data_dir.display().to_string(),
            }
        });
        Plugin {
            name: "host-local",
            binary: PathBuf::from(HOST_LOCAL),
            config: config.to_string().into_bytes(),
        }
    }

    fn command(&self, cmd: &str, container: &str) -> Command {
        let mut c = Command::new(&self.binary);
        c.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", container)
            .env("CNI_NETNS", format!("/var/run/netns/bench-absent-{container}"))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/usr/lib/cni")
            .env(
                "CNI_ARGS",
                format!(
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME={container};K8S_POD_INFRA_CONTAINER_ID={container};K8S_POD_UID=u-{container}"
                ),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Runs one call; returns (elapsed, ADD's first address). Panics on failure: a benchmark
    /// of failing calls measures nothing.
    fn run(&self, cmd: &str, container: &str) -> (Duration, Option<String>) {
        let mut c = self.command(cmd, container);
        let t0 = Instant::now();
        let mut child = c.spawn().unwrap_or_else(|e| panic!("cannot run {}: {e}", self.binary.display()));
        {
            let mut w = child.stdin.take().expect("stdin piped");
            let _ = w.write_all(&self.config);
        }
        let out = child.wait_with_output().expect("wait for the plugin");
        let dt = t0.elapsed();
        assert!(
            out.status.success(),
            "{} {cmd} {container} failed ({}): {}{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let ip = if cmd == "ADD" {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ADD result is JSON");
            Some(v["ips"][0]["address"].as_str().expect("ips[0].address").to_string())
        } else {
            None
        };
        (dt, ip)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile in ms.
fn pct(samples: &[Duration], p: f64) -> f64 {
    let mut v = samples.to_vec();
    v.sort();
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    ms(v[rank.min(v.len()) - 1])
}

struct Seq {
    add: Vec<Duration>,
    del: Vec<Duration>,
}

fn sequential(p: &Plugin, prefix: &str, n: usize) -> Seq {
    let mut add = Vec::with_capacity(n);
    let mut ips = HashSet::new();
    for i in 0..n {
        let (dt, ip) = p.run("ADD", &format!("{prefix}{i}"));
        add.push(dt);
        assert!(ips.insert(ip), "{}: duplicate address in sequential ADDs", p.name);
    }
    let mut del = Vec::with_capacity(n);
    for i in 0..n {
        del.push(p.run("DEL", &format!("{prefix}{i}")).0);
    }
    Seq { add, del }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The fork+exec floor: `n` `/bin/true` processes released together; span ms.
fn concurrent_raw(p: &Arc<Plugin>, prefix: &str, n: usize) -> f64 {
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (p, barrier) = (p.clone(), barrier.clone());
            let container = format!("{prefix}{i}");
            thread::spawn(move || {
                let mut c = p.command("VERSION", &container);
                barrier.wait();
                let start = Instant::now();
                let out = c.stdin(Stdio::null()).output().expect("run /bin/true");
                assert!(out.status.success(), "/bin/true failed");
                (start, Instant::now())
            })
        })
        .collect();
    let r: Vec<_> = handles.into_iter().map(|h| h.join().expect("worker")).collect();
    ms(r.iter().map(|x| x.1).max().expect("n > 0") - r.iter().map(|x| x.0).min().expect("n > 0"))
}

/// `n` ADDs released together; returns (span ms, duplicates). DELs them afterwards (untimed).
fn concurrent(p: &Arc<Plugin>, prefix: &str, n: usize) -> (f64, usize) {
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (p, barrier) = (p.clone(), barrier.clone());
            let container = format!("{prefix}{i}");
            thread::spawn(move || {
                let mut c = p.command("ADD", &container);
                barrier.wait();
                let start = Instant::now();
                let mut child = c.spawn().expect("spawn plugin");
                {
                    let mut w = child.stdin.take().expect("stdin piped");
                    let _ = w.write_all(&p.config);
                }
                let out = child.wait_with_output().expect("wait plugin");
                let end = Instant::now();
                assert!(
                    out.status.success(),
                    "{} concurrent ADD failed: {}",
                    p.name,
                    String::from_utf8_lossy(&out.stdout)
                );
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ADD result JSON");
                (start, end, v["ips"][0]["address"].as_str().expect("address").to_string())
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().expect("worker")).collect();
    let release = results.iter().map(|r| r.0).min().expect("n > 0");
    let last = results.iter().map(|r| r.1).max().expect("n > 0");
    let distinct: HashSet<&String> = results.iter().map(|r| &r.2).collect();
    for i in 0..n {
        p.run("DEL", &format!("{prefix}{i}"));
    }
    (ms(last - release), n - distinct.len())
}

/// ADD p50 over `pairs` ADD+DEL pairs (only ADD timed), so the live count stays constant.
fn add_p50_at_constant_live(p: &Plugin, prefix: &str, pairs: usize) -> f64 {
    let mut add = Vec::with_capacity(pairs);
    for i in 0..pairs {
        let c = format!("{prefix}{i}");
        add.push(p.run("ADD", &c).0);
        p.run("DEL", &c);
    }
    pct(&add, 50.0)
}

/// 10k reservations through the protocol client (what 10k plugin execs would leave behind).
fn fill_ours(env: &Env, n: usize) {
    let socket = env.socket();
    let workers = 8;
    thread::scope(|s| {
        for w in 0..workers {
            let socket = socket.clone();
            s.spawn(move || {
                for i in (w..n).step_by(workers) {
                    let req = Request::Allocate(AllocateRequest {
                        network: "bench-net".into(),
                        container_id: format!("fill{i}"),
                        ifname: "eth0".into(),
                        pools: vec!["bench".into()],
                        pool_type: PoolType::IpPool,
                        requested_ips: vec![],
                        allocate_default_gateway: false,
                        allocate_ip_with_index: None,
                        pod: PodRef {
                            name: Some(format!("fill{i}")),
                            namespace: Some("bench".into()),
                            uid: None,
                        },
                        device_id: None,
                    });
                    match call(&socket, req, Duration::from_secs(10)) {
                        Ok(Response::Ok(_)) => {}
                        other => panic!("fill allocate {i}: {other:?}"),
                    }
                }
            });
        }
    });
}

/// host-local's documented data-dir layout: one file per address holding
/// `<containerID>\r\n<ifname>`. Writing them is what 10k ADDs would leave behind, in seconds
/// instead of the ~8 minutes that 10k host-local execs take (cost grows with live count).
fn fill_host_local(data_dir: &Path, n: usize) {
    let net = data_dir.join("bench-hl");
    fs::create_dir_all(&net).expect("host-local network dir");
    for i in 0..n {
        // 10.81.128.0 upwards: far from where the timed ADDs land (round robin from .2).
        let host = 128 * 256 + i;
        let ip = format!("10.81.{}.{}", host / 256, host % 256);
        fs::write(net.join(ip), format!("fill{i}\r\neth0")).expect("write host-local reservation");
    }
}

fn file_size(dir: &Path, name: &str) -> u64 {
    fs::metadata(dir.join(name)).map(|m| m.len()).unwrap_or(0)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

fn main() {
    // `cargo test --all-targets` also runs this binary, in the test profile and without
    // `--bench`; the measurement only means something from `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("benches/cni: skipped outside `cargo bench --bench cni` (it measures release builds)");
        return;
    }
    assert!(
        Path::new(HOST_LOCAL).exists(),
        "{HOST_LOCAL} is missing: install Debian's CNI plugins first (apt-get install -y containernetworking-plugins)"
    );
    let ours_bin = PathBuf::from(env!("CARGO_BIN_EXE_nv-ipam"));
    let bin_dir = ours_bin.parent().expect("binary dir").to_path_buf();
    assert!(
        bin_dir.ends_with("release"),
        "nv-ipam is not a release-profile build ({}); run `cargo bench --bench cni`",
        ours_bin.display()
    );
    let dir = std::env::temp_dir().join(format!("nv-ipam-bench-{}", std::process::id()));
    fs::create_dir_all(dir.join("state")).expect("temp dir");
    let mut env = Env { dir, daemon: None };
    env.start_daemon();
    // Idle RSS: before any request, after the socket is up.
    let rss_idle = env.daemon_rss_kib();

    let hl_dir = env.dir.join("host-local");
    let ours = Arc::new(Plugin::ours(&env));
    let hl = Arc::new(Plugin::host_local(&hl_dir));
    eprintln!("binaries: {} and {HOST_LOCAL}", ours.binary.display());

    // Warm-up (page cache, first store write), not measured.
    for p in [&ours, &hl] {
        sequential(p, "warm", 20);
    }

    eprintln!("sequential 1000 ADD + 1000 DEL ...");
    let seq_ours = sequential(&ours, "seq", SEQ_CALLS);
    let seq_hl = sequential(&hl, "seq", SEQ_CALLS);

    eprintln!("concurrent 64 x{REPS_64} / 256 x{REPS_256} (alternating) ...");
    let mut spans: [Vec<f64>; 4] = Default::default();
    let mut dups = [0usize; 4];
    for r in 0..REPS_64.max(REPS_256) {
        let mut runs: Vec<(usize, &Arc<Plugin>, usize)> = Vec::new();
        if r < REPS_64 {
            runs.extend([(0, &ours, 64), (1, &hl, 64)]);
        }
        if r < REPS_256 {
            runs.extend([(2, &ours, 256), (3, &hl, 256)]);
        }
        for (slot, p, n) in runs {
            let (span, d) = concurrent(p, &format!("c{n}r{r}-"), n);
            spans[slot].push(span);
            dups[slot] += d;
        }
    }
    let (c64_ours, c64_hl, c256_ours, c256_hl) =
        (median(&spans[0]), median(&spans[1]), median(&spans[2]), median(&spans[3]));
    let [d64_ours, d64_hl, d256_ours, d256_hl] = dups;
    let floor =
        Arc::new(Plugin { name: "/bin/true", binary: PathBuf::from("/bin/true"), config: Vec::new() });
    let floor_seq: Vec<Duration> = (0..200).map(|i| floor.run("VERSION", &format!("t{i}")).0).collect();
    let floor64: Vec<f64> = (0..REPS_64).map(|r| concurrent_raw(&floor, &format!("t{r}-"), 64)).collect();

    eprintln!("empty vs 10k live ...");
    let empty_ours = add_p50_at_constant_live(&ours, "e", PAIRS_OURS);
    let empty_hl = add_p50_at_constant_live(&hl, "e", PAIRS_HOST_LOCAL);
    let t = Instant::now();
    fill_ours(&env, LIVE_BIG);
    let fill_secs = t.elapsed().as_secs_f64();
    fill_host_local(&hl_dir, LIVE_BIG);
    let big_ours = add_p50_at_constant_live(&ours, "k", PAIRS_OURS);
    let rss_10k = env.daemon_rss_kib();
    let big_hl = add_p50_at_constant_live(&hl, "k", PAIRS_HOST_LOCAL);

    let size_node = file_size(&bin_dir, "ipam-node");
    let size_plugin = file_size(&bin_dir, "nv-ipam");
    let size_ctrl = file_size(&bin_dir, "ipam-controller");

    let mut o = String::new();
    let row = |o: &mut String, what: &str, a: f64, b: f64, target: Option<f64>| {
        let r = a / b;
        let (t, v) = match target {
            Some(t) => (format!("≤ {t}×"), verdict(r <= t)),
            None => (String::new(), ""),
        };
        let _ = writeln!(o, "| {what} | {a:.2} | {b:.2} | {r:.2}× | {t} | {v} |");
    };
    let _ = writeln!(o, "| measure | nv-ipam + ipam-node | host-local | ratio ours/host-local | target | |");
    let _ = writeln!(o, "|---|---|---|---|---|---|");
    row(&mut o, "ADD p50 ms (1000 sequential)", pct(&seq_ours.add, 50.0), pct(&seq_hl.add, 50.0), Some(0.5));
    row(&mut o, "ADD p99 ms (1000 sequential)", pct(&seq_ours.add, 99.0), pct(&seq_hl.add, 99.0), Some(0.5));
    row(&mut o, "DEL p50 ms (1000 sequential)", pct(&seq_ours.del, 50.0), pct(&seq_hl.del, 50.0), None);
    row(&mut o, "DEL p99 ms (1000 sequential)", pct(&seq_ours.del, 99.0), pct(&seq_hl.del, 99.0), None);
    row(&mut o, "64 concurrent ADDs, span ms", c64_ours, c64_hl, Some(0.3));
    row(&mut o, "256 concurrent ADDs, span ms", c256_ours, c256_hl, Some(0.3));
    let _ = writeln!(
        o,
        "| fork+exec floor (/bin/true): sequential p50 ms; 64 concurrent span ms | {:.2}; {:.2} | | | | |",
        pct(&floor_seq, 50.0),
        median(&floor64)
    );
    let _ = writeln!(
        o,
        "| duplicates in 64 / 256 concurrent | {d64_ours} / {d256_ours} | {d64_hl} / {d256_hl} | | 0 | {} |",
        verdict(d64_ours + d256_ours + d64_hl + d256_hl == 0)
    );
    row(&mut o, "ADD p50 ms, empty store", empty_ours, empty_hl, None);
    row(&mut o, "ADD p50 ms, 10,000 live", big_ours, big_hl, None);
    let (g_ours, g_hl) = (big_ours / empty_ours, big_hl / empty_hl);
    let _ = writeln!(
        o,
        "| ADD p50 10k / empty | {g_ours:.2} | {g_hl:.2} | | ours ≤ 1.3 | {} |",
        verdict(g_ours <= 1.3)
    );
    let mib = |k: u64| k as f64 / 1024.0;
    let _ = writeln!(
        o,
        "| ipam-node VmRSS idle | {:.1} MiB | | | < 10 MB | {} |",
        mib(rss_idle),
        verdict(rss_idle * 1024 < 10_000_000)
    );
    let _ = writeln!(o, "| ipam-node VmRSS, 10,000 live | {:.1} MiB | | | | |", mib(rss_10k));
    let kb = |b: u64| b as f64 / 1024.0;
    let _ = writeln!(o, "| binary ipam-node | {:.0} KiB | | | | |", kb(size_node));
    let _ = writeln!(
        o,
        "| binary nv-ipam | {:.0} KiB | | | < 2 MB | {} |",
        kb(size_plugin),
        verdict(size_plugin < 2_000_000)
    );
    let _ = writeln!(o, "| binary ipam-controller | {:.0} KiB | | | | |", kb(size_ctrl));
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "Notes: percentiles are nearest-rank. 10k/empty: ADD+DEL pairs at a constant live count, ADD timed \
         ({PAIRS_OURS} pairs ours, {PAIRS_HOST_LOCAL} host-local). Our 10k reservations were made through the \
         protocol client ({fill_secs:.1} s); host-local's were written as its documented data-dir files \
         (`<containerID>\\r\\n<ifname>` per address), since 10k host-local execs take minutes."
    );
    let list = |v: &[f64]| v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", ");
    let _ = writeln!(
        o,
        "Concurrent spans are the median of {REPS_64} (64-way) and {REPS_256} (256-way) runs, alternating ours and \
         host-local; all runs, ms: 64 ours [{}], host-local [{}]; 256 ours [{}], host-local [{}]. \
         Duplicates are summed over all runs.",
        list(&spans[0]),
        list(&spans[1]),
        list(&spans[2]),
        list(&spans[3])
    );
    let _ = writeln!(o, "Binaries: {} (release profile), {HOST_LOCAL}.", bin_dir.display());
    println!("{o}");

    if let Some(mut c) = env.daemon.take() {
        // Graceful stop, bounded: SIGTERM, then wait up to the deadline, then SIGKILL.
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        let end = Instant::now() + START_DEADLINE;
        while matches!(c.try_wait(), Ok(None)) && Instant::now() < end {
            thread::sleep(Duration::from_millis(10)); // poll interval
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}
