//! The one error type of the Kubernetes client: [`KubeError`].
//!
//! Owns: the error variants, their Display (one lower-case line naming the request and the way
//! out) and the classification helpers (`is_not_found`, `is_conflict`, `is_gone`,
//! `is_transient`). Must not: log, retry or decide policy; callers (the reflector, the
//! controller) do that.

use std::fmt;

/// Why a request to (or the configuration for) the Kubernetes API failed.
///
/// `Status` carries every answer of the API server that is not a success (401, 403, 404, 409,
/// 410, 422, 429, 5xx), including `ERROR` events inside a watch stream. Its `message` starts
/// with the request (`"POST /api/v1/namespaces: "`) followed by the server's own message, so that
/// the Display of a bare `Status` still names the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeError {
    /// The kubeconfig, the in-cluster files or the TLS material are unusable.
    Config {
        /// Where the configuration came from: a kubeconfig path, `in-cluster`, `client`.
        origin: String,
        /// What is wrong, naming the field.
        detail: String,
    },
    /// The connection failed (DNS, TCP, TLS, reset, EOF in the middle of a response).
    Transport { verb: &'static str, path: String, detail: String },
    /// A timeout fired (connect, response headers, or a read of the body).
    Timeout { verb: &'static str, path: String, detail: String },
    /// The answer (or a watch event) was not the JSON we expected, or was too large.
    Decode { verb: &'static str, path: String, detail: String },
    /// The API server answered with an error status (or a watch `ERROR` event).
    Status { code: u16, reason: String, message: String },
    /// A name or namespace that would address a different path (empty, `/`, `..`, `?`, `%`); refused
    /// before sending, e.g. an empty name would turn a delete into a collection delete.
    InvalidName { verb: &'static str, resource: &'static str, namespace: String, name: String },
}

impl KubeError {
    /// The HTTP status code of a `Status` error.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            KubeError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status_code() == Some(404)
    }

    /// 409: a stale `metadata.resourceVersion` on replace, or AlreadyExists on create.
    pub fn is_conflict(&self) -> bool {
        self.status_code() == Some(409)
    }

    /// 410: the resourceVersion (or continue token) is too old; relist.
    pub fn is_gone(&self) -> bool {
        self.status_code() == Some(410)
    }

    /// Worth retrying the same request later: network trouble, timeouts, throttling, server
    /// errors. Not: bad requests, RBAC, not found, conflicts, decode errors, configuration.
    pub fn is_transient(&self) -> bool {
        match self {
            KubeError::Transport { .. } | KubeError::Timeout { .. } => true,
            KubeError::Status { code, .. } => matches!(code, 429 | 500 | 502 | 503 | 504),
            KubeError::Config { .. } | KubeError::Decode { .. } | KubeError::InvalidName { .. } => false,
        }
    }
}

/// The way out for a status code, appended to the Display of `Status`.
fn status_hint(code: u16) -> &'static str {
    match code {
        401 => "unauthorized: check the token or client certificate of the kubeconfig / service account",
        403 => "forbidden: check the ClusterRole/Role and its binding for this identity",
        404 => "not found: check the name, namespace, and that the CRDs are installed",
        409 => "conflict: re-read the object and retry with its current resourceVersion",
        410 => "gone: the resourceVersion is too old; relist",
        422 => "invalid: fix the object named in the message",
        429 => "throttled: retry later",
        500..=599 => "server error: retry later; check the apiserver",
        _ => "unexpected status",
    }
}

impl fmt::Display for KubeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KubeError::Config { origin, detail } => {
                write!(f, "kubernetes config {origin}: {detail}")
            }
            KubeError::Transport { verb, path, detail } => write!(
                f,
                "{verb} {path}: connection to the apiserver failed: {detail}; check the server address, network and CA"
            ),
            KubeError::Timeout { verb, path, detail } => {
                write!(f, "{verb} {path}: timed out ({detail}); the apiserver is slow or unreachable, retry")
            }
            KubeError::Decode { verb, path, detail } => write!(
                f,
                "{verb} {path}: unexpected answer: {detail}; check that the apiserver and CRD versions match"
            ),
            KubeError::InvalidName { verb, resource, namespace, name } => {
                write!(f, "{verb} {resource} {name:?}")?;
                if !namespace.is_empty() {
                    write!(f, " in namespace {namespace:?}")?;
                }
                write!(
                    f,
                    ": not a valid object or namespace name; names are non-empty DNS subdomains (letters, digits, '-', '.'), never '.' or '..'"
                )
            }
            KubeError::Status { code, reason, message } => {
                let reason = if reason.is_empty() { "status" } else { reason.as_str() };
                write!(f, "{message} ({code} {reason}); {}", status_hint(*code))
            }
        }
    }
}

impl std::error::Error for KubeError {}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn status(code: u16) -> KubeError {
        KubeError::Status { code, reason: String::new(), message: "post /api/v1/namespaces: no".into() }
    }

    #[test]
    fn classification() {
        assert!(status(404).is_not_found());
        assert!(status(409).is_conflict());
        assert!(status(410).is_gone());
        assert!(status(503).is_transient());
        assert!(!status(403).is_transient());
        assert_eq!(status(401).status_code(), Some(401));
        let t = KubeError::Timeout { verb: "get", path: "/api".into(), detail: "per read".into() };
        assert!(t.is_transient());
        assert_eq!(t.status_code(), None);
    }

    #[test]
    fn display_names_request_and_fix() {
        let s = status(403).to_string();
        assert!(
            s.starts_with("post /api/v1/namespaces: no (403 status); forbidden: check the ClusterRole"),
            "{s}"
        );
    }
}
