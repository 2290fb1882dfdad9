//! The API server's word on a token, as kube-rbac-proxy asks it: a TokenReview for the
//! endpoint's audience (who is it?), then a SubjectAccessReview of that user, its groups, uid
//! and extra (may it `get` `nodeallocations` named after this node in the pools' namespace?).
//! Both are `create`s that store nothing: the `system:auth-delegator` rights.
//!
//! Owns: the review wire shapes and [`KubeReviewer`]. Must not: cache (see `access`) or answer
//! HTTP (see `allocations`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::inventory::{AUTHZ_GROUP, AUTHZ_RESOURCE, AUTHZ_VERB, TOKEN_AUDIENCE};
use crate::kube::{self, Client, KubeError};

use super::access::Verdict;

/// Asks whether a token may read this node's allocations.
pub trait Reviewer: Send + Sync {
    /// The verdict, or why there is none (the API server could not be asked in time: not a
    /// verdict, so not cached). Every call ends by `deadline`.
    fn review(&self, token: &str, deadline: Instant) -> Result<Verdict, String>;
}

/// [`Reviewer`] through the node's own client.
pub struct KubeReviewer {
    pub client: Client,
    /// The namespace of the SubjectAccessReview: the node's `--ippools-namespace`.
    pub namespace: String,
    pub node: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Review<S> {
    api_version: &'static str,
    kind: &'static str,
    spec: S,
}

#[derive(Serialize)]
struct TokenReviewSpec<'a> {
    token: &'a str,
    audiences: [&'a str; 1],
}

#[derive(Deserialize, Default)]
struct Answer<S> {
    #[serde(default = "Option::default")]
    status: Option<S>,
}

#[derive(Deserialize, Default)]
struct TokenReviewStatus {
    #[serde(default)]
    authenticated: bool,
    #[serde(default)]
    user: UserInfo,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    error: String,
}

#[derive(Serialize, Deserialize, Default, Clone)]
struct UserInfo {
    #[serde(default)]
    username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    uid: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    groups: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    extra: BTreeMap<String, Vec<String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarSpec<'a> {
    user: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    uid: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    groups: &'a [String],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    extra: &'a BTreeMap<String, Vec<String>>,
    resource_attributes: Attributes<'a>,
}

#[derive(Serialize)]
struct Attributes<'a> {
    namespace: &'a str,
    verb: &'static str,
    group: &'static str,
    resource: &'static str,
    name: &'a str,
}

#[derive(Deserialize, Default)]
struct SarStatus {
    #[serde(default)]
    allowed: bool,
    #[serde(default)]
    reason: String,
}

/// Time left before `deadline`, or the error that says there is none.
fn left(deadline: Instant) -> Result<Duration, String> {
    let d = deadline.saturating_duration_since(Instant::now());
    if d.is_zero() { Err("no time left for the review".into()) } else { Ok(d) }
}

fn api_err(what: &str, e: KubeError) -> String {
    format!("{what}: {e}")
}

impl Reviewer for KubeReviewer {
    fn review(&self, token: &str, deadline: Instant) -> Result<Verdict, String> {
        let tr = Review {
            api_version: "authentication.k8s.io/v1",
            kind: "TokenReview",
            spec: TokenReviewSpec { token, audiences: [TOKEN_AUDIENCE] },
        };
        let answer: Answer<TokenReviewStatus> = self
            .client
            .create_within(&kube::TOKENREVIEWS, None, &tr, left(deadline)?)
            .map_err(|e| api_err("TokenReview", e))?;
        let st = answer.status.unwrap_or_default();
        if !st.authenticated || st.user.username.is_empty() {
            let reason = if st.error.is_empty() { "not authenticated".to_string() } else { st.error };
            return Ok(Verdict::Unauthenticated { reason });
        }
        // The API server checks the audience when spec.audiences is set; check the answer too.
        if !st.audiences.iter().any(|a| a == TOKEN_AUDIENCE) {
            return Ok(Verdict::Unauthenticated {
                reason: format!("the token is not for audience {TOKEN_AUDIENCE}"),
            });
        }
        let user = st.user;
        let sar = Review {
            api_version: "authorization.k8s.io/v1",
            kind: "SubjectAccessReview",
            spec: SarSpec {
                user: &user.username,
                uid: &user.uid,
                groups: &user.groups,
                extra: &user.extra,
                resource_attributes: Attributes {
                    namespace: &self.namespace,
                    verb: AUTHZ_VERB,
                    group: AUTHZ_GROUP,
                    resource: AUTHZ_RESOURCE,
                    name: &self.node,
                },
            },
        };
        let answer: Answer<SarStatus> = self
            .client
            .create_within(&kube::SUBJECTACCESSREVIEWS, None, &sar, left(deadline)?)
            .map_err(|e| api_err("SubjectAccessReview", e))?;
        let st = answer.status.unwrap_or_default();
        Ok(if st.allowed {
            Verdict::Allowed { user: user.username }
        } else {
            Verdict::Denied { user: user.username, reason: st.reason }
        })
    }
}
