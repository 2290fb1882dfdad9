//! Every flag the reference's `ipam-controller` and `ipam-node` accept (nvidia-k8s-ipam, main
//! of 2026-07), in one table, [`FLAGS`], so that a manifest written for the reference runs here
//! unchanged. The reference builds its command lines from its own options packages plus what
//! Kubernetes component-base (logging, feature gates), controller-runtime (`--kubeconfig`) and
//! cobra (`--help`) register; [`FLAGS`] lists them all, per program, with what we do with each:
//! honour it, or accept it, check its value as the reference would, and log one warning that it
//! has no effect here.
//!
//! Owns: the table; the flags component-base registers ([`LoggingFlags`]: `-v`, `--vmodule`,
//! `--logging-format`, `--feature-gates`, `--log-*`) and their value syntaxes (Kubernetes
//! resource quantities, feature-gate lists, `PATTERN=N` lists); the checks the reference makes
//! once all of them are read (component-base's `logsapi.Validate`); flag-name normalization
//! (`--log_flush_frequency` is `--log-flush-frequency`, as component-base's `cli.Run` makes it);
//! the wording of the warning; the `--help` section of these flags and the docs tables.
//! Must not: parse a program's own flags (`controller::args` and `node::config` do; their tests
//! check them against [`FLAGS`]) or act on a value (`logging` does).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::time::Duration;

use crate::flags::{self, ValueError};
use crate::logging::{self, LogConfig, LogFormat, VModuleRule};

/// The program a flag belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    Controller,
    Node,
}

impl Program {
    pub fn name(self) -> &'static str {
        match self {
            Program::Controller => "ipam-controller",
            Program::Node => "ipam-node",
        }
    }
}

/// The reference's programs a row applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Programs {
    Both,
    Only(Program),
}

impl Programs {
    fn has(self, p: Program) -> bool {
        self == Programs::Both || self == Programs::Only(p)
    }
}

/// The value a flag takes, as the reference parses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `--flag` is true; `--flag=V` takes Go's `strconv.ParseBool` spellings.
    Bool,
    Text,
    /// Go's `strconv.ParseInt(V, 0, 64)`.
    Int,
    /// Go's `time.ParseDuration`.
    Duration,
    /// 0 to [`flags::MAX_VERBOSITY`].
    Verbosity,
    /// `PATTERN=N,...`
    VModule,
    /// `text` or `json`.
    LogFormat,
    /// A Kubernetes resource quantity (`512`, `64Ki`, `1M`).
    Quantity,
    /// `KEY=BOOL,...` of known gates.
    FeatureGates,
}

impl Kind {
    /// After the flag name in `--help`.
    fn placeholder(self) -> &'static str {
        match self {
            Kind::Bool => "",
            Kind::Text => " STRING",
            Kind::Int => " INT",
            Kind::Duration => " DUR",
            Kind::Verbosity => " N",
            Kind::VModule => " PATTERN=N,...",
            Kind::LogFormat => " text|json",
            Kind::Quantity => " QUANTITY",
            Kind::FeatureGates => " KEY=BOOL,...",
        }
    }

    /// The docs tables' value column.
    fn doc(self) -> &'static str {
        match self {
            Kind::Bool => "bool",
            Kind::Text => "string",
            Kind::Int => "int",
            Kind::Duration => "duration",
            Kind::Verbosity => "0 to 2147483647",
            Kind::VModule => "`PATTERN=N,...`",
            Kind::LogFormat => "`text`, `json`",
            Kind::Quantity => "quantity",
            Kind::FeatureGates => "`KEY=BOOL,...`",
        }
    }
}

/// Who registers the flag in the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Its own options packages: each daemon's `app/options` and the shared
    /// https://github.com/Mellanox/nvidia-k8s-ipam/tree/main/pkg/cmdoptions.
    Reference,
    /// component-base's `logsapi.AddFlags` (https://pkg.go.dev/k8s.io/component-base/logs/api/v1).
    Logs,
    /// component-base's `FeatureGate.AddFlag` (https://pkg.go.dev/k8s.io/component-base/featuregate).
    FeatureGates,
    /// controller-runtime's `RegisterFlags`
    /// (https://pkg.go.dev/sigs.k8s.io/controller-runtime/pkg/client/config).
    ControllerRuntime,
    /// cobra's default help flag (https://github.com/spf13/cobra).
    Cobra,
}

impl Source {
    fn doc(self) -> &'static str {
        match self {
            Source::Reference => "nvidia-k8s-ipam",
            Source::Logs => "component-base logs",
            Source::FeatureGates => "component-base featuregate",
            Source::ControllerRuntime => "controller-runtime",
            Source::Cobra => "cobra",
        }
    }

    /// Parsed by [`LoggingFlags`], the same in both programs.
    fn shared(self) -> bool {
        matches!(self, Source::Logs | Source::FeatureGates)
    }
}

/// What we do with the flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    Honoured,
    /// Value checked as the reference checks it; one warning when given; nothing else.
    NoEffect,
}

/// One flag of the reference.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    /// Without dashes; the only shorthands are `-v` and `-h`.
    pub name: &'static str,
    pub short: Option<char>,
    pub kind: Kind,
    pub programs: Programs,
    pub source: Source,
    pub handling: Handling,
    /// What we do with it, for `--help` and the docs.
    pub here: &'static str,
    /// A value we accept (tests pass it; the docs show it); empty for bare booleans.
    pub example: &'static str,
}

const fn row(
    name: &'static str,
    kind: Kind,
    programs: Programs,
    source: Source,
    handling: Handling,
    here: &'static str,
    example: &'static str,
) -> Flag {
    Flag { name, short: None, kind, programs, source, handling, here, example }
}

