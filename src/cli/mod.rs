//! `kubectl-nv_ipam` (`kubectl nv-ipam`): the questions operators ask, answered from the
//! nodes themselves. `who-has IP`, `usage`, `check [--fix]` (see [`args::USAGE`]), in a
//! cluster through the API server (`cluster`) or on a standalone host from its store file
//! (`local`); `-o table|json|yaml`.
//!
//! Exit codes, for scripts: [`EXIT_OK`] 0; [`EXIT_NOT_FOUND`] 1 (who-has: no node that
//! answered holds the address; check: inconsistencies remain); [`EXIT_USAGE`] 2;
//! [`EXIT_UNREACHABLE`] 3 (the API server or the store could not be read, or at least one node
//! did not answer: what could be read is still printed). When several apply, the higher wins
//! (an incomplete answer is worth knowing before its content).
//!
//! Rooms: `args` (the command line), `report` (pure: the reports and the checks), `render`
//! (pure: tables, JSON, YAML), `cluster` and `local` (the shells that gather a view). This
//! file runs one command. Must not: write anything but pool status, and that only on
//! `check --fix`.

pub mod args;
pub mod cluster;
pub mod local;
pub mod render;
pub mod report;

use std::ffi::OsString;

use args::{Args, Command};

pub const EXIT_OK: u8 = 0;
pub const EXIT_NOT_FOUND: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_UNREACHABLE: u8 = 3;

/// Runs the command line `argv` (without the program name): prints the report to stdout,
/// errors to stderr, returns the exit code.
pub fn main(argv: impl IntoIterator<Item = OsString>) -> u8 {
    let args = match args::parse(argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("kubectl-nv_ipam: {e}");
            return EXIT_USAGE;
        }
    };
    match args.command {
        Command::Help => {
            print!("{}", args::USAGE);
            return EXIT_OK;
        }
        Command::Version => {
            println!("kubectl-nv_ipam {}", env!("CARGO_PKG_VERSION"));
            return EXIT_OK;
        }
        _ => {}
    }
    match run(&args) {
        Ok((text, code)) => {
            print!("{text}");
            code
        }
        Err(e) => {
            eprintln!("kubectl-nv_ipam: {e}");
            EXIT_UNREACHABLE
        }
    }
}

/// The report's text and the exit code; `Err`: nothing could be read (exit 3).
fn run(args: &Args) -> Result<(String, u8), String> {
    let (fix, force) = match args.command {
        Command::Check { fix, force } => (fix, force),
        _ => (false, false),
    };
    let (view, client) = match &args.store_file {
        Some(store) => (local::gather(args, store)?, None),
        None => {
            let c = cluster::client(args)?;
            let with_pods = matches!(args.command, Command::Check { .. });
            (cluster::gather(args, &c, with_pods)?, Some(c))
        }
    };
    let node = args.node.as_deref();
    let (text, incomplete, found) = match &args.command {
        Command::WhoHas(ip) => {
            let r = report::who_has(&view, *ip, node);
            (render::who_has(&r, args.output), !r.unreachable.is_empty(), !r.holders.is_empty())
        }
        Command::Usage => {
            let r = report::usage(&view, args.pool.as_deref(), node);
            (render::usage(&r, args.output), !r.unreachable.is_empty(), true)
        }
        Command::Check { .. } => {
            if let (Some(pools_file), Some(host)) = (&args.pools_file, report::node_without_any_block(&view))
            {
                eprintln!(
                    "kubectl-nv_ipam: warning: no pool of {} has a block for node {host:?}: addresses were not checked against blocks; give the node name ipam-node runs with (--node-name, or $NODE_NAME) and the pools file it serves (--pools-file)",
                    pools_file.display()
                );
            }
            let mut r = report::check(&view, node);
            if fix && let Some(c) = &client {
                // an entry goes only once no pod is bound to its node (module docs of report)
                let mut held = std::collections::BTreeMap::new();
                for n in report::missing_nodes(&r).into_iter().filter(|_| !force) {
                    let why = match cluster::pods_bound(c, n) {
                        Ok(false) => continue,
                        Ok(true) => report::pods_still_bound(n),
                        Err(e) => format!(
                            "not fixed: cannot tell whether pods are bound to node {n} ({e}); run check --fix again, or check --fix --force to remove the entry anyway"
                        ),
                    };
                    held.insert(n.to_string(), why);
                }
                let fixes = report::missing_node_fixes(&view, &r, &held);
                let done = cluster::fix_missing_nodes(c, &args.namespace, fixes);
                report::record_fixes(&mut r, &done, &held);
            }
            (render::check(&r, args.output), !r.unreachable.is_empty(), r.open() == 0)
        }
        Command::Help | Command::Version => (String::new(), false, true),
    };
    let code = if incomplete {
        EXIT_UNREACHABLE
    } else if !found {
        EXIT_NOT_FOUND
    } else {
        EXIT_OK
    };
    Ok((text, code))
}
