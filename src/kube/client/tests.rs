//! Tests of the client itself: token caching, name checks, TLS material.
//!
//! Owns: those tests. Must not: need a server (see tests/kube_client.rs for that).

use std::time::Instant;

use super::*;
use crate::kube::auth::Credentials;

#[test]
fn token_file_is_cached_and_survives_a_missing_file() {
    let dir = std::env::temp_dir().join(format!("nv-ipam-kube-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("token");
    std::fs::write(&path, "first\n").unwrap();
    let cfg = ClusterConfig {
        server: "https://127.0.0.1:1".into(),
        ca_pem: None,
        auth: Auth::TokenFile(path.clone()),
        insecure_skip_tls_verify: true,
    };
    let c = Client::new(cfg, "t").unwrap();
    assert_eq!(c.bearer().unwrap().as_deref(), Some("Bearer first"));
    // within TOKEN_REFRESH the file is not read again
    std::fs::write(&path, "second").unwrap();
    assert_eq!(c.bearer().unwrap().as_deref(), Some("Bearer first"));
    // an expired cache with an unreadable file keeps the previous token
    std::fs::remove_file(&path).unwrap();
    if let Credentials::TokenFile { cached, .. } = &*c.creds {
        let mut g = cached.lock().unwrap();
        let tok = g.as_ref().unwrap().0.clone();
        *g = Some((tok, Instant::now().checked_sub(TOKEN_REFRESH * 2).unwrap()));
    }
    assert_eq!(c.bearer().unwrap().as_deref(), Some("Bearer first"));
    std::fs::write(&path, "third").unwrap();
    if let Credentials::TokenFile { cached, .. } = &*c.creds {
        let mut g = cached.lock().unwrap();
        let tok = g.as_ref().unwrap().0.clone();
        *g = Some((tok, Instant::now().checked_sub(TOKEN_REFRESH * 2).unwrap()));
    }
    assert_eq!(c.bearer().unwrap().as_deref(), Some("Bearer third"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_names_never_reach_the_server() {
    use crate::kube::resource::{CONFIGMAPS, NODES};
    assert_eq!(object_path("get", &NODES, None, "n1").unwrap(), "/api/v1/nodes/n1");
    for (ns, name) in [(None, ""), (None, "a/b"), (Some(""), "a"), (Some("x/y"), "a"), (None, "..")]
        .into_iter()
        .chain([(None, "x?watch=true"), (None, "a#b"), (None, "a%2Fb"), (Some("n s"), "a"), (None, "a\nb")])
    {
        let e = object_path("delete", &CONFIGMAPS, ns, name).unwrap_err();
        assert!(matches!(e, KubeError::InvalidName { .. }), "{e:?}");
        assert!(!e.is_transient());
    }
    let e = object_path("delete", &CONFIGMAPS, Some("ns1"), "").unwrap_err();
    assert_eq!(
        e.to_string(),
        "delete configmaps \"\" in namespace \"ns1\": not a valid object or namespace name; names are non-empty DNS subdomains (letters, digits, '-', '.'), never '.' or '..'"
    );
}

#[test]
fn construction_checks_tls_material() {
    let cfg = |ca: Option<Vec<u8>>, auth: Auth| ClusterConfig {
        server: "https://127.0.0.1:1".into(),
        ca_pem: ca,
        auth,
        insecure_skip_tls_verify: false,
    };
    let e = Client::new(cfg(None, Auth::None), "t").err().unwrap();
    assert!(e.to_string().contains("no certificate authority"), "{e}");
    let e = Client::new(cfg(Some(b"garbage".to_vec()), Auth::None), "t").err().unwrap();
    assert!(e.to_string().contains("certificate authority: no certificate"), "{e}");
    let mut c = cfg(None, Auth::Token("x".into()));
    c.insecure_skip_tls_verify = true;
    assert!(Client::new(c.clone(), "t").is_ok());
    c.server = "http://127.0.0.1:8080".into();
    let e = Client::new(c, "t").err().unwrap();
    assert!(e.to_string().contains("must be an https:// URL"), "{e}");
}
