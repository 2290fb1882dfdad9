//! `kubectl-nv_ipam` against a cluster: reads the pools, the nodes and the ipam-node pods with
//! the user's kubeconfig, mints one token for the nodes (TokenRequest of the ServiceAccount
//! `--service-account`, audience `nv-ipam-node`, 10 minutes), asks every node for its
//! allocations through the API server's pod proxy, [`MAX_PARALLEL_NODES`] at a time, and, for
//! `check`, lists each node's pods after its answer (a pod made after the answer cannot look
//! stale). A node that does not answer is reported, never fatal. `--fix` writes pool status.
//!
//! A node may be hostile: its answer is read to at most [`MAX_ANSWER_BYTES`] within
//! [`NODE_TIMEOUT`], its JSON nesting is checked before it is decoded into bounded lists, and
//! an answer for another node than the one asked is refused.
//!
//! `--node-endpoint NODE=URL` (tests, debugging) asks a node's listener directly over HTTP
//! instead of through the pod proxy, with the token in `Authorization`.
//!
//! Owns: the API calls and the node requests. Must not: decide what a report says (`report`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::alloc::PoolKind;
use crate::api::{AnyPool, Node, PoolType};
use crate::inventory::{self, NodeAllocations};
use crate::kube::{self, Client, ClusterConfig, ListOptions};

use super::args::Args;
use super::report::{PodState, Pods, View};

/// Most bytes read of one node's answer: 16 MiB, about 60,000 reservations at ~270 bytes each
/// (a node runs a few hundred pods); a longer answer is refused, so [`MAX_PARALLEL_NODES`]
/// hostile nodes cost at most 128 MiB.
pub const MAX_ANSWER_BYTES: u64 = 16 << 20;
/// One node's answer, in total (connect, the API server's proxying, the body): 20 s. A node
/// answers in milliseconds; a slow or hostile one is reported as not answering.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(20);
/// Nodes asked at once: 8 keeps a 5,000-node cluster to minutes of wall time at worst while
/// the API server's proxy sees at most 8 requests of this client.
pub const MAX_PARALLEL_NODES: usize = 8;
/// Lifetime of the token minted for the nodes: 600 s, the least TokenRequest grants.
pub const TOKEN_EXPIRATION_SECONDS: u64 = 600;

fn kube_err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// The client of the user's kubeconfig.
pub fn client(args: &Args) -> Result<Client, String> {
    let cfg = ClusterConfig::load_with(args.kubeconfig.as_deref(), args.context.as_deref(), true)
        .map_err(|e| kube_err("kubeconfig", e))?;
    Client::new(cfg, concat!("kubectl-nv_ipam/", env!("CARGO_PKG_VERSION")))
        .map_err(|e| kube_err("client", e))
}

fn pools_of<K: PoolKind>(c: &Client, ns: &str, out: &mut Vec<AnyPool>) -> Result<(), String> {
    let list = c
        .list_decoded::<K::Pool>(K::TYPE.info().resource, Some(ns), &ListOptions::default())
        .map_err(|e| kube_err(&format!("list {}s in {ns}", K::TYPE.kind()), e))?;
    for d in list.items {
        match d.object {
            Ok(p) => out.push(K::into_any(p)),
            Err(e) => {
                eprintln!("kubectl-nv_ipam: {} {:?} does not decode, left out: {e}", K::TYPE.kind(), d.name)
            }
        }
    }
    Ok(())
}

/// The fields of a Pod read here.
#[derive(Debug, Default, Deserialize)]
struct Pod {
    #[serde(default)]
    metadata: PodMeta,
    #[serde(default)]
    spec: PodSpec,
    #[serde(default)]
    status: PodStatus,
}

#[derive(Debug, Default, Deserialize)]
struct PodMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    uid: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    #[serde(default)]
    node_name: String,
}

#[derive(Debug, Default, Deserialize)]
struct PodStatus {
    #[serde(default)]
    phase: String,
}

/// How one node is reached.
#[derive(Debug, Clone)]
enum Target {
    /// Through the pod proxy: this ipam-node pod.
    Pod(String),
    /// Directly (`--node-endpoint`).
    Url(String),
}

