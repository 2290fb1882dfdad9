//! The IPPool block planner (the reference's
//! https://github.com/Mellanox/nvidia-k8s-ipam/tree/main/pkg/ipam-controller/allocator): which
//! block of `perNodeBlockSize` addresses each node holds, given the validated pool, the matching
//! nodes and the previous status.
//!
//! Reproduces the reference for valid specs: offset 1 (0 for /31, /32, /127, /128), aligned
//! blocks, existing entries kept when still valid, first fit for the first new node and a
//! cursor (`last`) for the others within one pass, fully excluded blocks skipped with the
//! reference's jump, blocks ending on the IPv4 broadcast or past the subnet never used.
//!
//! Owns: [`plan_ip_pool`]. Must not: materialise a range or walk addresses. Blocks are visited
//! one at a time only while a skip is needed (a used block, a partly excluded one, the gateway);
//! runs inside one exclusion are crossed by arithmetic, so a /64 costs what a /24 does.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::api::{IpAllocation, ValidIpPool};
use crate::ip::{self, Family, IpRange};

/// The planner's decision for one pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpPlan {
    /// The new `status.allocations`, sorted by node name.
    pub allocations: Vec<IpAllocation>,
    /// Nodes that got no block (the reference's `NoFreeRanges` events), sorted.
    pub unallocated: Vec<String>,
}

/// Plans the blocks of `pool` for `nodes` (any order; duplicates ignored), keeping the still
/// valid entries of `previous` (the current status). Planning the output again returns it
/// unchanged.
pub fn plan_ip_pool(pool: &ValidIpPool, nodes: &[String], previous: &[IpAllocation]) -> IpPlan {
    let mut names: Vec<&str> = nodes.iter().map(String::as_str).collect();
    names.sort_unstable();
    names.dedup();
    let blocks = Blocks::new(pool);

    // Existing entries, in status order: the first valid entry of a node wins.
    let wanted: HashSet<&str> = names.iter().copied().collect();
    let mut kept: HashMap<&str, u128> = HashMap::new();
    let mut used: HashSet<u128> = HashSet::new();
    for e in previous {
        let node = e.node_name.as_str();
        if !wanted.contains(node) || kept.contains_key(node) {
            continue;
        }
        if let Some(s) = blocks.existing_start(e)
            && !used.contains(&s)
        {
            kept.insert(node, s);
            used.insert(s);
        }
    }

    let mut plan = IpPlan::default();
    let mut last: Option<u128> = None;
    // Once a search fails nothing changes (no block is recorded), so every later new node
    // would fail the same search: remember it instead of repeating it.
    let mut exhausted = false;
    for node in names {
        let start = match kept.get(node) {
            Some(&s) => Some(s),
            None if exhausted => None,
            None => {
                let from = match last {
                    None => Some(blocks.base),
                    Some(l) => l.checked_add(blocks.size),
                };
                let found = from.and_then(|s| blocks.search(s, &used));
                if let Some(s) = found {
                    used.insert(s);
                    last = Some(s);
                } else {
                    exhausted = true;
                    log::warn!("ippool {:?}: no free block for node {node}", pool.name);
                }
                found
            }
        };
        match start {
            Some(s) => plan.allocations.push(blocks.allocation(node, s)),
            None => plan.unallocated.push(node.to_string()),
        }
    }
    plan
}

/// The pool's blocks as offsets from the network address.
struct Blocks<'a> {
    pool: &'a ValidIpPool,
    net: IpNet,
    family: Family,
    network: u128,
    /// Offset of block 0: 0 for /31, /32, /127, /128, else 1.
    base: u128,
    /// `B`, at least 1.
    size: u128,
    /// The largest offset a block may end on (the IPv4 broadcast is excluded).
    limit: u128,
    gateway: Option<u128>,
    /// Pool exclusions as offsets, merged and sorted.
    exclusions: Vec<(u128, u128)>,
    /// True when the per-node exclusions alone cover a whole block: then every block is
    /// fully excluded and searching would only walk the subnet.
    per_node_covers_block: bool,
}

