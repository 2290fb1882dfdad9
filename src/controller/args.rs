//! The `ipam-controller` command line, parsed with lexopt into a [`Command`].
//!
//! Owns: flag names, usage text and [`ArgsError`]. Must not: touch the files the flags name
//! (see `plan`).

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

/// Usage text printed for `--help` and on usage errors.
pub const USAGE: &str = "usage: ipam-controller plan --pools FILE --nodes FILE
       ipam-controller --version

commands:
  plan    plan every IPPool and CIDRPool of --pools for the nodes of --nodes and print the
          pools with status.allocations filled in, as a JSON List (files: JSON or YAML)

cluster mode (watching the API server) is not built yet.";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Version,
    Help,
    /// No subcommand: cluster mode, which this build does not have yet.
    Cluster,
    Plan {
        pools: PathBuf,
        nodes: PathBuf,
    },
}

/// A command line that cannot be run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgsError {
    UnknownCommand { command: String },
    UnexpectedArgument { argument: String },
    MissingFlag { flag: &'static str },
    MissingValue { flag: String },
    Invalid { message: String },
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgsError::UnknownCommand { command } => write!(f, "unknown command {command:?}: use plan"),
            ArgsError::UnexpectedArgument { argument } => {
                write!(f, "unexpected argument {argument:?}: see --help")
            }
            ArgsError::MissingFlag { flag } => write!(f, "plan needs {flag} FILE"),
            ArgsError::MissingValue { flag } => write!(f, "{flag} needs a FILE value"),
            ArgsError::Invalid { message } => write!(f, "{message}: see --help"),
        }
    }
}

impl std::error::Error for ArgsError {}

fn from_lexopt(e: lexopt::Error) -> ArgsError {
    match e {
        lexopt::Error::MissingValue { option: Some(o) } => ArgsError::MissingValue { flag: o },
        other => ArgsError::Invalid { message: other.to_string() },
    }
}

/// An argument as the user typed it.
fn shown(arg: &lexopt::Arg) -> String {
    match arg {
        lexopt::Arg::Long(l) => format!("--{l}"),
        lexopt::Arg::Short(c) => format!("-{c}"),
        lexopt::Arg::Value(v) => v.to_string_lossy().into_owned(),
    }
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, ArgsError> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let Some(first) = p.next().map_err(from_lexopt)? else { return Ok(Command::Cluster) };
    match first {
        Long("version") | Short('V') => Ok(Command::Version),
        Long("help") | Short('h') => Ok(Command::Help),
        Value(v) if v == "plan" => parse_plan(&mut p),
        Value(v) => Err(ArgsError::UnknownCommand { command: v.to_string_lossy().into_owned() }),
        other => Err(ArgsError::UnexpectedArgument { argument: shown(&other) }),
    }
}

fn parse_plan(p: &mut lexopt::Parser) -> Result<Command, ArgsError> {
    use lexopt::prelude::*;
    let (mut pools, mut nodes) = (None, None);
    while let Some(arg) = p.next().map_err(from_lexopt)? {
        match arg {
            Long("pools") => pools = Some(PathBuf::from(p.value().map_err(from_lexopt)?)),
            Long("nodes") => nodes = Some(PathBuf::from(p.value().map_err(from_lexopt)?)),
            Long("help") | Short('h') => return Ok(Command::Help),
            other => return Err(ArgsError::UnexpectedArgument { argument: shown(&other) }),
        }
    }
    Ok(Command::Plan {
        pools: pools.ok_or(ArgsError::MissingFlag { flag: "--pools" })?,
        nodes: nodes.ok_or(ArgsError::MissingFlag { flag: "--nodes" })?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(a: &[&str]) -> Result<Command, String> {
        parse(a.iter().map(OsString::from)).map_err(|e| e.to_string())
    }

    #[test]
    fn commands() {
        assert_eq!(parse_str(&[]), Ok(Command::Cluster));
        assert_eq!(parse_str(&["--version"]), Ok(Command::Version));
        assert_eq!(parse_str(&["-h"]), Ok(Command::Help));
        assert_eq!(
            parse_str(&["plan", "--pools", "p.yaml", "--nodes=n.json"]),
            Ok(Command::Plan { pools: "p.yaml".into(), nodes: "n.json".into() })
        );
    }

    #[test]
    fn errors_name_the_flag() {
        assert_eq!(parse_str(&["plan", "--pools", "p"]), Err("plan needs --nodes FILE".into()));
        assert_eq!(parse_str(&["plan", "--nodes", "n"]), Err("plan needs --pools FILE".into()));
        assert_eq!(parse_str(&["plan", "--pools"]), Err("--pools needs a FILE value".into()));
        assert_eq!(
            parse_str(&["plan", "--bogus"]),
            Err("unexpected argument \"--bogus\": see --help".into())
        );
        assert_eq!(parse_str(&["apply"]), Err("unknown command \"apply\": use plan".into()));
    }
}
