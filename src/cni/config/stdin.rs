//! Decoding stdin: the checks every network config passes before any field is read, the
//! top-level members the plugin reads ([`NetConf`]), `cniVersion` and `name`.
//!
//! ```text
//! stdin ─ depth ≤ MAX_DEPTH (prescan, before any parser) ─ JSON (checked as a `Value` would
//!       be, no tree built) ─ an object? ─ NetConf: cniVersion, name, ipam, args, runtimeConfig, deviceID, prevResult,
//!         cni.dev/valid-attachments, cni.dev/attachments as raw slices; all else skipped unread
//! ```
//!
//! Owns: [`decode`], [`NetConf`], [`sent_version`], [`echo_version`], [`cni_version`],
//! [`network_name`]. Must
//! not: read a member a command may not use (each command reads its own, so that a DEL never
//! fails over an ADD parameter), or copy what it skips.

use serde_json::value::RawValue;

use super::json::{self, DocumentError, NotAnObject};
use super::{ConfigError, DecodeError, echo, opt_str};
use crate::cni::env::is_valid_id;
use crate::cni::version::{IMPLIED, Version};
use crate::prescan::{self, MAX_DEPTH};

/// The top-level members the plugin reads, in [`TOP_KEYS`] order.
const TOP_KEYS: [&str; 9] = [
    "cniVersion",
    "name",
    "ipam",
    "args",
    "runtimeConfig",
    "deviceID",
    "prevResult",
    "cni.dev/valid-attachments",
    "cni.dev/attachments",
];

/// The network configuration as decoded from stdin: each top-level member the plugin reads,
/// as its raw JSON text borrowed from stdin (`None` when missing or `null`). A member is read
/// into its type by the function that uses it.
#[derive(Debug, Clone, Copy, Default)]
pub struct NetConf<'a> {
    pub(super) cni_version: Option<&'a RawValue>,
    pub(super) name: Option<&'a RawValue>,
    pub(super) ipam: Option<&'a RawValue>,
    pub(super) args: Option<&'a RawValue>,
    pub(super) runtime_config: Option<&'a RawValue>,
    pub(super) device_id: Option<&'a RawValue>,
    pub(super) prev_result: Option<&'a RawValue>,
    pub(super) valid_attachments: Option<&'a RawValue>,
    pub(super) attachments: Option<&'a RawValue>,
}

/// Decodes stdin. Refusals, in order: nested deeper than [`MAX_DEPTH`] (in microseconds,
/// before any parser runs), not valid JSON (what serde_json says of it, as before), not an
/// object. A member given twice counts once, the last, as it did when stdin became a `Map`.
pub fn decode(stdin: &[u8]) -> Result<NetConf<'_>, DecodeError> {
    prescan::check_json(stdin, MAX_DEPTH).map_err(DecodeError::TooDeep)?;
    let text = json::document(stdin).map_err(|e| match e {
        DocumentError::Json(e) => DecodeError::BadJson(e),
        DocumentError::NotUtf8 { offset } => DecodeError::NotUtf8 { offset },
    })?;
    let [
        cni_version,
        name,
        ipam,
        args,
        runtime_config,
        device_id,
        prev_result,
        valid_attachments,
        attachments,
    ] = json::members(text, &TOP_KEYS).map_err(|NotAnObject| DecodeError::NotAnObject)?;
    Ok(NetConf {
        cni_version,
        name,
        ipam,
        args,
        runtime_config,
        device_id,
        prev_result,
        valid_attachments,
        attachments,
    })
}

/// What stdin says its `cniVersion` is, read leniently for echoing (VERSION, errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SentVersion {
    /// A non-empty string, even one we cannot parse.
    Sent(String),
    /// A config object without one (missing, `null` or `""`): it means 0.1.0.
    Missing,
    /// Stdin is no JSON object, or `cniVersion` is no string.
    Unknown,
}

/// Reads [`SentVersion`] from raw stdin. Decoding again costs what the first decoding costs:
/// no tree, milliseconds for 1 MiB.
pub fn sent_version(stdin: &[u8]) -> SentVersion {
    let Ok(conf) = decode(stdin) else { return SentVersion::Unknown };
    match conf.cni_version.map(json::string) {
        None => SentVersion::Missing,
        Some(None) => SentVersion::Unknown,
        Some(Some(s)) if s.is_empty() => SentVersion::Missing,
        Some(Some(s)) => SentVersion::Sent(s),
    }
}

/// The `cniVersion` string as sent, when it is a non-empty string ([`SentVersion::Sent`]).
pub fn echo_version(stdin: &[u8]) -> Option<String> {
    match sent_version(stdin) {
        SentVersion::Sent(s) => Some(s),
        SentVersion::Missing | SentVersion::Unknown => None,
    }
}

/// `cniVersion` as sent (for echoing) and parsed. Missing, `null` or `""` means 0.1.0 (spec;
/// libcni's `DecodeVersion` reads `""` so too), echoed as `0.1.0`.
pub fn cni_version(conf: &NetConf<'_>) -> Result<(String, Version), DecodeError> {
    let Some(raw) = conf.cni_version else {
        return Ok((IMPLIED.to_string(), IMPLIED));
    };
    let s = json::string(raw).ok_or(DecodeError::VersionNotAString)?;
    if s.is_empty() {
        return Ok((IMPLIED.to_string(), IMPLIED));
    }
    match Version::parse(&s) {
        Some(v) => Ok((s, v)),
        None => Err(DecodeError::BadVersionString { value: echo(&s) }),
    }
}

