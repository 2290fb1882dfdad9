//! The blocking HTTPS client for the Kubernetes REST API: [`Client`] and [`WatchStream`].
//!
//! Owns: the ureq agent (rustls with ring, only the configured CA, no proxy, timeouts on every
//! request), credentials per request (token files re-read at most every
//! [`TOKEN_REFRESH`]), CRUD verbs, paginated list, merge patch, status subresource, and the
//! line-by-line watch decoder with its size cap. Every body and watch line is checked for
//! nesting ([`prescan::MAX_DEPTH`]) before it is decoded, and decoded without `Value` trees of
//! objects. Must not: retry, sleep or cache objects;
//! retry policy lives in the reflector and the callers.
//!
//! ```text
//! watch stream:  {"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":{...}}\n  (one per line)
//! ```

use std::io::{BufRead, BufReader, Read};
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::Value;
use ureq::tls::{ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

use super::config::{Auth, ClusterConfig};
use super::error::KubeError;
use super::resource::{ACCEPT_METADATA, ACCEPT_METADATA_LIST, ListOptions, ObjectList, Resource, WatchEvent};
use crate::bounded::clip;
use crate::prescan;

/// TCP connect plus TLS handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Until the response headers arrive (the apiserver answers a watch's headers at once).
pub const RECV_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// Each read of a plain (non-watch) response body.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest JSON body read for one object or one list page (ureq's default is 10 MB).
pub const MAX_BODY_BYTES: u64 = 64 << 20;
/// Largest error (Status) body read.
pub const MAX_ERROR_BODY_BYTES: u64 = 1 << 20;
/// Largest single watch event line; a longer line ends the stream with a Decode error.
pub const MAX_EVENT_LINE_BYTES: usize = 16 << 20;
/// Items per list page (`limit`), as client-go's pager.
pub const DEFAULT_PAGE_SIZE: u32 = 500;
/// Server-side watch duration, chosen at random per watch (client-go uses 5-10 min), so that
/// many clients do not re-watch at the same moment.
pub const WATCH_TIMEOUT_RANGE_SECS: (u32, u32) = (300, 600);
/// Added to the server-side watch duration for the per-read timeout: the server closes a quiet
/// healthy watch first; the per-read timeout only fires on a dead connection.
pub const WATCH_READ_SLACK: Duration = Duration::from_secs(30);
/// How long a token read from a file is reused before the file is read again.
pub const TOKEN_REFRESH: Duration = Duration::from_secs(60);

/// A client for one API server and identity. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    server: Arc<str>,
    creds: Arc<Credentials>,
    page_size: u32,
    watch_timeout_secs: (u32, u32),
}

enum Credentials {
    None,
    Token(String),
    TokenFile { path: PathBuf, cached: Mutex<Option<(String, Instant)>> },
}

fn config_err(detail: impl Into<String>) -> KubeError {
    KubeError::Config { origin: "client".into(), detail: detail.into() }
}

fn parse_certs(what: &str, pem: &[u8]) -> Result<Vec<ureq::tls::Certificate<'static>>, KubeError> {
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
fn client_cert(cert_pem: &[u8], key_pem: &[u8]) -> Result<ClientCert, KubeError> {
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

fn now_seed() -> u64 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32)
}

