//! Single-use Sign-In with Ethereum nonces: 300 s lifetime, optional address binding.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use rand::distributions::{Alphanumeric, DistString};

/// How long a nonce stays valid, in seconds (spec 9.17).
pub const NONCE_TTL_S: i64 = 300;

/// Length of an issued nonce: 20 alphanumerics, about 119 bits of entropy.
pub const NONCE_LEN: usize = 20;

/// Default bound on outstanding nonces.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// Why a nonce was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NonceError {
    #[error("unknown or already used nonce")]
    Unknown,
    #[error("nonce expired")]
    Expired,
    #[error("nonce was issued for another address")]
    WrongAddress,
}

struct Entry {
    address: Option<[u8; 20]>,
    expires_at: i64,
}

#[derive(Default)]
struct Inner {
    live: HashMap<String, Entry>,
    /// Issue order (which is expiry order, the lifetime being fixed). May still list nonces
    /// already taken; those are skipped when they reach the front.
    order: VecDeque<(i64, String)>,
}

/// Outstanding nonces. `issue` and `take` are short critical sections on a std `Mutex`.
///
/// At most `capacity` nonces are outstanding: issuing beyond that first drops expired ones,
/// then the oldest still-valid ones (memory stays bounded even under a flood of requests;
/// the HTTP layer's rate limit keeps the flood from evicting real users' nonces).
pub struct NonceStore {
    inner: Mutex<Inner>,
    capacity: usize,
}