use Handling::{Honoured, NoEffect};
use Programs::{Both, Only};
const CONTROLLER: Programs = Only(Program::Controller);
const NODE: Programs = Only(Program::Node);

/// Every flag of the reference's two daemons. Read from its options packages (each daemon's
/// `app/options` under https://github.com/Mellanox/nvidia-k8s-ipam/tree/main/cmd and the shared
/// `pkg/cmdoptions` there), and from what they call at the versions its go.mod pins: component-base
/// v0.36.2 (`logsapi.AddFlags`: `--logging-format`, `--log-flush-frequency`, `-v`, `--vmodule`,
/// `--log-text-*`, and `--log-json-*` because the JSON format is registered;
/// `logs.AddFlags` adds nothing more; `FeatureGate.AddFlag`: `--feature-gates`),
/// controller-runtime v0.24.1 (`RegisterFlags`: `--kubeconfig`) and cobra v1.10.2 (`-h`,
/// `--help`; `--version` is the reference's own, so cobra adds none).
pub const FLAGS: &[Flag] = &[
    Flag {
        short: Some('h'),
        ..row("help", Kind::Bool, Both, Source::Cobra, Honoured, "print the usage and exit", "")
    },
    row("version", Kind::Bool, Both, Source::Reference, Honoured, "print the version and exit", "false"),
    row(
        "kubeconfig",
        Kind::Text,
        Both,
        Source::ControllerRuntime,
        Honoured,
        "kubeconfig file (default: $KUBECONFIG, else in-cluster)",
        "/etc/kubernetes/kubeconfig",
    ),
    Flag {
        short: Some('v'),
        ..row(
            "v",
            Kind::Verbosity,
            Both,
            Source::Logs,
            Honoured,
            "log verbosity: 0 info, 1-3 debug, 4+ trace (default 0)",
            "2",
        )
    },
    row(
        "vmodule",
        Kind::VModule,
        Both,
        Source::Logs,
        Honoured,
        "raise the verbosity of the modules the patterns name (globs on our module paths, e.g. \
         server=2,store*=4); text format only, as in the reference",
        "server=1,store*=0",
    ),
    row(
        "logging-format",
        Kind::LogFormat,
        Both,
        Source::Logs,
        Honoured,
        "log line format (default text)",
        "text",
    ),
    row(
        "log-flush-frequency",
        Kind::Duration,
        Both,
        Source::Logs,
        NoEffect,
        "every record is written at once; the value must be a duration above 0",
        "5s",
    ),
    row(
        "log-text-split-stream",
        Kind::Bool,
        Both,
        Source::Logs,
        NoEffect,
        "every record goes to stderr; true needs LoggingAlphaOptions",
        "",
    ),
    row(
        "log-text-info-buffer-size",
        Kind::Quantity,
        Both,
        Source::Logs,
        NoEffect,
        "records are never buffered; above 0 needs LoggingAlphaOptions",
        "64Ki",
    ),
    row(
        "log-json-split-stream",
        Kind::Bool,
        Both,
        Source::Logs,
        NoEffect,
        "every record goes to stderr; true needs LoggingAlphaOptions",
        "",
    ),
    row(
        "log-json-info-buffer-size",
        Kind::Quantity,
        Both,
        Source::Logs,
        NoEffect,
        "records are never buffered; above 0 needs LoggingAlphaOptions",
        "1M",
    ),
    row(
        "feature-gates",
        Kind::FeatureGates,
        Both,
        Source::FeatureGates,
        NoEffect,
        "gates AllAlpha, AllBeta, ContextualLogging, LoggingAlphaOptions (off), LoggingBetaOptions \
         (on); only the reference's checks use them: LoggingBetaOptions=false refuses json logs",
        "LoggingAlphaOptions=true",
    ),
    row(
        "ippools-namespace",
        Kind::Text,
        Both,
        Source::Reference,
        Honoured,
        "namespace of the IPPools and CIDRPools (default kube-system)",
        "kube-system",
    ),
    row(
        "metrics-bind-address",
        Kind::Text,
        CONTROLLER,
        Source::Reference,
        Honoured,
        "/metrics address, 0 disables (default :8080)",
        "127.0.0.1:0",
    ),
    row(
        "health-probe-bind-address",
        Kind::Text,
        CONTROLLER,
        Source::Reference,
        Honoured,
        "/healthz and /readyz address, 0 disables (default :8081)",
        "127.0.0.1:0",
    ),
    row("leader-elect", Kind::Bool, CONTROLLER, Source::Reference, Honoured, "run leader election", ""),
    row(
        "leader-elect-namespace",
        Kind::Text,
        CONTROLLER,
        Source::Reference,
        Honoured,
        "namespace of the Lease (default kube-system)",
        "kube-system",
    ),
    row(
        "webhook",
        Kind::Bool,
        CONTROLLER,
        Source::Reference,
        Honoured,
        "serve the validating admission webhook",
        "false",
    ),
    row(
        "metrics-bind-address",
        Kind::Text,
        NODE,
        Source::Reference,
        Honoured,
        "an extra /metrics listener; default 0: /metrics is on the health address (the reference \
         defaults to :8080)",
        "0",
    ),
    row(
        "health-probe-bind-address",
        Kind::Text,
        NODE,
        Source::Reference,
        Honoured,
        "/healthz, /readyz and /metrics; default :8083 in cluster mode, off standalone (the \
         reference defaults to :8081)",
        "0",
    ),
    row("node-name", Kind::Text, NODE, Source::Reference, Honoured, "this node's name (required)", "node1"),
    row(
        "bind-address",
        Kind::Text,
        NODE,
        Source::Reference,
        Honoured,
        "the daemon's socket; unix sockets only (the reference also takes tcp://)",
        "unix:///var/lib/cni/nv-ipam/daemon.sock",
    ),
    row(
        "store-file",
        Kind::Text,
        NODE,
        Source::Reference,
        Honoured,
        "the allocation store (the reference's file is imported)",
        "/var/lib/cni/nv-ipam/store",
    ),
    row(
        "cni-bin-dir",
        Kind::Text,
        NODE,
        Source::Reference,
        Honoured,
        "where the plugin is installed",
        "/opt/cni/bin",
    ),
    row(
        "cni-nv-ipam-bin-file",
        Kind::Text,
        NODE,
        Source::Reference,
        Honoured,
        "the plugin binary to install",
        "/nv-ipam",
    ),
    row(
        "cni-skip-nv-ipam-binary-copy",
        Kind::Bool,
        NODE,
        Source::Reference,
        Honoured,
        "do not install the plugin",
        "",
    ),
    row(
        "cni-skip-nv-ipam-config-creation",
        Kind::Bool,
        NODE,
        Source::Reference,
        Honoured,
        "do not write nv-ipam.conf",
        "false",
    ),
    row(
        "cni-conf-dir",
        Kind::Text,
        NODE,
        Source::Reference,
        Honoured,
        "the plugin's config directory",
        "/etc/cni/net.d/nv-ipam.d",
    ),
    row(
        "cni-daemon-socket",
        Kind::Text,
        NODE,
        Source::Reference,
        Honoured,
        "the socket the plugin dials; unix sockets only",
        "unix:///var/lib/cni/nv-ipam/daemon.sock",
    ),
    row(
        "cni-daemon-call-timeout",
        Kind::Int,
        NODE,
        Source::Reference,
        Honoured,
        "the plugin's call timeout in seconds",
        "5",
    ),
    row(
        "cni-log-file",
        Kind::Text,
        NODE,
        Source::Reference,
        Honoured,
        "the plugin's log file",
        "/var/log/nv-ipam-cni.log",
    ),
    row("cni-log-level", Kind::Text, NODE, Source::Reference, Honoured, "the plugin's log level", "info"),
    row(
        "cni-force-pool-name",
        Kind::Bool,
        NODE,
        Source::Reference,
        Honoured,
        "the plugin requires poolName",
        "",
    ),
];

