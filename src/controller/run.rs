//! Cluster mode: the shell around [`reconcile`](super::reconcile).
//!
//! Threads (all named):
//! ```text
//!   reflect-ippools, reflect-cidrpools  list+watch pools in --ippools-namespace ─┐
//!   reflect-nodes     list+watch Nodes, metadata only (names + labels) ─────────┤ cache + queue
//!   leader-election   (with --leader-elect) keeps `is_leader` current           │ (Mutex+Condvar)
//!   http-*            /healthz /readyz /metrics                                 │
//!   webhook-*         (with --webhook) admission reviews, on every replica; reads the pools
//!                     of the cache for the overlap check                        │
//!   main              the reconcile worker: pops pool keys, decides, writes <───┘
//! ```
//! Triggers: a pool whose generation or status (other than the status we wrote) changed; a
//! node added, deleted or relabelled that the pool selects (before or after) or holds an entry
//! for (only those pools); a hold expiring
//! (timer); becoming leader (every pool). Node heartbeats change neither names nor labels and
//! trigger nothing. The queue is a set, so a burst of changes is one reconcile per pool.
//!
//! Writes: `status` (allocations and conditions) by JSON merge patch on the status
//! subresource, carrying the cached resourceVersion so the server refuses a stale write; on 409
//! the pool is read again and decided again, at most [`MAX_STATUS_ATTEMPTS`] times, then
//! requeued after [`ERROR_REQUEUE`]. Events are POSTed to core/v1 when they differ from the
//! ones of the pool's previous reconcile, so a stuck pool does not repeat itself every time.
//!
//! Memory: pools are cached typed and nodes as one shared sorted list; our own last write is
//! remembered by a hash of its status, never as a copy (see docs/benchmarks-scale.md).
//!
//! Owns: [`run`], [`RunError`], the cache, queue and metrics. Must not: decide allocations.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::hash::Hasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::admission::PoolRange;
use super::args::{ClusterArgs, DEFAULT_HEALTH_PROBE_BIND_ADDRESS, DEFAULT_METRICS_BIND_ADDRESS};
use super::leader;
use super::reconcile::{Event, Input, NodeChange, Outcome, nodes_matter, reconcile};
use super::webhook::{self, CertReloader};
use crate::alloc::PoolKind;
use crate::api::PoolType;
use crate::api::{API_VERSION, AnyAllocations, AnyPool, Condition, Node, ObjectMeta, PoolStatus, StatusRef};
use crate::health::{self, HealthError, Probe};
use crate::kube::{Change, Client, ClusterConfig, EVENTS, KubeError, ListOptions, NODES, Resource};
use crate::metrics::{Kind, MetricsText};

/// Status writes per reconcile (the first plus retries after 409 Conflict).
pub const MAX_STATUS_ATTEMPTS: u32 = 5;
/// When a reconcile failed (API error), try the pool again after this long, doubling per
/// consecutive failure of that pool up to [`MAX_ERROR_REQUEUE`].
pub const ERROR_REQUEUE: Duration = Duration::from_secs(1);
/// Longest wait before retrying a failing pool (controller-runtime's rate limiter caps at 1000 s;
/// 5 minutes keeps a fixed RBAC or API server visible sooner).
pub const MAX_ERROR_REQUEUE: Duration = Duration::from_secs(300);
/// The worker wakes at least this often to look at the stop flag.
pub const WORKER_POLL: Duration = Duration::from_millis(200);
/// Node names printed in one log line; a relist after an outage can change thousands.
pub const MAX_LOGGED_NAMES: usize = 10;
/// User agent sent to the API server.
pub const USER_AGENT: &str = concat!("ipam-controller/", env!("CARGO_PKG_VERSION"));
/// Component name on Events.
pub const COMPONENT: &str = "ipam-controller";

/// Why cluster mode could not start or had to stop.
#[derive(Debug)]
pub enum RunError {
    Logging(crate::logging::LoggingError),
    Kube(KubeError),
    Health { flag: &'static str, source: HealthError },
    Webhook(super::webhook::WebhookError),
    Signal(std::io::Error),
    Thread { name: String, source: std::io::Error },
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Logging(e) => write!(f, "logging: {e}"),
            RunError::Kube(e) => write!(f, "{e}: check --kubeconfig or $KUBECONFIG"),
            RunError::Health { flag, source } => write!(f, "{flag}: {source}"),
            RunError::Webhook(e) => write!(f, "webhook: {e}"),
            RunError::Signal(e) => write!(f, "cannot install the SIGTERM handler: {e}"),
            RunError::Thread { name, source } => write!(f, "cannot start thread {name}: {source}"),
        }
    }
}

