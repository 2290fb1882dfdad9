//! What a request may ask, checked before any pool or store is touched, and how a failure is
//! reported ([`ServiceError`]: a stable code and a message naming the field and the fix).
//!
//! Owns: [`ServiceError`], the request-shape checks (pool names, static addresses). Must not:
//! read pools' state or the store (that is `service`).

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;

use crate::alloc::NodePool;
use crate::alloc::allocator::{self, AllocError};
use crate::api::{PoolKey, PoolType};
use crate::protocol::{AllocateRequest, ErrorCode};
use crate::store::StoreError;

/// A failed request as the daemon reports it: a stable code and a message that says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    pub code: ErrorCode,
    pub message: String,
}

impl ServiceError {
    pub(super) fn new(code: ErrorCode, message: impl Into<String>) -> ServiceError {
        ServiceError { code, message: message.into() }
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl From<AllocError> for ServiceError {
    fn from(e: AllocError) -> ServiceError {
        let code = match e {
            AllocError::Exhausted { .. } => ErrorCode::PoolExhausted,
            AllocError::Taken { .. } => ErrorCode::IpUnavailable,
            AllocError::OutsideSubnet { .. } | AllocError::IndexOutOfRange { .. } => ErrorCode::IpOutOfRange,
            AllocError::Unusable { .. } | AllocError::IsGateway { .. } | AllocError::NoGateway { .. } => {
                ErrorCode::InvalidRequest
            }
        };
        ServiceError::new(code, e.to_string())
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> ServiceError {
        let code = match e {
            StoreError::Inconsistent(_) => ErrorCode::Internal,
            _ => ErrorCode::StoreFailed,
        };
        ServiceError::new(code, e.to_string())
    }
}

pub(super) fn invalid(message: impl Into<String>) -> ServiceError {
    ServiceError::new(ErrorCode::InvalidRequest, message)
}

pub(super) fn require(field: &str, value: &str) -> Result<(), ServiceError> {
    if value.is_empty() {
        return Err(invalid(format!("{field} must not be empty")));
    }
    Ok(())
}

/// Pool keys of a request: one or two distinct, non-empty names.
pub(super) fn pool_keys(pools: &[String], pool_type: PoolType) -> Result<Vec<PoolKey>, ServiceError> {
    if pools.is_empty() || pools.len() > 2 {
        return Err(invalid(format!(
            "pools must name one or two pools (one per IP family), got {}",
            pools.len()
        )));
    }
    if pools.iter().any(String::is_empty) {
        return Err(invalid("pools must not contain an empty name"));
    }
    if pools.len() == 2 && pools[0] == pools[1] {
        return Err(invalid(format!(
            "pools names \"{}\" twice; name two different pools for dual-stack",
            pools[0]
        )));
    }
    Ok(pools.iter().map(|p| PoolKey::new(pool_type, p.clone())).collect())
}

/// What each pool is asked for. Static addresses (`requestedIps`): each named once; each pool
/// takes the first one inside its subnet (node prefix for a CIDRPool); every one must be taken.
/// Each way that fails has its own error naming the addresses, the pool and the fix.
pub(super) fn static_wants(
    configs: &[&NodePool],
    r: &AllocateRequest,
) -> Result<Vec<allocator::Request>, ServiceError> {
    let ips = &r.requested_ips;
    let pool_of = |ip: &IpAddr| configs.iter().find(|c| c.subnet.contains(ip));
    // A set, not a scan of the earlier ones: a frame may carry a great many addresses.
    let mut seen = HashSet::with_capacity(ips.len());
    for ip in ips {
        if !seen.insert(ip) {
            let inside = pool_of(ip).map(|c| format!(" (pool \"{}\")", c.key)).unwrap_or_default();
            return Err(invalid(format!(
                "requested IPs name {ip} twice{inside}; name each address once, at most one per pool"
            )));
        }
    }
    let mut used = vec![false; ips.len()];
    let mut wants = Vec::with_capacity(configs.len());
    for cfg in configs {
        let want = if let Some(i) = (0..ips.len()).find(|&i| !used[i] && cfg.subnet.contains(&ips[i])) {
            used[i] = true;
            allocator::Request::Static(ips[i])
        } else if let Some(index) = r.allocate_ip_with_index {
            allocator::Request::Index(index)
        } else if r.allocate_default_gateway {
            allocator::Request::Gateway
        } else {
            allocator::Request::Next
        };
        wants.push(want);
    }
    let Some(i) = used.iter().position(|u| !u) else { return Ok(wants) };
    let extra = ips[i];
    // An unused address inside a requested pool: that pool already took an earlier one.
    if let Some((cfg, taken)) = configs.iter().zip(&wants).find_map(|(c, w)| match w {
        allocator::Request::Static(t) if c.subnet.contains(&extra) => Some((c, t)),
        _ => None,
    }) {
        return Err(invalid(format!(
            "requested IPs {taken} and {extra} are both in the subnet {} of pool \"{}\", which gives an attachment one address; request one address per pool",
            cfg.subnet, cfg.key
        )));
    }
    let subnets: Vec<String> = configs.iter().map(|c| format!("\"{}\" {}", c.key, c.subnet)).collect();
    Err(ServiceError::new(
        ErrorCode::IpOutOfRange,
        format!(
            "requested IP {extra} is outside every requested pool's subnet on this node ({}); request an address inside one of them",
            subnets.join(", ")
        ),
    ))
}
