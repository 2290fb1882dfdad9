//! The reconcile worker: pops pool keys while leader, decides each pool from the cache
//! ([`reconcile`]), writes its status (merge patch checked against the cached
//! resourceVersion; on 409 re-read and re-decide, at most [`MAX_STATUS_ATTEMPTS`] times),
//! records what the next reconcile and the metrics need, emits new Events, and requeues a
//! failing pool with a doubling delay.
//!
//! Owns: the worker loop and every write of cluster mode. Must not: decide allocations (see
//! `reconcile`) or watch (see the reflectors started by `run`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::cache::{CachedPool, Key, PoolGauges, Shared};
use super::node_sets;
use super::wire::{PatchMeta, PoolWire, StatusPatch, WirePool, json_hash, status_hash};
use super::{
    COMPONENT, ERROR_REQUEUE, MAX_CONCURRENT_RECONCILES, MAX_CONCURRENT_STATUS_WRITES, MAX_ERROR_REQUEUE,
    MAX_STATUS_ATTEMPTS, WORKER_POLL,
};
use crate::alloc::PoolKind;
use crate::api::{API_VERSION, AnyAllocations, Condition, Node, PoolType, StatusRef};
use crate::controller::leader;
use crate::controller::reconcile::{Event, Input, Outcome, reconcile};
use crate::kube::{Client, EVENTS, KubeError, Resource};

/// Runs [`MAX_CONCURRENT_RECONCILES`] reconcile loops until `stop`: different pools are decided
/// in parallel and written [`MAX_CONCURRENT_STATUS_WRITES`] at a time (each write is one round
/// trip of a status that can be hundreds of KB, so one at a time left the API server's other
/// cores idle; deciding is not held up by earlier pools' writes, so the nodes' objects are);
/// one pool is never in two loops at once, so its writes stay ordered.
pub(super) fn worker(client: &Client, ns: &str, shared: &Shared, stop: &AtomicBool, grace: Duration) {
    std::thread::scope(|s| {
        for i in 1..MAX_CONCURRENT_RECONCILES {
            let spawned = std::thread::Builder::new()
                .name(format!("reconcile-{i}"))
                .spawn_scoped(s, move || reconcile_loop(client, ns, shared, stop, grace));
            if let Err(e) = spawned {
                log::warn!("cannot start reconcile thread {i}: {e}; continuing with fewer");
            }
        }
        reconcile_loop(client, ns, shared, stop, grace);
    });
}

/// Pops pool keys that no other loop holds and reconciles them while leader, until `stop`.
fn reconcile_loop(client: &Client, ns: &str, shared: &Shared, stop: &AtomicBool, grace: Duration) {
    while !stop.load(Ordering::Relaxed) {
        let next = {
            let mut c = shared.lock();
            let now = SystemTime::now();
            let due: Vec<Key> =
                c.recheck.iter().filter(|(_, at)| **at <= now).map(|(k, _)| k.clone()).collect();
            for k in due {
                c.recheck.remove(&k);
                c.queue.insert(k);
            }
            let leader = shared.is_leader.load(Ordering::SeqCst);
            // NodeBlockSets listed too: a decision must see the entries they hold (intents)
            let ready = c.pools_synced() && c.synced_nodes && c.node_sets.synced;
            let free = c.queue.iter().find(|k| !c.in_flight.contains(*k)).cloned();
            if leader
                && ready
                && let Some(k) = free
            {
                c.queue.remove(&k);
                c.in_flight.insert(k.clone());
                c.node_sets.deciding.insert(k.clone());
                Some(k)
            } else {
                if !leader {
                    // becoming leader enqueues every pool again
                    c.queue.clear();
                }
                let wait = c
                    .recheck
                    .values()
                    .min()
                    .and_then(|at| at.duration_since(now).ok())
                    .map_or(WORKER_POLL, |d| d.min(WORKER_POLL));
                let _ = shared.wake.wait_timeout(c, wait);
                None
            }
        };
        if let Some(k) = next {
            shared.reconciles.fetch_add(1, Ordering::Relaxed);
            let result = reconcile_pool(client, ns, shared, &k, grace);
            let mut c = shared.lock();
            c.in_flight.remove(&k);
            c.node_sets.deciding.remove(&k);
            match result {
                Ok(()) => {
                    c.failures.remove(&k);
                }
                Err(e) => {
                    shared.reconcile_errors.fetch_add(1, Ordering::Relaxed);
                    let n = c.failures.entry(k.clone()).or_insert(0);
                    *n = n.saturating_add(1);
                    let delay = retry_delay(*n);
                    log::warn!("reconcile {} {:?}: {e}; retry {n} in {delay:?}", k.0, k.1);
                    let at = SystemTime::now() + delay;
                    c.recheck.insert(k, at);
                }
            }
            // the pool may have been queued again while it was in flight
            shared.wake.notify_all();
        }
    }
}

