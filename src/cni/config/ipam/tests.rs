//! Tests of the `ipam` section, `args.cni` pool selection, the conf file and the layering.

use std::path::{Path, PathBuf};
use std::time::Duration;

use log::LevelFilter;
use serde_json::{Value, json};

use super::*;
use crate::cni::args::CniArgs;
use crate::cni::config::{AddParams, add_params, decode, network_name};

/// A decoded config; the text is leaked so the borrowed [`NetConf`] can outlive the call.
fn obj(v: Value) -> NetConf<'static> {
    let text: &'static str = Box::leak(v.to_string().into_boxed_str());
    decode(text.as_bytes()).expect("decodes")
}

/// Resolves a stdin config with an optional conf file body, as the plugin does.
fn resolve_with(stdin: Value, file: Option<Value>) -> Result<IpamConf, ConfigError> {
    let o = obj(stdin);
    let name = network_name(&o)?;
    let path = Path::new("/conf/nv-ipam.conf");
    let file = match file {
        Some(f) => Some(parse_conf_file(path, f.to_string().as_bytes())?),
        None => None,
    };
    resolve(&name, &stdin_ipam(&o)?, file.as_ref(), &args_cni(&o)?, path, &Defaults::host())
}

#[test]
fn defaults_from_a_bare_config() {
    // reference example 54: {"name":"my-net","ipam":{}} -> pool my-net, ippool, info
    let c = resolve_with(json!({"name":"my-net","ipam":{}}), None).expect("valid");
    assert_eq!(
        c,
        IpamConf {
            pools: vec!["my-net".into()],
            pool_type: PoolType::IpPool,
            daemon_socket: PathBuf::from(DEFAULT_DAEMON_SOCKET),
            call_timeout: Duration::from_secs(5),
            log_file: PathBuf::from(DEFAULT_LOG_FILE),
            log_file_is_tenant: false,
            log_level: LevelFilter::Info,
            node_log_file: PathBuf::from(DEFAULT_LOG_FILE),
            node_log_level: LevelFilter::Info,
            warnings: vec![],
        }
    );
}

#[test]
fn tenant_paths_follow_the_node_and_are_ignored_with_a_warning() {
    let node =
        json!({"daemonSocket":"unix:///run/nv/daemon.sock","logFile":"/srv/log/cni.log","logLevel":"error"});
    // Inside the node's directories: honoured.
    let c = resolve_with(
        json!({"name":"n","ipam":{"daemonSocket":"unix:///run/nv/b.sock","logFile":"/srv/log/nv-ipam-n.log",
               "logLevel":"debug"}}),
        Some(node.clone()),
    )
    .expect("valid");
    assert_eq!(c.daemon_socket, PathBuf::from("/run/nv/b.sock"));
    assert_eq!((c.log_file, c.log_file_is_tenant), (PathBuf::from("/srv/log/nv-ipam-n.log"), true));
    assert_eq!((c.log_level, c.node_log_level), (LevelFilter::Debug, LevelFilter::Error));
    assert_eq!(c.node_log_file, PathBuf::from("/srv/log/cni.log"));
    assert!(c.warnings.is_empty());
    // Outside: the node's values, one warning each, the config's value quoted as written.
    let c = resolve_with(
        json!({"name":"n","ipam":{"daemonSocket":"unix:///run/docker.sock","logFile":"/root/.ssh/authorized_keys"}}),
        Some(node.clone()),
    )
    .expect("ignored, not an error");
    assert_eq!(c.daemon_socket, PathBuf::from("/run/nv/daemon.sock"));
    assert_eq!((c.log_file, c.log_file_is_tenant), (PathBuf::from("/srv/log/cni.log"), false));
    let fields: Vec<_> = c.warnings.iter().map(|w| (w.field, w.value.as_str())).collect();
    assert_eq!(
        fields,
        vec![
            ("ipam.daemonSocket", "unix:///run/docker.sock"),
            ("ipam.logFile", "/root/.ssh/authorized_keys")
        ]
    );
    // A relative socket is ignored too; a relative log file from the node is its error.
    let c = resolve_with(json!({"name":"n","ipam":{"daemonSocket":"unix://run/x.sock"}}), None).expect("ok");
    assert_eq!(c.daemon_socket, PathBuf::from(DEFAULT_DAEMON_SOCKET));
    assert_eq!(c.warnings[0].refusal, Refusal::NotAbsolute);
    let e = resolve_with(json!({"name":"n","ipam":{}}), Some(json!({"logFile":"cni.log"}))).expect_err("rel");
    assert_eq!(e.to_string(), "logFile in /conf/nv-ipam.conf \"cni.log\" must be an absolute path");
    // Without a conf file the defaults' directories apply.
    let c = resolve_with(json!({"name":"n","ipam":{"logFile":"/var/log/nv-ipam-n.log"}}), None).expect("ok");
    assert!(c.log_file_is_tenant && c.warnings.is_empty());
}

