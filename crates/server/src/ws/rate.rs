//! The client rate limits: token buckets (GCRA) in eight bytes per connection, one over data
//! frames and one over channel operations (the channels `subscribe`/`unsubscribe` name).
//!
//! `governor` implements the same algorithm, but its direct limiter keeps the quota, a
//! clock origin and its state in every instance (40 bytes); at 19,000 connections the
//! connection future's size decides whether a tokio task cell takes 256 or 384 bytes, so
//! the quota lives once in the configuration and each connection keeps only its
//! theoretical arrival time.

/// The shared parameters: `per_second` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Microseconds between two frames at the sustained rate.
    interval_us: u64,
    /// How far ahead of now the bucket may run: `interval * burst`.
    tolerance_us: u64,
}

impl Quota {
    /// `per_second` and `burst` must be at least 1.
    pub fn new(per_second: u32, burst: u32) -> Quota {
        let interval_us = 1_000_000 / u64::from(per_second.max(1));
        Quota {
            interval_us,
            tolerance_us: interval_us * u64::from(burst.max(1)),
        }
    }
}

/// One connection's bucket: the theoretical arrival time of the next frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bucket {
    tat_us: u64,
}

impl Bucket {
    /// Admits a frame at `now_us` (a monotonic clock) or refuses it, changing nothing.
    pub fn admit(&mut self, quota: Quota, now_us: u64) -> bool {
        self.admit_n(quota, now_us, 1)
    }

    /// Admits `n` tokens at once at `now_us`, or none (changing nothing). More than the
    /// burst is never admitted.
    pub fn admit_n(&mut self, quota: Quota, now_us: u64, n: u64) -> bool {
        let tat = self.tat_us.max(now_us);
        let cost = quota.interval_us.saturating_mul(n);
        if tat.saturating_add(cost) > now_us + quota.tolerance_us {
            return false;
        }
        self.tat_us = tat + cost;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_admitted_then_frames_are_refused() {
        let q = Quota::new(50, 100);
        let mut b = Bucket::default();
        let admitted = (0..150).filter(|_| b.admit(q, 1_000_000)).count();
        assert_eq!(admitted, 100);
    }

    #[test]
    fn the_bucket_refills_at_the_sustained_rate() {
        let q = Quota::new(50, 100);
        let mut b = Bucket::default();
        let t0 = 5_000_000;
        while b.admit(q, t0) {}
        assert!(!b.admit(q, t0 + 19_999));
        assert!(b.admit(q, t0 + 20_000), "one frame per 20 ms at 50/s");
        assert!(!b.admit(q, t0 + 20_000));
    }

    #[test]
    fn a_steady_client_at_the_rate_is_never_refused() {
        let q = Quota::new(10, 1);
        let mut b = Bucket::default();
        for i in 0..1000u64 {
            assert!(b.admit(q, 1_000_000 + i * 100_000), "frame {i}");
        }
    }

    #[test]
    fn a_weighted_admission_takes_all_its_tokens_or_none() {
        let q = Quota::new(200, 2048);
        let mut b = Bucket::default();
        let t0 = 10_000_000;
        for i in 0..20 {
            assert!(b.admit_n(q, t0, 100), "frame {i} of 100 channels");
        }
        // 2000 of 2048 used: 100 more do not fit, 48 do.
        let before = b;
        assert!(!b.admit_n(q, t0, 100));
        assert_eq!(b, before);
        assert!(b.admit_n(q, t0, 48));
        // 200 per second: 100 tokens back after half a second.
        assert!(!b.admit_n(q, t0 + 499_999, 100));
        assert!(b.admit_n(q, t0 + 500_000, 100));
    }

    #[test]
    fn more_than_the_burst_is_never_admitted() {
        let q = Quota::new(10, 5);
        let mut b = Bucket::default();
        assert!(!b.admit_n(q, 1_000_000_000, 6));
        assert!(b.admit_n(q, 1_000_000_000, 5));
    }

    #[test]
    fn a_refusal_changes_nothing() {
        let q = Quota::new(1, 1);
        let mut b = Bucket::default();
        assert!(b.admit(q, 0));
        let before = b;
        assert!(!b.admit(q, 1));
        assert_eq!(b, before);
    }
}
