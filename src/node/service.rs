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
//! named that address on purpose, and refusing it would fail pods that re-use fixed addresses.
//!
//! The request-shape checks and [`ServiceError`] are in `service/request.rs`; the tests in
//! `service/tests.rs`. Must not: touch sockets (see `server`) or hold the store lock across
//! anything slower than a local fsync.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::alloc::NodePool;
use crate::alloc::allocator;
use crate::api::PoolKey;
use crate::protocol::{
    AllocateRequest, Allocation, CheckRequest, ErrorCode, GcRequest, PoolStatus, ReleaseRequest, Reply,
    Request, StatusRequest,
};
use crate::store::{self, AttachmentKey, Durability, Op, Reservation, Store, Ticket};

use super::metrics::NodeMetrics;
use super::pools::PoolSet;

mod request;

pub use request::ServiceError;
use request::{invalid, pool_keys, require, static_wants};

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

    /// The allocations report of the endpoint (`inventory`): the current pools and a copy of
    /// the store state, taken under the store lock (a copy only; the report is built after).
    /// It shows the in-memory state, a change on its way to disk included.
    pub fn allocations(&self) -> crate::inventory::NodeAllocations {
        let pools = self.pools();
        let state = self.lock_store().state().clone();
        let served: Vec<crate::inventory::Served<'_>> = pools
            .keys()
            .filter_map(|k| pools.get(k).map(|pool| crate::inventory::Served { pool, held: pools.held(k) }))
            .collect();
        crate::inventory::build(&self.node, &served, &state, store::unix_ms())
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
        // Release builds abort on panic (Cargo.toml), so a poisoned lock exists only in
        // unwinding builds (tests). There it is still consistent: commit applies in memory
        // only what reached the disk, so a panic under the lock leaves nothing half-applied.
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
                is_static: !round_robin,
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
/// round-robin ADD could still take now (see [`NodePool::free_count`]), saturating at `u64::MAX`.
fn pool_usage(cfg: &NodePool, state: &store::StoreState, now_ms: u64) -> (PoolKey, u64, u64) {
    let pool = cfg.key.to_string();
    let held: Vec<IpAddr> = state.reservations().filter(|res| res.pool == pool).map(|res| res.ip).collect();
    let mut unavailable: HashSet<IpAddr> = held.iter().copied().collect();
    unavailable
        .extend(state.cooldowns().filter(|(p, _, until)| *p == pool && *until > now_ms).map(|(_, ip, _)| ip));
    let free = u64::try_from(cfg.free_count(&unavailable)).unwrap_or(u64::MAX);
    (cfg.key.clone(), held.len() as u64, free)
}

#[cfg(test)]
mod tests;