impl Client {
    /// Builds the agent. Installs rustls' ring provider (losing the race to another caller is
    /// fine), and rejects an empty CA bundle or a certificate/key pair that does not match.
    pub fn new(cfg: ClusterConfig, user_agent: &str) -> Result<Client, KubeError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        // bearer tokens never travel in clear text; ureq would refuse later with a vaguer error
        if !cfg.server.starts_with("https://") {
            return Err(config_err(format!("server {:?} must be an https:// URL", cfg.server)));
        }
        let mut tls = TlsConfig::builder();
        match (&cfg.ca_pem, cfg.insecure_skip_tls_verify) {
            (_, true) => {
                // an explicit empty set: ureq panics on the default WebPki roots (compiled out)
                tls = tls.root_certs(RootCerts::Specific(Arc::new(Vec::new()))).disable_verification(true);
            }
            (Some(pem), false) => {
                let certs = parse_certs("certificate authority", pem)?;
                tls = tls.root_certs(RootCerts::Specific(Arc::new(certs)));
            }
            (None, false) => {
                return Err(config_err(
                    "no certificate authority: set certificate-authority(-data) in the kubeconfig",
                ));
            }
        }
        let creds = match cfg.auth {
            Auth::None => Credentials::None,
            Auth::Token(t) => Credentials::Token(t),
            Auth::TokenFile(path) => Credentials::TokenFile { path, cached: Mutex::new(None) },
            Auth::ClientCert { cert_pem, key_pem } => {
                tls = tls.client_cert(Some(client_cert(&cert_pem, &key_pem)?));
                Credentials::None
            }
        };
        let agent = ureq::Agent::config_builder()
            .tls_config(tls.build())
            .http_status_as_error(false) // keep the Status body of 4xx/5xx
            .https_only(true)
            .proxy(None) // HTTPS_PROXY in a pod must not capture apiserver traffic
            .user_agent(user_agent)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(RECV_RESPONSE_TIMEOUT))
            .timeout_per_read(Some(READ_TIMEOUT))
            .build()
            .new_agent();
        Ok(Client {
            agent,
            server: Arc::from(cfg.server.trim_end_matches('/')),
            creds: Arc::new(creds),
            page_size: DEFAULT_PAGE_SIZE,
            watch_timeout_secs: WATCH_TIMEOUT_RANGE_SECS,
        })
    }

    /// Items per list page (tests use a small one to exercise paging). At least 1.
    pub fn with_page_size(mut self, n: u32) -> Client {
        self.page_size = n.max(1);
        self
    }

    /// Server-side watch duration range in seconds (tests use a few seconds to exercise
    /// re-watching and bookmarks). At least 1.
    pub fn with_watch_timeout_secs(mut self, min: u32, max: u32) -> Client {
        let min = min.max(1);
        self.watch_timeout_secs = (min, max.max(min));
        self
    }

    /// The server's base URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Closes every connection of this client and its clones for good, unblocking reads
    /// (watches) in other threads: for process exit only.
    pub fn shutdown(&self) {
        self.agent.clone().shutdown();
    }

    fn bearer(&self) -> Result<Option<String>, KubeError> {
        match &*self.creds {
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

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }

    fn call_no_body(
        &self,
        verb: &'static str,
        path: &str,
        query: &[(&str, String)],
        accept: &str,
        read_timeout: Duration,
    ) -> Result<ureq::http::Response<ureq::Body>, KubeError> {
        let url = self.url(path);
        let mut req = match verb {
            "delete" => self.agent.delete(&url),
            _ => self.agent.get(&url),
        };
        req = req.header("Accept", accept);
        if let Some(b) = self.bearer()? {
            req = req.header("Authorization", b);
        }
        for (k, v) in query {
            req = req.query(*k, v);
        }
        if read_timeout != READ_TIMEOUT {
            req = req
                .config()
                .timeout_global(None)
                .timeout_recv_body(None)
                .timeout_per_read(Some(read_timeout))
                .build();
        }
        req.call().map_err(|e| map_ureq(verb, path, e))
    }

    fn call_with_body(
        &self,
        verb: &'static str,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<ureq::http::Response<ureq::Body>, KubeError> {
        let url = self.url(path);
        let mut req = match verb {
            "post" => self.agent.post(&url),
            "put" => self.agent.put(&url),
            _ => self.agent.patch(&url),
        };
        req = req.header("Accept", "application/json");
        if let Some(b) = self.bearer()? {
            req = req.header("Authorization", b);
        }
        req.content_type(content_type).send(body).map_err(|e| map_ureq(verb, path, e))
    }

    fn send_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        verb: &'static str,
        path: &str,
        content_type: &str,
        body: &B,
    ) -> Result<T, KubeError> {
        let bytes = serde_json::to_vec(body).map_err(|e| KubeError::Decode {
            verb,
            path: path.to_string(),
            detail: format!("cannot encode the request body: {e}"),
        })?;
        let resp = self.call_with_body(verb, path, content_type, &bytes)?;
        read_json(verb, path, resp)
    }

    pub fn get<T: DeserializeOwned>(
        &self,
        r: &Resource,
        ns: Option<&str>,
        name: &str,
    ) -> Result<T, KubeError> {
        let path = object_path("get", r, ns, name)?;
        let resp = self.call_no_body("get", &path, &[], "application/json", READ_TIMEOUT)?;
        read_json("get", &path, resp)
    }

    /// Every item, page by page (`limit` + `continue`); the list's resourceVersion is the one
    /// to watch from.
    pub fn list<T: DeserializeOwned>(
        &self,
        r: &Resource,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ObjectList<T>, KubeError> {
        self.paged(r, ns, opts, |path, bytes| {
            nesting(bytes).map_err(|detail| KubeError::Decode {
                verb: "list",
                path: path.to_string(),
                detail,
            })?;
            let page: Page<T> = serde_json::from_slice(bytes).map_err(|e| KubeError::Decode {
                verb: "list",
                path: path.to_string(),
                detail: format!("bad list page: {e}"),
            })?;
            Ok((page.items.unwrap_or_default(), page.metadata))
        })
    }

    /// As [`Client::list`], but one object that does not decode as `T` does not fail the list:
    /// it comes back as an `Err` item (with its name) for the caller to skip. Each page is
    /// decoded straight into `T`; only a page with a bad object is decoded again item by item,
    /// each from its own bytes (found by [`prescan::json_array_items`]): no `Value` tree of the
    /// page or its objects is built on either path.
    pub fn list_decoded<T: DeserializeOwned>(
        &self,
        r: &Resource,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ObjectList<Decoded<T>>, KubeError> {
        self.paged(r, ns, opts, decode_page_decoded)
    }

    /// The paging loop of both lists: one request per page (at most `page_size` items, body at
    /// most `MAX_BODY_BYTES`), `decode` turns a page's bytes into items and its list metadata.
    fn paged<I>(
        &self,
        r: &Resource,
        ns: Option<&str>,
        opts: &ListOptions,
        mut decode: impl FnMut(&str, &[u8]) -> Result<(Vec<I>, ListMeta), KubeError>,
    ) -> Result<ObjectList<I>, KubeError> {
        let path = r.collection_path(ns);
        let accept = if opts.metadata_only { ACCEPT_METADATA_LIST } else { "application/json" };
        let mut items = Vec::new();
        let mut cont: Option<String> = None;
        loop {
            let mut q = selector_query(opts);
            q.push(("limit", self.page_size.to_string()));
            if let Some(c) = &cont {
                q.push(("continue", c.clone()));
            }
            let mut resp = self.call_no_body("list", &path, &q, accept, READ_TIMEOUT)?;
            if !resp.status().is_success() {
                return Err(status_error("list", &path, resp));
            }
            let bytes = resp
                .body_mut()
                .with_config()
                .limit(MAX_BODY_BYTES)
                .read_to_vec()
                .map_err(|e| map_ureq("list", &path, e))?;
            let (page, meta) = decode(&path, &bytes)?;
            drop(bytes);
            items.extend(page);
            match meta.cont.filter(|c| !c.is_empty()) {
                Some(c) => cont = Some(c),
                None => return Ok(ObjectList { items, resource_version: meta.resource_version }),
            }
        }
    }

    pub fn create<T: Serialize + DeserializeOwned>(
        &self,
        r: &Resource,
        ns: Option<&str>,
        obj: &T,
    ) -> Result<T, KubeError> {
        self.send_json("post", &r.collection_path(ns), "application/json", obj)
    }

    /// PUT: optimistic concurrency through `metadata.resourceVersion` (409 when stale).
    pub fn replace<T: Serialize + DeserializeOwned>(
        &self,
        r: &Resource,
        ns: Option<&str>,
        name: &str,
        obj: &T,
    ) -> Result<T, KubeError> {
        self.send_json("put", &object_path("put", r, ns, name)?, "application/json", obj)
    }

    /// PUT of the status subresource.
    pub fn replace_status<T: Serialize + DeserializeOwned>(
        &self,
        r: &Resource,
        ns: Option<&str>,
        name: &str,
        obj: &T,
    ) -> Result<T, KubeError> {
        self.send_json(
            "put",
            &format!("{}/status", object_path("put", r, ns, name)?),
            "application/json",
            obj,
        )
    }

    /// JSON merge patch (RFC 7386).
    pub fn patch_merge<T: DeserializeOwned>(
        &self,
        r: &Resource,
        ns: Option<&str>,
        name: &str,
        patch: &Value,
    ) -> Result<T, KubeError> {
        self.send_json("patch", &object_path("patch", r, ns, name)?, "application/merge-patch+json", patch)
    }

    /// JSON merge patch of the status subresource. The patch may be any serializable shape (a
    /// typed patch avoids building a `Value` tree of a big status). With
    /// `metadata.resourceVersion` in the patch the server checks it: 409 when stale.
    pub fn patch_status_merge<T: DeserializeOwned, P: Serialize + ?Sized>(
        &self,
        r: &Resource,
        ns: Option<&str>,
        name: &str,
        patch: &P,
    ) -> Result<T, KubeError> {
        self.send_json(
            "patch",
            &format!("{}/status", object_path("patch", r, ns, name)?),
            "application/merge-patch+json",
            patch,
        )
    }

    /// DELETE; 200 and 202 (deletion pending, e.g. finalizers) are success, 404 is an error.
    pub fn delete(&self, r: &Resource, ns: Option<&str>, name: &str) -> Result<(), KubeError> {
        let path = object_path("delete", r, ns, name)?;
        let resp = self.call_no_body("delete", &path, &[], "application/json", READ_TIMEOUT)?;
        let _: IgnoredAny = read_json("delete", &path, resp)?;
        Ok(())
    }

    /// Opens a watch from `resource_version` (`""`: from now, after synthetic ADDED events of
    /// the current state). Bookmarks on; the server ends the watch cleanly after a random
    /// 300-600 s (then re-watch from the last resourceVersion seen).
    pub fn watch<T: DeserializeOwned>(
        &self,
        r: &Resource,
        ns: Option<&str>,
        opts: &ListOptions,
        resource_version: &str,
    ) -> Result<WatchStream<T>, KubeError> {
        let path = r.collection_path(ns);
        let (lo, hi) = self.watch_timeout_secs;
        let secs = u64::from(lo) + now_seed() % (u64::from(hi - lo) + 1);
        let mut q = selector_query(opts);
        q.push(("watch", "1".into()));
        q.push(("allowWatchBookmarks", "true".into()));
        q.push(("timeoutSeconds", secs.to_string()));
        if !resource_version.is_empty() {
            q.push(("resourceVersion", resource_version.to_string()));
        }
        let accept = if opts.metadata_only { ACCEPT_METADATA } else { "application/json" };
        let read_timeout = Duration::from_secs(secs) + WATCH_READ_SLACK;
        let resp = self.call_no_body("watch", &path, &q, accept, read_timeout)?;
        if !resp.status().is_success() {
            return Err(status_error("watch", &path, resp));
        }
        let reader: Box<dyn Read + Send> = Box::new(resp.into_body().into_reader());
        Ok(WatchStream { path, reader: BufReader::new(reader), done: false, _t: PhantomData })
    }
}

/// The path of one object, refusing names that would address something else: an empty name
/// makes `DELETE .../configmaps/` a collection request, a `/` a subresource.
fn object_path(verb: &'static str, r: &Resource, ns: Option<&str>, name: &str) -> Result<String, KubeError> {
    // Names of the objects we address (pods, nodes, pools, leases) are DNS subdomains; anything
    // beyond these bytes (`?`, `#`, `%`, space, controls) would change the request's path or
    // query, and reaches here from CNI_ARGS through the stale check.
    let bad = |s: &str| {
        s.is_empty()
            || s == "."
            || s == ".."
            || !s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'))
    };
    if bad(name) || ns.is_some_and(|n| r.namespaced && bad(n)) {
        return Err(KubeError::InvalidName {
            verb,
            resource: r.plural,
            namespace: ns.unwrap_or_default().to_string(),
            name: name.to_string(),
        });
    }
    Ok(r.object_path(ns, name))
}

fn selector_query(opts: &ListOptions) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    if let Some(s) = opts.label_selector.as_ref().filter(|s| !s.is_empty()) {
        q.push(("labelSelector", s.clone()));
    }
    if let Some(s) = opts.field_selector.as_ref().filter(|s| !s.is_empty()) {
        q.push(("fieldSelector", s.clone()));
    }
    q
}

