//! Hostile inputs for the decoders, shared by `tests/decode_limits.rs` and
//! `benches/decode.rs`: 4 MiB frames and AdmissionReviews built to cost the most memory per
//! byte, and documents nested 100,000 deep. Built by byte concatenation (no `Value` tree), so
//! that building one costs its size and nothing more; and read peak RSS the way both use it.
#![allow(dead_code)]

use std::fs;

/// The largest frame body the daemon reads (`protocol::MAX_FRAME_BYTES`), and the webhook's
/// largest review body (`controller::webhook::MAX_BODY_BYTES`): both 4 MiB.
pub const MAX_INPUT: usize = 4 << 20;

/// `prefix`, then `unit` repeated (comma-separated) as often as fits, then `suffix`: at most
/// `total` bytes.
pub fn fill(prefix: &str, unit: &str, suffix: &str, total: usize) -> Vec<u8> {
    let room = total.saturating_sub(prefix.len() + suffix.len());
    let n = (room + 1) / (unit.len() + 1);
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(prefix.as_bytes());
    for i in 0..n {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(unit.as_bytes());
    }
    out.extend_from_slice(suffix.as_bytes());
    out
}

/// `n` nested arrays around `0`.
pub fn nested(n: usize) -> String {
    format!("{}0{}", "[".repeat(n), "]".repeat(n))
}

const ADD_HEAD: &str = r#"{"version":1,"op":"allocate","network":"net1","containerId":"c1","ifname":"eth0","pools":["pool1"],"poolType":"ippool","pod":{}"#;

