use super::*;
use crate::api::{IpPool, validate_ip_pool};

const IP_SPEC: &str = r#"{"subnet": "192.168.0.0/16", "perNodeBlockSize": 4, "gateway": "192.168.0.1"}"#;
const CIDR_SPEC: &str = r#"{"cidr": "10.0.0.0/16", "perNodeNetworkPrefix": 24, "gatewayIndex": 1}"#;

fn object(kind: &str, name: &str, spec: &str, annotations: Value, status: Value) -> Value {
    let spec: Value = serde_json::from_str(spec).expect("spec JSON");
    let mut o = json!({"apiVersion": "nv-ipam.nvidia.com/v1alpha1", "kind": kind,
        "metadata": {"name": name, "namespace": "ns", "annotations": annotations}, "spec": spec});
    if !status.is_null() {
        o["status"] = status;
    }
    o
}

fn review(kind: &str, op: &str, obj: Value, old: Option<Value>) -> Vec<u8> {
    let mut req = json!({"uid": "u-1", "kind": {"group": "nv-ipam.nvidia.com", "version": "v1alpha1", "kind": kind},
        "operation": op, "namespace": "ns", "name": obj["metadata"]["name"], "object": obj});
    if let Some(old) = old {
        req["oldObject"] = old;
    }
    serde_json::to_vec(
        &json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req}),
    )
    .expect("JSON")
}

fn run(t: PoolType, body: &[u8], others: Option<&[PoolRange]>) -> Verdict {
    decide(&parse_review(t, body).expect("a review"), others)
}

fn ip(spec: &str) -> Value {
    object("IPPool", "blue", spec, json!({}), Value::Null)
}

fn ip_status(nodes: &[(&str, &str, &str)]) -> Value {
    let a: Vec<Value> =
        nodes.iter().map(|(n, s, e)| json!({"nodeName": n, "startIP": s, "endIP": e})).collect();
    json!({"allocations": a})
}

#[test]
fn paths() {
    assert_eq!(path_kind("/validate-nv-ipam-nvidia-com-v1alpha1-ippool"), Some(PoolType::IpPool));
    assert_eq!(path_kind("/validate-nv-ipam-nvidia-com-v1alpha1-cidrpool"), Some(PoolType::CidrPool));
    assert_eq!(path_kind("/validate"), None);
}

#[test]
fn valid_pools_are_allowed_and_the_uid_echoed() {
    let v = run(PoolType::IpPool, &review("IPPool", "CREATE", ip(IP_SPEC), None), Some(&[]));
    assert_eq!(v, Verdict::allow(Vec::new()));
    let body: Value = serde_json::from_slice(&response_body("u-1", &v)).expect("JSON");
    assert_eq!(
        body,
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
               "response": {"uid": "u-1", "allowed": true}})
    );
    let c = object("CIDRPool", "red", CIDR_SPEC, json!({}), Value::Null);
    assert!(run(PoolType::CidrPool, &review("CIDRPool", "CREATE", c, None), None).allowed);
}

#[test]
fn invalid_pools_are_refused_naming_every_field() {
    let bad = ip(r#"{"subnet": "192.168.0.0/24", "perNodeBlockSize": 300, "gateway": "10.0.0.1",
        "routes": [{"dst": "fd00::/64"}], "exclusions": [{"startIP": "10.0.0.1", "endIP": "10.0.0.2"}]}"#);
    let v = run(PoolType::IpPool, &review("IPPool", "CREATE", bad, None), None);
    assert!(!v.allowed);
    assert_eq!((v.code, v.reason), (403, "Invalid"));
    for field in ["spec.perNodeBlockSize", "spec.gateway", "spec.exclusions[0].startIP", "spec.routes[0].dst"]
    {
        assert!(v.message.contains(&format!("{field}: ")), "{field} in {}", v.message);
    }
    let body: Value = serde_json::from_slice(&response_body("u-1", &v)).expect("JSON");
    assert_eq!(body["response"]["uid"], "u-1");
    assert_eq!(body["response"]["allowed"], false);
    assert_eq!(body["response"]["status"]["code"], 403);
    assert_eq!(body["response"]["status"]["reason"], "Invalid");
    assert_eq!(body["response"]["status"]["message"], json!(v.message));

    let c = object(
        "CIDRPool",
        "x_!",
        r#"{"cidr": "10.0.0.0/16", "perNodeNetworkPrefix": 8}"#,
        json!({}),
        Value::Null,
    );
    let v = run(PoolType::CidrPool, &review("CIDRPool", "CREATE", c, None), None);
    assert!(
        v.message.contains("metadata.name: ") && v.message.contains("spec.perNodeNetworkPrefix: "),
        "{}",
        v.message
    );
}

