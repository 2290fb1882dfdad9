//! The view of the node's NodeBlockSet against a real service and cache file in a temp dir:
//! present, changed, another node's, absent, deleted; the cache of an older version; the cache
//! file's limits.

use super::*;
use crate::api::{IpAllocation, IpPoolStatus, NodeSelector, PoolType};
use crate::api::{IpPool, ObjectMeta};
use crate::store::Store;
use crate::store::tests::TempDir;
use std::fs;

fn ippool(name: &str, alloc: Option<Vec<(&str, &str, &str)>>) -> IpPool {
    let mut p = IpPool::default();
    p.metadata.name = name.into();
    p.spec.subnet = "192.168.0.0/24".into();
    p.spec.per_node_block_size = 10;
    p.spec.gateway = "192.168.0.1".into();
    p.status = alloc.map(|a| IpPoolStatus {
        allocations: a
            .into_iter()
            .map(|(n, s, e)| IpAllocation { node_name: n.into(), start_ip: s.into(), end_ip: e.into() })
            .collect(),
    });
    p
}

/// Pool `name` with blocks .1-.10 for n1 and .11-.20 for n2, and a nodeSelector.
fn two_node_pool(name: &str) -> IpPool {
    let mut p = ippool(
        name,
        Some(vec![("n1", "192.168.0.1", "192.168.0.10"), ("n2", "192.168.0.11", "192.168.0.20")]),
    );
    let sel = serde_json::json!({"nodeSelectorTerms": [{"matchExpressions": [{"key": "k", "operator": "Exists"}]}]});
    p.spec.node_selector = Some(serde_json::from_value::<NodeSelector>(sel).expect("selector"));
    p
}

/// `node`'s NodeBlockSet for whole `pools`, as the controller writes it.
fn object(node: &str, pools: Vec<IpPool>, rv: &str) -> NodeBlockSet {
    let any: Vec<AnyPool> = pools.into_iter().map(AnyPool::Ip).collect();
    let spec = node_blocks::desired(
        node,
        any.iter().map(|pool| Source { pool, valid: spec_valid(pool), allocations: None }),
    );
    let mut metadata = ObjectMeta::named(node);
    metadata.rest.insert("resourceVersion".into(), rv.into());
    NodeBlockSet { metadata, spec, ..NodeBlockSet::default() }
}

fn key(name: &str) -> PoolKey {
    PoolKey::new(PoolType::IpPool, name)
}

/// A node `n1`'s pool source over a store and cache in `dir` (the cache is loaded if present).
fn source(dir: &TempDir) -> Arc<ClusterPools> {
    let store = Store::open(&dir.join("store")).expect("store");
    let svc = Arc::new(Service::new("n1".into(), store, PoolSet::default()));
    ClusterPools::new("n1".into(), "ns".into(), cache_path(&dir.join("store")), svc)
}

fn served(cp: &ClusterPools) -> Vec<String> {
    cp.service.pools().describe()
}

fn cached(dir: &TempDir) -> Cache {
    load_cache(&cache_path(&dir.join("store"))).expect("load").expect("a cache")
}

#[test]
fn derive_needs_this_nodes_status_entry() {
    let pools = vec![
        ippool(
            "a",
            Some(vec![("n1", "192.168.0.1", "192.168.0.10"), ("n2", "192.168.0.11", "192.168.0.20")]),
        ),
        ippool("b", None),
        ippool("c", Some(vec![("n2", "192.168.0.1", "192.168.0.10")])),
    ];
    let set = derive(&pools.into_iter().map(AnyPool::Ip).collect::<Vec<_>>(), "n2", &PoolSet::default());
    assert_eq!(set.len(), 2);
    let a = set.get(&key("a")).expect("a");
    assert_eq!(a.range.to_string(), "192.168.0.11-192.168.0.20");
    let skipped = set.refusals();
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].contains("pool b") && skipped[0].contains("n2"), "{skipped:?}");
}

