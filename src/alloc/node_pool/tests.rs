//! Node pool configs, with exclusions merged (the reference fails every ADD when they overlap),
//! and standalone mode.

use std::net::IpAddr;

use super::*;
use crate::alloc::kind::{CidrPoolKind, IpPoolKind};
use crate::api::{
    CidrAllocation, CidrPool, CidrPoolSpec, ExcludeIndexRange, ExcludeRange, IpAllocation, IpPool,
    IpPoolSpec, ObjectMeta, Route, ValidCidrPool, ValidIpPool, validate_cidr_pool, validate_ip_pool,
};
use crate::ip::IpRange;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn r(a: &str, b: &str) -> IpRange {
    IpRange::new(ip(a), ip(b)).expect("test range")
}

fn readme_ippool() -> ValidIpPool {
    // The reference README's example pool: its overlapping exclusions break every ADD there.
    validate_ip_pool(&IpPool {
        metadata: ObjectMeta::named("pool1"),
        spec: IpPoolSpec {
            subnet: "192.168.0.0/16".into(),
            per_node_block_size: 100,
            gateway: "192.168.0.1".into(),
            exclusions: vec![ExcludeRange { start_ip: "192.168.0.10".into(), end_ip: "192.168.0.20".into() }],
            per_node_exclusions: vec![ExcludeIndexRange { start_index: 0, end_index: 10 }],
            routes: vec![Route { dst: "5.5.0.0/16".into() }],
            default_gateway: true,
            ..IpPoolSpec::default()
        },
        ..IpPool::default()
    })
    .expect("valid pool")
}

#[test]
fn ippool_config_merges_overlapping_exclusions() {
    let p = readme_ippool();
    let status = [IpAllocation {
        node_name: "node1".into(),
        start_ip: "192.168.0.1".into(),
        end_ip: "192.168.0.100".into(),
    }];
    let np = IpPoolKind::node_pool(&p, "node1", &status).expect("config");
    assert_eq!(np.key.to_string(), "pool1");
    assert_eq!(np.subnet.to_string(), "192.168.0.0/16");
    assert_eq!(np.range, r("192.168.0.1", "192.168.0.100"));
    assert_eq!(np.gateway, Some(ip("192.168.0.1")));
    assert_eq!(np.exclusions, [r("192.168.0.1", "192.168.0.20")]);
    assert_eq!(np.routes.len(), 1);
    assert!(np.default_gateway);
    assert_eq!(
        IpPoolKind::node_pool(&p, "node2", &status).expect_err("no entry").to_string(),
        "pool pool1: status has no allocation for node node2: check the pool's nodeSelector and that \
         ipam-controller runs"
    );
    let bad =
        [IpAllocation { node_name: "node1".into(), start_ip: "10.0.0.1".into(), end_ip: "10.0.0.5".into() }];
    assert_eq!(
        IpPoolKind::node_pool(&p, "node1", &bad).expect_err("outside").to_string(),
        "pool pool1: allocation 10.0.0.1-10.0.0.5 of node node1 is not a range of the subnet: let \
         ipam-controller re-plan it"
    );
}

fn cidr(per_node: Vec<ExcludeIndexRange>) -> ValidCidrPool {
    validate_cidr_pool(&CidrPool {
        metadata: ObjectMeta::named("pool1"),
        spec: CidrPoolSpec {
            cidr: "192.100.0.0/16".into(),
            per_node_network_prefix: 24,
            gateway_index: Some(1),
            exclusions: vec![ExcludeRange { start_ip: "192.100.0.1".into(), end_ip: "192.100.0.10".into() }],
            per_node_exclusions: per_node,
            ..CidrPoolSpec::default()
        },
        ..CidrPool::default()
    })
    .expect("valid pool")
}

