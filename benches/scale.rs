//! `hack/control-plane.sh --crds deploy/crds -- cargo bench --bench scale`: `ipam-controller`
//! at scale on the real kube-apiserver of `hack/control-plane.sh` — a command, not a test.
//!
//! As admin it creates a namespace, the RBAC of `deploy/` (idempotent), 10 pools (IPv4 and
//! IPv6 IPPools, IPv4 and IPv6 CIDRPools, each big enough for every node, all with a
//! nodeSelector on a label unique to this run) and 5,000 labelled Node objects (16 threads;
//! reported separately). Then it starts the release `ipam-controller` as the controller token
//! user and measures:
//!
//! - time from start until every pool's status holds one allocation per node (converge);
//! - the controller's CPU seconds (`utime + stime`, /proc/PID/stat) and peak RSS (`VmHWM`);
//! - requests on pools, nodes, events and pods, from the apiserver's `apiserver_request_total`
//!   (per verb/resource, not per user: the bench's own pool GETs are counted and subtracted;
//!   nothing else writes during the run);
//! - with one `ipam-node` (node token user) following the pools: the bytes it reads (`rchar` of
//!   /proc/PID/io, and its TCP sockets' `bytes_received` from `ss`) when one more Node joins,
//!   and the time the controller takes to allocate for that node.
//!
//! Prints a table with the targets (converge < 30 s, RSS < 30 MB). Everything it creates (the
//! namespace, the nodes, the processes, a temp dir) is removed on every exit path (Drop guards).
//! Without `--bench` (e.g. `cargo test --all-targets`) it prints one line and exits 0.
//! `NV_IPAM_SCALE_NODES` overrides the node count (for a quick try; the figures are for 5,000);
//! `NV_IPAM_SCALE_V=N` runs the controller with `-v N`; `NV_IPAM_SCALE_KEEP_LOGS=DIR` keeps its
//! and the node daemon's logs. The controller's VmRSS is sampled every 20 ms for a timeline.
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/kube.rs"]
#[allow(dead_code)]
mod kube;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use kube::{Kube, cp_dir, unique_name};
use serde_json::{Value, json};

const API: &str = "/apis/nv-ipam.nvidia.com/v1alpha1";
const LABEL: &str = "nv-ipam.bench/scale";
const DEFAULT_NODES: usize = 5_000;
const THREADS: usize = 16;
const POLL: Duration = Duration::from_millis(250);
const CONVERGE_DEADLINE: Duration = Duration::from_secs(300);
const JOIN_DEADLINE: Duration = Duration::from_secs(120);
const START_DEADLINE: Duration = Duration::from_secs(30);
const RBAC_PROPAGATION: Duration = Duration::from_secs(30);
/// The node daemon has seen a change when its `rchar` did not grow for this long.
const QUIET: Duration = Duration::from_secs(1);
const QUIET_DEADLINE: Duration = Duration::from_secs(60);
const TARGET_CONVERGE_S: f64 = 30.0;
const TARGET_RSS_MB: f64 = 30.0;
/// `sysconf(_SC_CLK_TCK)` on Linux (all architectures the project targets).
const CLK_TCK: f64 = 100.0;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "scale: skipped (run: hack/control-plane.sh --crds deploy/crds -- cargo bench --bench scale)"
        );
        return;
    }
    for var in ["KUBECONFIG", "NV_IPAM_CP_DIR"] {
        if std::env::var_os(var).is_none_or(|v| v.is_empty()) {
            eprintln!("scale: {}", kube::NOT_UNDER_CONTROL_PLANE);
            std::process::exit(2);
        }
    }
    let nodes = std::env::var("NV_IPAM_SCALE_NODES")
        .ok()
        .map(|v| v.parse::<usize>().expect("NV_IPAM_SCALE_NODES is a node count"))
        .unwrap_or(DEFAULT_NODES);
    run(nodes);
}