#[test]
fn the_node_follows_its_object_and_only_its_object() {
    let dir = TempDir::new("pools-cluster-follow");
    let cp = source(&dir);
    assert!(!cp.known());
    assert!(
        cp.waiting_for().contains("has not answered the list of NodeBlockSet ns/n1"),
        "{}",
        cp.waiting_for()
    );
    let (a, b) = (two_node_pool("a"), two_node_pool("b"));
    cp.on_change(Change::Reset(vec![object("n1", vec![a.clone(), b.clone()], "1")]));
    assert!(cp.known());
    assert_eq!(
        served(&cp),
        ["a 192.168.0.1-192.168.0.10 gw 192.168.0.1", "b 192.168.0.1-192.168.0.10 gw 192.168.0.1"]
    );
    // the cache holds the object's entries: one status entry, no nodeSelector
    let c = cached(&dir);
    assert_eq!(c.ip_pools.len(), 2);
    assert_eq!(c.ip_pools[0].allocations().len(), 1);
    assert!(c.ip_pools[0].spec.node_selector.is_none(), "{c:?}");

    // a block moves; pool b is dropped from the object
    let mut moved = a.clone();
    moved.status.as_mut().expect("status").allocations[0] = IpAllocation {
        node_name: "n1".into(),
        start_ip: "192.168.0.21".into(),
        end_ip: "192.168.0.30".into(),
    };
    cp.on_change(Change::Applied(object("n1", vec![moved.clone()], "2")));
    assert_eq!(served(&cp), ["a 192.168.0.21-192.168.0.30 gw 192.168.0.1"]);
    assert_eq!(cached(&dir).ip_pools.len(), 1);

    // another node's object, in a list or a watch, changes nothing
    let before = cp.service.pools();
    cp.on_change(Change::Applied(object("n2", vec![a.clone(), b.clone()], "3")));
    cp.on_change(Change::Deleted(object("n2", vec![], "4")));
    cp.on_change(Change::Reset(vec![
        object("n2", vec![b.clone()], "5"),
        object("n1", vec![moved.clone()], "5"),
    ]));
    assert_eq!(cp.service.pools(), before);

    // deleted after it was seen (ipam-controller does so when no entry is left): no pools
    cp.on_change(Change::Deleted(object("n1", vec![moved.clone()], "6")));
    assert!(cp.service.pools().is_empty());
    assert!(cached(&dir).ip_pools.is_empty(), "a restart must not serve the deleted object's blocks");
    assert!(cp.known() && cp.waiting_for().contains("does not exist yet"), "{}", cp.waiting_for());
    // written again, then gone from a relist (deleted while the watch was down): no pools
    cp.on_change(Change::Applied(object("n1", vec![moved.clone()], "7")));
    assert_eq!(cp.service.pools(), before);
    cp.on_change(Change::Reset(Vec::new()));
    assert!(cp.service.pools().is_empty());
    // an empty object is authoritative too
    cp.on_change(Change::Applied(object("n1", vec![moved.clone()], "8")));
    cp.on_change(Change::Applied(object("n1", vec![], "9")));
    assert!(cp.service.pools().is_empty());
    assert!(cached(&dir).ip_pools.is_empty());
}

#[test]
fn with_a_cache_an_object_absent_from_the_start_keeps_the_cached_pools() {
    let dir = TempDir::new("pools-cluster-absent-cached");
    let cp = source(&dir);
    cp.on_change(Change::Reset(vec![object("n1", vec![two_node_pool("a")], "1")]));
    let served_before = served(&cp);
    drop(cp);
    // restarted while an older ipam-controller runs: the object is not there, the cache serves
    let cp = source(&dir);
    cp.on_change(Change::Reset(Vec::new()));
    assert_eq!(served(&cp), served_before);
    cp.on_change(Change::Deleted(object("n2", vec![], "2")));
    assert_eq!(served(&cp), served_before, "another node's object changes nothing");
}

#[test]
fn an_invalid_spec_keeps_the_last_valid_one_served_and_cached() {
    let dir = TempDir::new("pools-cluster-invalid");
    let cp = source(&dir);
    let good = two_node_pool("a");
    cp.on_change(Change::Reset(vec![object("n1", vec![good.clone()], "1")]));
    let first = served(&cp);
    let mut bad = good.clone();
    bad.spec.gateway = "10.9.9.9".into();
    cp.on_change(Change::Applied(object("n1", vec![bad.clone()], "2")));
    assert_eq!(served(&cp), first);
    assert!(cp.service.pools().held(&key("a")).is_some_and(|w| w.contains("spec.gateway")));
    assert_eq!(cached(&dir).ip_pools[0].spec.gateway, "192.168.0.1", "the invalid spec is not cached");
    // a restart under the invalid spec serves the cached one, then holds it over the object
    drop(cp);
    let cp = source(&dir);
    assert_eq!(served(&cp), first);
    cp.on_change(Change::Reset(vec![object("n1", vec![bad.clone()], "2")]));
    assert_eq!(served(&cp), first);
    // a pool dropped is forgotten: re-created invalid, it is refused, not served from its past
    cp.on_change(Change::Applied(object("n1", vec![], "3")));
    cp.on_change(Change::Applied(object("n1", vec![bad], "4")));
    assert!(served(&cp).is_empty());
    assert!(cp.service.pools().refused(&key("a")).is_some_and(|w| w.contains("invalid spec")));
}