#[test]
fn the_same_validation_as_the_controller() {
    // every pool of the validation tests' fixtures: the webhook says exactly what validate says
    for spec in [
        IP_SPEC,
        r#"{"subnet": "x"}"#,
        r#"{"subnet": "10.0.0.0/8", "perNodeBlockSize": 0, "defaultGateway": true}"#,
    ] {
        let obj = ip(spec);
        let pool: IpPool = serde_json::from_value(obj.clone()).expect("pool");
        let v = run(PoolType::IpPool, &review("IPPool", "CREATE", obj, None), None);
        match validate_ip_pool(&pool) {
            Ok(_) => assert!(v.allowed, "{spec}"),
            Err(e) => assert_eq!(v.message, e.to_string()),
        }
    }
}

#[test]
fn update_that_moves_held_blocks_is_refused_unless_annotated() {
    let status =
        ip_status(&[("node-a", "192.168.0.1", "192.168.0.4"), ("node-b", "192.168.0.5", "192.168.0.8")]);
    let old = object("IPPool", "blue", IP_SPEC, json!({}), status.clone());
    // same spec, new label: allowed
    let mut same = old.clone();
    same["metadata"]["labels"] = json!({"x": "y"});
    assert!(run(PoolType::IpPool, &review("IPPool", "UPDATE", same, Some(old.clone())), Some(&[])).allowed);
    // a bigger subnet keeps every block: allowed
    let grown = object(
        "IPPool",
        "blue",
        r#"{"subnet": "192.168.0.0/15", "perNodeBlockSize": 4, "gateway": "192.168.0.1"}"#,
        json!({}),
        status.clone(),
    );
    assert!(run(PoolType::IpPool, &review("IPPool", "UPDATE", grown, Some(old.clone())), Some(&[])).allowed);
    // a new block size moves both
    let moved = r#"{"subnet": "192.168.0.0/16", "perNodeBlockSize": 8, "gateway": "192.168.0.1"}"#;
    let new = object("IPPool", "blue", moved, json!({}), status.clone());
    let v = run(PoolType::IpPool, &review("IPPool", "UPDATE", new, Some(old.clone())), Some(&[]));
    assert!(!v.allowed);
    assert!(
        v.message.starts_with(
            "ippool \"blue\": spec.perNodeBlockSize: this update would move the blocks of 2 node(s) \
        that hold allocations (node-a, node-b), while their pods keep the old addresses: drain those nodes"
        ),
        "{}",
        v.message
    );
    assert!(v.message.contains(ANNOTATION_ALLOW_REALLOCATION), "{}", v.message);
    // an exclusion over node-b's block moves node-b only
    let excl = r#"{"subnet": "192.168.0.0/16", "perNodeBlockSize": 4, "gateway": "192.168.0.1",
        "exclusions": [{"startIP": "192.168.0.5", "endIP": "192.168.0.8"}]}"#;
    let new = object("IPPool", "blue", excl, json!({}), status.clone());
    let v = run(PoolType::IpPool, &review("IPPool", "UPDATE", new, Some(old.clone())), Some(&[]));
    assert!(
        v.message.contains(
            "spec.exclusions: this update would move the blocks of 1 node(s) that hold allocations (node-b)"
        ),
        "{}",
        v.message
    );
    // the opt-out turns the refusal into a warning
    let new = object("IPPool", "blue", moved, json!({ANNOTATION_ALLOW_REALLOCATION: "true"}), status);
    let v = run(PoolType::IpPool, &review("IPPool", "UPDATE", new, Some(old)), Some(&[]));
    assert!(v.allowed);
    assert!(v.warnings[0].contains("node-a, node-b"), "{:?}", v.warnings);
}

#[test]
fn cidr_update_that_moves_prefixes_is_refused() {
    let status = json!({"allocations": [{"nodeName": "n1", "prefix": "10.0.0.0/24", "gateway": "10.0.0.1"}]});
    let old = object("CIDRPool", "red", CIDR_SPEC, json!({}), status.clone());
    let new = object(
        "CIDRPool",
        "red",
        r#"{"cidr": "10.0.0.0/16", "perNodeNetworkPrefix": 24, "gatewayIndex": 2}"#,
        json!({}),
        status,
    );
    let v = run(PoolType::CidrPool, &review("CIDRPool", "UPDATE", new, Some(old)), None);
    assert!(
        v.message.contains(
            "spec.gatewayIndex: this update would move the prefixes of 1 node(s) that hold allocations (n1)"
        ),
        "{}",
        v.message
    );
}

