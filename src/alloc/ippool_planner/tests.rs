//! Worked examples with the reference planner's results, the README example, and the planner's
//! properties: stable re-plans, dropped nodes, fast huge IPv6 pools.

use super::*;
use crate::api::{ExcludeIndexRange, ExcludeRange, IpPool, IpPoolSpec, ObjectMeta, validate_ip_pool};

fn pool(subnet: &str, gw: &str, b: i64) -> IpPool {
    IpPool {
        metadata: ObjectMeta::named("pool1"),
        spec: IpPoolSpec {
            subnet: subnet.into(),
            per_node_block_size: b,
            gateway: gw.into(),
            ..IpPoolSpec::default()
        },
        ..IpPool::default()
    }
}

fn valid(p: &IpPool) -> ValidIpPool {
    validate_ip_pool(p).expect("test pool is valid")
}

fn with_exclusions(mut p: IpPool, ex: &[(&str, &str)]) -> IpPool {
    p.spec.exclusions =
        ex.iter().map(|(a, b)| ExcludeRange { start_ip: a.to_string(), end_ip: b.to_string() }).collect();
    p
}

fn nodes(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| s.to_string()).collect()
}

fn blocks(plan: &IpPlan) -> Vec<String> {
    plan.allocations.iter().map(|a| format!("{} {}-{}", a.node_name, a.start_ip, a.end_ip)).collect()
}

fn alloc(n: &str, s: &str, e: &str) -> IpAllocation {
    IpAllocation { node_name: n.into(), start_ip: s.into(), end_ip: e.into() }
}

#[test]
fn readme_example() {
    let p = valid(&pool("192.168.0.0/16", "192.168.0.1", 4));
    let plan = plan_ip_pool(&p, &nodes(&["node2", "node1"]), &[]);
    assert_eq!(blocks(&plan), ["node1 192.168.0.1-192.168.0.4", "node2 192.168.0.5-192.168.0.8"]);
    assert!(plan.unallocated.is_empty());
}

// Example 1: four nodes in turn, then n1 again keeps its block.
#[test]
fn example_1_blocks_in_turn() {
    let p = valid(&pool("192.168.0.0/24", "192.168.0.1", 15));
    let mut status = Vec::new();
    for i in 0..4 {
        let all: Vec<String> = ["n1", "n2", "n3", "n4"][..=i].iter().map(|s| s.to_string()).collect();
        status = plan_ip_pool(&p, &all, &status).allocations;
    }
    let want = [
        "n1 192.168.0.1-192.168.0.15",
        "n2 192.168.0.16-192.168.0.30",
        "n3 192.168.0.31-192.168.0.45",
        "n4 192.168.0.46-192.168.0.60",
    ];
    let plan = plan_ip_pool(&p, &nodes(&["n1", "n2", "n3", "n4"]), &status);
    assert_eq!(blocks(&plan), want);
}

// Example 2: B=1 skips the gateway.
#[test]
fn example_2_block_size_one_skips_gateway() {
    let p = valid(&pool("172.16.0.0/16", "172.16.0.3", 1));
    let plan = plan_ip_pool(&p, &nodes(&["n1", "n2", "n3", "n4"]), &[]);
    assert_eq!(
        blocks(&plan),
        [
            "n1 172.16.0.1-172.16.0.1",
            "n2 172.16.0.2-172.16.0.2",
            "n3 172.16.0.4-172.16.0.4",
            "n4 172.16.0.5-172.16.0.5"
        ]
    );
}

// Examples 3 and 4: the tail never fits, no wrap-around.
#[test]
fn examples_3_and_4_no_free_ranges() {
    let p = valid(&pool("192.168.0.0/24", "", 200));
    let plan = plan_ip_pool(&p, &nodes(&["n1", "n2"]), &[]);
    assert_eq!(blocks(&plan), ["n1 192.168.0.1-192.168.0.200"]);
    assert_eq!(plan.unallocated, ["n2"]);
    let p = valid(&pool("255.255.255.0/24", "255.255.255.1", 200));
    let plan = plan_ip_pool(&p, &nodes(&["n1", "n2"]), &[]);
    assert_eq!(blocks(&plan), ["n1 255.255.255.1-255.255.255.200"]);
    assert_eq!(plan.unallocated, ["n2"]);
}

