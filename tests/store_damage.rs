//! The store under damage, as a damaged disk or an unlucky operator would leave it: real
//! files, the real `ipam-node` (and, for the full-disk compaction, the store library on a real
//! tmpfs). Each case asserts the safe outcome: the daemon refuses with an error that names the
//! file (and line) and the ways out, and every file is byte-identical afterwards; or, for a torn
//! last line, it starts, keeps the cut bytes in a named file, says so, and serves every
//! complete line's reservation. The lock cases run two daemons on one store.
#![allow(clippy::unwrap_used)]
// Renames here play an operator or another tool replacing a file (clippy.toml, docs/style.md).
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::daemon::Daemon;
use common::{CniOut, Sandbox, run_ok};
use nv_ipam::protocol::client::call;
use nv_ipam::protocol::message::{AllocateRequest, PodRef, Request, Response};
use nv_ipam::store::{COMPACT_MIN_LINES, MAX_TORN_FILES, Op, Reservation, Store, StoreError};

/// 10.60.0.1-10.60.3.232 (1000 addresses) for node1; gateway 10.60.0.1.
const POOLS: &str = "apiVersion: nv-ipam.nvidia.com/v1alpha1
kind: IPPool
metadata:
  name: p
  namespace: kube-system
spec:
  subnet: 10.60.0.0/22
  perNodeBlockSize: 1000
  gateway: 10.60.0.1
";
const NODE: &str = "node1";
const NET: &str = "net1";
const POOL: &str = "p";
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A journal line with a valid checksum, as the documented format says.
fn line(json: &str) -> Vec<u8> {
    format!("{:016x} {json}\n", fnv1a64(json.as_bytes())).into_bytes()
}

/// Every entry of `dir`: name → (type, mode, owner, bytes of regular files). FIFOs and devices
/// are never opened.
fn snapshot(dir: &Path) -> BTreeMap<String, (String, u32, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = fs::symlink_metadata(e.path()).unwrap();
        let t = m.file_type();
        let (kind, bytes) = if t.is_file() {
            ("file".to_string(), fs::read(e.path()).unwrap())
        } else if t.is_symlink() {
            ("symlink".to_string(), fs::read_link(e.path()).unwrap().into_os_string().into_encoded_bytes())
        } else if t.is_dir() {
            ("dir".to_string(), Vec::new())
        } else {
            (format!("special {:?}", t.is_fifo()), Vec::new())
        };
        out.insert(e.file_name().to_string_lossy().into_owned(), (kind, m.mode(), m.uid(), bytes));
    }
    out
}

fn state_dir(d: &Daemon) -> PathBuf {
    d.store_file.parent().unwrap().to_path_buf()
}

fn sibling(d: &Daemon, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", d.store_file.display()))
}

fn add(d: &Daemon, container: &str) -> String {
    let out: CniOut = d.call("ADD", &d.config("1.0.0", NET, POOL), container, "eth0").ok();
    let a = out.addresses();
    assert_eq!(a.len(), 1, "one address:\n{out}");
    a[0].clone()
}

/// Runs the daemon to its exit, which must be a refusal; returns its stderr. The files of the
/// store's directory must be exactly as before.
fn refuses(d: &Daemon) -> String {
    let dir = state_dir(d);
    let before = snapshot(&dir);
    let (status, stderr) = d.run_to_exit();
    assert!(!status.success(), "ipam-node must refuse to start, got {status}:\n{stderr}");
    assert_eq!(snapshot(&dir), before, "every file must be left as it was:\n{stderr}");
    stderr
}

fn assert_has(text: &str, parts: &[&str]) {
    for p in parts {
        assert!(text.contains(p), "expected {p:?} in:\n{text}");
    }
}

fn allocate_via_client(d: &Daemon, container: &str) {
    let req = Request::Allocate(AllocateRequest {
        pod: PodRef { name: Some(format!("pod-{container}")), namespace: Some("ns1".into()), uid: None },
        ..common::allocate_request(NET, container, &[POOL])
    });
    match call(&d.socket, req, CALL_TIMEOUT).unwrap() {
        Response::Ok(_) => {}
        Response::Error(e) => panic!("allocate {container}: {e:?}"),
    }
}

