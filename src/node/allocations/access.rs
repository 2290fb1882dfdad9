//! Who may read the allocations endpoint, decided without I/O: the bearer token of a request
//! ([`bearer_token`]), the review's verdict ([`Verdict`]) and the bounded cache of verdicts
//! ([`ReviewCache`]), keyed by a SHA-256 of the token, never the token itself.
//!
//! Owns: the token rules and their limit ([`MAX_TOKEN_BYTES`]), the cache and its limits
//! ([`MAX_CACHED_REVIEWS`], [`REVIEW_CACHE_TTL`]). Must not: ask the API server (see `review`)
//! or read clocks (callers pass `now`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::http;
use crate::inventory::TOKEN_HEADER;

/// Longest bearer token accepted: 4 KiB. A ServiceAccount token (a JWT) is about 1 KiB; OIDC
/// tokens with many claims reach 2-3 KiB. Longer is refused before any review (the API server
/// would be asked about it otherwise), well inside the 8 KiB request head
/// (`http::MAX_HEADER_BYTES`).
pub const MAX_TOKEN_BYTES: usize = 4096;

/// Verdicts kept at once: 1,024 × (32-byte key + verdict with a user name) is under 300 KiB.
/// When full, expired entries go first, then the one that expires soonest: tokens that keep
/// coming are re-reviewed at most once per [`REVIEW_CACHE_TTL`], and a flood of distinct
/// tokens costs the other callers no more than a review each.
pub const MAX_CACHED_REVIEWS: usize = 1024;

/// How long a verdict, allowed or not, is reused: 10 s. Short, so that a revoked binding or
/// token stops working within seconds (the API server's own webhook authorizer caches allowed
/// verdicts for 5 min); long enough that `kubectl-nv_ipam` reading a node several times, or
/// a flood of one bad token, costs one review.
pub const REVIEW_CACHE_TTL: Duration = Duration::from_secs(10);

/// What the API server said about a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Authenticated for the audience, and the SubjectAccessReview allowed it.
    Allowed { user: String },
    /// Authenticated, but not allowed; `reason` is the authorizer's (may be empty).
    Denied { user: String, reason: String },
    /// Not a valid token for the audience (expired, revoked, another audience, garbage).
    Unauthenticated { reason: String },
}

/// Why a request carries no usable token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Neither `Authorization: Bearer` nor the token header.
    Missing,
    /// More than one `Authorization` or token header: which one counts would be a guess.
    Ambiguous,
    /// Another scheme than Bearer (`Basic`, ...).
    NotBearer,
    /// Longer than [`MAX_TOKEN_BYTES`].
    TooLong,
    /// Empty, or bytes outside RFC 6750's b64token (letters, digits, `-._~+/`, trailing `=`).
    Malformed,
}

impl TokenError {
    /// One line for the 401 body.
    pub fn message(self) -> &'static str {
        match self {
            TokenError::Missing => "no bearer token",
            TokenError::Ambiguous => "more than one Authorization or X-Nv-Ipam-Token header",
            TokenError::NotBearer => "the Authorization header is not a Bearer token",
            TokenError::TooLong => "the bearer token is longer than 4096 bytes",
            TokenError::Malformed => "the bearer token is empty or has characters a token cannot have",
        }
    }
}

/// The bearer token of `req`: `Authorization: Bearer <token>` (direct callers), else the
/// [`TOKEN_HEADER`] (through the API server's pod proxy, which removes `Authorization`).
pub fn bearer_token(req: &http::Request) -> Result<&str, TokenError> {
    let auth: Vec<&str> = req.header_values("authorization").collect();
    let header: Vec<&str> = req.header_values(TOKEN_HEADER).collect();
    let token = match (auth.as_slice(), header.as_slice()) {
        ([], []) => return Err(TokenError::Missing),
        ([a], _) => {
            let (scheme, rest) = a.split_once(' ').unwrap_or((a, ""));
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(TokenError::NotBearer);
            }
            rest.trim()
        }
        ([], [t]) => t.strip_prefix("Bearer ").unwrap_or(t).trim(),
        _ => return Err(TokenError::Ambiguous),
    };
    check_token(token)
}

fn check_token(t: &str) -> Result<&str, TokenError> {
    if t.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLong);
    }
    let body = t.trim_end_matches('=');
    let ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
    if body.is_empty() || !body.bytes().all(ok) {
        return Err(TokenError::Malformed);
    }
    Ok(t)
}

/// The cache key of a token: its SHA-256 (ring's, through rustls), so the cache never holds a
/// token, and a key cannot be made to match another token's.
pub fn token_key(token: &str) -> [u8; 32] {
    let mut key = [0u8; 32];
    if let Some(suite) = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256.tls13() {
        let out = suite.common.hash_provider.hash(token.as_bytes());
        let out = out.as_ref();
        key[..out.len().min(32)].copy_from_slice(&out[..out.len().min(32)]);
    }
    key
}

/// Verdicts by token key, each until its expiry; at most [`MAX_CACHED_REVIEWS`].
#[derive(Debug, Default)]
pub struct ReviewCache {
    entries: HashMap<[u8; 32], (Verdict, Instant)>,
}

