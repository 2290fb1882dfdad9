//! The kustomize overlays of deploy/ against a real kube-apiserver: each one renders with the
//! kubectl of hack/build-testbins.sh (`$NV_IPAM_KUBECTL`, exported by hack/control-plane.sh and
//! hack/test.sh) and is accepted by a server-side dry-run apply, and the rendered objects have
//! the properties the manifests promise: least privilege, the reference's paths and flags, the
//! RBAC the other integration tests authenticate against, and a namespace override that moves
//! every reference to the namespace. Pods made from the templates go through the apiserver's
//! pod admission (Priority, PodSecurity) in a dry run. Skips (one line on stderr) when not
//! run under the control plane; fails instead under hack/test.sh.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::Sandbox;
use common::kube::{Kube, create_or_exists, yaml_docs};
use serde_json::{Value, json};

const OVERLAYS: [&str; 3] = ["no-webhook", "certmanager", "openshift"];
/// The reference's webhook paths, as `ipam-controller --webhook` serves them.
const IPPOOL_PATH: &str = "/validate-nv-ipam-nvidia-com-v1alpha1-ippool";
const CIDRPOOL_PATH: &str = "/validate-nv-ipam-nvidia-com-v1alpha1-cidrpool";
const CERT_SECRET: &str = "nv-ipam-webhook-cert";
const CERT_DIR: &str = "/tmp/k8s-webhook-server/serving-certs";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn kubectl() -> PathBuf {
    match std::env::var_os("NV_IPAM_KUBECTL") {
        Some(k) if !k.is_empty() => PathBuf::from(k),
        _ => panic!(
            "NV_IPAM_KUBECTL is not set: run under hack/control-plane.sh (it exports the kubectl that \
             hack/build-testbins.sh builds); hack/test.sh does this"
        ),
    }
}

/// Runs kubectl with `args` (and `stdin`), returning stdout; panics with stderr on failure.
fn run_kubectl(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(kubectl())
        .args(args)
        .current_dir(repo())
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", kubectl().display()));
    if let Some(text) = stdin {
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `kubectl kustomize DIR`.
fn render(dir: &Path) -> String {
    run_kubectl(&["kustomize", dir.to_str().unwrap()], None)
}

fn docs(text: &str) -> Vec<Value> {
    use serde::Deserialize as _;
    yaml_serde::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn render_overlay(name: &str) -> (String, Vec<Value>) {
    let text = render(&repo().join("deploy/overlays").join(name));
    let objs = docs(&text);
    (text, objs)
}

/// Server-side dry-run apply of `text` with the admin kubeconfig ($KUBECONFIG): admission,
/// schema validation, defaulting and field ownership run, nothing is stored. Every object must
/// be reported as applied. `force` takes over fields other managers set to other values.
fn dry_run_apply(text: &str, objs: &[Value], force: bool) {
    let mut args = vec!["apply", "--server-side", "--dry-run=server", "--field-manager=nv-ipam-tests"];
    if force {
        args.push("--force-conflicts");
    }
    args.extend(["-f", "-"]);
    let out = run_kubectl(&args, Some(text));
    let applied = out.lines().filter(|l| l.ends_with("serverside-applied (server dry run)")).count();
    assert_eq!(applied, objs.len(), "not every object was applied:\n{out}");
}

/// What a dry run cannot do on a fresh cluster: the namespace must exist for its objects to be
/// checked (a real apply creates it first), and the certmanager and openshift overlays need the
/// CRDs of cert-manager and OpenShift's SCC (test fixtures with open schemas) to be served.
fn prerequisites() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let admin = Kube::from_env();
        for obj in yaml_docs("deploy/base/namespace.yaml") {
            create_or_exists(&admin, &obj);
        }
        run_kubectl(
            &[
                "apply",
                "--server-side",
                "--field-manager=nv-ipam-tests",
                "-f",
                "tests/fixtures/cert-manager-crds.yaml",
                "-f",
                "tests/fixtures/openshift-scc-crd.yaml",
            ],
            None,
        );
        run_kubectl(
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/issuers.cert-manager.io",
                "crd/certificates.cert-manager.io",
                "crd/securitycontextconstraints.security.openshift.io",
            ],
            None,
        );
        // Established CRDs reach discovery (which kubectl apply maps kinds with) a bit later.
        common::wait_until(Duration::from_secs(60), "the fixture CRDs are in discovery", || {
            ["/apis/cert-manager.io/v1", "/apis/security.openshift.io/v1"]
                .iter()
                .all(|p| admin.get(p).status == 200)
        });
    });
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the rendered overlay"))
}

