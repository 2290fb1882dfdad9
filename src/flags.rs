//! Flag values both daemons share: durations, booleans, `-v`, `--logging-format`, and the
//! lexopt plumbing around them, so `ipam-controller` and `ipam-node` accept the same spellings
//! (a duration the node takes, such as `1.5m`, the controller takes too) and word their
//! refusals alike. Spellings follow Go's parsers, as the reference's flags (pflag) take them.
//!
//! Owns: the syntax of a flag value, [`ValueError`], and the defaults of flags both daemons
//! have with the same meaning ([`DEFAULT_IPPOOLS_NAMESPACE`]: one value, so they cannot
//! drift). Must not: know which flags a program has or its other defaults
//! (`controller::args`, `node::config` own those; `upstream_flags` the reference's table),
//! or act on a value.

use std::ffi::OsString;
use std::fmt;
use std::time::Duration;

use crate::logging::LogFormat;

/// `--ippools-namespace` of both daemons: where the IPPools and CIDRPools are (the
/// reference's default).
pub const DEFAULT_IPPOOLS_NAMESPACE: &str = "kube-system";

/// Largest `-v` (and `--vmodule` level): component-base parses them as 31-bit unsigned
/// numbers, so klog's `int32` holds them; larger is refused, as the reference refuses it.
pub const MAX_VERBOSITY: u32 = i32::MAX as u32;

/// Why a flag value was refused. Display is one line naming the flag and what to write
/// instead; each program appends where its help is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueError {
    /// Not a duration, or longer than the flag allows.
    Duration { flag: String, value: String, max: Duration },
    /// Not one of the boolean spellings of [`boolean`].
    Bool { flag: String, value: String },
    /// `-v` that is not a non-negative number.
    Verbosity { value: String },
    /// `--logging-format` other than `text` or `json`.
    LogFormat { value: String },
    /// Not valid UTF-8 (flags that hold names and addresses must be text).
    NotUtf8 { flag: String, value: String },
    /// Not a Kubernetes resource quantity (`--log-*-info-buffer-size`).
    Quantity { flag: String, value: String },
    /// A `--vmodule` entry that is not `PATTERN=N`.
    VModule { entry: String },
    /// A `--feature-gates` entry that is not `KEY=BOOL` with a known key.
    FeatureGate { entry: String, why: String },
    /// A value the reference also refuses once all flags are read (`why` says how to fix it).
    Refused { flag: String, why: String },
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueError::Duration { flag, value, max } => write!(
                f,
                "{flag} {value:?} is not a duration up to {}: use e.g. 30s, 5m, 1h30m",
                hours_or_seconds(*max)
            ),
            ValueError::Bool { flag, value } => write!(f, "{flag}={value:?}: use true or false"),
            ValueError::Verbosity { value } => {
                write!(f, "-v {value:?} is not a number from 0 to {MAX_VERBOSITY}: use e.g. -v 2")
            }
            ValueError::LogFormat { value } => write!(f, "--logging-format {value:?}: use text or json"),
            ValueError::NotUtf8 { flag, value } => write!(f, "{flag} {value:?} is not UTF-8: use plain text"),
            ValueError::Quantity { flag, value } => {
                write!(f, "{flag} {value:?} is not a quantity: use e.g. 0, 512, 64Ki, 1M")
            }
            ValueError::VModule { entry } => write!(
                f,
                "--vmodule {entry:?} is not PATTERN=N: use comma-separated entries such as server=2,store*=4 \
                 (N from 0 to {MAX_VERBOSITY})"
            ),
            ValueError::FeatureGate { entry, why } => write!(f, "--feature-gates {entry:?}: {why}"),
            ValueError::Refused { flag, why } => write!(f, "{flag}: {why}"),
        }
    }
}

impl std::error::Error for ValueError {}

/// `720h`, `24h`, `90s`: a limit as a user would type it.
fn hours_or_seconds(d: Duration) -> String {
    let s = d.as_secs();
    if s > 0 && s.is_multiple_of(3600) { format!("{}h", s / 3600) } else { format!("{}s", d.as_secs_f64()) }
}