#[test]
fn stdin_wins_file_fills() {
    let c = resolve_with(
        json!({"name":"n","ipam":{"logLevel":"error","poolName":""}}),
        Some(json!({"logLevel":"debug","daemonSocket":"unix:///run/x.sock","daemonCallTimeoutSeconds":9,
                    "poolType":"CIDRPool","logFile":"/tmp/f.log"})),
    )
    .expect("valid");
    assert_eq!(c.log_level, LevelFilter::Error, "stdin logLevel wins");
    assert_eq!(c.daemon_socket, PathBuf::from("/run/x.sock"));
    assert_eq!(c.call_timeout, Duration::from_secs(9));
    assert_eq!(c.pool_type, PoolType::CidrPool, "file poolType, case-insensitive");
    assert_eq!(c.log_file, PathBuf::from("/tmp/f.log"));
    assert_eq!(c.node_log_level, LevelFilter::Debug, "refusals follow the node's level");
    assert_eq!(c.pools, vec!["n".to_string()], "empty poolName falls back to the network name");
}

/// 0 is Go's zero value: the reference reads it as "unset", so a NAD written for it keeps
/// working here; the conf file's value or the default applies. Negative and > 600 are errors.
#[test]
fn a_zero_call_timeout_means_unset() {
    let c = resolve_with(json!({"name":"n","ipam":{"daemonCallTimeoutSeconds":0}}), None).expect("0");
    assert_eq!(c.call_timeout, DEFAULT_CALL_TIMEOUT);
    let c = resolve_with(
        json!({"name":"n","ipam":{"daemonCallTimeoutSeconds":0}}),
        Some(json!({"daemonCallTimeoutSeconds":7})),
    )
    .expect("0 over a file value");
    assert_eq!(c.call_timeout, Duration::from_secs(7), "the file's value fills an unset one");
    let c = resolve_with(json!({"name":"n","ipam":{"daemonCallTimeoutSeconds":600}}), None).expect("600");
    assert_eq!(c.call_timeout, Duration::from_secs(600), "at the limit");
}

#[test]
fn pool_selection() {
    let c = resolve_with(json!({"name":"n","ipam":{"poolName":"a, b"}}), None).expect("two");
    assert_eq!(c.pools, vec!["a".to_string(), "b".to_string()]);
    let c = resolve_with(
        json!({"name":"n","ipam":{"poolName":"x","poolType":"ippool"},
               "args":{"cni":{"poolNames":["a","b"],"poolType":"cidrpool"}}}),
        None,
    )
    .expect("args win");
    assert_eq!((c.pools, c.pool_type), (vec!["a".to_string(), "b".to_string()], PoolType::CidrPool));

    let e = resolve_with(json!({"name":"n","ipam":{"poolName":"pool1,pool2,pool3"}}), None).expect_err("3");
    assert_eq!(e.to_string(), "ipam.poolName names 3 pools; at most 2 are allowed (one per IP family)");
    let e = resolve_with(json!({"name":"n","ipam":{"poolName":"a,,b"}}), None).expect_err("empty item");
    assert!(matches!(e, ConfigError::EmptyPoolName { .. }), "{e}");
    let e = resolve_with(json!({"name":"n","ipam":{},"args":{"cni":{"poolNames":["a",""]}}}), None)
        .expect_err("empty item");
    assert_eq!(e.to_string(), "args.cni.poolNames contains an empty pool name; remove it");
}

