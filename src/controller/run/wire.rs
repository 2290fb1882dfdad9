//! A pool on the wire as cluster mode reads and writes it: the typed object with its
//! `status.conditions` (which the api types do not carry), the borrowed status we write as a
//! merge patch, and the hash that recognises our own write's echo without keeping a copy.
//!
//! Owns: [`WirePool`] (one generic type for every pool kind), [`StatusPatch`], [`status_hash`]
//! and turning a wire pool into the cache's [`CachedPool`]; the status types themselves are
//! `api::status`. Must not: send requests or touch the cache.

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::cache::CachedPool;
use crate::alloc::PoolKind;
use crate::api::{ObjectMeta, PoolStatus, StatusRef};

/// A pool object on the wire, as read by the reflector, GET and the status write's answer.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", bound = "")]
pub(super) struct WirePool<K: PoolKind> {
    #[serde(default)]
    pub(super) api_version: String,
    #[serde(default)]
    pub(super) kind: String,
    #[serde(default)]
    pub(super) metadata: ObjectMeta,
    #[serde(default)]
    pub(super) spec: K::Spec,
    #[serde(default = "Option::default")]
    pub(super) status: Option<PoolStatus<K::Allocation>>,
}

/// The status write: a merge patch carrying the resourceVersion the decision was based on, so
/// the API server refuses it (409) when the pool changed meanwhile.
#[derive(Serialize)]
pub(super) struct StatusPatch<'a, A> {
    pub(super) metadata: PatchMeta<'a>,
    pub(super) status: StatusRef<'a, A>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PatchMeta<'a> {
    pub(super) resource_version: &'a str,
}

/// Hashes a value's JSON form: equal statuses (as decoded into our types) hash equal whatever
/// the key order or omitted defaults of the stored JSON.
pub(super) fn json_hash<T: Serialize + ?Sized>(v: &T) -> u64 {
    struct W(DefaultHasher);
    impl std::io::Write for W {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.write(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut w = W(DefaultHasher::new());
    // serializing our own types into a sink cannot fail (string keys, no floats)
    let _ = serde_json::to_writer(&mut w, v);
    w.0.finish()
}

/// Hash of a status as stored: `None` (no status yet) differs from every written status.
pub(super) fn status_hash<A: Serialize>(s: Option<StatusRef<'_, A>>) -> u64 {
    json_hash(&s)
}

/// The wire shape of one pool kind, turned into the cache's [`CachedPool`].
pub(super) trait PoolWire: DeserializeOwned {
    fn into_cached(self) -> CachedPool;
}

impl<K: PoolKind> PoolWire for WirePool<K> {
    fn into_cached(self) -> CachedPool {
        let status_hash =
            status_hash(self.status.as_ref().map(|s| StatusRef::new(&s.allocations, &s.conditions)));
        let (status, conditions) = match self.status {
            Some(mut s) => {
                // sorted by node name (ours are; a stable sort keeps a node's first entry first):
                // NodeBlockSets look nodes up by binary search
                if !s.allocations.is_sorted_by(|a, b| K::node_name(a) <= K::node_name(b)) {
                    s.allocations.sort_by(|a, b| K::node_name(a).cmp(K::node_name(b)));
                }
                (Some(K::status_of(s.allocations)), s.conditions)
            }
            None => (None, Vec::new()),
        };
        let pool = K::from_parts(self.api_version, self.kind, self.metadata, self.spec, status);
        let valid = K::validate(&pool).is_ok();
        CachedPool { pool: K::into_any(pool), conditions, status_hash, valid }
    }
}
