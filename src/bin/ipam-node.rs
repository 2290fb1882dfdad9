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
            print!("{}", node::config::usage());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ipam-node: {e}");
            return ExitCode::from(2);
        }
    };
    let logging_ok = match logging::init_config(&cfg.logging.config, LogTarget::Stderr) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("ipam-node: cannot set up logging: {e}");
            false
        }
    };
    for w in &cfg.logging.warnings {
        log::warn!("{w}");
    }
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