/// The rows of `program`, in table order.
pub fn flags_of(program: Program) -> impl Iterator<Item = &'static Flag> {
    FLAGS.iter().filter(move |f| f.programs.has(program))
}

/// The name the reference would look a command-line argument up by: a long flag with `_` read
/// as `-` (component-base's `WordSepNormalizeFunc`, which the reference's `cli.Run` installs
/// for every flag), `v` for `-v` (pflag's one-letter shorthand); other short flags as `-c`.
/// `None` for a value.
pub fn name(arg: &lexopt::Arg<'_>) -> Option<String> {
    match arg {
        lexopt::Arg::Long(l) => Some(l.replace('_', "-")),
        lexopt::Arg::Short('v') => Some("v".into()),
        lexopt::Arg::Short(c) => Some(format!("-{c}")),
        lexopt::Arg::Value(_) => None,
    }
}

/// The component-base flag called `name` (normalized by [`name`]), if it is one:
/// [`LoggingFlags::set`] takes it.
pub fn logging_flag(name: &str) -> Option<&'static Flag> {
    FLAGS.iter().find(|f| f.source.shared() && f.name == name)
}

/// Reads `flag`'s value off the command line: a boolean only as `--flag=V` (a bare one is
/// true), any other as `--flag=V` or the next argument, as pflag reads them.
pub fn value(flag: &Flag, p: &mut lexopt::Parser) -> Result<Option<OsString>, lexopt::Error> {
    if flag.kind == Kind::Bool { Ok(p.optional_value()) } else { p.value().map(Some) }
}

/// Largest `--log-flush-frequency`: Go's `time.Duration` holds at most 2^63-1 ns (about 292
/// years); longer does not parse in the reference either.
pub const MAX_GO_DURATION: Duration = Duration::from_nanos(i64::MAX as u64);

/// The feature gates the reference's daemons know (a fresh gate set plus
/// `logsapi.AddFeatureGates`), with their stage and default at Kubernetes 1.36.
const GATES: [(&str, Stage, bool); 5] = [
    ("AllAlpha", Stage::All, false),
    ("AllBeta", Stage::All, false),
    ("ContextualLogging", Stage::Beta, true),
    ("LoggingAlphaOptions", Stage::Alpha, false),
    ("LoggingBetaOptions", Stage::Beta, true),
];
const ALPHA_OPTIONS: &str = "LoggingAlphaOptions";
const BETA_OPTIONS: &str = "LoggingBetaOptions";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// `AllAlpha`/`AllBeta`: set every gate of their stage that is not set by name.
    All,
    Alpha,
    Beta,
}

