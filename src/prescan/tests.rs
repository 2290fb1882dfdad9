use super::*;

use proptest::prelude::*;
use serde_json::Value;

fn nested(open: &str, close: &str, n: usize) -> String {
    format!("{}{}", open.repeat(n), close.repeat(n))
}

#[test]
fn json_depth_is_exact_and_strings_do_not_count() {
    assert_eq!(check_json(b"", MAX_DEPTH), Ok(0));
    assert_eq!(check_json(b"5", MAX_DEPTH), Ok(0));
    assert_eq!(check_json(br#"{"a":[1,{"b":[]}]}"#, MAX_DEPTH), Ok(4));
    assert_eq!(check_json(br#"{"a":"[[[[{{{{\"]]]"}"#, 1), Ok(1));
    assert_eq!(
        check_json(br#"["\\", ["x"]]"#, MAX_DEPTH),
        Ok(2),
        "an escaped backslash ends before the quote"
    );
}

#[test]
fn json_at_the_limit_is_accepted_and_one_more_refused() {
    let at = nested("[", "]", MAX_DEPTH);
    assert_eq!(check_json(at.as_bytes(), MAX_DEPTH), Ok(MAX_DEPTH));
    let over = nested("[", "]", MAX_DEPTH + 1);
    let e = check_json(over.as_bytes(), MAX_DEPTH).expect_err("one level too deep");
    assert_eq!(e, TooDeep { max: MAX_DEPTH, line: 1, column: MAX_DEPTH + 1 });
    assert_eq!(
        e.to_string(),
        "nested deeper than the limit of 64 levels at line 1 column 65: no valid input nests that deep; flatten it"
    );
}

#[test]
fn a_hundred_thousand_levels_stop_at_the_limit() {
    // the work is bounded by the limit, not the input: the scan stops at the first bracket past it
    let deep = format!("{{\"a\":\n{}", nested("[", "]", 100_000));
    let e = check_json(deep.as_bytes(), MAX_DEPTH).expect_err("deep");
    assert_eq!((e.line, e.column), (2, MAX_DEPTH));
    let e = check_yaml(deep.as_bytes(), MAX_DEPTH).expect_err("deep as YAML");
    assert_eq!(e.line, 2);
    for yaml in [
        format!("kind: IPPool\nspec: {{x: {}}}\n", nested("[", "]", 100_000)),
        format!("a: {}1{}\n", "{a: ".repeat(100_000), "}".repeat(100_000)),
        format!("x:\n{}a\n", "- ".repeat(100_000)),
    ] {
        let e = check_yaml(yaml.as_bytes(), MAX_DEPTH).expect_err("deep YAML");
        assert_eq!(e.max, MAX_DEPTH);
    }
}

#[test]
fn yaml_block_nesting_counts_indentation_and_compact_indicators() {
    assert_eq!(check_yaml(b"a: 1\n", MAX_DEPTH), Ok(1));
    assert_eq!(check_yaml(b"a:\n  b:\n    c: 1\n", MAX_DEPTH), Ok(3));
    assert_eq!(check_yaml(b"a:\n- b: 1\n- c\n", MAX_DEPTH), Ok(3));
    assert_eq!(check_yaml(b"- - - x\n", MAX_DEPTH), Ok(3));
    assert_eq!(check_yaml(b"- a\n- b: c\n  d:\n  - [e]\n", MAX_DEPTH), Ok(4));
    assert_eq!(check_yaml(b"{\"a\": [[]]}\n", MAX_DEPTH), Ok(3), "JSON counts exactly");
    assert_eq!(check_yaml(b"a: multi\n  line plain\n", MAX_DEPTH), Ok(1));
    assert_eq!(check_yaml(b"a: [1, {b: [2]}]\n", MAX_DEPTH), Ok(4));
    // found by the property test below: a sequence at its mapping's column is a level of its
    // own, and a block scalar's content is indented past the mapping that holds it
    assert_eq!(check_yaml(b"'':\n- '': null\n", MAX_DEPTH), Ok(3));
    assert_eq!(check_yaml(b"- '': |2+\n\n  a: []\n", MAX_DEPTH), Ok(3));
    let mut deep = String::new();
    for i in 0..=MAX_DEPTH {
        deep.push_str(&format!("{}k:\n", "  ".repeat(i)));
    }
    let e = check_yaml(deep.as_bytes(), MAX_DEPTH).expect_err("65 indented levels");
    assert_eq!((e.line, e.column), (MAX_DEPTH + 1, 2 * MAX_DEPTH + 1));
    // a new document starts from nothing
    let mut docs = String::new();
    for _ in 0..10 {
        docs.push_str(&format!("a: {}\n---\n", nested("[", "]", MAX_DEPTH - 1)));
    }
    assert_eq!(check_yaml(docs.as_bytes(), MAX_DEPTH), Ok(MAX_DEPTH));
}

#[test]
fn yaml_brackets_in_scalars_comments_and_block_scalars_do_not_count() {
    let many = "[".repeat(200);
    for text in [
        format!("a: b{many}\n"),
        format!("a: '{many}'\n"),
        format!("a: 'it''s {many}\n  still quoted'\n"),
        format!("a: \"\\\" {many}\"\n"),
        format!("a: 1 # {many}\n"),
        format!("# {many}\n"),
        format!("a: |\n  {many}\n  {many}\nb: >-\n  {many}\n"),
        format!("- |\n {many}\n- x\n"),
        format!("{{\"a\": \"{many}\",\n \"b\": [\"]]]\", \"{many}\"]}}\n"),
        format!("url: http://x/{many}\n"),
    ] {
        assert!(check_yaml(text.as_bytes(), 4).is_ok(), "{text}");
    }
}

/// Collection nesting of a value: a scalar is 0, an (even empty) array or object one more than
/// its deepest child.
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn value() -> impl Strategy<Value = Value> {
    let text = proptest::collection::vec(
        prop_oneof![
            Just("a"),
            Just(" "),
            Just("["),
            Just("]"),
            Just("{"),
            Just("}"),
            Just("'"),
            Just("\""),
            Just("#"),
            Just(": "),
            Just("- "),
            Just("|"),
            Just(">"),
            Just("\n"),
            Just(","),
            Just("&"),
            Just("*"),
            Just("!"),
            Just("? "),
            Just("\\"),
            Just("%"),
            Just("---"),
        ],
        0..8,
    )
    .prop_map(|parts| parts.concat());
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(Value::from),
        text.clone().prop_map(Value::String),
    ];
    leaf.prop_recursive(12, 64, 4, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(text.clone(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    // bounded: ~2 s in a debug build; failures are kept as unit tests above, not in files
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// On what serializers write, the depth is exact, as JSON and as YAML.
    #[test]
    fn depth_matches_what_serializers_write(v in value()) {
        let d = depth(&v);
        let compact = serde_json::to_string(&v).expect("json");
        let pretty = serde_json::to_string_pretty(&v).expect("json");
        let yaml = yaml_serde::to_string(&v).expect("yaml");
        prop_assert_eq!(check_json(compact.as_bytes(), MAX_DEPTH), Ok(d));
        prop_assert_eq!(check_json(pretty.as_bytes(), MAX_DEPTH), Ok(d));
        for text in [&compact, &pretty, &yaml] {
            let y = check_yaml(text.as_bytes(), MAX_DEPTH).expect("shallow");
            prop_assert!(y == d, "depth {} scanned as {} in:\n{}", d, y, text);
            prop_assert!(check_yaml(text.as_bytes(), d).is_ok());
            if d > 0 {
                prop_assert!(check_yaml(text.as_bytes(), d - 1).is_err(), "{}", text);
            }
        }
    }

    /// Arbitrary bytes never panic, and the result is a depth within the limit or a position
    /// inside the text.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        for r in [check_json(&bytes, 8), check_yaml(&bytes, 8)] {
            match r {
                Ok(d) => prop_assert!(d <= 8),
                Err(e) => prop_assert!(e.line >= 1 && e.line <= bytes.len() + 1 && e.column >= 1),
            }
        }
        let _ = json_array_items(&bytes, "items");
    }

    /// The item spans of a list page are exactly its items.
    #[test]
    fn array_items_are_the_items(items in proptest::collection::vec(value(), 0..6), pretty in any::<bool>()) {
        let page = serde_json::json!({"kind": "List", "metadata": {"items": "no"}, "items": items});
        let text = if pretty { serde_json::to_string_pretty(&page) } else { serde_json::to_string(&page) }
            .expect("json");
        let spans = json_array_items(text.as_bytes(), "items").expect("items found");
        let got: Vec<Value> = spans
            .iter()
            .map(|r| serde_json::from_slice(&text.as_bytes()[r.clone()]).expect("an item"))
            .collect();
        prop_assert_eq!(got, items);
    }
}

#[test]
fn array_items_need_the_member_at_the_top() {
    assert_eq!(json_array_items(br#"{"a":{"items":[1]}}"#, "items"), None);
    assert_eq!(json_array_items(br#"{"items":{"x":[1]}}"#, "items"), None);
    assert_eq!(json_array_items(br#"["items",[1]]"#, "items"), None);
    assert_eq!(json_array_items(br#"{"x":"items","items":[]}"#, "items"), Some(vec![]));
    assert_eq!(json_array_items(br#"{"items" : [ 1 , "a" ]}"#, "items"), Some(vec![13..14, 17..20]));
}

#[test]
fn the_repository_documents_are_within_the_limit() {
    // every manifest and fixture we ship or test with; the deepest sets MAX_DEPTH's headroom
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stack = vec![root.join("deploy"), root.join("tests/fixtures"), root.join("protocol/examples")];
    let mut seen = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read(&path).expect("readable file");
            let d = match path.extension().and_then(|e| e.to_str()) {
                Some("json") => check_json(&text, MAX_DEPTH),
                Some("yaml" | "yml") => check_yaml(&text, MAX_DEPTH),
                _ => continue,
            };
            let d = d.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            seen += 1;
            // CRD schemas nest deepest; we never decode them, but they must not come close
            assert!(d * 2 <= MAX_DEPTH, "{}: depth {d} leaves less than 2x headroom", path.display());
        }
    }
    assert!(seen > 10, "found the repository's documents");
}