fn release_via_client(d: &Daemon, container: &str) {
    let req = Request::Release(common::release_request(NET, container, &[POOL]));
    match call(&d.socket, req, CALL_TIMEOUT).unwrap() {
        Response::Ok(_) => {}
        Response::Error(e) => panic!("release {container}: {e:?}"),
    }
}

/// A daemon that served `keep-0..keep-2` (their addresses returned) and then enough ADD/DEL
/// pairs for one compaction, so that `store.prev` is a real previous generation holding them.
fn daemon_with_prev() -> (Daemon, Vec<String>) {
    let d = Daemon::start(POOLS, NODE);
    let kept: Vec<String> = (0..3).map(|i| add(&d, &format!("keep-{i}"))).collect();
    for i in 0..COMPACT_MIN_LINES / 2 + 4 {
        let c = format!("churn-{i}");
        allocate_via_client(&d, &c);
        release_via_client(&d, &c);
    }
    assert!(sibling(&d, ".prev").exists(), "a compaction ran and kept store.prev");
    (d, kept)
}

#[test]
fn bit_flip_in_the_last_complete_line_refuses_and_leaves_every_file() {
    let mut d = Daemon::start(POOLS, NODE);
    add(&d, "c1");
    add(&d, "c2");
    d.stop();
    let mut bytes = fs::read(&d.store_file).unwrap();
    let lines = bytes.iter().filter(|b| **b == b'\n').count();
    // flip one bit inside the JSON of the last (complete, newline-terminated) line
    let last_start = bytes[..bytes.len() - 1].iter().rposition(|b| *b == b'\n').unwrap() + 1;
    let i = last_start + 17 + 10;
    bytes[i] ^= 0x02;
    fs::write(&d.store_file, &bytes).unwrap();
    let err = refuses(&d);
    let p = d.store_file.display().to_string();
    assert_has(
        &err,
        &[
            &format!("{p} is damaged at line {lines} (checksum mismatch)"),
            "left untouched",
            &format!("sed -i '{lines}d' {p}"),
            &format!("there is no {p}.prev to restore"),
            &format!("mv {p} {p}.damaged"),
        ],
    );
    assert!(!err.contains("torn"), "not treated as a torn write:\n{err}");
}

#[test]
fn damaged_newline_of_the_last_line_is_damage_not_a_torn_write() {
    let mut d = Daemon::start(POOLS, NODE);
    add(&d, "c1");
    d.stop();
    let mut bytes = fs::read(&d.store_file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] = b'\x0e'; // '\n' (0x0a) with bit 2 flipped
    fs::write(&d.store_file, &bytes).unwrap();
    let err = refuses(&d);
    assert_has(&err, &["is damaged at line 2", "ends in byte 0x0e instead of a newline"]);
}

#[test]
fn torn_last_line_is_kept_aside_logged_and_every_complete_line_served() {
    let mut d = Daemon::start(POOLS, NODE);
    let ips: Vec<String> = (1..=3).map(|i| add(&d, &format!("c{i}"))).collect();
    add(&d, "c4");
    d.kill9();
    // cut c4's line in the middle, as a crash during its append would leave it
    let full = fs::read(&d.store_file).unwrap();
    let start = full[..full.len() - 1].iter().rposition(|b| *b == b'\n').unwrap() + 1;
    let cut = start + (full.len() - start) / 2;
    fs::write(&d.store_file, &full[..cut]).unwrap();
    let torn_line = full[..start].iter().filter(|b| **b == b'\n').count() + 1;
    d.spawn();
    let log = d.stderr();
    let kept: Vec<PathBuf> = fs::read_dir(state_dir(&d))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("store.torn-"))
        .collect();
    assert_eq!(kept.len(), 1, "one torn-line file: {kept:?}\n{log}");
    assert_eq!(fs::read(&kept[0]).unwrap(), &full[start..cut], "the cut bytes are kept");
    assert_eq!(fs::metadata(&kept[0]).unwrap().permissions().mode() & 0o777, 0o600);
    assert_has(
        &log,
        &[
            &format!("line {torn_line} was unterminated"),
            &format!("cut off {} bytes", cut - start),
            &kept[0].display().to_string(),
        ],
    );
    assert_eq!(
        fs::read(&d.store_file).unwrap(),
        &full[..start],
        "the store is cut back to its complete lines"
    );
    for (i, ip) in ips.iter().enumerate() {
        assert_eq!(&add(&d, &format!("c{}", i + 1)), ip, "c{} keeps its address", i + 1);
    }
}

