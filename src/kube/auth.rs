//! Who the client is to the API server: the TLS material checks run when the client is built
//! (CA bundle, a client certificate that matches its key) and the bearer token of each
//! request (a token file is re-read at most every [`TOKEN_REFRESH`], so rotation works).
//!
//! Owns: [`Credentials`] and the PEM checks. Must not: open connections or send requests (see
//! `client`).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use ureq::tls::{ClientCert, PemItem, PrivateKey};

use super::client::TOKEN_REFRESH;
use super::error::KubeError;

/// How each request proves who we are (a client certificate is part of the TLS config).
pub(super) enum Credentials {
    None,
    Token(String),
    TokenFile { path: PathBuf, cached: Mutex<Option<(String, Instant)>> },
}

pub(super) fn config_err(detail: impl Into<String>) -> KubeError {
    KubeError::Config { origin: "client".into(), detail: detail.into() }
}

pub(super) fn parse_certs(what: &str, pem: &[u8]) -> Result<Vec<ureq::tls::Certificate<'static>>, KubeError> {
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => return Err(config_err(format!("{what}: bad PEM: {e}"))),
        }
    }
    if certs.is_empty() {
        return Err(config_err(format!("{what}: no certificate in the PEM data")));
    }
    Ok(certs)
}

/// Checks that the client certificate and key belong together; ureq panics on the first
/// connect otherwise.
pub(super) fn client_cert(cert_pem: &[u8], key_pem: &[u8]) -> Result<ClientCert, KubeError> {
    use rustls::pki_types::pem::PemObject as _;
    let chain = parse_certs("client certificate", cert_pem)?;
    let key = PrivateKey::from_pem(key_pem).map_err(|e| config_err(format!("client key: {e}")))?;
    let key_der = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| config_err(format!("client key: {e}")))?;
    let chain_der = chain.iter().map(|c| rustls::pki_types::CertificateDer::from(c.der().to_vec())).collect();
    rustls::sign::CertifiedKey::from_der(chain_der, key_der, &rustls::crypto::ring::default_provider())
        .map_err(|e| config_err(format!("client certificate and key do not match: {e}")))?;
    Ok(ClientCert::new_with_certs(&chain, key))
}

impl Credentials {
    /// The `Authorization` header value, if any.
    pub(super) fn bearer(&self) -> Result<Option<String>, KubeError> {
        match self {
            Credentials::None => Ok(None),
            Credentials::Token(t) => Ok(Some(format!("Bearer {t}"))),
            Credentials::TokenFile { path, cached } => {
                let mut guard = cached.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((tok, at)) = &*guard
                    && at.elapsed() < TOKEN_REFRESH
                {
                    return Ok(Some(format!("Bearer {tok}")));
                }
                match std::fs::read_to_string(path) {
                    Ok(t) if !t.trim().is_empty() => {
                        let t = t.trim().to_string();
                        *guard = Some((t.clone(), Instant::now()));
                        Ok(Some(format!("Bearer {t}")))
                    }
                    res => {
                        let why = match res {
                            Ok(_) => "empty".to_string(),
                            Err(e) => e.to_string(),
                        };
                        // a rotation in progress: keep using the token we have
                        if let Some((tok, _)) = &*guard {
                            log::warn!("token file {}: {why}; using the previous token", path.display());
                            return Ok(Some(format!("Bearer {tok}")));
                        }
                        Err(KubeError::Config {
                            origin: path.display().to_string(),
                            detail: format!("cannot read the token file: {why}"),
                        })
                    }
                }
            }
        }
    }
}
