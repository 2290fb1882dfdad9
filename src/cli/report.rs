//! The answers of `kubectl-nv_ipam`, decided without I/O from what the shell gathered: a
//! [`View`] (pools as stored, nodes, each node's allocations report or why there is none,
//! each node's pods) in, a [`WhoHas`], [`Usage`] or [`Check`] out. A standalone host is a
//! view of one node whose report was built from its store file.
//!
//! Checks ([`check`]) and what fixes each (`--fix` does only the safe one; the CLI never
//! writes anything per pod):
//! - `stale-allocation`: a reservation for a pod that is not on its node any more (gone, a
//!   newer pod under the same name: another UID, or finished). ipam-node's stale cleaner
//!   releases those by itself (3 checks a minute apart by default); the fix given releases it
//!   now with a CNI DEL on the node. Reservations without pod names are not judged.
//! - `outside-block`: an address outside its node's block of the pool (the block moved, the
//!   pool was re-created or deleted). Static addresses of an IPPool may lie anywhere in its
//!   subnet and are not reported; nor, for reservations imported from the reference (no
//!   static marker), the pool's gateway or an address of the subnet in no other node's block.
//!   Fix: delete the pod; its owner re-creates it with an address of the node's block. On a
//!   standalone host only pools of the pools file are judged, and none when no pool gives the
//!   node a block (no pools file, or a wrong node name).
//! - `duplicate-address`: one address of one pool held on two nodes. Fix: delete the pods
//!   whose node's block does not hold it.
//! - `status-for-missing-node`: a pool status entry of a node that does not exist.
//!   ipam-controller drops it itself after its release grace period; pods still bound to that
//!   node name may hold addresses of the block until then (the pod garbage collector deletes
//!   them, in its own time). So `--fix` removes an entry only once no pod is bound to the node
//!   (else the finding says which command to run, or `--fix --force` removes it anyway); the
//!   write names the pool's resourceVersion, so a controller write in between wins (409) and
//!   nothing is lost.
//! - `node-without-block`: a node a pool's nodeSelector matches that has no entry (the pool is
//!   full, or ipam-controller does not run). Not fixable here: planning is the controller's.
//!
//! Owns: the report types (their JSON/YAML shape is the `-o json|yaml` output) and the rules
//! above. Must not: do I/O or read clocks.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use crate::alloc::{NodePool, PoolKind, standalone_node_pool};
use crate::api::{AnyPool, Node, PoolKey, PoolType, select_nodes};
use crate::inventory::{NodeAllocations, ReservationInfo};

/// A pod as the check needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodState {
    pub uid: String,
    pub phase: String,
}

/// Pods of one node by (namespace, name).
pub type Pods = BTreeMap<(String, String), PodState>;

/// Everything the reports are made from.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// The pools' namespace (for the commands a finding gives).
    pub namespace: String,
    pub pools: Vec<AnyPool>,
    /// The cluster's nodes; `None` on a standalone host (no node checks then).
    pub nodes: Option<Vec<Node>>,
    /// Every node asked: its report, or why there is none.
    pub answers: BTreeMap<String, Result<NodeAllocations, String>>,
    /// Pods per node asked (after its answer), when listed (`check` in a cluster).
    pub pods: BTreeMap<String, Result<Pods, String>>,
    /// Standalone: the host's node name (pools without status are planned for it).
    pub standalone_node: Option<String>,
}

/// A node whose answer (or pod list) is missing from a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreachable {
    pub node: String,
    pub error: String,
}

/// What the view says about one pool.
#[derive(Debug, Clone)]
pub struct PoolFacts {
    pub key: PoolKey,
    /// Its whole range (subnet or cidr), when the spec is valid.
    pub net: Option<IpNet>,
    /// Why the spec is invalid.
    pub invalid: Option<String>,
    /// Each node's block (or prefix) from the status (standalone without status: planned).
    pub blocks: BTreeMap<String, NodePool>,
    /// Status entries that give their node nothing usable, with why.
    pub bad_entries: BTreeMap<String, String>,
    /// Nodes with a status entry, in its order (index = position in `status.allocations`).
    pub status_nodes: Vec<String>,
    /// Nodes the nodeSelector matches (a cluster and a valid spec only).
    pub matching: Option<BTreeSet<String>>,
}

