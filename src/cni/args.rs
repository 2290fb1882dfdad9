//! `CNI_ARGS`: `;`-separated `KEY=VALUE` pairs (CNI spec, conventions).
//!
//! Read: `K8S_POD_NAME`, `K8S_POD_NAMESPACE`, `K8S_POD_UID` (all optional: podman, nerdctl and
//! other non-Kubernetes runtimes send none), and `IP` (a static address request, the weakest of
//! the three sources; a comma-separated list is accepted for dual stack, each `ip` or
//! `ip/len`, the length dropped). Every other key is accepted and ignored whether or not
//! `IgnoreUnknown` is present (host-local's rejection of unknown keys breaks callers that add
//! their own; `IgnoreUnknown` may be 1, true, 0 or false and changes nothing here).
//!
//! Decision: a malformed pair (no `=`, or an empty key) and an unparsable `IP=` are CNI code 4
//! ("invalid environment variables"), naming `CNI_ARGS` and the pair: the problem is in an
//! environment variable, not in the network config. Only ADD parses `CNI_ARGS`: DEL and CHECK
//! need none of its keys, and a DEL must not fail forever over an argument it does not use.
//!
//! Decision: `K8S_POD_NAMESPACE`, `K8S_POD_NAME` and `K8S_POD_UID` that are not Kubernetes
//! names (a DNS label, a DNS subdomain, a UID of letters, digits and `-`) are dropped, as if
//! absent, and listed in [`CniArgs::ignored`] for one warning each: ipam-node puts the pod's
//! namespace and name into an API path for its stale-reservation check, where a `?`, `#` or
//! `%` would change the request. Dropping keeps the call as it would be without the value.
//!
//! Must not: read the process environment (the caller passes the string).

use std::fmt;
use std::net::IpAddr;

use crate::protocol::PodRef;

/// What the plugin takes from `CNI_ARGS`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pub pod: PodRef,
    /// `IP=`, prefix lengths stripped, in the order given.
    pub ips: Vec<IpAddr>,
    /// `K8S_POD_*` pairs dropped because their value is not a Kubernetes name: (key, value).
    pub ignored: Vec<(String, String)>,
}