#[test]
fn repeated_crashes_keep_a_bounded_number_of_torn_files() {
    let mut d = Daemon::start(POOLS, NODE);
    for round in 0..(MAX_TORN_FILES + 2) {
        add(&d, &format!("r{round}"));
        d.kill9();
        let mut f = fs::OpenOptions::new().append(true).open(&d.store_file).unwrap();
        std::io::Write::write_all(&mut f, b"0123456789abcdef {\"seq\":").unwrap();
        drop(f);
        d.spawn();
    }
    let torn = fs::read_dir(state_dir(&d))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("store.torn-"))
        .count();
    assert_eq!(torn, MAX_TORN_FILES);
    for round in 0..(MAX_TORN_FILES + 2) {
        add(&d, &format!("r{round}"));
    }
}

#[test]
fn empty_or_missing_store_with_prev_refuses_until_the_advice_is_followed() {
    let (mut d, kept) = daemon_with_prev();
    d.stop();
    let p = d.store_file.display().to_string();
    // zero bytes
    fs::write(&d.store_file, b"").unwrap();
    let err = refuses(&d);
    assert_has(
        &err,
        &[
            &format!("{p} is empty (no header) but {p}.prev exists (generation 1,"),
            "does not start empty",
            &format!("mv {p}.prev {p}"),
            &format!("mv {p}.prev {p}.prev.old"),
        ],
    );
    // header-less: a record line where the header should be
    let prev = fs::read(sibling(&d, ".prev")).unwrap();
    let second = prev.iter().position(|b| *b == b'\n').unwrap() + 1;
    fs::write(&d.store_file, &prev[second..]).unwrap();
    let err = refuses(&d);
    assert_has(&err, &[&format!("{p} is damaged at line 1 (bad header"), "restore the previous generation"]);
    // missing
    fs::remove_file(&d.store_file).unwrap();
    let err = refuses(&d);
    assert_has(&err, &[&format!("{p} is missing but {p}.prev exists")]);
    // the first way out works and keeps what the previous generation holds
    fs::rename(sibling(&d, ".prev"), &d.store_file).unwrap();
    d.spawn();
    for (i, ip) in kept.iter().enumerate() {
        assert_eq!(&add(&d, &format!("keep-{i}")), ip, "keep-{i} keeps its address");
    }
}

#[test]
fn moving_the_files_aside_as_advised_starts_empty() {
    let (mut d, _) = daemon_with_prev();
    d.stop();
    let mut bytes = fs::read(&d.store_file).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x01;
    fs::write(&d.store_file, &bytes).unwrap();
    let err = refuses(&d);
    let p = d.store_file.display().to_string();
    let advice = format!("start empty (mv {p} {p}.damaged; mv {p}.prev {p}.prev.old;");
    assert_has(&err, &[&advice]);
    fs::rename(&d.store_file, sibling(&d, ".damaged")).unwrap();
    fs::rename(sibling(&d, ".prev"), sibling(&d, ".prev.old")).unwrap();
    d.spawn();
    add(&d, "fresh");
}

#[test]
fn damaged_prev_is_not_offered_as_a_way_out() {
    let (mut d, _) = daemon_with_prev();
    d.stop();
    for (file, at) in [(d.store_file.clone(), 3usize), (sibling(&d, ".prev"), 2)] {
        let mut b = fs::read(&file).unwrap();
        let start = b.iter().enumerate().filter(|(_, c)| **c == b'\n').nth(at - 2).unwrap().0 + 1;
        b[start + 20] ^= 0x01;
        fs::write(&file, &b).unwrap();
    }
    let err = refuses(&d);
    let p = d.store_file.display().to_string();
    assert_has(
        &err,
        &["damaged at line 3", &format!("not {p}.prev: it is damaged too (line 2: checksum mismatch)")],
    );
    assert!(!err.contains("restore the previous generation"), "{err}");
}

