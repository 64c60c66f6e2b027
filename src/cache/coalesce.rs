//! Joins concurrent callers for the same key onto one load that runs in its own task, so that
//! a caller who gives up (deadline, cancellation) never takes the load away from the others.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use futures_util::future::{BoxFuture, FutureExt, Shared};

use crate::{cams::FlowAnswer, domain::FlowQuery, error::Error};

/// A load's outcome, shared by every caller that joined it.
pub(crate) type LoadResult = Result<Loaded, Arc<Error>>;

/// A load's answer, and whether another replica fetched it (it came from the shared tier).
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    pub answer: Arc<FlowAnswer>,
    pub shared: bool,
}

type Load = Shared<BoxFuture<'static, LoadResult>>;

/// The latest deadline among the callers waiting for one load: retries stop in time for it.
#[derive(Debug)]
pub(crate) struct Waiters {
    latest: Mutex<tokio::time::Instant>,
}

impl Waiters {
    pub(crate) fn new(deadline: tokio::time::Instant) -> Self {
        Self {
            latest: Mutex::new(deadline),
        }
    }

    fn extend(&self, deadline: tokio::time::Instant) {
        let mut latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        *latest = (*latest).max(deadline);
    }

    pub(crate) fn latest(&self) -> tokio::time::Instant {
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running load and who waits for it.
type Joinable = (Load, Arc<Waiters>);

/// Joins concurrent callers for the same key onto one load that runs in its own task, so that a
/// caller who gives up (deadline, cancellation) never takes the load away from the others.
/// Shared through the gateway's `Arc`, so the map itself needs no second one.
#[derive(Default)]
pub(crate) struct Coalescer {
    in_flight: Mutex<HashMap<FlowQuery, Joinable>>,
}

impl std::fmt::Debug for Coalescer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer")
            .field("in_flight", &self.running())
            .finish()
    }
}

impl Coalescer {
    /// The load for `key`: a running one (`false`) or a new one started from `start` (`true`).
    /// Either way the caller's `deadline` joins the load's waiters.
    pub(crate) fn join<F>(
        &self,
        key: &FlowQuery,
        deadline: tokio::time::Instant,
        start: F,
    ) -> (Load, bool)
    where
        F: FnOnce(Arc<Waiters>) -> BoxFuture<'static, LoadResult>,
    {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((load, waiters)) = in_flight.get(key) {
            waiters.extend(deadline);
            return (load.clone(), false);
        }
        let waiters = Arc::new(Waiters::new(deadline));
        let task = tokio::spawn(start(Arc::clone(&waiters)));
        let load = async move {
            task.await
                .unwrap_or_else(|_| Err(Arc::new(Error::Internal("the upstream load task failed"))))
        }
        .boxed()
        .shared();
        in_flight.insert(key.clone(), (load.clone(), waiters));
        (load, true)
    }

    /// Called by a load when it has finished (and stored its answer), so later callers start anew.
    pub(crate) fn finish(&self, key: &FlowQuery) {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    /// Loads running now (for `Debug`).
    fn running(&self) -> usize {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}
