//! `ipam-node`: the per-node daemon. It installs the CNI plugin, loads the store and the pools,
//! then serves the plugin over a unix socket until SIGTERM/SIGINT.
//!
//! Two modes: standalone (`--pools-file`) and cluster (no pools file: the node's own
//! NodeBlockSet `<--ippools-namespace>/<--node-name>`, written by ipam-controller, from the API
//! server, see `pools_cluster`, plus the stale cleaner). In cluster mode the node reads no pool
//! object and nothing of other nodes: what it receives and holds does not grow with the cluster.
//!
//! Start order (never serve before state is loaded): store (lock, load) → pools
//! (standalone: the file; cluster: the pools cache if there is one, else wait — without a
//! deadline, logging every [`POOLS_WAIT_LOG_EVERY`] — for the node's NodeBlockSet, while its
//! reflector retries in the background) → host install → socket → serve. The health server
//! starts right after the store, so `/readyz` answers false while pools are unknown.
//! Threads: main (start, then waits for the stop and the in-flight requests), the accept loop,
//! one per connection, the pools-file poller or the NodeBlockSet reflector, the pod reflector
//! and the stale cleaner, the health server, the signal waiter. A stop never depends on the socket
//! file: main returns after the grace and the process exit ends the accept thread.

pub mod allocations;
pub mod cleaner;
pub mod config;
pub mod install;
pub mod metrics;
pub mod pools;
pub mod pools_cluster;
pub mod pools_file;
pub mod probe;
pub mod server;
pub mod service;
pub mod stale;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use crate::health;
use crate::kube::{self, KubeError};
use crate::store::{Store, StoreError};

/// While waiting for the first pool list, say so this often.
pub const POOLS_WAIT_LOG_EVERY: Duration = Duration::from_secs(30);
/// How often the pools wait looks at its condition and the stop flag.
const POOLS_WAIT_POLL: Duration = Duration::from_millis(50);

pub use config::{Command, FlagError, NodeConfig};

/// Why the daemon stopped before serving.
#[derive(Debug)]
pub enum NodeError {
    Store(StoreError),
    Pools(pools_file::PoolsFileError),
    Kube(KubeError),
    Health(health::HealthError),
    Install(install::InstallError),
    Server(server::ServerError),
    Threads(std::io::Error),
    Signals(std::io::Error),
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::Store(e) => e.fmt(f),
            NodeError::Pools(e) => e.fmt(f),
            NodeError::Kube(e) => write!(
                f,
                "cluster mode: {e}; pass --kubeconfig, set KUBECONFIG, run in a pod, or use --pools-file for standalone mode"
            ),
            NodeError::Health(e) => write!(f, "--health-probe-bind-address/--metrics-bind-address: {e}"),
            NodeError::Install(e) => e.fmt(f),
            NodeError::Server(e) => e.fmt(f),
            NodeError::Threads(e) => write!(f, "cannot start a thread: {e}"),
            NodeError::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
        }
    }
}

impl std::error::Error for NodeError {}