#[test]
fn without_a_cache_an_absent_object_is_not_an_empty_pool_set() {
    let dir = TempDir::new("pools-cluster-absent");
    let cp = source(&dir);
    cp.on_change(Change::Reset(Vec::new()));
    assert!(!cp.known(), "an absent object must not make an empty pool set known");
    assert!(cp.waiting_for().contains("NodeBlockSet ns/n1 does not exist yet"), "{}", cp.waiting_for());
    assert!(!cache_path(&dir.join("store")).exists());
    cp.on_change(Change::Applied(object("n1", vec![two_node_pool("a")], "1")));
    assert!(cp.known());
    assert_eq!(served(&cp).len(), 1);
}

#[test]
fn an_older_versions_cache_of_whole_pools_is_projected_to_the_node_and_rewritten() {
    let dir = TempDir::new("pools-cluster-old-cache");
    let path = cache_path(&dir.join("store"));
    let whole = vec![two_node_pool("a"), ippool("other", Some(vec![("n2", "192.168.0.1", "192.168.0.10")]))];
    save_cache(&path, "n1", "ns", &whole, &[]).expect("save");
    let cp = source(&dir);
    assert!(cp.known());
    assert_eq!(served(&cp), ["a 192.168.0.1-192.168.0.10 gw 192.168.0.1"]);
    let last = cp.view().last_valid.clone();
    assert_eq!(last.len(), 1, "only this node's entries are held: {last:?}");
    assert_eq!(last[&key("a")], project(&[AnyPool::Ip(whole[0].clone())], "n1")[0]);
    // the same pools from the object: nothing served changes, the cache is rewritten projected
    cp.on_change(Change::Reset(vec![object("n1", whole.clone(), "1")]));
    assert_eq!(served(&cp), ["a 192.168.0.1-192.168.0.10 gw 192.168.0.1"]);
    let c = cached(&dir);
    assert_eq!(c.ip_pools.len(), 1);
    assert_eq!(c.ip_pools[0].allocations(), &whole[0].allocations()[..1]);
    // projection is idempotent, and equals the controller's projection of the whole pool
    let objects = Cache { ip_pools: whole.clone(), ..Cache::default() }.objects();
    let once = project(&objects, "n1");
    assert_eq!(project(&once, "n1"), once);
    assert_eq!(once, object("n1", whole.clone(), "1").spec.pools());
}

#[test]
fn cache_round_trips_atomically_and_privately() {
    let dir = TempDir::new("pools-cache");
    let path = cache_path(&dir.join("store"));
    assert!(load_cache(&path).expect("none").is_none());
    let pools = vec![ippool("a", Some(vec![("n1", "192.168.0.1", "192.168.0.10")]))];
    save_cache(&path, "n1", "ns", &pools, &[]).expect("save");
    let c = load_cache(&path).expect("load").expect("some");
    assert_eq!((c.node.as_str(), c.ip_pools.clone()), ("n1", pools));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(&path).expect("stat").permissions().mode() & 0o777, 0o600);
    fs::write(&path, b"{not json").expect("damage");
    let e = load_cache(&path).expect_err("damaged");
    assert!(e.to_string().contains("remove it"), "{e}");
}

#[test]
fn a_cache_of_exactly_the_limit_loads_and_one_byte_more_is_refused() {
    let dir = TempDir::new("pools-cache-limit");
    let path = cache_path(&dir.join("store"));
    save_cache(&path, "n1", "ns", &[ippool("a", None)], &[]).expect("save");
    let mut bytes = fs::read(&path).expect("read");
    bytes.resize(MAX_CACHE_BYTES as usize, b' '); // trailing white space: still the same JSON
    fs::write(&path, &bytes).expect("pad");
    assert_eq!(load_cache(&path).expect("at the limit").expect("some").ip_pools.len(), 1);
    bytes.push(b' ');
    fs::write(&path, &bytes).expect("pad");
    let e = load_cache(&path).expect_err("over the limit");
    assert!(
        e.to_string().contains(&format!(
            "{} bytes is more than the {MAX_CACHE_BYTES}-byte limit",
            MAX_CACHE_BYTES + 1
        )),
        "{e}"
    );
}

#[test]
fn a_deeply_nested_cache_is_refused_by_the_depth_check() {
    let dir = TempDir::new("pools-cache-deep");
    let path = cache_path(&dir.join("store"));
    fs::write(&path, format!("{{\"x\":{}", "[".repeat(100_000))).expect("damage");
    let e = load_cache(&path).expect_err("deep");
    assert!(e.to_string().contains("nested deeper than the limit of 64 levels"), "{e}");
}
