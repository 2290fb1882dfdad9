//! `ipam-node`: the per-node daemon. It installs the CNI plugin, loads the store and the pools,
//! then serves the plugin over a unix socket until SIGTERM/SIGINT.
//!
//! Start order (never serve before state is loaded): store (lock, load) → pools → host install
//! → socket → serve. Threads: the accept loop (main), one per connection, the pools-file
//! poller, the signal waiter.

pub mod config;
pub mod install;
pub mod metrics;
pub mod pools;
pub mod pools_cluster;
pub mod pools_file;
pub mod server;
pub mod service;
pub mod stale;

use std::fmt;
use std::sync::Arc;
use std::thread;

use crate::store::{Store, StoreError};

pub use config::{Command, FlagError, NodeConfig};

/// Why the daemon stopped before serving.
#[derive(Debug)]
pub enum NodeError {
    Store(StoreError),
    Pools(pools_file::PoolsFileError),
    NoPoolSource,
    Install(install::InstallError),
    Server(server::ServerError),
    Signals(std::io::Error),
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::Store(e) => e.fmt(f),
            NodeError::Pools(e) => e.fmt(f),
            NodeError::NoPoolSource => write!(
                f,
                "no pool source: pass --pools-file PATH (standalone mode); cluster mode is not part of this build yet"
            ),
            NodeError::Install(e) => e.fmt(f),
            NodeError::Server(e) => e.fmt(f),
            NodeError::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
        }
    }
}

impl std::error::Error for NodeError {}

/// Runs the daemon until a stop signal; returns after in-flight requests finished.
pub fn run(cfg: &NodeConfig) -> Result<(), NodeError> {
    let store = Store::open(&cfg.store_file).map_err(NodeError::Store)?;
    log::info!("store {} loaded: {} reservations", cfg.store_file.display(), store.state().len());
    let pools_path = cfg.pools_file.clone().ok_or(NodeError::NoPoolSource)?;
    let (pools, skipped) = pools_file::load(&pools_path, &cfg.node_name).map_err(NodeError::Pools)?;
    pools_file::log_loaded(&pools, &skipped);

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

    let service = Arc::new(
        service::Service::new(cfg.node_name.clone(), store, pools).with_cooldown(cfg.released_ip_cooldown),
    );
    let listener = server::bind(&cfg.bind_socket).map_err(NodeError::Server)?;
    let stop = server::stop_handle(&cfg.bind_socket);

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
    {
        let (service, stop, node, interval) =
            (service.clone(), stop.clone(), cfg.node_name.clone(), cfg.pools_file_poll);
        thread::Builder::new()
            .name("pools-file".into())
            .spawn(move || pools_file::watch(pools_path, node, interval, service, stop))
            .map_err(NodeError::Signals)?;
    }
    log::info!("serving on {} for node {}", cfg.bind_socket.display(), cfg.node_name);
    server::serve(listener, &cfg.bind_socket, service, &stop);
    log::info!("stopped");
    Ok(())
}
