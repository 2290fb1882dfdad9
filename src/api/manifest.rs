//! Manifest decoding: text holding IPPool, CIDRPool and Node objects, as JSON or YAML, in any
//! of the shapes `kubectl` reads or writes.
//!
//! Accepted shapes, which may nest: one object; a JSON/YAML array of objects; a `kind: List`
//! (or any `*List` kind) with `items`; several YAML documents separated by `---`. Empty YAML
//! documents are skipped. Unknown kinds are an error naming the document, item and kind:
//! silently dropping a mistyped pool would plan without it.
//!
//! Text nested deeper than [`prescan::MAX_DEPTH`] is refused before any parser sees it (libyaml
//! spends time quadratic in flow nesting); lists in pool objects are capped while decoding
//! (`api::MAX_LIST_ITEMS`).
//!
//! Owns: [`decode`], [`Object`], [`Manifest`], [`ManifestError`]. Must not: read files or
//! validate specs (see `validate`).

use std::fmt;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::node::NodeMeta;
use super::{
    AnyPool, CidrPool, CidrPoolSpec, CidrPoolStatus, IpPool, IpPoolSpec, IpPoolStatus, KIND_CIDRPOOL,
    KIND_IPPOOL, KIND_NODE, Node, ObjectMeta,
};
use crate::prescan::{self, TooDeep};

/// Largest nesting of lists inside lists that is followed; deeper input is refused rather than
/// recursing without bound.
pub const MAX_LIST_DEPTH: usize = 8;

/// One decoded object.
// A manifest is mostly pools: boxing them to shrink the rare Node would cost an allocation per
// pool (the enum is as large as when it had a variant per pool kind).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Pool(AnyPool),
    Node(Node),
}

/// The objects of a manifest, in input order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Manifest {
    pub objects: Vec<Object>,
}

impl Manifest {
    pub fn ip_pools(&self) -> impl Iterator<Item = &IpPool> {
        self.objects.iter().filter_map(|o| match o {
            Object::Pool(AnyPool::Ip(p)) => Some(p),
            _ => None,
        })
    }

    pub fn cidr_pools(&self) -> impl Iterator<Item = &CidrPool> {
        self.objects.iter().filter_map(|o| match o {
            Object::Pool(AnyPool::Cidr(p)) => Some(p),
            _ => None,
        })
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.objects.iter().filter_map(|o| match o {
            Object::Node(n) => Some(n),
            _ => None,
        })
    }
}

/// Where an object sits: the YAML document (0-based) and the item path inside lists.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Position {
    pub document: usize,
    pub items: Vec<usize>,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "document {}", self.document)?;
        for i in &self.items {
            write!(f, " item {i}")?;
        }
        Ok(())
    }
}

/// Why a manifest could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestError {
    /// Not JSON or YAML.
    Syntax { document: usize, message: String },
    /// The text nests deeper than [`prescan::MAX_DEPTH`]; nothing of it was parsed.
    Nesting(TooDeep),
    /// An element is not a mapping (a string, a number...).
    NotAnObject { at: Position },
    /// An object without `kind`.
    MissingKind { at: Position },
    /// A kind this program does not handle.
    UnknownKind { at: Position, kind: String },
    /// A `*List` without an `items` array.
    ListWithoutItems { at: Position, kind: String },
    /// Lists nested deeper than [`MAX_LIST_DEPTH`].
    TooDeep { at: Position },
    /// A field of a known kind has the wrong type; `field` is its path when it could be found
    /// (down to the second level, e.g. `spec.perNodeBlockSize`).
    BadField { at: Position, kind: &'static str, name: String, field: Option<String>, message: String },
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestError::Syntax { document, message } => {
                write!(f, "document {document}: not valid JSON or YAML: {message}")
            }
            ManifestError::Nesting(e) => write!(f, "{e}"),
            ManifestError::NotAnObject { at } => {
                write!(f, "{at}: expected an object with apiVersion and kind")
            }
            ManifestError::MissingKind { at } => {
                write!(f, "{at}: has no kind: set kind to IPPool, CIDRPool or Node")
            }
            ManifestError::UnknownKind { at, kind } => {
                write!(f, "{at}: kind {kind:?} is not handled: use IPPool, CIDRPool, Node or a List of them")
            }
            ManifestError::ListWithoutItems { at, kind } => {
                write!(f, "{at}: {kind} has no items array: add items")
            }
            ManifestError::TooDeep { at } => {
                write!(f, "{at}: lists nested deeper than {MAX_LIST_DEPTH}: flatten them")
            }
            ManifestError::BadField { at, kind, name, field, message } => {
                write!(f, "{at}: {} {name:?}: ", kind.to_lowercase())?;
                if let Some(field) = field {
                    write!(f, "{field}: ")?;
                }
                f.write_str(message)
            }
        }
    }
}

