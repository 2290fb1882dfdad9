//! The journal's line format and its replay into a state: what a store file says, decided
//! from its bytes alone.
//!
//! Owns: the line encoding (`<16 hex digits FNV-1a-64 of JSON> <JSON>\n`), the rules that tell a
//! torn write from damage, and the check that sequence numbers only grow. Must not: do I/O
//! (the caller reads the file and decides what to do with a torn tail).

use super::record::{self, Header, Txn};
use super::state::StoreState;

/// FNV-1a, 64 bit: a checksum against torn or damaged lines, not against tampering.
pub(super) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// One journal line, newline included.
pub(super) fn encode_line<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let json = serde_json::to_vec(value).expect("store records always serialize");
    let mut line = format!("{:016x} ", fnv1a64(&json)).into_bytes();
    line.extend_from_slice(&json);
    line.push(b'\n');
    line
}

/// The JSON of a line (without its newline) whose checksum matches, or why not.
pub(super) fn decode_line(line: &[u8]) -> Result<&[u8], String> {
    if line.len() < 18 || line[16] != b' ' {
        return Err("not a store line".into());
    }
    let sum = std::str::from_utf8(&line[..16])
        .ok()
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or("bad checksum field")?;
    let json = &line[17..];
    if fnv1a64(json) != sum {
        return Err("checksum mismatch".into());
    }
    Ok(json)
}

/// What a store file holds, judged by its first bytes.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Content {
    /// No bytes, or only whitespace: no header, so no generation was ever completed in it.
    Empty,
    /// The reference implementation's single JSON document.
    Reference,
    /// Our journal (or damage, which replay reports).
    Journal,
}

pub(super) fn content(bytes: &[u8]) -> Content {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        Content::Empty
    } else if bytes.first() == Some(&b'{') {
        Content::Reference
    } else {
        Content::Journal
    }
}

/// An unterminated last line: a write torn by a crash.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Torn {
    /// Byte offset where the line starts (the file is cut back to here).
    pub offset: usize,
    /// 1-based line number.
    pub line: usize,
}

/// A journal replayed into a state.
#[derive(Debug)]
pub(super) struct Replayed {
    pub state: StoreState,
    pub generation: u64,
    pub next_seq: u64,
    /// Complete record lines (the header not counted).
    pub lines: usize,
    pub torn: Option<Torn>,
}

/// Why a journal cannot be replayed.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ReplayError {
    /// A complete line (or the header) is bad: the file is damaged.
    Damaged { line: usize, reason: String },
    /// A valid header with a format version this build does not read.
    Version(u32),
}

