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

use super::backoff::Backoff;
use super::client::Client;
use super::decode::Decoded;
use super::error::KubeError;
use super::resource::{ListOptions, ObjectList, Resource, WatchEvent};
use super::watch::DecodedWatch;

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
/// server's watch timeout or at `Client::shutdown`: at process exit set `stop`, then call
/// `shutdown`).
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
    let selectors: Vec<String> =
        [("labelSelector", &opts.label_selector), ("fieldSelector", &opts.field_selector)]
            .into_iter()
            .filter_map(|(k, v)| v.as_deref().filter(|s| !s.is_empty()).map(|s| format!("{k}={s}")))
            .collect();
    let what = match selectors.is_empty() {
        true => r.collection_path(ns),
        false => format!("{}?{}", r.collection_path(ns), selectors.join("&")),
    };
    run(&ClientSource { client, r, ns, opts }, what, resource_version, stop, on_change)
}

/// Where the reflector's lists and watches come from: the API server, or a script in tests.
/// Objects arrive already decoded as `T` (no `Value` tree in between: for big lists and big
/// objects that tree, not `T`, set the peak memory), with what is needed to skip one that does
/// not decode.
trait Source<T> {
    type Stream: Iterator<Item = Result<WatchEvent<Decoded<T>>, KubeError>>;
    fn list(&self) -> Result<ObjectList<Decoded<T>>, KubeError>;
    fn watch(&self, resource_version: &str) -> Result<Self::Stream, KubeError>;
}

struct ClientSource<'a> {
    client: &'a Client,
    r: &'a Resource,
    ns: Option<&'a str>,
    opts: &'a ListOptions,
}

impl<T: DeserializeOwned> Source<T> for ClientSource<'_> {
    type Stream = DecodedWatch<T>;

    fn list(&self) -> Result<ObjectList<Decoded<T>>, KubeError> {
        self.client.list_decoded(self.r, self.ns, self.opts)
    }

    fn watch(&self, resource_version: &str) -> Result<DecodedWatch<T>, KubeError> {
        Ok(self.client.watch(self.r, self.ns, self.opts, resource_version)?.decoded())
    }
}

