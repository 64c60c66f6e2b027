//! The one owner of background work. Every loop the gateway runs beside its calls (the account
//! dispatcher, the idle-tenant evictor, the certificate reloader, the sandbox's server) is
//! registered here, and all of them stop together, last, when the application shuts down:
//! NOT_SERVING, stop accepting, drain the calls, then stop these.

use std::{future::Future, time::Duration};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long stopped loops get to return; they only need to notice the cancellation.
const STOP_BOUND: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
pub struct Tasks {
    running: JoinSet<()>,
    stop: CancellationToken,
}

impl Tasks {
    /// Runs `work` until it ends or the tasks are stopped. A loop that ends by itself (or
    /// panics) is logged with its name.
    pub fn spawn(&mut self, name: &'static str, work: impl Future<Output = ()> + Send + 'static) {
        let stop = self.stop.clone();
        self.running.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = work => tracing::debug!(task = name, "background task ended"),
            }
        });
    }

    /// Runs work that shuts down by itself once told to (a server finishing its connections):
    /// `work` gets the stop signal and is awaited, up to the stop bound, instead of dropped.
    pub fn spawn_graceful<F, W>(&mut self, name: &'static str, work: F)
    where
        F: FnOnce(tokio_util::sync::WaitForCancellationFutureOwned) -> W,
        W: Future<Output = ()> + Send + 'static,
    {
        let work = work(self.stop.clone().cancelled_owned());
        self.running.spawn(async move {
            work.await;
            tracing::debug!(task = name, "background task ended");
        });
    }

    /// Stops every task and waits (boundedly) for them to return.
    pub async fn stop(mut self) {
        self.stop.cancel();
        let drained = tokio::time::timeout(STOP_BOUND, async {
            while let Some(joined) = self.running.join_next().await {
                if let Err(error) = joined
                    && error.is_panic()
                {
                    tracing::error!(%error, "a background task panicked");
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = self.running.len(),
                "background tasks did not stop in time; aborting them"
            );
            self.running.abort_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };

    use super::*;

    #[tokio::test]
    async fn stop_ends_loops_and_lets_graceful_work_finish() {
        let mut tasks = Tasks::default();
        tasks.spawn("forever", std::future::pending());
        let finished = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&finished);
        tasks.spawn_graceful("graceful", move |stop| async move {
            stop.await;
            tokio::task::yield_now().await;
            flag.store(true, Ordering::SeqCst);
        });
        tokio::time::timeout(Duration::from_secs(5), tasks.stop())
            .await
            .expect("stopped in time");
        assert!(
            finished.load(Ordering::SeqCst),
            "graceful work ran to its end"
        );
    }
}
