//! A pool of any kind as one value (what a cache, a queue or a review holds before the code
//! that is generic over the kind takes it).
//!
//! Owns: [`AnyPool`], [`AnyAllocations`]. Must not: decide anything per kind; that is the `alloc::kind` trait.

use serde::Serialize;

use super::{CidrAllocation, CidrPool, IpAllocation, IpPool, ObjectMeta, PoolKey, PoolType};

/// A pool object of any kind (serialized as the object itself). A new kind adds its variant here.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AnyPool {
    Ip(IpPool),
    Cidr(CidrPool),
}

impl AnyPool {
    pub fn pool_type(&self) -> PoolType {
        match self {
            AnyPool::Ip(_) => PoolType::IpPool,
            AnyPool::Cidr(_) => PoolType::CidrPool,
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        match self {
            AnyPool::Ip(p) => &p.metadata,
            AnyPool::Cidr(p) => &p.metadata,
        }
    }

    pub fn name(&self) -> &str {
        &self.meta().name
    }

    pub fn key(&self) -> PoolKey {
        PoolKey::new(self.pool_type(), self.name())
    }
}

/// A `status.allocations` list of any kind. A new kind adds its variant here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyAllocations {
    Ip(Vec<IpAllocation>),
    Cidr(Vec<CidrAllocation>),
}

impl AnyAllocations {
    pub fn len(&self) -> usize {
        match self {
            AnyAllocations::Ip(a) => a.len(),
            AnyAllocations::Cidr(a) => a.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// As a JSON array for `status.allocations`.
    pub fn to_json(&self) -> serde_json::Value {
        let v = match self {
            AnyAllocations::Ip(a) => serde_json::to_value(a),
            AnyAllocations::Cidr(a) => serde_json::to_value(a),
        };
        v.unwrap_or_else(|_| serde_json::Value::Array(Vec::new()))
    }
}