#[test]
fn force_pool_name() {
    let e = resolve_with(json!({"name":"n","ipam":{"forcePoolName":true}}), None).expect_err("no pool");
    assert!(matches!(e, ConfigError::NoPool));
    let e =
        resolve_with(json!({"name":"n","ipam":{}}), Some(json!({"forcePoolName":true}))).expect_err("file");
    assert!(matches!(e, ConfigError::NoPool));
    let c = resolve_with(json!({"name":"n","ipam":{"forcePoolName":true,"poolName":"p"}}), None).expect("ok");
    assert_eq!(c.pools, vec!["p".to_string()]);
}

#[test]
fn bad_values_name_their_field() {
    let cases = [
        (json!({"name":"n","ipam":{"poolType":"foobar"}}), "ipam.poolType \"foobar\" is not a pool type"),
        (
            json!({"name":"n","ipam":{"daemonSocket":"tcp://1.2.3.4:9"}}),
            "ipam.daemonSocket \"tcp://1.2.3.4:9\" is not a unix socket",
        ),
        (
            json!({"name":"n","ipam":{"daemonCallTimeoutSeconds":-1}}),
            "ipam.daemonCallTimeoutSeconds -1 is out of range",
        ),
        (
            json!({"name":"n","ipam":{"daemonCallTimeoutSeconds":601}}),
            "ipam.daemonCallTimeoutSeconds 601 is out of range",
        ),
        (
            json!({"name":"n","ipam":{"daemonCallTimeoutSeconds":"5"}}),
            "ipam.daemonCallTimeoutSeconds must be an integer",
        ),
        (json!({"name":"n","ipam":{"logLevel":"loud"}}), "ipam.logLevel \"loud\" is not a log level"),
        (json!({"name":"n","ipam":{"forcePoolName":"yes"}}), "ipam.forcePoolName must be true or false"),
        (
            json!({"name":"n","ipam":{},"args":{"cni":{"poolNames":"a"}}}),
            "args.cni.poolNames must be a list of strings",
        ),
        (json!({"name":"n"}), "network config has no \"ipam\" object"),
        (json!({"name":"n","ipam":[]}), "ipam must be an object"),
    ];
    for (stdin, want) in cases {
        let e = resolve_with(stdin.clone(), None).expect_err(&stdin.to_string());
        assert!(e.to_string().starts_with(want), "{stdin}: got {e}");
    }
    let e = resolve_with(json!({"name":"n","ipam":{}}), Some(json!({"poolType":"x"}))).expect_err("file");
    assert!(e.to_string().starts_with("poolType in /conf/nv-ipam.conf \"x\""), "{e}");
}

#[test]
fn socket_forms() {
    assert_eq!(parse_socket("unix:///a/b.sock", "f").expect("unix"), PathBuf::from("/a/b.sock"));
    assert_eq!(parse_socket("/a/b.sock", "f").expect("bare"), PathBuf::from("/a/b.sock"));
    assert!(matches!(parse_socket("unix://rel", "f"), Err(ConfigError::SocketNotAbsolute { .. })));
    assert!(matches!(parse_socket("http://x", "f"), Err(ConfigError::SocketNotUnix { .. })));
}

#[test]
fn tolerates_foreign_keys() {
    // args without cni; also the main plugin's keys, capabilities, prevResult, cni.dev/*.
    let c = resolve_with(
        json!({"cniVersion":"1.0.0","name":"n","type":"macvlan","master":"eth1","mode":"bridge",
               "capabilities":{"ips":true},"args":{"other":1},"prevResult":{"ips":[]},
               "cni.dev/valid-attachments":[],"runtimeConfig":{"mac":"x"},"dns":{},
               "ipam":{"type":"nv-ipam","unknownKey":{"deep":[1,2]}}}),
        None,
    )
    .expect("tolerant");
    assert_eq!(c.pools, vec!["n".to_string()]);
    for args in [json!("x"), json!({"cni":"x"}), json!({"cni":null}), json!(null)] {
        let o = obj(json!({"name":"n","ipam":{},"args":args}));
        assert_eq!(args_cni(&o).expect("ignored"), ArgsCni::default());
        assert_eq!(add_params(&o, &CniArgs::default()).expect("ignored"), AddParams::default());
    }
}
