//! nv-ipam: IP address management for Kubernetes secondary networks, API-compatible with
//! nvidia-k8s-ipam.
//!
//! Crate map. Pure modules decide and never touch files, sockets, clocks or threads; shells act.
//!
//! | module       | kind  | owns |
//! |--------------|-------|------|
//! | [`ip`]       | pure  | address math: u128 offsets, ranges, merging, subnet carving, gateways |
//! | [`prescan`]  | pure  | nesting-depth check of JSON/YAML from outside before any decoder; JSON list item spans |
//! | [`bounded`]  | pure  | serde helpers that cap decoded list lengths; clipping of echoed input in messages |
//! | [`api`]      | pure  | the pool kinds and their fixed names (`api::kind`), IPPool/CIDRPool/Node serde types (wire names kept), status types, manifest decoding, validation |
//! | [`alloc`]    | pure  | what differs per pool kind (`alloc::kind::PoolKind`, one module per kind), block/prefix planners, node pool configs, the container-IP allocator |
//! | [`store`]    | shell | the node's allocation store: flock, journal, compaction, refusal of damage, read-only snapshots |
//! | [`protocol`] | shell | the length-prefixed JSON protocol between `nv-ipam` and `ipam-node` |
//! | [`inventory`] | pure | what a node holds: the allocations endpoint's report, built from pools and a store state |
//! | [`node`]     | shell | `ipam-node`: socket server, request handling, CNI install, pools file, allocations endpoint |
//! | [`cni`]      | shell | the `nv-ipam` CNI plugin: env, config layering, results, errors |
//! | [`kube`]     | shell | Kubernetes API: config, HTTPS client, page and watch decoding ([`kube::decode`]), reflector |
//! | [`controller`] | shell | `ipam-controller`: `plan`, pure `reconcile`/`admission`, cluster mode ([`controller::run`]) |
//! | [`cli`]      | shell | `kubectl-nv_ipam`: `who-has`, `usage`, `check` from nodes or a store file; pure reports |
//! | [`health`]   | shell | the `/healthz`, `/readyz`, `/metrics` HTTP server of both daemons |
//! | [`http`]     | shell | the minimal HTTP/1.1 request reader and response writer of both servers |
//! | [`deadline`] | shell | a socket whose reads and writes end at one instant (whole-request deadlines) |
//! | [`slots`]    | shell | fair connection slots of the three servers (pure `admit` decides whom to close) |
//! | [`metrics`]  | pure  | Prometheus text format rendering |
//! | [`logging`]  | shell | the stderr/file logger behind the `log` facade (text or JSON lines) |
//! | [`oflags`]   | pure  | `open(2)` flags std has no names for (no symlink follow, no FIFO wait) |
//! | [`flags`]    | pure  | flag value syntax both daemons share: durations, booleans, `-v`, `--logging-format` |
//! | [`upstream_flags`] | pure | the table of every flag the reference's daemons accept; the component-base logging flags and their checks |
//! | [`default_paths`] | pure | the default host paths of the three programs (socket, store, CNI dirs, log, certs) |
//! | [`replace`]  | shell | atomic file replacement (temp, fsync, rename, fsync dir): the only rename |
//!
//! Layers: a module names only modules below it (docs/design.md, "Module layers"; enforced by
//! tests/layers.rs). Lint and style policy (what clippy.toml enforces and why): docs/style.md.

// Tests rename files to play other actors (an operator's `mv`, a crash leftover); production
// code is still held to clippy.toml's rules by the non-test build `--all-targets` also checks.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod alloc;
pub mod api;
pub mod bounded;
pub mod cli;
pub mod cni;
pub mod controller;
pub mod deadline;
pub mod default_paths;
pub mod flags;
pub mod health;
pub mod http;
pub mod inventory;
pub mod ip;
pub mod kube;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod oflags;
pub mod prescan;
pub mod protocol;
pub mod replace;
pub mod slots;
pub mod store;
pub mod upstream_flags;
