//! `ipam-controller --webhook` behind the real kube-apiserver of `hack/control-plane.sh`: a
//! ValidatingWebhookConfiguration with `url` + `caBundle` on 127.0.0.1
//! in front of the real binary. One test per behaviour: readiness waits for the certificate,
//! invalid pools are refused naming the field, overlaps need an annotation, an update that
//! moves held blocks needs one too, certificates reload without a restart. Skips (one line on
//! stderr) when not run under the control plane; fails instead under hack/test.sh.
//!
//! Isolation: each test has its own namespace, controller and configuration, whose
//! namespaceSelector matches only that namespace, so tests running beside it never meet its
//! webhook; all are deleted on drop, also on failure. Certificates come from a test CA made
//! here with the openssl CLI. Every wait is bounded.
// Renames here play an operator or another tool replacing a file (clippy.toml, docs/style.md).
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::controller::{Controller, cluster_args};
use common::kube::{Kube, allowed, apply_manifests, unique_name, yaml_docs};
use common::{Sandbox, free_port, unique, wait_until};
use serde_json::{Value, json};

const API: &str = "/apis/nv-ipam.nvidia.com/v1alpha1";
const VWC: &str = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations";
const LABEL: &str = "nv-ipam.test/group";
/// Bound for the controller to start, a status to appear, the API server to pick up the
/// configuration, a certificate reload (checked every second) to show.
const SETTLE: Duration = Duration::from_secs(30);

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

/// One test's webhook: a namespace, a test CA with two serving pairs (`one`, `two`) in `pki`,
/// the controller serving the webhook from `certs` (empty at first) on `port`; deleted on drop.
struct Webhook {
    admin: Kube,
    ns: String,
    pki: PathBuf,
    certs: PathBuf,
    port: u16,
    c: Controller,
    // dropped last: the controller goes first, then the objects, then the files
    cleanup: Cleanup,
    _sandbox: Sandbox,
}

impl Webhook {
    /// The controller is started with an empty certificate directory; nothing is registered.
    fn start() -> Webhook {
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
        let cleanup = Cleanup { admin: admin.clone(), vwc: ns.clone(), ns: ns.clone(), nodes: Vec::new() };

        // PKI; the certificate directory starts empty
        let sandbox = Sandbox::labelled("webhook");
        let (pki, certs) = (sandbox.path("pki"), sandbox.path("certs"));
        std::fs::create_dir_all(&pki).expect("mkdir pki");
        std::fs::create_dir_all(&certs).expect("mkdir certs");
        make_ca(&pki);
        make_leaf(&pki, "one");
        make_leaf(&pki, "two");

        let port = free_port();
        let mut args = cluster_args(&ns);
        for a in ["--webhook", "--webhook-bind-address", &format!("127.0.0.1:{port}")] {
            args.push(a.to_string());
        }
        args.extend(["--webhook-cert-dir".to_string(), certs.display().to_string()]);
        let c = Controller::spawn(sandbox.path("controller.log"), &args);
        Webhook { admin, ns, pki, certs, port, c, cleanup, _sandbox: sandbox }
    }

    /// [`Webhook::start`], the first certificate installed and served, the configuration
    /// registered and called by the API server.
    fn serving() -> Webhook {
        let w = Webhook::start();
        w.install_cert("one");
        wait_until(SETTLE, "/readyz once the certificate is there", || w.c.readyz() == 200);
        w.register();
        w
    }

    fn install_cert(&self, name: &str) {
        install_cert(&self.pki, name, &self.certs);
    }

    /// The configuration, for this namespace only; returns once the API server calls it.
    fn register(&self) {
        let ca = std::fs::read(self.pki.join("ca.crt")).expect("read ca");
        let ca_b64 = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(ca)
        };
        let hook = |kind: &str, resource: &str| {
            json!({
                "name": format!("{kind}.nv-ipam.nvidia.com"),
                "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": "Fail", "timeoutSeconds": 5,
                "clientConfig": {"url": format!("https://127.0.0.1:{}/validate-nv-ipam-nvidia-com-v1alpha1-{kind}", self.port),
                                 "caBundle": ca_b64},
                "rules": [{"apiGroups": ["nv-ipam.nvidia.com"], "apiVersions": ["v1alpha1"],
                           "operations": ["CREATE", "UPDATE"], "resources": [resource], "scope": "Namespaced"}],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": self.ns}},
            })
        };
        let vwc = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": self.ns}, "webhooks": [hook("ippool", "ippools"), hook("cidrpool", "cidrpools")]});
        self.admin.post(VWC, &vwc).expect_status(201, "create the webhook configuration");

        // the API server picks configurations up through an informer: probe until refused
        let probe = pool("IPPool", "probe", json!({"subnet": "10.9.0.0/24", "perNodeBlockSize": 300}));
        let probe_c = pool("CIDRPool", "probe", json!({"cidr": "10.9.0.0/24", "perNodeNetworkPrefix": 8}));
        for p in [&probe, &probe_c] {
            wait_until(SETTLE, "the API server calls the webhook", || {
                let (status, msg) = create(&self.admin, &self.ns, p);
                if status == 201 {
                    let _ = self.admin.delete(&format!("{API}/namespaces/{}/{}/probe", self.ns, plural(p)));
                }
                status == 403 && denied_by_webhook(&msg)
            });
        }
    }

    fn create(&self, obj: &Value) -> (u16, String) {
        create(&self.admin, &self.ns, obj)
    }

    fn refused_reviews(&self) -> f64 {
        self.c.metric("nv_ipam_webhook_reviews_total{result=\"refused\"}").expect("webhook metrics")
    }
}

