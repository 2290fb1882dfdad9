//! Validation: raw IPPool/CIDRPool specs become [`ValidIpPool`]/[`ValidCidrPool`], or every
//! broken rule of the reference's validation (the `*_validate.go` files of
//! https://github.com/Mellanox/nvidia-k8s-ipam/tree/main/api/v1alpha1) is reported by JSON field
//! path.
//!
//! The error types are `error`'s ([`FieldError`], [`PoolErrors`]).
//!
//! Owns: the rules and their messages, and the validated pool types the planners and the node
//! take ("parse, don't validate": nothing downstream re-checks a spec). Must not: look at status
//! (entries are judged by the planners) or at nodes.

mod error;

use std::net::IpAddr;

use ipnet::IpNet;

use super::selector::validate_node_selector;
use super::{
    CidrPool, ExcludeIndexRange, ExcludeRange, IndexRange, IpPool, Route, StaticAllocation, ValidNodeSelector,
};
use crate::api::PoolType;
use crate::ip::{self, Family, IpRange};
pub use error::{FieldError, MAX_SHOWN_ERRORS, PoolErrors};

/// An IPPool whose spec passed every rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidIpPool {
    pub name: String,
    /// The network of `spec.subnet` (host bits tolerated and dropped, as the reference does).
    pub subnet: IpNet,
    /// `perNodeBlockSize`, 1 ..= host count of the subnet.
    pub block_size: u128,
    pub gateway: Option<IpAddr>,
    /// `spec.exclusions`, inside the subnet, merged (overlaps and adjacency joined).
    pub exclusions: Vec<IpRange>,
    /// `spec.perNodeExclusions`, every index <= block_size - 1, in spec order.
    pub per_node_exclusions: Vec<IndexRange>,
    pub node_selector: Option<ValidNodeSelector>,
    /// `spec.routes[].dst`, truncated to their networks.
    pub routes: Vec<IpNet>,
    pub default_gateway: bool,
}

/// A CIDRPool whose spec passed every rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidCidrPool {
    pub name: String,
    /// `spec.cidr` (no host bits).
    pub cidr: IpNet,
    /// `perNodeNetworkPrefix`, cidr length ..= 32/128.
    pub prefix_len: u8,
    /// `gatewayIndex`, known to give a gateway in every node prefix.
    pub gateway_index: Option<i64>,
    /// `spec.exclusions`, inside the cidr, merged.
    pub exclusions: Vec<IpRange>,
    /// `spec.perNodeExclusions`, counted from each prefix's network address.
    pub per_node_exclusions: Vec<IndexRange>,
    pub static_allocations: Vec<ValidStaticAllocation>,
    pub node_selector: Option<ValidNodeSelector>,
    pub routes: Vec<IpNet>,
    pub default_gateway: bool,
}

/// A validated `staticAllocations[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidStaticAllocation {
    /// `None` when the entry only reserves the prefix.
    pub node_name: Option<String>,
    pub prefix: IpNet,
    /// The entry's own gateway, if it names one.
    pub gateway: Option<IpAddr>,
}

impl ValidCidrPool {
    /// The gateway of `prefix` from `gatewayIndex` (`None` without an index).
    pub fn gateway_for(&self, prefix: &IpNet) -> Option<IpAddr> {
        self.gateway_index.and_then(|i| ip::gateway_for_subnet(prefix, i))
    }

    /// The static entry pinned to `node`, if any.
    pub fn static_for_node(&self, node: &str) -> Option<&ValidStaticAllocation> {
        self.static_allocations.iter().find(|s| s.node_name.as_deref() == Some(node))
    }

    /// The static entry (pinned or only reserving) holding `prefix`, if any.
    pub fn static_for_prefix(&self, prefix: &IpNet) -> Option<&ValidStaticAllocation> {
        self.static_allocations.iter().find(|s| s.prefix == *prefix)
    }
}

