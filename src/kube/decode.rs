//! What the API server sends back, turned into typed objects: the nesting check of every body
//! and line, list pages, watch event lines, and [`Decoded`] (an object that did not decode
//! still has its name and resourceVersion). One decoder per shape: a watch line is decoded
//! once, into [`Decoded`]; the strict view ([`strict`]) only turns a bad object into an
//! error.
//!
//! ```text
//! watch stream:  {"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":{...}}\n  (one per line)
//! ```
//!
//! Owns: the wire shapes of pages and events, and their decoding without `Value` trees of
//! objects. Must not: do I/O (see `client` and `watch`).

use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::Value;

use super::error::KubeError;
use super::resource::WatchEvent;
use crate::bounded::clip;
use crate::prescan;

/// A `Status` object (HTTP error body or the object of a watch ERROR event) as an error.
/// `fallback_code` is used when the object carries no code.
pub fn status_from_value(verb: &str, path: &str, fallback_code: u16, v: &Value) -> KubeError {
    let code = v
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| *c != 0)
        .unwrap_or(fallback_code);
    let reason = v.get("reason").and_then(Value::as_str).unwrap_or_default().to_string();
    let msg = v.get("message").and_then(Value::as_str).unwrap_or("no message");
    KubeError::Status { code, reason, message: format!("{verb} {path}: {msg}") }
}

/// The nesting check of every response body and watch line: deeper than
/// [`prescan::MAX_DEPTH`] is refused before serde sees it (a buggy or hostile server or proxy
/// must not cost more than a scan).
pub(super) fn nesting(bytes: &[u8]) -> Result<(), String> {
    prescan::check_json(bytes, prescan::MAX_DEPTH).map(|_| ()).map_err(|e| format!("response {e}"))
}

/// A page of [`Client::list_decoded`]: straight into `T`, or, when some item does not decode,
/// item by item from the item's own bytes.
pub(super) fn decode_page_decoded<T: DeserializeOwned>(
    path: &str,
    bytes: &[u8],
) -> Result<(Vec<Decoded<T>>, ListMeta), KubeError> {
    let bad = |detail: String| KubeError::Decode { verb: "list", path: path.to_string(), detail };
    nesting(bytes).map_err(bad)?;
    let e = match serde_json::from_slice::<Page<T>>(bytes) {
        Ok(page) => {
            let items = page.items.unwrap_or_default().into_iter().map(Decoded::ok).collect();
            return Ok((items, page.metadata));
        }
        Err(e) => e,
    };
    // some object does not decode as T: find which, keep the others
    let meta =
        serde_json::from_slice::<PageMeta>(bytes).map_err(|_| bad(clip(format!("bad list page: {e}"))))?;
    let spans = match prescan::json_array_items(bytes, "items") {
        Some(spans) => spans,
        None if meta.items.is_none() => Vec::new(),
        None => return Err(bad(clip(format!("bad list page: {e}")))),
    };
    let items = spans.into_iter().map(|span| Decoded::from_slice(&bytes[span])).collect();
    Ok((items, meta.metadata))
}

/// A list page without its items (they are decoded one by one).
#[derive(serde::Deserialize)]
struct PageMeta {
    #[serde(default)]
    items: Option<IgnoredAny>,
    #[serde(default)]
    metadata: ListMeta,
}

/// One page of a list response.
#[derive(serde::Deserialize)]
pub(super) struct Page<T> {
    #[serde(default = "Option::default")]
    pub(super) items: Option<Vec<T>>,
    #[serde(default)]
    pub(super) metadata: ListMeta,
}

#[derive(serde::Deserialize, Default, Debug)]
pub(super) struct ListMeta {
    #[serde(rename = "resourceVersion", default)]
    pub(super) resource_version: String,
    #[serde(rename = "continue", default)]
    pub(super) cont: Option<String>,
}

/// One object of a list or watch as the reflector needs it: the object if it decodes as `T`,
/// else why not; and its name and resourceVersion, read separately so that an object that does
/// not decode can still be named and its resourceVersion still followed.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded<T> {
    /// `metadata.name` (empty for list items that decoded: nobody needs it then).
    pub name: String,
    /// `metadata.resourceVersion` (empty for list items: the list's own version counts).
    pub resource_version: String,
    pub object: Result<T, String>,
}

impl<T> Decoded<T> {
    fn ok(t: T) -> Decoded<T> {
        Decoded { name: String::new(), resource_version: String::new(), object: Ok(t) }
    }
}

impl<T: DeserializeOwned> Decoded<T> {
    /// From one object's bytes (a list page with a bad object): name and resourceVersion are
    /// read apart from the object, so that a bad one can still be named.
    pub fn from_slice(bytes: &[u8]) -> Decoded<T> {
        let meta = serde_json::from_slice::<HeadObject>(bytes).map(|h| h.metadata).unwrap_or_default();
        let object = serde_json::from_slice(bytes).map_err(|e| clip(e.to_string()));
        Decoded { name: meta.name, resource_version: meta.resource_version, object }
    }

