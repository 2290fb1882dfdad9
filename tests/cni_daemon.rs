//! IPAM-only end-to-end tests: the real `nv-ipam` plugin binary talking to the real
//! `ipam-node` daemon over its unix socket, at every CNI version the plugin claims.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::time::Duration;

use common::daemon::Daemon;
use common::{
    CniOut, VERSIONS, allows_check, attachment_env, cni, env_refs, nv_ipam_bin, per_family,
    run_plugin_within, wait_until,
};
use serde_json::{Value, json};

/// The seed's IPPool: 192.168.0.0/16, gateway .0.1, blocks of 4; node1 .1-.4, node2 .5-.8.
const SEED_IPPOOL: &str = "
apiVersion: nv-ipam.nvidia.com/v1alpha1
kind: IPPool
metadata:
  name: pool1
  namespace: kube-system
spec:
  subnet: 192.168.0.0/16
  perNodeBlockSize: 4
  gateway: 192.168.0.1
status:
  allocations:
  - nodeName: node1
    startIP: 192.168.0.1
    endIP: 192.168.0.4
  - nodeName: node2
    startIP: 192.168.0.5
    endIP: 192.168.0.8
";

/// The seed's CIDRPool: 192.168.0.0/16 cut into /24s, gateway index 1.
const SEED_CIDRPOOL: &str = "
apiVersion: nv-ipam.nvidia.com/v1alpha1
kind: CIDRPool
metadata:
  name: pool1
  namespace: kube-system
spec:
  cidr: 192.168.0.0/16
  gatewayIndex: 1
  perNodeNetworkPrefix: 24
status:
  allocations:
  - nodeName: node1
    prefix: 192.168.0.0/24
    gateway: 192.168.0.1
  - nodeName: node2
    prefix: 192.168.1.0/24
    gateway: 192.168.1.1
";

/// An IPPool whose status gives `node1` the block `start`-`end`; `extra` is appended to spec.
fn ippool(name: &str, subnet: &str, gateway: &str, start: &str, end: &str, extra: &str) -> String {
    format!(
        "---
apiVersion: nv-ipam.nvidia.com/v1alpha1
kind: IPPool
metadata:
  name: {name}
  namespace: kube-system
spec:
  subnet: {subnet}
  perNodeBlockSize: 4
  gateway: {gateway}
{extra}status:
  allocations:
  - nodeName: node1
    startIP: {start}
    endIP: {end}
"
    )
}

/// 3 free addresses for node1: 10.2.0.2, .3, .4 (.1 is the gateway).
fn tiny(name: &str) -> String {
    ippool(name, "10.2.0.0/24", "10.2.0.1", "10.2.0.1", "10.2.0.4", "")
}

/// 10.1.0.1-10.1.0.100 for node1, gateway 10.1.0.1.
fn big(name: &str) -> String {
    ippool(name, "10.1.0.0/24", "10.1.0.1", "10.1.0.1", "10.1.0.100", "")
}

/// fd00:10::1-fd00:10::4 for node1, gateway fd00:10::1: 3 free addresses.
fn tiny_v6(name: &str) -> String {
    ippool(name, "fd00:10::/64", "fd00:10::1", "fd00:10::1", "fd00:10::4", "")
}

fn one_ip(out: &CniOut) -> String {
    let a = out.addresses();
    assert_eq!(a.len(), 1, "expected one address, got:\n{out}");
    a[0].clone()
}

/// `cfg` with `prevResult` set to an ADD result (as a runtime does for CHECK and DEL).
fn with_prev(cfg: &Value, prev: &Value) -> Value {
    let mut c = cfg.clone();
    c["prevResult"] = prev.clone();
    c
}

fn set_args_cni(cfg: &mut Value, key: &str, value: Value) {
    if cfg.get("args").is_none() {
        cfg["args"] = json!({"cni": {}});
    }
    cfg["args"]["cni"][key] = value;
}

/// GC / STATUS environment: the attachment variables present but empty, as libcni sends them.
fn no_attachment_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("CNI_CONTAINERID", ""),
        ("CNI_NETNS", ""),
        ("CNI_IFNAME", ""),
        ("CNI_ARGS", ""),
        ("CNI_PATH", "/nonexistent-cni-path"),
    ]
}

