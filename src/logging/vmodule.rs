//! `--vmodule` on our module paths: which rule, if any, raises the verbosity of a log target.
//!
//! klog (the reference's logger) matches each `PATTERN=N` against the *file name* of the call
//! site (`allocator` for `allocator.go`). Our records carry their module path instead
//! (`nv_ipam::node::server`), so a pattern here is one or more globs joined by `::`, and it
//! matches a target when some run of consecutive `::` segments matches it glob by glob:
//!
//! - `server` matches every module named `server` (`nv_ipam::node::server`), as a klog pattern
//!   matches a file name;
//! - `node` matches `nv_ipam::node` *and everything under it* (`nv_ipam::node::pools_file`);
//! - `store*` matches `nv_ipam::store` and its modules, `node::pool*` the node's pool modules;
//! - `nv_ipam::node` anchors at the crate; `ipam_node` is the `ipam-node` binary itself.
//!
//! Each glob is Go's `path/filepath.Match` (`*`, `?`, `[a-z]`, `[^0-9]`, `\` escapes), as klog
//! uses it; a malformed glob matches nothing, as in klog. The first rule that matches a target
//! decides (klog's order); a rule can only raise a target's verbosity above `-v`, never lower
//! it, and `N` = 0 rules are dropped, as klog drops them.
//!
//! Owns: matching. Must not: parse the flag (`upstream_flags` does) or map numbers to
//! levels (`logging::level_for_verbosity`).

use super::VModuleRule;

/// The rules that can raise a target's verbosity (those with `N` > 0), in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VModule {
    rules: Vec<(String, u32)>,
}

impl VModule {
    pub fn new(rules: &[VModuleRule]) -> VModule {
        VModule {
            rules: rules
                .iter()
                .filter(|r| r.verbosity > 0)
                .map(|r| (r.pattern.clone(), r.verbosity))
                .collect(),
        }
    }

    /// The verbosity of the first rule matching `target` (a module path such as
    /// `nv_ipam::node::server`).
    pub fn verbosity_for(&self, target: &str) -> Option<u32> {
        self.rules.iter().find(|(p, _)| matches_target(p, target)).map(|(_, v)| *v)
    }

    /// The highest verbosity any rule asks for (the logger's ceiling must let those records through).
    pub fn max_verbosity(&self) -> Option<u32> {
        self.rules.iter().map(|(_, v)| *v).max()
    }
}

/// Whether some run of consecutive `::` segments of `target` matches the globs of `pattern`
/// one by one.
pub fn matches_target(pattern: &str, target: &str) -> bool {
    let globs = pattern.split("::").count();
    let segments = target.split("::").count();
    (0..=segments.saturating_sub(globs)).any(|start| {
        let mut run = target.split("::").skip(start);
        pattern.split("::").all(|g| run.next().is_some_and(|s| glob_match(g, s) == Some(true)))
    })
}

/// Whether every `::`-separated glob of `pattern` is well formed (a malformed one never matches).
pub fn pattern_is_valid(pattern: &str) -> bool {
    pattern.split("::").all(glob_is_valid)
}

/// Go's `filepath.Match` validity: every chunk between stars parses (a `[` class closes and
/// has at least one range, no `\` ends the pattern). Matching a chunk walks all of it whatever
/// the name, so trying each against "" finds every syntax error.
fn glob_is_valid(glob: &str) -> bool {
    let mut rest = glob.as_bytes();
    while !rest.is_empty() {
        let (_, chunk, after) = scan_chunk(rest);
        if match_chunk(chunk, b"").is_err() {
            return false;
        }
        rest = after;
    }
    true
}

/// The pattern is malformed (Go's `filepath.ErrBadPattern`).
struct BadPattern;

/// Go's `path/filepath.Match(glob, name)` on Unix: `Some(matched)`, or `None` when the glob is
/// malformed. `*` and `?` do not match `/` (module segments never contain one).
pub fn glob_match(glob: &str, name: &str) -> Option<bool> {
    let mut pattern = glob.as_bytes();
    let mut name = name.as_bytes();
    'pattern: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            return Some(!name.contains(&b'/'));
        }
        match match_chunk(chunk, name) {
            Ok(Some(t)) if t.is_empty() || !pattern.is_empty() => {
                name = t;
                continue;
            }
            Err(BadPattern) => return None,
            Ok(_) => {}
        }
        if star {
            let mut i = 0;
            while i < name.len() && name[i] != b'/' {
                match match_chunk(chunk, &name[i + 1..]) {
                    Ok(Some(t)) => {
                        if pattern.is_empty() && !t.is_empty() {
                            i += 1;
                            continue;
                        }
                        name = t;
                        continue 'pattern;
                    }
                    Err(BadPattern) => return None,
                    Ok(None) => {}
                }
                i += 1;
            }
        }
        return Some(false);
    }
    Some(name.is_empty())
}

