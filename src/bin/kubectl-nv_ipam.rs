//! `kubectl-nv_ipam`, the `kubectl nv-ipam` plugin: parse, run one command, exit with its code
//! (`nv_ipam::cli` says what each means).

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(nv_ipam::cli::main(std::env::args_os().skip(1)))
}