/// The facts of every pool of the view.
pub fn facts(view: &View) -> Vec<PoolFacts> {
    view.pools.iter().map(|p| crate::with_pool_kind!(p, p, K => facts_of::<K>(p, view))).collect()
}

fn facts_of<K: PoolKind>(p: &K::Pool, view: &View) -> PoolFacts {
    let meta = K::meta(p);
    let status_nodes: Vec<String> = K::allocations(p).iter().map(|a| K::node_name(a).to_string()).collect();
    let mut f = PoolFacts {
        key: PoolKey::new(K::TYPE, meta.name.clone()),
        net: None,
        invalid: None,
        blocks: BTreeMap::new(),
        bad_entries: BTreeMap::new(),
        status_nodes: status_nodes.clone(),
        matching: None,
    };
    let v = match K::validate(p) {
        Ok(v) => v,
        Err(e) => {
            f.invalid = Some(e.to_string());
            return f;
        }
    };
    f.net = Some(K::net(&v));
    let mut put = |node: &str, r: Result<NodePool, crate::alloc::NodePoolError>| match r {
        Ok(np) => {
            f.blocks.insert(node.to_string(), np);
        }
        Err(e) => {
            f.bad_entries.insert(node.to_string(), e.to_string());
        }
    };
    match (K::status(p), view.standalone_node.as_deref()) {
        (None, Some(node)) => put(node, standalone_node_pool::<K>(&v, node)),
        (status, _) => {
            for node in &status_nodes {
                put(node, K::node_pool(&v, node, status.unwrap_or(&[])));
            }
        }
    }
    f.matching =
        view.nodes.as_ref().map(|nodes| select_nodes(K::node_selector(&v), nodes).into_iter().collect());
    f
}

fn unreachable(view: &View, node_filter: Option<&str>) -> Vec<Unreachable> {
    let mut out: Vec<Unreachable> = view
        .answers
        .iter()
        .filter(|(n, _)| node_filter.is_none_or(|f| f == n.as_str()))
        .filter_map(|(n, a)| a.as_ref().err().map(|e| Unreachable { node: n.clone(), error: e.clone() }))
        .collect();
    for (n, p) in &view.pods {
        if let Err(e) = p
            && node_filter.is_none_or(|f| f == n.as_str())
        {
            out.push(Unreachable { node: n.clone(), error: format!("cannot list its pods: {e}") });
        }
    }
    out
}

fn answered(view: &View) -> impl Iterator<Item = (&String, &NodeAllocations)> {
    view.answers.iter().filter_map(|(n, a)| a.as_ref().ok().map(|r| (n, r)))
}

// ---------------------------------------------------------------------------------------------
// who-has

/// A pool whose range holds the address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolHit {
    pub pool: String,
    pub pool_type: PoolType,
    /// The pool's whole range (subnet or cidr).
    pub range: String,
    /// The node whose block (or prefix) holds the address, if one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<String>,
}

/// A reservation of the address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    pub node: String,
    #[serde(flatten)]
    pub reservation: ReservationInfo,
}

/// `who-has IP`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WhoHas {
    pub ip: IpAddr,
    pub pools: Vec<PoolHit>,
    pub holders: Vec<Holder>,
    pub unreachable: Vec<Unreachable>,
}

pub fn who_has(view: &View, ip: IpAddr, node: Option<&str>) -> WhoHas {
    let pools = facts(view)
        .into_iter()
        .filter(|f| f.net.is_some_and(|n| n.contains(&ip)))
        .map(|f| {
            let owner = f.blocks.iter().find(|(_, b)| b.range.contains(ip));
            PoolHit {
                pool: f.key.name.clone(),
                pool_type: f.key.pool_type,
                range: f.net.map(|n| n.to_string()).unwrap_or_default(),
                node: owner.map(|(n, _)| n.clone()),
                block: owner.map(|(_, b)| b.range.to_string()),
            }
        })
        .collect();
    let holders = answered(view)
        .filter(|(n, _)| node.is_none_or(|f| f == n.as_str()))
        .flat_map(|(n, r)| {
            r.reservations
                .iter()
                .filter(|x| x.ip == ip)
                .map(|x| Holder { node: n.clone(), reservation: x.clone() })
        })
        .collect();
    WhoHas { ip, pools, holders, unreachable: unreachable(view, node) }
}