/// Leading stars, then the chunk up to the next star outside a `[...]` class, then the rest.
fn scan_chunk(mut pattern: &[u8]) -> (bool, &[u8], &[u8]) {
    let mut star = false;
    while let [b'*', rest @ ..] = pattern {
        pattern = rest;
        star = true;
    }
    let mut in_range = false;
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            b'\\' if i + 1 < pattern.len() => i += 1,
            b'[' => in_range = true,
            b']' => in_range = false,
            b'*' if !in_range => return (star, &pattern[..i], &pattern[i..]),
            _ => {}
        }
        i += 1;
    }
    (star, pattern, &[])
}

/// The first UTF-8 character of `s` and its length (a broken sequence counts as one byte).
fn decode(s: &[u8]) -> (Option<char>, usize) {
    let n = match s.first() {
        None => return (None, 0),
        Some(b) if *b < 0x80 => 1,
        Some(b) if *b >= 0xf0 => 4,
        Some(b) if *b >= 0xe0 => 3,
        Some(_) => 2,
    };
    match s.get(..n).and_then(|b| std::str::from_utf8(b).ok()).and_then(|c| c.chars().next()) {
        Some(c) => (Some(c), n),
        None => (None, 1),
    }
}

/// Matches one chunk at the start of `s`: `Ok(Some(rest))`, `Ok(None)` on a mismatch, or
/// `Err` for a malformed chunk (found whatever `s` is: the whole chunk is always walked).
fn match_chunk<'a>(mut chunk: &[u8], mut s: &'a [u8]) -> Result<Option<&'a [u8]>, BadPattern> {
    let mut failed = false;
    while let Some(&c) = chunk.first() {
        failed = failed || s.is_empty();
        match c {
            b'[' => {
                let mut r = None;
                if !failed {
                    let (ch, n) = decode(s);
                    r = ch;
                    s = &s[n..];
                }
                chunk = &chunk[1..];
                let negated = chunk.first() == Some(&b'^');
                if negated {
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut ranges = 0;
                loop {
                    if chunk.first() == Some(&b']') && ranges > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, after) = get_esc(chunk)?;
                    chunk = after;
                    let mut hi = lo;
                    if chunk.first() == Some(&b'-') {
                        let (h, after) = get_esc(&chunk[1..])?;
                        hi = h;
                        chunk = after;
                    }
                    matched = matched || r.is_some_and(|r| lo <= r && r <= hi);
                    ranges += 1;
                }
                failed = failed || matched == negated;
            }
            b'?' => {
                if !failed {
                    failed = s[0] == b'/';
                    let (_, n) = decode(s);
                    s = &s[n..];
                }
                chunk = &chunk[1..];
            }
            _ => {
                if c == b'\\' {
                    chunk = &chunk[1..];
                    if chunk.is_empty() {
                        return Err(BadPattern);
                    }
                }
                if !failed {
                    failed = chunk[0] != s[0];
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
        }
    }
    Ok(if failed { None } else { Some(s) })
}

/// One possibly escaped character of a `[...]` class, and what follows it (which must not be
/// empty: the class still needs its `]`).
fn get_esc(mut chunk: &[u8]) -> Result<(char, &[u8]), BadPattern> {
    match chunk.first() {
        None | Some(b'-') | Some(b']') => return Err(BadPattern),
        Some(b'\\') => {
            chunk = &chunk[1..];
            if chunk.is_empty() {
                return Err(BadPattern);
            }
        }
        Some(_) => {}
    }
    let (c, n) = decode(chunk);
    let c = c.ok_or(BadPattern)?;
    let rest = &chunk[n..];
    if rest.is_empty() {
        return Err(BadPattern);
    }
    Ok((c, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_as_go_matches_them() {
        // Cases of Go's own tests of `filepath.Match`
        // (https://github.com/golang/go/blob/master/src/path/filepath/match_test.go); `None`
        // where Go answers `ErrBadPattern`.
        let cases: &[(&str, &str, Option<bool>)] = &[
            ("abc", "abc", Some(true)),
            ("*", "abc", Some(true)),
            ("*c", "abc", Some(true)),
            ("a*", "a", Some(true)),
            ("a*", "abc", Some(true)),
            ("a*/b", "abc/b", Some(true)),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", Some(true)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Some(true)),
            ("a*b?c*x", "abxbbxdbxebxczzx", Some(true)),
            ("a*b?c*x", "abxbbxdbxebxczzy", Some(false)),
            ("ab[c]", "abc", Some(true)),
            ("ab[b-d]", "abc", Some(true)),
            ("ab[e-g]", "abc", Some(false)),
            ("ab[^c]", "abc", Some(false)),
            ("ab[^b-d]", "abc", Some(false)),
            ("ab[^e-g]", "abc", Some(true)),
            ("a\\*b", "a*b", Some(true)),
            ("a\\*b", "ab", Some(false)),
            ("a?b", "a☺b", Some(true)),
            ("a[^a]b", "a☺b", Some(true)),
            ("a???b", "a☺b", Some(false)),
            ("a[^a][^a][^a]b", "a☺b", Some(false)),
            ("[a-ζ]*", "α", Some(true)),
            ("*[a-ζ]", "A", Some(false)),
            ("a?b", "a/b", Some(false)),
            ("a*b", "a/b", Some(false)),
            ("[\\]a]", "]", Some(true)),
            ("[\\-]", "-", Some(true)),
            ("[x\\-]", "x", Some(true)),
            ("[x\\-]", "-", Some(true)),
            ("[x\\-]", "z", Some(false)),
            ("[\\-x]", "x", Some(true)),
            ("[\\-x]", "-", Some(true)),
            ("[\\-x]", "a", Some(false)),
            ("[]a]", "]", None),
            ("[-]", "-", None),
            ("[x-]", "x", None),
            ("[x-]", "-", None),
            ("[x-]", "z", None),
            ("[-x]", "x", None),
            ("[-x]", "-", None),
            ("[-x]", "a", None),
            ("\\", "a", None),
            ("[a-b-c]", "a", None),
            ("[", "a", None),
            ("[^", "a", None),
            ("[^bc", "a", None),
            ("a[", "a", None),
            ("a[", "ab", None),
            ("a[", "x", None),
            ("a/b[", "x", None),
            ("*x", "xxx", Some(true)),
        ];
        for (p, s, want) in cases {
            assert_eq!(glob_match(p, s), *want, "Match({p:?}, {s:?})");
            assert_eq!(glob_is_valid(p), want.is_some(), "valid({p:?})");
        }
    }

    #[test]
    fn patterns_match_runs_of_module_segments() {
        let t = "nv_ipam::node::pools_file";
        for p in ["pools_file", "node", "nv_ipam", "pools*", "node::pools_file", "nv_ipam::node", "n?de", "*"]
        {
            assert!(matches_target(p, t), "{p} matches {t}");
        }
        for p in [
            "pools",
            "server",
            "node::server",
            "ipam",
            "pools_file::node",
            "nv_ipam::pools_file",
            "::node",
            "",
        ] {
            assert!(!matches_target(p, t), "{p} does not match {t}");
        }
        assert!(matches_target("ipam_node", "ipam_node"), "the binary's own target");
        assert!(matches_target("store*", "nv_ipam::store::compact"));
        assert!(!matches_target("[", "nv_ipam::node"), "malformed: matches nothing");
        assert!(!pattern_is_valid("node::[x"));
        assert!(pattern_is_valid("node::pool*"));
    }

    #[test]
    fn the_first_matching_rule_decides_and_zero_rules_are_dropped() {
        let r = |p: &str, v| VModuleRule { pattern: p.into(), verbosity: v };
        let vm = VModule::new(&[r("server", 0), r("node", 2), r("server", 4), r("store", 5)]);
        assert_eq!(vm.verbosity_for("nv_ipam::node::server"), Some(2), "node=2 comes first");
        assert_eq!(vm.verbosity_for("nv_ipam::controller::server"), Some(4), "server=0 was dropped");
        assert_eq!(vm.verbosity_for("nv_ipam::store"), Some(5));
        assert_eq!(vm.verbosity_for("nv_ipam::kube::client"), None);
        assert_eq!(vm.max_verbosity(), Some(5));
        assert_eq!(VModule::new(&[r("x", 0)]).max_verbosity(), None);
    }
}
