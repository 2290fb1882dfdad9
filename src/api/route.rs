//! A static route of a pool (`spec.routes[].dst`).
//!
//! Owns: the wire shape [`Route`]. Must not: validate (see `validate`).

use serde::{Deserialize, Serialize};

/// `{dst}`: a destination CIDR routed via the allocation's gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    #[serde(default)]
    pub dst: String,
}
