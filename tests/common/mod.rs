//! The one helper layer of the integration tests: a temp directory per test ([`Sandbox`]),
//! a free port ([`free_port`]), waits with a deadline ([`wait`]: the only place that sleeps to wait),
//! processes killed on drop ([`process::Proc`]), the real `ipam-node` daemon
//! ([`daemon::Daemon`]), the real `ipam-controller` ([`controller::Controller`]), the real
//! `nv-ipam` plugin run with a clean environment ([`cni`]), the API server of
//! `hack/control-plane.sh` ([`kube`], which also decides when a test skips), ipam-controller's
//! per-node delivery played by a test ([`node_blocks`]) and a namespace of pools with cluster-mode
//! daemons where it does ([`cluster`]), network
//! namespaces / links the test owns ([`netns`]), and slow or idle peers ([`peers`]). Every
//! name is unique per process and per call, so tests run in parallel. A test file that needs
//! something twice adds it here rather than keeping its own copy.
//!
//! Not every test file uses every helper.
#![allow(dead_code)]

pub mod cluster;
pub mod controller;
pub mod daemon;
pub mod hostnode;
pub mod kube;
pub mod netns;
pub mod node_blocks;
pub mod peers;
pub mod process;
pub mod wait;

pub use wait::wait_until;

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

/// The CNI versions the plugin claims (libcni's `version.All`, which the reference lists) and
/// the tests exercise IPAM-only.
pub const VERSIONS: [&str; 7] = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// Whether results of `version` use the 0.1.0/0.2.0 layout (`ip4`/`ip6` objects, no `ips`).
pub fn per_family(version: &str) -> bool {
    matches!(version, "0.1.0" | "0.2.0")
}

/// Whether `version` allows CHECK (0.4.0 and later).
pub fn allows_check(version: &str) -> bool {
    !matches!(version, "0.1.0" | "0.2.0" | "0.3.0" | "0.3.1")
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A short token unique in this process and (through the pid) across concurrently running
/// test binaries: `<pid base36><counter base36>`. Used for dirs, netns and link names.
pub fn unique() -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{}{}", base36(std::process::id() as usize), base36(n))
}

fn base36(mut n: usize) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[n % 36]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii digits")
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// A directory owned by one test, removed (with its contents) on drop. The one temp-dir type
/// of the tests (no tempfile crate: the project adds no crates for this).
pub struct Sandbox {
    pub dir: PathBuf,
}

impl Sandbox {
    /// `<tmp>/nv-ipam-e2e-<unique>`.
    pub fn new() -> Sandbox {
        Sandbox::labelled("e2e")
    }

    /// `<tmp>/nv-ipam-<label>-<unique>`: the label tells whose leftovers a killed run left.
    pub fn labelled(label: &str) -> Sandbox {
        let dir = std::env::temp_dir().join(format!("nv-ipam-{label}-{}", unique()));
        // A leftover from a killed run with the same pid would make results stale.
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        Sandbox { dir }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.dir
    }

    /// `name` inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// What one plugin run produced.
#[derive(Debug, Clone)]
pub struct CniOut {
    /// Exit status (-1 when killed by a signal).
    pub exit: i32,
    pub stdout: String,
    /// stdout parsed as JSON, `Value::Null` when empty or not JSON.
    pub json: Value,
    pub stderr: String,
    /// Human-readable description of the call for failure messages.
    pub call: String,
}

impl CniOut {
    /// Panics with the whole output unless the call exited 0.
    pub fn ok(self) -> CniOut {
        assert_eq!(self.exit, 0, "expected success, got:\n{self}");
        self
    }

    /// Panics unless the call failed with CNI error `code` (stdout JSON `code`, non-zero exit).
    pub fn fails_with(self, code: u64) -> CniOut {
        assert_ne!(self.exit, 0, "expected error {code}, got success:\n{self}");
        assert_eq!(self.json["code"].as_u64(), Some(code), "expected error code {code}, got:\n{self}");
        self
    }

