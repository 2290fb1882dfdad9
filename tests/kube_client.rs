//! `nv_ipam::kube` against the real kube-apiserver and etcd of `hack/control-plane.sh`:
//! kubeconfig loading (token, token file, client certificate, CA file by relative path), CRUD,
//! paging, conflicts, merge patch, metadata-only list/watch, RBAC errors, and the reflector
//! (ordered events, bookmarks, apiserver restart, relist after 410 Gone).
//! Skips (one line on stderr) when not run under the control plane; fails instead under
//! hack/test.sh.
//!
//! Tests share the apiserver with other test files: every object has a unique name and is
//! deleted at the end. The restart test takes [`LIFECYCLE`] for writing so that the other tests
//! of this file (which hold it for reading) never see the apiserver down.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use common::kube::{NOT_UNDER_CONTROL_PLANE, cp_dir, unique_name};
use common::wait::stays_true;
use nv_ipam::api::Node;
use nv_ipam::kube::reflector::reflect_from;
use nv_ipam::kube::{
    Auth, CONFIGMAPS, Change, Client, ClusterConfig, KubeError, ListOptions, NAMESPACES, NODES, WatchEvent,
    reflect,
};
use serde_json::{Value, json};

/// Held for reading by every test, for writing by the test that restarts the apiserver.
static LIFECYCLE: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    LIFECYCLE.read().unwrap_or_else(|p| p.into_inner())
}

const WAIT: Duration = Duration::from_secs(30);

fn kubeconfig_path() -> PathBuf {
    let _ = cp_dir();
    match std::env::var_os("KUBECONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!("{NOT_UNDER_CONTROL_PLANE}"),
    }
}

fn admin() -> Client {
    let cfg = ClusterConfig::from_kubeconfig(&kubeconfig_path()).unwrap_or_else(|e| panic!("{e}"));
    Client::new(cfg, "nv-ipam-tests").unwrap_or_else(|e| panic!("{e}"))
}

fn identity(who: &str) -> Client {
    let cfg = ClusterConfig::from_kubeconfig(&cp_dir().join(format!("{who}.kubeconfig"))).unwrap();
    Client::new(cfg, "nv-ipam-tests").unwrap()
}

fn rv(obj: &Value) -> String {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_else(|| panic!("no resourceVersion in {obj}"))
        .to_string()
}

fn name_of(obj: &Value) -> String {
    obj["metadata"]["name"].as_str().unwrap_or_default().to_string()
}

/// A namespace for one test, deleted on drop (it stays Terminating without a
/// controller-manager; fine for a throw-away cluster).
struct Ns {
    client: Client,
    name: String,
}

impl Ns {
    fn new(client: &Client) -> Ns {
        let name = unique_name("kc");
        let _: Value = client
            .create(
                &NAMESPACES,
                None,
                &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
            )
            .unwrap();
        Ns { client: client.clone(), name }
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        if let Err(e) = self.client.delete(&NAMESPACES, None, &self.name)
            && !std::thread::panicking()
        {
            panic!("deleting namespace {}: {e}", self.name);
        }
    }
}

/// A cluster-scoped Node, deleted on drop.
struct NodeGuard {
    client: Client,
    name: String,
}

impl Drop for NodeGuard {
    fn drop(&mut self) {
        if let Err(e) = self.client.delete(&NODES, None, &self.name)
            && !std::thread::panicking()
        {
            panic!("deleting node {}: {e}", self.name);
        }
    }
}

fn configmap(name: &str, labels: Value, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": data})
}

