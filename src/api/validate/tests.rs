//! Every rule of the reference's validation (see the module docs): at least one failing and one
//! passing case each, asserting the message text.

use super::*;
use crate::api::selector::{NodeSelectorRequirement, NodeSelectorTerm};
use crate::api::{CidrPoolSpec, IpPoolSpec, NodeSelector, ObjectMeta};

fn ippool(name: &str, f: impl FnOnce(&mut IpPoolSpec)) -> IpPool {
    let mut spec = IpPoolSpec {
        subnet: "192.168.0.0/16".into(),
        per_node_block_size: 100,
        gateway: "192.168.0.1".into(),
        ..IpPoolSpec::default()
    };
    f(&mut spec);
    IpPool { metadata: ObjectMeta::named(name), spec, ..IpPool::default() }
}

fn cidrpool(f: impl FnOnce(&mut CidrPoolSpec)) -> CidrPool {
    let mut spec = CidrPoolSpec {
        cidr: "10.10.0.0/16".into(),
        per_node_network_prefix: 24,
        gateway_index: Some(1),
        ..CidrPoolSpec::default()
    };
    f(&mut spec);
    CidrPool { metadata: ObjectMeta::named("blue"), spec, ..CidrPool::default() }
}

fn ip_errors(p: &IpPool) -> Vec<String> {
    validate_ip_pool(p).err().map(|e| e.errors.iter().map(|e| e.to_string()).collect()).unwrap_or_default()
}

fn cidr_errors(p: &CidrPool) -> Vec<String> {
    validate_cidr_pool(p).err().map(|e| e.errors.iter().map(|e| e.to_string()).collect()).unwrap_or_default()
}

fn ex(a: &str, b: &str) -> ExcludeRange {
    ExcludeRange { start_ip: a.into(), end_ip: b.into() }
}

fn idx(a: i64, b: i64) -> ExcludeIndexRange {
    ExcludeIndexRange { start_index: a, end_index: b }
}

#[test]
fn valid_ippool_parses_into_types() {
    let v = validate_ip_pool(&ippool("blue", |s| {
        s.subnet = "192.168.3.7/16".into(); // host bits tolerated
        s.exclusions = vec![ex("192.168.0.10", "192.168.0.20"), ex("192.168.0.15", "192.168.0.30")];
        s.per_node_exclusions = vec![idx(0, 99)];
        s.routes = vec![Route { dst: "5.5.1.1/16".into() }];
        s.default_gateway = true;
    }))
    .expect("valid");
    assert_eq!(v.subnet.to_string(), "192.168.0.0/16");
    assert_eq!(v.block_size, 100);
    assert_eq!(v.exclusions.len(), 1, "overlapping exclusions are merged");
    assert_eq!(v.exclusions[0].to_string(), "192.168.0.10-192.168.0.30");
    assert_eq!(v.routes[0].to_string(), "5.5.0.0/16");
}

#[test]
fn display_names_pool_and_every_field() {
    let e = validate_ip_pool(&ippool("blue", |s| {
        s.per_node_block_size = 0;
        s.gateway = "10.0.0.1".into();
    }))
    .expect_err("invalid");
    assert_eq!(
        e.to_string(),
        "ippool \"blue\": spec.perNodeBlockSize: must be at least 1; spec.gateway: 10.0.0.1 is not inside \
         the subnet 192.168.0.0/16"
    );
}

#[test]
fn ippool_name_rule() {
    for ok in ["a", "9net", "my_net.v1-2"] {
        assert!(ip_errors(&ippool(ok, |_| {})).is_empty(), "{ok}");
    }
    for bad in ["", "-net", "net/1", "a b"] {
        assert_eq!(
            ip_errors(&ippool(bad, |_| {})),
            [format!(
                "metadata.name: {bad:?} is not a valid CNI network name: start with a letter or digit, then \
                 use letters, digits, '_', '.' or '-'"
            )]
        );
    }
}

