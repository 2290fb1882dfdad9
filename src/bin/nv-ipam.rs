//! The `nv-ipam` CNI plugin binary: read the environment and stdin, run, print, exit.
//!
//! Owns: the process edge only (stdout, exit status). Must not: decide anything (see
//! `nv_ipam::cni`), print anything but the result or error JSON to stdout, or pull in the
//! Kubernetes/TLS/YAML code of the library (the release binary must stay under 2 MB; the
//! linker drops what this file does not reach).

use std::io::{self, Write};
use std::process::ExitCode;

use nv_ipam::cni::{self, Env};

fn main() -> ExitCode {
    let env = Env::from_process();
    let outcome = cni::run(&env, &mut io::stdin().lock());
    if !outcome.stdout.is_empty() {
        let mut out = io::stdout().lock();
        // Nothing to do if stdout is gone: the runtime that closed it reads no answer anyway.
        let _ = writeln!(out, "{}", outcome.stdout).and_then(|()| out.flush());
    }
    log::logger().flush();
    if outcome.success { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
