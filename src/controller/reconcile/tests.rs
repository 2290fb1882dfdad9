use super::*;
use crate::api::decode;
use crate::api::manifest::Object;

fn pool(yaml: &str) -> AnyPool {
    let m = decode(yaml).expect("decodes");
    match m.objects.into_iter().next() {
        Some(Object::Pool(p)) => p,
        _ => panic!("no pool"),
    }
}

fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

fn run(p: &AnyPool, nodes: &[Node], holds: &BTreeMap<String, SystemTime>, now: u64, grace: u64) -> Outcome {
    reconcile(&Input {
        pool: p,
        conditions: &[],
        generation: Some(1),
        nodes,
        holds,
        now: t(now),
        grace: Duration::from_secs(grace),
        intents: None,
    })
}

fn ip_allocs(o: &Outcome) -> Vec<(String, String, String)> {
    let AnyAllocations::Ip(a) = &o.allocations else { panic!("ip") };
    a.iter().map(|a| (a.node_name.clone(), a.start_ip.clone(), a.end_ip.clone())).collect()
}

fn with_status(p: &AnyPool, o: &Outcome) -> AnyPool {
    let mut p = p.clone();
    if let (AnyPool::Ip(p), AnyAllocations::Ip(a)) = (&mut p, &o.allocations) {
        p.status = Some(crate::api::IpPoolStatus { allocations: a.clone() });
    }
    p
}

const SEED: &str = "kind: IPPool\nmetadata: {name: pool1}\n\
    spec: {subnet: 192.168.0.0/16, gateway: 192.168.0.1, perNodeBlockSize: 4, nodeSelector: \
    {nodeSelectorTerms: [{matchExpressions: [{key: pool, operator: In, values: [a]}]}]}}\n";

fn labelled(names: &[&str]) -> Vec<Node> {
    names.iter().map(|n| Node::new(*n, &[("pool", "a")])).collect()
}

#[test]
fn seed_example_and_stable_rerun() {
    let p = pool(SEED);
    let o = run(&p, &labelled(&["node1", "node2"]), &BTreeMap::new(), 0, 300);
    assert_eq!(
        ip_allocs(&o),
        vec![
            ("node1".into(), "192.168.0.1".into(), "192.168.0.4".into()),
            ("node2".into(), "192.168.0.5".into(), "192.168.0.8".into())
        ]
    );
    assert!(o.changed && o.events.is_empty());
    assert_eq!(o.conditions.len(), 1);
    assert_eq!((o.conditions[0].status.as_str(), o.conditions[0].reason.as_str()), ("True", "Valid"));
    assert_eq!(o.capacity, Some(65534 / 4));
    assert_eq!(o.size, Some(65536));
    // the same input with the written status, later: nothing to write
    let p2 = with_status(&p, &o);
    let again = reconcile(&Input {
        pool: &p2,
        conditions: &o.conditions,
        generation: Some(1),
        nodes: &labelled(&["node1", "node2"]),
        holds: &BTreeMap::new(),
        now: t(100),
        grace: Duration::from_secs(300),
        intents: None,
    });
    assert!(!again.changed, "{again:?}");
    assert_eq!(again.conditions[0].last_transition_time, rfc3339(t(0)));
}

#[test]
fn departed_node_is_held_for_the_grace_period() {
    let p = pool(SEED);
    let o = run(&p, &labelled(&["node1", "node2"]), &BTreeMap::new(), 0, 30);
    let p = with_status(&p, &o);
    // node1 unlabelled, node3 arrives: node1 keeps its block, node3 gets a new one
    let mut nodes = labelled(&["node2", "node3"]);
    nodes.push(Node::new("node1", &[]));
    let o = run(&p, &nodes, &BTreeMap::new(), 10, 30);
    assert_eq!(
        ip_allocs(&o),
        vec![
            ("node1".into(), "192.168.0.1".into(), "192.168.0.4".into()),
            ("node2".into(), "192.168.0.5".into(), "192.168.0.8".into()),
            ("node3".into(), "192.168.0.9".into(), "192.168.0.12".into()),
        ]
    );
    assert_eq!(o.holds.get("node1"), Some(&t(10)));
    assert_eq!(o.recheck_at, Some(t(40)));
    // after the grace period: released, and the next node takes the freed block (first fit)
    let p = with_status(&p, &o);
    let nodes = labelled(&["node2", "node3", "node4"]);
    let o2 = run(&p, &nodes, &o.holds, 40, 30);
    assert_eq!(
        ip_allocs(&o2),
        vec![
            ("node2".into(), "192.168.0.5".into(), "192.168.0.8".into()),
            ("node3".into(), "192.168.0.9".into(), "192.168.0.12".into()),
            ("node4".into(), "192.168.0.1".into(), "192.168.0.4".into()),
        ]
    );
    assert!(o2.holds.is_empty() && o2.recheck_at.is_none());
}