impl std::error::Error for ManifestError {}

/// Decodes `text` (JSON or YAML, any shape above) into its objects, in input order.
pub fn decode(text: &str) -> Result<Manifest, ManifestError> {
    let mut out = Manifest::default();
    // JSON is YAML, so the YAML scan covers both
    prescan::check_yaml(text.as_bytes(), prescan::MAX_DEPTH).map_err(ManifestError::Nesting)?;
    // JSON is YAML, so one parser serves both; JSON first only for its better error messages.
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        collect(v, Position::default(), 0, &mut out)?;
        return Ok(out);
    }
    for (document, de) in yaml_serde::Deserializer::from_str(text).enumerate() {
        let v =
            Value::deserialize(de).map_err(|e| ManifestError::Syntax { document, message: e.to_string() })?;
        collect(v, Position { document, items: Vec::new() }, 0, &mut out)?;
    }
    Ok(out)
}

fn collect(v: Value, at: Position, depth: usize, out: &mut Manifest) -> Result<(), ManifestError> {
    if depth > MAX_LIST_DEPTH {
        return Err(ManifestError::TooDeep { at });
    }
    let items = match v {
        Value::Null => return Ok(()), // an empty YAML document, e.g. after a trailing `---`
        Value::Array(items) => items,
        Value::Object(ref m) => {
            let kind = match m.get("kind") {
                Some(Value::String(k)) => k.clone(),
                _ => return Err(ManifestError::MissingKind { at }),
            };
            if kind.ends_with("List") {
                match v {
                    Value::Object(mut m) => match m.remove("items") {
                        Some(Value::Array(items)) => items,
                        Some(Value::Null) => Vec::new(),
                        _ => return Err(ManifestError::ListWithoutItems { at, kind }),
                    },
                    _ => unreachable!("matched as an object above"),
                }
            } else {
                out.objects.push(object(v, kind, at)?);
                return Ok(());
            }
        }
        _ => return Err(ManifestError::NotAnObject { at }),
    };
    for (i, item) in items.into_iter().enumerate() {
        let mut p = at.clone();
        p.items.push(i);
        collect(item, p, depth + 1, out)?;
    }
    Ok(())
}

fn object(v: Value, kind: String, at: Position) -> Result<Object, ManifestError> {
    let name = v.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    let bad = |kind: &'static str, e: serde_json::Error, field: Option<String>| ManifestError::BadField {
        at: at.clone(),
        kind,
        name: name.clone(),
        field,
        message: e.to_string(),
    };
    match kind.as_str() {
        KIND_IPPOOL => serde_json::from_value(v.clone())
            .map(|p| Object::Pool(AnyPool::Ip(p)))
            .map_err(|e| bad(KIND_IPPOOL, e, locate::<IpPool, ObjectMeta, IpPoolSpec, IpPoolStatus>(&v))),
        KIND_CIDRPOOL => {
            serde_json::from_value(v.clone()).map(|p| Object::Pool(AnyPool::Cidr(p))).map_err(|e| {
                bad(KIND_CIDRPOOL, e, locate::<CidrPool, ObjectMeta, CidrPoolSpec, CidrPoolStatus>(&v))
            })
        }
        KIND_NODE => serde_json::from_value(v.clone())
            .map(Object::Node)
            .map_err(|e| bad(KIND_NODE, e, locate::<Node, NodeMeta, NodeMeta, NodeMeta>(&v))),
        _ => Err(ManifestError::UnknownKind { at, kind }),
    }
}

