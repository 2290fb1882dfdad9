//! The air-gapped bundle of `hack/bundle.sh`, unpacked and installed into the real control plane
//! of `hack/control-plane.sh` the way its INSTALL.md says: checksums, server-side apply of
//! `manifests/no-webhook.yaml` with kubectl, CRDs Established, the objects in place, and then the
//! bundle's own `bin/ipam-controller` allocating the bundle's example IPPool. Nothing leaves
//! loopback: kubectl and the controller run with an empty environment (no proxy variables), and
//! the manifests are checked to reference nothing outside the bundle. The guide's image and
//! upgrade recipes are run on the rendered file as written there.
//!
//! The bundle is `$NV_IPAM_BUNDLE` (hack/test.sh builds it once); when unset, this test builds it
//! with `hack/bundle.sh` (a release build: minutes). kubectl is `$NV_IPAM_KUBECTL` (the one
//! hack/build-testbins.sh builds; hack/control-plane.sh exports it), else
//! `$NV_IPAM_TESTBINS/kubectl`, else `kubectl` on PATH.
//!
//! Sharing the apiserver: the bundle's cluster-scoped objects (CRDs, ClusterRoles, the nv-ipam
//! namespace and ServiceAccounts) are the ones every other test uses. They are applied without
//! `--force-conflicts`, so a field that differs from what another manager set fails the apply
//! instead of changing it under the other tests, and the CRDs' `metadata.generation` must not
//! move. They are left in place afterwards; the test's own namespace, Node and controller go,
//! and so do the Deployment and DaemonSet (see [`WORKLOADS`]).
//! Skips (one line on stderr) when not run under the control plane; fails instead under
//! hack/test.sh.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::controller::{Controller, cluster_args};
use common::kube::{Kube, allowed, unique_name, yaml_docs};
use common::{Sandbox, run_ok, wait_until};
use serde_json::{Value, json};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const OVERLAYS: [&str; 3] = ["no-webhook", "certmanager", "openshift"];
const CRDS: [&str; 3] =
    ["ippools.nv-ipam.nvidia.com", "cidrpools.nv-ipam.nvidia.com", "nodeblocksets.nv-ipam.nvidia.com"];
const IMAGE_PREFIX: &str = "localhost/nv-ipam";
/// Field manager of the test's apply, distinct from hack/control-plane.sh's and the tests'.
const FIELD_MANAGER: &str = "nv-ipam-bundle-test";
/// Bound for CRDs to become Established, RBAC to reach the authorizer, and the controller to
/// become ready and write a status (watch + reconcile + write on a busy machine).
const SETTLE: Duration = Duration::from_secs(60);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The bundle tarball: `$NV_IPAM_BUNDLE`, or one built once per test run by hack/bundle.sh.
fn tarball() -> &'static Path {
    static BUNDLE: OnceLock<PathBuf> = OnceLock::new();
    BUNDLE.get_or_init(|| {
        if let Some(p) = std::env::var_os("NV_IPAM_BUNDLE").filter(|p| !p.is_empty()) {
            let p = PathBuf::from(p);
            assert!(p.is_file(), "NV_IPAM_BUNDLE={} is not a file", p.display());
            return p;
        }
        let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bundle");
        eprintln!("NV_IPAM_BUNDLE is not set: building the bundle into {}", out_dir.display());
        let out = Command::new(repo().join("hack/bundle.sh"))
            .arg(&out_dir)
            .stderr(Stdio::inherit())
            .output()
            .expect("run hack/bundle.sh");
        assert!(out.status.success(), "hack/bundle.sh failed: {}", out.status);
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// The bundle unpacked into a sandbox the test owns.
struct Unpacked {
    _sandbox: Sandbox,
    /// `<sandbox>/nv-ipam-<version>-linux-amd64`
    dir: PathBuf,
}

impl Unpacked {
    fn new() -> Unpacked {
        let sandbox = Sandbox::new();
        run_ok(Command::new("tar").arg("-xzf").arg(tarball()).arg("-C").arg(&sandbox.dir), "unpack");
        let top: Vec<_> = std::fs::read_dir(&sandbox.dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        let name = format!("nv-ipam-{VERSION}-linux-amd64");
        assert_eq!(top, [name.as_str()], "the tarball holds exactly one directory, {name}");
        let dir = sandbox.dir.join(name);
        Unpacked { _sandbox: sandbox, dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn docs(&self, rel: &str) -> Vec<Value> {
        yaml_docs(self.path(rel).to_str().unwrap())
    }

    /// Every file below the top directory, as sorted relative paths.
    fn files(&self) -> BTreeSet<String> {
        fn walk(dir: &Path, base: &Path, out: &mut BTreeSet<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, base, out);
                } else {
                    out.insert(p.strip_prefix(base).unwrap().to_str().unwrap().to_string());
                }
            }
        }
        let mut out = BTreeSet::new();
        walk(&self.dir, &self.dir, &mut out);
        out
    }
}

/// kubectl as the admin, with nothing from the environment but KUBECONFIG: no proxy variables,
/// a HOME (discovery cache) inside the sandbox.
fn kubectl(home: &Path, args: &[&str]) -> Output {
    let bin = match std::env::var_os("NV_IPAM_KUBECTL").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => match std::env::var_os("NV_IPAM_TESTBINS").map(|d| PathBuf::from(d).join("kubectl")) {
            Some(p) if p.is_file() => p,
            _ => on_path("kubectl").expect(
                "no kubectl: set NV_IPAM_KUBECTL or NV_IPAM_TESTBINS (hack/build-testbins.sh builds it)",
            ),
        },
    };
    let kubeconfig = std::env::var_os("KUBECONFIG").expect(common::kube::NOT_UNDER_CONTROL_PLANE);
    run_ok(
        Command::new(&bin).args(args).env_clear().env("KUBECONFIG", kubeconfig).env("HOME", home),
        &format!("kubectl {}", args.join(" ")),
    )
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(name)).find(|p| p.is_file())
}

