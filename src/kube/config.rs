//! Where the API server is and who we are: [`ClusterConfig`] from a kubeconfig or from the
//! in-cluster service account.
//!
//! Owns: kubeconfig parsing (current-context; token, tokenFile, client-certificate(-data),
//! client-key(-data), certificate-authority(-data), insecure-skip-tls-verify; relative paths
//! resolved against the kubeconfig's directory) and the in-cluster environment. Must not: build
//! TLS or open connections ([`super::client::Client::new`] validates the material).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use super::error::KubeError;

/// The service-account directory mounted into every pod.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// How to reach one API server as one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Base URL without a trailing slash, e.g. `https://10.0.0.1:443`.
    pub server: String,
    /// CA bundle (PEM) to trust; `None` only with `insecure_skip_tls_verify`.
    pub ca_pem: Option<Vec<u8>>,
    pub auth: Auth,
    pub insecure_skip_tls_verify: bool,
}

/// Credentials sent with each request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    Token(String),
    /// A token file, re-read periodically: bound service-account tokens rotate.
    TokenFile(PathBuf),
    ClientCert {
        cert_pem: Vec<u8>,
        key_pem: Vec<u8>,
    },
}

#[derive(Deserialize)]
struct KubeConfig {
    #[serde(rename = "current-context", default)]
    current_context: String,
    #[serde(default)]
    clusters: Vec<Named<Cluster>>,
    #[serde(default)]
    users: Vec<NamedUser>,
    #[serde(default)]
    contexts: Vec<NamedContext>,
}

#[derive(Deserialize)]
struct Named<T> {
    name: String,
    cluster: T,
}

#[derive(Deserialize)]
struct Cluster {
    server: String,
    #[serde(rename = "certificate-authority-data")]
    certificate_authority_data: Option<String>,
    #[serde(rename = "certificate-authority")]
    certificate_authority: Option<PathBuf>,
    #[serde(rename = "insecure-skip-tls-verify", default)]
    insecure_skip_tls_verify: bool,
}

#[derive(Deserialize)]
struct NamedUser {
    name: String,
    #[serde(default)]
    user: User,
}

#[derive(Deserialize, Default)]
struct User {
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<PathBuf>,
    #[serde(rename = "client-certificate-data")]
    client_certificate_data: Option<String>,
    #[serde(rename = "client-certificate")]
    client_certificate: Option<PathBuf>,
    #[serde(rename = "client-key-data")]
    client_key_data: Option<String>,
    #[serde(rename = "client-key")]
    client_key: Option<PathBuf>,
    exec: Option<serde_json::Value>,
    #[serde(rename = "auth-provider")]
    auth_provider: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct NamedContext {
    name: String,
    context: Context,
}

#[derive(Deserialize)]
struct Context {
    cluster: String,
    #[serde(default)]
    user: String,
}

fn cfg_err(origin: &str, detail: impl Into<String>) -> KubeError {
    KubeError::Config { origin: origin.to_string(), detail: detail.into() }
}

/// Decodes a kubeconfig `*-data` field (base64 of PEM).
fn decode_data(origin: &str, field: &str, data: &str) -> Result<Vec<u8>, KubeError> {
    // base64 in YAML may be folded over lines
    let compact: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| cfg_err(origin, format!("{field} is not valid base64: {e}")))
}

fn read_file(origin: &str, field: &str, path: &Path) -> Result<Vec<u8>, KubeError> {
    std::fs::read(path).map_err(|e| cfg_err(origin, format!("{field} {}: {e}", path.display())))
}

/// `data` if present, else the file (relative to `base`), else `None`.
fn data_or_file(
    origin: &str,
    base: &Path,
    data_field: &str,
    data: &Option<String>,
    file_field: &str,
    file: &Option<PathBuf>,
) -> Result<Option<Vec<u8>>, KubeError> {
    match (data, file) {
        (Some(d), _) => decode_data(origin, data_field, d).map(Some),
        (None, Some(f)) => read_file(origin, file_field, &base.join(f)).map(Some),
        (None, None) => Ok(None),
    }
}