/// [`ERROR_REQUEUE`] doubled per earlier consecutive failure, capped at [`MAX_ERROR_REQUEUE`].
pub(super) fn retry_delay(failures: u32) -> Duration {
    let factor = 1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX);
    ERROR_REQUEUE.saturating_mul(factor).min(MAX_ERROR_REQUEUE)
}

pub(super) fn resource(t: PoolType) -> &'static Resource {
    t.info().resource
}

/// Decides one pool from the cache and writes the outcome; re-reads and re-decides on 409.
/// The decision reaches the nodes' NodeBlockSets (`node_sets`) while the status is written.
pub(super) fn reconcile_pool(
    client: &Client,
    ns: &str,
    shared: &Shared,
    k: &Key,
    grace: Duration,
) -> Result<(), KubeError> {
    let (mut raw, nodes, holds) = {
        let c = shared.lock();
        let Some(raw) = c.pools.get(k).cloned() else { return Ok(()) };
        (raw, Arc::clone(&c.nodes), c.holds.get(k).cloned().unwrap_or_default())
    };
    for attempt in 1..=MAX_STATUS_ATTEMPTS {
        let intents = read_intents(client, ns, shared, k, &raw)?;
        let (outcome, decision) = decide(&raw, &nodes, &holds, grace, intents.as_ref());
        record_decision(shared, k, &raw, &outcome, &decision, intents.as_ref());
        if !outcome.changed {
            record(shared, k, &raw, &outcome, &decision, None);
            emit_events(client, ns, shared, k, &raw, &outcome.events);
            return Ok(());
        }
        if !shared.is_leader.load(Ordering::SeqCst) {
            shared.lock().node_sets.decided.remove(k);
            return Ok(()); // lost the lease meanwhile: the new leader decides
        }
        let rv = raw.resource_version();
        let written = {
            let _slot = StatusWriteSlot::take(shared);
            crate::with_pool_kind!(AnyAllocations: &*decision, a, K => {
                write_status::<K>(client, ns, shared, k, rv, a, &outcome.conditions)
            })
        };
        match written {
            Ok(stored) => {
                log::info!(
                    "pool status written type={} pool={} nodes={} conditions={}",
                    k.0,
                    k.1,
                    decision.len(),
                    outcome
                        .conditions
                        .iter()
                        .map(|c| format!("{}={}", c.type_, c.status))
                        .collect::<Vec<_>>()
                        .join(",")
                );
                record(shared, k, &raw, &outcome, &decision, Some(stored));
                emit_events(client, ns, shared, k, &raw, &outcome.events);
                return Ok(());
            }
            Err(e) if e.is_conflict() && attempt < MAX_STATUS_ATTEMPTS => {
                log::debug!(
                    "status of {} {:?} changed meanwhile (attempt {attempt}); reading it again",
                    k.0,
                    k.1
                );
                raw = Arc::new(crate::with_kind!(k.0, K => {
                    client.get::<WirePool<K>>(resource(k.0), Some(ns), &k.1)?.into_cached()
                }));
            }
            Err(e) if e.is_not_found() => {
                shared.lock().node_sets.decided.remove(k);
                return Ok(()); // deleted meanwhile
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One of the [`MAX_CONCURRENT_STATUS_WRITES`] slots, held for one status write.
struct StatusWriteSlot<'a>(&'a Shared);

impl<'a> StatusWriteSlot<'a> {
    fn take(shared: &'a Shared) -> StatusWriteSlot<'a> {
        let mut c = shared.lock();
        while c.status_writes >= MAX_CONCURRENT_STATUS_WRITES {
            c = shared.wake.wait_timeout(c, WORKER_POLL).map_or_else(|p| p.into_inner().0, |(c, _)| c);
        }
        c.status_writes += 1;
        StatusWriteSlot(shared)
    }
}

impl Drop for StatusWriteSlot<'_> {
    fn drop(&mut self) {
        self.0.lock().status_writes -= 1;
        self.0.wake.notify_all();
    }
}

/// Entries of pool `k` that NodeBlockSets hold and its status does not (see `node_sets`).
fn read_intents(
    client: &Client,
    ns: &str,
    shared: &Shared,
    k: &Key,
    raw: &CachedPool,
) -> Result<Option<AnyAllocations>, KubeError> {
    let candidates = {
        let c = shared.lock();
        // our own decision not confirmed by a status write yet: what its nodes were sent
        if let Some(d) = c.node_sets.decided.get(k) {
            return Ok(Some((**d).clone()));
        }
        crate::with_pool_kind!(&raw.pool, p, K => {
            let status = K::allocations(p);
            let has_entry = |n: &str| status.binary_search_by(|a| K::node_name(a).cmp(n)).is_ok();
            node_sets::intent_candidates(&c.node_sets, k, has_entry)
        })
    };
    if candidates.is_empty() {
        return Ok(None);
    }
    let found = node_sets::intents(client, ns, k, &candidates)?;
    log::info!(
        "pool {} {:?}: {} entries delivered to nodes but not in its status (first: {:?}); planning them as kept",
        k.0,
        k.1,
        found.len(),
        candidates.iter().take(super::MAX_LOGGED_NAMES).collect::<Vec<_>>()
    );
    Ok(Some(found))
}

/// Hands a decision to the NodeBlockSet writers before its status write: the nodes whose entry
/// changed (all of the pool's when its spec changed) are marked dirty, and the decision is what
/// they read until the stored status replaces it.
pub(super) fn record_decision(
    shared: &Shared,
    k: &Key,
    raw: &CachedPool,
    o: &Outcome,
    decision: &Arc<AnyAllocations>,
    intents: Option<&AnyAllocations>,
) {
    let (spec_hash, before) = crate::with_pool_kind!(&raw.pool, p, K => {
        (json_hash(&(K::spec(p), raw.valid)), K::into_any_allocations(K::allocations(p).to_vec()))
    });
    let mut c = shared.lock();
    if !c.pools.contains_key(k) {
        c.node_sets.deciding.remove(k);
        return; // deleted meanwhile: forget() marked its nodes
    }
    let s = &mut c.node_sets;
    let previous = s.decided.get(k).cloned();
    let mut held: Vec<&AnyAllocations> = vec![&before];
    held.extend(previous.as_deref());
    held.extend(intents);
    node_sets::mark_decision(s, k, spec_hash, &held, decision);
    if o.changed {
        s.decided.insert(k.clone(), Arc::clone(decision));
    } else {
        s.decided.remove(k);
    }
    s.deciding.remove(k);
    s.decided_now(k);
    shared.wake.notify_all();
}

/// Writes `status` (allocations and conditions, replacing both) as a merge patch checked
/// against `resource_version`; returns the pool as stored. The answer is decoded straight into
/// the typed pool: no `Value` tree of a 5,000-entry status.
pub(super) fn write_status<K: PoolKind>(
    client: &Client,
    ns: &str,
    shared: &Shared,
    k: &Key,
    resource_version: &str,
    allocations: &[K::Allocation],
    conditions: &[Condition],
) -> Result<CachedPool, KubeError> {
    let status = StatusRef::new(allocations, conditions);
    // recorded before the write: the watch may deliver the echo before the answer
    shared.lock().written.insert(k.clone(), status_hash(Some(StatusRef::new(allocations, conditions))));
    let patch = StatusPatch { metadata: PatchMeta { resource_version }, status };
    let stored: WirePool<K> = client.patch_status_merge(resource(k.0), Some(ns), &k.1, &patch)?;
    Ok(stored.into_cached())
}

/// Decides pool `raw` (`reconcile`), with the decided allocations moved out of the outcome into
/// an `Arc`: the NodeBlockSet writers read the same copy that the status write sends (a decision
/// of a 5,000-node pool is most of a MB, and up to `MAX_CONCURRENT_RECONCILES` wait for a
/// write). The outcome's own `allocations` is left empty.
pub(super) fn decide(
    raw: &CachedPool,
    nodes: &[Node],
    holds: &BTreeMap<String, SystemTime>,
    grace: Duration,
    intents: Option<&AnyAllocations>,
) -> (Outcome, Arc<AnyAllocations>) {
    let mut outcome = reconcile(&Input {
        pool: &raw.pool,
        conditions: &raw.conditions,
        generation: raw.generation(),
        nodes,
        holds,
        now: SystemTime::now(),
        grace,
        intents,
    });
    let empty = match &outcome.allocations {
        AnyAllocations::Ip(_) => AnyAllocations::Ip(Vec::new()),
        AnyAllocations::Cidr(_) => AnyAllocations::Cidr(Vec::new()),
    };
    let decision = Arc::new(std::mem::replace(&mut outcome.allocations, empty));
    (outcome, decision)
}

/// Stores what the next reconcile and the metrics need.
pub(super) fn record(
    shared: &Shared,
    k: &Key,
    raw: &CachedPool,
    o: &Outcome,
    decision: &AnyAllocations,
    stored: Option<CachedPool>,
) {
    let mut c = shared.lock();
    if let Some(stored) = stored {
        c.written.insert(k.clone(), stored.status_hash);
        // The write's answer replaces the cache unless the watch moved meanwhile (its echo came
        // first, another writer's change came, or after a 409 the cache is older than the
        // re-read `raw`). Then the nodes keep reading the decision until the watch brings a
        // status holding it (`cache::pool_changed`) or the pool is decided again: projecting a
        // cache older than our write would send them a state that no later event corrects.
        if c.pools.get(k).is_some_and(|p| p.resource_version() == raw.resource_version()) {
            c.pools.insert(k.clone(), Arc::new(stored));
            c.node_sets.decided.remove(k);
        }
    } else if c.pools.get(k).is_some_and(|p| p.resource_version() == raw.resource_version()) {
        c.written.insert(k.clone(), raw.status_hash);
    }
    c.holds.insert(k.clone(), o.holds.clone());
    match o.recheck_at {
        Some(at) => {
            c.recheck.insert(k.clone(), at);
        }
        None => {
            c.recheck.remove(k);
        }
    }
    let allocated = decision.len() as u64;
    c.gauges.insert(
        k.clone(),
        PoolGauges {
            allocated,
            free: o.capacity.map(|cap| cap.saturating_sub(allocated)),
            size: o.size,
            held: o.holds.len() as u64,
        },
    );
}

/// POSTs the events that were not emitted by the pool's previous reconcile.
pub(super) fn emit_events(
    client: &Client,
    ns: &str,
    shared: &Shared,
    k: &Key,
    raw: &CachedPool,
    events: &[Event],
) {
    let fresh: Vec<Event> = {
        let mut c = shared.lock();
        let before = c.last_events.insert(k.clone(), events.to_vec()).unwrap_or_default();
        events.iter().filter(|e| !before.contains(e)).cloned().collect()
    };
    let kind = k.0.kind();
    for e in fresh {
        let now = crate::controller::reconcile::rfc3339(SystemTime::now());
        let ev = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": format!("{}.", k.1), "namespace": ns},
            "involvedObject": {
                "apiVersion": API_VERSION, "kind": kind, "name": k.1, "namespace": ns,
                "uid": raw.meta().rest.get("uid"), "resourceVersion": raw.meta().rest.get("resourceVersion"),
            },
            "reason": e.reason, "message": e.message, "type": "Warning",
            "source": {"component": COMPONENT},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "reportingComponent": COMPONENT, "reportingInstance": leader::identity(),
        });
        log::warn!("pool {} {:?}: {}: {}", k.0, k.1, e.reason, e.message);
        if let Err(err) = client.create::<Value>(&EVENTS, Some(ns), &ev) {
            log::warn!("cannot emit event {} for {} {:?}: {err}", e.reason, k.0, k.1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::{CIDRPOOLS, IPPOOLS};

    #[test]
    fn every_kind_has_its_resource_and_a_reflector_thread_name() {
        assert_eq!((resource(PoolType::IpPool), resource(PoolType::CidrPool)), (&IPPOOLS, &CIDRPOOLS));
        let names: Vec<String> =
            PoolType::ALL.iter().map(|t| format!("reflect-{}", t.info().resource.plural)).collect();
        assert_eq!(names, ["reflect-ippools", "reflect-cidrpools"], "thread names as before");
    }

    #[test]
    fn retry_delay_doubles_up_to_the_cap() {
        assert_eq!(retry_delay(1), ERROR_REQUEUE);
        assert_eq!(retry_delay(2), ERROR_REQUEUE * 2);
        assert_eq!(retry_delay(4), ERROR_REQUEUE * 8);
        assert_eq!(retry_delay(40), MAX_ERROR_REQUEUE);
        assert_eq!(retry_delay(u32::MAX), MAX_ERROR_REQUEUE);
    }
}
