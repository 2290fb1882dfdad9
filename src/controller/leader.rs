//! Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it.
//!
//! The Lease is the reference's, `dd1643cf.nvidia.com`, in `--leader-elect-namespace`. Every
//! [`RETRY_PERIOD`] each candidate reads it: a leader renews it; a follower takes it when it is
//! free (no holder) or expired. Expiry is judged by the follower's own clock: a Lease whose
//! record (holder, renewTime) has not changed for [`LEASE_DURATION`] since this process first
//! saw it is expired, so clocks need not agree. Writes are PUTs with the read
//! resourceVersion, so of two candidates only one wins (the other gets 409).
//!
//! Losing the lease (no successful renew for [`RENEW_DEADLINE`]) stops reconciling at once
//! (`is_leader` goes false, checked before every status write) and the candidate keeps trying
//! to get it back; the process does not exit, so its caches stay warm. On stop the leader
//! releases the lease (empty holder, leaseDurationSeconds 1), so a follower takes over within
//! one retry period instead of a lease duration.
//!
//! Owns: [`decide`] (pure) and [`run_elector`] (the loop). Must not: reconcile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::kube::{Client, KubeError, LEASES};

/// Name of the Lease (the reference's controller-runtime LeaderElectionID).
pub const LEASE_NAME: &str = "dd1643cf.nvidia.com";
/// How long a lease is valid without a renew (controller-runtime's default).
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// A leader that could not renew for this long stops acting as leader (controller-runtime's).
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// How often candidates try to acquire and leaders renew (controller-runtime's retry period).
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// What a candidate does after reading the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// No Lease object: create it with us as holder.
    Create,
    /// We hold it: renew.
    Renew,
    /// Free or expired: take it (leaseTransitions + 1).
    Acquire,
    /// Someone else holds a live lease.
    Wait,
}

