//! The apiserver's own figures, from its `/metrics` as admin: requests per resource and verb
//! (`apiserver_request_total`) and what it sent to watchers (`apiserver_watch_events_total`,
//! `apiserver_watch_events_sizes` sum and count), per resource; plus the bench's own requests,
//! so they can be subtracted.
//!
//! Owns: reading and differencing those counters. Must not: create or change objects.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

/// The resources whose requests are counted: what the controller and the node daemons touch.
const RESOURCES: [&str; 6] = ["ippools", "cidrpools", "nodeblocksets", "nodes", "events", "pods"];

/// Samples of `family` (`family{labels} value` lines): (series, value).
pub fn metric_values(body: &str, family: &str) -> Vec<(String, f64)> {
    body.lines()
        .filter(|l| l.starts_with(family) && l[family.len()..].starts_with('{'))
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            Some((series.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// The sum of every sample of `family`, with or without labels; `None` when there is none.
pub fn metric_sum(body: &str, family: &str) -> Option<f64> {
    let mut found = None;
    for l in body.lines() {
        let Some(rest) = l.strip_prefix(family) else { continue };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        if let Some(v) = l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// The value of label `key` in a series (`name{a="x",key="y"}`).
fn label(series: &str, key: &str) -> Option<String> {
    let pat = format!("{key}=\"");
    let start = series
        .find(&format!("{{{pat}"))
        .map(|i| i + 1)
        .or_else(|| series.find(&format!(",{pat}")).map(|i| i + 1))?;
    let rest = &series[start + pat.len()..];
    rest.split_once('"').map(|(v, _)| v.to_string())
}

/// Watch events the apiserver sent for one resource: `apiserver_watch_events_total`, and the
/// `apiserver_watch_events_sizes` histogram's sum (bytes) and count (events it sized).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WatchSent {
    pub events: f64,
    pub bytes: f64,
    pub sized: f64,
}

impl WatchSent {
    fn plus(self, o: WatchSent) -> WatchSent {
        WatchSent { events: self.events + o.events, bytes: self.bytes + o.bytes, sized: self.sized + o.sized }
    }

    fn minus(self, o: WatchSent) -> WatchSent {
        WatchSent { events: self.events - o.events, bytes: self.bytes - o.bytes, sized: self.sized - o.sized }
    }
}

/// One reading of the apiserver's counters.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// "resource[/subresource] VERB" → requests (WATCH left out: counted only when it ends).
    pub requests: BTreeMap<String, f64>,
    /// resource → watch events sent.
    pub watch: BTreeMap<String, WatchSent>,
}

impl Snapshot {
    /// `self - before`, keeping only what grew.
    pub fn since(&self, before: &Snapshot) -> Snapshot {
        let requests = self
            .requests
            .iter()
            .map(|(k, v)| (k.clone(), v - before.requests.get(k).copied().unwrap_or(0.0)))
            .filter(|(_, d)| *d > 0.0)
            .collect();
        let watch = self
            .watch
            .iter()
            .map(|(k, w)| (k.clone(), w.minus(before.watch.get(k).copied().unwrap_or_default())))
            .filter(|(_, w)| w.events > 0.0 || w.sized > 0.0)
            .collect();
        Snapshot { requests, watch }
    }

    /// Adds `other` (to sum windows).
    pub fn add(&mut self, other: &Snapshot) {
        for (k, v) in &other.requests {
            *self.requests.entry(k.clone()).or_insert(0.0) += v;
        }
        for (k, w) in &other.watch {
            let e = self.watch.entry(k.clone()).or_default();
            *e = e.plus(*w);
        }
    }

    /// Subtracts the bench's own requests, dropping what is left at zero.
    pub fn minus_own(&mut self, own: &Own) {
        for (k, v) in own.take() {
            if let Some(r) = self.requests.get_mut(&k) {
                *r -= v;
            }
        }
        self.requests.retain(|_, v| *v > 0.5);
    }

    pub fn requests_total(&self) -> f64 {
        self.requests.values().sum()
    }

    pub fn watch_total(&self) -> WatchSent {
        self.watch.values().fold(WatchSent::default(), |a, w| a.plus(*w))
    }
}

/// The bench's own requests since the last [`Own::take`], keyed like [`Snapshot::requests`].
#[derive(Default)]
pub struct Own(Mutex<BTreeMap<String, f64>>);

impl Own {
    pub fn add(&self, key: &str) {
        *self.0.lock().expect("own-requests lock").entry(key.to_string()).or_insert(0.0) += 1.0;
    }

    fn take(&self) -> BTreeMap<String, f64> {
        std::mem::take(&mut *self.0.lock().expect("own-requests lock"))
    }

    /// Forgets what was counted (requests outside a measured window).
    pub fn reset(&self) {
        let _ = self.take();
    }
}

/// The apiserver's `/metrics` as admin (text format; the test client parses JSON only).
pub struct AdminMetrics {
    agent: ureq::Agent,
    url: String,
    auth: String,
}

impl AdminMetrics {
    pub fn new() -> AdminMetrics {
        let path = PathBuf::from(std::env::var_os("KUBECONFIG").expect("KUBECONFIG"));
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let cfg: Value = yaml_serde::from_str(&text).expect("kubeconfig is YAML");
        let cluster = &cfg["clusters"][0]["cluster"];
        let token = cfg["users"][0]["user"]["token"].as_str().expect("admin kubeconfig has a token");
        let ca = match cluster["certificate-authority-data"].as_str() {
            Some(d) => base64::engine::general_purpose::STANDARD.decode(d.trim()).expect("CA data is base64"),
            None => {
                fs::read(cluster["certificate-authority"].as_str().expect("a CA")).expect("read the CA file")
            }
        };
        let certs: Vec<_> = ureq::tls::parse_pem(&ca)
            .filter_map(|i| match i {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)))
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .new_agent();
        let server = cluster["server"].as_str().expect("server").trim_end_matches('/');
        AdminMetrics { agent, url: format!("{server}/metrics"), auth: format!("Bearer {token}") }
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut resp = self
            .agent
            .get(&self.url)
            .header("Authorization", &self.auth)
            .call()
            .expect("GET apiserver /metrics");
        let body = resp.body_mut().with_config().limit(256 << 20).read_to_string().expect("metrics body");
        let mut snap = Snapshot::default();
        for (series, v) in metric_values(&body, "apiserver_request_total") {
            let res = label(&series, "resource").unwrap_or_default();
            let verb = label(&series, "verb").unwrap_or_default();
            if !RESOURCES.contains(&res.as_str()) || verb == "WATCH" {
                continue;
            }
            let sub = label(&series, "subresource").unwrap_or_default();
            let key = if sub.is_empty() { format!("{res} {verb}") } else { format!("{res}/{sub} {verb}") };
            *snap.requests.entry(key).or_insert(0.0) += v;
        }
        // the label is `resource` in current apiservers, `kind` in older ones
        let resource =
            |series: &str| label(series, "resource").or_else(|| label(series, "kind")).unwrap_or_default();
        for (series, v) in metric_values(&body, "apiserver_watch_events_total") {
            snap.watch.entry(resource(&series)).or_default().events += v;
        }
        for (series, v) in metric_values(&body, "apiserver_watch_events_sizes_sum") {
            snap.watch.entry(resource(&series)).or_default().bytes += v;
        }
        for (series, v) in metric_values(&body, "apiserver_watch_events_sizes_count") {
            snap.watch.entry(resource(&series)).or_default().sized += v;
        }
        snap
    }
}