/// Everything but the node answers: pools, nodes, and who to ask.
pub fn gather(args: &Args, c: &Client, with_pods: bool) -> Result<View, String> {
    let ns = args.namespace.as_str();
    let mut pools = Vec::new();
    for t in PoolType::ALL {
        crate::with_kind!(t, K => pools_of::<K>(c, ns, &mut pools))?;
    }
    let nodes: Vec<Node> = c
        .list(&kube::NODES, None, &ListOptions { metadata_only: true, ..ListOptions::default() })
        .map_err(|e| kube_err("list nodes", e))?
        .items;
    let mut targets: BTreeMap<String, Result<Target, String>> = BTreeMap::new();
    if args.node_endpoints.is_empty() {
        let opts =
            ListOptions { label_selector: Some(args.daemon_selector.clone()), ..ListOptions::default() };
        let pods: Vec<Pod> = c
            .list(&kube::PODS, Some(&args.node_namespace), &opts)
            .map_err(|e| {
                kube_err(
                    &format!("list ipam-node pods ({}) in {}", args.daemon_selector, args.node_namespace),
                    e,
                )
            })?
            .items;
        // a Running pod wins over another phase (a rolling update has two pods on a node)
        let mut by_node: BTreeMap<String, &Pod> = BTreeMap::new();
        for p in pods.iter().filter(|p| !p.spec.node_name.is_empty()) {
            let better = by_node.get(&p.spec.node_name).is_none_or(|cur| {
                (p.status.phase == "Running", &p.metadata.name)
                    > (cur.status.phase == "Running", &cur.metadata.name)
            });
            if better {
                by_node.insert(p.spec.node_name.clone(), p);
            }
        }
        for (node, p) in by_node {
            targets.insert(node, Ok(Target::Pod(p.metadata.name.clone())));
        }
        // nodes a pool gives a block but that have no daemon: reported, not asked
        let probe = View { pools: pools.clone(), ..View::default() };
        for f in super::report::facts(&probe) {
            for n in f.status_nodes {
                if nodes.iter().any(|x| x.name() == n) {
                    targets.entry(n).or_insert_with(|| {
                        Err(format!(
                            "no ipam-node pod on this node ({} in namespace {})",
                            args.daemon_selector, args.node_namespace
                        ))
                    });
                }
            }
        }
    } else {
        for (node, url) in &args.node_endpoints {
            targets.insert(node.clone(), Ok(Target::Url(url.clone())));
        }
    }
    if let Some(only) = &args.node {
        targets.retain(|n, _| n == only);
        if targets.is_empty() {
            targets.insert(only.clone(), Err("no ipam-node pod on this node, or no such node".into()));
        }
    }
    let asked = targets.values().any(Result::is_ok);
    let token = if asked { Some(token(args, c)?) } else { None };
    let (answers, pods) = ask_all(c, args, targets, token.as_deref().unwrap_or_default(), with_pods);
    Ok(View { namespace: ns.to_string(), pools, nodes: Some(nodes), answers, pods, standalone_node: None })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenRequest {
    api_version: &'static str,
    kind: &'static str,
    spec: TokenRequestSpec,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenRequestSpec {
    audiences: [&'static str; 1],
    expiration_seconds: u64,
}

#[derive(Deserialize, Default)]
struct TokenAnswer {
    #[serde(default)]
    status: TokenStatus,
}

#[derive(Deserialize, Default)]
struct TokenStatus {
    #[serde(default)]
    token: String,
}

/// The token for the nodes: `--token-file`, else a TokenRequest.
fn token(args: &Args, c: &Client) -> Result<String, String> {
    if let Some(f) = &args.token_file {
        let t = std::fs::read_to_string(f).map_err(|e| format!("--token-file {}: {e}", f.display()))?;
        return Ok(t.trim().to_string());
    }
    let req = TokenRequest {
        api_version: "authentication.k8s.io/v1",
        kind: "TokenRequest",
        spec: TokenRequestSpec {
            audiences: [inventory::TOKEN_AUDIENCE],
            expiration_seconds: TOKEN_EXPIRATION_SECONDS,
        },
    };
    let answer: TokenAnswer = c
        .create_subresource(&kube::SERVICEACCOUNTS, Some(&args.node_namespace), &args.service_account, "token", &req)
        .map_err(|e| {
            format!(
                "cannot get a token of ServiceAccount {}/{} for the nodes ({e}); you need create on serviceaccounts/token for it (the ClusterRole nv-ipam-viewer, deploy/rbac/viewer.yaml), or pass --token-file",
                args.node_namespace, args.service_account
            )
        })?;
    if answer.status.token.is_empty() {
        return Err("the TokenRequest answered no token".into());
    }
    Ok(answer.status.token)
}

type Answers = BTreeMap<String, Result<NodeAllocations, String>>;
type NodePods = BTreeMap<String, Result<Pods, String>>;

/// Asks every target, [`MAX_PARALLEL_NODES`] at a time; then its pods when `with_pods`.
fn ask_all(
    c: &Client,
    args: &Args,
    targets: BTreeMap<String, Result<Target, String>>,
    token: &str,
    with_pods: bool,
) -> (Answers, NodePods) {
    let answers = Mutex::new(Answers::new());
    let pods = Mutex::new(NodePods::new());
    let queue = Mutex::new(targets.into_iter());
    std::thread::scope(|s| {
        for _ in 0..MAX_PARALLEL_NODES {
            s.spawn(|| {
                loop {
                    let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
                    let Some((node, target)) = next else { break };
                    let answer = target.and_then(|t| ask(c, args, &node, &t, token));
                    let listed = (with_pods && answer.is_ok()).then(|| node_pods(c, &node));
                    answers.lock().unwrap_or_else(|p| p.into_inner()).insert(node.clone(), answer);
                    if let Some(l) = listed {
                        pods.lock().unwrap_or_else(|p| p.into_inner()).insert(node, l);
                    }
                }
            });
        }
    });
    (answers.into_inner().unwrap_or_default(), pods.into_inner().unwrap_or_default())
}

/// One node's answer, decoded and checked.
fn ask(c: &Client, args: &Args, node: &str, target: &Target, token: &str) -> Result<NodeAllocations, String> {
    let (status, body) = match target {
        Target::Pod(pod) => c
            .proxy_get(
                &args.node_namespace,
                pod,
                args.daemon_port,
                inventory::PATH,
                &[(inventory::TOKEN_HEADER, token)],
                MAX_ANSWER_BYTES,
                NODE_TIMEOUT,
            )
            .map_err(|e| e.to_string())?,
        Target::Url(url) => direct(url, token, MAX_ANSWER_BYTES, NODE_TIMEOUT)?,
    };
    decode(node, status, &body)
}

/// `GET <url>/v1/allocations` over plain HTTP (`--node-endpoint`): at most `limit` bytes of
/// body, all within `timeout`.
fn direct(url: &str, token: &str, limit: u64, timeout: Duration) -> Result<(u16, Vec<u8>), String> {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(timeout))
        .user_agent(concat!("kubectl-nv_ipam/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent();
    let full = format!("{url}{}", inventory::PATH);
    let mut resp = agent
        .get(&full)
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .map_err(|e| format!("GET {full}: {e}"))?;
    let status = resp.status().as_u16();
    let body =
        resp.body_mut().with_config().limit(limit).read_to_vec().map_err(|e| format!("GET {full}: {e}"))?;
    Ok((status, body))
}

/// The answer of `node` from its status and body (at most [`MAX_ANSWER_BYTES`] already).
pub fn decode(node: &str, status: u16, body: &[u8]) -> Result<NodeAllocations, String> {
    if status != 200 {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).trim().to_string();
        return Err(format!("HTTP {status}: {text}"));
    }
    crate::prescan::check_json(body, crate::prescan::MAX_DEPTH).map_err(|e| format!("bad answer: {e}"))?;
    let r: NodeAllocations = serde_json::from_slice(body).map_err(|e| format!("bad answer: {e}"))?;
    if r.kind != inventory::KIND || r.version != inventory::FORMAT_VERSION {
        return Err(format!(
            "answer is {} version {}, not {} version {}: a different ipam-node version",
            r.kind,
            r.version,
            inventory::KIND,
            inventory::FORMAT_VERSION
        ));
    }
    if r.node != node {
        return Err(format!("answer is for node {:?}, not {node:?}", r.node));
    }
    Ok(r)
}

/// The field selector of the pods bound to `node` (a name read from a pool's status).
fn bound_to(node: &str) -> String {
    kube::field_equals("spec.nodeName", node)
}

/// The pods bound to `node` (every namespace), as the node's stale cleaner sees them.
fn node_pods(c: &Client, node: &str) -> Result<Pods, String> {
    let opts = ListOptions { field_selector: Some(bound_to(node)), ..ListOptions::default() };
    let list: Vec<Pod> = c.list(&kube::PODS, None, &opts).map_err(|e| e.to_string())?.items;
    Ok(list
        .into_iter()
        .map(|p| {
            ((p.metadata.namespace, p.metadata.name), PodState { uid: p.metadata.uid, phase: p.status.phase })
        })
        .collect())
}

/// Whether any pod (any namespace, any phase) is still bound to `node`: one pod is enough to
/// know (`limit=1`).
pub fn pods_bound(c: &Client, node: &str) -> Result<bool, String> {
    let opts =
        ListOptions { field_selector: Some(bound_to(node)), metadata_only: true, ..ListOptions::default() };
    c.any(&kube::PODS, None, &opts).map_err(|e| e.to_string())
}

/// `check --fix`: writes each pool's status without the entries of missing nodes (merge patch
/// of the status subresource with the resourceVersion read: a change in between fails with
/// 409 and nothing is written). Returns per pool key what happened.
pub fn fix_missing_nodes(
    c: &Client,
    ns: &str,
    fixes: Vec<(crate::api::PoolKey, String, serde_json::Value, usize)>,
) -> BTreeMap<crate::api::PoolKey, String> {
    let mut out = BTreeMap::new();
    for (key, rv, allocations, n) in fixes {
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": rv},
            "status": {"allocations": allocations, "allocatedNodes": n},
        });
        let r: Result<serde_json::Value, _> =
            c.patch_status_merge(key.pool_type.info().resource, Some(ns), &key.name, &patch);
        let what = match r {
            Ok(_) => "fixed".to_string(),
            Err(e) if e.is_conflict() => {
                "not fixed: the pool changed since it was read (409); run check again".to_string()
            }
            Err(e) => format!("not fixed: {e}"),
        };
        out.insert(key, what);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Condvar};
    use std::time::Instant;

    #[test]
    fn answers_are_checked_before_use() {
        let ok = br#"{"kind":"NodeAllocations","version":1,"node":"n1","generatedAt":"t","pools":[],"reservations":[]}"#;
        assert_eq!(decode("n1", 200, ok).expect("ok").node, "n1");
        assert!(
            decode("n2", 200, ok).expect_err("other node").contains("answer is for node \"n1\", not \"n2\"")
        );
        let e = decode("n1", 403, b"forbidden: user \"x\" may not get nodeallocations").expect_err("403");
        assert!(e.starts_with("HTTP 403: forbidden"), "{e}");
        let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
        assert!(decode("n1", 200, deep.as_bytes()).expect_err("deep").contains("bad answer"));
        let v2 = br#"{"kind":"NodeAllocations","version":2,"node":"n1","generatedAt":"t","pools":[],"reservations":[]}"#;
        assert!(
            decode("n1", 200, v2).expect_err("version").contains("version 2, not NodeAllocations version 1")
        );
    }

    /// Reads one request head from `s` (up to the blank line).
    fn read_head(s: &mut TcpStream) {
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).unwrap_or(0) == 1 {
            head.push(b[0]);
        }
    }

    /// A one-shot HTTP server answering `body` (after `before`, which may wait): its URL.
    fn serve_once(body: Vec<u8>, before: impl FnOnce() + Send + 'static) -> String {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", l.local_addr().expect("addr"));
        std::thread::spawn(move || {
            let Ok((mut s, _)) = l.accept() else { return };
            read_head(&mut s);
            before();
            let head =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        });
        url
    }

    #[test]
    fn an_answer_at_the_byte_limit_is_read_and_one_byte_more_is_refused() {
        let limit = 4096; // the same code path as MAX_ANSWER_BYTES, with a small body
        let at = direct(&serve_once(vec![b' '; limit as usize], || {}), "t", limit, NODE_TIMEOUT);
        assert_eq!(at.map(|(c, b)| (c, b.len())), Ok((200, limit as usize)));
        let over = direct(&serve_once(vec![b' '; limit as usize + 1], || {}), "t", limit, NODE_TIMEOUT)
            .expect_err("over the limit");
        assert!(over.contains("limit") || over.contains("larger"), "{over}");
    }

    #[test]
    fn a_slow_answer_is_cut_at_its_total_deadline() {
        // a node that trickles: one byte every 100 ms, never done in time
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", l.local_addr().expect("addr"));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = done.clone();
        std::thread::spawn(move || {
            let Ok((mut s, _)) = l.accept() else { return };
            read_head(&mut s);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
            while !stop.load(Ordering::SeqCst) && s.write_all(b" ").is_ok() {
                std::thread::sleep(Duration::from_millis(100)); // the trickle under test
            }
        });
        // every read gets a byte within 100 ms, so only a total deadline can end this (the
        // whole body would take 10,000 s)
        let e = direct(&url, "t", MAX_ANSWER_BYTES, Duration::from_millis(800)).expect_err("cut");
        done.store(true, Ordering::SeqCst);
        assert!(e.to_lowercase().contains("timeout") || e.to_lowercase().contains("timed out"), "{e}");
    }

    fn report(node: &str) -> Vec<u8> {
        format!(r#"{{"kind":"NodeAllocations","version":1,"node":"{node}","generatedAt":"t","pools":[],"reservations":[]}}"#)
            .into_bytes()
    }

    #[test]
    fn nodes_are_asked_at_most_max_parallel_at_once() {
        let nodes = MAX_PARALLEL_NODES + 4;
        // every server holds its answer until MAX_PARALLEL_NODES requests are in at once (or,
        // for the last ones, until no more can come): more at once would show in `max`
        let state = Arc::new((std::sync::Mutex::new((0usize, 0usize, 0usize)), Condvar::new()));
        let mut targets = BTreeMap::new();
        for i in 0..nodes {
            let st = state.clone();
            let node = format!("n{i:02}");
            let url = serve_once(report(&node), move || {
                let (m, cv) = &*st;
                let mut g = m.lock().expect("lock");
                g.0 += 1; // in flight
                g.1 = g.1.max(g.0);
                g.2 += 1; // arrived in all
                cv.notify_all();
                let end = Instant::now() + Duration::from_secs(10);
                while g.0 < MAX_PARALLEL_NODES.min(nodes - (g.2 - g.0)) && Instant::now() < end {
                    g = cv.wait_timeout(g, Duration::from_millis(50)).expect("wait").0;
                }
                g.0 -= 1;
                cv.notify_all();
            });
            targets.insert(node, Ok(Target::Url(url)));
        }
        let cfg = ClusterConfig {
            server: "https://127.0.0.1:1".into(),
            ca_pem: None,
            auth: kube::Auth::None,
            insecure_skip_tls_verify: true,
        };
        let c = Client::new(cfg, "test").expect("client");
        let args = super::super::args::parse(["usage"].map(std::ffi::OsString::from)).expect("args");
        let (answers, _) = ask_all(&c, &args, targets, "t", false);
        assert_eq!(answers.len(), nodes);
        assert!(answers.values().all(Result::is_ok), "{answers:?}");
        assert_eq!(state.0.lock().expect("lock").1, MAX_PARALLEL_NODES, "at most, and at the limit");
    }
}