// ---------------------------------------------------------------------------------------------
// usage

/// One pool on one node.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageRow {
    pub pool: String,
    pub pool_type: PoolType,
    pub node: String,
    /// `start-end`; absent when only the store knows the pool (no pools file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The counts come from the node; absent when it did not answer (the block is from the
    /// pool's status).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocated: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub free: Option<u64>,
    #[serde(rename = "static", skip_serializing_if = "Option::is_none")]
    pub static_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub released_in_cooldown: Option<u64>,
    /// `(size - free) / size` in percent, one decimal: how full the block is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_percent: Option<f64>,
}

/// `usage`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub rows: Vec<UsageRow>,
    pub unreachable: Vec<Unreachable>,
}

fn used_percent(size: u64, free: u64) -> Option<f64> {
    (size > 0).then(|| ((size.saturating_sub(free)) as f64 * 1000.0 / size as f64).round() / 10.0)
}

pub fn usage(view: &View, pool: Option<&str>, node: Option<&str>) -> Usage {
    let keep = |p: &str, n: &str| pool.is_none_or(|f| f == p) && node.is_none_or(|f| f == n);
    let mut rows = Vec::new();
    let mut seen: BTreeSet<(PoolKey, String)> = BTreeSet::new();
    for (n, r) in answered(view) {
        for u in r.pools.iter().filter(|u| keep(&u.name, n)) {
            seen.insert((PoolKey::new(u.pool_type, u.name.clone()), n.clone()));
            rows.push(UsageRow {
                pool: u.name.clone(),
                pool_type: u.pool_type,
                node: n.clone(),
                block: Some(format!("{}-{}", u.range_start, u.range_end)),
                size: Some(u.size),
                allocated: Some(u.allocated),
                free: Some(u.free),
                static_count: Some(u.static_count),
                released_in_cooldown: Some(u.released_in_cooldown),
                used_percent: used_percent(u.size, u.free),
            });
        }
        // reservations of pools the node does not serve, when nothing else shows them
        let mut unserved: BTreeMap<PoolKey, u64> = BTreeMap::new();
        for x in &r.reservations {
            if !r.pools.iter().any(|u| u.name == x.pool && u.pool_type == x.pool_type) {
                *unserved.entry(x.key()).or_default() += 1;
            }
        }
        for (key, count) in unserved.into_iter().filter(|(k, _)| keep(&k.name, n)) {
            seen.insert((key.clone(), n.clone()));
            rows.push(UsageRow {
                pool: key.name,
                pool_type: key.pool_type,
                node: n.clone(),
                block: None,
                size: None,
                allocated: Some(count),
                free: None,
                static_count: None,
                released_in_cooldown: None,
                used_percent: None,
            });
        }
    }
    for f in facts(view) {
        for (n, b) in &f.blocks {
            if keep(&f.key.name, n) && !seen.contains(&(f.key.clone(), n.clone())) {
                rows.push(UsageRow {
                    pool: f.key.name.clone(),
                    pool_type: f.key.pool_type,
                    node: n.clone(),
                    block: Some(b.range.to_string()),
                    size: Some(u64::try_from(b.range.len()).unwrap_or(u64::MAX)),
                    allocated: None,
                    free: None,
                    static_count: None,
                    released_in_cooldown: None,
                    used_percent: None,
                });
            }
        }
    }
    // fullest first; rows without counts last; then by pool and node
    rows.sort_by(|a, b| {
        let fa = a.used_percent.unwrap_or(-1.0);
        let fb = b.used_percent.unwrap_or(-1.0);
        fb.total_cmp(&fa)
            .then_with(|| b.allocated.cmp(&a.allocated))
            .then_with(|| (a.pool_type, &a.pool, &a.node).cmp(&(b.pool_type, &b.pool, &b.node)))
    });
    Usage { rows, unreachable: unreachable(view, node) }
}

