//! `hack/control-plane.sh --crds deploy/crds -- cargo bench --bench scale`: `ipam-controller`
//! and `ipam-node` at scale on the real kube-apiserver of `hack/control-plane.sh` — a command,
//! not a test (method and figures: docs/benchmarks-scale.md).
//!
//! For each size N of `NV_IPAM_SCALE_NODES` (a comma list, default `10,1000,5000,10000`), with a
//! fresh namespace, 10 pools (IPv4 and IPv6 IPPools and CIDRPools, each big enough for every
//! node, all selecting a label unique to the size) and N labelled Nodes, it starts the release
//! `ipam-controller` as the controller token user and measures:
//!
//! - converge: controller start → every pool's status holds N allocations, and → every node's
//!   NodeBlockSet holds an entry of every pool (`nv_ipam_node_block_sets_pending` 0, then a
//!   paged list); the controller's CPU and peak RSS at each; apiserver requests per
//!   resource/verb and the watch events and bytes the apiserver sent, over the converge;
//! - 20 `ipam-node` daemons ("others", node token user, cluster mode) as 20 existing nodes;
//! - `NV_IPAM_SCALE_JOINS` joins (default 20), one at a time: one more `ipam-node` for a node
//!   that does not exist yet, then the Node; the time until that daemon answers the protocol's
//!   status request with all 10 pools allocatable (polled every 5 ms), the bytes each other
//!   daemon's TCP sockets received (`ss`), the controller's CPU and writes, the apiserver's
//!   requests and watch figures, per join;
//! - the others' peak RSS at the end.
//!
//! Prints one table, a column per size, with issue 13's targets and PASS/FAIL, then per-size
//! details; exits 1 when a target fails. Every wait has a deadline: a controller that never
//! writes NodeBlockSets gives a FAIL line, not a hang. Everything a size creates (namespace,
//! pools, NodeBlockSets, nodes, processes, temp dir) is removed before the next size and on
//! every exit path, SIGINT/SIGTERM included (Drop guards). Without `--bench` (e.g. `cargo test
//! --all-targets`) it prints one line and exits 0. `NV_IPAM_SCALE_V=N` runs the controller
//! with `-v N`; `NV_IPAM_SCALE_KEEP_LOGS=DIR` keeps every log under DIR/<size>/.
//!
//! Split by concern: `scale/procs.rs` (processes, /proc, `ss`), `scale/apiserver.rs` (its
//! /metrics), `scale/world.rs` (the objects), `scale/report.rs` (figures, targets, table).
#![allow(clippy::unwrap_used)]

#[path = "scale/apiserver.rs"]
mod apiserver;
#[path = "../tests/common/kube.rs"]
#[allow(dead_code)]
mod kube;
#[path = "scale/procs.rs"]
mod procs;
#[path = "scale/report.rs"]
mod report;
#[path = "scale/world.rs"]
mod world;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use nv_ipam::api::PoolType;
use nv_ipam::protocol::client::call;
use nv_ipam::protocol::message::{Request, Response, StatusRequest};

use apiserver::{AdminMetrics, Own, Snapshot, metric_sum, metric_values};
use kube::{Kube, cp_dir, unique_name};
use procs::{Proc, RssSampler, check_stop, free_port, http_get, pause, settle, spawn, usage};
use report::{Converge, Join, SizeResult};
use world::{POOLS, World, wait_for};

