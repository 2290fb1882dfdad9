//! The default host paths of the three programs, in one place: the node's state directory,
//! socket and store, where the CNI plugin and its config are installed, the plugin's log, and
//! the webhook's certificate directory. Each is the reference's (nvidia-k8s-ipam's flag
//! defaults and manifests), so an upgrade finds the same files.
//!
//! Owns: the constants. Must not: hold anything but paths (ports and durations are flag
//! defaults and live with their flags in `controller::args` and `node::config`).

/// The node daemon's state directory: its socket, store, lock and pools cache.
pub const STATE_DIR: &str = "/var/lib/cni/nv-ipam";
/// The daemon's unix socket (`--bind-address`; the plugin's `daemonSocket`).
pub const DAEMON_SOCKET: &str = "/var/lib/cni/nv-ipam/daemon.sock";
/// `--bind-address`'s default: [`DAEMON_SOCKET`] as a `unix://` address.
pub const DAEMON_SOCKET_ADDRESS: &str = "unix:///var/lib/cni/nv-ipam/daemon.sock";
/// The node's allocation store (`--store-file`).
pub const STORE_FILE: &str = "/var/lib/cni/nv-ipam/store";
/// Where the plugin binary is installed (`--cni-bin-dir`): the CNI convention.
pub const CNI_BIN_DIR: &str = "/opt/cni/bin";
/// The plugin binary inside the ipam-node image, copied to [`CNI_BIN_DIR`]
/// (`--cni-nv-ipam-bin-file`).
pub const PLUGIN_BINARY: &str = "/nv-ipam";
/// The plugin's config directory (`--cni-conf-dir`; the plugin's `confDir`).
pub const CNI_CONF_DIR: &str = "/etc/cni/net.d/nv-ipam.d";
/// The plugin's log file (`--cni-log-file`; the plugin's `logFile`).
pub const CNI_LOG_FILE: &str = "/var/log/nv-ipam-cni.log";
/// The webhook's `tls.crt` and `tls.key` (`--webhook-cert-dir`): controller-runtime's
/// default, where the manifests mount the certificate Secret.
pub const WEBHOOK_CERT_DIR: &str = "/tmp/k8s-webhook-server/serving-certs";

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn state_files_live_in_the_state_dir() {
        for file in [DAEMON_SOCKET, STORE_FILE] {
            assert_eq!(Path::new(file).parent(), Some(Path::new(STATE_DIR)), "{file}");
        }
        assert_eq!(DAEMON_SOCKET_ADDRESS.strip_prefix("unix://"), Some(DAEMON_SOCKET));
    }
}
