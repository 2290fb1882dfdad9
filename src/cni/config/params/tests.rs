//! Tests of ADD's, CHECK's and GC's parameters.

use std::net::IpAddr;

use serde_json::{Value, json};

use super::*;
use crate::cni::config::decode;
use crate::cni::version::Version;

/// A decoded config; the text is leaked so the borrowed [`NetConf`] can outlive the call.
fn obj(v: Value) -> NetConf<'static> {
    let text: &'static str = Box::leak(v.to_string().into_boxed_str());
    decode(text.as_bytes()).expect("decodes")
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().expect("ip")).collect()
}

#[test]
fn static_ip_priority() {
    let cni_args = args::parse("IP=192.168.77.52").expect("args");
    let both = obj(json!({"args":{"cni":{"ips":["192.168.77.51"]}}}));
    assert_eq!(add_params(&both, &cni_args).expect("ok").requested_ips, ips(&["192.168.77.51"]));
    let all =
        obj(json!({"runtimeConfig":{"ips":["1.1.1.1","2.2.2.2/24"]},"args":{"cni":{"ips":["3.3.3.3"]}}}));
    assert_eq!(add_params(&all, &cni_args).expect("ok").requested_ips, ips(&["1.1.1.1", "2.2.2.2"]));
    let only_env = obj(json!({"runtimeConfig":{"ips":[]},"args":{"cni":{}}}));
    assert_eq!(add_params(&only_env, &cni_args).expect("ok").requested_ips, ips(&["192.168.77.52"]));
    let bad = obj(json!({"runtimeConfig":{"ips":["1.1.1.1","nope"]}}));
    let e = add_params(&bad, &CniArgs::default()).expect_err("bad");
    assert_eq!(e.to_string(), "runtimeConfig.ips[1] \"nope\" is not an IP address; use <ip> or <ip>/<len>");
}

#[test]
fn index_and_default_gateway() {
    let p =
        add_params(&obj(json!({"args":{"cni":{"allocateIPWithIndex":5}}})), &CniArgs::default()).expect("ok");
    assert_eq!(p.allocate_ip_with_index, Some(5));
    let e = add_params(&obj(json!({"args":{"cni":{"allocateIPWithIndex":-1}}})), &CniArgs::default())
        .expect_err("negative");
    assert!(e.to_string().contains("can't be negative"), "{e}");
    let e =
        add_params(&obj(json!({"args":{"cni":{"allocateIPWithIndex":2147483648_i64}}})), &CniArgs::default())
            .expect_err("too large");
    assert!(matches!(e, ConfigError::IndexOutOfRange { .. }));
    let gw = json!({"args":{"cni":{"allocateDefaultGateway":true,"ips":["10.0.0.5"]}}});
    assert!(matches!(
        add_params(&obj(gw), &CniArgs::default()),
        Err(ConfigError::DefaultGatewayWithStaticIps)
    ));
    let gw_env = obj(json!({"args":{"cni":{"allocateDefaultGateway":true}}}));
    let cni_args = args::parse("IP=10.0.0.5").expect("args");
    assert!(matches!(add_params(&gw_env, &cni_args), Err(ConfigError::DefaultGatewayWithStaticIps)));
    let gw_idx = json!({"args":{"cni":{"allocateDefaultGateway":true,"allocateIPWithIndex":0}}});
    assert!(matches!(
        add_params(&obj(gw_idx), &CniArgs::default()),
        Err(ConfigError::DefaultGatewayWithIndex)
    ));
    let p = add_params(&gw_env, &CniArgs::default()).expect("gateway alone");
    assert!(p.allocate_default_gateway);
}

#[test]
fn device_id_sources() {
    let p = add_params(
        &obj(json!({"deviceID":"0000:03:00.1","runtimeConfig":{"deviceID":"x"}})),
        &CniArgs::default(),
    )
    .expect("ok");
    assert_eq!(p.device_id.as_deref(), Some("0000:03:00.1"));
    let p = add_params(&obj(json!({"runtimeConfig":{"deviceID":"x"}})), &CniArgs::default()).expect("ok");
    assert_eq!(p.device_id.as_deref(), Some("x"));
}