/// `--feature-gates` as component-base keeps it: what was set by name across all
/// occurrences of the flag, and the resulting state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Gates {
    raw: Vec<(&'static str, bool)>,
    enabled: Vec<(&'static str, bool)>,
}

fn put(list: &mut Vec<(&'static str, bool)>, key: &'static str, v: bool) {
    match list.iter_mut().find(|(k, _)| *k == key) {
        Some(e) => e.1 = v,
        None => list.push((key, v)),
    }
}

impl Gates {
    /// One `--feature-gates` value: `KEY=BOOL` entries, comma-separated, spaces around each
    /// side trimmed, empty entries skipped; later entries win.
    fn set(&mut self, value: &str) -> Result<(), ValueError> {
        for entry in value.split(',').filter(|e| !e.is_empty()) {
            let bad = |why: String| ValueError::FeatureGate { entry: entry.into(), why };
            let (k, v) = entry.split_once('=').ok_or_else(|| bad("missing =true or =false".into()))?;
            let (k, v) = (k.trim(), v.trim());
            let v = flags::go_bool(v).ok_or_else(|| bad(format!("{v:?} is not true or false")))?;
            let (key, _, _) = GATES.iter().find(|(name, _, _)| *name == k).ok_or_else(|| {
                let known: Vec<&str> = GATES.iter().map(|g| g.0).collect();
                bad(format!("unrecognized feature gate {k:?}: use one of {}", known.join(", ")))
            })?;
            put(&mut self.raw, key, v);
        }
        // component-base recomputes from every name set so far over the previous state:
        // a name always takes its value; AllAlpha/AllBeta only fill gates not set yet.
        let mut enabled = self.enabled.clone();
        for &(key, v) in &self.raw {
            let stage = GATES.iter().find(|g| g.0 == key).map(|g| g.1);
            if stage == Some(Stage::All) {
                let fills = if key == "AllAlpha" { Stage::Alpha } else { Stage::Beta };
                for (gate, _, _) in GATES.iter().filter(|g| g.1 == fills) {
                    if !enabled.iter().any(|(k, _)| k == gate) {
                        enabled.push((gate, v));
                    }
                }
            }
            put(&mut enabled, key, v);
        }
        self.enabled = enabled;
        Ok(())
    }

    fn on(&self, gate: &str) -> bool {
        match self.enabled.iter().find(|(k, _)| *k == gate) {
            Some((_, v)) => *v,
            None => GATES.iter().any(|g| g.0 == gate && g.2),
        }
    }
}

/// Whether `s` is a Kubernetes resource quantity (apimachinery's `ParseQuantity`), and if so
/// whether it is non-zero. A sign, digits with an optional fraction, then a suffix: none,
/// `n u m k M G T P E`, `Ki Mi Gi Ti Pi Ei`, or `e`/`E` and an exponent. As there, `+`, `-`
/// and `.` alone are zero (but not with `Pi`, `Ei` or an exponent below -9, whose slower path
/// needs a digit), `1.` is one, and no spaces are allowed.
///
/// "Non-zero" is the exact value's; the reference converts to `int64` first, so a few values
/// of 2^63 and more (exabytes of log buffer) count as zero there and need no feature gate.
pub fn quantity(s: &str) -> Option<bool> {
    if s.is_empty() {
        return None;
    }
    let b = s.as_bytes();
    let end = b.len();
    let mut pos = 0;
    if matches!(b[0], b'+' | b'-') {
        pos = 1;
    }
    while pos < end && b[pos] == b'0' {
        pos += 1;
    }
    let any_digit = b[..pos].iter().any(u8::is_ascii_digit);
    let digits = |from: usize| from + b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let num_end = digits(pos);
    // apimachinery counts the digits after the leading zeros, and "0" when there are none.
    let num_len = (num_end - pos).max(1);
    let mut nonzero = b[pos..num_end].iter().any(|&c| c != b'0');
    let mut any_digit = any_digit || num_end > pos;
    pos = num_end;
    let mut denom_len = 0;
    if pos < end && b[pos] == b'.' {
        let denom_end = digits(pos + 1);
        nonzero |= b[pos + 1..denom_end].iter().any(|&c| c != b'0');
        denom_len = denom_end - pos - 1;
        any_digit |= denom_len > 0;
        pos = denom_end;
    }
    let suffix = &s[pos..];
    let letters = suffix.bytes().take_while(|c| b"eEinumkKMGTP".contains(c)).count();
    let mut rest = &suffix.as_bytes()[letters..];
    if let [b'+' | b'-', r @ ..] = rest {
        rest = r;
    }
    if !rest.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Which arithmetic apimachinery takes: the int64 one needs few enough digits and a scale
    // of at least 10^-9; otherwise it parses the digits again, and fails when there are none.
    let (digits_ok, scale) = match suffix {
        "" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" => {
            let exp = ["n", "u", "m", "", "k", "M", "G", "T", "P", "E"].iter().position(|x| *x == suffix);
            let exp = exp.map_or(0, |i| i as i64 * 3 - 9);
            (num_len + denom_len <= 18, exp - denom_len as i64)
        }
        "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => {
            let tens =
                ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"].iter().position(|x| *x == suffix).unwrap_or(0) + 1;
            // precision = 15 - digits - exponent*3/10 - 1 must not go below 0, with no fraction
            (denom_len == 0 && num_len + 3 * tens < 15, 0)
        }
        _ if suffix.len() > 1 && suffix.starts_with(['e', 'E']) => {
            // Parsed as int64, then truncated to int32, as there.
            let exp = go_int64(&suffix[1..])?;
            (num_len + denom_len <= 18, i64::from(exp as i32) - denom_len as i64)
        }
        _ => return None,
    };
    let int64_path = digits_ok && scale >= -9;
    (int64_path || any_digit).then_some(nonzero)
}

/// Go's `strconv.ParseInt(s, 10, 64)`.
fn go_int64(s: &str) -> Option<i64> {
    let (neg, digits) = match s.as_bytes() {
        [b'-', d @ ..] => (true, d),
        [b'+', d @ ..] => (false, d),
        d => (false, d),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: i64 = 0;
    for d in digits {
        let d = i64::from(d - b'0');
        // Accumulated negatively, so that i64::MIN fits.
        n = n.checked_mul(10)?.checked_sub(d)?;
    }
    if neg { Some(n) } else { n.checked_neg() }
}

/// `--vmodule`'s `PATTERN=N,...` as component-base parses it: entries split at `,` (empty
/// ones skipped), each exactly one `=` with both sides non-empty, `N` from 0 to
/// [`flags::MAX_VERBOSITY`].
pub fn vmodule(value: &str) -> Result<Vec<VModuleRule>, ValueError> {
    value
        .split(',')
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let bad = || ValueError::VModule { entry: entry.into() };
            let mut parts = entry.split('=');
            let (Some(p), Some(n), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(bad());
            };
            if p.is_empty() {
                return Err(bad());
            }
            let verbosity = flags::go_uint(n, 31).ok_or_else(bad)?;
            Ok(VModuleRule { pattern: p.into(), verbosity })
        })
        .collect()
}

