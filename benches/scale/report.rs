//! What one size of the scale bench measured, and the table that prints every size side by
//! side with issue 13's targets and a PASS/FAIL per target.
//!
//! Owns: the figures' shapes, the targets and how each is judged. Must not: measure anything.

use crate::apiserver::{Snapshot, WatchSent};
use crate::procs::Usage;

/// Issue 13's targets ("Targets" in docs/benchmarks-scale.md). The size they are judged at:
const TARGET_AT: usize = 5_000;
/// Bytes each other node daemon receives per join (TCP, `ss`), at every size.
const TARGET_JOIN_BYTES: f64 = 2048.0;
/// Node creation → the new node's daemon can allocate in all 10 pools, p99, at 5,000.
const TARGET_JOIN_P99_S: f64 = 1.0;
/// Controller start → statuses full and NodeBlockSets written, at 5,000.
const TARGET_CONVERGE_S: f64 = 1.5;
/// Controller CPU seconds at convergence, at 5,000.
const TARGET_CTL_CPU_S: f64 = 0.5;
/// Controller peak RSS (VmHWM) at convergence, at 5,000.
const TARGET_CTL_RSS_MIB: f64 = 30.0;
/// Node daemon peak RSS (VmHWM), at 5,000.
const TARGET_NODE_RSS_MIB: f64 = 8.0;
/// "Flat": the node daemon's RSS at the largest size within this of its RSS at the smallest.
const TARGET_NODE_RSS_GROWTH_MIB: f64 = 1.0;
/// "Flat" per-join bytes from 1,000 to 10,000 nodes: the mean may grow by 10% plus this
/// (a bookmark or TLS record landing in one window is not growth).
const FLAT_BYTES_SLACK: f64 = 256.0;
/// The sizes the growth targets compare, when both were run.
const GROWTH_FROM: usize = 1_000;
const GROWTH_TO: usize = 10_000;

/// A convergence point: seconds since the controller started, and its usage then.
#[derive(Debug, Clone, Copy)]
pub struct Converge {
    pub s: f64,
    pub ctl: Usage,
    /// `nv_ipam_node_block_set_writes_total` then, if the controller exports it.
    pub writes: Option<f64>,
}

/// One join, measured from just before the Node is created.
#[derive(Debug, Clone, Default)]
pub struct Join {
    /// The joining node's daemon answers status with every pool allocatable (free > 0).
    pub alloc_s: Option<f64>,
    /// The controller reports the node in every pool's status.
    pub status_s: Option<f64>,
    /// The joining node's NodeBlockSet holds an entry of every pool.
    pub block_set_s: Option<f64>,
    /// Bytes each other daemon received over the join (TCP, `ss`).
    pub bytes: Vec<u64>,
    /// Whether the other daemons' input settled within the deadline after the join.
    pub settled: bool,
    pub ctl_cpu_s: f64,
    pub writes: Option<f64>,
    /// The joining daemon was ready (/readyz) before its Node existed.
    pub ready_before: bool,
}

/// Everything one size measured.
#[derive(Debug, Default)]
pub struct SizeResult {
    pub n: usize,
    pub create_s: f64,
    pub status: Option<Converge>,
    pub block_sets: Option<Converge>,
    pub reconciles: f64,
    pub reconcile_errors: f64,
    /// apiserver requests and watch events from controller start to convergence (bench's own
    /// requests subtracted).
    pub converge_api: Snapshot,
    pub others: usize,
    pub others_start_s: f64,
    pub others_start_bytes: f64,
    pub joins: Vec<Join>,
    /// Summed over the joins' windows.
    pub join_api: Snapshot,
    pub node_hwm_mib: Vec<f64>,
    pub ctl_end: Usage,
    pub timeline: String,
    pub notes: Vec<String>,
}

impl SizeResult {
    /// Both convergence points, when both were reached: the later one is the converge figure.
    pub fn converge(&self) -> Option<Converge> {
        match (self.status, self.block_sets) {
            (Some(a), Some(b)) => Some(if b.s >= a.s { b } else { a }),
            _ => None,
        }
    }

