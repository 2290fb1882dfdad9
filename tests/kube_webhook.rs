//! `ipam-controller --webhook` behind the real kube-apiserver of `hack/control-plane.sh`: a
//! ValidatingWebhookConfiguration with `url` + `caBundle` on 127.0.0.1
//! in front of the real binary. Fails (never skips) when not run under the control plane.
//!
//! Isolation: the configuration's namespaceSelector matches only this test's namespace, so
//! tests running beside it never meet the webhook; it is deleted on drop, also on failure.
//! Certificates come from a test CA made here with the openssl CLI. Every wait is bounded.
// Renames here play an operator or another tool replacing a file (clippy.toml, docs/style.md).
#![allow(clippy::disallowed_methods)]

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::kube::{Kube, allowed, apply_manifests, cp_dir, unique_name, yaml_docs};
use common::{Sandbox, unique, wait_until};
use serde_json::{Value, json};

const API: &str = "/apis/nv-ipam.nvidia.com/v1alpha1";
const VWC: &str = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations";
const LABEL: &str = "nv-ipam.test/group";
/// Bound for the controller to start, a status to appear, the API server to pick up the
/// configuration, a certificate reload (checked every second) to show.
const SETTLE: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A test CA in `dir` (ca.crt, ca.key).
fn make_ca(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=nv-ipam-webhook-test-ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// A serving certificate for IP 127.0.0.1 signed by the CA: `<name>.crt`, `<name>.key`.
fn make_leaf(dir: &Path, name: &str) {
    let (key, csr, crt, ext) =
        (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"), format!("{name}.ext"));
    std::fs::write(
        dir.join(&ext),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n",
    )
    .expect("write ext");
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            "/CN=nv-ipam-webhook",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            &format!("0x{}", unique_hex()),
            "-days",
            "1",
            "-extfile",
            &ext,
            "-out",
            &crt,
        ],
    );
}

fn unique_hex() -> String {
    let n =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{n:x}")
}

/// Puts `<name>.crt`/`.key` in place as tls.crt/tls.key, each by an atomic rename.
fn install_cert(pki: &Path, name: &str, certs: &Path) {
    for (from, to) in [(format!("{name}.key"), "tls.key"), (format!("{name}.crt"), "tls.crt")] {
        let tmp = certs.join(format!(".{to}.tmp"));
        std::fs::copy(pki.join(from), &tmp).expect("copy cert");
        std::fs::rename(&tmp, certs.join(to)).expect("rename cert");
    }
}

/// The base64 body of the first PEM certificate in `text`.
fn pem_body(text: &str) -> Option<String> {
    let start = text.find("-----BEGIN CERTIFICATE-----")?;
    let end = text[start..].find("-----END CERTIFICATE-----")? + start;
    Some(text[start + 27..end].split_whitespace().collect())
}

/// The certificate the webhook serves now (via `openssl s_client`), `None` if the handshake fails.
fn served_cert(port: u16) -> Option<String> {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-showcerts"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    pem_body(&String::from_utf8_lossy(&out.stdout))
}

fn file_cert(path: &Path) -> String {
    pem_body(&std::fs::read_to_string(path).expect("read cert")).expect("a PEM certificate")
}

/// The controller process; killed on drop, its log printed if the test failed.
struct Controller {
    child: Child,
    health: u16,
    metrics: u16,
    log: std::path::PathBuf,
}

impl Controller {
    fn readyz(&self) -> u16 {
        common::http_get(self.health, "/readyz").0
    }

    fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = common::http_get(self.metrics, "/metrics");
        body.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- controller log {} ---\n{}", self.log.display(), self.log());
        }
    }
}

/// Deletes the configuration, the namespace and the nodes on drop, also when the test fails.
struct Cleanup {
    admin: Kube,
    vwc: String,
    ns: String,
    nodes: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = self.admin.delete(&format!("{VWC}/{}", self.vwc));
        for n in &self.nodes {
            let _ = self.admin.delete(&format!("/api/v1/nodes/{n}"));
        }
        let _ = self.admin.delete(&format!("/api/v1/namespaces/{}", self.ns));
    }
}

fn pool(kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "nv-ipam.nvidia.com/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec})
}

fn plural(obj: &Value) -> &'static str {
    if obj["kind"] == "CIDRPool" { "cidrpools" } else { "ippools" }
}

