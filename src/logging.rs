//! The process logger behind the `log` facade: one line per record, as text or as JSON, to
//! stderr or appended to a file.
//!
//! ```text
//! text: 2026-11-29T16:21:49.123Z INFO  nv_ipam::cni::command: allocated container=c1 ifname=eth0
//! json: {"ts":"2026-11-29T16:21:49.123Z","level":"INFO","target":"nv_ipam::cni::command","msg":"..."}
//! ```
//!
//! Every record is exactly one line whatever its message holds: the text format renders
//! control characters, the Unicode line/paragraph separators and the bidi controls visibly
//! ([`escape_controls`]: `\n`, `\x1b`, `\u{2028}`); the JSON format leaves them to JSON escapes
//! (`\n`, `\u001b`, `\u2028`). Values from tenants (pool names, pod names, paths) therefore
//! cannot forge a line or draw on a terminal, and no caller has to remember to escape.
//!
//! Owns: formatting and escaping, the UTC clock-to-text conversion, the level names of the
//! CNI config, the one mapping of a `-v` number to a level ([`level_for_verbosity`]), which
//! records a `--vmodule` pattern raises (`logging/vmodule.rs`), the one place a logger is
//! installed, and how a log file is opened ([`open_log_file`]:
//! append-only, never through a symlink, never blocking on a FIFO, never creating
//! directories, regular files only).
//! Must not: write to stdout (the CNI plugin's stdout carries only its result), pull in a
//! time or logging crate (the plugin binary must stay small), or fail the program because a
//! log file cannot be opened (it falls back to stderr and says so once).

use std::borrow::Cow;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{LevelFilter, Log, Metadata, Record};

use crate::oflags;

mod vmodule;

use vmodule::VModule;
pub use vmodule::pattern_is_valid as vmodule_pattern_is_valid;

/// How each record is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `<ts> <LEVEL> <target>: <message>`
    #[default]
    Text,
    /// One JSON object per line: `ts`, `level`, `target`, `msg`.
    Json,
}

/// Where records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stderr,
    /// Opened with [`open_log_file`]: appended to, created with mode 0600 when missing (logs
    /// name pods and addresses).
    File(PathBuf),
}

/// A daemon's logging settings: its flags `-v`, `--vmodule` and `--logging-format`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogConfig {
    /// `-v`: every module's verbosity ([`level_for_verbosity`]).
    pub verbosity: u32,
    /// `--vmodule`, in the order given: verbosity per module pattern (`logging/vmodule.rs`).
    pub vmodule: Vec<VModuleRule>,
    pub format: LogFormat,
}

/// One `PATTERN=N` of `--vmodule`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VModuleRule {
    pub pattern: String,
    pub verbosity: u32,
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
    init_vmodule(level, VModule::default(), format, target)
}

/// [`init`] for a daemon's [`LogConfig`]: `-v` for every module, raised per module by
/// `--vmodule`.
pub fn init_config(cfg: &LogConfig, target: LogTarget) -> Result<(), LoggingError> {
    init_vmodule(level_for_verbosity(cfg.verbosity), VModule::new(&cfg.vmodule), cfg.format, target)
}

fn init_vmodule(
    level: LevelFilter,
    vmodule: VModule,
    format: LogFormat,
    target: LogTarget,
) -> Result<(), LoggingError> {
    let (sink, fallback): (Box<dyn Write + Send>, Option<String>) = match &target {
        LogTarget::Stderr => (Box::new(io::stderr()), None),
        LogTarget::File(path) => match open_log_file(path) {
            Ok(file) => (Box::new(file), None),
            Err(e) => (
                Box::new(io::stderr()),
                Some(format!("cannot open log file {}: {e}; logging to stderr instead", path.display())),
            ),
        },
    };
    install(Logger { level, vmodule, format, sink: Mutex::new(sink) })?;
    if let Some(msg) = fallback {
        log::warn!("{msg}");
    }
    Ok(())
}

/// Installs the process-wide logger on a sink the caller opened (the CNI plugin checks its
/// log file before handing it over). Same contract as [`init`].
pub fn init_writer(
    level: LevelFilter,
    format: LogFormat,
    sink: Box<dyn Write + Send>,
) -> Result<(), LoggingError> {
    install(Logger { level, vmodule: VModule::default(), format, sink: Mutex::new(sink) })
}

