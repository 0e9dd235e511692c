//! Reconnect delays: exponential backoff with full jitter, so that clients dropped together
//! (a server restart) do not come back together.

use std::time::Duration;

use rand::Rng;

/// Delays between reconnect attempts: attempt `n` (from 0) waits a uniformly random time in
/// `[0, min(max, initial * 2^n)]`. The attempt count restarts once a connection is welcomed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
}

impl Default for Backoff {
    /// 1 s initial, 30 s at most, as the TypeScript client.
    fn default() -> Self {
        Backoff::new(Duration::from_secs(1), Duration::from_secs(30))
    }
}

impl Backoff {
    /// A backoff starting at `initial` and never above `max` (raised to `initial` if lower).
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max: max.max(initial),
        }
    }

    /// The longest delay attempt `attempt` may wait: `min(max, initial * 2^attempt)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        self.initial
            .saturating_mul(1u32 << attempt.min(30))
            .min(self.max)
    }

    /// A random delay for attempt `attempt`, within `[0, ceiling(attempt)]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, &mut rand::thread_rng())
    }

    /// [`Backoff::delay`] with a caller's random source.
    pub fn delay_with(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = u64::try_from(self.ceiling(attempt).as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.gen_range(0..=ceiling))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_doubles_from_initial_up_to_max() {
        let b = Backoff::default();
        let secs: Vec<u64> = (0..8).map(|n| b.ceiling(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn delays_are_jittered_within_zero_and_the_ceiling() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut rng = rand::thread_rng();
        for attempt in 0..40 {
            for _ in 0..50 {
                assert!(b.delay_with(attempt, &mut rng) <= b.ceiling(attempt));
            }
        }
    }

    #[test]
    fn a_max_below_initial_is_raised_to_initial() {
        let b = Backoff::new(Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(b.ceiling(4), Duration::from_secs(5));
    }
}