#[test]
fn repeated_line_and_double_reservation_are_damage() {
    let mut d = Daemon::start(POOLS, NODE);
    let ip = add(&d, "c1");
    d.stop();
    let good = fs::read(&d.store_file).unwrap();
    let start = good[..good.len() - 1].iter().rposition(|b| *b == b'\n').unwrap() + 1;
    // the last line twice (a block written twice, or a careless `cat >>`)
    let mut twice = good.clone();
    twice.extend_from_slice(&good[start..]);
    fs::write(&d.store_file, &twice).unwrap();
    let lines = twice.iter().filter(|b| **b == b'\n').count();
    let err = refuses(&d);
    assert_has(
        &err,
        &[&format!("damaged at line {lines}"), "does not follow", "a repeated or reordered line"],
    );
    // a well-formed, checksummed line that reserves c1's address for another attachment
    let addr = ip.split('/').next().unwrap();
    let mut double = good.clone();
    double.extend(line(&format!(
        r#"{{"seq":99,"ops":[{{"op":"reserve","pool":"p","containerId":"other","ifname":"eth0","ip":"{addr}","network":"net1","created":1}}]}}"#
    )));
    fs::write(&d.store_file, &double).unwrap();
    let err = refuses(&d);
    assert_has(&err, &["inconsistent record", &format!("address {addr} is already held by c1/eth0")]);
}

/// Daemon A serves; `tamper` does something to `store.lock`; daemon B on the same store must
/// refuse naming A's pid while A keeps serving; once A stops, B starts and serves A's work.
fn second_daemon_is_kept_out(tamper: impl FnOnce(&Path)) {
    let mut a = Daemon::start(POOLS, NODE);
    let ip = add(&a, "c1");
    let lock = sibling(&a, ".lock");
    tamper(&lock);
    let mut b = Daemon::prepare(POOLS, NODE, Some(a.store_file.clone()));
    let err = refuses(&b);
    let pid = a.pid().unwrap();
    assert_has(
        &err,
        &[
            &format!("{} is locked by another process (pid {pid}: ", state_dir(&a).display()),
            "ipam-node",
            "another ipam-node already runs on this store",
        ],
    );
    add(&a, "c2");
    a.stop();
    b.spawn();
    assert_eq!(add(&b, "c1"), ip, "B serves what A acknowledged");
}

#[test]
fn deleted_lock_file_keeps_a_second_daemon_out() {
    second_daemon_is_kept_out(|lock| fs::remove_file(lock).unwrap());
}

#[test]
fn replaced_lock_file_keeps_a_second_daemon_out() {
    second_daemon_is_kept_out(|lock| {
        let new = lock.with_extension("new");
        fs::write(&new, b"{\"pid\":1,\"host\":\"liar\",\"since\":\"never\"}\n").unwrap();
        fs::rename(&new, lock).unwrap();
    });
}

#[test]
fn renamed_store_directory_stops_changes_and_keeps_others_out() {
    let a = Daemon::start(POOLS, NODE);
    let ip = add(&a, "c1");
    let moved = a.sandbox.path("state.moved");
    fs::rename(state_dir(&a), &moved).unwrap();
    // A no longer acknowledges anything: it would land in a file the next start does not read
    let out = a.call("ADD", &a.config("1.0.0", NET, POOL), "c2", "eth0").fails_with(107);
    assert!(out.stdout.contains("no longer the file this ipam-node writes"), "{out}");
    // the lock moved with the directory: a daemon on the new path is kept out
    let b = Daemon::prepare(POOLS, NODE, Some(moved.join("store")));
    let err = refuses(&b);
    assert_has(&err, &[&format!("pid {}", a.pid().unwrap())]);
    // an ADD that changes nothing still answers from memory
    assert_eq!(add(&a, "c1"), ip);
}

