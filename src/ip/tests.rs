//! Tests of the address math of both families: bounds, ranges and merging, coverage, last
//! address and broadcast, host counts, gateway indexes, subnet carving.
//!
//! Owns: those tests. Must not: be compiled outside `cfg(test)`.

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}
fn net(s: &str) -> IpNet {
    s.parse().expect("test network")
}
fn r(a: &str, b: &str) -> IpRange {
    IpRange::new(ip(a), ip(b)).expect("test range")
}

#[test]
fn add_sub_and_bounds() {
    assert_eq!(add(ip("10.0.0.255"), 1), Some(ip("10.0.1.0")));
    assert_eq!(add(ip("255.255.255.255"), 1), None);
    assert_eq!(sub(ip("0.0.0.0"), 1), None);
    assert_eq!(add(ip("::ffff"), 1), Some(ip("::1:0")));
    assert_eq!(add(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), 1), None);
    assert_eq!(distance(ip("10.0.0.1"), ip("10.0.0.5")), Some(4));
    assert_eq!(distance(ip("10.0.0.5"), ip("10.0.0.1")), None);
    assert_eq!(distance(ip("10.0.0.5"), ip("::1")), None);
}

#[test]
fn range_basics() {
    assert!(IpRange::new(ip("10.0.0.5"), ip("10.0.0.4")).is_none());
    assert!(IpRange::new(ip("10.0.0.5"), ip("::5")).is_none());
    let a = r("10.0.0.10", "10.0.0.20");
    assert_eq!(a.len(), 11);
    assert!(a.contains(ip("10.0.0.10")) && a.contains(ip("10.0.0.20")));
    assert!(!a.contains(ip("10.0.0.21")) && !a.contains(ip("::a")));
    assert_eq!(a.intersect(&r("10.0.0.15", "10.0.0.30")), Some(r("10.0.0.15", "10.0.0.20")));
    assert_eq!(a.intersect(&r("10.0.0.21", "10.0.0.30")), None);
    assert_eq!(IpRange::of_net(&net("::/0")).len(), u128::MAX);
}

