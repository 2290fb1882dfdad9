//! The reports as text: `-o table` (columns for people) or `-o json` / `-o yaml` (the report
//! types serialized as they are, for scripts). No I/O: the caller prints the string.
//!
//! Every value shown in a table may come from a node, which may be hostile: control characters
//! are escaped (a terminal must not be driven by them) and a cell is cut at [`MAX_CELL_CHARS`].
//!
//! Owns: the table layout and the cell rules. Must not: decide anything a report holds.

use super::args::Output;
use super::report::{Check, Unreachable, Usage, WhoHas};

/// Longest table cell, in characters: a Kubernetes name is at most 253; a fix command is not
/// in a cell (it gets a line of its own, cut at 4 × this).
pub const MAX_CELL_CHARS: usize = 253;

/// `s` safe for a terminal: control characters escaped, at most `max` characters (`...` marks a
/// cut).
pub fn clean(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == max {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn cell(s: &str) -> String {
    clean(s, MAX_CELL_CHARS)
}

/// Rows under a header, columns two spaces apart, as kubectl prints.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        let last = cells.len() - 1;
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            l.push_str(c);
            if i < last {
                l.push_str(&" ".repeat(width[i] - c.chars().count() + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
    out
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn unreachable_lines(u: &[Unreachable]) -> String {
    let mut out = String::new();
    if !u.is_empty() {
        out.push_str(&format!("\n{} node(s) did not answer (results are incomplete):\n", u.len()));
        for x in u {
            out.push_str(&format!("  {}: {}\n", cell(&x.node), clean(&x.error, 4 * MAX_CELL_CHARS)));
        }
    }
    out
}

fn serialized<T: serde::Serialize>(v: &T, output: Output) -> String {
    let text = match output {
        Output::Yaml => yaml_serde::to_string(v).map_err(|e| e.to_string()),
        _ => serde_json::to_string_pretty(v).map(|s| s + "\n").map_err(|e| e.to_string()),
    };
    text.unwrap_or_else(|e| format!("cannot encode the report: {e}\n"))
}

pub fn who_has(r: &WhoHas, output: Output) -> String {
    if output != Output::Table {
        return serialized(r, output);
    }
    let mut out = String::new();
    if r.pools.is_empty() {
        out.push_str(&format!("{} is in no pool of the namespace\n", r.ip));
    } else {
        let rows: Vec<Vec<String>> = r
            .pools
            .iter()
            .map(|p| {
                vec![
                    cell(&p.pool),
                    p.pool_type.to_string(),
                    cell(&p.range),
                    opt(p.node.as_deref().map(cell)),
                    opt(p.block.as_deref().map(cell)),
                ]
            })
            .collect();
        out.push_str(&table(&["POOL", "TYPE", "RANGE", "BLOCK NODE", "BLOCK"], &rows));
    }
    out.push('\n');
    if r.holders.is_empty() {
        out.push_str(&format!("{} is not allocated on any node that answered\n", r.ip));
    } else {
        let rows: Vec<Vec<String>> = r
            .holders
            .iter()
            .map(|h| {
                let x = &h.reservation;
                vec![
                    cell(&h.node),
                    cell(&x.pool),
                    opt(x.pod_namespace.as_deref().map(cell)),
                    opt(x.pod_name.as_deref().map(cell)),
                    opt(x.pod_uid.as_deref().map(cell)),
                    cell(&x.container_id),
                    cell(&x.interface),
                    opt(x.created.as_deref().map(cell)),
                    if x.is_static { "yes".into() } else { "no".into() },
                ]
            })
            .collect();
        out.push_str(&table(
            &["NODE", "POOL", "NAMESPACE", "POD", "POD UID", "CONTAINER", "INTERFACE", "SINCE", "STATIC"],
            &rows,
        ));
    }
    out.push_str(&unreachable_lines(&r.unreachable));
    out
}

pub fn usage(r: &Usage, output: Output) -> String {
    if output != Output::Table {
        return serialized(r, output);
    }
    let rows: Vec<Vec<String>> = r
        .rows
        .iter()
        .map(|u| {
            vec![
                cell(&u.pool),
                u.pool_type.to_string(),
                cell(&u.node),
                opt(u.block.as_deref().map(cell)),
                opt(u.size),
                opt(u.allocated),
                opt(u.free),
                opt(u.static_count),
                opt(u.released_in_cooldown),
                opt(u.used_percent.map(|p| format!("{p:.1}%"))),
            ]
        })
        .collect();
    let mut out = if rows.is_empty() {
        "no pools\n".to_string()
    } else {
        table(
            &["POOL", "TYPE", "NODE", "BLOCK", "SIZE", "ALLOCATED", "FREE", "STATIC", "COOLDOWN", "USED"],
            &rows,
        )
    };
    out.push_str(&unreachable_lines(&r.unreachable));
    out
}

pub fn check(r: &Check, output: Output) -> String {
    if output != Output::Table {
        return serialized(r, output);
    }
    let mut out = String::new();
    for f in &r.findings {
        let mut head = format!("{}  {} ({})", f.kind.as_str(), cell(&f.pool), f.pool_type);
        for part in [f.node.as_deref(), f.ip.map(|i| i.to_string()).as_deref(), f.pod.as_deref()]
            .into_iter()
            .flatten()
        {
            head.push_str("  ");
            head.push_str(&cell(part));
        }
        out.push_str(&head);
        out.push('\n');
        out.push_str(&format!("  {}\n", clean(&f.detail, 4 * MAX_CELL_CHARS)));
        out.push_str(&format!("  fix: {}\n", clean(&f.fix, 4 * MAX_CELL_CHARS)));
        if let Some(done) = &f.fixed {
            out.push_str(&format!("  --fix: {}\n", clean(done, 4 * MAX_CELL_CHARS)));
        }
    }
    let fixable = r.findings.iter().filter(|f| f.fixable && f.fixed.is_none()).count();
    let open = r.open();
    out.push_str(&match (r.findings.len(), open) {
        (0, _) => "no inconsistencies found\n".to_string(),
        (n, 0) => format!("{n} inconsistencies found, all fixed\n"),
        (n, o) if fixable > 0 => {
            format!("{n} inconsistencies found, {o} open ({fixable} fixable by check --fix)\n")
        }
        (n, o) => format!("{n} inconsistencies found, {o} open\n"),
    });
    out.push_str(&unreachable_lines(&r.unreachable));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_escaped_and_bounded() {
        assert_eq!(clean("a\u{1b}[2Jb\n", 100), "a\\u{1b}[2Jb\\n");
        let long = "x".repeat(MAX_CELL_CHARS + 1);
        assert_eq!(cell(&long).chars().count(), MAX_CELL_CHARS + 3, "cut at the limit, then ...");
        assert_eq!(cell(&long[..MAX_CELL_CHARS]), "x".repeat(MAX_CELL_CHARS), "at the limit: whole");
    }

    #[test]
    fn tables_align_columns() {
        let t = table(&["A", "BB"], &[vec!["long".into(), "x".into()], vec!["s".into(), "".into()]]);
        assert_eq!(t, "A     BB\nlong  x\ns\n");
    }
}
