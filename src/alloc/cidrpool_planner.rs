//! The CIDRPool prefix planner (the reference's
//! https://github.com/Mellanox/nvidia-k8s-ipam/tree/main/pkg/ipam-controller/controllers/cidrpool) and
//! the status-entry check it shares with the node (`validateAllocation`).
//!
//! Reproduces the reference for valid specs: valid existing entries are kept, static
//! allocations beat dynamic ones, statics without a node only reserve their prefix, and new
//! nodes take prefixes from one generator pass starting at index 0 that skips kept, static and
//! fully excluded prefixes. Gateways come from `gatewayIndex`.
//!
//! Owns: [`plan_cidr_pool`], [`validate_allocation`], [`AllocationError`]. Must not: walk
//! addresses or list prefixes: runs of prefixes inside one exclusion are crossed by arithmetic.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::api::{CidrAllocation, ValidCidrPool};
use crate::ip::{self, Family, IpRange};

/// The planner's decision for one pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrPlan {
    /// The new `status.allocations`, sorted by node name.
    pub allocations: Vec<CidrAllocation>,
    /// Nodes that got no prefix (the reference's `NoFreePrefixes` events), sorted.
    pub unallocated: Vec<String>,
}

/// A status entry that passed [`validate_allocation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidCidrAllocation {
    pub prefix: IpNet,
    pub gateway: Option<IpAddr>,
}

/// Why a CIDRPool status entry is not usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocationError {
    /// The caller asked about an entry the status does not have.
    NoSuchEntry {
        index: usize,
    },
    EmptyNodeName,
    EmptyPrefix,
    BadPrefix {
        prefix: String,
    },
    HostBits {
        prefix: String,
    },
    BadGateway {
        gateway: String,
    },
    /// The node has a static allocation and this entry does not match it.
    NotTheStaticPrefix {
        node: String,
        expected: IpNet,
    },
    WrongGateway {
        prefix: IpNet,
        expected: Option<IpAddr>,
        got: Option<IpAddr>,
    },
    /// Another node's static allocation (or a reservation) holds the prefix.
    StaticOfAnotherNode {
        prefix: IpNet,
    },
    OutsideCidr {
        prefix: IpNet,
        cidr: IpNet,
        prefix_len: u8,
    },
    /// Another status entry shares the prefix, node or gateway; both are dropped.
    Conflict {
        node: String,
        other: usize,
    },
}

impl fmt::Display for AllocationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gw = |g: &Option<IpAddr>| g.map_or_else(|| "none".to_string(), |g| g.to_string());
        match self {
            AllocationError::NoSuchEntry { index } => write!(f, "status has no entry {index}"),
            AllocationError::EmptyNodeName => f.write_str("nodeName is empty"),
            AllocationError::EmptyPrefix => f.write_str("prefix is empty"),
            AllocationError::BadPrefix { prefix } => write!(f, "prefix {prefix} is not a CIDR"),
            AllocationError::HostBits { prefix } => write!(f, "prefix {prefix} has host bits set"),
            AllocationError::BadGateway { gateway } => write!(f, "gateway {gateway} is not an IP address"),
            AllocationError::NotTheStaticPrefix { node, expected } => {
                write!(f, "node {node} has the static prefix {expected}")
            }
            AllocationError::WrongGateway { prefix, expected, got } => {
                write!(f, "gateway {} of prefix {prefix} should be {}", gw(got), gw(expected))
            }
            AllocationError::StaticOfAnotherNode { prefix } => {
                write!(f, "prefix {prefix} is statically allocated to another node or reserved")
            }
            AllocationError::OutsideCidr { prefix, cidr, prefix_len } => {
                write!(f, "prefix {prefix} is not a /{prefix_len} of {cidr}")
            }
            AllocationError::Conflict { node, other } => {
                write!(f, "entry of node {node} shares its prefix, node or gateway with entry {other}")
            }
        }
    }
}

impl std::error::Error for AllocationError {}

/// The reference's `validateAllocation` for `entries[index]` (shared by the planner and the
/// node): the entry parses, matches its node's static allocation if there is one, else is a
/// prefix of the cidr with the computed gateway, and shares nothing with another entry.
pub fn validate_allocation(
    pool: &ValidCidrPool,
    entries: &[CidrAllocation],
    index: usize,
) -> Result<ValidCidrAllocation, AllocationError> {
    let e = entries.get(index).ok_or(AllocationError::NoSuchEntry { index })?;
    check_entry(pool, e, || find_conflict(entries, index))
}

/// The first other entry sharing `entries[index]`'s prefix, node or (non-empty) gateway.
fn find_conflict(entries: &[CidrAllocation], index: usize) -> Option<usize> {
    let e = &entries[index];
    entries.iter().enumerate().position(|(j, o)| {
        j != index
            && (o.prefix == e.prefix
                || o.node_name == e.node_name
                || (!e.gateway.is_empty() && o.gateway == e.gateway))
    })
}

