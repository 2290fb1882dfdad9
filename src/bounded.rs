//! Serde helpers for input from outside: lists decoded with a cap on their length, and
//! clipping of echoed input in error messages.
//!
//! Why: a list of tiny elements costs far more decoded than on the wire (`{}` is 3 bytes, the
//! struct it becomes 48 to 72), so a list's length, not its bytes, decides the memory. Error
//! messages quote input (`invalid type: string "…"`) and must not grow with it.
//!
//! Owns: [`vec`], [`seq_with`], [`clip`], [`clip_str`]. Must not: know the types it decodes or do I/O.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserializer;
use serde::de::{self, Deserialize, DeserializeSeed, IgnoredAny, SeqAccess, Visitor};

/// Decodes a list of at most `MAX` elements; a longer one is an error that names the limit,
/// raised before element `MAX + 1` is decoded. Use as
/// `#[serde(deserialize_with = "crate::bounded::vec::<_, _, 64>")]`.
pub fn vec<'de, D, T, const MAX: usize>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    d.deserialize_seq(BoundedVec::<T, MAX>(PhantomData))
}

struct BoundedVec<T, const MAX: usize>(PhantomData<T>);

impl<'de, T: Deserialize<'de>, const MAX: usize> Visitor<'de> for BoundedVec<T, MAX> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a list of at most {MAX} entries")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Vec<T>, A::Error> {
        seq_with(seq, PhantomData::<T>, MAX)
    }
}

/// The elements of `seq`, each decoded with `seed`, at most `max` of them (else an error that
/// names the limit, raised before element `max + 1` is decoded). For visitors whose elements
/// need state, e.g. a budget shared across nested lists.
pub fn seq_with<'de, A, S>(mut seq: A, seed: S, max: usize) -> Result<Vec<S::Value>, A::Error>
where
    A: SeqAccess<'de>,
    S: DeserializeSeed<'de> + Copy,
{
    // the hint is the peer's claim: trust it only up to a small allocation
    let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(max).min(1024));
    while out.len() < max {
        match seq.next_element_seed(seed)? {
            Some(x) => out.push(x),
            None => return Ok(out),
        }
    }
    if seq.next_element::<IgnoredAny>()?.is_some() {
        return Err(de::Error::custom(format_args!(
            "more than {max} entries in a list (the limit); split or shorten it"
        )));
    }
    Ok(out)
}

/// Largest message text kept by [`clip`]: a line a person reads, with room for a quoted name.
pub const MAX_MESSAGE_BYTES: usize = 512;

/// `msg` cut to at most [`MAX_MESSAGE_BYTES`] (at a character boundary), `…` marking the cut.
pub fn clip(mut msg: String) -> String {
    if msg.len() > MAX_MESSAGE_BYTES {
        let mut cut = MAX_MESSAGE_BYTES;
        while !msg.is_char_boundary(cut) {
            cut -= 1;
        }
        msg.truncate(cut);
        msg.push('…');
    }
    msg
}

/// [`clip`] for borrowed text: copies at most [`MAX_MESSAGE_BYTES`] of it (a long value quoted
/// in an error costs no more than a short one).
pub fn clip_str(text: &str) -> String {
    if text.len() <= MAX_MESSAGE_BYTES {
        return text.to_string();
    }
    let mut cut = MAX_MESSAGE_BYTES;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Three {
        #[serde(default, deserialize_with = "crate::bounded::vec::<_, _, 3>")]
        xs: Vec<u8>,
    }

    #[test]
    fn lists_up_to_the_limit_decode_and_longer_ones_name_it() {
        let ok: Three = serde_json::from_str(r#"{"xs":[1,2,3]}"#).expect("at the limit");
        assert_eq!(ok.xs, [1, 2, 3]);
        let empty: Three = serde_json::from_str("{}").expect("missing is empty");
        assert!(empty.xs.is_empty());
        let e = serde_json::from_str::<Three>(r#"{"xs":[1,2,3,"not even a number"]}"#).expect_err("4");
        assert!(e.to_string().starts_with("more than 3 entries in a list (the limit)"), "{e}");
        let e = serde_json::from_str::<Three>(r#"{"xs":5}"#).expect_err("not a list");
        assert!(e.to_string().contains("a list of at most 3 entries"), "{e}");
        // the same through a Value (kube list fallback, tests)
        let v = serde_json::json!({"xs": [1, 2, 3, 4]});
        assert!(Three::deserialize(&v).is_err());
    }

    #[test]
    fn clip_keeps_short_messages_and_cuts_long_ones_on_a_char_boundary() {
        assert_eq!(clip("short".into()), "short");
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let c = clip(long);
        assert!(c.len() <= MAX_MESSAGE_BYTES + '…'.len_utf8() && c.ends_with('…'));
        assert_eq!(clip("x".repeat(MAX_MESSAGE_BYTES)).len(), MAX_MESSAGE_BYTES, "at the limit: kept");
        for text in ["short".to_string(), "é".repeat(MAX_MESSAGE_BYTES), "x".repeat(MAX_MESSAGE_BYTES + 1)] {
            assert_eq!(clip_str(&text), clip(text.clone()), "{text}");
        }
        assert_eq!(clip_str(&"x".repeat(MAX_MESSAGE_BYTES)), "x".repeat(MAX_MESSAGE_BYTES));
    }
}
