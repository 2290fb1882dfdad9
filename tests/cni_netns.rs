//! End to end through Debian's real main plugins: a runtime-style call of `bridge` or
//! `macvlan` in a network namespace the test creates, which runs our `nv-ipam` (found first on
//! CNI_PATH, installed there by the real `ipam-node`) against the real daemon. Versions 0.3.1,
//! 0.4.0 and 1.0.0: Debian 12's plugins do not support 1.1.0 (asserted below), which is why
//! STATUS and GC are exercised IPAM-only in `cni_daemon.rs`.
//!
//! Needs root (netns, links) and `/usr/lib/cni` from `containernetworking-plugins`
//! (hack/test.sh installs it). Every netns, bridge and veth is unique and removed on drop.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;

use common::daemon::Daemon;
use common::netns::{HostLink, Netns};
use common::{CniOut, run_plugin};
use serde_json::{Value, json};

const MAIN_VERSIONS: [&str; 3] = ["0.3.1", "0.4.0", "1.0.0"];

/// 10.77.0.0/24, gateway .1, node1 holds .1-.20.
const POOL: &str = "
apiVersion: nv-ipam.nvidia.com/v1alpha1
kind: IPPool
metadata:
  name: e2e
  namespace: kube-system
spec:
  subnet: 10.77.0.0/24
  perNodeBlockSize: 20
  gateway: 10.77.0.1
status:
  allocations:
  - nodeName: node1
    startIP: 10.77.0.1
    endIP: 10.77.0.20
";

/// A Debian main plugin; fails (never skips) when the package is missing.
fn debian_plugin(name: &str) -> PathBuf {
    let p = PathBuf::from("/usr/lib/cni").join(name);
    assert!(
        p.is_file(),
        "{} is missing: these tests need Debian's CNI plugins; run `apt-get install containernetworking-plugins` (hack/test.sh does it)",
        p.display()
    );
    p
}

/// The runtime's side of one attachment: env for `container` in `ns` with ifname `ifname`;
/// CNI_PATH has the daemon's install dir (holding the installed nv-ipam) first.
fn runtime_env(d: &Daemon, ns: &Netns, container: &str, ifname: &str) -> Vec<(String, String)> {
    let nv = d.bin_dir.join("nv-ipam");
    assert!(nv.is_file(), "ipam-node should have installed {}", nv.display());
    vec![
        ("CNI_CONTAINERID".into(), container.into()),
        ("CNI_NETNS".into(), ns.path()),
        ("CNI_IFNAME".into(), ifname.into()),
        ("CNI_PATH".into(), format!("{}:/usr/lib/cni", d.bin_dir.display())),
        (
            "CNI_ARGS".into(),
            format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=pod-{container};K8S_POD_UID=uid-{container}"
            ),
        ),
    ]
}

fn call(plugin: &str, cmd: &str, cfg: &Value, env: &[(String, String)]) -> CniOut {
    run_plugin(&debian_plugin(plugin), cmd, cfg, &common::env_refs(env))
}

fn with_prev(cfg: &Value, prev: &Value) -> Value {
    let mut c = cfg.clone();
    c["prevResult"] = prev.clone();
    c
}

fn bridge_config(d: &Daemon, v: &str, br: &HostLink, pool: &str) -> Value {
    let mut c = d.config(v, &format!("br-{}", br.name), pool);
    c["type"] = json!("bridge");
    c["bridge"] = json!(br.name);
    c["isGateway"] = json!(false);
    c["isDefaultGateway"] = json!(false);
    c["ipMasq"] = json!(false);
    c
}

fn macvlan_config(d: &Daemon, v: &str, master: &HostLink, pool: &str) -> Value {
    let mut c = d.config(v, &format!("mv-{}", master.name), pool);
    c["type"] = json!("macvlan");
    c["master"] = json!(master.name);
    c["mode"] = json!("bridge");
    c
}