    /// From an already parsed object (tests, scripted reflector sources).
    pub fn from_value(v: Value) -> Decoded<T> {
        let field = |f: &str| v["metadata"][f].as_str().unwrap_or_default().to_string();
        let (name, resource_version) = (field("name"), field("resourceVersion"));
        let object = serde_json::from_value(v).map_err(|e| e.to_string());
        Decoded { name, resource_version, object }
    }
}

/// The parts of a watch line every event needs; serde skips the rest of the object unread.
#[derive(serde::Deserialize)]
struct EventHead {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    object: HeadObject,
}

#[derive(serde::Deserialize, Default)]
struct HeadObject {
    #[serde(default)]
    metadata: HeadMeta,
}

#[derive(serde::Deserialize, Default)]
struct HeadMeta {
    #[serde(default)]
    name: String,
    #[serde(rename = "resourceVersion", default)]
    resource_version: String,
}

/// The object of a watch line, decoded straight into `T`.
#[derive(serde::Deserialize)]
struct EventObject<T> {
    object: T,
}

/// Decodes one watch line. `Ok(None)` for a blank line. An object that does not decode as `T`
/// is an `Err` inside [`Decoded`], not an error of the stream: the line itself was fine. The
/// line is parsed twice (head, then object) rather than through a `Value` tree, which for a
/// 400 KB pool costs ten times its size in memory.
pub fn decode_event_line<T: DeserializeOwned>(
    path: &str,
    line: &[u8],
) -> Result<Option<WatchEvent<Decoded<T>>>, KubeError> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let decode = |detail: String| KubeError::Decode { verb: "watch", path: path.to_string(), detail };
    // too deep: the event may still be named (serde_json skips up to 128 levels unread), its
    // object is not decoded
    let too_deep = nesting(line).err();
    let head: EventHead = serde_json::from_slice(line).map_err(|e| {
        decode(clip(format!("bad event line: {}", too_deep.clone().unwrap_or_else(|| e.to_string()))))
    })?;
    let obj = || Decoded {
        name: head.object.metadata.name.clone(),
        resource_version: head.object.metadata.resource_version.clone(),
        object: match &too_deep {
            Some(e) => Err(e.clone()),
            None => serde_json::from_slice::<EventObject<T>>(line)
                .map(|o| o.object)
                .map_err(|e| clip(e.to_string())),
        },
    };
    let ev = match head.kind.as_str() {
        "ADDED" => WatchEvent::Added(obj()),
        "MODIFIED" => WatchEvent::Modified(obj()),
        "DELETED" => WatchEvent::Deleted(obj()),
        "BOOKMARK" => WatchEvent::Bookmark { resource_version: head.object.metadata.resource_version },
        "ERROR" => {
            // a Status: small, so a Value is fine once the nesting is checked
            if let Some(e) = too_deep {
                return Err(decode(format!("bad ERROR event: {e}")));
            }
            let status: EventObject<Value> =
                serde_json::from_slice(line).map_err(|e| decode(clip(format!("bad ERROR event: {e}"))))?;
            return Err(status_from_value("watch", path, 500, &status.object));
        }
        other => return Err(decode(format!("unknown event type {other:?}"))),
    };
    Ok(Some(ev))
}