fn kinds(objs: &[Value]) -> BTreeSet<String> {
    objs.iter().map(|o| o["kind"].as_str().unwrap().to_string()).collect()
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

fn container<'a>(workload: &'a Value, name: &str) -> &'a Value {
    workload["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name} in {}", workload["metadata"]["name"]))
}

/// The value of `--flag=value` in a container's args.
fn arg<'a>(c: &'a Value, flag: &str) -> Option<&'a str> {
    strs(&c["args"]).into_iter().find_map(|a| a.strip_prefix(flag)?.strip_prefix('='))
}

/// The containerPort a probe's or Service's named port refers to.
fn port_number(c: &Value, port: &Value) -> u64 {
    if let Some(n) = port.as_u64() {
        return n;
    }
    let name = port.as_str().unwrap();
    c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no port named {name} in container {}", c["name"]))["containerPort"]
        .as_u64()
        .unwrap()
}

/// The hostPath behind the volume mounted at `mount_path` in container `c` of `pod_spec`.
fn host_path_of<'a>(pod_spec: &'a Value, c: &Value, mount_path: &str) -> &'a str {
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"].as_str().unwrap().trim_end_matches('/') == mount_path)
        .unwrap_or_else(|| panic!("nothing is mounted at {mount_path}"));
    let vol = pod_spec["volumes"].as_array().unwrap().iter().find(|v| v["name"] == mount["name"]).unwrap();
    assert_eq!(vol["hostPath"]["type"], "DirectoryOrCreate", "{vol}");
    vol["hostPath"]["path"].as_str().unwrap_or_else(|| panic!("{mount_path} is not a hostPath: {vol}"))
}

/// The container runs with no privilege it does not need (both components).
fn assert_locked_down(c: &Value, what: &str) {
    let sc = &c["securityContext"];
    assert_ne!(sc["privileged"], true, "{what}: {sc}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}: {sc}");
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}: {sc}");
    assert_eq!(strs(&sc["capabilities"]["drop"]), ["ALL"], "{what}: {sc}");
    assert!(sc["capabilities"]["add"].is_null(), "{what}: {sc}");
    assert!(c["resources"]["requests"]["memory"].is_string(), "{what}: no memory request");
    assert!(c["resources"]["limits"]["memory"].is_string(), "{what}: no memory limit");
}

