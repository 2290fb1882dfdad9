//! The real `ipam-node` daemon in a sandbox: store, socket, pools file, CNI conf and bin dirs
//! all inside the test's own temp dir. Killed on drop. Standalone mode ([`Daemon::start`]) or
//! cluster mode ([`Daemon::prepare_cluster`]: pools from the API server, health on a free port).
// Renames here play an operator or another tool replacing a file (clippy.toml, docs/style.md).
#![allow(clippy::disallowed_methods)]

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::wait::wait_exit;
use super::{CniOut, Sandbox, attachment_env, cni, env_refs, free_port, wait_until};

/// How long the daemon gets to bind its socket, and to exit after SIGTERM.
pub const START_DEADLINE: Duration = Duration::from_secs(10);

pub struct Daemon {
    pub sandbox: Sandbox,
    pub node: String,
    pub pools_file: PathBuf,
    pub store_file: PathBuf,
    pub socket: PathBuf,
    pub conf_dir: PathBuf,
    pub bin_dir: PathBuf,
    /// The plugin's log file (`ipam.logFile` in [`Daemon::config`]).
    pub cni_log: PathBuf,
    /// The daemon's stderr, shown when it dies unexpectedly.
    pub stderr_file: PathBuf,
    /// Cluster mode's flags; `None` = standalone (`--pools-file`).
    pub cluster: Option<ClusterOpts>,
    /// More flags, after all others (a repeated flag's last value wins), in either mode.
    pub extra: Vec<String>,
    child: Option<Child>,
}

/// What a cluster-mode daemon gets on its command line.
#[derive(Debug, Clone)]
pub struct ClusterOpts {
    pub kubeconfig: PathBuf,
    pub namespace: String,
    /// `--health-probe-bind-address 127.0.0.1:<port>`.
    pub health_port: u16,
    /// More flags, e.g. `--stale-ip-check-interval=1s`.
    pub extra: Vec<String>,
}

impl Daemon {
    /// Writes `pools` to the pools file and starts `ipam-node --node-name node`; returns once
    /// the socket accepts connections.
    pub fn start(pools: &str, node: &str) -> Daemon {
        let mut d = Daemon::prepare(pools, node, None);
        d.spawn();
        d
    }

    /// Same, with the store at `store_file` (e.g. on a small tmpfs).
    pub fn start_with_store(pools: &str, node: &str, store_file: PathBuf) -> Daemon {
        let mut d = Daemon::prepare(pools, node, Some(store_file));
        d.spawn();
        d
    }

    /// Lays the sandbox out without starting anything.
    pub fn prepare(pools: &str, node: &str, store_file: Option<PathBuf>) -> Daemon {
        let sandbox = Sandbox::new();
        let d = Daemon {
            node: node.to_string(),
            pools_file: sandbox.path("pools.yaml"),
            store_file: store_file.unwrap_or_else(|| sandbox.path("state/store")),
            socket: sandbox.path("run/daemon.sock"),
            conf_dir: sandbox.path("net.d/nv-ipam.d"),
            bin_dir: sandbox.path("bin"),
            cni_log: sandbox.path("nv-ipam-cni.log"),
            stderr_file: sandbox.path("ipam-node.stderr"),
            sandbox,
            cluster: None,
            extra: Vec::new(),
            child: None,
        };
        for dir in [d.sandbox.path("state"), d.sandbox.path("run"), d.bin_dir.clone()] {
            fs::create_dir_all(dir).expect("create sandbox subdirs");
        }
        d.write_pools(pools);
        d
    }

