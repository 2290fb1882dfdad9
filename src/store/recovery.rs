//! What an operator can do when the store refuses to open, worked out from the files that are
//! actually there, so that the advice in the error is true: `store.prev` is only offered when
//! it loads, "start empty" names every file that would otherwise stop the next start.
//!
//! Owns: inspecting `store.prev`/`store.tmp` read-only and the wording of the ways out. Must
//! not: change any file.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::journal::{self, Content, ReplayError};
use super::{MAX_STORE_BYTES, files, legacy, sibling};

/// What `store.prev` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prev {
    Absent,
    /// It loads; the text says what it holds ("generation 3, 12 reservations").
    Valid(String),
    /// It would be refused too; the text says why.
    Damaged(String),
}

/// Reads `path` as a store would (regular file, size limit) and says what it holds.
pub(super) fn inspect(path: &Path) -> Prev {
    let opened = match files::open_existing(path, false, None) {
        Ok(None) => return Prev::Absent,
        Ok(Some(o)) => o,
        Err(e) => return Prev::Damaged(e.to_string()),
    };
    if opened.meta.len() > MAX_STORE_BYTES {
        return Prev::Damaged(format!("{} bytes, over the limit", opened.meta.len()));
    }
    let mut bytes = Vec::new();
    if let Err(e) = opened.file.take(MAX_STORE_BYTES).read_to_end(&mut bytes) {
        return Prev::Damaged(format!("unreadable: {e}"));
    }
    match journal::content(&bytes) {
        Content::Empty => Prev::Damaged("empty".into()),
        Content::Reference => match legacy::import(&bytes) {
            Ok(s) => Prev::Valid(format!("the reference implementation's store, {} reservations", s.len())),
            Err(e) => Prev::Damaged(e),
        },
        Content::Journal => match journal::replay(&bytes) {
            Ok(r) => Prev::Valid(format!("generation {}, {} reservations", r.generation, r.state.len())),
            Err(ReplayError::Damaged { line, reason }) => Prev::Damaged(format!("line {line}: {reason}")),
            Err(ReplayError::Version(v)) => Prev::Damaged(format!("format version {v}")),
        },
    }
}

/// True when `store.tmp` holds at least one record line (more than a header): the
/// unfinished compaction of a store that had content. A tmp with no complete line after the
/// header is what a crash during the very first start leaves, and holds nothing.
pub(super) fn tmp_has_records(tmp: &Path) -> bool {
    let Ok(Some(o)) = files::open_existing(tmp, false, None) else { return false };
    let mut bytes = Vec::new();
    // Two newlines are enough to know.
    let _ = o.file.take(MAX_STORE_BYTES).read_to_end(&mut bytes);
    bytes.iter().filter(|b| **b == b'\n').count() >= 2
}

/// The ways out of a refused store, for its error message.
#[derive(Debug)]
pub struct Recovery {
    pub path: PathBuf,
    /// The damaged line, when one line is to blame (deleting it is then a way out).
    pub line: Option<usize>,
    pub prev: Prev,
    /// `store.tmp` exists (an unfinished compaction): it must be moved aside too to start empty.
    pub tmp: bool,
}

impl Recovery {
    pub(super) fn new(path: &Path, line: Option<usize>) -> Recovery {
        Recovery {
            path: path.to_path_buf(),
            line: line.filter(|l| *l > 1),
            prev: inspect(&sibling(path, ".prev")),
            tmp: files::regular_or_absent(&sibling(path, ".tmp")).map(|m| m.is_some()).unwrap_or(true),
        }
    }
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path.display();
        write!(f, "the file was left untouched; keep a copy (cp -p {p} {p}.damaged), then either")?;
        if let Some(line) = self.line {
            write!(f, " delete line {line} (sed -i '{line}d' {p}; loses that line's change), or")?;
        }
        if let Prev::Valid(what) = &self.prev {
            write!(
                f,
                " restore the previous generation (mv {p}.prev {p}; it holds {what}; loses the changes since the last compaction), or"
            )?;
        }
        let aside = match (&self.prev, self.tmp) {
            (Prev::Absent, false) => format!("mv {p} {p}.damaged"),
            (Prev::Absent, true) => format!("mv {p} {p}.damaged; mv {p}.tmp {p}.tmp.old"),
            (_, false) => format!("mv {p} {p}.damaged; mv {p}.prev {p}.prev.old"),
            (_, true) => format!("mv {p} {p}.damaged; mv {p}.prev {p}.prev.old; mv {p}.tmp {p}.tmp.old"),
        };
        write!(f, " start empty ({aside}; loses every reservation)")?;
        match &self.prev {
            Prev::Valid(_) => {}
            Prev::Damaged(why) => write!(f, "; not {p}.prev: it is damaged too ({why})")?,
            Prev::Absent => write!(f, "; there is no {p}.prev to restore")?,
        }
        write!(
            f,
            "; a pod whose reservation is lost keeps its address while this node may hand it out again, so restart those pods"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::TempDir;

    #[test]
    fn advice_names_only_ways_out_that_exist() {
        let d = TempDir::new("recovery");
        let p = d.join("store");
        let ps = p.display().to_string();
        let r = Recovery::new(&p, Some(5)).to_string();
        assert!(r.contains("sed -i '5d'"), "{r}");
        assert!(r.contains(&format!("there is no {ps}.prev to restore")), "{r}");
        assert!(r.contains(&format!("start empty (mv {ps} {ps}.damaged; loses every")), "{r}");
        std::fs::write(d.join("store.prev"), b"junk\n").expect("write");
        std::fs::write(d.join("store.tmp"), b"").expect("write");
        let r = Recovery::new(&p, Some(1)).to_string();
        assert!(!r.contains("sed"), "line 1 (the header) cannot be deleted: {r}");
        assert!(r.contains("prev: it is damaged too (line 1: not a store line)"), "{r}");
        assert!(!r.contains("restore"), "{r}");
        assert!(r.contains(&format!("mv {ps}.prev {ps}.prev.old; mv {ps}.tmp {ps}.tmp.old")), "{r}");
        let mut valid = journal::encode_line(&crate::store::Header {
            format: crate::store::record::FORMAT_NAME.into(),
            version: 2,
            generation: 4,
        });
        valid.extend(journal::encode_line(&crate::store::Txn { seq: 1, ops: vec![] }));
        std::fs::write(d.join("store.prev"), &valid).expect("write");
        let r = Recovery::new(&p, None).to_string();
        assert!(
            r.contains(&format!(
                "restore the previous generation (mv {ps}.prev {ps}; it holds generation 4, 0 reservations"
            )),
            "{r}"
        );
    }
}
