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
        match key {
            "K8S_POD_NAME" => args.pod.name = owned,
            "K8S_POD_NAMESPACE" => args.pod.namespace = owned,
            "K8S_POD_UID" => args.pod.uid = owned,
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
    fn malformed_pairs() {
        for s in ["FOO", "K8S_POD_NAME=p;junk", "=v"] {
            let e = parse(s).expect_err(s);
            assert!(matches!(e, ArgsError::MalformedPair { .. }), "{s}");
            assert!(e.to_string().starts_with("CNI_ARGS pair"), "{e}");
        }
    }
}
