//! The reports on hand-made views: every check finds exactly what was planted, and nothing on
//! a clean view.

use super::*;
use crate::inventory::{KIND, PoolUsage};

const POOLS: &str = r#"
apiVersion: nv-ipam.nvidia.com/v1alpha1
kind: IPPool
metadata: {name: blue, namespace: ns, resourceVersion: "41"}
spec:
  subnet: 192.168.0.0/24
  perNodeBlockSize: 10
  gateway: 192.168.0.1
  nodeSelector:
    nodeSelectorTerms:
    - matchExpressions:
      - {key: net, operator: In, values: ["yes"]}
status:
  allocations:
  - {nodeName: a, startIP: 192.168.0.1, endIP: 192.168.0.10}
  - {nodeName: b, startIP: 192.168.0.11, endIP: 192.168.0.20}
  - {nodeName: gone, startIP: 192.168.0.21, endIP: 192.168.0.30}
---
apiVersion: nv-ipam.nvidia.com/v1alpha1
kind: CIDRPool
metadata: {name: red, namespace: ns}
spec:
  cidr: 10.10.0.0/16
  perNodeNetworkPrefix: 24
  gatewayIndex: 1
  nodeSelector:
    nodeSelectorTerms:
    - matchFields:
      - {key: metadata.name, operator: In, values: [a]}
status:
  allocations:
  - {nodeName: a, prefix: 10.10.1.0/24, gateway: 10.10.1.1}
"#;

fn pools() -> Vec<AnyPool> {
    crate::api::decode(POOLS)
        .expect("pools")
        .objects
        .into_iter()
        .filter_map(|o| match o {
            crate::api::Object::Pool(p) => Some(p),
            _ => None,
        })
        .collect()
}

fn nodes(names: &[(&str, bool)]) -> Vec<Node> {
    names.iter().map(|(n, net)| Node::new(*n, if *net { &[("net", "yes")] } else { &[] })).collect()
}

fn res(pool: &str, t: PoolType, ip: &str, pod: &str, uid: &str) -> ReservationInfo {
    ReservationInfo {
        pool: pool.into(),
        pool_type: t,
        ip: ip.parse().expect("ip"),
        pod_namespace: (!pod.is_empty()).then(|| "default".to_string()),
        pod_name: (!pod.is_empty()).then(|| pod.to_string()),
        pod_uid: (!uid.is_empty()).then(|| uid.to_string()),
        container_id: format!("cid-{pod}"),
        interface: "net1".into(),
        network: "macvlan".into(),
        device_id: None,
        created: Some("2026-01-01T00:00:00.000Z".into()),
        is_static: false,
    }
}

fn usage_row(
    name: &str,
    t: PoolType,
    start: &str,
    end: &str,
    size: u64,
    allocated: u64,
    free: u64,
) -> PoolUsage {
    PoolUsage {
        name: name.into(),
        pool_type: t,
        subnet: String::new(),
        range_start: start.parse().expect("ip"),
        range_end: end.parse().expect("ip"),
        gateway: None,
        size,
        allocated,
        static_count: 0,
        released_in_cooldown: 0,
        free,
        held: None,
    }
}

fn report(node: &str, pools: Vec<PoolUsage>, reservations: Vec<ReservationInfo>) -> NodeAllocations {
    NodeAllocations {
        kind: KIND.into(),
        version: 1,
        node: node.into(),
        generated_at: "t".into(),
        pools,
        reservations,
    }
}

fn pods(list: &[(&str, &str, &str)]) -> Pods {
    list.iter()
        .map(|(n, uid, phase)| {
            (
                ("default".to_string(), n.to_string()),
                PodState { uid: uid.to_string(), phase: phase.to_string() },
            )
        })
        .collect()
}

