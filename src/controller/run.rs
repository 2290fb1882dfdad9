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
//! Rooms: this file wires the threads ([`run`], the reflector threads, the webhook's view of
//! the pools); `cache` holds the cache and queue and what a change enqueues; `wire` the pool's
//! wire shape and status hash; `probes` health, readiness and metrics; `worker` the reconcile
//! loop and every write.
//!
//! Owns: [`run`], [`RunError`], starting and stopping the threads. Must not: decide
//! allocations.

mod cache;
mod node_sets;
mod probes;
mod wire;
mod worker;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::admission::PoolRange;
use super::args::{ClusterArgs, DEFAULT_HEALTH_PROBE_BIND_ADDRESS, DEFAULT_METRICS_BIND_ADDRESS};
use super::leader;
use super::webhook::{self, CertReloader};
use crate::api::{Node, PoolType};
use crate::health::{self, HealthError, Probe};
use crate::kube::{Change, Client, ClusterConfig, KubeError, ListOptions, NODEBLOCKSETS, NODES, Resource};
use cache::{Cache, Shared, nodes_changed, pool_changed};
use probes::Health;
use wire::{PoolWire, WirePool};
use worker::{resource, worker};

/// Pools decided at once: a join that concerns ten pools has all ten decided (a few ms each)
/// and its node's NodeBlockSet written without waiting for the status writes before them.
pub const MAX_CONCURRENT_RECONCILES: usize = 10;
/// Pool status writes in flight. Each status write of a big pool is one round trip that keeps
/// the API server busy for a few hundred milliseconds at 5,000 nodes
/// (docs/benchmarks-scale.md); a few in flight overlap the round trips, more only add memory
/// (each holds a status body and its answer) while the API server's cores are already busy.
pub const MAX_CONCURRENT_STATUS_WRITES: usize = 3;
/// NodeBlockSet writes in flight. Each is one small object (a few hundred bytes per pool); at
/// a few ms per round trip, 8 at once keep the API server busy without queueing more on it
/// than it has cores to serve.
pub const MAX_CONCURRENT_NODE_SET_WRITES: usize = 8;
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

/// Runs cluster mode until SIGTERM or SIGINT.
pub fn run(args: &ClusterArgs) -> Result<(), RunError> {
    crate::logging::init_config(&args.logging.config, crate::logging::LogTarget::Stderr)
        .map_err(RunError::Logging)?;
    for w in &args.logging.warnings {
        log::warn!("{w}");
    }
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
        node_set_writes: AtomicU64::new(0),
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
    threads.push(spawn_node_sets(&client, &ns, &shared, &stop)?);
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

/// The NodeBlockSet reflector and the threads that write them.
fn spawn_node_sets(
    client: &Client,
    ns: &str,
    shared: &Arc<Shared>,
    stop: &Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, RunError> {
    let (c2, s2, stop2, ns2) = (client.clone(), Arc::clone(shared), Arc::clone(stop), ns.to_string());
    let name = "reflect-nodeblocksets";
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut on_change = |ch| node_sets::sets_changed(&s2, ch);
            crate::kube::reflect(
                &c2,
                &NODEBLOCKSETS,
                Some(&ns2),
                &ListOptions::default(),
                &stop2,
                &mut on_change,
            );
        })
        .map_err(|source| RunError::Thread { name: name.into(), source })?;
    let (client, shared, stop, ns) = (client.clone(), Arc::clone(shared), Arc::clone(stop), ns.to_string());
    std::thread::Builder::new()
        .name("node-sets-0".into())
        .spawn(move || node_sets::writer(&client, &ns, &shared, &stop))
        .map_err(|source| RunError::Thread { name: "node-sets-0".into(), source })
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