#[test]
fn kubeconfig_token_from_the_control_plane() {
    crate::needs_control_plane!();
    let _g = shared();
    let cfg = ClusterConfig::from_kubeconfig(&kubeconfig_path()).unwrap();
    assert!(matches!(cfg.auth, Auth::Token(_)), "{:?}", cfg.auth);
    assert!(cfg.ca_pem.is_some());
    assert_eq!(cfg.server, std::fs::read_to_string(cp_dir().join("apiserver.url")).unwrap().trim());
    // load(flag) and load(None) via $KUBECONFIG agree
    assert_eq!(ClusterConfig::load(Some(&kubeconfig_path())).unwrap(), cfg);
    assert_eq!(ClusterConfig::load(None).unwrap(), cfg);
    let ns: Value = admin().get(&NAMESPACES, None, "default").unwrap();
    assert_eq!(name_of(&ns), "default");
}

/// A kubeconfig written by the test: CA and token as files by relative path, then a client
/// certificate by absolute path; a mismatched pair is rejected at construction.
#[test]
fn kubeconfig_with_files_and_client_certificate() {
    crate::needs_control_plane!();
    let _g = shared();
    let dir = common::Sandbox::new();
    let cp = cp_dir();
    std::fs::create_dir_all(dir.path("sub")).unwrap();
    std::fs::copy(cp.join("ca.crt"), dir.path("sub/ca.crt")).unwrap();
    std::fs::copy(cp.join("admin.token"), dir.path("token")).unwrap();
    let server = std::fs::read_to_string(cp.join("apiserver.url")).unwrap();
    let write = |file: &str, user: &str| {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: sub/ca.crt\nusers:\n- name: u\n  user:\n{user}\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n",
            server.trim()
        );
        std::fs::write(dir.path(file), text).unwrap();
        ClusterConfig::from_kubeconfig(&dir.path(file)).unwrap()
    };

    let cfg = write("token.kubeconfig", "    tokenFile: token");
    assert_eq!(cfg.auth, Auth::TokenFile(dir.path("token")));
    let ns: Value = Client::new(cfg, "t").unwrap().get(&NAMESPACES, None, "default").unwrap();
    assert_eq!(name_of(&ns), "default");

    let user = format!(
        "    client-certificate: {}\n    client-key: {}",
        cp.join("client-admin.crt").display(),
        cp.join("client-admin.key").display()
    );
    let cfg = write("cert.kubeconfig", &user);
    assert!(matches!(cfg.auth, Auth::ClientCert { .. }));
    let ns: Value = Client::new(cfg, "t").unwrap().get(&NAMESPACES, None, "default").unwrap();
    assert_eq!(name_of(&ns), "default");

    // ureq would panic on the first connect with this pair; Client::new must refuse it
    let user = format!(
        "    client-certificate: {}\n    client-key: {}",
        cp.join("client-admin.crt").display(),
        cp.join("apiserver.key").display()
    );
    let cfg = write("bad.kubeconfig", &user);
    let e = Client::new(cfg, "t").err().unwrap();
    assert!(matches!(e, KubeError::Config { .. }), "{e:?}");
    assert!(e.to_string().contains("client certificate and key do not match"), "{e}");

    // no credentials: the apiserver maps us to system:anonymous, which may not list namespaces
    let cfg = write("anon.kubeconfig", "    {}");
    assert_eq!(cfg.auth, Auth::None);
    let e =
        Client::new(cfg, "t").unwrap().list::<Value>(&NAMESPACES, None, &ListOptions::default()).unwrap_err();
    assert!(matches!(e.status_code(), Some(401 | 403)), "{e}");
}

