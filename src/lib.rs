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
//! | [`store`]    | shell | the node's allocation store: flock, journal, atomic snapshots |
//! | [`protocol`] | shell | the length-prefixed JSON protocol between `nv-ipam` and `ipam-node` |
//! | [`node`]     | shell | `ipam-node`: socket server, request handling, CNI install, pools file |
//! | [`cni`]      | shell | the `nv-ipam` CNI plugin: env, config layering, results, errors |
//! | [`kube`]     | shell | Kubernetes API: kubeconfig/in-cluster config, HTTPS client, list-then-watch reflector |
//! | [`controller`] | shell | `ipam-controller`: offline `plan`, cluster mode (pure `reconcile`, leader election, status writes) |
//! | [`health`]   | shell | the `/healthz`, `/readyz`, `/metrics` HTTP server of both daemons |
//! | [`http`]     | shell | the minimal HTTP/1.1 request reader and response writer of both servers |
//! | [`deadline`] | shell | a socket whose reads and writes end at one instant (whole-request deadlines) |
//! | [`slots`]    | shell | fair connection slots of the three servers (pure `admit` decides whom to close) |
//! | [`metrics`]  | pure  | Prometheus text format rendering |
//! | [`logging`]  | shell | the stderr/file logger behind the `log` facade (text or JSON lines) |
//! | [`oflags`]   | pure  | `open(2)` flags std has no names for (no symlink follow, no FIFO wait) |

pub mod alloc;
pub mod api;
pub mod bounded;
pub mod cni;
pub mod controller;
pub mod deadline;
pub mod health;
pub mod http;
pub mod ip;
pub mod kube;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod oflags;
pub mod prescan;
pub mod protocol;
pub mod slots;
pub mod store;
