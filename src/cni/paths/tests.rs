//! The path rules of `cni::paths`, every kind of component, owner and mode.

use super::*;

fn facts(kind: Kind, uid: u32, mode: u32) -> Facts {
    Facts { kind, uid, mode, size: 10, nlink: 1 }
}

const KINDS: [Kind; 7] =
    [Kind::File, Kind::Dir, Kind::Symlink, Kind::Fifo, Kind::Socket, Kind::CharDevice, Kind::BlockDevice];

#[test]
fn normal_absolute_paths() {
    for ok in ["/", "/a", "/a/b.c", "/tmp/x/nv-ipam.d", "/a/...", "/a/.b"] {
        assert_eq!(normal_absolute(ok), Ok(()), "{ok:?}");
    }
    for (bad, want) in [
        ("", Refusal::NotAbsolute),
        ("a", Refusal::NotAbsolute),
        ("./a", Refusal::NotAbsolute),
        ("~/a", Refusal::NotAbsolute),
        ("//a", Refusal::NotNormal),
        ("/a//b", Refusal::NotNormal),
        ("/a/", Refusal::NotNormal),
        ("/a/.", Refusal::NotNormal),
        ("/a/./b", Refusal::NotNormal),
        ("/a/..", Refusal::NotNormal),
        ("/a/../b", Refusal::NotNormal),
        ("/..", Refusal::NotNormal),
        ("/a\0b", Refusal::NotNormal),
    ] {
        assert_eq!(normal_absolute(bad), Err(want), "{bad:?}");
    }
}

#[test]
fn log_choice() {
    let node = Path::new("/var/log/nv-ipam-cni.log");
    assert_eq!(choose_log(None, node), Choice::node(node));
    assert_eq!(choose_log(Some("/var/log/nv-ipam-cni.log"), node), Choice::node(node), "the node's own");
    for ok in ["/var/log/nv-ipam-net1.log", "/var/log/nv-ipam", "/var/log/nv-ipam.x_y-z"] {
        assert_eq!(choose_log(Some(ok), node), Choice { path: ok.into(), tenant: true, warning: None });
    }
    let cases = [
        ("/root/.ssh/authorized_keys", Refusal::NotDirectlyInside { dir: "/var/log".into() }),
        ("/var/log/sub/nv-ipam.log", Refusal::NotDirectlyInside { dir: "/var/log".into() }),
        ("/var/nv-ipam.log", Refusal::NotDirectlyInside { dir: "/var/log".into() }),
        ("/var/log/../../root/.ssh/authorized_keys", Refusal::NotNormal),
        ("/var/log/./nv-ipam.log", Refusal::NotNormal),
        ("/var/log//nv-ipam.log", Refusal::NotNormal),
        ("/var/log/nv-ipam.log/", Refusal::NotNormal),
        ("nv-ipam.log", Refusal::NotAbsolute),
        ("../log/nv-ipam.log", Refusal::NotAbsolute),
        ("/var/log/secure", Refusal::BadLogName),
        ("/var/log/syslog", Refusal::BadLogName),
        ("/var/log/nv-ipam\nx.log", Refusal::BadLogName),
        ("/var/log/nv-ipam x.log", Refusal::BadLogName),
        ("/var/log/nv-ipam\u{1b}.log", Refusal::BadLogName),
        ("/var/log/.nv-ipam.log", Refusal::BadLogName),
        ("/var/log/NV-IPAM.log", Refusal::BadLogName),
    ];
    for (value, refusal) in cases {
        let got = choose_log(Some(value), node);
        let want = Warning { field: "ipam.logFile", value: value.into(), refusal, using: node.into() };
        assert_eq!(got, Choice { path: node.into(), tenant: false, warning: Some(want) }, "{value:?}");
    }
    // The node's directory, whatever it is; a node value written oddly still has one.
    let odd = Path::new("/srv//logs/cni.log");
    assert!(choose_log(Some("/srv/logs/nv-ipam-a.log"), odd).tenant);
    let root_level = Path::new("/cni.log");
    assert!(choose_log(Some("/nv-ipam-a.log"), root_level).tenant);
    // /dev/null means no log: nothing else either.
    let null = Path::new(NULL_LOG);
    let got = choose_log(Some("/dev/nv-ipam.log"), null);
    assert_eq!(got.warning.map(|w| w.refusal), Some(Refusal::NoLogDir));
    assert_eq!(got.path, null);
    // A relative node value (the config layer refuses those) has no directory to honour.
    assert!(!choose_log(Some("/nv-ipam.log"), Path::new("x.log")).tenant);
}

#[test]
fn socket_choice() {
    let node = Path::new("/var/lib/cni/nv-ipam/daemon.sock");
    assert_eq!(choose_socket(None, node), Choice::node(node));
    assert_eq!(choose_socket(Some("/var/lib/cni/nv-ipam/daemon.sock"), node), Choice::node(node));
    let other = choose_socket(Some("/var/lib/cni/nv-ipam/other.sock"), node);
    assert_eq!(other, Choice { path: "/var/lib/cni/nv-ipam/other.sock".into(), tenant: true, warning: None });
    for (value, refusal) in [
        ("/run/docker.sock", Refusal::NotDirectlyInside { dir: "/var/lib/cni/nv-ipam".into() }),
        (
            "/var/lib/cni/nv-ipam/sub/x.sock",
            Refusal::NotDirectlyInside { dir: "/var/lib/cni/nv-ipam".into() },
        ),
        ("/var/lib/cni/nv-ipam/../x.sock", Refusal::NotNormal),
        ("x.sock", Refusal::NotAbsolute),
        ("/var/lib/cni/nv-ipam/.x", Refusal::BadSocketName),
        ("/var/lib/cni/nv-ipam/a\nb", Refusal::BadSocketName),
    ] {
        let got = choose_socket(Some(value), node);
        assert_eq!(got.path, node, "{value:?}");
        assert_eq!(
            got.warning.map(|w| (w.field, w.refusal)),
            Some(("ipam.daemonSocket", refusal)),
            "{value:?}"
        );
    }
}