#[test]
fn ippool_subnet_and_block_size_rules() {
    assert_eq!(
        ip_errors(&ippool("p", |s| s.subnet = String::new())),
        ["spec.subnet: is required: set a CIDR such as 192.168.0.0/16"]
    );
    assert_eq!(
        ip_errors(&ippool("p", |s| s.subnet = "192.168.0.0/33".into())),
        ["spec.subnet: 192.168.0.0/33 is not a CIDR: use a form like 192.168.0.0/16"]
    );
    assert_eq!(
        ip_errors(&ippool("p", |s| s.per_node_block_size = -3)),
        ["spec.perNodeBlockSize: must be at least 1"]
    );
    assert_eq!(
        ip_errors(&ippool("p", |s| {
            s.subnet = "192.168.0.0/24".into();
            s.per_node_block_size = 255;
        })),
        ["spec.perNodeBlockSize: 255 is larger than the 254 addresses available in 192.168.0.0/24: lower it"]
    );
    assert!(
        ip_errors(&ippool("p", |s| {
            s.subnet = "192.168.0.0/24".into();
            s.per_node_block_size = 254;
        }))
        .is_empty()
    );
    assert!(
        ip_errors(&ippool("p", |s| {
            s.subnet = "192.168.0.0/31".into();
            s.gateway = String::new();
            s.per_node_block_size = 2;
        }))
        .is_empty()
    );
    assert_eq!(
        ip_errors(&ippool("p", |s| {
            s.subnet = "2001:db8::/128".into();
            s.gateway = String::new();
            s.per_node_block_size = 2;
        })),
        ["spec.perNodeBlockSize: 2 is larger than the 1 addresses available in 2001:db8::/128: lower it"]
    );
}

#[test]
fn ippool_gateway_rules() {
    assert_eq!(
        ip_errors(&ippool("p", |s| s.gateway = "192.168.0.300".into())),
        ["spec.gateway: 192.168.0.300 is not an IP address"]
    );
    assert_eq!(
        ip_errors(&ippool("p", |s| s.gateway = "::1".into())),
        ["spec.gateway: ::1 is not inside the subnet 192.168.0.0/16"]
    );
    // The network and broadcast addresses pass, as in the reference.
    assert!(ip_errors(&ippool("p", |s| s.gateway = "192.168.255.255".into())).is_empty());
    assert!(ip_errors(&ippool("p", |s| s.gateway = String::new())).is_empty());
}

#[test]
fn exclusion_rules() {
    let errs = ip_errors(&ippool("p", |s| {
        s.exclusions = vec![
            ex("10.0.0.300", "192.168.0.5"),
            ex("192.168.0.9", "192.168.0.5"),
            ex("", "10.1.0.0"),
            ex("192.168.0.1", "192.168.0.5"),
        ]
    }));
    assert_eq!(
        errs,
        [
            "spec.exclusions[0].startIP: 10.0.0.300 is not an IP address",
            "spec.exclusions[1].endIP: 192.168.0.5 is before startIP 192.168.0.9: swap them",
            "spec.exclusions[2].startIP: is required: set an IP address",
            "spec.exclusions[2].endIP: 10.1.0.0 is not inside the subnet 192.168.0.0/16",
        ]
    );
    assert_eq!(
        cidr_errors(&cidrpool(|s| s.exclusions = vec![ex("10.10.0.1", "10.11.0.1")])),
        ["spec.exclusions[0].endIP: 10.11.0.1 is not inside the cidr 10.10.0.0/16"]
    );
}

#[test]
fn per_node_exclusion_rules() {
    assert!(ip_errors(&ippool("p", |s| s.per_node_exclusions = vec![idx(0, 99), idx(5, 5)])).is_empty());
    assert_eq!(
        ip_errors(&ippool("p", |s| s.per_node_exclusions = vec![idx(-1, 100), idx(7, 3)])),
        [
            "spec.perNodeExclusions[0].startIndex: -1 must not be negative",
            "spec.perNodeExclusions[0].endIndex: 100 is larger than the largest index 99 (perNodeBlockSize - 1)",
            "spec.perNodeExclusions[1].endIndex: 3 is less than startIndex 7: swap them",
        ]
    );
    assert!(cidr_errors(&cidrpool(|s| s.per_node_exclusions = vec![idx(0, 255)])).is_empty());
    assert_eq!(
        cidr_errors(&cidrpool(|s| s.per_node_exclusions = vec![idx(0, 256)])),
        ["spec.perNodeExclusions[0].endIndex: 256 is larger than the largest index 255 (2^8 - 1)"]
    );
    // IPv6 /64 prefixes: the largest index is clamped to int32.
    let v6 = |end| {
        cidr_errors(&cidrpool(|s| {
            s.cidr = "2001:db8::/48".into();
            s.per_node_network_prefix = 64;
            s.per_node_exclusions = vec![idx(0, end)];
        }))
    };
    assert!(v6(2147483647).is_empty());
    let big = ip_errors(&ippool("p", |s| {
        s.subnet = "2001:db8::/64".into();
        s.gateway = String::new();
        s.per_node_block_size = 1 << 40;
        s.per_node_exclusions = vec![idx(0, 1 << 31)];
    }));
    assert_eq!(big, ["spec.perNodeExclusions[0].endIndex: 2147483648 is larger than 2147483647 (int32)"]);
    assert_eq!(
        v6(2147483648),
        ["spec.perNodeExclusions[0].endIndex: 2147483648 is larger than 2147483647 (int32)"]
    );
}