fn install(logger: Logger) -> Result<(), LoggingError> {
    // The facade drops records above this before asking the logger: let through what
    // `--vmodule` raises.
    let ceiling =
        logger.vmodule.max_verbosity().map_or(logger.level, |v| logger.level.max(level_for_verbosity(v)));
    // The one place a logger is installed (clippy.toml): every record gets the escaping above.
    #[allow(clippy::disallowed_methods)]
    {
        log::set_boxed_logger(Box::new(logger)).map_err(|_| LoggingError::AlreadyInitialized)?;
        log::set_max_level(ceiling);
    }
    Ok(())
}

/// Writes one record to `sink` outside the process logger, rendered (and escaped) exactly as
/// the logger would: for a line that must reach a different file than the logger's (the CNI
/// plugin's warnings go to the node's log even when the tenant's log file is in use).
pub fn write_record(sink: &mut dyn Write, format: LogFormat, level: log::Level, target: &str, msg: &str) {
    let line = render(format, &format_utc(SystemTime::now()), level, target, msg);
    // As in the logger: a lost log line must not fail the program.
    let _ = sink.write_all(line.as_bytes()).and_then(|()| sink.flush());
}

/// Opens `path` for appending as a log file: never through a symlink in its last component
/// (`O_NOFOLLOW`; a symlink is refused), never blocking on a FIFO (`O_NONBLOCK`), never
/// becoming a controlling terminal (`O_NOCTTY`), created with mode 0600 when missing (its
/// directory is never created), and refused unless it is a regular file once opened. A FIFO,
/// socket or device is refused before it is opened (opening a device can have effects).
pub fn open_log_file(path: &Path) -> io::Result<File> {
    let refuse =
        |what: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("it is {what}, not a regular file"));
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => return Err(refuse("a symlink")),
        Ok(m) if !m.is_file() => return Err(refuse(oflags::file_kind(&m))),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(oflags::O_NOFOLLOW | oflags::O_NONBLOCK | oflags::O_NOCTTY)
        .open(path)
        .map_err(|e| if e.raw_os_error() == Some(oflags::ELOOP) { refuse("a symlink") } else { e })?;
    let m = file.metadata()?;
    if !m.is_file() {
        return Err(refuse(oflags::file_kind(&m)));
    }
    Ok(file)
}

