//! Network namespaces, host links and mounts a test creates; each removed on drop.

use super::{sh, sh_quiet, unique};

/// `ip netns add nvt<unique>`, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Netns {
        let name = format!("nvt{}", unique());
        sh("ip", &["netns", "add", &name]);
        Netns { name }
    }

    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    /// `ip -n NS -o addr show dev IF` (empty when the link does not exist).
    pub fn addrs(&self, ifname: &str) -> String {
        let out = std::process::Command::new("ip")
            .args(["-n", &self.name, "-o", "addr", "show", "dev", ifname])
            .output()
            .expect("run ip");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn has_link(&self, ifname: &str) -> bool {
        sh_quiet("ip", &["-n", &self.name, "link", "show", "dev", ifname])
    }
}

impl Default for Netns {
    fn default() -> Self {
        Netns::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        sh_quiet("ip", &["netns", "del", &self.name]);
    }
}

/// A host link created by the test (bridge, veth); `ip link del` on drop.
pub struct HostLink {
    pub name: String,
}

impl HostLink {
    /// A unique, ≤15-character link name: `<prefix><unique>`.
    pub fn name(prefix: &str) -> String {
        let n = format!("{prefix}{}", unique());
        assert!(n.len() <= 15, "link name {n} too long");
        n
    }

    /// A bridge with a fixed locally administered MAC (otherwise the bridge
    /// takes its ports' lowest MAC and bridge's CHECK fails for earlier attachments), up.
    pub fn bridge() -> HostLink {
        let name = HostLink::name("nvb");
        sh("ip", &["link", "add", &name, "type", "bridge"]);
        let l = HostLink { name };
        let b = l.name.as_bytes();
        let mac = format!("02:42:{:02x}:{:02x}:{:02x}:01", b[b.len() - 3], b[b.len() - 2], b[b.len() - 1]);
        sh("ip", &["link", "set", &l.name, "address", &mac]);
        sh("ip", &["link", "set", &l.name, "up"]);
        l
    }

    /// A veth pair in the host, both ends up; the returned link is the macvlan master. The
    /// `dummy` type is not available on this kernel.
    pub fn veth_master() -> HostLink {
        let name = HostLink::name("nvm");
        let peer = format!("{name}p");
        assert!(peer.len() <= 15);
        sh("ip", &["link", "add", &name, "type", "veth", "peer", "name", &peer]);
        sh("ip", &["link", "set", &peer, "up"]);
        sh("ip", &["link", "set", &name, "up"]);
        HostLink { name }
    }
}

impl Drop for HostLink {
    fn drop(&mut self) {
        sh_quiet("ip", &["link", "del", &self.name]);
    }
}

/// A small tmpfs mounted on a test-owned dir; unmounted on drop.
pub struct Tmpfs {
    pub dir: std::path::PathBuf,
}

impl Tmpfs {
    pub fn mount(dir: std::path::PathBuf, size: &str) -> Tmpfs {
        std::fs::create_dir_all(&dir).expect("create mount point");
        let d = dir.to_str().expect("utf-8 path").to_string();
        sh("mount", &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", &d]);
        Tmpfs { dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Some(d) = self.dir.to_str() {
            sh_quiet("umount", &["-l", d]);
        }
    }
}
