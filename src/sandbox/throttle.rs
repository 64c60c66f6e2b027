//! CAMS's per-AccessKeyId quota as a sliding one-second window over accepted calls.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

const WINDOW: Duration = Duration::from_secs(1);

pub(super) struct Throttle {
    limit: usize,
    accepted: HashMap<String, VecDeque<Instant>>,
}

impl Throttle {
    pub(super) fn new(rps_per_key: u32) -> Self {
        Self {
            limit: usize::try_from(rps_per_key).unwrap_or(usize::MAX),
            accepted: HashMap::new(),
        }
    }

    /// Admits the call and counts it, or says how long until a slot frees up.
    pub(super) fn admit(&mut self, access_key_id: &str, now: Instant) -> Result<(), Duration> {
        // Only verified keys get here, so the map stays tiny; still, idle keys are dropped.
        self.accepted.retain(|_, window| {
            prune(window, now);
            !window.is_empty()
        });
        let window = self.accepted.entry(access_key_id.to_owned()).or_default();
        if window.len() >= self.limit {
            let wait = window
                .front()
                .map(|oldest| WINDOW.saturating_sub(now.saturating_duration_since(*oldest)))
                .unwrap_or(WINDOW);
            return Err(wait);
        }
        window.push_back(now);
        Ok(())
    }
}

/// Keeps the instants still inside the window ending at `now`.
pub(super) fn prune(window: &mut VecDeque<Instant>, now: Instant) {
    while window
        .front()
        .is_some_and(|at| now.saturating_duration_since(*at) >= WINDOW)
    {
        window.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_window_per_key() {
        let mut throttle = Throttle::new(2);
        let t0 = Instant::now();
        assert_eq!(throttle.admit("k", t0), Ok(()));
        assert_eq!(throttle.admit("k", t0 + Duration::from_millis(300)), Ok(()));
        assert_eq!(
            throttle.admit("k", t0 + Duration::from_millis(400)),
            Err(Duration::from_millis(600))
        );
        assert_eq!(
            throttle.admit("other", t0 + Duration::from_millis(400)),
            Ok(())
        );
        assert_eq!(
            throttle.admit("k", t0 + Duration::from_millis(1000)),
            Ok(())
        );
        assert!(
            throttle
                .admit("k", t0 + Duration::from_millis(1100))
                .is_err()
        );
    }

    #[test]
    fn zero_quota_refuses_everything() {
        let mut throttle = Throttle::new(0);
        assert_eq!(throttle.admit("k", Instant::now()), Err(WINDOW));
    }
}
