//! A coarse process clock in whole seconds, cheap enough to read on every inbound frame.

use std::time::Instant;

/// Seconds since the server started; a `u32` keeps per-connection timestamps small.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    started: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            started: Instant::now(),
        }
    }
}

impl Clock {
    pub fn now_s(&self) -> u32 {
        self.started.elapsed().as_secs() as u32
    }

    /// Microseconds since the server started (drives rate limits).
    pub fn now_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    pub fn uptime_s(&self) -> u64 {
        self.started.elapsed().as_secs()
    }
}
