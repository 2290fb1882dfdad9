//! Decoding a [`NodeSelector`] from tenant-written JSON or YAML in one pass: every list capped
//! ([`crate::api::MAX_LIST_ITEMS`] through the seeds), and one budget
//! ([`crate::api::MAX_SELECTOR_VALUES`]) for all `values` of all requirements of a selector
//! together, so that a selector costs at most its budget whatever its shape.
//!
//! Owns: the `Deserialize` impl of [`NodeSelector`] and its seeds. Must not: validate
//! operators or values (see `selector::validate_node_selector`).

use std::cell::Cell;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{NodeSelector, NodeSelectorRequirement, NodeSelectorTerm};

// ---- decoding: one pass, every list capped, one budget for all `values` of a selector ----

impl<'de> Deserialize<'de> for NodeSelector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<NodeSelector, D::Error> {
        let budget = Cell::new(crate::api::MAX_SELECTOR_VALUES);
        d.deserialize_map(SelectorSeed(&budget))
    }
}

/// A field name compared against `names` without keeping it: its index, or `None`.
struct FieldSeed(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for FieldSeed {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for FieldSeed {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|n| *n == v))
    }
}

/// Decodes a map with `fields`, calling `field(index, map)` for each known one and skipping the
/// rest unread.
fn fields<'de, A: MapAccess<'de>>(
    mut map: A,
    names: &'static [&'static str],
    mut field: impl FnMut(usize, &mut A) -> Result<(), A::Error>,
) -> Result<(), A::Error> {
    while let Some(k) = map.next_key_seed(FieldSeed(names))? {
        match k {
            Some(i) => field(i, &mut map)?,
            None => {
                map.next_value::<IgnoredAny>()?;
            }
        }
    }
    Ok(())
}

/// A list of at most `max` elements, each decoded by `seed`.
#[derive(Clone, Copy)]
struct ListSeed<S> {
    seed: S,
    max: usize,
}

impl<'de, S: DeserializeSeed<'de> + Copy> DeserializeSeed<'de> for ListSeed<S> {
    type Value = Vec<S::Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, S: DeserializeSeed<'de> + Copy> Visitor<'de> for ListSeed<S> {
    type Value = Vec<S::Value>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a list of at most {} entries", self.max)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        crate::bounded::seq_with(seq, self.seed, self.max)
    }
}

#[derive(Clone, Copy)]
struct SelectorSeed<'b>(&'b Cell<usize>);

impl<'de> Visitor<'de> for SelectorSeed<'_> {
    type Value = NodeSelector;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a node selector")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<NodeSelector, A::Error> {
        let mut out = NodeSelector::default();
        let terms = ListSeed { seed: TermSeed(self.0), max: crate::api::MAX_SELECTOR_ITEMS };
        fields(map, &["nodeSelectorTerms"], |_, m| {
            out.node_selector_terms = m.next_value_seed(terms)?;
            Ok(())
        })?;
        Ok(out)
    }
}

#[derive(Clone, Copy)]
struct TermSeed<'b>(&'b Cell<usize>);

impl<'de> DeserializeSeed<'de> for TermSeed<'_> {
    type Value = NodeSelectorTerm;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<NodeSelectorTerm, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TermSeed<'_> {
    type Value = NodeSelectorTerm;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a node selector term")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<NodeSelectorTerm, A::Error> {
        let mut out = NodeSelectorTerm::default();
        let reqs = ListSeed { seed: RequirementSeed(self.0), max: crate::api::MAX_SELECTOR_ITEMS };
        fields(map, &["matchExpressions", "matchFields"], |i, m| {
            let list = m.next_value_seed(reqs)?;
            if i == 0 {
                out.match_expressions = list;
            } else {
                out.match_fields = list;
            }
            Ok(())
        })?;
        Ok(out)
    }
}

#[derive(Clone, Copy)]
struct RequirementSeed<'b>(&'b Cell<usize>);

impl<'de> DeserializeSeed<'de> for RequirementSeed<'_> {
    type Value = NodeSelectorRequirement;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<NodeSelectorRequirement, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RequirementSeed<'_> {
    type Value = NodeSelectorRequirement;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a node selector requirement")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<NodeSelectorRequirement, A::Error> {
        let mut out = NodeSelectorRequirement::default();
        let values = ListSeed { seed: ValueSeed(self.0), max: crate::api::MAX_LIST_ITEMS };
        fields(map, &["key", "operator", "values"], |i, m| {
            match i {
                0 => out.key = m.next_value()?,
                1 => out.operator = m.next_value()?,
                _ => out.values = m.next_value_seed(values)?,
            }
            Ok(())
        })?;
        Ok(out)
    }
}

/// One entry of `values`, charged to the selector's budget.
#[derive(Clone, Copy)]
struct ValueSeed<'b>(&'b Cell<usize>);

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        let left = self.0.get();
        if left == 0 {
            return Err(de::Error::custom(format_args!(
                "more than {} values in one node selector (the limit); select by label instead",
                crate::api::MAX_SELECTOR_VALUES
            )));
        }
        self.0.set(left - 1);
        String::deserialize(d)
    }
}