#[test]
fn zero_grace_frees_at_once() {
    let p = pool(SEED);
    let o = run(&p, &labelled(&["node1", "node2"]), &BTreeMap::new(), 0, 0);
    let p = with_status(&p, &o);
    let o = run(&p, &labelled(&["node2", "node3"]), &BTreeMap::new(), 1, 0);
    assert_eq!(ip_allocs(&o)[1], ("node3".into(), "192.168.0.1".into(), "192.168.0.4".into()));
    assert!(o.holds.is_empty());
}

#[test]
fn invalid_spec_keeps_allocations_and_says_why() {
    let p = pool(SEED);
    let o = run(&p, &labelled(&["node1"]), &BTreeMap::new(), 0, 0);
    let good = with_status(&p, &o);
    let mut bad = good.clone();
    if let AnyPool::Ip(b) = &mut bad {
        b.spec.per_node_block_size = 0;
    }
    let o2 = reconcile(&Input {
        pool: &bad,
        conditions: &o.conditions,
        generation: Some(2),
        nodes: &labelled(&["node1", "node2"]),
        holds: &BTreeMap::new(),
        now: t(5),
        grace: Duration::ZERO,
        intents: None,
    });
    assert_eq!(ip_allocs(&o2), ip_allocs(&o), "allocations kept");
    assert!(o2.changed);
    let c = &o2.conditions[0];
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "InvalidSpec"));
    assert_eq!(c.message, "ippool \"pool1\": spec.perNodeBlockSize: must be at least 1");
    assert_eq!(c.last_transition_time, rfc3339(t(5)));
    assert_eq!(c.observed_generation, Some(2));
    assert_eq!(o2.events, vec![Event { reason: "InvalidSpec", message: c.message.clone() }]);
    // valid again: condition back to True with a new transition time
    let o3 = reconcile(&Input {
        pool: &good,
        conditions: &o2.conditions,
        generation: Some(3),
        nodes: &labelled(&["node1"]),
        holds: &BTreeMap::new(),
        now: t(9),
        grace: Duration::ZERO,
        intents: None,
    });
    assert_eq!(o3.conditions[0].status, "True");
    assert_eq!(o3.conditions[0].last_transition_time, rfc3339(t(9)));
}

#[test]
fn exhausted_pool_warns_per_node() {
    let p = pool(
        "kind: IPPool\nmetadata: {name: small}\nspec: {subnet: 192.168.0.0/24, perNodeBlockSize: 200}\n",
    );
    let o = run(&p, &[Node::new("n1", &[]), Node::new("n2", &[])], &BTreeMap::new(), 0, 0);
    assert_eq!(
        o.events,
        vec![Event { reason: "NoFreeRanges", message: "failed to allocate IPs on Node: n2".into() }]
    );
    let c =
        pool("kind: CIDRPool\nmetadata: {name: c}\nspec: {cidr: 10.0.0.0/24, perNodeNetworkPrefix: 24}\n");
    let o = run(&c, &[Node::new("n1", &[]), Node::new("n2", &[])], &BTreeMap::new(), 0, 0);
    assert_eq!(o.events[0].reason, "NoFreePrefixes");
    assert_eq!(o.capacity, Some(1));
}

