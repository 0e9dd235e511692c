//! Idempotent publishing: a retried publish with the same key gets the first answer.
//!
//! Keys are scoped by the caller (API key) and endpoint and remembered for the dedup window.
//! The body's SHA-256 is kept with the answer so a key reused for a different body is a 409.
//!
//! Every claim and answer also goes on a queue in time order, so expiry pops the few keys
//! that expired since the last call instead of scanning them all: a claim costs O(1)
//! however many keys are remembered.

use std::collections::{HashMap, VecDeque};
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
    slots: Mutex<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    by_key: HashMap<String, Slot>,
    /// When each slot was written, oldest first; an entry whose slot was rewritten or
    /// removed since is skipped when it comes up.
    written: VecDeque<(Instant, String)>,
}

impl Slots {
    /// Forgets the slots older than `window` at `now`.
    fn expire(&mut self, now: Instant, window: Duration) {
        while let Some((at, _)) = self.written.front() {
            if now.duration_since(*at) < window {
                break;
            }
            let (at, key) = self.written.pop_front().expect("front exists");
            if self.by_key.get(&key).is_some_and(|slot| slot.at() == at) {
                self.by_key.remove(&key);
            }
        }
    }

    fn insert(&mut self, key: &str, slot: Slot) {
        self.written.push_back((slot.at(), key.to_string()));
        self.by_key.insert(key.to_string(), slot);
    }
}

/// SHA-256 of a request body.
pub fn body_hash(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

impl Idempotency {
    pub fn new(window_s: u64) -> Self {
        Idempotency {
            window: Duration::from_secs(window_s),
            slots: Mutex::new(Slots::default()),
        }
    }

    /// How many keys are remembered now.
    pub fn len(&self) -> usize {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.expire(Instant::now(), self.window);
        slots.by_key.len()
    }

    /// True when no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Claims `scope_key` (caller, endpoint and key joined) for a body with `hash`.
    pub fn claim(&self, scope_key: &str, hash: [u8; 32]) -> Claim {
        let now = Instant::now();
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.expire(now, self.window);
        match slots.by_key.get(scope_key) {
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
                    scope_key,
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
            scope_key,
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
        if matches!(slots.by_key.get(scope_key), Some(Slot::InFlight { .. })) {
            slots.by_key.remove(scope_key);
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
    fn expired_keys_are_forgotten_by_the_next_claim_without_waiting_for_thousands() {
        // Past the window every key is gone at the next claim, with a handful remembered:
        // expiry follows time order, not a scan that only starts past 4,096 keys.
        let idem = Idempotency::new(0);
        for i in 0..10 {
            let h = body_hash(format!("{i}").as_bytes());
            idem.claim(&format!("k{i}"), h);
            idem.complete(&format!("k{i}"), h, 200, String::new());
        }
        idem.claim("fresh", body_hash(b"x"));
        assert_eq!(idem.slots.lock().unwrap().by_key.len(), 1);
        assert!(idem.slots.lock().unwrap().written.len() <= 1);
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