#[test]
fn same_kind_overlaps_are_refused_unless_annotated() {
    let others = [
        PoolRange {
            pool_type: PoolType::CidrPool,
            name: "red".into(),
            net: "192.168.4.0/22".parse().expect("net"),
        },
        PoolRange {
            pool_type: PoolType::IpPool,
            name: "blue".into(),
            net: "192.168.0.0/16".parse().expect("net"),
        },
        PoolRange {
            pool_type: PoolType::IpPool,
            name: "far".into(),
            net: "10.0.0.0/8".parse().expect("net"),
        },
    ];
    // the pool itself is among the others: no overlap with itself; the other kind only warns
    let v = run(PoolType::IpPool, &review("IPPool", "CREATE", ip(IP_SPEC), None), Some(&others));
    assert!(v.allowed, "{v:?}");
    assert_eq!(v.warnings.len(), 1, "{v:?}");
    assert!(
        v.warnings[0].contains(
            "spec.subnet: 192.168.0.0/16 overlaps CIDRPool \"red\" (192.168.4.0/22) in namespace \"ns\""
        ),
        "{v:?}"
    );
    // the same kind is refused
    let mut same = others.clone();
    same[0].pool_type = PoolType::IpPool;
    let v = run(PoolType::IpPool, &review("IPPool", "CREATE", ip(IP_SPEC), None), Some(&same));
    assert!(!v.allowed);
    assert!(
        v.message.contains(
            "spec.subnet: 192.168.0.0/16 overlaps IPPool \"red\" (192.168.4.0/22) in namespace \"ns\""
        ),
        "{}",
        v.message
    );
    assert!(!v.message.contains("\"blue\" (") && !v.message.contains("far"), "{}", v.message);
    assert!(v.message.contains(ANNOTATION_ALLOW_OVERLAP));
    let others = same;
    // unknown others: not checked
    assert!(run(PoolType::IpPool, &review("IPPool", "CREATE", ip(IP_SPEC), None), None).allowed);
    // annotated: allowed with a warning
    let a = object("IPPool", "blue", IP_SPEC, json!({ANNOTATION_ALLOW_OVERLAP: "true"}), Value::Null);
    let v = run(PoolType::IpPool, &review("IPPool", "CREATE", a, None), Some(&others));
    assert!(v.allowed && v.warnings.len() == 1, "{v:?}");
    // an UPDATE that keeps the range is not re-checked (the overlap was accepted before)
    let v = run(PoolType::IpPool, &review("IPPool", "UPDATE", ip(IP_SPEC), Some(ip(IP_SPEC))), Some(&others));
    assert!(v.allowed, "{v:?}");
}