#[test]
fn gc_attachments() {
    let both = obj(json!({"cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}],
                          "cni.dev/attachments":[{"containerID":"c2","ifname":"eth0"}]}));
    let got = valid_attachments(&both).expect("valid");
    assert_eq!(got, vec![Attachment { container_id: "c1".into(), ifname: "eth0".into() }]);
    let legacy = obj(json!({"cni.dev/attachments":[{"containerID":"c2","ifname":"net1"}]}));
    assert_eq!(valid_attachments(&legacy).expect("legacy")[0].container_id, "c2");
    assert_eq!(valid_attachments(&obj(json!({"cni.dev/valid-attachments":[]}))).expect("empty"), vec![]);
    assert!(matches!(valid_attachments(&obj(json!({}))), Err(ConfigError::MissingAttachments)));
    let e =
        valid_attachments(&obj(json!({"cni.dev/valid-attachments":[{"containerID":"c1"}]}))).expect_err("x");
    assert_eq!(e.to_string(), "cni.dev/valid-attachments[0] needs a non-empty ifname");
}

const V040: Version = Version::new(0, 4, 0);
const V100: Version = Version::new(1, 0, 0);
const V020: Version = Version::new(0, 2, 0);

#[test]
fn prev_result_from_a_main_plugin() {
    let conf = obj(json!({"prevResult": {"cniVersion":"0.4.0",
        "interfaces":[{"name":"eth0","mac":"aa:bb:cc:dd:ee:ff","sandbox":"/run/netns/x"}],
        "ips":[{"version":"4","interface":0,"address":"10.0.0.5/24","gateway":"10.0.0.1"},
               {"version":"6","interface":0,"address":"fd00::5/64"}],
        "dns":{}}}));
    for request in [V040, V100, Version::new(1, 1, 0)] {
        assert_eq!(prev_result_ips(&conf, request).expect("ips"), ips(&["10.0.0.5", "fd00::5"]));
    }
}

#[test]
fn prev_result_of_0_2_0_and_0_1_0() {
    // A main plugin's 0.2.0 result (bridge: no interfaces in this version), both families.
    let both = json!({"ip4":{"ip":"10.0.0.5/24","gateway":"10.0.0.1","routes":[{"dst":"0.0.0.0/0"}]},
                      "ip6":{"ip":"fd00::5/64"},"dns":{}});
    for version in ["0.1.0", "0.2.0"] {
        let mut prev = both.clone();
        prev["cniVersion"] = json!(version);
        let conf = obj(json!({ "prevResult": prev }));
        // the prevResult's own version decides, whatever the request's (libcni would refuse
        // the mismatched layouts; we read what the main plugin wrote)
        for request in [V020, V040, V100] {
            assert_eq!(
                prev_result_ips(&conf, request).expect("ips"),
                ips(&["10.0.0.5", "fd00::5"]),
                "{version}"
            );
        }
    }
    // without its own cniVersion the request's decides
    let conf = obj(json!({ "prevResult": both }));
    assert_eq!(prev_result_ips(&conf, V020).expect("ips"), ips(&["10.0.0.5", "fd00::5"]));
    assert_eq!(prev_result_ips(&conf, V040).expect("no ips list"), ips(&[]));
    // ip6 only; then neither
    let v6 = obj(json!({"prevResult":{"cniVersion":"0.2.0","ip6":{"ip":"fd00::7/64"}}}));
    assert_eq!(prev_result_ips(&v6, V040).expect("ips"), ips(&["fd00::7"]));
    let none = obj(json!({"prevResult":{"cniVersion":"0.2.0","dns":{}}}));
    assert_eq!(prev_result_ips(&none, V040).expect("empty"), ips(&[]));
    // an unparsable or empty prevResult version falls back to the request's
    let odd = obj(
        json!({"prevResult":{"cniVersion":"","ip4":{"ip":"10.0.0.9/24"},"ips":[{"address":"10.0.0.8/24"}]}}),
    );
    assert_eq!(prev_result_ips(&odd, V020).expect("ip4"), ips(&["10.0.0.9"]));
    assert_eq!(prev_result_ips(&odd, V100).expect("ips"), ips(&["10.0.0.8"]));
    let odd = obj(json!({"prevResult":{"cniVersion":7,"ip4":{"ip":"10.0.0.9/24"}}}));
    assert_eq!(prev_result_ips(&odd, V020).expect("ip4"), ips(&["10.0.0.9"]));
}