/// The network name: the key of the allocation space.
pub fn network_name(conf: &NetConf<'_>) -> Result<String, ConfigError> {
    let name = opt_str(conf.name, || "name".into())?.ok_or(ConfigError::MissingName)?;
    if !is_valid_id(&name) {
        return Err(ConfigError::InvalidName { name: echo(&name) });
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounded::MAX_MESSAGE_BYTES;

    #[test]
    fn names_and_versions() {
        let name = |text: &str| network_name(&decode(text.as_bytes()).expect("decodes"));
        assert!(matches!(name("{}"), Err(ConfigError::MissingName)));
        assert!(matches!(name(r#"{"name":null}"#), Err(ConfigError::MissingName)));
        assert!(matches!(name(r#"{"name":""}"#), Err(ConfigError::InvalidName { .. })));
        assert!(matches!(name(r#"{"name":"bad/name"}"#), Err(ConfigError::InvalidName { .. })));
        assert!(matches!(name(r#"{"name":1}"#), Err(ConfigError::WrongType { .. })));
        assert_eq!(name(r#"{"name":"net-1.a_b"}"#).expect("valid"), "net-1.a_b");
        let version = |text: &str| cni_version(&decode(text.as_bytes()).expect("decodes"));
        assert_eq!(version("{}").expect("implied"), ("0.1.0".to_string(), IMPLIED));
        assert_eq!(version(r#"{"cniVersion":null}"#).expect("implied"), ("0.1.0".to_string(), IMPLIED));
        assert_eq!(version(r#"{"cniVersion":""}"#).expect("implied"), ("0.1.0".to_string(), IMPLIED));
        assert_eq!(version(r#"{"cniVersion":"1.1.0"}"#).expect("ok").0, "1.1.0");
        assert!(matches!(version(r#"{"cniVersion":"abc"}"#), Err(DecodeError::BadVersionString { .. })));
        assert!(matches!(version(r#"{"cniVersion":1}"#), Err(DecodeError::VersionNotAString)));
        assert_eq!(echo_version(br#"{"cniVersion":"9.9"}"#).as_deref(), Some("9.9"));
        assert_eq!(echo_version(b"garbage"), None);
        assert_eq!(echo_version(br#"{"cniVersion":"9.9","cniVersion":"1"}"#).as_deref(), Some("1"));
        assert_eq!(echo_version(br#"{"cniVersion":""}"#), None);
        assert_eq!(sent_version(br#"{"cniVersion":"9.9"}"#), SentVersion::Sent("9.9".into()));
        for missing in [&br#"{}"#[..], br#"{"cniVersion":null}"#, br#"{"cniVersion":""}"#] {
            assert_eq!(sent_version(missing), SentVersion::Missing);
        }
        for unknown in [&b"garbage"[..], b"", b"[]", br#"{"cniVersion":1}"#, br#"{"cniVersion":{}}"#] {
            assert_eq!(sent_version(unknown), SentVersion::Unknown);
        }
    }

    #[test]
    fn stdin_that_is_no_object_is_refused_in_order() {
        assert!(matches!(decode(b"[1]"), Err(DecodeError::NotAnObject)));
        assert!(matches!(decode(b"garbage"), Err(DecodeError::BadJson(_))));
        let e = decode(b"{\"name\":\"\xff\"}").expect_err("not UTF-8");
        assert_eq!(e.to_string(), "stdin is not valid JSON: invalid unicode code point at line 1 column 10");
        assert!(matches!(decode(br#"{"name":"a"} {}"#), Err(DecodeError::BadJson(_))));
        // in a member nobody reads, as before: serde_json's Value refused these
        assert!(matches!(decode(br#"{"name":"a","x":[1e400]}"#), Err(DecodeError::BadJson(_))));
        assert!(matches!(decode(br#"{"name":"a","x":{"y":"\ud800"}}"#), Err(DecodeError::BadJson(_))));
    }

    #[test]
    fn a_member_given_twice_counts_once_the_last() {
        let conf = decode(br#"{"name":"a","x":[],"name":"b","ipam":{},"ipam":null}"#).expect("decodes");
        assert_eq!(network_name(&conf).expect("valid"), "b");
        assert!(conf.ipam.is_none());
        decode(br#"{"name":"a","x":1,"x":2}"#).expect("unknown keys repeat too");
    }

    #[test]
    fn depth_is_refused_before_parsing_and_at_the_limit_is_fine() {
        let deep = |n: usize| format!("{{\"x\":{}0{}}}", "[".repeat(n), "]".repeat(n));
        decode(deep(MAX_DEPTH - 1).as_bytes()).expect("the object is level 1: 63 more fit");
        let e = decode(deep(MAX_DEPTH).as_bytes()).expect_err("65 levels");
        assert!(e.to_string().starts_with("stdin is nested deeper than the limit of 64 levels"), "{e}");
        // even when it is no valid JSON: the depth is judged first
        let e = decode(format!("{{\"x\":{}", "[".repeat(100_000)).as_bytes()).expect_err("deep");
        assert!(matches!(e, DecodeError::TooDeep(_)), "{e}");
    }

    #[test]
    fn long_values_are_clipped_where_errors_quote_them() {
        let long = "v".repeat(1 << 20);
        let e = cni_version(&decode(format!(r#"{{"cniVersion":"{long}"}}"#).as_bytes()).expect("decodes"))
            .expect_err("not a version");
        assert!(e.to_string().len() < 2 * MAX_MESSAGE_BYTES, "{}", e.to_string().len());
        assert_eq!(echo_version(format!(r#"{{"cniVersion":"{long}"}}"#).as_bytes()), Some(long.clone()));
        let e = network_name(&decode(format!(r#"{{"name":"/{long}"}}"#).as_bytes()).expect("decodes"))
            .expect_err("invalid");
        assert!(e.to_string().len() < 2 * MAX_MESSAGE_BYTES, "{}", e.to_string().len());
    }
}
