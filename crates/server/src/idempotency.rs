//! Idempotent publishing: a retried publish with the same key gets the first answer.
//!
//! Keys are scoped by the caller (API key) and endpoint and remembered for the dedup window.
//! The body's SHA-256 is kept with the answer so a key reused for a different body is a 409.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// What a publish should do with its idempotency key.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// First use: go ahead, then `complete` (or `abandon` on failure).
    Fresh,
    /// Seen before with the same body: answer this again, publish nothing.
    Replay { status: u16, body: String },
    /// Seen with another body, or the first request is still being processed.
    Conflict(&'static str),
}

#[derive(Debug)]
enum Slot {
    InFlight {
        body_hash: [u8; 32],
        at: Instant,
    },
    Done {
        body_hash: [u8; 32],
        at: Instant,
        status: u16,
        body: String,
    },
}

impl Slot {
    fn at(&self) -> Instant {
        match self {
            Slot::InFlight { at, .. } | Slot::Done { at, .. } => *at,
        }
    }
}

/// The remembered keys.
#[derive(Debug)]
pub struct Idempotency {
    window: Duration,
    slots: Mutex<HashMap<String, Slot>>,
}

/// SHA-256 of a request body.
pub fn body_hash(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

impl Idempotency {
    pub fn new(window_s: u64) -> Self {
        Idempotency {
            window: Duration::from_secs(window_s),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Claims `scope_key` (caller, endpoint and key joined) for a body with `hash`.
    pub fn claim(&self, scope_key: &str, hash: [u8; 32]) -> Claim {
        let now = Instant::now();
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if slots.len() > 4096 {
            let window = self.window;
            slots.retain(|_, slot| now.duration_since(slot.at()) < window);
        }
        match slots.get(scope_key) {
            Some(slot) if now.duration_since(slot.at()) < self.window => match slot {
                Slot::Done {
                    body_hash,
                    status,
                    body,
                    ..
                } if *body_hash == hash => Claim::Replay {
                    status: *status,
                    body: body.clone(),
                },
                Slot::InFlight { body_hash, .. } if *body_hash == hash => {
                    Claim::Conflict("a request with this idempotency key is still being processed")
                }
                _ => Claim::Conflict("idempotency key reused with a different body"),
            },
            _ => {
                slots.insert(
                    scope_key.to_string(),
                    Slot::InFlight {
                        body_hash: hash,
                        at: now,
                    },
                );
                Claim::Fresh
            }
        }
    }

    /// Records the answer for a claimed key.
    pub fn complete(&self, scope_key: &str, hash: [u8; 32], status: u16, body: String) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.insert(
            scope_key.to_string(),
            Slot::Done {
                body_hash: hash,
                at: Instant::now(),
                status,
                body,
            },
        );
    }

    /// Releases a claimed key whose request failed, so a retry can succeed.
    pub fn abandon(&self, scope_key: &str) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(slots.get(scope_key), Some(Slot::InFlight { .. })) {
            slots.remove(scope_key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_with_the_same_body_replays_the_first_answer() {
        let idem = Idempotency::new(300);
        let h = body_hash(b"{}");
        assert_eq!(idem.claim("k", h), Claim::Fresh);
        idem.complete("k", h, 200, "{\"seq\":1}".into());
        assert_eq!(
            idem.claim("k", h),
            Claim::Replay {
                status: 200,
                body: "{\"seq\":1}".into()
            }
        );
    }

    #[test]
    fn the_same_key_with_another_body_conflicts() {
        let idem = Idempotency::new(300);
        idem.claim("k", body_hash(b"a"));
        idem.complete("k", body_hash(b"a"), 200, String::new());
        assert!(matches!(
            idem.claim("k", body_hash(b"b")),
            Claim::Conflict(_)
        ));
    }

    #[test]
    fn an_abandoned_claim_can_be_claimed_again() {
        let idem = Idempotency::new(300);
        let h = body_hash(b"a");
        idem.claim("k", h);
        assert!(matches!(idem.claim("k", h), Claim::Conflict(_)));
        idem.abandon("k");
        assert_eq!(idem.claim("k", h), Claim::Fresh);
    }

    #[test]
    fn keys_expire_after_the_window() {
        let idem = Idempotency::new(0);
        let h = body_hash(b"a");
        idem.claim("k", h);
        idem.complete("k", h, 200, String::new());
        assert_eq!(idem.claim("k", h), Claim::Fresh);
    }
}