/// Checks every IPPool rule of the reference CRD; all broken rules are returned at once.
pub fn validate_ip_pool(pool: &IpPool) -> Result<ValidIpPool, PoolErrors> {
    let spec = &pool.spec;
    let mut errs = Vec::new();
    check_name(&pool.metadata.name, &mut errs);

    let subnet = parse_cidr(&spec.subnet, "spec.subnet", &mut errs).map(|n| n.trunc());

    let mut block_size = None;
    if spec.per_node_block_size < 1 {
        errs.push(FieldError::new("spec.perNodeBlockSize", "must be at least 1"));
    } else if let Some(net) = subnet {
        let b = u128::try_from(spec.per_node_block_size).unwrap_or(0);
        let count = ip::host_count(Family::of_net(&net), net.prefix_len());
        if b > count {
            errs.push(FieldError::new(
                "spec.perNodeBlockSize",
                format!("{b} is larger than the {count} addresses available in {net}: lower it"),
            ));
        } else {
            block_size = Some(b);
        }
    }

    let gateway = parse_ip_opt(&spec.gateway, "spec.gateway", &mut errs);
    if let (Some(gw), Some(net)) = (gateway, subnet)
        && !net.contains(&gw)
    {
        errs.push(FieldError::new("spec.gateway", format!("{gw} is not inside the subnet {net}")));
    }

    let exclusions = match subnet {
        Some(net) => check_exclusions(&spec.exclusions, &net, "subnet", &mut errs),
        None => Vec::new(),
    };
    let max_index = block_size.map(|b| (b - 1, "perNodeBlockSize - 1".to_string()));
    let per_node_exclusions = check_per_node(&spec.per_node_exclusions, max_index, &mut errs);
    let node_selector =
        spec.node_selector.as_ref().and_then(|s| validate_node_selector(s, "spec.nodeSelector", &mut errs));
    let routes = check_routes(
        &spec.routes,
        spec.default_gateway,
        subnet.map(|n| Family::of_net(&n)),
        gateway.is_some(),
        "spec.gateway",
        &mut errs,
    );

    match (subnet, block_size) {
        (Some(subnet), Some(block_size)) if errs.is_empty() => Ok(ValidIpPool {
            name: pool.metadata.name.clone(),
            subnet,
            block_size,
            gateway,
            exclusions,
            per_node_exclusions,
            node_selector,
            routes,
            default_gateway: spec.default_gateway,
        }),
        _ => Err(PoolErrors { pool_type: PoolType::IpPool, name: pool.metadata.name.clone(), errors: errs }),
    }
}

/// Checks every CIDRPool rule of the reference CRD. The CIDR checks stop early as the
/// reference's do: a bad cidr, host bits, a negative gatewayIndex or a prefix length out of
/// range is the only CIDR error reported (name, selector and route errors are still added).
pub fn validate_cidr_pool(pool: &CidrPool) -> Result<ValidCidrPool, PoolErrors> {
    let spec = &pool.spec;
    let mut errs = Vec::new();
    check_name(&pool.metadata.name, &mut errs);
    let cidr_part = check_cidr_part(pool, &mut errs);
    let node_selector =
        spec.node_selector.as_ref().and_then(|s| validate_node_selector(s, "spec.nodeSelector", &mut errs));
    let family = parse_cidr_quiet(&spec.cidr).map(|n| Family::of_net(&n));
    let routes = check_routes(
        &spec.routes,
        spec.default_gateway,
        family,
        spec.gateway_index.is_some(),
        "spec.gatewayIndex",
        &mut errs,
    );
    match cidr_part {
        Some(c) if errs.is_empty() => Ok(ValidCidrPool {
            name: pool.metadata.name.clone(),
            cidr: c.cidr,
            prefix_len: c.prefix_len,
            gateway_index: spec.gateway_index,
            exclusions: c.exclusions,
            per_node_exclusions: c.per_node_exclusions,
            static_allocations: c.static_allocations,
            node_selector,
            routes,
            default_gateway: spec.default_gateway,
        }),
        _ => {
            Err(PoolErrors { pool_type: PoolType::CidrPool, name: pool.metadata.name.clone(), errors: errs })
        }
    }
}

struct CidrPart {
    cidr: IpNet,
    prefix_len: u8,
    exclusions: Vec<IpRange>,
    per_node_exclusions: Vec<IndexRange>,
    static_allocations: Vec<ValidStaticAllocation>,
}

