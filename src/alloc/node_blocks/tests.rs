use super::*;
use crate::alloc::{CidrPoolKind, IpPoolKind, node_pool_from};
use crate::api::{
    CidrAllocation, CidrPool, CidrPoolStatus, ExcludeIndexRange, IpAllocation, IpPool, IpPoolStatus,
    NodeSelector, ObjectMeta, Route, StaticAllocation,
};

fn ex(s: &str, e: &str) -> ExcludeRange {
    ExcludeRange { start_ip: s.into(), end_ip: e.into() }
}

fn selector() -> NodeSelector {
    let terms = serde_json::json!({"nodeSelectorTerms": [{"matchExpressions": [{"key": "k", "operator": "Exists"}]}]});
    serde_json::from_value(terms).expect("selector")
}

fn ip_pool(name: &str, block: i64, exclusions: Vec<ExcludeRange>, nodes: &[&str]) -> IpPool {
    let mut p = IpPool { metadata: ObjectMeta::named(name), ..IpPool::default() };
    p.spec.subnet = "10.0.0.0/24".into();
    p.spec.per_node_block_size = block;
    p.spec.gateway = "10.0.0.1".into();
    p.spec.exclusions = exclusions;
    if block > 1 {
        p.spec.per_node_exclusions = vec![ExcludeIndexRange { start_index: 0, end_index: 1 }];
    }
    p.spec.routes = vec![Route { dst: "192.168.0.0/16".into() }];
    p.spec.node_selector = Some(selector());
    let v = IpPoolKind::validate(&p).expect("valid");
    let names: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
    p.status = Some(IpPoolStatus { allocations: IpPoolKind::plan(&v, &names, &[]).allocations });
    p
}

/// Every node serves from its NodeBlockSet what it would serve from the whole pool.
fn assert_same_service(pool: &AnyPool, nodes: &[&str]) {
    for node in nodes {
        let whole = crate::with_pool_kind!(pool, p, K => node_pool_from::<K>(p, node));
        let set = desired(node, [Source { pool, valid: true, allocations: None }]);
        let objects = set.pools();
        match &whole {
            Ok(_) => assert_eq!(objects.len(), 1, "{node}: {set:?}"),
            Err(_) => assert!(objects.is_empty(), "{node} has no entry: {set:?}"),
        }
        for o in &objects {
            let from_set = crate::with_pool_kind!(o, p, K => node_pool_from::<K>(p, node));
            assert_eq!(from_set.as_ref().ok(), whole.as_ref().ok(), "{node}");
        }
    }
}

#[test]
fn an_ip_pool_entry_serves_what_the_whole_pool_serves_and_carries_only_what_touches_the_block() {
    let nodes = ["n1", "n2", "n3"];
    let p = ip_pool(
        "a",
        10,
        vec![ex("10.0.0.3", "10.0.0.4"), ex("10.0.0.25", "10.0.0.28"), ex("10.0.0.200", "10.0.0.210")],
        &nodes,
    );
    assert_same_service(&AnyPool::Ip(p.clone()), &nodes);
    let set = desired("n3", [Source { pool: &AnyPool::Ip(p.clone()), valid: true, allocations: None }]);
    let b = &set.ip_pools[0];
    assert_eq!(
        (b.name.as_str(), b.allocation.start_ip.as_str(), b.allocation.end_ip.as_str()),
        ("a", "10.0.0.21", "10.0.0.30")
    );
    assert_eq!(b.spec.exclusions, vec![ex("10.0.0.25", "10.0.0.28")], "only the exclusion inside n3's block");
    assert_eq!(b.spec.node_selector, None);
    assert_eq!(
        (b.spec.routes.clone(), b.spec.gateway.clone()),
        (p.spec.routes.clone(), p.spec.gateway.clone())
    );
    assert_eq!(b.spec.per_node_exclusions, p.spec.per_node_exclusions);
}

#[test]
fn many_ip_pool_shapes_serve_the_same_from_the_entry() {
    let nodes = ["a", "b", "c", "d", "e", "f"];
    for block in [1, 2, 5, 8, 13, 40] {
        for (s, e) in [(2, 2), (3, 9), (10, 30), (1, 250), (100, 120)] {
            let p = ip_pool("p", block, vec![ex(&format!("10.0.0.{s}"), &format!("10.0.0.{e}"))], &nodes);
            assert_same_service(&AnyPool::Ip(p), &nodes);
        }
    }
}

