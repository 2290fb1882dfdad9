//! `ipam-node`'s read-only allocations endpoint: `GET /v1/allocations` on the health/metrics
//! listener (`--health-probe-bind-address`), in cluster mode only (protocol/allocations.md,
//! "Request" and "Responses"). It answers the node's pools and reservations
//! ([`crate::inventory`], format in protocol/allocations.md "The report") to callers the API
//! server vouches for, as kube-rbac-proxy does:
//!
//! 1. the bearer token: `Authorization: Bearer` or, through the API server's pod proxy (which
//!    removes `Authorization`), `X-Nv-Ipam-Token`; none or a malformed one: 401;
//! 2. a TokenReview for the audience `nv-ipam-node` (a token minted for it by TokenRequest;
//!    one the API server itself accepts is refused, so a token sent to a node cannot be used
//!    against the API): not authenticated: 401;
//! 3. a SubjectAccessReview of that user: `get` of `nodeallocations` (group
//!    `nv-ipam.nvidia.com`) named after this node in the pools' namespace (no CRD; the
//!    ClusterRoles `nv-ipam-allocations-reader` and `nv-ipam-viewer` of
//!    deploy/rbac/viewer.yaml grant it): not allowed: 403.
//!
//! Verdicts are cached ([`access::ReviewCache`]); at most [`MAX_CONCURRENT_REVIEWS`] reviews
//! run at once (another caller that needs one gets 503 at once, and retries); the reviews end
//! [`ANSWER_RESERVE`] before the health server's answer deadline. The probes and `/metrics`
//! are untouched (kubelet calls them without a token). Standalone mode (`--pools-file`) has
//! no API server to ask, so the path is not served there (404): read the store file with
//! `kubectl-nv_ipam --store-file` instead, which needs the same root rights as the store.
//!
//! Owns: the route's answers. Must not: change anything (the report is built from a copy of
//! the store state taken under the store lock, nothing slower), or log a token.

pub mod access;
pub mod review;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::health::Answer;
use crate::http;
use crate::inventory::{AUTHZ_RESOURCE, TOKEN_AUDIENCE};

use access::{ReviewCache, Verdict, token_key};
use review::Reviewer;

use super::service::Service;

/// Reviews (a TokenReview and a SubjectAccessReview each) in flight at once: 4. Callers that
/// are already cached need none; a flood of new tokens then costs the API server at most 4
/// requests in flight from this node, and the health server's connections (16) are never all
/// waiting on the API server, so probes keep their slots.
pub const MAX_CONCURRENT_REVIEWS: usize = 4;

/// Kept free at the end of the answer's deadline (`health::RESPONSE_DEADLINE`, 5 s after the
/// request was read) for building and writing the report: 2 s, so both API calls together get
/// at most 3 s (the API server answers a review in milliseconds when it is healthy).
pub const ANSWER_RESERVE: Duration = Duration::from_secs(2);

const JSON: &str = "application/json";

/// The endpoint of one node.
pub struct Endpoint {
    service: Arc<Service>,
    reviewer: Box<dyn Reviewer>,
    /// The SubjectAccessReview's namespace, for messages.
    namespace: String,
    cache: Mutex<ReviewCache>,
    reviews: AtomicUsize,
}

/// Gives a review slot back when dropped.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn unauthorized(why: &str) -> Answer {
    Answer {
        status: 401,
        content_type: "text/plain",
        headers: vec![("WWW-Authenticate", "Bearer")],
        body: format!(
            "unauthorized: {why}; send a token for audience {TOKEN_AUDIENCE} (TokenRequest) as Authorization: Bearer or X-Nv-Ipam-Token; kubectl-nv_ipam does\n"
        )
        .into_bytes(),
    }
}

impl Endpoint {
    pub fn new(service: Arc<Service>, reviewer: Box<dyn Reviewer>, namespace: String) -> Endpoint {
        Endpoint {
            service,
            reviewer,
            namespace,
            cache: Mutex::new(ReviewCache::default()),
            reviews: AtomicUsize::new(0),
        }
    }