/// The sizes the issue asks for: 1,000 / 5,000 / 10,000 to show the growth, 10 as the floor.
const DEFAULT_SIZES: &str = "10,1000,5000,10000";
/// Joins per size; the issue asks for p50/p99 over at least 20.
const DEFAULT_JOINS: usize = 20;
/// Node daemons running as existing nodes, whose input per join is measured.
const OTHERS: usize = 20;
const CONVERGE_DEADLINE: Duration = Duration::from_secs(300);
/// How often the converge loop reads the controller's /metrics.
const CONVERGE_POLL: Duration = Duration::from_millis(50);
/// Without `nv_ipam_node_block_sets_pending`, how long after the statuses are full the bench
/// still looks for complete NodeBlockSets (by list, once a second) before it says FAIL.
const NO_GAUGE_GRACE: Duration = Duration::from_secs(10);
const LIST_EVERY: Duration = Duration::from_secs(1);
const START_DEADLINE: Duration = Duration::from_secs(120);
/// How long a joining daemon may take to report ready before its Node exists (it may also
/// become ready only afterwards; the join is timed from the Node's creation either way).
const JOINER_READY_WAIT: Duration = Duration::from_secs(10);
const JOIN_DEADLINE: Duration = Duration::from_secs(30);
/// The joining daemon's socket is asked this often.
const JOIN_POLL: Duration = Duration::from_millis(5);
/// The protocol call's own deadline (the plugin's default is 5 s; a healthy daemon answers
/// in well under a millisecond).
const CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// The other daemons have taken in a change when their sockets received nothing for this long.
const QUIET: Duration = Duration::from_secs(1);
const QUIET_DEADLINE: Duration = Duration::from_secs(60);

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
    let sizes = env_list("NV_IPAM_SCALE_NODES", DEFAULT_SIZES);
    let joins = env_list("NV_IPAM_SCALE_JOINS", &DEFAULT_JOINS.to_string());
    let [joins] = joins[..] else {
        eprintln!("scale: NV_IPAM_SCALE_JOINS is one number of joins per size, e.g. 20");
        std::process::exit(2);
    };
    procs::install_stop_handler();
    procs::require_ss();
    let admin = Kube::from_env();
    world::ensure_rbac(&admin);
    let metrics = AdminMetrics::new();
    let mut results = Vec::new();
    for &n in &sizes {
        eprintln!("scale: {n} nodes, 10 pools, {} other daemons, {joins} joins", OTHERS.min(n));
        // a size that fails (a daemon exits, the apiserver errs) is reported and the next runs;
        // its objects and processes are already gone (Drop guards)
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_size(&admin, &metrics, n, joins)))
        {
            Ok(r) => results.push(r),
            Err(e) if procs::stopped() => std::panic::resume_unwind(e),
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let first = msg.lines().next().unwrap_or("").to_string();
                results.push(SizeResult {
                    n,
                    notes: vec![format!("aborted: {first}")],
                    ..SizeResult::default()
                });
            }
        }
    }
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    let commit = Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "describe", "--always", "--dirty"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let header = format!(
        "scale: 10 pools (4 IPv4 + 2 IPv6 IPPools, blocks of 8; 2 IPv4 /24 + 2 IPv6 /64 CIDRPools), \
         {joins} joins, up to {OTHERS} other node daemons; {cpus} CPUs, Linux {}; commit {commit}",
        kernel.trim()
    );
    if !report::print(&results, &header) {
        std::process::exit(1);
    }
}

/// A comma list of positive numbers from `var` (else `default`); exits 2 naming the variable.
fn env_list(var: &str, default: &str) -> Vec<usize> {
    let text = std::env::var(var).unwrap_or_else(|_| default.to_string());
    let parsed: Option<Vec<usize>> =
        text.split(',').map(|s| s.trim().parse::<usize>().ok().filter(|&n| n > 0)).collect();
    match parsed {
        Some(v) if !v.is_empty() => v,
        _ => {
            eprintln!("scale: {var}={text:?}: give positive numbers separated by commas, e.g. {default}");
            std::process::exit(2);
        }
    }
}

/// What the controller's /metrics says.
#[derive(Debug, Default)]
struct ControllerView {
    /// `nv_ipam_pool_nodes_allocated`, one per pool.
    allocated: Vec<f64>,
    reconciles: f64,
    errors: f64,
    /// `nv_ipam_node_block_sets_pending`, if exported.
    pending: Option<f64>,
    /// `nv_ipam_node_block_set_writes_total`, if exported.
    writes: Option<f64>,
}

impl ControllerView {
    fn read(port: u16) -> ControllerView {
        let Some((200, body)) = http_get(port, "/metrics") else { return ControllerView::default() };
        ControllerView {
            allocated: metric_values(&body, "nv_ipam_pool_nodes_allocated")
                .into_iter()
                .map(|(_, v)| v)
                .collect(),
            reconciles: metric_sum(&body, "nv_ipam_reconcile_total").unwrap_or(0.0),
            errors: metric_sum(&body, "nv_ipam_reconcile_errors_total").unwrap_or(0.0),
            pending: metric_sum(&body, "nv_ipam_node_block_sets_pending"),
            writes: metric_sum(&body, "nv_ipam_node_block_set_writes_total"),
        }
    }

    fn statuses_hold(&self, nodes: usize) -> bool {
        self.allocated.len() == POOLS && self.allocated.iter().all(|&a| a >= nodes as f64)
    }
}

/// One `ipam-node` of the bench: its process, socket and health port.
struct Daemon {
    proc: Proc,
    sock: PathBuf,
    health: u16,
}

