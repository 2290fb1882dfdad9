//! The golden frames in `protocol/examples/` against the code, and the spec's tables against
//! `ErrorCode`, so that `protocol/README.md`, the examples and `src/protocol` cannot drift.
//!
//! Every `request-*.json` must decode as a `RequestFrame` and every `response-*.json` as a
//! `ResponseFrame`, re-encode to the identical JSON value, and survive a trip through the frame
//! codec. Must not: depend on a daemon or the network.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use nv_ipam::protocol::frame;
use nv_ipam::protocol::{
    ErrorCode, MAX_FRAME_BYTES, PROTOCOL_VERSION, RequestFrame, Response, ResponseFrame,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol/examples")
}

fn examples() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in fs::read_dir(examples_dir()).expect("protocol/examples exists") {
        let path = entry.expect("readable dir entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).expect("utf-8 file name").to_string();
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: not JSON: {e}"));
        out.push((name, value));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Decodes, re-encodes and compares; then frames and reads back.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(name: &str, value: &Value) -> T {
    let typed: T =
        serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{name}: does not decode: {e}"));
    let again = serde_json::to_value(&typed).unwrap_or_else(|e| panic!("{name}: does not encode: {e}"));
    assert_eq!(&again, value, "{name}: re-encoded JSON differs from the example (spec and code drifted)");
    let bytes = frame::encode(&typed).unwrap_or_else(|e| panic!("{name}: frame encode: {e}"));
    assert_eq!(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize, bytes.len() - 4);
    assert!(bytes.len() - 4 <= MAX_FRAME_BYTES);
    let back: T =
        frame::read_frame(&mut bytes.as_slice()).unwrap_or_else(|e| panic!("{name}: read_frame: {e}"));
    assert_eq!(back, typed, "{name}: framed round trip differs");
    typed
}

#[test]
fn every_example_round_trips() {
    let all = examples();
    assert!(all.len() >= 20, "expected the full example set, found {}", all.len());
    let mut ops = BTreeSet::new();
    let mut codes = BTreeSet::new();
    for (name, value) in &all {
        assert!(name.ends_with(".json"), "{name}: only .json files belong in protocol/examples");
        if name.starts_with("request-") {
            let f: RequestFrame = round_trip(name, value);
            assert_eq!(f.version, PROTOCOL_VERSION, "{name}");
            ops.insert(f.request.op_name());
        } else if name.starts_with("response-") {
            let f: ResponseFrame = round_trip(name, value);
            assert_eq!(f.version, PROTOCOL_VERSION, "{name}");
            if let Response::Error(e) = &f.response {
                assert_eq!(
                    name,
                    &format!("response-error-{}.json", e.code),
                    "error examples are named by code"
                );
                codes.insert(e.code.as_str());
            }
        } else {
            panic!("{name}: example names start with request- or response-");
        }
    }
    assert_eq!(ops, BTreeSet::from(["allocate", "check", "release", "gc", "status"]), "one request per op");
    let want: BTreeSet<&str> = all_codes().iter().map(|c| c.as_str()).collect();
    assert_eq!(codes, want, "one error example per ErrorCode");
}

/// Every error code. The exhaustive match makes a new variant a compile error here until it
/// gets an example and a row in the spec.
fn all_codes() -> Vec<ErrorCode> {
    fn exhaustive(c: ErrorCode) {
        match c {
            ErrorCode::InvalidRequest
            | ErrorCode::UnsupportedVersion
            | ErrorCode::BadFrame
            | ErrorCode::PoolNotFound
            | ErrorCode::PoolExhausted
            | ErrorCode::IpUnavailable
            | ErrorCode::IpOutOfRange
            | ErrorCode::NotAllocated
            | ErrorCode::Mismatch
            | ErrorCode::StoreFailed
            | ErrorCode::NotReady
            | ErrorCode::Internal => {}
        }
    }
    let all = vec![
        ErrorCode::InvalidRequest,
        ErrorCode::UnsupportedVersion,
        ErrorCode::BadFrame,
        ErrorCode::PoolNotFound,
        ErrorCode::PoolExhausted,
        ErrorCode::IpUnavailable,
        ErrorCode::IpOutOfRange,
        ErrorCode::NotAllocated,
        ErrorCode::Mismatch,
        ErrorCode::StoreFailed,
        ErrorCode::NotReady,
        ErrorCode::Internal,
    ];
    all.iter().copied().for_each(exhaustive);
    all
}

#[test]
fn spec_table_matches_error_codes() {
    let spec = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol/README.md"))
        .expect("protocol/README.md exists");
    for code in all_codes() {
        let row = spec
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", code.as_str())))
            .unwrap_or_else(|| panic!("protocol/README.md has no table row for `{code}`"));
        let cni = row.rsplit('|').nth(1).map(str::trim).unwrap_or_default();
        assert_eq!(cni, code.cni_code().to_string(), "CNI code for `{code}` in the spec: {row}");
    }
    assert!(spec.contains(&format!("{MAX_FRAME_BYTES}")), "the spec states MAX_FRAME_BYTES in bytes");
}

#[test]
fn unknown_fields_are_ignored() {
    // Additive changes within protocol version 1 must not break an older peer.
    let v = serde_json::json!({"version":1,"op":"status","pools":[],"poolType":"ippool","futureField":true});
    let f: RequestFrame = serde_json::from_value(v).expect("unknown field ignored");
    assert_eq!(f.request.op_name(), "status");
}
