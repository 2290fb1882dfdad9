//! Worked examples with the reference planner's results, the README example, static allocations,
//! validateAllocation, and the planner's properties.

use super::*;
use crate::api::{
    CidrPool, CidrPoolSpec, ExcludeIndexRange, ExcludeRange, ObjectMeta, StaticAllocation, validate_cidr_pool,
};

fn pool(cidr: &str, prefix: i64, gw_index: Option<i64>) -> CidrPool {
    CidrPool {
        metadata: ObjectMeta::named("pool1"),
        spec: CidrPoolSpec {
            cidr: cidr.into(),
            per_node_network_prefix: prefix,
            gateway_index: gw_index,
            ..CidrPoolSpec::default()
        },
        ..CidrPool::default()
    }
}

fn valid(p: &CidrPool) -> ValidCidrPool {
    validate_cidr_pool(p).expect("test pool is valid")
}

fn nodes(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| s.to_string()).collect()
}

fn shown(plan: &CidrPlan) -> Vec<String> {
    plan.allocations
        .iter()
        .map(|a| format!("{} {} {}", a.node_name, a.prefix, a.gateway).trim().to_string())
        .collect()
}

fn entry(n: &str, p: &str, g: &str) -> CidrAllocation {
    CidrAllocation { node_name: n.into(), prefix: p.into(), gateway: g.into() }
}

fn excl(p: &mut CidrPool, ex: &[(&str, &str)]) {
    p.spec.exclusions =
        ex.iter().map(|(a, b)| ExcludeRange { start_ip: a.to_string(), end_ip: b.to_string() }).collect();
}

#[test]
fn readme_example() {
    let p = valid(&pool("192.168.0.0/16", 24, Some(1)));
    let plan = plan_cidr_pool(&p, &nodes(&["node2", "node1"]), &[]);
    assert_eq!(shown(&plan), ["node1 192.168.0.0/24 192.168.0.1", "node2 192.168.1.0/24 192.168.1.1"]);
}

// Examples 22-25.
#[test]
fn examples_22_to_25() {
    let two = nodes(&["node-1", "node-2"]);
    let p = pool("10.10.0.0/16", 24, Some(1));
    assert_eq!(
        shown(&plan_cidr_pool(&valid(&p), &two, &[])),
        ["node-1 10.10.0.0/24 10.10.0.1", "node-2 10.10.1.0/24 10.10.1.1"]
    );
    let mut p23 = p.clone();
    excl(&mut p23, &[("10.10.0.0", "10.10.0.255"), ("10.10.1.0", "10.10.1.100")]);
    assert_eq!(
        shown(&plan_cidr_pool(&valid(&p23), &two, &[])),
        ["node-1 10.10.1.0/24 10.10.1.1", "node-2 10.10.2.0/24 10.10.2.1"]
    );
    let mut p24 = p.clone();
    p24.spec.per_node_exclusions = vec![ExcludeIndexRange { start_index: 0, end_index: 127 }];
    assert_eq!(
        shown(&plan_cidr_pool(&valid(&p24), &two, &[])),
        ["node-1 10.10.0.0/24 10.10.0.1", "node-2 10.10.1.0/24 10.10.1.1"]
    );
    let mut p25 = p.clone();
    excl(&mut p25, &[("10.10.0.0", "10.10.0.255"), ("10.10.1.0", "10.10.1.127")]);
    p25.spec.per_node_exclusions = vec![ExcludeIndexRange { start_index: 128, end_index: 255 }];
    assert_eq!(
        shown(&plan_cidr_pool(&valid(&p25), &two, &[])),
        ["node-1 10.10.2.0/24 10.10.2.1", "node-2 10.10.3.0/24 10.10.3.1"]
    );
}

#[test]
fn no_gateway_index_means_no_gateway_and_exhaustion_is_reported() {
    let p = valid(&pool("10.0.0.0/23", 24, None));
    let plan = plan_cidr_pool(&p, &nodes(&["a", "b", "c"]), &[]);
    assert_eq!(shown(&plan), ["a 10.0.0.0/24", "b 10.0.1.0/24"]);
    assert_eq!(plan.unallocated, ["c"]);
}