impl ReviewCache {
    /// The verdict for `key` if it has not expired at `now`.
    pub fn get(&self, key: &[u8; 32], now: Instant) -> Option<Verdict> {
        self.entries.get(key).filter(|(_, until)| *until > now).map(|(v, _)| v.clone())
    }

    /// Keeps `verdict` for [`REVIEW_CACHE_TTL`] from `now`, making room first when full.
    pub fn put(&mut self, key: [u8; 32], verdict: Verdict, now: Instant) {
        if !self.entries.contains_key(&key) && self.entries.len() >= MAX_CACHED_REVIEWS {
            self.entries.retain(|_, (_, until)| *until > now);
            if self.entries.len() >= MAX_CACHED_REVIEWS
                && let Some(soonest) =
                    self.entries.iter().min_by_key(|(_, (_, until))| *until).map(|(k, _)| *k)
            {
                self.entries.remove(&soonest);
            }
        }
        self.entries.insert(key, (verdict, now + REVIEW_CACHE_TTL));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> http::Request {
        http::Request {
            method: "GET".into(),
            path: "/v1/allocations".into(),
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            body: Vec::new(),
        }
    }

    #[test]
    fn tokens_from_either_header() {
        assert_eq!(bearer_token(&req(&[("Authorization", "Bearer abc.def-_~+/==")])), Ok("abc.def-_~+/=="));
        assert_eq!(bearer_token(&req(&[("authorization", "bearer  abc")])), Ok("abc"));
        assert_eq!(bearer_token(&req(&[("X-Nv-Ipam-Token", "abc")])), Ok("abc"));
        assert_eq!(bearer_token(&req(&[("x-nv-ipam-token", "Bearer abc")])), Ok("abc"));
        // Authorization wins over the proxy header (a direct caller may send both)
        assert_eq!(bearer_token(&req(&[("Authorization", "Bearer a"), ("X-Nv-Ipam-Token", "b")])), Ok("a"));
        assert_eq!(bearer_token(&req(&[])), Err(TokenError::Missing));
        assert_eq!(bearer_token(&req(&[("Authorization", "Basic YTpi")])), Err(TokenError::NotBearer));
        assert_eq!(
            bearer_token(&req(&[("Authorization", "Bearer a"), ("Authorization", "Bearer b")])),
            Err(TokenError::Ambiguous)
        );
        assert_eq!(
            bearer_token(&req(&[("X-Nv-Ipam-Token", "a"), ("X-Nv-Ipam-Token", "b")])),
            Err(TokenError::Ambiguous)
        );
        for bad in ["Bearer ", "Bearer a b", "Bearer a\u{7f}", "Bearer ===", "Bearer a=b", "Bearer é"] {
            assert_eq!(bearer_token(&req(&[("Authorization", bad)])), Err(TokenError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn token_length_at_the_limit() {
        let at = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES));
        assert_eq!(bearer_token(&req(&[("Authorization", &at)])).map(str::len), Ok(MAX_TOKEN_BYTES));
        let over = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
        assert_eq!(bearer_token(&req(&[("Authorization", &over)])), Err(TokenError::TooLong));
    }

    #[test]
    fn keys_are_sha256_of_the_token() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1
        let want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let got: String = token_key("abc").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, want);
        assert_ne!(token_key("abd"), token_key("abc"));
    }

    #[test]
    fn cache_expires_and_stays_within_its_limit() {
        let t0 = Instant::now();
        let mut c = ReviewCache::default();
        let allowed = Verdict::Allowed { user: "u".into() };
        c.put(token_key("a"), allowed.clone(), t0);
        assert_eq!(c.get(&token_key("a"), t0 + REVIEW_CACHE_TTL - Duration::from_millis(1)), Some(allowed));
        assert_eq!(c.get(&token_key("a"), t0 + REVIEW_CACHE_TTL), None, "expired at the TTL");
        assert_eq!(c.get(&token_key("b"), t0), None);
        // fill to the limit: every entry stays
        let mut c = ReviewCache::default();
        for i in 0..MAX_CACHED_REVIEWS {
            let at = t0 + Duration::from_millis(i as u64);
            c.put(token_key(&format!("t{i}")), Verdict::Unauthenticated { reason: String::new() }, at);
        }
        assert_eq!(c.len(), MAX_CACHED_REVIEWS);
        assert!(c.get(&token_key("t0"), t0).is_some());
        // one more: the entry that expires soonest (the oldest) makes room
        let late = t0 + Duration::from_secs(1);
        c.put(token_key("new"), Verdict::Allowed { user: "n".into() }, late);
        assert_eq!(c.len(), MAX_CACHED_REVIEWS);
        assert!(c.get(&token_key("t0"), late).is_none(), "the soonest to expire went");
        assert!(c.get(&token_key("t1"), late).is_some() && c.get(&token_key("new"), late).is_some());
        // once all expired, a put clears them
        c.put(token_key("x"), Verdict::Allowed { user: "x".into() }, t0 + REVIEW_CACHE_TTL * 2);
        assert_eq!(c.len(), 1);
    }
}