/// Asserts that the store file did not change across `f` (nothing persisted by a failed call).
fn store_unchanged<T>(d: &Daemon, what: &str, f: impl FnOnce() -> T) -> T {
    let before = d.store_bytes();
    let r = f();
    let after = d.store_bytes();
    assert!(
        before == after,
        "{what}: expected the store file {} to be unchanged ({} bytes), got {} bytes:\n{}",
        d.store_file.display(),
        before.len(),
        after.len(),
        String::from_utf8_lossy(&after)
    );
    r
}

#[test]
fn seed_cidrpool_first_pod_on_each_node_all_versions() {
    for (node, want, gw) in
        [("node1", "192.168.0.2/24", "192.168.0.1"), ("node2", "192.168.1.2/24", "192.168.1.1")]
    {
        let d = Daemon::start(SEED_CIDRPOOL, node);
        for v in VERSIONS {
            // a fresh network and container per version; the first pod's address is
            // checked on a fresh daemon below, later ones only for subnet and gateway.
            let mut cfg = d.config(v, "net1", "pool1");
            cfg["ipam"]["poolType"] = json!("cidrpool");
            let out = d.call("ADD", &cfg, &format!("c-{}", v.replace('.', "")), "eth0").ok();
            assert_eq!(out.json["cniVersion"], v, "{out}");
            assert_eq!(out.ip_entries()[0]["gateway"], gw, "{node} at {v}:\n{out}");
            let addr = one_ip(&out);
            assert!(addr.ends_with("/24"), "{node} at {v}: expected a /24 address, got:\n{out}");
        }
        // exact first address: fresh daemon per version
        for v in VERSIONS {
            let d = Daemon::start(SEED_CIDRPOOL, node);
            let mut cfg = d.config(v, "net1", "pool1");
            cfg["args"] = json!({"cni": {"poolType": "cidrpool"}});
            let out = d.call("ADD", &cfg, "c1", "eth0").ok();
            assert_eq!(one_ip(&out), want, "{node} first pod at {v}:\n{out}");
        }
    }
}

#[test]
fn seed_ippool_exact_first_address_every_version() {
    for v in VERSIONS {
        for (node, want) in [("node1", "192.168.0.2/16"), ("node2", "192.168.0.5/16")] {
            let d = Daemon::start(SEED_IPPOOL, node);
            let out = d.call("ADD", &d.config(v, "net1", "pool1"), "c1", "eth0").ok();
            assert_eq!(one_ip(&out), want, "{node} first pod at {v}:\n{out}");
            assert_eq!(out.ip_entries()[0]["gateway"], "192.168.0.1", "{node} at {v}:\n{out}");
        }
    }
}

#[test]
fn dual_stack_two_ips_all_or_nothing() {
    let d = Daemon::start(&format!("{}{}", big("v4pool"), tiny_v6("v6pool")), "node1");
    for v in VERSIONS {
        let cfg = d.config(v, &format!("ds{}", v.replace('.', "")), "v4pool,v6pool");
        let out = d.call("ADD", &cfg, "c1", "eth0").ok();
        let a = out.addresses();
        assert_eq!(a.len(), 2, "dual stack at {v}: expected two addresses, got:\n{out}");
        assert!(a[0].starts_with("10.1.0.") && a[1].starts_with("fd00:10::"), "at {v}: got {a:?}\n{out}");
        if per_family(v) {
            assert!(out.json["ip4"].is_object() && out.json["ip6"].is_object(), "at {v}:\n{out}");
        } else if v.starts_with("0.") {
            assert_eq!(out.json["ips"][1]["version"], "6", "{out}");
        }
        d.call("DEL", &cfg, "c1", "eth0").ok();
    }
    // exhaust the v6 pool (3 addresses), then a dual-stack ADD must fail and keep nothing
    let v6 = d.config("1.0.0", "v6only", "v6pool");
    for i in 0..3 {
        d.call("ADD", &v6, &format!("h{i}"), "eth0").ok();
    }
    let ds = d.config("1.0.0", "dsx", "v4pool,v6pool");
    store_unchanged(&d, "dual-stack ADD with an exhausted v6 pool", || {
        d.call("ADD", &ds, "cx", "eth0").fails_with(102);
    });
    // the attachment holds nothing in v4pool either: CHECK with a v4-only prevResult fails
    let v4 = d.config("1.0.0", "dsx", "v4pool");
    let prev = json!({"cniVersion": "1.0.0", "ips": [{"address": "10.1.0.2/24", "gateway": "10.1.0.1"}]});
    let out = d.call("CHECK", &with_prev(&v4, &prev), "cx", "eth0");
    assert_ne!(out.exit, 0, "expected no v4 reservation left for cx, got:\n{out}");
    // after freeing one v6 address the same dual-stack ADD succeeds
    d.call("DEL", &v6, "h0", "eth0").ok();
    let out = d.call("ADD", &ds, "cx", "eth0").ok();
    assert_eq!(out.addresses().len(), 2, "{out}");
}