/// The strict view of a decoded event: an object that does not decode as `T` is an error
/// naming the event, instead of an `Err` inside [`Decoded`].
pub fn strict<T>(path: &str, ev: WatchEvent<Decoded<T>>) -> Result<WatchEvent<T>, KubeError> {
    let strict = |kind: &str, d: Decoded<T>| {
        d.object.map_err(|e| KubeError::Decode {
            verb: "watch",
            path: path.to_string(),
            detail: format!("bad {kind} object: {e}"),
        })
    };
    Ok(match ev {
        WatchEvent::Added(d) => WatchEvent::Added(strict("ADDED", d)?),
        WatchEvent::Modified(d) => WatchEvent::Modified(strict("MODIFIED", d)?),
        WatchEvent::Deleted(d) => WatchEvent::Deleted(strict("DELETED", d)?),
        WatchEvent::Bookmark { resource_version } => WatchEvent::Bookmark { resource_version },
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// One line decoded as [`crate::kube::WatchStream`]'s iterator does: the one
    /// decoder, then the strict view.
    fn decode_strict<T: DeserializeOwned>(p: &str, line: &[u8]) -> Result<Option<WatchEvent<T>>, KubeError> {
        decode_event_line(p, line)?.map(|ev| strict(p, ev)).transpose()
    }

    #[test]
    fn decodes_events() {
        let p = "/api/v1/nodes";
        let ev: WatchEvent<Value> =
            decode_strict(p, br#"{"type":"ADDED","object":{"metadata":{"name":"a"}}}"#).unwrap().unwrap();
        assert_eq!(ev, WatchEvent::Added(serde_json::json!({"metadata":{"name":"a"}})));
        let ev: WatchEvent<Value> = decode_strict(
            p,
            br#"{"type":"BOOKMARK","object":{"kind":"Node","metadata":{"resourceVersion":"42"}}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(ev, WatchEvent::Bookmark { resource_version: "42".into() });
        assert!(decode_strict::<Value>(p, b"  \r").unwrap().is_none());
        let e = decode_strict::<Value>(
            p,
            br#"{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old resource version: 1 (5)"}}"#,
        )
        .unwrap_err();
        assert!(e.is_gone(), "{e:?}");
        assert_eq!(
            e.to_string(),
            "watch /api/v1/nodes: too old resource version: 1 (5) (410 Expired); gone: the resourceVersion is too old; relist"
        );
        let e = decode_strict::<Value>(p, b"{not json").unwrap_err();
        assert!(matches!(e, KubeError::Decode { .. }), "{e:?}");
        let e = decode_strict::<Value>(p, br#"{"type":"WHAT","object":{}}"#).unwrap_err();
        assert!(e.to_string().contains("unknown event type \"WHAT\""), "{e}");
    }

    #[test]
    fn typed_decode_error_names_the_event() {
        #[derive(serde::Deserialize, Debug)]
        struct N {
            #[allow(dead_code)]
            spec: u32,
        }
        let e = decode_strict::<N>("/x", br#"{"type":"MODIFIED","object":{"spec":"no"}}"#).unwrap_err();
        assert!(e.to_string().contains("bad MODIFIED object"), "{e}");
    }

    #[test]
    fn deep_lines_and_pages_are_refused_before_decoding() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct N {
            metadata: HeadMeta2,
        }
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct HeadMeta2 {
            name: String,
        }
        // deeper than the limit but within serde_json's 128: the event is named, its object refused
        let deep = |n: usize| format!("{}0{}", "[".repeat(n), "]".repeat(n));
        let line =
            format!(r#"{{"type":"MODIFIED","object":{{"metadata":{{"name":"x"}},"spec":{}}}}}"#, deep(100));
        let Some(WatchEvent::Modified(d)) = decode_event_line::<N>("/x", line.as_bytes()).unwrap() else {
            panic!("a modified event")
        };
        assert_eq!(d.name, "x");
        assert!(d.object.unwrap_err().contains("nested deeper than the limit of 64 levels"));
        // 100,000 levels: the line is an error of the stream, at once
        let line = format!(r#"{{"type":"ADDED","object":{}}}"#, deep(100_000));
        let e = decode_strict::<Value>("/x", line.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("nested deeper than the limit of 64 levels"), "{e}");
        // at the limit the line decodes (event 1, object 2, spec 3 ...)
        let line =
            format!(r#"{{"type":"ADDED","object":{{"metadata":{{"name":"x"}},"spec":{}}}}}"#, deep(62));
        assert!(matches!(decode_strict::<N>("/x", line.as_bytes()).unwrap(), Some(WatchEvent::Added(_))));
        let page = format!(r#"{{"metadata":{{"resourceVersion":"5"}},"items":[{}]}}"#, deep(100_000));
        let e = decode_page_decoded::<N>("/x", page.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("nested deeper than the limit"), "{e}");
    }

    #[test]
    fn a_page_with_a_bad_item_is_decoded_item_by_item() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct N {
            spec: u32,
        }
        let page = br#"{"kind":"List","metadata":{"resourceVersion":"9","continue":"c"},"items":[
            {"metadata":{"name":"a"},"spec":1},
            {"metadata":{"name":"b","resourceVersion":"7"},"spec":"bad"},
            {"spec":3}]}"#;
        let (items, meta) = decode_page_decoded::<N>("/x", page).unwrap();
        assert_eq!((meta.resource_version.as_str(), meta.cont.as_deref()), ("9", Some("c")));
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].object, Ok(N { spec: 1 }));
        assert_eq!((items[1].name.as_str(), items[1].resource_version.as_str()), ("b", "7"));
        assert!(items[1].object.as_ref().is_err_and(|e| e.contains("invalid type")));
        assert_eq!(items[2].object, Ok(N { spec: 3 }));
        // the fast path: every item decodes
        let (items, _) = decode_page_decoded::<N>("/x", br#"{"items":[{"spec":1}]}"#).unwrap();
        assert_eq!(items, [Decoded::ok(N { spec: 1 })]);
        let (items, _) = decode_page_decoded::<N>("/x", br#"{"metadata":{}}"#).unwrap();
        assert!(items.is_empty());
        assert!(decode_page_decoded::<N>("/x", br#"{"items":5}"#).is_err());
    }
}
