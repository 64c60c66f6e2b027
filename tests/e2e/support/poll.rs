//! Bounded waits for the Redis topologies to settle (a replica synced, the sentinels agreeing, a
//! promotion seen by every node): look until the condition holds, within a bound, and fail
//! saying what was awaited and what was last seen. The probes are blocking calls to Redis nodes
//! (see [`resp`](super::resp)), so the async form runs them on the blocking pool: a test's
//! gateway keeps running on its runtime while a failover is awaited.

use std::time::{Duration, Instant};

/// Between two looks.
const POLL: Duration = Duration::from_millis(25);

/// Runs `probe` until it returns `Ok`, and returns that value; once `bound` has passed, panics
/// with `what` and the last `Err` seen. The last look starts at or after the bound.
pub fn blocking_until<T>(
    bound: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let end = Instant::now() + bound;
    loop {
        let looked_at = Instant::now();
        match probe() {
            Ok(value) => return value,
            Err(seen) if looked_at >= end => {
                panic!("waited {bound:?} for {what}; last seen: {seen}")
            }
            Err(_) => std::thread::sleep(POLL.min(end - looked_at)),
        }
    }
}

/// [`blocking_until`] on the blocking pool, so that the caller's runtime carries on meanwhile.
/// A panic (the bound passed) is the caller's panic, with the same message.
pub async fn until<T: Send + 'static>(
    bound: Duration,
    what: &str,
    probe: impl FnMut() -> Result<T, String> + Send + 'static,
) -> T {
    let what = what.to_owned();
    match tokio::task::spawn_blocking(move || blocking_until(bound, &what, probe)).await {
        Ok(value) => value,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("a topology wait was cancelled: {e}"),
    }
}