#[test]
fn crud_paging_conflict_and_patch() {
    crate::needs_control_plane!();
    let _g = shared();
    let client = admin().with_page_size(3);
    let ns = Ns::new(&client);
    let ns_name = Some(ns.name.as_str());
    let label = unique_name("set");

    for i in 0..7 {
        let cm = configmap(&format!("cm{i}"), json!({"set": label}), json!({"i": i.to_string()}));
        let got: Value = client.create(&CONFIGMAPS, ns_name, &cm).unwrap();
        assert_eq!(name_of(&got), format!("cm{i}"));
    }
    let other = configmap("other", json!({}), json!({}));
    let _: Value = client.create(&CONFIGMAPS, ns_name, &other).unwrap();
    let e = client.create::<Value>(&CONFIGMAPS, ns_name, &other).unwrap_err();
    assert!(e.is_conflict(), "create of an existing object: {e}");

    let opts = ListOptions { label_selector: Some(format!("set={label}")), ..Default::default() };
    let list = client.list::<Value>(&CONFIGMAPS, ns_name, &opts).unwrap();
    let mut names: Vec<String> = list.items.iter().map(name_of).collect();
    names.sort();
    assert_eq!(names, (0..7).map(|i| format!("cm{i}")).collect::<Vec<_>>(), "3 pages of 3");
    assert!(!list.resource_version.is_empty());
    let all = client.list::<Value>(&CONFIGMAPS, ns_name, &ListOptions::default()).unwrap();
    assert_eq!(all.items.len(), 8);
    // any: one item is enough, none is false
    assert!(client.any(&CONFIGMAPS, ns_name, &opts).unwrap());
    let none = ListOptions { label_selector: Some(format!("set={label}-none")), ..Default::default() };
    assert!(!client.any(&CONFIGMAPS, ns_name, &none).unwrap());

    // replace with optimistic concurrency
    let first: Value = client.get(&CONFIGMAPS, ns_name, "cm0").unwrap();
    let mut a = first.clone();
    a["data"]["i"] = json!("changed");
    let after: Value = client.replace(&CONFIGMAPS, ns_name, "cm0", &a).unwrap();
    assert_eq!(after["data"]["i"], "changed");
    assert_ne!(rv(&after), rv(&first));
    let mut stale = first.clone();
    stale["data"]["i"] = json!("stale");
    let e = client.replace::<Value>(&CONFIGMAPS, ns_name, "cm0", &stale).unwrap_err();
    assert!(e.is_conflict(), "{e}");
    assert!(!e.is_transient());
    let s = e.to_string();
    assert!(s.starts_with(&format!("put /api/v1/namespaces/{}/configmaps/cm0: ", ns.name)), "{s}");
    assert!(s.contains("(409 Conflict); conflict: re-read the object"), "{s}");

    // merge patch: add one key, remove another
    let patched: Value = client
        .patch_merge(
            &CONFIGMAPS,
            ns_name,
            "cm0",
            &json!({"data": {"new": "x", "i": null}, "metadata": {"labels": {"p": "1"}}}),
        )
        .unwrap();
    assert_eq!(patched["data"], json!({"new": "x"}));
    assert_eq!(patched["metadata"]["labels"]["p"], "1");

    client.delete(&CONFIGMAPS, ns_name, "cm1").unwrap();
    let e = client.get::<Value>(&CONFIGMAPS, ns_name, "cm1").unwrap_err();
    assert!(e.is_not_found(), "{e}");
    let e = client.delete(&CONFIGMAPS, ns_name, "cm1").unwrap_err();
    assert!(e.is_not_found(), "{e}");
}

#[test]
fn rbac_denial_is_a_403_that_says_forbidden() {
    crate::needs_control_plane!();
    let _g = shared();
    let node = identity("node");
    let name = unique_name("kc-denied");
    let e = node
        .create::<Value>(
            &NAMESPACES,
            None,
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        )
        .unwrap_err();
    assert_eq!(e.status_code(), Some(403), "{e}");
    assert!(matches!(&e, KubeError::Status { reason, .. } if reason == "Forbidden"), "{e:?}");
    let s = e.to_string();
    assert!(s.starts_with("post /api/v1/namespaces: "), "{s}");
    assert!(s.contains("forbidden: check the ClusterRole"), "{s}");
}

