//! The scale bench's processes and what it reads about them: start one with its log, kill it on
//! drop; CPU and memory from /proc; the bytes its TCP sockets received, from `ss`; a plain-HTTP
//! GET for the daemons' /metrics and /readyz; the bench's stop flag (SIGINT/SIGTERM).
//!
//! Owns: processes the bench started (killed by their own PID only). Must not: talk to the
//! apiserver (`world.rs`, `apiserver.rs`).

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// `sysconf(_SC_CLK_TCK)` on Linux (all architectures the project targets).
const CLK_TCK: f64 = 100.0;

/// Set by SIGINT/SIGTERM; every wait loop of the bench calls [`check_stop`], so a stopped run
/// unwinds through the Drop guards (processes killed, objects deleted) instead of leaving them.
static STOP: AtomicBool = AtomicBool::new(false);

pub fn install_stop_handler() {
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, &STOP).expect("install the SIGINT/SIGTERM handler");
    }
}

pub fn stopped() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Panics (and so cleans up) once SIGINT or SIGTERM arrived.
pub fn check_stop() {
    assert!(!stopped(), "scale: interrupted (SIGINT/SIGTERM); cleaning up");
}

/// Sleeps `d`, then [`check_stop`].
pub fn pause(d: Duration) {
    thread::sleep(d);
    check_stop();
}

/// A process killed (and reaped) on drop.
pub struct Proc {
    child: Child,
    pub name: String,
    pub log: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Panics with the log's tail if the process has exited.
    pub fn check_alive(&mut self) {
        if let Ok(Some(st)) = self.child.try_wait() {
            let log = fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
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

/// Starts `bin` with `args`, stderr to `log`, no `KUBECONFIG` (the args name the identity).
pub fn spawn(name: String, bin: &str, args: &[String], log: PathBuf) -> Proc {
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

/// CPU seconds (`utime + stime`), peak RSS (`VmHWM`) and RSS (`VmRSS`) in MiB of a live process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub cpu_s: f64,
    pub hwm_mib: f64,
    pub rss_mib: f64,
}

pub fn usage(pid: u32) -> Usage {
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
    Usage { cpu_s: ticks / CLK_TCK, hwm_mib: kb("VmHWM:") / 1024.0, rss_mib: kb("VmRSS:") / 1024.0 }
}

/// Panics unless `ss -tinp` runs: the per-join bytes come from it (std's `TcpStream` reads
/// with `recv(2)`, which `rchar` of /proc/PID/io does not count).
pub fn require_ss() {
    let ok = Command::new("ss").args(["-tinpH"]).output().is_ok_and(|o| o.status.success());
    assert!(ok, "scale: `ss -tinp` does not run; install iproute2 (the per-join bytes come from it)");
}

/// `bytes_received` summed over the TCP sockets of each of `pids` (one `ss -tinp` call; TLS
/// records, i.e. what crossed the network). A pid without a TCP socket maps to 0.
pub fn bytes_received(pids: &[u32]) -> BTreeMap<u32, u64> {
    let out = Command::new("ss").args(["-tinpH"]).output().expect("run ss -tinpH");
    assert!(out.status.success(), "ss -tinpH failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut sums: BTreeMap<u32, u64> = pids.iter().map(|&p| (p, 0)).collect();
    let mut owner: Option<u32> = None;
    // one socket = a line with the addresses and users:(("name",pid=N,fd=M)), then an
    // indented info line with bytes_received
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) || line.contains("users:(") {
            owner = line
                .split_once("pid=")
                .and_then(|(_, r)| r.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|p| p.parse().ok());
        }
        let Some(pid) = owner else { continue };
        let Some(sum) = sums.get_mut(&pid) else { continue };
        if let Some((_, rest)) = line.split_once("bytes_received:") {
            *sum += rest.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    sums
}

/// Waits until no socket of `pids` received a byte for `quiet`; returns the counts and whether
/// that happened before `deadline` (else the last counts).
pub fn settle(pids: &[u32], quiet: Duration, deadline: Duration) -> (BTreeMap<u32, u64>, bool) {
    let end = Instant::now() + deadline;
    let mut last = bytes_received(pids);
    let mut since = Instant::now();
    while Instant::now() < end {
        pause(Duration::from_millis(100));
        let now = bytes_received(pids);
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return (now, true);
        }
    }
    (last, false)
}

/// A loopback port that is free now, below the kernel's ephemeral range: a port from
/// `bind(:0)` is an ephemeral one, which the daemons' own outgoing connections (tens of them)
/// may take before the daemon that is told to listen on it starts.
pub fn free_port() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let range = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let low: u16 = range.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(32768);
    assert!(low > 11_000, "scale: the ephemeral port range starts at {low}; the bench needs room below it");
    // from a per-process offset, so two runs at once rarely probe the same ports
    let span = (low - 10_000) as usize;
    let base = (std::process::id() as usize * 977) % span;
    for _ in 0..span {
        let port = 10_000 + ((base + NEXT.fetch_add(1, Ordering::Relaxed)) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("scale: no free loopback port between 10000 and {low}");
}

/// Status and body of `GET path` on a plain-HTTP loopback port, or `None`.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
}

/// Samples a process's VmRSS every 20 ms until stopped: (seconds since start, MiB).
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<Vec<(f64, f64)>>>,
}

impl RssSampler {
    pub fn start(pid: u32, t0: Instant) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = thread::spawn(move || {
            let mut out = Vec::new();
            // bounded: stops when asked, when the process is gone, or after 30 minutes
            while !flag.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(1800) {
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

    /// The samples where RSS first exceeded the last one shown by 4 MiB or more (the climb to
    /// the peak, a handful of points even over minutes), and the last sample.
    pub fn finish(mut self) -> String {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self.handle.take().and_then(|h| h.join().ok()).unwrap_or_default();
        let mut shown: Vec<String> = Vec::new();
        let mut last = f64::NEG_INFINITY;
        for (i, (t, m)) in samples.iter().enumerate() {
            if *m - last >= 4.0 || i + 1 == samples.len() {
                shown.push(format!("{t:.2}s:{m:.0}"));
                last = last.max(*m);
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
