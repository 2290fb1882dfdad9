//! Rendering metrics in the Prometheus text exposition format 0.0.4.
//!
//! A [`MetricsText`] collects families (one `# HELP`/`# TYPE` header each, then samples) and
//! escapes label values. Programs keep their own counters (atomics) and render on each scrape.
//!
//! Owns: the text format. Must not: keep state or serve HTTP (that is `health`).

use std::fmt::Write as _;

/// A Prometheus text document being built.
#[derive(Debug, Default, Clone)]
pub struct MetricsText {
    out: String,
}

/// The kind of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A cumulative histogram snapshot: `buckets[i]` counts observations `<= bounds[i]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    pub bounds: Vec<f64>,
    pub buckets: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

impl MetricsText {
    pub fn new() -> MetricsText {
        MetricsText::default()
    }

    /// Starts a family: `# HELP name help` and `# TYPE name kind`.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Self {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
        self
    }

    /// One sample line `name{labels} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.out.push_str(name);
        write_labels(&mut self.out, labels);
        let _ = writeln!(self.out, " {}", format_value(value));
        self
    }

    /// A counter family with one unlabelled sample.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) -> &mut Self {
        self.family(name, Kind::Counter, help).sample(name, &[], value as f64)
    }

    /// A gauge family with one unlabelled sample.
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) -> &mut Self {
        self.family(name, Kind::Gauge, help).sample(name, &[], value)
    }

    /// The samples of one histogram (`_bucket`, `_sum`, `_count`); call [`Self::family`] first.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramSnapshot) -> &mut Self {
        let bucket = format!("{name}_bucket");
        for (bound, n) in h.bounds.iter().zip(&h.buckets) {
            let le = format_value(*bound);
            let mut l = labels.to_vec();
            l.push(("le", &le));
            self.sample(&bucket, &l, *n as f64);
        }
        let mut l = labels.to_vec();
        l.push(("le", "+Inf"));
        self.sample(&bucket, &l, h.count as f64);
        self.sample(&format!("{name}_sum"), labels, h.sum);
        self.sample(&format!("{name}_count"), labels, h.count as f64)
    }

    /// The finished document.
    pub fn finish(self) -> String {
        self.out
    }
}

fn write_labels(out: &mut String, labels: &[(&str, &str)]) {
    if labels.is_empty() {
        return;
    }
    out.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        let _ = write!(out, "{k}=\"{v}\"");
    }
    out.push('}');
}

/// Integers print without a fraction; infinities as `+Inf`/`-Inf`.
fn format_value(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else if v.is_nan() {
        "NaN".into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_families_and_escapes_labels() {
        let mut m = MetricsText::new();
        m.counter("reconcile_total", "Reconciles.", 3);
        m.family("pool_free", Kind::Gauge, "Free blocks.").sample(
            "pool_free",
            &[("pool", "a\"b\\c"), ("type", "ippool")],
            1.5,
        );
        m.family("lat", Kind::Histogram, "Latency.").histogram(
            "lat",
            &[],
            &HistogramSnapshot { bounds: vec![0.1, 1.0], buckets: vec![1, 2], count: 3, sum: 2.5 },
        );
        assert_eq!(
            m.finish(),
            "# HELP reconcile_total Reconciles.\n# TYPE reconcile_total counter\nreconcile_total 3\n\
             # HELP pool_free Free blocks.\n# TYPE pool_free gauge\npool_free{pool=\"a\\\"b\\\\c\",type=\"ippool\"} 1.5\n\
             # HELP lat Latency.\n# TYPE lat histogram\nlat_bucket{le=\"0.1\"} 1\nlat_bucket{le=\"1\"} 2\n\
             lat_bucket{le=\"+Inf\"} 3\nlat_sum 2.5\nlat_count 3\n"
        );
    }
}
