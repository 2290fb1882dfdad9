//! A minimal Kubernetes REST client for integration tests, on the project's real client stack
//! (ureq 3 + rustls with ring), talking to the control plane of `hack/control-plane.sh`.
//!
//! [`Kube::from_env`] reads `$KUBECONFIG` (token + embedded CA); [`Kube::from_cp_kubeconfig`]
//! picks one of the other identities (`controller`, `node`) from `$NV_IPAM_CP_DIR`. Requests
//! return the HTTP status and the JSON body (a `Status` object for errors), never an error for
//! 4xx/5xx, so tests can assert on both.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use ureq::tls::{PemItem, RootCerts, TlsConfig};

/// How a test learns that it is not running under the control plane.
pub const NOT_UNDER_CONTROL_PLANE: &str =
    "KUBECONFIG and NV_IPAM_CP_DIR must be set: run under hack/control-plane.sh; hack/test.sh does this";

/// Set to `1` by hack/test.sh: there, a test that needs the control plane and does not find it
/// fails instead of skipping, so a broken set-up cannot pass as a run of skipped tests.
pub const REQUIRE_CONTROL_PLANE: &str = "NV_IPAM_REQUIRE_CONTROL_PLANE";

/// Whether this test runs under `hack/control-plane.sh` (`KUBECONFIG` and `NV_IPAM_CP_DIR`
/// set). When it does not, prints one line naming the test and how to run it, and returns
/// false (the test then returns: plain `cargo test` passes on a machine without the control
/// plane); when [`REQUIRE_CONTROL_PLANE`] is `1`, panics instead. Call it through
/// [`crate::needs_control_plane!`], the first line of every test that needs it.
pub fn under_control_plane() -> bool {
    let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    if set("KUBECONFIG") && set("NV_IPAM_CP_DIR") {
        return true;
    }
    if std::env::var(REQUIRE_CONTROL_PLANE).is_ok_and(|v| v == "1") {
        panic!("{NOT_UNDER_CONTROL_PLANE} ({REQUIRE_CONTROL_PLANE}=1: this run must not skip)");
    }
    // libtest names the test's thread after the test; the binary is `<file>-<hash>`
    let exe = std::env::current_exe().ok();
    let file = exe.as_ref().and_then(|p| p.file_stem()).and_then(|s| s.to_str()).unwrap_or("?");
    let file = file.rsplit_once('-').map_or(file, |(f, _)| f);
    let test = std::thread::current().name().unwrap_or("?").to_string();
    // straight to the stderr stream: libtest's capture would hide an eprintln of a passing test
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "skipped {file}::{test}: needs the control plane; run it under hack/control-plane.sh (hack/test.sh does)"
    );
    false
}

/// Returns from the calling test when it does not run under the control plane (see
/// [`common::kube::under_control_plane`]).
#[macro_export]
macro_rules! needs_control_plane {
    () => {
        if !$crate::common::kube::under_control_plane() {
            return;
        }
    };
}

/// One identity (token) on one API server.
#[derive(Clone)]
pub struct Kube {
    agent: ureq::Agent,
    tls: TlsConfig,
    /// Base URL, e.g. `https://127.0.0.1:41234`.
    pub server: String,
    token: String,
}

/// A response: HTTP status and the body parsed as JSON (`Value::Null` if empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    /// The body, if the status is `want`; otherwise a panic that shows the status and body.
    pub fn expect_status(self, want: u16, what: &str) -> Value {
        assert_eq!(self.status, want, "{what}: unexpected status, body: {}", self.body);
        self.body
    }
}

/// `$NV_IPAM_CP_DIR`, or a panic telling how to run the tests.
pub fn cp_dir() -> PathBuf {
    match std::env::var_os("NV_IPAM_CP_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => panic!("{NOT_UNDER_CONTROL_PLANE}"),
    }
}