impl std::fmt::Debug for NonceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Counts only: outstanding nonces are not for logs.
        f.debug_struct("NonceStore")
            .field("outstanding", &self.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Default for NonceStore {
    fn default() -> Self {
        NonceStore::new(DEFAULT_CAPACITY)
    }
}

impl NonceStore {
    /// A store holding at most `capacity` (at least 1) outstanding nonces.
    pub fn new(capacity: usize) -> Self {
        NonceStore {
            inner: Mutex::new(Inner::default()),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the maps consistent enough to go on.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Issues a fresh nonce, bound to `address` when given, valid until the returned
    /// expiry (Unix seconds, `now + 300`).
    pub fn issue(&self, address: Option<[u8; 20]>, now: i64) -> (String, i64) {
        let expires_at = now.saturating_add(NONCE_TTL_S);
        let mut inner = self.lock();
        inner.evict(now, self.capacity);
        let nonce = loop {
            let candidate = Alphanumeric.sample_string(&mut rand::thread_rng(), NONCE_LEN);
            if !inner.live.contains_key(&candidate) {
                break candidate;
            }
        };
        inner.live.insert(
            nonce.clone(),
            Entry {
                address,
                expires_at,
            },
        );
        inner.order.push_back((expires_at, nonce.clone()));
        (nonce, expires_at)
    }

    /// Uses up `nonce` for a sign-in by `address` at `now`. The nonce is gone afterwards
    /// whether or not this succeeds.
    pub fn take(&self, nonce: &str, address: &[u8; 20], now: i64) -> Result<(), NonceError> {
        let entry = self.lock().live.remove(nonce).ok_or(NonceError::Unknown)?;
        if now >= entry.expires_at {
            return Err(NonceError::Expired);
        }
        if entry.address.is_some_and(|bound| &bound != address) {
            return Err(NonceError::WrongAddress);
        }
        Ok(())
    }

    /// Outstanding nonces (expired ones not yet evicted included).
    pub fn len(&self) -> usize {
        self.lock().live.len()
    }

    /// True when no nonce is outstanding.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    /// Drops expired nonces, then the oldest ones until one more fits.
    fn evict(&mut self, now: i64, capacity: usize) {
        while let Some((expires_at, nonce)) = self.order.front() {
            let expired = *expires_at <= now;
            let over = self.live.len() >= capacity || self.order.len() >= capacity * 2;
            if !expired && !over {
                break;
            }
            if self
                .live
                .get(nonce)
                .is_some_and(|e| e.expires_at == *expires_at)
            {
                self.live.remove(nonce);
            }
            self.order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_750_000_000;
    const ALICE: [u8; 20] = [0xa1; 20];
    const BOB: [u8; 20] = [0xb0; 20];

    #[test]
    fn issued_nonce_is_long_alphanumeric_and_lives_300_seconds() {
        let store = NonceStore::default();
        let (nonce, expires_at) = store.issue(None, NOW);
        assert!(nonce.len() >= 16);
        assert!(nonce.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(expires_at, NOW + 300);
        let (other, _) = store.issue(None, NOW);
        assert_ne!(nonce, other);
    }

    #[test]
    fn nonce_is_single_use() {
        let store = NonceStore::default();
        let (nonce, _) = store.issue(None, NOW);
        assert_eq!(store.take(&nonce, &ALICE, NOW + 1), Ok(()));
        assert_eq!(
            store.take(&nonce, &ALICE, NOW + 2),
            Err(NonceError::Unknown)
        );
    }

    #[test]
    fn failed_use_also_uses_up_the_nonce() {
        let store = NonceStore::default();
        let (nonce, _) = store.issue(Some(ALICE), NOW);
        assert_eq!(store.take(&nonce, &BOB, NOW), Err(NonceError::WrongAddress));
        assert_eq!(store.take(&nonce, &ALICE, NOW), Err(NonceError::Unknown));
    }

    #[test]
    fn expired_nonce_is_refused() {
        let store = NonceStore::default();
        let (nonce, expires_at) = store.issue(None, NOW);
        assert_eq!(
            store.take(&nonce, &ALICE, expires_at),
            Err(NonceError::Expired)
        );
        let (nonce, expires_at) = store.issue(None, NOW);
        assert_eq!(store.take(&nonce, &ALICE, expires_at - 1), Ok(()));
    }

    #[test]
    fn nonce_bound_to_an_address_accepts_only_that_address() {
        let store = NonceStore::default();
        let (nonce, _) = store.issue(Some(ALICE), NOW);
        assert_eq!(store.take(&nonce, &ALICE, NOW), Ok(()));
        let (unbound, _) = store.issue(None, NOW);
        assert_eq!(store.take(&unbound, &BOB, NOW), Ok(()));
    }

    #[test]
    fn debug_output_lists_no_nonces() {
        let store = NonceStore::default();
        let (nonce, _) = store.issue(None, NOW);
        let shown = format!("{store:?}");
        assert!(!shown.contains(&nonce), "{shown}");
        assert!(shown.contains("outstanding: 1"), "{shown}");
    }

    #[test]
    fn unknown_nonce_is_refused() {
        let store = NonceStore::default();
        assert_eq!(
            store.take("neverissued123456", &ALICE, NOW),
            Err(NonceError::Unknown)
        );
    }

    #[test]
    fn store_stays_bounded_evicting_expired_then_oldest() {
        let store = NonceStore::new(3);
        let (old, _) = store.issue(None, NOW);
        store.issue(None, NOW + 1);
        store.issue(None, NOW + 2);
        assert_eq!(store.len(), 3);
        // Full: the oldest still-valid nonce makes room.
        let (newest, _) = store.issue(None, NOW + 3);
        assert_eq!(store.len(), 3);
        assert_eq!(store.take(&old, &ALICE, NOW + 3), Err(NonceError::Unknown));
        assert_eq!(store.take(&newest, &ALICE, NOW + 3), Ok(()));
        // Much later every earlier nonce has expired and is dropped on the next issue.
        store.issue(None, NOW + 1000);
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn taken_nonces_do_not_grow_the_issue_queue_without_bound() {
        let store = NonceStore::new(4);
        for i in 0..100 {
            let (n, _) = store.issue(None, NOW + i / 10);
            store.take(&n, &ALICE, NOW).unwrap();
        }
        assert!(store.lock().order.len() <= 8);
        assert!(store.is_empty());
    }
}