#[test]
fn prev_result_errors() {
    assert!(matches!(prev_result_ips(&obj(json!({})), V100), Err(ConfigError::MissingPrevResult)));
    let bad = obj(json!({"prevResult":{"ips":[{"address":"10.0.0.5"}]}}));
    let e = prev_result_ips(&bad, V100).expect_err("no prefix");
    assert_eq!(e.to_string(), "prevResult.ips[0].address \"10.0.0.5\" is not an address in CIDR notation");
    let e = prev_result_ips(&obj(json!({"prevResult":[]})), V100).expect_err("not an object");
    assert_eq!(e.to_string(), "prevResult must be an object");
    let e = prev_result_ips(&obj(json!({"prevResult":{"ips":{}}})), V100).expect_err("not a list");
    assert_eq!(e.to_string(), "prevResult.ips must be a list");
    let e = prev_result_ips(&obj(json!({"prevResult":{"ips":["x", {"address":"10.0.0.5/24"}]}})), V100)
        .expect_err("x");
    assert_eq!(e.to_string(), "prevResult.ips[0].address \"\" is not an address in CIDR notation");
    // 0.1.0/0.2.0 layout
    let e = prev_result_ips(&obj(json!({"prevResult":{"ip4":"10.0.0.5/24"}})), V020).expect_err("ip4");
    assert_eq!(e.to_string(), "prevResult.ip4 must be an object");
    let e = prev_result_ips(
        &obj(json!({"prevResult":{"ip4":{"ip":"10.0.0.5/24"},"ip6":{"ip":"fd00::5"}}})),
        V020,
    )
    .expect_err("no prefix");
    assert_eq!(e.to_string(), "prevResult.ip6.ip \"fd00::5\" is not an address in CIDR notation");
    let e = prev_result_ips(&obj(json!({"prevResult":{"ip4":{}}})), V020).expect_err("no ip");
    assert_eq!(e.to_string(), "prevResult.ip4.ip \"\" is not an address in CIDR notation");
}

#[test]
fn a_list_is_typed_before_its_addresses_and_keeps_no_strings() {
    // A bad address first and a non-string later: the type error, as when lists were collected.
    let e =
        add_params(&obj(json!({"runtimeConfig":{"ips":["nope", 1]}})), &CniArgs::default()).expect_err("x");
    assert_eq!(e.to_string(), "runtimeConfig.ips must be a list of strings");
    let e = add_params(&obj(json!({"args":{"cni":{"ips":"10.0.0.1"}}})), &CniArgs::default()).expect_err("x");
    assert_eq!(e.to_string(), "args.cni.ips must be a list of strings");
    // Long lists are read one item at a time; all addresses are returned, none is dropped.
    let many: Vec<String> = (0..5000).map(|i| format!("10.{}.{}.1", i / 256, i % 256)).collect();
    let p = add_params(&obj(json!({"runtimeConfig":{"ips":many}})), &CniArgs::default()).expect("valid");
    assert_eq!(p.requested_ips.len(), 5000);
}

#[test]
fn gc_lists_are_read_whole_and_fail_on_the_first_bad_entry() {
    let many: Vec<Value> =
        (0..5000).map(|i| json!({"containerID": format!("c{i}"), "ifname":"eth0"})).collect();
    assert_eq!(
        valid_attachments(&obj(json!({"cni.dev/valid-attachments": many}))).expect("valid").len(),
        5000
    );
    let e = valid_attachments(&obj(json!({"cni.dev/valid-attachments":[{"containerID":"c"}, 5]})))
        .expect_err("x");
    assert_eq!(e.to_string(), "cni.dev/valid-attachments[0] needs a non-empty ifname");
    let e = valid_attachments(&obj(json!({"cni.dev/attachments":[{"containerID":"c","ifname":"e"}, 5]})))
        .expect_err("x");
    assert_eq!(e.to_string(), "cni.dev/attachments[1] must be an object");
    let e = valid_attachments(&obj(json!({"cni.dev/attachments":{}}))).expect_err("x");
    assert_eq!(e.to_string(), "cni.dev/attachments must be a list of {containerID, ifname}");
}
