//! Structural pre-scan of JSON and YAML text that comes from outside: the nesting depth,
//! checked before any decoder sees the text, and the byte spans of a JSON list's items.
//!
//! Why a pre-scan: libyaml's scanner (under yaml_serde) re-checks every open flow level for
//! each token, so `[[[[…` costs time quadratic in its depth (100,000 levels: 44 s of CPU, and
//! JSON that fails as JSON is retried as YAML) before yaml_serde's recursion limit applies.
//! serde_json refuses depth 128 fast, but names no limit. One linear pass that stops at the
//! first level past the limit costs microseconds and gives every decoder the same limit and
//! the same message.
//!
//! Owns: [`MAX_DEPTH`], [`TooDeep`], [`check_json`], [`check_yaml`], [`json_array_items`].
//! Must not: decode values, validate syntax (the decoder that follows does), or allocate more
//! than a stack bounded by the depth limit.

use std::fmt;
use std::ops::Range;

/// Deepest nesting of arrays and objects (JSON) or collections (YAML) accepted in any text read
/// from outside: protocol frames, AdmissionReviews, pools and nodes files, `plan` input,
/// kubeconfig, Kubernetes responses and watch events. The deepest legitimate documents we read,
/// measured on the test control plane: a list page of Pods with pod anti-affinity nests 14
/// levels (its watch event 13, the Pod with `managedFields` 12); an IPPool list page with a node
/// selector 10; a protocol frame 3. 64 leaves 4.5× headroom and stays below the 128 at which
/// serde_json and yaml_serde stop, so this check, with its clear message, always comes first.
pub const MAX_DEPTH: usize = 64;

/// Text nested deeper than the limit; `line` and `column` (1-based, bytes) point at the opening
/// bracket or indentation that went past it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooDeep {
    pub max: usize,
    pub line: usize,
    pub column: usize,
}

impl TooDeep {
    fn at(text: &[u8], offset: usize, max: usize) -> TooDeep {
        let before = &text[..offset.min(text.len())];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = offset - before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1) + 1;
        TooDeep { max, line, column }
    }
}

impl fmt::Display for TooDeep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "nested deeper than the limit of {} levels at line {} column {}: no valid input nests that deep; flatten it",
            self.max, self.line, self.column
        )
    }
}

impl std::error::Error for TooDeep {}