/// A clean cluster: nodes a and b answer, every reservation is in its block, pods live.
fn clean() -> View {
    let mut v = View {
        namespace: "ns".into(),
        pools: pools(),
        nodes: Some(nodes(&[("a", true), ("b", true), ("c", false)])),
        ..View::default()
    };
    // status lists "gone", which does not exist: the clean view drops that entry
    if let AnyPool::Ip(p) = &mut v.pools[0] {
        p.status.as_mut().expect("status").allocations.pop();
    }
    v.answers.insert(
        "a".into(),
        Ok(report(
            "a",
            vec![
                usage_row("blue", PoolType::IpPool, "192.168.0.1", "192.168.0.10", 10, 1, 8),
                usage_row("red", PoolType::CidrPool, "10.10.1.1", "10.10.1.254", 254, 1, 252),
            ],
            vec![
                res("blue", PoolType::IpPool, "192.168.0.2", "p1", "u1"),
                res("red", PoolType::CidrPool, "10.10.1.5", "p1", "u1"),
            ],
        )),
    );
    v.answers.insert(
        "b".into(),
        Ok(report(
            "b",
            vec![usage_row("blue", PoolType::IpPool, "192.168.0.11", "192.168.0.20", 10, 2, 7)],
            vec![
                res("blue", PoolType::IpPool, "192.168.0.12", "p2", "u2"),
                res("blue", PoolType::IpPool, "192.168.0.13", "p3", ""),
            ],
        )),
    );
    v.pods.insert("a".into(), Ok(pods(&[("p1", "u1", "Running")])));
    v.pods.insert("b".into(), Ok(pods(&[("p2", "u2", "Running"), ("p3", "u3", "Pending")])));
    v
}

#[test]
fn a_clean_view_has_no_findings() {
    let c = check(&clean(), None);
    assert_eq!(c.findings, Vec::new(), "{c:#?}");
    assert!(c.unreachable.is_empty());
    assert_eq!(c.open(), 0);
}

#[test]
fn who_has_names_pool_block_and_holder() {
    let mut v = clean();
    v.answers.insert("d".into(), Err("HTTP 503: no endpoints".into()));
    let w = who_has(&v, "192.168.0.12".parse().expect("ip"), None);
    assert_eq!(w.pools.len(), 1);
    let hit = &w.pools[0];
    assert_eq!(
        (hit.pool.as_str(), hit.range.as_str(), hit.node.as_deref(), hit.block.as_deref()),
        ("blue", "192.168.0.0/24", Some("b"), Some("192.168.0.11-192.168.0.20"))
    );
    assert_eq!(w.holders.len(), 1);
    let h = &w.holders[0];
    assert_eq!((h.node.as_str(), h.reservation.pod().as_deref()), ("b", Some("default/p2")));
    assert_eq!(w.unreachable, vec![Unreachable { node: "d".into(), error: "HTTP 503: no endpoints".into() }]);
    // the JSON form flattens the reservation beside the node
    let j = serde_json::to_value(&w).expect("json");
    assert_eq!(j["holders"][0]["podName"], "p2");
    assert_eq!(j["holders"][0]["containerId"], "cid-p2");
    // an address in a block nobody holds; one in no pool
    let free = who_has(&v, "192.168.0.15".parse().expect("ip"), None);
    assert!(free.holders.is_empty() && free.pools[0].node.as_deref() == Some("b"));
    let none = who_has(&v, "172.16.0.1".parse().expect("ip"), None);
    assert!(none.pools.is_empty() && none.holders.is_empty());
    // the CIDRPool: the node's prefix holds it
    let red = who_has(&v, "10.10.1.5".parse().expect("ip"), None);
    assert_eq!((red.pools[0].node.as_deref(), red.holders.len()), (Some("a"), 1));
}

#[test]
fn usage_puts_the_fullest_blocks_first_and_shows_status_only_blocks() {
    let mut v = clean();
    // node gone's block (status) and no answer from it; put it back and make "gone" a node
    v.pools = pools();
    v.nodes = Some(nodes(&[("a", true), ("b", true), ("gone", true)]));
    let u = usage(&v, None, None);
    let order: Vec<(&str, &str)> = u.rows.iter().map(|r| (r.pool.as_str(), r.node.as_str())).collect();
    // b: 3 of 10 used (30%), a/blue: 2 of 10 (20%), a/red: 2 of 254, then the status-only row
    assert_eq!(order, [("blue", "b"), ("blue", "a"), ("red", "a"), ("blue", "gone")]);
    assert_eq!(u.rows[0].used_percent, Some(30.0));
    let only = &u.rows[3];
    assert_eq!(
        (only.block.as_deref(), only.size, only.allocated),
        (Some("192.168.0.21-192.168.0.30"), Some(10), None)
    );
    let j = serde_json::to_value(&u).expect("json");
    assert!(j["rows"][3].get("allocated").is_none(), "no counts without an answer: {}", j["rows"][3]);
    let one = usage(&v, Some("red"), None);
    assert_eq!(one.rows.len(), 1);
    let node_b = usage(&v, None, Some("b"));
    assert!(node_b.rows.iter().all(|r| r.node == "b") && node_b.rows.len() == 1);
}