/// Decides from the holder and how long its record has been unchanged (our clock).
pub fn decide(
    exists: bool,
    holder: &str,
    me: &str,
    unchanged_for: Duration,
    lease_duration: Duration,
) -> Action {
    if !exists {
        Action::Create
    } else if holder == me {
        Action::Renew
    } else if holder.is_empty() || unchanged_for >= lease_duration {
        Action::Acquire
    } else {
        Action::Wait
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` (metav1.MicroTime's format).
pub fn micro_time(t: SystemTime) -> String {
    let s = crate::logging::format_utc(t);
    let micros = t.duration_since(UNIX_EPOCH).map(|d| d.subsec_micros()).unwrap_or(0);
    match s.rfind('.') {
        Some(dot) => format!("{}.{micros:06}Z", &s[..dot]),
        None => s,
    }
}

/// The identity written as holder: `$POD_NAME` when set (the Deployment sets it), else
/// hostname + pid, unique per process.
pub fn identity() -> String {
    if let Some(pod) = std::env::var("POD_NAME").ok().filter(|s| !s.is_empty()) {
        return pod;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "ipam-controller".into());
    format!("{host}_{}", std::process::id())
}

/// Runs the election until `stop`, keeping `is_leader` current; `on_elected` runs each time we
/// become leader. Releases the lease on the way out if we hold it.
pub fn run_elector(
    client: &Client,
    namespace: &str,
    me: &str,
    is_leader: &AtomicBool,
    stop: &AtomicBool,
    on_elected: &dyn Fn(),
) {
    // (holder, renewTime) last seen, and when we first saw it
    let mut observed: Option<(String, String, Instant)> = None;
    let mut last_renew: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        let ok = match step(client, namespace, me, &mut observed) {
            Ok(ok) => ok,
            Err(e) => {
                log::debug!("leader election: lease {namespace}/{LEASE_NAME}: {e}");
                false
            }
        };
        let now = Instant::now();
        if ok {
            last_renew = Some(now);
            if !is_leader.swap(true, Ordering::SeqCst) {
                log::info!("leader election: became leader identity={me} lease={namespace}/{LEASE_NAME}");
                on_elected();
            }
        } else if is_leader.load(Ordering::SeqCst)
            && last_renew.is_none_or(|t| now.duration_since(t) >= RENEW_DEADLINE)
        {
            is_leader.store(false, Ordering::SeqCst);
            log::warn!(
                "leader election: lost the lease identity={me}; reconciling stops until it is won back"
            );
        }
        sleep_unless_stopped(stop, RETRY_PERIOD);
    }
    if is_leader.swap(false, Ordering::SeqCst) {
        match release(client, namespace, me) {
            Ok(()) => log::info!("leader election: released the lease identity={me}"),
            Err(e) => log::warn!("leader election: could not release the lease: {e}"),
        }
    }
}

fn sleep_unless_stopped(stop: &AtomicBool, total: Duration) {
    let deadline = Instant::now() + total;
    while !stop.load(Ordering::Relaxed) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// One read-decide-write round. `Ok(true)`: we hold the lease now.
fn step(
    client: &Client,
    ns: &str,
    me: &str,
    observed: &mut Option<(String, String, Instant)>,
) -> Result<bool, KubeError> {
    let now = SystemTime::now();
    let lease: Option<Value> = match client.get::<Value>(&LEASES, Some(ns), LEASE_NAME) {
        Ok(v) => Some(v),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e),
    };
    let spec = lease.as_ref().map(|l| &l["spec"]);
    let holder = spec.and_then(|s| s["holderIdentity"].as_str()).unwrap_or("").to_string();
    let renew = spec.and_then(|s| s["renewTime"].as_str()).unwrap_or("").to_string();
    let duration = spec
        .and_then(|s| s["leaseDurationSeconds"].as_u64())
        .map(Duration::from_secs)
        .unwrap_or(LEASE_DURATION);
    let unchanged_for = match observed {
        Some((h, r, at)) if *h == holder && *r == renew => at.elapsed(),
        _ => {
            *observed = Some((holder.clone(), renew.clone(), Instant::now()));
            Duration::ZERO
        }
    };
    let stamp = micro_time(now);
    match (decide(lease.is_some(), &holder, me, unchanged_for, duration), lease) {
        (Action::Create, _) => {
            let obj = json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": LEASE_NAME, "namespace": ns},
                "spec": {"holderIdentity": me, "leaseDurationSeconds": LEASE_DURATION.as_secs(),
                         "acquireTime": stamp, "renewTime": stamp, "leaseTransitions": 0}
            });
            won(client.create::<Value>(&LEASES, Some(ns), &obj))
        }
        (Action::Renew, Some(mut l)) => {
            l["spec"]["renewTime"] = json!(stamp);
            l["spec"]["leaseDurationSeconds"] = json!(LEASE_DURATION.as_secs());
            won(client.replace::<Value>(&LEASES, Some(ns), LEASE_NAME, &l))
        }
        (Action::Acquire, Some(mut l)) => {
            let transitions = l["spec"]["leaseTransitions"].as_u64().unwrap_or(0) + 1;
            l["spec"]["holderIdentity"] = json!(me);
            l["spec"]["leaseDurationSeconds"] = json!(LEASE_DURATION.as_secs());
            l["spec"]["acquireTime"] = json!(stamp);
            l["spec"]["renewTime"] = json!(stamp);
            l["spec"]["leaseTransitions"] = json!(transitions);
            won(client.replace::<Value>(&LEASES, Some(ns), LEASE_NAME, &l))
        }
        _ => Ok(false),
    }
}

/// A 409 (someone else wrote first) or 422/409 on create is "not us", not an error.
fn won(r: Result<Value, KubeError>) -> Result<bool, KubeError> {
    match r {
        Ok(_) => Ok(true),
        Err(e) if e.is_conflict() || e.status_code() == Some(409) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Empties the holder so a follower need not wait out the lease.
fn release(client: &Client, ns: &str, me: &str) -> Result<(), KubeError> {
    let mut l: Value = client.get(&LEASES, Some(ns), LEASE_NAME)?;
    if l["spec"]["holderIdentity"].as_str() != Some(me) {
        return Ok(());
    }
    let now = micro_time(SystemTime::now());
    l["spec"]["holderIdentity"] = json!("");
    l["spec"]["leaseDurationSeconds"] = json!(1);
    l["spec"]["renewTime"] = json!(now);
    l["spec"]["acquireTime"] = json!(now);
    client.replace::<Value>(&LEASES, Some(ns), LEASE_NAME, &l).map(|_| ())
}

/// Shared flag for callers that do not run an election: always leader.
pub fn always_leader() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        let d = Duration::from_secs(15);
        assert_eq!(decide(false, "", "me", Duration::ZERO, d), Action::Create);
        assert_eq!(decide(true, "me", "me", Duration::from_secs(60), d), Action::Renew);
        assert_eq!(decide(true, "", "me", Duration::ZERO, d), Action::Acquire);
        assert_eq!(decide(true, "other", "me", Duration::from_secs(14), d), Action::Wait);
        assert_eq!(decide(true, "other", "me", Duration::from_secs(15), d), Action::Acquire);
    }

    #[test]
    fn micro_time_has_six_digits() {
        let t = UNIX_EPOCH + Duration::from_micros(1_500_123);
        assert_eq!(micro_time(t), "1970-01-01T00:00:01.500123Z");
    }
}