#[test]
fn idempotent_add_keeps_one_reservation() {
    for v in VERSIONS {
        let d = Daemon::start(&tiny("t"), "node1");
        let cfg = d.config(v, "net1", "t");
        let a = one_ip(&d.call("ADD", &cfg, "c1", "eth0").ok());
        let b = one_ip(&d.call("ADD", &cfg, "c1", "eth0").ok());
        assert_eq!(a, b, "repeated ADD at {v}: expected the same address");
        // capacity is 3: if the repeat had reserved a second address only one more would fit
        d.call("ADD", &cfg, "c2", "eth0").ok();
        d.call("ADD", &cfg, "c3", "eth0").ok();
        store_unchanged(&d, "ADD on a full pool", || {
            d.call("ADD", &cfg, "c4", "eth0").fails_with(102);
        });
    }
}

#[test]
fn two_ifnames_two_addresses_independent() {
    for v in VERSIONS {
        let d = Daemon::start(&big("p"), "node1");
        let cfg = d.config(v, "net1", "p");
        let eth0 = d.call("ADD", &cfg, "c1", "eth0").ok();
        let net1 = d.call("ADD", &cfg, "c1", "net1").ok();
        assert_ne!(one_ip(&eth0), one_ip(&net1), "two ifnames at {v} must get two addresses");
        d.call("DEL", &cfg, "c1", "net1").ok();
        if allows_check(v) {
            d.call("CHECK", &with_prev(&cfg, &eth0.json), "c1", "eth0").ok();
            d.call("CHECK", &with_prev(&cfg, &net1.json), "c1", "net1");
            let out = d.call("CHECK", &with_prev(&cfg, &net1.json), "c1", "net1");
            assert_ne!(out.exit, 0, "CHECK of the deleted net1 at {v} must fail:\n{out}");
        }
    }
}

#[test]
fn check_after_add_del_and_mismatch() {
    for v in ["0.4.0", "1.0.0", "1.1.0"] {
        let d = Daemon::start(&big("p"), "node1");
        let cfg = d.config(v, "net1", "p");
        let add = d.call("ADD", &cfg, "c1", "eth0").ok();
        d.call("CHECK", &with_prev(&cfg, &add.json), "c1", "eth0").ok();
        let mut other = add.json.clone();
        other["ips"][0]["address"] = json!("10.1.0.77/24");
        let out = d.call("CHECK", &with_prev(&cfg, &other), "c1", "eth0");
        assert_ne!(out.exit, 0, "CHECK naming another address at {v} must fail:\n{out}");
        assert!(out.json["code"].is_u64(), "error JSON expected:\n{out}");
        d.call("DEL", &with_prev(&cfg, &add.json), "c1", "eth0").ok();
        let out = d.call("CHECK", &with_prev(&cfg, &add.json), "c1", "eth0");
        assert_ne!(out.exit, 0, "CHECK after DEL at {v} must fail:\n{out}");
        assert!(out.json["code"].is_u64(), "error JSON expected:\n{out}");
    }
    // below 0.4.0 there is no CHECK: code 1, as libcni's skel answers
    for v in VERSIONS.into_iter().filter(|v| !allows_check(v)) {
        let d = Daemon::start(&big("p"), "node1");
        let cfg = d.config(v, "net1", "p");
        let add = d.call("ADD", &cfg, "c1", "eth0").ok();
        let out = d.call("CHECK", &with_prev(&cfg, &add.json), "c1", "eth0").fails_with(1);
        assert_eq!(out.json["cniVersion"], v, "{out}");
    }
    // a 0.2.0 result cached by a runtime, as prevResult of a 0.4.0 CHECK: read in its own
    // layout; the right address passes, another one fails
    let d = Daemon::start(&big("p"), "node1");
    let old = d.call("ADD", &d.config("0.2.0", "net1", "p"), "c1", "eth0").ok();
    let cfg = d.config("0.4.0", "net1", "p");
    d.call("CHECK", &with_prev(&cfg, &old.json), "c1", "eth0").ok();
    let mut other = old.json.clone();
    other["ip4"]["ip"] = json!("10.1.0.77/24");
    d.call("CHECK", &with_prev(&cfg, &other), "c1", "eth0").fails_with(106);
}