/// Properties of the controller Deployment that hold in every overlay.
fn check_controller(objs: &[Value], ns: &str, webhook: bool) {
    let d = find(objs, "Deployment", "nv-ipam-controller");
    assert_eq!(d["metadata"]["namespace"], ns);
    let pod = &d["spec"]["template"]["spec"];
    let c = container(d, "controller");
    assert_eq!(c["image"], "localhost/nv-ipam:0.1.0");
    assert_eq!(strs(&c["command"]), ["/ipam-controller"]);
    assert_eq!(arg(c, "--leader-elect"), Some("true"));
    assert_eq!(arg(c, "--leader-elect-namespace"), Some("$(POD_NAMESPACE)"));
    assert_eq!(arg(c, "--ippools-namespace"), Some("$(POD_NAMESPACE)"));
    let env = c["env"].as_array().unwrap();
    let pod_ns = env.iter().find(|e| e["name"] == "POD_NAMESPACE").unwrap();
    assert_eq!(pod_ns["valueFrom"]["fieldRef"]["fieldPath"], "metadata.namespace");
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(c[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(port_number(c, &c[probe]["httpGet"]["port"]), 8081, "{probe}");
    }
    assert!(c["ports"].as_array().unwrap().iter().any(|p| p["containerPort"] == 8080), "metrics port");
    assert_locked_down(c, "controller");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(pod["serviceAccountName"], "nv-ipam-controller");
    assert_eq!(pod["automountServiceAccountToken"], true);
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    assert!(pod["hostNetwork"].is_null() && pod["hostPID"].is_null());

    let has_webhook_flag = strs(&c["args"]).contains(&"--webhook");
    assert_eq!(has_webhook_flag, webhook, "--webhook in {}", c["args"]);
    if webhook {
        assert_eq!(d["spec"]["replicas"], 2, "two replicas behind a fail-closed webhook");
        let mount =
            c["volumeMounts"].as_array().unwrap().iter().find(|m| m["mountPath"] == CERT_DIR).unwrap();
        assert_eq!(mount["readOnly"], true);
        let vol = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == mount["name"]).unwrap();
        assert_eq!(vol["secret"]["secretName"], CERT_SECRET);
    } else {
        assert_eq!(d["spec"]["replicas"], 1);
        assert!(c["volumeMounts"].is_null(), "no mounts without the webhook: {}", c["volumeMounts"]);
    }
}