impl ClusterConfig {
    /// The pod's service account: `KUBERNETES_SERVICE_HOST`/`_PORT` and the token and CA under
    /// [`SERVICE_ACCOUNT_DIR`]. The token is re-read periodically ([`Auth::TokenFile`]).
    pub fn in_cluster() -> Result<ClusterConfig, KubeError> {
        let origin = "in-cluster";
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let (Some(host), Some(port)) = (env("KUBERNETES_SERVICE_HOST"), env("KUBERNETES_SERVICE_PORT"))
        else {
            return Err(cfg_err(
                origin,
                "KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are not set: not in a pod; pass --kubeconfig or set KUBECONFIG",
            ));
        };
        let dir = Path::new(SERVICE_ACCOUNT_DIR);
        let token = dir.join("token");
        // Read once now, so that a missing mount fails at start-up and not at the first request.
        read_file(origin, "token", &token)?;
        let ca = read_file(origin, "ca.crt", &dir.join("ca.crt"))?;
        Ok(ClusterConfig {
            server: server_url(&host, &port),
            ca_pem: Some(ca),
            auth: Auth::TokenFile(token),
            insecure_skip_tls_verify: false,
        })
    }

    /// The current context of the kubeconfig at `path`.
    pub fn from_kubeconfig(path: &Path) -> Result<ClusterConfig, KubeError> {
        ClusterConfig::from_kubeconfig_context(path, None)
    }

    /// The context named `context` (`None`: the current context) of the kubeconfig at `path`.
    pub fn from_kubeconfig_context(path: &Path, context: Option<&str>) -> Result<ClusterConfig, KubeError> {
        let origin = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|e| cfg_err(&origin, format!("cannot read: {e}")))?;
        let base = path.parent().unwrap_or(Path::new("."));
        ClusterConfig::parse_kubeconfig_context(&text, base, &origin, context)
    }

    /// Parses kubeconfig YAML; relative file paths are resolved against `base_dir`; `origin`
    /// names the source in errors.
    pub fn parse_kubeconfig(text: &str, base_dir: &Path, origin: &str) -> Result<ClusterConfig, KubeError> {
        ClusterConfig::parse_kubeconfig_context(text, base_dir, origin, None)
    }

    /// As [`ClusterConfig::parse_kubeconfig`], for the context named `context` (kubectl's
    /// `--context`) instead of `current-context` when given.
    pub fn parse_kubeconfig_context(
        text: &str,
        base_dir: &Path,
        origin: &str,
        context: Option<&str>,
    ) -> Result<ClusterConfig, KubeError> {
        // libyaml's time is quadratic in flow nesting: refuse deep text before it parses
        crate::prescan::check_yaml(text.as_bytes(), crate::prescan::MAX_DEPTH)
            .map_err(|e| cfg_err(origin, format!("not a kubeconfig: {e}")))?;
        let cfg: KubeConfig =
            yaml_serde::from_str(text).map_err(|e| cfg_err(origin, format!("not a kubeconfig: {e}")))?;
        let (name, what) = match context {
            Some(c) => (c, "context (--context)"),
            None => (cfg.current_context.as_str(), "current-context"),
        };
        if name.is_empty() {
            return Err(cfg_err(origin, "current-context is not set"));
        }
        let ctx = &cfg
            .contexts
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| cfg_err(origin, format!("{what} {name:?} is not in contexts")))?
            .context;
        let cluster = &cfg
            .clusters
            .iter()
            .find(|c| c.name == ctx.cluster)
            .ok_or_else(|| {
                cfg_err(
                    origin,
                    format!("cluster {:?} of the current context is not in clusters", ctx.cluster),
                )
            })?
            .cluster;
        let user = if ctx.user.is_empty() {
            None
        } else {
            Some(
                &cfg.users
                    .iter()
                    .find(|u| u.name == ctx.user)
                    .ok_or_else(|| {
                        cfg_err(origin, format!("user {:?} of the current context is not in users", ctx.user))
                    })?
                    .user,
            )
        };
        let server = cluster.server.trim().trim_end_matches('/').to_string();
        if server.is_empty() {
            return Err(cfg_err(origin, format!("cluster {:?} has no server", ctx.cluster)));
        }
        let ca_pem = data_or_file(
            origin,
            base_dir,
            "certificate-authority-data",
            &cluster.certificate_authority_data,
            "certificate-authority",
            &cluster.certificate_authority,
        )?;
        let auth = match user {
            None => Auth::None,
            Some(u) => user_auth(origin, base_dir, u)?,
        };
        Ok(ClusterConfig { server, ca_pem, auth, insecure_skip_tls_verify: cluster.insecure_skip_tls_verify })
    }

    /// `kubeconfig` (a flag), else `$KUBECONFIG` (its first path), else in-cluster.
    pub fn load(kubeconfig: Option<&Path>) -> Result<ClusterConfig, KubeError> {
        ClusterConfig::load_with(kubeconfig, None, false)
    }

    /// As [`ClusterConfig::load`], with kubectl's `--context` (a context of the kubeconfig,
    /// `None` for its current one) and, when `home_default`, `$HOME/.kube/config` if it exists
    /// before in-cluster (kubectl's order; the daemons do not look there).
    pub fn load_with(
        kubeconfig: Option<&Path>,
        context: Option<&str>,
        home_default: bool,
    ) -> Result<ClusterConfig, KubeError> {
        if let Some(p) = kubeconfig {
            return ClusterConfig::from_kubeconfig_context(p, context);
        }
        if let Some(v) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
            // KUBECONFIG may list several files; merging is not supported, the first one wins.
            if let Some(first) = std::env::split_paths(&v).find(|p| !p.as_os_str().is_empty()) {
                return ClusterConfig::from_kubeconfig_context(&first, context);
            }
        }
        if home_default && let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            let p = Path::new(&home).join(".kube/config");
            if p.is_file() {
                return ClusterConfig::from_kubeconfig_context(&p, context);
            }
        }
        ClusterConfig::in_cluster()
    }
}