/// Replays `bytes`. Only an unterminated last line is a torn write (`Replayed::torn`): every
/// acknowledged line ends in a newline that was on disk before the acknowledgement. A complete
/// line that fails its checksum, does not decode, repeats or reorders a sequence number or
/// contradicts the state is damage, wherever it is.
pub(super) fn replay(bytes: &[u8]) -> Result<Replayed, ReplayError> {
    let damaged = |line: usize, reason: String| ReplayError::Damaged { line, reason };
    let mut out = Replayed { state: StoreState::default(), generation: 0, next_seq: 1, lines: 0, torn: None };
    let mut last_seq = 0u64;
    let mut pos = 0usize;
    let mut lineno = 0usize;
    while pos < bytes.len() {
        lineno += 1;
        let Some(len) = bytes[pos..].iter().position(|b| *b == b'\n') else {
            let tail = &bytes[pos..];
            if lineno == 1 {
                // The header is only ever written whole (temp file, fsync, rename).
                return Err(damaged(1, "the header line is unterminated".into()));
            }
            // A torn write is a prefix of a line; a whole, checksummed line followed by one
            // more byte is a line whose newline was damaged.
            if let Some((last, body)) = tail.split_last()
                && decode_line(body).is_ok()
            {
                return Err(damaged(
                    lineno,
                    format!("the line is complete but ends in byte {last:#04x} instead of a newline"),
                ));
            }
            out.torn = Some(Torn { offset: pos, line: lineno });
            break;
        };
        let json = decode_line(&bytes[pos..pos + len]).map_err(|r| damaged(lineno, r))?;
        if lineno == 1 {
            let h: Header =
                serde_json::from_slice(json).map_err(|e| damaged(1, format!("bad header: {e}")))?;
            if h.format != record::FORMAT_NAME {
                return Err(damaged(1, format!("not an nv-ipam store (format {:?})", h.format)));
            }
            if !(record::FORMAT_VERSION_MIN..=record::FORMAT_VERSION).contains(&h.version) {
                return Err(ReplayError::Version(h.version));
            }
            out.generation = h.generation;
        } else {
            let t: Txn =
                serde_json::from_slice(json).map_err(|e| damaged(lineno, format!("bad record: {e}")))?;
            if t.seq <= last_seq {
                return Err(damaged(
                    lineno,
                    format!(
                        "sequence number {} does not follow {last_seq} (a repeated or reordered line)",
                        t.seq
                    ),
                ));
            }
            last_seq = t.seq;
            out.state.apply_all(&t.ops).map_err(|e| damaged(lineno, format!("inconsistent record: {e}")))?;
            out.lines += 1;
        }
        pos += len + 1;
    }
    out.next_seq = last_seq + 1;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::{Op, Reservation};

    fn res(cid: &str, ip: &str) -> Op {
        Op::Reserve(Reservation {
            pool: "blue".into(),
            container_id: cid.into(),
            ifname: "eth0".into(),
            ip: ip.parse().expect("ip"),
            network: "net1".into(),
            pod_name: None,
            pod_namespace: None,
            pod_uid: None,
            device_id: None,
            created: 1,
            is_static: false,
        })
    }

    fn journal(txns: &[(u64, Op)]) -> Vec<u8> {
        let mut b = encode_line(&Header { format: record::FORMAT_NAME.into(), version: 2, generation: 7 });
        for (seq, op) in txns {
            b.extend(encode_line(&Txn { seq: *seq, ops: vec![op.clone()] }));
        }
        b
    }

    fn damaged_at(bytes: &[u8]) -> (usize, String) {
        match replay(bytes) {
            Err(ReplayError::Damaged { line, reason }) => (line, reason),
            other => panic!("expected damage, got {other:?}"),
        }
    }

    #[test]
    fn replays_a_clean_journal() {
        let r = replay(&journal(&[(1, res("a", "10.0.0.2")), (2, res("b", "10.0.0.3"))])).expect("replay");
        assert_eq!((r.state.len(), r.generation, r.next_seq, r.lines, r.torn), (2, 7, 3, 2, None));
    }

    #[test]
    fn only_an_unterminated_last_line_is_torn() {
        let good = journal(&[(1, res("a", "10.0.0.2"))]);
        let mut b = good.clone();
        let next = encode_line(&Txn { seq: 2, ops: vec![res("b", "10.0.0.3")] });
        // every strict prefix of a line, including the whole line without its newline
        for cut in 1..next.len() {
            b.truncate(good.len());
            b.extend_from_slice(&next[..cut]);
            let r = replay(&b).unwrap_or_else(|e| panic!("prefix {cut}: {e:?}"));
            assert_eq!(r.torn, Some(Torn { offset: good.len(), line: 3 }), "prefix {cut}");
            assert_eq!(r.state.len(), 1);
        }
    }

    #[test]
    fn a_bit_flip_in_the_last_complete_line_is_damage() {
        let mut b = journal(&[(1, res("a", "10.0.0.2")), (2, res("b", "10.0.0.3"))]);
        let i = b.windows(8).position(|w| w == b"10.0.0.3").expect("ip");
        b[i + 7] ^= 0x01;
        let (line, reason) = damaged_at(&b);
        assert_eq!((line, reason.as_str()), (3, "checksum mismatch"));
    }

    #[test]
    fn a_damaged_final_newline_is_damage_not_a_torn_write() {
        let mut b = journal(&[(1, res("a", "10.0.0.2"))]);
        let last = b.len() - 1;
        b[last] ^= 0x01; // '\n' -> 0x0b
        let (line, reason) = damaged_at(&b);
        assert_eq!(line, 2);
        assert!(reason.contains("0x0b instead of a newline"), "{reason}");
    }

    #[test]
    fn repeated_and_reordered_sequence_numbers_are_damage() {
        let line2 = encode_line(&Txn {
            seq: 2,
            ops: vec![Op::Release { pool: "blue".into(), container_id: "a".into(), ifname: "eth0".into() }],
        });
        let mut b = journal(&[(1, res("a", "10.0.0.2"))]);
        b.extend_from_slice(&line2);
        b.extend_from_slice(&line2);
        let (line, reason) = damaged_at(&b);
        assert_eq!(line, 4);
        assert!(reason.contains("sequence number 2 does not follow 2"), "{reason}");
        // a gap (a line removed by hand) is allowed
        let r = replay(&journal(&[(1, res("a", "10.0.0.2")), (5, res("b", "10.0.0.3"))])).expect("gap");
        assert_eq!(r.next_seq, 6);
    }

    #[test]
    fn the_same_address_reserved_twice_is_damage() {
        let b = journal(&[(1, res("a", "10.0.0.2")), (2, res("b", "10.0.0.2"))]);
        let (line, reason) = damaged_at(&b);
        assert_eq!(line, 3);
        assert!(reason.contains("already held by a/eth0"), "{reason}");
    }

    #[test]
    fn header_problems_are_damage_at_line_1() {
        // header-less: a record first
        let rec = encode_line(&Txn { seq: 1, ops: vec![res("a", "10.0.0.2")] });
        assert_eq!(damaged_at(&rec).0, 1);
        // unterminated header
        let h = journal(&[]);
        assert_eq!(damaged_at(&h[..h.len() - 1]).0, 1);
        // NUL bytes (a block that never reached the disk)
        assert_eq!(damaged_at(&[0u8; 64]).0, 1);
        // a future version
        let v9 = encode_line(&Header { format: record::FORMAT_NAME.into(), version: 9, generation: 1 });
        assert!(matches!(replay(&v9), Err(ReplayError::Version(9))));
    }

    #[test]
    fn content_kinds() {
        assert_eq!(content(b""), Content::Empty);
        assert_eq!(content(b" \n\t"), Content::Empty);
        assert_eq!(content(b"{\"version\":1}"), Content::Reference);
        assert_eq!(content(b"\0\0"), Content::Journal);
    }
}