/// Properties of the node DaemonSet; `cni_bin_host` is where the plugin lands on the host.
fn check_node(objs: &[Value], ns: &str, cni_bin_host: &str) {
    let ds = find(objs, "DaemonSet", "nv-ipam-node");
    assert_eq!(ds["metadata"]["namespace"], ns);
    let pod = &ds["spec"]["template"]["spec"];
    let c = container(ds, "node");
    assert_eq!(c["image"], "localhost/nv-ipam:0.1.0");
    assert_eq!(strs(&c["command"]), ["/ipam-node"]);
    assert_locked_down(c, "node");
    assert!(pod["hostNetwork"].is_null() && pod["hostPID"].is_null() && pod["hostIPC"].is_null());
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(pod["serviceAccountName"], "nv-ipam-node");
    assert_eq!(pod["priorityClassName"], "system-node-critical");
    assert!(pod["terminationGracePeriodSeconds"].is_u64());
    let tolerations = pod["tolerations"].as_array().unwrap();
    assert!(
        tolerations.iter().any(|t| t["operator"] == "Exists" && t["key"].is_null() && t["effect"].is_null()),
        "a CNI DaemonSet tolerates every taint: {tolerations:?}"
    );
    assert_eq!(ds["spec"]["updateStrategy"]["type"], "RollingUpdate");
    assert!(!ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"].is_null());

    assert_eq!(arg(c, "--node-name"), Some("$(NODE_NAME)"));
    assert_eq!(arg(c, "--ippools-namespace"), Some("$(POD_NAMESPACE)"));
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(c[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(port_number(c, &c[probe]["httpGet"]["port"]), 8083, "{probe}");
    }
    // Every path ipam-node writes is a host directory (the root file system is read-only).
    let sock = arg(c, "--bind-address").unwrap().strip_prefix("unix://").unwrap();
    let store = arg(c, "--store-file").unwrap();
    let state = "/var/lib/cni/nv-ipam";
    assert_eq!(Path::new(sock).parent().unwrap(), Path::new(state));
    assert_eq!(Path::new(store).parent().unwrap(), Path::new(state));
    assert_eq!(arg(c, "--cni-daemon-socket"), arg(c, "--bind-address"));
    assert_eq!(host_path_of(pod, c, state), state);
    assert_eq!(host_path_of(pod, c, arg(c, "--cni-bin-dir").unwrap()), cni_bin_host);
    assert_eq!(host_path_of(pod, c, arg(c, "--cni-conf-dir").unwrap()), "/etc/cni/net.d/nv-ipam.d");
    let host_paths: BTreeSet<&str> =
        pod["volumes"].as_array().unwrap().iter().filter_map(|v| v["hostPath"]["path"].as_str()).collect();
    assert_eq!(host_paths, BTreeSet::from([cni_bin_host, "/etc/cni/net.d/nv-ipam.d", state]));
}

/// The webhook objects: the reference's paths, fail closed, and a Service that reaches the
/// controller's webhook port.
fn check_webhook(objs: &[Value], ns: &str) {
    let vwc = find(objs, "ValidatingWebhookConfiguration", "nv-ipam-validating-webhook");
    let hooks = vwc["webhooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 2);
    for (path, resource) in [(IPPOOL_PATH, "ippools"), (CIDRPOOL_PATH, "cidrpools")] {
        let h = hooks.iter().find(|h| h["clientConfig"]["service"]["path"] == path).unwrap();
        assert_eq!(h["clientConfig"]["service"]["name"], "nv-ipam-webhook");
        assert_eq!(h["clientConfig"]["service"]["namespace"], ns);
        assert_eq!(strs(&h["admissionReviewVersions"]), ["v1"]);
        assert_eq!(h["sideEffects"], "None");
        assert_eq!(h["failurePolicy"], "Fail");
        assert!(h["timeoutSeconds"].is_u64());
        let rules = h["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(strs(&rules[0]["apiGroups"]), ["nv-ipam.nvidia.com"]);
        assert_eq!(strs(&rules[0]["operations"]), ["CREATE", "UPDATE"]);
        assert_eq!(strs(&rules[0]["resources"]), [resource]);
    }

    let svc = find(objs, "Service", "nv-ipam-webhook");
    assert_eq!(svc["metadata"]["namespace"], ns);
    let d = find(objs, "Deployment", "nv-ipam-controller");
    let labels = d["spec"]["template"]["metadata"]["labels"].as_object().unwrap();
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(labels.get(k), Some(v), "the Service selects the controller pods");
    }
    let ports = svc["spec"]["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["port"], 443);
    assert_eq!(port_number(container(d, "controller"), &ports[0]["targetPort"]), 9443);
}

/// The RBAC of the rendered overlay: exactly deploy/rbac (what the other integration tests
/// apply and authenticate against), plus `extra` (kind, name) objects.
fn check_rbac(objs: &[Value], extra: &[(&str, &str)]) {
    let rbac_kinds = ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"];
    let rendered: Vec<&Value> =
        objs.iter().filter(|o| rbac_kinds.contains(&o["kind"].as_str().unwrap())).collect();
    let mut expected = yaml_docs("deploy/rbac/controller.yaml");
    expected.extend(yaml_docs("deploy/rbac/node.yaml"));
    expected.extend(yaml_docs("deploy/rbac/viewer.yaml"));
    for want in &expected {
        let got = find(objs, want["kind"].as_str().unwrap(), want["metadata"]["name"].as_str().unwrap());
        assert_eq!(got, want, "rendered {} differs from deploy/rbac", want["metadata"]["name"]);
    }
    let mut names: Vec<(String, String)> = rendered
        .iter()
        .map(|o| (o["kind"].as_str().unwrap().into(), o["metadata"]["name"].as_str().unwrap().into()))
        .collect();
    names.sort();
    let mut want: Vec<(String, String)> = expected
        .iter()
        .map(|o| (o["kind"].as_str().unwrap().into(), o["metadata"]["name"].as_str().unwrap().into()))
        .chain(extra.iter().map(|(k, n)| (k.to_string(), n.to_string())))
        .collect();
    want.sort();
    assert_eq!(names, want, "RBAC objects of the overlay");
}

/// The user name of a token, as the apiserver authenticates it.
fn whoami(kube: &Kube) -> String {
    let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
    let r = kube.post("/apis/authentication.k8s.io/v1/selfsubjectreviews", &review);
    r.expect_status(201, "self subject review")["status"]["userInfo"]["username"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn no_webhook_overlay_applies_and_is_the_base() {
    crate::needs_control_plane!();
    prerequisites();
    let (text, objs) = render_overlay("no-webhook");
    dry_run_apply(&text, &objs, false);
    let want =
        ["Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"]
            .into_iter()
            .chain(["RoleBinding", "Deployment", "DaemonSet"])
            .map(String::from)
            .collect::<BTreeSet<_>>();
    assert_eq!(kinds(&objs), want, "no webhook objects");
    let ns = find(&objs, "Namespace", "nv-ipam");
    assert_eq!(ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "privileged");
    check_controller(&objs, "nv-ipam", false);
    check_node(&objs, "nv-ipam", "/opt/cni/bin");
    check_rbac(&objs, &[]);
    // The CRDs are those hack/control-plane.sh installs for every test.
    for f in [
        "nv-ipam.nvidia.com_ippools.yaml",
        "nv-ipam.nvidia.com_cidrpools.yaml",
        "nv-ipam.nvidia.com_nodeblocksets.yaml",
    ] {
        let want = yaml_docs(&format!("deploy/crds/{f}")).remove(0);
        let got = find(&objs, "CustomResourceDefinition", want["metadata"]["name"].as_str().unwrap());
        assert_eq!(got, &want, "{f}");
    }
}

#[test]
fn pods_run_as_the_identities_the_tests_use() {
    crate::needs_control_plane!();
    // The tokens of hack/control-plane.sh that every integration test authenticates with are
    // the users the pods of the rendered base run as: same ServiceAccounts, same namespace.
    let (_, objs) = render_overlay("no-webhook");
    for (kind, name, who) in
        [("Deployment", "nv-ipam-controller", "controller"), ("DaemonSet", "nv-ipam-node", "node")]
    {
        let w = find(&objs, kind, name);
        let sa = w["spec"]["template"]["spec"]["serviceAccountName"].as_str().unwrap();
        let ns = w["metadata"]["namespace"].as_str().unwrap();
        find(&objs, "ServiceAccount", sa);
        assert_eq!(
            format!("system:serviceaccount:{ns}:{sa}"),
            whoami(&Kube::from_cp_kubeconfig(who)),
            "{kind}"
        );
    }
}

#[test]
fn certmanager_overlay_applies_with_a_cert_manager_certificate() {
    crate::needs_control_plane!();
    prerequisites();
    let (text, objs) = render_overlay("certmanager");
    dry_run_apply(&text, &objs, false);
    check_controller(&objs, "nv-ipam", true);
    check_node(&objs, "nv-ipam", "/opt/cni/bin");
    check_webhook(&objs, "nv-ipam");
    check_rbac(&objs, &[]);

    let cert = find(&objs, "Certificate", CERT_SECRET);
    assert_eq!(cert["apiVersion"], "cert-manager.io/v1");
    assert_eq!(cert["spec"]["secretName"], CERT_SECRET);
    assert_eq!(
        strs(&cert["spec"]["dnsNames"]),
        ["nv-ipam-webhook.nv-ipam.svc", "nv-ipam-webhook.nv-ipam.svc.cluster.local"]
    );
    let issuer = find(&objs, "Issuer", cert["spec"]["issuerRef"]["name"].as_str().unwrap());
    assert_eq!(issuer["metadata"]["namespace"], "nv-ipam");
    assert!(issuer["spec"]["selfSigned"].is_object());
    let vwc = find(&objs, "ValidatingWebhookConfiguration", "nv-ipam-validating-webhook");
    assert_eq!(
        vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "nv-ipam/nv-ipam-webhook-cert"
    );
}

#[test]
fn openshift_overlay_applies_with_its_scc_and_service_ca() {
    crate::needs_control_plane!();
    prerequisites();
    let (text, objs) = render_overlay("openshift");
    dry_run_apply(&text, &objs, false);
    check_controller(&objs, "nv-ipam", true);
    check_node(&objs, "nv-ipam", "/var/lib/cni/bin");
    check_webhook(&objs, "nv-ipam");
    check_rbac(&objs, &[("Role", "nv-ipam-node-scc"), ("RoleBinding", "nv-ipam-node-scc")]);

    let svc = find(&objs, "Service", "nv-ipam-webhook");
    assert_eq!(
        svc["metadata"]["annotations"]["service.beta.openshift.io/serving-cert-secret-name"],
        CERT_SECRET
    );
    let vwc = find(&objs, "ValidatingWebhookConfiguration", "nv-ipam-validating-webhook");
    assert_eq!(vwc["metadata"]["annotations"]["service.beta.openshift.io/inject-cabundle"], "true");

    // restricted-v2 assigns uid, gid and fsGroup from the namespace's range.
    let pod_sc =
        &find(&objs, "Deployment", "nv-ipam-controller")["spec"]["template"]["spec"]["securityContext"];
    for k in ["runAsUser", "runAsGroup", "fsGroup"] {
        assert!(pod_sc[k].is_null(), "{k} is left to the SCC: {pod_sc}");
    }
    assert_eq!(pod_sc["runAsNonRoot"], true);

    // The node pod may use exactly one SCC, which admits no privileged container.
    let scc = find(&objs, "SecurityContextConstraints", "nv-ipam-node");
    assert_eq!(scc["allowPrivilegedContainer"], false);
    assert_eq!(scc["allowPrivilegeEscalation"], false);
    assert_eq!(scc["allowHostNetwork"], false);
    assert_eq!(strs(&scc["requiredDropCapabilities"]), ["ALL"]);
    assert_eq!(strs(&scc["allowedCapabilities"]), Vec::<&str>::new());
    assert_eq!(scc["runAsUser"], json!({"type": "MustRunAs", "uid": 0}));
    let role = find(&objs, "Role", "nv-ipam-node-scc");
    assert_eq!(
        role["rules"],
        json!([{"apiGroups": ["security.openshift.io"], "resources": ["securitycontextconstraints"],
                "resourceNames": ["nv-ipam-node"], "verbs": ["use"]}])
    );
    let binding = find(&objs, "RoleBinding", "nv-ipam-node-scc");
    assert_eq!(binding["metadata"]["namespace"], "nv-ipam");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "nv-ipam-node", "namespace": "nv-ipam"}])
    );
    let ds_pod = &find(&objs, "DaemonSet", "nv-ipam-node")["spec"]["template"]["spec"];
    assert_eq!(ds_pod["securityContext"]["seLinuxOptions"]["type"], "spc_t");
    assert_eq!(ds_pod["securityContext"]["runAsUser"], 0, "the uid the SCC requires");
}

/// `to` relative to `from` (both absolute): kustomize refuses absolute resource paths.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut rel = PathBuf::new();
    for _ in common..from.len() {
        rel.push("..");
    }
    to[common..].iter().for_each(|c| rel.push(c));
    rel
}

#[test]
fn namespace_override_moves_rbac_subjects_and_the_lease_binding() {
    crate::needs_control_plane!();
    // The upgrade path from the reference, which runs in kube-system with its pools there: a
    // user's overlay of no-webhook with `namespace: kube-system`, dropping our Namespace object
    // (kube-system exists and is not ours to label).
    prerequisites();
    let dir = Sandbox::labelled("kustomize-ns");
    let base = relative(
        &dir.root().canonicalize().unwrap(),
        &repo().join("deploy/overlays/no-webhook").canonicalize().unwrap(),
    );
    let kustomization = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: kube-system\n\
         resources:\n  - {}\npatches:\n  - patch: |-\n      $patch: delete\n      apiVersion: v1\n      \
         kind: Namespace\n      metadata:\n        name: nv-ipam\n",
        base.display()
    );
    std::fs::write(dir.root().join("kustomization.yaml"), kustomization).unwrap();
    let text = render(dir.root());
    let objs = docs(&text);
    // Other tests of this apiserver installed the cluster-wide bindings for nv-ipam; moving
    // their subjects to kube-system is the point, so take them over (nothing is stored).
    dry_run_apply(&text, &objs, true);

    assert!(!kinds(&objs).contains("Namespace"), "no Namespace object");
    for o in &objs {
        if let Some(ns) = o["metadata"]["namespace"].as_str() {
            assert_eq!(ns, "kube-system", "{} {}", o["kind"], o["metadata"]["name"]);
        }
        for s in o["subjects"].as_array().into_iter().flatten() {
            assert_eq!(s["namespace"], "kube-system", "subject of {} {}", o["kind"], o["metadata"]["name"]);
        }
    }
    let lease = find(&objs, "RoleBinding", "nv-ipam-controller-leader-election");
    assert_eq!(lease["metadata"]["namespace"], "kube-system", "Lease rights where the Lease is");
    assert_eq!(lease["subjects"][0]["name"], "nv-ipam-controller");
    check_controller(&objs, "kube-system", false);
    check_node(&objs, "kube-system", "/opt/cni/bin");
}

