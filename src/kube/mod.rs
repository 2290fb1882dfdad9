//! The Kubernetes API client: configuration, a blocking HTTPS client, list-then-watch.
//!
//! Owns: everything that talks to the API server ([`client::Client`]; credentials in `auth`,
//! decoding of pages and watch lines in [`decode`], an open watch in [`watch`]), where it is
//! and who we are ([`config::ClusterConfig`]), REST paths ([`resource::Resource`]), the error type
//! ([`error::KubeError`]), retry pacing ([`backoff`]) and the reflector ([`reflector::reflect`]).
//! Must not: know about pools or allocation; callers give it types and resources.
//!
//! Threads: everything blocks; a reflector runs in a thread of its caller. `Client::shutdown`
//! unblocks every read of every clone at process exit.

mod auth;
pub mod backoff;
pub mod client;
pub mod config;
pub mod decode;
pub mod error;
pub mod reflector;
pub mod resource;
pub mod watch;

pub use client::Client;
pub use config::{Auth, ClusterConfig};
pub use decode::Decoded;
pub use error::KubeError;
pub use reflector::{Change, reflect, reflect_from};
pub use resource::{
    CIDRPOOLS, CONFIGMAPS, EVENTS, IPPOOLS, LEASES, ListOptions, NAMESPACES, NODEBLOCKSETS, NODES,
    ObjectList, PODS, Resource, SERVICEACCOUNTS, SUBJECTACCESSREVIEWS, TOKENREVIEWS, WatchEvent,
    field_equals,
};
pub use watch::WatchStream;