#[test]
fn each_planted_inconsistency_is_found_once() {
    let mut v = clean();
    v.pools = pools(); // status entry of node "gone", which does not exist
    v.nodes = Some(nodes(&[("a", true), ("b", true), ("c", true)])); // c matches, has no block
    let a = v.answers.get_mut("a").expect("a").as_mut().expect("ok");
    // a leaked allocation: the pod is not on node a
    a.reservations.push(res("blue", PoolType::IpPool, "192.168.0.3", "ghost", "u9"));
    // the same address as b's p2, outside a's block: a duplicate, and outside the block
    a.reservations.push(res("blue", PoolType::IpPool, "192.168.0.12", "p1b", "u1b"));
    // a static address outside the block but in the subnet: fine
    let mut st = res("blue", PoolType::IpPool, "192.168.0.200", "p1", "u1");
    st.is_static = true;
    a.reservations.push(st);
    v.pods.insert("a".into(), Ok(pods(&[("p1", "u1", "Running"), ("p1b", "u1b", "Running")])));
    let b = v.answers.get_mut("b").expect("b").as_mut().expect("ok");
    // a pod re-created under the same name (another UID), and a finished one
    b.reservations[0].pod_uid = Some("old-uid".into());
    b.reservations.push(res("blue", PoolType::IpPool, "192.168.0.14", "done", "ud"));
    v.pods.insert(
        "b".into(),
        Ok(pods(&[("p2", "u2", "Running"), ("p3", "u3", "Running"), ("done", "ud", "Succeeded")])),
    );

    let c = check(&v, None);
    let got: Vec<(FindingKind, Option<&str>, Option<String>)> =
        c.findings.iter().map(|f| (f.kind, f.node.as_deref(), f.ip.map(|i| i.to_string()))).collect();
    assert_eq!(
        got,
        [
            (FindingKind::StaleAllocation, Some("a"), Some("192.168.0.3".into())),
            (FindingKind::StaleAllocation, Some("b"), Some("192.168.0.12".into())),
            (FindingKind::StaleAllocation, Some("b"), Some("192.168.0.14".into())),
            (FindingKind::OutsideBlock, Some("a"), Some("192.168.0.12".into())),
            (FindingKind::DuplicateAddress, Some("a, b"), Some("192.168.0.12".into())),
            (FindingKind::StatusForMissingNode, Some("gone"), None),
            (FindingKind::NodeWithoutBlock, Some("c"), None),
        ],
        "{c:#?}"
    );
    let f = |k: FindingKind| c.findings.iter().find(|f| f.kind == k).expect("finding");
    let stale = f(FindingKind::StaleAllocation);
    assert!(stale.detail.starts_with("pod default/ghost does not exist on node a"), "{}", stale.detail);
    assert_eq!(
        stale.fix,
        r#"on node a as root: echo '{"cniVersion":"1.0.0","ipam":{"poolName":"blue","poolType":"ippool","type":"nv-ipam"},"name":"macvlan"}' | CNI_COMMAND=DEL CNI_CONTAINERID=cid-ghost CNI_IFNAME=net1 /opt/cni/bin/nv-ipam"#
    );
    assert!(c.findings[1].detail.contains("newer pod (UID u2; the reservation is for UID old-uid)"));
    assert!(c.findings[2].detail.contains("has finished (Succeeded)"));
    let outside = f(FindingKind::OutsideBlock);
    assert!(
        outside
            .detail
            .starts_with("192.168.0.12 is outside node a's block 192.168.0.1-192.168.0.10 of pool blue")
    );
    assert_eq!(outside.fix, "kubectl -n default delete pod p1b");
    let dup = f(FindingKind::DuplicateAddress);
    assert_eq!(dup.fix, "kubectl -n default delete pod p1b", "only the holder outside its block");
    assert_eq!(dup.pod.as_deref(), Some("default/p1b on a, default/p2 on b"));
    let gone = f(FindingKind::StatusForMissingNode);
    assert!(gone.fixable);
    assert_eq!(
        gone.fix,
        r#"kubectl -n ns patch ippool blue --subresource=status --type=json -p '[{"op":"test","path":"/status/allocations/2/nodeName","value":"gone"},{"op":"remove","path":"/status/allocations/2"}]'"#
    );
    let nb = f(FindingKind::NodeWithoutBlock);
    assert!(!nb.fixable && nb.detail.contains("NoFreeRanges"), "{}", nb.detail);
    assert_eq!(nb.fix, "kubectl -n ns describe ippool blue");
    assert_eq!(c.open(), 7);

    // --node narrows every check to that node
    let only_b = check(&v, Some("b"));
    assert!(
        only_b.findings.iter().all(|f| f.node.as_deref().is_some_and(|n| n.contains('b'))),
        "{only_b:#?}"
    );

    // the fix of the missing node: the pool's entries without it, with the resourceVersion read
    let fixes = missing_node_fixes(&v, &c, &BTreeMap::new());
    assert_eq!(fixes.len(), 1);
    let (key, rv, kept, n) = &fixes[0];
    assert_eq!((key.name.as_str(), rv.as_str(), *n), ("blue", "41", 2));
    assert_eq!(
        kept.as_array().map(|a| a.iter().map(|x| x["nodeName"].clone()).collect::<Vec<_>>()),
        Some(vec!["a".into(), "b".into()])
    );
}