#[test]
fn render_manifests_script_writes_each_overlay() {
    crate::needs_control_plane!();
    let out = Sandbox::labelled("render-manifests");
    let status = Command::new(repo().join("hack/render-manifests.sh"))
        .arg(out.root())
        .env("NV_IPAM_KUBECTL", kubectl())
        .status()
        .unwrap();
    assert!(status.success(), "hack/render-manifests.sh: {status}");
    let mut written: Vec<String> = std::fs::read_dir(out.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    written.sort();
    let mut want: Vec<String> = OVERLAYS.iter().map(|o| format!("{o}.yaml")).collect();
    want.sort();
    assert_eq!(written, want);
    for o in OVERLAYS {
        let file = std::fs::read_to_string(out.root().join(format!("{o}.yaml"))).unwrap();
        assert_eq!(file, render_overlay(o).0, "{o}");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn certmanager_copy_with_a_namespace_derives_the_names_from_it() {
    crate::needs_control_plane!();
    // deploy/README.md: for certmanager in another namespace, copy the overlay and set
    // `namespace:` in the copy; the DNS names and inject-ca-from must follow.
    let dir = Sandbox::labelled("kustomize-cm");
    copy_dir(&repo().join("deploy"), &dir.root().join("deploy"));
    let k = dir.root().join("deploy/overlays/certmanager/kustomization.yaml");
    let text =
        std::fs::read_to_string(&k).unwrap().replace("\nresources:", "\nnamespace: ipam-x\nresources:");
    std::fs::write(&k, text).unwrap();
    let objs = docs(&render(&dir.root().join("deploy/overlays/certmanager")));
    let cert = find(&objs, "Certificate", CERT_SECRET);
    assert_eq!(
        strs(&cert["spec"]["dnsNames"]),
        ["nv-ipam-webhook.ipam-x.svc", "nv-ipam-webhook.ipam-x.svc.cluster.local"]
    );
    let vwc = find(&objs, "ValidatingWebhookConfiguration", "nv-ipam-validating-webhook");
    assert_eq!(
        vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "ipam-x/nv-ipam-webhook-cert"
    );
    check_webhook(&objs, "ipam-x");
    check_controller(&objs, "ipam-x", true);
}

/// A Pod made from a workload's template, as its controller would create it.
fn pod_from_template(workload: &Value, ns: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "nv-ipam-admission-", "namespace": ns,
                     "labels": workload["spec"]["template"]["metadata"]["labels"]},
        "spec": workload["spec"]["template"]["spec"],
    })
}