fn map_ureq(verb: &'static str, path: &str, e: ureq::Error) -> KubeError {
    let path = path.to_string();
    match e {
        ureq::Error::Timeout(t) => KubeError::Timeout { verb, path, detail: t.to_string() },
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            KubeError::Timeout { verb, path, detail: io.to_string() }
        }
        ureq::Error::Json(j) => KubeError::Decode { verb, path, detail: j.to_string() },
        ureq::Error::BodyExceedsLimit(n) => {
            KubeError::Decode { verb, path, detail: format!("body larger than {n} bytes") }
        }
        other => KubeError::Transport { verb, path, detail: other.to_string() },
    }
}

/// The `Status` error for a non-success response, with the request in front of the message.
fn status_error(verb: &'static str, path: &str, mut resp: ureq::http::Response<ureq::Body>) -> KubeError {
    let code = resp.status().as_u16();
    let text = resp.body_mut().with_config().limit(MAX_ERROR_BODY_BYTES).read_to_string().unwrap_or_default();
    let v: Value = match nesting(text.as_bytes()) {
        Ok(()) => serde_json::from_str(&text).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    status_from_value(verb, path, code, &v)
}

/// A `Status` object (HTTP error body or the object of a watch ERROR event) as an error.
/// `fallback_code` is used when the object carries no code.
pub fn status_from_value(verb: &str, path: &str, fallback_code: u16, v: &Value) -> KubeError {
    let code = v
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| *c != 0)
        .unwrap_or(fallback_code);
    let reason = v.get("reason").and_then(Value::as_str).unwrap_or_default().to_string();
    let msg = v.get("message").and_then(Value::as_str).unwrap_or("no message");
    KubeError::Status { code, reason, message: format!("{verb} {path}: {msg}") }
}