#[test]
fn del_is_idempotent_and_needs_no_netns() {
    for v in VERSIONS {
        let d = Daemon::start(&tiny("t"), "node1");
        let cfg = d.config(v, "net1", "t");
        let out = d.call("DEL", &cfg, "never", "eth0").ok();
        assert_eq!(out.stdout.trim(), "", "DEL prints nothing:\n{out}");
        for i in 0..3 {
            d.call("ADD", &cfg, &format!("c{i}"), "eth0").ok();
        }
        d.call("DEL", &cfg, "c0", "eth0").ok();
        d.call("DEL", &cfg, "c0", "eth0").ok();
        // DEL without CNI_NETNS, CNI_PATH or prevResult releases too
        let env: Vec<(String, String)> = attachment_env("c1", "eth0")
            .into_iter()
            .filter(|(k, _)| k != "CNI_NETNS" && k != "CNI_PATH")
            .collect();
        cni("DEL", &cfg, &env_refs(&env)).ok();
        // both released: two more fit, a third does not
        d.call("ADD", &cfg, "n1", "eth0").ok();
        d.call("ADD", &cfg, "n2", "eth0").ok();
        d.call("ADD", &cfg, "n3", "eth0").fails_with(102);
    }
}

#[test]
fn gc_releases_invalid_attachments_of_this_network_only() {
    for key in ["cni.dev/valid-attachments", "cni.dev/attachments"] {
        let d = Daemon::start(&format!("{}{}", big("p"), tiny("q")), "node1");
        let net1 = d.config("1.1.0", "net1", "p");
        let net2 = d.config("1.1.0", "net2", "q");
        let net3 = d.config("1.1.0", "net3", "p");
        let c1 = d.call("ADD", &net1, "c1", "eth0").ok();
        let c2 = d.call("ADD", &net1, "c2", "eth0").ok();
        let c3 = d.call("ADD", &net1, "c3", "net1").ok();
        let o2 = d.call("ADD", &net2, "c2", "eth0").ok();
        let o3 = d.call("ADD", &net3, "c3", "eth0").ok();
        let mut gc = net1.clone();
        gc[key] = json!([{"containerID": "c1", "ifname": "eth0"}]);
        let out = cni("GC", &gc, &no_attachment_env()).ok();
        assert_eq!(out.stdout.trim(), "", "GC prints nothing ({key}):\n{out}");
        d.call("CHECK", &with_prev(&net1, &c1.json), "c1", "eth0").ok();
        for (c, ifn, r) in [("c2", "eth0", &c2), ("c3", "net1", &c3)] {
            let out = d.call("CHECK", &with_prev(&net1, &r.json), c, ifn);
            assert_ne!(out.exit, 0, "GC ({key}) should have released {c}/{ifn}:\n{out}");
        }
        d.call("CHECK", &with_prev(&net2, &o2.json), "c2", "eth0").ok();
        d.call("CHECK", &with_prev(&net3, &o3.json), "c3", "eth0").ok();
        store_unchanged(&d, "second identical GC", || {
            cni("GC", &gc, &no_attachment_env()).ok();
        });
    }
    let d = Daemon::start(&big("p"), "node1");
    let mut gc = d.config("1.0.0", "net1", "p");
    gc["cni.dev/valid-attachments"] = json!([]);
    cni("GC", &gc, &no_attachment_env()).fails_with(1);
}

#[test]
fn status_ok_then_50_when_exhausted_or_daemon_down() {
    let mut d = Daemon::start(&tiny("t"), "node1");
    let cfg = d.config("1.1.0", "net1", "t");
    let out = cni("STATUS", &cfg, &no_attachment_env()).ok();
    assert_eq!(out.stdout.trim(), "", "STATUS prints nothing when fine:\n{out}");
    for i in 0..3 {
        d.call("ADD", &cfg, &format!("c{i}"), "eth0").ok();
    }
    cni("STATUS", &cfg, &no_attachment_env()).fails_with(50);
    d.call("DEL", &cfg, "c0", "eth0").ok();
    cni("STATUS", &cfg, &no_attachment_env()).ok();
    d.stop();
    cni("STATUS", &cfg, &no_attachment_env()).fails_with(50);
    cni("STATUS", &d.config("1.0.0", "net1", "t"), &no_attachment_env()).fails_with(1);
}