/// Every string value in `v` with the dotted key path leading to it.
fn strings<'a>(v: &'a Value, path: &str, out: &mut Vec<(String, &'a str)>) {
    match v {
        Value::String(s) => out.push((path.to_string(), s)),
        Value::Array(a) => a.iter().for_each(|x| strings(x, &format!("{path}[]"), out)),
        Value::Object(o) => o.iter().for_each(|(k, x)| strings(x, &format!("{path}.{k}"), out)),
        _ => {}
    }
}

fn kind_name(o: &Value) -> String {
    format!("{} {}", o["kind"].as_str().unwrap_or("?"), o["metadata"]["name"].as_str().unwrap_or("?"))
}

#[test]
fn bundle_is_complete_checksummed_and_reproducible_in_form() {
    crate::needs_control_plane!();
    let b = Unpacked::new();
    let files = b.files();
    let mut want: BTreeSet<String> = [
        "INSTALL.md",
        "UPGRADE.md",
        "VERSION",
        "SHA256SUMS",
        "bin/ipam-controller",
        "bin/ipam-node",
        "bin/nv-ipam",
        "bin/kubectl-nv_ipam",
        "examples/ippool.yaml",
        "examples/cidrpool.yaml",
        "examples/macvlan-networkattachment.yaml",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    want.extend(OVERLAYS.iter().map(|o| format!("manifests/{o}.yaml")));
    for f in std::fs::read_dir(repo().join("deploy/crds")).unwrap() {
        let name = f.unwrap().file_name().to_str().unwrap().to_string();
        if name != "kustomization.yaml" {
            want.insert(format!("manifests/crds/{name}"));
        }
    }
    if repo().join("hack/build-image.sh").is_file() {
        want.insert(format!("image/nv-ipam-image-{VERSION}.oci.tar"));
    }
    let missing: Vec<_> = want.difference(&files).collect();
    assert!(missing.is_empty(), "missing from the bundle: {missing:?}; it has {files:?}");
    assert_eq!(std::fs::read_to_string(b.path("VERSION")).unwrap().trim(), VERSION);

    // SHA256SUMS covers every other file, and checking it catches a changed byte.
    let sums = std::fs::read_to_string(b.path("SHA256SUMS")).unwrap();
    let listed: BTreeSet<String> =
        sums.lines().map(|l| l.split_once("  ").expect("sha256sum line").1.to_string()).collect();
    let mut others = files.clone();
    others.remove("SHA256SUMS");
    assert_eq!(listed, others, "SHA256SUMS lists exactly the bundle's other files");
    run_ok(
        Command::new("sha256sum").args(["--check", "--strict", "--quiet", "SHA256SUMS"]).current_dir(&b.dir),
        "sha256sum -c",
    );
    let victim = b.path("examples/ippool.yaml");
    let mut text = std::fs::read(&victim).unwrap();
    text.push(b'\n');
    std::fs::write(&victim, text).unwrap();
    let st = Command::new("sha256sum")
        .args(["--check", "--quiet", "SHA256SUMS"])
        .current_dir(&b.dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!st.success(), "sha256sum -c must notice a changed examples/ippool.yaml");

    // The binaries run with an empty environment (static: no loader, no libc on the host).
    for bin in ["ipam-controller", "ipam-node", "kubectl-nv_ipam"] {
        let out = run_ok(Command::new(b.path(&format!("bin/{bin}"))).arg("--version").env_clear(), bin);
        let v = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(v.contains(VERSION), "{bin} --version says {v:?}, expected {VERSION}");
    }

    // The form of a reproducible tarball: names sorted, owner 0:0, one mtime.
    let out = run_ok(
        Command::new("tar").args(["--numeric-owner", "--full-time", "-tvzf"]).arg(tarball()).env("TZ", "UTC"),
        "tar -tv",
    );
    let listing = String::from_utf8(out.stdout).unwrap();
    let mut times = BTreeSet::new();
    let mut names = Vec::new();
    for line in listing.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f[1], "0/0", "owner of {line}");
        times.insert(format!("{} {}", f[3], f[4]));
        names.push(f[5].trim_end_matches('/').to_string());
    }
    assert_eq!(times.len(), 1, "one mtime for every entry: {times:?}");
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries in name order");
}