/// The nesting check of every response body and watch line: deeper than
/// [`prescan::MAX_DEPTH`] is refused before serde sees it (a buggy or hostile server or proxy
/// must not cost more than a scan).
fn nesting(bytes: &[u8]) -> Result<(), String> {
    prescan::check_json(bytes, prescan::MAX_DEPTH).map(|_| ()).map_err(|e| format!("response {e}"))
}

/// A page of [`Client::list_decoded`]: straight into `T`, or, when some item does not decode,
/// item by item from the item's own bytes.
fn decode_page_decoded<T: DeserializeOwned>(
    path: &str,
    bytes: &[u8],
) -> Result<(Vec<Decoded<T>>, ListMeta), KubeError> {
    let bad = |detail: String| KubeError::Decode { verb: "list", path: path.to_string(), detail };
    nesting(bytes).map_err(bad)?;
    let e = match serde_json::from_slice::<Page<T>>(bytes) {
        Ok(page) => {
            let items = page.items.unwrap_or_default().into_iter().map(Decoded::ok).collect();
            return Ok((items, page.metadata));
        }
        Err(e) => e,
    };
    // some object does not decode as T: find which, keep the others
    let meta =
        serde_json::from_slice::<PageMeta>(bytes).map_err(|_| bad(clip(format!("bad list page: {e}"))))?;
    let spans = match prescan::json_array_items(bytes, "items") {
        Some(spans) => spans,
        None if meta.items.is_none() => Vec::new(),
        None => return Err(bad(clip(format!("bad list page: {e}")))),
    };
    let items = spans.into_iter().map(|span| Decoded::from_slice(&bytes[span])).collect();
    Ok((items, meta.metadata))
}

