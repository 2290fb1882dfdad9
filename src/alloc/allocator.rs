//! The container-IP allocator of one pool on one node (a port of host-local's round robin, as
//! the reference uses it): which address an attachment gets, given the pool's [`NodePool`],
//! the pool's last reserved address and the addresses already reserved.
//!
//! Owns: candidate order (round robin after the last reserved address, wrapping once),
//! skipping the gateway and merged exclusions, static requests, `allocateIPWithIndex`,
//! `allocateDefaultGateway`, and the routes of the result. Must not: do I/O or keep state;
//! multi-pool all-or-nothing and persistence belong to the caller (`node`).
//!
//! Cost: the walk visits at most one address per existing reservation plus one jump per
//! exclusion range before it finds a free address or proves the pool full, so an IPv6 /64
//! costs what an IPv4 /30 does. No range is ever materialised.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::{NodePool, PoolKey};
use crate::ip::{self, Family, IpRange};

/// What the attachment asks of one pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// The next free address, round robin.
    Next,
    /// This exact address (static IP: exclusions do not apply, the cursor does not move).
    Static(IpAddr),
    /// `range.start + index` (`allocateIPWithIndex`), treated as a static address.
    Index(u32),
    /// The pool's gateway address itself (`allocateDefaultGateway`).
    Gateway,
}

/// Why no address could be chosen. Display says what the user can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocError {
    Exhausted {
        pool: PoolKey,
        range: IpRange,
    },
    /// A static address, index or the gateway is held by another attachment.
    Taken {
        pool: PoolKey,
        ip: IpAddr,
    },
    /// A static address outside the pool's subnet (or node prefix).
    OutsideSubnet {
        pool: PoolKey,
        ip: IpAddr,
        subnet: IpNet,
    },
    /// A static address that is the subnet's network (or, `broadcast`, broadcast) address.
    Unusable {
        pool: PoolKey,
        ip: IpAddr,
        subnet: IpNet,
        broadcast: bool,
    },
    IndexOutOfRange {
        pool: PoolKey,
        index: u32,
        range: IpRange,
    },
    /// A static address or index that lands on the gateway.
    IsGateway {
        pool: PoolKey,
        ip: IpAddr,
    },
    /// `allocateDefaultGateway` on a pool without a gateway.
    NoGateway {
        pool: PoolKey,
    },
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllocError::Exhausted { pool, range } => write!(
                f,
                "pool \"{pool}\": no free addresses in {range} on this node; release unused attachments or give the pool a larger perNodeBlockSize / perNodeNetworkPrefix"
            ),
            AllocError::Taken { pool, ip } => write!(
                f,
                "pool \"{pool}\": requested IP {ip} is already reserved by another attachment on this node; request another address, or release the attachment that holds it"
            ),
            AllocError::OutsideSubnet { pool, ip, subnet } => write!(
                f,
                "pool \"{pool}\": requested IP {ip} is outside the pool's subnet {subnet} on this node; request an address inside it"
            ),
            AllocError::Unusable { pool, ip, subnet, broadcast } => write!(
                f,
                "pool \"{pool}\": requested IP {ip} is the {} address of {subnet}; request a host address",
                if *broadcast { "broadcast" } else { "network" }
            ),
            AllocError::IndexOutOfRange { pool, index, range } => write!(
                f,
                "pool \"{pool}\": requested IP index {index} is outside of the node's range {range}; use an index from 0 to {}",
                range.len().saturating_sub(1)
            ),
            AllocError::IsGateway { pool, ip } => write!(
                f,
                "pool \"{pool}\": requested IP {ip} is the actual gateway, use the allocateDefaultGateway feature instead"
            ),
            AllocError::NoGateway { pool } => write!(
                f,
                "pool \"{pool}\": allocateDefaultGateway needs a gateway, but the pool has none; set spec.gateway (IPPool) or spec.gatewayIndex (CIDRPool)"
            ),
        }
    }
}

impl std::error::Error for AllocError {}