#[test]
fn static_ips_precedence_and_errors() {
    for v in VERSIONS {
        let d = Daemon::start(&big("p"), "node1");
        // runtimeConfig.ips (capability ips) beats args.cni.ips and IP=
        let mut cfg = d.config(v, "net1", "p");
        cfg["capabilities"] = json!({"ips": true});
        cfg["runtimeConfig"] = json!({"ips": ["10.1.0.50/24"]});
        set_args_cni(&mut cfg, "ips", json!(["10.1.0.51"]));
        let mut env = attachment_env("c1", "eth0");
        env[4].1.push_str(";IP=10.1.0.52");
        let out = cni("ADD", &cfg, &env_refs(&env)).ok();
        assert_eq!(one_ip(&out), "10.1.0.50/24", "runtimeConfig.ips at {v}:\n{out}");
        // args.cni.ips beats IP=
        let mut cfg = d.config(v, "net1", "p");
        set_args_cni(&mut cfg, "ips", json!(["10.1.0.51"]));
        let mut env = attachment_env("c2", "eth0");
        env[4].1.push_str(";IP=10.1.0.52");
        let out = cni("ADD", &cfg, &env_refs(&env)).ok();
        assert_eq!(one_ip(&out), "10.1.0.51/24", "args.cni.ips over IP= at {v}:\n{out}");
        // IP= alone
        let plain = d.config(v, "net1", "p");
        let mut env = attachment_env("c3", "eth0");
        env[4].1.push_str(";IP=10.1.0.52");
        let out = cni("ADD", &plain, &env_refs(&env)).ok();
        assert_eq!(one_ip(&out), "10.1.0.52/24", "IP= at {v}:\n{out}");
        // outside the node's range: 104, nothing reserved
        let mut out_of_range = d.config(v, "net1", "p");
        set_args_cni(&mut out_of_range, "ips", json!(["10.9.9.9"]));
        store_unchanged(&d, "static IP outside every pool", || {
            d.call("ADD", &out_of_range, "c4", "eth0").fails_with(104);
        });
        // taken by c2: 103, nothing reserved
        let mut taken = d.config(v, "net1", "p");
        set_args_cni(&mut taken, "ips", json!(["10.1.0.51"]));
        store_unchanged(&d, "static IP held by another attachment", || {
            d.call("ADD", &taken, "c5", "eth0").fails_with(103);
        });
        // malformed IP= is rejected and stores nothing
        let mut env = attachment_env("c6", "eth0");
        env[4].1.push_str(";IP=10.1.0.999");
        let out = store_unchanged(&d, "malformed IP=", || cni("ADD", &plain, &env_refs(&env)));
        assert_ne!(out.exit, 0, "malformed IP= at {v} must fail:\n{out}");
        assert!(out.json["code"].is_u64(), "error JSON expected:\n{out}");
    }
}

#[test]
fn allocate_ip_with_index_and_default_gateway() {
    for v in VERSIONS {
        let d = Daemon::start(&big("p"), "node1");
        let mut cfg = d.config(v, "net1", "p");
        set_args_cni(&mut cfg, "allocateIPWithIndex", json!(9));
        let out = d.call("ADD", &cfg, "c1", "eth0").ok();
        assert_eq!(one_ip(&out), "10.1.0.10/24", "index 9 from 10.1.0.1 at {v}:\n{out}");
        let mut cfg = d.config(v, "net1", "p");
        set_args_cni(&mut cfg, "allocateDefaultGateway", json!(true));
        let out = d.call("ADD", &cfg, "c2", "eth0").ok();
        assert_eq!(one_ip(&out), "10.1.0.1/24", "the gateway address at {v}:\n{out}");
        assert!(out.ip_entries()[0].get("gateway").is_none(), "a gateway pod has no gateway:\n{out}");
        assert!(out.routes().is_empty(), "nor routes:\n{out}");
    }
}