impl Daemon {
    /// Starts `ipam-node` for `node` in cluster mode as the node token user, with its store,
    /// socket and CNI dirs under `<world dir>/<tag>` (no plugin install, no CNI config).
    fn start(world: &World, node: &str, tag: &str) -> Daemon {
        let dir = world.dir.join(tag);
        fs::create_dir_all(&dir).expect("create the node daemon's dir");
        let health = free_port();
        let sock = dir.join("daemon.sock");
        let addr = format!("unix://{}", sock.display());
        let args: Vec<String> = vec![
            "--node-name".into(),
            node.into(),
            "--kubeconfig".into(),
            kubeconfig("node"),
            "--ippools-namespace".into(),
            world.ns.clone(),
            "--bind-address".into(),
            addr.clone(),
            "--cni-daemon-socket".into(),
            addr,
            "--store-file".into(),
            dir.join("store").display().to_string(),
            "--cni-conf-dir".into(),
            dir.join("conf").display().to_string(),
            "--cni-bin-dir".into(),
            dir.join("bin").display().to_string(),
            "--cni-skip-nv-ipam-binary-copy".into(),
            "--cni-skip-nv-ipam-config-creation".into(),
            "--health-probe-bind-address".into(),
            format!("127.0.0.1:{health}"),
        ];
        let log = world.dir.join(format!("{tag}.log"));
        let proc = spawn(format!("ipam-node {tag} ({node})"), env!("CARGO_BIN_EXE_ipam-node"), &args, log);
        Daemon { proc, sock, health }
    }

    fn probe(&self, path: &str) -> bool {
        matches!(http_get(self.health, path), Some((200, _)))
    }

    /// Pools the daemon would allocate from now: status (every pool of each kind) with `free` > 0.
    fn allocatable(&self) -> usize {
        [PoolType::IpPool, PoolType::CidrPool]
            .into_iter()
            .map(|t| {
                let req = Request::Status(StatusRequest { pools: Vec::new(), pool_type: t });
                match call(&self.sock, req, CALL_TIMEOUT) {
                    Ok(Response::Ok(r)) => r.pools.iter().filter(|p| p.free > 0).count(),
                    _ => 0,
                }
            })
            .sum()
    }
}

fn kubeconfig(who: &str) -> String {
    cp_dir().join(format!("{who}.kubeconfig")).display().to_string()
}

/// Copies every log of the size's temp dir to `NV_IPAM_SCALE_KEEP_LOGS/<size>/` on drop
/// (declared after the World, so it runs before the temp dir is removed).
struct KeepLogs {
    from: PathBuf,
    n: usize,
}

impl Drop for KeepLogs {
    fn drop(&mut self) {
        let Some(keep) = std::env::var_os("NV_IPAM_SCALE_KEEP_LOGS") else { return };
        let to = Path::new(&keep).join(self.n.to_string());
        let _ = fs::create_dir_all(&to);
        for e in fs::read_dir(&self.from).into_iter().flatten().flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "log")
                && let Some(name) = p.file_name()
            {
                let _ = fs::copy(&p, to.join(name));
            }
        }
    }
}