#[test]
fn block_ending_on_broadcast_is_never_used() {
    // /29: offsets 1..6 usable; B=3 gives .1-.3, .4-.6; B=7 would end on .7 (broadcast).
    let p = valid(&pool("10.0.0.0/29", "", 3));
    let plan = plan_ip_pool(&p, &nodes(&["a", "b", "c"]), &[]);
    assert_eq!(blocks(&plan), ["a 10.0.0.1-10.0.0.3", "b 10.0.0.4-10.0.0.6"]);
    assert_eq!(plan.unallocated, ["c"]);
    // IPv6 has no broadcast: the last block may end on the last address.
    let p = valid(&pool("2001:db8::/125", "", 7));
    assert_eq!(blocks(&plan_ip_pool(&p, &nodes(&["a"]), &[])), ["a 2001:db8::1-2001:db8::7"]);
}

#[test]
fn point_to_point_subnets_start_at_offset_zero() {
    let p = valid(&pool("10.0.0.0/31", "", 1));
    let plan = plan_ip_pool(&p, &nodes(&["a", "b", "c"]), &[]);
    assert_eq!(blocks(&plan), ["a 10.0.0.0-10.0.0.0", "b 10.0.0.1-10.0.0.1"]);
    let p = valid(&pool("2001:db8::5/128", "", 1));
    assert_eq!(blocks(&plan_ip_pool(&p, &nodes(&["a"]), &[])), ["a 2001:db8::5-2001:db8::5"]);
}

// Example 11: the first block under various exclusions.
#[test]
fn example_11_first_block_with_exclusions() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("192.168.0.3", "192.168.0.5")], "192.168.0.1-192.168.0.10"),
        (&[("192.168.0.1", "192.168.0.10")], "192.168.0.11-192.168.0.20"),
        (&[("192.168.0.0", "192.168.0.15")], "192.168.0.11-192.168.0.20"),
        (&[("192.168.0.1", "192.168.0.5"), ("192.168.0.4", "192.168.0.10")], "192.168.0.11-192.168.0.20"),
        (&[("192.168.0.1", "192.168.0.3"), ("192.168.0.5", "192.168.0.10")], "192.168.0.1-192.168.0.10"),
        (&[("192.168.0.100", "192.168.0.110")], "192.168.0.1-192.168.0.10"),
        (&[("192.168.0.1", "192.168.0.30")], "192.168.0.31-192.168.0.40"),
    ];
    for (ex, want) in cases {
        let p = valid(&with_exclusions(pool("192.168.0.0/24", "192.168.0.1", 10), ex));
        let plan = plan_ip_pool(&p, &nodes(&["n1"]), &[]);
        assert_eq!(blocks(&plan), [format!("n1 {want}")], "exclusions {ex:?}");
    }
}

#[test]
fn per_node_exclusions_with_pool_exclusions_skip_blocks() {
    // Block .1-.10 has .1-.5 excluded by the pool and indexes 5-9 (.6-.10) per node.
    let mut p = with_exclusions(pool("192.168.0.0/24", "", 10), &[("192.168.0.1", "192.168.0.5")]);
    p.spec.per_node_exclusions = vec![ExcludeIndexRange { start_index: 5, end_index: 9 }];
    let plan = plan_ip_pool(&valid(&p), &nodes(&["n1"]), &[]);
    assert_eq!(blocks(&plan), ["n1 192.168.0.11-192.168.0.20"]);
    // Per-node exclusions covering a whole block exclude every block.
    p.spec.per_node_exclusions = vec![ExcludeIndexRange { start_index: 0, end_index: 9 }];
    let plan =
        plan_ip_pool(&valid(&p), &nodes(&["n1", "n2"]), &[alloc("n1", "192.168.0.11", "192.168.0.20")]);
    assert!(plan.allocations.is_empty());
    assert_eq!(plan.unallocated, ["n1", "n2"]);
}

#[test]
fn existing_entries_are_kept_or_dropped() {
    let p = valid(&pool("192.168.0.0/24", "192.168.0.1", 10));
    let prev = vec![
        alloc("b", "192.168.0.21", "192.168.0.30"),    // kept
        alloc("c", "192.168.0.22", "192.168.0.31"),    // misaligned
        alloc("d", "192.168.0.21", "192.168.0.30"),    // same start as b
        alloc("e", "192.168.0.31", "192.168.0.39"),    // wrong size
        alloc("f", "10.0.0.1", "10.0.0.10"),           // outside the subnet
        alloc("g", "bogus", "192.168.0.10"),           // does not parse
        alloc("gone", "192.168.0.41", "192.168.0.50"), // node no longer selected
    ];
    let plan = plan_ip_pool(&p, &nodes(&["a", "b", "c", "d", "e", "f", "g"]), &prev);
    // a (first new node) takes the first free block from the pool start; the rest follow it.
    assert_eq!(
        blocks(&plan),
        [
            "a 192.168.0.1-192.168.0.10",
            "b 192.168.0.21-192.168.0.30",
            "c 192.168.0.11-192.168.0.20",
            "d 192.168.0.31-192.168.0.40",
            "e 192.168.0.41-192.168.0.50",
            "f 192.168.0.51-192.168.0.60",
            "g 192.168.0.61-192.168.0.70",
        ]
    );
    // B=1: an entry on the gateway is dropped.
    let p1 = valid(&pool("10.0.0.0/24", "10.0.0.2", 1));
    let plan = plan_ip_pool(&p1, &nodes(&["x"]), &[alloc("x", "10.0.0.2", "10.0.0.2")]);
    assert_eq!(blocks(&plan), ["x 10.0.0.1-10.0.0.1"]);
}