fn user_auth(origin: &str, base: &Path, u: &User) -> Result<Auth, KubeError> {
    if u.exec.is_some() || u.auth_provider.is_some() {
        return Err(cfg_err(
            origin,
            "users[].user.exec and auth-provider are not supported: use a token, tokenFile or client certificate",
        ));
    }
    let cert = data_or_file(
        origin,
        base,
        "client-certificate-data",
        &u.client_certificate_data,
        "client-certificate",
        &u.client_certificate,
    )?;
    let key = data_or_file(origin, base, "client-key-data", &u.client_key_data, "client-key", &u.client_key)?;
    match (cert, key, &u.token, &u.token_file) {
        (Some(cert_pem), Some(key_pem), _, _) => Ok(Auth::ClientCert { cert_pem, key_pem }),
        (Some(_), None, _, _) => Err(cfg_err(origin, "client-certificate is set but client-key is missing")),
        (None, Some(_), _, _) => Err(cfg_err(origin, "client-key is set but client-certificate is missing")),
        (None, None, Some(t), _) if !t.trim().is_empty() => Ok(Auth::Token(t.trim().to_string())),
        (None, None, _, Some(f)) => {
            let f = base.join(f);
            read_file(origin, "tokenFile", &f)?;
            Ok(Auth::TokenFile(f))
        }
        _ => Ok(Auth::None),
    }
}

