use std::net::IpAddr;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::api::PoolType;
use crate::bounded::MAX_MESSAGE_BYTES;
use crate::protocol::frame::{self, MAX_FRAME_BYTES};
use crate::protocol::message::{Attachment, MAX_POOLS_PER_REQUEST, PodRef};

fn code(body: &[u8]) -> ErrorCode {
    decode_request(body).expect_err("refused").code
}

fn message(body: &[u8]) -> String {
    decode_request(body).expect_err("refused").message
}

const STATUS: &str = r#"{"version":1,"op":"status","pools":["a"],"poolType":"ippool"}"#;

#[test]
fn the_golden_requests_decode_and_re_encode_identically() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol/examples");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("examples") {
        let path = entry.expect("entry").path();
        if !path.file_name().and_then(|f| f.to_str()).is_some_and(|f| f.starts_with("request-")) {
            continue;
        }
        let bytes = std::fs::read(&path).expect("readable");
        let f = decode_request(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let want: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(serde_json::to_value(&f).expect("encodes"), want, "{}", path.display());
        n += 1;
    }
    assert_eq!(n, 8, "every request example");
}

#[test]
fn refusals_have_the_right_codes_and_messages() {
    assert_eq!(code(b"\xff{}"), ErrorCode::BadFrame);
    assert!(message(b"{\"version\":1,\"x\":\"\xc3\"}").starts_with("request is not UTF-8"));
    assert!(message(b"not json").starts_with("request is not valid JSON: "));
    assert_eq!(message(b"[1,\"status\"]"), "request is not a JSON object");
    assert_eq!(message(b"5"), "request is not a JSON object");
    assert!(
        message(b"{\"version\":1,\"op\":\"status\"} {}").starts_with("request is not valid JSON: trailing")
    );
    assert_eq!(message(br#"{"op":"status"}"#), "request has no numeric \"version\" field");
    assert_eq!(message(br#"{"version":"1","op":"status"}"#), "request has no numeric \"version\" field");
    assert_eq!(message(br#"{"version":1.0,"op":"status"}"#), "request has no numeric \"version\" field");
    assert_eq!(message(br#"{"version":-1,"op":"status"}"#), "request has no numeric \"version\" field");
    // another version is judged before anything else of the frame
    for other in [r#"{"version":2}"#, r#"{"op":5,"version":2,"pools":{}}"#, r#"{"version":0,"op":"nope"}"#] {
        let e = decode_request(other.as_bytes()).expect_err(other);
        assert_eq!(e.code, ErrorCode::UnsupportedVersion, "{other}");
    }
    assert_eq!(
        message(br#"{"version":2,"op":"status"}"#),
        "protocol version 2 is not supported, this ipam-node speaks 1; install matching nv-ipam and ipam-node"
    );
    assert_eq!(message(br#"{"version":1}"#), "malformed request: missing field `op`");
    assert_eq!(message(br#"{"version":1,"op":7}"#), "malformed request: \"op\" must be a string");
    assert_eq!(
        message(br#"{"version":1,"op":"delete"}"#),
        "malformed request: unknown op \"delete\"; expected one of allocate, check, release, gc, status"
    );
    let long_op = format!(r#"{{"version":1,"op":"{}"}}"#, "x".repeat(100_000));
    assert!(message(long_op.as_bytes()).len() < 200, "the op name is cut, not echoed whole");
    assert!(
        message(br#"{"version":1,"op":"release","network":"n","containerId":"c","pools":["p"]}"#)
            .starts_with("malformed request: missing field `ifname`")
    );
    assert!(message(br#"{"version":1,"version":1,"op":"status"}"#).contains("duplicate field `version`"));
    let huge = format!(r#"{{"version":1,"op":"allocate","allocateIpWithIndex":"{}"}}"#, "9".repeat(1 << 20));
    assert!(message(huge.as_bytes()).len() <= MAX_MESSAGE_BYTES + 3, "echoed input is clipped");
}

#[test]
fn pools_up_to_the_limit_decode_and_more_are_refused() {
    let frame = |n: usize| {
        let pools: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
        serde_json::to_vec(&json!({"version": 1, "op": "status", "pools": pools})).expect("json")
    };
    let ok = decode_request(&frame(MAX_POOLS_PER_REQUEST)).expect("at the limit");
    let Request::Status(s) = ok.request else { panic!("status") };
    assert_eq!(s.pools.len(), MAX_POOLS_PER_REQUEST);
    let e = decode_request(&frame(MAX_POOLS_PER_REQUEST + 1)).expect_err("one more");
    assert_eq!(e.code, ErrorCode::BadFrame);
    assert!(e.message.contains("more than 16 entries in a list (the limit)"), "{}", e.message);
}

#[test]
fn nesting_up_to_the_limit_is_skipped_and_deeper_is_refused() {
    // the frame object is level 1, so an unknown field may nest MAX_DEPTH - 1 levels
    let at = format!(
        r#"{{"version":1,"op":"status","x":{}0{}}}"#,
        "[".repeat(MAX_DEPTH - 1),
        "]".repeat(MAX_DEPTH - 1)
    );
    assert!(decode_request(at.as_bytes()).is_ok());
    let over =
        format!(r#"{{"version":1,"op":"status","x":{}0{}}}"#, "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
    let e = decode_request(over.as_bytes()).expect_err("too deep");
    assert_eq!(e.code, ErrorCode::BadFrame);
    assert!(e.message.starts_with("request nested deeper than the limit of 64 levels"), "{}", e.message);
    // 100,000 levels: refused at level 65, whatever follows
    let deep = format!(r#"{{"version":1,"op":"status","x":{}"#, "[{".repeat(50_000));
    assert!(decode_request(deep.as_bytes()).expect_err("deep").message.contains("limit of 64 levels"));
}

#[test]
fn the_trusted_deserialize_path_agrees() {
    let f: RequestFrame = serde_json::from_str(STATUS).expect("decodes");
    assert_eq!(f, decode_request(STATUS.as_bytes()).expect("decodes"));
    let e = serde_json::from_str::<RequestFrame>(r#"{"version":2}"#).expect_err("version");
    assert!(e.to_string().starts_with("protocol version 2 is not supported"), "{e}");
}

// ---- properties: bounded run time (explicit case counts, small inputs; ~1 s in debug) ----

fn text() -> impl Strategy<Value = String> {
    "[a-z0-9_./:-]{0,8}|[ -~é\u{1}\u{7f}\"\\\\]{0,6}"
}

fn ips() -> impl Strategy<Value = Vec<IpAddr>> {
    proptest::collection::vec(any::<IpAddr>(), 0..4)
}

fn pools() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(text(), 0..=MAX_POOLS_PER_REQUEST)
}

fn pool_type() -> impl Strategy<Value = PoolType> {
    prop_oneof![Just(PoolType::IpPool), Just(PoolType::CidrPool)]
}

fn request() -> impl Strategy<Value = Request> {
    let pod = (proptest::option::of(text()), proptest::option::of(text()), proptest::option::of(text()))
        .prop_map(|(name, namespace, uid)| PodRef { name, namespace, uid });
    let allocate = (
        (text(), text(), text(), pools(), pool_type()),
        (ips(), any::<bool>(), proptest::option::of(any::<u32>()), pod, proptest::option::of(text())),
    )
        .prop_map(
            |((network, container_id, ifname, pools, pool_type), (requested_ips, gw, index, pod, dev))| {
                Request::Allocate(AllocateRequest {
                    network,
                    container_id,
                    ifname,
                    pools,
                    pool_type,
                    requested_ips,
                    allocate_default_gateway: gw,
                    allocate_ip_with_index: index,
                    pod,
                    device_id: dev,
                })
            },
        );
    let check = (text(), text(), text(), pools(), pool_type(), ips()).prop_map(
        |(network, container_id, ifname, pools, pool_type, ips)| {
            Request::Check(CheckRequest { network, container_id, ifname, pools, pool_type, ips })
        },
    );
    let release = (text(), text(), text(), pools(), pool_type()).prop_map(
        |(network, container_id, ifname, pools, pool_type)| {
            Request::Release(ReleaseRequest { network, container_id, ifname, pools, pool_type })
        },
    );
    let gc = (text(), proptest::collection::vec((text(), text()), 0..6)).prop_map(|(network, valid)| {
        Request::Gc(GcRequest {
            network,
            valid_attachments: valid
                .into_iter()
                .map(|(container_id, ifname)| Attachment { container_id, ifname })
                .collect(),
        })
    });
    let status = (pools(), pool_type())
        .prop_map(|(pools, pool_type)| Request::Status(StatusRequest { pools, pool_type }));
    prop_oneof![allocate, check, release, gc, status]
}

/// Any JSON value nested at most `depth` levels, for unknown fields.
fn junk(depth: u32) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(depth, 32, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Heap bytes a decoded request holds: string and list capacities.
fn heap_bytes(r: &Request) -> usize {
    let s = |x: &String| x.capacity();
    let o = |x: &Option<String>| x.as_ref().map_or(0, String::capacity);
    let list = |p: &Vec<String>| p.capacity() * size_of::<String>() + p.iter().map(s).sum::<usize>();
    let ips = |v: &Vec<IpAddr>| v.capacity() * size_of::<IpAddr>();
    match r {
        Request::Allocate(a) => {
            s(&a.network)
                + s(&a.container_id)
                + s(&a.ifname)
                + list(&a.pools)
                + ips(&a.requested_ips)
                + o(&a.pod.name)
                + o(&a.pod.namespace)
                + o(&a.pod.uid)
                + o(&a.device_id)
        }
        Request::Check(c) => s(&c.network) + s(&c.container_id) + s(&c.ifname) + list(&c.pools) + ips(&c.ips),
        Request::Release(r) => s(&r.network) + s(&r.container_id) + s(&r.ifname) + list(&r.pools),
        Request::Gc(g) => {
            s(&g.network)
                + g.valid_attachments.capacity() * size_of::<Attachment>()
                + g.valid_attachments.iter().map(|a| s(&a.container_id) + s(&a.ifname)).sum::<usize>()
        }
        Request::Status(st) => list(&st.pools),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    /// Every valid request survives encode → frame → decode unchanged, and what it holds on
    /// the heap is bounded by the bytes it came in.
    #[test]
    fn every_valid_request_round_trips(req in request()) {
        let sent = RequestFrame::new(req);
        let bytes = frame::encode(&sent).expect("encodes");
        let body = frame::read_frame_bytes(&mut bytes.as_slice()).expect("one frame");
        let back = decode_request(&body).expect("decodes");
        prop_assert!(heap_bytes(&back.request) <= 8 * body.len(), "{} heap bytes from {}", heap_bytes(&back.request), body.len());
        prop_assert_eq!(back, sent);
    }

    /// Unknown fields anywhere in the frame, nested up to the limit, change nothing.
    #[test]
    fn unknown_fields_are_skipped(req in request(), extra in proptest::collection::vec(("[A-Z][a-z]{0,5}", junk(6)), 0..4)) {
        let sent = RequestFrame::new(req);
        let mut v = serde_json::to_value(&sent).expect("encodes");
        let Value::Object(m) = &mut v else { unreachable!("a frame is an object") };
        for (k, j) in extra {
            m.insert(k, j);
        }
        let body = serde_json::to_vec(&v).expect("json");
        prop_assert_eq!(decode_request(&body).expect("decodes"), sent);
    }

    /// A frame without one of its required fields, with another version or with an unknown op
    /// gets the code the spec gives it.
    #[test]
    fn broken_frames_get_the_right_code(req in request(), which in 0usize..6, pick in any::<usize>(), version in 2u64.., op in "[a-z]{1,8}") {
        let mut v = serde_json::to_value(RequestFrame::new(req)).expect("encodes");
        let Value::Object(m) = &mut v else { unreachable!("a frame is an object") };
        let required: Vec<String> = m.keys().filter(|k| ["network", "containerId", "ifname", "pools", "validAttachments", "op"].contains(&k.as_str())).cloned().collect();
        let (want, what) = match which {
            0 if !required.is_empty() => {
                let k = &required[pick % required.len()];
                if k == "pools" && m["op"] == "status" {
                    return Ok(()); // optional for status
                }
                m.remove(k);
                (ErrorCode::BadFrame, format!("without {k}"))
            }
            1 => {
                m.insert("version".into(), version.into());
                (ErrorCode::UnsupportedVersion, format!("version {version}"))
            }
            2 if !["allocate", "check", "release", "gc", "status"].contains(&op.as_str()) => {
                m.insert("op".into(), op.clone().into());
                (ErrorCode::BadFrame, format!("op {op}"))
            }
            3 => {
                m.remove("version");
                (ErrorCode::BadFrame, "without version".into())
            }
            4 if m["op"] != "gc" => {
                m.insert("pools".into(), json!(vec!["p"; MAX_POOLS_PER_REQUEST + 1]));
                (ErrorCode::BadFrame, "too many pools".into())
            }
            _ => return Ok(()),
        };
        let body = serde_json::to_vec(&v).expect("json");
        let e = decode_request(&body).expect_err(&what);
        prop_assert_eq!(e.code, want, "{}: {}", what, e.message);
        prop_assert!(e.message.len() <= MAX_MESSAGE_BYTES + 3);
    }

    /// Arbitrary bytes, and arbitrary streams through the frame reader, never panic; a refusal
    /// is `bad_frame` or `unsupported_version`; the reader holds no more than what arrived
    /// (plus its 64 KiB first buffer).
    #[test]
    fn arbitrary_bytes_are_refused_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..256), claimed in any::<u32>()) {
        match decode_request(&bytes) {
            Ok(_) => {}
            Err(e) => prop_assert!(matches!(e.code, ErrorCode::BadFrame | ErrorCode::UnsupportedVersion)),
        }
        let mut stream = claimed.to_be_bytes().to_vec();
        stream.extend_from_slice(&bytes);
        match frame::read_frame_bytes(&mut stream.as_slice()) {
            Ok(body) => {
                prop_assert_eq!(body.len(), claimed as usize);
                prop_assert!(body.capacity() <= (64 << 10).max(2 * body.len()));
                let _ = decode_request(&body);
            }
            Err(frame::FrameError::TooLarge { len, max }) => prop_assert!(len > max && max == MAX_FRAME_BYTES),
            Err(frame::FrameError::Truncated { expected, got }) => prop_assert!(got < expected),
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }

    /// Frames built from valid pieces in a random shape (fields shuffled and repeated, values
    /// of the wrong type) never panic and are answered with a protocol code.
    #[test]
    fn structured_garbage_is_refused_cleanly(fields in proptest::collection::vec((prop_oneof![
        Just("version"), Just("op"), Just("network"), Just("containerId"), Just("ifname"), Just("pools"),
        Just("poolType"), Just("requestedIps"), Just("ips"), Just("pod"), Just("validAttachments"),
        Just("allocateIpWithIndex"), Just("allocateDefaultGateway"), Just("deviceId"),
    ], prop_oneof![junk(3), Just(json!(1)), Just(json!("allocate")), Just(json!("gc")), Just(json!(["p"]))]), 0..10)) {
        let mut body = b"{".to_vec();
        for (i, (k, v)) in fields.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend(serde_json::to_vec(k).expect("json"));
            body.push(b':');
            body.extend(serde_json::to_vec(v).expect("json"));
        }
        body.push(b'}');
        if let Err(e) = decode_request(&body) {
            prop_assert!(matches!(e.code, ErrorCode::BadFrame | ErrorCode::UnsupportedVersion), "{:?}", e);
        }
    }
}
