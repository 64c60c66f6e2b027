//! Replay protection: a nonce may be used once within the window in which its date is valid.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

/// Matches the accepted clock skew: a replay older than this fails the date check anyway.
pub(super) const NONCE_TTL: Duration = Duration::from_secs(15 * 60);
/// Caps memory under a flood; past it the oldest nonces are forgotten early, which only weakens
/// replay detection for calls that are already minutes old.
const MAX_NONCES: usize = 100_000;

#[derive(Default)]
pub(super) struct NonceCache {
    seen: HashSet<String>,
    by_age: VecDeque<(Instant, String)>,
}

impl NonceCache {
    /// Remembers `nonce`; false when it was already used within the TTL.
    pub(super) fn insert(&mut self, nonce: &str, now: Instant) -> bool {
        self.expire(now);
        if self.seen.contains(nonce) {
            return false;
        }
        if self.by_age.len() >= MAX_NONCES
            && let Some((_, oldest)) = self.by_age.pop_front()
        {
            self.seen.remove(&oldest);
        }
        self.seen.insert(nonce.to_owned());
        self.by_age.push_back((now, nonce.to_owned()));
        true
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.by_age.front() {
            if now.saturating_duration_since(*at) < NONCE_TTL {
                break;
            }
            if let Some((_, nonce)) = self.by_age.pop_front() {
                self.seen.remove(&nonce);
            }
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_reuse_until_expired() {
        let mut cache = NonceCache::default();
        let start = Instant::now();
        assert!(cache.insert("a", start));
        assert!(!cache.insert("a", start + Duration::from_secs(60)));
        assert!(cache.insert("b", start + Duration::from_secs(60)));
        assert!(cache.insert("a", start + NONCE_TTL));
        assert_eq!(cache.len(), 2);
        assert!(cache.insert("c", start + NONCE_TTL * 3));
        assert_eq!(cache.len(), 1);
    }
}