/// A process killed (and reaped) on drop.
struct Proc {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Panics with the log's tail if the process has exited.
    fn check_alive(&mut self) {
        if let Ok(Some(st)) = self.child.try_wait() {
            let log = fs::read_to_string(&self.log).unwrap_or_default();
            let tail: String = log
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            panic!("{} exited ({st}); log tail:\n{tail}", self.name);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deletes the run's nodes (parallel) and namespace, and removes the temp dir, on drop.
struct World {
    admin: Kube,
    ns: String,
    group: String,
    nodes: Vec<String>,
    dir: PathBuf,
}

impl Drop for World {
    fn drop(&mut self) {
        let t = Instant::now();
        delete_nodes(&self.admin, &self.nodes);
        // any node of this run that a failed create left unlisted
        let sel = format!("/api/v1/nodes?labelSelector={LABEL}%3D{}", self.group);
        let rest: Vec<String> = self.admin.try_get(&sel).ok().map(|r| names(&r.body)).unwrap_or_default();
        delete_nodes(&self.admin, &rest);
        let _ = self.admin.delete(&format!("/api/v1/namespaces/{}", self.ns));
        let _ = fs::remove_dir_all(&self.dir);
        eprintln!(
            "scale: cleaned up ({} nodes, namespace {}) in {:.1} s",
            self.nodes.len() + rest.len(),
            self.ns,
            t.elapsed().as_secs_f64()
        );
    }
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["metadata"]["name"].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// Runs `f(i)` for `0..n` on [`THREADS`] threads.
fn parallel(n: usize, f: impl Fn(usize) + Sync) {
    let next = AtomicUsize::new(0);
    thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    f(i);
                }
            });
        }
    });
}

fn delete_nodes(admin: &Kube, nodes: &[String]) {
    parallel(nodes.len(), |i| {
        let path = format!("/api/v1/nodes/{}", nodes[i]);
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| admin.delete(&path)));
    });
}

/// deploy/base/namespace.yaml and deploy/rbac/*.yaml as admin (AlreadyExists is fine); waits until
/// the controller may write pool status and the node identity may watch pools.
fn ensure_rbac(admin: &Kube) {
    kube::apply_manifests(
        admin,
        &["deploy/base/namespace.yaml", "deploy/rbac/controller.yaml", "deploy/rbac/node.yaml"],
    );
    let checks = [
        (
            "controller",
            json!({"group": "nv-ipam.nvidia.com", "resource": "cidrpools", "subresource": "status", "verb": "update"}),
        ),
        ("node", json!({"group": "nv-ipam.nvidia.com", "resource": "ippools", "verb": "watch"})),
    ];
    for (who, attrs) in checks {
        let k = Kube::from_cp_kubeconfig(who);
        wait_for(RBAC_PROPAGATION, &format!("RBAC for {who} is in effect"), || {
            kube::allowed(&k, attrs.clone())
        });
    }
}

/// Polls `cond` every [`POLL`] (at most) until it holds; panics naming `what` at the deadline.
fn wait_for(deadline: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    let mut pause = Duration::from_millis(5);
    loop {
        if cond() {
            return;
        }
        assert!(Instant::now() < end, "timed out after {deadline:?} waiting until {what}");
        thread::sleep(pause);
        pause = (pause * 2).min(POLL);
    }
}

/// The 10 pools: (plural, kind, name, spec without nodeSelector). Each has room for 16,384 or
/// more nodes.
fn pool_specs() -> Vec<(&'static str, &'static str, String, Value)> {
    let mut v = Vec::new();
    for i in 0..4 {
        v.push((
            "ippools",
            "IPPool",
            format!("ip4-{i}"),
            json!({"subnet": format!("10.{}.0.0/16", 10 + i), "perNodeBlockSize": 8,
                   "gateway": format!("10.{}.0.1", 10 + i)}),
        ));
    }
    for i in 0..2 {
        v.push((
            "ippools",
            "IPPool",
            format!("ip6-{i}"),
            json!({"subnet": format!("fd00:{}::/112", i + 1), "perNodeBlockSize": 8,
                   "gateway": format!("fd00:{}::1", i + 1)}),
        ));
    }
    for (i, cidr) in ["10.64.0.0/10", "10.128.0.0/10"].iter().enumerate() {
        v.push((
            "cidrpools",
            "CIDRPool",
            format!("cidr4-{i}"),
            json!({"cidr": cidr, "perNodeNetworkPrefix": 24, "gatewayIndex": 1}),
        ));
    }
    for i in 0..2 {
        v.push((
            "cidrpools",
            "CIDRPool",
            format!("cidr6-{i}"),
            json!({"cidr": format!("fd{}0:0:0::/48", i + 1), "perNodeNetworkPrefix": 64, "gatewayIndex": 1}),
        ));
    }
    v
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// Body of `GET path` on a plain-HTTP loopback port, or `None`.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
}