/// A list page without its items (they are decoded one by one).
#[derive(serde::Deserialize)]
struct PageMeta {
    #[serde(default)]
    items: Option<IgnoredAny>,
    #[serde(default)]
    metadata: ListMeta,
}

/// One page of a list response.
#[derive(serde::Deserialize)]
struct Page<T> {
    #[serde(default = "Option::default")]
    items: Option<Vec<T>>,
    #[serde(default)]
    metadata: ListMeta,
}

#[derive(serde::Deserialize, Default, Debug)]
struct ListMeta {
    #[serde(rename = "resourceVersion", default)]
    resource_version: String,
    #[serde(rename = "continue", default)]
    cont: Option<String>,
}

fn read_json<T: DeserializeOwned>(
    verb: &'static str,
    path: &str,
    mut resp: ureq::http::Response<ureq::Body>,
) -> Result<T, KubeError> {
    if !resp.status().is_success() {
        return Err(status_error(verb, path, resp));
    }
    let bytes = resp
        .body_mut()
        .with_config()
        .limit(MAX_BODY_BYTES)
        .read_to_vec()
        .map_err(|e| map_ureq(verb, path, e))?;
    let decode = |detail: String| KubeError::Decode { verb, path: path.to_string(), detail };
    nesting(&bytes).map_err(decode)?;
    serde_json::from_slice(&bytes).map_err(|e| decode(e.to_string()))
}

/// An open watch; yields events until the server ends the watch (`None`) or an error. After an
/// I/O error or an oversized line the stream is finished; so does an object that does not
/// decode as `T` (see [`WatchStream::decoded`] to skip it instead).
pub struct WatchStream<T> {
    path: String,
    reader: BufReader<Box<dyn Read + Send>>,
    done: bool,
    _t: PhantomData<fn() -> T>,
}

/// Reads one line (without the newline) of at most `max` bytes. `Ok(None)` at EOF.
fn read_line_capped(rd: &mut impl BufRead, max: usize, line: &mut Vec<u8>) -> std::io::Result<Option<()>> {
    line.clear();
    loop {
        let buf = rd.fill_buf()?;
        if buf.is_empty() {
            return Ok(if line.is_empty() { None } else { Some(()) });
        }
        let (chunk, found) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if line.len() + chunk.len() > max {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("event line over {max} bytes"),
            ));
        }
        line.extend_from_slice(chunk);
        let used = found.unwrap_or(chunk.len());
        rd.consume(used);
        if found.is_some() {
            return Ok(Some(()));
        }
    }
}

