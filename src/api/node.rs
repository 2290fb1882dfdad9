//! A Kubernetes Node as the planner sees it: a name and labels.
//!
//! Owns: [`Node`]. Must not: carry any other Node field; they are ignored on decode.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A core/v1 Node reduced to what node selection needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    #[serde(default)]
    pub metadata: NodeMeta,
}

/// `metadata.name` and `metadata.labels` of a Node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMeta {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Node {
    pub fn new(name: impl Into<String>, labels: &[(&str, &str)]) -> Node {
        Node {
            metadata: NodeMeta {
                name: name.into(),
                labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            },
        }
    }

    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.metadata.labels
    }
}