/// The one mapping from a klog-style `-v N` to a level, for both daemons' `-v` and a number
/// in the CNI config's `logLevel`: 0 info, 1–3 debug, 4 and above trace. Why these steps:
/// the reference's daemons log through logr, where `V(1)` is debug, so its DaemonSet's
/// `--v=1` (kept in deploy/) means debug here too.
pub fn level_for_verbosity(v: u32) -> LevelFilter {
    match v {
        0 => LevelFilter::Info,
        1..=3 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

/// Parses a log level as the reference's CNI config spells it (`verbose`, `debug`, `info`,
/// `warning`, `error`, `panic`; case-insensitive; `warn`, `trace` and `off` too), or a `-v`
/// number ([`level_for_verbosity`]).
///
/// `panic` maps to `error`: the `log` facade has no level above error, and the plugin never
/// panics on purpose.
pub fn parse_level(s: &str) -> Option<LevelFilter> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u32>() {
        return Some(level_for_verbosity(n));
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
    /// Raises the level of the modules it matches (`--vmodule`).
    vmodule: VModule,
    format: LogFormat,
    // why a Mutex: records from several threads (the daemon) must not interleave mid-line.
    sink: Mutex<Box<dyn Write + Send>>,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // Our own modules follow the chosen level; dependencies (ureq, rustls) log every
        // connection and TLS step at debug, which would drown ours, so they stay at info
        // unless trace is asked for.
        let target = metadata.target();
        let ours = target.starts_with("nv_ipam") || target.starts_with("ipam_");
        let level = if ours || self.level >= LevelFilter::Trace {
            self.level
        } else {
            self.level.min(LevelFilter::Info)
        };
        // `--vmodule` raises, never lowers (klog's rule); it may name a dependency too (`ureq=4`).
        let level = match self.vmodule.verbosity_for(target) {
            Some(v) => level.max(level_for_verbosity(v)),
            None => level,
        };
        metadata.level() <= level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let ts = format_utc(SystemTime::now());
        let line = render(self.format, &ts, record.level(), record.target(), &record.args().to_string());
        // Poisoning needs an unwinding build (release aborts on panic): another thread
        // panicked mid-write; keep logging.
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

/// One complete line (with the trailing newline) for a record. The text format escapes the
/// message and target ([`escape_controls`]); JSON escapes what serde leaves raw
/// ([`json_line_safe`]), so either way the record is one line.
fn render(format: LogFormat, ts: &str, level: log::Level, target: &str, msg: &str) -> String {
    match format {
        LogFormat::Text => {
            format!("{ts} {level:<5} {}: {}\n", escape_controls(target), escape_controls(msg))
        }
        LogFormat::Json => {
            let obj = serde_json::json!({"ts": ts, "level": level.as_str(), "target": target, "msg": msg});
            format!("{}\n", json_line_safe(obj.to_string()))
        }
    }
}

/// Characters a log line must not carry raw: C0 and C1 controls and DEL (newlines, carriage
/// returns, terminal escapes), the Unicode line and paragraph separators (some viewers break
/// lines there), and the bidirectional controls (they make a line read differently from its
/// bytes, "Trojan Source", CVE-2021-42574).
pub fn is_unsafe_in_log(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// `s` with every [`is_unsafe_in_log`] character rendered visibly: `\n`, `\r`, `\t`, `\x1b`
/// for other ASCII controls and DEL, `\u{2028}` for the rest. Borrowed when nothing needs it.
/// Backslashes are left alone: a literal `\n` in a value reads the same as an escaped newline,
/// but neither starts a new line.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe_in_log) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii() && is_unsafe_in_log(c) => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if is_unsafe_in_log(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// serde_json escapes C0 controls but writes DEL, C1 controls, U+2028/9 and the bidi
/// controls raw (they are valid in JSON strings). They can only occur inside strings, so
/// replacing each with its `\uXXXX` escape keeps the same JSON value on one clean line.
fn json_line_safe(json: String) -> String {
    if !json.chars().any(is_unsafe_in_log) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if is_unsafe_in_log(c) {
            // All of them are in the Basic Multilingual Plane: one \uXXXX each.
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
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
        let at = |level| Logger {
            level,
            vmodule: VModule::default(),
            format: LogFormat::Text,
            sink: Mutex::new(Box::new(io::sink())),
        };
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
    fn vmodule_raises_the_modules_it_names_and_nothing_else() {
        let rule = |p: &str, v| VModuleRule { pattern: p.into(), verbosity: v };
        let at = |level, rules: &[VModuleRule]| Logger {
            level,
            vmodule: VModule::new(rules),
            format: LogFormat::Text,
            sink: Mutex::new(Box::new(io::sink())),
        };
        let enabled =
            |l: &Logger, target, level| l.enabled(&Metadata::builder().target(target).level(level).build());
        let l = at(LevelFilter::Info, &[rule("server", 1), rule("store*", 4), rule("ureq", 4)]);
        assert!(enabled(&l, "nv_ipam::node::server", log::Level::Debug));
        assert!(!enabled(&l, "nv_ipam::node::server", log::Level::Trace), "1 is debug, not trace");
        assert!(!enabled(&l, "nv_ipam::node::pools_file", log::Level::Debug));
        assert!(enabled(&l, "nv_ipam::store::compact", log::Level::Trace));
        assert!(enabled(&l, "ureq::unit", log::Level::Trace), "a dependency named by a rule");
        assert!(!enabled(&l, "rustls::client", log::Level::Debug));
        // Never lowers: -v 4 keeps trace where a rule says 1.
        let l = at(LevelFilter::Trace, &[rule("server", 1)]);
        assert!(enabled(&l, "nv_ipam::node::server", log::Level::Trace));
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
    fn text_records_escape_every_control_and_stay_one_line() {
        let ts = "2026-11-29T16:21:49.123Z";
        let hostile = "p\n2026-01-01T00:00:00.000Z INFO  forged\r\t\u{1b}[2J\u{7f}\u{85}\u{2028}\u{2029}\u{202e}\u{2066}\0ok";
        let line = render(LogFormat::Text, ts, log::Level::Info, "nv_ipam::cni", hostile);
        assert_eq!(
            line,
            "2026-11-29T16:21:49.123Z INFO  nv_ipam::cni: p\\n2026-01-01T00:00:00.000Z INFO  forged\\r\\t\\x1b[2J\\x7f\\u{85}\\u{2028}\\u{2029}\\u{202e}\\u{2066}\\x00ok\n"
        );
        assert!(!line.trim_end_matches('\n').chars().any(is_unsafe_in_log));
        // Every character that needs it, and none that does not.
        for c in (0..=0x3000u32).filter_map(char::from_u32) {
            let s = c.to_string();
            let out = escape_controls(&s);
            assert_eq!(matches!(out, Cow::Owned(_)), is_unsafe_in_log(c), "{c:?}");
            assert!(!out.chars().any(is_unsafe_in_log), "{c:?} -> {out:?}");
        }
        assert!(matches!(escape_controls("plain ascii, ünïcödé and \\n literal"), Cow::Borrowed(_)));
    }

    #[test]
    fn json_records_are_one_clean_line_with_the_same_value() {
        let msg = "a\nb\u{1b}c\u{7f}d\u{85}e\u{2028}f\u{202e}g\"h\\";
        let line = render(LogFormat::Json, "t", log::Level::Info, "x", msg);
        assert_eq!(line.matches('\n').count(), 1);
        assert!(!line.trim_end().chars().any(is_unsafe_in_log), "{line:?}");
        let v: serde_json::Value = serde_json::from_str(&line).expect("still JSON");
        assert_eq!(v["msg"], msg, "the decoded value is unchanged");
    }

    #[test]
    fn log_files_open_append_only_never_through_symlinks_fifos_or_missing_dirs() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = std::env::temp_dir().join(format!("nv-ipam-logging-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let log = dir.join("a.log");
        let mut f = open_log_file(&log).expect("created");
        f.write_all(b"one\n").expect("write");
        let mut f = open_log_file(&log).expect("reopened");
        f.write_all(b"two\n").expect("write");
        assert_eq!(std::fs::read_to_string(&log).expect("read"), "one\ntwo\n", "appended");
        assert_eq!(std::fs::metadata(&log).expect("stat").permissions().mode() & 0o777, 0o600);
        let link = dir.join("link.log");
        std::os::unix::fs::symlink(&log, &link).expect("symlink");
        let e = open_log_file(&link).expect_err("symlink");
        assert!(e.to_string().contains("a symlink"), "{e}");
        let dangling = dir.join("dangling.log");
        std::os::unix::fs::symlink(dir.join("target.log"), &dangling).expect("symlink");
        assert!(open_log_file(&dangling).is_err());
        assert!(!dir.join("target.log").exists(), "nothing created through a dangling symlink");
        let fifo = dir.join("fifo.log");
        let ok = std::process::Command::new("mkfifo").arg(&fifo).status().map(|s| s.success());
        if ok.unwrap_or(false) {
            let e = open_log_file(&fifo).expect_err("fifo, refused without blocking");
            assert!(e.to_string().contains("a FIFO"), "{e}");
        }
        let e = open_log_file(&dir).expect_err("directory");
        assert!(e.to_string().contains("a directory"), "{e}");
        assert!(open_log_file(&dir.join("no/such/dir.log")).is_err());
        assert!(!dir.join("no").exists(), "no directory is created");
        assert_eq!(std::fs::metadata(&log).expect("stat").nlink(), 1);
        std::fs::remove_dir_all(&dir).expect("cleanup");
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
        assert_eq!(parse_level("4"), Some(LevelFilter::Trace), "as -v 4: level_for_verbosity");
        assert_eq!(parse_level("9"), Some(LevelFilter::Trace));
        assert_eq!(parse_level("loud"), None);
        assert_eq!(parse_level("-1"), None);
    }

    #[test]
    fn verbosity_levels_at_each_step() {
        let steps = [(0, LevelFilter::Info), (1, LevelFilter::Debug), (3, LevelFilter::Debug)];
        for (v, want) in steps.into_iter().chain([(4, LevelFilter::Trace), (u32::MAX, LevelFilter::Trace)]) {
            assert_eq!(level_for_verbosity(v), want, "-v {v}");
            assert_eq!(parse_level(&v.to_string()), Some(want), "logLevel {v}");
        }
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