/// One object of a list or watch as the reflector needs it: the object if it decodes as `T`,
/// else why not; and its name and resourceVersion, read separately so that an object that does
/// not decode can still be named and its resourceVersion still followed.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded<T> {
    /// `metadata.name` (empty for list items that decoded: nobody needs it then).
    pub name: String,
    /// `metadata.resourceVersion` (empty for list items: the list's own version counts).
    pub resource_version: String,
    pub object: Result<T, String>,
}

impl<T> Decoded<T> {
    fn ok(t: T) -> Decoded<T> {
        Decoded { name: String::new(), resource_version: String::new(), object: Ok(t) }
    }
}

impl<T: DeserializeOwned> Decoded<T> {
    /// From one object's bytes (a list page with a bad object): name and resourceVersion are
    /// read apart from the object, so that a bad one can still be named.
    pub fn from_slice(bytes: &[u8]) -> Decoded<T> {
        let meta = serde_json::from_slice::<HeadObject>(bytes).map(|h| h.metadata).unwrap_or_default();
        let object = serde_json::from_slice(bytes).map_err(|e| clip(e.to_string()));
        Decoded { name: meta.name, resource_version: meta.resource_version, object }
    }

    /// From an already parsed object (tests, scripted reflector sources).
    pub fn from_value(v: Value) -> Decoded<T> {
        let field = |f: &str| v["metadata"][f].as_str().unwrap_or_default().to_string();
        let (name, resource_version) = (field("name"), field("resourceVersion"));
        let object = serde_json::from_value(v).map_err(|e| e.to_string());
        Decoded { name, resource_version, object }
    }
}

/// The parts of a watch line every event needs; serde skips the rest of the object unread.
#[derive(serde::Deserialize)]
struct EventHead {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    object: HeadObject,
}

#[derive(serde::Deserialize, Default)]
struct HeadObject {
    #[serde(default)]
    metadata: HeadMeta,
}

#[derive(serde::Deserialize, Default)]
struct HeadMeta {
    #[serde(default)]
    name: String,
    #[serde(rename = "resourceVersion", default)]
    resource_version: String,
}

/// The object of a watch line, decoded straight into `T`.
#[derive(serde::Deserialize)]
struct EventObject<T> {
    object: T,
}

/// Decodes one watch line. `Ok(None)` for a blank line. An object that does not decode as `T`
/// is an `Err` inside [`Decoded`], not an error of the stream: the line itself was fine. The
/// line is parsed twice (head, then object) rather than through a `Value` tree, which for a
/// 400 KB pool costs ten times its size in memory.
pub fn decode_event_line_decoded<T: DeserializeOwned>(
    path: &str,
    line: &[u8],
) -> Result<Option<WatchEvent<Decoded<T>>>, KubeError> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let decode = |detail: String| KubeError::Decode { verb: "watch", path: path.to_string(), detail };
    // too deep: the event may still be named (serde_json skips up to 128 levels unread), its
    // object is not decoded
    let too_deep = nesting(line).err();
    let head: EventHead = serde_json::from_slice(line).map_err(|e| {
        decode(clip(format!("bad event line: {}", too_deep.clone().unwrap_or_else(|| e.to_string()))))
    })?;
    let obj = || Decoded {
        name: head.object.metadata.name.clone(),
        resource_version: head.object.metadata.resource_version.clone(),
        object: match &too_deep {
            Some(e) => Err(e.clone()),
            None => serde_json::from_slice::<EventObject<T>>(line)
                .map(|o| o.object)
                .map_err(|e| clip(e.to_string())),
        },
    };
    let ev = match head.kind.as_str() {
        "ADDED" => WatchEvent::Added(obj()),
        "MODIFIED" => WatchEvent::Modified(obj()),
        "DELETED" => WatchEvent::Deleted(obj()),
        "BOOKMARK" => WatchEvent::Bookmark { resource_version: head.object.metadata.resource_version },
        "ERROR" => {
            // a Status: small, so a Value is fine once the nesting is checked
            if let Some(e) = too_deep {
                return Err(decode(format!("bad ERROR event: {e}")));
            }
            let status: EventObject<Value> =
                serde_json::from_slice(line).map_err(|e| decode(clip(format!("bad ERROR event: {e}"))))?;
            return Err(status_from_value("watch", path, 500, &status.object));
        }
        other => return Err(decode(format!("unknown event type {other:?}"))),
    };
    Ok(Some(ev))
}