    fn alloc_times(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self.joins.iter().map(|j| j.alloc_s.unwrap_or(f64::INFINITY)).collect();
        v.sort_by(f64::total_cmp);
        v
    }

    fn join_bytes(&self) -> Vec<f64> {
        self.joins.iter().flat_map(|j| j.bytes.iter().map(|&b| b as f64)).collect()
    }

    fn mean_join_bytes(&self) -> Option<f64> {
        mean(&self.join_bytes())
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn max(v: &[f64]) -> Option<f64> {
    v.iter().copied().reduce(f64::max)
}

fn secs(v: Option<f64>) -> String {
    match v {
        Some(s) if s.is_finite() && s < 10.0 => format!("{:.0} ms", s * 1000.0),
        Some(s) if s.is_finite() => format!("{s:.2} s"),
        Some(_) => "timeout".into(),
        None => "-".into(),
    }
}

fn bytes(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(b) if b < 10.0 * 1024.0 => format!("{b:.0} B"),
        Some(b) if b < 10.0 * 1024.0 * 1024.0 => format!("{:.1} KiB", b / 1024.0),
        Some(b) => format!("{:.2} MiB", b / (1024.0 * 1024.0)),
    }
}

fn mib(v: Option<f64>) -> String {
    v.map_or("-".into(), |m| format!("{m:.1} MiB"))
}

fn watch(w: WatchSent, per: f64) -> String {
    format!("{:.0} / {}", w.events / per, bytes(Some(w.bytes / per)))
}

#[derive(Clone, Copy, PartialEq)]
enum Verdict {
    Info,
    Pass,
    Fail,
    NotRun,
}

struct Row {
    figure: String,
    target: String,
    cells: Vec<String>,
    verdict: Verdict,
}

/// Judges `value` of the size [`TARGET_AT`] (absent: not run; `None`: not measured = FAIL).
fn at_target(
    sizes: &[SizeResult],
    value: impl Fn(&SizeResult) -> Option<f64>,
    ok: impl Fn(f64) -> bool,
) -> Verdict {
    match sizes.iter().find(|s| s.n == TARGET_AT) {
        None => Verdict::NotRun,
        Some(s) => match value(s) {
            Some(v) if ok(v) => Verdict::Pass,
            _ => Verdict::Fail,
        },
    }
}

/// Prints the table and the per-size details; returns whether every judged target passed.
pub fn print(sizes: &[SizeResult], header: &str) -> bool {
    let mut rows: Vec<Row> = Vec::new();
    let mut row = |figure: &str, target: &str, cell: &dyn Fn(&SizeResult) -> String, verdict: Verdict| {
        rows.push(Row {
            figure: figure.into(),
            target: target.into(),
            cells: sizes.iter().map(cell).collect(),
            verdict,
        });
    };
    let info = Verdict::Info;
    row("create nodes (admin, 16 threads; not the controller)", "", &|s| secs(Some(s.create_s)), info);
    row("converge: every pool status full", "", &|s| secs(s.status.map(|c| c.s)), info);
    row("converge: every NodeBlockSet has 10 entries", "", &|s| secs(s.block_sets.map(|c| c.s)), info);
    row(
        "converge: both (controller start -> the later)",
        "<= 1.5 s at 5000",
        &|s| secs(s.converge().map(|c| c.s)),
        at_target(sizes, |s| s.converge().map(|c| c.s), |v| v <= TARGET_CONVERGE_S),
    );
    row(
        "controller: CPU at converge (utime+stime)",
        "<= 0.5 s at 5000",
        &|s| s.converge().map_or("-".into(), |c| format!("{:.2} s", c.ctl.cpu_s)),
        at_target(sizes, |s| s.converge().map(|c| c.ctl.cpu_s), |v| v <= TARGET_CTL_CPU_S),
    );
    row(
        "controller: peak RSS (VmHWM) at converge",
        "<= 30 MiB at 5000",
        &|s| mib(s.converge().map(|c| c.ctl.hwm_mib)),
        at_target(sizes, |s| s.converge().map(|c| c.ctl.hwm_mib), |v| v <= TARGET_CTL_RSS_MIB),
    );
    row("controller: RSS (VmRSS) at converge", "", &|s| mib(s.converge().map(|c| c.ctl.rss_mib)), info);
    let both = |s: &SizeResult, f: &dyn Fn(Converge) -> String| {
        format!("{} / {}", s.status.map_or("-".into(), f), s.block_sets.map_or("-".into(), f))
    };
    row(
        "controller: CPU at statuses full / NodeBlockSets",
        "",
        &|s| both(s, &|c| format!("{:.2} s", c.ctl.cpu_s)),
        info,
    );
    row(
        "controller: peak RSS at statuses full / NodeBlockSets",
        "",
        &|s| both(s, &|c| format!("{:.1} MiB", c.ctl.hwm_mib)),
        info,
    );
    row(
        "controller: reconciles (errors) to converge",
        "",
        &|s| format!("{:.0} ({:.0})", s.reconciles, s.reconcile_errors),
        info,
    );
    row(
        "controller: NodeBlockSet writes to converge",
        "",
        &|s| s.block_sets.or(s.status).and_then(|c| c.writes).map_or("-".into(), |w| format!("{w:.0}")),
        info,
    );
    row(
        "API requests to converge (all clients)",
        "",
        &|s| format!("{:.0}", s.converge_api.requests_total()),
        info,
    );
    row(
        "apiserver watch events / bytes sent, converge",
        "",
        &|s| watch(s.converge_api.watch_total(), 1.0),
        info,
    );
    row("node daemons (others): count", "", &|s| s.others.to_string(), info);
    row("node daemons: start -> ready and settled", "", &|s| secs(Some(s.others_start_s)), info);
    row("node daemon: bytes received at start (mean)", "", &|s| bytes(Some(s.others_start_bytes)), info);
    row(
        "joins: allocatable within the deadline",
        "",
        &|s| format!("{}/{}", s.joins.iter().filter(|j| j.alloc_s.is_some()).count(), s.joins.len()),
        info,
    );
    row("join -> allocatable in 10 pools: p50", "", &|s| secs(percentile(&s.alloc_times(), 50.0)), info);
    row(
        "join -> allocatable in 10 pools: p99",
        "< 1 s at 5000",
        &|s| secs(percentile(&s.alloc_times(), 99.0)),
        at_target(sizes, |s| percentile(&s.alloc_times(), 99.0), |v| v < TARGET_JOIN_P99_S),
    );
    row("join -> allocatable in 10 pools: max", "", &|s| secs(s.alloc_times().last().copied()), info);
    row(
        "join: controller reports the node in all statuses, p50",
        "",
        &|s| {
            let mut v: Vec<f64> = s.joins.iter().filter_map(|j| j.status_s).collect();
            v.sort_by(f64::total_cmp);
            secs(percentile(&v, 50.0))
        },
        info,
    );
    row(
        "join: the node's NodeBlockSet complete, p50 (n ok)",
        "",
        &|s| {
            let mut v: Vec<f64> = s.joins.iter().filter_map(|j| j.block_set_s).collect();
            v.sort_by(f64::total_cmp);
            format!("{} ({})", secs(percentile(&v, 50.0)), v.len())
        },
        info,
    );
    let bytes_ok = sizes.iter().all(|s| max(&s.join_bytes()).is_some_and(|b| b <= TARGET_JOIN_BYTES));
    row(
        "join: bytes each other daemon receives, max",
        "<= 2 KiB",
        &|s| bytes(max(&s.join_bytes())),
        if bytes_ok { Verdict::Pass } else { Verdict::Fail },
    );
    row("join: bytes each other daemon receives, mean", "", &|s| bytes(s.mean_join_bytes()), info);
    let per_join = |s: &SizeResult| s.joins.len().max(1) as f64;
    row(
        "join: controller CPU (mean)",
        "",
        &|s| {
            mean(&s.joins.iter().map(|j| j.ctl_cpu_s).collect::<Vec<_>>())
                .map_or("-".into(), |c| format!("{c:.2} s"))
        },
        info,
    );
    row(
        "join: NodeBlockSet writes (mean)",
        "",
        &|s| {
            mean(&s.joins.iter().filter_map(|j| j.writes).collect::<Vec<_>>())
                .map_or("-".into(), |w| format!("{w:.1}"))
        },
        info,
    );
    row(
        "join: API requests (mean)",
        "",
        &|s| format!("{:.1}", s.join_api.requests_total() / per_join(s)),
        info,
    );
    row(
        "join: apiserver watch events / bytes sent (mean)",
        "",
        &|s| watch(s.join_api.watch_total(), per_join(s)),
        info,
    );
    row(
        "node daemon peak RSS (VmHWM) at the end, max",
        "<= 8 MiB at 5000",
        &|s| mib(max(&s.node_hwm_mib)),
        at_target(sizes, |s| max(&s.node_hwm_mib), |v| v <= TARGET_NODE_RSS_MIB),
    );
    row("node daemon peak RSS at the end, mean", "", &|s| mib(mean(&s.node_hwm_mib)), info);
    row("controller: peak RSS at the end", "", &|s| mib(Some(s.ctl_end.hwm_mib)), info);

    // growth: 1,000 -> 10,000 when both ran, else the smallest -> the largest
    let find = |n: usize| sizes.iter().find(|s| s.n == n);
    let (from, to) = match (find(GROWTH_FROM), find(GROWTH_TO)) {
        (Some(a), Some(b)) => (Some(a), Some(b)),
        _ => (sizes.iter().min_by_key(|s| s.n), sizes.iter().max_by_key(|s| s.n)),
    };
    let mut growth: Vec<(String, String, String, Verdict)> = Vec::new();
    if let (Some(a), Some(b)) = (from, to)
        && a.n < b.n
    {
        let span = format!("{} -> {}", a.n, b.n);
        let (ba, bb) = (a.mean_join_bytes(), b.mean_join_bytes());
        growth.push((
            format!("growth {span}: per-join bytes (mean) flat"),
            "<= +10% +256 B".into(),
            format!("{} -> {}", bytes(ba), bytes(bb)),
            match (ba, bb) {
                (Some(x), Some(y)) if y <= x * 1.1 + FLAT_BYTES_SLACK => Verdict::Pass,
                _ => Verdict::Fail,
            },
        ));
        let (ca, cb) = (a.converge().map(|c| c.s), b.converge().map(|c| c.s));
        let ratio = b.n as f64 / a.n as f64;
        growth.push((
            format!("growth {span}: converge time linear or better"),
            format!("ratio <= {ratio:.0}"),
            match (ca, cb) {
                (Some(x), Some(y)) => format!("{} -> {} (x{:.1})", secs(Some(x)), secs(Some(y)), y / x),
                _ => "-".into(),
            },
            match (ca, cb) {
                (Some(x), Some(y)) if y / x <= ratio => Verdict::Pass,
                _ => Verdict::Fail,
            },
        ));
        let (ra, rb) = (max(&a.node_hwm_mib), max(&b.node_hwm_mib));
        growth.push((
            format!("growth {span}: node daemon RSS flat"),
            "<= +1 MiB".into(),
            format!("{} -> {}", mib(ra), mib(rb)),
            match (ra, rb) {
                (Some(x), Some(y)) if y - x <= TARGET_NODE_RSS_GROWTH_MIB => Verdict::Pass,
                _ => Verdict::Fail,
            },
        ));
    }

    // print
    let fw = rows.iter().map(|r| r.figure.len()).chain(growth.iter().map(|g| g.0.len())).max().unwrap_or(10);
    let tw =
        rows.iter().map(|r| r.target.len()).chain(growth.iter().map(|g| g.1.len())).max().unwrap_or(6).max(6);
    let cw: Vec<usize> = (0..sizes.len())
        .map(|i| {
            rows.iter().map(|r| r.cells[i].len()).max().unwrap_or(0).max(sizes[i].n.to_string().len() + 6)
        })
        .collect();
    let word = |v: Verdict| match v {
        Verdict::Info => "",
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
        Verdict::NotRun => "n/a (no 5000 run)",
    };
    println!();
    println!("{header}");
    let mut head = format!("{:<fw$}  {:<tw$}", "figure", "target");
    for (s, w) in sizes.iter().zip(&cw) {
        head.push_str(&format!("  {:>w$}", format!("{} nodes", s.n)));
    }
    println!("{head}  result");
    for r in &rows {
        let mut line = format!("{:<fw$}  {:<tw$}", r.figure, r.target);
        for (c, w) in r.cells.iter().zip(&cw) {
            line.push_str(&format!("  {c:>w$}"));
        }
        println!("{}", format!("{line}  {}", word(r.verdict)).trim_end());
    }
    for (f, t, v, verdict) in &growth {
        println!("{:<fw$}  {:<tw$}  {v}  {}", f, t, word(*verdict));
    }
    for s in sizes {
        println!();
        println!("{} nodes:", s.n);
        let detail = |snap: &Snapshot, per: f64| {
            snap.requests.iter().map(|(k, v)| format!("{k} {:.1}", v / per)).collect::<Vec<_>>().join(", ")
        };
        // resources with at least half an event or 1 KiB per window; the rest (the apiserver's
        // own background watches, bookmarks) in one sum
        let watch_detail = |snap: &Snapshot, per: f64| {
            let (ev, rest): (Vec<_>, Vec<_>) =
                snap.watch.iter().partition(|(_, w)| w.events / per >= 0.5 || w.bytes / per >= 1024.0);
            let mut parts: Vec<String> = ev.iter().map(|(k, w)| format!("{k} {}", watch(**w, per))).collect();
            let rest_bytes: f64 = rest.iter().map(|(_, w)| w.bytes).sum();
            if rest_bytes > 0.0 {
                let rest_events: f64 = rest.iter().map(|(_, w)| w.events).sum();
                parts.push(format!(
                    "other resources {}",
                    watch(WatchSent { events: rest_events, bytes: rest_bytes, sized: 0.0 }, per)
                ));
            }
            parts.join(", ")
        };
        println!(
            "  requests to converge (apiserver_request_total, bench's own subtracted): {}",
            detail(&s.converge_api, 1.0)
        );
        println!("  watch events / bytes sent to converge: {}", watch_detail(&s.converge_api, 1.0));
        let per = s.joins.len().max(1) as f64;
        println!("  requests per join: {}", detail(&s.join_api, per));
        println!("  watch events / bytes sent per join: {}", watch_detail(&s.join_api, per));
        let allocs: Vec<String> = s.joins.iter().map(|j| secs(j.alloc_s)).collect();
        println!("  join -> allocatable, in join order: {}", allocs.join(" "));
        let per_join_max: Vec<String> = s
            .joins
            .iter()
            .map(|j| bytes(max(&j.bytes.iter().map(|&b| b as f64).collect::<Vec<_>>())))
            .collect();
        println!("  bytes per other daemon, max per join: {}", per_join_max.join(" "));
        println!("  controller VmRSS (s since start: MiB): {}", s.timeline);
        for n in &s.notes {
            println!("  note: {n}");
        }
    }
    let verdicts = rows.iter().map(|r| r.verdict).chain(growth.iter().map(|g| g.3));
    let failed = verdicts.filter(|v| *v == Verdict::Fail).count();
    println!();
    println!("scale: {failed} target(s) FAIL");
    failed == 0
}
