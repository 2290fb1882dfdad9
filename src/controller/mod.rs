//! `ipam-controller`: today the offline `plan` command; cluster mode (watching the API server
//! and writing status) comes later and reuses the same planning step.
//!
//! Owns: command-line parsing ([`args`]) and the plan command ([`plan`]), which reads the pools
//! and nodes files and returns what the controller would write. Must not: print; the binary
//! reports on stdout/stderr and maps the outcome to an exit code.

pub mod args;
pub mod plan;
pub mod reconcile;
