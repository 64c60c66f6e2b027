//! Who fetches a flow that several callers, in this process or in other replicas, want at the
//! same moment: a seam of its own beside the cache tiers, after pingora's cache lock.
//!
//! [`FetchLock::lock`] hands back the role as a value. A [`WritePermit`] is held while fetching
//! and released once the answer is kept (the waiters then find it); dropped unreleased (the
//! fetch failed, panicked or its task was cancelled) it is released as abandoned, so that a
//! waiter asks for the lock again at once instead of waiting for it to expire. A [`Waiting`] is
//! waited on until the permit's holder lets go, or until the waiters' time runs out.
//!
//! [`LocalLock`] is the in-process implementation (the default, and the test double);
//! [`RedisLock`] coordinates the replicas that share a cache in Redis. Both pass the same
//! behavioural tests (tests/e2e/fetch_lock.rs).

mod local;
mod redis;

use std::{fmt, time::Duration};

use futures_util::future::BoxFuture;
use tokio::time::Instant;

pub use local::LocalLock;
pub use redis::RedisLock;

use crate::domain::Read;

/// The role a process gets for one fetch.
pub enum Locked {
    /// Fetch it; release the permit once the answer is kept.
    Write(WritePermit),
    /// Someone else is fetching it: wait, then look in the cache.
    Read(Waiting),
}

impl fmt::Debug for Locked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Write(_) => "Write",
            Self::Read(_) => "Read",
        })
    }
}

/// How a wait on another's fetch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// The holder let go (its answer is kept, or it gave up): look in the cache, and ask for
    /// the lock again if the answer is not there.
    Released,
    /// The time given ran out first.
    TimedOut,
}

/// Fetch coordination, wherever it is kept.
#[async_trait::async_trait]
pub trait FetchLock: Send + Sync + fmt::Debug {
    /// Asks to be the one fetching `key`, for `hold` at most: a holder that dies without
    /// releasing loses the lock then.
    async fn lock(&self, key: &Read, hold: Duration) -> Locked;
}

/// What releasing a permit does, for each implementation.
pub(crate) trait Held: Send {
    fn release(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// The right to fetch one key. Release it once the answer is kept; dropping it releases it as
/// abandoned.
#[must_use = "a permit dropped unreleased marks its fetch abandoned"]
pub struct WritePermit {
    held: Option<Box<dyn Held>>,
}

impl WritePermit {
    pub(crate) fn new(held: Box<dyn Held>) -> Self {
        Self { held: Some(held) }
    }

    /// A permit that coordinates nothing: nobody else can be told (the shared store does not
    /// answer), or nobody else needs to be.
    pub fn alone() -> Self {
        Self { held: None }
    }

    /// The answer is kept where the waiters will look: let them look.
    pub async fn release(mut self) {
        if let Some(held) = self.held.take() {
            held.release().await;
        }
    }
}

impl Drop for WritePermit {
    fn drop(&mut self) {
        let Some(held) = self.held.take() else {
            return;
        };
        // Outside a runtime (a test's teardown) nothing can be told; the lock expires.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(held.release());
        }
    }
}

impl fmt::Debug for WritePermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WritePermit")
            .field("coordinated", &self.held.is_some())
            .finish()
    }
}

/// What waiting on another's fetch does, for each implementation.
pub(crate) trait Wait: Send {
    fn until(self: Box<Self>, until: Instant) -> BoxFuture<'static, Waited>;
}

/// A wait on the process that holds the lock.
pub struct Waiting {
    wait: Box<dyn Wait>,
}

impl Waiting {
    pub(crate) fn new(wait: Box<dyn Wait>) -> Self {
        Self { wait }
    }

    /// Until the holder lets go, or `until`.
    pub async fn until(self, until: Instant) -> Waited {
        self.wait.until(until).await
    }
}
