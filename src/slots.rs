//! Fair connection slots, one table per server (health/metrics, webhook, unix socket): a peer
//! that opens many connections cannot keep legitimate probes, reviews or ADDs out.
//!
//! Every live connection is in the table with its phase: *starting* (admitted, its thread not
//! yet reading), *reading* its request since some instant, or *serving* a complete one. A legitimate client (kubelet, Prometheus, the API
//! server, the CNI plugin) sends its request as soon as it connects and is serving within
//! milliseconds; a slow or idle peer stays reading until its deadline. So when the table is
//! full a newcomer is not turned away: the oldest connection still reading is closed (both
//! directions shut down on a cloned handle, its thread then ends) and the newcomer takes its
//! place. Only when every slot serves a complete request is the newcomer refused, at once (the
//! server answers 503 or `not_ready` and closes; nothing queues).
//!
//! Where peers can be told apart (TCP: the source address) one peer holds at most
//! `per_peer` connections, and a full table gives up a connection of the peer holding the
//! most first, so one hostile address cannot push out another peer's connection. On the unix
//! socket every peer looks the same (the peer's credentials need `SO_PEERCRED`, not in stable
//! std): eviction of the oldest reader alone.
//!
//! Owns: the decision ([`admit`], pure) and the table ([`Slots`], [`Slot`]). Must not: read or
//! write sockets beyond shutting a victim down, or know any protocol.

use std::collections::HashMap;
use std::net::{IpAddr, Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Who is on the other end: the source address for TCP (IPv4-mapped IPv6 folded into IPv4),
/// `None` on the unix socket.
pub type Peer = Option<IpAddr>;

/// The size of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections at once.
    pub max: usize,
    /// Connections at once from one peer (`max` where peers cannot be told apart).
    pub per_peer: usize,
}

/// Where a connection is in its exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Admitted; its thread has not started reading yet. Not closed to make room: a request
    /// that was sent with the connect has not had its chance to be read (on a busy machine a
    /// new thread may wait for a core longer than a burst of connections takes to arrive).
    Starting,
    /// Waiting for (the rest of) its request since the instant.
    Reading(Instant),
    /// Its request is complete; it is being handled or answered.
    Serving,
}

/// What to do with a newcomer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admit,
    /// Close the live connection with this id, then admit.
    Evict(u64),
    /// Every connection the newcomer could displace is serving: answer busy and close.
    Refuse,
}

/// Decides for a newcomer from `peer`, given the live connections `(id, peer, phase)`.
///
/// A peer at its cap can only displace its own oldest reader. Below the cap, a free slot is
/// taken; a full table gives up the oldest reader of the peer holding the most connections
/// (among peers with a reader; ties go to the oldest reader).
pub fn admit(live: &[(u64, Peer, Phase)], peer: Peer, limits: Limits) -> Admission {
    let oldest = |of: &mut dyn Iterator<Item = &(u64, Peer, Phase)>| {
        of.filter_map(|(id, _, ph)| match ph {
            Phase::Reading(t) => Some((*t, *id)),
            Phase::Starting | Phase::Serving => None,
        })
        .min()
        .map_or(Admission::Refuse, |(_, id)| Admission::Evict(id))
    };
    let mine = live.iter().filter(|(_, p, _)| *p == peer).count();
    if mine >= limits.per_peer {
        return oldest(&mut live.iter().filter(|(_, p, _)| *p == peer));
    }
    if live.len() < limits.max {
        return Admission::Admit;
    }
    let mut held: HashMap<Peer, usize> = HashMap::new();
    for (_, p, _) in live {
        *held.entry(*p).or_default() += 1;
    }
    live.iter()
        .filter_map(|(id, p, ph)| match ph {
            // most connections first, then the oldest reader (earliest instant)
            Phase::Reading(t) => Some((held[p], std::cmp::Reverse(*t), *id)),
            Phase::Starting | Phase::Serving => None,
        })
        .max()
        .map_or(Admission::Refuse, |(_, _, id)| Admission::Evict(id))
}

/// A connection the table can close from another thread.
pub trait Shut: Send {
    fn shut(&self);
}

