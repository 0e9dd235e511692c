//! Spacing of the control messages a connector sends.
//!
//! Binance closes a connection that receives more than 5 messages in a second, and pings,
//! pongs and JSON control messages all count (reference section 3.1 and its 2026 correction).
//! Our pongs are answered by tungstenite at once and cannot be delayed, so what we send
//! ourselves is spaced at least 300 ms apart: at most 4 in any second, leaving room for a pong.

use std::time::Duration;

use tokio::time::Instant;

/// Minimum spacing of outbound control messages on one connection.
pub const MIN_SPACING: Duration = Duration::from_millis(300);

/// When the next outbound message may go.
#[derive(Debug, Clone)]
pub struct OutboundLimiter {
    spacing: Duration,
    last_sent: Option<Instant>,
}

impl OutboundLimiter {
    /// At most one message per `spacing`.
    pub fn new(spacing: Duration) -> Self {
        OutboundLimiter {
            spacing,
            last_sent: None,
        }
    }

    /// The earliest time the next message may be sent.
    pub fn ready_at(&self) -> Instant {
        match self.last_sent {
            Some(last) => last + self.spacing,
            None => Instant::now(),
        }
    }

    /// Records that a message was sent at `now`.
    pub fn sent(&mut self, now: Instant) {
        self.last_sent = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn no_second_holds_more_than_four_messages() {
        let mut limiter = OutboundLimiter::new(MIN_SPACING);
        let start = Instant::now();
        let mut sent = Vec::new();
        for _ in 0..20 {
            tokio::time::sleep_until(limiter.ready_at()).await;
            let now = Instant::now();
            limiter.sent(now);
            sent.push(now - start);
        }
        for (i, at) in sent.iter().enumerate() {
            let in_window = sent[i..]
                .iter()
                .take_while(|later| **later < *at + Duration::from_secs(1))
                .count();
            assert!(
                in_window <= 4,
                "{in_window} messages within a second from {at:?}"
            );
        }
    }
}