#[test]
fn metadata_only_list_and_watch_of_nodes() {
    crate::needs_control_plane!();
    let _g = shared();
    let client = admin();
    let name = unique_name("kc-node");
    let label = unique_name("v");
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"nv-ipam-test": label, "role": "a"}},
        "spec": {"podCIDR": "10.244.7.0/24"},
    });
    let _: Value = client.create(&NODES, None, &node).unwrap();
    let _guard = NodeGuard { client: client.clone(), name: name.clone() };

    let opts = ListOptions {
        label_selector: Some(format!("nv-ipam-test={label}")),
        metadata_only: true,
        ..Default::default()
    };
    let raw = client.list::<Value>(&NODES, None, &opts).unwrap();
    assert_eq!(raw.items.len(), 1, "{:?}", raw.items);
    assert_eq!(raw.items[0]["kind"], "PartialObjectMetadata", "{}", raw.items[0]);
    assert!(raw.items[0].get("spec").is_none(), "{}", raw.items[0]);
    let typed = client.list::<Node>(&NODES, None, &opts).unwrap();
    assert_eq!(typed.items, vec![Node::new(&name, &[("nv-ipam-test", &label), ("role", "a")])]);

    let mut watch = client.watch::<Value>(&NODES, None, &opts, &raw.resource_version).unwrap();
    let _: Value =
        client.patch_merge(&NODES, None, &name, &json!({"metadata": {"labels": {"role": "b"}}})).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "no MODIFIED event for node {name}");
        match watch.next() {
            Some(Ok(WatchEvent::Modified(obj))) => {
                assert_eq!(obj["kind"], "PartialObjectMetadata", "{obj}");
                assert!(obj.get("spec").is_none(), "{obj}");
                assert_eq!(obj["metadata"]["labels"]["role"], "b", "{obj}");
                let n: Node = serde_json::from_value(obj).unwrap();
                assert_eq!(n.labels().get("role").map(String::as_str), Some("b"));
                break;
            }
            Some(Ok(_)) => {}
            other => panic!("watch of node {name} ended: {other:?}"),
        }
    }
}

/// The status subresource, on Nodes (the CRDs' status is tested with the CRDs): a merge patch
/// and a PUT of `/status` change the status, and a PUT of `/status` ignores spec changes.
#[test]
fn status_subresource_of_a_node() {
    crate::needs_control_plane!();
    let _g = shared();
    let client = admin();
    let name = unique_name("kc-status");
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": {"podCIDR": "10.244.9.0/24"}});
    let _: Value = client.create(&NODES, None, &node).unwrap();
    let _guard = NodeGuard { client: client.clone(), name: name.clone() };

    let patched: Value = client
        .patch_status_merge(&NODES, None, &name, &json!({"status": {"capacity": {"pods": "7"}}}))
        .unwrap();
    assert_eq!(patched["status"]["capacity"]["pods"], "7", "{patched}");

    let mut obj = patched.clone();
    obj["status"]["capacity"]["pods"] = json!("9");
    obj["spec"]["unschedulable"] = json!(true);
    let replaced: Value = client.replace_status(&NODES, None, &name, &obj).unwrap();
    assert_eq!(replaced["status"]["capacity"]["pods"], "9", "{replaced}");
    assert!(replaced["spec"].get("unschedulable").is_none(), "spec changed through /status: {replaced}");
    let e = client.replace_status::<Value>(&NODES, None, &name, &patched).unwrap_err();
    assert!(e.is_conflict(), "stale resourceVersion on /status: {e}");
    assert!(e.to_string().starts_with(&format!("put /api/v1/nodes/{name}/status: ")), "{e}");
}

