//! Request handling of `ipam-node`: turns protocol requests into allocator decisions and store
//! commits.
//!
//! Owns: multi-pool all-or-nothing, idempotent allocate, check against the runtime's addresses,
//! release by attachment, GC by network, status, the released-IP cooldown.
//!
//! Cooldown (`--released-ip-cooldown`, 0 = off): every release (DEL, GC, stale cleanup) also
//! records `until = now + cooldown` for the address in the store, in the same commit, so it
//! survives restarts. Round-robin (`Next`) allocation skips cooling addresses; an explicit
//! request (static IP, `allocateIPWithIndex`, `allocateDefaultGateway`) may take one: the caller
//! named that address on purpose, and refusing it would fail pods that re-use fixed addresses. Must not: touch sockets (see `server`) or hold
//! the store lock across anything slower than a local fsync.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::alloc::NodePool;
use crate::alloc::allocator::{self, AllocError};
use crate::api::{PoolKey, PoolType};
use crate::ip::{self, Family};
use crate::protocol::{
    AllocateRequest, Allocation, CheckRequest, ErrorCode, GcRequest, PoolStatus, ReleaseRequest, Reply,
    Request, StatusRequest,
};
use crate::store::{self, AttachmentKey, Durability, Op, Reservation, Store, StoreError, Ticket};

use super::metrics::NodeMetrics;
use super::pools::PoolSet;

/// A failed request as the daemon reports it: a stable code and a message that says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    pub code: ErrorCode,
    pub message: String,
}