/// How often each node, prefix and gateway occurs in a status: makes the conflict check O(1)
/// per entry when the planner validates a whole status (a linear scan each would be O(n^2)).
struct StatusCounts<'a> {
    nodes: HashMap<&'a str, usize>,
    prefixes: HashMap<&'a str, usize>,
    gateways: HashMap<&'a str, usize>,
}

impl<'a> StatusCounts<'a> {
    fn new(entries: &'a [CidrAllocation]) -> StatusCounts<'a> {
        let mut c =
            StatusCounts { nodes: HashMap::new(), prefixes: HashMap::new(), gateways: HashMap::new() };
        for e in entries {
            *c.nodes.entry(&e.node_name).or_default() += 1;
            *c.prefixes.entry(&e.prefix).or_default() += 1;
            if !e.gateway.is_empty() {
                *c.gateways.entry(&e.gateway).or_default() += 1;
            }
        }
        c
    }

    fn shared(&self, e: &CidrAllocation) -> bool {
        let many = |m: &HashMap<&str, usize>, k: &str| m.get(k).copied().unwrap_or(0) > 1;
        many(&self.nodes, &e.node_name)
            || many(&self.prefixes, &e.prefix)
            || (!e.gateway.is_empty() && many(&self.gateways, &e.gateway))
    }
}

fn check_entry(
    pool: &ValidCidrPool,
    e: &CidrAllocation,
    conflict: impl FnOnce() -> Option<usize>,
) -> Result<ValidCidrAllocation, AllocationError> {
    if e.node_name.is_empty() {
        return Err(AllocationError::EmptyNodeName);
    }
    if e.prefix.is_empty() {
        return Err(AllocationError::EmptyPrefix);
    }
    let prefix: IpNet =
        e.prefix.parse().map_err(|_| AllocationError::BadPrefix { prefix: e.prefix.clone() })?;
    if prefix.trunc() != prefix {
        return Err(AllocationError::HostBits { prefix: e.prefix.clone() });
    }
    let gateway = match e.gateway.as_str() {
        "" => None,
        g => Some(g.parse::<IpAddr>().map_err(|_| AllocationError::BadGateway { gateway: g.into() })?),
    };
    if let Some(st) = pool.static_for_node(&e.node_name) {
        if st.prefix != prefix {
            return Err(AllocationError::NotTheStaticPrefix {
                node: e.node_name.clone(),
                expected: st.prefix,
            });
        }
        let expected = st.gateway.or_else(|| pool.gateway_for(&prefix));
        if gateway != expected {
            return Err(AllocationError::WrongGateway { prefix, expected, got: gateway });
        }
        return Ok(ValidCidrAllocation { prefix, gateway }); // the reference stops here
    }
    if pool.static_for_prefix(&prefix).is_some() {
        return Err(AllocationError::StaticOfAnotherNode { prefix });
    }
    let inside = Family::of_net(&prefix) == Family::of_net(&pool.cidr)
        && prefix.prefix_len() == pool.prefix_len
        && pool.cidr.contains(&prefix);
    if !inside {
        return Err(AllocationError::OutsideCidr { prefix, cidr: pool.cidr, prefix_len: pool.prefix_len });
    }
    let expected = pool.gateway_for(&prefix);
    if gateway != expected {
        return Err(AllocationError::WrongGateway { prefix, expected, got: gateway });
    }
    if let Some(other) = conflict() {
        return Err(AllocationError::Conflict { node: e.node_name.clone(), other });
    }
    Ok(ValidCidrAllocation { prefix, gateway })
}

/// True when the pool exclusions plus the per-node index ranges (from the network address),
/// clamped to `[network, lastIP]` and merged, cover the whole prefix (reference
/// `fullyExcluded`).
pub fn prefix_fully_excluded(pool: &ValidCidrPool, prefix: &IpNet) -> bool {
    let bounds = usable_span(prefix);
    let per_node = pool.per_node_exclusions.iter().filter_map(|r| r.to_ip_range(prefix.network(), &bounds));
    let pool_part = pool.exclusions.iter().copied();
    ip::fully_covered(&ip::clamp_and_merge(pool_part.chain(per_node), &bounds), &bounds)
}

/// `[network, lastIP]` of a prefix: what a prefix's exclusion coverage is judged on.
fn usable_span(prefix: &IpNet) -> IpRange {
    IpRange::new(prefix.network(), ip::last_ip(prefix)).expect("lastIP is never below the network")
}

/// Plans the prefixes of `pool` for `nodes` (any order; duplicates ignored), keeping the valid
/// entries of `previous`. Planning the output again returns it unchanged.
pub fn plan_cidr_pool(pool: &ValidCidrPool, nodes: &[String], previous: &[CidrAllocation]) -> CidrPlan {
    let mut names: Vec<&str> = nodes.iter().map(String::as_str).collect();
    names.sort_unstable();
    names.dedup();
    let wanted: HashSet<&str> = names.iter().copied().collect();

    let counts = StatusCounts::new(previous);
    let mut keep: HashMap<String, ValidCidrAllocation> = HashMap::new();
    let mut taken: HashSet<IpNet> = HashSet::new();
    for (i, e) in previous.iter().enumerate() {
        if !wanted.contains(e.node_name.as_str()) || keep.contains_key(&e.node_name) {
            continue;
        }
        let conflict = || counts.shared(e).then(|| find_conflict(previous, i)).flatten();
        match check_entry(pool, e, conflict) {
            Ok(v) if !prefix_fully_excluded(pool, &v.prefix) => {
                taken.insert(v.prefix);
                keep.insert(e.node_name.clone(), v);
            }
            Ok(_) => {
                log::debug!("cidrpool {:?}: dropping fully excluded entry of {}", pool.name, e.node_name)
            }
            Err(why) => log::debug!("cidrpool {:?}: dropping entry {i}: {why}", pool.name),
        }
    }
    let statics: HashSet<IpNet> = pool.static_allocations.iter().map(|s| s.prefix).collect();

    let mut generator = Generator::new(pool);
    let mut unallocated = Vec::new();
    for node in names {
        if keep.contains_key(node) {
            continue;
        }
        let alloc = if let Some(st) = pool.static_for_node(node) {
            ValidCidrAllocation {
                prefix: st.prefix,
                gateway: st.gateway.or_else(|| pool.gateway_for(&st.prefix)),
            }
        } else {
            match generator.next_free(|p| taken.contains(p) || statics.contains(p)) {
                Some(p) => ValidCidrAllocation { prefix: p, gateway: pool.gateway_for(&p) },
                None => {
                    log::warn!("cidrpool {:?}: no free prefix for node {node}", pool.name);
                    unallocated.push(node.to_string());
                    continue;
                }
            }
        };
        taken.insert(alloc.prefix);
        keep.insert(node.to_string(), alloc);
    }

    let mut allocations: Vec<CidrAllocation> = keep
        .into_iter()
        .map(|(node_name, a)| CidrAllocation {
            node_name,
            prefix: a.prefix.to_string(),
            gateway: a.gateway.map(|g| g.to_string()).unwrap_or_default(),
        })
        .collect();
    allocations.sort_by(|a, b| a.node_name.cmp(&b.node_name));
    CidrPlan { allocations, unallocated }
}

/// The reference's one-pass subnet generator, with arithmetic skips over exclusions.
struct Generator<'a> {
    pool: &'a ValidCidrPool,
    next: u128,
    count: u128,
    /// True when the per-node exclusions alone cover every prefix.
    all_excluded: bool,
}

