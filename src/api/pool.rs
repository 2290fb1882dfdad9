//! A pool of any kind as one value (what a cache, a queue or a review holds before the code
//! that is generic over the kind takes it).
//!
//! Owns: [`AnyPool`]. Must not: decide anything per kind; that is the `alloc::kind` trait.

use super::{CidrPool, IpPool, ObjectMeta, PoolKey, PoolType};

/// A pool object of any kind. A new kind adds its variant here.
#[derive(Debug, Clone, PartialEq)]
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