/// As [`decode_event_line_decoded`], but an object that does not decode as `T` is an error.
pub fn decode_event_line<T: DeserializeOwned>(
    path: &str,
    line: &[u8],
) -> Result<Option<WatchEvent<T>>, KubeError> {
    let strict = |kind: &str, d: Decoded<T>| {
        d.object.map_err(|e| KubeError::Decode {
            verb: "watch",
            path: path.to_string(),
            detail: format!("bad {kind} object: {e}"),
        })
    };
    Ok(match decode_event_line_decoded(path, line)? {
        None => None,
        Some(WatchEvent::Added(d)) => Some(WatchEvent::Added(strict("ADDED", d)?)),
        Some(WatchEvent::Modified(d)) => Some(WatchEvent::Modified(strict("MODIFIED", d)?)),
        Some(WatchEvent::Deleted(d)) => Some(WatchEvent::Deleted(strict("DELETED", d)?)),
        Some(WatchEvent::Bookmark { resource_version }) => Some(WatchEvent::Bookmark { resource_version }),
    })
}

impl<T: DeserializeOwned> WatchStream<T> {
    /// The same events, but an object that does not decode as `T` is an `Err` inside
    /// [`Decoded`] (with its name and resourceVersion) instead of ending the stream.
    pub fn decoded(self) -> DecodedWatch<T> {
        DecodedWatch(self)
    }

    /// The next event decoded by `decode`; `None` when the stream is finished.
    fn next_with<E>(
        &mut self,
        decode: fn(&str, &[u8]) -> Result<Option<E>, KubeError>,
    ) -> Option<Result<E, KubeError>> {
        let mut line = Vec::new();
        while !self.done {
            match read_line_capped(&mut self.reader, MAX_EVENT_LINE_BYTES, &mut line) {
                Ok(None) => self.done = true,
                Ok(Some(())) => match decode(&self.path, &line) {
                    Ok(None) => continue,
                    Ok(Some(ev)) => return Some(Ok(ev)),
                    Err(e) => return Some(Err(e)),
                },
                Err(e) => {
                    self.done = true;
                    let err = if e.kind() == std::io::ErrorKind::InvalidData {
                        KubeError::Decode { verb: "watch", path: self.path.clone(), detail: e.to_string() }
                    } else {
                        map_ureq("watch", &self.path, ureq::Error::from(e))
                    };
                    return Some(Err(err));
                }
            }
        }
        None
    }
}

impl<T: DeserializeOwned> Iterator for WatchStream<T> {
    type Item = Result<WatchEvent<T>, KubeError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_with(decode_event_line)
    }
}

/// A [`WatchStream`] that yields [`Decoded`] objects: see [`WatchStream::decoded`].
pub struct DecodedWatch<T>(WatchStream<T>);