/// Frames of at most 4 MiB, by name. What each answers depends on the daemon's pools; the
/// tests run them against one IPPool `pool1`.
pub fn frames() -> Vec<(&'static str, Vec<u8>)> {
    let m = MAX_INPUT;
    let unknown = |unit: &str| fill(&format!(r#"{ADD_HEAD},"x":["#), unit, "]}", m);
    vec![
        ("unknown field: [{},{},...]", unknown("{}")),
        ("unknown field: [[],[],...]", unknown("[]")),
        ("unknown field: 30-deep arrays", unknown(&nested(30))),
        ("unknown field: 1 KiB strings", unknown(&format!("\"{}\"", "a".repeat(1024)))),
        (
            "one 4 MiB string",
            format!(r#"{ADD_HEAD},"x":"{}"}}"#, "a".repeat(m - ADD_HEAD.len() - 8)).into_bytes(),
        ),
        (
            "escaped 4 MiB network",
            fill(
                r#"{"version":1,"op":"release","containerId":"c","ifname":"i","pools":["p"],"network":""#,
                r"\u0041",
                "\"}",
                m,
            ),
        ),
        (
            "pools: [\"a\",...]",
            fill(r#"{"version":1,"op":"status","poolType":"ippool","pools":["#, r#""a""#, "]}", m),
        ),
        ("requestedIps: [\"::\",...]", fill(&format!(r#"{ADD_HEAD},"requestedIps":["#), r#""::""#, "]}", m)),
        (
            "gc: validAttachments",
            fill(
                r#"{"version":1,"op":"gc","network":"net9","validAttachments":["#,
                r#"{"containerId":"a","ifname":"b"}"#,
                "]}",
                m,
            ),
        ),
        (
            "gc: validAttachments [{},...]",
            fill(r#"{"version":1,"op":"gc","network":"net9","validAttachments":["#, "{}", "]}", m),
        ),
        ("100,000 levels deep", format!(r#"{ADD_HEAD},"x":{}}}"#, nested(100_000)).into_bytes()),
    ]
}

/// An AdmissionReview of `op` for an IPPool, `object` and `old` (JSON text) as given.
fn review(op: &str, object: &str, old: Option<&str>) -> String {
    let old = old.map(|o| format!(r#","oldObject":{o}"#)).unwrap_or_default();
    format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"u-1","kind":{{"group":"nv-ipam.nvidia.com","version":"v1alpha1","kind":"IPPool"}},"operation":"{op}","namespace":"ns","object":{object}{old}}}}}"#
    )
}

const META: &str = r#""apiVersion":"nv-ipam.nvidia.com/v1alpha1","kind":"IPPool","metadata":{"name":"blue","namespace":"ns""#;
const SPEC: &str = r#""spec":{"subnet":"192.168.0.0/16","perNodeBlockSize":4,"gateway":"192.168.0.1""#;

/// A review whose object has `list` (a JSON member, open at its end) filled with `unit`.
fn review_filled(before: &str, unit: &str, after: &str) -> Vec<u8> {
    let probe = review("CREATE", &format!("{before}@{after}"), None);
    let (head, tail) = probe.split_once('@').expect("marker");
    fill(head, unit, tail, MAX_INPUT)
}

/// Reviews of at most 4 MiB, by name, for the IPPool path.
pub fn reviews() -> Vec<(&'static str, Vec<u8>)> {
    let capped = |n: usize, unit: &str| vec![unit; n].join(",");
    // every capped list of an IPPool at its cap, in object and oldObject: the most a review's
    // lists can hold once capped
    let full = |name: &str| {
        format!(
            r#"{{{META}}},"spec":{{"subnet":"192.168.0.0/16","perNodeBlockSize":4,"exclusions":[{e}],"perNodeExclusions":[{e}],"routes":[{e}]}},"status":{{"allocations":[{a}]}},"x":"{name}"}}"#,
            e = capped(4_096, "{}"),
            a = capped(65_536, "{}")
        )
    };
    vec![
        (
            "metadata.managedFields: [{fieldsV1},...]",
            review_filled(
                &format!(r#"{{{META},"managedFields":["#),
                r#"{"manager":"m","fieldsV1":{"f:spec":{}}}"#,
                &format!("]}},{SPEC}}}}}"),
            ),
        ),
        (
            "metadata.managedFields: [{},...]",
            review_filled(&format!(r#"{{{META},"managedFields":["#), "{}", &format!("]}},{SPEC}}}}}")),
        ),
        ("metadata.annotations: 500k tiny", {
            let mut n = 0usize;
            let mut body =
                review("CREATE", &format!(r#"{{{META},"annotations":{{@}}}},{SPEC}}}}}"#), None).into_bytes();
            let at = body.iter().position(|&b| b == b'@').expect("marker");
            let tail = body.split_off(at + 1);
            body.pop();
            while body.len() + tail.len() + 16 < MAX_INPUT {
                if n > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(format!(r#""{n:x}":"""#).as_bytes());
                n += 1;
            }
            body.extend_from_slice(&tail);
            body
        }),
        ("unknown field: [{},{},...]", review_filled(&format!(r#"{{{META}}},{SPEC}}},"x":["#), "{}", "]}")),
        (
            "spec.exclusions: real ranges",
            review_filled(
                &format!(r#"{{{META}}},{SPEC},"exclusions":["#),
                r#"{"startIP":"192.168.0.10","endIP":"192.168.0.11"}"#,
                "]}}",
            ),
        ),
        (
            "spec.exclusions: [{},...]",
            review_filled(&format!(r#"{{{META}}},{SPEC},"exclusions":["#), "{}", "]}}"),
        ),
        (
            "nodeSelector values: [\"a\",...]",
            review_filled(
                &format!(
                    r#"{{{META}}},{SPEC},"nodeSelector":{{"nodeSelectorTerms":[{{"matchExpressions":[{{"key":"k","operator":"In","values":["#
                ),
                r#""a""#,
                "]}]}]}}}",
            ),
        ),
        ("nodeSelector: 64x64 requirements of [\"a\",...]", {
            let req = format!(r#"{{"key":"k","operator":"In","values":[{}]}}"#, capped(240, r#""a""#));
            let term = format!(r#"{{"matchExpressions":[{}]}}"#, capped(64, &req));
            let terms = capped(64, &term);
            review(
                "CREATE",
                &format!(r#"{{{META}}},{SPEC},"nodeSelector":{{"nodeSelectorTerms":[{terms}]}}}}}}"#),
                None,
            )
            .into_bytes()
        }),
        ("UPDATE, 2 x 28,000 real status entries", {
            let pool = |name: &str| {
                let allocations: Vec<String> = (0..28_000u32)
                    .map(|i| {
                        let (a, b) = ((i * 4) >> 8, (i * 4) & 255);
                        format!(
                            r#"{{"nodeName":"node-{i}","startIP":"10.{}.{}.{}","endIP":"10.{}.{}.{}"}}"#,
                            a >> 8,
                            a & 255,
                            b + 1,
                            a >> 8,
                            a & 255,
                            b + 4
                        )
                    })
                    .collect();
                format!(
                    r#"{{{META}}},"spec":{{"subnet":"10.0.0.0/8","perNodeBlockSize":4}},"status":{{"allocations":[{}]}},"x":"{name}"}}"#,
                    allocations.join(",")
                )
            };
            review("UPDATE", &pool("new"), Some(&pool("old"))).into_bytes()
        }),
        (
            "every list at its cap, object and oldObject",
            review("UPDATE", &full("new"), Some(&full("old"))).into_bytes(),
        ),
        (
            "100,000 levels deep",
            review("CREATE", &format!(r#"{{{META}}},{SPEC}}},"x":{}}}"#, nested(100_000)), None).into_bytes(),
        ),
    ]
}

/// `VmHWM` and `VmRSS` of a process, in KiB.
pub fn memory_kib(pid: &str) -> (u64, u64) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Resets the peak RSS (`VmHWM`) of a process to its current RSS (Linux `clear_refs` 5).
pub fn reset_peak(pid: &str) {
    fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("write /proc/PID/clear_refs");
}
