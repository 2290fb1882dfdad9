//! core/v1 NodeSelector: the wire shape, its validation rules, and matching nodes against it.
//!
//! Decoding (bounded, by hand) is `decode`'s.
//!
//! Owns: [`NodeSelector`] (raw), [`ValidNodeSelector`] (parsed operators and values) and
//! [`select_nodes`]. Semantics follow Kubernetes: terms are ORed, the requirements of one term
//! are ANDed, an empty term matches nothing, no selector matches every node. Must not: look up
//! nodes; callers pass them in.

mod decode;

use std::collections::BTreeMap;

use serde::Serialize;

use super::Node;
use super::validate::FieldError;

/// `{nodeSelectorTerms: [...]}` as written. Decoded by hand (see `selector/decode.rs`) so that
/// one budget bounds the `values` of all its requirements together.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSelector {
    pub node_selector_terms: Vec<NodeSelectorTerm>,
}

/// One term: label expressions and field expressions, all of which must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSelectorTerm {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<NodeSelectorRequirement>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub match_fields: Vec<NodeSelectorRequirement>,
}

/// `{key, operator, values}` as written; the operator stays text so a bad one can be reported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeSelectorRequirement {
    pub key: String,
    pub operator: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// A label requirement with its operator parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelRequirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
    Gt(String, i64),
    Lt(String, i64),
}

/// A field requirement: only `metadata.name` In/NotIn one value is allowed (reference rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldRequirement {
    NameIn(String),
    NameNotIn(String),
}

/// One validated term.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidTerm {
    pub labels: Vec<LabelRequirement>,
    pub fields: Vec<FieldRequirement>,
}

/// A validated NodeSelector: at least one term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidNodeSelector {
    pub terms: Vec<ValidTerm>,
}

impl LabelRequirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            LabelRequirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            // Kubernetes: NotIn also matches a node without the label.
            LabelRequirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            LabelRequirement::Exists(k) => labels.contains_key(k),
            LabelRequirement::DoesNotExist(k) => !labels.contains_key(k),
            LabelRequirement::Gt(k, n) => {
                labels.get(k).and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v > *n)
            }
            LabelRequirement::Lt(k, n) => {
                labels.get(k).and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v < *n)
            }
        }
    }
}

impl ValidTerm {
    fn matches(&self, node: &Node) -> bool {
        if self.labels.is_empty() && self.fields.is_empty() {
            return false; // Kubernetes: an empty term selects no objects
        }
        self.labels.iter().all(|r| r.matches(node.labels()))
            && self.fields.iter().all(|f| match f {
                FieldRequirement::NameIn(n) => node.name() == n,
                FieldRequirement::NameNotIn(n) => node.name() != n,
            })
    }
}

impl ValidNodeSelector {
    pub fn matches(&self, node: &Node) -> bool {
        self.terms.iter().any(|t| t.matches(node))
    }
}