fn run_size(admin: &Kube, metrics: &AdminMetrics, n: usize, joins: usize) -> SizeResult {
    let mut r = SizeResult { n, ..SizeResult::default() };
    let group = format!("g{}n{n}", std::process::id());
    let dir = std::env::temp_dir().join(unique_name("nv-ipam-scale"));
    let mut world = World::new(admin, unique_name("scale"), group.clone(), dir.clone());
    let _keep = KeepLogs { from: dir.clone(), n };
    let t = Instant::now();
    world.create_nodes((0..n).map(|i| format!("scale-{group}-{i:05}")).collect());
    r.create_s = t.elapsed().as_secs_f64();
    eprintln!("scale: created {n} nodes in {:.1} s", r.create_s);

    // the controller
    let own = Own::default();
    let (health_port, metrics_port) = (free_port(), free_port());
    let mut args: Vec<String> = vec![
        "--kubeconfig".into(),
        kubeconfig("controller"),
        "--ippools-namespace".into(),
        world.ns.clone(),
        "--health-probe-bind-address".into(),
        format!("127.0.0.1:{health_port}"),
        "--metrics-bind-address".into(),
        format!("127.0.0.1:{metrics_port}"),
    ];
    if let Ok(v) = std::env::var("NV_IPAM_SCALE_V") {
        args.extend(["-v".to_string(), v]);
    }
    let before = metrics.snapshot();
    let t0 = Instant::now();
    let ctl_bin = env!("CARGO_BIN_EXE_ipam-controller");
    let mut ctl = spawn("ipam-controller".into(), ctl_bin, &args, dir.join("controller.log"));
    let sampler = RssSampler::start(ctl.pid(), t0);
    converge(&mut ctl, metrics_port, &world, &own, t0, &mut r);
    r.converge_api = metrics.snapshot().since(&before);
    r.converge_api.minus_own(&own);
    let mut marks = Vec::new();
    let finish = |r: &mut SizeResult, ctl: &Proc, sampler: RssSampler, marks: &[String]| {
        r.ctl_end = usage(ctl.pid());
        r.timeline = format!("{} ({})", sampler.finish(), marks.join(", "));
    };
    if r.status.is_none() {
        r.notes.push("no node daemons and no joins: the pool statuses did not converge".into());
        finish(&mut r, &ctl, sampler, &marks);
        return r;
    }
    eprintln!(
        "scale: converged (statuses {:?}, NodeBlockSets {:?})",
        r.status.map(|c| c.s),
        r.block_sets.map(|c| c.s)
    );

    marks.push(format!("node daemons start at {:.2}s", t0.elapsed().as_secs_f64()));
    // the other node daemons, as existing nodes spread over the list
    let k = OTHERS.min(n);
    let t = Instant::now();
    let mut others: Vec<Daemon> =
        (0..k).map(|i| Daemon::start(&world, &world.nodes[i * n / k], &format!("node-{i:02}"))).collect();
    wait_for(START_DEADLINE, &format!("{k} ipam-node daemons are ready (/readyz)"), || {
        others.iter_mut().all(|d| {
            d.proc.check_alive();
            d.probe("/readyz")
        })
    });
    let pids: Vec<u32> = others.iter().map(|d| d.proc.pid()).collect();
    let (start_bytes, settled) = settle(&pids, QUIET, QUIET_DEADLINE);
    r.others = k;
    r.others_start_s = t.elapsed().as_secs_f64();
    r.others_start_bytes = start_bytes.values().sum::<u64>() as f64 / k as f64;
    if !settled {
        r.notes
            .push(format!("the other daemons' input did not settle within {QUIET_DEADLINE:?} after start"));
    }
    eprintln!("scale: {k} node daemons ready in {:.1} s", r.others_start_s);

    marks.push(format!("joins from {:.2}s", t0.elapsed().as_secs_f64()));
    for j in 0..joins {
        let (join, api) = join(j, &mut world, &mut ctl, metrics_port, &pids, metrics, &own);
        if !join.settled {
            r.notes
                .push(format!("join {j}: the other daemons' input did not settle within {QUIET_DEADLINE:?}"));
        }
        if !join.ready_before {
            r.notes.push(format!("join {j}: the joining daemon was not ready before its Node existed"));
        }
        eprintln!("scale: join {j}: allocatable {:?}", join.alloc_s);
        r.joins.push(join);
        r.join_api.add(&api);
    }
    for d in &mut others {
        d.proc.check_alive();
    }
    ctl.check_alive();
    r.node_hwm_mib = pids.iter().map(|&p| usage(p).hwm_mib).collect();
    let view = ControllerView::read(metrics_port);
    (r.reconciles, r.reconcile_errors) = (view.reconciles, view.errors);
    finish(&mut r, &ctl, sampler, &marks);
    r
}