#[test]
fn store_replaced_under_a_running_daemon_stops_changes() {
    let mut d = Daemon::start(POOLS, NODE);
    let ip = add(&d, "c1");
    let copy = sibling(&d, ".copy");
    fs::copy(&d.store_file, &copy).unwrap();
    fs::rename(&copy, &d.store_file).unwrap();
    let before = fs::read(&d.store_file).unwrap();
    let out = d.call("ADD", &d.config("1.0.0", NET, POOL), "c2", "eth0").fails_with(107);
    assert!(out.stdout.contains("restart ipam-node"), "{out}");
    assert_eq!(fs::read(&d.store_file).unwrap(), before, "nothing written to the new file");
    d.restart();
    assert_eq!(add(&d, "c1"), ip);
    add(&d, "c2");
}

fn mkfifo(p: &Path) {
    run_ok(Command::new("mkfifo").arg(p), "mkfifo");
}

#[test]
fn special_files_are_refused_without_blocking() {
    type Setup = fn(&Daemon);
    let cases: Vec<(&str, Setup, &str)> = vec![
        (
            "store is a directory",
            |d| fs::create_dir(&d.store_file).unwrap(),
            "is a directory, not a regular file",
        ),
        ("store is a FIFO", |d| mkfifo(&d.store_file), "is a FIFO, not a regular file"),
        (
            "store is a symlink",
            |d| {
                fs::write(d.sandbox.path("elsewhere"), b"").unwrap();
                std::os::unix::fs::symlink(d.sandbox.path("elsewhere"), &d.store_file).unwrap()
            },
            "is a symbolic link; set --store-file",
        ),
        (
            "store is a device",
            |d| {
                run_ok(Command::new("mknod").arg(&d.store_file).args(["c", "1", "3"]), "mknod");
            },
            "is a character device",
        ),
        ("store.lock is a FIFO", |d| mkfifo(&sibling(d, ".lock")), "store.lock is a FIFO"),
        (
            "store.prev is a directory",
            |d| fs::create_dir(sibling(d, ".prev")).unwrap(),
            "store.prev is a directory",
        ),
        ("store.tmp is a FIFO", |d| mkfifo(&sibling(d, ".tmp")), "store.tmp is a FIFO"),
        (
            "another user's store",
            |d| {
                fs::write(&d.store_file, b"").unwrap();
                std::os::unix::fs::chown(&d.store_file, Some(4242), None).unwrap();
            },
            "is owned by uid 4242, not by uid 0",
        ),
        (
            "a directory others can write",
            |d| fs::set_permissions(state_dir(d), fs::Permissions::from_mode(0o777)).unwrap(),
            "(mode 0777, owner uid 0) lets other users replace",
        ),
    ];
    for (what, setup, want) in cases {
        let d = Daemon::prepare(POOLS, NODE, None);
        setup(&d);
        let err = refuses(&d);
        assert!(err.contains(want), "{what}: expected {want:?} in:\n{err}");
    }
}

#[test]
fn store_file_modes_are_set_to_0600() {
    let (mut d, kept) = daemon_with_prev();
    d.stop();
    for f in [d.store_file.clone(), sibling(&d, ".prev"), sibling(&d, ".lock")] {
        fs::set_permissions(&f, fs::Permissions::from_mode(0o664)).unwrap();
    }
    d.spawn();
    for f in [d.store_file.clone(), sibling(&d, ".prev"), sibling(&d, ".lock")] {
        assert_eq!(fs::metadata(&f).unwrap().permissions().mode() & 0o7777, 0o600, "{}", f.display());
    }
    assert_has(&d.stderr(), &["had mode 0664; set it to 0600"]);
    assert_eq!(add(&d, "keep-0"), kept[0]);
}