#[test]
fn missing_k8s_pod_args_allowed() {
    for v in VERSIONS {
        let d = Daemon::start(&big("p"), "node1");
        let cfg = d.config(v, "net1", "p");
        for args in ["", "IgnoreUnknown=true;FOO=bar", "FOO=bar"] {
            let mut env = attachment_env(&format!("c{}", args.len()), "eth0");
            env[4].1 = args.to_string();
            let out = cni("ADD", &cfg, &env_refs(&env)).ok();
            one_ip(&out);
            cni("DEL", &cfg, &env_refs(&env)).ok();
        }
    }
}

#[test]
fn routes_and_default_gateway_in_result() {
    let pools = ippool(
        "r",
        "10.3.0.0/24",
        "10.3.0.1",
        "10.3.0.1",
        "10.3.0.4",
        "  defaultGateway: true\n  routes:\n  - dst: 10.50.0.0/16\n",
    );
    for v in VERSIONS {
        let d = Daemon::start(&pools, "node1");
        let out = d.call("ADD", &d.config(v, "net1", "r"), "c1", "eth0").ok();
        let routes = out.routes();
        let dsts: Vec<&str> = routes.iter().filter_map(|r| r["dst"].as_str()).collect();
        assert!(
            dsts.contains(&"0.0.0.0/0") && dsts.contains(&"10.50.0.0/16"),
            "at {v}: expected routes 0.0.0.0/0 and 10.50.0.0/16, got {dsts:?}:\n{out}"
        );
        assert_eq!(out.ip_entries()[0]["gateway"], "10.3.0.1", "{out}");
        for r in &routes {
            let keys: Vec<&String> = r.as_object().map(|o| o.keys().collect()).unwrap_or_default();
            assert!(
                keys.iter().all(|k| *k == "dst" || *k == "gw"),
                "at {v}: no route extras unless configured, got {r}:\n{out}"
            );
        }
    }
}

#[test]
fn pools_file_is_reread_on_change() {
    let d = Daemon::start(&big("p"), "node1");
    let cfg = d.config("1.0.0", "net1", "later");
    d.call("ADD", &cfg, "c0", "eth0").fails_with(101);
    d.write_pools(&format!("{}{}", big("p"), tiny("later")));
    let mut n = 0;
    let mut last = None;
    wait_until(Duration::from_secs(10), "the new pool serves ADD", || {
        n += 1;
        let out = d.call("ADD", &cfg, &format!("c{n}"), "eth0");
        let ok = out.exit == 0;
        last = Some(out);
        ok
    });
    let out = last.expect("one attempt");
    assert_eq!(one_ip(&out), "10.2.0.2/24", "{out}");
}

#[test]
fn bad_input_changes_nothing() {
    let d = Daemon::start(&format!("{}{}{}", big("a"), tiny("b"), big("c")), "node1");
    let good = d.config("1.0.0", "net1", "a");
    let kept = d.call("ADD", &good, "keep", "eth0").ok();
    let cases: Vec<(&str, Value, u64)> = vec![
        ("unknown pool", d.config("1.0.0", "net1", "nope"), 101),
        ("three pools", d.config("1.0.0", "net1", "a,b,c"), 7),
        (
            "unknown poolType",
            {
                let mut c = d.config("1.0.0", "net1", "a");
                c["ipam"]["poolType"] = json!("bogus");
                c
            },
            7,
        ),
    ];
    for (what, cfg, code) in cases {
        let out = store_unchanged(&d, what, || d.call("ADD", &cfg, "bad", "eth0").fails_with(code));
        assert_eq!(out.json["cniVersion"], "1.0.0", "{what}: the error echoes the request's version:\n{out}");
        assert!(out.json["msg"].as_str().is_some_and(|m| !m.is_empty()), "{what}: error needs a msg:\n{out}");
    }
    let log = fs::read_to_string(&d.cni_log).unwrap_or_default();
    assert!(!log.is_empty(), "the plugin should log to ipam.logFile {}", d.cni_log.display());
    let tb = d.config("1.0.0", "net1", "b");
    for i in 0..3 {
        d.call("ADD", &tb, &format!("b{i}"), "eth0").ok();
    }
    store_unchanged(&d, "exhausted pool", || {
        d.call("ADD", &tb, "b9", "eth0").fails_with(102);
    });
    d.call("CHECK", &with_prev(&good, &kept.json), "keep", "eth0").ok();
}

