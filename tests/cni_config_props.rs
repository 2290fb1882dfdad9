//! Property tests of the CNI config parser and the tenant-path rule: for arbitrary JSON-ish
//! network configs (nested objects using the fields the plugin reads, with values of every
//! type) every parsing step returns a value or its typed error and never panics; the decoder,
//! which builds no value tree, accepts and reads what a `serde_json::Value` did; a whole
//! plugin call answers with nothing or one JSON object; a path a tenant names is only ever
//! honoured inside the node's directory; an escaped log message holds no control character.
//!
//! Bounded: each property runs a fixed number of cases ([`CASES`]) over small values (depth 4,
//! at most 24 items per collection), and no case persists failures to disk. The whole file runs
//! in a few seconds (`cargo test --test cni_config_props`).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nv_ipam::cni::command::Daemon;
use nv_ipam::cni::config::{self, Defaults};
use nv_ipam::cni::version::Version;
use nv_ipam::cni::{self, Env, args, paths};
use nv_ipam::logging;
use nv_ipam::protocol::client::ClientError;
use nv_ipam::protocol::{Request, Response};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Cases per property: enough to hit every field with every type many times; small enough to
/// keep the file at a few seconds.
const CASES: u32 = 512;

fn config() -> ProptestConfig {
    ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() }
}

/// Every key the plugin reads anywhere, so generated objects hit the typed readers.
const KEYS: &[&str] = &[
    "cniVersion",
    "name",
    "type",
    "ipam",
    "poolName",
    "poolType",
    "forcePoolName",
    "daemonSocket",
    "daemonCallTimeoutSeconds",
    "confDir",
    "logFile",
    "logLevel",
    "args",
    "cni",
    "poolNames",
    "ips",
    "allocateDefaultGateway",
    "allocateIPWithIndex",
    "runtimeConfig",
    "deviceID",
    "prevResult",
    "interfaces",
    "address",
    "gateway",
    "interface",
    "version",
    "ip4",
    "ip6",
    "ip",
    "cni.dev/valid-attachments",
    "cni.dev/attachments",
    "containerID",
    "ifname",
];

/// Strings the fields accept or nearly accept, plus hostile ones.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        prop::sample::select(vec![
            "1.0.0",
            "0.1.0",
            "0.2.0",
            "0.3.0",
            "0.3.1",
            "0.4.0",
            "1.1.0",
            "2.0.0",
            "1.0",
            "net1",
            "p",
            "a,b",
            "a,b,c",
            "a,,b",
            "ippool",
            "CIDRPool",
            "debug",
            "verbose",
            "9",
            "-1",
            "unix:///var/lib/cni/nv-ipam/daemon.sock",
            "tcp://1.2.3.4:9",
            "unix://rel",
            "/var/log/nv-ipam-x.log",
            "/root/.ssh/authorized_keys",
            "/var/log/../etc/passwd",
            "/nonexistent/nv-ipam.d",
            "10.0.0.5/24",
            "fd00::5",
            "10.0.0.300",
            "eth0",
        ])
        .prop_map(str::to_string),
        "\\PC{0,24}",
        "[\\x00-\\x1f\\x7f\u{2028}\u{202e}a/.]{0,12}",
    ]
}

/// Arbitrary JSON values, biased to objects keyed by [`KEYS`].
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop::sample::select(vec![0i64, 1, -1, 5, 600, 601, 2_147_483_647, 2_147_483_648])
            .prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 24, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![4 => prop::sample::select(KEYS.to_vec()).prop_map(str::to_string), 1 => "\\PC{0,8}"]
}

/// A network config shaped like a real one (the top-level and ipam keys are there, with
/// values of any type), so that generated inputs get past the first checks.
fn network_config() -> impl Strategy<Value = Value> {
    let field = |k: &'static str| {
        (Just(k), prop::option::of(prop_oneof![3 => text().prop_map(Value::String), 1 => json()]))
    };
    let ipam_fields = (
        field("poolName"),
        field("poolType"),
        field("daemonSocket"),
        field("logFile"),
        field("logLevel"),
        field("confDir"),
        (Just("forcePoolName"), prop::option::of(json())),
        (Just("daemonCallTimeoutSeconds"), prop::option::of(json())),
    );
    (
        prop::option::of(text()),
        prop::option::of(text()),
        ipam_fields,
        prop::option::of(json()),
        prop::option::of(json()),
        prop::option::of(json()),
        prop::option::of(json()),
    )
        .prop_map(|(version, name, ipam_fields, args, runtime, prev, attachments)| {
            let mut ipam = Map::new();
            let (a, b, c, d, e, f, g, h) = ipam_fields;
            for (k, v) in [a, b, c, d, e, f, g, h] {
                if let Some(v) = v {
                    ipam.insert(k.to_string(), v);
                }
            }
            let mut top = Map::new();
            if let Some(v) = version {
                top.insert("cniVersion".into(), Value::String(v));
            }
            if let Some(n) = name {
                top.insert("name".into(), Value::String(n));
            }
            top.insert("ipam".into(), Value::Object(ipam));
            for (k, v) in [
                ("args", args),
                ("runtimeConfig", runtime),
                ("prevResult", prev),
                ("cni.dev/valid-attachments", attachments),
            ] {
                if let Some(v) = v {
                    top.insert(k.into(), v);
                }
            }
            Value::Object(top)
        })
}