#[test]
fn manifests_reference_nothing_outside_the_bundle() {
    crate::needs_control_plane!();
    let b = Unpacked::new();
    let image = format!("{IMAGE_PREFIX}:{VERSION}");
    let mut files: Vec<String> = OVERLAYS.iter().map(|o| format!("manifests/{o}.yaml")).collect();
    files.extend(b.files().into_iter().filter(|f| f.starts_with("manifests/crds/")));
    for rel in &files {
        let docs = b.docs(rel);
        assert!(!docs.is_empty(), "{rel} is empty");
        let mut images = 0;
        for doc in &docs {
            let mut all = Vec::new();
            strings(doc, "", &mut all);
            for (path, s) in all {
                // OpenAPI descriptions in the CRDs cite the API conventions; nothing fetches them.
                let doc_text = path.ends_with(".description");
                if (s.contains("http://") || s.contains("https://")) && !doc_text {
                    panic!("{rel}: {} has a URL at {path}: {s:?}", kind_name(doc));
                }
                if path.ends_with(".image") {
                    assert_eq!(s, image, "{rel}: {} image at {path}", kind_name(doc));
                    images += 1;
                }
                // A webhook must call the in-cluster Service, never a URL.
                assert!(!path.contains(".clientConfig.url"), "{rel}: {} calls a URL: {s}", kind_name(doc));
            }
        }
        for hook in docs.iter().filter(|d| d["kind"] == "ValidatingWebhookConfiguration") {
            for w in hook["webhooks"].as_array().unwrap() {
                let svc = &w["clientConfig"]["service"];
                assert_eq!(svc["name"], "nv-ipam-webhook", "{rel}: webhook {} calls {svc}", w["name"]);
            }
        }
        if !rel.starts_with("manifests/crds/") {
            assert!(images >= 2, "{rel}: expected the controller and node images, found {images}");
        }
    }

    // The CRDs alone and the CRDs inside each overlay are exactly deploy/crds.
    let crds_of = |docs: Vec<Value>| {
        let mut crds: Vec<Value> =
            docs.into_iter().filter(|d| d["kind"] == "CustomResourceDefinition").collect();
        crds.sort_by_key(kind_name);
        crds
    };
    let dir_docs = |dir: &Path| -> Vec<Value> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        paths.sort();
        paths.iter().flat_map(|p| yaml_docs(p.to_str().unwrap())).collect()
    };
    let want = crds_of(dir_docs(&repo().join("deploy/crds")));
    assert_eq!(want.len(), CRDS.len(), "deploy/crds has the three CRDs");
    assert!(crds_of(dir_docs(&b.path("manifests/crds"))) == want, "manifests/crds/ differs from deploy/crds");
    for o in OVERLAYS {
        let rel = format!("manifests/{o}.yaml");
        assert!(crds_of(b.docs(&rel)) == want, "{rel}: the CRDs differ from deploy/crds");
    }

    // The NetworkAttachmentDefinition asks nv-ipam for the example IPPool.
    let nad = b.docs("examples/macvlan-networkattachment.yaml");
    assert_eq!(nad.len(), 1);
    assert_eq!(nad[0]["kind"], "NetworkAttachmentDefinition");
    let config: Value = serde_json::from_str(nad[0]["spec"]["config"].as_str().unwrap()).unwrap();
    assert_eq!(config["type"], "macvlan");
    assert_eq!(config["ipam"]["type"], "nv-ipam");
    assert_eq!(config["ipam"]["poolName"], b.docs("examples/ippool.yaml")[0]["metadata"]["name"]);
}

