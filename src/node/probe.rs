//! `ipam-node`'s answers to `/healthz`, `/readyz` and `/metrics` (served by `health`).
//!
//! Ready means "an ADD now would be answered from real state": the store is open (the daemon
//! does not start otherwise), the pools are known (pools file read, or the pools cache or a
//! complete list from the API server) and the socket serves. Healthy means the process's
//! serving loop is alive: false only once it stopped.
//!
//! Other paths: `/v1/allocations` goes to the allocations endpoint when there is one (cluster
//! mode, see `allocations`); anything else is 404.
//!
//! Owns: the readiness flags. Must not: serve HTTP.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use std::time::Instant;

use crate::health::{Answer, Probe};
use crate::http;

use super::allocations::Endpoint;
use super::pools_cluster::ClusterPools;
use super::service::Service;

pub struct NodeProbe {
    service: Arc<Service>,
    /// `None` in standalone mode (the pools file was read before the probe existed).
    cluster: Option<Arc<ClusterPools>>,
    serving: AtomicBool,
    stopped: AtomicBool,
    /// The allocations endpoint (cluster mode only).
    allocations: Option<Arc<Endpoint>>,
}

impl NodeProbe {
    pub fn new(service: Arc<Service>, cluster: Option<Arc<ClusterPools>>) -> NodeProbe {
        NodeProbe {
            service,
            cluster,
            serving: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            allocations: None,
        }
    }

    /// Serves `/v1/allocations` from `endpoint`.
    pub fn with_allocations(mut self, endpoint: Arc<Endpoint>) -> NodeProbe {
        self.allocations = Some(endpoint);
        self
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

    fn route(&self, req: &http::Request, deadline: Instant) -> Option<Answer> {
        let e = self.allocations.as_ref().filter(|_| req.path == crate::inventory::PATH)?;
        Some(e.answer(req, deadline))
    }
}
