//! A tenant's network config against the real plugin, run as root the way a runtime runs it,
//! on a node laid out as a real one ([`HostNode`]: the plugin's defaults, `/var/log` and
//! `/root/.ssh/authorized_keys` are real paths in its mount namespace). Each hostile
//! `ipam.logFile`, `ipam.confDir` or `ipam.daemonSocket` must leave its target untouched, the
//! call must behave as without the hostile field, and the node log must say so in exactly one
//! warning line; every value that reaches a log line stays on its line, escaped.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use common::hostnode::{AUTHORIZED_KEYS, HostNode, snapshot};
use common::{CniOut, sh};
use serde_json::{Value, json};

/// One IPPool `p` with 99 addresses for node1 (10.1.0.2-10.1.0.100).
const POOLS: &str = "
apiVersion: nv-ipam.nvidia.com/v1alpha1
kind: IPPool
metadata:
  name: p
  namespace: kube-system
spec:
  subnet: 10.1.0.0/24
  perNodeBlockSize: 100
  gateway: 10.1.0.1
status:
  allocations:
  - nodeName: node1
    startIP: 10.1.0.1
    endIP: 10.1.0.100
";

/// A NetworkAttachmentDefinition's config as a tenant writes it, with `extra` ipam fields.
fn nad(extra: Value) -> Value {
    let mut ipam = json!({"type": "nv-ipam", "poolName": "p"});
    if let (Value::Object(i), Value::Object(more)) = (&mut ipam, extra) {
        i.extend(more);
    }
    json!({"cniVersion": "1.0.0", "name": "net1", "type": "macvlan", "master": "eth0", "ipam": ipam})
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ LEVEL ` at the start of a line: the line begins a record.
fn is_record_start(line: &str) -> bool {
    let b = line.as_bytes();
    if b.len() < 26 {
        return false;
    }
    let shape = b"dddd-dd-ddTdd:dd:dd.dddZ ";
    let ts_ok = shape.iter().zip(b).all(|(s, c)| if *s == b'd' { c.is_ascii_digit() } else { s == c });
    let level = &line[25..];
    ts_ok && ["TRACE", "DEBUG", "INFO ", "WARN ", "ERROR"].iter().any(|l| level.starts_with(l))
}

/// A control, line-separator or bidi character: none may reach a log file raw.
fn is_raw_control(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Every line of `text` is one record and holds no raw control character.
fn assert_records(what: &str, text: &str) {
    for line in text.lines() {
        assert!(
            is_record_start(line),
            "{what}: a line that is not a record: {line:?}\n--- whole log:\n{text}"
        );
        assert!(!line.chars().any(is_raw_control), "{what}: a raw control character in {line:?}");
    }
    assert!(text.is_empty() || text.ends_with('\n'), "{what}: the last record is cut: {text:?}");
}

/// The node log's lines written since it was `before` bytes long.
fn lines_since(node: &HostNode, before: usize) -> Vec<String> {
    node.node_log().get(before..).unwrap_or_default().lines().map(str::to_string).collect()
}

fn warnings(lines: &[String]) -> Vec<&String> {
    lines.iter().filter(|l| l.get(25..).is_some_and(|r| r.starts_with("WARN"))).collect()
}

fn one_address(out: &CniOut) -> String {
    let a = out.addresses();
    assert_eq!(a.len(), 1, "one address: {out}");
    assert!(a[0].starts_with("10.1.0."), "from pool p: {out}");
    a[0].clone()
}

/// One hostile value: the call succeeds as without it, the `watch`ed paths do not change,
/// and the node log gains exactly one warning, naming `field`.
struct Case {
    label: &'static str,
    field: &'static str,
    ipam: Value,
    watch: Vec<PathBuf>,
}

fn expect_ignored(node: &HostNode, n: usize, case: &Case, also: &dyn Fn(&CniOut)) {
    let before: Vec<_> = case.watch.iter().map(|p| snapshot(p)).collect();
    let log_len = node.node_log().len();
    let out = node.plugin("ADD", &nad(case.ipam.clone()), &format!("hostile{n}"), &[]);
    assert_ne!(out.exit, -1, "{}: the plugin hung:\n{out}", case.label);
    assert_eq!(out.exit, 0, "{}: the call must succeed as without the field:\n{out}", case.label);
    one_address(&out);
    for (p, b) in case.watch.iter().zip(&before) {
        assert_eq!(&snapshot(p), b, "{}: {} changed", case.label, p.display());
    }
    let lines = lines_since(node, log_len);
    let warned = warnings(&lines);
    assert_eq!(warned.len(), 1, "{}: exactly one warning in the node log, got {lines:#?}", case.label);
    assert!(
        warned[0].contains(case.field),
        "{}: the warning names {}: {}",
        case.label,
        case.field,
        warned[0]
    );
    assert!(out.stderr.is_empty(), "{}: nothing on stderr: {}", case.label, out.stderr);
    also(&out);
    assert_records("node log", &node.node_log());
}

fn mkfifo(path: &Path) {
    sh("mkfifo", &["-m", "0600", &path.display().to_string()]);
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn write_mode(path: &Path, body: &str, mode: u32) {
    fs::write(path, body).unwrap();
    chmod(path, mode);
}

/// uid/gid 65534 ("nobody"): any uid but root.
const NOBODY: u32 = 65534;

#[test]
fn tenant_cannot_append_a_key_to_root_authorized_keys() {
    // The reported attack: logFile names authorized_keys, poolName carries the line to add.
    let node = HostNode::start(POOLS);
    let keys = node.host("/root/.ssh/authorized_keys");
    let evil_pool = "p\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAttackerKey attacker@evil";
    let baseline = node.plugin("ADD", &nad(json!({"poolName": evil_pool})), "base", &[]);
    let log_len = node.node_log().len();
    let out = node.plugin(
        "ADD",
        &nad(json!({"poolName": evil_pool, "logFile": "/root/.ssh/authorized_keys", "logLevel": "debug"})),
        "attack",
        &[],
    );
    assert_eq!(fs::read_to_string(&keys).unwrap(), AUTHORIZED_KEYS, "authorized_keys changed");
    assert_eq!(
        (out.exit, &out.json["code"]),
        (baseline.exit, &baseline.json["code"]),
        "as without logFile:\n{out}"
    );
    let lines = lines_since(&node, log_len);
    let warned = warnings(&lines);
    assert_eq!(warned.len(), 1, "one warning: {lines:#?}");
    assert!(
        warned[0].contains("ipam.logFile") && warned[0].contains("/root/.ssh/authorized_keys"),
        "{}",
        warned[0]
    );
    assert_records("node log", &node.node_log());
    assert!(
        !node.node_log().lines().any(|l| l.starts_with("ssh-ed25519")),
        "a forged line in the node log:\n{}",
        node.node_log()
    );
    assert!(
        node.node_log().contains("p\\nssh-ed25519"),
        "the pool name is logged escaped:\n{}",
        node.node_log()
    );
}

#[test]
fn hostile_log_files_change_nothing() {
    let node = HostNode::start(POOLS);
    let keys = node.host("/root/.ssh/authorized_keys");
    let var_log = node.host("/var/log");
    // The baseline creates the node log; later ADDs append to it.
    one_address(&node.plugin("ADD", &nad(json!({})), "baseline", &[]).ok());

    symlink("/root/.ssh/authorized_keys", node.host("/var/log/nv-ipam-link.log")).unwrap();
    symlink("/root/.ssh/nowhere", node.host("/var/log/nv-ipam-dangling.log")).unwrap();
    mkfifo(&node.host("/var/log/nv-ipam-fifo.log"));
    fs::create_dir(node.host("/var/log/nv-ipam-dir.log")).unwrap();
    write_mode(&node.host("/var/log/nv-ipam-shared.log"), "someone else's\n", 0o644);
    write_mode(&node.host("/var/log/nv-ipam-nobody.log"), "nobody's\n", 0o600);
    std::os::unix::fs::chown(node.host("/var/log/nv-ipam-nobody.log"), Some(NOBODY), Some(NOBODY)).unwrap();
    fs::hard_link(&keys, node.host("/var/log/nv-ipam-hard.log")).unwrap();
    // RHEL's security log is root-owned 0600, exactly like ours: the name tells them apart.
    write_mode(&node.host("/var/log/secure"), "Dec  6 00:00:00 node sshd[1]: Accepted publickey\n", 0o600);
    write_mode(&node.host("/var/log/syslog"), "Dec  6 00:00:00 node kernel: up\n", 0o640);
    fs::create_dir(node.host("/var/log/sub")).unwrap();
    chmod(&node.host("/var/log/sub"), 0o755);

    let case = |label, value: &str, watch: Vec<PathBuf>| Case {
        label,
        field: "ipam.logFile",
        ipam: json!({"logFile": value}),
        watch: [watch, vec![keys.clone(), var_log.clone()]].concat(),
    };
    let cases = [
        case("outside the node's log dir", "/root/.ssh/authorized_keys", vec![]),
        case(
            "symlink to authorized_keys",
            "/var/log/nv-ipam-link.log",
            vec![node.host("/var/log/nv-ipam-link.log")],
        ),
        case("dangling symlink", "/var/log/nv-ipam-dangling.log", vec![node.host("/root/.ssh")]),
        case(
            "FIFO without a reader",
            "/var/log/nv-ipam-fifo.log",
            vec![node.host("/var/log/nv-ipam-fifo.log")],
        ),
        case("directory", "/var/log/nv-ipam-dir.log", vec![node.host("/var/log/nv-ipam-dir.log")]),
        case(
            "world-readable file",
            "/var/log/nv-ipam-shared.log",
            vec![node.host("/var/log/nv-ipam-shared.log")],
        ),
        case(
            "file of another uid",
            "/var/log/nv-ipam-nobody.log",
            vec![node.host("/var/log/nv-ipam-nobody.log")],
        ),
        case("hard link to authorized_keys", "/var/log/nv-ipam-hard.log", vec![]),
        case("root-only system log", "/var/log/secure", vec![node.host("/var/log/secure")]),
        case("group-readable system log", "/var/log/syslog", vec![node.host("/var/log/syslog")]),
        case("dot-dot traversal", "/var/log/../../root/.ssh/authorized_keys", vec![]),
        case("dot component", "/var/log/./nv-ipam-dot.log", vec![]),
        case("empty component", "/var/log//nv-ipam-double.log", vec![]),
        case("trailing slash", "/var/log/nv-ipam-slash.log/", vec![]),
        case("relative path", "nv-ipam-relative.log", vec![node.cwd()]),
        case("subdirectory", "/var/log/sub/nv-ipam.log", vec![node.host("/var/log/sub")]),
        case("newline in the name", "/var/log/nv-ipam\nforged.log", vec![]),
    ];
    for (n, c) in cases.iter().enumerate() {
        expect_ignored(&node, n, c, &|_| {});
    }
}

#[test]
fn a_tenant_log_file_inside_the_node_log_dir_is_used() {
    let node = HostNode::start(POOLS);
    let log_len = node.node_log().len();
    let out = node.plugin("ADD", &nad(json!({"logFile": "/var/log/nv-ipam-mynet.log"})), "c1", &[]).ok();
    let ip = one_address(&out);
    let mine = node.host("/var/log/nv-ipam-mynet.log");
    let text = fs::read_to_string(&mine).unwrap();
    assert!(text.contains(&format!("ips={ip}")), "the tenant's log has the record: {text}");
    assert_records("tenant log", &text);
    let mode = fs::metadata(&mine).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "created root-only");
    assert_eq!(lines_since(&node, log_len), Vec::<String>::new(), "nothing to warn about");
    // Appended to on the next call (root-owned, 0600, one link: the plugin's own file).
    node.plugin("ADD", &nad(json!({"logFile": "/var/log/nv-ipam-mynet.log"})), "c2", &[]).ok();
    let again = fs::read_to_string(&mine).unwrap();
    assert!(again.starts_with(&text) && again.len() > text.len(), "appended: {again}");
    // Naming the node's own log is the node's log.
    let out = node.plugin("ADD", &nad(json!({"logFile": "/var/log/nv-ipam-cni.log"})), "c3", &[]).ok();
    assert!(node.node_log().contains(&format!("ips={}", one_address(&out))));
    assert!(warnings(&lines_since(&node, log_len)).is_empty(), "{}", node.node_log());
}

/// A listener that records whether anything dialled it.
struct Trap {
    listener: UnixListener,
}

impl Trap {
    fn at(path: &Path) -> Trap {
        let listener = UnixListener::bind(path).unwrap();
        listener.set_nonblocking(true).unwrap();
        Trap { listener }
    }
    fn dialled(&self) -> bool {
        self.listener.accept().is_ok()
    }
}

#[test]
fn hostile_daemon_sockets_are_never_dialled() {
    let node = HostNode::start(POOLS);
    one_address(&node.plugin("ADD", &nad(json!({})), "baseline", &[]).ok());
    let evil = node.root.join("evil");
    fs::create_dir(&evil).unwrap();
    fs::create_dir(node.host("/var/lib/cni/nv-ipam/sub")).unwrap();
    let traps = [
        (
            Trap::at(&evil.join("evil.sock")),
            format!("unix://{}", evil.join("evil.sock").display()),
            "outside",
        ),
        (
            Trap::at(&node.host("/var/lib/cni/evil.sock")),
            "/var/lib/cni/nv-ipam/../evil.sock".into(),
            "dot-dot",
        ),
        (Trap::at(&node.cwd().join("evil.sock")), "evil.sock".into(), "relative"),
        (
            Trap::at(&node.host("/var/lib/cni/nv-ipam/sub/evil.sock")),
            "/var/lib/cni/nv-ipam/sub/evil.sock".into(),
            "subdir",
        ),
    ];
    for (n, (trap, value, label)) in traps.iter().enumerate() {
        let c =
            Case { label, field: "ipam.daemonSocket", ipam: json!({"daemonSocket": value}), watch: vec![] };
        expect_ignored(&node, n, &c, &|_| {});
        assert!(!trap.dialled(), "{label}: the plugin dialled {value}");
    }
    // A socket in the node's socket dir is honoured: this one accepts and never answers.
    let other = Trap::at(&node.host("/var/lib/cni/nv-ipam/other.sock"));
    let out = node.plugin(
        "ADD",
        &nad(
            json!({"daemonSocket": "unix:///var/lib/cni/nv-ipam/other.sock", "daemonCallTimeoutSeconds": 1}),
        ),
        "other",
        &[],
    );
    assert_eq!(out.json["code"], 11, "{out}");
    assert!(other.dialled(), "a socket in the node's socket dir is used");
}

/// The conf file a tenant would like the plugin to read: its log and socket are the attacker's.
fn evil_conf(evil: &Path) -> String {
    json!({"daemonSocket": format!("unix://{}", evil.join("evil.sock").display()),
           "logFile": evil.join("nv-ipam-evil.log"), "logLevel": "debug"})
    .to_string()
}

#[test]
fn hostile_conf_dirs_are_ignored() {
    let node = HostNode::start(POOLS);
    one_address(&node.plugin("ADD", &nad(json!({})), "baseline", &[]).ok());
    let evil = node.root.join("evil");
    fs::create_dir(&evil).unwrap();
    let trap = Trap::at(&evil.join("evil.sock"));
    let confs = node.root.join("confs");
    fs::create_dir(&confs).unwrap();
    chmod(&confs, 0o755);
    let body = evil_conf(&evil);
    // A directory holding nv-ipam.conf, both root-owned and made with `dir_mode`/`file_mode`.
    let conf_dir = |name: &str, dir_mode: u32, file_mode: u32| -> PathBuf {
        let d = confs.join(name);
        fs::create_dir_all(&d).unwrap();
        chmod(&d, dir_mode);
        write_mode(&d.join("nv-ipam.conf"), &body, file_mode);
        d
    };
    // Root-administered and honoured if named directly; reached through the wrong ways below.
    let good = conf_dir("good.d", 0o755, 0o600);
    symlink(&good, confs.join("link.d")).unwrap();
    conf_dir("ww.d", 0o777, 0o600);
    let nobody = conf_dir("nobody.d", 0o755, 0o600);
    std::os::unix::fs::chown(&nobody, Some(NOBODY), Some(NOBODY)).unwrap();
    fs::create_dir(confs.join("wwparent")).unwrap();
    chmod(&confs.join("wwparent"), 0o777);
    conf_dir("wwparent/nv-ipam.d", 0o755, 0o600);
    conf_dir("groupw.d", 0o755, 0o664);
    let nobody_file = conf_dir("nobodyfile.d", 0o755, 0o600);
    std::os::unix::fs::chown(nobody_file.join("nv-ipam.conf"), Some(NOBODY), Some(NOBODY)).unwrap();
    let linkfile = confs.join("linkfile.d");
    fs::create_dir(&linkfile).unwrap();
    symlink(good.join("nv-ipam.conf"), linkfile.join("nv-ipam.conf")).unwrap();
    let fifo = confs.join("fifo.d");
    fs::create_dir(&fifo).unwrap();
    mkfifo(&fifo.join("nv-ipam.conf"));
    let dirfile = confs.join("dirfile.d");
    fs::create_dir_all(dirfile.join("nv-ipam.conf")).unwrap();
    fs::create_dir(confs.join("empty.d")).unwrap();
    let big = confs.join("big.d");
    fs::create_dir(&big).unwrap();
    let padded = format!("{}{}", body, " ".repeat(nv_ipam::cni::config::MAX_CONF_FILE_BYTES as usize));
    write_mode(&big.join("nv-ipam.conf"), &padded, 0o600);
    let cwd_good = node.cwd().join("good.d");
    fs::create_dir(&cwd_good).unwrap();
    write_mode(&cwd_good.join("nv-ipam.conf"), &body, 0o600);

    let dir = |p: &Path| p.display().to_string();
    let cases: Vec<(&str, String)> = vec![
        ("symlinked dir", dir(&confs.join("link.d"))),
        ("world-writable dir", dir(&confs.join("ww.d"))),
        ("dir of another uid", dir(&nobody)),
        ("world-writable, not sticky ancestor", dir(&confs.join("wwparent/nv-ipam.d"))),
        ("group-writable file", dir(&confs.join("groupw.d"))),
        ("file of another uid", dir(&nobody_file)),
        ("symlinked file", dir(&linkfile)),
        ("FIFO file", dir(&fifo)),
        ("directory file", dir(&dirfile)),
        ("no nv-ipam.conf", dir(&confs.join("empty.d"))),
        ("file over the size limit", dir(&big)),
        ("dot-dot", format!("{}/../confs/good.d", confs.display())),
        ("relative", "good.d".into()),
        ("missing", dir(&confs.join("none.d"))),
        ("trailing slash", format!("{}/", good.display())),
    ];
    for (n, (label, value)) in cases.iter().enumerate() {
        let c =
            Case { label, field: "ipam.confDir", ipam: json!({"confDir": value}), watch: vec![evil.clone()] };
        expect_ignored(&node, n, &c, &|_| {});
        assert!(!trap.dialled(), "{label}: the evil conf's socket was dialled");
    }
    // The same conf reached properly is the admin's choice: honoured, so its socket is dialled.
    let out =
        node.plugin("ADD", &nad(json!({"confDir": dir(&good), "daemonCallTimeoutSeconds": 1})), "good", &[]);
    assert_eq!(out.json["code"], 11, "the good conf's (stand-in) socket was used: {out}");
    assert!(trap.dialled(), "a root-administered confDir is honoured");
}

#[test]
fn a_root_administered_conf_dir_selects_the_node_values() {
    // As the test cluster's NADs do: confDir under a root-owned harness dir in /tmp (sticky).
    let node = HostNode::start(POOLS);
    let alt = node.root.join("harness/nv-ipam.d");
    let alt_log = node.root.join("harness/logs");
    fs::create_dir_all(&alt).unwrap();
    fs::create_dir_all(&alt_log).unwrap();
    let conf = json!({"daemonSocket": format!("unix://{}", node.host("/var/lib/cni/nv-ipam/daemon.sock").display()),
                      "logFile": alt_log.join("nv-ipam-cni.log"), "logLevel": "info"});
    write_mode(&alt.join("nv-ipam.conf"), &conf.to_string(), 0o644);
    let log_len = node.node_log().len();
    let base = json!({"confDir": alt.display().to_string()});
    let out = node.plugin("ADD", &nad(base.clone()), "c1", &[]).ok();
    let ip = one_address(&out);
    let text = fs::read_to_string(alt_log.join("nv-ipam-cni.log")).unwrap();
    assert!(text.contains(&format!("ips={ip}")), "logged where that conf says: {text}");
    // A tenant log file inside that conf's log dir is honoured too.
    let mut mine = base.clone();
    mine["logFile"] = json!(alt_log.join("nv-ipam-mine.log"));
    node.plugin("ADD", &nad(mine), "c2", &[]).ok();
    assert!(fs::read_to_string(alt_log.join("nv-ipam-mine.log")).unwrap().contains("allocated"));
    // ... but not one inside the default's log dir: that conf moved the log away from it.
    let mut default_dir = base;
    default_dir["logFile"] = json!("/var/log/nv-ipam-x.log");
    node.plugin("ADD", &nad(default_dir), "c3", &[]).ok();
    assert!(!node.host("/var/log/nv-ipam-x.log").exists());
    let alt_text = fs::read_to_string(alt_log.join("nv-ipam-cni.log")).unwrap();
    assert_eq!(warnings(&alt_text.lines().map(str::to_string).collect::<Vec<_>>()).len(), 1, "{alt_text}");
    assert_eq!(node.node_log().len(), log_len, "the default node log is not that conf's log");
}

#[test]
fn tenant_values_are_escaped_in_every_log_line() {
    let node = HostNode::start(POOLS);
    one_address(&node.plugin("ADD", &nad(json!({})), "baseline", &[]).ok());
    let forged = "\n2026-01-01T00:00:00.000Z INFO  nv_ipam: forged\u{1b}[2J\r\u{2028}\u{202e}x\u{7f}";
    let baseline = node.plugin("ADD", &nad(json!({"poolName": "nope"})), "b1", &[]);
    let out = node.plugin("ADD", &nad(json!({"poolName": format!("p{forged}")})), "e1", &[]);
    assert_eq!((out.exit, &out.json["code"]), (baseline.exit, &baseline.json["code"]), "{out}");
    // A pod name that is no Kubernetes name is dropped (ipam-node puts it in an API path),
    // with one warning; the ADD succeeds as without it.
    let before = node.node_log().len();
    let pod = format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=pod{forged}?watch=1;K8S_POD_UID=u");
    node.plugin("ADD", &nad(json!({})), "e2", &[("CNI_ARGS", &pod)]).ok();
    let warned = warnings(&lines_since(&node, before)).into_iter().cloned().collect::<Vec<_>>();
    assert_eq!(warned.len(), 1, "{warned:#?}");
    assert!(warned[0].contains("ignoring CNI_ARGS K8S_POD_NAME="), "{}", warned[0]);
    let store = String::from_utf8_lossy(&node.daemon.store_bytes()).into_owned();
    assert!(store.contains("e2") && !store.contains("watch=1"), "stored without the pod name: {store}");
    let out =
        node.plugin("ADD", &nad(json!({"logFile": format!("/var/log/nv-ipam{forged}.log")})), "e3", &[]);
    one_address(&out.ok());
    let log = node.node_log();
    assert_records("node log", &log);
    for escaped in ["\\n2026-01-01", "\\x1b[2J", "\\r", "\\u{2028}", "\\u{202e}", "\\x7f"] {
        assert!(log.contains(escaped), "{escaped} in the node log:\n{log}");
    }
    assert_records("ipam-node stderr", &node.daemon.stderr());
    assert!(
        node.daemon.stderr().contains("forged"),
        "the daemon logged the pool name:\n{}",
        node.daemon.stderr()
    );
}

#[test]
fn a_symlinked_node_log_is_not_followed_either() {
    // Only root can plant it, but the plugin still never writes through a symlink.
    let node = HostNode::start(POOLS);
    let keys = node.host("/root/.ssh/authorized_keys");
    symlink("/root/.ssh/authorized_keys", node.host("/var/log/nv-ipam-cni.log")).unwrap();
    let out = node.plugin("ADD", &nad(json!({"poolName": "p"})), "c1", &[]).ok();
    one_address(&out);
    assert_eq!(fs::read_to_string(&keys).unwrap(), AUTHORIZED_KEYS);
    assert!(out.stderr.contains("/var/log/nv-ipam-cni.log"), "says why, on stderr: {}", out.stderr);
    assert_records("plugin stderr", &out.stderr);
}