impl<T: DeserializeOwned> Iterator for DecodedWatch<T> {
    type Item = Result<WatchEvent<Decoded<T>>, KubeError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next_with(decode_event_line_decoded)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn decodes_events() {
        let p = "/api/v1/nodes";
        let ev: WatchEvent<Value> =
            decode_event_line(p, br#"{"type":"ADDED","object":{"metadata":{"name":"a"}}}"#).unwrap().unwrap();
        assert_eq!(ev, WatchEvent::Added(serde_json::json!({"metadata":{"name":"a"}})));
        let ev: WatchEvent<Value> = decode_event_line(
            p,
            br#"{"type":"BOOKMARK","object":{"kind":"Node","metadata":{"resourceVersion":"42"}}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(ev, WatchEvent::Bookmark { resource_version: "42".into() });
        assert!(decode_event_line::<Value>(p, b"  \r").unwrap().is_none());
        let e = decode_event_line::<Value>(
            p,
            br#"{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old resource version: 1 (5)"}}"#,
        )
        .unwrap_err();
        assert!(e.is_gone(), "{e:?}");
        assert_eq!(
            e.to_string(),
            "watch /api/v1/nodes: too old resource version: 1 (5) (410 Expired); gone: the resourceVersion is too old; relist"
        );
        let e = decode_event_line::<Value>(p, b"{not json").unwrap_err();
        assert!(matches!(e, KubeError::Decode { .. }), "{e:?}");
        let e = decode_event_line::<Value>(p, br#"{"type":"WHAT","object":{}}"#).unwrap_err();
        assert!(e.to_string().contains("unknown event type \"WHAT\""), "{e}");
    }

    #[test]
    fn typed_decode_error_names_the_event() {
        #[derive(serde::Deserialize, Debug)]
        struct N {
            #[allow(dead_code)]
            spec: u32,
        }
        let e = decode_event_line::<N>("/x", br#"{"type":"MODIFIED","object":{"spec":"no"}}"#).unwrap_err();
        assert!(e.to_string().contains("bad MODIFIED object"), "{e}");
    }

    #[test]
    fn deep_lines_and_pages_are_refused_before_decoding() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct N {
            metadata: HeadMeta2,
        }
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct HeadMeta2 {
            name: String,
        }
        // deeper than the limit but within serde_json's 128: the event is named, its object refused
        let deep = |n: usize| format!("{}0{}", "[".repeat(n), "]".repeat(n));
        let line =
            format!(r#"{{"type":"MODIFIED","object":{{"metadata":{{"name":"x"}},"spec":{}}}}}"#, deep(100));
        let Some(WatchEvent::Modified(d)) = decode_event_line_decoded::<N>("/x", line.as_bytes()).unwrap()
        else {
            panic!("a modified event")
        };
        assert_eq!(d.name, "x");
        assert!(d.object.unwrap_err().contains("nested deeper than the limit of 64 levels"));
        // 100,000 levels: the line is an error of the stream, at once
        let line = format!(r#"{{"type":"ADDED","object":{}}}"#, deep(100_000));
        let e = decode_event_line::<Value>("/x", line.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("nested deeper than the limit of 64 levels"), "{e}");
        // at the limit the line decodes (event 1, object 2, spec 3 ...)
        let line =
            format!(r#"{{"type":"ADDED","object":{{"metadata":{{"name":"x"}},"spec":{}}}}}"#, deep(62));
        assert!(matches!(decode_event_line::<N>("/x", line.as_bytes()).unwrap(), Some(WatchEvent::Added(_))));
        let page = format!(r#"{{"metadata":{{"resourceVersion":"5"}},"items":[{}]}}"#, deep(100_000));
        let e = decode_page_decoded::<N>("/x", page.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("nested deeper than the limit"), "{e}");
    }

    #[test]
    fn a_page_with_a_bad_item_is_decoded_item_by_item() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct N {
            spec: u32,
        }
        let page = br#"{"kind":"List","metadata":{"resourceVersion":"9","continue":"c"},"items":[
            {"metadata":{"name":"a"},"spec":1},
            {"metadata":{"name":"b","resourceVersion":"7"},"spec":"bad"},
            {"spec":3}]}"#;
        let (items, meta) = decode_page_decoded::<N>("/x", page).unwrap();
        assert_eq!((meta.resource_version.as_str(), meta.cont.as_deref()), ("9", Some("c")));
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].object, Ok(N { spec: 1 }));
        assert_eq!((items[1].name.as_str(), items[1].resource_version.as_str()), ("b", "7"));
        assert!(items[1].object.as_ref().is_err_and(|e| e.contains("invalid type")));
        assert_eq!(items[2].object, Ok(N { spec: 3 }));
        // the fast path: every item decodes
        let (items, _) = decode_page_decoded::<N>("/x", br#"{"items":[{"spec":1}]}"#).unwrap();
        assert_eq!(items, [Decoded::ok(N { spec: 1 })]);
        let (items, _) = decode_page_decoded::<N>("/x", br#"{"metadata":{}}"#).unwrap();
        assert!(items.is_empty());
        assert!(decode_page_decoded::<N>("/x", br#"{"items":5}"#).is_err());
    }

    #[test]
    fn line_cap() {
        let data = b"abc\n\ndefgh\nxy".to_vec();
        let mut rd = BufReader::with_capacity(2, &data[..]);
        let mut line = Vec::new();
        let mut got = Vec::new();
        while let Some(()) = read_line_capped(&mut rd, 5, &mut line).unwrap() {
            got.push(String::from_utf8(line.clone()).unwrap());
        }
        assert_eq!(got, ["abc", "", "defgh", "xy"]);
        let data = b"abcdefg\n".to_vec();
        let mut rd = BufReader::with_capacity(3, &data[..]);
        let e = read_line_capped(&mut rd, 5, &mut line).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    }

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
        for (ns, name) in
            [(None, ""), (None, "a/b"), (Some(""), "a"), (Some("x/y"), "a"), (None, "..")].into_iter().chain(
                [(None, "x?watch=true"), (None, "a#b"), (None, "a%2Fb"), (Some("n s"), "a"), (None, "a\nb")],
            )
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
}