/// Chooses the address for `request` in `pool`. `last_reserved` is the pool's round-robin
/// cursor; `is_reserved` answers whether another attachment holds an address.
pub fn choose(
    pool: &NodePool,
    request: Request,
    last_reserved: Option<IpAddr>,
    is_reserved: impl Fn(IpAddr) -> bool,
) -> Result<IpAddr, AllocError> {
    let key = || pool.key.clone();
    let claim =
        |ip: IpAddr| if is_reserved(ip) { Err(AllocError::Taken { pool: key(), ip }) } else { Ok(ip) };
    match request {
        Request::Next => next_free(pool, last_reserved, &is_reserved),
        Request::Gateway => claim(pool.gateway.ok_or_else(|| AllocError::NoGateway { pool: key() })?),
        Request::Static(ip) => {
            if !pool.subnet.contains(&ip) {
                return Err(AllocError::OutsideSubnet { pool: key(), ip, subnet: pool.subnet });
            }
            let p2p = ip::is_point_to_point(&pool.subnet);
            if !p2p && ip == pool.subnet.network() {
                return Err(AllocError::Unusable { pool: key(), ip, subnet: pool.subnet, broadcast: false });
            }
            if !p2p && ip::is_broadcast(ip, &pool.subnet) {
                return Err(AllocError::Unusable { pool: key(), ip, subnet: pool.subnet, broadcast: true });
            }
            if Some(ip) == pool.gateway {
                return Err(AllocError::IsGateway { pool: key(), ip });
            }
            claim(ip)
        }
        Request::Index(index) => {
            let ip = ip::add(pool.range.start(), u128::from(index))
                .filter(|ip| pool.range.contains(*ip))
                .ok_or_else(|| AllocError::IndexOutOfRange { pool: key(), index, range: pool.range })?;
            if Some(ip) == pool.gateway {
                return Err(AllocError::IsGateway { pool: key(), ip });
            }
            claim(ip)
        }
    }
}

/// Round robin: the first free candidate after `last_reserved` (when it lies in the range),
/// wrapping to the range start once; candidates skip the gateway and the exclusions.
fn next_free(
    pool: &NodePool,
    last_reserved: Option<IpAddr>,
    is_reserved: &impl Fn(IpAddr) -> bool,
) -> Result<IpAddr, AllocError> {
    let family = pool.range.family();
    let start = ip::to_u128(pool.range.start());
    let end = ip::to_u128(pool.range.end());
    let first = match last_reserved {
        Some(l) if pool.range.contains(l) && ip::to_u128(l) < end => ip::to_u128(l) + 1,
        _ => start,
    };
    // Exclusions of the pool's family, as u128 spans, sorted and merged by construction.
    let excl: Vec<(u128, u128)> = pool
        .exclusions
        .iter()
        .filter(|r| r.family() == family)
        .map(|r| (ip::to_u128(r.start()), ip::to_u128(r.end())))
        .collect();
    let gateway = pool.gateway.filter(|g| Family::of(*g) == family).map(ip::to_u128);

    // Two passes: [first, end], then [start, first - 1].
    let passes = [Some((first, end)), (first > start).then(|| (start, first - 1))];
    for (lo, hi) in passes.into_iter().flatten() {
        let mut cur = lo;
        loop {
            let i = excl.partition_point(|&(_, e)| e < cur);
            if let Some(&(s, e)) = excl.get(i)
                && s <= cur
            {
                // Jump over the whole exclusion.
                match e.checked_add(1) {
                    Some(n) if n <= hi => {
                        cur = n;
                        continue;
                    }
                    _ => break,
                }
            }
            if Some(cur) != gateway {
                let addr =
                    ip::from_u128(cur, family).expect("cur lies inside the pool's range of this family");
                if !is_reserved(addr) {
                    return Ok(addr);
                }
            }
            if cur >= hi {
                break;
            }
            cur += 1;
        }
    }
    Err(AllocError::Exhausted { pool: pool.key.clone(), range: pool.range })
}

/// The routes of an allocation: `spec.routes` plus the default route with `defaultGateway`,
/// sorted by (address bytes, prefix length) and de-duplicated; none without a gateway.
pub fn routes(pool: &NodePool, gateway: Option<IpAddr>) -> Vec<IpNet> {
    if gateway.is_none() {
        return Vec::new();
    }
    let mut out: Vec<IpNet> = pool.routes.clone();
    if pool.default_gateway {
        out.push(
            match Family::of_net(&pool.subnet) {
                Family::V4 => IpNet::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
                Family::V6 => IpNet::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
            }
            .expect("prefix length 0 is valid"),
        );
    }
    out.sort_by(|a, b| ip::cmp(a.addr(), b.addr()).then(a.prefix_len().cmp(&b.prefix_len())));
    out.dedup();
    out
}

