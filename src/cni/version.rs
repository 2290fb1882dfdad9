//! CNI spec versions: which ones the plugin speaks, semver comparison, and the VERSION answer.
//!
//! Owns: the supported-version list and what each version allows (CHECK from 0.4.0, GC and
//! STATUS from 1.1.0, the `ips[].version` field below 1.0.0). Must not: read env or stdin.
//!
//! Why not 0.1.0/0.2.0: their result shape (`ip4`/`ip6`) can carry only one address per
//! family and hangs routes under it; no runtime or multus release we target sends them, and
//! the spec lets a plugin refuse them with code 1. Why not 0.3.0: it has the 0.3.1 shape but
//! was superseded within weeks (0.3.1 only fixed its documentation); every main plugin that
//! speaks 0.3.0 also speaks 0.3.1, and claiming exactly what we test keeps the list honest.

use std::cmp::Ordering;
use std::fmt;

/// The versions this plugin answers in, oldest first, as the VERSION command lists them.
pub const SUPPORTED: [Version; 4] =
    [Version::new(0, 3, 1), Version::new(0, 4, 0), Version::new(1, 0, 0), Version::new(1, 1, 0)];

/// The newest supported version: used to answer when the request names none we can echo.
pub const LATEST: Version = Version::new(1, 1, 0);

/// CHECK exists from this version on (spec 0.4.0).
pub const CHECK_SINCE: Version = Version::new(0, 4, 0);

/// GC and STATUS exist from this version on (spec 1.1.0).
pub const GC_STATUS_SINCE: Version = Version::new(1, 1, 0);

/// The version a config without `cniVersion` implies (spec: missing means 0.1.0).
pub const IMPLIED: Version = Version::new(0, 1, 0);

/// A `major.minor.patch` version, compared numerically (so 0.10.0 > 0.4.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Version {
        Version { major, minor, patch }
    }

    /// Parses `X.Y.Z` (decimal digits only, no `v` prefix, no pre-release suffix: the CNI
    /// versions have none). `None` for anything else.
    pub fn parse(s: &str) -> Option<Version> {
        let mut parts = s.split('.');
        let mut next = || -> Option<u32> {
            let p = parts.next()?;
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            p.parse().ok()
        };
        let v = Version::new(next()?, next()?, next()?);
        if parts.next().is_some() {
            return None;
        }
        Some(v)
    }

    pub fn is_supported(self) -> bool {
        SUPPORTED.contains(&self)
    }

    /// 0.3.x and 0.4.0 results carry `"version":"4"|"6"` in each `ips` entry; 1.x dropped it.
    pub fn ips_carry_version(self) -> bool {
        self < Version::new(1, 0, 0)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Version) -> Ordering {
        (self.major, self.minor, self.patch).cmp(&(other.major, other.minor, other.patch))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Version) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The supported list as `0.3.1, 0.4.0, ...` for error details.
pub fn supported_list() -> String {
    SUPPORTED.iter().map(Version::to_string).collect::<Vec<_>>().join(", ")
}

/// The VERSION answer: `{"cniVersion":<echo>,"supportedVersions":[...]}`. `echo` is the
/// request's `cniVersion` as sent (the spec asks for it to be echoed, whatever it is).
pub fn version_reply(echo: &str) -> serde_json::Value {
    let supported: Vec<String> = SUPPORTED.iter().map(Version::to_string).collect();
    serde_json::json!({"cniVersion": echo, "supportedVersions": supported})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_compare_as_numbers() {
        assert_eq!(Version::parse("1.1.0"), Some(Version::new(1, 1, 0)));
        assert!(Version::parse("0.10.0") > Version::parse("0.4.0"));
        assert!(Version::parse("1.0.0") > Version::parse("0.4.0"));
        for bad in
            ["", "1", "1.0", "1.0.0.0", "v1.0.0", "1.0.0-rc1", "1..0", "a.b.c", " 1.0.0", "99999999999.0.0"]
        {
            assert_eq!(Version::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn supported_set() {
        for v in ["0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
            assert!(Version::parse(v).expect("parses").is_supported(), "{v}");
        }
        for v in ["0.1.0", "0.2.0", "0.3.0", "1.2.0", "2.0.0"] {
            assert!(!Version::parse(v).expect("parses").is_supported(), "{v}");
        }
        assert_eq!(supported_list(), "0.3.1, 0.4.0, 1.0.0, 1.1.0");
    }

    #[test]
    fn verbs_by_version() {
        assert!(Version::new(0, 3, 1) < CHECK_SINCE);
        assert!(Version::new(1, 0, 0) < GC_STATUS_SINCE);
        assert!(Version::new(0, 4, 0).ips_carry_version());
        assert!(!Version::new(1, 0, 0).ips_carry_version());
    }

    #[test]
    fn version_answer_echoes() {
        let v = version_reply("0.4.0");
        assert_eq!(v["cniVersion"], "0.4.0");
        assert_eq!(v["supportedVersions"], serde_json::json!(["0.3.1", "0.4.0", "1.0.0", "1.1.0"]));
    }
}