    /// Lays out a cluster-mode sandbox (no pools file is passed); nothing is started.
    pub fn prepare_cluster(node: &str, kubeconfig: PathBuf, namespace: &str, extra: &[&str]) -> Daemon {
        let mut d = Daemon::prepare("", node, None);
        d.cluster = Some(ClusterOpts {
            kubeconfig,
            namespace: namespace.to_string(),
            health_port: free_port(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        });
        d
    }

    /// `GET path` on the health server: status code and body (`None` if nothing listens).
    pub fn http_get(&self, path: &str) -> Option<(u16, String)> {
        let port = self.cluster.as_ref().expect("cluster mode").health_port;
        let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let code = out.split_whitespace().nth(1)?.parse().ok()?;
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        Some((code, body))
    }

    /// `/readyz` answered 200.
    pub fn ready(&self) -> bool {
        matches!(self.http_get("/readyz"), Some((200, _)))
    }

    /// The `ipam-node` command line for this sandbox (not yet spawned).
    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ipam-node"));
        c.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .arg("--node-name")
            .arg(&self.node)
            .arg("--bind-address")
            .arg(format!("unix://{}", self.socket.display()))
            .arg("--store-file")
            .arg(&self.store_file)
            .arg("--cni-bin-dir")
            .arg(&self.bin_dir)
            .arg("--cni-nv-ipam-bin-file")
            .arg(env!("CARGO_BIN_EXE_nv-ipam"))
            .arg("--cni-conf-dir")
            .arg(&self.conf_dir)
            .arg("--cni-daemon-socket")
            .arg(format!("unix://{}", self.socket.display()))
            .arg("--cni-log-file")
            .arg(&self.cni_log)
            .arg("--cni-log-level")
            .arg("debug")
            .arg("-v")
            .arg("2");
        match &self.cluster {
            None => {
                c.arg("--pools-file").arg(&self.pools_file);
            }
            Some(k) => {
                c.arg("--kubeconfig")
                    .arg(&k.kubeconfig)
                    .arg("--ippools-namespace")
                    .arg(&k.namespace)
                    .arg("--health-probe-bind-address")
                    .arg(format!("127.0.0.1:{}", k.health_port))
                    .args(&k.extra);
            }
        }
        c.args(&self.extra);
        c
    }

    /// Starts the daemon and waits (deadline) until its socket accepts connections.
    pub fn spawn(&mut self) {
        self.spawn_detached();
        self.wait_serving(START_DEADLINE);
    }

    /// Starts the daemon without waiting for anything.
    pub fn spawn_detached(&mut self) {
        assert!(self.child.is_none(), "daemon already running");
        let _ = fs::remove_file(&self.socket);
        let stderr = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_file)
            .expect("open the daemon's stderr file");
        let child = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn ipam-node");
        self.child = Some(child);
    }

    /// Waits (deadline) until the socket accepts connections; panics if the daemon exits.
    pub fn wait_serving(&mut self, deadline: Duration) {
        let mut exited: Option<ExitStatus> = None;
        wait_until(deadline, "ipam-node's socket accepts connections", || {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                exited = Some(st);
                return true;
            }
            UnixStream::connect(&self.socket).is_ok()
        });
        if let Some(st) = exited {
            self.child = None;
            panic!("ipam-node exited during start ({st}):\n{}", self.stderr());
        }
    }

    /// Runs `ipam-node` to completion (for start-up failures); kills it at the deadline.
    pub fn run_to_exit(&self) -> (ExitStatus, String) {
        let err = self.sandbox.path("run-to-exit.stderr");
        let f = fs::File::create(&err).expect("create stderr file");
        let mut child =
            self.command().stdin(Stdio::null()).stdout(Stdio::null()).stderr(f).spawn().expect("spawn");
        let status =
            wait_exit(&mut child, START_DEADLINE, "ipam-node exits (it was expected to refuse to start)");
        (status, fs::read_to_string(err).unwrap_or_default())
    }

    pub fn write_pools(&self, pools: &str) {
        // Write then rename, so the daemon's poller never reads half a file.
        let tmp = self.sandbox.path("pools.yaml.tmp");
        fs::write(&tmp, pools).expect("write pools file");
        fs::rename(&tmp, &self.pools_file).expect("rename pools file");
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// SIGKILL: no graceful shutdown (crash tests).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (deadline) for a graceful exit; returns the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("daemon is running");
        super::sh("kill", &["-TERM", &c.id().to_string()]);
        wait_exit(&mut c, START_DEADLINE, "ipam-node exits after SIGTERM")
    }

    /// Kill -9 (if running) and start again on the same store, pools and socket.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_file).unwrap_or_default()
    }

    /// A network config whose `ipam` points at this daemon and sandbox.
    pub fn config(&self, version: &str, network: &str, pool: &str) -> Value {
        json!({
            "cniVersion": version,
            "name": network,
            "type": "nv-ipam-e2e-main",
            "ipam": {
                "type": "nv-ipam",
                "poolName": pool,
                "daemonSocket": format!("unix://{}", self.socket.display()),
                "confDir": self.conf_dir.display().to_string(),
                "logFile": self.cni_log.display().to_string(),
                "logLevel": "debug",
            }
        })
    }

    /// `cmd` for (container, ifname) with the usual IPAM-only environment.
    pub fn call(&self, cmd: &str, config: &Value, container: &str, ifname: &str) -> CniOut {
        let env = attachment_env(container, ifname);
        cni(cmd, config, &env_refs(&env))
    }

    /// Bytes of the store file (empty when absent), for "nothing changed" assertions.
    pub fn store_bytes(&self) -> Vec<u8> {
        fs::read(&self.store_file).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}
