//! Decoding an AdmissionReview v1 body into a [`Request`]: the review's own fields first, then
//! `object` and `oldObject` each in a pass of its own into the controller's pool types, so that
//! an object that does not decode still leaves the uid to echo. Memory stays a small multiple
//! of the body (UTF-8 and nesting checked first, lists capped, no `serde_json::Value`).
//!
//! Owns: [`parse_review`] and the review's wire shapes. Must not: judge the pool (see
//! `admission::decide`), log or touch sockets.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{
    ANNOTATION_ALLOW_OVERLAP, ANNOTATION_ALLOW_REALLOCATION, NotAReview, REVIEW_API_VERSION, Request,
};
use crate::alloc::PoolKind;
use crate::api::{AnyPool, ObjectMeta, PoolType};
use crate::bounded::clip;
use crate::prescan;

/// The review without its objects: they are skipped unread here and decoded in passes of their
/// own, so that an object that does not decode still leaves the uid to echo.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireReview {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    request: Option<WireRequest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRequest {
    uid: String,
    #[serde(default)]
    kind: WireKind,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    sub_resource: String,
    #[serde(default)]
    object: Option<IgnoredAny>,
    #[serde(default)]
    old_object: Option<IgnoredAny>,
}

#[derive(Deserialize, Default)]
struct WireKind {
    #[serde(default)]
    kind: String,
}

/// `{"request": {"object": T}}`, everything else skipped.
#[derive(Deserialize)]
struct ObjectPass<T> {
    request: ObjectOnly<T>,
}

#[derive(Deserialize)]
struct ObjectOnly<T> {
    object: T,
}

