//! End to end through real main plugins: a runtime-style call of `bridge` or `macvlan` in a
//! network namespace the test creates, which runs our `nv-ipam` (found first on CNI_PATH,
//! installed there by the real `ipam-node`) against the real daemon.
//!
//! - Debian's plugins (containernetworking-plugins 1.1.1) at every version they speak, 0.1.0
//!   to 1.0.0: the address lands on the interface, the result the main plugin prints is in
//!   that version's layout, CHECK passes from 0.4.0 on (and is code 1 below, from the main
//!   plugin's skel), DEL releases. They refuse 1.1.0 (asserted below).
//! - Upstream's bridge and macvlan (containernetworking/plugins, built into the test-binaries
//!   cache by hack/build-testbins.sh) at 1.1.0, the same way, plus STATUS through bridge. They
//!   do not forward GC yet (plugins v1.9.0), so GC is exercised IPAM-only in `cni_daemon.rs`.
//!   Skipped without `$NV_IPAM_TESTBINS` (see `common::testbin`), never under hack/test.sh.
//!
//! Needs root (netns, links) and `/usr/lib/cni` from `containernetworking-plugins`
//! (hack/test.sh installs it). Every netns, bridge and veth is unique and removed on drop.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::daemon::Daemon;
use common::netns::{HostLink, Netns};
use common::{CniOut, allows_check, per_family, run_plugin};
use serde_json::{Value, json};

/// Every version Debian's bridge and macvlan speak.
const DEBIAN_VERSIONS: [&str; 6] = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"];

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

