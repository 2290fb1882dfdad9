//! The blocking HTTPS client for the Kubernetes REST API: [`Client`] and [`WatchStream`].
//!
//! Owns: the ureq agent (rustls with ring, only the configured CA, no proxy, timeouts on every
//! request), credentials per request (token files re-read at most every
//! [`TOKEN_REFRESH`]), CRUD verbs, paginated list, merge patch, status subresource, and the
//! line-by-line watch decoder with its size cap. Must not: retry, sleep or cache objects;
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
use serde::de::DeserializeOwned;
use serde_json::Value;
use ureq::tls::{ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

use super::config::{Auth, ClusterConfig};
use super::error::KubeError;
use super::resource::{ACCEPT_METADATA, ACCEPT_METADATA_LIST, ListOptions, ObjectList, Resource, WatchEvent};

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
/// connect otherwise (rust-deps.md §2.3).
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
        let path = r.object_path(ns, name);
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
        #[derive(serde::Deserialize)]
        struct Page<T> {
            #[serde(default = "Option::default")]
            items: Option<Vec<T>>,
            #[serde(default)]
            metadata: ListMeta,
        }
        #[derive(serde::Deserialize, Default)]
        struct ListMeta {
            #[serde(rename = "resourceVersion", default)]
            resource_version: String,
            #[serde(rename = "continue", default)]
            cont: Option<String>,
        }
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
            let resp = self.call_no_body("list", &path, &q, accept, READ_TIMEOUT)?;
            let page: Page<T> = read_json("list", &path, resp)?;
            items.extend(page.items.unwrap_or_default());
            match page.metadata.cont.filter(|c| !c.is_empty()) {
                Some(c) => cont = Some(c),
                None => return Ok(ObjectList { items, resource_version: page.metadata.resource_version }),
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
        self.send_json("put", &r.object_path(ns, name), "application/json", obj)
    }

    /// PUT of the status subresource.
    pub fn replace_status<T: Serialize + DeserializeOwned>(
        &self,
        r: &Resource,
        ns: Option<&str>,
        name: &str,
        obj: &T,
    ) -> Result<T, KubeError> {
        self.send_json("put", &r.status_path(ns, name), "application/json", obj)
    }

    /// JSON merge patch (RFC 7386).
    pub fn patch_merge<T: DeserializeOwned>(
        &self,
        r: &Resource,
        ns: Option<&str>,
        name: &str,
        patch: &Value,
    ) -> Result<T, KubeError> {
        self.send_json("patch", &r.object_path(ns, name), "application/merge-patch+json", patch)
    }

    /// JSON merge patch of the status subresource.
    pub fn patch_status_merge<T: DeserializeOwned>(
        &self,
        r: &Resource,
        ns: Option<&str>,
        name: &str,
        patch: &Value,
    ) -> Result<T, KubeError> {
        self.send_json("patch", &r.status_path(ns, name), "application/merge-patch+json", patch)
    }

    /// DELETE; 200 and 202 (deletion pending, e.g. finalizers) are success, 404 is an error.
    pub fn delete(&self, r: &Resource, ns: Option<&str>, name: &str) -> Result<(), KubeError> {
        let path = r.object_path(ns, name);
        let resp = self.call_no_body("delete", &path, &[], "application/json", READ_TIMEOUT)?;
        let _: Value = read_json("delete", &path, resp)?;
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
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
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

fn read_json<T: DeserializeOwned>(
    verb: &'static str,
    path: &str,
    mut resp: ureq::http::Response<ureq::Body>,
) -> Result<T, KubeError> {
    if !resp.status().is_success() {
        return Err(status_error(verb, path, resp));
    }
    resp.body_mut().with_config().limit(MAX_BODY_BYTES).read_json().map_err(|e| map_ureq(verb, path, e))
}

/// An open watch; yields events until the server ends the watch (`None`) or an error. After an
/// I/O error or an oversized line the stream is finished.
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

/// Decodes one watch line. `Ok(None)` for a blank line.
pub fn decode_event_line<T: DeserializeOwned>(
    path: &str,
    line: &[u8],
) -> Result<Option<WatchEvent<T>>, KubeError> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let decode = |detail: String| KubeError::Decode { verb: "watch", path: path.to_string(), detail };
    #[derive(serde::Deserialize)]
    struct Raw {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        object: Value,
    }
    let raw: Raw = serde_json::from_slice(line).map_err(|e| decode(format!("bad event line: {e}")))?;
    let obj = |v: Value| {
        serde_json::from_value::<T>(v).map_err(|e| decode(format!("bad {} object: {e}", raw.kind)))
    };
    let ev = match raw.kind.as_str() {
        "ADDED" => WatchEvent::Added(obj(raw.object)?),
        "MODIFIED" => WatchEvent::Modified(obj(raw.object)?),
        "DELETED" => WatchEvent::Deleted(obj(raw.object)?),
        "BOOKMARK" => WatchEvent::Bookmark {
            resource_version: raw
                .object
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        },
        "ERROR" => return Err(status_from_value("watch", path, 500, &raw.object)),
        other => return Err(decode(format!("unknown event type {other:?}"))),
    };
    Ok(Some(ev))
}

impl<T: DeserializeOwned> Iterator for WatchStream<T> {
    type Item = Result<WatchEvent<T>, KubeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut line = Vec::new();
        while !self.done {
            match read_line_capped(&mut self.reader, MAX_EVENT_LINE_BYTES, &mut line) {
                Ok(None) => self.done = true,
                Ok(Some(())) => match decode_event_line(&self.path, &line) {
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
