//! The validating admission webhook's decision, without I/O: an AdmissionReview v1 body for
//! an IPPool or CIDRPool CREATE/UPDATE in, the verdict and the response body out.
//!
//! Checks, in order (all broken ones are reported in one message, field by field):
//! 1. the request `object` (the reference's webhook checks an empty template instead) passes
//!    exactly the controller's validation (`PoolKind::validate`), decoded with the same types;
//! 2. UPDATE: every allocation of `oldObject.status` that the old spec keeps is also kept when
//!    the planner (`PoolKind::plan`, as the reconcile runs it) plans the new
//!    spec for the same nodes: otherwise the update would move blocks or prefixes that nodes hold
//!    while pods use them. Opt-out: annotation [`ANNOTATION_ALLOW_REALLOCATION`] = `"true"`;
//! 3. CREATE, or UPDATE of `spec.subnet`/`spec.cidr`: the range overlaps no other pool of the
//!    same kind in the namespace, when the caller knows them (`others`); an overlap with a pool
//!    of the other kind is only a warning. Opt-out: annotation [`ANNOTATION_ALLOW_OVERLAP`] =
//!    `"true"` (overlaps are legitimate for isolated L2 networks).
//!
//! Other operations (DELETE, CONNECT), subresource writes (`status`, should the rules cover
//! them) and objects being deleted are allowed: there is no spec to protect. A body that is not an AdmissionReview v1 is an error (HTTP 400); a review whose
//! object cannot be decoded is denied with code 400, echoing its uid.
//!
//! Decoding the review is `review`'s ([`parse_review`]); this file decides.
//!
//! Owns: [`parse_review`], [`decide`], [`response_body`], the paths and annotations. Must not:
//! read the cluster (the shell passes `others`), log or touch sockets.

mod review;

use std::collections::HashMap;
use std::fmt;

use ipnet::IpNet;
use serde_json::{Value, json};

use crate::alloc::PoolKind;
use crate::api::{AnyPool, PoolErrors, PoolType};
pub use review::parse_review;

/// The reference's path for IPPools (controller-runtime's `/validate-<group>-<version>-<kind>`).
pub const PATH_IPPOOL: &str = PoolType::IpPool.info().webhook_path;
/// The reference's path for CIDRPools.
pub const PATH_CIDRPOOL: &str = PoolType::CidrPool.info().webhook_path;
/// `"true"` on the pool lets an UPDATE move blocks or prefixes that nodes hold.
pub const ANNOTATION_ALLOW_REALLOCATION: &str = "nv-ipam.nvidia.com/allow-reallocation";
/// `"true"` on the pool lets its range overlap another pool of the namespace.
pub const ANNOTATION_ALLOW_OVERLAP: &str = "nv-ipam.nvidia.com/allow-overlap";
/// The only AdmissionReview version served (the configuration lists `admissionReviewVersions: [v1]`).
pub const REVIEW_API_VERSION: &str = "admission.k8s.io/v1";
/// Node names listed in a refusal; the count is always given.
pub const MAX_NAMED_NODES: usize = 10;

/// The pool kind a webhook path validates, `None` for any other path (404).
pub fn path_kind(path: &str) -> Option<PoolType> {
    PoolType::ALL.into_iter().find(|t| t.info().webhook_path == path)
}

/// A body that is not an AdmissionReview v1 with a request: answered HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAReview {
    pub detail: String,
}

impl fmt::Display for NotAReview {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not an {REVIEW_API_VERSION} AdmissionReview: {}: send admissionReviewVersions [v1]",
            self.detail
        )
    }
}

impl std::error::Error for NotAReview {}

/// A decoded review request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub uid: String,
    /// `CREATE`, `UPDATE`, ... as sent.
    pub operation: String,
    pub namespace: String,
    /// `status` for a status write (when the rules include `ippools/status`), else empty.
    pub sub_resource: String,
    /// The object, or why it could not be decoded (a verdict with code 400). Its metadata holds
    /// only what [`decide`] reads: name, namespace, deletionTimestamp and the opt-out
    /// annotations that are `"true"`.
    pub object: Result<AnyPool, String>,
    /// `oldObject` (UPDATE), decoded like `object`.
    pub old_object: Option<Result<AnyPool, String>>,
}

/// What to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// HTTP-like status code of a refusal: 403 invalid pool, 400 undecodable request.
    pub code: u16,
    /// metav1 `StatusReason` of a refusal: `Invalid` or `BadRequest`.
    pub reason: &'static str,
    pub message: String,
    /// Shown by kubectl on success, e.g. an overlap that an annotation allowed.
    pub warnings: Vec<String>,
}