#[test]
fn conf_dir_components_every_kind_owner_and_mode() {
    // Exhaustive over kinds, two owners, every write bit pattern and the sticky bit, as the
    // last component and above it.
    for kind in KINDS {
        for uid in [0, 65534] {
            for mode in [0o755, 0o775, 0o757, 0o777, 0o1755, 0o1775, 0o1777, 0o700, 0o1700] {
                for last in [false, true] {
                    let got = judge_conf_dir_component(&facts(kind, uid, mode), last);
                    let writable = mode & 0o022 != 0;
                    let want = if kind != Kind::Dir {
                        Err(Problem::Kind(kind))
                    } else if uid != 0 {
                        Err(Problem::NotRoot { uid })
                    } else if writable && (last || mode & 0o1000 == 0) {
                        Err(Problem::Writable { mode })
                    } else {
                        Ok(())
                    };
                    assert_eq!(got, want, "{kind:?} uid={uid} mode={mode:o} last={last}");
                }
            }
        }
    }
    // The usual shapes: /tmp above, a root-owned 0755 dir below.
    assert_eq!(judge_conf_dir_component(&facts(Kind::Dir, 0, 0o1777), false), Ok(()));
    assert!(judge_conf_dir_component(&facts(Kind::Dir, 0, 0o1777), true).is_err());
    assert_eq!(judge_conf_dir_component(&facts(Kind::Dir, 0, 0o755), true), Ok(()));
}

#[test]
fn dir_chains() {
    assert_eq!(dir_chain("/"), vec![PathBuf::from("/")]);
    assert_eq!(
        dir_chain("/tmp/h/nv-ipam.d"),
        ["/", "/tmp", "/tmp/h", "/tmp/h/nv-ipam.d"].map(PathBuf::from).to_vec()
    );
}

#[test]
fn conf_files() {
    for kind in KINDS {
        let want = if kind == Kind::File { Ok(()) } else { Err(Problem::Kind(kind)) };
        assert_eq!(judge_tenant_conf_file(&facts(kind, 0, 0o600)), want);
        assert_eq!(judge_node_conf_file(&facts(kind, 0, 0o600)), want);
    }
    for mode in [0o600, 0o644, 0o400, 0o444, 0o604, 0o640] {
        assert_eq!(judge_tenant_conf_file(&facts(Kind::File, 0, mode)), Ok(()), "{mode:o}");
    }
    for mode in [0o620, 0o602, 0o666, 0o660] {
        assert_eq!(judge_tenant_conf_file(&facts(Kind::File, 0, mode)), Err(Problem::Writable { mode }));
        assert_eq!(judge_node_conf_file(&facts(Kind::File, 0, mode)), Ok(()), "the node's own: trusted");
    }
    assert_eq!(judge_tenant_conf_file(&facts(Kind::File, 1, 0o600)), Err(Problem::NotRoot { uid: 1 }));
    // At the size limit and one byte over.
    let at = Facts { size: MAX_CONF_FILE_BYTES, ..facts(Kind::File, 0, 0o600) };
    assert_eq!(judge_tenant_conf_file(&at), Ok(()));
    let over = Facts { size: MAX_CONF_FILE_BYTES + 1, ..at };
    assert_eq!(judge_tenant_conf_file(&over), Err(Problem::TooLarge { size: MAX_CONF_FILE_BYTES + 1 }));
    assert_eq!(judge_node_conf_file(&over), Err(Problem::TooLarge { size: MAX_CONF_FILE_BYTES + 1 }));
}

#[test]
fn tenant_log_files() {
    assert_eq!(judge_tenant_log(&facts(Kind::File, 0, 0o600)), Ok(()));
    assert_eq!(judge_tenant_log(&facts(Kind::File, 0, 0o400)), Ok(()));
    for kind in KINDS.into_iter().filter(|k| *k != Kind::File) {
        assert_eq!(judge_tenant_log(&facts(kind, 0, 0o600)), Err(Problem::Kind(kind)));
    }
    for mode in [0o640, 0o604, 0o610, 0o601, 0o644, 0o660, 0o666] {
        assert_eq!(judge_tenant_log(&facts(Kind::File, 0, mode)), Err(Problem::Shared { mode }), "{mode:o}");
    }
    assert_eq!(judge_tenant_log(&facts(Kind::File, 65534, 0o600)), Err(Problem::NotRoot { uid: 65534 }));
    let linked = Facts { nlink: 2, ..facts(Kind::File, 0, 0o600) };
    assert_eq!(judge_tenant_log(&linked), Err(Problem::HardLinked { nlink: 2 }));
}

#[test]
fn warning_is_one_line_naming_field_value_reason_and_replacement() {
    let w = choose_log(Some("/root/.ssh/authorized_keys\nx"), Path::new("/var/log/nv-ipam-cni.log"))
        .warning
        .expect("refused");
    assert_eq!(
        w.to_string(),
        "ignoring ipam.logFile \"/root/.ssh/authorized_keys\\nx\" from the network config: it is not directly inside /var/log, the directory the node chose; using /var/log/nv-ipam-cni.log (set by the node)"
    );
    let r = Refusal::OnDisk { path: "/tmp/x".into(), problem: Problem::Writable { mode: 0o777 } };
    assert_eq!(r.to_string(), "/tmp/x is writable by group or others (mode 0777)");
}