fn run<T>(
    source: &impl Source<T>,
    what: String,
    resource_version: &str,
    stop: &AtomicBool,
    on_change: &mut dyn FnMut(Change<T>),
) {
    let mut st = State { what, backoff: Backoff::new(seed()), last_warn: None, failing: false, lists: 0 };
    let mut rv: Option<String> = Some(resource_version.to_string()).filter(|s| !s.is_empty());
    while !stop.load(Ordering::Relaxed) {
        let Some(from) = rv.clone() else {
            match source.list() {
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
        let stream = match source.watch(&from) {
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
                Ok(WatchEvent::Added(d) | WatchEvent::Modified(d)) => {
                    events += 1;
                    advance(&mut rv, &d);
                    if let Some(t) = convert(&st.what, d) {
                        on_change(Change::Applied(t));
                    }
                }
                Ok(WatchEvent::Deleted(d)) => {
                    events += 1;
                    advance(&mut rv, &d);
                    if let Some(t) = convert(&st.what, d) {
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
                    path: st.what.clone(),
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

/// Follows an event's resourceVersion, also of an object that does not decode.
fn advance<T>(rv: &mut Option<String>, d: &Decoded<T>) {
    if !d.resource_version.is_empty() {
        *rv = Some(d.resource_version.clone());
    }
}

/// Unwraps one object; an object that does not decode is skipped with a warning (one bad
/// object must not stop the view of all others).
fn convert<T>(what: &str, d: Decoded<T>) -> Option<T> {
    match d.object {
        Ok(t) => Some(t),
        Err(e) => {
            let name = if d.name.is_empty() { "?" } else { d.name.as_str() };
            log::warn!("reflector {what}: skipping object {name:?} that does not decode: {e}");
            None
        }
    }
}

fn seed() -> u64 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    nanos ^ u64::from(std::process::id()).rotate_left(32)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::cell::RefCell;
    use std::collections::VecDeque;

    use serde_json::{Value, json};

    use super::*;

    type Events = Vec<Result<WatchEvent<Value>, KubeError>>;

    enum Step {
        List(Result<ObjectList<Value>, KubeError>),
        Watch(Result<Events, KubeError>),
    }

    /// Plays `steps` in order, records each call, and sets `stop` when the script runs out.
    struct Script<'a> {
        steps: RefCell<VecDeque<Step>>,
        calls: RefCell<Vec<String>>,
        stop: &'a AtomicBool,
    }

    impl Script<'_> {
        fn next(&self, call: String) -> Option<Step> {
            self.calls.borrow_mut().push(call);
            let s = self.steps.borrow_mut().pop_front();
            if s.is_none() {
                self.stop.store(true, Ordering::Relaxed);
            }
            s
        }
    }

    fn ended() -> KubeError {
        KubeError::Transport { verb: "watch", path: "/x".into(), detail: "script ended".into() }
    }

    /// The scripted objects as the client would deliver them as `T`.
    fn decoded<T: DeserializeOwned>(
        ev: Result<WatchEvent<Value>, KubeError>,
    ) -> Result<WatchEvent<Decoded<T>>, KubeError> {
        Ok(match ev? {
            WatchEvent::Added(v) => WatchEvent::Added(Decoded::from_value(v)),
            WatchEvent::Modified(v) => WatchEvent::Modified(Decoded::from_value(v)),
            WatchEvent::Deleted(v) => WatchEvent::Deleted(Decoded::from_value(v)),
            WatchEvent::Bookmark { resource_version } => WatchEvent::Bookmark { resource_version },
        })
    }

    impl<T: DeserializeOwned> Source<T> for Script<'_> {
        type Stream = std::vec::IntoIter<Result<WatchEvent<Decoded<T>>, KubeError>>;

        fn list(&self) -> Result<ObjectList<Decoded<T>>, KubeError> {
            match self.next("list".into()) {
                Some(Step::List(r)) => r.map(|l| ObjectList {
                    items: l.items.into_iter().map(Decoded::from_value).collect(),
                    resource_version: l.resource_version,
                }),
                Some(Step::Watch(_)) => panic!("script expected a watch, got a list"),
                None => Err(ended()),
            }
        }

        fn watch(&self, rv: &str) -> Result<Self::Stream, KubeError> {
            match self.next(format!("watch {rv}")) {
                Some(Step::Watch(r)) => {
                    r.map(|evs| evs.into_iter().map(decoded).collect::<Vec<_>>().into_iter())
                }
                Some(Step::List(_)) => panic!("script expected a list, got a watch from {rv}"),
                None => Err(ended()),
            }
        }
    }

    fn obj(name: &str, rv: &str) -> Value {
        json!({"metadata": {"name": name, "resourceVersion": rv}})
    }

    fn status(code: u16) -> KubeError {
        KubeError::Status { code, reason: String::new(), message: "watch /x: m".into() }
    }

    fn list(rv: &str, items: Vec<Value>) -> Step {
        Step::List(Ok(ObjectList { items, resource_version: rv.into() }))
    }

    /// Runs the script; returns the changes (as "kind name") and the calls made.
    fn play(steps: Vec<Step>, from: &str) -> (Vec<String>, Vec<String>) {
        let stop = AtomicBool::new(false);
        let script =
            Script { steps: RefCell::new(steps.into()), calls: RefCell::new(Vec::new()), stop: &stop };
        let mut got = Vec::new();
        let mut on_change = |c: Change<Value>| {
            got.push(match c {
                Change::Reset(items) => format!(
                    "reset {}",
                    items
                        .iter()
                        .map(|o| o["metadata"]["name"].as_str().unwrap())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                Change::Applied(o) => format!("applied {}", o["metadata"]["name"].as_str().unwrap()),
                Change::Deleted(o) => format!("deleted {}", o["metadata"]["name"].as_str().unwrap()),
            })
        };
        run(&script, "/x".into(), from, &stop, &mut on_change);
        let calls = script.calls.borrow().clone();
        (got, calls)
    }

    #[test]
    fn list_then_watch_resumes_from_events_and_bookmarks() {
        let (got, calls) = play(
            vec![
                list("10", vec![obj("a", "5")]),
                Step::Watch(Ok(vec![
                    Ok(WatchEvent::Added(obj("b", "11"))),
                    Ok(WatchEvent::Modified(obj("a", "12"))),
                    Ok(WatchEvent::Bookmark { resource_version: "15".into() }),
                ])),
                Step::Watch(Ok(vec![Ok(WatchEvent::Deleted(obj("b", "16")))])),
            ],
            "",
        );
        assert_eq!(got, ["reset a", "applied b", "applied a", "deleted b"]);
        assert_eq!(calls, ["list", "watch 10", "watch 15", "watch 16"]);
    }

    #[test]
    fn gone_relists_on_open_and_in_stream() {
        let (got, calls) = play(
            vec![
                Step::Watch(Err(status(410))),
                list("20", vec![obj("a", "19")]),
                Step::Watch(Ok(vec![Ok(WatchEvent::Added(obj("b", "21"))), Err(status(410))])),
                list("30", vec![]),
            ],
            "7",
        );
        assert_eq!(got, ["reset a", "applied b", "reset "]);
        assert_eq!(calls, ["watch 7", "list", "watch 20", "list", "watch 30"]);
    }

    #[test]
    fn other_errors_back_off_and_rewatch_from_the_same_version() {
        let (got, calls) = play(
            vec![
                list("10", vec![]),
                Step::Watch(Err(status(503))),
                Step::Watch(Ok(vec![Err(ended())])),
                Step::Watch(Ok(vec![Ok(WatchEvent::Added(obj("a", "11")))])),
            ],
            "",
        );
        assert_eq!(got, ["reset ", "applied a"]);
        assert_eq!(calls, ["list", "watch 10", "watch 10", "watch 10", "watch 11"]);
    }

    #[test]
    fn undecodable_objects_are_skipped() {
        #[derive(serde::Deserialize)]
        struct Named {
            #[allow(dead_code)]
            metadata: Meta,
        }
        #[derive(serde::Deserialize)]
        struct Meta {
            #[allow(dead_code)]
            name: String,
        }
        let stop = AtomicBool::new(false);
        let steps = vec![
            list("1", vec![obj("a", "1"), json!({"metadata": {"resourceVersion": "1"}})]),
            Step::Watch(Ok(vec![
                Ok(WatchEvent::Added(json!({"metadata": {"resourceVersion": "2"}}))),
                Ok(WatchEvent::Added(obj("b", "3"))),
            ])),
        ];
        let script =
            Script { steps: RefCell::new(steps.into()), calls: RefCell::new(Vec::new()), stop: &stop };
        let mut n = Vec::new();
        run(&script, "/x".into(), "", &stop, &mut |c: Change<Named>| {
            n.push(match c {
                Change::Reset(v) => v.len(),
                _ => 100,
            })
        });
        assert_eq!(n, [1, 100]);
        assert_eq!(*script.calls.borrow(), ["list", "watch 1", "watch 3"]);
    }
}
