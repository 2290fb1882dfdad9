//! A process a test started: killed on drop, its log printed when the test failed, signalled
//! and waited for with a deadline. The daemons' harnesses ([`super::controller::Controller`],
//! the slow-peer tests' `ipam-node`) are built on it.

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::Duration;

use super::wait::wait_exit;

/// A spawned process, killed on drop.
pub struct Proc {
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    pub fn new(child: Child, log: &Path) -> Proc {
        Proc { child: Some(child), log: log.to_path_buf() }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Sends `sig` (`-TERM`, `-KILL`, ...) with kill(1); a no-op once the process was reaped.
    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            super::sh("kill", &[sig, &c.id().to_string()]);
        }
    }

    /// Waits until the process exits; after `deadline` kills it and panics naming `what` (the
    /// log is printed on drop).
    pub fn wait_exit(&mut self, deadline: Duration, what: &str) -> ExitStatus {
        let mut c = self.child.take().expect("process is running");
        wait_exit(&mut c, deadline, what)
    }

    /// SIGTERM, then [`Proc::wait_exit`].
    pub fn term_and_wait(&mut self, deadline: Duration, what: &str) -> ExitStatus {
        self.signal("-TERM");
        self.wait_exit(deadline, what)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- log {} ---\n{}", self.log.display(), self.log());
        }
    }
}