    /// The answer to `GET /v1/allocations`, written by `deadline`.
    pub fn answer(&self, req: &http::Request, deadline: Instant) -> Answer {
        let token = match access::bearer_token(req) {
            Ok(t) => t,
            Err(e) => return unauthorized(e.message()),
        };
        let verdict = match self.verdict(token, deadline) {
            Ok(v) => v,
            Err(a) => return a,
        };
        let node = self.service.node();
        match verdict {
            Verdict::Allowed { user } => {
                let report = self.service.allocations();
                log::info!(
                    "allocations endpoint: {} reservations in {} pools read by {user:?}",
                    report.reservations.len(),
                    report.pools.len()
                );
                match serde_json::to_vec(&report) {
                    Ok(body) => Answer { status: 200, content_type: JSON, headers: Vec::new(), body },
                    Err(e) => Answer::text(500, format!("cannot encode the report: {e}\n")),
                }
            }
            Verdict::Denied { user, reason } => {
                log::debug!("allocations endpoint: {user:?} denied: {reason}");
                Answer::text(
                    403,
                    format!(
                        "forbidden: user {user:?} may not get {AUTHZ_RESOURCE} {node:?} in namespace {:?}; bind the ClusterRole nv-ipam-allocations-reader (a ServiceAccount) or nv-ipam-viewer (a person) in that namespace (deploy/rbac/viewer.yaml)\n",
                        self.namespace
                    ),
                )
            }
            Verdict::Unauthenticated { reason } => {
                log::debug!("allocations endpoint: token not authenticated: {reason}");
                unauthorized(
                    "the token is not valid for this endpoint (expired, revoked, or for another audience)",
                )
            }
        }
    }

    /// The cached verdict, else a review (when a slot is free); `Err` is the answer to give
    /// instead (busy, or the API server could not be asked).
    fn verdict(&self, token: &str, deadline: Instant) -> Result<Verdict, Answer> {
        let key = token_key(token);
        if let Some(v) = self.lock_cache().get(&key, Instant::now()) {
            return Ok(v);
        }
        if self.reviews.fetch_add(1, Ordering::SeqCst) >= MAX_CONCURRENT_REVIEWS {
            self.reviews.fetch_sub(1, Ordering::SeqCst);
            return Err(Answer::text(503, "too many token reviews in flight; retry in a second\n"));
        }
        let slot = Slot(&self.reviews);
        let result = self.reviewer.review(token, deadline.checked_sub(ANSWER_RESERVE).unwrap_or(deadline));
        drop(slot);
        match result {
            Ok(v) => {
                self.lock_cache().put(key, v.clone(), Instant::now());
                Ok(v)
            }
            Err(e) => {
                log::warn!("allocations endpoint: cannot review a token: {e}");
                Err(Answer::text(503, "cannot verify the token with the API server now; retry\n"))
            }
        }
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, ReviewCache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::pools::PoolSet;
    use crate::store::Store;
    use std::sync::Barrier;
    use std::sync::atomic::AtomicU32;

    /// A reviewer that counts calls, answers by token, and can hold calls at a barrier.
    struct Fake {
        calls: Arc<AtomicU32>,
        gate: Option<Arc<Barrier>>,
    }

    impl Reviewer for Fake {
        fn review(&self, token: &str, deadline: Instant) -> Result<Verdict, String> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            assert!(deadline + ANSWER_RESERVE <= Instant::now() + Duration::from_secs(5), "reserve kept");
            if let Some(g) = &self.gate {
                g.wait(); // every slot taken
                g.wait(); // released
            }
            match token {
                "down" => Err("TokenReview: connection refused".into()),
                "denied" => Ok(Verdict::Denied { user: "bob".into(), reason: "no rule".into() }),
                t if t.starts_with("good") => Ok(Verdict::Allowed { user: "alice".into() }),
                _ => Ok(Verdict::Unauthenticated { reason: "invalid".into() }),
            }
        }
    }