fn check_cidr_part(pool: &CidrPool, errs: &mut Vec<FieldError>) -> Option<CidrPart> {
    let spec = &pool.spec;
    let cidr = parse_cidr(&spec.cidr, "spec.cidr", errs)?;
    if cidr.trunc() != cidr {
        errs.push(FieldError::new("spec.cidr", format!("{cidr} has host bits set: use {}", cidr.trunc())));
        return None;
    }
    if let Some(i) = spec.gateway_index
        && i < 0
    {
        errs.push(FieldError::new("spec.gatewayIndex", format!("{i} must not be negative")));
        return None;
    }
    if let Some(i) = spec.gateway_index
        && i > i64::from(i32::MAX)
    {
        // int32 in the CRD: the API server would refuse it, so we do too.
        errs.push(FieldError::new("spec.gatewayIndex", format!("{i} is larger than {} (int32)", i32::MAX)));
        return None;
    }
    let bits = cidr.max_prefix_len();
    let lo = cidr.prefix_len().max(1);
    let p = spec.per_node_network_prefix;
    if p < i64::from(lo) || p > i64::from(bits) {
        errs.push(FieldError::new(
            "spec.perNodeNetworkPrefix",
            format!("{p} must be between {lo} (the cidr's length) and {bits}"),
        ));
        return None;
    }
    let prefix_len = u8::try_from(p).expect("checked to lie within 1..=128 above");
    let before = errs.len();
    if let Some(idx) = spec.gateway_index {
        let first = IpNet::new(cidr.network(), prefix_len).expect("prefix length checked above");
        if ip::gateway_for_subnet(&first, idx).is_none() {
            let count = ip::host_count(Family::of_net(&first), prefix_len);
            let (lo, hi) = if ip::is_point_to_point(&first) { (0, count - 1) } else { (1, count) };
            errs.push(FieldError::new(
                "spec.gatewayIndex",
                format!("{idx} is outside the node prefix {first}: use {lo} to {hi}"),
            ));
        }
    }
    let exclusions = check_exclusions(&spec.exclusions, &cidr, "cidr", errs);
    let host_bits = u32::from(bits - prefix_len);
    let max = 1u128.checked_shl(host_bits).map_or(u128::MAX, |n| n - 1).min(i32::MAX as u128);
    let per_node = check_per_node(&spec.per_node_exclusions, Some((max, format!("2^{host_bits} - 1"))), errs);
    let statics = check_statics(&spec.static_allocations, &cidr, prefix_len, errs);
    (errs.len() == before).then_some(CidrPart {
        cidr,
        prefix_len,
        exclusions,
        per_node_exclusions: per_node,
        static_allocations: statics,
    })
}

fn check_statics(
    list: &[StaticAllocation],
    cidr: &IpNet,
    prefix_len: u8,
    errs: &mut Vec<FieldError>,
) -> Vec<ValidStaticAllocation> {
    let mut out: Vec<ValidStaticAllocation> = Vec::new();
    for (i, s) in list.iter().enumerate() {
        let path = format!("spec.staticAllocations[{i}]");
        let before = errs.len();
        if !s.node_name.is_empty()
            && let Some(j) = list[..i].iter().position(|o| o.node_name == s.node_name)
        {
            errs.push(FieldError::new(
                format!("{path}.nodeName"),
                format!("{} already has a static allocation in entry {j}: keep one", s.node_name),
            ));
        }
        let Some(prefix) = parse_cidr(&s.prefix, &format!("{path}.prefix"), errs) else { continue };
        if prefix.trunc() != prefix {
            errs.push(FieldError::new(
                format!("{path}.prefix"),
                format!("{prefix} has host bits set: use {}", prefix.trunc()),
            ));
        } else if !cidr.contains(&prefix) {
            errs.push(FieldError::new(
                format!("{path}.prefix"),
                format!("{prefix} is not inside the cidr {cidr}"),
            ));
        } else if prefix.prefix_len() != prefix_len {
            errs.push(FieldError::new(
                format!("{path}.prefix"),
                format!("{prefix} must be a /{prefix_len} (perNodeNetworkPrefix)"),
            ));
        } else if let Some(j) = list[..i].iter().position(|o| o.prefix.parse::<IpNet>().ok() == Some(prefix))
        {
            errs.push(FieldError::new(
                format!("{path}.prefix"),
                format!("{prefix} is already allocated by entry {j}: keep one"),
            ));
        }
        let gateway = parse_ip_opt(&s.gateway, &format!("{path}.gateway"), errs);
        if let Some(gw) = gateway
            && !prefix.contains(&gw)
        {
            errs.push(FieldError::new(
                format!("{path}.gateway"),
                format!("{gw} is not inside the prefix {prefix}"),
            ));
        }
        if errs.len() == before {
            let node_name = (!s.node_name.is_empty()).then(|| s.node_name.clone());
            out.push(ValidStaticAllocation { node_name, prefix, gateway });
        }
    }
    out
}

/// `metadata.name` must be a CNI network name: `[A-Za-z0-9][A-Za-z0-9_.-]*`.
fn check_name(name: &str, errs: &mut Vec<FieldError>) {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        errs.push(FieldError::new(
            "metadata.name",
            format!(
                "{name:?} is not a valid CNI network name: start with a letter or digit, then use \
                 letters, digits, '_', '.' or '-'"
            ),
        ));
    }
}

fn parse_cidr_quiet(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>().ok()
}

fn parse_cidr(s: &str, field: &str, errs: &mut Vec<FieldError>) -> Option<IpNet> {
    if s.is_empty() {
        errs.push(FieldError::new(field, "is required: set a CIDR such as 192.168.0.0/16"));
        return None;
    }
    let n = parse_cidr_quiet(s);
    if n.is_none() {
        errs.push(FieldError::new(field, format!("{s} is not a CIDR: use a form like 192.168.0.0/16")));
    }
    n
}

