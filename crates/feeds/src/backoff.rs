//! Reconnect delays: capped exponential backoff with jitter (spec item 60).
//!
//! Attempt k waits a uniformly random time in [d/2, d] with d = min(cap, unit * 2^k); the
//! unit is 1 s and the cap 30 s in production. Half the delay is kept fixed so a feed never
//! hammers an exchange (Coinbase: a few connections a second per IP), the other half is
//! random so many feeds dropped at once do not come back in step.

use std::time::Duration;

use rand::Rng;

/// The reconnect delay sequence of one feed.
#[derive(Debug, Clone)]
pub struct Backoff {
    unit: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// Delays of `unit * 2^k`, capped at `cap`.
    pub fn new(unit: Duration, cap: Duration) -> Self {
        Backoff {
            unit,
            cap,
            attempt: 0,
        }
    }

    /// The upper bound d of the next delay, without taking it.
    pub fn ceiling(&self) -> Duration {
        // 2^k overflows long after the cap is reached; stop doubling at 2^20.
        let factor = 1u32 << self.attempt.min(20);
        self.unit.saturating_mul(factor).min(self.cap)
    }

    /// The delay before the next attempt; later calls grow it until [`Backoff::reset`].
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        let spread = (ceiling - half).as_nanos() as u64;
        half + Duration::from_nanos(rng.gen_range(0..=spread))
    }

    /// Back to the first delay, after a successful subscription.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// How many delays were taken since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn delays_double_from_one_second_to_thirty_within_half_and_full() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let mut rng = StdRng::seed_from_u64(7);
        let ceilings = [1, 2, 4, 8, 16, 30, 30, 30];
        for ceiling in ceilings {
            let d = Duration::from_secs(ceiling);
            for _ in 0..50 {
                let mut probe = backoff.clone();
                let delay = probe.next_delay(&mut rng);
                assert!(
                    delay >= d / 2 && delay <= d,
                    "{delay:?} outside [{:?}, {d:?}]",
                    d / 2
                );
            }
            assert_eq!(backoff.ceiling(), d);
            backoff.next_delay(&mut rng);
        }
    }

    #[test]
    fn reset_returns_to_the_first_delay() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..4 {
            backoff.next_delay(&mut rng);
        }
        assert_eq!(backoff.ceiling(), Duration::from_secs(16));
        backoff.reset();
        assert_eq!(backoff.ceiling(), Duration::from_secs(1));
        assert_eq!(backoff.attempt(), 0);
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut rng = StdRng::seed_from_u64(3);
        let delays: std::collections::HashSet<Duration> = (0..20)
            .map(|_| {
                Backoff::new(Duration::from_secs(8), Duration::from_secs(30)).next_delay(&mut rng)
            })
            .collect();
        assert!(delays.len() > 10, "{delays:?}");
    }
}