/// Checks that JSON `text` nests at most `max` arrays/objects; returns the deepest nesting
/// seen. Brackets inside strings do not count. Stops at the first bracket past `max`, so a
/// hostile document costs at most a few bytes' work past the limit.
pub fn check_json(text: &[u8], max: usize) -> Result<usize, TooDeep> {
    let (mut depth, mut deepest, mut i) = (0usize, 0usize, 0usize);
    while i < text.len() {
        match text[i] {
            b'"' => {
                i = json_string_end(text, i + 1);
                continue;
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(TooDeep::at(text, i, max));
                }
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(deepest)
}

/// The offset just past the closing quote of a JSON string whose content starts at `i` (the
/// end of `text` when it is unterminated).
fn json_string_end(text: &[u8], mut i: usize) -> usize {
    while i < text.len() {
        match text[i..].iter().position(|&b| b == b'"' || b == b'\\') {
            None => return text.len(),
            Some(p) if text[i + p] == b'\\' => i += p + 2,
            Some(p) => return i + p + 1,
        }
    }
    text.len()
}

/// Checks that YAML `text` (JSON included: JSON is YAML) nests at most `max` collections;
/// returns the deepest nesting seen.
///
/// Block nesting is counted from indentation (a stack of columns) and from compact indicators
/// (`- - x`, `- key:`); flow nesting from `[`/`{` where a node starts (in block context
/// `a[b` is a plain scalar) and from every bracket in flow context. Quoted scalars, comments
/// and block scalars (`|`, `>`) are skipped. On what serializers write the count is exact (the
/// property tests check it against yaml_serde's and serde_json's output); on other input it may
/// be off by one (a flow collection used as a mapping key counts one lower, a plain scalar
/// continued on a line that starts with `[` higher), which does not matter to a limit.
pub fn check_yaml(text: &[u8], max: usize) -> Result<usize, TooDeep> {
    let mut s = Yaml {
        text,
        max,
        flow: 0,
        block: Vec::new(),
        deepest: 0,
        quote: None,
        node_start: true,
        pending: None,
        block_scalar: None,
    };
    let mut start = 0;
    if text.starts_with("\u{feff}".as_bytes()) {
        start = 3;
    }
    while start < text.len() {
        let end = text[start..].iter().position(|&b| b == b'\n').map_or(text.len(), |p| start + p);
        s.line(start, end)?;
        start = end + 1;
    }
    Ok(s.deepest)
}

struct Yaml<'a> {
    text: &'a [u8],
    max: usize,
    /// Open flow collections.
    flow: usize,
    /// The open block levels: column (increasing) and whether the level is a sequence (a
    /// sequence may sit at its parent mapping's column: `a:` then `- x`).
    block: Vec<(usize, bool)>,
    deepest: usize,
    /// Inside a quoted scalar (which may span lines): its quote character.
    quote: Option<u8>,
    /// A node may begin at the next character (kept across the lines of a flow collection).
    node_start: bool,
    /// Column and offset of the node that starts the current line (after any `- `): it opens a
    /// mapping level once a `key:` shows it is one.
    pending: Option<(usize, usize)>,
    /// Inside a block scalar: the column of the block level that holds it (`None` at the top
    /// of a document); more indented lines are its content.
    block_scalar: Option<Option<usize>>,
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t' || b == b'\r'
}

impl Yaml<'_> {
    fn level(&mut self, offset: usize) -> Result<(), TooDeep> {
        let depth = self.block.len() + self.flow;
        if depth > self.max {
            return Err(TooDeep::at(self.text, offset, self.max));
        }
        self.deepest = self.deepest.max(depth);
        Ok(())
    }

    /// Opens a block level at `col` (text offset `at`) unless the same one is open there.
    fn push_block(&mut self, col: usize, seq: bool, at: usize) -> Result<(), TooDeep> {
        match self.block.last() {
            Some(&(c, s)) if c > col || (c == col && (s || !seq)) => Ok(()),
            _ => {
                self.block.push((col, seq));
                self.level(at)
            }
        }
    }

    /// One line, `text[start..end]` without its newline.
    fn line(&mut self, start: usize, end: usize) -> Result<(), TooDeep> {
        let line = &self.text[start..end];
        if self.quote.is_some() || self.flow > 0 {
            // a quoted scalar or a flow collection goes on: indentation means nothing here
            return self.inline(start, end, 0);
        }
        let indent = line.iter().take_while(|&&b| b == b' ').count();
        let rest = &line[indent..];
        let content = rest.iter().position(|&b| !is_blank(b));
        let Some(first) = content.map(|p| rest[p]) else { return Ok(()) }; // blank line
        let marker = indent == 0
            && (rest.starts_with(b"---") || rest.starts_with(b"..."))
            && rest.get(3).is_none_or(|&b| is_blank(b));
        if let Some(parent) = self.block_scalar {
            if !marker && parent.is_none_or(|p| indent > p) {
                return Ok(()); // content of a `|` or `>` scalar
            }
            self.block_scalar = None;
        }
        if first == b'#' {
            return Ok(());
        }
        if indent == 0 && first == b'%' {
            return Ok(()); // a directive (%YAML, %TAG)
        }
        let mut pos = indent;
        if marker {
            // a new document: nothing stays open
            self.block.clear();
            self.flow = 0;
            self.pending = None;
            pos = 3;
        } else {
            let indicator = |pos: usize| {
                matches!(line.get(pos), Some(b'-' | b'?' | b':'))
                    && line.get(pos + 1).is_none_or(|&b| is_blank(b))
            };
            let entry = indicator(pos) && line[pos] == b'-';
            while self.block.last().is_some_and(|&(c, s)| c > indent || (c == indent && s && !entry)) {
                self.block.pop(); // closed levels, and a sequence that ended at its mapping's column
            }
            // a level opens for a sequence entry or a mapping key (`?`, or `key:` found later on
            // the line); a scalar or a flow collection alone on a line opens none
            self.pending = None;
            if indicator(pos) {
                self.push_block(indent, entry, start + indent)?;
            } else {
                self.pending = Some((indent, start + indent));
            }
            // compact nesting on one line: `- - x`, `- key: v`, `? - k`
            while indicator(pos) {
                pos += 1;
                while pos < line.len() && is_blank(line[pos]) {
                    pos += 1;
                }
                if pos < line.len() && line[pos] != b'#' {
                    if indicator(pos) {
                        self.push_block(pos, line[pos] == b'-', start + pos)?;
                    } else {
                        self.pending = Some((pos, start + pos));
                    }
                }
            }
        }
        self.node_start = true;
        self.inline(start, end, pos)
    }

    /// Scans `text[start + pos..end]`.
    fn inline(&mut self, start: usize, end: usize, mut pos: usize) -> Result<(), TooDeep> {
        let line = &self.text[start..end];
        let mut node_start = self.node_start;
        while pos < line.len() {
            let b = line[pos];
            if let Some(q) = self.quote {
                if b == b'\\' && q == b'"' {
                    pos += 2;
                    continue;
                }
                if b == q {
                    if q == b'\'' && line.get(pos + 1) == Some(&b'\'') {
                        pos += 2; // '' is an escaped quote
                        continue;
                    }
                    self.quote = None;
                }
                pos += 1;
                continue;
            }
            if is_blank(b) {
                pos += 1;
                continue;
            }
            if b == b'#' && (pos == 0 || is_blank(line[pos - 1])) {
                break; // a comment
            }
            let next_blank = line.get(pos + 1).is_none_or(|&n| is_blank(n));
            match b {
                b'[' | b'{' if node_start || self.flow > 0 => {
                    self.flow += 1;
                    self.level(start + pos)?;
                    node_start = true;
                }
                b']' | b'}' if self.flow > 0 => {
                    self.flow -= 1;
                    node_start = false;
                }
                b',' if self.flow > 0 => node_start = true,
                b':' if next_blank || self.flow > 0 => {
                    if self.flow == 0
                        && let Some((col, at)) = self.pending.take()
                    {
                        self.push_block(col, false, at)?; // `key:`: the line is a mapping entry
                    }
                    node_start = true;
                }
                b'"' | b'\'' if node_start => {
                    self.quote = Some(b);
                    node_start = false;
                }
                b'|' | b'>' if node_start && self.flow == 0 => {
                    let parent = self.block.iter().rev().map(|&(c, _)| c).find(|&c| c < pos);
                    self.block_scalar = Some(parent);
                    break;
                }
                b'&' | b'!' if node_start => {
                    // an anchor or tag: the node itself follows
                    while pos < line.len() && !is_blank(line[pos]) {
                        pos += 1;
                    }
                    continue;
                }
                _ => node_start = false,
            }
            pos += 1;
        }
        self.node_start = node_start;
        Ok(())
    }
}

