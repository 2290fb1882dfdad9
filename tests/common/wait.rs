//! Every way a test waits: until a condition holds, while a condition must keep holding, until
//! a sampled value stops changing, until a child process exits. Each has a deadline and names
//! what it waited for when it gives up.
//!
//! This is the only place in the tests that sleeps while waiting: the pause between two looks
//! at a condition (2 ms doubling to 50 ms). Tests never sleep to let something happen, and never
//! assert on a measured duration: they wait for the thing itself, or check that a property
//! holds over a window. (Two sleeps elsewhere are the behaviour under test, not waits: the rate
//! of a trickling peer in `peers.rs`, the random kill moment in `tests/crash.rs`.)

use std::io::Read;
use std::process::{Child, ExitStatus, Output};
use std::time::{Duration, Instant};

/// The pause between two looks at a condition, doubling from 2 ms up to this.
const MAX_POLL: Duration = Duration::from_millis(50);

/// Poll pauses: 2 ms, doubling, capped at [`MAX_POLL`].
struct Pause(Duration);

impl Pause {
    fn new() -> Pause {
        Pause(Duration::from_millis(2))
    }

    fn sleep(&mut self) {
        std::thread::sleep(self.0); // a poll interval, not a synchronisation guess
        self.0 = (self.0 * 2).min(MAX_POLL);
    }
}

/// Polls `cond` until it holds; panics naming `what` when `deadline` passes first.
pub fn wait_until(deadline: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    let mut pause = Pause::new();
    loop {
        if cond() {
            return;
        }
        if Instant::now() >= end {
            panic!("timed out after {deadline:?} waiting until {what}");
        }
        pause.sleep();
    }
}

/// Checks `cond` over a window: it must hold at every look that ends before `window` has
/// passed, and at least `min_checks` looks must be made (the window is extended for them);
/// panics naming `what` the first time it does not hold.
/// For "nothing happens" properties (a server keeps answering, a lease is not taken early).
/// Returns the number of looks.
pub fn stays_true(window: Duration, min_checks: usize, what: &str, cond: impl FnMut() -> bool) -> usize {
    stays_true_until(Instant::now() + window, min_checks, what, cond)
}

/// [`stays_true`] up to the instant `end` (a window that started before the call, e.g. when
/// the change under test was made).
pub fn stays_true_until(
    end: Instant,
    min_checks: usize,
    what: &str,
    mut cond: impl FnMut() -> bool,
) -> usize {
    let mut pause = Pause::new();
    let mut checks = 0;
    loop {
        if !cond() {
            // A look takes time: one that ends after `end` may have seen the moment after the
            // window, which is no violation.
            assert!(
                checks >= min_checks && Instant::now() >= end,
                "{what}: stopped holding after {checks} checks"
            );
            return checks;
        }
        checks += 1;
        if checks >= min_checks && Instant::now() >= end {
            return checks;
        }
        pause.sleep();
    }
}

/// Waits until `sample` returns the same value for a whole `window` (no change between looks
/// spanning it); panics naming `what` if that has not happened by `deadline`. Returns the
/// stable value.
pub fn wait_stable<T: PartialEq + std::fmt::Debug>(
    deadline: Duration,
    window: Duration,
    what: &str,
    mut sample: impl FnMut() -> T,
) -> T {
    let end = Instant::now() + deadline;
    let mut pause = Pause::new();
    let mut value = sample();
    let mut since = Instant::now();
    loop {
        if since.elapsed() >= window {
            return value;
        }
        assert!(Instant::now() < end, "timed out after {deadline:?} waiting until {what} (last {value:?})");
        pause.sleep();
        let now = sample();
        if now != value {
            value = now;
            since = Instant::now();
        }
    }
}

/// Waits until `child` exits; after `deadline` kills it and panics naming `what`.
pub fn wait_exit(child: &mut Child, deadline: Duration, what: &str) -> ExitStatus {
    exit_within(child, deadline)
        .unwrap_or_else(|| panic!("timed out after {deadline:?} waiting until {what}"))
}

/// Waits until `child` exits; `None` (the child killed and reaped) if `deadline` passed first.
pub fn exit_within(child: &mut Child, deadline: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + deadline;
    let mut pause = Pause::new();
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return Some(st);
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        pause.sleep();
    }
}

/// [`wait_exit`] for a child with piped stdout and stderr: both are read on their own
/// threads meanwhile (so a full pipe cannot stall it), and returned with the status.
pub fn output_within(mut child: Child, deadline: Duration, what: &str) -> Output {
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    }
    let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let status = wait_exit(&mut child, deadline, what);
    Output { status, stdout: out.join().expect("stdout reader"), stderr: err.join().expect("stderr reader") }
}
