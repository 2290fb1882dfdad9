//! The CNI success result an IPAM plugin prints, per spec version (CHECK's reading of
//! `prevResult` is in `config::params`).
//!
//! ```text
//! 0.3.1, 0.4.0: {"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.0.0.5/24","gateway":"10.0.0.1"}],
//!                "routes":[{"dst":"0.0.0.0/0","gw":"10.0.0.1"}]}
//! 1.0.0, 1.1.0: {"cniVersion":"1.0.0","ips":[{"address":"10.0.0.5/24","gateway":"10.0.0.1"}],
//!                "routes":[{"dst":"0.0.0.0/0","gw":"10.0.0.1"}]}
//! ```
//!
//! Owns: the abbreviated IPAM result shape: no `interfaces`, no `ips[].interface`, no `dns`
//! (the reference returns none), routes with `gw` = that allocation's gateway, never the 1.1.0
//! route extras (we have none to give). Must not: decide addresses.

use serde_json::{Map, Value, json};

use super::version::Version;
use crate::protocol::Allocation;

/// Renders the result for `version`, echoing `cni_version` exactly as the request sent it.
pub fn render(cni_version: &str, version: Version, allocations: &[Allocation]) -> Value {
    let mut ips = Vec::new();
    let mut routes = Vec::new();
    for a in allocations {
        let mut ip = Map::new();
        if version.ips_carry_version() {
            ip.insert("version".into(), json!(if a.ip.addr().is_ipv4() { "4" } else { "6" }));
        }
        ip.insert("address".into(), json!(a.ip.to_string()));
        if let Some(gw) = a.gateway {
            ip.insert("gateway".into(), json!(gw.to_string()));
        }
        ips.push(Value::Object(ip));
        for dst in &a.routes {
            let mut route = Map::new();
            route.insert("dst".into(), json!(dst.to_string()));
            if let Some(gw) = a.gateway {
                route.insert("gw".into(), json!(gw.to_string()));
            }
            routes.push(Value::Object(route));
        }
    }
    let mut out = Map::new();
    out.insert("cniVersion".into(), json!(cni_version));
    out.insert("ips".into(), Value::Array(ips));
    if !routes.is_empty() {
        out.insert("routes".into(), Value::Array(routes));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::PoolType;

    fn dual_stack() -> Vec<Allocation> {
        vec![
            Allocation {
                pool: "pool4".into(),
                pool_type: PoolType::IpPool,
                ip: "10.254.1.4/24".parse().expect("net"),
                gateway: Some("10.254.1.1".parse().expect("gw")),
                routes: vec!["0.0.0.0/0".parse().expect("dst"), "10.200.0.0/16".parse().expect("dst")],
            },
            Allocation {
                pool: "pool6".into(),
                pool_type: PoolType::IpPool,
                ip: "fd10:cc::4/120".parse().expect("net"),
                gateway: None,
                routes: vec![],
            },
        ]
    }

    #[test]
    fn old_versions_carry_ip_version() {
        for v in ["0.3.1", "0.4.0"] {
            let got = render(v, Version::parse(v).expect("v"), &dual_stack());
            assert_eq!(
                got,
                json!({"cniVersion": v,
                    "ips": [{"version":"4","address":"10.254.1.4/24","gateway":"10.254.1.1"},
                            {"version":"6","address":"fd10:cc::4/120"}],
                    "routes": [{"dst":"0.0.0.0/0","gw":"10.254.1.1"},{"dst":"10.200.0.0/16","gw":"10.254.1.1"}]})
            );
        }
    }

    #[test]
    fn one_x_has_no_ip_version() {
        for v in ["1.0.0", "1.1.0"] {
            let got = render(v, Version::parse(v).expect("v"), &dual_stack());
            assert_eq!(
                got,
                json!({"cniVersion": v,
                    "ips": [{"address":"10.254.1.4/24","gateway":"10.254.1.1"},{"address":"fd10:cc::4/120"}],
                    "routes": [{"dst":"0.0.0.0/0","gw":"10.254.1.1"},{"dst":"10.200.0.0/16","gw":"10.254.1.1"}]})
            );
            assert!(got.get("interfaces").is_none() && got.get("dns").is_none());
        }
    }

    #[test]
    fn no_routes_key_without_routes() {
        let got = render("1.0.0", Version::new(1, 0, 0), &dual_stack()[1..]);
        assert_eq!(got, json!({"cniVersion":"1.0.0","ips":[{"address":"fd10:cc::4/120"}]}));
    }
}