/// The REST path of one object of the manifests.
fn object_path(o: &Value) -> String {
    let name = o["metadata"]["name"].as_str().unwrap();
    let ns = o["metadata"]["namespace"].as_str().unwrap_or("");
    let (prefix, plural, namespaced) = match o["kind"].as_str().unwrap() {
        "Namespace" => ("/api/v1", "namespaces", false),
        "ServiceAccount" => ("/api/v1", "serviceaccounts", true),
        "ConfigMap" => ("/api/v1", "configmaps", true),
        "Service" => ("/api/v1", "services", true),
        "ClusterRole" => ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", false),
        "ClusterRoleBinding" => ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", false),
        "Role" => ("/apis/rbac.authorization.k8s.io/v1", "roles", true),
        "RoleBinding" => ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", true),
        "Deployment" => ("/apis/apps/v1", "deployments", true),
        "DaemonSet" => ("/apis/apps/v1", "daemonsets", true),
        "CustomResourceDefinition" => ("/apis/apiextensions.k8s.io/v1", "customresourcedefinitions", false),
        other => panic!("no REST path known for kind {other} ({}); add it here", kind_name(o)),
    };
    if namespaced {
        assert!(!ns.is_empty(), "{} has no namespace", kind_name(o));
        format!("{prefix}/namespaces/{ns}/{plural}/{name}")
    } else {
        format!("{prefix}/{plural}/{name}")
    }
}

/// What the test owns, deleted on drop: its namespace and Node, and the workloads the apply
/// created (kinds [`WORKLOADS`]).
struct Owned<'a> {
    admin: &'a Kube,
    ns: String,
    node: String,
    workloads: Vec<String>,
}

/// Kinds of the manifest no other test shares, removed after the test. The Deployment and
/// DaemonSet must go: their `env[].valueFrom.fieldRef` is an atomic struct the apiserver
/// defaults (`apiVersion: v1`), so a later server-side apply of the same manifest by another
/// field manager (tests/kube_overlays.rs's dry runs) would conflict with ours.
const WORKLOADS: [&str; 2] = ["Deployment", "DaemonSet"];

impl Drop for Owned<'_> {
    fn drop(&mut self) {
        for path in &self.workloads {
            let _ = self.admin.delete(path);
        }
        let _ = self.admin.delete(&format!("/api/v1/nodes/{}", self.node));
        let _ = self.admin.delete(&format!("/api/v1/namespaces/{}", self.ns));
    }
}

fn ipv4(s: &str) -> u32 {
    u32::from(s.parse::<Ipv4Addr>().unwrap_or_else(|e| panic!("{s:?}: {e}")))
}