/// Creates the pod with `dryRun=All`: every admission plugin (ServiceAccount, Priority,
/// PodSecurity, ...) runs, nothing is stored.
fn dry_run_pod(admin: &Kube, pod: &Value) -> common::kube::Reply {
    let ns = pod["metadata"]["namespace"].as_str().unwrap();
    admin.post(&format!("/api/v1/namespaces/{ns}/pods?dryRun=All"), pod)
}

#[test]
fn pods_of_the_templates_are_admitted_and_only_hostpath_and_root_need_more_than_restricted() {
    crate::needs_control_plane!();
    prerequisites();
    let admin = Kube::from_env();
    for obj in yaml_docs("deploy/rbac/controller.yaml").into_iter().chain(yaml_docs("deploy/rbac/node.yaml"))
    {
        create_or_exists(&admin, &obj);
    }
    let (_, objs) = render_overlay("certmanager");
    let controller = find(&objs, "Deployment", "nv-ipam-controller");
    let node = find(&objs, "DaemonSet", "nv-ipam-node");

    // In nv-ipam (Pod Security "privileged"): both admitted, system-*-critical included.
    for (w, priority) in [(controller, "system-cluster-critical"), (node, "system-node-critical")] {
        let pod = dry_run_pod(&admin, &pod_from_template(w, "nv-ipam")).expect_status(201, "dry-run pod");
        assert_eq!(pod["spec"]["priorityClassName"], priority);
        assert!(pod["spec"]["priority"].as_u64().unwrap() >= 2_000_000_000, "{}", pod["spec"]["priority"]);
    }

    // In a namespace enforcing "restricted": the controller passes as it is; the node pod is
    // refused only for its host directories and for running as root.
    let ns = common::kube::unique_name("nv-ipam-psa");
    let ns_obj = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": ns, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}});
    admin.post("/api/v1/namespaces", &ns_obj).expect_status(201, "create namespace");
    struct Cleanup<'a>(&'a Kube, String);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            let _ = self.0.delete(&format!("/api/v1/namespaces/{}", self.1));
        }
    }
    let _cleanup = Cleanup(&admin, ns.clone());
    for sa in ["nv-ipam-controller", "nv-ipam-node"] {
        let obj =
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": ns}});
        admin.post(&format!("/api/v1/namespaces/{ns}/serviceaccounts"), &obj).expect_status(201, sa);
    }
    dry_run_pod(&admin, &pod_from_template(controller, &ns))
        .expect_status(201, "controller under restricted");
    let refused = dry_run_pod(&admin, &pod_from_template(node, &ns));
    assert_eq!(refused.status, 403, "{}", refused.body);
    let msg = refused.body["message"].as_str().unwrap();
    assert!(msg.contains("PodSecurity \"restricted"), "{msg}");
    // "<check> (<detail>), <check> (<detail>), ...": the failed checks are exactly these three.
    let (_, list) = msg.split_once("\": ").unwrap();
    let mut depth = 0;
    let checks: Vec<&str> = list
        .split(|c: char| {
            depth += i32::from(c == '(') - i32::from(c == ')');
            c == ',' && depth == 0
        })
        .map(|c| c.split(" (").next().unwrap().trim())
        .collect();
    assert_eq!(checks, ["restricted volume types", "runAsNonRoot != true", "runAsUser=0"], "{msg}");
    assert!(msg.contains("use restricted volume type \"hostPath\""), "{msg}");
    for never in [
        "privileged",
        "allowPrivilegeEscalation",
        "capabilities",
        "seccompProfile",
        "host namespaces",
        "hostPort",
    ] {
        assert!(!msg.contains(never), "the node pod needs no {never}: {msg}");
    }
}