#[test]
fn static_allocations_beat_dynamic_entries() {
    let mut p = pool("10.0.0.0/16", 24, Some(1));
    p.spec.static_allocations = vec![
        StaticAllocation { node_name: "b".into(), prefix: "10.0.5.0/24".into(), gateway: "10.0.5.9".into() },
        StaticAllocation { node_name: String::new(), prefix: "10.0.0.0/24".into(), gateway: String::new() },
        StaticAllocation { node_name: "c".into(), prefix: "10.0.1.0/24".into(), gateway: String::new() },
        StaticAllocation { node_name: "absent".into(), prefix: "10.0.2.0/24".into(), gateway: String::new() },
    ];
    let p = valid(&p);
    let prev = vec![
        entry("a", "10.0.1.0/24", "10.0.1.1"), // c's static prefix: dropped
        entry("b", "10.0.3.0/24", "10.0.3.1"), // b has a static prefix: moves
    ];
    let plan = plan_cidr_pool(&p, &nodes(&["a", "b", "c", "d"]), &prev);
    assert_eq!(
        shown(&plan),
        [
            "a 10.0.3.0/24 10.0.3.1", // 0 reserved, 1 and 2 static, 3 freed by b
            "b 10.0.5.0/24 10.0.5.9",
            "c 10.0.1.0/24 10.0.1.1",
            "d 10.0.4.0/24 10.0.4.1",
        ]
    );
    assert_eq!(plan_cidr_pool(&p, &nodes(&["a", "b", "c", "d"]), &plan.allocations), plan);
}

#[test]
fn validate_allocation_rules() {
    let mut raw = pool("10.0.0.0/16", 24, Some(1));
    raw.spec.static_allocations = vec![StaticAllocation {
        node_name: "s".into(),
        prefix: "10.0.9.0/24".into(),
        gateway: String::new(),
    }];
    let p = valid(&raw);
    let check =
        |entries: &[CidrAllocation], i: usize| validate_allocation(&p, entries, i).map_err(|e| e.to_string());
    assert_eq!(check(&[entry("", "10.0.1.0/24", "10.0.1.1")], 0), Err("nodeName is empty".into()));
    assert_eq!(check(&[entry("a", "", "")], 0), Err("prefix is empty".into()));
    assert_eq!(check(&[entry("a", "x", "")], 0), Err("prefix x is not a CIDR".into()));
    assert_eq!(
        check(&[entry("a", "10.0.1.1/24", "")], 0),
        Err("prefix 10.0.1.1/24 has host bits set".into())
    );
    assert_eq!(
        check(&[entry("a", "10.1.1.0/24", "10.1.1.1")], 0),
        Err("prefix 10.1.1.0/24 is not a /24 of 10.0.0.0/16".into())
    );
    assert_eq!(
        check(&[entry("a", "10.0.1.0/25", "10.0.1.1")], 0),
        Err("prefix 10.0.1.0/25 is not a /24 of 10.0.0.0/16".into())
    );
    assert_eq!(
        check(&[entry("a", "10.0.1.0/24", "10.0.1.2")], 0),
        Err("gateway 10.0.1.2 of prefix 10.0.1.0/24 should be 10.0.1.1".into())
    );
    assert_eq!(
        check(&[entry("a", "10.0.9.0/24", "10.0.9.1")], 0),
        Err("prefix 10.0.9.0/24 is statically allocated to another node or reserved".into())
    );
    assert_eq!(
        check(&[entry("s", "10.0.1.0/24", "10.0.1.1")], 0),
        Err("node s has the static prefix 10.0.9.0/24".into())
    );
    assert!(check(&[entry("s", "10.0.9.0/24", "10.0.9.1")], 0).is_ok());
    let dup = [entry("a", "10.0.1.0/24", "10.0.1.1"), entry("b", "10.0.1.0/24", "10.0.1.1")];
    assert_eq!(check(&dup, 0), Err("entry of node a shares its prefix, node or gateway with entry 1".into()));
    assert!(check(&dup, 1).is_err());
    // Both conflicting entries are dropped and re-planned.
    let plan = plan_cidr_pool(&p, &nodes(&["a", "b"]), &dup);
    assert_eq!(shown(&plan), ["a 10.0.0.0/24 10.0.0.1", "b 10.0.1.0/24 10.0.1.1"]);
}

