//! The one harness for the real `ipam-controller` daemon: health and metrics on free loopback
//! ports, stderr to a log file that is printed when the test fails, killed on drop. Cluster
//! tests add [`cluster_args`] (the controller's own identity from `hack/control-plane.sh`).
//! Must not: wait for anything by itself except in [`Controller::wait_ready`].

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use super::process::Proc;
use super::{free_port, http_get, wait_until};

/// A running `ipam-controller`.
pub struct Controller {
    pub proc: Proc,
    /// `--health-probe-bind-address 127.0.0.1:<health>` (`/healthz`, `/readyz`).
    pub health: u16,
    /// `--metrics-bind-address 127.0.0.1:<metrics>`.
    pub metrics: u16,
}

/// The binary cargo built for this test run.
pub fn controller_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ipam-controller"))
}

/// `--kubeconfig` of the controller identity of `hack/control-plane.sh` and
/// `--ippools-namespace ns`.
pub fn cluster_args(ns: &str) -> Vec<String> {
    let kubeconfig = super::kube::cp_dir().join("controller.kubeconfig");
    vec!["--kubeconfig".into(), kubeconfig.display().to_string(), "--ippools-namespace".into(), ns.into()]
}

impl Controller {
    /// Starts the cargo-built controller with `args` (environment without `KUBECONFIG`, so only
    /// the flags say where the API server is); does not wait.
    pub fn spawn(log: PathBuf, args: &[String]) -> Controller {
        let mut cmd = Command::new(controller_bin());
        cmd.env_remove("KUBECONFIG");
        Controller::spawn_command(cmd, log, args)
    }

    /// Starts `bin` (e.g. the bundle's) with an empty environment, as a pod would run it.
    pub fn spawn_clean(bin: &Path, log: PathBuf, args: &[String]) -> Controller {
        let mut cmd = Command::new(bin);
        cmd.env_clear();
        Controller::spawn_command(cmd, log, args)
    }

    fn spawn_command(mut cmd: Command, log: PathBuf, args: &[String]) -> Controller {
        let (health, metrics) = (free_port(), free_port());
        let child = cmd
            .arg("--health-probe-bind-address")
            .arg(format!("127.0.0.1:{health}"))
            .arg("--metrics-bind-address")
            .arg(format!("127.0.0.1:{metrics}"))
            .args(["-v", "2"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create the controller log"))
            .spawn()
            .expect("start ipam-controller");
        Controller { proc: Proc::new(child, &log), health, metrics }
    }

    /// Waits until `/readyz` answers 200; panics if the process exits first.
    pub fn wait_ready(&mut self, deadline: Duration) {
        wait_until(deadline, "the controller is ready (/readyz)", || {
            assert!(self.proc.running(), "ipam-controller exited:\n{}", self.proc.log());
            self.readyz() == 200
        });
    }

    /// The status of `GET /readyz` (0 when nothing answers).
    pub fn readyz(&self) -> u16 {
        http_get(self.health, "/readyz").0
    }

    /// The status of `GET /healthz` (0 when nothing answers).
    pub fn healthz(&self) -> u16 {
        http_get(self.health, "/healthz").0
    }

    /// One scrape of `/metrics`.
    pub fn scrape(&self) -> String {
        http_get(self.metrics, "/metrics").1
    }

    /// The value of the sample line starting with `series` (name plus labels), if any.
    pub fn metric(&self, series: &str) -> Option<f64> {
        sample(&self.scrape(), series)
    }

    /// `nv_ipam_reconcile_total`.
    pub fn reconciles(&self) -> f64 {
        self.metric("nv_ipam_reconcile_total").expect("nv_ipam_reconcile_total is exported")
    }

    /// `nv_ipam_leader == 1`.
    pub fn is_leader(&self) -> bool {
        self.metric("nv_ipam_leader") == Some(1.0)
    }

    /// `nv_ipam_leader == 1` and `nv_ipam_reconcile_total` from one scrape.
    pub fn leader_and_reconciles(&self) -> (bool, f64) {
        let body = self.scrape();
        (
            sample(&body, "nv_ipam_leader") == Some(1.0),
            sample(&body, "nv_ipam_reconcile_total").expect("nv_ipam_reconcile_total is exported"),
        )
    }

    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// Sends `sig` (`-TERM`, `-KILL`).
    pub fn signal(&self, sig: &str) {
        self.proc.signal(sig);
    }

    /// Waits (deadline) until the process exits.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        self.proc.wait_exit(deadline, "ipam-controller exits")
    }
}

/// The value of the sample line of `scrape` starting with `series`, if any.
pub fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}