fn selector(op: &str, values: &[&str]) -> Option<NodeSelector> {
    Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: vec![NodeSelectorRequirement {
                key: "role".into(),
                operator: op.into(),
                values: values.iter().map(|v| v.to_string()).collect(),
            }],
            match_fields: vec![],
        }],
    })
}

#[test]
fn node_selector_rules_are_checked_for_both_kinds() {
    assert!(ip_errors(&ippool("p", |s| s.node_selector = selector("In", &["gpu"]))).is_empty());
    assert_eq!(
        ip_errors(&ippool("p", |s| s.node_selector = selector("In", &[]))),
        [
            "spec.nodeSelector.nodeSelectorTerms[0].matchExpressions[0].values: must be set when operator is In"
        ]
    );
    assert_eq!(
        cidr_errors(&cidrpool(|s| s.node_selector = selector("Exists", &["x"]))),
        [
            "spec.nodeSelector.nodeSelectorTerms[0].matchExpressions[0].values: must be empty when operator is \
         Exists"
        ]
    );
}

#[test]
fn route_rules() {
    let route = |d: &str| Route { dst: d.into() };
    assert!(
        ip_errors(&ippool("p", |s| {
            s.routes = vec![route("10.0.0.0/8")];
            s.default_gateway = true;
        }))
        .is_empty()
    );
    assert_eq!(
        ip_errors(&ippool("p", |s| {
            s.gateway = String::new();
            s.routes = vec![route("10.0.0.0/8")];
            s.default_gateway = true;
        })),
        [
            "spec.defaultGateway: needs spec.gateway: set it or drop defaultGateway",
            "spec.routes: need spec.gateway to route through: set it or drop routes",
        ]
    );
    assert_eq!(
        ip_errors(&ippool("p", |s| {
            s.routes = vec![route("nope"), route("2001:db8::/32"), route("0.0.0.0/0")];
            s.default_gateway = true;
        })),
        [
            "spec.routes[0].dst: nope is not a CIDR: use a form like 192.168.0.0/16",
            "spec.routes[1].dst: 2001:db8::/32 is not an IPv4 CIDR like the pool",
            "spec.routes[2].dst: 0.0.0.0/0 duplicates the default route that defaultGateway adds: drop one",
        ]
    );
    assert!(ip_errors(&ippool("p", |s| s.routes = vec![route("0.0.0.0/0")])).is_empty());
    assert_eq!(
        cidr_errors(&cidrpool(|s| {
            s.gateway_index = None;
            s.default_gateway = true;
        })),
        ["spec.defaultGateway: needs spec.gatewayIndex: set it or drop defaultGateway"]
    );
}

#[test]
fn cidr_checks_stop_early() {
    let bad_name_and_cidr = CidrPool {
        metadata: ObjectMeta::named("-x"),
        ..cidrpool(|s| {
            s.cidr = "10.10.0.1/16".into();
            s.exclusions = vec![ex("1.1.1.1", "1.1.1.2")];
            s.node_selector = selector("In", &[]);
        })
    };
    let errs = cidr_errors(&bad_name_and_cidr);
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert_eq!(errs[1], "spec.cidr: 10.10.0.1/16 has host bits set: use 10.10.0.0/16");
    assert!(errs[2].starts_with("spec.nodeSelector"));
    assert_eq!(
        cidr_errors(&cidrpool(|s| s.cidr = "10.10.0.0".into())),
        ["spec.cidr: 10.10.0.0 is not a CIDR: use a form like 192.168.0.0/16"]
    );
    assert_eq!(
        cidr_errors(&cidrpool(|s| s.cidr = String::new())),
        ["spec.cidr: is required: set a CIDR such as 192.168.0.0/16"]
    );
    assert_eq!(
        cidr_errors(&cidrpool(|s| {
            s.gateway_index = Some(-1);
            s.exclusions = vec![ex("1.1.1.1", "1.1.1.2")];
        })),
        ["spec.gatewayIndex: -1 must not be negative"]
    );
    assert_eq!(
        cidr_errors(&cidrpool(|s| s.gateway_index = Some(1 << 31))),
        ["spec.gatewayIndex: 2147483648 is larger than 2147483647 (int32)"]
    );
    for p in [0, -4, 15, 33] {
        assert_eq!(
            cidr_errors(&cidrpool(|s| s.per_node_network_prefix = p)),
            [format!("spec.perNodeNetworkPrefix: {p} must be between 16 (the cidr's length) and 32")]
        );
    }
    assert!(cidr_errors(&cidrpool(|s| s.per_node_network_prefix = 16)).is_empty());
    assert!(
        cidr_errors(&cidrpool(|s| {
            s.per_node_network_prefix = 32;
            s.gateway_index = Some(0);
        }))
        .is_empty()
    );
}