#[test]
fn unjudgeable_reservations_are_left_alone() {
    let mut v = clean();
    let a = v.answers.get_mut("a").expect("a").as_mut().expect("ok");
    // no pod names (podman, nerdctl): the pod check cannot judge it
    a.reservations.push(res("blue", PoolType::IpPool, "192.168.0.4", "", ""));
    // a CIDRPool address in the node's prefix but outside its usable span (the network
    // address, asked for statically): the prefix is the node's
    let mut net = res("red", PoolType::CidrPool, "10.10.1.0", "p1", "u1");
    net.is_static = true;
    a.reservations.push(net);
    // the pods of node a were not listed (usage, who-has): no stale findings at all
    v.pods.remove("a");
    a.reservations.push(res("blue", PoolType::IpPool, "192.168.0.5", "not-listed", "x"));
    let c = check(&v, None);
    assert_eq!(c.findings, Vec::new(), "{c:#?}");
    // a pod list that failed makes the check incomplete
    v.pods.insert("a".into(), Err("forbidden".into()));
    let c = check(&v, None);
    assert_eq!(
        c.unreachable,
        vec![Unreachable { node: "a".into(), error: "cannot list its pods: forbidden".into() }]
    );
}

#[test]
fn reservations_of_deleted_or_foreign_pools_are_outside_every_block() {
    let mut v = clean();
    let b = v.answers.get_mut("b").expect("b").as_mut().expect("ok");
    b.reservations.push(res("deleted", PoolType::IpPool, "172.16.0.2", "p3", ""));
    b.reservations.push(res("red", PoolType::CidrPool, "10.10.2.7", "p2", "u2"));
    let c = check(&v, None);
    let details: Vec<&str> = c.findings.iter().map(|f| f.detail.as_str()).collect();
    assert_eq!(c.findings.len(), 2, "{details:?}");
    assert!(details[0].starts_with("pool deleted (ippool) does not exist"), "{details:?}");
    assert!(details[1].starts_with("node b has no prefix of pool red (cidrpool)"), "{details:?}");
    // usage shows the reservations of a pool the node does not serve
    let u = usage(&v, Some("deleted"), None);
    assert_eq!((u.rows.len(), u.rows[0].allocated, u.rows[0].block.clone()), (1, Some(1), None));
}

#[test]
fn fix_commands_quote_what_nodes_say() {
    assert_eq!(sh("plain-name_1.2"), "plain-name_1.2");
    assert_eq!(sh(""), "''");
    assert_eq!(sh("a b"), "'a b'");
    assert_eq!(sh("x'; rm -rf / #"), "'x'\\''; rm -rf / #'");
    let mut r = res("blue", PoolType::IpPool, "192.168.0.2", "p", "u");
    r.container_id = "$(reboot)".into();
    r.interface = "`id`".into();
    let cmd = cni_del("a", &r);
    assert!(cmd.contains("CNI_CONTAINERID='$(reboot)' CNI_IFNAME='`id`'"), "{cmd}");
}

#[test]
fn a_standalone_host_judges_only_the_blocks_its_pools_file_gives_it() {
    let host = |node: &str, pools: Vec<AnyPool>| {
        let mut v = View { pools, standalone_node: Some(node.into()), ..View::default() };
        v.answers.insert(
            node.into(),
            Ok(report(
                node,
                vec![],
                vec![
                    res("blue", PoolType::IpPool, "192.168.0.2", "p1", "u1"),
                    res("blue", PoolType::IpPool, "192.168.0.50", "p2", "u2"),
                    res("unlisted", PoolType::IpPool, "172.16.0.2", "p3", "u3"),
                ],
            )),
        );
        v
    };
    // no pools file: nothing is known of any block
    let v = host("a", Vec::new());
    assert_eq!(node_without_any_block(&v), Some("a"));
    assert_eq!(check(&v, None).findings, Vec::new());
    // a pools file without an entry for this node name: every address would look outside
    let v = host("h", pools());
    assert_eq!(node_without_any_block(&v), Some("h"));
    assert_eq!(check(&v, None).findings, Vec::new());
    // the right name: its block is judged; a pool the file does not list is not
    let v = host("a", pools());
    assert_eq!(node_without_any_block(&v), None);
    let c = check(&v, None);
    let got: Vec<(FindingKind, Option<String>)> =
        c.findings.iter().map(|f| (f.kind, f.ip.map(|i| i.to_string()))).collect();
    assert_eq!(got, [(FindingKind::OutsideBlock, Some("192.168.0.50".into()))], "{c:#?}");
    // a cluster knows every pool: one it does not have was deleted
    assert_eq!(node_without_any_block(&clean()), None);
}

