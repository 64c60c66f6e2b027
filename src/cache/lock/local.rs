//! The fetch lock of one process: a map of the keys being fetched.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use futures_util::future::BoxFuture;
use tokio::{sync::Notify, time::Instant};

use super::{FetchLock, Held, Locked, Wait, Waited, Waiting, WritePermit};
use crate::domain::Read;

type Holders = Mutex<HashMap<Read, Arc<Notify>>>;

/// In-process fetch coordination. The holder lives as long as the process, so `hold` is not
/// needed: a permit is released when dropped.
#[derive(Debug, Default, Clone)]
pub struct LocalLock {
    held: Arc<Holders>,
}

fn holders(held: &Holders) -> MutexGuard<'_, HashMap<Read, Arc<Notify>>> {
    // Every update is one step under the lock: a panic elsewhere cannot leave it half-changed.
    held.lock().unwrap_or_else(PoisonError::into_inner)
}

#[async_trait::async_trait]
impl FetchLock for LocalLock {
    async fn lock(&self, key: &Read, _hold: Duration) -> Locked {
        let mut held = holders(&self.held);
        if let Some(released) = held.get(key) {
            return Locked::Read(Waiting::new(Box::new(LocalWait {
                held: Arc::clone(&self.held),
                key: key.clone(),
                released: Arc::clone(released),
            })));
        }
        let released = Arc::new(Notify::new());
        held.insert(key.clone(), Arc::clone(&released));
        Locked::Write(WritePermit::new(Box::new(LocalHeld {
            held: Arc::clone(&self.held),
            key: key.clone(),
            released,
        })))
    }
}

struct LocalHeld {
    held: Arc<Holders>,
    key: Read,
    released: Arc<Notify>,
}

impl Held for LocalHeld {
    fn release(self: Box<Self>) -> BoxFuture<'static, ()> {
        let mut held = holders(&self.held);
        if held
            .get(&self.key)
            .is_some_and(|n| Arc::ptr_eq(n, &self.released))
        {
            held.remove(&self.key);
        }
        drop(held);
        self.released.notify_waiters();
        Box::pin(std::future::ready(()))
    }
}

struct LocalWait {
    held: Arc<Holders>,
    key: Read,
    released: Arc<Notify>,
}

impl Wait for LocalWait {
    fn until(self: Box<Self>, until: Instant) -> BoxFuture<'static, Waited> {
        Box::pin(async move {
            loop {
                // Registered before the look, so that a release between the two is not missed.
                let notified = self.released.notified();
                let still_held = holders(&self.held)
                    .get(&self.key)
                    .is_some_and(|n| Arc::ptr_eq(n, &self.released));
                if !still_held {
                    return Waited::Released;
                }
                tokio::select! {
                    () = notified => {}
                    () = tokio::time::sleep_until(until) => return Waited::TimedOut,
                }
            }
        })
    }
}