/// Longest Kubernetes namespace (a DNS-1123 label, RFC 1123).
pub const MAX_NAMESPACE_BYTES: usize = 63;
/// Longest Kubernetes object name (a DNS-1123 subdomain, RFC 1123).
pub const MAX_POD_NAME_BYTES: usize = 253;
/// Longest pod UID accepted: Kubernetes UIDs are 36-byte UUIDs (static pods: 32 hex digits);
/// 128 leaves room for other runtimes' formats without admitting arbitrary text.
pub const MAX_POD_UID_BYTES: usize = 128;

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?` of at most `max` bytes; with `dots`, several of them joined
/// by `.` (a DNS-1123 subdomain).
fn dns_name(s: &str, max: usize, dots: bool) -> bool {
    let label = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    };
    s.len() <= max && if dots { s.split('.').all(label) } else { label(s) }
}

fn pod_uid(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_POD_UID_BYTES && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Why `CNI_ARGS` could not be read. CNI code 4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgsError {
    MalformedPair { pair: String },
    BadIp { value: String },
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgsError::MalformedPair { pair } => {
                write!(f, "CNI_ARGS pair {pair:?} is malformed; expected KEY=VALUE pairs separated by ';'")
            }
            ArgsError::BadIp { value } => write!(
                f,
                "CNI_ARGS IP={value:?} is not an IP address; expected IP=<ip>[/<len>][,<ip>[/<len>]]"
            ),
        }
    }
}

impl std::error::Error for ArgsError {}

/// Parses a `CNI_ARGS` value. Empty segments (a trailing `;`) are skipped; a value may contain
/// `=` (only the first one splits); an empty value counts as absent.
pub fn parse(s: &str) -> Result<CniArgs, ArgsError> {
    let mut args = CniArgs::default();
    for pair in s.split(';').filter(|p| !p.trim().is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(ArgsError::MalformedPair { pair: pair.to_string() });
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(ArgsError::MalformedPair { pair: pair.to_string() });
        }
        let value = value.trim();
        let owned = (!value.is_empty()).then(|| value.to_string());
        let checked = |ok: bool, args: &mut CniArgs| {
            if owned.is_some() && !ok {
                args.ignored.push((key.to_string(), value.to_string()));
                return None;
            }
            owned.clone()
        };
        match key {
            "K8S_POD_NAME" => args.pod.name = checked(dns_name(value, MAX_POD_NAME_BYTES, true), &mut args),
            "K8S_POD_NAMESPACE" => {
                args.pod.namespace = checked(dns_name(value, MAX_NAMESPACE_BYTES, false), &mut args)
            }
            "K8S_POD_UID" => args.pod.uid = checked(pod_uid(value), &mut args),
            "IP" if !value.is_empty() => {
                args.ips = value
                    .split(',')
                    .map(|ip| {
                        parse_ip(ip.trim()).ok_or_else(|| ArgsError::BadIp { value: value.to_string() })
                    })
                    .collect::<Result<_, _>>()?;
            }
            _ => {}
        }
    }
    Ok(args)
}

/// `ip` or `ip/len` (any length: only the address is requested, the pool decides the mask).
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    let addr = match s.split_once('/') {
        Some((addr, len)) => {
            len.parse::<u8>().ok()?;
            addr
        }
        None => s,
    };
    addr.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerd_style() {
        let a = parse("IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=c1;K8S_POD_UID=u1")
            .expect("valid");
        assert_eq!(
            a.pod,
            PodRef { name: Some("p".into()), namespace: Some("ns".into()), uid: Some("u1".into()) }
        );
        assert!(a.ips.is_empty());
    }

    #[test]
    fn unknown_keys_with_or_without_ignore_unknown() {
        for s in [
            "IgnoreUnknown=true;FOO=bar;K8S_POD_NAME=p",
            "FOO=bar;K8S_POD_NAME=p",
            "IgnoreUnknown=0;FOO=bar;K8S_POD_NAME=p",
        ] {
            assert_eq!(parse(s).expect(s).pod.name.as_deref(), Some("p"));
        }
    }

    #[test]
    fn empty_and_lenient_forms() {
        assert_eq!(parse(""), Ok(CniArgs::default()));
        assert_eq!(parse(";;K8S_POD_NAME=;"), Ok(CniArgs::default()));
        assert_eq!(parse("FOO=a=b").expect("= in value").pod, PodRef::default());
    }

    #[test]
    fn static_ip() {
        assert_eq!(
            parse("IP=192.168.77.52").expect("ip").ips,
            vec!["192.168.77.52".parse::<IpAddr>().expect("ip")]
        );
        let ips = parse("IP=10.0.0.5/24,fd00::5/64").expect("dual").ips;
        assert_eq!(ips, vec!["10.0.0.5".parse::<IpAddr>().expect("v4"), "fd00::5".parse().expect("v6")]);
        let e = parse("IP=10.0.0.300").expect_err("bad ip");
        assert_eq!(e, ArgsError::BadIp { value: "10.0.0.300".into() });
        assert!(e.to_string().contains("CNI_ARGS IP="), "{e}");
        assert!(parse("IP=10.0.0.1/xx").is_err());
    }

    #[test]
    fn pod_values_that_are_not_kubernetes_names_are_dropped() {
        let a = parse("K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=web-0.a-b;K8S_POD_UID=0b6f3c2e-1d2a-4e5f-9a8b-7c6d5e4f3a2b")
            .expect("valid");
        assert_eq!(a.pod.namespace.as_deref(), Some("kube-system"));
        assert_eq!(a.pod.name.as_deref(), Some("web-0.a-b"));
        assert!(a.ignored.is_empty());
        for (pair, key) in [
            ("K8S_POD_NAME=x?watch=true", "K8S_POD_NAME"),
            ("K8S_POD_NAME=a#b", "K8S_POD_NAME"),
            ("K8S_POD_NAME=a%2Fb", "K8S_POD_NAME"),
            ("K8S_POD_NAME=p\nforged\u{1b}[2J", "K8S_POD_NAME"),
            ("K8S_POD_NAME=Upper", "K8S_POD_NAME"),
            ("K8S_POD_NAME=-a", "K8S_POD_NAME"),
            ("K8S_POD_NAME=a..b", "K8S_POD_NAME"),
            ("K8S_POD_NAMESPACE=a.b", "K8S_POD_NAMESPACE"),
            ("K8S_POD_NAMESPACE=..", "K8S_POD_NAMESPACE"),
            ("K8S_POD_UID=u/../x", "K8S_POD_UID"),
        ] {
            let a = parse(pair).expect("dropped, not an error");
            assert_eq!(a.pod, PodRef::default(), "{pair:?}");
            assert_eq!(a.ignored.len(), 1, "{pair:?}");
            assert_eq!(a.ignored[0].0, key);
        }
        // At the limits and one over.
        let ns = "a".repeat(MAX_NAMESPACE_BYTES);
        assert_eq!(parse(&format!("K8S_POD_NAMESPACE={ns}")).expect("63").pod.namespace, Some(ns.clone()));
        assert_eq!(parse(&format!("K8S_POD_NAMESPACE={ns}a")).expect("64").ignored.len(), 1);
        let name = format!("{}.{}", "a".repeat(63), "b".repeat(MAX_POD_NAME_BYTES - 64));
        assert_eq!(parse(&format!("K8S_POD_NAME={name}")).expect("253").pod.name, Some(name.clone()));
        assert_eq!(parse(&format!("K8S_POD_NAME={name}c")).expect("254").ignored.len(), 1);
        let uid = "f".repeat(MAX_POD_UID_BYTES);
        assert_eq!(parse(&format!("K8S_POD_UID={uid}")).expect("128").pod.uid, Some(uid.clone()));
        assert_eq!(parse(&format!("K8S_POD_UID={uid}f")).expect("129").ignored.len(), 1);
    }

    #[test]
    fn malformed_pairs() {
        for s in ["FOO", "K8S_POD_NAME=p;junk", "=v"] {
            let e = parse(s).expect_err(s);
            assert!(matches!(e, ArgsError::MalformedPair { .. }), "{s}");
            assert!(e.to_string().starts_with("CNI_ARGS pair"), "{e}");
        }
    }
}