// Worked example 33: MergeExcludeRanges.
#[test]
fn merge_joins_overlapping_and_adjacent() {
    assert_eq!(
        merge([r("10.0.0.10", "10.0.0.20"), r("10.0.0.21", "10.0.0.30")]),
        vec![r("10.0.0.10", "10.0.0.30")]
    );
    assert_eq!(
        merge([r("10.0.0.10", "10.0.0.20"), r("10.0.0.20", "10.0.0.30")]),
        vec![r("10.0.0.10", "10.0.0.30")]
    );
    assert_eq!(
        merge([r("10.0.0.30", "10.0.0.50"), r("10.0.0.10", "10.0.0.100")]),
        vec![r("10.0.0.10", "10.0.0.100")]
    );
    assert_eq!(
        merge([r("10.0.0.50", "10.0.0.60"), r("10.0.0.1", "10.0.0.2")]),
        vec![r("10.0.0.1", "10.0.0.2"), r("10.0.0.50", "10.0.0.60")]
    );
    assert_eq!(
        merge([r("::1", "::5"), r("10.0.0.1", "10.0.0.2"), r("::6", "::9")]),
        vec![r("10.0.0.1", "10.0.0.2"), r("::1", "::9")]
    );
    let all = r("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    assert_eq!(merge([all, all]), vec![all]);
}

#[test]
fn coverage_queries() {
    let m = merge([r("10.0.0.1", "10.0.0.5"), r("10.0.0.4", "10.0.0.10"), r("10.0.0.20", "10.0.0.30")]);
    assert!(fully_covered(&m, &r("10.0.0.1", "10.0.0.10")));
    assert!(!fully_covered(&m, &r("10.0.0.1", "10.0.0.20")));
    assert_eq!(covered_count(&m, &r("10.0.0.8", "10.0.0.25")), 3 + 6);
    assert_eq!(find_containing(&m, ip("10.0.0.25")), Some(&r("10.0.0.20", "10.0.0.30")));
    assert_eq!(find_containing(&m, ip("10.0.0.15")), None);
    assert_eq!(find_containing(&m, ip("10.0.0.31")), None);
    let c = clamp_and_merge([r("10.0.0.0", "10.0.0.15")], &r("10.0.0.11", "10.0.0.20"));
    assert_eq!(c, vec![r("10.0.0.11", "10.0.0.15")]);
}

// Worked example 32: LastIP and IsBroadcast.
#[test]
fn last_ip_and_broadcast() {
    assert_eq!(last_ip(&net("192.168.1.0/31")), ip("192.168.1.1"));
    assert_eq!(last_ip(&net("192.168.1.0/24")), ip("192.168.1.254"));
    assert_eq!(last_ip(&net("192.168.1.10/32")), ip("192.168.1.10"));
    assert_eq!(last_ip(&net("2002:0:0:1234::/64")), ip("2002:0:0:1234:ffff:ffff:ffff:ffff"));
    assert!(is_broadcast(ip("192.168.0.255"), &net("192.168.0.0/24")));
    assert!(!is_broadcast(ip("192.168.0.1"), &net("192.168.0.0/31")));
    assert!(!is_broadcast(ip("192.168.0.1"), &net("192.168.0.1/32")));
    assert!(!is_broadcast(ip("::ffff"), &net("::/112")));
}

// Worked example 30: host counts.
#[test]
fn host_counts() {
    assert_eq!(host_count(Family::V4, 24), 254);
    assert_eq!(host_count(Family::V4, 25), 126);
    assert_eq!(host_count(Family::V4, 16), 65534);
    assert_eq!(host_count(Family::V4, 31), 2);
    assert_eq!(host_count(Family::V4, 32), 1);
    assert_eq!(host_count(Family::V4, 0), (1u128 << 32) - 2);
    assert_eq!(host_count(Family::V6, 120), 255);
    assert_eq!(host_count(Family::V6, 96), 4294967295);
    assert_eq!(host_count(Family::V6, 127), 2);
    assert_eq!(host_count(Family::V6, 128), 1);
    assert_eq!(host_count(Family::V6, 0), u128::MAX);
}

// Worked example 29: GetGatewayForSubnet.
#[test]
fn gateway_indexes() {
    let g = |n: &str, i: i64| gateway_for_subnet(&net(n), i).map(|a| a.to_string());
    let s = |x: &str| Some(x.to_string());
    assert_eq!(g("192.168.1.0/24", 1), s("192.168.1.1"));
    assert_eq!(g("192.168.1.0/24", 33), s("192.168.1.33"));
    assert_eq!(g("192.168.1.0/24", 254), s("192.168.1.254"));
    assert_eq!(g("192.168.1.0/24", 0), None);
    assert_eq!(g("192.168.1.0/24", 255), None);
    assert_eq!(g("192.168.1.0/24", -1), None);
    assert_eq!(g("192.168.1.100/32", 0), s("192.168.1.100"));
    assert_eq!(g("192.168.1.100/32", 1), None);
    assert_eq!(g("192.168.1.0/31", 0), s("192.168.1.0"));
    assert_eq!(g("192.168.1.0/31", 1), s("192.168.1.1"));
    assert_eq!(g("192.168.1.0/31", 2), None);
    assert_eq!(g("2001:db8:3333:4444::/120", 1), s("2001:db8:3333:4444::1"));
    assert_eq!(g("2001:db8:3333:4444::/120", 10), s("2001:db8:3333:4444::a"));
    assert_eq!(g("2001:db8:3333:4444::/120", 255), s("2001:db8:3333:4444::ff"));
    assert_eq!(g("2001:db8:3333:4444::/120", 0), None);
    assert_eq!(g("2001:db8:3333:4444::/120", 256), None);
    assert_eq!(g("2001:db8::/127", 0), s("2001:db8::"));
    assert_eq!(g("2001:db8::/127", 1), s("2001:db8::1"));
    assert_eq!(g("2001:db8::/127", 2), None);
}

// Worked example 31: the subnet generator.
#[test]
fn subnet_generator() {
    let got: Vec<String> = SubnetGenerator::new(net("192.168.4.0/23"), 25).map(|n| n.to_string()).collect();
    assert_eq!(got, ["192.168.4.0/25", "192.168.4.128/25", "192.168.5.0/25", "192.168.5.128/25"]);
    let got: Vec<String> = SubnetGenerator::new(net("192.168.0.0/31"), 32).map(|n| n.to_string()).collect();
    assert_eq!(got, ["192.168.0.0/32", "192.168.0.1/32"]);
    let got: Vec<String> =
        SubnetGenerator::new(net("2002:0:0:1234::/64"), 124).take(3).map(|n| n.to_string()).collect();
    assert_eq!(got, ["2002:0:0:1234::/124", "2002:0:0:1234::10/124", "2002:0:0:1234::20/124"]);
    let got: Vec<String> = SubnetGenerator::new(net("::/0"), 127).take(3).map(|n| n.to_string()).collect();
    assert_eq!(got, ["::/127", "::2/127", "::4/127"]);
    assert_eq!(SubnetGenerator::new(net("192.168.0.0/24"), 23).next(), None);
    let mut g = SubnetGenerator::new(net("::/0"), 128);
    g.seek(u128::MAX - 1);
    assert_eq!(g.next().map(|n| n.to_string()), Some("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/128".into()));
    assert_eq!(g.next(), None);
}

#[test]
fn subnet_index_round_trips() {
    let n = net("10.10.0.0/16");
    assert_eq!(subnet_index(&n, &net("10.10.3.0/24")), Some(3));
    assert_eq!(subnet_at(&n, 24, 3), Some(net("10.10.3.0/24")));
    assert_eq!(subnet_index(&n, &net("10.11.3.0/24")), None);
    assert_eq!(subnet_index(&n, &net("10.10.3.1/24")), None);
    assert_eq!(subnet_at(&n, 24, 256), None);
}