impl<'a> Blocks<'a> {
    fn new(pool: &'a ValidIpPool) -> Blocks<'a> {
        let net = pool.subnet;
        let family = Family::of_net(&net);
        let network = ip::to_u128(net.network());
        let last = ip::to_u128(net.broadcast()) - network;
        let limit = if ip::is_broadcast(net.broadcast(), &net) { last - 1 } else { last };
        let gateway = pool.gateway.and_then(|g| ip::to_u128(g).checked_sub(network));
        let exclusions = pool
            .exclusions
            .iter()
            .map(|r| (ip::to_u128(r.start()) - network, ip::to_u128(r.end()) - network))
            .collect();
        let size = pool.block_size.max(1);
        let mut b = Blocks {
            pool,
            net,
            family,
            network,
            base: ip::first_usable_offset(&net),
            size,
            limit,
            gateway,
            exclusions,
            per_node_covers_block: false,
        };
        b.per_node_covers_block = b.per_node_only_covers_block();
        b
    }

    fn addr(&self, offset: u128) -> IpAddr {
        ip::from_u128(self.network + offset, self.family).expect("offsets stay inside the subnet")
    }

    fn range(&self, s: u128, t: u128) -> IpRange {
        IpRange::new(self.addr(s), self.addr(t)).expect("block start <= block end")
    }

    fn allocation(&self, node: &str, s: u128) -> IpAllocation {
        IpAllocation {
            node_name: node.to_string(),
            start_ip: self.addr(s).to_string(),
            end_ip: self.addr(s + self.size - 1).to_string(),
        }
    }

    /// End of the block starting at `s`, when that block may be used at all.
    fn end_of(&self, s: u128) -> Option<u128> {
        s.checked_add(self.size - 1).filter(|&t| t <= self.limit)
    }

    fn per_node_only_covers_block(&self) -> bool {
        let Some(t) = self.end_of(self.base) else { return false };
        let block = self.range(self.base, t);
        let per_node =
            self.pool.per_node_exclusions.iter().filter_map(|r| r.to_ip_range(block.start(), &block));
        ip::fully_covered(&ip::merge(per_node), &block)
    }

    /// The reference's `fullyExcluded(s, t)`: pool exclusions plus per-node exclusions counted
    /// from `s`, clamped to the block and merged, leave nothing of it.
    fn fully_excluded(&self, s: u128, t: u128) -> bool {
        if self.per_node_covers_block {
            return true;
        }
        let block = self.range(s, t);
        // Only the pool exclusions that reach into the block matter (they are sorted).
        let first = self.exclusions.partition_point(|&(_, e)| e < s);
        let pool_part =
            self.exclusions[first..].iter().take_while(|&&(a, _)| a <= t).map(|&(a, e)| self.range(a, e));
        let per_node =
            self.pool.per_node_exclusions.iter().filter_map(|r| r.to_ip_range(block.start(), &block));
        ip::fully_covered(&ip::clamp_and_merge(pool_part.chain(per_node), &block), &block)
    }

    /// The reference's jump after a fully excluded block: from the next aligned candidate `s`,
    /// when one merged pool exclusion holds the whole block at `s`, move past every block that
    /// exclusion holds.
    fn jump(&self, s: u128) -> u128 {
        let Some(t) = s.checked_add(self.size - 1) else { return s };
        let i = self.exclusions.partition_point(|&(_, e)| e < s);
        match self.exclusions.get(i) {
            Some(&(a, e)) if a <= s && t <= e => {
                let blocks = (e - s).saturating_add(1) / self.size;
                s.saturating_add(blocks.saturating_mul(self.size))
            }
            _ => s,
        }
    }

    /// First usable block at or after `s` (aligned), or `None` when the subnet runs out.
    fn search(&self, mut s: u128, used: &HashSet<u128>) -> Option<u128> {
        loop {
            let t = self.end_of(s)?;
            if used.contains(&s) {
                s = t.checked_add(1)?;
            } else if self.fully_excluded(s, t) {
                if self.per_node_covers_block {
                    return None; // every block is excluded alike
                }
                s = self.jump(t.checked_add(1)?);
            } else if self.size == 1 && Some(s) == self.gateway {
                s = t.checked_add(1)?;
            } else {
                return Some(s);
            }
        }
    }

    /// The start offset of a status entry that is still a valid block of this pool.
    fn existing_start(&self, e: &IpAllocation) -> Option<u128> {
        let start: IpAddr = e.start_ip.parse().ok()?;
        let end: IpAddr = e.end_ip.parse().ok()?;
        if !self.net.contains(&start) || !self.net.contains(&end) {
            return None;
        }
        let s = ip::to_u128(start) - self.network;
        let t = ip::to_u128(end) - self.network;
        let aligned = s >= self.base && (s - self.base).is_multiple_of(self.size);
        let ok = t >= s
            && aligned
            && t - s == self.size - 1
            && !(self.size == 1 && Some(s) == self.gateway)
            && !self.fully_excluded(s, t);
        ok.then_some(s)
    }
}

#[cfg(test)]
mod tests;