/// Waits until the statuses are full and every NodeBlockSet is complete, recording each point
/// in `r`; on a deadline it records why in `r.notes` instead.
fn converge(ctl: &mut Proc, port: u16, world: &World, own: &Own, t0: Instant, r: &mut SizeResult) {
    let n = world.nodes.len();
    let mut last_list: Option<Instant> = None;
    let mut complete = 0;
    let mut view;
    loop {
        check_stop();
        ctl.check_alive();
        view = ControllerView::read(port);
        let now = t0.elapsed().as_secs_f64();
        if r.status.is_none() && view.statuses_hold(n) {
            let at = Converge { s: now, ctl: usage(ctl.pid()), writes: view.writes };
            if world.allocations(own).iter().all(|(_, k)| *k >= n) {
                r.status = Some(at);
            }
        }
        // with the gauge: list once it says 0 and every node was written at least once;
        // without it: list once a second (a controller may write them and not export it)
        let due = match view.pending {
            Some(p) => p == 0.0 && view.writes.is_none_or(|w| w >= n as f64),
            None => last_list.is_none_or(|t| t.elapsed() >= LIST_EVERY),
        };
        if r.block_sets.is_none() && due {
            let at = Converge { s: now, ctl: usage(ctl.pid()), writes: view.writes };
            last_list = Some(Instant::now());
            complete = world.complete_block_sets(own);
            if complete >= n {
                r.block_sets = Some(at);
            }
        }
        if r.status.is_some() && r.block_sets.is_some() {
            break;
        }
        let waited = t0.elapsed();
        if waited > CONVERGE_DEADLINE {
            r.notes.push(format!(
                "no convergence within {CONVERGE_DEADLINE:?}: controller reports {:?} per pool, \
                 {complete}/{n} NodeBlockSets complete, pending gauge {:?}",
                view.allocated, view.pending
            ));
            break;
        }
        if let Some(st) = r.status
            && view.pending.is_none()
            && waited.as_secs_f64() > st.s + NO_GAUGE_GRACE.as_secs_f64()
        {
            r.notes.push(format!(
                "NodeBlockSets FAIL: {complete}/{n} complete {NO_GAUGE_GRACE:?} after the statuses were \
                 full, and the controller exports no nv_ipam_node_block_sets_pending (this build does \
                 not write them)"
            ));
            break;
        }
        pause(CONVERGE_POLL);
    }
    (r.reconciles, r.reconcile_errors) = (view.reconciles, view.errors);
}

/// One join: a daemon for a node that does not exist yet, then the Node; returns the figures
/// and the apiserver's counters over the join (bench's own requests subtracted).
fn join(
    j: usize,
    world: &mut World,
    ctl: &mut Proc,
    port: u16,
    others: &[u32],
    metrics: &AdminMetrics,
    own: &Own,
) -> (Join, Snapshot) {
    let name = format!("scale-{}-join-{j:03}", world.group);
    let mut d = Daemon::start(world, &name, &format!("join-{j:03}"));
    wait_for(START_DEADLINE, &format!("{} serves /healthz", d.proc.name), || {
        d.proc.check_alive();
        d.probe("/healthz")
    });
    let ready_end = Instant::now() + JOINER_READY_WAIT;
    while !d.probe("/readyz") && Instant::now() < ready_end {
        d.proc.check_alive();
        pause(Duration::from_millis(20));
    }
    let mut out = Join { ready_before: d.probe("/readyz"), ..Join::default() };
    let (b0, settled0) = settle(others, QUIET, QUIET_DEADLINE);
    let snap0 = metrics.snapshot();
    own.reset();
    let v0 = ControllerView::read(port);
    let cpu0 = usage(ctl.pid()).cpu_s;
    let want = world.nodes.len() + 1;

    let t = Instant::now();
    world.create_node(&name, own);
    let mut last_ctl: Option<Instant> = None;
    while t.elapsed() < JOIN_DEADLINE {
        d.proc.check_alive();
        if out.alloc_s.is_none() && d.allocatable() >= POOLS {
            out.alloc_s = Some(t.elapsed().as_secs_f64());
        }
        if last_ctl.is_none_or(|l| l.elapsed() >= CONVERGE_POLL) {
            last_ctl = Some(Instant::now());
            ctl.check_alive();
            let v = ControllerView::read(port);
            let el = t.elapsed().as_secs_f64();
            if out.status_s.is_none() && v.statuses_hold(want) {
                out.status_s = Some(el);
            }
            if out.block_set_s.is_none()
                && v.pending == Some(0.0)
                && world.block_set_entries(&name, own) == POOLS
            {
                out.block_set_s = Some(el);
            }
        }
        if out.alloc_s.is_some()
            && out.status_s.is_some()
            && (out.block_set_s.is_some() || v0.pending.is_none())
        {
            break;
        }
        pause(JOIN_POLL);
    }
    let (b1, settled1) = settle(others, QUIET, QUIET_DEADLINE);
    out.settled = settled0 && settled1;
    out.bytes = others.iter().map(|p| b1[p].saturating_sub(b0[p])).collect();
    let v1 = ControllerView::read(port);
    out.ctl_cpu_s = usage(ctl.pid()).cpu_s - cpu0;
    out.writes = v1.writes.zip(v0.writes).map(|(a, b)| a - b);
    let mut api = metrics.snapshot().since(&snap0);
    api.minus_own(own);
    drop(d);
    (out, api)
}
