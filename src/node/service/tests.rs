//! Request handling against a real store in a temp dir: all-or-nothing, idempotence,
//! static requests, release, GC, status and the cooldown.

use super::*;
use crate::api::PoolType;
use crate::ip::IpRange;
use crate::protocol::{Attachment, PodRef};
use crate::store::tests::TempDir;

fn ipa(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn pool(name: &str, subnet: &str, start: &str, end: &str, gw: Option<&str>) -> NodePool {
    NodePool {
        key: PoolKey::new(PoolType::IpPool, name),
        subnet: subnet.parse().expect("subnet"),
        range: IpRange::new(ipa(start), ipa(end)).expect("range"),
        gateway: gw.map(ipa),
        exclusions: Vec::new(),
        routes: Vec::new(),
        default_gateway: true,
    }
}

/// A service over a store in its own temp dir (removed when the fixture drops).
struct Fixture {
    svc: Service,
    _dir: TempDir,
}

impl std::ops::Deref for Fixture {
    type Target = Service;
    fn deref(&self) -> &Service {
        &self.svc
    }
}

fn service(pools: Vec<NodePool>) -> Fixture {
    let dir = TempDir::new("service-test");
    let store = Store::open(&dir.join("store")).expect("store");
    Fixture { svc: Service::new("node1".into(), store, PoolSet::new(pools)), _dir: dir }
}

fn add(cid: &str, pools: &[&str]) -> AllocateRequest {
    AllocateRequest {
        network: "net1".into(),
        container_id: cid.into(),
        ifname: "eth0".into(),
        pools: pools.iter().map(|p| p.to_string()).collect(),
        pool_type: PoolType::IpPool,
        requested_ips: Vec::new(),
        allocate_default_gateway: false,
        allocate_ip_with_index: None,
        pod: PodRef::default(),
        device_id: None,
    }
}

fn ips(reply: &Reply) -> Vec<String> {
    reply.allocations.iter().map(|a| a.ip.to_string()).collect()
}

fn v4v6() -> Vec<NodePool> {
    vec![
        pool("v4", "192.168.0.0/16", "192.168.0.1", "192.168.0.4", Some("192.168.0.1")),
        pool("v6", "fd00::/64", "fd00::1", "fd00::3", None),
    ]
}

#[test]
fn seed_example_first_pod_and_idempotent_add() {
    let s = service(v4v6());
    let r = s.allocate(add("c1", &["v4"])).expect("add");
    assert_eq!(ips(&r), ["192.168.0.2/16"]);
    assert_eq!(r.allocations[0].gateway, Some(ipa("192.168.0.1")));
    assert_eq!(r.allocations[0].routes.iter().map(|n| n.to_string()).collect::<Vec<_>>(), ["0.0.0.0/0"]);
    let again = s.allocate(add("c1", &["v4"])).expect("add again");
    assert_eq!(ips(&again), ["192.168.0.2/16"]);
    assert_eq!(s.lock_store().state().len(), 1);
}

#[test]
fn dual_stack_is_all_or_nothing() {
    let s = service(v4v6());
    for c in ["a", "b"] {
        s.allocate(add(c, &["v6"])).expect("fill v6");
    }
    // v6 has ::2 and ::3 only (no gateway, ::1 free too): fill it.
    s.allocate(add("c", &["v6"])).expect("fill v6");
    let e = s.allocate(add("d", &["v4", "v6"])).expect_err("v6 exhausted");
    assert_eq!(e.code, ErrorCode::PoolExhausted);
    assert_eq!(s.lock_store().state().count_in_pool("v4"), 0, "v4 address rolled back");
}

#[test]
fn static_requests_must_all_be_used() {
    let s = service(v4v6());
    let mut r = add("c1", &["v4"]);
    r.requested_ips = vec![ipa("10.0.0.1")];
    let e = s.allocate(r).expect_err("outside");
    assert_eq!(e.code, ErrorCode::IpOutOfRange);
    assert!(e.message.contains("10.0.0.1 is outside every requested pool's subnet"), "{}", e.message);
    let mut r = add("c1", &["v4", "v6"]);
    r.requested_ips = vec![ipa("192.168.3.3")];
    let got = s.allocate(r).expect("static v4, dynamic v6");
    assert_eq!(ips(&got), ["192.168.3.3/16", "fd00::1/64"]);
    let mut r = add("c2", &["v4"]);
    r.requested_ips = vec![ipa("192.168.3.3")];
    assert_eq!(s.allocate(r).expect_err("taken").code, ErrorCode::IpUnavailable);
}

#[test]
fn check_release_gc() {
    let s = service(v4v6());
    s.allocate(add("c1", &["v4"])).expect("add");
    s.allocate(add("c2", &["v4"])).expect("add");
    let check = |cid: &str, ips: Vec<IpAddr>| {
        s.check(CheckRequest {
            network: "net1".into(),
            container_id: cid.into(),
            ifname: "eth0".into(),
            pools: vec!["v4".into()],
            pool_type: PoolType::IpPool,
            ips,
        })
    };
    check("c1", vec![ipa("192.168.0.2")]).expect("check ok");
    assert_eq!(check("c1", vec![ipa("192.168.0.3")]).expect_err("mismatch").code, ErrorCode::Mismatch);
    let gc = s
        .gc(GcRequest {
            network: "net1".into(),
            valid_attachments: vec![Attachment { container_id: "c1".into(), ifname: "eth0".into() }],
        })
        .expect("gc");
    assert_eq!(gc.released, Some(1));
    assert_eq!(check("c2", vec![]).expect_err("gone").code, ErrorCode::NotAllocated);
    let rel = |cid: &str| {
        s.release(ReleaseRequest {
            network: "net1".into(),
            container_id: cid.into(),
            ifname: "eth0".into(),
            pools: vec!["v4".into()],
            pool_type: PoolType::IpPool,
        })
    };
    assert_eq!(rel("c1").expect("del").released, Some(1));
    assert_eq!(rel("c1").expect("del again").released, Some(0));
    assert_eq!(rel("never").expect("del unknown").released, Some(0));
}

#[test]
fn unknown_pool_and_bad_requests() {
    let s = service(v4v6());
    let e = s.allocate(add("c1", &["nope"])).expect_err("unknown");
    assert_eq!(e.code, ErrorCode::PoolNotFound);
    assert!(e.message.contains("\"nope\"") && e.message.contains("node1"), "{}", e.message);
    assert_eq!(s.allocate(add("c1", &["a", "b", "c"])).expect_err("three").code, ErrorCode::InvalidRequest);
    assert_eq!(s.allocate(add("c1", &["v4", "v4"])).expect_err("twice").code, ErrorCode::InvalidRequest);
    assert_eq!(s.allocate(add("", &["v4"])).expect_err("empty id").code, ErrorCode::InvalidRequest);
}

#[test]
fn static_request_errors_name_the_addresses_and_the_pool() {
    let s = service(v4v6());
    let with = |cid: &str, pools: &[&str], want: &[&str]| {
        let mut r = add(cid, pools);
        r.requested_ips = want.iter().map(|a| ipa(a)).collect();
        s.allocate(r)
    };
    let e = with("c1", &["v4"], &["192.168.0.9", "192.168.0.9"]).expect_err("twice");
    assert_eq!(e.code, ErrorCode::InvalidRequest);
    assert!(e.message.contains("name 192.168.0.9 twice (pool \"v4\")"), "{}", e.message);
    let e = with("c1", &["v4", "v6"], &["192.168.0.9", "192.168.0.10"]).expect_err("two in v4");
    assert_eq!(e.code, ErrorCode::InvalidRequest);
    assert!(
        e.message
            .contains("192.168.0.9 and 192.168.0.10 are both in the subnet 192.168.0.0/16 of pool \"v4\""),
        "{}",
        e.message
    );
    let e = with("c1", &["v4", "v6"], &["fd01::1"]).expect_err("outside");
    assert_eq!(e.code, ErrorCode::IpOutOfRange);
    assert!(e.message.contains("(\"v4\" 192.168.0.0/16, \"v6\" fd00::/64)"), "{}", e.message);
    // two pools whose subnets overlap each take their own address
    let overlap = service(vec![
        pool("a", "10.0.0.0/16", "10.0.0.1", "10.0.0.9", None),
        pool("b", "10.0.1.0/24", "10.0.1.1", "10.0.1.9", None),
    ]);
    let mut r = add("c1", &["a", "b"]);
    r.requested_ips = vec![ipa("10.0.1.5"), ipa("10.0.1.6")];
    assert_eq!(ips(&overlap.allocate(r).expect("one each")), ["10.0.1.5/16", "10.0.1.6/24"]);
    assert_eq!(s.lock_store().state().len(), 0, "nothing reserved by the failures");
}

#[test]
fn a_refused_pool_names_its_reason() {
    use crate::api::IpPool;
    let mut bad = IpPool::default();
    bad.metadata.name = "blue".into();
    bad.spec.subnet = "10.0.0.0/24".into();
    bad.spec.per_node_block_size = 4;
    bad.spec.gateway = "10.9.0.1".into();
    let set = super::super::pools::derive(
        [super::super::pools::PoolRef::Ip(&bad)],
        "node1",
        super::super::pools::Planning::Alone,
        &PoolSet::default(),
    );
    let dir = TempDir::new("service-test");
    let s = Service::new("node1".into(), Store::open(&dir.join("store")).expect("store"), set);
    let e = s.allocate(add("c1", &["blue"])).expect_err("refused");
    assert_eq!(e.code, ErrorCode::PoolNotFound);
    assert!(
        e.message.contains("pool \"blue\", poolType \"ippool\" has no configuration on node \"node1\": ippool \"blue\" has an invalid spec: spec.gateway"),
        "{}",
        e.message
    );
    let st = s.status(StatusRequest { pools: vec!["blue".into()], pool_type: PoolType::IpPool });
    assert_eq!(st.expect_err("refused").code, ErrorCode::PoolNotFound);
}

#[test]
fn status_lists_a_full_pool_with_free_zero() {
    let s = service(v4v6());
    let status = |pools: &[&str]| {
        s.status(StatusRequest {
            pools: pools.iter().map(|p| p.to_string()).collect(),
            pool_type: PoolType::IpPool,
        })
    };
    let st = status(&["v4"]).expect("status");
    assert_eq!((st.pools[0].allocated, st.pools[0].free), (0, 3));
    for c in ["a", "b", "c"] {
        s.allocate(add(c, &["v4"])).expect("fill");
    }
    let st = status(&["v4", "v6"]).expect("a full pool is listed");
    let got: Vec<(String, u64, u64)> =
        st.pools.iter().map(|p| (p.pool.clone(), p.allocated, p.free)).collect();
    assert_eq!(got, [("v4".to_string(), 3, 0), ("v6".to_string(), 0, 3)]);
    assert_eq!(status(&[]).expect("all").pools.len(), 2);
    assert_eq!(status(&["nope"]).expect_err("unknown").code, ErrorCode::PoolNotFound);
}

#[test]
fn cooldown_skips_released_addresses_for_round_robin_only() {
    let dir = TempDir::new("service-test");
    let store = Store::open(&dir.join("store")).expect("store");
    let one = pool("v4", "192.168.0.0/16", "192.168.0.1", "192.168.0.3", None);
    let s =
        Service::new("node1".into(), store, PoolSet::new(vec![one])).with_cooldown(Duration::from_secs(3600));
    assert_eq!(ips(&s.allocate(add("a", &["v4"])).expect("a")), ["192.168.0.1/16"]);
    let del = ReleaseRequest {
        network: "net1".into(),
        container_id: "a".into(),
        ifname: "eth0".into(),
        pools: vec!["v4".into()],
        pool_type: PoolType::IpPool,
    };
    assert_eq!(s.release(del).expect("del").released, Some(1));
    assert_eq!(ips(&s.allocate(add("b", &["v4"])).expect("b")), ["192.168.0.2/16"]);
    assert_eq!(ips(&s.allocate(add("c", &["v4"])).expect("c")), ["192.168.0.3/16"]);
    let e = s.allocate(add("d", &["v4"])).expect_err(".1 is cooling");
    assert_eq!(e.code, ErrorCode::PoolExhausted);
    let free = |s: &Service| {
        s.status(StatusRequest { pools: vec!["v4".into()], pool_type: PoolType::IpPool })
            .expect("status")
            .pools[0]
            .free
    };
    assert_eq!(free(&s), 0, "a cooling address is not free for round robin");
    let mut r = add("d", &["v4"]);
    r.requested_ips = vec![ipa("192.168.0.1")];
    assert_eq!(ips(&s.allocate(r).expect("static may take a cooling address")), ["192.168.0.1/16"]);
    assert_eq!(free(&s), 0);
    assert_eq!(s.usage()[0].1, 3, "held and cooling: counted once");
}

#[test]
fn release_exact_spares_a_reservation_remade_under_the_same_key() {
    let s = service(v4v6());
    s.allocate(add("c1", &["v4"])).expect("add");
    let judged = s.snapshot(|_| true);
    let del = ReleaseRequest {
        network: "net1".into(),
        container_id: "c1".into(),
        ifname: "eth0".into(),
        pools: vec!["v4".into()],
        pool_type: PoolType::IpPool,
    };
    s.release(del).expect("del");
    s.allocate(add("c1", &["v4"])).expect("re-add under the same key, another address");
    assert_eq!(s.release_exact(&judged).expect("release"), 0);
    assert_eq!(s.snapshot(|_| true).len(), 1);
    let now = s.snapshot(|_| true);
    assert_eq!(s.release_exact(&now).expect("release"), 1);
}
