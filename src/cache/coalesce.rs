//! Joins concurrent callers for the same key onto one load that runs in its own task, so that
//! a caller who gives up (deadline, cancellation) never takes the load away from the others.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
};

use futures_util::future::{BoxFuture, FutureExt, Shared};

use crate::{domain::Answer, domain::Read, error::Error};

/// A load's outcome, shared by every caller that joined it.
pub(crate) type LoadResult = Result<Loaded, Arc<Error>>;

/// A load's answer, and whether another replica fetched it (it came from the shared tier).
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    pub answer: Arc<Answer>,
    pub shared: bool,
}

type Load = Shared<BoxFuture<'static, LoadResult>>;

/// The callers waiting for one load: the latest deadline among them (retries stop in time for
/// it), and whether any is still there (a load nobody waits for any more does not start a fetch).
#[derive(Debug)]
pub(crate) struct Waiters {
    latest: Mutex<tokio::time::Instant>,
    present: AtomicUsize,
    /// Background work (a refresh) waits for nobody and is never left alone.
    background: bool,
}

impl Waiters {
    fn new(deadline: tokio::time::Instant) -> Self {
        Self {
            latest: Mutex::new(deadline),
            present: AtomicUsize::new(0),
            background: false,
        }
    }

    /// The waiters of background work, which has no callers.
    pub(crate) fn background(deadline: tokio::time::Instant) -> Self {
        Self {
            background: true,
            ..Self::new(deadline)
        }
    }

    /// Whether anyone still wants the load's answer.
    pub(crate) fn anyone(&self) -> bool {
        self.background || self.present.load(Ordering::Acquire) > 0
    }

    fn arrive(self: &Arc<Self>) -> Presence {
        self.present.fetch_add(1, Ordering::AcqRel);
        Presence(Arc::clone(self))
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

/// A caller's place among a load's waiters, left when the caller stops waiting (answered, past
/// its deadline, or gone).
#[derive(Debug)]
pub(crate) struct Presence(Arc<Waiters>);

impl Drop for Presence {
    fn drop(&mut self) {
        self.0.present.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A caller joined to a load: the load, whether this caller started it, and its presence,
/// to hold while it waits.
pub(crate) struct Joined {
    pub load: Load,
    pub started: bool,
    pub presence: Presence,
}

/// Joins concurrent callers for the same key onto one load that runs in its own task, so that a
/// caller who gives up (deadline, cancellation) never takes the load away from the others.
/// Shared through the gateway's `Arc`, so the map itself needs no second one.
#[derive(Default)]
pub(crate) struct Coalescer {
    in_flight: Mutex<HashMap<Read, Joinable>>,
}

impl std::fmt::Debug for Coalescer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer")
            .field("in_flight", &self.running())
            .finish()
    }
}

impl Coalescer {
    /// The load for `key`: a running one or a new one started from `start`. Either way the
    /// caller's `deadline` joins the load's waiters.
    pub(crate) fn join<F>(&self, key: &Read, deadline: tokio::time::Instant, start: F) -> Joined
    where
        F: FnOnce(Arc<Waiters>) -> BoxFuture<'static, LoadResult>,
    {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((load, waiters)) = in_flight.get(key) {
            waiters.extend(deadline);
            return Joined {
                load: load.clone(),
                started: false,
                presence: waiters.arrive(),
            };
        }
        let waiters = Arc::new(Waiters::new(deadline));
        let presence = waiters.arrive();
        let task = tokio::spawn(start(Arc::clone(&waiters)));
        let load = async move {
            task.await
                .unwrap_or_else(|_| Err(Arc::new(Error::Internal("the upstream load task failed"))))
        }
        .boxed()
        .shared();
        in_flight.insert(key.clone(), (load.clone(), waiters));
        Joined {
            load,
            started: true,
            presence,
        }
    }

    /// Called by a load when it has finished (and stored its answer), so later callers start anew.
    pub(crate) fn finish(&self, key: &Read) {
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