// ---------------------------------------------------------------------------------------------
// check

/// What kind of inconsistency a finding is (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    StaleAllocation,
    OutsideBlock,
    DuplicateAddress,
    StatusForMissingNode,
    NodeWithoutBlock,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::StaleAllocation => "stale-allocation",
            FindingKind::OutsideBlock => "outside-block",
            FindingKind::DuplicateAddress => "duplicate-address",
            FindingKind::StatusForMissingNode => "status-for-missing-node",
            FindingKind::NodeWithoutBlock => "node-without-block",
        }
    }
}

/// One inconsistency and what fixes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub kind: FindingKind,
    pub pool: String,
    pub pool_type: PoolType,
    /// The node (for `duplicate-address`: every node holding the address, comma-separated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// `namespace/name` of the pod(s) concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    pub detail: String,
    /// The command that fixes it (shell-quoted: values come from nodes, which may be hostile).
    pub fix: String,
    /// `check --fix` does it.
    pub fixable: bool,
    /// After `--fix`: what happened (`fixed`, or why not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
}

/// `check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    pub findings: Vec<Finding>,
    pub unreachable: Vec<Unreachable>,
}

impl Check {
    /// Findings not fixed (by `--fix`).
    pub fn open(&self) -> usize {
        self.findings.iter().filter(|f| f.fixed.as_deref() != Some("fixed")).count()
    }
}

/// `s` as one shell word: bare when it has only safe characters, else single-quoted.
pub fn sh(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "._-/:=@%+,".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn delete_pod(r: &ReservationInfo) -> Option<String> {
    match (r.pod_namespace.as_deref(), r.pod_name.as_deref()) {
        (Some(ns), Some(n)) if !ns.is_empty() && !n.is_empty() => {
            Some(format!("kubectl -n {} delete pod {}", sh(ns), sh(n)))
        }
        _ => None,
    }
}

/// The CNI DEL that releases `r` on its node (run there as root).
fn cni_del(node: &str, r: &ReservationInfo) -> String {
    let conf = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": if r.network.is_empty() { "nv-ipam-release" } else { r.network.as_str() },
        "ipam": {"type": "nv-ipam", "poolName": r.pool, "poolType": r.pool_type},
    });
    format!(
        "on node {} as root: echo {} | CNI_COMMAND=DEL CNI_CONTAINERID={} CNI_IFNAME={} /opt/cni/bin/nv-ipam",
        sh(node),
        sh(&conf.to_string()),
        sh(&r.container_id),
        sh(&r.interface)
    )
}

fn finding(kind: FindingKind, key: &PoolKey, node: &str, r: Option<&ReservationInfo>) -> Finding {
    Finding {
        kind,
        pool: key.name.clone(),
        pool_type: key.pool_type,
        node: Some(node.to_string()),
        ip: r.map(|r| r.ip),
        pod: r.and_then(ReservationInfo::pod),
        detail: String::new(),
        fix: String::new(),
        fixable: false,
        fixed: None,
    }
}

/// Standalone: the host's node name when no pool gives it a block: no pools file, or none of
/// its pools has a status entry for that name (a wrong `--node-name`). Every address would look
/// outside its block then, so `check` judges no blocks. `None` in a cluster.
pub fn node_without_any_block(view: &View) -> Option<&str> {
    node_without_any_block_in(view, &facts(view))
}

fn node_without_any_block_in<'v>(view: &'v View, facts: &[PoolFacts]) -> Option<&'v str> {
    view.standalone_node.as_deref().filter(|n| !facts.iter().any(|f| f.blocks.contains_key(*n)))
}

