//! Waiting for what the gateway does in the background (a shared-cache fill, a lease's end, a log
//! line, a reload): look until it shows, within a bound, and fail saying what was awaited and
//! what was last seen. A fixed sleep instead would either waste time or, on a loaded host, look
//! too early.

use std::{fmt::Debug, future::Future, time::Duration};

use tokio::time::Instant;

/// Between two looks.
const POLL: Duration = Duration::from_millis(20);

/// At most this much of the last value seen goes into the failure message.
const SHOWN: usize = 4_000;

/// Runs `probe` until `done` holds for what it returned, and returns that value; once `bound` has
/// passed, panics with `what` (what was awaited) and the last value seen. `probe` runs at once,
/// then every 20 ms; its last run starts at or after the bound, so a slow probe is not cut short.
#[track_caller]
pub fn until<T, P, F>(
    bound: Duration,
    what: &str,
    probe: P,
    done: impl Fn(&T) -> bool,
) -> impl Future<Output = T>
where
    T: Debug,
    P: FnMut() -> F,
    F: Future<Output = T>,
{
    until_every(POLL, bound, what, probe, done)
}

/// [`until`], running `probe` every `poll` instead: for a probe that costs the system under test
/// something (a call it refuses and logs).
#[track_caller]
pub fn until_every<T, P, F>(
    poll: Duration,
    bound: Duration,
    what: &str,
    mut probe: P,
    done: impl Fn(&T) -> bool,
) -> impl Future<Output = T>
where
    T: Debug,
    P: FnMut() -> F,
    F: Future<Output = T>,
{
    let caller = std::panic::Location::caller();
    async move {
        let end = Instant::now() + bound;
        loop {
            let looked_at = Instant::now();
            let seen = probe().await;
            if done(&seen) {
                return seen;
            }
            if looked_at >= end {
                panic!(
                    "{caller}: waited {bound:?} for {what}; last seen: {}",
                    shown(&seen)
                );
            }
            tokio::time::sleep(poll.min(end - looked_at)).await;
        }
    }
}

/// `value`'s `Debug`, its end only if it is long (a process's output, a scrape).
fn shown(value: &impl Debug) -> String {
    let text = format!("{value:?}");
    match text.char_indices().rev().nth(SHOWN) {
        Some((cut, _)) => format!("…{}", &text[cut..]),
        None => text,
    }
}
