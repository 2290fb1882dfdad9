//! Stale cleanup: releases reservations whose pod is gone, when no DEL ever came (a crashed
//! runtime, a node that rebooted, a sandbox deleted behind the kubelet's back).
//!
//! Decision (pure, [`Tracker`]): per pass, every reservation with a pod name and namespace is
//! judged against the pod cache (pods with `spec.nodeName` = this node, all namespaces):
//! - the pod is cached with the same UID (or the reservation has no UID) and is not terminal →
//!   live: its counter is forgotten;
//! - otherwise the cache is never trusted alone (upstream PR #37: a narrow cache freed live
//!   pods' addresses): the shell confirms with a direct GET. NotFound, another UID (the pod was
//!   re-created under the same name, e.g. a StatefulSet) or a terminal phase → stale: counter + 1;
//!   any other API error → unknown: the counter stays as it is for this pass;
//! - a key whose counter reaches `--stale-ip-check-count-before-release` is released (one commit).
//!
//! Terminal phases (`Succeeded`, `Failed`) count as stale (the reference's such pods kept their
//! addresses forever): their containers never run again, and the kubelet's own DEL normally
//! came first anyway. Reservations without pod metadata (podman, nerdctl, GC'd runtimes) are
//! never judged here; DEL or CNI GC releases them. Counters live in memory: after a restart a
//! stale entry needs the full count again, which only delays a release, never hastens one.
//!
//! Owns: the counters and the decision, and one pass over the service ([`pass`]). Must not:
//! hold the store lock while asking the API server (a slow answer would stall every ADD): the
//! pass copies the candidates out first, and the release re-checks the store under the lock: a
//! reservation DEL'd meanwhile is a no-op, and one re-made under the same key is a different
//! reservation and stays.

use std::collections::{HashMap, HashSet};

use crate::store::{AttachmentKey, Reservation};

use super::service::{Service, ServiceError};

/// What the pod cache or the API server says about a pod name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub uid: String,
    /// `status.phase` is `Succeeded` or `Failed`.
    pub terminal: bool,
}

/// True for the phases after which a pod's containers never run again.
pub fn is_terminal_phase(phase: &str) -> bool {
    matches!(phase, "Succeeded" | "Failed")
}

/// One reservation's judgement in a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// The pod holding the address still runs: forget the counter.
    Live,
    /// Confirmed by the API server: the pod is gone, re-created or terminal.
    Stale,
    /// The API server could not say (an error other than NotFound): counter unchanged.
    Unknown,
}

/// Judges a reservation's pod as the cache or the API server reports it (`None` = not there).
pub fn judge(res: &Reservation, pod: Option<&PodInfo>) -> Observation {
    match pod {
        None => Observation::Stale,
        Some(p) if p.terminal => Observation::Stale,
        Some(p) => match res.pod_uid.as_deref() {
            Some(uid) if !uid.is_empty() && uid != p.uid => Observation::Stale,
            _ => Observation::Live,
        },
    }
}

/// `(namespace, name)` of the reservation's pod, or `None` when the runtime did not send both.
pub fn pod_of(res: &Reservation) -> Option<(&str, &str)> {
    match (res.pod_namespace.as_deref(), res.pod_name.as_deref()) {
        (Some(ns), Some(name)) if !ns.is_empty() && !name.is_empty() => Some((ns, name)),
        _ => None,
    }
}

/// Consecutive stale observations per reservation.
#[derive(Debug)]
pub struct Tracker {
    threshold: u32,
    counters: HashMap<AttachmentKey, u32>,
}

impl Tracker {
    /// `threshold` = `--stale-ip-check-count-before-release`; 0 is treated as 1.
    pub fn new(threshold: u32) -> Tracker {
        Tracker { threshold: threshold.max(1), counters: HashMap::new() }
    }

