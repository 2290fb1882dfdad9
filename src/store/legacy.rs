//! Import of the reference implementation's store file (`{"version":1,"checksum":..,"pools":{..}}`)
//! so that swapping implementations keeps every allocation.
//!
//! Owns: the mapping from the reference's shape to ours. Must not: write anything. The
//! reference's checksum covers Go's exact JSON bytes, which we do not reproduce; the import
//! checks structure instead, and the original stays on disk as `store.prev`.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::Deserialize;

use super::record::{Op, Reservation};
use super::state::StoreState;

#[derive(Deserialize)]
struct Root {
    version: u32,
    #[serde(default)]
    pools: HashMap<String, Pool>,
}

#[derive(Deserialize)]
struct Pool {
    #[serde(default)]
    entries: HashMap<String, Entry>,
    #[serde(default)]
    last_reserved_ip: String,
}

#[derive(Deserialize)]
struct Entry {
    container_id: String,
    interface_name: String,
    ip_address: String,
    #[serde(default)]
    metadata: Metadata,
}

#[derive(Deserialize, Default)]
struct Metadata {
    #[serde(default)]
    pod_uuid: String,
    #[serde(default)]
    pod_name: String,
    #[serde(default)]
    pod_namespace: String,
    #[serde(default)]
    device_id: String,
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// Parses a reference store file into our state, or says why it cannot.
pub fn import(bytes: &[u8]) -> Result<StoreState, String> {
    let root: Root = serde_json::from_slice(bytes).map_err(|e| format!("not a store file: {e}"))?;
    if root.version != 1 {
        return Err(format!("reference store version {} is not supported", root.version));
    }
    let mut state = StoreState::default();
    let mut pools: Vec<_> = root.pools.into_iter().collect();
    pools.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, pool) in pools {
        let mut entries: Vec<_> = pool.entries.into_values().collect();
        entries
            .sort_by(|a, b| (&a.container_id, &a.interface_name).cmp(&(&b.container_id, &b.interface_name)));
        for e in entries {
            let ip: IpAddr = e.ip_address.parse().map_err(|_| {
                format!("pool {key:?}: entry {}: bad ip_address {:?}", e.container_id, e.ip_address)
            })?;
            let r = Reservation {
                pool: key.clone(),
                container_id: e.container_id,
                ifname: e.interface_name,
                ip,
                network: String::new(),
                pod_name: non_empty(e.metadata.pod_name),
                pod_namespace: non_empty(e.metadata.pod_namespace),
                pod_uid: non_empty(e.metadata.pod_uuid),
                device_id: non_empty(e.metadata.device_id),
                created: 0,
                is_static: false,
            };
            state.apply(&Op::Reserve(r)).map_err(|e| format!("pool {key:?}: {e}"))?;
        }
        if let Ok(ip) = pool.last_reserved_ip.parse::<IpAddr>() {
            state.apply(&Op::Cursor { pool: key.clone(), ip }).map_err(|e| e.to_string())?;
        }
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_reference_store() {
        let json = br#"{"version":1,"checksum":123,"pools":{
            "pool1":{"name":"pool1","entries":{"c1_eth0":{"container_id":"c1","interface_name":"eth0",
              "ip_address":"192.168.0.2","metadata":{"create_time":"2024-01-01T00:00:00Z","pod_uuid":"u1",
              "pod_name":"p1","pod_namespace":"ns","device_id":"","pool_config_snapshot":"{}"}}},
              "last_pool_config":"{}","last_reserved_ip":"192.168.0.2"},
            "cidrpool/pool2":{"name":"cidrpool/pool2","entries":{},"last_reserved_ip":""}}}"#;
        let s = import(json).expect("import");
        assert_eq!(s.len(), 1);
        let r = s.reservations().next().expect("one");
        assert_eq!(
            (r.pod_name.as_deref(), r.pod_uid.as_deref(), r.device_id.as_deref()),
            (Some("p1"), Some("u1"), None)
        );
        assert_eq!(s.cursor("pool1"), Some("192.168.0.2".parse().expect("ip")));
    }

    #[test]
    fn rejects_other_shapes() {
        assert!(import(b"{\"version\":2}").is_err());
        assert!(import(b"{\"pools\":").is_err());
    }
}
