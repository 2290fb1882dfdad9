//! `ipam-controller`: the offline `plan` command and cluster mode (watch the API server, write
//! each pool's status).
//!
//! Owns: command-line parsing ([`args`]), the plan command ([`plan`]), the pure per-pool
//! decision ([`reconcile`]), leader election ([`leader`]), the cluster-mode shell ([`run`]) and
//! the validating admission webhook (pure [`admission`], HTTPS shell [`webhook`]).
//! Must not: print; the binary reports on stdout/stderr and maps the outcome to an exit code.

pub mod admission;
pub mod args;
pub mod leader;
pub mod plan;
pub mod reconcile;
pub mod run;
pub mod webhook;
