//! One pool's reconcile, decided without I/O: from the pool as stored, the nodes that match it
//! now, the nodes still held in their grace period, and the time, to the status to write and
//! the Events to emit.
//!
//! Rules (each improves on the reference, which empties the status of an invalid pool):
//! - valid spec: plan for the matching nodes plus the nodes that left (deleted, unlabelled)
//!   less than `grace` ago; a held node keeps exactly its previous entry (never a new block)
//!   and gets no `NoFree*` Event. The previous status is the planner's input, so nothing moves.
//! - invalid spec: `status.allocations` stays as it is; condition `SpecValid` goes `False`
//!   (reason `InvalidSpec`, message = the field errors) and a Warning Event `InvalidSpec` says
//!   why. When the spec is valid again the condition goes `True` (reason `Valid`).
//! - the status is written only when allocations or conditions change; `lastTransitionTime` is
//!   kept while a condition's status stays the same, so re-reconciling writes nothing.
//!
//! Holds: the shell passes `holds` (node → when it was first seen gone from this pool) and
//! stores the returned map; a controller restart forgets holds, which only makes them longer.
//!
//! Owns: [`reconcile`] (written once, generic over `alloc::PoolKind`), [`Event`], [`Outcome`]
//! (the [`Condition`] type is `api::status`'s). Must not: read clocks, talk to
//! the API server or log; the caller passes `now` and acts on the outcome.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use crate::alloc::PoolKind;
use crate::api::Condition;
use crate::api::selector::select_nodes;
use crate::api::{AnyAllocations, AnyPool, Node, PoolType};

/// `type` of the condition that says whether the spec is valid.
pub const CONDITION_SPEC_VALID: &str = "SpecValid";
/// Reason of a `False` `SpecValid` condition and of the matching Warning Event (the reference's).
pub const REASON_INVALID_SPEC: &str = "InvalidSpec";
/// Reason of a `True` `SpecValid` condition.
pub const REASON_VALID: &str = "Valid";
/// Event reason for an IPPool node without a block (the reference's).
pub const REASON_NO_FREE_RANGES: &str = PoolType::IpPool.info().no_free_reason;
/// Event reason for a CIDRPool node without a prefix (the reference's).
pub const REASON_NO_FREE_PREFIXES: &str = PoolType::CidrPool.info().no_free_reason;
/// Longest condition message kept; the API server's limit for `message` is 32768 bytes.
pub const MAX_CONDITION_MESSAGE_BYTES: usize = 32 * 1024;

/// A core/v1 Event to emit about the pool (always `Warning` here).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Event {
    pub reason: &'static str,
    pub message: String,
}

/// Everything the pure step asks of its caller's world.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    pub pool: &'a AnyPool,
    /// `status.conditions` as stored.
    pub conditions: &'a [Condition],
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// Every node (names + labels); the selector is applied here.
    pub nodes: &'a [Node],
    /// Node → when it was first seen gone from this pool (the previous outcome's `holds`).
    pub holds: &'a BTreeMap<String, SystemTime>,
    pub now: SystemTime,
    /// How long a departed node keeps its block.
    pub grace: Duration,
    /// Entries already delivered to nodes (their NodeBlockSets) that the status does not hold
    /// yet: planned as previous entries after the status's own, which win a conflict, so that
    /// a node keeps a block it may already allocate from. `None`: none.
    pub intents: Option<&'a AnyAllocations>,
}

/// What to write and say.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub allocations: AnyAllocations,
    pub conditions: Vec<Condition>,
    /// True when `allocations` or `conditions` differ from the stored status.
    pub changed: bool,
    pub events: Vec<Event>,
    /// Nodes held in their grace period, with when they left; store for the next reconcile.
    pub holds: BTreeMap<String, SystemTime>,
    /// When the earliest hold expires: reconcile again then.
    pub recheck_at: Option<SystemTime>,
    /// Blocks/prefixes the pool has in total (exclusions ignored), saturated at u64::MAX;
    /// `None` when the spec is invalid.
    pub capacity: Option<u64>,
    /// Addresses in the subnet/cidr, saturated at u64::MAX; `None` when invalid.
    pub size: Option<u64>,
}

/// Decides one pool. Pure: same input, same outcome.
pub fn reconcile(input: &Input) -> Outcome {
    crate::with_pool_kind!(input.pool, p, K => reconcile_kind::<K>(p, input))
}