/// Whether `r` may be static without saying so: reservations imported from the reference's
/// store (src/store/legacy.rs) carry neither the static marker nor a creation time. Every
/// reservation ipam-node makes records both.
fn static_marker_unknown(r: &ReservationInfo) -> bool {
    !r.is_static && r.created.is_none()
}

/// Whether `r` on `node` is inside the node's block, per the pool's facts: `Ok` when it is
/// (or cannot be judged), `Err(detail)` when not. `facts` is `None` for a pool the view does
/// not have: in a cluster it does not exist; on a standalone host the pools file may just not
/// list it, so nothing is known of its blocks.
fn block_verdict(
    view: &View,
    facts: Option<&PoolFacts>,
    node: &str,
    r: &ReservationInfo,
) -> Result<(), String> {
    let Some(f) = facts else {
        if view.standalone_node.is_some() {
            return Ok(());
        }
        return Err(format!(
            "pool {} ({}) does not exist (deleted, or in another namespace)",
            r.pool, r.pool_type
        ));
    };
    let Some(net) = f.net else { return Ok(()) }; // invalid spec: blocks cannot be judged
    if r.is_static && r.pool_type == PoolType::IpPool && net.contains(&r.ip) {
        return Ok(()); // static IPPool addresses may lie anywhere in the subnet
    }
    if static_marker_unknown(r) && r.pool_type == PoolType::IpPool && net.contains(&r.ip) {
        // it may be static: round robin never hands out the gateway, and a static address
        // only conflicts where another node's round robin may hand it out too
        let gateway = f.blocks.values().any(|b| b.gateway == Some(r.ip));
        let others = f.blocks.iter().any(|(n, b)| n != node && b.range.contains(r.ip));
        if gateway || !others {
            return Ok(());
        }
    }
    match f.blocks.get(node) {
        Some(b) if b.range.contains(r.ip) => Ok(()),
        // a CIDRPool node owns its whole prefix (static addresses too)
        Some(b) if r.pool_type == PoolType::CidrPool && b.subnet.contains(&r.ip) => Ok(()),
        Some(b) => Err(format!(
            "{} is outside node {node}'s {} {} of pool {}",
            r.ip,
            r.pool_type.info().unit,
            b.range,
            r.pool
        )),
        None => Err(format!(
            "node {node} has no {} of pool {} ({})",
            r.pool_type.info().unit,
            r.pool,
            r.pool_type
        )),
    }
}

