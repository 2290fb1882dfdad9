//! Host install at start: the `nv-ipam` plugin binary into the CNI bin dir and its config file
//! `<cni-conf-dir>/nv-ipam.conf`, each atomically (`crate::replace`) so that a runtime
//! never executes or reads a half-written file.
//!
//! The conf file is what the plugin trusts to fix the directories a tenant's `ipam.logFile`
//! and `ipam.daemonSocket` may name (`cni::paths`), and a NetworkAttachmentDefinition may
//! select it by `ipam.confDir`, which the plugin honours only for a root-owned file (not
//! writable by group/other) in root-owned directories: so it is written 0600 by root, in
//! directories created 0755, never through a symlink.
//!
//! Owns: those two files. Must not: touch anything else on the host.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::replace;

#[derive(Debug)]
pub struct InstallError {
    pub action: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

impl fmt::Display for InstallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cni install: cannot {} {}: {}; check the --cni-* flags and the host mounts, or skip the step with --cni-skip-nv-ipam-binary-copy / --cni-skip-nv-ipam-config-creation",
            self.action,
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for InstallError {}

/// The plugin settings ipam-node writes for `nv-ipam` (reference field names).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginConf {
    pub daemon_socket: String,
    pub daemon_call_timeout_seconds: u64,
    pub log_file: String,
    pub log_level: String,
    pub force_pool_name: bool,
}

fn write_atomically(
    dest: &Path,
    mode: u32,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), InstallError> {
    let err = |action, source| InstallError { action, path: dest.to_path_buf(), source };
    let dir = replace::parent_dir(dest);
    // 0755 (less if the umask says so): the plugin refuses a confDir others can write.
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| err("create the directory of", e))?;
    // A leftover temp file of a killed run is replaced; the new one never follows a symlink.
    replace::write(dest, ".nv-ipam-tmp", mode, fill).map_err(|e| err("write", e))
}

/// Copies the plugin binary `src` to `<bin_dir>/nv-ipam` (mode 0755).
pub fn install_binary(src: &Path, bin_dir: &Path) -> Result<PathBuf, InstallError> {
    let dest = bin_dir.join("nv-ipam");
    let mut input =
        File::open(src).map_err(|source| InstallError { action: "read", path: src.to_path_buf(), source })?;
    write_atomically(&dest, 0o755, |f| io::copy(&mut input, f).map(|_| ()))?;
    Ok(dest)
}

/// Writes `<conf_dir>/nv-ipam.conf` (mode 0600: root-only like the socket).
pub fn write_conf(conf_dir: &Path, conf: &PluginConf) -> Result<PathBuf, InstallError> {
    let dest = conf_dir.join("nv-ipam.conf");
    let json = serde_json::to_vec_pretty(conf).expect("plugin conf always serializes");
    write_atomically(&dest, 0o600, |f| f.write_all(&json))?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn conf_is_root_only_in_dirs_others_cannot_write_and_never_written_through_a_symlink() {
        let base = std::env::temp_dir().join(format!("nv-ipam-install-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let conf_dir = base.join("net.d/nv-ipam.d");
        let conf = PluginConf {
            daemon_socket: "unix:///var/lib/cni/nv-ipam/daemon.sock".into(),
            daemon_call_timeout_seconds: 5,
            log_file: "/var/log/nv-ipam-cni.log".into(),
            log_level: "info".into(),
            force_pool_name: false,
        };
        let dest = write_conf(&conf_dir, &conf).expect("written");
        let mode = |p: &Path| fs::symlink_metadata(p).expect("stat").permissions().mode() & 0o7777;
        assert_eq!(mode(&dest), 0o600);
        for d in [base.join("net.d"), conf_dir.clone()] {
            assert_eq!(mode(&d) & 0o022, 0, "{} must not be group/other-writable", d.display());
        }
        // A symlink where the temp file goes (left by someone with root, or a killed run).
        let victim = base.join("victim");
        fs::write(&victim, "keep").expect("write");
        std::os::unix::fs::symlink(&victim, conf_dir.join("nv-ipam.conf.nv-ipam-tmp")).expect("symlink");
        write_conf(&conf_dir, &conf).expect("rewritten");
        assert_eq!(fs::read_to_string(&victim).expect("read"), "keep", "not written through the symlink");
        let m = fs::symlink_metadata(&dest).expect("stat");
        assert!(m.is_file() && m.nlink() == 1 && mode(&dest) == 0o600);
        let v: serde_json::Value = serde_json::from_slice(&fs::read(&dest).expect("read")).expect("json");
        assert_eq!(v["logFile"], "/var/log/nv-ipam-cni.log");
        fs::remove_dir_all(&base).expect("cleanup");
    }
}