/// Names of the nodes `selector` matches (all nodes when `None`), sorted and de-duplicated as
/// the planners expect. Nodes without a name are ignored.
pub fn select_nodes(selector: Option<&ValidNodeSelector>, nodes: &[Node]) -> Vec<String> {
    let mut names: Vec<String> = nodes
        .iter()
        .filter(|n| !n.name().is_empty())
        .filter(|n| selector.is_none_or(|s| s.matches(n)))
        .map(|n| n.name().to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Validates `sel` (found at `path`), pushing one error per broken rule; `None` when any rule
/// broke.
pub(crate) fn validate_node_selector(
    sel: &NodeSelector,
    path: &str,
    errs: &mut Vec<FieldError>,
) -> Option<ValidNodeSelector> {
    let before = errs.len();
    if sel.node_selector_terms.is_empty() {
        errs.push(FieldError::new(
            format!("{path}.nodeSelectorTerms"),
            "must have at least one term (omit nodeSelector to select every node)",
        ));
    }
    let mut terms = Vec::new();
    for (i, term) in sel.node_selector_terms.iter().enumerate() {
        let tpath = format!("{path}.nodeSelectorTerms[{i}]");
        let mut vt = ValidTerm::default();
        for (j, req) in term.match_expressions.iter().enumerate() {
            let rpath = format!("{tpath}.matchExpressions[{j}]");
            if let Some(r) = label_requirement(req, &rpath, errs) {
                vt.labels.push(r);
            }
        }
        for (j, req) in term.match_fields.iter().enumerate() {
            let rpath = format!("{tpath}.matchFields[{j}]");
            if let Some(r) = field_requirement(req, &rpath, errs) {
                vt.fields.push(r);
            }
        }
        terms.push(vt);
    }
    (errs.len() == before).then_some(ValidNodeSelector { terms })
}

fn label_requirement(
    req: &NodeSelectorRequirement,
    path: &str,
    errs: &mut Vec<FieldError>,
) -> Option<LabelRequirement> {
    let before = errs.len();
    if let Err(why) = check_qualified_name(&req.key) {
        errs.push(FieldError::new(format!("{path}.key"), format!("{:?} {why}", req.key)));
    }
    let vpath = format!("{path}.values");
    let key = req.key.clone();
    let values = req.values.clone();
    let r = match req.operator.as_str() {
        "In" | "NotIn" => {
            if values.is_empty() {
                errs.push(FieldError::new(vpath, format!("must be set when operator is {}", req.operator)));
            }
            if req.operator == "In" {
                LabelRequirement::In(key, values)
            } else {
                LabelRequirement::NotIn(key, values)
            }
        }
        "Exists" | "DoesNotExist" => {
            if !values.is_empty() {
                errs.push(FieldError::new(vpath, format!("must be empty when operator is {}", req.operator)));
            }
            if req.operator == "Exists" {
                LabelRequirement::Exists(key)
            } else {
                LabelRequirement::DoesNotExist(key)
            }
        }
        "Gt" | "Lt" => {
            let n = match values.as_slice() {
                [v] => match v.parse::<i64>() {
                    Ok(n) => n,
                    Err(_) => {
                        errs.push(FieldError::new(
                            format!("{vpath}[0]"),
                            format!("{v:?} must be an integer for operator {}", req.operator),
                        ));
                        0
                    }
                },
                _ => {
                    errs.push(FieldError::new(
                        vpath,
                        format!("must hold exactly one value when operator is {}", req.operator),
                    ));
                    0
                }
            };
            if req.operator == "Gt" { LabelRequirement::Gt(key, n) } else { LabelRequirement::Lt(key, n) }
        }
        other => {
            errs.push(FieldError::new(
                format!("{path}.operator"),
                format!("{other:?} is not an operator; use In, NotIn, Exists, DoesNotExist, Gt or Lt"),
            ));
            return None;
        }
    };
    (errs.len() == before).then_some(r)
}

fn field_requirement(
    req: &NodeSelectorRequirement,
    path: &str,
    errs: &mut Vec<FieldError>,
) -> Option<FieldRequirement> {
    let before = errs.len();
    if req.key != "metadata.name" {
        errs.push(FieldError::new(
            format!("{path}.key"),
            format!("{:?} is not a supported field; only metadata.name is", req.key),
        ));
    }
    let op_ok = matches!(req.operator.as_str(), "In" | "NotIn");
    if !op_ok {
        errs.push(FieldError::new(
            format!("{path}.operator"),
            format!("{:?} is not allowed for a field selector; use In or NotIn", req.operator),
        ));
    }
    if req.values.len() != 1 {
        errs.push(FieldError::new(
            format!("{path}.values"),
            "must hold exactly one node name for a field selector",
        ));
    }
    if errs.len() != before {
        return None;
    }
    let v = req.values.first().cloned().unwrap_or_default();
    Some(if req.operator == "In" { FieldRequirement::NameIn(v) } else { FieldRequirement::NameNotIn(v) })
}

/// Kubernetes qualified name: `[prefix/]name`, name 1-63 of `[A-Za-z0-9._-]` starting and ending
/// alphanumeric, prefix a DNS-1123 subdomain of at most 253 characters.
fn check_qualified_name(key: &str) -> Result<(), &'static str> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if name.is_empty() || name.len() > 63 {
        return Err("is not a qualified label key: the name part must be 1-63 characters");
    }
    let alnum = |c: char| c.is_ascii_alphanumeric();
    let first_last_ok = name.starts_with(alnum) && name.ends_with(alnum);
    if !first_last_ok || !name.chars().all(|c| alnum(c) || matches!(c, '-' | '_' | '.')) {
        return Err("is not a qualified label key: use alphanumerics, '-', '_' or '.', starting and \
                    ending with an alphanumeric");
    }
    if let Some(p) = prefix {
        let lower = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.starts_with(lower)
                && l.ends_with(lower)
                && l.chars().all(|c| lower(c) || c == '-')
        };
        if p.is_empty() || p.len() > 253 || !p.split('.').all(label_ok) {
            return Err("is not a qualified label key: the prefix must be a lower-case DNS subdomain");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    fn sel(terms: Vec<(Vec<NodeSelectorRequirement>, Vec<NodeSelectorRequirement>)>) -> NodeSelector {
        NodeSelector {
            node_selector_terms: terms
                .into_iter()
                .map(|(e, f)| NodeSelectorTerm { match_expressions: e, match_fields: f })
                .collect(),
        }
    }

    fn check(s: &NodeSelector) -> Result<ValidNodeSelector, Vec<String>> {
        let mut errs = Vec::new();
        validate_node_selector(s, "spec.nodeSelector", &mut errs)
            .ok_or_else(|| errs.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn terms_are_ored_and_expressions_anded() {
        let s = check(&sel(vec![
            (vec![req("role", "In", &["gpu"]), req("zone", "Exists", &[])], vec![]),
            (vec![], vec![req("metadata.name", "In", &["special"])]),
        ]))
        .expect("valid");
        let nodes = vec![
            Node::new("a", &[("role", "gpu"), ("zone", "z1")]),
            Node::new("b", &[("role", "gpu")]),
            Node::new("special", &[]),
            Node::new("c", &[("role", "cpu"), ("zone", "z1")]),
        ];
        assert_eq!(select_nodes(Some(&s), &nodes), ["a", "special"]);
        assert_eq!(select_nodes(None, &nodes), ["a", "b", "c", "special"]);
    }

    #[test]
    fn operators_follow_kubernetes() {
        let labels = |l: &[(&str, &str)]| Node::new("n", l);
        let one = |r: NodeSelectorRequirement| check(&sel(vec![(vec![r], vec![])])).expect("valid");
        assert!(one(req("a", "NotIn", &["x"])).matches(&labels(&[])));
        assert!(!one(req("a", "NotIn", &["x"])).matches(&labels(&[("a", "x")])));
        assert!(one(req("a", "DoesNotExist", &[])).matches(&labels(&[])));
        assert!(one(req("a", "Gt", &["5"])).matches(&labels(&[("a", "6")])));
        assert!(!one(req("a", "Gt", &["5"])).matches(&labels(&[("a", "5")])));
        assert!(!one(req("a", "Gt", &["5"])).matches(&labels(&[("a", "x")])));
        assert!(one(req("a", "Lt", &["5"])).matches(&labels(&[("a", "4")])));
        assert!(one(req("example.com/a-b", "Exists", &[])).matches(&labels(&[("example.com/a-b", "")])));
        let f = check(&sel(vec![(vec![], vec![req("metadata.name", "NotIn", &["n"])])])).expect("valid");
        assert!(!f.matches(&labels(&[])));
        let empty = check(&sel(vec![(vec![], vec![])])).expect("valid");
        assert!(!empty.matches(&labels(&[])));
    }

    #[test]
    fn each_rule_is_reported_by_field() {
        assert_eq!(
            check(&sel(vec![])).expect_err("no terms"),
            ["spec.nodeSelector.nodeSelectorTerms: must have at least one term (omit nodeSelector to \
              select every node)"]
        );
        let e = check(&sel(vec![(
            vec![
                req("bad key!", "Exists", &[]),
                req("a", "In", &[]),
                req("a", "Exists", &["x"]),
                req("a", "Gt", &["1", "2"]),
                req("a", "Lt", &["x"]),
                req("a", "Near", &[]),
                req("UPPER.com/a", "Exists", &[]),
            ],
            vec![
                req("metadata.labels", "In", &["x"]),
                req("metadata.name", "Exists", &["x"]),
                req("metadata.name", "In", &["x", "y"]),
            ],
        )]))
        .expect_err("bad");
        let p = "spec.nodeSelector.nodeSelectorTerms[0]";
        assert_eq!(
            e,
            [
                format!(
                    "{p}.matchExpressions[0].key: \"bad key!\" is not a qualified label key: use \
                     alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
                ),
                format!("{p}.matchExpressions[1].values: must be set when operator is In"),
                format!("{p}.matchExpressions[2].values: must be empty when operator is Exists"),
                format!("{p}.matchExpressions[3].values: must hold exactly one value when operator is Gt"),
                format!("{p}.matchExpressions[4].values[0]: \"x\" must be an integer for operator Lt"),
                format!(
                    "{p}.matchExpressions[5].operator: \"Near\" is not an operator; use In, NotIn, \
                     Exists, DoesNotExist, Gt or Lt"
                ),
                format!(
                    "{p}.matchExpressions[6].key: \"UPPER.com/a\" is not a qualified label key: the \
                     prefix must be a lower-case DNS subdomain"
                ),
                format!(
                    "{p}.matchFields[0].key: \"metadata.labels\" is not a supported field; only \
                     metadata.name is"
                ),
                format!(
                    "{p}.matchFields[1].operator: \"Exists\" is not allowed for a field selector; use \
                     In or NotIn"
                ),
                format!("{p}.matchFields[2].values: must hold exactly one node name for a field selector"),
            ]
        );
    }
}