pub fn check(view: &View, node_filter: Option<&str>) -> Check {
    let facts = facts(view);
    let by_key: BTreeMap<&PoolKey, &PoolFacts> = facts.iter().map(|f| (&f.key, f)).collect();
    let judge_blocks = node_without_any_block_in(view, &facts).is_none();
    let mut findings = Vec::new();
    let mut holders: BTreeMap<(PoolKey, IpAddr), Vec<(&str, &ReservationInfo)>> = BTreeMap::new();
    for (node, report) in answered(view).filter(|(n, _)| node_filter.is_none_or(|f| f == n.as_str())) {
        let pods = view.pods.get(node).and_then(|p| p.as_ref().ok());
        for r in &report.reservations {
            let key = r.key();
            holders.entry((key.clone(), r.ip)).or_default().push((node.as_str(), r));
            if let (Some(pods), Some(ns), Some(name)) =
                (pods, r.pod_namespace.as_deref(), r.pod_name.as_deref())
            {
                let stale = match pods.get(&(ns.to_string(), name.to_string())) {
                    None => Some(format!("pod {ns}/{name} does not exist on node {node}")),
                    Some(p) if r.pod_uid.as_deref().is_some_and(|u| !u.is_empty() && u != p.uid) => {
                        Some(format!(
                            "pod {ns}/{name} on node {node} is a newer pod (UID {}; the reservation is for UID {})",
                            p.uid,
                            r.pod_uid.as_deref().unwrap_or_default()
                        ))
                    }
                    Some(p) if matches!(p.phase.as_str(), "Succeeded" | "Failed") => {
                        Some(format!("pod {ns}/{name} has finished ({})", p.phase))
                    }
                    Some(_) => None,
                };
                if let Some(why) = stale {
                    let mut f = finding(FindingKind::StaleAllocation, &key, node, Some(r));
                    f.detail = format!(
                        "{why}; {} of pool {} is reserved for it; ipam-node's stale cleaner releases it within its check interval × count (3 min by default), or release it now",
                        r.ip, r.pool
                    );
                    f.fix = cni_del(node, r);
                    findings.push(f);
                    continue; // its address is about to go: no other finding for it
                }
            }
            if judge_blocks && let Err(detail) = block_verdict(view, by_key.get(&key).copied(), node, r) {
                let mut f = finding(FindingKind::OutsideBlock, &key, node, Some(r));
                f.detail = format!("{detail}: the pod keeps an address its node does not own");
                f.fix = delete_pod(r).unwrap_or_else(|| cni_del(node, r));
                findings.push(f);
            }
        }
    }
    for ((key, ip), held) in &holders {
        let nodes: BTreeSet<&str> = held.iter().map(|(n, _)| *n).collect();
        if nodes.len() < 2 {
            continue;
        }
        let facts = by_key.get(key).copied();
        let mut wrong: Vec<&(&str, &ReservationInfo)> =
            held.iter().filter(|(n, r)| block_verdict(view, facts, n, r).is_err()).collect();
        if wrong.is_empty() || wrong.len() == held.len() {
            // no block tells them apart: keep the oldest reservation
            let mut by_age: Vec<&(&str, &ReservationInfo)> = held.iter().collect();
            by_age.sort_by(|a, b| a.1.created.cmp(&b.1.created));
            wrong = by_age.into_iter().skip(1).collect();
        }
        let fixes: Vec<String> =
            wrong.iter().map(|(n, r)| delete_pod(r).unwrap_or_else(|| cni_del(n, r))).collect();
        let pods: Vec<String> = held
            .iter()
            .map(|(n, r)| format!("{} on {n}", r.pod().unwrap_or_else(|| r.container_id.clone())))
            .collect();
        findings.push(Finding {
            kind: FindingKind::DuplicateAddress,
            pool: key.name.clone(),
            pool_type: key.pool_type,
            node: Some(nodes.into_iter().collect::<Vec<_>>().join(", ")),
            ip: Some(*ip),
            pod: Some(pods.join(", ")),
            detail: format!(
                "{ip} of pool {} is held on {} nodes at once: their pods share one address",
                key.name,
                held.len()
            ),
            fix: fixes.join("; "),
            fixable: false,
            fixed: None,
        });
    }
    if let Some(nodes) = &view.nodes {
        let names: BTreeSet<&str> = nodes.iter().map(Node::name).collect();
        let kind_name = |t: PoolType| t.info().name;
        for f in &facts {
            for (i, n) in f.status_nodes.iter().enumerate() {
                if names.contains(n.as_str()) || node_filter.is_some_and(|x| x != n) {
                    continue;
                }
                let mut x = finding(FindingKind::StatusForMissingNode, &f.key, n, None);
                x.detail = format!(
                    "status.allocations[{i}] of {} {} is for node {n}, which does not exist; its {} stays reserved until ipam-controller's release grace period ends",
                    kind_name(f.key.pool_type),
                    f.key.name,
                    f.key.pool_type.info().unit
                );
                x.fix = format!(
                    "kubectl -n {} patch {} {} --subresource=status --type=json -p {}",
                    sh(&view.namespace),
                    kind_name(f.key.pool_type),
                    sh(&f.key.name),
                    sh(&format!(
                        r#"[{{"op":"test","path":"/status/allocations/{i}/nodeName","value":{}}},{{"op":"remove","path":"/status/allocations/{i}"}}]"#,
                        serde_json::Value::String(n.clone())
                    ))
                );
                x.fixable = true;
                findings.push(x);
            }
            let Some(matching) = &f.matching else { continue };
            for n in matching.iter().filter(|n| node_filter.is_none_or(|x| x == n.as_str())) {
                if f.status_nodes.contains(n) && !f.bad_entries.contains_key(n) {
                    continue;
                }
                let mut x = finding(FindingKind::NodeWithoutBlock, &f.key, n, None);
                let info = f.key.pool_type.info();
                x.detail = match f.bad_entries.get(n) {
                    Some(why) => format!("node {n}'s status entry gives it nothing: {why}"),
                    None => format!(
                        "the nodeSelector of {} {} matches node {n}, which has no {}: pods there get no address from it; if its events say {}, {}; else check that ipam-controller runs",
                        info.name, f.key.name, info.unit, info.no_free_reason, info.no_free_fix
                    ),
                };
                x.fix =
                    format!("kubectl -n {} describe {} {}", sh(&view.namespace), info.name, sh(&f.key.name));
                findings.push(x);
            }
        }
    }
    findings.sort_by(|a, b| {
        (a.kind, a.pool_type, &a.pool, &a.node, a.ip).cmp(&(b.kind, b.pool_type, &b.pool, &b.node, b.ip))
    });
    Check { findings, unreachable: unreachable(view, node_filter) }
}