/// What the component-base flags ask for, gathered while a program parses its command line;
/// [`LoggingFlags::finish`] checks them together as the reference does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoggingFlags {
    config: LogConfig,
    /// `--log-flush-frequency`, when given.
    flush: Option<Duration>,
    gates: Gates,
    /// Flags that need `LoggingAlphaOptions` because of the value given (a split stream, a
    /// buffer above 0).
    alpha: Vec<&'static str>,
    /// [`Handling::NoEffect`] flags given, each once, in the order first seen.
    no_effect: Vec<&'static str>,
}

/// The component-base flags, read and checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Logging {
    pub config: LogConfig,
    /// One line each, for the log once it is set up: a flag that has no effect here, a
    /// `--vmodule` pattern that can never match.
    pub warnings: Vec<String>,
}

impl LoggingFlags {
    /// Takes `value` ([`value`] read it) for `flag` (a [`logging_flag`]), typed as `shown`.
    pub fn set(
        &mut self,
        flag: &'static Flag,
        shown: &str,
        value: Option<OsString>,
    ) -> Result<(), ValueError> {
        if flag.handling == NoEffect && !self.no_effect.contains(&flag.name) {
            self.no_effect.push(flag.name);
        }
        let text = |v: Option<OsString>| flags::text(shown, v.unwrap_or_default());
        let mut needs_alpha = |on: bool| {
            if on && !self.alpha.contains(&flag.name) {
                self.alpha.push(flag.name);
            }
        };
        match flag.kind {
            Kind::Verbosity => self.config.verbosity = flags::verbosity(&text(value)?)?,
            Kind::VModule => self.config.vmodule.extend(vmodule(&text(value)?)?),
            Kind::LogFormat => self.config.format = flags::log_format(&text(value)?)?,
            Kind::FeatureGates => self.gates.set(&text(value)?)?,
            Kind::Duration => {
                // Go's ParseDuration takes a sign; only a positive frequency passes the
                // reference's check (below), so `+` is all that has to be let through here.
                // It takes no spaces, which flags::duration forgives.
                let v = text(value)?;
                if v.trim() != v {
                    return Err(ValueError::Duration { flag: shown.into(), value: v, max: MAX_GO_DURATION });
                }
                self.flush =
                    Some(flags::duration(shown, v.strip_prefix('+').unwrap_or(&v), MAX_GO_DURATION)?);
            }
            Kind::Bool => needs_alpha(flags::boolean(shown, value)?),
            Kind::Quantity => {
                let v = text(value)?;
                needs_alpha(quantity(&v).ok_or(ValueError::Quantity { flag: shown.into(), value: v })?);
            }
            Kind::Text | Kind::Int => {}
        }
        Ok(())
    }

    /// The checks component-base's `logsapi.Validate` makes once every flag is read, each
    /// refusal naming the flag and the fix; then the settings and the warnings to log.
    pub fn finish(self) -> Result<Logging, ValueError> {
        let refuse = |flag: &str, why: &str| ValueError::Refused { flag: flag.into(), why: why.into() };
        if self.flush == Some(Duration::ZERO) {
            return Err(refuse("--log-flush-frequency", "must be more than 0, e.g. 5s"));
        }
        if self.config.format == LogFormat::Json && !self.gates.on(BETA_OPTIONS) {
            return Err(refuse(
                "--logging-format",
                "json needs the LoggingBetaOptions feature gate, which --feature-gates turns off: \
                 drop LoggingBetaOptions=false or use text",
            ));
        }
        if !self.config.vmodule.is_empty() && self.config.format != LogFormat::Text {
            return Err(refuse(
                "--vmodule",
                "works only with --logging-format=text, as in nvidia-k8s-ipam: drop one of them",
            ));
        }
        if let Some(flag) = self.alpha.first().filter(|_| !self.gates.on(ALPHA_OPTIONS)) {
            return Err(refuse(
                &format!("--{flag}"),
                "needs the LoggingAlphaOptions feature gate, as in nvidia-k8s-ipam: add \
                 --feature-gates=LoggingAlphaOptions=true",
            ));
        }
        let mut warnings: Vec<String> = self
            .no_effect
            .iter()
            .map(|f| {
                format!("--{f} is accepted for compatibility with nvidia-k8s-ipam and has no effect here")
            })
            .collect();
        for r in self.config.vmodule.iter().filter(|r| !logging::vmodule_pattern_is_valid(&r.pattern)) {
            warnings.push(format!(
                "--vmodule pattern {:?} is not a valid glob and matches nothing (nvidia-k8s-ipam ignores it too)",
                r.pattern
            ));
        }
        Ok(Logging { config: self.config, warnings })
    }
}

/// `text` wrapped to `width` columns, continuation lines indented by `indent`.
fn wrap(text: &str, width: usize, indent: usize) -> String {
    let mut out = String::new();
    let mut col = indent;
    for word in text.split_whitespace() {
        if col > indent && col + 1 + word.len() > width {
            out.push('\n');
            out.push_str(&" ".repeat(indent));
            col = indent;
        } else if col > indent {
            out.push(' ');
            col += 1;
        }
        out.push_str(word);
        col += word.len();
    }
    out
}