/// Sum of the samples of `family` whose labels contain `needle` (e.g. `type="ippool"`).
fn metric_values(body: &str, family: &str) -> Vec<(String, f64)> {
    body.lines()
        .filter(|l| l.starts_with(family) && l[family.len()..].starts_with('{'))
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            Some((series.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// The apiserver's `/metrics` as admin (text format; the test client parses JSON only).
struct AdminMetrics {
    agent: ureq::Agent,
    url: String,
    auth: String,
}

impl AdminMetrics {
    fn new() -> AdminMetrics {
        let path = PathBuf::from(std::env::var_os("KUBECONFIG").expect("KUBECONFIG"));
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let cfg: Value = yaml_serde::from_str(&text).expect("kubeconfig is YAML");
        let cluster = &cfg["clusters"][0]["cluster"];
        let token = cfg["users"][0]["user"]["token"].as_str().expect("admin kubeconfig has a token");
        let ca = match cluster["certificate-authority-data"].as_str() {
            Some(d) => base64::engine::general_purpose::STANDARD.decode(d.trim()).expect("CA data is base64"),
            None => {
                fs::read(cluster["certificate-authority"].as_str().expect("a CA")).expect("read the CA file")
            }
        };
        let certs: Vec<_> = ureq::tls::parse_pem(&ca)
            .filter_map(|i| match i {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)))
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .new_agent();
        let server = cluster["server"].as_str().expect("server").trim_end_matches('/');
        AdminMetrics { agent, url: format!("{server}/metrics"), auth: format!("Bearer {token}") }
    }

    /// `apiserver_request_total` summed per "resource[/subresource] VERB", for the resources
    /// the controller and node daemon touch.
    fn requests(&self) -> BTreeMap<String, f64> {
        let mut resp = self
            .agent
            .get(&self.url)
            .header("Authorization", &self.auth)
            .call()
            .expect("GET apiserver /metrics");
        let body = resp.body_mut().with_config().limit(256 << 20).read_to_string().expect("metrics body");
        let mut out = BTreeMap::new();
        for (series, v) in metric_values(&body, "apiserver_request_total") {
            let label = |k: &str| {
                let pat = format!("{k}=\"");
                series.split_once(&pat).and_then(|(_, r)| r.split_once('"')).map(|(v, _)| v.to_string())
            };
            let res = label("resource").unwrap_or_default();
            if !["ippools", "cidrpools", "nodes", "events", "pods"].contains(&res.as_str()) {
                continue;
            }
            let sub = label("subresource").unwrap_or_default();
            let key = format!(
                "{res}{}{} {}",
                if sub.is_empty() { "" } else { "/" },
                sub,
                label("verb").unwrap_or_default()
            );
            *out.entry(key).or_insert(0.0) += v;
        }
        out
    }
}

fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d > 0.0)
        .collect()
}

/// (CPU seconds, VmHWM MiB, VmRSS MiB) of a live process.
fn cpu_and_rss(pid: u32) -> (f64, f64, f64) {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    let after = stat.rsplit_once(')').expect("stat has a comm").1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // fields 14 and 15 (utime, stime) of stat(5); `after` starts at field 3
    let ticks: f64 = f[11].parse::<f64>().expect("utime") + f[12].parse::<f64>().expect("stime");
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key)?.trim().strip_suffix("kB")?.trim().parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (ticks / CLK_TCK, kb("VmHWM:") / 1024.0, kb("VmRSS:") / 1024.0)
}

fn rchar(pid: u32) -> u64 {
    let io = fs::read_to_string(format!("/proc/{pid}/io")).expect("read /proc/PID/io");
    io.lines().find_map(|l| l.strip_prefix("rchar: ")?.parse().ok()).expect("rchar in /proc/PID/io")
}

