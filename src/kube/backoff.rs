//! Retry pacing for the reflector: capped exponential backoff with full jitter.
//!
//! Owns: [`Backoff`] and the tiny [`XorShift`] generator behind the jitter. Must not: read
//! clocks or sleep; the caller seeds it (time + pid) and sleeps. Pure and unit-tested.

use std::time::Duration;

/// First retry ceiling.
pub const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// Growth per failed attempt.
pub const BACKOFF_FACTOR: u32 = 2;
/// Upper bound of any delay: a broken apiserver is retried at least twice a minute.
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// Lower bound of a delay, so that full jitter never turns into a busy loop.
pub const BACKOFF_FLOOR: Duration = Duration::from_millis(10);

/// xorshift64: enough randomness to spread retries of many clients; not for secrets.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A zero seed (the one fixed point of xorshift) is replaced by a constant.
    pub fn new(seed: u64) -> XorShift {
        XorShift(if seed == 0 { 0x9E37_79B9_7F4A_7C15 } else { seed })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Delays for consecutive failures: attempt n waits a random time in
/// `[BACKOFF_FLOOR, min(BACKOFF_CAP, BACKOFF_BASE * 2^n)]`.
#[derive(Debug, Clone)]
pub struct Backoff {
    attempt: u32,
    rng: XorShift,
}

impl Backoff {
    pub fn new(seed: u64) -> Backoff {
        Backoff { attempt: 0, rng: XorShift::new(seed) }
    }

    /// The ceiling for `attempt` (0-based), without jitter.
    pub fn ceiling(attempt: u32) -> Duration {
        let mult = BACKOFF_FACTOR.checked_pow(attempt.min(31)).unwrap_or(u32::MAX);
        BACKOFF_BASE.checked_mul(mult).map_or(BACKOFF_CAP, |d| d.min(BACKOFF_CAP))
    }

    /// The delay before the next retry; advances the attempt counter.
    pub fn next_delay(&mut self) -> Duration {
        let ceil = Backoff::ceiling(self.attempt).as_millis() as u64;
        self.attempt = self.attempt.saturating_add(1);
        let ms = self.rng.next_u64() % (ceil + 1);
        Duration::from_millis(ms).max(BACKOFF_FLOOR)
    }

    /// Failed attempts since the last success.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// After a success: the next failure starts from the base again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_then_caps() {
        assert_eq!(Backoff::ceiling(0), Duration::from_millis(200));
        assert_eq!(Backoff::ceiling(1), Duration::from_millis(400));
        assert_eq!(Backoff::ceiling(7), Duration::from_millis(25_600));
        assert_eq!(Backoff::ceiling(8), BACKOFF_CAP);
        assert_eq!(Backoff::ceiling(u32::MAX), BACKOFF_CAP);
    }

    #[test]
    fn delays_stay_within_bounds_and_reset() {
        let mut b = Backoff::new(42);
        for n in 0..100 {
            let d = b.next_delay();
            assert!(d >= BACKOFF_FLOOR && d <= Backoff::ceiling(n).max(BACKOFF_FLOOR), "attempt {n}: {d:?}");
        }
        assert_eq!(b.attempts(), 100);
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert!(b.next_delay() <= BACKOFF_BASE);
    }

    #[test]
    fn jitter_spreads() {
        let mut b = Backoff::new(7);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..50 {
            b.attempt = 10;
            seen.insert(b.next_delay());
        }
        assert!(seen.len() > 40, "{seen:?}");
        let mut z = XorShift::new(0);
        assert_ne!(z.next_u64(), 0);
    }
}
