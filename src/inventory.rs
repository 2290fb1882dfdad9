//! What one node holds, as `ipam-node`'s read-only allocations endpoint tells it
//! (`GET /v1/allocations`, protocol/allocations.md "The report") and as `kubectl-nv_ipam`
//! reads it back, from a node or from a store file: the wire types ([`NodeAllocations`]), the
//! endpoint's fixed names (path, token header and audience, the authorization attributes) and
//! [`build`], which turns a node's pool configurations and its store state into the report.
//!
//! Owns: the report's format (version [`FORMAT_VERSION`]) and the limits a reader applies to
//! one (a node may be hostile: [`MAX_POOLS`], [`MAX_RESERVATIONS`]). Must not: do I/O, read
//! clocks or decide who may read it (the node's `node::allocations` does).

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::alloc::NodePool;
use crate::api::{PoolKey, PoolType};
use crate::store::{Reservation, StoreState};

/// The endpoint's path on the health/metrics listener of `ipam-node`.
pub const PATH: &str = "/v1/allocations";
/// `kind` of the report.
pub const KIND: &str = "NodeAllocations";
/// The report's format version; a reader refuses others (a field's meaning may have changed).
pub const FORMAT_VERSION: u32 = 1;
/// The header that carries the bearer token when `Authorization` cannot: the API server's pod
/// proxy removes `Authorization` from a request once it authenticated the caller (the API
/// server's authentication filter,
/// https://pkg.go.dev/k8s.io/apiserver/pkg/endpoints/filters#WithAuthentication), and passes
/// other headers on.
pub const TOKEN_HEADER: &str = "X-Nv-Ipam-Token";
/// The audience a token must be bound to (TokenRequest `spec.audiences`): the node asks its
/// TokenReview for this audience only, so a token sent to a node is not accepted by the API
/// server itself, and a hostile node cannot use one it was sent against the API.
pub const TOKEN_AUDIENCE: &str = "nv-ipam-node";
/// The SubjectAccessReview a caller must pass: verb `get` on this resource of this group,
/// named after the node, in the namespace of the node's pools (`--ippools-namespace`). No CRD
/// defines it; RBAC rules may name any resource.
pub const AUTHZ_GROUP: &str = "nv-ipam.nvidia.com";
/// See [`AUTHZ_GROUP`].
pub const AUTHZ_RESOURCE: &str = "nodeallocations";
/// See [`AUTHZ_GROUP`].
pub const AUTHZ_VERB: &str = "get";

/// Most pools decoded from one report: a node serves a handful; the API's own cap on list
/// entries per object ([`crate::api::MAX_LIST_ITEMS`]) bounds a hostile node's list instead.
pub const MAX_POOLS: usize = crate::api::MAX_LIST_ITEMS;
/// Most reservations decoded from one report: 262,144, far above a node's pods times their
/// interfaces; the byte limit of the reader (`cli::MAX_ANSWER_BYTES`) is reached first for
/// entries of real size, this bounds entries a hostile node makes tiny.
pub const MAX_RESERVATIONS: usize = 1 << 18;

/// `GET /v1/allocations`: a node's pools and reservations at one instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeAllocations {
    pub kind: String,
    pub version: u32,
    pub node: String,
    /// When the report was made, RFC 3339 UTC.
    pub generated_at: String,
    /// The pools the node serves, by key.
    #[serde(deserialize_with = "crate::bounded::vec::<_, _, MAX_POOLS>")]
    pub pools: Vec<PoolUsage>,
    /// Every reservation of the store, by pool then address (also those of pools the node no
    /// longer serves).
    #[serde(deserialize_with = "crate::bounded::vec::<_, _, MAX_RESERVATIONS>")]
    pub reservations: Vec<ReservationInfo>,
}

