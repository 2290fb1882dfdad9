//! CNI spec versions: which ones the plugin speaks, semver comparison, the result shape each
//! one uses, and the VERSION answer.
//!
//! Owns: the supported-version list and what each version allows (CHECK from 0.4.0, GC and
//! STATUS from 1.1.0, the result shape: `ip4`/`ip6` below 0.3.0, `ips[].version` below 1.0.0).
//! Must not: read env or stdin.
//!
//! The list is libcni's `version.All`, which the reference plugin hands to its skel: every
//! version a runtime or a NetworkAttachmentDefinition may name, down to 0.1.0 (old NADs still say
//! 0.3.0; a config without `cniVersion` means 0.1.0). Results are converted to each one as
//! libcni converts a 1.x result (`cni::result`).

use std::cmp::Ordering;
use std::fmt;

/// The versions this plugin answers in, oldest first, as the VERSION command lists them: libcni's
/// `version.All` (containernetworking/cni v1.3.0, the library the reference is built with).
pub const SUPPORTED: [Version; 7] = [
    Version::new(0, 1, 0),
    Version::new(0, 2, 0),
    Version::new(0, 3, 0),
    Version::new(0, 3, 1),
    Version::new(0, 4, 0),
    Version::new(1, 0, 0),
    Version::new(1, 1, 0),
];

/// The newest supported version: used to answer when the request names none we can echo.
pub const LATEST: Version = Version::new(1, 1, 0);

/// CHECK exists from this version on (spec 0.4.0).
pub const CHECK_SINCE: Version = Version::new(0, 4, 0);

/// GC and STATUS exist from this version on (spec 1.1.0).
pub const GC_STATUS_SINCE: Version = Version::new(1, 1, 0);

/// The version a config without `cniVersion` implies (spec: missing means 0.1.0; libcni also
/// reads an empty string so).
pub const IMPLIED: Version = Version::new(0, 1, 0);

/// How a result of a version is laid out: the spec at each version's tag
/// (https://github.com/containernetworking/cni/blob/spec-v1.1.0/SPEC.md and earlier tags), and
/// libcni's result types of each layout (https://pkg.go.dev/github.com/containernetworking/cni/pkg/types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultShape {
    /// 0.1.0, 0.2.0: `ip4` and `ip6` objects (`ip`, `gateway`, `routes`), one address per family.
    PerFamily,
    /// 0.3.0, 0.3.1, 0.4.0: `ips` with `"version":"4"|"6"`, top-level `routes`.
    VersionedIps,
    /// 1.0.0, 1.1.0: `ips` without `version`.
    Ips,
}

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

    /// The result layout of this version. Defined for every version (a `prevResult` may name
    /// one we do not speak): below 0.3.0 per family, below 1.0.0 with `ips[].version`.
    pub fn result_shape(self) -> ResultShape {
        if self < Version::new(0, 3, 0) {
            ResultShape::PerFamily
        } else if self < Version::new(1, 0, 0) {
            ResultShape::VersionedIps
        } else {
            ResultShape::Ips
        }
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

/// The supported list as `0.1.0, 0.2.0, ...` for error details.
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

    /// libcni v1.3.0 `version.All`, as the reference's VERSION answer lists it.
    const LIBCNI_ALL: [&str; 7] = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

    #[test]
    fn supported_set_is_libcnis() {
        for v in LIBCNI_ALL {
            assert!(Version::parse(v).expect("parses").is_supported(), "{v}");
        }
        for v in ["0.0.0", "0.0.1", "0.2.1", "0.3.2", "0.4.1", "0.5.0", "1.0.1", "1.2.0", "2.0.0"] {
            assert!(!Version::parse(v).expect("parses").is_supported(), "{v}");
        }
        assert_eq!(supported_list(), LIBCNI_ALL.join(", "));
        assert_eq!(Some(LATEST), SUPPORTED.last().copied());
        assert!(IMPLIED.is_supported());
        assert!(SUPPORTED.windows(2).all(|w| w[0] < w[1]), "oldest first");
    }

    #[test]
    fn verbs_by_version() {
        assert!(Version::new(0, 3, 1) < CHECK_SINCE);
        assert!(Version::new(0, 4, 0) >= CHECK_SINCE);
        assert!(Version::new(1, 0, 0) < GC_STATUS_SINCE);
        assert!(Version::new(1, 1, 0) >= GC_STATUS_SINCE);
    }

    #[test]
    fn result_shapes_by_version() {
        let shape = |s: &str| Version::parse(s).expect("parses").result_shape();
        for v in ["0.0.0", "0.1.0", "0.2.0", "0.2.9"] {
            assert_eq!(shape(v), ResultShape::PerFamily, "{v}");
        }
        for v in ["0.3.0", "0.3.1", "0.4.0", "0.99.0"] {
            assert_eq!(shape(v), ResultShape::VersionedIps, "{v}");
        }
        for v in ["1.0.0", "1.1.0", "2.0.0"] {
            assert_eq!(shape(v), ResultShape::Ips, "{v}");
        }
    }

    #[test]
    fn version_answer_echoes_and_lists_all() {
        let v = version_reply("0.4.0");
        assert_eq!(v["cniVersion"], "0.4.0");
        assert_eq!(v["supportedVersions"], serde_json::json!(LIBCNI_ALL));
    }
}
