//! A node as a tenant's network config sees it: the real `ipam-node` daemon, and the real
//! `nv-ipam` plugin run as root in a private mount namespace in which `/etc`, `/var/log`,
//! `/var/lib` and `/root` are directories of the test's sandbox. The plugin's built-in defaults
//! (`/etc/cni/net.d/nv-ipam.d`, `/var/log/nv-ipam-cni.log`, `/var/lib/cni/nv-ipam/daemon.sock`)
//! and an attacker's favourite targets (`/root/.ssh/authorized_keys`, `/var/log/secure`) are
//! then real paths the test can set up and inspect, without touching the host's files.
//!
//! The mounts exist only in the plugin's own mount namespace (`unshare --mount`), so they
//! vanish with the process. `/tmp` is not covered: paths under the sandbox are the same inside.
//! The daemon itself runs outside, on the sandbox paths.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::daemon::Daemon;
use super::{CniOut, attachment_env, nv_ipam_bin};

/// How long one plugin call may take before the test calls it hung (it is killed then).
pub const CALL_DEADLINE: Duration = Duration::from_secs(20);

/// The mounts, then the plugin. Paths come in as positional arguments, never spliced into the
/// script text. `/etc` goes last: `mount` itself reads files there.
const SCRIPT: &str = r#"set -e
r=$1; shift
mount --bind "$r/var-log" /var/log
mount --bind "$r/var-lib" /var/lib
mount --bind "$r/root" /root
mount --bind "$r/etc" /etc
cd "$r/cwd"
exec "$@"
"#;

/// The host directories the namespace replaces, with the sandbox directory that stands in.
const MOUNTS: [(&str, &str); 4] =
    [("/etc", "etc"), ("/var/log", "var-log"), ("/var/lib", "var-lib"), ("/root", "root")];

pub struct HostNode {
    pub daemon: Daemon,
    /// The sandbox directory holding `etc`, `var-log`, `var-lib`, `root` and `cwd`.
    pub root: PathBuf,
}

/// `authorized_keys` as the test lays it out: what an attacker wants to append to.
pub const AUTHORIZED_KEYS: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAdminKeyOnly admin@node\n";

