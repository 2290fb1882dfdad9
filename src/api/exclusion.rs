//! Exclusions as written in a pool spec: address ranges (`exclusions`) and per-node index
//! ranges (`perNodeExclusions`), plus the validated index range.
//!
//! Owns: the wire shapes [`ExcludeRange`] and [`ExcludeIndexRange`] and the validated
//! [`IndexRange`]. Must not: validate (see `validate`) or turn indexes into addresses for a
//! particular block (see `alloc`).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::ip::{self, IpRange};

/// `{startIP, endIP}`: an inclusive address range, kept as text so bad input can be reported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExcludeRange {
    #[serde(rename = "startIP", default)]
    pub start_ip: String,
    #[serde(rename = "endIP", default)]
    pub end_ip: String,
}

/// `{startIndex, endIndex}`: an inclusive range of offsets inside every node's block/prefix.
/// int32 on the wire; read as i64 so that out-of-range values are reported by field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExcludeIndexRange {
    #[serde(default)]
    pub start_index: i64,
    #[serde(default)]
    pub end_index: i64,
}

/// A validated per-node index range, `start <= end`, both within the pool's largest index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexRange {
    pub start: u128,
    pub end: u128,
}

impl IndexRange {
    /// The addresses `base + start ..= base + end`, clamped to `bounds`; `None` when nothing of
    /// it falls inside `bounds` (the reference drops such ranges).
    pub fn to_ip_range(&self, base: IpAddr, bounds: &IpRange) -> Option<IpRange> {
        let family = ip::Family::of(base);
        let b = ip::to_u128(base);
        let s = b.checked_add(self.start)?;
        let e = b.saturating_add(self.end).min(family.max_value());
        let s = ip::from_u128(s, family)?;
        let e = ip::from_u128(e, family)?;
        IpRange::new(s, e)?.intersect(bounds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn index_range_is_clamped_or_dropped() {
        let block = IpRange::new(ip("10.0.0.11"), ip("10.0.0.20")).expect("range");
        let r = IndexRange { start: 5, end: 15 };
        assert_eq!(r.to_ip_range(ip("10.0.0.11"), &block), IpRange::new(ip("10.0.0.16"), ip("10.0.0.20")));
        assert_eq!(IndexRange { start: 10, end: 12 }.to_ip_range(ip("10.0.0.11"), &block), None);
        let top = IpRange::new(ip("255.255.255.250"), ip("255.255.255.255")).expect("range");
        assert_eq!(
            IndexRange { start: 2, end: 100 }.to_ip_range(ip("255.255.255.250"), &top),
            IpRange::new(ip("255.255.255.252"), ip("255.255.255.255"))
        );
    }
}