/// The byte ranges of the items of the array that is member `key` of the top-level object of
/// JSON `text`, in order; `None` when there is no such array. Keys are compared as written
/// (escapes are not decoded). For decoding a list page item by item when one item is bad,
/// without a `Value` tree of the page.
pub fn json_array_items(text: &[u8], key: &str) -> Option<Vec<Range<usize>>> {
    let want = key.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    // depth-1 state: the last string seen at depth 1 was `key`, and a `:` followed it
    let (mut key_match, mut in_value) = (false, false);
    let mut items = Vec::new();
    let mut collecting = false;
    let mut item_start: Option<usize> = None;
    while i < text.len() {
        let b = text[i];
        if collecting
            && depth == 2
            && item_start.is_none()
            && !b.is_ascii_whitespace()
            && b != b']'
            && b != b','
        {
            item_start = Some(i);
        }
        match b {
            b'"' => {
                let end = json_string_end(text, i + 1);
                if depth == 1 && !in_value {
                    key_match = text.get(i + 1..end.saturating_sub(1)) == Some(want);
                }
                i = end;
                continue;
            }
            b':' if depth == 1 => in_value = true,
            b',' if depth == 1 => (in_value, key_match) = (false, false),
            b',' if collecting && depth == 2 => {
                if let Some(s) = item_start.take() {
                    items.push(s..trim_end(text, s, i));
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth == 2 && b == b'[' && key_match && in_value {
                    collecting = true;
                }
            }
            b']' | b'}' => {
                if collecting && depth == 2 {
                    if let Some(s) = item_start.take() {
                        items.push(s..trim_end(text, s, i));
                    }
                    return Some(items);
                }
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn trim_end(text: &[u8], start: usize, mut end: usize) -> usize {
    while end > start && text[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests;