/// An invalid IPPool, refused naming spec.perNodeBlockSize.
fn block_too_big() -> Value {
    pool("IPPool", "bad", json!({"subnet": "10.0.0.0/24", "perNodeBlockSize": 300}))
}

#[test]
fn not_ready_until_a_certificate_is_there_then_serves_it() {
    crate::needs_control_plane!();
    let w = Webhook::start();
    wait_until(SETTLE, "the controller reports the missing certificate", || {
        w.c.log().contains("no webhook certificate")
    });
    assert_ne!(w.c.readyz(), 200, "ready without a certificate");
    w.install_cert("one");
    wait_until(SETTLE, "/readyz once the certificate is there", || w.c.readyz() == 200);
    assert_eq!(served_cert(w.port), Some(file_cert(&w.pki.join("one.crt"))));
}

#[test]
fn invalid_pools_are_refused_naming_the_field() {
    crate::needs_control_plane!();
    let w = Webhook::serving();
    // invalid pools (the rules of src/api/validate.rs), each refused naming the field
    let ip = |spec: Value| pool("IPPool", "bad", spec);
    let cidr = |spec: Value| pool("CIDRPool", "bad", spec);
    let table = [
        (ip(json!({"subnet": "10.0.0.0/33", "perNodeBlockSize": 4})), "spec.subnet"),
        (ip(json!({"subnet": "not-a-cidr", "perNodeBlockSize": 4})), "spec.subnet"),
        (block_too_big(), "spec.perNodeBlockSize"),
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
    let refused_before = w.refused_reviews();
    for (obj, field) in &table {
        assert_refused(&w.admin, &w.ns, obj, field);
    }
    assert_eq!(w.refused_reviews() - refused_before, table.len() as f64);
}

#[test]
fn reference_examples_pass_and_an_overlapping_pool_needs_the_annotation() {
    crate::needs_control_plane!();
    let w = Webhook::serving();
    // the reference's examples pass, although they share 192.168.0.0/16 (an IPPool and a
    // CIDRPool: only a warning); a second IPPool over the same range is refused until annotated
    let examples: Vec<Value> = ["deploy/examples/ippool.yaml", "deploy/examples/cidrpool.yaml"]
        .iter()
        .flat_map(|f| yaml_docs(f))
        .collect();
    for example in &examples {
        let (status, msg) = w.create(example);
        assert_eq!(status, 201, "{msg}");
    }
    let mut twin = examples[0].clone();
    twin["metadata"]["name"] = json!("pool1-twin");
    // the overlap check reads the controller's cache, which follows the create by a watch event
    wait_until(SETTLE, "a second IPPool over pool1's range is refused as overlapping", || {
        let (status, msg) = w.create(&twin);
        if status == 201 {
            let _ = w.admin.delete(&format!("{API}/namespaces/{}/ippools/pool1-twin", w.ns));
        }
        status == 403 && msg.contains("spec.subnet: 192.168.0.0/16 overlaps IPPool \"pool1\"")
    });
    twin["metadata"]["annotations"] = json!({"nv-ipam.nvidia.com/allow-overlap": "true"});
    let (status, msg) = w.create(&twin);
    assert_eq!(status, 201, "{msg}");
}

#[test]
fn an_update_that_moves_held_blocks_is_refused_until_annotated() {
    crate::needs_control_plane!();
    let mut w = Webhook::serving();
    let (admin, ns) = (w.admin.clone(), w.ns.clone());
    let group = format!("g{}", unique());
    for n in ["n1", "n2"] {
        let name = format!("{group}-{n}");
        let node =
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {LABEL: group}}});
        admin.post("/api/v1/nodes", &node).expect_status(201, "create node");
        w.cleanup.nodes.push(name);
    }
    let selector = json!({"nodeSelectorTerms": [{"matchExpressions": [
        {"key": LABEL, "operator": "In", "values": [group]}]}]});
    let held = pool(
        "IPPool",
        "held",
        json!({"subnet": "172.20.0.0/24", "perNodeBlockSize": 8, "nodeSelector": selector}),
    );
    let (status, msg) = w.create(&held);
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
}

#[test]
fn a_new_certificate_is_served_without_a_restart_and_a_broken_one_keeps_the_previous() {
    crate::needs_control_plane!();
    let w = Webhook::serving();
    w.install_cert("two");
    let two = file_cert(&w.pki.join("two.crt"));
    wait_until(SETTLE, "the new certificate is served", || {
        served_cert(w.port).as_deref() == Some(two.as_str())
    });
    // the API server still reaches the webhook (it trusts the CA, not one certificate)
    assert_refused(&w.admin, &w.ns, &block_too_big(), "spec.perNodeBlockSize");
    // a broken pair keeps the previous one
    std::fs::write(w.certs.join("tls.crt"), "not a certificate\n").expect("write");
    // the readiness probe looks at the files too (nothing else may call meanwhile)
    wait_until(SETTLE, "the broken pair is reported", || {
        w.c.readyz() == 200 && w.c.log().contains("webhook certificate not reloaded")
    });
    assert_eq!(served_cert(w.port).as_deref(), Some(two.as_str()));
    assert_eq!(w.c.readyz(), 200);
}