/// Upstream's build of a main plugin (speaks 1.1.0), from the test-binaries cache.
fn upstream_plugin(name: &str) -> Option<PathBuf> {
    common::testbin(&format!("cni-plugins/{name}"))
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

fn call(plugin: &Path, cmd: &str, cfg: &Value, env: &[(String, String)]) -> CniOut {
    run_plugin(plugin, cmd, cfg, &common::env_refs(env))
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

/// Asserts that the main plugin's result is in the layout of version `v`: 0.1.0/0.2.0 `ip4`
/// (`ip`, `gateway`) and `dns`, nothing of the later layouts; later versions `ips` entries
/// with `version` exactly below 1.0.0, `interfaces`, and `ips[].interface` indexing the
/// container's interface `ifname` in `ns`.
fn assert_layout(out: &CniOut, v: &str, ns: &Netns, ifname: &str) {
    let r = &out.json;
    let keys: Vec<&str> = r.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
    assert_eq!(r["cniVersion"], v, "{out}");
    if per_family(v) {
        assert!(
            keys.iter().all(|k| ["cniVersion", "ip4", "ip6", "dns"].contains(k)),
            "{v}: keys {keys:?}\n{out}"
        );
        assert!(r["ip4"]["ip"].is_string() && r["ip4"]["gateway"] == "10.77.0.1", "{v}: ip4\n{out}");
        assert!(r.get("ip6").is_none() && r["dns"].is_object(), "{v}\n{out}");
        return;
    }
    assert!(r.get("ip4").is_none() && r.get("ip6").is_none(), "{v}: no per-family objects\n{out}");
    let interfaces = r["interfaces"].as_array().unwrap_or_else(|| panic!("{v}: no interfaces\n{out}"));
    let ips = r["ips"].as_array().unwrap_or_else(|| panic!("{v}: no ips\n{out}"));
    assert_eq!(ips.len(), 1, "{v}: one address\n{out}");
    for ip in ips {
        assert_eq!(ip.get("version").is_some(), v.starts_with("0."), "{v}: ips[].version\n{out}");
        if v.starts_with("0.") {
            assert_eq!(ip["version"], "4", "{out}");
        }
        assert_eq!(ip["gateway"], "10.77.0.1", "{out}");
        let i = ip["interface"].as_u64().unwrap_or_else(|| panic!("{v}: ips[].interface\n{out}"));
        let intf =
            interfaces.get(i as usize).unwrap_or_else(|| panic!("{v}: interface {i} out of range\n{out}"));
        assert_eq!(
            (intf["name"].as_str(), intf["sandbox"].as_str()),
            (Some(ifname), Some(ns.path().as_str())),
            "{out}"
        );
    }
}

/// The result's address (CIDR), asserted to be configured on `ifname` in `ns`.
fn assert_address_in_netns(out: &CniOut, ns: &Netns, ifname: &str) -> String {
    let addresses = out.addresses();
    let addr = addresses.first().unwrap_or_else(|| panic!("no address in the result:\n{out}")).clone();
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
/// attachment? The CHECK is at 0.4.0 or later; `result` keeps its own `cniVersion`, so an
/// older one is read in its own layout, as libcni hands a cached result on.
fn ipam_holds(cfg: &Value, result: &Value, env: &[(String, String)], v: &str) -> bool {
    let mut c = with_prev(cfg, result);
    c["cniVersion"] = json!(if allows_check(v) { v } else { "0.4.0" });
    common::cni("CHECK", &c, &common::env_refs(env)).exit == 0
}

/// ADD two attachments through `plugin`, check addresses and layout, CHECK, DEL, released.
fn add_check_del(plugin: &Path, v: &str, d: &Daemon, cfg: &Value, ifname: &str) {
    let name = plugin.file_name().and_then(|n| n.to_str()).unwrap_or("plugin");
    let attachments: Vec<(Netns, String)> =
        (0..2).map(|i| (Netns::new(), format!("{name}-{}-{i}", v.replace('.', "")))).collect();
    let mut results = Vec::new();
    for (ns, c) in &attachments {
        let env = runtime_env(d, ns, c, ifname);
        let out = call(plugin, "ADD", cfg, &env).ok();
        assert_layout(&out, v, ns, ifname);
        let addr = assert_address_in_netns(&out, ns, ifname);
        assert!(addr.starts_with("10.77.0.") && addr.ends_with("/24"), "{name} {v}: got {addr}\n{out}");
        results.push((env, out));
    }
    assert_ne!(results[0].1.addresses(), results[1].1.addresses());
    // both, after both were added (the bridge MAC pitfall would fail the first here)
    for (env, out) in &results {
        let check = call(plugin, "CHECK", &with_prev(cfg, &out.json), env);
        if allows_check(v) {
            check.ok();
        } else {
            // the main plugin's skel refuses CHECK below 0.4.0 before nv-ipam is run
            assert_eq!(check.fails_with(1).json["msg"], "config version does not allow CHECK");
        }
    }
    for ((ns, _), (env, out)) in attachments.iter().zip(&results) {
        assert!(ipam_holds(cfg, &out.json, env, v), "{name} {v}: the daemon should hold {}", out.json);
        // libcni hands prevResult to DEL from 0.4.0 on
        let del = if allows_check(v) { with_prev(cfg, &out.json) } else { cfg.clone() };
        call(plugin, "DEL", &del, env).ok();
        assert!(!ns.has_link(ifname), "{name} {v}: DEL should remove {ifname} from {}", ns.name);
        assert!(!ipam_holds(cfg, &out.json, env, v), "{name} {v}: DEL should release {}", out.json);
        // DEL again, as a runtime may
        call(plugin, "DEL", &del, env).ok();
    }
}

#[test]
fn bridge_add_check_del_each_version() {
    let bridge = debian_plugin("bridge");
    let d = Daemon::start(POOL, "node1");
    for v in DEBIAN_VERSIONS {
        let br = HostLink::bridge();
        add_check_del(&bridge, v, &d, &bridge_config(&d, v, &br, "e2e"), "eth0");
    }
}

#[test]
fn macvlan_add_check_del_each_version() {
    let macvlan = debian_plugin("macvlan");
    let d = Daemon::start(POOL, "node1");
    for v in DEBIAN_VERSIONS {
        let master = HostLink::veth_master();
        add_check_del(&macvlan, v, &d, &macvlan_config(&d, v, &master, "e2e"), "net1");
    }
}

#[test]
fn upstream_bridge_and_macvlan_at_1_1_0() {
    let Some(bridge) = upstream_plugin("bridge") else { return };
    let Some(macvlan) = upstream_plugin("macvlan") else { return };
    let mut d = Daemon::start(POOL, "node1");
    let br = HostLink::bridge();
    let cfg = bridge_config(&d, "1.1.0", &br, "e2e");
    add_check_del(&bridge, "1.1.0", &d, &cfg, "eth0");
    let master = HostLink::veth_master();
    add_check_del(&macvlan, "1.1.0", &d, &macvlan_config(&d, "1.1.0", &master, "e2e"), "net1");
    // STATUS goes through the main plugin to nv-ipam: fine, then 50 with the daemon down
    let status_env: Vec<(String, String)> = [("CNI_PATH", d.bin_dir.display().to_string())]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .chain(
            ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS"]
                .map(|k| (k.to_string(), String::new())),
        )
        .collect();
    let out = call(&bridge, "STATUS", &cfg, &status_env).ok();
    assert_eq!(out.stdout.trim(), "", "{out}");
    d.stop();
    let out = call(&bridge, "STATUS", &cfg, &status_env).fails_with(50);
    assert_eq!(out.json["msg"], "nv-ipam not available", "nv-ipam's answer passes through:\n{out}");
}

#[test]
fn ipam_error_codes_pass_through_bridge_unchanged() {
    let bridge = debian_plugin("bridge");
    let mut d = Daemon::start(POOL, "node1");
    for v in DEBIAN_VERSIONS {
        let br = HostLink::bridge();
        let ns = Netns::new();
        let c = format!("err-{}", v.replace('.', ""));
        let env = runtime_env(&d, &ns, &c, "eth0");
        let cfg = bridge_config(&d, v, &br, "no-such-pool");
        let direct = common::cni("ADD", &cfg, &common::env_refs(&env)).fails_with(101);
        let via = call(&bridge, "ADD", &cfg, &env).fails_with(101);
        assert_eq!(via.json["msg"], direct.json["msg"], "msg passes through:\n{via}\n{direct}");
        // the runtime DELs after a failed ADD; nothing is left behind
        call(&bridge, "DEL", &cfg, &env).ok();
        assert!(!ns.has_link("eth0"), "no eth0 left in {} after a failed ADD", ns.name);
    }
    // daemon down: ADD fails 11 through bridge; the runtime's DEL also gets 11 (nv-ipam
    // fails DEL it cannot deliver, so the runtime retries), and once the daemon is back the
    // retried DEL succeeds and removes the interface bridge had created.
    d.stop();
    let mut pending = Vec::new();
    for v in DEBIAN_VERSIONS {
        let br = HostLink::bridge();
        let ns = Netns::new();
        let env = runtime_env(&d, &ns, &format!("down-{}", v.replace('.', "")), "eth0");
        let cfg = bridge_config(&d, v, &br, "e2e");
        call(&bridge, "ADD", &cfg, &env).fails_with(11);
        call(&bridge, "DEL", &cfg, &env).fails_with(11);
        pending.push((br, ns, env, cfg));
    }
    d.spawn();
    for (_br, ns, env, cfg) in &pending {
        call(&bridge, "DEL", cfg, env).ok();
        assert!(!ns.has_link("eth0"), "no eth0 left in {} after the retried DEL", ns.name);
    }
}

#[test]
fn bridge_1_1_0_is_refused_by_debian_bridge_with_code_1() {
    // Debian 12's bridge (plugins 1.1.1) supports up to 1.0.0: a 1.1.0 config fails in bridge
    // before nv-ipam runs. Upstream's build speaks it (upstream_bridge_and_macvlan_at_1_1_0).
    let bridge = debian_plugin("bridge");
    let d = Daemon::start(POOL, "node1");
    let br = HostLink::bridge();
    let ns = Netns::new();
    let env = runtime_env(&d, &ns, "v110", "eth0");
    let cfg = bridge_config(&d, "1.1.0", &br, "e2e");
    let before = d.store_bytes();
    call(&bridge, "ADD", &cfg, &env).fails_with(1);
    assert!(before == d.store_bytes(), "nv-ipam must not have been reached");
    assert!(!ns.has_link("eth0"));
}

#[test]
fn bridge_attachment_survives_daemon_kill9() {
    // A pod attached through bridge keeps its reservation across a daemon crash: CHECK after
    // the restart passes, DEL releases, and the address is not handed out meanwhile.
    let bridge = debian_plugin("bridge");
    let mut d = Daemon::start(POOL, "node1");
    let br = HostLink::bridge();
    let ns = Netns::new();
    let env = runtime_env(&d, &ns, "crash", "eth0");
    let cfg = bridge_config(&d, "1.0.0", &br, "e2e");
    let out = call(&bridge, "ADD", &cfg, &env).ok();
    let addr = assert_address_in_netns(&out, &ns, "eth0");
    d.kill9();
    call(&bridge, "CHECK", &with_prev(&cfg, &out.json), &env).fails_with(11);
    d.spawn();
    call(&bridge, "CHECK", &with_prev(&cfg, &out.json), &env).ok();
    let ns2 = Netns::new();
    let env2 = runtime_env(&d, &ns2, "crash2", "eth0");
    let out2 = call(&bridge, "ADD", &cfg, &env2).ok();
    assert_ne!(assert_address_in_netns(&out2, &ns2, "eth0"), addr, "an address was handed out twice");
    for (e, o, n) in [(&env, &out, &ns), (&env2, &out2, &ns2)] {
        call(&bridge, "DEL", &with_prev(&cfg, &o.json), e).ok();
        assert!(!n.has_link("eth0"));
    }
}
