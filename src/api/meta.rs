//! Object metadata as the pools carry it: the name we need, everything else kept verbatim
//! except `managedFields`.
//!
//! Owns: [`ObjectMeta`]. Must not: interpret namespace, labels, uid or resourceVersion; they are
//! carried through untouched so that a planned pool can be written back as it was read.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

/// `metadata` of an object: `name` plus every other field preserved in `rest`.
///
/// Decoding drops `managedFields`: the API server's own bookkeeping, usually the largest and
/// deepest part of an object, which nothing here reads and no client should write back. It
/// decodes in one pass (no `#[serde(flatten)]`, which would buffer the whole map first).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ObjectMeta {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// namespace, labels, uid, resourceVersion, ...: kept so that objects round-trip.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

impl ObjectMeta {
    pub fn named(name: impl Into<String>) -> ObjectMeta {
        ObjectMeta { name: name.into(), rest: serde_json::Map::new() }
    }
}

impl<'de> Deserialize<'de> for ObjectMeta {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
        d.deserialize_map(MetaVisitor)
    }
}

struct MetaVisitor;

impl<'de> Visitor<'de> for MetaVisitor {
    type Value = ObjectMeta;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("object metadata (a map)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ObjectMeta, A::Error> {
        let mut meta = ObjectMeta::default();
        let mut named = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "name" if named => return Err(de::Error::duplicate_field("name")),
                "name" => {
                    meta.name = map.next_value()?;
                    named = true;
                }
                "managedFields" => {
                    map.next_value::<IgnoredAny>()?;
                }
                _ => {
                    let v = map.next_value()?;
                    meta.rest.insert(key, v);
                }
            }
        }
        Ok(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_everything_but_managed_fields() {
        let v = json!({"name": "p", "namespace": "ns", "labels": {"a": "b"}, "resourceVersion": "7",
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {"f:subnet": {}}}}]});
        let m: ObjectMeta = serde_json::from_value(v.clone()).expect("decodes");
        assert_eq!(m.name, "p");
        assert_eq!(m.rest.len(), 3);
        assert!(!m.rest.contains_key("managedFields"));
        let mut want = v;
        want.as_object_mut().expect("object").remove("managedFields");
        assert_eq!(serde_json::to_value(&m).expect("encodes"), want);
        let from_text: ObjectMeta = serde_json::from_str(r#"{"uid":"u","name":"n"}"#).expect("decodes");
        assert_eq!((from_text.name.as_str(), from_text.rest["uid"].as_str()), ("n", Some("u")));
        assert!(serde_json::from_str::<ObjectMeta>(r#"{"name":"a","name":"b"}"#).is_err());
        assert!(serde_json::from_str::<ObjectMeta>(r#"{"name":5}"#).is_err());
        assert!(serde_json::from_str::<ObjectMeta>("[]").is_err());
    }
}