impl Verdict {
    fn allow(warnings: Vec<String>) -> Verdict {
        Verdict { allowed: true, code: 200, reason: "", message: String::new(), warnings }
    }

    fn bad_request(message: String) -> Verdict {
        Verdict { allowed: false, code: 400, reason: "BadRequest", message, warnings: Vec::new() }
    }

    fn invalid(message: String, warnings: Vec<String>) -> Verdict {
        Verdict { allowed: false, code: 403, reason: "Invalid", message, warnings }
    }
}

/// Another pool's range, for the overlap check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolRange {
    pub pool_type: PoolType,
    pub name: String,
    pub net: IpNet,
}

impl PoolRange {
    /// The range of a stored pool (`spec.subnet` or `spec.cidr`), `None` when it does not parse
    /// (such a pool is invalid and hands out nothing).
    pub fn of(pool: &AnyPool) -> Option<PoolRange> {
        let (text, name) = crate::with_pool_kind!(pool, p, K => (K::range_text(p), &K::meta(p).name));
        let net = text.parse::<IpNet>().ok()?.trunc();
        Some(PoolRange { pool_type: pool.pool_type(), name: name.clone(), net })
    }
}

/// Whether the pool carries `annotation: "true"`.
fn annotated(p: &AnyPool, annotation: &str) -> bool {
    p.meta().rest.get("annotations").and_then(|a| a.get(annotation)).and_then(Value::as_str) == Some("true")
}

/// Decides a request. `others`: the pools of the request's namespace as stored (the object
/// itself may be among them), or `None` when they are not known (the overlap check is skipped).
pub fn decide(req: &Request, others: Option<&[PoolRange]>) -> Verdict {
    // a status write (the controller's, also for an invalid pool) changes no spec
    if (req.operation != "CREATE" && req.operation != "UPDATE") || !req.sub_resource.is_empty() {
        return Verdict::allow(Vec::new());
    }
    let pool = match &req.object {
        Ok(p) => p,
        Err(e) => return Verdict::bad_request(e.clone()),
    };
    let old = match (&req.old_object, req.operation.as_str()) {
        (Some(Ok(o)), _) => Some(o),
        (Some(Err(e)), _) => return Verdict::bad_request(e.clone()),
        (None, "UPDATE") => return Verdict::bad_request("request.oldObject is missing in an UPDATE".into()),
        (None, _) => None,
    };
    if pool.meta().rest.get("deletionTimestamp").is_some_and(|v| !v.is_null()) {
        return Verdict::allow(Vec::new()); // being deleted: let it go
    }
    let (net, moved) = match crate::with_pool_kind!(pool, p, K => spec_check::<K>(p, old)) {
        Ok(checked) => checked,
        Err(errors) => return Verdict::invalid(errors.to_string(), Vec::new()),
    };
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    if let Some(old) = old
        && let Some(moved) = moved
    {
        let text = moved_message(old, pool, &moved);
        if annotated(pool, ANNOTATION_ALLOW_REALLOCATION) {
            warnings.push(text);
        } else {
            problems.push(format!(
                "{text}, while their pods keep the old addresses: drain those nodes, then set the \
                 annotation {ANNOTATION_ALLOW_REALLOCATION}: \"true\" to move the blocks; or create \
                 a new pool for the new layout"
            ));
        }
    }
    let range_changed = old.is_none_or(|o| PoolRange::of(o).map(|r| r.net) != Some(net));
    if range_changed && let Some(others) = others {
        let me = (pool.pool_type(), pool.name());
        let field = pool.pool_type().info().range_field;
        for o in others {
            if (o.pool_type, o.name.as_str()) == me
                || !(o.net.contains(&net.network()) || net.contains(&o.net.network()))
            {
                continue;
            }
            let text = format!(
                "{field}: {net} overlaps {} {:?} ({}) in namespace {:?}",
                o.pool_type.kind(),
                o.name,
                o.net,
                req.namespace
            );
            if annotated(pool, ANNOTATION_ALLOW_OVERLAP) {
                warnings.push(text);
            } else if o.pool_type != pool.pool_type() {
                // an IPPool and a CIDRPool are picked by different CNI configs (`poolType`), and
                // the reference's own examples give both the same range: warn, do not refuse
                warnings.push(format!(
                    "{text}: if one network uses both pools, its pods could get the same address; set \
                     the annotation {ANNOTATION_ALLOW_OVERLAP}: \"true\" to silence this warning"
                ));
            } else {
                problems.push(format!(
                    "{text}: pods of both pools could get the same address; give the pool a range of \
                     its own, or set the annotation {ANNOTATION_ALLOW_OVERLAP}: \"true\" when the two \
                     networks are isolated (separate L2 networks)"
                ));
            }
        }
    }
    if problems.is_empty() {
        Verdict::allow(warnings)
    } else {
        Verdict::invalid(format!("{} {:?}: {}", pool.pool_type(), pool.name(), problems.join("; ")), warnings)
    }
}