/// `{"request": {"oldObject": T}}`, everything else skipped.
#[derive(Deserialize)]
struct OldObjectPass<T> {
    request: OldObjectOnly<T>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OldObjectOnly<T> {
    old_object: T,
}

/// A pool as [`decide`] needs it: the controller's spec and status types, and of the metadata
/// only what is read (every other field, `managedFields` and the other annotations included, is
/// skipped unread).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", bound = "")]
struct ReviewPool<K: PoolKind> {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: ReviewMeta,
    #[serde(default)]
    spec: K::Spec,
    #[serde(default = "Option::default")]
    status: Option<K::Status>,
}

impl<K: PoolKind> ReviewPool<K> {
    fn into_any(self) -> AnyPool {
        K::into_any(K::from_parts(
            self.api_version,
            self.kind,
            self.metadata.into_meta(),
            self.spec,
            self.status,
        ))
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ReviewMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    deletion_timestamp: Option<String>,
    #[serde(default)]
    annotations: Opt,
}

impl ReviewMeta {
    /// The metadata [`decide`] reads: name, namespace, deletionTimestamp and the opt-out
    /// annotations that are `"true"`.
    fn into_meta(self) -> ObjectMeta {
        let mut m = ObjectMeta::named(self.name);
        if !self.namespace.is_empty() {
            m.rest.insert("namespace".into(), self.namespace.into());
        }
        if let Some(t) = self.deletion_timestamp {
            m.rest.insert("deletionTimestamp".into(), t.into());
        }
        let mut annotations = serde_json::Map::new();
        for (on, name) in [
            (self.annotations.reallocation, ANNOTATION_ALLOW_REALLOCATION),
            (self.annotations.overlap, ANNOTATION_ALLOW_OVERLAP),
        ] {
            if on {
                annotations.insert(name.into(), "true".into());
            }
        }
        if !annotations.is_empty() {
            m.rest.insert("annotations".into(), annotations.into());
        }
        m
    }
}

/// The opt-out annotations set to `"true"`; every other annotation is skipped unread.
#[derive(Default)]
struct Opt {
    reallocation: bool,
    overlap: bool,
}

impl<'de> Deserialize<'de> for Opt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Opt, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Opt;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of annotations")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Opt, E> {
                Ok(Opt::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Opt, A::Error> {
                let mut opt = Opt::default();
                while let Some(key) = map.next_key::<Annotation>()? {
                    match key {
                        Annotation::Reallocation => opt.reallocation = map.next_value::<IsTrue>()?.0,
                        Annotation::Overlap => opt.overlap = map.next_value::<IsTrue>()?.0,
                        Annotation::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(opt)
            }
        }
        d.deserialize_any(V)
    }
}

/// An annotation name, compared without keeping it.
enum Annotation {
    Reallocation,
    Overlap,
    Other,
}

impl<'de> Deserialize<'de> for Annotation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Annotation, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Annotation;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an annotation name")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Annotation, E> {
                Ok(match s {
                    ANNOTATION_ALLOW_REALLOCATION => Annotation::Reallocation,
                    ANNOTATION_ALLOW_OVERLAP => Annotation::Overlap,
                    _ => Annotation::Other,
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// Whether a value is the string `"true"`; any other value (of any type) is `false`, skipped
/// unread.
struct IsTrue(bool);

impl<'de> Deserialize<'de> for IsTrue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<IsTrue, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = IsTrue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an annotation value")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<IsTrue, E> {
                Ok(IsTrue(s == "true"))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<IsTrue, E> {
                Ok(IsTrue(false))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<IsTrue, E> {
                Ok(IsTrue(false))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<IsTrue, E> {
                Ok(IsTrue(false))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<IsTrue, E> {
                Ok(IsTrue(false))
            }
            fn visit_unit<E: de::Error>(self) -> Result<IsTrue, E> {
                Ok(IsTrue(false))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<IsTrue, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(IsTrue(false))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<IsTrue, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(IsTrue(false))
            }
        }
        d.deserialize_any(V)
    }
}

/// Decodes a review for a pool of kind `t` (the path's). The objects are decoded into the
/// controller's spec and status types; a failure there is kept in the request (its uid must be
/// echoed).
///
/// Memory stays a small multiple of the body: the body is checked for UTF-8 and nesting
/// ([`prescan::MAX_DEPTH`]) first, then read in passes that each skip what they do not need
/// without building anything (the review's fields; `object`; `oldObject`); lists in the
/// objects are capped ([`crate::api::MAX_LIST_ITEMS`]). No `serde_json::Value` is built.
pub fn parse_review(t: PoolType, body: &[u8]) -> Result<Request, NotAReview> {
    let text =
        std::str::from_utf8(body).map_err(|e| NotAReview { detail: format!("body is not UTF-8: {e}") })?;
    prescan::check_json(body, prescan::MAX_DEPTH).map_err(|e| NotAReview { detail: e.to_string() })?;
    let review: WireReview =
        serde_json::from_str(text).map_err(|e| NotAReview { detail: clip(format!("bad JSON: {e}")) })?;
    if review.api_version != REVIEW_API_VERSION || review.kind != "AdmissionReview" {
        return Err(NotAReview {
            detail: clip(format!("apiVersion {:?} kind {:?}", review.api_version, review.kind)),
        });
    }
    let r = review.request.ok_or_else(|| NotAReview { detail: "no request".into() })?;
    let WireRequest { uid, kind, operation, namespace, sub_resource, object, old_object } = r;
    let want = t.kind();
    let decode = |present: bool, field: &str, old: bool| -> Result<AnyPool, String> {
        if !kind.kind.is_empty() && kind.kind != want {
            return Err(clip(format!(
                "this path validates {want} objects, the request is for {}: fix the webhook's rules",
                kind.kind
            )));
        }
        if !present {
            return Err(format!("request.{field} is missing"));
        }
        let decoded = crate::with_kind!(t, K => if old {
            serde_json::from_str::<OldObjectPass<ReviewPool<K>>>(text).map(|p| p.request.old_object.into_any())
        } else {
            serde_json::from_str::<ObjectPass<ReviewPool<K>>>(text).map(|p| p.request.object.into_any())
        });
        decoded.map_err(|e| clip(format!("request.{field} is not a {want}: {e}")))
    };
    let object = decode(object.is_some(), "object", false);
    let old_object = old_object.map(|_| decode(true, "oldObject", true));
    Ok(Request { uid, operation, namespace, sub_resource, object, old_object })
}