impl HostNode {
    /// Starts `ipam-node` with `pools`, its socket at the sandbox's
    /// `/var/lib/cni/nv-ipam/daemon.sock`, and writes the node's `nv-ipam.conf` into the
    /// sandbox's `/etc/cni/net.d/nv-ipam.d` with the defaults' paths, as a node does.
    pub fn start(pools: &str) -> HostNode {
        let mut daemon = Daemon::prepare(pools, "node1", None);
        let root = daemon.sandbox.dir.clone();
        for d in ["etc/cni/net.d/nv-ipam.d", "var-log", "var-lib/cni/nv-ipam", "root/.ssh", "cwd"] {
            fs::create_dir_all(root.join(d)).expect("create the node layout");
        }
        for d in ["etc", "etc/cni", "etc/cni/net.d", "etc/cni/net.d/nv-ipam.d", "var-log", "var-lib", "cwd"] {
            fs::set_permissions(root.join(d), fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        fs::set_permissions(root.join("root"), fs::Permissions::from_mode(0o700)).expect("chmod");
        fs::set_permissions(root.join("root/.ssh"), fs::Permissions::from_mode(0o700)).expect("chmod");
        let keys = root.join("root/.ssh/authorized_keys");
        fs::write(&keys, AUTHORIZED_KEYS).expect("write authorized_keys");
        fs::set_permissions(&keys, fs::Permissions::from_mode(0o600)).expect("chmod");

        daemon.socket = root.join("var-lib/cni/nv-ipam/daemon.sock");
        daemon.conf_dir = root.join("etc/cni/net.d/nv-ipam.d");
        daemon.cni_log = root.join("var-log/nv-ipam-cni.log");
        daemon.spawn();
        // What ipam-node writes with its default flags (it wrote the sandbox paths at start).
        let conf = nv_ipam::node::install::PluginConf {
            daemon_socket: "unix:///var/lib/cni/nv-ipam/daemon.sock".into(),
            daemon_call_timeout_seconds: 5,
            log_file: "/var/log/nv-ipam-cni.log".into(),
            log_level: "debug".into(),
            force_pool_name: false,
        };
        nv_ipam::node::install::write_conf(&daemon.conf_dir, &conf).expect("write the node's nv-ipam.conf");
        HostNode { daemon, root }
    }

    /// Where the plugin's `path` (under `/etc`, `/var/log`, `/var/lib` or `/root`) is on the
    /// host; any other path is itself.
    pub fn host(&self, path: &str) -> PathBuf {
        for (inside, dir) in MOUNTS {
            if let Some(rest) = path.strip_prefix(inside)
                && (rest.is_empty() || rest.starts_with('/'))
            {
                return self.root.join(dir).join(rest.trim_start_matches('/'));
            }
        }
        PathBuf::from(path)
    }

    /// The node-configured plugin log (`/var/log/nv-ipam-cni.log` inside).
    pub fn node_log(&self) -> String {
        fs::read_to_string(self.host("/var/log/nv-ipam-cni.log")).unwrap_or_default()
    }

    /// The plugin's working directory (a relative path would land here).
    pub fn cwd(&self) -> PathBuf {
        self.root.join("cwd")
    }

    /// Runs `nv-ipam` inside the node's namespace with `cmd` and the usual attachment
    /// environment for `container`, plus `extra` variables (which replace the usual ones).
    /// Never hangs the test: after [`CALL_DEADLINE`] the plugin is killed and `exit` is -1.
    pub fn plugin(&self, cmd: &str, config: &Value, container: &str, extra: &[(&str, &str)]) -> CniOut {
        let mut env = attachment_env(container, "eth0");
        for (k, v) in extra {
            match env.iter_mut().find(|(key, _)| key == k) {
                Some(e) => e.1 = v.to_string(),
                None => env.push((k.to_string(), v.to_string())),
            }
        }
        let stdin = serde_json::to_vec(config).expect("serialise the config");
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c", SCRIPT, "sh"])
            .arg(&self.root)
            .arg(nv_ipam_bin())
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", cmd)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("run unshare");
        let mut w = child.stdin.take().expect("stdin piped");
        let feeder = std::thread::spawn(move || {
            let _ = w.write_all(&stdin);
        });
        let mut out = child.stdout.take().expect("stdout piped");
        let mut err = child.stderr.take().expect("stderr piped");
        let reader = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = out.read_to_end(&mut s);
            s
        });
        let err_reader = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = err.read_to_end(&mut s);
            s
        });
        let exit =
            super::wait::exit_within(&mut child, CALL_DEADLINE).map_or(-1, |st| st.code().unwrap_or(-1));
        let _ = feeder.join();
        let stdout = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
        let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
        let vars: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        CniOut {
            exit,
            json: serde_json::from_str(stdout.trim()).unwrap_or(Value::Null),
            stdout,
            stderr,
            call: format!("nv-ipam (node namespace) CNI_COMMAND={cmd} {} <<< {config}", vars.join(" ")),
        }
    }
}

/// Everything about a path that an append, a create or a replacement would change: kind,
/// owner, mode, size, content (files) or entry names (directories); `None` when absent.
pub fn snapshot(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::symlink_metadata(path).ok()?;
    let body = if m.file_type().is_symlink() {
        format!("-> {}", fs::read_link(path).map(|p| p.display().to_string()).unwrap_or_default())
    } else if m.is_dir() {
        let mut names: Vec<String> = fs::read_dir(path)
            .map(|rd| {
                rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect()
            })
            .unwrap_or_default();
        names.sort();
        names.join(",")
    } else if m.is_file() {
        String::from_utf8_lossy(&fs::read(path).unwrap_or_default()).into_owned()
    } else {
        String::new()
    };
    Some(format!(
        "{:?} uid={} mode={:o} nlink={} size={} {body}",
        m.file_type(),
        m.uid(),
        m.mode(),
        m.nlink(),
        m.size()
    ))
}