fn cidr_pool() -> CidrPool {
    let mut p = CidrPool { metadata: ObjectMeta::named("c"), ..CidrPool::default() };
    p.spec.cidr = "10.8.0.0/16".into();
    p.spec.per_node_network_prefix = 24;
    p.spec.gateway_index = Some(1);
    p.spec.exclusions = vec![ex("10.8.0.10", "10.8.0.12"), ex("10.8.7.1", "10.8.7.5")];
    p.spec.static_allocations = vec![
        StaticAllocation {
            node_name: "n2".into(),
            prefix: "10.8.7.0/24".into(),
            gateway: "10.8.7.254".into(),
        },
        StaticAllocation { node_name: "other".into(), prefix: "10.8.9.0/24".into(), gateway: String::new() },
        StaticAllocation { node_name: String::new(), prefix: "10.8.1.0/24".into(), gateway: String::new() },
    ];
    let v = CidrPoolKind::validate(&p).expect("valid");
    let names = vec!["n1".to_string(), "n2".to_string(), "n3".to_string()];
    p.status = Some(CidrPoolStatus { allocations: CidrPoolKind::plan(&v, &names, &[]).allocations });
    p
}

#[test]
fn a_cidr_pool_entry_keeps_only_its_nodes_static_allocation_and_serves_the_same() {
    let p = cidr_pool();
    assert_same_service(&AnyPool::Cidr(p.clone()), &["n1", "n2", "n3"]);
    let set = desired("n2", [Source { pool: &AnyPool::Cidr(p.clone()), valid: true, allocations: None }]);
    let b = &set.cidr_pools[0];
    assert_eq!(
        b.allocation,
        CidrAllocation { node_name: "n2".into(), prefix: "10.8.7.0/24".into(), gateway: "10.8.7.254".into() }
    );
    assert_eq!(b.spec.static_allocations, vec![p.spec.static_allocations[0].clone()]);
    assert_eq!(b.spec.exclusions, vec![ex("10.8.7.1", "10.8.7.5")]);
    let n1 = desired("n1", [Source { pool: &AnyPool::Cidr(p), valid: true, allocations: None }]);
    assert!(n1.cidr_pools[0].spec.static_allocations.is_empty(), "{n1:?}");
}

#[test]
fn an_invalid_pool_is_copied_verbatim_so_the_node_refuses_it_as_it_would_the_pool() {
    let mut p = ip_pool("a", 10, vec![ex("10.0.0.3", "10.0.0.4")], &["n1"]);
    p.spec.gateway = "172.16.0.1".into(); // outside the subnet
    let pool = AnyPool::Ip(p.clone());
    let set = desired("n1", [Source { pool: &pool, valid: false, allocations: None }]);
    assert_eq!(set.ip_pools[0].spec, p.spec);
    let o = &set.pools()[0];
    assert!(crate::with_pool_kind!(o, q, K => node_pool_from::<K>(q, "n1")).is_err());
}

#[test]
fn a_decision_not_written_yet_wins_over_the_status_and_names_sort() {
    let a = ip_pool("b-pool", 10, vec![], &["n1"]);
    let c = ip_pool("a-pool", 10, vec![], &["n1", "n2"]);
    let decided = AnyAllocations::Ip(vec![IpAllocation {
        node_name: "n2".into(),
        start_ip: "10.0.0.51".into(),
        end_ip: "10.0.0.60".into(),
    }]);
    let (pa, pc) = (AnyPool::Ip(a), AnyPool::Ip(c));
    let sources = |n| {
        desired(
            n,
            [
                Source { pool: &pa, valid: true, allocations: Some(&decided) },
                Source { pool: &pc, valid: true, allocations: None },
            ],
        )
    };
    let n2 = sources("n2");
    let names: Vec<&str> = n2.ip_pools.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["a-pool", "b-pool"], "sorted by pool name");
    assert_eq!(n2.ip_pools[1].allocation.start_ip, "10.0.0.51", "the decision, not the status");
    let n1 = sources("n1");
    assert_eq!(n1.ip_pools.len(), 1, "n1 is not in b-pool's decision: {n1:?}");
    assert!(sources("n9").is_empty());
}

#[test]
fn touching_keeps_what_it_cannot_judge() {
    let r = IpRange::new("10.0.0.10".parse().expect("ip"), "10.0.0.20".parse().expect("ip"));
    let list = vec![ex("10.0.0.1", "10.0.0.9"), ex("10.0.0.20", "10.0.0.30"), ex("bad", "10.0.0.1")];
    assert_eq!(touching(&list, r.as_ref()), vec![list[1].clone(), list[2].clone()]);
    assert_eq!(touching(&list, None), list);
}