    struct Fixture {
        endpoint: Arc<Endpoint>,
        calls: Arc<AtomicU32>,
        _dir: crate::store::tests::TempDir,
    }

    fn fixture(gate: Option<Arc<Barrier>>) -> Fixture {
        let dir = crate::store::tests::TempDir::new("allocations-endpoint");
        let store = Store::open(&dir.join("store")).expect("store");
        let service = Arc::new(Service::new("n1".into(), store, PoolSet::default()));
        let calls = Arc::new(AtomicU32::new(0));
        let fake = Fake { calls: calls.clone(), gate };
        Fixture { endpoint: Arc::new(Endpoint::new(service, Box::new(fake), "ns".into())), calls, _dir: dir }
    }

    fn get(e: &Endpoint, headers: &[(&str, &str)]) -> Answer {
        let req = http::Request {
            method: "GET".into(),
            path: "/v1/allocations".into(),
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            body: Vec::new(),
        };
        e.answer(&req, Instant::now() + Duration::from_secs(5))
    }

    #[test]
    fn answers_by_verdict_and_caches_verdicts_not_failures() {
        let f = fixture(None);
        let e = &f.endpoint;
        let calls = || f.calls.load(Ordering::SeqCst);
        let a = get(e, &[]);
        assert_eq!((a.status, a.headers.clone()), (401, vec![("WWW-Authenticate", "Bearer")]));
        assert_eq!(calls(), 0, "no token, no review");
        let a = get(e, &[("Authorization", "Bearer good")]);
        assert_eq!((a.status, a.content_type), (200, JSON));
        let v: serde_json::Value = serde_json::from_slice(&a.body).expect("json");
        assert_eq!((v["kind"].as_str(), v["node"].as_str()), (Some("NodeAllocations"), Some("n1")));
        assert_eq!(get(e, &[("X-Nv-Ipam-Token", "good")]).status, 200);
        assert_eq!(calls(), 1, "the second request used the cached verdict");
        let a = get(e, &[("X-Nv-Ipam-Token", "denied")]);
        assert_eq!(a.status, 403);
        let text = String::from_utf8(a.body).expect("utf8");
        assert!(
            text.contains("user \"bob\" may not get nodeallocations \"n1\" in namespace \"ns\""),
            "{text}"
        );
        assert_eq!(get(e, &[("X-Nv-Ipam-Token", "denied")]).status, 403);
        assert_eq!(get(e, &[("Authorization", "Bearer nope")]).status, 401);
        assert_eq!(get(e, &[("Authorization", "Bearer nope")]).status, 401);
        assert_eq!(calls(), 3, "negative verdicts are cached too");
        assert_eq!(get(e, &[("Authorization", "Bearer down")]).status, 503);
        assert_eq!(get(e, &[("Authorization", "Bearer down")]).status, 503);
        assert_eq!(calls(), 5, "no verdict, nothing cached: asked again");
    }

    #[test]
    fn reviews_in_flight_at_the_limit() {
        let gate = Arc::new(Barrier::new(MAX_CONCURRENT_REVIEWS + 1));
        let f = fixture(Some(gate.clone()));
        let workers: Vec<_> = (0..MAX_CONCURRENT_REVIEWS)
            .map(|i| {
                let e = f.endpoint.clone();
                std::thread::spawn(move || get(&e, &[("Authorization", &format!("Bearer good{i}"))]).status)
            })
            .collect();
        gate.wait(); // all MAX reviews are in flight
        let a = get(&f.endpoint, &[("Authorization", "Bearer good-late")]);
        assert_eq!(a.status, 503, "one more review is refused at once");
        gate.wait();
        for w in workers {
            assert_eq!(w.join().expect("worker"), 200, "each review at the limit got its answer");
        }
        assert_eq!(f.endpoint.reviews.load(Ordering::SeqCst), 0, "every slot was given back");
    }
}