#[test]
fn daemon_socket_missing_is_code_11() {
    let mut d = Daemon::start(&big("p"), "node1");
    let mut cfg = d.config("1.0.0", "net1", "p");
    let added = d.call("ADD", &cfg, "c1", "eth0").ok();
    let st = d.stop();
    assert!(st.success(), "graceful stop: {st}");
    assert!(!d.socket.exists(), "a graceful stop removes the socket {}", d.socket.display());
    d.call("ADD", &cfg, "c2", "eth0").fails_with(11);
    // DEL while the daemon is down: error 11, so the runtime retries (the reference's choice)
    d.call("DEL", &with_prev(&cfg, &added.json), "c1", "eth0").fails_with(11);
    // In the node's socket dir: the plugin honours a config's daemonSocket only there.
    cfg["ipam"]["daemonSocket"] = json!(format!("unix://{}", d.sandbox.path("run/no-such.sock").display()));
    d.call("ADD", &cfg, "c3", "eth0").fails_with(11);
    // back up on the same store: c1 is still reserved
    d.spawn();
    let cfg = d.config("1.0.0", "net1", "p");
    d.call("CHECK", &with_prev(&cfg, &added.json), "c1", "eth0").ok();
}

#[test]
fn kill9_and_restart_keep_allocations() {
    let mut d = Daemon::start(&big("p"), "node1");
    let cfg = d.config("1.0.0", "net1", "p");
    let added = d.call("ADD", &cfg, "c1", "eth0").ok();
    d.restart();
    d.call("CHECK", &with_prev(&cfg, &added.json), "c1", "eth0").ok();
    let again = d.call("ADD", &cfg, "c2", "eth0").ok();
    assert_ne!(one_ip(&again), one_ip(&added), "no address twice after a restart");
}

/// Writes one frame (4-byte BE length + body) and returns what the daemon answered, or None
/// when it closed the connection without answering.
fn raw_exchange(d: &Daemon, header_len: u32, body: &[u8]) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(&d.socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let _ = s.write_all(&header_len.to_be_bytes());
    let _ = s.write_all(body);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) if out.is_empty() => None,
        Ok(_) => Some(String::from_utf8_lossy(&out).into_owned()),
        // closing with unread input in its buffer makes the kernel send a reset: a close
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => None,
        Err(e) => panic!("daemon neither answered nor closed within 10 s: {e}"),
    }
}

#[test]
fn bad_frames_are_refused_and_the_daemon_keeps_serving() {
    let d = Daemon::start(&big("p"), "node1");
    let cfg = d.config("1.0.0", "net1", "p");
    let cases: Vec<(&str, u32, Vec<u8>)> = vec![
        ("too large", (4u32 << 20) + 1, b"{}".to_vec()),
        ("truncated", 100, b"{\"version\":1".to_vec()),
        ("not JSON", 9, b"not json!".to_vec()),
        ("JSON but not a request", 2, b"[]".to_vec()),
    ];
    for (what, len, body) in cases {
        let answer = store_unchanged(&d, what, || raw_exchange(&d, len, &body));
        if let Some(a) = &answer {
            assert!(a.contains("bad_frame"), "{what}: expected a bad_frame error or a close, got {a:?}");
        }
        let out = d.call("ADD", &cfg, &format!("after-{}", what.replace(' ', "-")), "eth0").ok();
        one_ip(&out);
    }
}

#[test]
fn garbage_store_stops_start_and_is_left_alone() {
    let d = Daemon::prepare(&big("p"), "node1", None);
    let garbage = b"this is not a store\n\x00\x01\x02{{{\n".to_vec();
    fs::write(&d.store_file, &garbage).expect("write garbage store");
    let (status, stderr) = d.run_to_exit();
    assert!(!status.success(), "ipam-node must refuse a garbage store, got {status}:\n{stderr}");
    let name = d.store_file.display().to_string();
    assert!(stderr.contains(&name), "expected the message to name {name}, got:\n{stderr}");
    assert!(stderr.contains(".prev"), "expected the message to mention the .prev generation, got:\n{stderr}");
    assert_eq!(
        fs::read(&d.store_file).expect("store still there"),
        garbage,
        "the store file must be unchanged"
    );
}

