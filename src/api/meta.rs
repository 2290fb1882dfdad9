//! Object metadata as the pools carry it: the name we need, everything else kept verbatim.
//!
//! Owns: [`ObjectMeta`]. Must not: interpret namespace, labels, uid or resourceVersion; they are
//! carried through untouched so that a planned pool can be written back as it was read.

use serde::{Deserialize, Serialize};

/// `metadata` of an object: `name` plus every other field preserved in `rest`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ObjectMeta {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// namespace, labels, uid, resourceVersion, ...: kept so that objects round-trip.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

impl ObjectMeta {
    pub fn named(name: impl Into<String>) -> ObjectMeta {
        ObjectMeta { name: name.into(), rest: serde_json::Map::new() }
    }
}