#[test]
fn replanning_is_stable_and_deleted_nodes_drop_out() {
    let mut p = pool("10.10.0.0/16", 24, Some(1));
    excl(&mut p, &[("10.10.1.0", "10.10.1.255")]);
    let p = valid(&p);
    let all = nodes(&["a", "b", "c"]);
    let first = plan_cidr_pool(&p, &all, &[]);
    assert_eq!(
        shown(&first),
        ["a 10.10.0.0/24 10.10.0.1", "b 10.10.2.0/24 10.10.2.1", "c 10.10.3.0/24 10.10.3.1"]
    );
    assert_eq!(plan_cidr_pool(&p, &all, &first.allocations), first);
    let fewer = plan_cidr_pool(&p, &nodes(&["a", "c"]), &first.allocations);
    assert_eq!(shown(&fewer), ["a 10.10.0.0/24 10.10.0.1", "c 10.10.3.0/24 10.10.3.1"]);
    let again = plan_cidr_pool(&p, &nodes(&["a", "c", "d"]), &fewer.allocations);
    assert_eq!(shown(&again)[2], "d 10.10.2.0/24 10.10.2.1");
}

#[test]
fn ipv4_prefix_is_excluded_without_its_broadcast() {
    // .0-.254 excluded leaves only the broadcast, which a node never uses: the prefix is skipped.
    let mut p = pool("10.0.0.0/16", 24, None);
    excl(&mut p, &[("10.0.0.0", "10.0.0.254")]);
    let plan = plan_cidr_pool(&valid(&p), &nodes(&["a"]), &[]);
    assert_eq!(shown(&plan), ["a 10.0.1.0/24"]);
}

#[test]
fn huge_ipv6_pools_skip_exclusions_arithmetically() {
    let mut p = pool("2001:db8::/32", 64, Some(1));
    // 2^31 prefixes excluded: crossing them one by one would never finish.
    excl(&mut p, &[("2001:db8::", "2001:db8:7fff:ffff:ffff:ffff:ffff:ffff")]);
    let p = valid(&p);
    let all: Vec<String> = (0..1000).map(|i| format!("node{i:04}")).collect();
    let plan = plan_cidr_pool(&p, &all, &[]);
    assert_eq!(plan.allocations.len(), 1000);
    assert_eq!(plan.allocations[0].prefix, "2001:db8:8000::/64");
    assert_eq!(plan.allocations[0].gateway, "2001:db8:8000::1");
    assert_eq!(plan.allocations[999].prefix, "2001:db8:8000:3e7::/64");
    assert_eq!(plan_cidr_pool(&p, &all, &plan.allocations), plan);
    // Per-node exclusions covering every prefix: nobody gets one, at once.
    let mut q = pool("2001:db8::/32", 120, None);
    q.spec.per_node_exclusions = vec![ExcludeIndexRange { start_index: 0, end_index: 255 }];
    let plan = plan_cidr_pool(&valid(&q), &nodes(&["a", "b"]), &[]);
    assert_eq!(plan.unallocated, ["a", "b"]);
}

#[test]
fn large_status_replans_unchanged() {
    // 10k nodes: the status is validated with counted conflicts, not pairwise scans.
    let p = valid(&pool("10.0.0.0/8", 24, Some(1)));
    let all: Vec<String> = (0..10_000).map(|i| format!("node{i:05}")).collect();
    let plan = plan_cidr_pool(&p, &all, &[]);
    assert_eq!(plan.allocations.len(), 10_000);
    assert_eq!(plan.allocations[9_999].prefix, "10.39.15.0/24");
    assert_eq!(plan_cidr_pool(&p, &all, &plan.allocations), plan);
}
