//! Reading the JSON a tenant wrote without a value tree: the whole document checked the way
//! serde_json checks a `Value` ([`document`]); the members of an object that the caller names,
//! each kept as its raw slice of the input, everything else skipped; the items of a list, one
//! raw slice at a time; and a raw slice read into its expected type.
//!
//! Why: a `serde_json::Value` of 1 MiB of `[{},{},…]` costs 14 MB, of 30-deep arrays 75 MB
//! (a node on every slice of the input). Here nothing is kept of what is skipped (a stack one
//! frame per level, the depth checked before), a member we read costs a pointer into the input
//! until it is decoded into its type, and lists are walked, never collected, so their callers
//! decide what to keep.
//!
//! Owns: [`document`], [`members`], [`items`], [`string`], [`boolean`], [`integer`]. Must not:
//! know which fields the plugin reads or what their values mean (the other `config` modules
//! do), accept a document serde_json's `Value` would refuse, or allocate for what it skips.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserializer as _;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Reads `bytes` as one JSON document and drops it as it goes: it accepts exactly the documents
/// `serde_json::from_slice::<serde_json::Value>` accepts (strings decoded and checked, numbers
/// parsed, nothing after the value), with the same errors, but builds no tree: the memory is a
/// stack as deep as the nesting. Returns the text, which [`members`] and [`items`] then read.
/// Callers check the depth first (`prescan::check_json`).
pub fn document(bytes: &[u8]) -> Result<&str, DocumentError> {
    serde_json::from_slice::<Valid>(bytes).map_err(DocumentError::Json)?;
    // Valid JSON is UTF-8 (serde_json checks every string; all else is ASCII), so this is only
    // a conversion.
    std::str::from_utf8(bytes).map_err(|e| DocumentError::NotUtf8 { offset: e.valid_up_to() })
}

/// Why [`document`] refused its input.
#[derive(Debug)]
pub enum DocumentError {
    /// What serde_json reports for the same bytes read as a `Value`.
    Json(serde_json::Error),
    /// Not UTF-8 at `offset` although valid JSON: cannot happen, kept so no path panics.
    NotUtf8 { offset: usize },
}

/// Any JSON value, read as a `Value` is read and dropped at once.
struct Valid;

impl<'de> de::Deserialize<'de> for Valid {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Valid, D::Error> {
        d.deserialize_any(Valid)
    }
}