fn reconcile_kind<K: PoolKind>(pool: &K::Pool, input: &Input) -> Outcome {
    let valid = match K::validate(pool) {
        Ok(v) => v,
        Err(errors) => {
            let message = truncate(errors.to_string(), MAX_CONDITION_MESSAGE_BYTES);
            let conditions = set_condition(input, "False", REASON_INVALID_SPEC, &message);
            return Outcome {
                changed: conditions != input.conditions,
                allocations: K::into_any_allocations(K::allocations(pool).to_vec()),
                conditions,
                events: vec![Event { reason: REASON_INVALID_SPEC, message }],
                // an invalid spec frees nothing, so holds simply carry over
                holds: input.holds.clone(),
                recheck_at: None,
                capacity: None,
                size: None,
            };
        }
    };

    let matching: BTreeSet<String> =
        select_nodes(K::node_selector(&valid), input.nodes).into_iter().collect();
    let mut holds = BTreeMap::new();
    let mut recheck_at: Option<SystemTime> = None;
    for node in K::allocations(pool).iter().map(K::node_name) {
        if matching.contains(node) {
            continue;
        }
        let since = input.holds.get(node).copied().unwrap_or(input.now);
        let until = since.checked_add(input.grace).unwrap_or(since);
        if input.now < until {
            holds.insert(node.to_string(), since);
            recheck_at = Some(recheck_at.map_or(until, |r| r.min(until)));
        }
    }
    let mut names: Vec<String> = matching.iter().cloned().collect();
    names.extend(holds.keys().cloned());

    let previous = K::allocations(pool);
    let with_intents: Vec<K::Allocation>;
    let plan_input = match input.intents.and_then(K::of_allocations) {
        Some(i) if !i.is_empty() => {
            with_intents = previous.iter().chain(i).cloned().collect();
            &with_intents[..]
        }
        _ => previous,
    };
    let plan = K::plan(&valid, &names, plan_input);
    let kept = keep_held(plan.allocations, previous, &holds, |a| K::node_name(a));
    let reason = K::TYPE.info().no_free_reason;
    let events = plan
        .unallocated
        .into_iter()
        .filter(|n| !holds.contains_key(n))
        .map(|n| Event { reason, message: format!("failed to allocate IPs on Node: {n}") })
        .collect();
    let conditions = set_condition(input, "True", REASON_VALID, "spec is valid");
    let stored_same = kept.as_slice() == previous;
    let (capacity, size) = K::capacity_and_size(&valid);
    Outcome {
        changed: !stored_same || conditions != input.conditions,
        allocations: K::into_any_allocations(kept),
        conditions,
        events,
        holds,
        recheck_at,
        capacity: Some(capacity),
        size: Some(size),
    }
}

/// A change to one node: its labels before and after (`None`: absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeChange {
    pub name: String,
    pub before: Option<BTreeMap<String, String>>,
    pub after: Option<BTreeMap<String, String>>,
}

/// Whether any of `changes` can change this pool's outcome: the node matched the pool's
/// selector before or after, or holds an entry in its status. An invalid pool's outcome does
/// not depend on nodes. This is what keeps one pool's nodes from re-planning every other pool.
pub fn nodes_matter(pool: &AnyPool, changes: &[NodeChange]) -> bool {
    crate::with_pool_kind!(pool, p, K => nodes_matter_kind::<K>(p, changes))
}

fn nodes_matter_kind<K: PoolKind>(pool: &K::Pool, changes: &[NodeChange]) -> bool {
    let Ok(valid) = K::validate(pool) else { return false };
    let selector = K::node_selector(&valid);
    let allocated: Vec<&str> = K::allocations(pool).iter().map(K::node_name).collect();
    changes.iter().any(|c| {
        allocated.contains(&c.name.as_str())
            || [&c.before, &c.after].into_iter().flatten().any(|labels| {
                let l: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                selector.is_none_or(|s| s.matches(&Node::new(c.name.clone(), &l)))
            })
    })
}

/// A held node keeps exactly its previous entry; if the planner moved it (its old entry is no
/// longer valid for the spec) the node gets nothing rather than another node's future block.
fn keep_held<A: Clone + PartialEq>(
    planned: Vec<A>,
    previous: &[A],
    holds: &BTreeMap<String, SystemTime>,
    node: impl Fn(&A) -> &str,
) -> Vec<A> {
    planned.into_iter().filter(|a| !holds.contains_key(node(a)) || previous.contains(a)).collect()
}

/// The stored conditions with `SpecValid` set; its transition time changes only with status.
fn set_condition(input: &Input, status: &str, reason: &str, message: &str) -> Vec<Condition> {
    let mut out: Vec<Condition> = input.conditions.to_vec();
    let previous = out.iter().position(|c| c.type_ == CONDITION_SPEC_VALID);
    let since = match previous.map(|i| &out[i]) {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => rfc3339(input.now),
    };
    let cond = Condition {
        type_: CONDITION_SPEC_VALID.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: since,
        observed_generation: input.generation,
    };
    match previous {
        Some(i) => out[i] = cond,
        None => out.push(cond),
    }
    out
}

/// `YYYY-MM-DDTHH:MM:SSZ` (metav1.Time's format).
pub fn rfc3339(t: SystemTime) -> String {
    let s = crate::logging::format_utc(t);
    // format_utc prints milliseconds: "...:SS.mmmZ"
    match s.rfind('.') {
        Some(dot) => format!("{}Z", &s[..dot]),
        None => s,
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests;