/// The address as the pod sees it (`ip/prefix-of-subnet`), its gateway and routes. A pod that
/// was given the gateway address itself gets neither gateway nor routes.
pub fn lease(pool: &NodePool, ip: IpAddr) -> (IpNet, Option<IpAddr>, Vec<IpNet>) {
    let addr = IpNet::new(ip, pool.subnet.prefix_len()).expect("the subnet's prefix length fits its family");
    let gateway = pool.gateway.filter(|g| *g != ip);
    (addr, gateway, routes(pool, gateway))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::api::PoolType;

    fn ipa(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn pool(subnet: &str, start: &str, end: &str, gw: Option<&str>) -> NodePool {
        NodePool {
            key: PoolKey::new(PoolType::IpPool, "p"),
            subnet: subnet.parse().expect("test subnet"),
            range: IpRange::new(ipa(start), ipa(end)).expect("test range"),
            gateway: gw.map(ipa),
            exclusions: Vec::new(),
            routes: Vec::new(),
            default_gateway: false,
        }
    }

    /// Allocates like the daemon does: choose, then record as reserved and as the cursor.
    struct Sim {
        pool: NodePool,
        held: HashSet<IpAddr>,
        last: Option<IpAddr>,
    }

    impl Sim {
        fn new(pool: NodePool) -> Sim {
            Sim { pool, held: HashSet::new(), last: None }
        }
        fn next(&mut self) -> Result<IpAddr, AllocError> {
            let ip = choose(&self.pool, Request::Next, self.last, |a| self.held.contains(&a))?;
            self.held.insert(ip);
            self.last = Some(ip);
            Ok(ip)
        }
        fn next_s(&mut self) -> String {
            self.next().map(|a| a.to_string()).unwrap_or_else(|e| format!("error: {e}"))
        }
    }

    // Worked example 40.
    #[test]
    fn fills_a_29_and_never_hands_out_broadcast() {
        let mut s = Sim::new(pool("192.168.1.0/29", "192.168.1.1", "192.168.1.6", Some("192.168.1.1")));
        let got: Vec<String> = (0..5).map(|_| s.next_s()).collect();
        assert_eq!(got, ["192.168.1.2", "192.168.1.3", "192.168.1.4", "192.168.1.5", "192.168.1.6"]);
        assert!(matches!(s.next(), Err(AllocError::Exhausted { .. })));
    }

    // Worked example 41.
    #[test]
    fn round_robin_after_last_reserved() {
        let mut s = Sim::new(pool("192.168.1.0/29", "192.168.1.1", "192.168.1.6", Some("192.168.1.1")));
        s.held.insert(ipa("192.168.1.6"));
        s.last = Some(ipa("192.168.1.6"));
        assert_eq!(s.next_s(), "192.168.1.2");
        assert_eq!(s.next_s(), "192.168.1.3");

        let mut s = Sim::new(pool("192.168.1.0/29", "192.168.1.1", "192.168.1.6", Some("192.168.1.1")));
        s.last = Some(ipa("192.168.1.3")); // .3 reserved, then released
        let got: Vec<String> = (0..5).map(|_| s.next_s()).collect();
        assert_eq!(got, ["192.168.1.4", "192.168.1.5", "192.168.1.6", "192.168.1.2", "192.168.1.3"]);
        assert!(s.next().is_err());
    }

    // Worked example 42.
    #[test]
    fn released_address_is_not_reused_at_once() {
        let mut s = Sim::new(pool("192.168.1.0/29", "192.168.1.1", "192.168.1.6", Some("192.168.1.1")));
        assert_eq!(s.next_s(), "192.168.1.2");
        s.held.clear();
        assert_eq!(s.next_s(), "192.168.1.3");
    }

    // Worked example 43 (single-range rows; host-local's table with gateway = network + 1).
    #[test]
    fn host_local_table() {
        let p29 = || pool("10.0.0.0/29", "10.0.0.1", "10.0.0.6", Some("10.0.0.1"));
        let case = |p: NodePool, last: Option<&str>, taken: &[&str]| -> String {
            let held: HashSet<IpAddr> = taken.iter().map(|t| ipa(t)).collect();
            choose(&p, Request::Next, last.map(ipa), |a| held.contains(&a))
                .map(|a| a.to_string())
                .unwrap_or_else(|e| e.to_string())
        };
        assert_eq!(case(p29(), None, &[]), "10.0.0.2");
        let v6 = pool(
            "2001:db8:1::/64",
            "2001:db8:1::1",
            "2001:db8:1::ffff:ffff:ffff:ffff",
            Some("2001:db8:1::1"),
        );
        assert_eq!(case(v6, None, &[]), "2001:db8:1::2");
        assert_eq!(
            case(pool("10.0.0.0/30", "10.0.0.1", "10.0.0.2", Some("10.0.0.1")), None, &[]),
            "10.0.0.2"
        );
        assert_eq!(case(p29(), None, &["10.0.0.2"]), "10.0.0.3");
        assert_eq!(case(p29(), Some("10.0.0.5"), &[]), "10.0.0.6");
        assert_eq!(case(p29(), Some("10.0.0.3"), &["10.0.0.4", "10.0.0.5"]), "10.0.0.6");
        assert_eq!(case(p29(), Some("10.0.0.5"), &["10.0.0.6"]), "10.0.0.2");
        assert_eq!(case(p29(), Some("10.0.0.128"), &["10.0.0.2"]), "10.0.0.3");
        assert_eq!(
            case(p29(), Some("10.0.0.3"), &["10.0.0.2", "10.0.0.4", "10.0.0.5", "10.0.0.6"]),
            "10.0.0.3"
        );
        assert_eq!(
            case(pool("10.0.2.0/30", "10.0.2.1", "10.0.2.2", Some("10.0.2.1")), Some("10.33.33.1"), &[]),
            "10.0.2.2"
        );
        let top = pool("255.255.255.0/24", "255.255.255.1", "255.255.255.254", Some("255.255.255.1"));
        assert_eq!(case(top, Some("255.255.255.255"), &[]), "255.255.255.2");
    }

    #[test]
    fn skips_merged_exclusions_in_one_jump() {
        let mut p = pool("10.0.0.0/24", "10.0.0.1", "10.0.0.254", Some("10.0.0.1"));
        p.exclusions = ip::merge([
            IpRange::new(ipa("10.0.0.2"), ipa("10.0.0.10")).expect("r"),
            IpRange::new(ipa("10.0.0.5"), ipa("10.0.0.20")).expect("r"),
        ]);
        let mut s = Sim::new(p);
        assert_eq!(s.next_s(), "10.0.0.21");
        // Exclusion reaching the range end, then wrap.
        let mut p = pool("10.0.0.0/29", "10.0.0.1", "10.0.0.6", None);
        p.exclusions = vec![IpRange::new(ipa("10.0.0.4"), ipa("10.0.0.6")).expect("r")];
        let mut s = Sim::new(p);
        s.last = Some(ipa("10.0.0.3"));
        assert_eq!(s.next_s(), "10.0.0.1");
        assert_eq!(s.next_s(), "10.0.0.2");
        assert_eq!(s.next_s(), "10.0.0.3");
        assert!(s.next().is_err());
    }

    #[test]
    fn whole_range_excluded_is_exhausted() {
        let mut p = pool("10.0.0.0/29", "10.0.0.1", "10.0.0.6", None);
        p.exclusions = vec![IpRange::new(ipa("10.0.0.0"), ipa("10.0.0.7")).expect("r")];
        assert!(matches!(choose(&p, Request::Next, None, |_| false), Err(AllocError::Exhausted { .. })));
    }

    #[test]
    fn point_to_point_and_single_address_ranges() {
        let mut s = Sim::new(pool("10.0.0.0/31", "10.0.0.0", "10.0.0.1", None));
        assert_eq!(s.next_s(), "10.0.0.0");
        assert_eq!(s.next_s(), "10.0.0.1");
        assert!(s.next().is_err());
        let mut s = Sim::new(pool("10.0.0.7/32", "10.0.0.7", "10.0.0.7", None));
        assert_eq!(s.next_s(), "10.0.0.7");
        assert!(s.next().is_err());
        let mut s = Sim::new(pool("::/0", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", None));
        s.last = Some(ipa("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
        assert_eq!(s.next_s(), "::");
    }

    #[test]
    fn huge_ipv6_range_near_full_block_is_cheap() {
        // 10,000 consecutive reservations at the start of a /64: the walk stops right after them.
        let p = pool("fd00::/64", "fd00::1", "fd00::ffff:ffff:ffff:ffff", Some("fd00::1"));
        let held: HashSet<IpAddr> =
            (2u128..10_002).map(|i| ip::add(ipa("fd00::"), i).expect("in range")).collect();
        let got = choose(&p, Request::Next, None, |a| held.contains(&a)).expect("free address");
        assert_eq!(got, ip::add(ipa("fd00::"), 10_002).expect("in range"));
    }

    #[test]
    fn static_requests() {
        let p = pool("192.168.0.0/16", "192.168.0.1", "192.168.0.4", Some("192.168.0.1"));
        let none = |_: IpAddr| false;
        // Inside the subnet but in another node's block: allowed, as in the reference.
        assert_eq!(choose(&p, Request::Static(ipa("192.168.7.7")), None, none), Ok(ipa("192.168.7.7")));
        assert!(matches!(
            choose(&p, Request::Static(ipa("10.10.10.10")), None, none),
            Err(AllocError::OutsideSubnet { .. })
        ));
        let e = choose(&p, Request::Static(ipa("192.168.255.255")), None, none).expect_err("broadcast");
        assert!(matches!(e, AllocError::Unusable { broadcast: true, .. }), "{e}");
        assert!(e.to_string().contains("192.168.255.255 is the broadcast address of 192.168.0.0/16"), "{e}");
        let e = choose(&p, Request::Static(ipa("192.168.0.0")), None, none).expect_err("network");
        assert!(e.to_string().contains("192.168.0.0 is the network address of 192.168.0.0/16"), "{e}");
        assert!(matches!(
            choose(&p, Request::Static(ipa("192.168.0.1")), None, none),
            Err(AllocError::IsGateway { .. })
        ));
        let taken = |a: IpAddr| a == ipa("192.168.0.3");
        assert!(matches!(
            choose(&p, Request::Static(ipa("192.168.0.3")), None, taken),
            Err(AllocError::Taken { .. })
        ));
    }

    // Worked example 49.
    #[test]
    fn allocate_ip_with_index() {
        let p = pool("192.168.0.0/16", "192.168.0.2", "192.168.0.254", Some("192.168.0.1"));
        assert_eq!(choose(&p, Request::Index(5), None, |_| false), Ok(ipa("192.168.0.7")));
        let e = choose(&p, Request::Index(253), None, |_| false).expect_err("outside");
        assert!(e.to_string().contains("requested IP index 253 is outside of the node's range"), "{e}");
        let p = pool("10.100.0.0/16", "10.100.0.1", "10.100.0.254", Some("10.100.0.5"));
        let e = choose(&p, Request::Index(4), None, |_| false).expect_err("gateway");
        assert!(
            e.to_string().contains("is the actual gateway, use the allocateDefaultGateway feature instead"),
            "{e}"
        );
    }

    #[test]
    fn allocate_default_gateway() {
        let p = pool("10.0.0.0/24", "10.0.0.1", "10.0.0.254", Some("10.0.0.1"));
        assert_eq!(choose(&p, Request::Gateway, None, |_| false), Ok(ipa("10.0.0.1")));
        let (addr, gw, routes) = lease(&p, ipa("10.0.0.1"));
        assert_eq!((addr.to_string(), gw, routes.len()), ("10.0.0.1/24".to_string(), None, 0));
        let p = pool("10.0.0.0/24", "10.0.0.1", "10.0.0.254", None);
        assert!(matches!(choose(&p, Request::Gateway, None, |_| false), Err(AllocError::NoGateway { .. })));
    }

    // Worked example 50: routes sorted and de-duplicated; none without gateway.
    #[test]
    fn routes_sorted_deduplicated() {
        let mut p = pool("192.168.0.0/16", "192.168.0.1", "192.168.0.4", Some("192.168.0.1"));
        p.routes = vec!["5.5.0.0/16".parse().expect("r"), "5.5.0.0/16".parse().expect("r")];
        p.default_gateway = true;
        let (_, gw, r) = lease(&p, ipa("192.168.0.2"));
        assert_eq!(gw, Some(ipa("192.168.0.1")));
        assert_eq!(r.iter().map(|n| n.to_string()).collect::<Vec<_>>(), ["0.0.0.0/0", "5.5.0.0/16"]);
        p.gateway = None;
        assert!(lease(&p, ipa("192.168.0.2")).2.is_empty());
    }
}