/// `https://host:port`, bracketing an IPv6 address.
pub fn server_url(host: &str, port: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("https://[{host}]:{port}")
    } else {
        format!("https://{host}:{port}")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn kc(user: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c1\n  cluster:\n    server: https://127.0.0.1:6443/\n    certificate-authority-data: {}\n- name: other\n  cluster:\n    server: https://other\nusers:\n- name: u1\n  user:\n{user}\ncontexts:\n- name: x\n  context:\n    cluster: other\n    user: u1\n- name: ctx\n  context:\n    cluster: c1\n    user: u1\ncurrent-context: ctx\n",
            b64(CA)
        )
    }

    #[test]
    fn token_and_ca_data() {
        let c =
            ClusterConfig::parse_kubeconfig(&kc("    token: abc"), Path::new("/nonexistent"), "t").unwrap();
        assert_eq!(c.server, "https://127.0.0.1:6443");
        assert_eq!(c.ca_pem.as_deref(), Some(CA.as_bytes()));
        assert_eq!(c.auth, Auth::Token("abc".into()));
        assert!(!c.insecure_skip_tls_verify);
    }

    #[test]
    fn deep_kubeconfig_is_refused_before_parsing() {
        // 100,000 flow levels took libyaml tens of seconds of CPU
        let deep =
            format!("{}\n    token: {}{}", kc("    token: abc"), "[".repeat(100_000), "]".repeat(100_000));
        let e = ClusterConfig::parse_kubeconfig(&deep, Path::new("/"), "kc.yaml").unwrap_err();
        assert!(e.to_string().contains("not a kubeconfig: nested deeper than the limit of 64 levels"), "{e}");
    }

    #[test]
    fn client_cert_data() {
        let user =
            format!("    client-certificate-data: {}\n    client-key-data: {}", b64("CERT"), b64("KEY"));
        let c = ClusterConfig::parse_kubeconfig(&kc(&user), Path::new("/"), "t").unwrap();
        assert_eq!(c.auth, Auth::ClientCert { cert_pem: b"CERT".to_vec(), key_pem: b"KEY".to_vec() });
    }

    #[test]
    fn errors_name_the_field() {
        let user = format!("    client-certificate-data: {}", b64("CERT"));
        let e = ClusterConfig::parse_kubeconfig(&kc(&user), Path::new("/"), "kc.yaml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "kubernetes config kc.yaml: client-certificate is set but client-key is missing"
        );
        let e = ClusterConfig::parse_kubeconfig(
            &kc("    token: a").replace("current-context: ctx", "current-context: nope"),
            Path::new("/"),
            "k",
        )
        .unwrap_err();
        assert!(e.to_string().contains("current-context \"nope\" is not in contexts"), "{e}");
        let e = ClusterConfig::parse_kubeconfig(
            &kc("    tokenFile: missing-token"),
            Path::new("/nonexistent-dir"),
            "k",
        )
        .unwrap_err();
        assert!(e.to_string().contains("tokenFile /nonexistent-dir/missing-token"), "{e}");
        let e =
            ClusterConfig::parse_kubeconfig(&kc("    exec: {command: x}"), Path::new("/"), "k").unwrap_err();
        assert!(e.to_string().contains("exec and auth-provider are not supported"), "{e}");
    }

    #[test]
    fn a_named_context_replaces_the_current_one() {
        let c =
            ClusterConfig::parse_kubeconfig_context(&kc("    token: abc"), Path::new("/"), "t", Some("x"))
                .unwrap();
        assert_eq!(c.server, "https://other");
        let e =
            ClusterConfig::parse_kubeconfig_context(&kc("    token: abc"), Path::new("/"), "t", Some("nope"))
                .unwrap_err();
        assert!(e.to_string().contains("context (--context) \"nope\" is not in contexts"), "{e}");
    }

    #[test]
    fn no_user_means_no_auth() {
        let c = ClusterConfig::parse_kubeconfig(&kc("    {}"), Path::new("/"), "t").unwrap();
        assert_eq!(c.auth, Auth::None);
    }

    #[test]
    fn ipv6_is_bracketed() {
        assert_eq!(server_url("fd00::1", "443"), "https://[fd00::1]:443");
        assert_eq!(server_url("10.0.0.1", "443"), "https://10.0.0.1:443");
    }
}