/// Runs `hack/control-plane.sh ACTION` with ACTION one of `stop-apiserver`, `start-apiserver`,
/// `restart-apiserver`; start/restart return once the apiserver is ready again (same URL,
/// certificates, tokens and etcd). Panics with the script's output on failure.
pub fn control_plane(action: &str) {
    let _ = cp_dir();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/control-plane.sh");
    let out =
        Command::new(&script).arg(action).output().unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    assert!(
        out.status.success(),
        "control-plane.sh {action}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every non-empty YAML document of a file under the repository root, as JSON values.
pub fn yaml_docs(rel: &str) -> Vec<Value> {
    use serde::Deserialize as _;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    yaml_serde::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

/// The collection an object of deploy/ (namespace, service accounts, RBAC) is created in.
pub fn collection(obj: &Value) -> String {
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or("");
    let rbac = "/apis/rbac.authorization.k8s.io/v1";
    match obj["kind"].as_str().unwrap_or("") {
        "Namespace" => "/api/v1/namespaces".into(),
        "ServiceAccount" => format!("/api/v1/namespaces/{ns}/serviceaccounts"),
        "ClusterRole" => format!("{rbac}/clusterroles"),
        "ClusterRoleBinding" => format!("{rbac}/clusterrolebindings"),
        "RoleBinding" => format!("{rbac}/namespaces/{ns}/rolebindings"),
        other => panic!("no collection known for kind {other:?} in {obj}"),
    }
}

/// Creates `obj` as `admin`, accepting AlreadyExists: the tests of every binary share one
/// apiserver and the RBAC objects are cluster-wide, so whoever comes first creates them.
pub fn create_or_exists(admin: &Kube, obj: &Value) {
    let r = admin.post(&collection(obj), obj);
    let exists = r.status == 409 && r.body["reason"] == "AlreadyExists";
    assert!(
        r.status == 201 || exists,
        "create {} {}: {} {}",
        obj["kind"],
        obj["metadata"]["name"],
        r.status,
        r.body
    );
}

/// Creates every object of the given files under deploy/ (see [`create_or_exists`]).
pub fn apply_manifests(admin: &Kube, files: &[&str]) {
    for rel in files {
        for obj in yaml_docs(rel) {
            create_or_exists(admin, &obj);
        }
    }
}

/// Whether the identity of `kube` may do `attrs` (a SelfSubjectAccessReview's resourceAttributes).
pub fn allowed(kube: &Kube, attrs: Value) -> bool {
    let review = serde_json::json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attrs},
    });
    let r = kube.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", &review);
    r.expect_status(201, "self subject access review")["status"]["allowed"] == true
}

/// A name unique to this process and call, for namespaces and objects (DNS-1123 label).
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{prefix}-{}-{:x}-{}", std::process::id(), nanos, N.fetch_add(1, Ordering::Relaxed))
}

impl Kube {
    /// The admin client of `$KUBECONFIG`; panics with [`NOT_UNDER_CONTROL_PLANE`] if the test
    /// does not run under `hack/control-plane.sh`.
    pub fn from_env() -> Kube {
        let _ = cp_dir();
        let path = match std::env::var_os("KUBECONFIG") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => panic!("{NOT_UNDER_CONTROL_PLANE}"),
        };
        Kube::from_kubeconfig(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The client for `$NV_IPAM_CP_DIR/<who>.kubeconfig` (`admin`, `controller`, `node`).
    pub fn from_cp_kubeconfig(who: &str) -> Kube {
        let path = cp_dir().join(format!("{who}.kubeconfig"));
        Kube::from_kubeconfig(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Reads a token-based kubeconfig (current context, CA data or file) with the product's
    /// own kubeconfig loader, so the tests exercise it too.
    pub fn from_kubeconfig(path: &Path) -> Result<Kube, String> {
        use nv_ipam::kube::{Auth, ClusterConfig};
        let cfg = ClusterConfig::from_kubeconfig(path).map_err(|e| e.to_string())?;
        let token = match &cfg.auth {
            Auth::Token(t) => t.clone(),
            Auth::TokenFile(f) => std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?,
            _ => return Err("the test client needs a token user".into()),
        };
        let ca_pem = cfg.ca_pem.ok_or("cluster has no certificate authority")?;
        Kube::new(cfg.server.trim_end_matches('/'), &ca_pem, token.trim())
    }

    /// A client for `server`, trusting only the CA certificates of `ca_pem`.
    pub fn new(server: &str, ca_pem: &[u8], token: &str) -> Result<Kube, String> {
        // Several tests of one binary race to install it; losing the race is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(ca_pem) {
            if let PemItem::Certificate(c) = item.map_err(|e| format!("CA PEM: {e}"))? {
                certs.push(c);
            }
        }
        if certs.is_empty() {
            return Err("no certificate in the CA PEM".into());
        }
        let tls = TlsConfig::builder().root_certs(RootCerts::Specific(Arc::new(certs))).build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls.clone())
            .http_status_as_error(false)
            .https_only(true)
            .proxy(None)
            .user_agent("nv-ipam-tests")
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_recv_response(Some(Duration::from_secs(30)))
            .timeout_per_read(Some(Duration::from_secs(30)))
            .build()
            .new_agent();
        Ok(Kube { agent, tls, server: server.to_string(), token: token.to_string() })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.token)
    }

