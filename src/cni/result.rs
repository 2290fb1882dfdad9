//! The CNI success result an IPAM plugin prints: built once in the 1.x form from the daemon's
//! allocations, then laid out for the request's version exactly as libcni converts a 1.x result
//! (the reference builds a 1.x result and prints it with libcni's `PrintResult`).
//!
//! ```text
//! 1.0.0, 1.1.0:        {"cniVersion":"1.0.0","ips":[{"address":"10.0.0.5/24","gateway":"10.0.0.1"}],
//!                       "routes":[{"dst":"0.0.0.0/0","gw":"10.0.0.1"}]}
//! 0.3.0, 0.3.1, 0.4.0: {"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.0.0.5/24","gateway":"10.0.0.1"}],
//!                       "routes":[{"dst":"0.0.0.0/0","gw":"10.0.0.1"}],"dns":{}}
//! 0.1.0, 0.2.0:        {"cniVersion":"0.2.0","ip4":{"ip":"10.0.0.5/24","gateway":"10.0.0.1",
//!                       "routes":[{"dst":"0.0.0.0/0","gw":"10.0.0.1"}]},"dns":{}}
//! ```
//!
//! The conversions, as libcni's result types make them (`convertTo04x` in
//! https://github.com/containernetworking/cni/blob/main/pkg/types/100/types.go, `convertTo02x`
//! in https://github.com/containernetworking/cni/blob/main/pkg/types/040/types.go):
//! - to 0.3.x/0.4.0: each `ips` entry gains `version` from its address family; routes are kept
//!   as they are. `dns` is always printed (`{}` when empty: Go's `omitempty` never drops a
//!   struct), while 1.x drops an empty `dns`.
//! - to 0.1.0/0.2.0: `ip4` is the first IPv4 entry and `ip6` the first IPv6 entry; further
//!   addresses of a family are dropped (two pools of one family give one address). Every route
//!   hangs under the object of its destination's family, whichever allocation it came from, and
//!   is dropped when that family has no address. A result with no address cannot be converted.
//! - An empty `ips` or `routes` list is left out in every shape.
//!
//! An address's family is its own: an IPv4-mapped IPv6 address stays IPv6 (Go's `To4` would
//! call it IPv4 and print it as one, which no main plugin could use).
//!
//! Owns: the abbreviated IPAM result (no `interfaces`, no `ips[].interface`, no DNS values, no
//! 1.1.0 route extras: we have none to give) and its layout per version. Must not: decide
//! addresses, or do I/O (pure: exhaustively unit-tested in `result/tests.rs`).

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value, json};

use super::version::ResultShape;
use crate::protocol::Allocation;

/// A result in the 1.x form: what the reference hands to libcni.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpamResult {
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
}

/// One `ips` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    /// The address with its subnet's prefix length.
    pub address: IpNet,
    pub gateway: Option<IpAddr>,
}

/// One `routes` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
}

impl IpamResult {
    /// The result as the reference builds it from the daemon's answer: one `ips` entry per
    /// allocation, in the order of the pools; an allocation's routes go via its gateway, and
    /// only when it has one (a pod given the gateway address itself gets neither).
    pub fn from_allocations(allocations: &[Allocation]) -> IpamResult {
        let mut result = IpamResult::default();
        for a in allocations {
            result.ips.push(IpConfig { address: a.ip, gateway: a.gateway });
            if let Some(gw) = a.gateway {
                result.routes.extend(a.routes.iter().map(|&dst| Route { dst, gw: Some(gw) }));
            }
        }
        result
    }
}

/// Why a result cannot be printed in the requested version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConvertError {
    /// 0.1.0/0.2.0 results must carry `ip4` or `ip6` (libcni: "cannot convert: no valid IP
    /// addresses").
    NoAddress { cni_version: String },
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConvertError::NoAddress { cni_version } => write!(
                f,
                "a cniVersion {cni_version:?} result needs an IPv4 or IPv6 address and this one has none; \
                 the daemon answered without addresses"
            ),
        }
    }
}

impl std::error::Error for ConvertError {}

/// `result` laid out in `shape`, with `cniVersion` exactly as the request sent it.
pub fn render(cni_version: &str, shape: ResultShape, result: &IpamResult) -> Result<Value, ConvertError> {
    let mut out = Map::new();
    out.insert("cniVersion".into(), json!(cni_version));
    match shape {
        ResultShape::Ips | ResultShape::VersionedIps => {
            let versioned = shape == ResultShape::VersionedIps;
            let ips: Vec<Value> = result.ips.iter().map(|ip| ip_entry(ip, versioned)).collect();
            if !ips.is_empty() {
                out.insert("ips".into(), Value::Array(ips));
            }
            if !result.routes.is_empty() {
                out.insert("routes".into(), Value::Array(result.routes.iter().map(route).collect()));
            }
            if versioned {
                out.insert("dns".into(), json!({}));
            }
        }
        ResultShape::PerFamily => {
            let first = |v4: bool| result.ips.iter().find(|ip| ip.address.addr().is_ipv4() == v4);
            let (ip4, ip6) = (first(true), first(false));
            if ip4.is_none() && ip6.is_none() {
                return Err(ConvertError::NoAddress { cni_version: cni_version.to_string() });
            }
            for (key, ip, v4) in [("ip4", ip4, true), ("ip6", ip6, false)] {
                let Some(ip) = ip else { continue };
                let mut family = Map::new();
                family.insert("ip".into(), json!(ip.address.to_string()));
                if let Some(gw) = ip.gateway {
                    family.insert("gateway".into(), json!(gw.to_string()));
                }
                let routes: Vec<Value> =
                    result.routes.iter().filter(|r| r.dst.addr().is_ipv4() == v4).map(route).collect();
                if !routes.is_empty() {
                    family.insert("routes".into(), Value::Array(routes));
                }
                out.insert(key.into(), Value::Object(family));
            }
            out.insert("dns".into(), json!({}));
        }
    }
    Ok(Value::Object(out))
}

/// One `ips` entry; `versioned` adds `"version":"4"|"6"` (0.3.x, 0.4.0).
fn ip_entry(ip: &IpConfig, versioned: bool) -> Value {
    let mut entry = Map::new();
    if versioned {
        entry.insert("version".into(), json!(if ip.address.addr().is_ipv4() { "4" } else { "6" }));
    }
    entry.insert("address".into(), json!(ip.address.to_string()));
    if let Some(gw) = ip.gateway {
        entry.insert("gateway".into(), json!(gw.to_string()));
    }
    Value::Object(entry)
}

fn route(r: &Route) -> Value {
    let mut entry = Map::new();
    entry.insert("dst".into(), json!(r.dst.to_string()));
    if let Some(gw) = r.gw {
        entry.insert("gw".into(), json!(gw.to_string()));
    }
    Value::Object(entry)
}

#[cfg(test)]
mod tests;