/// `Client::shutdown` ends a watch blocked in a read at once (the process-exit path).
#[test]
fn shutdown_unblocks_a_watch() {
    crate::needs_control_plane!();
    let _g = shared();
    let ns = Ns::new(&admin());
    // its own agent: shutdown closes every clone of this client for good
    let client = admin().with_watch_timeout_secs(120, 120);
    let watch = client.watch::<Value>(&CONFIGMAPS, Some(&ns.name), &ListOptions::default(), "").unwrap();
    let (tx, rx) = mpsc::channel();
    let shut = Arc::new(AtomicBool::new(false));
    let shut_seen = shut.clone();
    let t = std::thread::spawn(move || {
        let last = watch.last();
        let _ = tx.send((last, shut_seen.load(Ordering::SeqCst)));
    });
    shut.store(true, Ordering::SeqCst);
    client.shutdown();
    let (last, after_shutdown) =
        rx.recv_timeout(WAIT).unwrap_or_else(|_| panic!("watch still blocked {WAIT:?} after shutdown"));
    t.join().unwrap();
    assert!(after_shutdown, "the watch ended before shutdown: {last:?}");
    assert!(matches!(last, Some(Err(KubeError::Transport { .. })) | None), "{last:?}");
    let e = client.get::<Value>(&NAMESPACES, None, "default").unwrap_err();
    assert!(matches!(e, KubeError::Transport { .. }), "a request after shutdown: {e:?}");
}

/// The server ends a watch after `timeoutSeconds` and sends a bookmark first; the bookmark's
/// resourceVersion is past the one we started from once the cluster has moved on.
#[test]
fn watch_ends_cleanly_with_bookmarks() {
    crate::needs_control_plane!();
    let _g = shared();
    let client = admin().with_watch_timeout_secs(3, 3);
    let ns = Ns::new(&client);
    let start =
        client.list::<Value>(&CONFIGMAPS, Some(&ns.name), &ListOptions::default()).unwrap().resource_version;
    let start_n: u64 = start.parse().unwrap();
    let other = Ns::new(&client);
    let elsewhere = Some(other.name.as_str());
    let _: Value = client.create(&CONFIGMAPS, elsewhere, &configmap("tick", json!({}), json!({}))).unwrap();
    // The watch cache sends a bookmark shortly before a watch's deadline; right after an
    // apiserver restart (another test) the cache may not be ready yet, so allow a few rounds.
    let mut bookmarks = Vec::new();
    for round in 0..5 {
        let watch =
            client.watch::<Value>(&CONFIGMAPS, Some(&ns.name), &ListOptions::default(), &start).unwrap();
        // a write elsewhere moves the cluster's resourceVersion past ours: only then is a
        // bookmark worth sending
        let _: Value = client
            .patch_merge(&CONFIGMAPS, elsewhere, "tick", &json!({"data": {"t": format!("{round}")}}))
            .unwrap();
        // the watch is read on its own thread, so that one that does not end fails the test
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let events: Vec<_> = watch.map(|ev| ev.map_err(|e| e.to_string())).collect();
            let _ = tx.send(events);
        });
        let events = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("the watch did not end at its 3 s timeout (waited 20 s)"));
        for ev in events {
            match ev {
                Ok(WatchEvent::Bookmark { resource_version }) => {
                    bookmarks.push(resource_version.parse::<u64>().unwrap())
                }
                other => panic!("quiet namespace, expected only bookmarks: {other:?}"),
            }
        }
        if !bookmarks.is_empty() {
            break;
        }
    }
    assert!(!bookmarks.is_empty(), "no bookmark in 5 watches of 3 s");
    assert!(bookmarks.iter().all(|b| *b > start_n), "bookmarks {bookmarks:?} do not advance past {start}");
}

/// Runs the reflector in a thread; changes arrive on a channel.
struct Reflector {
    stop: Arc<AtomicBool>,
    rx: mpsc::Receiver<Change<Value>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The view built from the changes so far: name -> object.
    view: BTreeMap<String, Value>,
    resets: usize,
}

impl Reflector {
    fn start(client: Client, ns: &str, from: Option<String>) -> Reflector {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let (s, ns) = (stop.clone(), ns.to_string());
        let thread = std::thread::Builder::new()
            .name("reflector".into())
            .spawn(move || {
                let mut send = |c: Change<Value>| {
                    let _ = tx.send(c);
                };
                match from {
                    None => reflect(&client, &CONFIGMAPS, Some(&ns), &ListOptions::default(), &s, &mut send),
                    Some(rv) => reflect_from(
                        &client,
                        &CONFIGMAPS,
                        Some(&ns),
                        &ListOptions::default(),
                        &rv,
                        &s,
                        &mut send,
                    ),
                }
            })
            .unwrap();
        Reflector { stop, rx, thread: Some(thread), view: BTreeMap::new(), resets: 0 }
    }