/// The `--help` section of the component-base flags, the same for both programs.
pub fn help_section() -> String {
    const COLUMN: usize = 38;
    let mut out = String::from(
        "logging flags (component-base's, as the reference's daemons take them; any flag name may\n\
         use _ for -, e.g. --log_flush_frequency):\n",
    );
    for handling in [Honoured, NoEffect] {
        if handling == NoEffect {
            out.push_str("accepted for compatibility, no effect here (one warning each when given):\n");
        }
        for f in FLAGS.iter().filter(|f| f.source.shared() && f.handling == handling) {
            let short = f.short.map(|c| format!("-{c}, ")).unwrap_or_default();
            let left = format!("  {short}--{}{}", f.name, f.kind.placeholder());
            let pad = if left.len() < COLUMN { COLUMN - left.len() } else { 1 };
            let _ = writeln!(out, "{left}{}{}", " ".repeat(pad), wrap(f.here, 100, COLUMN));
        }
    }
    out
}

/// The docs table of `program`'s flags in the reference (docs/configure.md holds one per
/// program; a test keeps it equal to this).
pub fn markdown_table(program: Program) -> String {
    let mut out = String::from("| flag | value | registered by | here | example |\n|---|---|---|---|---|\n");
    for f in flags_of(program) {
        let short = f.short.map(|c| format!("`-{c}`, ")).unwrap_or_default();
        let what = match f.handling {
            Honoured => "honoured",
            NoEffect => "accepted, no effect, one warning",
        };
        let example = match (f.kind, f.example) {
            (Kind::Bool, "") => format!("`--{}`", f.name),
            (_, e) => format!("`--{}={e}`", f.name),
        };
        let _ = writeln!(
            out,
            "| {short}`--{}` | {} | {} | {what}: {} | {example} |",
            f.name,
            f.kind.doc(),
            f.source.doc(),
            f.here
        );
    }
    out
}