/// One served pool on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolUsage {
    pub name: String,
    pub pool_type: PoolType,
    /// The pool's subnet (IPPool) or this node's prefix (CIDRPool): the mask pods get.
    pub subnet: String,
    /// The node's block (IPPool) or the usable span of its prefix (CIDRPool).
    pub range_start: IpAddr,
    pub range_end: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Addresses in the range (saturated at `u64::MAX`, an IPv6 range can be larger).
    pub size: u64,
    /// Reservations of the pool (static ones included, also those outside the range).
    pub allocated: u64,
    /// Of `allocated`: addresses the attachment asked for (static IP, index, gateway).
    #[serde(rename = "static")]
    pub static_count: u64,
    /// Released addresses whose `--released-ip-cooldown` has not ended (not reserved).
    pub released_in_cooldown: u64,
    /// What a round-robin ADD could still take (range minus exclusions, gateway, reserved and
    /// cooling addresses), saturated at `u64::MAX`.
    pub free: u64,
    /// Why the node serves the pool from its last valid spec, when it does (the current spec
    /// is invalid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
}

/// One reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReservationInfo {
    pub pool: String,
    pub pool_type: PoolType,
    pub ip: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    pub container_id: String,
    pub interface: String,
    /// The CNI network name of the ADD (empty for reservations imported from the reference).
    #[serde(default)]
    pub network: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// When the reservation was made, RFC 3339 UTC; absent for imported ones (unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The attachment asked for this address (see [`PoolUsage::static_count`]).
    #[serde(default, rename = "static")]
    pub is_static: bool,
}

impl ReservationInfo {
    /// `namespace/name` of the pod, when the runtime sent both.
    pub fn pod(&self) -> Option<String> {
        match (self.pod_namespace.as_deref(), self.pod_name.as_deref()) {
            (Some(ns), Some(n)) if !ns.is_empty() && !n.is_empty() => Some(format!("{ns}/{n}")),
            _ => None,
        }
    }

    /// The pool's key as the store writes it.
    pub fn key(&self) -> PoolKey {
        PoolKey::new(self.pool_type, self.pool.clone())
    }
}

/// A served pool: its configuration and, when its current spec is invalid, why it is held.
pub struct Served<'a> {
    pub pool: &'a NodePool,
    pub held: Option<&'a str>,
}

/// `secs` since the Unix epoch as RFC 3339 UTC (`YYYY-MM-DDTHH:MM:SS.000Z`).
pub fn rfc3339(secs: u64) -> String {
    crate::logging::format_utc(UNIX_EPOCH + Duration::from_secs(secs))
}