    /// The next change, applied to the view.
    fn next(&mut self, deadline: Instant) -> Change<Value> {
        let left = deadline.saturating_duration_since(Instant::now());
        let c = self.rx.recv_timeout(left).unwrap_or_else(|e| panic!("no change from the reflector: {e}"));
        match &c {
            Change::Reset(items) => {
                self.resets += 1;
                self.view = items.iter().map(|o| (name_of(o), o.clone())).collect();
            }
            Change::Applied(o) => {
                self.view.insert(name_of(o), o.clone());
            }
            Change::Deleted(o) => {
                self.view.remove(&name_of(o));
            }
        }
        c
    }

    /// Applies changes until `cond` holds on the view.
    fn until(&mut self, what: &str, mut cond: impl FnMut(&BTreeMap<String, Value>) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !cond(&self.view) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting until {what}; view: {:?}",
                self.view.keys()
            );
            self.next(deadline);
        }
    }
}

impl Drop for Reflector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // the watch timeout of the test clients is a few seconds, so the thread ends soon
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn applied_name(c: &Change<Value>) -> (&'static str, String, Value) {
    match c {
        Change::Applied(o) => ("applied", name_of(o), o["data"].clone()),
        Change::Deleted(o) => ("deleted", name_of(o), o["data"].clone()),
        Change::Reset(items) => {
            ("reset", items.iter().map(name_of).collect::<Vec<_>>().join(","), Value::Null)
        }
    }
}

#[test]
fn reflector_delivers_reset_then_events_in_order() {
    crate::needs_control_plane!();
    let _g = shared();
    let client = admin().with_watch_timeout_secs(2, 3);
    let ns = Ns::new(&client);
    let n = Some(ns.name.as_str());
    let _: Value = client.create(&CONFIGMAPS, n, &configmap("a", json!({}), json!({"v": "1"}))).unwrap();
    let mut r = Reflector::start(client.clone(), &ns.name, None);
    let deadline = Instant::now() + WAIT;
    assert_eq!(applied_name(&r.next(deadline)), ("reset", "a".to_string(), Value::Null));

    let _: Value = client.create(&CONFIGMAPS, n, &configmap("b", json!({}), json!({"v": "1"}))).unwrap();
    let _: Value = client.patch_merge(&CONFIGMAPS, n, "a", &json!({"data": {"v": "2"}})).unwrap();
    client.delete(&CONFIGMAPS, n, "b").unwrap();
    let got: Vec<_> = (0..3).map(|_| applied_name(&r.next(deadline))).collect();
    assert_eq!(
        got,
        vec![
            ("applied", "b".to_string(), json!({"v": "1"})),
            ("applied", "a".to_string(), json!({"v": "2"})),
            ("deleted", "b".to_string(), json!({"v": "1"})),
        ]
    );

    // across several server-side watch ends (2-3 s each): no replays, no resets, later changes arrive
    // (a change per poll of the wait helper, for 7 s)
    let mut tick = 0;
    stays_true(Duration::from_secs(7), 1, "each change arrives as the next Applied event of a", || {
        tick += 1;
        let _: Value =
            client.patch_merge(&CONFIGMAPS, n, "a", &json!({"data": {"tick": format!("{tick}")}})).unwrap();
        let c = r.next(Instant::now() + WAIT);
        assert!(
            matches!(&c, Change::Applied(o) if name_of(o) == "a" && o["data"]["tick"] == format!("{tick}")),
            "{c:?}"
        );
        true
    });
    assert_eq!(r.resets, 1);
}