/// Every parsing step the plugin runs on a decoded config; each returns its typed result.
fn parse_everything(obj: &Map<String, Value>) {
    let text = Value::Object(obj.clone()).to_string();
    // Generated values nest at most a few levels: they always decode.
    let conf = config::decode(text.as_bytes()).expect("a generated object decodes");
    let _ = config::cni_version(&conf);
    let _ = config::network_name(&conf);
    let _ = config::args_cni(&conf);
    let _ = config::add_params(&conf, &args::CniArgs::default());
    let _ = config::valid_attachments(&conf);
    for layout in [Version::new(0, 2, 0), Version::new(1, 0, 0)] {
        let _ = config::prev_result_ips(&conf, layout);
    }
    let conf_path = Path::new("/conf/nv-ipam.conf");
    // The same object as the node's conf file (its fields are the ipam ones).
    let file = config::parse_conf_file(conf_path, text.as_bytes()).ok();
    if let (Ok(stdin), Ok(args)) = (config::stdin_ipam(&conf), config::args_cni(&conf)) {
        let _ = config::resolve("n", &stdin, file.as_ref(), &args, conf_path, &Defaults::host());
    }
    if let Some(Value::Object(ipam)) = obj.get("ipam") {
        let _ = config::parse_conf_file(conf_path, Value::Object(ipam.clone()).to_string().as_bytes());
    }
}

/// A daemon that is never there: the call ends at the daemon step with code 11/50.
struct Down;

impl Daemon for Down {
    fn call(&self, socket: &Path, _: Request, _: Duration) -> Result<Response, ClientError> {
        Err(ClientError::Unreachable {
            path: socket.to_path_buf(),
            source: io::Error::from(io::ErrorKind::NotFound),
        })
    }
}

