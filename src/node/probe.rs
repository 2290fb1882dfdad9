//! `ipam-node`'s answers to `/healthz`, `/readyz` and `/metrics` (served by `health`).
//!
//! Ready means "an ADD now would be answered from real state": the store is open (the daemon
//! does not start otherwise), the pools are known (pools file read, or the pools cache or a
//! complete list from the API server) and the socket serves. Healthy means the process's
//! serving loop is alive: false only once it stopped.
//!
//! Owns: the readiness flags. Must not: serve HTTP.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::health::Probe;

use super::pools_cluster::ClusterPools;
use super::service::Service;

pub struct NodeProbe {
    service: Arc<Service>,
    /// `None` in standalone mode (the pools file was read before the probe existed).
    cluster: Option<Arc<ClusterPools>>,
    serving: AtomicBool,
    stopped: AtomicBool,
}

impl NodeProbe {
    pub fn new(service: Arc<Service>, cluster: Option<Arc<ClusterPools>>) -> NodeProbe {
        NodeProbe { service, cluster, serving: AtomicBool::new(false), stopped: AtomicBool::new(false) }
    }

    pub fn set_serving(&self, on: bool) {
        self.serving.store(on, Ordering::SeqCst);
        if !on {
            self.stopped.store(true, Ordering::SeqCst);
        }
    }

    fn pools_known(&self) -> bool {
        self.cluster.as_ref().is_none_or(|c| c.known())
    }
}

impl Probe for NodeProbe {
    fn healthy(&self) -> bool {
        !self.stopped.load(Ordering::SeqCst)
    }

    fn ready(&self) -> bool {
        self.serving.load(Ordering::SeqCst) && self.pools_known()
    }

    fn metrics(&self) -> String {
        super::metrics::render(&self.service)
    }
}