impl ServiceError {
    fn new(code: ErrorCode, message: impl Into<String>) -> ServiceError {
        ServiceError { code, message: message.into() }
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl From<AllocError> for ServiceError {
    fn from(e: AllocError) -> ServiceError {
        let code = match e {
            AllocError::Exhausted { .. } => ErrorCode::PoolExhausted,
            AllocError::Taken { .. } => ErrorCode::IpUnavailable,
            AllocError::OutsideSubnet { .. } | AllocError::IndexOutOfRange { .. } => ErrorCode::IpOutOfRange,
            AllocError::Unusable { .. } | AllocError::IsGateway { .. } | AllocError::NoGateway { .. } => {
                ErrorCode::InvalidRequest
            }
        };
        ServiceError::new(code, e.to_string())
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> ServiceError {
        let code = match e {
            StoreError::Inconsistent(_) => ErrorCode::Internal,
            _ => ErrorCode::StoreFailed,
        };
        ServiceError::new(code, e.to_string())
    }
}

/// The daemon's shared state: the store (one writer at a time) and the current pool configs.
pub struct Service {
    node: String,
    store: Mutex<Store>,
    durability: Arc<Durability>,
    pools: RwLock<Arc<PoolSet>>,
    cooldown: Duration,
    metrics: NodeMetrics,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn invalid(message: impl Into<String>) -> ServiceError {
    ServiceError::new(ErrorCode::InvalidRequest, message)
}

fn require(field: &str, value: &str) -> Result<(), ServiceError> {
    if value.is_empty() {
        return Err(invalid(format!("{field} must not be empty")));
    }
    Ok(())
}

/// Pool keys of a request: one or two distinct, non-empty names.
fn pool_keys(pools: &[String], pool_type: PoolType) -> Result<Vec<PoolKey>, ServiceError> {
    if pools.is_empty() || pools.len() > 2 {
        return Err(invalid(format!(
            "pools must name one or two pools (one per IP family), got {}",
            pools.len()
        )));
    }
    if pools.iter().any(String::is_empty) {
        return Err(invalid("pools must not contain an empty name"));
    }
    if pools.len() == 2 && pools[0] == pools[1] {
        return Err(invalid(format!(
            "pools names \"{}\" twice; name two different pools for dual-stack",
            pools[0]
        )));
    }
    Ok(pools.iter().map(|p| PoolKey::new(pool_type, p.clone())).collect())
}

/// What each pool is asked for. Static addresses (`requestedIps`): each named once; each pool
/// takes the first one inside its subnet (node prefix for a CIDRPool); every one must be taken.
/// Each way that fails has its own error naming the addresses, the pool and the fix.
fn static_wants(configs: &[&NodePool], r: &AllocateRequest) -> Result<Vec<allocator::Request>, ServiceError> {
    let ips = &r.requested_ips;
    let pool_of = |ip: &IpAddr| configs.iter().find(|c| c.subnet.contains(ip));
    // A set, not a scan of the earlier ones: a frame may carry a great many addresses.
    let mut seen = HashSet::with_capacity(ips.len());
    for ip in ips {
        if !seen.insert(ip) {
            let inside = pool_of(ip).map(|c| format!(" (pool \"{}\")", c.key)).unwrap_or_default();
            return Err(invalid(format!(
                "requested IPs name {ip} twice{inside}; name each address once, at most one per pool"
            )));
        }
    }
    let mut used = vec![false; ips.len()];
    let mut wants = Vec::with_capacity(configs.len());
    for cfg in configs {
        let want = if let Some(i) = (0..ips.len()).find(|&i| !used[i] && cfg.subnet.contains(&ips[i])) {
            used[i] = true;
            allocator::Request::Static(ips[i])
        } else if let Some(index) = r.allocate_ip_with_index {
            allocator::Request::Index(index)
        } else if r.allocate_default_gateway {
            allocator::Request::Gateway
        } else {
            allocator::Request::Next
        };
        wants.push(want);
    }
    let Some(i) = used.iter().position(|u| !u) else { return Ok(wants) };
    let extra = ips[i];
    // An unused address inside a requested pool: that pool already took an earlier one.
    if let Some((cfg, taken)) = configs.iter().zip(&wants).find_map(|(c, w)| match w {
        allocator::Request::Static(t) if c.subnet.contains(&extra) => Some((c, t)),
        _ => None,
    }) {
        return Err(invalid(format!(
            "requested IPs {taken} and {extra} are both in the subnet {} of pool \"{}\", which gives an attachment one address; request one address per pool",
            cfg.subnet, cfg.key
        )));
    }
    let subnets: Vec<String> = configs.iter().map(|c| format!("\"{}\" {}", c.key, c.subnet)).collect();
    Err(ServiceError::new(
        ErrorCode::IpOutOfRange,
        format!(
            "requested IP {extra} is outside every requested pool's subnet on this node ({}); request an address inside one of them",
            subnets.join(", ")
        ),
    ))
}

impl Service {
    pub fn new(node: String, store: Store, pools: PoolSet) -> Service {
        let durability = store.durability();
        Service {
            node,
            store: Mutex::new(store),
            durability,
            pools: RwLock::new(Arc::new(pools)),
            cooldown: Duration::ZERO,
            metrics: NodeMetrics::default(),
        }
    }

    /// Sets the released-IP cooldown (see the module docs); zero turns it off.
    pub fn with_cooldown(mut self, cooldown: Duration) -> Service {
        self.cooldown = cooldown;
        self
    }

    pub fn metrics(&self) -> &NodeMetrics {
        &self.metrics
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Copies out the reservations `keep` selects, holding the store lock only for the copy:
    /// callers that go on to ask the API server must not stall requests meanwhile.
    pub fn snapshot(&self, keep: impl Fn(&Reservation) -> bool) -> Vec<Reservation> {
        self.lock_store().state().reservations().filter(|r| keep(r)).cloned().collect()
    }

    /// Per pool of the current pool set: `(pool key, allocated, free)` for metrics.
    pub fn usage(&self) -> Vec<(PoolKey, u64, u64)> {
        let pools = self.pools();
        let store = self.lock_store();
        let now_ms = store::unix_ms();
        pools.keys().filter_map(|k| pools.get(k)).map(|cfg| pool_usage(cfg, store.state(), now_ms)).collect()
    }

    /// Releases these reservations in one commit (stale cleanup), each only if the store still
    /// holds exactly it: one DEL'd and re-made meanwhile under the same key is a new one and
    /// stays. Returns how many were released.
    pub fn release_exact(&self, snapshot: &[Reservation]) -> Result<u64, ServiceError> {
        let by_key: std::collections::HashMap<AttachmentKey, &Reservation> =
            snapshot.iter().map(|r| (r.key(), r)).collect();
        self.release_where(|res| by_key.get(&res.key()).is_some_and(|s| *s == res))
    }

    /// Replaces the pool configs (pools file re-read, or a status change in the cluster).
    pub fn set_pools(&self, pools: PoolSet) {
        *self.pools.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(pools);
    }

    pub fn pools(&self) -> Arc<PoolSet> {
        self.pools.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits until `ticket` is on disk; another request's sync may cover it (group commit).
    /// A failed sync leaves the file's content unknown: the process exits so that its
    /// supervisor restarts it and the store is read back from what really is on disk.
    fn durable(&self, ticket: Ticket) -> Result<(), ServiceError> {
        if let Err(e) = self.durability.wait(ticket) {
            log::error!("store sync failed: {e}; exiting so that the store is reloaded from disk");
            std::process::exit(74);
        }
        Ok(())
    }

    fn lock_store(&self) -> std::sync::MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave the store half-applied: commit applies
        // in memory only what reached the disk. So a poisoned mutex is still consistent.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn handle(&self, request: Request) -> Result<Reply, ServiceError> {
        let started = std::time::Instant::now();
        let (op, result) = match request {
            Request::Allocate(r) => ("add", self.allocate(r)),
            Request::Check(r) => ("check", self.check(r)),
            Request::Release(r) => ("del", self.release(r)),
            Request::Gc(r) => ("gc", self.gc(r)),
            Request::Status(r) => ("status", self.status(r)),
        };
        self.metrics.observe(op, started.elapsed());
        result
    }

    /// The pool's configuration, or `pool_not_found` saying why there is none: the pool
    /// source's reason when the pool is known (an invalid spec never served here, no block for
    /// this node), else that it is unknown.
    fn config<'a>(&self, pools: &'a PoolSet, key: &PoolKey) -> Result<&'a NodePool, ServiceError> {
        pools.get(key).ok_or_else(|| {
            let message = match pools.refused(key) {
                Some(why) => format!(
                    "pool \"{}\", poolType \"{}\" has no configuration on node \"{}\": {why}",
                    key.name, key.pool_type, self.node
                ),
                None => format!(
                    "configuration for pool \"{}\", poolType \"{}\" not found on node \"{}\"; check that the pool exists and that its status.allocations has an entry for this node",
                    key.name, key.pool_type, self.node
                ),
            };
            ServiceError::new(ErrorCode::PoolNotFound, message)
        })
    }

    fn allocate(&self, r: AllocateRequest) -> Result<Reply, ServiceError> {
        require("network", &r.network)?;
        require("containerId", &r.container_id)?;
        require("ifname", &r.ifname)?;
        let keys = pool_keys(&r.pools, r.pool_type)?;
        if r.allocate_default_gateway && (!r.requested_ips.is_empty() || r.allocate_ip_with_index.is_some()) {
            return Err(invalid(
                "allocateDefaultGateway cannot be combined with static IPs or allocateIPWithIndex; use one of them",
            ));
        }
        let pools = self.pools();
        let configs: Vec<&NodePool> =
            keys.iter().map(|k| self.config(&pools, k)).collect::<Result<_, _>>()?;

        let wants = static_wants(&configs, &r)?;

        let mut store = self.lock_store();
        let state = store.state();
        let now_ms = store::unix_ms();
        let mut ops = Vec::new();
        let mut chosen = Vec::with_capacity(configs.len());
        for (cfg, want) in configs.iter().zip(&wants) {
            let pool = cfg.key.to_string();
            let key = AttachmentKey {
                pool: pool.clone(),
                container_id: r.container_id.clone(),
                ifname: r.ifname.clone(),
            };
            if let Some(existing) = state.get(&key) {
                // Idempotent ADD: the attachment keeps what it has.
                if let allocator::Request::Static(ip) = want
                    && *ip != existing.ip
                {
                    return Err(ServiceError::new(
                        ErrorCode::IpUnavailable,
                        format!(
                            "pool \"{pool}\": attachment {}/{} already holds {}, not the requested {ip}; DEL it first",
                            r.container_id, r.ifname, existing.ip
                        ),
                    ));
                }
                chosen.push(existing.ip);
                continue;
            }
            let round_robin = *want == allocator::Request::Next;
            let ip = allocator::choose(cfg, *want, state.cursor(&pool), |a| {
                state.is_held(&pool, a) || (round_robin && state.is_cooling(&pool, a, now_ms))
            })?;
            ops.push(Op::Reserve(Reservation {
                pool: pool.clone(),
                container_id: r.container_id.clone(),
                ifname: r.ifname.clone(),
                ip,
                network: r.network.clone(),
                pod_name: r.pod.name.clone(),
                pod_namespace: r.pod.namespace.clone(),
                pod_uid: r.pod.uid.clone(),
                device_id: r.device_id.clone(),
                created: now_secs(),
            }));
            if *want == allocator::Request::Next {
                ops.push(Op::Cursor { pool, ip });
            }
            chosen.push(ip);
        }
        let ticket = store.commit_deferred(ops)?;
        drop(store);
        self.durable(ticket)?;
        let allocations = configs
            .iter()
            .zip(chosen)
            .map(|(cfg, ip)| {
                let (addr, gateway, routes) = allocator::lease(cfg, ip);
                Allocation {
                    pool: cfg.key.name.clone(),
                    pool_type: cfg.key.pool_type,
                    ip: addr,
                    gateway,
                    routes,
                }
            })
            .collect();
        Ok(Reply { allocations, ..Reply::default() })
    }

    fn check(&self, r: CheckRequest) -> Result<Reply, ServiceError> {
        require("containerId", &r.container_id)?;
        require("ifname", &r.ifname)?;
        let keys = pool_keys(&r.pools, r.pool_type)?;
        let store = self.lock_store();
        let mut held = Vec::new();
        for k in &keys {
            let key = AttachmentKey {
                pool: k.to_string(),
                container_id: r.container_id.clone(),
                ifname: r.ifname.clone(),
            };
            match store.state().get(&key) {
                Some(res) => held.push(res.ip),
                None => {
                    return Err(ServiceError::new(
                        ErrorCode::NotAllocated,
                        format!(
                            "pool \"{k}\": no reservation for attachment {}/{}",
                            r.container_id, r.ifname
                        ),
                    ));
                }
            }
        }
        let ticket = store.ticket();
        drop(store);
        // The reservation may still be on its way to disk (a concurrent ADD): confirm only
        // what a crash cannot take back.
        self.durable(ticket)?;
        let want: HashSet<IpAddr> = r.ips.iter().copied().collect();
        let have: HashSet<IpAddr> = held.iter().copied().collect();
        if !r.ips.is_empty() && want != have {
            let mut h: Vec<String> = held.iter().map(IpAddr::to_string).collect();
            let mut w: Vec<String> = r.ips.iter().map(IpAddr::to_string).collect();
            h.sort();
            w.sort();
            return Err(ServiceError::new(
                ErrorCode::Mismatch,
                format!(
                    "attachment {}/{} holds [{}] but the runtime's result lists [{}]",
                    r.container_id,
                    r.ifname,
                    h.join(", "),
                    w.join(", ")
                ),
            ));
        }
        Ok(Reply::default())
    }

    fn release(&self, r: ReleaseRequest) -> Result<Reply, ServiceError> {
        require("containerId", &r.container_id)?;
        require("ifname", &r.ifname)?;
        // The named pools, plus any pool this network allocated from for the attachment: a pool
        // renamed in the config between ADD and DEL must not leak its address.
        let named: HashSet<String> = r
            .pools
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| PoolKey::new(r.pool_type, p.clone()).to_string())
            .collect();
        let released = self.release_where(|res| {
            res.container_id == r.container_id
                && res.ifname == r.ifname
                && (named.contains(&res.pool) || (!r.network.is_empty() && res.network == r.network))
        })?;
        Ok(Reply { released: Some(released), ..Reply::default() })
    }

    fn gc(&self, r: GcRequest) -> Result<Reply, ServiceError> {
        require("network", &r.network)?;
        let valid: HashSet<(&str, &str)> =
            r.valid_attachments.iter().map(|a| (a.container_id.as_str(), a.ifname.as_str())).collect();
        let released = self.release_where(|res| {
            res.network == r.network && !valid.contains(&(res.container_id.as_str(), res.ifname.as_str()))
        })?;
        if released > 0 {
            log::info!("gc released {released} reservations of network {}", r.network);
        }
        Ok(Reply { released: Some(released), ..Reply::default() })
    }

    /// Releases every reservation matching `pred` in one commit; returns how many.
    fn release_where(&self, pred: impl Fn(&Reservation) -> bool) -> Result<u64, ServiceError> {
        let cooldown_ms = u64::try_from(self.cooldown.as_millis()).unwrap_or(u64::MAX);
        let until_ms = store::unix_ms().saturating_add(cooldown_ms);
        let mut store = self.lock_store();
        let mut ops = Vec::new();
        let mut released = 0u64;
        for res in store.state().reservations().filter(|res| pred(res)) {
            released += 1;
            ops.push(Op::Release {
                pool: res.pool.clone(),
                container_id: res.container_id.clone(),
                ifname: res.ifname.clone(),
            });
            if cooldown_ms > 0 {
                ops.push(Op::Cooldown { pool: res.pool.clone(), ip: res.ip, until_ms });
            }
        }
        let ticket = store.commit_deferred(ops)?;
        drop(store);
        self.durable(ticket)?;
        Ok(released)
    }

    /// protocol/README.md §4.1: one entry per requested pool that has configuration on this
    /// node (a full pool too: `free` 0; a pool held under an invalid spec: from the spec it is
    /// served from), `pool_not_found` with the reason for one without.
    fn status(&self, r: StatusRequest) -> Result<Reply, ServiceError> {
        let pools = self.pools();
        let keys: Vec<PoolKey> = if r.pools.is_empty() {
            pools.keys().cloned().collect()
        } else {
            r.pools.iter().map(|p| PoolKey::new(r.pool_type, p.clone())).collect()
        };
        let configs: Vec<&NodePool> =
            keys.iter().map(|k| self.config(&pools, k)).collect::<Result<_, _>>()?;
        let store = self.lock_store();
        let now_ms = store::unix_ms();
        let out = configs
            .into_iter()
            .map(|cfg| {
                let (key, allocated, free) = pool_usage(cfg, store.state(), now_ms);
                PoolStatus { pool: key.name, pool_type: key.pool_type, allocated, free }
            })
            .collect();
        Ok(Reply { pools: out, ..Reply::default() })
    }
}

/// `(key, allocated, free)` of one pool: `allocated` counts its reservations, `free` what a
/// round-robin ADD could still take now (see [`free_count`]), saturating at `u64::MAX`.
fn pool_usage(cfg: &NodePool, state: &store::StoreState, now_ms: u64) -> (PoolKey, u64, u64) {
    let pool = cfg.key.to_string();
    let held: Vec<IpAddr> = state.reservations().filter(|res| res.pool == pool).map(|res| res.ip).collect();
    let mut unavailable: HashSet<IpAddr> = held.iter().copied().collect();
    unavailable
        .extend(state.cooldowns().filter(|(p, _, until)| *p == pool && *until > now_ms).map(|(_, ip, _)| ip));
    let free = u64::try_from(free_count(cfg, &unavailable)).unwrap_or(u64::MAX);
    (cfg.key.clone(), held.len() as u64, free)
}

/// Addresses a round-robin ADD could still take: the range minus exclusions, the gateway and
/// `unavailable` (reserved, or in their released-IP cooldown; a cooling address a static request
/// took is in both and counted once).
pub fn free_count(cfg: &NodePool, unavailable: &HashSet<IpAddr>) -> u128 {
    let excluded = ip::covered_count(&cfg.exclusions, &cfg.range);
    let in_play = |a: IpAddr| cfg.range.contains(a) && ip::find_containing(&cfg.exclusions, a).is_none();
    let gw = cfg.gateway.filter(|g| Family::of(*g) == cfg.range.family() && in_play(*g)).is_some() as u128;
    let taken = unavailable.iter().filter(|a| in_play(**a) && Some(**a) != cfg.gateway).count() as u128;
    cfg.range.len().saturating_sub(excluded).saturating_sub(gw).saturating_sub(taken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip::IpRange;
    use crate::protocol::{Attachment, PodRef};
    use crate::store::tests::TempDir;

    fn ipa(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn pool(name: &str, subnet: &str, start: &str, end: &str, gw: Option<&str>) -> NodePool {
        NodePool {
            key: PoolKey::new(PoolType::IpPool, name),
            subnet: subnet.parse().expect("subnet"),
            range: IpRange::new(ipa(start), ipa(end)).expect("range"),
            gateway: gw.map(ipa),
            exclusions: Vec::new(),
            routes: Vec::new(),
            default_gateway: true,
        }
    }

    /// A service over a store in its own temp dir (removed when the fixture drops).
    struct Fixture {
        svc: Service,
        _dir: TempDir,
    }

    impl std::ops::Deref for Fixture {
        type Target = Service;
        fn deref(&self) -> &Service {
            &self.svc
        }
    }

    fn service(pools: Vec<NodePool>) -> Fixture {
        let dir = TempDir::new("service-test");
        let store = Store::open(&dir.join("store")).expect("store");
        Fixture { svc: Service::new("node1".into(), store, PoolSet::new(pools)), _dir: dir }
    }

    fn add(cid: &str, pools: &[&str]) -> AllocateRequest {
        AllocateRequest {
            network: "net1".into(),
            container_id: cid.into(),
            ifname: "eth0".into(),
            pools: pools.iter().map(|p| p.to_string()).collect(),
            pool_type: PoolType::IpPool,
            requested_ips: Vec::new(),
            allocate_default_gateway: false,
            allocate_ip_with_index: None,
            pod: PodRef::default(),
            device_id: None,
        }
    }

    fn ips(reply: &Reply) -> Vec<String> {
        reply.allocations.iter().map(|a| a.ip.to_string()).collect()
    }

    fn v4v6() -> Vec<NodePool> {
        vec![
            pool("v4", "192.168.0.0/16", "192.168.0.1", "192.168.0.4", Some("192.168.0.1")),
            pool("v6", "fd00::/64", "fd00::1", "fd00::3", None),
        ]
    }

    #[test]
    fn seed_example_first_pod_and_idempotent_add() {
        let s = service(v4v6());
        let r = s.allocate(add("c1", &["v4"])).expect("add");
        assert_eq!(ips(&r), ["192.168.0.2/16"]);
        assert_eq!(r.allocations[0].gateway, Some(ipa("192.168.0.1")));
        assert_eq!(r.allocations[0].routes.iter().map(|n| n.to_string()).collect::<Vec<_>>(), ["0.0.0.0/0"]);
        let again = s.allocate(add("c1", &["v4"])).expect("add again");
        assert_eq!(ips(&again), ["192.168.0.2/16"]);
        assert_eq!(s.lock_store().state().len(), 1);
    }

    #[test]
    fn dual_stack_is_all_or_nothing() {
        let s = service(v4v6());
        for c in ["a", "b"] {
            s.allocate(add(c, &["v6"])).expect("fill v6");
        }
        // v6 has ::2 and ::3 only (no gateway, ::1 free too): fill it.
        s.allocate(add("c", &["v6"])).expect("fill v6");
        let e = s.allocate(add("d", &["v4", "v6"])).expect_err("v6 exhausted");
        assert_eq!(e.code, ErrorCode::PoolExhausted);
        assert_eq!(s.lock_store().state().count_in_pool("v4"), 0, "v4 address rolled back");
    }

    #[test]
    fn static_requests_must_all_be_used() {
        let s = service(v4v6());
        let mut r = add("c1", &["v4"]);
        r.requested_ips = vec![ipa("10.0.0.1")];
        let e = s.allocate(r).expect_err("outside");
        assert_eq!(e.code, ErrorCode::IpOutOfRange);
        assert!(e.message.contains("10.0.0.1 is outside every requested pool's subnet"), "{}", e.message);
        let mut r = add("c1", &["v4", "v6"]);
        r.requested_ips = vec![ipa("192.168.3.3")];
        let got = s.allocate(r).expect("static v4, dynamic v6");
        assert_eq!(ips(&got), ["192.168.3.3/16", "fd00::1/64"]);
        let mut r = add("c2", &["v4"]);
        r.requested_ips = vec![ipa("192.168.3.3")];
        assert_eq!(s.allocate(r).expect_err("taken").code, ErrorCode::IpUnavailable);
    }

    #[test]
    fn check_release_gc() {
        let s = service(v4v6());
        s.allocate(add("c1", &["v4"])).expect("add");
        s.allocate(add("c2", &["v4"])).expect("add");
        let check = |cid: &str, ips: Vec<IpAddr>| {
            s.check(CheckRequest {
                network: "net1".into(),
                container_id: cid.into(),
                ifname: "eth0".into(),
                pools: vec!["v4".into()],
                pool_type: PoolType::IpPool,
                ips,
            })
        };
        check("c1", vec![ipa("192.168.0.2")]).expect("check ok");
        assert_eq!(check("c1", vec![ipa("192.168.0.3")]).expect_err("mismatch").code, ErrorCode::Mismatch);
        let gc = s
            .gc(GcRequest {
                network: "net1".into(),
                valid_attachments: vec![Attachment { container_id: "c1".into(), ifname: "eth0".into() }],
            })
            .expect("gc");
        assert_eq!(gc.released, Some(1));
        assert_eq!(check("c2", vec![]).expect_err("gone").code, ErrorCode::NotAllocated);
        let rel = |cid: &str| {
            s.release(ReleaseRequest {
                network: "net1".into(),
                container_id: cid.into(),
                ifname: "eth0".into(),
                pools: vec!["v4".into()],
                pool_type: PoolType::IpPool,
            })
        };
        assert_eq!(rel("c1").expect("del").released, Some(1));
        assert_eq!(rel("c1").expect("del again").released, Some(0));
        assert_eq!(rel("never").expect("del unknown").released, Some(0));
    }

    #[test]
    fn unknown_pool_and_bad_requests() {
        let s = service(v4v6());
        let e = s.allocate(add("c1", &["nope"])).expect_err("unknown");
        assert_eq!(e.code, ErrorCode::PoolNotFound);
        assert!(e.message.contains("\"nope\"") && e.message.contains("node1"), "{}", e.message);
        assert_eq!(
            s.allocate(add("c1", &["a", "b", "c"])).expect_err("three").code,
            ErrorCode::InvalidRequest
        );
        assert_eq!(s.allocate(add("c1", &["v4", "v4"])).expect_err("twice").code, ErrorCode::InvalidRequest);
        assert_eq!(s.allocate(add("", &["v4"])).expect_err("empty id").code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn static_request_errors_name_the_addresses_and_the_pool() {
        let s = service(v4v6());
        let with = |cid: &str, pools: &[&str], want: &[&str]| {
            let mut r = add(cid, pools);
            r.requested_ips = want.iter().map(|a| ipa(a)).collect();
            s.allocate(r)
        };
        let e = with("c1", &["v4"], &["192.168.0.9", "192.168.0.9"]).expect_err("twice");
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.message.contains("name 192.168.0.9 twice (pool \"v4\")"), "{}", e.message);
        let e = with("c1", &["v4", "v6"], &["192.168.0.9", "192.168.0.10"]).expect_err("two in v4");
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(
            e.message.contains(
                "192.168.0.9 and 192.168.0.10 are both in the subnet 192.168.0.0/16 of pool \"v4\""
            ),
            "{}",
            e.message
        );
        let e = with("c1", &["v4", "v6"], &["fd01::1"]).expect_err("outside");
        assert_eq!(e.code, ErrorCode::IpOutOfRange);
        assert!(e.message.contains("(\"v4\" 192.168.0.0/16, \"v6\" fd00::/64)"), "{}", e.message);
        // two pools whose subnets overlap each take their own address
        let overlap = service(vec![
            pool("a", "10.0.0.0/16", "10.0.0.1", "10.0.0.9", None),
            pool("b", "10.0.1.0/24", "10.0.1.1", "10.0.1.9", None),
        ]);
        let mut r = add("c1", &["a", "b"]);
        r.requested_ips = vec![ipa("10.0.1.5"), ipa("10.0.1.6")];
        assert_eq!(ips(&overlap.allocate(r).expect("one each")), ["10.0.1.5/16", "10.0.1.6/24"]);
        assert_eq!(s.lock_store().state().len(), 0, "nothing reserved by the failures");
    }

    #[test]
    fn a_refused_pool_names_its_reason() {
        use crate::api::IpPool;
        let mut bad = IpPool::default();
        bad.metadata.name = "blue".into();
        bad.spec.subnet = "10.0.0.0/24".into();
        bad.spec.per_node_block_size = 4;
        bad.spec.gateway = "10.9.0.1".into();
        let set = super::super::pools::derive(
            [super::super::pools::PoolRef::Ip(&bad)],
            "node1",
            super::super::pools::Planning::Alone,
            &PoolSet::default(),
        );
        let dir = TempDir::new("service-test");
        let s = Service::new("node1".into(), Store::open(&dir.join("store")).expect("store"), set);
        let e = s.allocate(add("c1", &["blue"])).expect_err("refused");
        assert_eq!(e.code, ErrorCode::PoolNotFound);
        assert!(
            e.message.contains("pool \"blue\", poolType \"ippool\" has no configuration on node \"node1\": ippool \"blue\" has an invalid spec: spec.gateway"),
            "{}",
            e.message
        );
        let st = s.status(StatusRequest { pools: vec!["blue".into()], pool_type: PoolType::IpPool });
        assert_eq!(st.expect_err("refused").code, ErrorCode::PoolNotFound);
    }

    #[test]
    fn status_lists_a_full_pool_with_free_zero() {
        let s = service(v4v6());
        let status = |pools: &[&str]| {
            s.status(StatusRequest {
                pools: pools.iter().map(|p| p.to_string()).collect(),
                pool_type: PoolType::IpPool,
            })
        };
        let st = status(&["v4"]).expect("status");
        assert_eq!((st.pools[0].allocated, st.pools[0].free), (0, 3));
        for c in ["a", "b", "c"] {
            s.allocate(add(c, &["v4"])).expect("fill");
        }
        let st = status(&["v4", "v6"]).expect("a full pool is listed");
        let got: Vec<(String, u64, u64)> =
            st.pools.iter().map(|p| (p.pool.clone(), p.allocated, p.free)).collect();
        assert_eq!(got, [("v4".to_string(), 3, 0), ("v6".to_string(), 0, 3)]);
        assert_eq!(status(&[]).expect("all").pools.len(), 2);
        assert_eq!(status(&["nope"]).expect_err("unknown").code, ErrorCode::PoolNotFound);
    }

    #[test]
    fn cooldown_skips_released_addresses_for_round_robin_only() {
        let dir = TempDir::new("service-test");
        let store = Store::open(&dir.join("store")).expect("store");
        let one = pool("v4", "192.168.0.0/16", "192.168.0.1", "192.168.0.3", None);
        let s = Service::new("node1".into(), store, PoolSet::new(vec![one]))
            .with_cooldown(Duration::from_secs(3600));
        assert_eq!(ips(&s.allocate(add("a", &["v4"])).expect("a")), ["192.168.0.1/16"]);
        let del = ReleaseRequest {
            network: "net1".into(),
            container_id: "a".into(),
            ifname: "eth0".into(),
            pools: vec!["v4".into()],
            pool_type: PoolType::IpPool,
        };
        assert_eq!(s.release(del).expect("del").released, Some(1));
        assert_eq!(ips(&s.allocate(add("b", &["v4"])).expect("b")), ["192.168.0.2/16"]);
        assert_eq!(ips(&s.allocate(add("c", &["v4"])).expect("c")), ["192.168.0.3/16"]);
        let e = s.allocate(add("d", &["v4"])).expect_err(".1 is cooling");
        assert_eq!(e.code, ErrorCode::PoolExhausted);
        let free = |s: &Service| {
            s.status(StatusRequest { pools: vec!["v4".into()], pool_type: PoolType::IpPool })
                .expect("status")
                .pools[0]
                .free
        };
        assert_eq!(free(&s), 0, "a cooling address is not free for round robin");
        let mut r = add("d", &["v4"]);
        r.requested_ips = vec![ipa("192.168.0.1")];
        assert_eq!(ips(&s.allocate(r).expect("static may take a cooling address")), ["192.168.0.1/16"]);
        assert_eq!(free(&s), 0);
        assert_eq!(s.usage()[0].1, 3, "held and cooling: counted once");
    }

    #[test]
    fn release_exact_spares_a_reservation_remade_under_the_same_key() {
        let s = service(v4v6());
        s.allocate(add("c1", &["v4"])).expect("add");
        let judged = s.snapshot(|_| true);
        let del = ReleaseRequest {
            network: "net1".into(),
            container_id: "c1".into(),
            ifname: "eth0".into(),
            pools: vec!["v4".into()],
            pool_type: PoolType::IpPool,
        };
        s.release(del).expect("del");
        s.allocate(add("c1", &["v4"])).expect("re-add under the same key, another address");
        assert_eq!(s.release_exact(&judged).expect("release"), 0);
        assert_eq!(s.snapshot(|_| true).len(), 1);
        let now = s.snapshot(|_| true);
        assert_eq!(s.release_exact(&now).expect("release"), 1);
    }
}