#[test]
fn torn_line_on_a_full_disk_refuses_until_there_is_room() {
    let sb = Sandbox::new();
    let tmpfs = common::netns::Tmpfs::mount(sb.path("tmpfs"), "256k");
    let mut d = Daemon::start_with_store(POOLS, NODE, tmpfs.dir.join("store"));
    let ip = add(&d, "c1");
    d.kill9();
    let mut f = fs::OpenOptions::new().append(true).open(&d.store_file).unwrap();
    std::io::Write::write_all(&mut f, b"0123456789abcdef {\"seq\":7,\"op").unwrap();
    drop(f);
    let filler = tmpfs.dir.join("filler");
    {
        let mut f = fs::File::create(&filler).unwrap();
        while std::io::Write::write_all(&mut f, &[0u8; 4096]).is_ok() {}
    }
    let err = refuses(&d);
    assert_has(&err, &["ends in a torn line", "No space left", "nothing was changed; free disk space"]);
    fs::remove_file(&filler).unwrap();
    d.spawn();
    assert_eq!(add(&d, "c1"), ip);
    drop(d);
    drop(tmpfs);
}

fn reservation(i: usize) -> Reservation {
    Reservation {
        pool: "blue".into(),
        container_id: format!("c{i}"),
        ifname: "eth0".into(),
        ip: format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256).parse().unwrap(),
        network: "net1".into(),
        pod_name: Some(format!("pod-{i}")),
        pod_namespace: Some("default".into()),
        pod_uid: None,
        device_id: None,
        created: 1,
        is_static: false,
    }
}

fn header_generation(store: &Path) -> u64 {
    let text = fs::read_to_string(store).unwrap();
    let json = text.lines().next().unwrap().split_once(' ').unwrap().1;
    serde_json::from_str::<serde_json::Value>(json).unwrap()["generation"].as_u64().unwrap()
}

/// Opens a store this process closed a moment ago. The lock can outlive the close by a few
/// milliseconds: a child that another test of this binary is spawning shares the lock's open
/// file until its exec closes it (O_CLOEXEC), so `Locked` is waited out, with a deadline.
fn reopen(p: &Path) -> Store {
    let mut opened = None;
    common::wait::wait_until(
        Duration::from_secs(10),
        "the store's lock is free again",
        || match Store::open(p) {
            Err(StoreError::Locked { .. }) => false,
            r => {
                opened = Some(r.unwrap());
                true
            }
        },
    );
    opened.unwrap()
}

#[test]
fn compaction_on_a_full_disk_keeps_serving_and_loses_nothing() {
    let sb = Sandbox::new();
    let tmpfs = common::netns::Tmpfs::mount(sb.path("tmpfs"), "1m");
    let p = tmpfs.dir.join("store");
    let mut s = Store::open(&p).unwrap();
    let first = COMPACT_MIN_LINES - 4;
    for i in 0..first {
        s.commit(vec![Op::Reserve(reservation(i))]).unwrap();
    }
    // leave 4 pages: room for appends, not for a ~250 KB compaction
    let filler = tmpfs.dir.join("filler");
    {
        let mut f = fs::File::create(&filler).unwrap();
        while std::io::Write::write_all(&mut f, &[0u8; 4096]).is_ok() {}
        let len = f.metadata().unwrap().len();
        f.set_len(len.saturating_sub(4 * 4096)).unwrap();
    }
    for i in first..first + 20 {
        s.commit(vec![Op::Reserve(reservation(i))]).unwrap();
    }
    assert_eq!(header_generation(&p), 1, "the compaction failed");
    assert!(!tmpfs.dir.join("store.tmp").exists(), "a failed compaction leaves no temp file");
    drop(s);
    let mut s = reopen(&p);
    assert_eq!(s.state().len(), first + 20, "nothing lost");
    // with room again, the next attempt compacts
    fs::remove_file(&filler).unwrap();
    let mut i = first + 20;
    while header_generation(&p) == 1 {
        s.commit(vec![Op::Reserve(reservation(i))]).unwrap();
        i += 1;
        assert!(i < 4 * COMPACT_MIN_LINES, "compaction never retried");
    }
    drop(s);
    assert_eq!(reopen(&p).state().len(), i);
    assert!(tmpfs.dir.join("store.prev").exists());
    drop(tmpfs);
}