/// The result's first address (CIDR), and asserts it is configured on `ifname` in `ns`.
fn assert_address_in_netns(out: &CniOut, ns: &Netns, ifname: &str) -> String {
    let addr = out.json["ips"][0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no ips[0].address in the result:\n{out}"))
        .to_string();
    let shown = ns.addrs(ifname);
    assert!(
        shown.contains(&format!("inet {addr} ")),
        "expected {addr} on {ifname} in netns {}, `ip -n {} -o addr show dev {ifname}` gave:\n{shown}\nplugin:\n{out}",
        ns.name,
        ns.name
    );
    addr
}

/// IPAM-level CHECK straight against nv-ipam: does the daemon still hold `result` for the
/// attachment?
fn ipam_holds(cfg: &Value, result: &Value, env: &[(String, String)], v: &str) -> bool {
    let mut c = with_prev(cfg, result);
    c["cniVersion"] = json!(if v == "0.3.1" { "0.4.0" } else { v });
    let mut p = c["prevResult"].clone();
    p["cniVersion"] = c["cniVersion"].clone();
    c["prevResult"] = p;
    common::cni("CHECK", &c, &common::env_refs(env)).exit == 0
}

/// ADD two attachments through `plugin`, check addresses, CHECK, DEL, released.
fn add_check_del(plugin: &str, v: &str, d: &Daemon, cfg: &Value, ifname: &str) {
    let attachments: Vec<(Netns, String)> =
        (0..2).map(|i| (Netns::new(), format!("{plugin}-{}-{i}", v.replace('.', "")))).collect();
    let mut results = Vec::new();
    for (ns, c) in &attachments {
        let env = runtime_env(d, ns, c, ifname);
        let out = call(plugin, "ADD", cfg, &env).ok();
        assert_eq!(out.json["cniVersion"], v, "{out}");
        let addr = assert_address_in_netns(&out, ns, ifname);
        assert!(addr.starts_with("10.77.0.") && addr.ends_with("/24"), "{plugin} {v}: got {addr}\n{out}");
        results.push((env, out));
    }
    assert_ne!(results[0].1.json["ips"][0]["address"], results[1].1.json["ips"][0]["address"]);
    if v != "0.3.1" {
        // both, after both were added (the bridge MAC pitfall would fail the first here)
        for (env, out) in &results {
            call(plugin, "CHECK", &with_prev(cfg, &out.json), env).ok();
        }
    }
    for ((ns, _), (env, out)) in attachments.iter().zip(&results) {
        assert!(ipam_holds(cfg, &out.json, env, v), "{plugin} {v}: the daemon should hold {}", out.json);
        call(plugin, "DEL", &with_prev(cfg, &out.json), env).ok();
        assert!(!ns.has_link(ifname), "{plugin} {v}: DEL should remove {ifname} from {}", ns.name);
        assert!(!ipam_holds(cfg, &out.json, env, v), "{plugin} {v}: DEL should release {}", out.json);
        // DEL again, as a runtime may
        call(plugin, "DEL", &with_prev(cfg, &out.json), env).ok();
    }
}

#[test]
fn bridge_add_check_del_each_version() {
    debian_plugin("bridge");
    let d = Daemon::start(POOL, "node1");
    for v in MAIN_VERSIONS {
        let br = HostLink::bridge();
        add_check_del("bridge", v, &d, &bridge_config(&d, v, &br, "e2e"), "eth0");
    }
}

#[test]
fn macvlan_add_check_del_each_version() {
    debian_plugin("macvlan");
    let d = Daemon::start(POOL, "node1");
    for v in MAIN_VERSIONS {
        let master = HostLink::veth_master();
        add_check_del("macvlan", v, &d, &macvlan_config(&d, v, &master, "e2e"), "net1");
    }
}

#[test]
fn ipam_error_codes_pass_through_bridge_unchanged() {
    debian_plugin("bridge");
    let mut d = Daemon::start(POOL, "node1");
    for v in MAIN_VERSIONS {
        let br = HostLink::bridge();
        let ns = Netns::new();
        let c = format!("err-{}", v.replace('.', ""));
        let env = runtime_env(&d, &ns, &c, "eth0");
        let cfg = bridge_config(&d, v, &br, "no-such-pool");
        let direct = common::cni("ADD", &cfg, &common::env_refs(&env)).fails_with(101);
        let via = call("bridge", "ADD", &cfg, &env).fails_with(101);
        assert_eq!(via.json["msg"], direct.json["msg"], "msg passes through:\n{via}\n{direct}");
        // the runtime DELs after a failed ADD; nothing is left behind
        call("bridge", "DEL", &cfg, &env).ok();
        assert!(!ns.has_link("eth0"), "no eth0 left in {} after a failed ADD", ns.name);
    }
    // daemon down: ADD fails 11 through bridge; the runtime's DEL also gets 11 (nv-ipam
    // fails DEL it cannot deliver, so the runtime retries), and once the daemon is back the
    // retried DEL succeeds and removes the interface bridge had created.
    d.stop();
    let mut pending = Vec::new();
    for v in MAIN_VERSIONS {
        let br = HostLink::bridge();
        let ns = Netns::new();
        let env = runtime_env(&d, &ns, &format!("down-{}", v.replace('.', "")), "eth0");
        let cfg = bridge_config(&d, v, &br, "e2e");
        call("bridge", "ADD", &cfg, &env).fails_with(11);
        call("bridge", "DEL", &cfg, &env).fails_with(11);
        pending.push((br, ns, env, cfg));
    }
    d.spawn();
    for (_br, ns, env, cfg) in &pending {
        call("bridge", "DEL", cfg, env).ok();
        assert!(!ns.has_link("eth0"), "no eth0 left in {} after the retried DEL", ns.name);
    }
}

#[test]
fn bridge_1_1_0_is_refused_by_debian_bridge_with_code_1() {
    // Debian 12's bridge (plugins 1.1.1) supports up to 1.0.0: a 1.1.0 config fails in bridge
    // before nv-ipam runs. So STATUS/GC (1.1.0) are tested IPAM-only in cni_daemon.rs.
    debian_plugin("bridge");
    let d = Daemon::start(POOL, "node1");
    let br = HostLink::bridge();
    let ns = Netns::new();
    let env = runtime_env(&d, &ns, "v110", "eth0");
    let cfg = bridge_config(&d, "1.1.0", &br, "e2e");
    let before = d.store_bytes();
    call("bridge", "ADD", &cfg, &env).fails_with(1);
    assert!(before == d.store_bytes(), "nv-ipam must not have been reached");
    assert!(!ns.has_link("eth0"));
}

#[test]
fn bridge_attachment_survives_daemon_kill9() {
    // A pod attached through bridge keeps its reservation across a daemon crash: CHECK after
    // the restart passes, DEL releases, and the address is not handed out meanwhile.
    debian_plugin("bridge");
    let mut d = Daemon::start(POOL, "node1");
    let br = HostLink::bridge();
    let ns = Netns::new();
    let env = runtime_env(&d, &ns, "crash", "eth0");
    let cfg = bridge_config(&d, "1.0.0", &br, "e2e");
    let out = call("bridge", "ADD", &cfg, &env).ok();
    let addr = assert_address_in_netns(&out, &ns, "eth0");
    d.kill9();
    call("bridge", "CHECK", &with_prev(&cfg, &out.json), &env).fails_with(11);
    d.spawn();
    call("bridge", "CHECK", &with_prev(&cfg, &out.json), &env).ok();
    let ns2 = Netns::new();
    let env2 = runtime_env(&d, &ns2, "crash2", "eth0");
    let out2 = call("bridge", "ADD", &cfg, &env2).ok();
    assert_ne!(assert_address_in_netns(&out2, &ns2, "eth0"), addr, "an address was handed out twice");
    for (e, o, n) in [(&env, &out, &ns), (&env2, &out2, &ns2)] {
        call("bridge", "DEL", &with_prev(&cfg, &o.json), e).ok();
        assert!(!n.has_link("eth0"));
    }
}
