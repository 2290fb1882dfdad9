//! The writers' bookkeeping without an API server: a new term holds writes that would drop an
//! entry of a pool it has not decided yet; a decision stays what the nodes read until the cache
//! holds it (after a 409, the write's answer cannot replace an older cache).

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::super::cache::{Cache, CachedPool, pool_changed};
use super::super::wire::{PoolWire, WirePool};
use super::super::worker::{decide, record, record_decision};
use super::*;
use crate::alloc::kind::ippool::IpPoolKind;
use crate::api::{IpAllocation, Node, PoolType};

fn pool(name: &str, rv: &str, entries: &[(&str, &str, &str)]) -> CachedPool {
    let allocations: Vec<Value> =
        entries.iter().map(|(n, s, e)| json!({"nodeName": n, "startIP": s, "endIP": e})).collect();
    let v = json!({
        "apiVersion": API_VERSION, "kind": "IPPool",
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv, "generation": 1},
        "spec": {"subnet": "10.0.0.0/24", "perNodeBlockSize": 10, "gateway": "10.0.0.1"},
        "status": {"allocations": allocations},
    });
    serde_json::from_value::<WirePool<IpPoolKind>>(v).expect("pool").into_cached()
}

fn allocations(entries: &[(&str, &str, &str)]) -> AnyAllocations {
    AnyAllocations::Ip(
        entries
            .iter()
            .map(|(n, s, e)| IpAllocation {
                node_name: n.to_string(),
                start_ip: s.to_string(),
                end_ip: e.to_string(),
            })
            .collect(),
    )
}

fn key(name: &str) -> Key {
    (PoolType::IpPool, name.to_string())
}

fn shared(nodes: &[&str], pools: Vec<CachedPool>) -> Shared {
    let nodes = nodes
        .iter()
        .map(|n| serde_json::from_value::<Node>(json!({"metadata": {"name": n}})).expect("node"))
        .collect();
    let mut c = Cache { nodes: Arc::new(nodes), synced_nodes: true, ..Cache::default() };
    for p in pools {
        c.pools.insert(key(p.pool.name()), Arc::new(p));
    }
    c.node_sets.synced = true;
    Shared {
        cache: Mutex::new(c),
        wake: Condvar::new(),
        is_leader: Arc::new(AtomicBool::new(true)),
        reconciles: AtomicU64::new(0),
        reconcile_errors: AtomicU64::new(0),
        node_set_writes: AtomicU64::new(0),
    }
}

/// A stored object naming `pools` (its hash matches no desired spec: any write replaces it).
fn stored(pools: &[&str]) -> SetState {
    let mut tags: Vec<u64> = pools.iter().map(|p| pool_tag(&key(p))).collect();
    tags.sort_unstable();
    SetState { resource_version: "7".into(), hash: 0, pools: tags }
}

fn block_of(spec: &NodeBlockSetSpec, pool: &str) -> Option<String> {
    spec.ip_pools.iter().find(|b| b.name == pool).map(|b| b.allocation.start_ip.clone())
}

const GRACE: Duration = Duration::from_secs(300);

#[test]
fn a_new_term_holds_writes_that_would_drop_an_undecided_pools_entry() {
    // n2's object names pool b, whose status lacks n2: the previous leader wrote the object
    // and stopped before the status
    let a = pool("a", "1", &[("n1", "10.0.0.1", "10.0.0.10"), ("n2", "10.0.0.11", "10.0.0.20")]);
    let b = pool("b", "1", &[("n1", "10.0.0.1", "10.0.0.10")]);
    let sh = shared(&["n1", "n2"], vec![a, b.clone()]);
    {
        let mut c = sh.lock();
        c.node_sets.objects.insert("n2".into(), stored(&["a", "b"]));
        c.node_sets.new_term();
        assert!(matches!(plan_write(&c, "n2"), Plan::Hold), "b's intent must survive until b is decided");
        // a node whose object drops nothing is written at once
        assert!(matches!(plan_write(&c, "n1"), Plan::Write(Action::Create(_))));
        c.node_sets.held.insert("n2".into());
    }
    // b decided with n2's entry read back as an intent: kept, and n2 is written with it
    let intents = allocations(&[("n2", "10.0.0.11", "10.0.0.20")]);
    let nodes = Arc::clone(&sh.lock().nodes);
    let (outcome, decision) = decide(&b, &nodes, &Default::default(), GRACE, Some(&intents));
    record_decision(&sh, &key("b"), &b, &outcome, &decision, Some(&intents));
    let c = sh.lock();
    assert!(c.node_sets.held.is_empty() && c.node_sets.dirty.contains("n2"), "a decision releases the held");
    match plan_write(&c, "n2") {
        Plan::Write(Action::Replace(_, spec)) => {
            assert_eq!(block_of(&spec, "b").as_deref(), Some("10.0.0.11"), "{spec:?}");
            assert_eq!(block_of(&spec, "a").as_deref(), Some("10.0.0.11"), "{spec:?}");
        }
        _ => panic!("n2 must be written once b is decided"),
    }
}