    fn reply(res: Result<ureq::http::Response<ureq::Body>, ureq::Error>, what: &str) -> Reply {
        let mut resp = res.unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .unwrap_or_else(|e| panic!("{what}: reading the body: {e}"));
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, body }
    }

    /// `GET path` (e.g. `/api/v1/namespaces/default`).
    pub fn get(&self, path: &str) -> Reply {
        self.try_get(path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// `GET path`, with transport errors (connection refused, timeouts) as `Err`.
    pub fn try_get(&self, path: &str) -> Result<Reply, ureq::Error> {
        let res = self.agent.get(self.url(path)).header("Authorization", self.auth()).call()?;
        Ok(Kube::reply(Ok(res), &format!("GET {path}")))
    }

    /// `GET path` with an `Accept` header, e.g. `application/json;as=Table;g=meta.k8s.io;v=v1`
    /// for the server-side table (printer columns) that kubectl shows.
    pub fn get_accept(&self, path: &str, accept: &str) -> Reply {
        let res = self
            .agent
            .get(self.url(path))
            .header("Authorization", self.auth())
            .header("Accept", accept)
            .call();
        Kube::reply(res, &format!("GET {path} (Accept: {accept})"))
    }

    /// `POST path` with a JSON body (create).
    pub fn post(&self, path: &str, body: &Value) -> Reply {
        let res = self.agent.post(self.url(path)).header("Authorization", self.auth()).send_json(body);
        Kube::reply(res, &format!("POST {path}"))
    }

    /// `PUT path` with a JSON body (replace; carries `metadata.resourceVersion`).
    pub fn put(&self, path: &str, body: &Value) -> Reply {
        let res = self.agent.put(self.url(path)).header("Authorization", self.auth()).send_json(body);
        Kube::reply(res, &format!("PUT {path}"))
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> Reply {
        let res = self.agent.delete(self.url(path)).header("Authorization", self.auth()).call();
        Kube::reply(res, &format!("DELETE {path}"))
    }

    /// Starts a watch on the collection `path` from `resource_version`. Returns once the
    /// apiserver has answered with the response headers, i.e. the watch is established.
    /// Each read waits at most `idle`; the server ends the watch after `idle` as well.
    pub fn watch(&self, path: &str, resource_version: &str, idle: Duration) -> Watch {
        let what = format!("WATCH {path}");
        // a watch gets its own agent, so it holds a connection of its own and can be dropped
        let agent = ureq::Agent::config_builder()
            .tls_config(self.tls.clone())
            .http_status_as_error(false)
            .https_only(true)
            .proxy(None)
            .user_agent("nv-ipam-tests")
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_recv_response(Some(Duration::from_secs(30)))
            .timeout_per_read(Some(idle + Duration::from_secs(5)))
            .build()
            .new_agent();
        let resp = agent
            .get(self.url(path))
            .header("Authorization", self.auth())
            .query("watch", "1")
            .query("resourceVersion", resource_version)
            .query("timeoutSeconds", idle.as_secs().max(1).to_string())
            .call()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = resp.status().as_u16();
        if status != 200 {
            let body = Kube::reply(Ok(resp), &what).body;
            panic!("{what}: status {status}, body: {body}");
        }
        Watch { what, reader: BufReader::new(Box::new(resp.into_body().into_reader())) }
    }
}

/// An open watch: one JSON event per line.
pub struct Watch {
    what: String,
    reader: BufReader<Box<dyn std::io::Read + Send>>,
}

impl Watch {
    /// The next event (`{"type": ..., "object": ...}`), or `None` when the server ended the
    /// watch. Panics on a read error, including the per-read timeout.
    pub fn next_event(&mut self) -> Option<Value> {
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut line)
                .unwrap_or_else(|e| panic!("{}: read: {e}", self.what));
            if n == 0 {
                return None;
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let ev = serde_json::from_slice(&line).unwrap_or_else(|e| {
                panic!("{}: bad event {}: {e}", self.what, String::from_utf8_lossy(&line))
            });
            return Some(ev);
        }
    }

    /// Reads events until `pred` accepts one (returned) or `deadline` passes (panic). The
    /// deadline is checked between events; each read is bounded by the watch's idle timeout.
    pub fn wait_for(&mut self, deadline: Instant, mut pred: impl FnMut(&Value) -> bool) -> Value {
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            match self.next_event() {
                Some(ev) if pred(&ev) => return ev,
                Some(ev) => seen.push(ev["type"].as_str().unwrap_or("?").to_string()),
                None => panic!("{}: server ended the watch; events seen: {seen:?}", self.what),
            }
        }
        panic!("{}: deadline passed; events seen: {seen:?}", self.what)
    }
}