impl<'a> Generator<'a> {
    fn new(pool: &'a ValidCidrPool) -> Generator<'a> {
        let count = ip::subnet_count(&pool.cidr, pool.prefix_len);
        let all_excluded = ip::subnet_at(&pool.cidr, pool.prefix_len, 0).is_some_and(|p| {
            let bounds = usable_span(&p);
            let per_node =
                pool.per_node_exclusions.iter().filter_map(|r| r.to_ip_range(p.network(), &bounds));
            ip::fully_covered(&ip::merge(per_node), &bounds)
        });
        Generator { pool, next: 0, count, all_excluded }
    }

    /// The next prefix that is not `taken` and not fully excluded.
    fn next_free(&mut self, taken: impl Fn(&IpNet) -> bool) -> Option<IpNet> {
        if self.all_excluded {
            return None;
        }
        while self.next < self.count {
            let p = ip::subnet_at(&self.pool.cidr, self.pool.prefix_len, self.next)?;
            self.next = self.next.saturating_add(1);
            if taken(&p) {
                continue;
            }
            if prefix_fully_excluded(self.pool, &p) {
                self.skip_exclusion(&p);
                continue;
            }
            return Some(p);
        }
        None
    }

    /// After the fully excluded prefix `p`: when one merged pool exclusion holds all of `p`,
    /// every following prefix whose usable span it also holds is excluded too; skip them.
    fn skip_exclusion(&mut self, p: &IpNet) {
        let span = usable_span(p);
        let Some(r) = self.pool.exclusions.iter().find(|r| r.covers(&span)) else { return };
        let step_bits = u32::from(p.max_prefix_len() - p.prefix_len());
        let tail = ip::to_u128(span.end()) - ip::to_u128(p.network()); // lastIP offset in a prefix
        let base = ip::to_u128(self.pool.cidr.network());
        // Prefix k is covered when base + k*step + tail <= r.end.
        let Some(room) = ip::to_u128(r.end()).checked_sub(base + tail) else { return };
        let last_covered = room.checked_shr(step_bits).unwrap_or(0);
        self.next = self.next.max(last_covered.saturating_add(1));
    }
}

#[cfg(test)]
mod tests;
