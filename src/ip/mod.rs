//! Pure address math for IPv4 and IPv6: addresses as `u128` offsets, inclusive ranges, range
//! merging, subnet carving, gateway indexes and host counts.
//!
//! Owns: every arithmetic on addresses the planners and the allocator need. Must not: touch
//! files, sockets or clocks, or build a collection whose size depends on a range's size (an IPv6
//! /64 must cost the same as an IPv4 /30).

use std::cmp::Ordering;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Address family of an address or network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    pub fn of_net(net: &IpNet) -> Family {
        Family::of(net.addr())
    }

    /// Number of bits of an address of this family.
    pub fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    /// Largest address value of this family as a `u128`.
    pub fn max_value(self) -> u128 {
        match self {
            Family::V4 => u32::MAX as u128,
            Family::V6 => u128::MAX,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// The address as an unsigned integer (IPv4 in the low 32 bits).
pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The address of `family` with value `v`; `None` when `v` does not fit the family.
pub fn from_u128(v: u128, family: Family) -> Option<IpAddr> {
    match family {
        Family::V4 => u32::try_from(v).ok().map(|x| IpAddr::V4(Ipv4Addr::from(x))),
        Family::V6 => Some(IpAddr::V6(Ipv6Addr::from(v))),
    }
}

/// `ip + n`, or `None` past the end of the family's address space.
pub fn add(ip: IpAddr, n: u128) -> Option<IpAddr> {
    to_u128(ip).checked_add(n).and_then(|v| from_u128(v, Family::of(ip)))
}

/// `ip - n`, or `None` below the family's first address.
pub fn sub(ip: IpAddr, n: u128) -> Option<IpAddr> {
    to_u128(ip).checked_sub(n).and_then(|v| from_u128(v, Family::of(ip)))
}

/// Number of steps from `from` to `to` (`to - from`); `None` if `to < from` or the families differ.
pub fn distance(from: IpAddr, to: IpAddr) -> Option<u128> {
    if Family::of(from) != Family::of(to) {
        return None;
    }
    to_u128(to).checked_sub(to_u128(from))
}

/// Orders addresses of one family numerically; IPv4 sorts before IPv6.
pub fn cmp(a: IpAddr, b: IpAddr) -> Ordering {
    (Family::of(a), to_u128(a)).cmp(&(Family::of(b), to_u128(b)))
}

/// An inclusive range of addresses of one family, `start <= end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpRange {
    start: IpAddr,
    end: IpAddr,
}

impl IpRange {
    /// `None` when the families differ or `end < start`.
    pub fn new(start: IpAddr, end: IpAddr) -> Option<IpRange> {
        distance(start, end).map(|_| IpRange { start, end })
    }

    /// The range of every address of `net`, network and broadcast included.
    pub fn of_net(net: &IpNet) -> IpRange {
        IpRange { start: net.network(), end: net.broadcast() }
    }

    pub fn start(&self) -> IpAddr {
        self.start
    }

    pub fn end(&self) -> IpAddr {
        self.end
    }

    pub fn family(&self) -> Family {
        Family::of(self.start)
    }

    /// Number of addresses, saturating at `u128::MAX` for the whole IPv6 space.
    pub fn len(&self) -> u128 {
        (to_u128(self.end) - to_u128(self.start)).saturating_add(1)
    }

    /// Never true: a range holds at least one address. Present for clippy's `len` convention.
    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        Family::of(ip) == self.family()
            && to_u128(self.start) <= to_u128(ip)
            && to_u128(ip) <= to_u128(self.end)
    }

    /// True when every address of `other` is in `self`.
    pub fn covers(&self, other: &IpRange) -> bool {
        self.contains(other.start) && self.contains(other.end)
    }

    /// The common part of two ranges, if any.
    pub fn intersect(&self, other: &IpRange) -> Option<IpRange> {
        if self.family() != other.family() {
            return None;
        }
        let s = to_u128(self.start).max(to_u128(other.start));
        let e = to_u128(self.end).min(to_u128(other.end));
        if s > e {
            return None;
        }
        let f = self.family();
        Some(IpRange { start: from_u128(s, f)?, end: from_u128(e, f)? })
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// Sorts ranges and joins those that overlap or touch (`.10-.20` and `.21-.30` become
/// `.10-.30`). Ranges of different families never join; IPv4 sorts first.
pub fn merge(ranges: impl IntoIterator<Item = IpRange>) -> Vec<IpRange> {
    let mut v: Vec<IpRange> = ranges.into_iter().collect();
    v.sort_by(|a, b| cmp(a.start, b.start).then(cmp(a.end, b.end)));
    let mut out: Vec<IpRange> = Vec::with_capacity(v.len());
    for r in v {
        if let Some(last) = out.last_mut()
            && last.family() == r.family()
            && to_u128(r.start) <= to_u128(last.end).saturating_add(1)
        {
            if to_u128(r.end) > to_u128(last.end) {
                last.end = r.end;
            }
            continue;
        }
        out.push(r);
    }
    out
}

/// Clamps every range to `bounds`, drops those outside it, and merges the rest.
pub fn clamp_and_merge(ranges: impl IntoIterator<Item = IpRange>, bounds: &IpRange) -> Vec<IpRange> {
    merge(ranges.into_iter().filter_map(|r| r.intersect(bounds)))
}

/// True when `merged` (output of [`merge`]) leaves no address of `r` uncovered.
pub fn fully_covered(merged: &[IpRange], r: &IpRange) -> bool {
    merged.iter().any(|m| m.covers(r))
}

/// Number of addresses of `r` that lie in `merged` (output of [`merge`]), saturating.
pub fn covered_count(merged: &[IpRange], r: &IpRange) -> u128 {
    merged.iter().filter_map(|m| m.intersect(r)).fold(0u128, |acc, x| acc.saturating_add(x.len()))
}

/// The merged range of `merged` that contains `ip`, if any (binary search).
pub fn find_containing(merged: &[IpRange], ip: IpAddr) -> Option<&IpRange> {
    let i = merged.partition_point(|m| cmp(m.end, ip) == Ordering::Less);
    merged.get(i).filter(|m| m.contains(ip))
}

/// True for the small prefixes where every address is usable: /31, /32, /127, /128.
pub fn is_point_to_point(net: &IpNet) -> bool {
    net.max_prefix_len() - net.prefix_len() <= 1
}

/// Offset of the first address the planners and allocator may use: 0 for /31, /32, /127 and
/// /128, else 1 (the network address is never handed out).
pub fn first_usable_offset(net: &IpNet) -> u128 {
    if is_point_to_point(net) { 0 } else { 1 }
}

/// The last address a node may use: broadcast - 1 for IPv4 wider than /31, otherwise the last
/// address of the network (IPv6 has no broadcast).
pub fn last_ip(net: &IpNet) -> IpAddr {
    let b = net.broadcast();
    match net {
        IpNet::V4(_) if !is_point_to_point(net) => sub(b, 1).unwrap_or(b),
        _ => b,
    }
}

/// True when `ip` is the IPv4 broadcast address of `net` (never for /31, /32 or IPv6).
pub fn is_broadcast(ip: IpAddr, net: &IpNet) -> bool {
    matches!(net, IpNet::V4(_)) && !is_point_to_point(net) && ip == net.broadcast()
}

/// Number of host addresses of a prefix length in a family: IPv4 2^h - 2, IPv6 2^h - 1,
/// 2 for /31 and /127, 1 for /32 and /128 (saturating for IPv6 /0).
pub fn host_count(family: Family, prefix_len: u8) -> u128 {
    let h = u32::from(family.bits().saturating_sub(prefix_len));
    match h {
        0 => 1,
        1 => 2,
        _ => {
            let total = 1u128.checked_shl(h).unwrap_or(0).wrapping_sub(1); // 2^h - 1 (h = 128 wraps to MAX)
            match family {
                Family::V4 => total - 1,
                Family::V6 => total,
            }
        }
    }
}

/// The gateway at `index` of `net` (upstream GetGatewayForSubnet): for /31, /32, /127 and /128
/// the index runs from 0 to count - 1; otherwise from 1 to the host count. `None` outside.
pub fn gateway_for_subnet(net: &IpNet, index: i64) -> Option<IpAddr> {
    let count = host_count(Family::of_net(net), net.prefix_len());
    let idx = u128::try_from(index).ok()?;
    let ok = if is_point_to_point(net) { idx < count } else { idx >= 1 && idx <= count };
    if !ok {
        return None;
    }
    add(net.network(), idx)
}

/// Number of `/prefix_len` subnets in `net`, saturating; 0 when `prefix_len` is shorter than
/// the network's own prefix or longer than the family allows.
pub fn subnet_count(net: &IpNet, prefix_len: u8) -> u128 {
    if prefix_len < net.prefix_len() || prefix_len > net.max_prefix_len() {
        return 0;
    }
    1u128.checked_shl(u32::from(prefix_len - net.prefix_len())).unwrap_or(u128::MAX)
}

/// The `index`-th `/prefix_len` subnet of `net` (0-based), if it exists.
pub fn subnet_at(net: &IpNet, prefix_len: u8, index: u128) -> Option<IpNet> {
    if index >= subnet_count(net, prefix_len) {
        return None;
    }
    let step_bits = u32::from(net.max_prefix_len() - prefix_len);
    let step = 1u128.checked_shl(step_bits).unwrap_or(0);
    let start = add(net.network(), index.checked_mul(step)?)?;
    IpNet::new(start, prefix_len).ok()
}

/// The index of `sub` among the `/sub.prefix_len()` subnets of `net`, when `sub` is one of them.
pub fn subnet_index(net: &IpNet, sub: &IpNet) -> Option<u128> {
    if sub.prefix_len() < net.prefix_len() || !net.contains(sub) || sub.network() != sub.addr() {
        return None;
    }
    let step_bits = u32::from(sub.max_prefix_len() - sub.prefix_len());
    distance(net.network(), sub.network()).map(|d| d.checked_shr(step_bits).unwrap_or(0))
}

/// Yields the `/prefix_len` subnets of a network in order, without materialising them.
#[derive(Debug, Clone)]
pub struct SubnetGenerator {
    net: IpNet,
    prefix_len: u8,
    next: u128,
    count: u128,
}

impl SubnetGenerator {
    /// Empty when `prefix_len` is shorter than the network's prefix or too long for the family.
    pub fn new(net: IpNet, prefix_len: u8) -> SubnetGenerator {
        let net = net.trunc();
        SubnetGenerator { net, prefix_len, next: 0, count: subnet_count(&net, prefix_len) }
    }

    /// Skips ahead so that the next subnet yielded is the one at `index`.
    pub fn seek(&mut self, index: u128) {
        self.next = index;
    }
}

impl Iterator for SubnetGenerator {
    type Item = IpNet;

    fn next(&mut self) -> Option<IpNet> {
        if self.next >= self.count {
            return None;
        }
        let s = subnet_at(&self.net, self.prefix_len, self.next);
        self.next = self.next.saturating_add(1);
        if self.next == u128::MAX {
            self.count = 0; // the saturated ::/0 by /128 case: stop rather than wrap
        }
        s
    }
}

#[cfg(test)]
mod tests;