/// Node defaults that touch nothing: no conf dir, logs to /dev/null (so no tenant log file is
/// honoured either).
fn quiet_defaults() -> Defaults {
    Defaults {
        conf_dir: PathBuf::from("/nonexistent/nv-ipam-props"),
        log_file: PathBuf::from("/dev/null"),
        daemon_socket: PathBuf::from("/nonexistent/nv-ipam-props/daemon.sock"),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_decode_or_fail_typed(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = config::decode(&bytes);
        let _ = config::echo_version(&bytes);
    }

    #[test]
    fn arbitrary_json_values_parse_or_fail_typed(v in json()) {
        let bytes = v.to_string().into_bytes();
        match (config::decode(&bytes), v) {
            (Ok(_), Value::Object(obj)) => parse_everything(&obj),
            (Ok(_), v) => prop_assert!(false, "decoded a non-object: {v}"),
            (Err(e), _) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn config_shaped_values_parse_or_fail_typed(v in network_config()) {
        let Value::Object(obj) = v else { unreachable!("network_config makes objects") };
        parse_everything(&obj);
        // A config error names its field in one line.
        let text = Value::Object(obj).to_string();
        let conf = config::decode(text.as_bytes()).expect("decodes");
        if let (Ok(stdin), Ok(args)) = (config::stdin_ipam(&conf), config::args_cni(&conf)) {
            match config::resolve("n", &stdin, None, &args, Path::new("/c"), &Defaults::host()) {
                Ok(c) => {
                    prop_assert!(!c.pools.is_empty() && c.pools.len() <= config::MAX_POOLS);
                    for w in &c.warnings {
                        prop_assert!(!w.to_string().contains('\n'));
                    }
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
    }

    /// The decoder builds no value tree, yet accepts exactly what reading stdin into a
    /// `serde_json::Value` accepted, with the same error, and reads the same `name` and
    /// `cniVersion` (a key given twice: the last counts); only nesting past the depth limit
    /// is refused where a `Value` was not.
    #[test]
    fn decode_accepts_what_a_value_accepted(
        v in json(),
        twice in prop::option::of((prop::sample::select(vec!["name", "cniVersion", "ipam"]), json())),
        mutate in prop::option::of((any::<prop::sample::Index>(), any::<u8>())),
    ) {
        let mut text = v.to_string();
        if let (Some((key, value)), Some(body)) = (twice, text.strip_suffix('}')) {
            let sep = if body.ends_with('{') { "" } else { "," };
            text = format!("{body}{sep}{key:?}:{value}}}");
        }
        let mut bytes = text.into_bytes();
        if let Some((at, byte)) = mutate.filter(|_| !bytes.is_empty()) {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        let old = serde_json::from_slice::<Value>(&bytes);
        match (config::decode(&bytes), &old) {
            (Ok(conf), Ok(Value::Object(obj))) => {
                let name = obj.get("name").filter(|n| !n.is_null());
                let valid = name.and_then(Value::as_str).filter(|n| cni::env::is_valid_id(n));
                let got = config::network_name(&conf).ok();
                prop_assert_eq!(got.as_deref(), valid);
                let version = obj.get("cniVersion").and_then(Value::as_str).filter(|s| !s.is_empty());
                let echo = config::echo_version(&bytes);
                prop_assert_eq!(echo.as_deref(), version);
            }
            (Err(config::DecodeError::NotAnObject), Ok(v)) => prop_assert!(!v.is_object()),
            (Err(config::DecodeError::BadJson(e)), Err(old)) => prop_assert_eq!(e.to_string(), old.to_string()),
            (Err(config::DecodeError::TooDeep(_)), _) => {
                prop_assert!(nv_ipam::prescan::check_json(&bytes, nv_ipam::prescan::MAX_DEPTH).is_err());
            }
            (new, old) => prop_assert!(false, "decode {:?} but a Value {:?}", new.map(|_| ()), old),
        }
    }

    #[test]
    fn a_whole_call_answers_nothing_or_one_json_object(
        v in network_config(),
        command in prop::sample::select(vec!["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION"]),
        cni_args in "[A-Z_=;.0-9a-z/:,\\n]{0,40}",
    ) {
        let env = Env::from_pairs([
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/run/netns/none"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", cni_args.as_str()),
        ]);
        let bytes = v.to_string().into_bytes();
        let out = cni::run_with(&env, &mut bytes.as_slice(), &Down, &quiet_defaults());
        if out.stdout.is_empty() {
            prop_assert!(out.success);
        } else {
            let answer: Value = serde_json::from_str(&out.stdout).expect("stdout is JSON");
            prop_assert!(answer.is_object());
            prop_assert_eq!(answer.get("code").is_some(), !out.success);
        }
    }

    #[test]
    fn tenant_paths_stay_in_the_node_dirs(value in "(/var/log/|/var/lib/cni/nv-ipam/|/|)[a-z./\\-\\n\\x00]{0,24}") {
        let node_log = Path::new("/var/log/nv-ipam-cni.log");
        let c = paths::choose_log(Some(&value), node_log);
        if c.tenant {
            prop_assert_eq!(c.path.parent(), Some(Path::new("/var/log")));
            let name = c.path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            prop_assert!(paths::tenant_log_name(name));
            prop_assert!(c.warning.is_none());
        } else {
            prop_assert_eq!(&c.path, node_log);
            prop_assert_eq!(c.warning.is_some(), value != "/var/log/nv-ipam-cni.log");
        }
        let node_sock = Path::new("/var/lib/cni/nv-ipam/daemon.sock");
        let s = paths::choose_socket(Some(&value), node_sock);
        if s.tenant {
            prop_assert_eq!(s.path.parent(), Some(Path::new("/var/lib/cni/nv-ipam")));
            prop_assert!(!value.contains("..") && !value.contains('\n') && !value.contains('\0'));
        } else {
            prop_assert_eq!(&s.path, node_sock);
        }
    }

    #[test]
    fn escaped_log_text_holds_no_control_character(s in "\\PC{0,16}|[\\x00-\\x1f\\x7f-\\u{9f}\u{2028}\u{2029}\u{202a}-\u{202e}\u{2066}-\u{2069}a\\\\]{0,32}") {
        let out = logging::escape_controls(&s);
        prop_assert!(!out.chars().any(logging::is_unsafe_in_log), "{:?}", out);
        if !s.chars().any(logging::is_unsafe_in_log) {
            prop_assert_eq!(out.as_ref(), s.as_str());
        }
    }
}