impl Shut for TcpStream {
    fn shut(&self) {
        let _ = self.shutdown(Shutdown::Both);
    }
}

impl Shut for UnixStream {
    fn shut(&self) {
        let _ = self.shutdown(Shutdown::Both);
    }
}

/// How often, at most, evictions and refusals are logged: a flood of connections must not also
/// flood the log.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// The live connections of one server.
pub struct Slots {
    name: &'static str,
    limits: Limits,
    table: Mutex<Table>,
    emptied: Condvar,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    live: Vec<Live>,
    /// Evictions and refusals since the last log line, the last peer, when it was written.
    evicted: u64,
    refused: u64,
    last_peer: Peer,
    logged: Option<Instant>,
}

struct Live {
    id: u64,
    peer: Peer,
    phase: Phase,
    handle: Box<dyn Shut>,
}

impl std::fmt::Debug for Slots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slots")
            .field("name", &self.name)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Slots {
    /// An empty table; `name` is the server in log lines.
    pub fn new(name: &'static str, limits: Limits) -> Arc<Slots> {
        Arc::new(Slots { name, limits, table: Mutex::new(Table::default()), emptied: Condvar::new() })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a connection from `peer` ([`Phase::Starting`]: its thread calls
    /// [`Slot::reading`] first), closing another one if needed ([`admit`]); `None` when it is
    /// refused. `handle` shuts the connection down if it is
    /// evicted later; the slot is freed when the returned [`Slot`] is dropped.
    pub fn enter(self: &Arc<Slots>, peer: Peer, handle: Box<dyn Shut>) -> Option<Slot> {
        let now = Instant::now();
        let mut t = self.lock();
        let view: Vec<(u64, Peer, Phase)> = t.live.iter().map(|l| (l.id, l.peer, l.phase)).collect();
        let decision = admit(&view, peer, self.limits);
        match decision {
            Admission::Refuse => t.refused += 1,
            Admission::Evict(id) => {
                if let Some(i) = t.live.iter().position(|l| l.id == id) {
                    t.live.swap_remove(i).handle.shut();
                }
                t.evicted += 1;
            }
            Admission::Admit => {}
        }
        if decision != Admission::Admit {
            t.last_peer = peer;
            if t.logged.is_none_or(|at| now.duration_since(at) >= LOG_EVERY) {
                let from = t.last_peer.map(|p| format!(", the last from {p}")).unwrap_or_default();
                let cap = if self.limits.per_peer < self.limits.max {
                    format!(", {} per peer", self.limits.per_peer)
                } else {
                    String::new()
                };
                log::warn!(
                    "{}: connection limit reached ({} at once{cap}); since the last report, closed {} connection(s) \
                     still sending their request and turned away {} while every slot was serving one{from}",
                    self.name,
                    self.limits.max,
                    t.evicted,
                    t.refused
                );
                (t.evicted, t.refused, t.logged) = (0, 0, Some(now));
            }
        }
        if decision == Admission::Refuse {
            return None;
        }
        let id = t.next_id;
        t.next_id += 1;
        t.live.push(Live { id, peer, phase: Phase::Starting, handle });
        Some(Slot { slots: Arc::clone(self), id })
    }

    /// Closes every connection still reading its request (a stop: they have nothing to
    /// finish); the serving ones go on.
    pub fn close_readers(&self) {
        let mut t = self.lock();
        t.live.retain(|l| {
            let reading = matches!(l.phase, Phase::Starting | Phase::Reading(_));
            if reading {
                l.handle.shut();
            }
            !reading
        });
        if t.live.is_empty() {
            self.emptied.notify_all();
        }
    }

    /// Waits until no connection is live, or `grace` passes; returns how many are left.
    pub fn wait_empty(&self, grace: Duration) -> usize {
        let until = Instant::now() + grace;
        let mut t = self.lock();
        while !t.live.is_empty() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            t = self.emptied.wait_timeout(t, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        t.live.len()
    }

    /// Connections live now.
    pub fn len(&self) -> usize {
        self.lock().live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets the phase of `id`; false when it is no longer in the table (evicted).
    fn set(&self, id: u64, phase: Phase) -> bool {
        let mut t = self.lock();
        match t.live.iter_mut().find(|l| l.id == id) {
            Some(l) => {
                l.phase = phase;
                true
            }
            None => false,
        }
    }
}

/// One admitted connection; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    id: u64,
}

impl Slot {
    /// The request is complete: the connection can no longer be evicted. False when it was
    /// evicted meanwhile: its request must not be acted on (the peer sees a closed connection).
    #[must_use]
    pub fn serving(&self) -> bool {
        self.slots.set(self.id, Phase::Serving)
    }

    /// Reading a request: called by the connection's thread before its first read, and before
    /// each further request of a connection that carries several. False when evicted.
    #[must_use]
    pub fn reading(&self) -> bool {
        self.slots.set(self.id, Phase::Reading(Instant::now()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.slots.lock();
        if let Some(i) = t.live.iter().position(|l| l.id == self.id) {
            t.live.swap_remove(i);
        }
        if t.live.is_empty() {
            self.slots.emptied.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const A: Peer = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)));
    const B: Peer = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)));
    const C: Peer = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 3)));

    fn at(base: Instant, ms: u64) -> Phase {
        Phase::Reading(base + Duration::from_millis(ms))
    }

    #[test]
    fn free_slots_are_taken_up_to_the_limits() {
        let t0 = Instant::now();
        let lim = Limits { max: 3, per_peer: 2 };
        assert_eq!(admit(&[], A, lim), Admission::Admit);
        // max - 1 live, A one below its cap: admitted
        let live = [(1, A, at(t0, 0)), (2, B, Phase::Serving)];
        assert_eq!(admit(&live, A, lim), Admission::Admit);
        assert_eq!(admit(&live, C, lim), Admission::Admit);
        // max live: no free slot any more, the only reader goes
        let full = [(1, A, at(t0, 0)), (2, B, Phase::Serving), (3, C, Phase::Serving)];
        assert_eq!(admit(&full, C, lim), Admission::Evict(1));
        // A at its cap exactly, slots free: its own reader goes, not a free slot
        let capped = [(1, A, at(t0, 0)), (2, A, Phase::Serving)];
        assert_eq!(admit(&capped, A, lim), Admission::Evict(1));
        // the unix socket's shape: one peer, cap = max
        let lim = Limits { max: 2, per_peer: 2 };
        assert_eq!(admit(&[(1, None, Phase::Serving)], None, lim), Admission::Admit);
        let full = [(1, None, Phase::Serving), (2, None, at(t0, 5))];
        assert_eq!(admit(&full, None, lim), Admission::Evict(2));
    }

    #[test]
    fn a_full_table_gives_up_its_oldest_reader() {
        let t0 = Instant::now();
        let lim = Limits { max: 4, per_peer: 4 };
        let live =
            [(1, None, at(t0, 30)), (2, None, Phase::Serving), (3, None, at(t0, 10)), (4, None, at(t0, 20))];
        assert_eq!(admit(&live, None, lim), Admission::Evict(3));
    }

    #[test]
    fn a_connection_not_yet_read_is_not_closed() {
        let t0 = Instant::now();
        let lim = Limits { max: 2, per_peer: 2 };
        let live = [(1, None, Phase::Starting), (2, None, at(t0, 5))];
        assert_eq!(admit(&live, None, lim), Admission::Evict(2));
        let live = [(1, None, Phase::Starting), (2, None, Phase::Starting)];
        assert_eq!(admit(&live, None, lim), Admission::Refuse);
        let lim = Limits { max: 8, per_peer: 1 };
        assert_eq!(admit(&[(1, A, Phase::Starting)], A, lim), Admission::Refuse);
    }

    #[test]
    fn a_table_serving_only_complete_requests_refuses() {
        let lim = Limits { max: 2, per_peer: 2 };
        let live = [(1, None, Phase::Serving), (2, None, Phase::Serving)];
        assert_eq!(admit(&live, None, lim), Admission::Refuse);
        let lim = Limits { max: 0, per_peer: 0 };
        assert_eq!(admit(&[], None, lim), Admission::Refuse);
    }

    #[test]
    fn a_peer_at_its_cap_displaces_only_its_own_readers() {
        let t0 = Instant::now();
        let lim = Limits { max: 8, per_peer: 2 };
        // B's reader is the oldest, but A is at its cap: A gives up its own
        let live = [(1, B, at(t0, 0)), (2, A, at(t0, 50)), (3, A, at(t0, 20))];
        assert_eq!(admit(&live, A, lim), Admission::Evict(3));
        // A at its cap with both serving: refused though slots are free
        let live = [(1, B, at(t0, 0)), (2, A, Phase::Serving), (3, A, Phase::Serving)];
        assert_eq!(admit(&live, A, lim), Admission::Refuse);
        // B, below its cap, takes a free slot
        assert_eq!(admit(&live, B, lim), Admission::Admit);
    }

    #[test]
    fn a_full_table_takes_from_the_peer_holding_the_most() {
        let t0 = Instant::now();
        let lim = Limits { max: 5, per_peer: 3 };
        // B's reader is older, but A holds 3: A's oldest reader goes
        let live = [
            (1, B, at(t0, 0)),
            (2, A, at(t0, 40)),
            (3, A, at(t0, 30)),
            (4, A, Phase::Serving),
            (5, C, at(t0, 5)),
        ];
        assert_eq!(admit(&live, C, lim), Admission::Evict(3));
        assert_eq!(admit(&live, B, lim), Admission::Evict(3));
        // the biggest peer has no reader: the next biggest with one gives up its oldest
        let live = [
            (1, B, at(t0, 9)),
            (2, A, Phase::Serving),
            (3, A, Phase::Serving),
            (4, B, at(t0, 3)),
            (5, C, at(t0, 1)),
        ];
        assert_eq!(admit(&live, C, lim), Admission::Evict(4));
        // equal holdings: the oldest reader overall
        let live = [
            (1, B, at(t0, 9)),
            (2, A, at(t0, 7)),
            (3, A, Phase::Serving),
            (4, B, Phase::Serving),
            (5, C, Phase::Serving),
        ];
        assert_eq!(admit(&live, C, lim), Admission::Evict(2));
    }

    struct Counted(Arc<AtomicUsize>);
    impl Shut for Counted {
        fn shut(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_table_evicts_refuses_and_frees_slots() {
        let shut = Arc::new(AtomicUsize::new(0));
        let h = || Box::new(Counted(shut.clone())) as Box<dyn Shut>;
        let slots = Slots::new("test", Limits { max: 2, per_peer: 2 });
        let first = slots.enter(None, h()).expect("free slot");
        let second = slots.enter(None, h()).expect("free slot");
        assert!(slots.enter(None, h()).is_none(), "neither has been read yet");
        assert!(first.reading());
        assert!(second.serving());
        // full: the reader (first) is shut and its slot taken
        let third = slots.enter(None, h()).expect("evicts the reader");
        assert_eq!(shut.load(Ordering::SeqCst), 1);
        assert!(!first.serving(), "an evicted connection learns it when its request is complete");
        assert!(third.serving());
        // both serving: refused
        assert!(slots.enter(None, h()).is_none());
        drop(first);
        assert_eq!(slots.len(), 2, "dropping an evicted slot frees nothing twice");
        drop(second);
        assert_eq!(slots.len(), 1);
        assert!(third.reading());
        slots.close_readers();
        assert_eq!(shut.load(Ordering::SeqCst), 2);
        assert_eq!(slots.wait_empty(Duration::from_millis(10)), 0);
        drop(third);
    }

    #[test]
    fn wait_empty_waits_for_serving_connections_up_to_the_grace() {
        let slots = Slots::new("test", Limits { max: 2, per_peer: 2 });
        let s = slots.enter(None, Box::new(Counted(Arc::default()))).expect("slot");
        assert!(s.serving());
        assert_eq!(slots.wait_empty(Duration::from_millis(20)), 1);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            drop(s);
        });
        assert_eq!(slots.wait_empty(Duration::from_secs(10)), 0);
        t.join().expect("join");
    }
}