#[test]
fn disk_full_while_committing_is_107_and_recovers() {
    let sb = common::Sandbox::new();
    let fs_ = common::netns::Tmpfs::mount(sb.path("tmpfs"), "256k");
    let d = Daemon::start_with_store(&big("p"), "node1", fs_.dir.join("store"));
    let cfg = d.config("1.0.0", "net1", "p");
    let first = d.call("ADD", &cfg, "c1", "eth0").ok();
    // fill the file system
    let filler = fs_.dir.join("filler");
    {
        use std::io::Write;
        let mut f = fs::File::create(&filler).expect("create filler");
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    // The store's last page may still hold a few journal lines after the filler took every
    // free page, so ADD until the first failure (bounded): it must be 107 and change nothing.
    let mut held = vec![("c1".to_string(), first.json.clone())];
    let mut failed = None;
    for i in 2..200 {
        let c = format!("c{i}");
        let before = d.store_bytes();
        let out = d.call("ADD", &cfg, &c, "eth0");
        if out.exit == 0 {
            held.push((c, out.json.clone()));
            continue;
        }
        assert_eq!(
            out.json["code"].as_u64(),
            Some(107),
            "expected store_failed (107) on a full disk, got:\n{out}"
        );
        assert!(before == d.store_bytes(), "a failed commit must leave the store file unchanged");
        failed = Some(c);
        break;
    }
    let failed = failed.expect("ADD kept succeeding on a full file system (198 ADDs)");
    fs::remove_file(&filler).expect("remove filler");
    let out = d.call("ADD", &cfg, &failed, "eth0").ok();
    let got = one_ip(&out);
    for (c, r) in &held {
        assert_ne!(r["ips"][0]["address"].as_str(), Some(got.as_str()), "{c} and {failed} share an address");
        d.call("CHECK", &with_prev(&cfg, r), c, "eth0").ok();
    }
    drop(d);
    drop(fs_);
}

#[test]
fn socket_mode_is_0600_and_sigterm_exits_zero() {
    use std::os::unix::fs::PermissionsExt;
    let mut d = Daemon::start(&big("p"), "node1");
    let mode = fs::metadata(&d.socket).expect("socket exists").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket {} mode: expected 0600, got {mode:o}", d.socket.display());
    let st = d.stop();
    assert!(st.success(), "SIGTERM should be a graceful stop with exit 0, got {st}:\n{}", d.stderr());
}

#[test]
fn hung_daemon_is_code_11_within_the_call_timeout() {
    // A socket that accepts but never answers: the plugin must give up after
    // daemonCallTimeoutSeconds and answer 11, not hang the runtime.
    let d = Daemon::start(&big("p"), "node1");
    // In the node's socket dir: the plugin honours a config's daemonSocket only there.
    let sock = d.sandbox.path("run/hung.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind hung socket");
    let mut cfg = d.config("1.0.0", "net1", "p");
    cfg["ipam"]["daemonSocket"] = json!(format!("unix://{}", sock.display()));
    cfg["ipam"]["daemonCallTimeoutSeconds"] = json!(1);
    // the answer comes after ~1 s; the plugin is killed and the test fails if it has not
    // answered within 5 s
    let env = attachment_env("c1", "eth0");
    let stdin = serde_json::to_vec(&cfg).expect("serialise the config");
    let within = Duration::from_secs(5);
    run_plugin_within(&nv_ipam_bin(), "ADD", &stdin, &env_refs(&env), within).fails_with(11);
    drop(listener);
}

#[test]
fn concurrent_adds_get_distinct_addresses_and_dels_free_the_pool() {
    let d = Daemon::start(&big("p"), "node1");
    let cfg = d.config("1.0.0", "net1", "p");
    let n = 64;
    let outs: Vec<CniOut> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|i| {
                let (d, cfg) = (&d, &cfg);
                s.spawn(move || d.call("ADD", cfg, &format!("par{i}"), "eth0"))
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let mut addrs: Vec<String> = outs.into_iter().map(|o| one_ip(&o.ok())).collect();
    addrs.sort();
    let before = addrs.len();
    addrs.dedup();
    assert_eq!(addrs.len(), before, "an address was handed out twice: {addrs:?}");
    std::thread::scope(|s| {
        for i in 0..n {
            let (d, cfg) = (&d, &cfg);
            s.spawn(move || d.call("DEL", cfg, &format!("par{i}"), "eth0").ok());
        }
    });
    // fully free again: 99 addresses (10.1.0.2-10.1.0.100) fit, the 100th does not
    for i in 0..99 {
        d.call("ADD", &cfg, &format!("refill{i}"), "eth0").ok();
    }
    d.call("ADD", &cfg, "refill-over", "eth0").fails_with(102);
}