impl<'de> Visitor<'de> for Valid {
    type Value = Valid;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Valid, E> {
        Ok(Valid)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Valid, E> {
        Ok(Valid)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Valid, E> {
        Ok(Valid)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Valid, E> {
        Ok(Valid)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Valid, E> {
        Ok(Valid)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Valid, E> {
        Ok(Valid)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Valid, A::Error> {
        while seq.next_element::<Valid>()?.is_some() {}
        Ok(Valid)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Valid, A::Error> {
        while map.next_entry::<Valid, Valid>()?.is_some() {}
        Ok(Valid)
    }
}

/// The text given to [`members`] is valid JSON but not an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAnObject;

/// The members of the JSON object `text` (already read by [`document`]) named by `keys`, each
/// as its raw text, in the order of `keys`: `None` when the member is missing or `null` (JSON
/// null means "not set" in every CNI config we have seen). Other members are skipped unread.
/// A key given twice: the last one counts, as in serde_json's `Map` (and Go's encoding/json).
pub fn members<'a, const N: usize>(
    text: &'a str,
    keys: &[&'static str; N],
) -> Result<[Option<&'a RawValue>; N], NotAnObject> {
    let mut de = serde_json::Deserializer::from_str(text);
    // The text was read as JSON already: the only error left is "not an object".
    de.deserialize_any(Members { keys }).map_err(|_| NotAnObject)
}

struct Members<'k, const N: usize> {
    keys: &'k [&'static str; N],
}

impl<'de, const N: usize> Visitor<'de> for Members<'_, N> {
    type Value = [Option<&'de RawValue>; N];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = [None; N];
        while let Some(key) = map.next_key_seed(KeyIndex(self.keys))? {
            match key {
                Some(i) => out[i] = map.next_value::<Option<&'de RawValue>>()?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// A key's index in the list asked for, `None` for any other key; escaped keys are compared
/// decoded, and no key is copied.
struct KeyIndex<'k, const N: usize>(&'k [&'static str; N]);

impl<'de, const N: usize> DeserializeSeed<'de> for KeyIndex<'_, N> {
    type Value = Option<usize>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, const N: usize> Visitor<'de> for KeyIndex<'_, N> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|k| *k == key))
    }
}

/// `raw` is not a JSON list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAList;

/// Calls `each(index, item)` for the items of the JSON list `raw` (already read as JSON), in
/// order, until it returns `false`. Nothing is collected; the rest of a list after a `false`
/// is not read.
pub fn items<'a>(
    raw: &'a RawValue,
    mut each: impl FnMut(usize, &'a RawValue) -> bool,
) -> Result<(), NotAList> {
    if !raw.get().starts_with('[') {
        return Err(NotAList);
    }
    let mut de = serde_json::Deserializer::from_str(raw.get());
    // The text was read as JSON once already: the only error left is the stop asked for.
    let _ = de.deserialize_seq(Items { each: &mut each, text: PhantomData });
    Ok(())
}

struct Items<'f, 'a, F> {
    each: &'f mut F,
    text: PhantomData<&'a str>,
}

impl<'a, F: FnMut(usize, &'a RawValue) -> bool> Visitor<'a> for Items<'_, 'a, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list")
    }

    fn visit_seq<A: SeqAccess<'a>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while let Some(item) = seq.next_element::<&'a RawValue>()? {
            if !(self.each)(i, item) {
                return Err(de::Error::custom("stopped"));
            }
            i += 1;
        }
        Ok(())
    }
}

/// `raw` as a string, `None` when it is another type.
pub fn string(raw: &RawValue) -> Option<String> {
    serde_json::from_str(raw.get()).ok()
}

/// `raw` as a boolean, `None` when it is another type.
pub fn boolean(raw: &RawValue) -> Option<bool> {
    serde_json::from_str(raw.get()).ok()
}

/// `raw` as an integer that fits in `i64`, `None` otherwise (a fraction, an exponent, a
/// larger number, another type).
pub fn integer(raw: &RawValue) -> Option<i64> {
    serde_json::from_str(raw.get()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> &RawValue {
        serde_json::from_str(text).expect("valid JSON")
    }

    #[test]
    fn members_are_raw_slices_and_the_rest_is_skipped() {
        let text = r#" {"b":[1,{"x":2}],"zz":{"deep":[[[]]]},"a":"s","n":null,"\u0061\u0062":true} "#;
        let [a, b, n, ab, missing] = members(text, &["a", "b", "n", "ab", "missing"]).expect("object");
        assert_eq!(a.map(RawValue::get), Some(r#""s""#));
        assert_eq!(b.map(RawValue::get), Some(r#"[1,{"x":2}]"#));
        assert!(n.is_none(), "null is not set");
        assert_eq!(ab.map(RawValue::get), Some("true"), "escaped keys compare decoded");
        assert!(missing.is_none());
    }

    #[test]
    fn members_given_twice_keep_the_last_as_a_map_does() {
        let [a] = members(r#"{"a":1,"x":[],"a":2}"#, &["a"]).expect("object");
        assert_eq!(a.map(RawValue::get), Some("2"));
        let [a] = members(r#"{"a":1,"a":null}"#, &["a"]).expect("object");
        assert!(a.is_none(), "a later null unsets it");
        for text in ["[1]", "\"s\"", "3", "null", " []"] {
            assert!(matches!(members(text, &["a"]), Err(NotAnObject)), "{text}");
        }
    }

    #[test]
    fn document_accepts_and_refuses_what_a_value_does() {
        let cases: &[&[u8]] = &[
            b"",
            b"garbage",
            b"{",
            br#"{"a":1"#,
            br#"{"a":1} x"#,
            br#"{"a":}"#,
            br#"{"a":1e400}"#,
            br#"{"a":"\ud800"}"#,
            br#"{"a":"\ud83d\ude00"}"#,
            b"{\"a\":\"\xff\"}",
            b"{\"\xc3\":1}",
            b"{\"a\":\"x\ny\"}",
            br#"{"a":-0,"b":1.5e308,"c":18446744073709551616,"d":[true,false,null]}"#,
            br#"  [1, {"k": {"k": []}}]  "#,
            b"\xef\xbb\xbf{}",
        ];
        for bytes in cases {
            let want = serde_json::from_slice::<serde_json::Value>(bytes).map_err(|e| e.to_string());
            let got = document(bytes).map_err(|e| match e {
                DocumentError::Json(e) => e.to_string(),
                DocumentError::NotUtf8 { .. } => unreachable!("valid JSON is UTF-8"),
            });
            assert_eq!(got.is_ok(), want.is_ok(), "{}", String::from_utf8_lossy(bytes));
            if let (Err(got), Err(want)) = (got, want) {
                assert_eq!(got, want, "the same message");
            }
        }
    }

    #[test]
    fn items_walk_until_told_to_stop() {
        let mut seen = Vec::new();
        items(raw(r#"[1, "a", {"b":[2]}, null]"#), |i, item| {
            seen.push((i, item.get().to_string()));
            true
        })
        .expect("a list");
        assert_eq!(
            seen,
            [(0, "1".into()), (1, r#""a""#.into()), (2, r#"{"b":[2]}"#.into()), (3, "null".to_string())]
        );
        let mut n = 0;
        items(raw("[1,2,3,4]"), |i, _| {
            n += 1;
            i < 1
        })
        .expect("a list");
        assert_eq!(n, 2, "stops at the first false");
        assert_eq!(items(raw(r#"{"a":1}"#), |_, _| true), Err(NotAList));
        assert_eq!(items(raw(r#""[1]""#), |_, _| true), Err(NotAList));
    }

    #[test]
    fn scalars_read_only_their_own_type() {
        assert_eq!(string(raw(r#""a\nb""#)).as_deref(), Some("a\nb"));
        assert_eq!(string(raw("1")), None);
        assert_eq!(boolean(raw("true")), Some(true));
        assert_eq!(boolean(raw(r#""true""#)), None);
        assert_eq!(integer(raw("-5")), Some(-5));
        for not in ["5.0", "1e3", "9223372036854775808", r#""5""#, "[5]"] {
            assert_eq!(integer(raw(not)), None, "{not}");
        }
    }
}
