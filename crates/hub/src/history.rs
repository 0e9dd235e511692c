//! A channel's bounded history: the last `size` publications younger than `ttl`.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::tier::TierId;

/// One remembered publication on one channel.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    /// Hub clock milliseconds when it was published.
    pub at_ms: u64,
    /// The full envelope.
    pub full: Bytes,
    /// The `locked` stub and the tier it needs, for tier-locked publications.
    pub locked: Option<(TierId, Bytes)>,
}

impl Entry {
    /// The payload a subscriber of `tier` receives: the full envelope or the locked stub.
    pub fn for_tier(&self, tier: TierId) -> &Bytes {
        match &self.locked {
            Some((needed, stub)) if tier < *needed => stub,
            _ => &self.full,
        }
    }
}

/// Bounds on a channel's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// At most this many publications (0: no history).
    pub size: usize,
    /// Publications older than this are forgotten.
    pub ttl_ms: u64,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits {
            size: 100,
            ttl_ms: 300_000,
        }
    }
}

/// The ring of recent publications of one channel, oldest first.
#[derive(Debug, Default)]
pub struct History {
    entries: VecDeque<Entry>,
}

impl History {
    /// Appends a publication and trims to the limits.
    pub fn push(&mut self, entry: Entry, limits: HistoryLimits) {
        if limits.size == 0 {
            return;
        }
        while self.entries.len() >= limits.size {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }

    /// Forgets publications older than the ttl at `now_ms`.
    pub fn prune(&mut self, now_ms: u64, limits: HistoryLimits) {
        while let Some(front) = self.entries.front() {
            if now_ms.saturating_sub(front.at_ms) > limits.ttl_ms {
                self.entries.pop_front();
            } else {
                break;
            }
        }
        if self.entries.is_empty() && self.entries.capacity() > 0 {
            self.entries = VecDeque::new();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The publications with seq > `after`, oldest first, if the history still holds every
    /// one of them up to `last_seq` (the channel's current seq); None when there is a gap.
    pub fn since(&self, after: u64, last_seq: u64) -> Option<impl Iterator<Item = &Entry>> {
        if after > last_seq {
            return None;
        }
        if after == last_seq {
            return Some(self.entries.range(self.entries.len()..));
        }
        let oldest = self.entries.front()?.seq;
        if oldest > after + 1 {
            return None;
        }
        let start = (after + 1 - oldest) as usize;
        Some(self.entries.range(start..))
    }

    /// The last `limit` publications, oldest first.
    pub fn last(&self, limit: usize) -> impl Iterator<Item = &Entry> {
        let start = self.entries.len().saturating_sub(limit);
        self.entries.range(start..)
    }

    /// The newest publication.
    pub fn newest(&self) -> Option<&Entry> {
        self.entries.back()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, at_ms: u64) -> Entry {
        Entry {
            seq,
            at_ms,
            full: Bytes::from(format!("{seq}")),
            locked: None,
        }
    }

    const LIMITS: HistoryLimits = HistoryLimits {
        size: 3,
        ttl_ms: 1000,
    };

    fn seqs<'a>(it: impl Iterator<Item = &'a Entry>) -> Vec<u64> {
        it.map(|e| e.seq).collect()
    }

    #[test]
    fn keeps_at_most_size_entries() {
        let mut h = History::default();
        for seq in 1..=5 {
            h.push(entry(seq, 0), LIMITS);
        }
        assert_eq!(seqs(h.last(10)), [3, 4, 5]);
    }

    #[test]
    fn since_returns_exactly_the_missed_entries() {
        let mut h = History::default();
        for seq in 1..=3 {
            h.push(entry(seq, 0), LIMITS);
        }
        assert_eq!(seqs(h.since(1, 3).unwrap()), [2, 3]);
        assert_eq!(seqs(h.since(0, 3).unwrap()), [1, 2, 3]);
        assert_eq!(seqs(h.since(3, 3).unwrap()), Vec::<u64>::new());
    }

    #[test]
    fn since_is_none_when_the_gap_is_older_than_the_history() {
        let mut h = History::default();
        for seq in 1..=5 {
            h.push(entry(seq, 0), LIMITS);
        }
        assert!(h.since(1, 5).is_none());
        assert!(h.since(2, 5).is_some());
        assert!(h.since(6, 5).is_none(), "a position from the future");
    }

    #[test]
    fn prune_forgets_entries_past_the_ttl() {
        let mut h = History::default();
        h.push(entry(1, 0), LIMITS);
        h.push(entry(2, 500), LIMITS);
        h.prune(1200, LIMITS);
        assert_eq!(seqs(h.last(10)), [2]);
        assert!(h.since(0, 2).is_none());
    }

    #[test]
    fn zero_size_keeps_nothing() {
        let mut h = History::default();
        h.push(
            entry(1, 0),
            HistoryLimits {
                size: 0,
                ttl_ms: 1000,
            },
        );
        assert!(h.is_empty());
    }

    #[test]
    fn locked_entries_give_the_stub_below_their_tier() {
        let e = Entry {
            seq: 1,
            at_ms: 0,
            full: Bytes::from_static(b"full"),
            locked: Some((TierId(1), Bytes::from_static(b"stub"))),
        };
        assert_eq!(e.for_tier(TierId(0)), &Bytes::from_static(b"stub"));
        assert_eq!(e.for_tier(TierId(1)), &Bytes::from_static(b"full"));
        assert_eq!(e.for_tier(TierId(3)), &Bytes::from_static(b"full"));
    }
}