/// Runs the daemon until a stop signal; returns after in-flight requests finished.
pub fn run(cfg: &NodeConfig) -> Result<(), NodeError> {
    let store = Store::open(&cfg.store_file).map_err(NodeError::Store)?;
    log::info!("store {} loaded: {} reservations", cfg.store_file.display(), store.state().len());
    // before anything is installed: a daemon on another store may serve this socket
    server::check_free(&cfg.bind_socket).map_err(NodeError::Server)?;
    let stop = server::stop_handle();
    let halt = stop.flag();

    let mut client = None;
    let mut cluster = None;
    let service = match &cfg.pools_file {
        Some(path) => {
            let (pools, skipped) = pools_file::load(path, &cfg.node_name).map_err(NodeError::Pools)?;
            pools_file::log_loaded(&pools, &skipped);
            Arc::new(
                service::Service::new(cfg.node_name.clone(), store, pools)
                    .with_cooldown(cfg.released_ip_cooldown),
            )
        }
        None => {
            let kcfg = kube::ClusterConfig::load(cfg.kubeconfig.as_deref()).map_err(NodeError::Kube)?;
            let c = kube::Client::new(kcfg, concat!("ipam-node/", env!("CARGO_PKG_VERSION")))
                .map_err(NodeError::Kube)?;
            log::info!(
                "cluster mode: API server {}, pools from NodeBlockSet {}/{}",
                c.server(),
                cfg.ippools_namespace,
                cfg.node_name
            );
            let svc = Arc::new(
                service::Service::new(cfg.node_name.clone(), store, pools::PoolSet::default())
                    .with_cooldown(cfg.released_ip_cooldown),
            );
            let cp = pools_cluster::ClusterPools::new(
                cfg.node_name.clone(),
                cfg.ippools_namespace.clone(),
                pools_cluster::cache_path(&cfg.store_file),
                svc.clone(),
            );
            cp.start(&c, halt.clone()).map_err(NodeError::Threads)?;
            client = Some(c);
            cluster = Some(cp);
            svc
        }
    };

    let mut probe = probe::NodeProbe::new(service.clone(), cluster.clone());
    if let Some(c) = &client {
        // GET /v1/allocations for callers the API server vouches for (cluster mode only).
        let reviewer = allocations::review::KubeReviewer {
            client: c.clone(),
            namespace: cfg.ippools_namespace.clone(),
            node: cfg.node_name.clone(),
        };
        let endpoint =
            allocations::Endpoint::new(service.clone(), Box::new(reviewer), cfg.ippools_namespace.clone());
        probe = probe.with_allocations(Arc::new(endpoint));
    }
    let probe = Arc::new(probe);
    let mut addrs = vec![cfg.health_probe_bind_address.as_str()];
    if cfg.metrics_bind_address != cfg.health_probe_bind_address {
        addrs.push(cfg.metrics_bind_address.as_str());
    }
    for addr in addrs {
        match health::serve(addr, probe.clone(), halt.clone()) {
            Ok(Some((bound, _))) if client.is_some() => {
                log::info!("/healthz, /readyz, /metrics and {} on http://{bound}", crate::inventory::PATH)
            }
            Ok(Some((bound, _))) => log::info!("/healthz, /readyz and /metrics on http://{bound}"),
            Ok(None) => {}
            // A busy default port (several daemons on one test host) must not stop IPAM; an
            // address the operator chose must work or the daemon refuses to start.
            Err(e) if addr == config::DEFAULT_HEALTH_PROBE_BIND_ADDRESS => {
                log::error!("{e}; health and metrics endpoints are off (choose --health-probe-bind-address)")
            }
            Err(e) => return Err(NodeError::Health(e)),
        }
    }

    let mut signals =
        signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT])
            .map_err(NodeError::Signals)?;
    let on_signal = stop.clone();
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                log::info!("signal {sig}: stopping after in-flight requests");
                on_signal.stop();
            }
        })
        .map_err(NodeError::Signals)?;

    if let Some(cp) = &cluster {
        let started = Instant::now();
        let mut next_log = started + POOLS_WAIT_LOG_EVERY;
        while !cp.known() && !halt.load(Ordering::SeqCst) {
            thread::sleep(POOLS_WAIT_POLL);
            if Instant::now() >= next_log {
                log::warn!(
                    "no pools known after {}s: {}, and there is no pools cache; not serving yet",
                    started.elapsed().as_secs(),
                    cp.waiting_for()
                );
                next_log += POOLS_WAIT_LOG_EVERY;
            }
        }
        if halt.load(Ordering::SeqCst) {
            log::info!("stopped before pools were known");
            if let Some(c) = &client {
                c.shutdown();
            }
            return Ok(());
        }
    }

    if !cfg.cni_skip_binary_copy {
        let dest = install::install_binary(&cfg.cni_nv_ipam_bin_file, &cfg.cni_bin_dir)
            .map_err(NodeError::Install)?;
        log::info!("installed CNI plugin {}", dest.display());
    }
    if !cfg.cni_skip_config_creation {
        let conf = install::PluginConf {
            daemon_socket: cfg.cni_daemon_socket.clone(),
            daemon_call_timeout_seconds: cfg.cni_daemon_call_timeout,
            log_file: cfg.cni_log_file.clone(),
            log_level: cfg.cni_log_level.clone(),
            force_pool_name: cfg.cni_force_pool_name,
        };
        let dest = install::write_conf(&cfg.cni_conf_dir, &conf).map_err(NodeError::Install)?;
        log::info!("wrote CNI plugin config {}", dest.display());
    }

    let bound = server::bind(&cfg.bind_socket).map_err(NodeError::Server)?;
    if let Some(path) = cfg.pools_file.clone() {
        let (service, stop, node, interval) =
            (service.clone(), stop.clone(), cfg.node_name.clone(), cfg.pools_file_poll);
        thread::Builder::new()
            .name("pools-file".into())
            .spawn(move || pools_file::watch(path, node, interval, service, stop))
            .map_err(NodeError::Threads)?;
    }
    if let Some(c) = &client {
        cleaner::start(
            c,
            service.clone(),
            cfg.stale_ip_check_interval,
            cfg.stale_ip_check_count,
            halt.clone(),
        )
        .map_err(NodeError::Threads)?;
    }
    log::info!("serving on {} for node {}", cfg.bind_socket.display(), cfg.node_name);
    probe.set_serving(true);
    let served = server::serve(bound, service, &stop);
    probe.set_serving(false);
    halt.store(true, Ordering::SeqCst);
    if let Some(c) = &client {
        // Unblocks the watches of the reflector threads (process exit follows).
        c.shutdown();
    }
    served.map_err(NodeError::Server)?;
    log::info!("stopped");
    Ok(())
}