/// The report of `node`: `pools` as served, `state` as stored, at `now_ms` (ms since the
/// epoch: the cooldowns still running then count as cooling).
pub fn build(node: &str, pools: &[Served<'_>], state: &StoreState, now_ms: u64) -> NodeAllocations {
    let mut by_pool: BTreeMap<&str, Vec<&Reservation>> = BTreeMap::new();
    for r in state.reservations() {
        by_pool.entry(r.pool.as_str()).or_default().push(r);
    }
    let mut cooling: BTreeMap<&str, HashSet<IpAddr>> = BTreeMap::new();
    for (pool, ip, until) in state.cooldowns() {
        if until > now_ms {
            cooling.entry(pool).or_default().insert(ip);
        }
    }
    let mut usage: Vec<PoolUsage> = pools
        .iter()
        .map(|s| {
            let key = s.pool.key.to_string();
            let held: &[&Reservation] = by_pool.get(key.as_str()).map_or(&[], Vec::as_slice);
            let cool = cooling.get(key.as_str());
            let mut unavailable: HashSet<IpAddr> = held.iter().map(|r| r.ip).collect();
            let cooling_free = cool.map_or(0, |c| c.iter().filter(|ip| !unavailable.contains(ip)).count());
            unavailable.extend(cool.into_iter().flatten().copied());
            PoolUsage {
                name: s.pool.key.name.clone(),
                pool_type: s.pool.key.pool_type,
                subnet: s.pool.subnet.to_string(),
                range_start: s.pool.range.start(),
                range_end: s.pool.range.end(),
                gateway: s.pool.gateway,
                size: sat(s.pool.range.len()),
                allocated: held.len() as u64,
                static_count: held.iter().filter(|r| r.is_static).count() as u64,
                released_in_cooldown: cooling_free as u64,
                free: sat(s.pool.free_count(&unavailable)),
                held: s.held.map(str::to_string),
            }
        })
        .collect();
    usage.sort_by(|a, b| (a.pool_type, &a.name).cmp(&(b.pool_type, &b.name)));
    let mut reservations: Vec<ReservationInfo> = state.reservations().map(info).collect();
    reservations.sort_by(|a, b| (a.pool_type, &a.pool, a.ip).cmp(&(b.pool_type, &b.pool, b.ip)));
    NodeAllocations {
        kind: KIND.into(),
        version: FORMAT_VERSION,
        node: node.to_string(),
        generated_at: crate::logging::format_utc(UNIX_EPOCH + Duration::from_millis(now_ms)),
        pools: usage,
        reservations,
    }
}

fn info(r: &Reservation) -> ReservationInfo {
    let key = PoolKey::parse(&r.pool);
    ReservationInfo {
        pool: key.name,
        pool_type: key.pool_type,
        ip: r.ip,
        pod_namespace: r.pod_namespace.clone(),
        pod_name: r.pod_name.clone(),
        pod_uid: r.pod_uid.clone(),
        container_id: r.container_id.clone(),
        interface: r.ifname.clone(),
        network: r.network.clone(),
        device_id: r.device_id.clone(),
        created: (r.created > 0).then(|| rfc3339(r.created)),
        is_static: r.is_static,
    }
}

fn sat(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip::IpRange;
    use crate::store::Op;

    fn pool(key: PoolKey, subnet: &str, start: &str, end: &str, gw: Option<&str>) -> NodePool {
        NodePool {
            key,
            subnet: subnet.parse().expect("subnet"),
            range: IpRange::new(start.parse().expect("ip"), end.parse().expect("ip")).expect("range"),
            gateway: gw.map(|g| g.parse().expect("gw")),
            exclusions: Vec::new(),
            routes: Vec::new(),
            default_gateway: false,
        }
    }

    fn res(pool: &str, cid: &str, ip: &str, is_static: bool, created: u64) -> Op {
        Op::Reserve(Reservation {
            pool: pool.into(),
            container_id: cid.into(),
            ifname: "net1".into(),
            ip: ip.parse().expect("ip"),
            network: "macvlan".into(),
            pod_name: Some(format!("pod-{cid}")),
            pod_namespace: Some("ns".into()),
            pod_uid: Some(format!("uid-{cid}")),
            device_id: None,
            created,
            is_static,
        })
    }

    #[test]
    fn counts_per_pool_and_every_reservation() {
        let blue = pool(
            PoolKey::new(PoolType::IpPool, "blue"),
            "192.168.0.0/24",
            "192.168.0.1",
            "192.168.0.8",
            Some("192.168.0.1"),
        );
        let red =
            pool(PoolKey::new(PoolType::CidrPool, "red"), "10.0.1.0/24", "10.0.1.1", "10.0.1.254", None);
        let mut s = StoreState::default();
        s.apply_all(&[
            res("blue", "a", "192.168.0.2", false, 1_700_000_000),
            res("blue", "b", "192.168.0.3", false, 0),
            // static, outside the block but in the subnet: counted, takes nothing from free
            res("blue", "s", "192.168.0.200", true, 1),
            res("cidrpool/red", "a", "10.0.1.5", false, 1),
            // a pool the node no longer serves: still listed among the reservations
            res("gone", "g", "172.16.0.2", false, 1),
            Op::Cooldown { pool: "blue".into(), ip: "192.168.0.4".parse().expect("ip"), until_ms: 2_000 },
            Op::Cooldown { pool: "blue".into(), ip: "192.168.0.5".parse().expect("ip"), until_ms: 999 },
        ])
        .expect("apply");
        let r = build(
            "n1",
            &[Served { pool: &red, held: Some("spec.cidr: bad") }, Served { pool: &blue, held: None }],
            &s,
            1_000,
        );
        assert_eq!((r.kind.as_str(), r.version, r.node.as_str()), (KIND, 1, "n1"));
        assert_eq!(r.generated_at, "1970-01-01T00:00:01.000Z");
        let b = &r.pools[0];
        assert_eq!(
            (b.name.as_str(), b.pool_type, b.subnet.as_str()),
            ("blue", PoolType::IpPool, "192.168.0.0/24")
        );
        // 8 addresses, minus the gateway, 2 reserved in range, 1 cooling (the other ended)
        assert_eq!((b.size, b.allocated, b.static_count, b.released_in_cooldown, b.free), (8, 3, 1, 1, 4));
        assert_eq!(r.pools[1].held.as_deref(), Some("spec.cidr: bad"));
        assert_eq!((r.pools[1].allocated, r.pools[1].free), (1, 253));
        assert_eq!(r.reservations.len(), 5);
        let first = &r.reservations[0];
        assert_eq!((first.pool.as_str(), first.ip.to_string().as_str()), ("blue", "192.168.0.2"));
        assert_eq!(first.created.as_deref(), Some("2023-11-14T22:13:20.000Z"));
        assert_eq!(first.pod().as_deref(), Some("ns/pod-a"));
        assert_eq!(r.reservations[1].created, None, "created 0: imported, unknown");
        assert!(r.reservations.iter().any(|x| x.pool == "red" && x.pool_type == PoolType::CidrPool));
        assert!(r.reservations.iter().any(|x| x.pool == "gone"));
    }

    #[test]
    fn the_wire_form_round_trips_and_names_fields_as_documented() {
        let blue = pool(
            PoolKey::new(PoolType::IpPool, "blue"),
            "192.168.0.0/24",
            "192.168.0.1",
            "192.168.0.8",
            None,
        );
        let mut s = StoreState::default();
        s.apply_all(&[res("blue", "s", "192.168.0.2", true, 1)]).expect("apply");
        let r = build("n1", &[Served { pool: &blue, held: None }], &s, 0);
        let v = serde_json::to_value(&r).expect("json");
        assert_eq!(v["pools"][0]["static"], 1);
        assert_eq!(v["pools"][0]["releasedInCooldown"], 0);
        assert_eq!(v["pools"][0]["poolType"], "ippool");
        assert_eq!(v["pools"][0]["rangeStart"], "192.168.0.1");
        assert_eq!(v["reservations"][0]["interface"], "net1");
        assert_eq!(v["reservations"][0]["static"], true);
        assert_eq!(v["reservations"][0]["podUid"], "uid-s");
        let back: NodeAllocations = serde_json::from_value(v).expect("decode");
        assert_eq!(back, r);
    }

    #[test]
    fn a_report_over_the_pool_limit_is_refused() {
        let one = r#"{"name":"p","poolType":"ippool","subnet":"s","rangeStart":"10.0.0.1","rangeEnd":"10.0.0.2","size":2,"allocated":0,"static":0,"releasedInCooldown":0,"free":2}"#;
        let doc = |n: usize| {
            format!(
                r#"{{"kind":"NodeAllocations","version":1,"node":"n","generatedAt":"x","pools":[{}],"reservations":[]}}"#,
                vec![one; n].join(",")
            )
        };
        let ok: NodeAllocations = serde_json::from_str(&doc(MAX_POOLS)).expect("at the limit");
        assert_eq!(ok.pools.len(), MAX_POOLS);
        assert!(serde_json::from_str::<NodeAllocations>(&doc(MAX_POOLS + 1)).is_err(), "one more");
    }

    #[test]
    fn a_report_over_the_reservation_limit_is_refused() {
        let one = r#"{"pool":"p","poolType":"ippool","ip":"10.0.0.1","containerId":"c","interface":"i"}"#;
        let doc = |n: usize| {
            format!(
                r#"{{"kind":"NodeAllocations","version":1,"node":"n","generatedAt":"x","pools":[],"reservations":[{}]}}"#,
                vec![one; n].join(",")
            )
        };
        let ok: NodeAllocations = serde_json::from_str(&doc(MAX_RESERVATIONS)).expect("at the limit");
        assert_eq!(ok.reservations.len(), MAX_RESERVATIONS);
        assert!(serde_json::from_str::<NodeAllocations>(&doc(MAX_RESERVATIONS + 1)).is_err(), "one more");
    }
}
