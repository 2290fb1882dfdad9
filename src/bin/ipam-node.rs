//! `ipam-node`: parse flags, set up logging, run the daemon, map the outcome to an exit code.

use std::process::ExitCode;

use nv_ipam::logging::{self, LogTarget};
use nv_ipam::node::{self, Command};

fn main() -> ExitCode {
    let cfg = match node::config::parse(std::env::args_os().skip(1)) {
        Ok(Command::Run(cfg)) => cfg,
        Ok(Command::Version) => {
            println!("ipam-node {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Ok(Command::Help) => {
            print!("{}", node::config::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ipam-node: {e}");
            return ExitCode::from(2);
        }
    };
    let level = logging::level_for_verbosity(cfg.verbosity);
    let logging_ok = match logging::init(level, cfg.logging_format, LogTarget::Stderr) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("ipam-node: cannot set up logging: {e}");
            false
        }
    };
    match node::run(&cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The logger writes to stderr: print the reason once, through it when it works.
            if logging_ok {
                log::error!("{e}");
            } else {
                eprintln!("ipam-node: {e}");
            }
            ExitCode::FAILURE
        }
    }
}
