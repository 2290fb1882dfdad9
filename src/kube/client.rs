//! The blocking HTTPS client for the Kubernetes REST API: [`Client`].
//!
//! Owns: the ureq agent (rustls with ring, only the configured CA, no proxy, timeouts on every
//! request), CRUD verbs, paginated list, merge patch, status subresource, opening a watch, and
//! the size limits of what is read. Credentials per request are `auth`'s (token files re-read
//! at most every [`TOKEN_REFRESH`]); bodies, pages and watch lines are decoded by `decode`
//! (nesting checked first, no `Value` trees of objects); an open watch is `watch`'s
//! [`WatchStream`]. Must not: retry, sleep or cache objects; retry policy lives in the
//! reflector and the callers.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::Value;
use ureq::tls::{RootCerts, TlsConfig};

use super::auth::{Credentials, client_cert, config_err, parse_certs};
use super::config::{Auth, ClusterConfig};
use super::decode::{Decoded, ListMeta, Page, decode_page_decoded, nesting, status_from_value};
use super::error::KubeError;
use super::resource::{ACCEPT_METADATA, ACCEPT_METADATA_LIST, ListOptions, ObjectList, Resource};
use super::watch::WatchStream;

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

/// Idle connections kept for reuse (ureq's default is 3 per host): the controller writes up to
/// ten pools and many per-node objects at once, and a connection not kept costs a new TLS
/// handshake per request. Watches hold their own connections while they run.
pub const MAX_IDLE_CONNECTIONS: usize = 32;

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
            .max_idle_connections(MAX_IDLE_CONNECTIONS)
            .max_idle_connections_per_host(MAX_IDLE_CONNECTIONS)
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
        self.creds.bearer()
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
        timeout: Option<Duration>,
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
        if let Some(t) = timeout {
            req = req.config().timeout_global(Some(t)).build();
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
        self.send_json_within(verb, path, content_type, body, None)
    }

    fn send_json_within<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        verb: &'static str,
        path: &str,
        content_type: &str,
        body: &B,
        timeout: Option<Duration>,
    ) -> Result<T, KubeError> {
        let bytes = serde_json::to_vec(body).map_err(|e| KubeError::Decode {
            verb,
            path: path.to_string(),
            detail: format!("cannot encode the request body: {e}"),
        })?;
        let resp = self.call_with_body(verb, path, content_type, &bytes, timeout)?;
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
    /// each from its own bytes (found by [`crate::prescan::json_array_items`]): no `Value` tree of the
    /// page or its objects is built on either path.
    pub fn list_decoded<T: DeserializeOwned>(
        &self,
        r: &Resource,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ObjectList<Decoded<T>>, KubeError> {
        self.paged(r, ns, opts, decode_page_decoded)
    }

    /// Whether any object matches `opts`: one request with `limit=1`, never paged, so a large
    /// collection costs at most one item (e.g. whether any pod is still bound to a node).
    pub fn any(&self, r: &Resource, ns: Option<&str>, opts: &ListOptions) -> Result<bool, KubeError> {
        let path = r.collection_path(ns);
        let accept = if opts.metadata_only { ACCEPT_METADATA_LIST } else { "application/json" };
        let mut q = selector_query(opts);
        q.push(("limit", "1".to_string()));
        let resp = self.call_no_body("list", &path, &q, accept, READ_TIMEOUT)?;
        let page: Page<IgnoredAny> = read_json("list", &path, resp)?;
        Ok(page.items.is_some_and(|items| !items.is_empty()))
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

    /// POST, decoding the answer as `T` (e.g. only its metadata).
    pub fn create_as<B: Serialize, T: DeserializeOwned>(
        &self,
        r: &Resource,
        ns: Option<&str>,
        obj: &B,
    ) -> Result<T, KubeError> {
        self.send_json("post", &r.collection_path(ns), "application/json", obj)
    }

    /// PUT (409 when `metadata.resourceVersion` is stale), decoding the answer as `T`.
    pub fn replace_as<B: Serialize, T: DeserializeOwned>(
        &self,
        r: &Resource,
        ns: Option<&str>,
        name: &str,
        obj: &B,
    ) -> Result<T, KubeError> {
        self.send_json("put", &object_path("put", r, ns, name)?, "application/json", obj)
    }

    /// POST of `body` to the collection, answered within `timeout` in total (connect, send,
    /// answer): reviews (TokenReview, SubjectAccessReview) made while a caller waits. The
    /// request and answer types differ (a review's answer adds `status`).
    pub fn create_within<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        r: &Resource,
        ns: Option<&str>,
        body: &B,
        timeout: Duration,
    ) -> Result<T, KubeError> {
        self.send_json_within("post", &r.collection_path(ns), "application/json", body, Some(timeout))
    }

    /// POST of `body` to a subresource of one object, e.g. `serviceaccounts/<name>/token` (a
    /// TokenRequest: nothing is stored).
    pub fn create_subresource<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        r: &Resource,
        ns: Option<&str>,
        name: &str,
        subresource: &'static str,
        body: &B,
    ) -> Result<T, KubeError> {
        let path = format!("{}/{subresource}", object_path("post", r, ns, name)?);
        self.send_json("post", &path, "application/json", body)
    }

    /// GET `path` of a pod's port through the API server's pod proxy subresource
    /// (`/api/v1/namespaces/<ns>/pods/<pod>:<port>/proxy<path>`), with `headers` added, in
    /// `timeout` in total. Any status comes back with at most `limit` bytes of body (more is a
    /// `Decode` error): the pod behind the proxy may be hostile.
    #[allow(clippy::too_many_arguments)]
    pub fn proxy_get(
        &self,
        ns: &str,
        pod: &str,
        port: u16,
        path: &str,
        headers: &[(&str, &str)],
        limit: u64,
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>), KubeError> {
        let target = format!("{pod}:{port}");
        let base = object_path("get", &super::resource::PODS, Some(ns), &target)?;
        if !path.starts_with('/') || path.bytes().any(|b| !b.is_ascii_graphic() || b == b'?' || b == b'#') {
            return Err(config_err(format!("proxy path {path:?} must be an absolute path without a query")));
        }
        let full = format!("{base}/proxy{path}");
        let mut req = self.agent.get(self.url(&full));
        if let Some(b) = self.bearer()? {
            req = req.header("Authorization", b);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut resp = req
            .config()
            .timeout_global(Some(timeout))
            .build()
            .call()
            .map_err(|e| map_ureq("get", &full, e))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| map_ureq("get", &full, e))?;
        Ok((status, body))
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
        Ok(WatchStream::new(path, reader))
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

pub(super) fn map_ureq(verb: &'static str, path: &str, e: ureq::Error) -> KubeError {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