    /// The addresses of a success result in any version's layout: `ips[].address`, or
    /// `ip4.ip` then `ip6.ip` (0.1.0, 0.2.0).
    pub fn addresses(&self) -> Vec<String> {
        self.ip_entries().iter().filter_map(|e| e["address"].as_str().map(str::to_string)).collect()
    }

    /// The result's address entries as `{"address", "gateway"?}` objects in any version's
    /// layout: `ips[]` as they are, or `ip4` then `ip6` with `ip` renamed `address`.
    pub fn ip_entries(&self) -> Vec<Value> {
        if let Some(ips) = self.json["ips"].as_array() {
            return ips.clone();
        }
        ["ip4", "ip6"]
            .iter()
            .filter_map(|k| self.json.get(*k))
            .map(|f| {
                let mut e = f.clone();
                if let Some(o) = e.as_object_mut() {
                    if let Some(ip) = o.remove("ip") {
                        o.insert("address".into(), ip);
                    }
                    o.remove("routes");
                }
                e
            })
            .collect()
    }

    /// The result's routes in any version's layout: top-level `routes`, or those under `ip4`
    /// then `ip6` (0.1.0, 0.2.0).
    pub fn routes(&self) -> Vec<Value> {
        if self.json.get("ip4").is_some() || self.json.get("ip6").is_some() {
            return ["ip4", "ip6"]
                .iter()
                .flat_map(|k| self.json[*k]["routes"].as_array().cloned().unwrap_or_default())
                .collect();
        }
        self.json["routes"].as_array().cloned().unwrap_or_default()
    }
}

impl std::fmt::Display for CniOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "  call: {}\n  exit: {}\n  stdout: {}\n  stderr: {}",
            self.call, self.exit, self.stdout, self.stderr
        )
    }
}

/// Runs `binary` as a CNI plugin: clean environment (only PATH), `CNI_COMMAND=cmd`, the given
/// variables, `config` on stdin.
pub fn run_plugin(binary: &Path, cmd: &str, config: &Value, env: &[(&str, &str)]) -> CniOut {
    let stdin = serde_json::to_vec(config).expect("serialise the config");
    run_plugin_raw(binary, cmd, &stdin, env)
}

/// How long one plugin run may take before the test fails: far beyond any call timeout of the
/// plugin (`daemonCallTimeoutSeconds`), so only a hung plugin reaches it.
pub const PLUGIN_DEADLINE: Duration = Duration::from_secs(60);

pub fn run_plugin_raw(binary: &Path, cmd: &str, stdin: &[u8], env: &[(&str, &str)]) -> CniOut {
    run_plugin_within(binary, cmd, stdin, env, PLUGIN_DEADLINE)
}

/// [`run_plugin_raw`] that must exit within `deadline` (killed and a panic otherwise).
pub fn run_plugin_within(
    binary: &Path,
    cmd: &str,
    stdin: &[u8],
    env: &[(&str, &str)],
    deadline: Duration,
) -> CniOut {
    let mut c = Command::new(binary);
    c.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
    {
        let mut w = child.stdin.take().expect("stdin is piped");
        // A plugin that fails early may close stdin; that is its answer, not a test error.
        let _ = w.write_all(stdin);
    }
    let out = wait::output_within(child, deadline, &format!("{} CNI_COMMAND={cmd} exits", binary.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    let vars: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    CniOut {
        exit: out.status.code().unwrap_or(-1),
        json,
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        call: format!(
            "{} CNI_COMMAND={cmd} {} <<< {}",
            binary.display(),
            vars.join(" "),
            String::from_utf8_lossy(stdin)
        ),
    }
}

/// A binary of the test-binaries cache (`hack/build-testbins.sh`), `rel` inside its bin dir
/// (`cni-plugins/bridge`). `$NV_IPAM_TESTBINS` names the dir (hack/test.sh and
/// hack/control-plane.sh export it). When it is unset the test skips with one line on stderr,
/// as tests that need the control plane do, and fails instead when
/// `NV_IPAM_REQUIRE_CONTROL_PLANE=1` (hack/test.sh); when it is set, the binary must be there.
pub fn testbin(rel: &str) -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("NV_IPAM_TESTBINS").filter(|d| !d.is_empty()) else {
        let how = "set NV_IPAM_TESTBINS=$(hack/build-testbins.sh), or run under hack/control-plane.sh";
        if std::env::var(kube::REQUIRE_CONTROL_PLANE).is_ok_and(|v| v == "1") {
            panic!("NV_IPAM_TESTBINS is not set, {rel} is needed: {how}");
        }
        let test = std::thread::current().name().unwrap_or("?").to_string();
        let _ = writeln!(std::io::stderr(), "skipped {test}: needs {rel} from the test binaries; {how}");
        return None;
    };
    let p = PathBuf::from(dir).join(rel);
    assert!(p.is_file(), "{} is missing: rebuild the test binaries with hack/build-testbins.sh", p.display());
    Some(p)
}

/// The plugin under test, built by cargo for this test run.
pub fn nv_ipam_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nv-ipam"))
}