/// `(status, message)` of creating `obj` in `ns`.
fn create(admin: &Kube, ns: &str, obj: &Value) -> (u16, String) {
    let r = admin.post(&format!("{API}/namespaces/{ns}/{}", plural(obj)), obj);
    (r.status, r.body["message"].as_str().unwrap_or_default().to_string())
}

fn denied_by_webhook(msg: &str) -> bool {
    msg.contains("admission webhook \"ippool.nv-ipam.nvidia.com\" denied the request")
        || msg.contains("admission webhook \"cidrpool.nv-ipam.nvidia.com\" denied the request")
}

/// Asserts that creating `obj` is refused by the webhook with `field` named.
fn assert_refused(admin: &Kube, ns: &str, obj: &Value, field: &str) {
    let (status, msg) = create(admin, ns, obj);
    assert!(
        status == 403 && denied_by_webhook(&msg) && msg.contains(&format!("{field}: ")),
        "{} {}: want 403 from the webhook naming {field}, got {status}: {msg}",
        obj["kind"],
        obj["metadata"]["name"]
    );
}

/// GET, change, PUT of a pool, retried on 409 (the controller writes status meanwhile).
fn update(admin: &Kube, ns: &str, plural: &str, name: &str, f: impl Fn(&mut Value)) -> (u16, String) {
    let path = format!("{API}/namespaces/{ns}/{plural}/{name}");
    for _ in 0..10 {
        let mut p = admin.get(&path).expect_status(200, "get pool");
        f(&mut p);
        let r = admin.put(&path, &p);
        if r.status != 409 {
            return (r.status, r.body["message"].as_str().unwrap_or_default().to_string());
        }
    }
    panic!("update {plural}/{name}: 10 conflicts in a row")
}

