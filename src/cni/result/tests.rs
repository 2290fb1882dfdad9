//! The result layout per version: every field, each shape, and the edge cases of the
//! down-conversion (dual stack, two pools of one family, routes per family, no gateway, no
//! address). Expected values are written out as libcni prints them.

use super::*;
use crate::api::PoolType;
use crate::cni::version::{SUPPORTED, Version};

fn net(s: &str) -> IpNet {
    s.parse().expect("test CIDR")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn alloc(pool: &str, addr: &str, gw: Option<&str>, routes: &[&str]) -> Allocation {
    Allocation {
        pool: pool.into(),
        pool_type: PoolType::IpPool,
        ip: net(addr),
        gateway: gw.map(ip),
        routes: routes.iter().map(|r| net(r)).collect(),
    }
}

fn render_v(v: &str, allocations: &[Allocation]) -> Value {
    let shape = Version::parse(v).expect("version").result_shape();
    render(v, shape, &IpamResult::from_allocations(allocations)).expect("renders")
}

/// 10.254.1.4/24 via .1 with two routes; fd10:cc::4/120 via ::1 with one route.
fn dual_stack() -> Vec<Allocation> {
    vec![
        alloc("pool4", "10.254.1.4/24", Some("10.254.1.1"), &["0.0.0.0/0", "10.200.0.0/16"]),
        alloc("pool6", "fd10:cc::4/120", Some("fd10:cc::1"), &["::/0"]),
    ]
}

#[test]
fn from_allocations_keeps_order_and_routes_only_via_a_gateway() {
    let got = IpamResult::from_allocations(&[
        alloc("a", "10.0.0.5/24", None, &["10.9.0.0/16"]),
        alloc("b", "10.1.0.5/24", Some("10.1.0.1"), &["0.0.0.0/0", "10.8.0.0/16"]),
    ]);
    assert_eq!(
        got,
        IpamResult {
            ips: vec![
                IpConfig { address: net("10.0.0.5/24"), gateway: None },
                IpConfig { address: net("10.1.0.5/24"), gateway: Some(ip("10.1.0.1")) },
            ],
            routes: vec![
                Route { dst: net("0.0.0.0/0"), gw: Some(ip("10.1.0.1")) },
                Route { dst: net("10.8.0.0/16"), gw: Some(ip("10.1.0.1")) },
            ],
        },
        "a pool without a gateway contributes no route (as the reference)"
    );
    assert_eq!(IpamResult::from_allocations(&[]), IpamResult::default());
}

#[test]
fn dual_stack_in_every_version() {
    for v in ["1.0.0", "1.1.0"] {
        assert_eq!(
            render_v(v, &dual_stack()),
            json!({"cniVersion": v,
                "ips": [{"address":"10.254.1.4/24","gateway":"10.254.1.1"},
                        {"address":"fd10:cc::4/120","gateway":"fd10:cc::1"}],
                "routes": [{"dst":"0.0.0.0/0","gw":"10.254.1.1"},{"dst":"10.200.0.0/16","gw":"10.254.1.1"},
                           {"dst":"::/0","gw":"fd10:cc::1"}]}),
            "{v}: no version, no dns, no interfaces"
        );
    }
    for v in ["0.3.0", "0.3.1", "0.4.0"] {
        assert_eq!(
            render_v(v, &dual_stack()),
            json!({"cniVersion": v,
                "ips": [{"version":"4","address":"10.254.1.4/24","gateway":"10.254.1.1"},
                        {"version":"6","address":"fd10:cc::4/120","gateway":"fd10:cc::1"}],
                "routes": [{"dst":"0.0.0.0/0","gw":"10.254.1.1"},{"dst":"10.200.0.0/16","gw":"10.254.1.1"},
                           {"dst":"::/0","gw":"fd10:cc::1"}],
                "dns": {}}),
            "{v}"
        );
    }
    for v in ["0.1.0", "0.2.0"] {
        assert_eq!(
            render_v(v, &dual_stack()),
            json!({"cniVersion": v,
                "ip4": {"ip":"10.254.1.4/24","gateway":"10.254.1.1",
                        "routes":[{"dst":"0.0.0.0/0","gw":"10.254.1.1"},{"dst":"10.200.0.0/16","gw":"10.254.1.1"}]},
                "ip6": {"ip":"fd10:cc::4/120","gateway":"fd10:cc::1","routes":[{"dst":"::/0","gw":"fd10:cc::1"}]},
                "dns": {}}),
            "{v}: routes under their family"
        );
    }
}

#[test]
fn the_version_string_is_echoed_as_sent() {
    for v in SUPPORTED {
        let s = v.to_string();
        assert_eq!(render_v(&s, &dual_stack())["cniVersion"], s.as_str());
    }
}

#[test]
fn single_stack_v4_and_v6() {
    let v4 = [alloc("p", "192.168.0.2/16", Some("192.168.0.1"), &[])];
    assert_eq!(
        render_v("0.2.0", &v4),
        json!({"cniVersion":"0.2.0","ip4":{"ip":"192.168.0.2/16","gateway":"192.168.0.1"},"dns":{}}),
        "no ip6 key, no routes key"
    );
    assert_eq!(
        render_v("0.3.1", &v4),
        json!({"cniVersion":"0.3.1","ips":[{"version":"4","address":"192.168.0.2/16","gateway":"192.168.0.1"}],
               "dns":{}})
    );
    assert_eq!(
        render_v("1.0.0", &v4),
        json!({"cniVersion":"1.0.0","ips":[{"address":"192.168.0.2/16","gateway":"192.168.0.1"}]})
    );
    let v6 = [alloc("p", "2001:db8::a/64", Some("2001:db8::1"), &["2001:db8:1::/48"])];
    assert_eq!(
        render_v("0.1.0", &v6),
        json!({"cniVersion":"0.1.0",
               "ip6":{"ip":"2001:db8::a/64","gateway":"2001:db8::1","routes":[{"dst":"2001:db8:1::/48","gw":"2001:db8::1"}]},
               "dns":{}})
    );
    assert_eq!(
        render_v("0.4.0", &v6),
        json!({"cniVersion":"0.4.0","ips":[{"version":"6","address":"2001:db8::a/64","gateway":"2001:db8::1"}],
               "routes":[{"dst":"2001:db8:1::/48","gw":"2001:db8::1"}],"dns":{}})
    );
}

#[test]
fn gateways_absent() {
    // allocateDefaultGateway pods and pools without a gateway: no gateway, no routes anywhere.
    let allocations = [alloc("p", "10.3.0.1/24", None, &[]), alloc("q", "fd00::1/64", None, &[])];
    assert_eq!(
        render_v("0.2.0", &allocations),
        json!({"cniVersion":"0.2.0","ip4":{"ip":"10.3.0.1/24"},"ip6":{"ip":"fd00::1/64"},"dns":{}})
    );
    assert_eq!(
        render_v("0.3.0", &allocations),
        json!({"cniVersion":"0.3.0","ips":[{"version":"4","address":"10.3.0.1/24"},
                                           {"version":"6","address":"fd00::1/64"}],"dns":{}})
    );
    assert_eq!(
        render_v("1.1.0", &allocations),
        json!({"cniVersion":"1.1.0","ips":[{"address":"10.3.0.1/24"},{"address":"fd00::1/64"}]})
    );
    // one family with a gateway and routes, the other without
    let mixed =
        [alloc("p", "10.3.0.5/24", Some("10.3.0.1"), &["0.0.0.0/0"]), alloc("q", "fd00::5/64", None, &[])];
    assert_eq!(
        render_v("0.2.0", &mixed),
        json!({"cniVersion":"0.2.0",
               "ip4":{"ip":"10.3.0.5/24","gateway":"10.3.0.1","routes":[{"dst":"0.0.0.0/0","gw":"10.3.0.1"}]},
               "ip6":{"ip":"fd00::5/64"},"dns":{}})
    );
}

#[test]
fn two_pools_of_one_family() {
    // Two IPv4 pools: 0.3+ keep both addresses; 0.1/0.2 keep the first address, and both
    // pools' routes hang under ip4, each with its own pool's gateway (libcni keys routes by
    // family, not by address).
    let allocations = [
        alloc("a", "10.1.0.2/24", Some("10.1.0.1"), &["10.50.0.0/16"]),
        alloc("b", "10.2.0.2/24", Some("10.2.0.1"), &["0.0.0.0/0"]),
    ];
    assert_eq!(
        render_v("0.2.0", &allocations),
        json!({"cniVersion":"0.2.0",
               "ip4":{"ip":"10.1.0.2/24","gateway":"10.1.0.1",
                      "routes":[{"dst":"10.50.0.0/16","gw":"10.1.0.1"},{"dst":"0.0.0.0/0","gw":"10.2.0.1"}]},
               "dns":{}})
    );
    assert_eq!(
        render_v("0.4.0", &allocations),
        json!({"cniVersion":"0.4.0",
               "ips":[{"version":"4","address":"10.1.0.2/24","gateway":"10.1.0.1"},
                      {"version":"4","address":"10.2.0.2/24","gateway":"10.2.0.1"}],
               "routes":[{"dst":"10.50.0.0/16","gw":"10.1.0.1"},{"dst":"0.0.0.0/0","gw":"10.2.0.1"}],
               "dns":{}})
    );
    // the same with IPv6, the first address without a gateway: ip6 has none either, but the
    // second pool's route is still kept
    let allocations =
        [alloc("a", "fd01::2/64", None, &[]), alloc("b", "fd02::2/64", Some("fd02::1"), &["fd99::/16"])];
    assert_eq!(
        render_v("0.1.0", &allocations),
        json!({"cniVersion":"0.1.0","ip6":{"ip":"fd01::2/64","routes":[{"dst":"fd99::/16","gw":"fd02::1"}]},
               "dns":{}})
    );
}

#[test]
fn per_family_drops_routes_of_a_family_without_address_and_keeps_routes_without_gw() {
    let result = IpamResult {
        ips: vec![IpConfig { address: net("10.0.0.5/24"), gateway: None }],
        routes: vec![
            Route { dst: net("::/0"), gw: Some(ip("fd00::1")) },
            Route { dst: net("10.7.0.0/16"), gw: None },
        ],
    };
    assert_eq!(
        render("0.2.0", ResultShape::PerFamily, &result).expect("renders"),
        json!({"cniVersion":"0.2.0","ip4":{"ip":"10.0.0.5/24","routes":[{"dst":"10.7.0.0/16"}]},"dns":{}})
    );
    assert_eq!(
        render("1.0.0", ResultShape::Ips, &result).expect("renders"),
        json!({"cniVersion":"1.0.0","ips":[{"address":"10.0.0.5/24"}],
               "routes":[{"dst":"::/0","gw":"fd00::1"},{"dst":"10.7.0.0/16"}]})
    );
}

#[test]
fn no_address() {
    let empty = IpamResult::default();
    let e = render("0.2.0", ResultShape::PerFamily, &empty).expect_err("0.2.0 needs an address");
    assert_eq!(e, ConvertError::NoAddress { cni_version: "0.2.0".into() });
    assert_eq!(
        e.to_string(),
        "a cniVersion \"0.2.0\" result needs an IPv4 or IPv6 address and this one has none; \
         the daemon answered without addresses"
    );
    // routes alone do not make an address
    let routes_only = IpamResult { ips: vec![], routes: vec![Route { dst: net("0.0.0.0/0"), gw: None }] };
    assert!(render("0.1.0", ResultShape::PerFamily, &routes_only).is_err());
    // the list shapes leave the empty list out, as libcni's omitempty does
    assert_eq!(
        render("0.4.0", ResultShape::VersionedIps, &empty).expect("renders"),
        json!({"cniVersion":"0.4.0","dns":{}})
    );
    assert_eq!(render("1.0.0", ResultShape::Ips, &empty).expect("renders"), json!({"cniVersion":"1.0.0"}));
}

#[test]
fn ipv4_mapped_addresses_stay_ipv6() {
    let allocations = [alloc("p", "::ffff:10.0.0.5/120", None, &[])];
    assert_eq!(render_v("0.4.0", &allocations)["ips"][0]["version"], "6");
    let v = render_v("0.2.0", &allocations);
    assert!(v.get("ip4").is_none() && v["ip6"]["ip"] == "::ffff:10.0.0.5/120", "{v}");
}

/// Reads a rendered result back into the 1.x form the way libcni up-converts it
/// (`convertFrom02x`: ip4 then ip6, routes of ip4 then of ip6; `convertFrom04x`: as is).
fn read_back(v: &Value) -> IpamResult {
    let ip_config = |address: &Value, gateway: &Value| IpConfig {
        address: net(address.as_str().expect("address string")),
        gateway: gateway.as_str().map(ip),
    };
    let routes_of = |list: &Value| -> Vec<Route> {
        list.as_array()
            .map(|l| {
                l.iter()
                    .map(|r| Route {
                        dst: net(r["dst"].as_str().expect("dst")),
                        gw: r["gw"].as_str().map(ip),
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = IpamResult::default();
    if v.get("ips").is_some() || v.get("ip4").is_none() && v.get("ip6").is_none() {
        for e in v["ips"].as_array().into_iter().flatten() {
            out.ips.push(ip_config(&e["address"], &e["gateway"]));
        }
        out.routes = routes_of(&v["routes"]);
    } else {
        for key in ["ip4", "ip6"] {
            if let Some(f) = v.get(key) {
                out.ips.push(ip_config(&f["ip"], &f["gateway"]));
                out.routes.extend(routes_of(&f["routes"]));
            }
        }
    }
    out
}

#[test]
fn every_small_result_in_every_version_reads_back_as_libcni_would() {
    // Every combination of up to three allocations (v4 or v6, with or without a gateway, with
    // zero, one or two routes) in every supported version. 1.x and 0.3/0.4 read back
    // unchanged; 0.1/0.2 read back as the first address of each family (v4 first) with the
    // routes of each family that has one, v4 routes first, in their order.
    let kinds: Vec<Allocation> = vec![
        alloc("a", "10.0.0.5/24", Some("10.0.0.1"), &["0.0.0.0/0"]),
        alloc("b", "10.1.0.5/24", None, &[]),
        alloc("c", "fd00::5/64", Some("fd00::1"), &["::/0", "fd99::/16"]),
        alloc("d", "fd01::5/64", None, &[]),
        alloc("e", "10.2.0.5/24", Some("10.2.0.1"), &["10.60.0.0/16", "10.61.0.0/16"]),
    ];
    let mut inputs: Vec<Vec<Allocation>> = vec![vec![]];
    for a in &kinds {
        inputs.push(vec![a.clone()]);
        for b in &kinds {
            inputs.push(vec![a.clone(), b.clone()]);
            for c in &kinds {
                inputs.push(vec![a.clone(), b.clone(), c.clone()]);
            }
        }
    }
    for allocations in &inputs {
        let result = IpamResult::from_allocations(allocations);
        for v in SUPPORTED {
            let s = v.to_string();
            let shape = v.result_shape();
            let rendered = render(&s, shape, &result);
            let expected = match shape {
                ResultShape::Ips | ResultShape::VersionedIps => result.clone(),
                ResultShape::PerFamily => {
                    let first =
                        |v4: bool| result.ips.iter().find(|i| i.address.addr().is_ipv4() == v4).cloned();
                    let (ip4, ip6) = (first(true), first(false));
                    if ip4.is_none() && ip6.is_none() {
                        assert!(rendered.is_err(), "{s} {allocations:?}");
                        continue;
                    }
                    let family = |v4: bool| {
                        result.routes.iter().filter(move |r| r.dst.addr().is_ipv4() == v4).cloned()
                    };
                    let mut routes = Vec::new();
                    if ip4.is_some() {
                        routes.extend(family(true));
                    }
                    if ip6.is_some() {
                        routes.extend(family(false));
                    }
                    IpamResult { ips: ip4.into_iter().chain(ip6).collect(), routes }
                }
            };
            let rendered = rendered.expect("renders");
            assert_eq!(read_back(&rendered), expected, "{s}: {rendered}");
            assert_eq!(rendered["cniVersion"], s.as_str());
            assert_eq!(rendered.get("dns").is_some(), shape != ResultShape::Ips, "{s}: {rendered}");
            assert!(rendered.get("interfaces").is_none(), "an IPAM result has no interfaces");
            for e in rendered["ips"].as_array().into_iter().flatten() {
                assert!(e.get("interface").is_none());
                assert_eq!(e.get("version").is_some(), shape == ResultShape::VersionedIps, "{s}: {e}");
            }
        }
    }
}