#[test]
fn malformed_reviews() {
    let err = |b: &[u8]| parse_review(PoolType::IpPool, b).err().map(|e| e.to_string());
    assert!(err(b"{").is_some_and(|e| e.contains("bad JSON")));
    assert!(
        err(br#"{"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}"#)
            .is_some_and(|e| e.contains("v1beta1"))
    );
    assert!(
        err(br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#)
            .is_some_and(|e| e.contains("no request"))
    );
    // an object of the wrong shape: denied with 400, uid echoed
    let obj = json!({"metadata": {"name": "blue"}, "spec": {"subnet": 7}});
    let v = run(PoolType::IpPool, &review("IPPool", "CREATE", obj, None), None);
    assert_eq!((v.allowed, v.code, v.reason), (false, 400, "BadRequest"));
    assert!(v.message.starts_with("request.object is not a IPPool"), "{}", v.message);
    // a CIDRPool sent to the IPPool path
    let c = object("CIDRPool", "red", CIDR_SPEC, json!({}), Value::Null);
    let v = run(PoolType::IpPool, &review("CIDRPool", "CREATE", c, None), None);
    assert!(v.message.contains("this path validates IPPool objects"), "{}", v.message);
    // UPDATE without oldObject
    let v = run(PoolType::IpPool, &review("IPPool", "UPDATE", ip(IP_SPEC), None), None);
    assert_eq!(v.code, 400);
}

#[test]
fn other_operations_and_deletions_pass() {
    let bad = ip(r#"{"subnet": "x"}"#);
    assert!(run(PoolType::IpPool, &review("IPPool", "DELETE", bad.clone(), None), None).allowed);
    let mut deleting = bad.clone();
    deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    assert!(run(PoolType::IpPool, &review("IPPool", "UPDATE", deleting, Some(bad.clone())), None).allowed);
    // the controller's status write on an invalid pool, should the rules include ippools/status
    let mut status: Value =
        serde_json::from_slice(&review("IPPool", "UPDATE", bad.clone(), Some(bad))).expect("JSON");
    status["request"]["subResource"] = json!("status");
    let body = serde_json::to_vec(&status).expect("JSON");
    assert!(run(PoolType::IpPool, &body, None).allowed);
}

#[test]
fn unread_parts_of_a_review_are_skipped_and_the_opt_outs_still_found() {
    // many annotations, managedFields, unknown fields at every level: none of it is kept, the
    // two opt-out annotations are still seen among them
    let mut annotations = serde_json::Map::new();
    for i in 0..1000 {
        annotations.insert(format!("a{i}"), json!("true"));
    }
    annotations.insert(ANNOTATION_ALLOW_OVERLAP.into(), json!("true"));
    annotations.insert(ANNOTATION_ALLOW_REALLOCATION.into(), json!(["not", "a", "string"]));
    let mut obj = object("IPPool", "blue", IP_SPEC, Value::Object(annotations), Value::Null);
    obj["metadata"]["managedFields"] = json!([{"manager": "m", "fieldsV1": {"f:spec": {"f:subnet": {}}}}]);
    obj["metadata"]["labels"] = json!({"x": "y"});
    obj["spec"]["futureField"] = json!([[1], {"a": null}]);
    obj["unknown"] = json!({"deep": [[[[]]]]});
    let mut body: Value = serde_json::from_slice(&review("IPPool", "CREATE", obj, None)).expect("JSON");
    body["request"]["userInfo"] = json!({"username": "u", "groups": ["g"]});
    body["extra"] = json!(5);
    let req = parse_review(PoolType::IpPool, &serde_json::to_vec(&body).expect("JSON")).expect("a review");
    let Ok(AnyPool::Ip(p)) = &req.object else { panic!("an ippool: {:?}", req.object) };
    assert_eq!(p.metadata.name, "blue");
    assert_eq!(
        Value::Object(p.metadata.rest.clone()),
        json!({"namespace": "ns", "annotations": {ANNOTATION_ALLOW_OVERLAP: "true"}})
    );
    assert_eq!(p.spec.subnet, "192.168.0.0/16");
    // the overlap opt-out works, the reallocation one (not a string) does not count
    let others = [PoolRange {
        pool_type: PoolType::IpPool,
        name: "red".into(),
        net: "192.168.0.0/24".parse().expect("net"),
    }];
    let v = decide(&req, Some(&others));
    assert!(v.allowed && v.warnings.len() == 1, "{v:?}");
}

#[test]
fn deep_or_oversized_reviews_are_refused_without_decoding_them() {
    // 100,000 levels: HTTP 400 at once, naming the limit
    let deep = format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","x":{}"#,
        "[".repeat(100_000)
    );
    let e = parse_review(PoolType::IpPool, deep.as_bytes()).expect_err("too deep");
    assert!(e.to_string().contains("nested deeper than the limit of 64 levels"), "{e}");
    assert!(
        parse_review(PoolType::IpPool, b"{\"a\":\"\xff\"}").expect_err("utf-8").to_string().contains("UTF-8")
    );
    // a list over its cap in the object: denied with 400, uid echoed
    let mut obj = ip(IP_SPEC);
    obj["spec"]["exclusions"] = json!(vec![json!({}); crate::api::MAX_SPEC_LIST_ITEMS + 1]);
    let req = parse_review(PoolType::IpPool, &review("IPPool", "CREATE", obj, None)).expect("a review");
    assert_eq!(req.uid, "u-1");
    let v = decide(&req, None);
    assert_eq!((v.allowed, v.code), (false, 400));
    assert!(v.message.contains("more than 4096 entries in a list (the limit)"), "{}", v.message);
    // a bad oldObject is told apart from a good object
    let mut old = ip(IP_SPEC);
    old["status"] = json!({"allocations": "not a list"});
    let req = parse_review(PoolType::IpPool, &review("IPPool", "UPDATE", ip(IP_SPEC), Some(old)))
        .expect("a review");
    assert!(req.object.is_ok());
    assert!(
        req.old_object
            .as_ref()
            .is_some_and(|o| o.as_ref().is_err_and(|e| e.starts_with("request.oldObject is not a IPPool")))
    );
}