/// Sum of `bytes_received` over the TCP sockets of `pid` (from `ss -tinp`), if `ss` runs.
fn socket_bytes_received(pid: u32) -> Option<u64> {
    let out = Command::new("ss").args(["-tinpH"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let tag = format!("pid={pid},");
    let mut sum = 0;
    let mut ours = false;
    let mut found = false;
    // one socket = a line with the addresses and users:(...), then an indented info line
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) || line.contains("users:(") {
            ours = line.contains(&tag);
        }
        if ours && let Some(rest) = line.split_once("bytes_received:").map(|(_, r)| r) {
            let n: u64 = rest.split_whitespace().next()?.parse().ok()?;
            sum += n;
            found = true;
        }
    }
    found.then_some(sum)
}

/// Allocations per pool in the apiserver (one GET each); counts the GETs in `gets`.
fn allocations(admin: &Kube, ns: &str, gets: &AtomicU64) -> Vec<(String, usize)> {
    pool_specs()
        .into_iter()
        .map(|(plural, _, name, _)| {
            gets.fetch_add(1, Ordering::Relaxed);
            let p =
                admin.get(&format!("{API}/namespaces/{ns}/{plural}/{name}")).expect_status(200, "get pool");
            (name, p["status"]["allocations"].as_array().map_or(0, Vec::len))
        })
        .collect()
}

/// Per-pool `nv_ipam_pool_nodes_allocated` of the controller, and its reconcile counters.
fn controller_view(port: u16) -> (Vec<f64>, f64, f64) {
    let Some((200, body)) = http_get(port, "/metrics") else { return (Vec::new(), 0.0, 0.0) };
    let alloc = metric_values(&body, "nv_ipam_pool_nodes_allocated").into_iter().map(|(_, v)| v).collect();
    let one = |name: &str| {
        body.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0.0)
    };
    (alloc, one("nv_ipam_reconcile_total"), one("nv_ipam_reconcile_errors_total"))
}

/// Waits until the controller reports `want` nodes in all 10 pools and the apiserver holds them.
fn wait_allocated(
    ctl: &mut Proc,
    port: u16,
    admin: &Kube,
    ns: &str,
    want: usize,
    deadline: Duration,
    gets: &AtomicU64,
) {
    let end = Instant::now() + deadline;
    let mut last = Vec::new();
    loop {
        ctl.check_alive();
        let (alloc, _, _) = controller_view(port);
        if alloc.len() == 10 && alloc.iter().all(|&a| a >= want as f64) {
            last = allocations(admin, ns, gets);
            if last.iter().all(|(_, n)| *n >= want) {
                return;
            }
        }
        assert!(
            Instant::now() < end,
            "no convergence to {want} nodes within {deadline:?}: controller {alloc:?}, status {last:?}"
        );
        thread::sleep(POLL);
    }
}

/// Bytes `pid` received: its TCP sockets' `bytes_received` (`ss`), else `rchar` (which misses
/// `recv(2)`, what std's `TcpStream` reads with, so it undercounts network bytes).
fn received(pid: u32) -> u64 {
    socket_bytes_received(pid).unwrap_or_else(|| rchar(pid))
}

/// Waits until [`received`] of `pid` has not grown for [`QUIET`]; returns it.
fn quiet_received(pid: u32) -> u64 {
    let end = Instant::now() + QUIET_DEADLINE;
    let mut last = received(pid);
    let mut since = Instant::now();
    while Instant::now() < end {
        thread::sleep(Duration::from_millis(100));
        let now = received(pid);
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= QUIET {
            return now;
        }
    }
    panic!("ipam-node's reads did not settle within {QUIET_DEADLINE:?}");
}

fn spawn(name: &'static str, args: &[String], log: PathBuf, bin: &str) -> Proc {
    let child = Command::new(bin)
        .args(args)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).expect("create a log file"))
        .spawn()
        .unwrap_or_else(|e| panic!("start {bin}: {e}"));
    Proc { child, name, log }
}

/// Samples a process's VmRSS every 20 ms until stopped: (seconds since start, MiB).
struct RssSampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: Option<thread::JoinHandle<Vec<(f64, f64)>>>,
}