/// Etcd's HTTP gateway: current revision, then compact everything before it.
fn compact_etcd() -> u64 {
    let url = std::fs::read_to_string(cp_dir().join("etcd.url")).unwrap();
    let url = url.trim();
    let agent = ureq::Agent::config_builder()
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent();
    let head: Value = agent
        .post(format!("{url}/v3/kv/range"))
        .send_json(json!({"key": "AA=="}))
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    let rev: u64 = head["header"]["revision"].as_str().unwrap().parse().unwrap();
    let mut resp = agent
        .post(format!("{url}/v3/kv/compaction"))
        .send_json(json!({"revision": rev.to_string(), "physical": true}))
        .unwrap();
    let body = resp.body_mut().read_to_string().unwrap();
    assert!(resp.status().is_success() || body.contains("compacted"), "compaction: {body}");
    rev
}

/// Etcd compaction alone does not make a recent resourceVersion Gone: the apiserver's watch
/// cache still serves it (observed with v1.37). A version older than the watch cache and the
/// compaction ("1") is Gone for sure, as a version is after a long disconnect.
#[test]
fn watch_from_a_compacted_version_is_gone_and_the_reflector_relists() {
    crate::needs_control_plane!();
    // compaction expires the continue tokens of paginated lists running in parallel
    let _g = LIFECYCLE.write().unwrap_or_else(|p| p.into_inner());
    let client = admin().with_watch_timeout_secs(2, 3);
    let ns = Ns::new(&client);
    let n = Some(ns.name.as_str());
    let _: Value = client.create(&CONFIGMAPS, n, &configmap("a", json!({}), json!({"v": "0"}))).unwrap();
    for i in 1..=3 {
        let _: Value =
            client.patch_merge(&CONFIGMAPS, n, "a", &json!({"data": {"v": i.to_string()}})).unwrap();
    }
    compact_etcd();

    let gone = match client.watch::<Value>(&CONFIGMAPS, n, &ListOptions::default(), "1") {
        Err(e) => e,
        Ok(mut w) => match w.next() {
            Some(Err(e)) => e,
            other => panic!("watch from resourceVersion 1 after compaction: {other:?}"),
        },
    };
    assert!(gone.is_gone(), "{gone}");
    assert!(gone.to_string().contains("gone: the resourceVersion is too old; relist"), "{gone}");

    let mut r = Reflector::start(client.clone(), &ns.name, Some("1".to_string()));
    let first = r.next(Instant::now() + WAIT);
    assert_eq!(applied_name(&first), ("reset", "a".to_string(), Value::Null));
    assert_eq!(r.view["a"]["data"]["v"], "3");
    let _: Value = client.patch_merge(&CONFIGMAPS, n, "a", &json!({"data": {"v": "4"}})).unwrap();
    r.until("the relisted reflector sees v=4", |v| v.get("a").is_some_and(|o| o["data"]["v"] == "4"));
    assert_eq!(r.resets, 1);
}

#[test]
fn reflector_survives_an_apiserver_restart() {
    crate::needs_control_plane!();
    let _g = LIFECYCLE.write().unwrap_or_else(|p| p.into_inner());
    let client = admin().with_watch_timeout_secs(5, 5);
    let ns = Ns::new(&client);
    let n = Some(ns.name.as_str());
    let _: Value = client.create(&CONFIGMAPS, n, &configmap("a", json!({}), json!({"v": "before"}))).unwrap();
    let mut r = Reflector::start(client.clone(), &ns.name, None);
    r.until("the view has a", |v| v.contains_key("a"));

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(root.join("hack/control-plane.sh"))
        .arg("restart-apiserver")
        .output()
        .unwrap();
    assert!(out.status.success(), "restart-apiserver: {}", String::from_utf8_lossy(&out.stderr));

    let _: Value = client.patch_merge(&CONFIGMAPS, n, "a", &json!({"data": {"v": "after"}})).unwrap();
    r.until("the view has the update made after the restart", |v| {
        v.get("a").is_some_and(|o| o["data"]["v"] == "after")
    });
}