/// Runs the real `nv-ipam` plugin.
pub fn cni(cmd: &str, config: &Value, env: &[(&str, &str)]) -> CniOut {
    run_plugin(&nv_ipam_bin(), cmd, config, env)
}

/// The usual attachment environment for an IPAM-only call (a netns path that does not exist:
/// an IPAM plugin never opens it), containerd-style CNI_ARGS.
pub fn attachment_env(container: &str, ifname: &str) -> Vec<(String, String)> {
    vec![
        ("CNI_CONTAINERID".into(), container.into()),
        ("CNI_NETNS".into(), format!("/var/run/netns/nvt-absent-{container}")),
        ("CNI_IFNAME".into(), ifname.into()),
        ("CNI_PATH".into(), "/nonexistent-cni-path".into()),
        (
            "CNI_ARGS".into(),
            format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=pod-{container};K8S_POD_UID=uid-{container}"
            ),
        ),
    ]
}

/// Borrowed view of an owned env list.
pub fn env_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Runs `cmd`, which must succeed; panics naming `what`, with its output, otherwise.
pub fn run_ok(cmd: &mut Command, what: &str) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command that must succeed (for `ip`, `mount`, ...); panics with its output otherwise.
pub fn sh(program: &str, args: &[&str]) -> String {
    let out = run_ok(Command::new(program).args(args), program);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Same as [`sh`] but tolerates failure (cleanup paths); returns whether it succeeded.
pub fn sh_quiet(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// (status, body) of a plain `GET path` on 127.0.0.1:port (health, readiness and metrics
/// endpoints), or (0, "") when nothing answers.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return (0, String::new()) };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).is_err()
    {
        return (0, String::new());
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// An ADD frame as the plugin sends it for `eth0` of `container`: IPPool kind, no static IPs,
/// no pod reference. Tests override fields with `AllocateRequest { pod: …, ..allocate_request(…) }`.
pub fn allocate_request(
    network: &str,
    container: &str,
    pools: &[&str],
) -> nv_ipam::protocol::message::AllocateRequest {
    nv_ipam::protocol::message::AllocateRequest {
        network: network.into(),
        container_id: container.into(),
        ifname: "eth0".into(),
        pools: pools.iter().map(|p| p.to_string()).collect(),
        pool_type: nv_ipam::api::PoolType::IpPool,
        requested_ips: vec![],
        allocate_default_gateway: false,
        allocate_ip_with_index: None,
        pod: nv_ipam::protocol::message::PodRef::default(),
        device_id: None,
    }
}

/// The DEL frame matching [`allocate_request`].
pub fn release_request(
    network: &str,
    container: &str,
    pools: &[&str],
) -> nv_ipam::protocol::message::ReleaseRequest {
    nv_ipam::protocol::message::ReleaseRequest {
        network: network.into(),
        container_id: container.into(),
        ifname: "eth0".into(),
        pools: pools.iter().map(|p| p.to_string()).collect(),
        pool_type: nv_ipam::api::PoolType::IpPool,
    }
}
