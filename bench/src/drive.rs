//! The closed loop: `concurrency` workers each send a call, wait for its answer and send the
//! next, through a warm-up and then a measured phase that ends after a duration or a call count.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use anyhow::Context;
use cams_flows::domain::Action;
use tokio::time::Instant;

use crate::{
    cli::Shape,
    record::{Outcome, Tally},
};

/// When the measured phase ends.
#[derive(Debug, Clone, Copy)]
enum Stop {
    At(Instant),
    AfterCalls(u64),
}

/// State the workers and the progress line share; plain counters, one atomic add per call.
struct Shared {
    measure_from: Instant,
    stop: Stop,
    /// Numbers every call, warm-up included; picks the call's key.
    next_seq: AtomicU64,
    /// Measured calls started, against `Stop::AfterCalls`.
    measured_started: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
}

impl Shared {
    /// Whether a worker may start another call at `now`.
    fn may_start(&self, now: Instant) -> bool {
        if now < self.measure_from {
            return true;
        }
        match self.stop {
            Stop::At(end) => now < end,
            Stop::AfterCalls(n) => self.measured_started.fetch_add(1, Relaxed) < n,
        }
    }
}

/// Runs the loop and returns the merged tally of the measured calls and how long the measured
/// phase took (until the last measured call returned). `call` makes call number `seq` and says
/// which read it was.
pub async fn drive<F, Fut>(shape: &Shape, call: F) -> anyhow::Result<(Tally, Duration)>
where
    F: Fn(u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = (Action, Outcome)> + Send + 'static,
{
    let measure_from = Instant::now() + shape.warmup;
    let stop = match shape.calls {
        Some(n) => Stop::AfterCalls(n),
        None => Stop::At(measure_from + shape.measure_for()),
    };
    let shared = Arc::new(Shared {
        measure_from,
        stop,
        next_seq: AtomicU64::new(0),
        measured_started: AtomicU64::new(0),
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let progress = tokio::spawn(report_progress(Arc::clone(&shared)));
    let workers: Vec<_> = (0..shape.concurrency)
        .map(|_| tokio::spawn(worker(Arc::clone(&shared), call.clone(), shape.pace)))
        .collect();
    let mut total = Tally::new()?;
    for handle in workers {
        total.merge(handle.await.context("a load worker panicked")??)?;
    }
    let elapsed = Instant::now().saturating_duration_since(measure_from);
    progress.abort();
    Ok((total, elapsed))
}

async fn worker<F, Fut>(
    shared: Arc<Shared>,
    call: F,
    pace: Option<Duration>,
) -> anyhow::Result<Tally>
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = (Action, Outcome)>,
{
    let mut tally = Tally::new()?;
    loop {
        let started = Instant::now();
        if !shared.may_start(started) {
            return Ok(tally);
        }
        let seq = shared.next_seq.fetch_add(1, Relaxed);
        let (read, outcome) = call(seq).await;
        let latency = started.elapsed();
        let counter = match outcome {
            Outcome::Ok { .. } => &shared.ok,
            Outcome::Failed { .. } => &shared.failed,
        };
        counter.fetch_add(1, Relaxed);
        // A call that started during the warm-up is not measured, even if it ends after.
        if started >= shared.measure_from {
            tally.record(latency, read, outcome);
        }
        if let Some(pace) = pace {
            tokio::time::sleep_until(started + pace).await;
        }
    }
}

/// One line a second on stderr, so a long run shows it is alive and whether it is failing.
async fn report_progress(shared: Arc<Shared>) {
    let started = Instant::now();
    let mut tick =
        tokio::time::interval_at(started + Duration::from_secs(1), Duration::from_secs(1));
    let (mut last_ok, mut last_failed) = (0, 0);
    loop {
        let now = tick.tick().await;
        let (ok, failed) = (shared.ok.load(Relaxed), shared.failed.load(Relaxed));
        // The line covers the second that just ended.
        let phase = if now - Duration::from_secs(1) < shared.measure_from {
            "warm-up"
        } else {
            "measure"
        };
        eprintln!(
            "[{:>4}s {phase}] {:>8} calls/s  ok {:>8}/s  failed {:>8}/s",
            now.duration_since(started).as_secs(),
            (ok + failed) - (last_ok + last_failed),
            ok - last_ok,
            failed - last_failed,
        );
        (last_ok, last_failed) = (ok, failed);
    }
}
