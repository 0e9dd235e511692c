//! Per-product sequence checks of one connection (spec item 59).
//!
//! Sequences start afresh with every connection. A number lower than or equal to the last
//! one seen is a duplicate or arrived out of order: the message is dropped. A jump is only a
//! gap when the exchange numbers that stream contiguously; Coinbase's ticker shares the
//! product's sequence with the full channel and Binance's tickers carry none, so for them a
//! jump is normal (reference sections 1.9 and 3.5).

use std::collections::HashMap;

/// What to do with a message, given its sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqVerdict {
    /// The next one: use it.
    InOrder,
    /// Newer, but numbers were skipped on a contiguous stream: use it and count a gap.
    Gap,
    /// Not newer than the last one: drop it and count it.
    Backwards,
}

/// The last sequence per product on one connection.
#[derive(Debug, Default)]
pub struct SequenceTracker {
    last: HashMap<String, u64>,
    contiguous: bool,
}

impl SequenceTracker {
    /// `contiguous`: whether the stream numbers every message (only then a jump is a gap).
    pub fn new(contiguous: bool) -> Self {
        SequenceTracker {
            last: HashMap::new(),
            contiguous,
        }
    }

    /// Checks `seq` for `product` and remembers it when it is newer.
    pub fn check(&mut self, product: &str, seq: u64) -> SeqVerdict {
        match self.last.get_mut(product) {
            None => {
                self.last.insert(product.to_string(), seq);
                SeqVerdict::InOrder
            }
            Some(last) if seq <= *last => SeqVerdict::Backwards,
            Some(last) => {
                let jumped = seq > last.saturating_add(1);
                *last = seq;
                if jumped && self.contiguous {
                    SeqVerdict::Gap
                } else {
                    SeqVerdict::InOrder
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backwards_and_repeated_sequences_are_dropped_per_product() {
        let mut seqs = SequenceTracker::new(false);
        assert_eq!(seqs.check("BTC-USD", 10), SeqVerdict::InOrder);
        assert_eq!(seqs.check("BTC-USD", 10), SeqVerdict::Backwards);
        assert_eq!(seqs.check("BTC-USD", 9), SeqVerdict::Backwards);
        // Another product has its own numbers.
        assert_eq!(seqs.check("ETH-USD", 3), SeqVerdict::InOrder);
        assert_eq!(seqs.check("BTC-USD", 11), SeqVerdict::InOrder);
    }

    #[test]
    fn jumps_are_gaps_only_on_contiguous_streams() {
        let mut ticker = SequenceTracker::new(false);
        ticker.check("BTC-USD", 10);
        assert_eq!(ticker.check("BTC-USD", 50), SeqVerdict::InOrder);

        let mut full = SequenceTracker::new(true);
        full.check("BTC-USD", 10);
        assert_eq!(full.check("BTC-USD", 11), SeqVerdict::InOrder);
        assert_eq!(full.check("BTC-USD", 14), SeqVerdict::Gap);
        assert_eq!(full.check("BTC-USD", 15), SeqVerdict::InOrder);
    }
}