// Example 51 (node side): the first usable address after the exclusion is .11.
#[test]
fn cidrpool_config_from_status() {
    let p = cidr(vec![
        ExcludeIndexRange { start_index: 0, end_index: 2 },
        ExcludeIndexRange { start_index: 250, end_index: 255 },
    ]);
    let status = [
        CidrAllocation {
            node_name: "n1".into(),
            prefix: "192.100.0.0/24".into(),
            gateway: "192.100.0.1".into(),
        },
        CidrAllocation {
            node_name: "n2".into(),
            prefix: "192.100.1.0/24".into(),
            gateway: "192.100.1.1".into(),
        },
    ];
    let np = CidrPoolKind::node_pool(&p, "n1", &status).expect("config");
    assert_eq!(np.key.to_string(), "cidrpool/pool1");
    assert_eq!(np.subnet.to_string(), "192.100.0.0/24");
    assert_eq!(np.range, r("192.100.0.1", "192.100.0.254"));
    assert_eq!(np.gateway, Some(ip("192.100.0.1")));
    assert_eq!(np.exclusions, [r("192.100.0.0", "192.100.0.10"), r("192.100.0.250", "192.100.0.255")]);
    let np2 = CidrPoolKind::node_pool(&p, "n2", &status).expect("config");
    assert_eq!(np2.exclusions, [r("192.100.1.0", "192.100.1.2"), r("192.100.1.250", "192.100.1.255")]);
    let wrong =
        [CidrAllocation { node_name: "n1".into(), prefix: "192.100.0.0/24".into(), gateway: String::new() }];
    assert_eq!(
        CidrPoolKind::node_pool(&p, "n1", &wrong).expect_err("invalid").to_string(),
        "pool cidrpool/pool1: allocation of node n1 is invalid (gateway none of prefix 192.100.0.0/24 should \
         be 192.100.0.1): let ipam-controller re-plan it"
    );
}

#[test]
fn cidrpool_point_to_point_range_starts_at_network() {
    let p = validate_cidr_pool(&CidrPool {
        metadata: ObjectMeta::named("p2p"),
        spec: CidrPoolSpec {
            cidr: "10.0.0.0/30".into(),
            per_node_network_prefix: 31,
            ..CidrPoolSpec::default()
        },
        ..CidrPool::default()
    })
    .expect("valid");
    let np = standalone_node_pool::<CidrPoolKind>(&p, "n1").expect("standalone");
    assert_eq!(np.range, r("10.0.0.0", "10.0.0.1"));
    assert_eq!(np.gateway, None);
}

#[test]
fn standalone_mode_plans_this_node_alone() {
    let p = readme_ippool();
    let np = pool_for_node::<IpPoolKind>(&p, "any-node", None).expect("standalone");
    // The first block is .1-.100 (not fully excluded).
    assert_eq!(np.range, r("192.168.0.1", "192.168.0.100"));
    let c = cidr(vec![]);
    let np = pool_for_node::<CidrPoolKind>(&c, "n9", None).expect("standalone");
    assert_eq!(np.subnet.to_string(), "192.100.0.0/24");
    assert_eq!(np.exclusions, [r("192.100.0.1", "192.100.0.10")]);
    assert!(pool_for_node::<CidrPoolKind>(&c, "n9", Some(&[])).is_err());
}

#[test]
fn node_pools_from_a_manifest() {
    let m = crate::api::decode(
        "kind: IPPool\nmetadata: {name: a}\nspec: {subnet: 10.0.0.0/24, perNodeBlockSize: 10}\n---\n\
         kind: CIDRPool\nmetadata: {name: a}\nspec: {cidr: 10.1.0.0/16, perNodeNetworkPrefix: 24, gatewayIndex: 1}\n\
         status: {allocations: [{nodeName: n1, prefix: 10.1.7.0/24, gateway: 10.1.7.1}]}\n---\n\
         kind: IPPool\nmetadata: {name: bad}\nspec: {subnet: 10.0.0.0/24}\n",
    )
    .expect("decodes");
    let (pools, errors) = node_pools(&m, "n1");
    assert_eq!(pools.len(), 2);
    assert_eq!(pools[0].key.to_string(), "a");
    assert_eq!(pools[0].range, r("10.0.0.1", "10.0.0.10")); // standalone: no status
    assert_eq!(pools[1].key.to_string(), "cidrpool/a");
    assert_eq!(pools[1].range, r("10.1.7.1", "10.1.7.254"));
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].to_string(), "ippool \"bad\": spec.perNodeBlockSize: must be at least 1");
    let (pools, errors) = node_pools(&m, "n2");
    assert_eq!(pools.len(), 1);
    assert_eq!(
        errors[0].to_string(),
        "pool cidrpool/a: status has no allocation for node n2: check the pool's nodeSelector and that \
         ipam-controller runs"
    );
}