#[test]
fn fully_excluded_existing_entry_moves() {
    let p = valid(&with_exclusions(pool("192.168.0.0/24", "", 10), &[("192.168.0.11", "192.168.0.20")]));
    let plan = plan_ip_pool(&p, &nodes(&["a"]), &[alloc("a", "192.168.0.11", "192.168.0.20")]);
    assert_eq!(blocks(&plan), ["a 192.168.0.1-192.168.0.10"]);
}

#[test]
fn replanning_is_stable_and_deleted_nodes_free_their_block() {
    let p = valid(&with_exclusions(pool("10.0.0.0/16", "10.0.0.1", 7), &[("10.0.0.20", "10.0.0.100")]));
    let all = nodes(&["n1", "n2", "n3", "n4", "n5"]);
    let first = plan_ip_pool(&p, &all, &[]);
    assert_eq!(plan_ip_pool(&p, &all, &first.allocations), first);
    let fewer = plan_ip_pool(&p, &nodes(&["n1", "n2", "n4", "n5"]), &first.allocations);
    let mut want = first.allocations.clone();
    want.retain(|a| a.node_name != "n3");
    assert_eq!(fewer.allocations, want);
    // The freed block goes to the next node that needs one (first fit).
    let n3_block = first.allocations.iter().find(|a| a.node_name == "n3").expect("n3 planned").clone();
    let again = plan_ip_pool(&p, &nodes(&["n1", "n2", "n4", "n5", "n6"]), &fewer.allocations);
    let n6 = again.allocations.iter().find(|a| a.node_name == "n6").expect("n6 planned");
    assert_eq!((&n6.start_ip, &n6.end_ip), (&n3_block.start_ip, &n3_block.end_ip));
}

#[test]
fn jump_crosses_a_huge_exclusion() {
    // 2^60 blocks of a /48 are excluded: crossed by one arithmetic jump, not a walk.
    let p = valid(&with_exclusions(
        pool("2001:db8::/48", "", 1 << 20),
        &[("2001:db8::", "2001:db8:0:fffe:ffff:ffff:ffff:ffff")],
    ));
    let plan = plan_ip_pool(&p, &nodes(&["a", "b"]), &[]);
    // Block k is [1 + k*2^20, k*2^20 + 2^20]: the first one not inside the exclusion straddles
    // its end (partly excluded blocks are used).
    assert_eq!(
        blocks(&plan),
        [
            "a 2001:db8:0:fffe:ffff:ffff:fff0:1-2001:db8:0:ffff::",
            "b 2001:db8:0:ffff::1-2001:db8:0:ffff::10:0"
        ]
    );
}

#[test]
fn huge_ipv6_pool_many_nodes() {
    let p = valid(&pool("2001:db8:1:2::/64", "2001:db8:1:2::1", 1 << 40));
    let all: Vec<String> = (0..1000).map(|i| format!("node{i:04}")).collect();
    let plan = plan_ip_pool(&p, &all, &[]);
    assert_eq!(plan.allocations.len(), 1000);
    assert!(plan.unallocated.is_empty());
    assert_eq!(plan.allocations[0].start_ip, "2001:db8:1:2::1");
    assert_eq!(plan.allocations[0].end_ip, "2001:db8:1:2:0:100::");
    assert_eq!(plan.allocations[999].start_ip, "2001:db8:1:2:3:e700:0:1");
    assert_eq!(plan_ip_pool(&p, &all, &plan.allocations), plan);
    // A /100 holds one block of 2^27 from offset 1; the second would pass the end.
    let p = valid(&pool("2001:db8::/100", "", 1 << 27));
    let plan = plan_ip_pool(&p, &nodes(&["a", "b", "c"]), &[]);
    assert_eq!(plan.allocations.len(), 1);
    assert_eq!(plan.unallocated, ["b", "c"]);
}
