//! `ipam-node`'s metrics: request latency histograms and the stale-release counter, kept in
//! atomics, plus the rendering of those and of per-pool usage on each scrape.
//!
//! Names: `nv_ipam_node_pool_allocated{pool,pool_type}`, `nv_ipam_node_pool_free{pool,pool_type}`,
//! `nv_ipam_node_request_duration_seconds{op}` (op = add, del, check, gc, status),
//! `nv_ipam_node_stale_released_total`.
//!
//! Owns: the counters and their text. Must not: serve HTTP (`health`) or read the store
//! except through [`Service::usage`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::metrics::{HistogramSnapshot, Kind, MetricsText};

use super::service::Service;

/// Histogram bucket bounds in seconds: a durable ADD is ~0.1–5 ms on local disk; the tail up to
/// the plugin's default 5 s call timeout.
pub const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// The request kinds that get a histogram, in render order.
pub const OPS: [&str; 5] = ["add", "del", "check", "gc", "status"];

#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (b, bound) in self.buckets.iter().zip(BUCKETS) {
            if secs <= bound {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: BUCKETS.to_vec(),
            buckets: self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect(),
            count: self.count.load(Ordering::Relaxed),
            sum: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// The daemon's counters.
#[derive(Debug, Default)]
pub struct NodeMetrics {
    requests: [Histogram; OPS.len()],
    stale_released: AtomicU64,
}

impl NodeMetrics {
    /// Records one request of kind `op` (one of [`OPS`]; others are ignored).
    pub fn observe(&self, op: &str, d: Duration) {
        if let Some(i) = OPS.iter().position(|o| *o == op) {
            self.requests[i].observe(d);
        }
    }

    pub fn add_stale_released(&self, n: u64) {
        self.stale_released.fetch_add(n, Ordering::Relaxed);
    }

    pub fn stale_released(&self) -> u64 {
        self.stale_released.load(Ordering::Relaxed)
    }
}

/// The Prometheus text of the service's metrics.
pub fn render(service: &Service) -> String {
    let m = service.metrics();
    let mut t = MetricsText::new();
    let usage = service.usage();
    t.family("nv_ipam_node_pool_allocated", Kind::Gauge, "Addresses held by reservations, per pool.");
    for (key, allocated, _) in &usage {
        t.sample(
            "nv_ipam_node_pool_allocated",
            &[("pool", &key.name), ("pool_type", key.pool_type.as_str())],
            *allocated as f64,
        );
    }
    t.family("nv_ipam_node_pool_free", Kind::Gauge, "Addresses the node can still hand out, per pool.");
    for (key, _, free) in &usage {
        t.sample(
            "nv_ipam_node_pool_free",
            &[("pool", &key.name), ("pool_type", key.pool_type.as_str())],
            *free as f64,
        );
    }
    t.family(
        "nv_ipam_node_request_duration_seconds",
        Kind::Histogram,
        "Time to answer a plugin request, durable write included.",
    );
    for (op, h) in OPS.iter().zip(&m.requests) {
        t.histogram("nv_ipam_node_request_duration_seconds", &[("op", op)], &h.snapshot());
    }
    t.counter(
        "nv_ipam_node_stale_released_total",
        "Reservations released by the stale cleanup because their pod is gone.",
        m.stale_released(),
    );
    t.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = NodeMetrics::default();
        m.observe("add", Duration::from_micros(700));
        m.observe("add", Duration::from_millis(30));
        m.observe("nope", Duration::from_millis(30));
        let s = m.requests[0].snapshot();
        assert_eq!(s.count, 2);
        assert_eq!(s.buckets[0], 0);
        assert_eq!(s.buckets[1], 1, "<= 1ms");
        assert_eq!(s.buckets[BUCKETS.len() - 1], 2);
        assert!((s.sum - 0.0307).abs() < 1e-9, "{}", s.sum);
    }
}