#[test]
fn fix_leaves_the_entries_of_missing_nodes_that_pods_are_bound_to() {
    let mut v = clean();
    v.pools = pools(); // blue's status has entries of a, b and "gone"
    // a second missing node, with pods still bound to it
    if let AnyPool::Ip(p) = &mut v.pools[0] {
        let mut e = p.status.as_ref().expect("status").allocations[2].clone();
        e.node_name = "busy".into();
        e.start_ip = "192.168.0.31".into();
        e.end_ip = "192.168.0.40".into();
        p.status.as_mut().expect("status").allocations.push(e);
    }
    let mut c = check(&v, None);
    assert_eq!(missing_nodes(&c), BTreeSet::from(["busy", "gone"]));
    let held = BTreeMap::from([("busy".to_string(), pods_still_bound("busy"))]);
    let fixes = missing_node_fixes(&v, &c, &held);
    assert_eq!(fixes.len(), 1);
    let (key, _, kept, n) = &fixes[0];
    assert_eq!((key.name.as_str(), *n), ("blue", 3));
    assert_eq!(
        kept.as_array().map(|a| a.iter().map(|x| x["nodeName"].clone()).collect::<Vec<_>>()),
        Some(vec!["a".into(), "b".into(), "busy".into()]),
        "only gone's entry goes"
    );
    let done = BTreeMap::from([(key.clone(), "fixed".to_string())]);
    record_fixes(&mut c, &done, &held);
    let fixed = |node: &str| {
        c.findings.iter().find(|f| f.node.as_deref() == Some(node)).and_then(|f| f.fixed.clone())
    };
    assert_eq!(fixed("gone").as_deref(), Some("fixed"));
    let why = fixed("busy").expect("busy held");
    assert!(why.starts_with("not fixed: pods are still bound to node busy"), "{why}");
    assert!(why.contains("kubectl delete pods -A --field-selector spec.nodeName=busy"), "{why}");
    assert!(why.contains("check --fix --force"), "{why}");
    assert_eq!(c.open(), c.findings.len() - 1, "busy stays open");
    // nothing held back (--force): both go in one write
    let all = missing_node_fixes(&v, &c, &BTreeMap::new());
    assert_eq!(all[0].3, 2);
}

#[test]
fn imported_reservations_may_be_static_where_no_other_node_hands_out_their_address() {
    let mut v = clean();
    // as imported from the reference's store: no static marker, no creation time, no network
    let imported = |ip: &str, pod: &str| {
        let mut r = res("blue", PoolType::IpPool, ip, pod, "");
        (r.created, r.network) = (None, String::new());
        r
    };
    let b = v.answers.get_mut("b").expect("b").as_mut().expect("ok");
    b.reservations.push(imported("192.168.0.200", "p2")); // in the subnet, in no block
    b.reservations.push(imported("192.168.0.1", "p2")); // the gateway (allocateDefaultGateway)
    b.reservations.push(imported("192.168.0.5", "p3")); // in node a's block
    b.reservations.push(imported("10.0.0.9", "p3")); // outside the subnet
    // one ipam-node made: not static, so outside its block it is (the block moved)
    b.reservations.push(res("blue", PoolType::IpPool, "192.168.0.201", "p2", "u2"));
    let c = check(&v, None);
    let got: Vec<(FindingKind, Option<String>)> =
        c.findings.iter().map(|f| (f.kind, f.ip.map(|i| i.to_string()))).collect();
    assert_eq!(
        got,
        [
            (FindingKind::OutsideBlock, Some("10.0.0.9".into())),
            (FindingKind::OutsideBlock, Some("192.168.0.5".into())),
            (FindingKind::OutsideBlock, Some("192.168.0.201".into())),
        ],
        "{c:#?}"
    );
}
