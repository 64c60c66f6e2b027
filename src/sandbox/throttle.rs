//! CAMS's quota as a sliding one-second window over accepted calls, per AccessKeyId and per
//! action: every operation has its own budget ("5 times per second per account" on each API's
//! page), so a GetFlow burst leaves ListFlow's budget whole.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::action::Action;

const WINDOW: Duration = Duration::from_secs(1);

pub(super) struct Throttle {
    limit: usize,
    accepted: HashMap<(String, Action), VecDeque<Instant>>,
}

impl Throttle {
    pub(super) fn new(rps_per_key: u32) -> Self {
        Self {
            limit: usize::try_from(rps_per_key).unwrap_or(usize::MAX),
            accepted: HashMap::new(),
        }
    }

    /// Admits the call and counts it, or says how long until a slot frees up.
    pub(super) fn admit(
        &mut self,
        access_key_id: &str,
        action: Action,
        now: Instant,
    ) -> Result<(), Duration> {
        // Only verified keys get here, so the map stays tiny; still, idle keys are dropped.
        self.accepted.retain(|_, window| {
            prune(window, now);
            !window.is_empty()
        });
        let window = self
            .accepted
            .entry((access_key_id.to_owned(), action))
            .or_default();
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

    const GET: Action = Action::GetFlow;

    #[test]
    fn sliding_window_per_key() {
        let mut throttle = Throttle::new(2);
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(throttle.admit("k", GET, t0), Ok(()));
        assert_eq!(throttle.admit("k", GET, at(300)), Ok(()));
        assert_eq!(
            throttle.admit("k", GET, at(400)),
            Err(Duration::from_millis(600))
        );
        assert_eq!(throttle.admit("other", GET, at(400)), Ok(()));
        assert_eq!(throttle.admit("k", GET, at(1000)), Ok(()));
        assert!(throttle.admit("k", GET, at(1100)).is_err());
    }

    /// Four actions at 5/s each: 20 calls in one second, and a sixth of any one is refused.
    #[test]
    fn each_action_has_its_own_window() {
        let mut throttle = Throttle::new(5);
        let t0 = Instant::now();
        for (n, action) in Action::ALL.into_iter().enumerate() {
            for i in 0..5 {
                let at = t0 + Duration::from_millis(u64::try_from(n * 5 + i).expect("small"));
                assert_eq!(throttle.admit("k", action, at), Ok(()), "{action} #{i}");
            }
        }
        for action in Action::ALL {
            let refused = throttle.admit("k", action, t0 + Duration::from_millis(500));
            assert!(refused.is_err(), "{action}");
        }
        assert_eq!(
            throttle.admit("k", Action::ListFlow, t0 + Duration::from_millis(1005)),
            Ok(()),
            "ListFlow's slots free up on ListFlow's own clock"
        );
    }

    #[test]
    fn zero_quota_refuses_everything() {
        let mut throttle = Throttle::new(0);
        assert_eq!(throttle.admit("k", GET, Instant::now()), Err(WINDOW));
    }
}