impl std::error::Error for RunError {}

/// Key of a pool in the queue: kind and name (the namespace is fixed).
type Key = (PoolType, String);

/// A pool as the cache keeps it: typed, so a 5,000-entry status is compact structs rather than
/// a `serde_json::Value` tree (~10x the JSON); plus `status.conditions` (not in the api types)
/// and a hash of the status as stored, to recognise our own write's echo without a copy.
#[derive(Debug, Clone)]
struct CachedPool {
    pool: AnyPool,
    conditions: Vec<Condition>,
    status_hash: u64,
}

impl CachedPool {
    fn meta(&self) -> &ObjectMeta {
        self.pool.meta()
    }

    fn generation(&self) -> Option<i64> {
        self.meta().rest.get("generation").and_then(Value::as_i64)
    }

    fn resource_version(&self) -> &str {
        self.meta().rest.get("resourceVersion").and_then(Value::as_str).unwrap_or_default()
    }
}

/// A pool object on the wire, as read by the reflector, GET and the status write's answer.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", bound = "")]
struct WirePool<K: PoolKind> {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: K::Spec,
    #[serde(default = "Option::default")]
    status: Option<PoolStatus<K::Allocation>>,
}

/// The status write: a merge patch carrying the resourceVersion the decision was based on, so
/// the API server refuses it (409) when the pool changed meanwhile.
#[derive(Serialize)]
struct StatusPatch<'a, A> {
    metadata: PatchMeta<'a>,
    status: StatusRef<'a, A>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PatchMeta<'a> {
    resource_version: &'a str,
}