/// An argument as the user typed it (`--flag`, `-v`, or a bare value), for messages.
pub fn shown(arg: &lexopt::Arg) -> String {
    match arg {
        lexopt::Arg::Long(l) => format!("--{l}"),
        lexopt::Arg::Short(c) => format!("-{c}"),
        lexopt::Arg::Value(v) => v.to_string_lossy().into_owned(),
    }
}

/// The value of `flag` as UTF-8 text.
pub fn text(flag: &str, v: OsString) -> Result<String, ValueError> {
    v.into_string()
        .map_err(|v| ValueError::NotUtf8 { flag: flag.into(), value: v.to_string_lossy().into_owned() })
}

/// A boolean flag: bare (`--flag`) is true; `--flag=V` takes exactly Go's `strconv.ParseBool`
/// spellings: `1`, `t`, `T`, `true`, `TRUE`, `True`, and `0`, `f`, `F`, `false`, `FALSE`,
/// `False`.
pub fn boolean(flag: &str, v: Option<OsString>) -> Result<bool, ValueError> {
    let Some(v) = v else { return Ok(true) };
    let s = v.to_string_lossy();
    go_bool(&s).ok_or_else(|| ValueError::Bool { flag: flag.into(), value: s.into_owned() })
}

/// Go's `strconv.ParseBool`.
pub fn go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.ParseUint(s, 10, bits)` (no sign, no `_`, leading zeros allowed) for
/// `bits` <= 32.
pub fn go_uint(s: &str, bits: u32) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let max = (1u64 << bits) - 1;
    let mut n: u64 = 0;
    for b in s.bytes() {
        n = n * 10 + u64::from(b - b'0');
        if n > max {
            return None;
        }
    }
    u32::try_from(n).ok()
}

/// `-v N` (also `--v=N`, `-vN`, `-v=N`): 0 to [`MAX_VERBOSITY`], digits only, as
/// component-base parses it; what it means is [`crate::logging::level_for_verbosity`]'s business.
pub fn verbosity(v: &str) -> Result<u32, ValueError> {
    go_uint(v, 31).ok_or_else(|| ValueError::Verbosity { value: v.into() })
}

/// `--logging-format text|json`.
pub fn log_format(v: &str) -> Result<LogFormat, ValueError> {
    match v {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(ValueError::LogFormat { value: v.into() }),
    }
}

/// Nanoseconds per duration unit, as Go's `time.ParseDuration` names them.
const UNITS: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Fraction digits read per number; later ones are cut off. 20 keep every unit exact to well
/// below a nanosecond (10^-20 h is about 4·10^-8 ns) and keep `fraction × unit` inside `u128`
/// (10^20 × 3.6·10^12 ns < 2^128).
const FRACTION_DIGITS: usize = 20;

/// A Go `time.ParseDuration` value without a sign, up to `max` (refused above, so a typo such
/// as a missing unit is not taken as years): one or more `<number><unit>` with units `ns`,
/// `us` (`µs`), `ms`, `s`, `m`, `h` and optional decimals (`90s`, `1m30s`, `1.5m`, `.5s`,
/// `500ms`); a bare `0` is zero; surrounding spaces are ignored. Exact to the nanosecond (no
/// floating point): fractions beyond a nanosecond are cut off, as Go does.
pub fn duration(flag: &str, v: &str, max: Duration) -> Result<Duration, ValueError> {
    let bad = || ValueError::Duration { flag: flag.into(), value: v.into(), max };
    let t = v.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.is_empty() {
        return Err(bad());
    }
    let mut rest = t;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let (int, after) = rest.split_at(int_len);
        let (frac, after) = match after.strip_prefix('.') {
            Some(a) => a.split_at(a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len())),
            None => ("", after),
        };
        // "." alone, or a unit with no number before it.
        if int.is_empty() && frac.is_empty() {
            return Err(bad());
        }
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale = UNITS.iter().find(|(name, _)| *name == unit).map(|(_, ns)| *ns).ok_or_else(bad)?;
        let int = int.trim_start_matches('0');
        // Too many digits for u128 fails here: far beyond any limit, so refused.
        let whole: u128 = if int.is_empty() { 0 } else { int.parse().map_err(|_| bad())? };
        let frac = &frac[..frac.len().min(FRACTION_DIGITS)];
        let part: u128 = if frac.is_empty() { 0 } else { frac.parse().map_err(|_| bad())? };
        let frac_ns = part * scale / 10u128.pow(frac.len() as u32);
        total = whole
            .checked_mul(scale)
            .and_then(|w| w.checked_add(frac_ns))
            .and_then(|n| total.checked_add(n))
            .ok_or_else(bad)?;
        rest = after;
    }
    if total > max.as_nanos() {
        return Err(bad());
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| bad())?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn d(v: &str) -> Result<Duration, ValueError> {
        duration("--x", v, DAY)
    }

    #[test]
    fn durations_in_every_go_spelling() {
        for (v, want_ms) in [
            ("0", 0u64),
            ("0s", 0),
            ("30s", 30_000),
            ("5m", 300_000),
            ("1.5m", 90_000),
            ("1m30s", 90_000),
            ("1h30m", 5_400_000),
            ("1.5h", 5_400_000),
            ("500ms", 500),
            (".5s", 500),
            ("5.s", 5_000),
            ("1.25s", 1_250),
            (" 2h ", 7_200_000),
            ("1h1m1s1ms", 3_661_001),
        ] {
            assert_eq!(d(v), Ok(Duration::from_millis(want_ms)), "{v:?}");
        }
        assert_eq!(d("1500us"), Ok(Duration::from_micros(1500)));
        assert_eq!(d("1500µs"), Ok(Duration::from_micros(1500)));
        assert_eq!(d("1500μs"), Ok(Duration::from_micros(1500)));
        assert_eq!(d("7ns"), Ok(Duration::from_nanos(7)));
        // Exact: no floating point rounding; fractions below a nanosecond are cut off.
        assert_eq!(d("0.1s"), Ok(Duration::from_millis(100)));
        assert_eq!(d("1.9999999999s"), Ok(Duration::new(1, 999_999_999)));
        assert_eq!(d("0.5ns"), Ok(Duration::ZERO));
    }

    #[test]
    fn durations_refused_name_the_flag_and_the_limit() {
        for v in [
            "",
            " ",
            "5",
            "00",
            "m",
            "s5",
            ".",
            ".s",
            "1.2.3s",
            "-1s",
            "+1s",
            "1d",
            "1 h",
            "1h 30m",
            "5 minutes",
            "1e3s",
            "1hx",
        ] {
            let e = d(v).expect_err(v);
            assert_eq!(e, ValueError::Duration { flag: "--x".into(), value: v.into(), max: DAY }, "{v:?}");
        }
        assert_eq!(
            d("25h").expect_err("over the limit").to_string(),
            "--x \"25h\" is not a duration up to 24h: use e.g. 30s, 5m, 1h30m"
        );
    }

    #[test]
    fn durations_at_the_limit() {
        assert_eq!(d("24h"), Ok(DAY));
        assert_eq!(d("23h59m60s"), Ok(DAY));
        assert_eq!(d("1440m"), Ok(DAY));
        assert!(d("24h1ns").is_err(), "one nanosecond over");
        assert!(d("24.000000001h").is_err(), "one nanosecond over, as a fraction");
        assert_eq!(d("24.0000000000001h"), Ok(DAY), "below a nanosecond: cut off, not over");
        // Digits that would overflow any integer type are refused, not wrapped.
        assert!(d(&format!("{}s", "9".repeat(40))).is_err());
        assert!(d(&format!("{}h", "9".repeat(30))).is_err());
        assert_eq!(d(&format!("{}1s", "0".repeat(100))), Ok(Duration::from_secs(1)), "leading zeros");
        assert_eq!(d(&format!("1.{}s", "0".repeat(100))), Ok(Duration::from_secs(1)), "long fraction");
        // At and past FRACTION_DIGITS: cut off, never an overflow.
        assert_eq!(d(&format!("0.{}1h", "0".repeat(FRACTION_DIGITS - 1))), Ok(Duration::ZERO));
        assert_eq!(d("0.00000009h"), Ok(Duration::from_nanos(324_000)));
        assert_eq!(d(&format!("0.{}9h", "0".repeat(FRACTION_DIGITS))), Ok(Duration::ZERO));
        assert_eq!(d(&format!("1.{}s", "9".repeat(FRACTION_DIGITS + 50))), Ok(Duration::new(1, 999_999_999)));
        // Many small parts that add up past the limit.
        assert!(d(&"23h".repeat(2)).is_err());
        let max = Duration::from_secs(u64::MAX);
        assert!(duration("--x", &format!("{}h", u64::MAX), max).is_err(), "beyond Duration itself");
        assert_eq!(duration("--x", "90s", Duration::from_secs(90)), Ok(Duration::from_secs(90)));
        assert_eq!(
            duration("--x", "91s", Duration::from_secs(90)).expect_err("over").to_string(),
            "--x \"91s\" is not a duration up to 90s: use e.g. 30s, 5m, 1h30m"
        );
    }

    #[test]
    fn booleans() {
        assert_eq!(boolean("--b", None), Ok(true), "bare flag");
        for v in ["true", "TRUE", "True", "t", "T", "1"] {
            assert_eq!(boolean("--b", Some(v.into())), Ok(true), "{v}");
        }
        for v in ["false", "FALSE", "False", "f", "F", "0"] {
            assert_eq!(boolean("--b", Some(v.into())), Ok(false), "{v}");
        }
        // Go's ParseBool takes three cases of each word, not any case.
        for v in ["", "yes", "no", "2", "on", " true", "tRUE", "fALSE", "TRue", "01"] {
            assert_eq!(
                boolean("--b", Some(v.into())),
                Err(ValueError::Bool { flag: "--b".into(), value: v.into() }),
                "{v:?}"
            );
        }
        assert_eq!(
            boolean("--leader-elect", Some("maybe".into())).expect_err("bad").to_string(),
            "--leader-elect=\"maybe\": use true or false"
        );
    }

    #[test]
    fn verbosity_and_format() {
        assert_eq!(verbosity("0"), Ok(0));
        assert_eq!(verbosity("004"), Ok(4), "leading zeros, as Go's ParseUint");
        assert_eq!(verbosity("2147483647"), Ok(MAX_VERBOSITY), "at the limit");
        for v in ["", "-1", "+1", "=4", " 1", "1_0", "0x1", "x", "2.5", "2147483648", &u32::MAX.to_string()] {
            assert_eq!(verbosity(v), Err(ValueError::Verbosity { value: v.into() }), "{v:?}");
        }
        assert_eq!(
            verbosity("2147483648").expect_err("over").to_string(),
            "-v \"2147483648\" is not a number from 0 to 2147483647: use e.g. -v 2"
        );
        assert_eq!(go_uint("255", 8), Some(255));
        assert_eq!(go_uint("256", 8), None);
        assert_eq!(go_uint(&"9".repeat(40), 31), None, "no overflow on long input");
        assert_eq!(log_format("text"), Ok(LogFormat::Text));
        assert_eq!(log_format("json"), Ok(LogFormat::Json));
        assert_eq!(
            log_format("JSON").expect_err("case").to_string(),
            "--logging-format \"JSON\": use text or json"
        );
    }

    #[test]
    fn text_refuses_invalid_utf8() {
        use std::os::unix::ffi::OsStringExt;
        assert_eq!(text("--ns", "kube-system".into()), Ok("kube-system".into()));
        let e = text("--ns", OsString::from_vec(vec![b'a', 0xff])).expect_err("not utf-8");
        assert_eq!(e.to_string(), "--ns \"a\u{fffd}\" is not UTF-8: use plain text");
    }
}