fn parse_ip(s: &str, field: &str, errs: &mut Vec<FieldError>) -> Option<IpAddr> {
    if s.is_empty() {
        errs.push(FieldError::new(field, "is required: set an IP address"));
        return None;
    }
    let a = s.parse::<IpAddr>().ok();
    if a.is_none() {
        errs.push(FieldError::new(field, format!("{s} is not an IP address")));
    }
    a
}

fn parse_ip_opt(s: &str, field: &str, errs: &mut Vec<FieldError>) -> Option<IpAddr> {
    if s.is_empty() { None } else { parse_ip(s, field, errs) }
}

/// Each range's ends parse, lie in `net` and are ordered; the valid ones come back merged
/// (overlaps are allowed, as in the reference).
fn check_exclusions(
    list: &[ExcludeRange],
    net: &IpNet,
    what: &str,
    errs: &mut Vec<FieldError>,
) -> Vec<IpRange> {
    let mut ranges = Vec::new();
    for (i, e) in list.iter().enumerate() {
        let path = format!("spec.exclusions[{i}]");
        let mut end_of = |s: &str, f: &str| {
            let field = format!("{path}.{f}");
            let a = parse_ip(s, &field, errs)?;
            if !net.contains(&a) {
                errs.push(FieldError::new(field, format!("{a} is not inside the {what} {net}")));
                return None;
            }
            Some(a)
        };
        let start = end_of(&e.start_ip, "startIP");
        let end = end_of(&e.end_ip, "endIP");
        if let (Some(s), Some(t)) = (start, end) {
            match IpRange::new(s, t) {
                Some(r) => ranges.push(r),
                None => errs.push(FieldError::new(
                    format!("{path}.endIP"),
                    format!("{t} is before startIP {s}: swap them"),
                )),
            }
        }
    }
    ip::merge(ranges)
}

/// Indexes are >= 0, end >= start and, when the largest index is known, <= it.
fn check_per_node(
    list: &[ExcludeIndexRange],
    max: Option<(u128, String)>,
    errs: &mut Vec<FieldError>,
) -> Vec<IndexRange> {
    let mut out = Vec::new();
    for (i, e) in list.iter().enumerate() {
        let path = format!("spec.perNodeExclusions[{i}]");
        let before = errs.len();
        for (v, f) in [(e.start_index, "startIndex"), (e.end_index, "endIndex")] {
            if v < 0 {
                errs.push(FieldError::new(format!("{path}.{f}"), format!("{v} must not be negative")));
            } else if v > i64::from(i32::MAX) {
                errs.push(FieldError::new(
                    format!("{path}.{f}"),
                    format!("{v} is larger than {} (int32)", i32::MAX),
                ));
            } else if let Some((m, why)) = &max
                && v as u128 > *m
            {
                errs.push(FieldError::new(
                    format!("{path}.{f}"),
                    format!("{v} is larger than the largest index {m} ({why})"),
                ));
            }
        }
        if e.end_index < e.start_index {
            errs.push(FieldError::new(
                format!("{path}.endIndex"),
                format!("{} is less than startIndex {}: swap them", e.end_index, e.start_index),
            ));
        }
        if errs.len() == before {
            // Both are non-negative here.
            out.push(IndexRange { start: e.start_index as u128, end: e.end_index as u128 });
        }
    }
    out
}

/// Routes need a gateway (`gateway_field` names what provides it), share the pool's family and,
/// with defaultGateway, must not repeat the default route.
fn check_routes(
    routes: &[Route],
    default_gateway: bool,
    family: Option<Family>,
    has_gateway: bool,
    gateway_field: &str,
    errs: &mut Vec<FieldError>,
) -> Vec<IpNet> {
    if default_gateway && !has_gateway {
        errs.push(FieldError::new(
            "spec.defaultGateway",
            format!("needs {gateway_field}: set it or drop defaultGateway"),
        ));
    }
    if !routes.is_empty() && !has_gateway {
        errs.push(FieldError::new(
            "spec.routes",
            format!("need {gateway_field} to route through: set it or drop routes"),
        ));
    }
    let mut out = Vec::new();
    for (i, r) in routes.iter().enumerate() {
        let field = format!("spec.routes[{i}].dst");
        let Some(dst) = parse_cidr(&r.dst, &field, errs) else { continue };
        if let Some(f) = family
            && Family::of_net(&dst) != f
        {
            errs.push(FieldError::new(field, format!("{dst} is not an {f} CIDR like the pool")));
            continue;
        }
        if default_gateway && dst.prefix_len() == 0 {
            errs.push(FieldError::new(
                field,
                format!("{dst} duplicates the default route that defaultGateway adds: drop one"),
            ));
            continue;
        }
        out.push(dst.trunc());
    }
    out
}

#[cfg(test)]
mod tests;
