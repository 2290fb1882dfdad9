//! The status both pool kinds share beyond their allocations: `status.conditions` and the
//! derived `status.allocatedNodes`, as the controller reads and writes them.
//!
//! Owns: [`Condition`], [`PoolStatus`] (read), [`StatusRef`] (written). Must not: decide a
//! condition (that is `controller::reconcile`) or talk to the API server.

use serde::{Deserialize, Serialize};

/// A `metav1.Condition`, as stored in `status.conditions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
    /// RFC 3339 time, seconds resolution; kept while `status` stays the same.
    #[serde(default)]
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// `status` of either pool kind: what we read and what we write.
#[derive(Serialize, Deserialize)]
pub struct PoolStatus<A> {
    #[serde(default = "Vec::new")]
    pub allocations: Vec<A>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// A status as we write it (borrowed, so nothing is copied to write or to hash it).
/// `allocatedNodes` is derived from `allocations` (for the CRD's "Nodes" printer column, since a
/// JSONPath column cannot count a list), so hashing a written and a read-back status agrees.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusRef<'a, A> {
    pub allocations: &'a [A],
    pub conditions: &'a [Condition],
    pub allocated_nodes: usize,
}

impl<'a, A> StatusRef<'a, A> {
    pub fn new(allocations: &'a [A], conditions: &'a [Condition]) -> StatusRef<'a, A> {
        StatusRef { allocations, conditions, allocated_nodes: allocations.len() }
    }
}
