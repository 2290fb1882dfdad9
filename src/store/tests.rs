//! Tests of the store as a whole: open, commit, reopen, compaction, damage and refusal; and
//! [`TempDir`], the per-test directory the other modules' tests use too.
//!
//! Owns: those tests and `TempDir`. Must not: be compiled outside `cfg(test)`.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A directory for one test, removed with its contents when dropped.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(prefix: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let d = std::env::temp_dir().join(format!(
            "nv-ipam-{prefix}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("temp dir");
        TempDir(d)
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn tempdir() -> TempDir {
    TempDir::new("store-test")
}

fn res(cid: &str, ip: &str) -> Reservation {
    Reservation {
        pool: "blue".into(),
        container_id: cid.into(),
        ifname: "eth0".into(),
        ip: ip.parse().expect("ip"),
        network: "net1".into(),
        pod_name: Some(format!("pod-{cid}")),
        pod_namespace: Some("default".into()),
        pod_uid: None,
        device_id: None,
        created: 1,
        is_static: false,
    }
}

fn release(cid: &str) -> Op {
    Op::Release { pool: "blue".into(), container_id: cid.into(), ifname: "eth0".into() }
}

#[test]
fn commits_survive_reopen() {
    let d = tempdir();
    let p = d.join("store");
    {
        let mut s = Store::open(&p).expect("open");
        s.commit(vec![
            Op::Reserve(res("a", "10.0.0.2")),
            Op::Cursor { pool: "blue".into(), ip: "10.0.0.2".parse().expect("ip") },
        ])
        .expect("commit");
        s.commit(vec![Op::Reserve(res("b", "10.0.0.3"))]).expect("commit");
        s.commit(vec![release("a")]).expect("commit");
    }
    let s = Store::open(&p).expect("reopen");
    assert_eq!(s.state().len(), 1);
    assert!(s.state().is_held("blue", "10.0.0.3".parse().expect("ip")));
    assert_eq!(s.state().cursor("blue"), Some("10.0.0.2".parse().expect("ip")));
    use std::os::unix::fs::PermissionsExt;
    for f in ["store", "store.lock"] {
        let mode = fs::metadata(d.join(f)).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
}

#[test]
fn second_open_is_refused_by_the_lock() {
    let d = tempdir();
    let p = d.join("store");
    let _s = Store::open(&p).expect("open");
    let e = Store::open(&p).expect_err("locked");
    assert!(e.to_string().contains("another ipam-node already runs"), "{e}");
}

#[test]
fn torn_last_line_is_kept_aside_then_cut_off() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempdir();
    let p = d.join("store");
    {
        let mut s = Store::open(&p).expect("open");
        s.commit(vec![Op::Reserve(res("a", "10.0.0.2"))]).expect("commit");
    }
    let good = fs::read(&p).expect("read");
    let tail = b"0123456789abcdef {\"seq\":9,\"ops\":[{\"op\":\"res";
    let mut torn = good.clone();
    torn.extend_from_slice(tail);
    fs::write(&p, &torn).expect("write");
    {
        let mut s = Store::open(&p).expect("open with torn tail");
        assert_eq!(s.state().len(), 1);
        s.commit(vec![Op::Reserve(res("b", "10.0.0.3"))]).expect("commit after the cut");
    }
    let kept: Vec<PathBuf> = fs::read_dir(&*d)
        .expect("ls")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("store.torn-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(fs::read(&kept[0]).expect("read torn"), tail);
    assert_eq!(fs::metadata(&kept[0]).expect("stat").permissions().mode() & 0o777, 0o600);
    let after = fs::read(&p).expect("read");
    assert!(after.starts_with(&good) && !after.windows(tail.len()).any(|w| w == tail), "torn tail cut");
    assert_eq!(Store::open(&p).expect("reopen").state().len(), 2);
}

#[test]
fn bit_flip_in_the_last_complete_line_refuses_and_leaves_the_file() {
    let d = tempdir();
    let p = d.join("store");
    {
        let mut s = Store::open(&p).expect("open");
        s.commit(vec![Op::Reserve(res("a", "10.0.0.2"))]).expect("commit");
        s.commit(vec![Op::Reserve(res("b", "10.0.0.3"))]).expect("commit");
    }
    let mut bytes = fs::read(&p).expect("read");
    let i = bytes.windows(8).position(|w| w == b"10.0.0.3").expect("ip in file");
    bytes[i + 7] ^= 0x04;
    fs::write(&p, &bytes).expect("write");
    let e = Store::open(&p).expect_err("damaged last line");
    let msg = e.to_string();
    assert!(msg.contains("damaged at line 3 (checksum mismatch)"), "{msg}");
    assert!(msg.contains("sed -i '3d'"), "{msg}");
    assert_eq!(fs::read(&p).expect("read"), bytes, "never overwritten or cut");
    assert_eq!(fs::read_dir(&*d).expect("ls").count(), 2, "store and store.lock only");
}

#[test]
fn damaged_middle_line_refuses_and_leaves_file_untouched() {
    let d = tempdir();
    let p = d.join("store");
    {
        let mut s = Store::open(&p).expect("open");
        s.commit(vec![Op::Reserve(res("a", "10.0.0.2"))]).expect("commit");
        s.commit(vec![Op::Reserve(res("b", "10.0.0.3"))]).expect("commit");
    }
    let mut bytes = fs::read(&p).expect("read");
    let i = bytes.windows(8).position(|w| w == b"10.0.0.2").expect("ip in file");
    bytes[i + 7] = b'9';
    fs::write(&p, &bytes).expect("write");
    let e = Store::open(&p).expect_err("corrupt");
    let msg = e.to_string();
    assert!(msg.contains("damaged at line 2") && msg.contains("checksum mismatch"), "{msg}");
    assert!(msg.contains(".prev"), "{msg}");
    assert_eq!(fs::read(&p).expect("read"), bytes, "never overwritten");
}

#[test]
fn a_file_over_the_size_limit_is_refused_unread() {
    let d = tempdir();
    let p = d.join("store");
    let f = File::create(&p).expect("create");
    f.set_len(MAX_STORE_BYTES + 1).expect("sparse file");
    match Store::open(&p) {
        Err(e @ StoreError::TooLarge { .. }) => {
            assert!(e.to_string().contains(&format!("more than the {MAX_STORE_BYTES}-byte limit")), "{e}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fs::metadata(&p).expect("stat").len(), MAX_STORE_BYTES + 1);
}

#[test]
fn garbage_file_refuses() {
    let d = tempdir();
    let p = d.join("store");
    fs::write(&p, b"something\nelse\n").expect("write");
    let e = Store::open(&p).expect_err("garbage");
    assert!(e.to_string().contains("damaged at line 1"), "{e}");
}

#[test]
fn compaction_keeps_state_and_previous_generation() {
    let d = tempdir();
    let p = d.join("store");
    {
        let mut s = Store::open(&p).expect("open");
        for i in 0..(COMPACT_MIN_LINES + 10) {
            let ip = format!("10.0.{}.{}", i / 250, i % 250 + 1);
            s.commit(vec![Op::Reserve(res(&format!("c{i}"), &ip))]).expect("commit");
            if i % 2 == 0 {
                s.commit(vec![release(&format!("c{i}"))]).expect("commit");
            }
        }
        assert!(s.generation >= 2, "compacted at least once");
    }
    assert!(d.join("store.prev").exists());
    let s = Store::open(&p).expect("reopen");
    assert_eq!(s.state().len(), (COMPACT_MIN_LINES + 10) / 2);
    assert!(!d.join("store.tmp").exists());
}

#[test]
fn deferred_commits_from_many_threads_are_durable_after_wait() {
    let d = tempdir();
    let p = d.join("store");
    let store = std::sync::Arc::new(std::sync::Mutex::new(Store::open(&p).expect("open")));
    let durability = store.lock().expect("lock").durability();
    let threads: Vec<_> = (0..32)
        .map(|i| {
            let (store, durability) = (store.clone(), durability.clone());
            std::thread::spawn(move || {
                let ticket = store
                    .lock()
                    .expect("lock")
                    .commit_deferred(vec![Op::Reserve(res(&format!("c{i}"), &format!("10.0.1.{}", i + 1)))])
                    .expect("commit");
                durability.wait(ticket).expect("durable");
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    drop(store);
    let s = Store::open(&p).expect("reopen");
    assert_eq!(s.state().len(), 32);
}

#[test]
fn missing_store_with_previous_generation_refuses() {
    let d = tempdir();
    fs::write(d.join("store.prev"), b"x").expect("write");
    let e = Store::open(&d.join("store")).expect_err("missing");
    assert!(e.to_string().contains("is missing but"), "{e}");
    assert!(!d.join("store").exists(), "nothing created");
}

/// A store with reservations and a real previous generation (one compaction).
fn store_with_prev(p: &Path) {
    let mut s = Store::open(p).expect("open");
    s.commit(vec![Op::Reserve(res("keep", "10.0.9.9"))]).expect("commit");
    s.rewrite().expect("compact");
    s.commit(vec![Op::Reserve(res("new", "10.0.9.10"))]).expect("commit");
}

#[test]
fn empty_store_with_previous_generation_refuses_and_the_advice_works() {
    let d = tempdir();
    let p = d.join("store");
    store_with_prev(&p);
    fs::write(&p, b"").expect("truncate");
    let e = Store::open(&p).expect_err("empty with prev");
    let msg = e.to_string();
    assert!(msg.contains("is empty (no header) but") && msg.contains("1 reservations"), "{msg}");
    assert_eq!(fs::read(&p).expect("read"), b"", "untouched");
    // the first way out: restore the previous generation
    fs::rename(d.join("store.prev"), &p).expect("mv store.prev store");
    let s = Store::open(&p).expect("restored");
    assert!(s.state().is_held("blue", "10.0.9.9".parse().expect("ip")));
}

#[test]
fn empty_store_alone_starts_empty() {
    let d = tempdir();
    let p = d.join("store");
    fs::write(&p, b"\n").expect("write");
    assert!(Store::open(&p).expect("empty").state().is_empty());
}

#[test]
fn leftover_tmp_is_removed_or_refused_by_what_it_holds() {
    let d = tempdir();
    let p = d.join("store");
    let tmp = d.join("store.tmp");
    {
        let mut s = Store::open(&p).expect("open");
        s.commit(vec![Op::Reserve(res("a", "10.0.0.2"))]).expect("commit");
    }
    // a valid store: the tmp of an unfinished compaction is dropped
    let store_bytes = fs::read(&p).expect("read");
    fs::write(&tmp, &store_bytes[..store_bytes.len() - 5]).expect("write tmp");
    drop(Store::open(&p).expect("open"));
    assert!(!tmp.exists());
    // no store, a tmp with records: refused
    fs::rename(&p, &tmp).expect("mv store store.tmp");
    let e = Store::open(&p).expect_err("tmp with records");
    assert!(e.to_string().contains("store.tmp (an unfinished compaction"), "{e}");
    assert!(tmp.exists() && !p.exists(), "untouched");
    // no store, a tmp with a header only (a crash during the first start): starts empty
    let header = store_bytes.iter().position(|b| *b == b'\n').expect("header") + 1;
    fs::write(&tmp, &store_bytes[..header]).expect("write tmp");
    assert!(Store::open(&p).expect("first start").state().is_empty());
    assert!(!tmp.exists());
}

#[test]
fn deleted_or_replaced_lock_file_keeps_a_second_store_out() {
    let d = tempdir();
    let p = d.join("store");
    let _s = Store::open(&p).expect("open");
    fs::remove_file(d.join("store.lock")).expect("rm store.lock");
    let e = Store::open(&p).expect_err("locked");
    let msg = e.to_string();
    assert!(msg.contains(&format!("pid {}", std::process::id())), "{msg}");
    assert!(!d.join("store.lock").exists(), "the refused open created nothing");
    fs::write(d.join("store.lock"), b"{}").expect("replace store.lock");
    assert!(matches!(Store::open(&p), Err(StoreError::Locked { .. })));
}

#[test]
fn a_moved_or_replaced_store_refuses_every_later_change() {
    let d = tempdir();
    let p = d.join("store");
    let mut s = Store::open(&p).expect("open");
    s.commit(vec![Op::Reserve(res("a", "10.0.0.2"))]).expect("commit");
    let bytes = fs::read(&p).expect("read");
    fs::write(d.join("copy"), &bytes).expect("copy");
    fs::rename(d.join("copy"), &p).expect("replace the store");
    let e = s.commit(vec![Op::Reserve(res("b", "10.0.0.3"))]).expect_err("moved");
    assert!(matches!(e, StoreError::Moved { .. }), "{e}");
    assert_eq!(s.state().len(), 1, "nothing applied");
    assert!(matches!(s.commit(vec![release("a")]), Err(StoreError::Moved { .. })));
    assert_eq!(fs::read(&p).expect("read"), bytes);
}

#[test]
fn wider_modes_are_set_to_0600() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempdir();
    let p = d.join("store");
    store_with_prev(&p);
    for f in ["store", "store.prev", "store.lock"] {
        fs::set_permissions(d.join(f), fs::Permissions::from_mode(0o664)).expect("chmod");
    }
    drop(Store::open(&p).expect("open"));
    for f in ["store", "store.prev", "store.lock"] {
        let mode = fs::metadata(d.join(f)).expect("stat").permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600, "{f}");
    }
}

#[test]
fn inconsistent_commit_changes_nothing() {
    let d = tempdir();
    let p = d.join("store");
    let mut s = Store::open(&p).expect("open");
    s.commit(vec![Op::Reserve(res("a", "10.0.0.2"))]).expect("commit");
    let before = fs::read(&p).expect("read");
    assert!(s.commit(vec![Op::Reserve(res("b", "10.0.0.2"))]).is_err());
    assert_eq!(fs::read(&p).expect("read"), before);
    assert_eq!(s.state().len(), 1);
}

#[test]
fn cooldowns_survive_reopen_and_compaction_drops_ended_ones() {
    let d = tempdir();
    let p = d.join("store");
    let ip = |s: &str| -> std::net::IpAddr { s.parse().expect("ip") };
    let far = unix_ms() + 3_600_000;
    {
        let mut s = Store::open(&p).expect("open");
        s.commit(vec![
            Op::Cooldown { pool: "blue".into(), ip: ip("10.0.0.2"), until_ms: far },
            Op::Cooldown { pool: "blue".into(), ip: ip("10.0.0.3"), until_ms: 1 },
        ])
        .expect("commit");
    }
    let mut s = Store::open(&p).expect("reopen");
    assert!(s.state().is_cooling("blue", ip("10.0.0.2"), unix_ms()));
    assert_eq!(s.state().cooldowns().count(), 2, "replay keeps what the journal says");
    s.rewrite().expect("compact");
    drop(s);
    let s = Store::open(&p).expect("reopen after compaction");
    let left: Vec<_> = s.state().cooldowns().map(|(_, a, _)| a).collect();
    assert_eq!(left, vec![ip("10.0.0.2")]);
}

#[test]
fn version_1_files_are_read_and_future_versions_refused() {
    let d = tempdir();
    let p = d.join("store");
    let mut v1 = encode_line(&Header { format: record::FORMAT_NAME.into(), version: 1, generation: 1 });
    v1.extend(encode_line(&Txn { seq: 1, ops: vec![Op::Reserve(res("a", "10.0.0.2"))] }));
    fs::write(&p, &v1).expect("write v1");
    {
        let s = Store::open(&p).expect("open v1");
        assert_eq!(s.state().len(), 1);
    }
    let v9 = encode_line(&Header { format: record::FORMAT_NAME.into(), version: 9, generation: 1 });
    fs::write(&p, &v9).expect("write v9");
    let e = Store::open(&p).expect_err("v9");
    assert!(e.to_string().contains("format version 9"), "{e}");
}