#[test]
fn no_webhook_manifest_installs_and_the_bundled_controller_allocates() {
    crate::needs_control_plane!();
    let admin = Kube::from_env();
    let b = Unpacked::new();
    let manifest = b.path("manifests/no-webhook.yaml");
    let objects = b.docs("manifests/no-webhook.yaml");
    let kinds: BTreeSet<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    for k in [
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "DaemonSet",
    ] {
        assert!(kinds.contains(k), "no-webhook.yaml has no {k}: {kinds:?}");
    }

    // What the other tests use must not change: CRD generations, and ClusterRole rules.
    let crd_path = |n: &str| format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{n}");
    let generations: Vec<Value> =
        CRDS.iter().map(|n| admin.get(&crd_path(n)).body["metadata"]["generation"].clone()).collect();
    for o in objects.iter().filter(|o| o["kind"] == "ClusterRole") {
        let live = admin.get(&object_path(o));
        if live.status == 200 {
            assert_eq!(
                live.body["rules"],
                o["rules"],
                "{} in the bundle differs from the live one",
                kind_name(o)
            );
        }
    }

    let owned = Owned {
        admin: &admin,
        ns: unique_name("it-bundle"),
        node: unique_name("it-bundle-node"),
        workloads: objects
            .iter()
            .filter(|o| WORKLOADS.iter().any(|k| o["kind"] == *k))
            .map(object_path)
            .collect(),
    };

    // INSTALL.md step 3, as written there (plus a field manager of our own).
    let home = b.path(".home");
    let manifest_arg = manifest.to_str().unwrap();
    let fm = format!("--field-manager={FIELD_MANAGER}");
    kubectl(&home, &["apply", "--server-side", &fm, "-f", manifest_arg]);
    let mut wait = vec!["wait", "--for", "condition=established", "--timeout=60s"];
    let crd_args: Vec<String> = CRDS.iter().map(|n| format!("crd/{n}")).collect();
    wait.extend(crd_args.iter().map(String::as_str));
    kubectl(&home, &wait);

    for (n, before) in CRDS.iter().zip(&generations) {
        let crd = admin.get(&crd_path(n)).expect_status(200, n);
        let established = crd["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Established" && c["status"] == "True"));
        assert!(established, "{n} is not Established: {}", crd["status"]);
        if !before.is_null() {
            assert_eq!(&crd["metadata"]["generation"], before, "{n}: the bundle changed the CRD's spec");
        }
    }
    for o in &objects {
        let live = admin.get(&object_path(o));
        assert_eq!(live.status, 200, "{} is not in the cluster after the apply: {}", kind_name(o), live.body);
        // An object that sets no field but its name (a bare Namespace) leaves no managedFields.
        let meta = o["metadata"].as_object().unwrap();
        let only_name =
            o.as_object().unwrap().len() == 3 && meta.keys().all(|k| k == "name" || k == "namespace");
        let managers = live.body["metadata"]["managedFields"].as_array().cloned().unwrap_or_default();
        assert!(
            only_name || managers.iter().any(|m| m["manager"] == FIELD_MANAGER && m["operation"] == "Apply"),
            "{} was not applied by {FIELD_MANAGER}",
            kind_name(o)
        );
    }

    // The bundle's controller against that install: its own namespace (pools, Lease), a Node,
    // the bundle's example pool, the controller identity bound by the bundle's RBAC.
    let ns = &owned.ns;
    admin
        .post(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .expect_status(201, "create namespace");
    let mut binding = objects
        .iter()
        .find(|o| o["kind"] == "RoleBinding" && o["roleRef"]["name"] == "nv-ipam-controller-leader-election")
        .expect("no-webhook.yaml binds the leader-election ClusterRole")
        .clone();
    binding["metadata"]["namespace"] = json!(ns);
    admin
        .post(&format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"), &binding)
        .expect_status(201, "lease RoleBinding in the test namespace");
    let controller_id = Kube::from_cp_kubeconfig("controller");
    let lease =
        json!({"group": "coordination.k8s.io", "resource": "leases", "namespace": ns, "verb": "update"});
    wait_until(SETTLE, "the controller may update leases in the test namespace", || {
        allowed(&controller_id, lease.clone())
    });
    let node = json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": owned.node, "labels": {"node-role.kubernetes.io/worker": ""}}});
    admin.post("/api/v1/nodes", &node).expect_status(201, "create node");
    let pool = b.docs("examples/ippool.yaml").remove(0);
    let pool_name = pool["metadata"]["name"].as_str().unwrap().to_string();
    let pools = format!("/apis/nv-ipam.nvidia.com/v1alpha1/namespaces/{ns}/ippools");
    admin.post(&pools, &pool).expect_status(201, "create the example IPPool");

    let mut args = cluster_args(ns);
    args.extend(["--leader-elect", "--leader-elect-namespace", ns].map(String::from));
    let mut controller =
        Controller::spawn_clean(&b.path("bin/ipam-controller"), b.path("ipam-controller.log"), &args);
    controller.wait_ready(SETTLE);

    let subnet = pool["spec"]["subnet"].as_str().unwrap();
    let block = pool["spec"]["perNodeBlockSize"].as_u64().unwrap() as u32;
    let (net, bits) = subnet.split_once('/').unwrap();
    let mask = u32::MAX << (32 - bits.parse::<u32>().unwrap());
    let mut entry = Value::Null;
    wait_until(SETTLE, "the bundle's controller gives the node a block of the example pool", || {
        let p = admin.get(&format!("{pools}/{pool_name}")).expect_status(200, "get pool");
        entry = p["status"]["allocations"]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["nodeName"] == owned.node.as_str()).cloned())
            .unwrap_or(Value::Null);
        !entry.is_null()
    });
    let (start, end) = (ipv4(entry["startIP"].as_str().unwrap()), ipv4(entry["endIP"].as_str().unwrap()));
    assert_eq!(end - start + 1, block, "block of perNodeBlockSize addresses: {entry}");
    assert!(start & mask == ipv4(net) && end & mask == ipv4(net), "block inside {subnet}: {entry}");
}

