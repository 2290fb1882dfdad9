//! The controller's `/healthz`, `/readyz` and `/metrics` answers: ready once the four caches
//! listed (and, with `--webhook`, a serving certificate loaded); metrics from the counters and
//! per-pool gauges of the cache.
//!
//! Owns: [`Health`], the controller's metric names and labels. Must not: serve HTTP (see
//! `health`) or change the cache.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::cache::{PoolGauges, Shared};
use crate::controller::webhook::{self, CertReloader};
use crate::health::Probe;
use crate::metrics::{Kind, MetricsText};

/// A per-pool gauge family: name, help, and how to read it from [`PoolGauges`].
pub(super) type GaugeFamily = (&'static str, &'static str, fn(&PoolGauges) -> Option<u64>);

/// The probe: `.1` is the webhook's certificate and counters when `--webhook` is set.
pub(super) struct Health(pub(super) Arc<Shared>, pub(super) Option<(Arc<CertReloader>, Arc<webhook::Stats>)>);

impl Probe for Health {
    fn healthy(&self) -> bool {
        true
    }

    /// Caches synced and, with `--webhook`, a serving certificate loaded (the listener is up:
    /// the controller does not start without it).
    fn ready(&self) -> bool {
        let synced = {
            let c = self.0.lock();
            c.pools_synced() && c.synced_nodes && c.node_sets.synced
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
        m.counter(
            "nv_ipam_node_block_set_writes_total",
            "NodeBlockSets created, replaced or deleted.",
            s.node_set_writes.load(Ordering::Relaxed),
        );
        m.gauge(
            "nv_ipam_node_block_sets_pending",
            "Nodes whose NodeBlockSet is not written as desired yet.",
            s.lock().node_sets.pending() as f64,
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
                    m.sample(name, &[("pool", pool), ("pool_type", t.as_str())], v as f64);
                }
            }
        }
        m.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::PoolType;
    use crate::controller::run::cache::Cache;
    use std::sync::atomic::{AtomicBool, AtomicU64};
    use std::sync::{Condvar, Mutex};

    #[test]
    fn metrics_names_and_labels() {
        let shared = Arc::new(Shared {
            cache: Mutex::new(Cache::default()),
            wake: Condvar::new(),
            is_leader: Arc::new(AtomicBool::new(true)),
            reconciles: AtomicU64::new(7),
            reconcile_errors: AtomicU64::new(1),
            node_set_writes: AtomicU64::new(3),
        });
        shared.lock().node_sets.dirty.insert("n1".into());
        shared.lock().gauges.insert(
            (PoolType::CidrPool, "c".into()),
            PoolGauges { allocated: 2, free: Some(254), size: None, held: 0 },
        );
        let text = Health(Arc::clone(&shared), None).metrics();
        for line in [
            "nv_ipam_reconcile_total 7",
            "nv_ipam_reconcile_errors_total 1",
            "nv_ipam_node_block_set_writes_total 3",
            "nv_ipam_node_block_sets_pending 1",
            "nv_ipam_leader 1",
            "nv_ipam_pool_nodes_allocated{pool=\"c\",pool_type=\"cidrpool\"} 2",
            "nv_ipam_pool_free_blocks{pool=\"c\",pool_type=\"cidrpool\"} 254",
            "nv_ipam_pool_nodes_held{pool=\"c\",pool_type=\"cidrpool\"} 0",
            "# TYPE nv_ipam_pool_size gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
        }
        assert!(!text.contains("nv_ipam_pool_size{"), "an invalid pool has no size sample");
        assert!(!Health(shared, None).ready(), "not ready before the reflectors listed");
    }
}