/// The missing nodes of the `status-for-missing-node` findings.
pub fn missing_nodes(check: &Check) -> BTreeSet<&str> {
    check
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::StatusForMissingNode)
        .filter_map(|f| f.node.as_deref())
        .collect()
}

/// Why `--fix` leaves the entries of missing node `node` alone: pods are still bound to it.
pub fn pods_still_bound(node: &str) -> String {
    let sel = sh(&format!("spec.nodeName={node}"));
    format!(
        "not fixed: pods are still bound to node {node} and may hold addresses of its block; the pod garbage collector deletes them, or run `kubectl delete pods -A --field-selector {sel}`; then run check --fix again, or check --fix --force to remove the entry now"
    )
}

/// The pools' new `status.allocations` for `--fix`: each pool with status entries of missing
/// nodes not in `held`, as (pool key, resourceVersion, the entries to keep as JSON, how many
/// stay).
pub fn missing_node_fixes(
    view: &View,
    check: &Check,
    held: &BTreeMap<String, String>,
) -> Vec<(PoolKey, String, serde_json::Value, usize)> {
    let gone: BTreeSet<(PoolKey, &str)> = check
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::StatusForMissingNode)
        .filter_map(|f| Some((PoolKey::new(f.pool_type, f.pool.clone()), f.node.as_deref()?)))
        .filter(|(_, n)| !held.contains_key(*n))
        .collect();
    let mut out = Vec::new();
    for p in &view.pools {
        let key = p.key();
        if !gone.iter().any(|(k, _)| *k == key) {
            continue;
        }
        let (kept, rv) = crate::with_pool_kind!(p, p, K => kept_entries::<K>(p, &key, &gone));
        let n = kept.len();
        out.push((key, rv, kept.to_json(), n));
    }
    out
}

/// After `--fix`: each fixable finding says what happened: why its node was `held` back, else
/// what the write of its pool did (`done`, per pool).
pub fn record_fixes(check: &mut Check, done: &BTreeMap<PoolKey, String>, held: &BTreeMap<String, String>) {
    for f in check.findings.iter_mut().filter(|f| f.fixable) {
        f.fixed = match f.node.as_ref().and_then(|n| held.get(n)) {
            Some(why) => Some(why.clone()),
            None => done.get(&PoolKey::new(f.pool_type, f.pool.clone())).cloned(),
        };
    }
}

/// The status entries of `p` whose node is not in `gone`, and the pool's resourceVersion.
fn kept_entries<K: PoolKind>(
    p: &K::Pool,
    key: &PoolKey,
    gone: &BTreeSet<(PoolKey, &str)>,
) -> (crate::api::AnyAllocations, String) {
    let kept: Vec<K::Allocation> = K::allocations(p)
        .iter()
        .filter(|a| !gone.contains(&(key.clone(), K::node_name(a))))
        .cloned()
        .collect();
    let rv = K::meta(p).rest.get("resourceVersion").and_then(|v| v.as_str()).unwrap_or_default().to_string();
    (K::into_any_allocations(kept), rv)
}

#[cfg(test)]
mod tests;
