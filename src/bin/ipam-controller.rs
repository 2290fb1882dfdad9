//! `ipam-controller`: parse the command line, run, print, map the outcome to an exit code.
//!
//! Exit codes: 0 success (cluster mode: stopped by SIGTERM/SIGINT); 1 some pool was invalid
//! (the plan is still printed) or cluster mode could not start or run; 2 usage or file errors.
//!
//! Must not: decide anything; the library does.

use std::process::ExitCode;

use nv_ipam::controller::args::{self, Command};
use nv_ipam::controller::plan::run_plan;

fn main() -> ExitCode {
    let cmd = match args::parse(std::env::args_os().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ipam-controller: {e}");
            return ExitCode::from(2);
        }
    };
    match cmd {
        Command::Version => {
            println!("ipam-controller {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Help => {
            println!("{}", args::usage());
            ExitCode::SUCCESS
        }
        Command::Cluster(c) => match nv_ipam::controller::run::run(&c) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ipam-controller: {e}");
                ExitCode::from(1)
            }
        },
        Command::Plan { pools, nodes } => match run_plan(&pools, &nodes) {
            Ok(report) => {
                println!("{}", report.to_json_pretty());
                for e in &report.invalid {
                    eprintln!("error: {e}");
                }
                for u in &report.unallocated {
                    eprintln!("warning: {u}");
                }
                if report.invalid.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) }
            }
            Err(e) => {
                eprintln!("ipam-controller: {e}");
                ExitCode::from(2)
            }
        },
    }
}