/// Every way pflag takes `f` with its example, as argument lists: `--f=V`, `--f V`, the name
/// with `_` for `-`, `-v V`, `-vV` and `-v=V` for the shorthand; a boolean bare, `=true` and
/// `=false` (pflag never takes the next argument as a boolean's value). Flags whose example
/// needs `LoggingAlphaOptions` bring the gate along.
#[cfg(test)]
pub(crate) fn spellings(f: &Flag) -> Vec<Vec<String>> {
    let long = format!("--{}", f.name);
    let underscored = format!("--{}", f.name.replace('-', "_"));
    let mut out: Vec<Vec<String>> = if f.kind == Kind::Bool {
        let v = if f.example.is_empty() { "true" } else { f.example };
        vec![
            vec![long.clone()],
            vec![format!("{long}=true")],
            vec![format!("{long}=false")],
            vec![format!("{underscored}={v}")],
        ]
    } else {
        let v = f.example.to_string();
        vec![vec![format!("{long}={v}")], vec![long.clone(), v.clone()], vec![underscored, v.clone()]]
    };
    if let Some(c) = f.short.filter(|_| f.kind != Kind::Bool) {
        let v = f.example;
        out.extend([vec![format!("-{c}"), v.into()], vec![format!("-{c}{v}")], vec![format!("-{c}={v}")]]);
    }
    if f.source == Source::Logs && f.handling == NoEffect && f.name != "log-flush-frequency" {
        for args in &mut out {
            args.push("--feature-gates=LoggingAlphaOptions=true".into());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::MAX_VERBOSITY;

    fn gates(values: &[&str]) -> Result<Gates, ValueError> {
        let mut g = Gates::default();
        for v in values {
            g.set(v)?;
        }
        Ok(g)
    }

    fn set_all(args: &[(&str, Option<&str>)]) -> Result<Logging, ValueError> {
        let mut l = LoggingFlags::default();
        for (name, v) in args {
            let f = logging_flag(name).unwrap_or_else(|| panic!("{name} is a logging flag"));
            l.set(f, &format!("--{name}"), v.map(OsString::from))?;
        }
        l.finish()
    }

    #[test]
    fn the_table_has_each_flag_once_per_program() {
        for p in [Program::Controller, Program::Node] {
            let names: Vec<&str> = flags_of(p).map(|f| f.name).collect();
            for (i, n) in names.iter().enumerate() {
                assert!(!names[i + 1..].contains(n), "{n} twice for {}", p.name());
                assert!(!n.contains('_') && !n.starts_with('-'), "{n}: normalized, without dashes");
            }
        }
        assert_eq!(flags_of(Program::Controller).count(), 18);
        assert_eq!(flags_of(Program::Node).count(), 28);
        for f in FLAGS {
            assert!(
                f.kind == Kind::Bool || !f.example.is_empty(),
                "{}: a flag that takes a value has an example",
                f.name
            );
        }
    }

    #[test]
    fn names_are_normalized_as_component_base_does() {
        use lexopt::Arg;
        assert_eq!(name(&Arg::Long("log_flush_frequency")).as_deref(), Some("log-flush-frequency"));
        assert_eq!(name(&Arg::Long("v")).as_deref(), Some("v"));
        assert_eq!(name(&Arg::Short('v')).as_deref(), Some("v"));
        assert_eq!(name(&Arg::Short('h')).as_deref(), Some("-h"));
        assert_eq!(name(&Arg::Value("x".into())), None);
        assert!(logging_flag("log-flush-frequency").is_some());
        assert!(logging_flag("node-name").is_none(), "program flags are the program's");
    }

    #[test]
    fn every_logging_flag_takes_its_example() {
        for f in FLAGS.iter().filter(|f| f.source.shared()) {
            let mut l = LoggingFlags::default();
            let v = (!f.example.is_empty()).then(|| OsString::from(f.example));
            l.set(f, f.name, v).unwrap_or_else(|e| panic!("{}: {e}", f.name));
            l.set(
                logging_flag("feature-gates").expect("row"),
                "--feature-gates",
                Some("LoggingAlphaOptions=true".into()),
            )
            .expect("gate");
            let out = l.finish().unwrap_or_else(|e| panic!("{}: {e}", f.name));
            let warned = out.warnings.iter().any(|w| w.starts_with(&format!("--{} ", f.name)));
            assert_eq!(warned, f.handling == NoEffect, "{}: {:?}", f.name, out.warnings);
        }
    }

    #[test]
    fn one_warning_per_flag_however_often_given() {
        let out = set_all(&[
            ("log-flush-frequency", Some("1s")),
            ("log-flush-frequency", Some("2s")),
            ("feature-gates", Some("")),
            ("v", Some("3")),
        ])
        .expect("ok");
        assert_eq!(
            out.warnings,
            [
                "--log-flush-frequency is accepted for compatibility with nvidia-k8s-ipam and has no effect here",
                "--feature-gates is accepted for compatibility with nvidia-k8s-ipam and has no effect here",
            ]
        );
        assert_eq!(out.config.verbosity, 3);
        assert_eq!(set_all(&[]).expect("none").warnings, Vec::<String>::new());
    }

    #[test]
    fn vmodule_syntax_as_component_base_parses_it() {
        let r = |p: &str, v| VModuleRule { pattern: p.into(), verbosity: v };
        assert_eq!(vmodule(""), Ok(vec![]));
        assert_eq!(vmodule("a=1,,b*=2,"), Ok(vec![r("a", 1), r("b*", 2)]));
        assert_eq!(vmodule("node::server=0"), Ok(vec![r("node::server", 0)]));
        assert_eq!(vmodule("x=2147483647"), Ok(vec![r("x", MAX_VERBOSITY)]), "at the limit");
        for bad in ["a", "a=", "=1", "a=b=1", "a=-1", "a=+1", "a=x", "a=2147483648", "a= 1", "a=1,b"] {
            let e = vmodule(bad).expect_err(bad);
            assert!(matches!(e, ValueError::VModule { .. }), "{bad}: {e}");
        }
        assert_eq!(
            vmodule("ok=1,store").expect_err("no N").to_string(),
            "--vmodule \"store\" is not PATTERN=N: use comma-separated entries such as server=2,store*=4 \
             (N from 0 to 2147483647)"
        );
        // Repeated flags add up, as pflag's vmodule value appends.
        let out = set_all(&[("vmodule", Some("a=1")), ("vmodule", Some("b=2"))]).expect("ok");
        assert_eq!(out.config.vmodule, [r("a", 1), r("b", 2)]);
    }

    #[test]
    fn vmodule_needs_the_text_format_and_malformed_globs_are_warned_about() {
        let e = set_all(&[("vmodule", Some("x=0")), ("logging-format", Some("json"))]).expect_err("json");
        assert_eq!(
            e.to_string(),
            "--vmodule: works only with --logging-format=text, as in nvidia-k8s-ipam: drop one of them"
        );
        assert!(set_all(&[("vmodule", Some("")), ("logging-format", Some("json"))]).is_ok(), "no entries");
        let out = set_all(&[("vmodule", Some("[x=2,ok=1"))]).expect("accepted");
        assert_eq!(
            out.warnings,
            [
                "--vmodule pattern \"[x\" is not a valid glob and matches nothing (nvidia-k8s-ipam ignores it too)"
            ]
        );
    }

    #[test]
    fn feature_gates_as_component_base_sets_them() {
        let g = gates(&[]).expect("none");
        assert!(!g.on(ALPHA_OPTIONS) && g.on(BETA_OPTIONS) && g.on("ContextualLogging"), "defaults");
        assert!(gates(&["LoggingAlphaOptions=true"]).expect("ok").on(ALPHA_OPTIONS));
        assert!(gates(&[" LoggingAlphaOptions = T ,"]).expect("trimmed").on(ALPHA_OPTIONS));
        assert!(
            !gates(&["LoggingAlphaOptions=1,LoggingAlphaOptions=0"]).expect("last wins").on(ALPHA_OPTIONS)
        );
        assert!(gates(&["AllAlpha=true"]).expect("ok").on(ALPHA_OPTIONS));
        assert!(!gates(&["AllAlpha=true,LoggingAlphaOptions=false"]).expect("ok").on(ALPHA_OPTIONS));
        assert!(!gates(&["LoggingAlphaOptions=false,AllAlpha=true"]).expect("ok").on(ALPHA_OPTIONS));
        assert!(!gates(&["AllBeta=false"]).expect("ok").on(BETA_OPTIONS));
        assert!(gates(&["AllBeta=false", "LoggingBetaOptions=true"]).expect("ok").on(BETA_OPTIONS));
        // A gate AllAlpha filled in stays when a later flag turns AllAlpha off (component-base
        // keeps the earlier state and AllAlpha only fills gates not set yet).
        assert!(gates(&["AllAlpha=true", "AllAlpha=false"]).expect("ok").on(ALPHA_OPTIONS));
        assert!(gates(&["", ",,"]).is_ok());
        for (bad, why) in [
            (
                "Nope=true",
                "unrecognized feature gate \"Nope\": use one of AllAlpha, AllBeta, ContextualLogging, LoggingAlphaOptions, LoggingBetaOptions",
            ),
            ("loggingalphaoptions=true", "unrecognized feature gate"),
            ("LoggingAlphaOptions", "missing =true or =false"),
            ("LoggingAlphaOptions=yes", "\"yes\" is not true or false"),
            ("LoggingAlphaOptions=", "\"\" is not true or false"),
        ] {
            let e = gates(&[bad]).expect_err(bad).to_string();
            assert!(e.starts_with(&format!("--feature-gates {bad:?}: {why}")), "{e}");
        }
    }

    #[test]
    fn the_references_checks_after_parsing() {
        let alpha = |flag: &str| {
            format!(
                "--{flag}: needs the LoggingAlphaOptions feature gate, as in nvidia-k8s-ipam: add \
                 --feature-gates=LoggingAlphaOptions=true"
            )
        };
        for (flag, v) in [
            ("log-text-split-stream", None),
            ("log-json-split-stream", Some("true")),
            ("log-text-info-buffer-size", Some("1")),
            ("log-json-info-buffer-size", Some("0.001")),
            ("log-json-info-buffer-size", Some("-1Ki")),
        ] {
            assert_eq!(set_all(&[(flag, v)]).expect_err(flag).to_string(), alpha(flag));
            assert!(set_all(&[(flag, v), ("feature-gates", Some("AllAlpha=true"))]).is_ok(), "{flag}");
        }
        for (flag, v) in [
            ("log-text-split-stream", Some("false")),
            ("log-json-info-buffer-size", Some("0")),
            ("log-text-info-buffer-size", Some("0Mi")),
            ("log-json-info-buffer-size", Some("-0.000")),
        ] {
            assert!(set_all(&[(flag, v)]).is_ok(), "{flag}={v:?}: off needs no gate");
        }
        assert_eq!(
            set_all(&[("log-flush-frequency", Some("0s"))]).expect_err("zero").to_string(),
            "--log-flush-frequency: must be more than 0, e.g. 5s"
        );
        assert!(set_all(&[("log-flush-frequency", Some("-1s"))]).is_err());
        assert!(set_all(&[("log-flush-frequency", Some("+1.5s"))]).is_ok(), "Go's sign");
        assert!(set_all(&[("log-flush-frequency", Some(" 1s"))]).is_err(), "Go takes no spaces");
        let max = "2562047h47m16.854775807s";
        assert!(set_all(&[("log-flush-frequency", Some(max))]).is_ok(), "Go's largest duration");
        assert!(
            set_all(&[("log-flush-frequency", Some("2562047h47m16.854775808s"))]).is_err(),
            "one ns over"
        );
        assert!(set_all(&[("logging-format", Some("json"))]).is_ok());
        assert_eq!(
            set_all(&[("logging-format", Some("json")), ("feature-gates", Some("LoggingBetaOptions=false"))])
                .expect_err("beta off")
                .to_string(),
            "--logging-format: json needs the LoggingBetaOptions feature gate, which --feature-gates turns off: \
             drop LoggingBetaOptions=false or use text"
        );
        assert!(set_all(&[("logging-format", Some("xml"))]).is_err());
        assert!(set_all(&[("v", Some("2147483648"))]).is_err());
    }

    #[test]
    fn quantities_as_apimachinery_parses_them() {
        // Checked against apimachinery v0.36.2's ParseQuantity over 36,000 generated strings.
        for (q, nonzero) in [
            ("0", false),
            ("000", false),
            ("+", false),
            ("-", false),
            (".", false),
            ("k", false),
            ("Ki", false),
            ("-.Ti", false),
            ("0.0", false),
            ("-0Ki", false),
            ("0e9", false),
            ("1", true),
            ("512", true),
            ("1.", true),
            (".5", true),
            ("-1", true),
            ("+2k", true),
            ("64Ki", true),
            ("1M", true),
            ("3Ei", true),
            ("100m", true),
            ("5n", true),
            ("7u", true),
            ("1e3", true),
            ("1E-3", true),
            ("1e+3", true),
            ("0.000001e-100", true),
            ("1e9223372036854775807", true),
            ("1e-9223372036854775808", true),
        ] {
            assert_eq!(quantity(q), Some(nonzero), "{q:?}");
        }
        for q in [
            "",
            " 1",
            "1 ",
            "1K",
            "1KB",
            "1kb",
            "1Mb",
            "1i",
            "1e",
            "1e+",
            "1E3.5",
            "1.2.3",
            "1..",
            "K",
            "x",
            "1x",
            "--1",
            "1ki",
            "1e9223372036854775808",
            "0x10",
            "1_000",
            "Pi",
            "Ei",
            ".Ei",
            "E-10",
            "-e-10",
        ] {
            assert_eq!(quantity(q), None, "{q:?}");
        }
        assert_eq!(
            set_all(&[("log-json-info-buffer-size", Some("1KB"))]).expect_err("bad").to_string(),
            "--log-json-info-buffer-size \"1KB\" is not a quantity: use e.g. 0, 512, 64Ki, 1M"
        );
    }

    #[test]
    fn help_lists_every_logging_flag_and_says_which_have_no_effect() {
        let h = help_section();
        let (honoured, rest) = h.split_once("accepted for compatibility").expect("two parts");
        for f in FLAGS.iter().filter(|f| f.source.shared()) {
            let part = if f.handling == Honoured { honoured } else { rest };
            assert!(part.contains(&format!("--{}{}", f.name, f.kind.placeholder())), "{}:\n{h}", f.name);
        }
        assert!(h.contains("-v, --v N"));
        assert!(h.lines().all(|l| l.len() <= 110), "{h}");
    }

    #[test]
    fn the_docs_tables_are_these() {
        let docs = include_str!("../docs/configure.md");
        for p in [Program::Controller, Program::Node] {
            let table = markdown_table(p);
            assert!(
                docs.contains(&table),
                "docs/configure.md must hold the {} table exactly as upstream_flags::markdown_table \
                 makes it:\n{table}",
                p.name()
            );
        }
    }
}
