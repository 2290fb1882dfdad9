//! The process logger behind the `log` facade: one line per record, as text or as JSON, to
//! stderr or appended to a file.
//!
//! ```text
//! text: 2026-11-29T16:21:49.123Z INFO  nv_ipam::cni::command: allocated container=c1 ifname=eth0
//! json: {"ts":"2026-11-29T16:21:49.123Z","level":"INFO","target":"nv_ipam::cni::command","msg":"..."}
//! ```
//!
//! Owns: formatting, the UTC clock-to-text conversion, the level names of the CNI config.
//! Must not: write to stdout (the CNI plugin's stdout carries only its result), pull in a
//! time or logging crate (the plugin binary must stay small), or fail the program because a
//! log file cannot be opened (it falls back to stderr and says so once).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{LevelFilter, Log, Metadata, Record};

/// How each record is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `<ts> <LEVEL> <target>: <message>`
    Text,
    /// One JSON object per line: `ts`, `level`, `target`, `msg`.
    Json,
}

/// Where records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stderr,
    /// Appended to; created with mode 0600 when missing (logs name pods and addresses).
    File(PathBuf),
}

/// Why [`init`] did not install the logger.
#[derive(Debug)]
pub enum LoggingError {
    /// A logger is already installed in this process; the first one stays.
    AlreadyInitialized,
}

impl fmt::Display for LoggingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoggingError::AlreadyInitialized => {
                write!(f, "a logger is already installed; the first logging::init call wins")
            }
        }
    }
}

impl std::error::Error for LoggingError {}

/// Installs the process-wide logger. A second call returns [`LoggingError::AlreadyInitialized`]
/// and changes nothing, so callers that may run twice (tests) can ignore the error.
///
/// A file that cannot be opened is not an error: records go to stderr instead, and the first
/// record says why.
pub fn init(level: LevelFilter, format: LogFormat, target: LogTarget) -> Result<(), LoggingError> {
    let (sink, fallback): (Box<dyn Write + Send>, Option<String>) = match &target {
        LogTarget::Stderr => (Box::new(io::stderr()), None),
        LogTarget::File(path) => match open_append(path) {
            Ok(file) => (Box::new(file), None),
            Err(e) => (
                Box::new(io::stderr()),
                Some(format!("cannot open log file {}: {e}; logging to stderr instead", path.display())),
            ),
        },
    };
    let logger = Logger { level, format, sink: Mutex::new(sink) };
    log::set_boxed_logger(Box::new(logger)).map_err(|_| LoggingError::AlreadyInitialized)?;
    log::set_max_level(level);
    if let Some(msg) = fallback {
        log::warn!("{msg}");
    }
    Ok(())
}

fn open_append(path: &std::path::Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

/// Parses a log level as the reference's CNI config spells it (`verbose`, `debug`, `info`,
/// `warning`, `error`, `panic`; case-insensitive; `warn`, `trace` and `off` too), or a
/// klog-style `-v` number: 0–1 info, 2–4 debug, 5 and above trace.
///
/// `panic` maps to `error`: the `log` facade has no level above error, and the plugin never
/// panics on purpose.
pub fn parse_level(s: &str) -> Option<LevelFilter> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u32>() {
        return Some(match n {
            0 | 1 => LevelFilter::Info,
            2..=4 => LevelFilter::Debug,
            _ => LevelFilter::Trace,
        });
    }
    match s.to_ascii_lowercase().as_str() {
        "verbose" | "trace" => Some(LevelFilter::Trace),
        "debug" => Some(LevelFilter::Debug),
        "info" => Some(LevelFilter::Info),
        "warning" | "warn" => Some(LevelFilter::Warn),
        "error" | "panic" => Some(LevelFilter::Error),
        "off" => Some(LevelFilter::Off),
        _ => None,
    }
}