/// The path of the field that failed to decode: serde_json's `from_value` errors carry no
/// path, so each key is retried alone (every field of our raw types has a default, so only the
/// bad one fails). Runs on the error path only.
fn locate<T: DeserializeOwned, M: DeserializeOwned, S: DeserializeOwned, U: DeserializeOwned>(
    v: &Value,
) -> Option<String> {
    let top = failing_key::<T>(v)?;
    let inner = match top.as_str() {
        "spec" => v.get("spec").and_then(failing_key::<S>),
        "status" => v.get("status").and_then(failing_key::<U>),
        "metadata" => v.get("metadata").and_then(failing_key::<M>),
        _ => None,
    };
    Some(match inner {
        Some(i) => format!("{top}.{i}"),
        None => top,
    })
}

fn failing_key<T: DeserializeOwned>(v: &Value) -> Option<String> {
    let m = v.as_object()?;
    m.iter()
        .find(|(k, val)| {
            let mut one = serde_json::Map::new();
            one.insert((*k).clone(), (*val).clone());
            serde_json::from_value::<T>(Value::Object(one)).is_err()
        })
        .map(|(k, _)| k.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL_YAML: &str = "apiVersion: nv-ipam.nvidia.com/v1alpha1
kind: IPPool
metadata:
  name: pool1
  namespace: kube-system
spec:
  subnet: 192.168.0.0/16
  perNodeBlockSize: 4
  gateway: 192.168.0.1
";

    fn names(m: &Manifest) -> Vec<String> {
        m.objects
            .iter()
            .map(|o| match o {
                Object::Pool(p) => format!("{}/{}", p.pool_type(), p.name()),
                Object::Node(n) => format!("node/{}", n.name()),
            })
            .collect()
    }

    #[test]
    fn single_yaml_object_round_trips_metadata() {
        let m = decode(POOL_YAML).expect("decodes");
        assert_eq!(names(&m), ["ippool/pool1"]);
        let Object::Pool(AnyPool::Ip(p)) = &m.objects[0] else { panic!("not an ippool") };
        assert_eq!(p.spec.per_node_block_size, 4);
        let json = serde_json::to_value(p).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({
                "apiVersion": "nv-ipam.nvidia.com/v1alpha1", "kind": "IPPool",
                "metadata": {"name": "pool1", "namespace": "kube-system"},
                "spec": {"subnet": "192.168.0.0/16", "perNodeBlockSize": 4, "gateway": "192.168.0.1"}
            })
        );
    }

    #[test]
    fn multi_document_lists_and_arrays() {
        let text = format!(
            "{POOL_YAML}---\nkind: NodeList\nitems:\n- kind: Node\n  metadata: {{name: n1, labels: {{a: b}}}}\n\
             - kind: List\n  items: [{{kind: Node, metadata: {{name: n2}}}}]\n---\n---\n\
             - {{kind: CIDRPool, metadata: {{name: c1}}, spec: {{cidr: 10.0.0.0/8}}}}\n"
        );
        let m = decode(&text).expect("decodes");
        assert_eq!(names(&m), ["ippool/pool1", "node/n1", "node/n2", "cidrpool/c1"]);
        assert_eq!(m.nodes().next().map(|n| n.labels().len()), Some(1));
        let json = r#"{"apiVersion":"v1","kind":"List","items":[{"kind":"Node","metadata":{"name":"x"}}]}"#;
        assert_eq!(names(&decode(json).expect("json list")), ["node/x"]);
        assert_eq!(names(&decode("").expect("empty")), Vec::<String>::new());
    }

    #[test]
    fn errors_name_the_document_and_item() {
        let e = decode("kind: Node\nmetadata: {name: a}\n---\nkind: List\nitems:\n- kind: Pod\n")
            .expect_err("unknown kind");
        assert_eq!(
            e.to_string(),
            "document 1 item 0: kind \"Pod\" is not handled: use IPPool, CIDRPool, Node or a List of them"
        );
        assert_eq!(
            decode("- 5").expect_err("scalar").to_string(),
            "document 0 item 0: expected an object with apiVersion and kind"
        );
        assert_eq!(
            decode("metadata: {name: a}").expect_err("no kind").to_string(),
            "document 0: has no kind: set kind to IPPool, CIDRPool or Node"
        );
        assert_eq!(
            decode("kind: List").expect_err("no items").to_string(),
            "document 0: List has no items array: add items"
        );
        let e =
            decode("kind: IPPool\nmetadata: {name: p}\nspec: {perNodeBlockSize: many}\n").expect_err("type");
        assert_eq!(
            e.to_string(),
            "document 0: ippool \"p\": spec.perNodeBlockSize: invalid type: string \"many\", expected i64"
        );
        let e = decode("kind: Node\nmetadata: {name: n, labels: [a]}\n").expect_err("type");
        assert_eq!(
            e.to_string(),
            "document 0: node \"n\": metadata.labels: invalid type: sequence, expected a map"
        );
        let e = decode("a: [\n").expect_err("syntax");
        assert!(e.to_string().starts_with("document 0: not valid JSON or YAML: "), "{e}");
    }

    #[test]
    fn deep_text_is_refused_before_parsing() {
        // 100,000 levels: before the pre-scan, 44 s of CPU in libyaml (JSON is retried as YAML)
        for text in [
            format!(
                "kind: IPPool\nmetadata: {{name: a}}\nspec: {{x: {}{}}}\n",
                "[".repeat(100_000),
                "]".repeat(100_000)
            ),
            format!("{{\"kind\":\"IPPool\",\"x\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000)),
            format!("kind: IPPool\nx:\n{}a\n", "- ".repeat(100_000)),
        ] {
            let e = decode(&text).expect_err("too deep");
            assert!(matches!(e, ManifestError::Nesting(_)), "{e}");
            assert!(e.to_string().starts_with("nested deeper than the limit of 64 levels at line "), "{e}");
        }
        // at the limit: the object is level 1, so an unknown field may nest 63 more
        let n = prescan::MAX_DEPTH - 1;
        let ok = format!(
            "{{\"kind\":\"Node\",\"metadata\":{{\"name\":\"n\"}},\"x\":{}{}}}",
            "[".repeat(n),
            "]".repeat(n)
        );
        assert_eq!(decode(&ok).expect("at the limit").objects.len(), 1);
    }

    #[test]
    fn pool_lists_are_capped_while_decoding() {
        let pool = |n: usize| {
            let exclusions = vec![serde_json::json!({}); n];
            serde_json::json!({"kind": "IPPool", "metadata": {"name": "p"}, "spec": {"exclusions": exclusions}})
                .to_string()
        };
        let m = decode(&pool(super::super::MAX_SPEC_LIST_ITEMS)).expect("at the limit");
        let Object::Pool(AnyPool::Ip(p)) = &m.objects[0] else { panic!("an ippool") };
        assert_eq!(p.spec.exclusions.len(), super::super::MAX_SPEC_LIST_ITEMS);
        let e = decode(&pool(super::super::MAX_SPEC_LIST_ITEMS + 1)).expect_err("one more");
        assert_eq!(
            e.to_string(),
            "document 0: ippool \"p\": spec.exclusions: more than 4096 entries in a list (the limit); split or shorten it"
        );
        let status = |n: usize| {
            let a = vec![serde_json::json!({}); n];
            serde_json::json!({"kind": "CIDRPool", "metadata": {"name": "c"}, "status": {"allocations": a}})
                .to_string()
        };
        assert!(decode(&status(super::super::MAX_LIST_ITEMS)).is_ok());
        let e = decode(&status(super::super::MAX_LIST_ITEMS + 1)).expect_err("one more");
        assert!(e.to_string().contains("status.allocations: more than 65536 entries"), "{e}");
        // the values of a selector share one budget across its requirements
        let req = serde_json::json!({"key": "k", "operator": "In", "values": vec!["a"; 1000]});
        let sel = |terms: usize| {
            let t = serde_json::json!({"matchExpressions": vec![req.clone(); 4]});
            serde_json::json!({"kind": "IPPool", "metadata": {"name": "p"},
                "spec": {"nodeSelector": {"nodeSelectorTerms": vec![t; terms]}}})
            .to_string()
        };
        assert!(decode(&sel(super::super::MAX_SELECTOR_VALUES / 4000)).is_ok());
        let e = decode(&sel(super::super::MAX_SELECTOR_VALUES / 4000 + 1)).expect_err("over the budget");
        assert!(e.to_string().contains("more than 16384 values in one node selector (the limit)"), "{e}");
        let terms = vec![serde_json::json!({}); super::super::MAX_SELECTOR_ITEMS + 1];
        let text = serde_json::json!({"kind": "IPPool", "metadata": {"name": "p"},
            "spec": {"nodeSelector": {"nodeSelectorTerms": terms}}});
        let e = decode(&text.to_string()).expect_err("too many terms");
        assert!(e.to_string().contains("spec.nodeSelector: more than 64 entries"), "{e}");
    }
}
