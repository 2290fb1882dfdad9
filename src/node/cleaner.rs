//! The stale cleaner's shell: a pod reflector scoped to this node (fieldSelector
//! `spec.nodeName=<node>`, all namespaces: upstream PR #215 and PR #37) and a timer thread that
//! runs [`stale::pass`] every `--stale-ip-check-interval`, confirming cache misses with a GET.
//!
//! Owns: the pod cache and the two threads. Must not: decide staleness (`stale`) or hold the
//! store lock (the pass copies out what it needs).

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::kube::{self, Change, Client, KubeError, ListOptions};

use super::service::Service;
use super::stale::{self, PodInfo, Tracker};

/// How often the timer thread looks at the stop flag while sleeping.
const STOP_POLL: Duration = Duration::from_millis(100);

/// The fields of a Pod the cleaner reads.
#[derive(Debug, Clone, Default, Deserialize)]
struct Pod {
    #[serde(default)]
    metadata: PodMeta,
    #[serde(default)]
    status: PodStatus,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct PodMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    uid: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct PodStatus {
    #[serde(default)]
    phase: String,
}

impl Pod {
    fn info(&self) -> PodInfo {
        PodInfo { uid: self.metadata.uid.clone(), terminal: stale::is_terminal_phase(&self.status.phase) }
    }

    fn key(&self) -> (String, String) {
        (self.metadata.namespace.clone(), self.metadata.name.clone())
    }
}

#[derive(Default)]
struct PodCache {
    pods: Mutex<HashMap<(String, String), PodInfo>>,
    listed: AtomicBool,
}

impl PodCache {
    fn apply(&self, c: Change<Pod>) {
        let mut pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        match c {
            Change::Reset(items) => {
                *pods = items.iter().map(|p| (p.key(), p.info())).collect();
                self.listed.store(true, Ordering::SeqCst);
            }
            Change::Applied(p) => {
                pods.insert(p.key(), p.info());
            }
            Change::Deleted(p) => {
                pods.remove(&p.key());
            }
        }
    }

    fn get(&self, ns: &str, name: &str) -> Option<PodInfo> {
        self.pods.lock().unwrap_or_else(|p| p.into_inner()).get(&(ns.to_string(), name.to_string())).cloned()
    }
}

/// Sleeps `d` unless `stop` is set first; returns false when stopping.
fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        thread::sleep(STOP_POLL.min(end.saturating_duration_since(Instant::now())));
    }
    !stop.load(Ordering::Relaxed)
}

/// Starts the pod reflector and the cleaner thread; both end when `stop` is set.
pub fn start(
    client: &Client,
    service: Arc<Service>,
    interval: Duration,
    count: u32,
    stop: Arc<AtomicBool>,
) -> io::Result<Vec<JoinHandle<()>>> {
    let cache = Arc::new(PodCache::default());
    let node = service.node().to_string();
    let mut threads = Vec::new();
    {
        let (client, cache, stop) = (client.clone(), cache.clone(), stop.clone());
        let opts = ListOptions {
            field_selector: Some(kube::field_equals("spec.nodeName", &node)),
            ..ListOptions::default()
        };
        threads.push(thread::Builder::new().name("reflect-pods".into()).spawn(move || {
            kube::reflect(&client, &kube::PODS, None, &opts, &stop, &mut |c| cache.apply(c))
        })?);
    }
    let client = client.clone();
    threads.push(thread::Builder::new().name("stale-cleaner".into()).spawn(move || {
        let mut tracker = Tracker::new(count);
        // The first pass waits for the first pod list: judging against an empty cache would
        // only cost one GET per reservation, but it is pointless work at every start.
        while !cache.listed.load(Ordering::SeqCst) {
            if !sleep_unless_stopped(STOP_POLL, &stop) {
                return;
            }
        }
        while sleep_unless_stopped(interval, &stop) {
            let cached = |ns: &str, name: &str| cache.get(ns, name);
            let mut confirm = |ns: &str, name: &str| -> Result<Option<PodInfo>, KubeError> {
                match client.get::<Pod>(&kube::PODS, Some(ns), name) {
                    Ok(p) => Ok(Some(p.info())),
                    Err(e) if e.is_not_found() => Ok(None),
                    Err(e) => Err(e),
                }
            };
            match stale::pass(&service, &mut tracker, &cached, &mut confirm) {
                Ok(0) => {}
                Ok(n) => log::info!("stale cleanup released {n} reservations"),
                Err(e) => log::warn!("stale cleanup could not release: {e}; trying again next pass"),
            }
        }
    })?);
    Ok(threads)
}