#[test]
fn webhook_behind_the_real_apiserver() {
    let admin = Kube::from_env();
    apply_manifests(&admin, &["deploy/base/namespace.yaml", "deploy/rbac/controller.yaml"]);
    let controller_kube = Kube::from_cp_kubeconfig("controller");
    wait_until(SETTLE, "the controller may list cidrpools", || {
        allowed(
            &controller_kube,
            json!({"group": "nv-ipam.nvidia.com", "resource": "cidrpools", "verb": "list"}),
        )
    });
    let ns = unique_name("it-webhook");
    admin
        .post(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .expect_status(201, "create namespace");
    let mut cleanup = Cleanup { admin: admin.clone(), vwc: ns.clone(), ns: ns.clone(), nodes: Vec::new() };

    // PKI; the certificate directory starts empty
    let sandbox = Sandbox::new();
    let (pki, certs) = (sandbox.path("pki"), sandbox.path("certs"));
    std::fs::create_dir_all(&pki).expect("mkdir pki");
    std::fs::create_dir_all(&certs).expect("mkdir certs");
    make_ca(&pki);
    make_leaf(&pki, "one");
    make_leaf(&pki, "two");

    let (health, metrics, port) = (free_port(), free_port(), free_port());
    let log = sandbox.path("controller.log");
    let child = Command::new(env!("CARGO_BIN_EXE_ipam-controller"))
        .args(["--kubeconfig", &cp_dir().join("controller.kubeconfig").display().to_string()])
        .args(["--ippools-namespace", &ns, "-v", "2"])
        .args(["--metrics-bind-address", &format!("127.0.0.1:{metrics}")])
        .args(["--health-probe-bind-address", &format!("127.0.0.1:{health}")])
        .args(["--webhook", "--webhook-bind-address", &format!("127.0.0.1:{port}")])
        .args(["--webhook-cert-dir", &certs.display().to_string()])
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("create log"))
        .spawn()
        .expect("start ipam-controller");
    let c = Controller { child, health, metrics, log };

    // no certificate: not ready; the first pair appears: ready
    wait_until(SETTLE, "the controller reports the missing certificate", || {
        c.log().contains("no webhook certificate")
    });
    assert_ne!(c.readyz(), 200, "ready without a certificate");
    install_cert(&pki, "one", &certs);
    wait_until(SETTLE, "/readyz once the certificate is there", || c.readyz() == 200);
    assert_eq!(served_cert(port), Some(file_cert(&pki.join("one.crt"))));

    // the configuration, for this namespace only
    let ca = std::fs::read(pki.join("ca.crt")).expect("read ca");
    let ca_b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(ca)
    };
    let hook = |kind: &str, resource: &str| {
        json!({
            "name": format!("{kind}.nv-ipam.nvidia.com"),
            "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": "Fail", "timeoutSeconds": 5,
            "clientConfig": {"url": format!("https://127.0.0.1:{port}/validate-nv-ipam-nvidia-com-v1alpha1-{kind}"),
                             "caBundle": ca_b64},
            "rules": [{"apiGroups": ["nv-ipam.nvidia.com"], "apiVersions": ["v1alpha1"],
                       "operations": ["CREATE", "UPDATE"], "resources": [resource], "scope": "Namespaced"}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
        })
    };
    let vwc = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": ns}, "webhooks": [hook("ippool", "ippools"), hook("cidrpool", "cidrpools")]});
    admin.post(VWC, &vwc).expect_status(201, "create the webhook configuration");

    // the API server picks configurations up through an informer: probe until refused
    let probe = pool("IPPool", "probe", json!({"subnet": "10.9.0.0/24", "perNodeBlockSize": 300}));
    let probe_c = pool("CIDRPool", "probe", json!({"cidr": "10.9.0.0/24", "perNodeNetworkPrefix": 8}));
    for p in [&probe, &probe_c] {
        wait_until(SETTLE, "the API server calls the webhook", || {
            let (status, msg) = create(&admin, &ns, p);
            if status == 201 {
                let _ = admin.delete(&format!("{API}/namespaces/{ns}/{}/probe", plural(p)));
            }
            status == 403 && denied_by_webhook(&msg)
        });
    }

    // invalid pools (the rules of src/api/validate.rs), each refused naming the field
    let ip = |spec: Value| pool("IPPool", "bad", spec);
    let cidr = |spec: Value| pool("CIDRPool", "bad", spec);
    let table = [
        (ip(json!({"subnet": "10.0.0.0/33", "perNodeBlockSize": 4})), "spec.subnet"),
        (ip(json!({"subnet": "not-a-cidr", "perNodeBlockSize": 4})), "spec.subnet"),
        (ip(json!({"subnet": "10.0.0.0/24", "perNodeBlockSize": 300})), "spec.perNodeBlockSize"),
        (ip(json!({"subnet": "10.0.0.0/24", "perNodeBlockSize": 4, "gateway": "10.1.0.1"})), "spec.gateway"),
        (
            ip(json!({"subnet": "10.0.0.0/24", "perNodeBlockSize": 4,
                      "exclusions": [{"startIP": "10.0.0.5", "endIP": "10.0.1.5"}]})),
            "spec.exclusions[0].endIP",
        ),
        (
            ip(json!({"subnet": "10.0.0.0/24", "perNodeBlockSize": 4, "gateway": "10.0.0.1",
                      "routes": [{"dst": "fd00::/64"}]})),
            "spec.routes[0].dst",
        ),
        (
            ip(json!({"subnet": "10.0.0.0/24", "perNodeBlockSize": 4, "defaultGateway": true})),
            "spec.defaultGateway",
        ),
        (
            ip(json!({"subnet": "10.0.0.0/24", "perNodeBlockSize": 4,
                      "perNodeExclusions": [{"startIndex": 2, "endIndex": 9}]})),
            "spec.perNodeExclusions[0].endIndex",
        ),
        (cidr(json!({"cidr": "10.0.0.1/16", "perNodeNetworkPrefix": 24})), "spec.cidr"),
        (cidr(json!({"cidr": "10.0.0.0/16", "perNodeNetworkPrefix": 8})), "spec.perNodeNetworkPrefix"),
        (
            cidr(json!({"cidr": "10.0.0.0/16", "perNodeNetworkPrefix": 24, "gatewayIndex": 300})),
            "spec.gatewayIndex",
        ),
        (
            cidr(json!({"cidr": "10.0.0.0/16", "perNodeNetworkPrefix": 24,
                        "staticAllocations": [{"nodeName": "n1", "prefix": "10.1.0.0/24"}]})),
            "spec.staticAllocations[0].prefix",
        ),
        (
            cidr(json!({"cidr": "10.0.0.0/16", "perNodeNetworkPrefix": 24, "gatewayIndex": 1,
                        "defaultGateway": true, "routes": [{"dst": "0.0.0.0/0"}]})),
            "spec.routes[0].dst",
        ),
    ];
    let refused_before =
        c.metric("nv_ipam_webhook_reviews_total{result=\"refused\"}").expect("webhook metrics");
    for (obj, field) in &table {
        assert_refused(&admin, &ns, obj, field);
    }
    let refused = c.metric("nv_ipam_webhook_reviews_total{result=\"refused\"}").expect("webhook metrics");
    assert_eq!(refused - refused_before, table.len() as f64);

    // the reference's examples pass, although they share 192.168.0.0/16 (an IPPool and a
    // CIDRPool: only a warning); a second IPPool over the same range is refused until annotated
    let examples: Vec<Value> = ["deploy/examples/ippool.yaml", "deploy/examples/cidrpool.yaml"]
        .iter()
        .flat_map(|f| yaml_docs(f))
        .collect();
    for example in &examples {
        let (status, msg) = create(&admin, &ns, example);
        assert_eq!(status, 201, "{msg}");
    }
    let mut twin = examples[0].clone();
    twin["metadata"]["name"] = json!("pool1-twin");
    // the overlap check reads the controller's cache, which follows the create by a watch event
    wait_until(SETTLE, "a second IPPool over pool1's range is refused as overlapping", || {
        let (status, msg) = create(&admin, &ns, &twin);
        if status == 201 {
            let _ = admin.delete(&format!("{API}/namespaces/{ns}/ippools/pool1-twin"));
        }
        status == 403 && msg.contains("spec.subnet: 192.168.0.0/16 overlaps IPPool \"pool1\"")
    });
    twin["metadata"]["annotations"] = json!({"nv-ipam.nvidia.com/allow-overlap": "true"});
    let (status, msg) = create(&admin, &ns, &twin);
    assert_eq!(status, 201, "{msg}");

    // an UPDATE that moves held blocks
    let group = format!("g{}", unique());
    for n in ["n1", "n2"] {
        let name = format!("{group}-{n}");
        let node =
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {LABEL: group}}});
        admin.post("/api/v1/nodes", &node).expect_status(201, "create node");
        cleanup.nodes.push(name);
    }
    let selector = json!({"nodeSelectorTerms": [{"matchExpressions": [
        {"key": LABEL, "operator": "In", "values": [group]}]}]});
    let held = pool(
        "IPPool",
        "held",
        json!({"subnet": "172.20.0.0/24", "perNodeBlockSize": 8, "nodeSelector": selector}),
    );
    let (status, msg) = create(&admin, &ns, &held);
    assert_eq!(status, 201, "{msg}");
    wait_until(SETTLE, "both nodes hold a block", || {
        let p = admin.get(&format!("{API}/namespaces/{ns}/ippools/held")).expect_status(200, "get pool");
        p["status"]["allocations"].as_array().is_some_and(|a| a.len() == 2)
    });
    let (status, msg) = update(&admin, &ns, "ippools", "held", |p| p["spec"]["perNodeBlockSize"] = json!(16));
    assert!(status == 403 && denied_by_webhook(&msg), "{status}: {msg}");
    assert!(
        msg.contains("spec.perNodeBlockSize: this update would move the blocks of 2 node(s)")
            && msg.contains(&format!("{group}-n1, {group}-n2")),
        "{msg}"
    );
    // a label change moves nothing
    let (status, msg) =
        update(&admin, &ns, "ippools", "held", |p| p["metadata"]["labels"] = json!({"x": "y"}));
    assert_eq!(status, 200, "{msg}");
    let (status, msg) = update(&admin, &ns, "ippools", "held", |p| {
        p["spec"]["perNodeBlockSize"] = json!(16);
        p["metadata"]["annotations"] = json!({"nv-ipam.nvidia.com/allow-reallocation": "true"});
    });
    assert_eq!(status, 200, "{msg}");

    // certificate reload: a new pair is served without a restart
    install_cert(&pki, "two", &certs);
    let two = file_cert(&pki.join("two.crt"));
    wait_until(SETTLE, "the new certificate is served", || {
        served_cert(port).as_deref() == Some(two.as_str())
    });
    assert_refused(&admin, &ns, &table[2].0, table[2].1);
    // a broken pair keeps the previous one
    std::fs::write(certs.join("tls.crt"), "not a certificate\n").expect("write");
    // the readiness probe looks at the files too (nothing else may call meanwhile)
    wait_until(SETTLE, "the broken pair is reported", || {
        c.readyz() == 200 && c.log().contains("webhook certificate not reloaded")
    });
    assert_eq!(served_cert(port).as_deref(), Some(two.as_str()));
    assert_eq!(c.readyz(), 200);

    drop(c);
    drop(cleanup);
}
