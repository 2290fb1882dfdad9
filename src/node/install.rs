//! Host install at start: the `nv-ipam` plugin binary into the CNI bin dir and its config file
//! `<cni-conf-dir>/nv-ipam.conf`, each atomically (temp file, fsync, rename) so that a runtime
//! never executes or reads a half-written file.
//!
//! Owns: those two files. Must not: touch anything else on the host.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

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
    let dir = dest.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| err("create the directory of", e))?;
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".nv-ipam-tmp");
    let tmp = dir.join(name);
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        fill(&mut f)?;
        f.sync_all()?;
        fs::rename(&tmp, dest)?;
        File::open(dir)?.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(err("write", e));
    }
    Ok(())
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