#[test]
fn gateway_index_must_fit_the_first_prefix() {
    assert_eq!(
        cidr_errors(&cidrpool(|s| s.gateway_index = Some(255))),
        ["spec.gatewayIndex: 255 is outside the node prefix 10.10.0.0/24: use 1 to 254"]
    );
    assert_eq!(
        cidr_errors(&cidrpool(|s| s.gateway_index = Some(0))),
        ["spec.gatewayIndex: 0 is outside the node prefix 10.10.0.0/24: use 1 to 254"]
    );
    assert_eq!(
        cidr_errors(&cidrpool(|s| {
            s.per_node_network_prefix = 31;
            s.gateway_index = Some(2);
        })),
        ["spec.gatewayIndex: 2 is outside the node prefix 10.10.0.0/31: use 0 to 1"]
    );
    assert!(cidr_errors(&cidrpool(|s| s.gateway_index = Some(254))).is_empty());
}

#[test]
fn static_allocation_rules() {
    let st = |n: &str, p: &str, g: &str| StaticAllocation {
        node_name: n.into(),
        prefix: p.into(),
        gateway: g.into(),
    };
    let v = validate_cidr_pool(&cidrpool(|s| {
        s.static_allocations = vec![st("a", "10.10.1.0/24", "10.10.1.7"), st("", "10.10.2.0/24", "")]
    }))
    .expect("valid");
    assert_eq!(v.static_allocations[1].node_name, None);
    assert_eq!(
        cidr_errors(&cidrpool(|s| {
            s.static_allocations = vec![
                st("a", "10.10.1.0/24", ""),
                st("a", "10.10.1.0/24", ""),
                st("b", "10.10.3.1/24", ""),
                st("c", "10.11.0.0/24", ""),
                st("d", "10.10.4.0/25", ""),
                st("e", "", ""),
                st("f", "10.10.5.0/24", "10.10.6.1"),
                st("g", "10.10.7.0/24", "x"),
            ]
        })),
        [
            "spec.staticAllocations[1].nodeName: a already has a static allocation in entry 0: keep one",
            "spec.staticAllocations[1].prefix: 10.10.1.0/24 is already allocated by entry 0: keep one",
            "spec.staticAllocations[2].prefix: 10.10.3.1/24 has host bits set: use 10.10.3.0/24",
            "spec.staticAllocations[3].prefix: 10.11.0.0/24 is not inside the cidr 10.10.0.0/16",
            "spec.staticAllocations[4].prefix: 10.10.4.0/25 must be a /24 (perNodeNetworkPrefix)",
            "spec.staticAllocations[5].prefix: is required: set a CIDR such as 192.168.0.0/16",
            "spec.staticAllocations[6].gateway: 10.10.6.1 is not inside the prefix 10.10.5.0/24",
            "spec.staticAllocations[7].gateway: x is not an IP address",
        ]
    );
}

#[test]
fn a_message_lists_at_most_max_shown_errors() {
    let bad = |n: usize| {
        ippool("blue", |s: &mut IpPoolSpec| {
            s.exclusions =
                (0..n).map(|_| ExcludeRange { start_ip: "x".into(), end_ip: "192.168.0.5".into() }).collect()
        })
    };
    let e = validate_ip_pool(&bad(MAX_SHOWN_ERRORS)).expect_err("invalid");
    assert_eq!(e.errors.len(), MAX_SHOWN_ERRORS);
    assert!(!e.to_string().contains("more"), "{e}");
    let e = validate_ip_pool(&bad(1000)).expect_err("invalid");
    assert_eq!(e.errors.len(), 1000, "every error is kept for callers that count them");
    let text = e.to_string();
    assert_eq!(text.matches("is not an IP address").count(), MAX_SHOWN_ERRORS);
    assert!(text.ends_with(&format!("; and {} more", 1000 - MAX_SHOWN_ERRORS)), "{text}");
}