/// Hashes a value's JSON form: equal statuses (as decoded into our types) hash equal whatever
/// the key order or omitted defaults of the stored JSON.
fn json_hash<T: Serialize + ?Sized>(v: &T) -> u64 {
    struct W(DefaultHasher);
    impl std::io::Write for W {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.write(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut w = W(DefaultHasher::new());
    // serializing our own types into a sink cannot fail (string keys, no floats)
    let _ = serde_json::to_writer(&mut w, v);
    w.0.finish()
}

/// Hash of a status as stored: `None` (no status yet) differs from every written status.
fn status_hash<A: Serialize>(s: Option<StatusRef<'_, A>>) -> u64 {
    json_hash(&s)
}

/// The wire shape of one pool kind, turned into the cache's [`CachedPool`].
trait PoolWire: DeserializeOwned {
    fn into_cached(self) -> CachedPool;
}

impl<K: PoolKind> PoolWire for WirePool<K> {
    fn into_cached(self) -> CachedPool {
        let status_hash =
            status_hash(self.status.as_ref().map(|s| StatusRef::new(&s.allocations, &s.conditions)));
        let (status, conditions) = match self.status {
            Some(s) => (Some(K::status_of(s.allocations)), s.conditions),
            None => (None, Vec::new()),
        };
        let pool = K::from_parts(self.api_version, self.kind, self.metadata, self.spec, status);
        CachedPool { pool: K::into_any(pool), conditions, status_hash }
    }
}

#[derive(Default)]
struct Cache {
    /// `Arc`: a reconcile takes its pool out of the lock without copying 5,000 entries.
    pools: BTreeMap<Key, Arc<CachedPool>>,
    /// Every node (name + labels), sorted by name: the planner's input as is, shared with a
    /// running reconcile instead of copied for each (5,000 nodes with labels are megabytes).
    nodes: Arc<Vec<Node>>,
    /// The pool kinds whose reflector has listed once.
    synced_pools: BTreeSet<PoolType>,
    synced_nodes: bool,
    queue: BTreeSet<Key>,
    /// Hash ([`status_hash`]) of the status we last wrote per pool: a watch event carrying it
    /// is our own echo. A hash, not a copy: a copy of a 5,000-entry status is megabytes.
    written: HashMap<Key, u64>,
    holds: HashMap<Key, BTreeMap<String, SystemTime>>,
    recheck: HashMap<Key, SystemTime>,
    last_events: HashMap<Key, Vec<Event>>,
    /// Consecutive failed reconciles per pool, for the retry backoff.
    failures: HashMap<Key, u32>,
    gauges: BTreeMap<Key, PoolGauges>,
}

impl Cache {
    /// Every pool kind's reflector has listed once.
    fn pools_synced(&self) -> bool {
        PoolType::ALL.iter().all(|t| self.synced_pools.contains(t))
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct PoolGauges {
    allocated: u64,
    free: Option<u64>,
    size: Option<u64>,
    held: u64,
}

struct Shared {
    cache: Mutex<Cache>,
    wake: Condvar,
    is_leader: Arc<AtomicBool>,
    reconciles: AtomicU64,
    reconcile_errors: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Cache> {
        // a panic elsewhere must not stop the controller; the cache is rebuilt by relists
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enqueue_all(&self) {
        let mut c = self.lock();
        let keys: Vec<Key> = c.pools.keys().cloned().collect();
        c.queue.extend(keys);
        self.wake.notify_all();
    }
}

/// A per-pool gauge family: name, help, and how to read it from [`PoolGauges`].
type GaugeFamily = (&'static str, &'static str, fn(&PoolGauges) -> Option<u64>);

/// The probe: `.1` is the webhook's certificate and counters when `--webhook` is set.
struct Health(Arc<Shared>, Option<(Arc<CertReloader>, Arc<webhook::Stats>)>);

impl Probe for Health {
    fn healthy(&self) -> bool {
        true
    }

    /// Caches synced and, with `--webhook`, a serving certificate loaded (the listener is up:
    /// the controller does not start without it).
    fn ready(&self) -> bool {
        let synced = {
            let c = self.0.lock();
            c.pools_synced() && c.synced_nodes
        };
        synced && self.1.as_ref().is_none_or(|(certs, _)| certs.loaded())
    }

    fn metrics(&self) -> String {
        let s = &self.0;
        let mut m = MetricsText::new();
        m.counter("nv_ipam_reconcile_total", "Pool reconciles run.", s.reconciles.load(Ordering::Relaxed));
        m.counter(
            "nv_ipam_reconcile_errors_total",
            "Pool reconciles that failed (API errors); the pool is retried.",
            s.reconcile_errors.load(Ordering::Relaxed),
        );
        m.gauge(
            "nv_ipam_leader",
            "1 when this process is the leader and reconciles.",
            if s.is_leader.load(Ordering::Relaxed) { 1.0 } else { 0.0 },
        );
        if let Some((_, w)) = &self.1 {
            let name = "nv_ipam_webhook_reviews_total";
            m.family(
                name,
                Kind::Counter,
                "Webhook requests: reviews allowed, refused, and requests that were no review (HTTP 4xx).",
            );
            for (result, n) in [("allowed", &w.allowed), ("refused", &w.refused), ("error", &w.errors)] {
                m.sample(name, &[("result", result)], n.load(Ordering::Relaxed) as f64);
            }
        }
        let c = s.lock();
        let families: [GaugeFamily; 4] = [
            ("nv_ipam_pool_nodes_allocated", "Nodes with a block or prefix in the pool.", |g| {
                Some(g.allocated)
            }),
            (
                "nv_ipam_pool_free_blocks",
                "Blocks or prefixes not allocated (exclusions not subtracted; saturates at 2^64-1).",
                |g| g.free,
            ),
            ("nv_ipam_pool_size", "Addresses in the subnet or cidr (saturates at 2^64-1).", |g| g.size),
            ("nv_ipam_pool_nodes_held", "Departed nodes whose block is held for the grace period.", |g| {
                Some(g.held)
            }),
        ];
        for (name, help, get) in families {
            m.family(name, Kind::Gauge, help);
            for ((t, pool), g) in &c.gauges {
                if let Some(v) = get(g) {
                    m.sample(name, &[("pool", pool), ("type", t.as_str())], v as f64);
                }
            }
        }
        m.finish()
    }
}

/// Runs cluster mode until SIGTERM or SIGINT.
pub fn run(args: &ClusterArgs) -> Result<(), RunError> {
    let level = match args.verbosity {
        0 => log::LevelFilter::Info,
        1..=3 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    crate::logging::init(level, args.logging_format, crate::logging::LogTarget::Stderr)
        .map_err(RunError::Logging)?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(RunError::Signal)?;
    }
    let cfg = ClusterConfig::load(args.kubeconfig.as_deref()).map_err(RunError::Kube)?;
    let client = Client::new(cfg, USER_AGENT).map_err(RunError::Kube)?;
    let is_leader =
        if args.leader_elect { Arc::new(AtomicBool::new(false)) } else { leader::always_leader() };
    let shared = Arc::new(Shared {
        cache: Mutex::new(Cache::default()),
        wake: Condvar::new(),
        is_leader,
        reconciles: AtomicU64::new(0),
        reconcile_errors: AtomicU64::new(0),
    });

    let ns = args.ippools_namespace.clone();
    let mut http = Vec::new();
    let webhook = if args.webhook {
        let certs = CertReloader::new(&args.webhook_cert_dir);
        let others = pools_of(Arc::clone(&shared), ns.clone());
        let stats = Arc::new(webhook::Stats::default());
        let (bound, handle) = webhook::serve(
            &args.webhook_bind_address,
            Arc::clone(&certs),
            others,
            Arc::clone(&stats),
            Arc::clone(&stop),
        )
        .map_err(RunError::Webhook)?;
        log::info!(
            "serving the admission webhook on {bound} (certificates: {})",
            args.webhook_cert_dir.display()
        );
        http.push(handle);
        Some((certs, stats))
    } else {
        None
    };
    let probe: Arc<dyn Probe> = Arc::new(Health(Arc::clone(&shared), webhook));
    for (flag, addr) in [
        ("--health-probe-bind-address", &args.health_probe_bind_address),
        ("--metrics-bind-address", &args.metrics_bind_address),
    ] {
        match health::serve(addr, Arc::clone(&probe), Arc::clone(&stop)) {
            Ok(Some((bound, handle))) => {
                log::info!("serving {flag} on {bound}");
                http.push(handle);
            }
            Ok(None) => log::info!("{flag} disabled"),
            // A busy default port (a second controller on one host) must not stop planning; an
            // address the operator chose must work or the controller refuses to start.
            Err(source)
                if addr == DEFAULT_HEALTH_PROBE_BIND_ADDRESS || addr == DEFAULT_METRICS_BIND_ADDRESS =>
            {
                log::error!("{source}; {flag} is off (choose another address)")
            }
            Err(source) => return Err(RunError::Health { flag, source }),
        }
    }

    let mut threads = Vec::new();
    for t in PoolType::ALL {
        let name = format!("reflect-{}", t.info().resource.plural);
        let r = resource(t);
        let spawned = crate::with_kind!(t, K => {
            spawn_pool_reflector::<WirePool<K>>(name, &client, r, t, &ns, &shared, &stop)
        });
        threads.push(spawned?);
    }
    threads.push(spawn_node_reflector(&client, &shared, &stop)?);
    let elector = if args.leader_elect {
        let (client, shared2, stop2) = (client.clone(), Arc::clone(&shared), Arc::clone(&stop));
        let lns = args.leader_elect_namespace.clone();
        let me = leader::identity();
        log::info!("leader election: identity={me} lease={lns}/{}", leader::LEASE_NAME);
        Some(
            std::thread::Builder::new()
                .name("leader-election".into())
                .spawn(move || {
                    let on_elected = || shared2.enqueue_all();
                    leader::run_elector(&client, &lns, &me, &shared2.is_leader, &stop2, &on_elected);
                })
                .map_err(|source| RunError::Thread { name: "leader-election".into(), source })?,
        )
    } else {
        None
    };

    log::info!(
        "ipam-controller started namespace={ns} leader_elect={} grace={:?}",
        args.leader_elect,
        args.node_release_grace
    );
    worker(&client, &ns, &shared, &stop, args.node_release_grace);

    log::info!("stopping");
    shared.wake.notify_all();
    if let Some(e) = elector {
        // releases the lease; needs the client, so before shutdown
        let _ = e.join();
    }
    client.shutdown();
    for t in http {
        let _ = t.join();
    }
    // reflectors end at the next event or when shutdown breaks their watch; not joined, so a
    // stuck TLS read cannot delay exit
    drop(threads);
    Ok(())
}

/// The webhook's view of the pools for the overlap check: the cache's pools when the review is
/// for the controller's namespace and the cache has listed them, else unknown (a pool of
/// another namespace is not used by this controller or its nodes).
fn pools_of(shared: Arc<Shared>, ns: String) -> Arc<webhook::Others> {
    Arc::new(move |req_ns: &str| {
        if req_ns != ns {
            return None;
        }
        let c = shared.lock();
        if !c.pools_synced() {
            return None;
        }
        Some(c.pools.values().filter_map(|p| PoolRange::of(&p.pool)).collect())
    })
}

fn spawn_pool_reflector<W: PoolWire + 'static>(
    name: String,
    client: &Client,
    r: &'static Resource,
    t: PoolType,
    ns: &str,
    shared: &Arc<Shared>,
    stop: &Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, RunError> {
    let (client, shared, stop, ns) = (client.clone(), Arc::clone(shared), Arc::clone(stop), ns.to_string());
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let mut on_change = |ch: Change<W>| {
                let ch = match ch {
                    Change::Reset(items) => Change::Reset(items.into_iter().map(W::into_cached).collect()),
                    Change::Applied(w) => Change::Applied(w.into_cached()),
                    Change::Deleted(w) => Change::Deleted(w.into_cached()),
                };
                pool_changed(&shared, t, ch)
            };
            crate::kube::reflect(&client, r, Some(&ns), &ListOptions::default(), &stop, &mut on_change);
        })
        .map_err(|source| RunError::Thread { name, source })
}

/// Caches a pool change and enqueues the pool unless the change is our own status echo.
fn pool_changed(shared: &Shared, t: PoolType, ch: Change<CachedPool>) {
    let mut c = shared.lock();
    match ch {
        Change::Reset(items) => {
            let fresh: BTreeMap<Key, Arc<CachedPool>> =
                items.into_iter().map(|p| ((t, p.pool.name().to_string()), Arc::new(p))).collect();
            let gone: Vec<Key> =
                c.pools.keys().filter(|k| k.0 == t && !fresh.contains_key(k)).cloned().collect();
            for k in gone {
                forget(&mut c, &k);
            }
            for (k, v) in fresh {
                c.queue.insert(k.clone());
                c.pools.insert(k, v);
            }
            c.synced_pools.insert(t);
        }
        Change::Applied(v) => {
            let k = (t, v.pool.name().to_string());
            let old = c.pools.get(&k);
            let same_gen = old.is_some_and(|o| o.generation() == v.generation());
            let own_echo = c.written.get(&k).is_some_and(|w| *w == v.status_hash);
            let same_status = old.is_some_and(|o| o.status_hash == v.status_hash);
            if !(same_gen && (own_echo || same_status)) {
                log::debug!(
                    "pool {} {:?} changed (generation changed: {}, status: {}): queued",
                    k.0,
                    k.1,
                    !same_gen,
                    if same_status { "same" } else { "changed" }
                );
                c.queue.insert(k.clone());
            }
            c.pools.insert(k, Arc::new(v));
        }
        Change::Deleted(v) => {
            let k = (t, v.pool.name().to_string());
            forget(&mut c, &k);
        }
    }
    shared.wake.notify_all();
}

fn forget(c: &mut Cache, k: &Key) {
    c.pools.remove(k);
    c.queue.remove(k);
    c.written.remove(k);
    c.holds.remove(k);
    c.recheck.remove(k);
    c.last_events.remove(k);
    c.failures.remove(k);
    c.gauges.remove(k);
}

fn spawn_node_reflector(
    client: &Client,
    shared: &Arc<Shared>,
    stop: &Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, RunError> {
    let (client, shared, stop) = (client.clone(), Arc::clone(shared), Arc::clone(stop));
    std::thread::Builder::new()
        .name("reflect-nodes".into())
        .spawn(move || {
            let opts = ListOptions { metadata_only: true, ..ListOptions::default() };
            // typed: only name and labels are decoded, managedFields and the rest are skipped
            let mut on_change = |ch: Change<Node>| nodes_changed(&shared, ch);
            crate::kube::reflect(&client, &NODES, None, &opts, &stop, &mut on_change);
        })
        .map_err(|source| RunError::Thread { name: "reflect-nodes".into(), source })
}

/// Caches names and labels; enqueues the pools a name or label change matters to
/// ([`nodes_matter`]). Heartbeats change neither and enqueue nothing.
fn nodes_changed(shared: &Shared, ch: Change<Node>) {
    let mut c = shared.lock();
    let mut changes = Vec::new();
    let find = |nodes: &[Node], name: &str| nodes.binary_search_by(|n| n.name().cmp(name));
    match ch {
        Change::Reset(mut fresh) => {
            fresh.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            fresh.dedup_by(|a, b| a.metadata.name == b.metadata.name);
            // Before the first sync every pool is queued already (its list queued it and the
            // worker waits for the nodes; becoming leader queues all): no per-node changes.
            if c.synced_nodes {
                for before in c.nodes.iter() {
                    let after = find(&fresh, before.name()).ok().map(|i| &fresh[i]);
                    if after.map(Node::labels) != Some(before.labels()) {
                        changes.push(NodeChange {
                            name: before.metadata.name.clone(),
                            before: Some(before.metadata.labels.clone()),
                            after: after.map(|a| a.metadata.labels.clone()),
                        });
                    }
                }
                for after in &fresh {
                    if find(&c.nodes, after.name()).is_err() {
                        changes.push(NodeChange {
                            name: after.metadata.name.clone(),
                            before: None,
                            after: Some(after.metadata.labels.clone()),
                        });
                    }
                }
            }
            c.nodes = Arc::new(fresh);
            c.synced_nodes = true;
        }
        Change::Applied(n) => {
            let (name, labels) = (n.metadata.name.clone(), n.metadata.labels.clone());
            // copies the list only while a reconcile still holds the previous one
            let nodes = Arc::make_mut(&mut c.nodes);
            let before = match find(nodes, &name) {
                Ok(i) => Some(std::mem::replace(&mut nodes[i], n).metadata.labels),
                Err(i) => {
                    nodes.insert(i, n);
                    None
                }
            };
            if before.as_ref() != Some(&labels) {
                changes.push(NodeChange { name, before, after: Some(labels) });
            }
        }
        Change::Deleted(n) => {
            if let Ok(i) = find(&c.nodes, n.name()) {
                let before = Arc::make_mut(&mut c.nodes).remove(i);
                changes.push(NodeChange {
                    name: before.metadata.name,
                    before: Some(before.metadata.labels),
                    after: None,
                });
            }
        }
    }
    if changes.is_empty() {
        log::trace!("node change without name or label change ignored");
        return;
    }
    let keys: Vec<Key> =
        c.pools.iter().filter(|(_, p)| nodes_matter(&p.pool, &changes)).map(|(k, _)| k.clone()).collect();
    if !keys.is_empty() {
        log::debug!(
            "{} nodes added, deleted or relabelled (first: {:?}): {} pools queued",
            changes.len(),
            changes.iter().take(MAX_LOGGED_NAMES).map(|c| c.name.as_str()).collect::<Vec<_>>(),
            keys.len()
        );
        c.queue.extend(keys);
        shared.wake.notify_all();
    }
}

/// Pops pool keys and reconciles them while leader, until `stop`.
fn worker(client: &Client, ns: &str, shared: &Shared, stop: &AtomicBool, grace: Duration) {
    while !stop.load(Ordering::Relaxed) {
        let next = {
            let mut c = shared.lock();
            let now = SystemTime::now();
            let due: Vec<Key> =
                c.recheck.iter().filter(|(_, at)| **at <= now).map(|(k, _)| k.clone()).collect();
            for k in due {
                c.recheck.remove(&k);
                c.queue.insert(k);
            }
            let leader = shared.is_leader.load(Ordering::SeqCst);
            let ready = c.pools_synced() && c.synced_nodes;
            if leader
                && ready
                && let Some(k) = c.queue.pop_first()
            {
                Some(k)
            } else {
                if !leader {
                    // becoming leader enqueues every pool again
                    c.queue.clear();
                }
                let wait = c
                    .recheck
                    .values()
                    .min()
                    .and_then(|at| at.duration_since(now).ok())
                    .map_or(WORKER_POLL, |d| d.min(WORKER_POLL));
                let _ = shared.wake.wait_timeout(c, wait);
                None
            }
        };
        if let Some(k) = next {
            shared.reconciles.fetch_add(1, Ordering::Relaxed);
            match reconcile_pool(client, ns, shared, &k, grace) {
                Ok(()) => {
                    shared.lock().failures.remove(&k);
                }
                Err(e) => {
                    shared.reconcile_errors.fetch_add(1, Ordering::Relaxed);
                    let mut c = shared.lock();
                    let n = c.failures.entry(k.clone()).or_insert(0);
                    *n = n.saturating_add(1);
                    let delay = retry_delay(*n);
                    log::warn!("reconcile {} {:?}: {e}; retry {n} in {delay:?}", k.0, k.1);
                    let at = SystemTime::now() + delay;
                    c.recheck.insert(k, at);
                }
            }
        }
    }
}

/// [`ERROR_REQUEUE`] doubled per earlier consecutive failure, capped at [`MAX_ERROR_REQUEUE`].
fn retry_delay(failures: u32) -> Duration {
    let factor = 1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX);
    ERROR_REQUEUE.saturating_mul(factor).min(MAX_ERROR_REQUEUE)
}

fn resource(t: PoolType) -> &'static Resource {
    t.info().resource
}

/// Decides one pool from the cache and writes the outcome; re-reads and re-decides on 409.
fn reconcile_pool(
    client: &Client,
    ns: &str,
    shared: &Shared,
    k: &Key,
    grace: Duration,
) -> Result<(), KubeError> {
    let (mut raw, nodes, holds) = {
        let c = shared.lock();
        let Some(raw) = c.pools.get(k).cloned() else { return Ok(()) };
        (raw, Arc::clone(&c.nodes), c.holds.get(k).cloned().unwrap_or_default())
    };
    for attempt in 1..=MAX_STATUS_ATTEMPTS {
        let outcome = decide(&raw, &nodes, &holds, grace);
        if !outcome.changed {
            record(shared, k, &raw, &outcome, None);
            emit_events(client, ns, shared, k, &raw, &outcome.events);
            return Ok(());
        }
        if !shared.is_leader.load(Ordering::SeqCst) {
            return Ok(()); // lost the lease meanwhile: the new leader decides
        }
        let rv = raw.resource_version();
        let written = crate::with_pool_kind!(AnyAllocations: &outcome.allocations, a, K => {
            write_status::<K>(client, ns, shared, k, rv, a, &outcome.conditions)
        });
        match written {
            Ok(stored) => {
                log::info!(
                    "pool status written type={} pool={} nodes={} conditions={}",
                    k.0,
                    k.1,
                    outcome.allocations.len(),
                    outcome
                        .conditions
                        .iter()
                        .map(|c| format!("{}={}", c.type_, c.status))
                        .collect::<Vec<_>>()
                        .join(",")
                );
                record(shared, k, &raw, &outcome, Some(stored));
                emit_events(client, ns, shared, k, &raw, &outcome.events);
                return Ok(());
            }
            Err(e) if e.is_conflict() && attempt < MAX_STATUS_ATTEMPTS => {
                log::debug!(
                    "status of {} {:?} changed meanwhile (attempt {attempt}); reading it again",
                    k.0,
                    k.1
                );
                raw = Arc::new(crate::with_kind!(k.0, K => {
                    client.get::<WirePool<K>>(resource(k.0), Some(ns), &k.1)?.into_cached()
                }));
            }
            Err(e) if e.is_not_found() => return Ok(()), // deleted meanwhile
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes `status` (allocations and conditions, replacing both) as a merge patch checked
/// against `resource_version`; returns the pool as stored. The answer is decoded straight into
/// the typed pool: no `Value` tree of a 5,000-entry status.
fn write_status<K: PoolKind>(
    client: &Client,
    ns: &str,
    shared: &Shared,
    k: &Key,
    resource_version: &str,
    allocations: &[K::Allocation],
    conditions: &[Condition],
) -> Result<CachedPool, KubeError> {
    let status = StatusRef::new(allocations, conditions);
    // recorded before the write: the watch may deliver the echo before the answer
    shared.lock().written.insert(k.clone(), status_hash(Some(StatusRef::new(allocations, conditions))));
    let patch = StatusPatch { metadata: PatchMeta { resource_version }, status };
    let stored: WirePool<K> = client.patch_status_merge(resource(k.0), Some(ns), &k.1, &patch)?;
    Ok(stored.into_cached())
}

fn decide(
    raw: &CachedPool,
    nodes: &[Node],
    holds: &BTreeMap<String, SystemTime>,
    grace: Duration,
) -> Outcome {
    reconcile(&Input {
        pool: &raw.pool,
        conditions: &raw.conditions,
        generation: raw.generation(),
        nodes,
        holds,
        now: SystemTime::now(),
        grace,
    })
}

/// Stores what the next reconcile and the metrics need.
fn record(shared: &Shared, k: &Key, raw: &CachedPool, o: &Outcome, stored: Option<CachedPool>) {
    let mut c = shared.lock();
    if let Some(stored) = stored {
        c.written.insert(k.clone(), stored.status_hash);
        // the write's answer is at least as new as the cache; the watch echo is then ignored
        if c.pools.contains_key(k) {
            c.pools.insert(k.clone(), Arc::new(stored));
        }
    } else if c.pools.get(k).is_some_and(|p| p.resource_version() == raw.resource_version()) {
        c.written.insert(k.clone(), raw.status_hash);
    }
    c.holds.insert(k.clone(), o.holds.clone());
    match o.recheck_at {
        Some(at) => {
            c.recheck.insert(k.clone(), at);
        }
        None => {
            c.recheck.remove(k);
        }
    }
    let allocated = o.allocations.len() as u64;
    c.gauges.insert(
        k.clone(),
        PoolGauges {
            allocated,
            free: o.capacity.map(|cap| cap.saturating_sub(allocated)),
            size: o.size,
            held: o.holds.len() as u64,
        },
    );
}

/// POSTs the events that were not emitted by the pool's previous reconcile.
fn emit_events(client: &Client, ns: &str, shared: &Shared, k: &Key, raw: &CachedPool, events: &[Event]) {
    let fresh: Vec<Event> = {
        let mut c = shared.lock();
        let before = c.last_events.insert(k.clone(), events.to_vec()).unwrap_or_default();
        events.iter().filter(|e| !before.contains(e)).cloned().collect()
    };
    let kind = k.0.kind();
    for e in fresh {
        let now = super::reconcile::rfc3339(SystemTime::now());
        let ev = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": format!("{}.", k.1), "namespace": ns},
            "involvedObject": {
                "apiVersion": API_VERSION, "kind": kind, "name": k.1, "namespace": ns,
                "uid": raw.meta().rest.get("uid"), "resourceVersion": raw.meta().rest.get("resourceVersion"),
            },
            "reason": e.reason, "message": e.message, "type": "Warning",
            "source": {"component": COMPONENT},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "reportingComponent": COMPONENT, "reportingInstance": leader::identity(),
        });
        log::warn!("pool {} {:?}: {}: {}", k.0, k.1, e.reason, e.message);
        if let Err(err) = client.create::<Value>(&EVENTS, Some(ns), &ev) {
            log::warn!("cannot emit event {} for {} {:?}: {err}", e.reason, k.0, k.1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::{CIDRPOOLS, IPPOOLS};

    #[test]
    fn every_kind_has_its_resource_and_a_reflector_thread_name() {
        assert_eq!((resource(PoolType::IpPool), resource(PoolType::CidrPool)), (&IPPOOLS, &CIDRPOOLS));
        let names: Vec<String> =
            PoolType::ALL.iter().map(|t| format!("reflect-{}", t.info().resource.plural)).collect();
        assert_eq!(names, ["reflect-ippools", "reflect-cidrpools"], "thread names as before");
    }

    #[test]
    fn retry_delay_doubles_up_to_the_cap() {
        assert_eq!(retry_delay(1), ERROR_REQUEUE);
        assert_eq!(retry_delay(2), ERROR_REQUEUE * 2);
        assert_eq!(retry_delay(4), ERROR_REQUEUE * 8);
        assert_eq!(retry_delay(40), MAX_ERROR_REQUEUE);
        assert_eq!(retry_delay(u32::MAX), MAX_ERROR_REQUEUE);
    }

    #[test]
    fn metrics_names_and_labels() {
        let shared = Arc::new(Shared {
            cache: Mutex::new(Cache::default()),
            wake: Condvar::new(),
            is_leader: Arc::new(AtomicBool::new(true)),
            reconciles: AtomicU64::new(7),
            reconcile_errors: AtomicU64::new(1),
        });
        shared.lock().gauges.insert(
            (PoolType::CidrPool, "c".into()),
            PoolGauges { allocated: 2, free: Some(254), size: None, held: 0 },
        );
        let text = Health(Arc::clone(&shared), None).metrics();
        for line in [
            "nv_ipam_reconcile_total 7",
            "nv_ipam_reconcile_errors_total 1",
            "nv_ipam_leader 1",
            "nv_ipam_pool_nodes_allocated{pool=\"c\",type=\"cidrpool\"} 2",
            "nv_ipam_pool_free_blocks{pool=\"c\",type=\"cidrpool\"} 254",
            "nv_ipam_pool_nodes_held{pool=\"c\",type=\"cidrpool\"} 0",
            "# TYPE nv_ipam_pool_size gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
        }
        assert!(!text.contains("nv_ipam_pool_size{"), "an invalid pool has no size sample");
        assert!(!Health(shared, None).ready(), "not ready before the reflectors listed");
    }
}
