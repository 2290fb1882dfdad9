//! List-then-watch with resume: [`reflect`] keeps a caller's view of a collection current.
//!
//! Owns: the list/watch/relist state machine, resourceVersion tracking (events and
//! bookmarks), backoff between failures, and its logging. Must not: cache objects or decide
//! anything about them; each change goes to the caller's `on_change` in order.
//!
//! ```text
//!   list ──Reset(items)──> watch(rv) ──events──> Applied/Deleted (rv advances)
//!    ^                      │  clean EOF: watch again from rv
//!    └──── 410 Gone ────────┤  other error: backoff, watch again from rv (410 then: relist)
//! ```
//! Never panics; returns only when `stop` is set.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::backoff::Backoff;
use super::client::Client;
use super::error::KubeError;
use super::resource::{ListOptions, Resource, WatchEvent};

/// A change to the caller's view.
#[derive(Debug, Clone, PartialEq)]
pub enum Change<T> {
    /// The complete current set (after a list or relist): replace everything.
    Reset(Vec<T>),
    /// Added or modified.
    Applied(T),
    Deleted(T),
}

/// How often `stop` is checked while backing off.
const STOP_POLL: Duration = Duration::from_millis(100);
/// Retry warnings of one reflector at most this often; the rest go to debug.
const WARN_EVERY: Duration = Duration::from_secs(30);
/// A watch that ends cleanly faster than this without an event counts as a failure, so that a
/// server that closes watches at once does not turn the reflector into a busy loop.
const MIN_HEALTHY_WATCH: Duration = Duration::from_secs(1);

/// Lists, then watches from the list's resourceVersion, forever: see the module docs. Returns
/// when `stop` is set (checked between events and during backoff; a blocked read ends at the
/// server's watch timeout or at `Client::shutdown`).
pub fn reflect<T: DeserializeOwned>(
    client: &Client,
    r: &Resource,
    ns: Option<&str>,
    opts: &ListOptions,
    stop: &AtomicBool,
    on_change: &mut dyn FnMut(Change<T>),
) {
    reflect_from(client, r, ns, opts, "", stop, on_change)
}

/// As [`reflect`], but first watches from `resource_version` (a view the caller already has at
/// that version) instead of listing; lists (`Reset`) only if that version is Gone. An empty
/// `resource_version` lists first.
pub fn reflect_from<T: DeserializeOwned>(
    client: &Client,
    r: &Resource,
    ns: Option<&str>,
    opts: &ListOptions,
    resource_version: &str,
    stop: &AtomicBool,
    on_change: &mut dyn FnMut(Change<T>),
) {
    let mut st = State {
        what: format!(
            "{}{}",
            r.collection_path(ns),
            opts.label_selector.as_deref().map(|s| format!("?labelSelector={s}")).unwrap_or_default()
        ),
        backoff: Backoff::new(seed()),
        last_warn: None,
        failing: false,
        lists: 0,
    };
    let mut rv: Option<String> = Some(resource_version.to_string()).filter(|s| !s.is_empty());
    while !stop.load(Ordering::Relaxed) {
        let Some(from) = rv.clone() else {
            match client.list::<Value>(r, ns, opts) {
                Ok(list) => {
                    let items =
                        list.items.into_iter().filter_map(|v| convert(&st.what, v)).collect::<Vec<T>>();
                    if st.lists == 0 {
                        log::info!("reflector {}: synced {} items; watching", st.what, items.len());
                    } else {
                        log::debug!(
                            "reflector {}: relisted {} items at resourceVersion {}",
                            st.what,
                            items.len(),
                            list.resource_version
                        );
                    }
                    st.lists += 1;
                    on_change(Change::Reset(items));
                    st.recovered("listed");
                    rv = Some(list.resource_version);
                }
                Err(e) => st.fail(stop, "list", &e),
            }
            continue;
        };
        let started = Instant::now();
        let stream = match client.watch::<Value>(r, ns, opts, &from) {
            Ok(s) => s,
            Err(e) if e.is_gone() => {
                log::info!("reflector {}: resourceVersion {from} is gone; relisting", st.what);
                rv = None;
                continue;
            }
            Err(e) => {
                st.fail(stop, "watch", &e);
                continue;
            }
        };
        let mut events = 0usize;
        let mut failed = None;
        for ev in stream {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            match ev {
                Ok(WatchEvent::Bookmark { resource_version }) => {
                    if !resource_version.is_empty() {
                        rv = Some(resource_version);
                    }
                }
                Ok(WatchEvent::Added(v) | WatchEvent::Modified(v)) => {
                    events += 1;
                    advance(&mut rv, &v);
                    if let Some(t) = convert(&st.what, v) {
                        on_change(Change::Applied(t));
                    }
                }
                Ok(WatchEvent::Deleted(v)) => {
                    events += 1;
                    advance(&mut rv, &v);
                    if let Some(t) = convert(&st.what, v) {
                        on_change(Change::Deleted(t));
                    }
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        match failed {
            Some(e) if e.is_gone() => {
                log::info!("reflector {}: watch expired ({e}); relisting", st.what);
                rv = None;
            }
            Some(e) => st.fail(stop, "watch", &e),
            None if events == 0 && started.elapsed() < MIN_HEALTHY_WATCH => {
                let e = KubeError::Transport {
                    verb: "watch",
                    path: r.collection_path(ns),
                    detail: "the server ended the watch at once".into(),
                };
                st.fail(stop, "watch", &e);
            }
            None => {
                st.recovered("watching");
                log::debug!("reflector {}: watch ended after {events} events; resuming", st.what);
            }
        }
    }
}

struct State {
    what: String,
    backoff: Backoff,
    last_warn: Option<Instant>,
    failing: bool,
    /// Successful lists so far: the first is logged at info, relists at debug.
    lists: u32,
}

impl State {
    fn recovered(&mut self, how: &str) {
        if self.failing {
            log::info!(
                "reflector {}: {how} again after {} failed attempts",
                self.what,
                self.backoff.attempts()
            );
            self.failing = false;
        }
        self.backoff.reset();
    }

    /// Logs (rate-limited) and sleeps the next backoff delay in slices, watching `stop`.
    fn fail(&mut self, stop: &AtomicBool, op: &str, e: &KubeError) {
        let delay = self.backoff.next_delay();
        let warn = self.last_warn.is_none_or(|t| t.elapsed() >= WARN_EVERY);
        if warn {
            self.last_warn = Some(Instant::now());
            log::warn!("reflector {}: {op} failed: {e}; retrying in {delay:?}", self.what);
        } else {
            log::debug!("reflector {}: {op} failed: {e}; retrying in {delay:?}", self.what);
        }
        self.failing = true;
        let end = Instant::now() + delay;
        while !stop.load(Ordering::Relaxed) {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(STOP_POLL)); // backoff pause, sliced to notice `stop`
        }
    }
}

fn advance(rv: &mut Option<String>, obj: &Value) {
    if let Some(v) =
        obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).filter(|v| !v.is_empty())
    {
        *rv = Some(v.to_string());
    }
}

/// Converts one object; an object that does not decode is skipped with a warning (one bad
/// object must not stop the view of all others).
fn convert<T: DeserializeOwned>(what: &str, v: Value) -> Option<T> {
    let name = v.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("?").to_string();
    match serde_json::from_value(v) {
        Ok(t) => Some(t),
        Err(e) => {
            log::warn!("reflector {what}: skipping object {name:?} that does not decode: {e}");
            None
        }
    }
}

fn seed() -> u64 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    nanos ^ u64::from(std::process::id()).rotate_left(32)
}