#[test]
fn a_pool_deleted_releases_the_nodes_held_for_it() {
    let a = pool("a", "1", &[("n1", "10.0.0.1", "10.0.0.10")]);
    let sh = shared(&["n1"], vec![a]);
    let mut c = sh.lock();
    c.node_sets.objects.insert("n1".into(), stored(&["a", "gone"]));
    c.node_sets.new_term();
    // "gone" is not cached: dropping it is no intent lost; "a" undecided but kept
    assert!(matches!(plan_write(&c, "n1"), Plan::Write(Action::Replace(..))));
    c.pools.insert(key("gone"), Arc::new(pool("gone", "1", &[])));
    assert!(matches!(plan_write(&c, "n1"), Plan::Hold));
    c.node_sets.held.insert("n1".into());
    super::super::cache::forget(&mut c, &key("gone"));
    assert!(c.node_sets.held.is_empty() && c.node_sets.dirty.contains("n1"));
    assert!(matches!(plan_write(&c, "n1"), Plan::Write(Action::Replace(..))));
}

#[test]
fn after_a_conflict_the_decision_is_read_until_the_watch_brings_it() {
    // cached at rv 1; another writer made rv 2 (our write got 409, we re-read rv 2, decided
    // again and wrote rv 3), and the watch has not delivered rv 2 yet
    let cached = pool("a", "1", &[("n1", "10.0.0.1", "10.0.0.10")]);
    let sh = shared(&["n1", "n2"], vec![cached]);
    let reread = pool("a", "2", &[("n1", "10.0.0.21", "10.0.0.30")]);
    let nodes = Arc::clone(&sh.lock().nodes);
    let (outcome, decision) = decide(&reread, &nodes, &Default::default(), GRACE, None);
    assert!(outcome.changed, "n2 needs a block");
    record_decision(&sh, &key("a"), &reread, &outcome, &decision, None);
    let entries: Vec<(String, String, String)> = match &*decision {
        AnyAllocations::Ip(v) => {
            v.iter().map(|e| (e.node_name.clone(), e.start_ip.clone(), e.end_ip.clone())).collect()
        }
        AnyAllocations::Cidr(_) => unreachable!(),
    };
    let entries: Vec<(&str, &str, &str)> =
        entries.iter().map(|(n, s, e)| (n.as_str(), s.as_str(), e.as_str())).collect();
    let written = pool("a", "3", &entries);
    record(&sh, &key("a"), &reread, &outcome, &decision, Some(written.clone()));
    {
        let c = sh.lock();
        assert_eq!(
            c.pools[&key("a")].resource_version(),
            "1",
            "an older cache is not replaced by the answer"
        );
        assert!(c.node_sets.decided.contains_key(&key("a")), "the nodes must keep reading the decision");
        let Plan::Write(Action::Create(spec)) = plan_write(&c, "n1") else { panic!("n1 has no object") };
        assert_eq!(block_of(&spec, "a").as_deref(), Some("10.0.0.21"), "not the cache's stale .1");
    }
    // the other writer's change arrives: still the decision
    pool_changed(&sh, PoolType::IpPool, Change::Applied(reread));
    assert!(sh.lock().node_sets.decided.contains_key(&key("a")));
    // our write's echo: the cache holds the decision now
    pool_changed(&sh, PoolType::IpPool, Change::Applied(written));
    let c = sh.lock();
    assert!(!c.node_sets.decided.contains_key(&key("a")));
    let Plan::Write(Action::Create(spec)) = plan_write(&c, "n1") else { panic!("n1 has no object") };
    assert_eq!(block_of(&spec, "a").as_deref(), Some("10.0.0.21"));
}

#[test]
fn a_write_answer_on_the_cached_version_replaces_the_cache_and_ends_the_decision() {
    let cached = pool("a", "1", &[("n1", "10.0.0.1", "10.0.0.10")]);
    let sh = shared(&["n1", "n2"], vec![cached.clone()]);
    let nodes = Arc::clone(&sh.lock().nodes);
    let (outcome, decision) = decide(&cached, &nodes, &Default::default(), GRACE, None);
    record_decision(&sh, &key("a"), &cached, &outcome, &decision, None);
    assert!(sh.lock().node_sets.decided.contains_key(&key("a")));
    let stored = pool("a", "2", &[("n1", "10.0.0.1", "10.0.0.10"), ("n2", "10.0.0.11", "10.0.0.20")]);
    record(&sh, &key("a"), &cached, &outcome, &decision, Some(stored));
    let c = sh.lock();
    assert_eq!(c.pools[&key("a")].resource_version(), "2");
    assert!(!c.node_sets.decided.contains_key(&key("a")));
}

#[test]
fn a_relist_marks_the_nodes_whose_entries_changed_while_the_watch_was_down() {
    let a = pool("a", "1", &[("n1", "10.0.0.1", "10.0.0.10"), ("n2", "10.0.0.11", "10.0.0.20")]);
    let sh = shared(&["n1", "n2"], vec![a]);
    let fresh = pool("a", "5", &[("n1", "10.0.0.1", "10.0.0.10"), ("n2", "10.0.0.31", "10.0.0.40")]);
    pool_changed(&sh, PoolType::IpPool, Change::Reset(vec![fresh]));
    let c = sh.lock();
    assert_eq!(c.node_sets.dirty.iter().collect::<Vec<_>>(), ["n2"]);
}
