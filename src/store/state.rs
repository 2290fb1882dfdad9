//! The store's in-memory index: reservations by attachment and by address, and each pool's
//! round-robin cursor. Rebuilt by replaying the journal.
//!
//! Owns: applying operations consistently (one address per pool held once, one reservation per
//! attachment per pool) and undoing them. Must not: do I/O.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use super::record::{AttachmentKey, Op, Reservation};

/// Why an operation cannot apply: in a request it is a caller bug; during replay, corruption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    AttachmentExists { pool: String, container_id: String, ifname: String },
    AddressHeld { pool: String, ip: IpAddr, by: String },
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::AttachmentExists { pool, container_id, ifname } => {
                write!(f, "pool \"{pool}\": attachment {container_id}/{ifname} already holds a reservation")
            }
            StateError::AddressHeld { pool, ip, by } => {
                write!(f, "pool \"{pool}\": address {ip} is already held by {by}")
            }
        }
    }
}

/// How to take one applied operation back.
#[derive(Debug)]
pub enum Undo {
    Nothing,
    Release(AttachmentKey),
    Restore(Reservation),
    Cursor(String, Option<IpAddr>),
    Cooldown((String, IpAddr), Option<u64>),
}

#[derive(Debug, Default, Clone)]
pub struct StoreState {
    by_attachment: HashMap<AttachmentKey, Reservation>,
    by_ip: HashMap<(String, IpAddr), AttachmentKey>,
    cursors: HashMap<String, IpAddr>,
    /// Released addresses that round-robin allocation skips until the time (ms since epoch).
    cooldowns: HashMap<(String, IpAddr), u64>,
}

impl StoreState {
    pub fn get(&self, key: &AttachmentKey) -> Option<&Reservation> {
        self.by_attachment.get(key)
    }

    pub fn holder(&self, pool: &str, ip: IpAddr) -> Option<&AttachmentKey> {
        self.by_ip.get(&(pool.to_string(), ip))
    }

    pub fn is_held(&self, pool: &str, ip: IpAddr) -> bool {
        self.by_ip.contains_key(&(pool.to_string(), ip))
    }

    pub fn cursor(&self, pool: &str) -> Option<IpAddr> {
        self.cursors.get(pool).copied()
    }

    pub fn cursors(&self) -> impl Iterator<Item = (&String, &IpAddr)> {
        self.cursors.iter()
    }

    /// True when `ip` in `pool` was released less than its cooldown ago (`now_ms` is the caller's
    /// clock: this module reads none).
    pub fn is_cooling(&self, pool: &str, ip: IpAddr, now_ms: u64) -> bool {
        self.cooldowns.get(&(pool.to_string(), ip)).is_some_and(|until| *until > now_ms)
    }

    /// Every recorded cooldown as `(pool, ip, until_ms)`, expired ones included.
    pub fn cooldowns(&self) -> impl Iterator<Item = (&str, IpAddr, u64)> {
        self.cooldowns.iter().map(|((p, ip), until)| (p.as_str(), *ip, *until))
    }

    /// Forgets cooldowns that ended at or before `now_ms` (compaction calls this).
    pub fn drop_expired_cooldowns(&mut self, now_ms: u64) {
        self.cooldowns.retain(|_, until| *until > now_ms);
    }

    pub fn reservations(&self) -> impl Iterator<Item = &Reservation> {
        self.by_attachment.values()
    }

    pub fn len(&self) -> usize {
        self.by_attachment.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_attachment.is_empty()
    }

    /// Number of reservations in `pool`.
    pub fn count_in_pool(&self, pool: &str) -> usize {
        self.by_attachment.keys().filter(|k| k.pool == pool).count()
    }

    /// Applies `op` and returns what undoes it.
    pub fn apply(&mut self, op: &Op) -> Result<Undo, StateError> {
        match op {
            Op::Reserve(r) => {
                let key = r.key();
                if self.by_attachment.contains_key(&key) {
                    return Err(StateError::AttachmentExists {
                        pool: r.pool.clone(),
                        container_id: r.container_id.clone(),
                        ifname: r.ifname.clone(),
                    });
                }
                if let Some(by) = self.by_ip.get(&(r.pool.clone(), r.ip)) {
                    return Err(StateError::AddressHeld {
                        pool: r.pool.clone(),
                        ip: r.ip,
                        by: format!("{}/{}", by.container_id, by.ifname),
                    });
                }
                self.by_ip.insert((r.pool.clone(), r.ip), key.clone());
                self.by_attachment.insert(key.clone(), r.clone());
                Ok(Undo::Release(key))
            }
            Op::Release { pool, container_id, ifname } => {
                let key = AttachmentKey {
                    pool: pool.clone(),
                    container_id: container_id.clone(),
                    ifname: ifname.clone(),
                };
                match self.by_attachment.remove(&key) {
                    Some(r) => {
                        self.by_ip.remove(&(r.pool.clone(), r.ip));
                        Ok(Undo::Restore(r))
                    }
                    None => Ok(Undo::Nothing),
                }
            }
            Op::Cursor { pool, ip } => {
                let old = self.cursors.insert(pool.clone(), *ip);
                Ok(Undo::Cursor(pool.clone(), old))
            }
            Op::Cooldown { pool, ip, until_ms } => {
                let key = (pool.clone(), *ip);
                let old = self.cooldowns.insert(key.clone(), *until_ms);
                Ok(Undo::Cooldown(key, old))
            }
        }
    }