impl RssSampler {
    fn start(pid: u32, t0: Instant) -> RssSampler {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = thread::spawn(move || {
            let mut out = Vec::new();
            // bounded: stops when asked, when the process is gone, or after 10 minutes
            while !flag.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(600) {
                let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else { break };
                if let Some(kb) = status.lines().find_map(|l| {
                    l.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse::<f64>().ok()
                }) {
                    out.push((t0.elapsed().as_secs_f64(), kb / 1024.0));
                }
                thread::sleep(Duration::from_millis(20));
            }
            out
        });
        RssSampler { stop, handle: Some(handle) }
    }

    /// The samples where RSS moved by 4 MiB or more since the last one shown, and the last.
    fn finish(mut self) -> String {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self.handle.take().and_then(|h| h.join().ok()).unwrap_or_default();
        let mut shown: Vec<String> = Vec::new();
        let mut last = f64::NEG_INFINITY;
        for (i, (t, m)) in samples.iter().enumerate() {
            if (m - last).abs() >= 4.0 || i + 1 == samples.len() {
                shown.push(format!("{t:.2}s:{m:.0}"));
                last = *m;
            }
        }
        shown.join(" ")
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn mib(bytes: f64) -> String {
    format!("{:.2} MiB", bytes / (1024.0 * 1024.0))
}

fn run(n: usize) {
    let ctl_bin = env!("CARGO_BIN_EXE_ipam-controller");
    let node_bin = env!("CARGO_BIN_EXE_ipam-node");
    eprintln!("scale: {n} nodes, 10 pools; controller {ctl_bin}");
    let admin = Kube::from_env();
    let _ = cp_dir();
    ensure_rbac(&admin);
    let dir = std::env::temp_dir().join(unique_name("nv-ipam-scale"));
    fs::create_dir_all(&dir).expect("create the temp dir");
    let ns = unique_name("scale");
    let group = format!("g{}", std::process::id());
    let mut world = World {
        admin: admin.clone(),
        ns: ns.clone(),
        group: group.clone(),
        nodes: Vec::new(),
        dir: dir.clone(),
    };
    admin
        .post(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .expect_status(201, "create namespace");
    let selector = json!({"nodeSelectorTerms": [{"matchExpressions": [
        {"key": LABEL, "operator": "In", "values": [group]}]}]});
    for (plural, kind, name, mut spec) in pool_specs() {
        spec["nodeSelector"] = selector.clone();
        let obj = json!({"apiVersion": "nv-ipam.nvidia.com/v1alpha1", "kind": kind,
            "metadata": {"name": name, "namespace": ns}, "spec": spec});
        admin.post(&format!("{API}/namespaces/{ns}/{plural}"), &obj).expect_status(201, "create pool");
    }

    // 5,000 nodes, 16 threads; listed in `world` first so a partial run is cleaned up too
    world.nodes = (0..n).map(|i| format!("scale-{group}-{i:05}")).collect();
    let t = Instant::now();
    let failed = AtomicUsize::new(0);
    parallel(n, |i| {
        let node = json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": world.nodes[i], "labels": {LABEL: group}}});
        if admin.post("/api/v1/nodes", &node).status != 201 {
            failed.fetch_add(1, Ordering::Relaxed);
        }
    });
    let create_s = t.elapsed().as_secs_f64();
    assert_eq!(failed.load(Ordering::Relaxed), 0, "some node creates failed");
    eprintln!("scale: created {n} nodes in {create_s:.1} s");

    // the controller
    let metrics = AdminMetrics::new();
    let (health_port, metrics_port) = (free_port(), free_port());
    let kubeconfig = |who: &str| cp_dir().join(format!("{who}.kubeconfig")).display().to_string();
    let mut args: Vec<String> = vec![
        "--kubeconfig".into(),
        kubeconfig("controller"),
        "--ippools-namespace".into(),
        ns.clone(),
        "--health-probe-bind-address".into(),
        format!("127.0.0.1:{health_port}"),
        "--metrics-bind-address".into(),
        format!("127.0.0.1:{metrics_port}"),
    ];
    if let Ok(v) = std::env::var("NV_IPAM_SCALE_V") {
        args.extend(["-v".to_string(), v]);
    }
    let gets = AtomicU64::new(0);
    let before = metrics.requests();
    let t0 = Instant::now();
    let mut ctl = spawn("ipam-controller", &args, dir.join("controller.log"), ctl_bin);
    let sampler = RssSampler::start(ctl.pid(), t0);
    wait_allocated(&mut ctl, metrics_port, &admin, &ns, n, CONVERGE_DEADLINE, &gets);
    let converge_s = t0.elapsed().as_secs_f64();
    let (cpu_s, hwm_mb, rss_mb) = cpu_and_rss(ctl.pid());
    let after = metrics.requests();
    let (_, reconciles, rec_errors) = controller_view(metrics_port);
    let mut conv_requests = delta(&before, &after);
    let bench_gets = gets.swap(0, Ordering::Relaxed) as f64;
    eprintln!("scale: converged in {converge_s:.2} s");

    // one node daemon, then one node joins
    let node_dir = dir.join("node");
    fs::create_dir_all(&node_dir).expect("create the node dir");
    let node_health = free_port();
    let sock = format!("unix://{}", node_dir.join("daemon.sock").display());
    let node_args: Vec<String> = vec![
        "--node-name".into(),
        world.nodes[0].clone(),
        "--kubeconfig".into(),
        kubeconfig("node"),
        "--ippools-namespace".into(),
        ns.clone(),
        "--bind-address".into(),
        sock.clone(),
        "--cni-daemon-socket".into(),
        sock,
        "--store-file".into(),
        node_dir.join("store").display().to_string(),
        "--cni-conf-dir".into(),
        node_dir.join("conf").display().to_string(),
        "--cni-bin-dir".into(),
        node_dir.join("bin").display().to_string(),
        "--cni-skip-nv-ipam-binary-copy".into(),
        "--cni-skip-nv-ipam-config-creation".into(),
        "--health-probe-bind-address".into(),
        format!("127.0.0.1:{node_health}"),
    ];
    let t = Instant::now();
    let mut node = spawn("ipam-node", &node_args, dir.join("node.log"), node_bin);
    wait_for(START_DEADLINE, "ipam-node is ready (/readyz)", || {
        node.check_alive();
        matches!(http_get(node_health, "/readyz"), Some((200, _)))
    });
    let start_bytes = quiet_received(node.pid());
    let node_start_s = t.elapsed().as_secs_f64();
    let (_, node_hwm_mb, _) = cpu_and_rss(node.pid());

    let join_before = metrics.requests();
    let (cpu_before_join, _, _) = cpu_and_rss(ctl.pid());
    let sock_before = socket_bytes_received(node.pid());
    let r0 = rchar(node.pid());
    let joiner = format!("scale-{group}-join");
    world.nodes.push(joiner.clone());
    let tj = Instant::now();
    admin
        .post(
            "/api/v1/nodes",
            &json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": joiner, "labels": {LABEL: group}}}),
        )
        .expect_status(201, "create the joining node");
    wait_allocated(&mut ctl, metrics_port, &admin, &ns, n + 1, JOIN_DEADLINE, &gets);
    let join_s = tj.elapsed().as_secs_f64();
    let _ = quiet_received(node.pid());
    let r1 = rchar(node.pid());
    let sock_after = socket_bytes_received(node.pid());
    let (cpu_after_join, hwm_after_mb, _) = cpu_and_rss(ctl.pid());
    let join_requests = delta(&join_before, &metrics.requests());
    let rss_timeline = sampler.finish();
    if let Some(keep) = std::env::var_os("NV_IPAM_SCALE_KEEP_LOGS") {
        let keep = PathBuf::from(keep);
        let _ = fs::create_dir_all(&keep);
        for f in ["controller.log", "node.log"] {
            let _ = fs::copy(dir.join(f), keep.join(f));
        }
    }
    let join_gets = gets.swap(0, Ordering::Relaxed) as f64;
    node.check_alive();
    ctl.check_alive();
    let status_bytes: usize = pool_specs()
        .into_iter()
        .map(|(plural, _, name, _)| {
            let p =
                admin.get(&format!("{API}/namespaces/{ns}/{plural}/{name}")).expect_status(200, "get pool");
            serde_json::to_vec(&p).map_or(0, |b| b.len())
        })
        .sum();

    // figures
    let per = |m: &mut BTreeMap<String, f64>, own: f64| {
        for k in ["ippools GET", "cidrpools GET"] {
            // the bench's own polling GETs, split evenly as they are issued (6 ippools, 4 cidrpools)
            let share = if k.starts_with("ippools") { own * 0.6 } else { own * 0.4 };
            if let Some(v) = m.get_mut(k) {
                *v -= share;
            }
        }
        m.retain(|_, v| *v > 0.5);
        let total: f64 = m.values().sum();
        let detail: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v:.0}")).collect();
        (total, detail.join(", "))
    };
    let (conv_total, conv_detail) = per(&mut conv_requests, bench_gets);
    let mut join_req = join_requests;
    // the bench's own POST of the joining node
    if let Some(v) = join_req.get_mut("nodes POST") {
        *v -= 1.0;
    }
    let (join_total, join_detail) = per(&mut join_req, join_gets);
    let join_rchar = (r1 - r0) as f64;
    let sock = match (sock_before, sock_after) {
        (Some(a), Some(b)) if b >= a => mib((b - a) as f64),
        _ => "n/a (ss)".into(),
    };
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!(
        "scale: {n} nodes, 10 pools (4 IPv4 + 2 IPv6 IPPools /8-blocks, 2 IPv4 /24 + 2 IPv6 /64 CIDRPools)"
    );
    println!("machine: {cpus} CPUs, Linux {}", kernel.trim());
    let row = |f: &str, v: String, target: &str, res: &str| println!("{f:<52} {v:>16}  {target:<10} {res}");
    row("figure", "value".into(), "target", "result");
    row("create nodes (admin, 16 threads; not the controller)", format!("{create_s:.1} s"), "", "");
    row(
        "controller: converge (start -> all statuses full)",
        format!("{converge_s:.2} s"),
        "< 30 s",
        verdict(converge_s < TARGET_CONVERGE_S),
    );
    row("controller: CPU at convergence (utime+stime)", format!("{cpu_s:.2} s"), "", "");
    row(
        "controller: peak RSS (VmHWM) at convergence",
        format!("{hwm_mb:.1} MiB"),
        "< 30 MB",
        verdict(hwm_mb * 1.048_576 < TARGET_RSS_MB),
    );
    row("controller: RSS (VmRSS) at convergence", format!("{rss_mb:.1} MiB"), "", "");
    row("controller: reconciles (errors) to converge", format!("{reconciles:.0} ({rec_errors:.0})"), "", "");
    row("controller: API requests to converge", format!("{conv_total:.0}"), "", "");
    row("join: controller allocates in all 10 pools", format!("{:.0} ms", join_s * 1000.0), "", "");
    row("join: controller CPU", format!("{:.2} s", cpu_after_join - cpu_before_join), "", "");
    row("join: API requests (controller + node daemon)", format!("{join_total:.0}"), "", "");
    row("join: ipam-node rchar (misses recv(2); files only)", mib(join_rchar), "", "");
    row("join: bytes on ipam-node's TCP sockets (ss)", sock, "", "");
    row("join: size of the 10 pool objects (JSON)", mib(status_bytes as f64), "", "");
    row(
        "ipam-node: start to ready+settled / bytes received",
        format!("{node_start_s:.1} s / {}", mib(start_bytes as f64)),
        "",
        "",
    );
    row("ipam-node: peak RSS", format!("{node_hwm_mb:.1} MiB"), "", "");
    row("controller: peak RSS after the join", format!("{hwm_after_mb:.1} MiB"), "", "");
    println!(
        "requests to converge by resource/verb (apiserver_request_total delta, bench GETs subtracted): {conv_detail}"
    );
    println!("requests for the join: {join_detail}");
    println!(
        "controller VmRSS timeline (s since start: MiB; join at {:.2}s): {rss_timeline}",
        tj.duration_since(t0).as_secs_f64()
    );
}
