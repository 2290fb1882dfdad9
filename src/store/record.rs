//! What the store records: reservations, and the operations a journal line carries.
//!
//! Owns: the serde shapes of the store's lines (part of the on-disk format, see `store` docs).
//! Must not: do I/O.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// One address held by one attachment in one pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    /// Pool key: `name` (IPPool) or `cidrpool/name` (CIDRPool).
    pub pool: String,
    pub container_id: String,
    pub ifname: String,
    pub ip: IpAddr,
    /// The CNI network name the ADD came from; empty for entries imported from the reference.
    #[serde(default)]
    pub network: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Seconds since the Unix epoch when the reservation was made.
    pub created: u64,
    /// The attachment asked for this address (`requestedIps`, `allocateIPWithIndex`,
    /// `allocateDefaultGateway`) rather than taking the next free one. Written only when true;
    /// absent in lines older than this field and in imports, which read as false (an older
    /// ipam-node ignores it). An IPPool static address may lie anywhere in the pool's subnet,
    /// outside the node's block: `kubectl-nv_ipam check` needs to know.
    #[serde(default, rename = "static", skip_serializing_if = "is_false")]
    pub is_static: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// An attachment's identity inside one pool.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttachmentKey {
    pub pool: String,
    pub container_id: String,
    pub ifname: String,
}

impl Reservation {
    pub fn key(&self) -> AttachmentKey {
        AttachmentKey {
            pool: self.pool.clone(),
            container_id: self.container_id.clone(),
            ifname: self.ifname.clone(),
        }
    }
}

/// One change. A journal line holds the operations of one request, applied all or nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Op {
    Reserve(Reservation),
    #[serde(rename_all = "camelCase")]
    Release {
        pool: String,
        container_id: String,
        ifname: String,
    },
    /// Moves a pool's round-robin cursor (the reference's `last_reserved_ip`).
    Cursor {
        pool: String,
        ip: IpAddr,
    },
    /// Since format version 2: a released address may not be handed out by round-robin
    /// allocation before `until_ms` (milliseconds since the Unix epoch; `--released-ip-cooldown`).
    #[serde(rename_all = "camelCase")]
    Cooldown {
        pool: String,
        ip: IpAddr,
        until_ms: u64,
    },
}

/// The first line of every store file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    /// Incremented at every compaction; `store.prev` holds generation - 1.
    pub generation: u64,
}

/// Every other line: the operations of one committed request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    pub seq: u64,
    pub ops: Vec<Op>,
}

pub const FORMAT_NAME: &str = "nv-ipam-store";
/// The version this build writes. Version 2 added the `cooldown` op; version 1 files (no
/// cooldowns) are read as they are and rewritten as version 2 at the next compaction.
pub const FORMAT_VERSION: u32 = 2;

/// Oldest version this build reads.
pub const FORMAT_VERSION_MIN: u32 = 1;