    /// Applies all of `ops` or none of them; returns the undo list (apply it in order to revert).
    pub fn apply_all(&mut self, ops: &[Op]) -> Result<Vec<Undo>, StateError> {
        let mut undo = Vec::with_capacity(ops.len());
        for op in ops {
            match self.apply(op) {
                Ok(u) => undo.push(u),
                Err(e) => {
                    self.revert(undo);
                    return Err(e);
                }
            }
        }
        undo.reverse();
        Ok(undo)
    }

    /// Reverts what `apply_all` returned.
    pub fn revert(&mut self, undo: Vec<Undo>) {
        for u in undo {
            match u {
                Undo::Nothing => {}
                Undo::Release(key) => {
                    if let Some(r) = self.by_attachment.remove(&key) {
                        self.by_ip.remove(&(r.pool, r.ip));
                    }
                }
                Undo::Restore(r) => {
                    self.by_ip.insert((r.pool.clone(), r.ip), r.key());
                    self.by_attachment.insert(r.key(), r);
                }
                Undo::Cursor(pool, old) => match old {
                    Some(ip) => {
                        self.cursors.insert(pool, ip);
                    }
                    None => {
                        self.cursors.remove(&pool);
                    }
                },
                Undo::Cooldown(key, old) => match old {
                    Some(until) => {
                        self.cooldowns.insert(key, until);
                    }
                    None => {
                        self.cooldowns.remove(&key);
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(pool: &str, cid: &str, ip: &str) -> Reservation {
        Reservation {
            pool: pool.into(),
            container_id: cid.into(),
            ifname: "eth0".into(),
            ip: ip.parse().expect("ip"),
            network: "net".into(),
            pod_name: None,
            pod_namespace: None,
            pod_uid: None,
            device_id: None,
            created: 0,
            is_static: false,
        }
    }

    #[test]
    fn reserve_release_and_conflicts() {
        let mut s = StoreState::default();
        s.apply_all(&[Op::Reserve(res("p", "a", "10.0.0.2"))]).expect("reserve");
        assert!(s.is_held("p", "10.0.0.2".parse().expect("ip")));
        assert!(matches!(
            s.apply_all(&[Op::Reserve(res("p", "b", "10.0.0.2"))]),
            Err(StateError::AddressHeld { .. })
        ));
        assert!(matches!(
            s.apply_all(&[Op::Reserve(res("p", "a", "10.0.0.3"))]),
            Err(StateError::AttachmentExists { .. })
        ));
        // The same address in another pool is fine.
        s.apply_all(&[Op::Reserve(res("q", "b", "10.0.0.2"))]).expect("other pool");
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn all_or_nothing_and_undo() {
        let mut s = StoreState::default();
        s.apply_all(&[Op::Reserve(res("p", "a", "10.0.0.2"))]).expect("reserve");
        let err = s.apply_all(&[
            Op::Reserve(res("q", "x", "10.0.0.9")),
            Op::Cursor { pool: "q".into(), ip: "10.0.0.9".parse().expect("ip") },
            Op::Reserve(res("p", "y", "10.0.0.2")),
        ]);
        assert!(err.is_err());
        assert_eq!(s.len(), 1);
        assert_eq!(s.cursor("q"), None);
        let undo = s
            .apply_all(&[
                Op::Release { pool: "p".into(), container_id: "a".into(), ifname: "eth0".into() },
                Op::Cursor { pool: "p".into(), ip: "10.0.0.5".parse().expect("ip") },
            ])
            .expect("release");
        assert!(s.is_empty());
        s.revert(undo);
        assert_eq!(s.len(), 1);
        assert_eq!(s.cursor("p"), None);
    }

    #[test]
    fn cooldown_applies_expires_and_undoes() {
        let mut s = StoreState::default();
        let ip: IpAddr = "10.0.0.2".parse().expect("ip");
        let undo = s.apply_all(&[Op::Cooldown { pool: "p".into(), ip, until_ms: 1000 }]).expect("cooldown");
        assert!(s.is_cooling("p", ip, 999));
        assert!(!s.is_cooling("p", ip, 1000), "ends at until_ms");
        assert!(!s.is_cooling("q", ip, 0), "per pool");
        s.revert(undo);
        assert!(!s.is_cooling("p", ip, 0));
        s.apply_all(&[Op::Cooldown { pool: "p".into(), ip, until_ms: 1000 }]).expect("cooldown");
        s.drop_expired_cooldowns(1000);
        assert_eq!(s.cooldowns().count(), 0);
    }
}