    /// Records one pass: `seen` is every reservation with pod metadata in the store now, with
    /// its observation. Returns the keys to release. Keys not seen are forgotten.
    pub fn record(&mut self, seen: &[(AttachmentKey, Observation)]) -> HashSet<AttachmentKey> {
        let present: HashSet<&AttachmentKey> = seen.iter().map(|(k, _)| k).collect();
        self.counters.retain(|k, _| present.contains(k));
        let mut release = HashSet::new();
        for (key, obs) in seen {
            match obs {
                Observation::Live => {
                    self.counters.remove(key);
                }
                Observation::Unknown => {}
                Observation::Stale => {
                    let n = self.counters.entry(key.clone()).or_insert(0);
                    *n = n.saturating_add(1);
                    if *n >= self.threshold {
                        release.insert(key.clone());
                    }
                }
            }
        }
        for k in &release {
            self.counters.remove(k);
        }
        release
    }

    /// How many keys are counting towards a release (for tests and logs).
    pub fn pending(&self) -> usize {
        self.counters.len()
    }
}

/// A direct GET of a pod by namespace and name: `Ok(None)` = NotFound.
pub type Confirm<'a, E> = dyn FnMut(&str, &str) -> Result<Option<PodInfo>, E> + 'a;

/// One pass over the service: copy out reservations with pod metadata, judge each against
/// `cached`, confirm every non-live one with `confirm` (a direct GET: `Ok(None)` = NotFound),
/// then release what reached the threshold. Returns how many were released.
pub fn pass<E: std::fmt::Display>(
    service: &Service,
    tracker: &mut Tracker,
    cached: &dyn Fn(&str, &str) -> Option<PodInfo>,
    confirm: &mut Confirm<'_, E>,
) -> Result<u64, ServiceError> {
    let candidates = service.snapshot(|r| pod_of(r).is_some());
    let mut seen = Vec::with_capacity(candidates.len());
    for res in &candidates {
        let Some((ns, name)) = pod_of(res) else { continue };
        let obs = match judge(res, cached(ns, name).as_ref()) {
            Observation::Live => Observation::Live,
            _ => match confirm(ns, name) {
                Ok(pod) => judge(res, pod.as_ref()),
                Err(e) => {
                    log::warn!(
                        "stale check of pod {ns}/{name} ({} in pool {}): {e}; trying again next pass",
                        res.ip,
                        res.pool
                    );
                    Observation::Unknown
                }
            },
        };
        seen.push((res.key(), obs));
    }
    let release = tracker.record(&seen);
    if release.is_empty() {
        return Ok(0);
    }
    let doomed: Vec<Reservation> = candidates.into_iter().filter(|r| release.contains(&r.key())).collect();
    for res in &doomed {
        log::info!(
            "releasing stale reservation {} in pool {} of pod {}/{} (container {}, ifname {})",
            res.ip,
            res.pool,
            res.pod_namespace.as_deref().unwrap_or(""),
            res.pod_name.as_deref().unwrap_or(""),
            res.container_id,
            res.ifname
        );
    }
    let released = service.release_exact(&doomed)?;
    service.metrics().add_stale_released(released);
    Ok(released)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(cid: &str, uid: Option<&str>) -> Reservation {
        Reservation {
            pool: "blue".into(),
            container_id: cid.into(),
            ifname: "eth0".into(),
            ip: "10.0.0.2".parse().expect("ip"),
            network: "net1".into(),
            pod_name: Some(format!("pod-{cid}")),
            pod_namespace: Some("ns".into()),
            pod_uid: uid.map(String::from),
            device_id: None,
            created: 0,
            is_static: false,
        }
    }

    fn pod(uid: &str, terminal: bool) -> PodInfo {
        PodInfo { uid: uid.into(), terminal }
    }

    #[test]
    fn judge_by_presence_uid_and_phase() {
        assert_eq!(judge(&res("a", Some("u1")), Some(&pod("u1", false))), Observation::Live);
        assert_eq!(judge(&res("a", None), Some(&pod("u9", false))), Observation::Live, "no uid recorded");
        assert_eq!(judge(&res("a", Some("")), Some(&pod("u9", false))), Observation::Live);
        assert_eq!(judge(&res("a", Some("u1")), Some(&pod("u2", false))), Observation::Stale, "re-created");
        assert_eq!(judge(&res("a", Some("u1")), Some(&pod("u1", true))), Observation::Stale, "terminal");
        assert_eq!(judge(&res("a", Some("u1")), None), Observation::Stale);
        assert!(
            is_terminal_phase("Failed") && is_terminal_phase("Succeeded") && !is_terminal_phase("Pending")
        );
    }

    #[test]
    fn pod_metadata_must_be_complete() {
        let mut r = res("a", None);
        assert_eq!(pod_of(&r), Some(("ns", "pod-a")));
        r.pod_namespace = None;
        assert_eq!(pod_of(&r), None);
        r.pod_namespace = Some(String::new());
        assert_eq!(pod_of(&r), None);
    }

    #[test]
    fn release_after_threshold_consecutive_stale_passes() {
        let k = res("a", None).key();
        let mut t = Tracker::new(3);
        assert!(t.record(&[(k.clone(), Observation::Stale)]).is_empty());
        assert!(t.record(&[(k.clone(), Observation::Unknown)]).is_empty(), "unknown keeps the count");
        assert!(t.record(&[(k.clone(), Observation::Stale)]).is_empty());
        assert_eq!(t.record(&[(k.clone(), Observation::Stale)]), HashSet::from([k.clone()]));
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn live_resets_and_vanished_keys_are_forgotten() {
        let (a, b) = (res("a", None).key(), res("b", None).key());
        let mut t = Tracker::new(2);
        t.record(&[(a.clone(), Observation::Stale), (b.clone(), Observation::Stale)]);
        t.record(&[(a.clone(), Observation::Live)]);
        assert_eq!(t.pending(), 0, "a reset, b gone from the store");
        assert!(t.record(&[(a.clone(), Observation::Stale)]).is_empty(), "a starts over");
        assert_eq!(t.record(&[(a.clone(), Observation::Stale)]), HashSet::from([a]));
        assert_eq!(Tracker::new(0).threshold, 1);
    }

    #[test]
    fn pass_confirms_with_the_api_and_never_touches_anonymous_reservations() {
        use crate::store::{Op, Store};
        let dir = crate::store::tests::TempDir::new("stale-test");
        let mut store = Store::open(&dir.join("store")).expect("store");
        let mut anon = res("anon", None);
        anon.ip = "10.0.0.3".parse().expect("ip");
        anon.pod_name = None;
        let mut live = res("live", Some("u-live"));
        live.ip = "10.0.0.4".parse().expect("ip");
        store
            .commit(vec![Op::Reserve(res("gone", Some("u1"))), Op::Reserve(anon), Op::Reserve(live)])
            .expect("seed");
        let svc = Service::new("node1".into(), store, super::super::pools::PoolSet::default());
        let mut t = Tracker::new(2);
        // The cache misses everything; the API knows only the live pod.
        let cached = |_: &str, _: &str| None;
        let mut asked = Vec::new();
        let mut confirm = |ns: &str, name: &str| -> Result<Option<PodInfo>, String> {
            asked.push(format!("{ns}/{name}"));
            Ok((name == "pod-live").then(|| pod("u-live", false)))
        };
        assert_eq!(pass(&svc, &mut t, &cached, &mut confirm).expect("pass 1"), 0);
        assert_eq!(pass(&svc, &mut t, &cached, &mut confirm).expect("pass 2"), 1);
        let left: Vec<String> = svc.snapshot(|_| true).into_iter().map(|r| r.container_id).collect();
        assert_eq!(left.len(), 2);
        assert!(left.contains(&"anon".to_string()) && left.contains(&"live".to_string()), "{left:?}");
        assert!(!asked.iter().any(|a| a.contains("anon")), "{asked:?}");
        // An API error keeps everything.
        let mut failing = |_: &str, _: &str| -> Result<Option<PodInfo>, String> { Err("503".into()) };
        for _ in 0..3 {
            assert_eq!(pass(&svc, &mut t, &cached, &mut failing).expect("pass"), 0);
        }
    }
}