/// A registry name for the guide's image recipes; nothing contacts it.
const REGISTRY: &str = "registry.example.internal:5000";
/// INSTALL.md step 2's kustomization, as the guide writes it (the shell expands the variables).
const SITE_KUSTOMIZATION: &str = "resources: [no-webhook.yaml]
images:
  - name: localhost/nv-ipam
    newName: $REGISTRY/nv-ipam
    newTag: \"$VERSION\"
";
/// UPGRADE.md step 1's kustomization (upgrade from the reference: everything into kube-system).
const UPGRADE_KUSTOMIZATION: &str = "resources: [no-webhook.yaml]
namespace: kube-system
patches:
  - patch: |-
      $patch: delete
      apiVersion: v1
      kind: Namespace
      metadata:
        name: nv-ipam
";

fn yaml_text_docs(text: &str) -> Vec<Value> {
    use serde::Deserialize as _;
    let mut docs: Vec<Value> = yaml_serde::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect();
    docs.sort_by_key(|d| format!("{} {}", kind_name(d), d["metadata"]["namespace"].as_str().unwrap_or("")));
    docs
}

/// The image recipes of INSTALL.md and the upgrade recipe of UPGRADE.md, run on the bundle's
/// rendered file as written there: `sed` and a kustomization give the same objects with only
/// the image changed, and the kube-system rendering moves every namespaced object and subject
/// and passes a server-side dry run on the real apiserver.
#[test]
fn install_guide_recipes_render_as_promised() {
    crate::needs_control_plane!();
    let b = Unpacked::new();
    for (guide, heredoc, body) in [
        ("INSTALL.md", "cat > site/kustomization.yaml <<EOF\n", SITE_KUSTOMIZATION),
        ("UPGRADE.md", "cat > upgrade/kustomization.yaml <<'EOF'\n", UPGRADE_KUSTOMIZATION),
    ] {
        let text = format!("{heredoc}{body}EOF\n");
        let content = std::fs::read_to_string(b.path(guide)).unwrap();
        assert!(
            content.contains(&text),
            "{guide} no longer has this recipe (keep the test in step):\n{text}"
        );
    }
    // Two node daemons must never share a store: the guide waits until the reference's pods are
    // gone before it applies ours.
    let upgrade = std::fs::read_to_string(b.path("UPGRADE.md")).unwrap();
    let at = |what: &str| upgrade.find(what).unwrap_or_else(|| panic!("UPGRADE.md lacks `{what}`"));
    for wait in [
        "kubectl -n kube-system wait --for=delete pod -l name=nv-ipam-node --timeout=5m\n",
        "kubectl -n kube-system wait --for=delete pod -l 'name in (nv-ipam-controller,controller)' --timeout=5m\n",
    ] {
        assert!(
            at(wait) < at("kubectl apply --server-side --force-conflicts -f upgrade/"),
            "UPGRADE.md applies nv-ipam before `{wait}`"
        );
    }
    let home = b.path(".home");
    let original = std::fs::read_to_string(b.path("manifests/no-webhook.yaml")).unwrap();
    let (old_image, new_image) =
        (format!("{IMAGE_PREFIX}:{VERSION}"), format!("{REGISTRY}/nv-ipam:{VERSION}"));
    let want = yaml_text_docs(&original.replace(&old_image, &new_image));

    // Step 2, sed on the rendered file.
    let sedded = b.path("sed/no-webhook.yaml");
    std::fs::create_dir_all(sedded.parent().unwrap()).unwrap();
    std::fs::write(&sedded, &original).unwrap();
    let expr = format!("s|localhost/nv-ipam:{VERSION}|{REGISTRY}/nv-ipam:{VERSION}|g");
    run_ok(Command::new("sed").args(["-i", &expr]).arg(&sedded), "sed");
    let got = yaml_text_docs(&std::fs::read_to_string(&sedded).unwrap());
    assert!(got == want, "sed changed more or less than the image");
    let images = got
        .iter()
        .flat_map(|d| {
            let mut all = Vec::new();
            strings(d, "", &mut all);
            all.into_iter()
                .filter(|(p, _)| p.ends_with(".image"))
                .map(|(_, s)| s.to_string())
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>();
    assert!(images.len() >= 2 && images.iter().all(|i| *i == new_image), "images after sed: {images:?}");

    // Step 2, the kustomization over a copy.
    let site = b.path("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("no-webhook.yaml"), &original).unwrap();
    let k = SITE_KUSTOMIZATION.replace("$REGISTRY", REGISTRY).replace("$VERSION", VERSION);
    std::fs::write(site.join("kustomization.yaml"), k).unwrap();
    let out = kubectl(&home, &["kustomize", site.to_str().unwrap()]);
    let got = yaml_text_docs(&String::from_utf8(out.stdout).unwrap());
    assert!(got == want, "the kustomization changed more or less than the image");

    // UPGRADE.md step 1: everything into kube-system, the nv-ipam Namespace dropped.
    let up = b.path("upgrade");
    std::fs::create_dir_all(&up).unwrap();
    std::fs::write(up.join("no-webhook.yaml"), &original).unwrap();
    std::fs::write(up.join("kustomization.yaml"), UPGRADE_KUSTOMIZATION).unwrap();
    let out = kubectl(&home, &["kustomize", up.to_str().unwrap()]);
    let rendered = String::from_utf8(out.stdout).unwrap();
    let moved = yaml_text_docs(&rendered);
    let before = yaml_text_docs(&original);
    assert_eq!(moved.len() + 1, before.len(), "only the Namespace is dropped");
    assert!(moved.iter().all(|d| d["kind"] != "Namespace"), "no Namespace object");
    for d in &moved {
        let was = before.iter().find(|o| kind_name(o) == kind_name(d)).expect("same objects");
        if was["metadata"]["namespace"].is_string() {
            assert_eq!(d["metadata"]["namespace"], "kube-system", "{}", kind_name(d));
        }
        for s in d["subjects"].as_array().into_iter().flatten() {
            assert_eq!(s["namespace"], "kube-system", "{} subject {s}", kind_name(d));
        }
        if d["kind"] == "CustomResourceDefinition" {
            assert_eq!(d, was, "the CRDs are not touched");
        }
    }
    assert!(!rendered.contains("namespace: nv-ipam"), "nothing left in nv-ipam:\n{rendered}");
    let file = up.join("nv-ipam-kube-system.yaml");
    std::fs::write(&file, &rendered).unwrap();
    let fm = format!("--field-manager={FIELD_MANAGER}-upgrade");
    kubectl(
        &home,
        &[
            "apply",
            "--server-side",
            "--dry-run=server",
            "--force-conflicts",
            &fm,
            "-f",
            file.to_str().unwrap(),
        ],
    );
}