struct Logger {
    level: LevelFilter,
    format: LogFormat,
    // why a Mutex: records from several threads (the daemon) must not interleave mid-line.
    sink: Mutex<Box<dyn Write + Send>>,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // Our own modules follow the chosen level; dependencies (ureq, rustls) log every
        // connection and TLS step at debug, which would drown ours, so they stay at info
        // unless trace is asked for.
        let ours = metadata.target().starts_with("nv_ipam") || metadata.target().starts_with("ipam_");
        let level = if ours || self.level >= LevelFilter::Trace {
            self.level
        } else {
            self.level.min(LevelFilter::Info)
        };
        metadata.level() <= level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let ts = format_utc(SystemTime::now());
        let line = render(self.format, &ts, record.level(), record.target(), &record.args().to_string());
        // A poisoned lock only means another thread panicked mid-write; keep logging.
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        // Logging must never fail the program: a full disk loses log lines, not pods.
        let _ = sink.write_all(line.as_bytes());
        let _ = sink.flush();
    }

    fn flush(&self) {
        let mut sink = self.sink.lock().unwrap_or_else(|p| p.into_inner());
        let _ = sink.flush();
    }
}

/// One complete line (with the trailing newline) for a record.
fn render(format: LogFormat, ts: &str, level: log::Level, target: &str, msg: &str) -> String {
    match format {
        LogFormat::Text => format!("{ts} {level:<5} {target}: {msg}\n"),
        LogFormat::Json => {
            let obj = serde_json::json!({"ts": ts, "level": level.as_str(), "target": target, "msg": msg});
            format!("{obj}\n")
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC. Times before 1970 (a broken clock) print as the epoch.
pub(crate) fn format_utc(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day): Howard Hinnant's
/// `civil_from_days`, which needs no tables and is exact for every i64 day count we can meet.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dependencies_stay_at_info_below_trace() {
        let at = |level| Logger { level, format: LogFormat::Text, sink: Mutex::new(Box::new(io::sink())) };
        let meta = |target, level| Metadata::builder().target(target).level(level).build();
        let debug = at(LevelFilter::Debug);
        assert!(debug.enabled(&meta("nv_ipam::store", log::Level::Debug)));
        assert!(debug.enabled(&meta("ipam_node", log::Level::Debug)));
        assert!(!debug.enabled(&meta("ureq::unit", log::Level::Debug)));
        assert!(debug.enabled(&meta("rustls::client", log::Level::Info)));
        assert!(at(LevelFilter::Trace).enabled(&meta("ureq::unit", log::Level::Debug)));
        assert!(!at(LevelFilter::Warn).enabled(&meta("ureq::unit", log::Level::Info)));
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn utc_timestamp() {
        // 2026-11-29T16:21:49.123Z
        let t = UNIX_EPOCH + Duration::from_millis(1_795_969_309_123);
        assert_eq!(format_utc(t), "2026-11-29T16:21:49.123Z");
        assert_eq!(format_utc(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn text_and_json_lines() {
        let ts = "2026-11-29T16:21:49.123Z";
        assert_eq!(
            render(LogFormat::Text, ts, log::Level::Info, "nv_ipam::cni", "allocated container=c1"),
            "2026-11-29T16:21:49.123Z INFO  nv_ipam::cni: allocated container=c1\n"
        );
        let line = render(LogFormat::Json, ts, log::Level::Warn, "t", "say \"hi\"\nthere");
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1, "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).expect("json line");
        assert_eq!(
            v,
            serde_json::json!({"ts": ts, "level": "WARN", "target": "t", "msg": "say \"hi\"\nthere"})
        );
    }

    #[test]
    fn cni_level_names_and_numbers() {
        assert_eq!(parse_level("verbose"), Some(LevelFilter::Trace));
        assert_eq!(parse_level("debug"), Some(LevelFilter::Debug));
        assert_eq!(parse_level("INFO"), Some(LevelFilter::Info));
        assert_eq!(parse_level("warning"), Some(LevelFilter::Warn));
        assert_eq!(parse_level("error"), Some(LevelFilter::Error));
        assert_eq!(parse_level("panic"), Some(LevelFilter::Error));
        assert_eq!(parse_level("0"), Some(LevelFilter::Info));
        assert_eq!(parse_level("4"), Some(LevelFilter::Debug));
        assert_eq!(parse_level("9"), Some(LevelFilter::Trace));
        assert_eq!(parse_level("loud"), None);
        assert_eq!(parse_level("-1"), None);
    }

    #[test]
    fn second_init_is_reported_not_fatal() {
        // The first init in this test binary may come from another test; either way the
        // second one must say AlreadyInitialized and not panic.
        let _ = init(LevelFilter::Info, LogFormat::Text, LogTarget::Stderr);
        assert!(matches!(
            init(LevelFilter::Debug, LogFormat::Json, LogTarget::Stderr),
            Err(LoggingError::AlreadyInitialized)
        ));
    }
}