#[test]
fn cidr_seed_and_worked_example_22() {
    let c = pool(
        "kind: CIDRPool\nmetadata: {name: c}\nspec: {cidr: 10.10.0.0/16, perNodeNetworkPrefix: 24, gatewayIndex: 1}\n",
    );
    let o = run(&c, &[Node::new("node-1", &[]), Node::new("node-2", &[])], &BTreeMap::new(), 0, 0);
    let AnyAllocations::Cidr(a) = &o.allocations else { panic!("cidr") };
    let got: Vec<_> =
        a.iter().map(|a| (a.node_name.as_str(), a.prefix.as_str(), a.gateway.as_str())).collect();
    assert_eq!(got, vec![("node-1", "10.10.0.0/24", "10.10.0.1"), ("node-2", "10.10.1.0/24", "10.10.1.1")]);
    assert_eq!(o.capacity, Some(256));
    assert_eq!(o.size, Some(65536));
}

#[test]
fn huge_ipv6_saturates() {
    let c =
        pool("kind: CIDRPool\nmetadata: {name: c}\nspec: {cidr: 'fd00::/8', perNodeNetworkPrefix: 120}\n");
    let o = run(&c, &[], &BTreeMap::new(), 0, 0);
    assert_eq!(o.capacity, Some(u64::MAX));
    assert_eq!(o.size, Some(u64::MAX));
}

#[test]
fn rfc3339_has_seconds_resolution() {
    assert_eq!(rfc3339(SystemTime::UNIX_EPOCH + Duration::from_millis(1_500)), "1970-01-01T00:00:01Z");
}

#[test]
fn only_nodes_the_pool_selects_or_holds_matter() {
    let p = pool(SEED);
    let labels = |v: &str| Some([("pool".to_string(), v.to_string())].into_iter().collect());
    let change = |name: &str, before, after| NodeChange { name: name.into(), before, after };
    assert!(nodes_matter(&p, &[change("x", None, labels("a"))]), "a new matching node");
    assert!(nodes_matter(&p, &[change("x", labels("a"), labels("b"))]), "unlabelled");
    assert!(!nodes_matter(&p, &[change("x", None, labels("b"))]), "another pool's node");
    assert!(!nodes_matter(&p, &[change("x", labels("b"), None)]), "another pool's node deleted");
    let o = run(&p, &labelled(&["node1"]), &BTreeMap::new(), 0, 0);
    let p = with_status(&p, &o);
    assert!(nodes_matter(&p, &[change("node1", labels("b"), labels("c"))]), "holds an entry");
    let all = pool("kind: IPPool\nmetadata: {name: all}\nspec: {subnet: 10.0.0.0/24, perNodeBlockSize: 4}\n");
    assert!(nodes_matter(&all, &[change("x", None, labels("b"))]), "no selector: every node");
    let bad = pool("kind: IPPool\nmetadata: {name: bad}\nspec: {subnet: 10.0.0.0/24}\n");
    assert!(!nodes_matter(&bad, &[change("x", None, labels("b"))]), "invalid: nodes do not matter");
}

#[test]
fn an_intent_keeps_its_block_and_loses_to_the_status() {
    // node2's NodeBlockSet names .9-.12 (written before a crash), the status only has node1
    let p = pool(SEED);
    let first = run(&p, &labelled(&["node1"]), &BTreeMap::new(), 0, 300);
    let p = with_status(&p, &first);
    let ia = |n: &str, s: &str, e: &str| crate::api::IpAllocation {
        node_name: n.into(),
        start_ip: s.into(),
        end_ip: e.into(),
    };
    let intents = AnyAllocations::Ip(vec![
        ia("node2", "192.168.0.9", "192.168.0.12"),
        // a stale intent on node1's block for node3: the status wins, node3 gets a new block
        ia("node3", "192.168.0.1", "192.168.0.4"),
        // an intent of a node the pool no longer selects is dropped
        ia("gone", "192.168.0.13", "192.168.0.16"),
    ]);
    let o = reconcile(&Input {
        pool: &p,
        conditions: &first.conditions,
        generation: Some(1),
        nodes: &labelled(&["node1", "node2", "node3"]),
        holds: &BTreeMap::new(),
        now: t(1),
        grace: Duration::from_secs(300),
        intents: Some(&intents),
    });
    assert!(o.changed);
    assert_eq!(
        ip_allocs(&o),
        vec![
            ("node1".into(), "192.168.0.1".into(), "192.168.0.4".into()),
            ("node2".into(), "192.168.0.9".into(), "192.168.0.12".into()),
            ("node3".into(), "192.168.0.5".into(), "192.168.0.8".into()),
        ]
    );
}
