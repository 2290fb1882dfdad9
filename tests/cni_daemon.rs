//! IPAM-only end-to-end tests: the real `nv-ipam` plugin binary talking to the real
//! `ipam-node` daemon over its unix socket, at every CNI version the plugin claims.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::time::Duration;

use common::daemon::Daemon;
use common::{VERSIONS, attachment_env, cni, env_refs, wait_until};
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

/// A status-less IPPool (planned as if this node were alone) with `size` addresses per node.
fn ippool(name: &str, subnet: &str, gateway: &str, size: u32) -> String {
    format!(
        "---\napiVersion: nv-ipam.nvidia.com/v1alpha1\nkind: IPPool\nmetadata:\n  name: {name}\n  namespace: kube-system\nspec:\n  subnet: {subnet}\n  perNodeBlockSize: {size}\n  gateway: {gateway}\n"
    )
}

fn one_ip(out: &common::CniOut) -> String {
    let a = out.addresses();
    assert_eq!(a.len(), 1, "expected one address, got:\n{out}");
    a[0].clone()
}

#[test]
fn daemon_installs_plugin_and_conf_file() {
    let d = Daemon::start(SEED_IPPOOL, "node1");
    let bin = d.bin_dir.join("nv-ipam");
    assert!(bin.is_file(), "expected {} to be installed", bin.display());
    let conf = d.conf_dir.join("nv-ipam.conf");
    let text = fs::read_to_string(&conf).unwrap_or_else(|e| panic!("{}: {e}", conf.display()));
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}: {text}", conf.display()));
    assert!(
        v.to_string().contains(&d.socket.display().to_string()),
        "expected the conf file to name the daemon socket {}, got {text}",
        d.socket.display()
    );
}

#[test]
fn seed_ippool_first_pod_on_each_node_all_versions() {
    for (node, want) in [("node1", "192.168.0.2/16"), ("node2", "192.168.0.5/16")] {
        let d = Daemon::start(SEED_IPPOOL, node);
        for (i, v) in VERSIONS.iter().enumerate() {
            let cfg = d.config(v, "net1", "pool1");
            let out = d.call("ADD", &cfg, &format!("c{i}"), "eth0").ok();
            assert_eq!(out.json["cniVersion"], *v, "cniVersion echoed:\n{out}");
            if i == 0 {
                assert_eq!(one_ip(&out), want, "{node} first pod at {v}:\n{out}");
            }
            let ip0 = &out.json["ips"][0];
            if node == "node1" || i == 0 {
                assert_eq!(ip0["gateway"], "192.168.0.1", "gateway at {v}:\n{out}");
            }
            assert!(out.json.get("interfaces").is_none(), "no interfaces in an IPAM result:\n{out}");
            assert!(ip0.get("interface").is_none(), "no ips[].interface:\n{out}");
            let has_version = ip0.get("version").is_some();
            let want_version = v.starts_with("0.");
            assert_eq!(has_version, want_version, "ips[].version present only below 1.0.0 ({v}):\n{out}");
            if want_version {
                assert_eq!(ip0["version"], "4", "{out}");
            }
            // release so each version's first pod sees the same free block
            d.call("DEL", &cfg, &format!("c{i}"), "eth0").ok();
            if i + 1 < VERSIONS.len() {
                // the next ADD must get the same first address again
            }
        }
    }
}
