//! The slots this process took in the last second, for `GetQuota`: ten tenths of a second, each
//! counted by an atomic and stamped with the tenth it counts, so that taking a slot costs one
//! atomic add (and a reset when its tenth comes round again), and reading never blocks a take.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use tokio::time::Instant;

/// Tenths in the window.
const TENTHS: usize = 10;
const TENTH_MS: u64 = 100;

#[derive(Debug)]
pub(super) struct Recent {
    epoch: Instant,
    /// Each slot's count, and the tenth (since `epoch`, plus one: 0 is never) it counts.
    counts: [AtomicU32; TENTHS],
    stamps: [AtomicU64; TENTHS],
}

impl Recent {
    pub(super) fn new() -> Self {
        Self {
            epoch: Instant::now(),
            counts: Default::default(),
            stamps: Default::default(),
        }
    }

    fn tenth(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis() / u128::from(TENTH_MS))
            .unwrap_or(u64::MAX - 1)
            + 1
    }

    /// One slot taken now.
    pub(super) fn record(&self, now: Instant) {
        let tenth = self.tenth(now);
        let i = (tenth % TENTHS as u64) as usize;
        let stamp = self.stamps[i].load(Ordering::Acquire);
        if stamp != tenth
            && self.stamps[i]
                .compare_exchange(stamp, tenth, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // This take opened the tenth: the count is of a tenth a second ago or more.
            self.counts[i].store(0, Ordering::Release);
        }
        self.counts[i].fetch_add(1, Ordering::AcqRel);
    }

    /// Slots taken in the last second (to the tenth).
    pub(super) fn last_second(&self, now: Instant) -> u32 {
        let tenth = self.tenth(now);
        let oldest = tenth.saturating_sub(TENTHS as u64 - 1);
        (0..TENTHS)
            .filter(|&i| {
                let stamp = self.stamps[i].load(Ordering::Acquire);
                stamp >= oldest && stamp <= tenth
            })
            .map(|i| self.counts[i].load(Ordering::Acquire))
            .fold(0u32, u32::saturating_add)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn counts_the_last_second_only() {
        let recent = Recent::new();
        assert_eq!(recent.last_second(Instant::now()), 0);
        for _ in 0..3 {
            recent.record(Instant::now());
        }
        tokio::time::advance(Duration::from_millis(500)).await;
        recent.record(Instant::now());
        assert_eq!(recent.last_second(Instant::now()), 4);
        tokio::time::advance(Duration::from_millis(600)).await;
        assert_eq!(
            recent.last_second(Instant::now()),
            1,
            "the first three are over a second old"
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(recent.last_second(Instant::now()), 0);
        recent.record(Instant::now());
        assert_eq!(
            recent.last_second(Instant::now()),
            1,
            "a tenth come round again starts from nothing"
        );
    }
}