/// The pool's range and, on UPDATE, the nodes whose live entry (kept by the old spec's plan)
/// the new spec's plan would not keep (`None` when there are none); or the spec's errors.
fn spec_check<K: PoolKind>(
    pool: &K::Pool,
    old: Option<&AnyPool>,
) -> Result<(IpNet, Option<Vec<String>>), PoolErrors> {
    let valid = K::validate(pool)?;
    // decoded from one path, so an old object of another kind does not occur
    let moved = old.and_then(K::of).and_then(|o| moved_nodes::<K>(o, &valid));
    Ok((K::net(&valid), moved))
}

fn moved_nodes<K: PoolKind>(old: &K::Pool, new: &K::Valid) -> Option<Vec<String>> {
    let live = live::<K>(old);
    let names: Vec<String> = live.iter().map(|a| K::node_name(a).to_string()).collect();
    let plan = K::plan(new, &names, &live);
    let planned = plan_holds(&plan.allocations, K::node_name);
    let moved: Vec<String> =
        live.iter().filter(|a| !planned(a)).map(|a| K::node_name(a).to_string()).collect();
    (!moved.is_empty()).then_some(moved)
}

/// `|a| plan.contains(a)` in O(1) a call, by node name: `Vec::contains` over every entry of a
/// status is quadratic, and anyone who reaches the webhook port can send a review whose
/// `oldObject` has tens of thousands of entries (40,000 took 3.4 s of CPU, release build).
fn plan_holds<T: PartialEq>(plan: &[T], node: fn(&T) -> &str) -> impl Fn(&T) -> bool + '_ {
    let mut by_node: HashMap<&str, Vec<&T>> = HashMap::new();
    for p in plan {
        by_node.entry(node(p)).or_default().push(p);
    }
    move |a| by_node.get(node(a)).is_some_and(|v| v.contains(&a))
}

/// The old status entries the old spec keeps (all of them when the old spec is invalid: the
/// controller leaves such a status as it is).
fn live<K: PoolKind>(old: &K::Pool) -> Vec<K::Allocation> {
    let previous = K::allocations(old);
    match K::validate(old) {
        Ok(v) => {
            let names: Vec<String> = previous.iter().map(|a| K::node_name(a).to_string()).collect();
            let plan = K::plan(&v, &names, previous);
            let planned = plan_holds(&plan.allocations, K::node_name);
            previous.iter().filter(|a| planned(a)).cloned().collect()
        }
        Err(_) => previous.to_vec(),
    }
}

/// `spec.subnet, spec.perNodeBlockSize: this update would move the blocks of 2 nodes ...`
fn moved_message(old: &AnyPool, new: &AnyPool, nodes: &[String]) -> String {
    let fields = changed_fields(old, new);
    let what = new.pool_type().info().units;
    let mut named = nodes.iter().take(MAX_NAMED_NODES).cloned().collect::<Vec<_>>().join(", ");
    if nodes.len() > MAX_NAMED_NODES {
        named.push_str(", ...");
    }
    format!(
        "{}: this update would move the {what} of {} node(s) that hold allocations ({named})",
        if fields.is_empty() { "spec".to_string() } else { fields.join(", ") },
        nodes.len()
    )
}

/// The spec fields that decide where blocks/prefixes lie and that differ between the objects.
fn changed_fields(old: &AnyPool, new: &AnyPool) -> Vec<&'static str> {
    crate::with_pool_kind!(new, n, K => K::of(old).map(|o| K::placement_changes(o, n)).unwrap_or_default())
}

/// The AdmissionReview v1 response for `uid`.
pub fn response_body(uid: &str, v: &Verdict) -> Vec<u8> {
    let mut response = json!({"uid": uid, "allowed": v.allowed});
    if !v.allowed {
        response["status"] = json!({"code": v.code, "reason": v.reason, "message": v.message});
    }
    if !v.warnings.is_empty() {
        response["warnings"] = json!(v.warnings);
    }
    let review = json!({"apiVersion": REVIEW_API_VERSION, "kind": "AdmissionReview", "response": response});
    // a Value of strings, bools and integers always serializes
    serde_json::to_vec(&review).unwrap_or_default()
}

#[cfg(test)]
mod tests;
