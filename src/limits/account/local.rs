//! The slots of one process.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use futures_util::future::BoxFuture;
use tokio::time::Instant;

use super::{Busy, SlotLease, SlotStore};

/// The slots, without identity: which one a call holds does not matter, only when each free one
/// began its rest. Releases happen in time order under the lock, so pushing them at the back
/// keeps the queue sorted and every operation O(1). Slots never used yet are only counted, so the
/// memory follows the calls of one window, not the configured rate.
struct Slots {
    /// Free slots that were never used: ready at once, and taken before any resting one.
    unused: usize,
    /// Free slots by the instant their rest began, oldest first.
    resting: VecDeque<Instant>,
    busy: usize,
    /// The slots there should be; fewer than [`Self::len`] just after the quota was lowered
    /// while calls held slots, which are then dropped as they are released.
    capacity: usize,
}

/// A taken slot as it was before: `None` if it had never been used.
type SlotEntry = Option<Instant>;

impl Slots {
    fn free_at(rest_began: Instant, window: Duration, now: Instant) -> Instant {
        (rest_began + window).max(now)
    }

    /// When the next free slot is ready; `None` while every slot is busy.
    fn next_ready(&self, window: Duration, now: Instant) -> Option<Instant> {
        if self.unused > 0 {
            return Some(now);
        }
        self.resting.front().map(|r| Self::free_at(*r, window, now))
    }

    /// When the free slot at `index` in taking order is ready; `None` past the free ones.
    fn ready_at(&self, index: usize, window: Duration, now: Instant) -> Option<Instant> {
        match index.checked_sub(self.unused) {
            None => Some(now),
            Some(i) => self.resting.get(i).map(|r| Self::free_at(*r, window, now)),
        }
    }

    /// When the next resting slot becomes ready; `None` when none rests (then only a release
    /// changes what can be taken).
    fn next_rest_end(&self, window: Duration, now: Instant) -> Option<Instant> {
        self.resting
            .iter()
            .map(|began| Self::free_at(*began, window, now))
            .find(|at| *at > now)
    }

    fn len(&self) -> usize {
        self.unused + self.resting.len() + self.busy
    }

    /// Slots free now, never used or rested.
    fn ready(&self, window: Duration, now: Instant) -> usize {
        self.unused
            + self
                .resting
                .partition_point(|began| Self::free_at(*began, window, now) <= now)
    }

    /// Takes the oldest free slot if its rest is over and more than `reserve` slots are ready;
    /// returns its entry for [`Self::restore`].
    fn take(&mut self, window: Duration, now: Instant, reserve: usize) -> Option<SlotEntry> {
        if self.next_ready(window, now)? > now || self.ready(window, now) <= reserve {
            return None;
        }
        self.busy += 1;
        if self.unused > 0 {
            self.unused -= 1;
            return Some(None);
        }
        self.resting.pop_front().map(Some)
    }

    fn release(&mut self, now: Instant) {
        self.busy = self.busy.saturating_sub(1);
        if self.len() < self.capacity {
            self.resting.push_back(now);
        }
    }

    /// Sets the number of slots. More: new ones, unused. Fewer: free slots go first, those
    /// ready soonest first, so that every slot kept still rests a whole window after its last
    /// call and no window sees more calls than the slots there were in it; slots held by calls
    /// go as they are released.
    fn resize(&mut self, capacity: usize) {
        self.capacity = capacity;
        if let Some(more) = capacity.checked_sub(self.len()) {
            self.unused += more;
            return;
        }
        let mut excess = self.len() - capacity;
        let unused = excess.min(self.unused);
        self.unused -= unused;
        excess -= unused;
        let resting = excess.min(self.resting.len());
        self.resting.drain(..resting);
    }

    /// Gives back a slot that was taken but never used, as it was.
    fn restore(&mut self, entry: SlotEntry) {
        self.busy = self.busy.saturating_sub(1);
        if self.len() >= self.capacity {
            return;
        }
        match entry {
            None => self.unused += 1,
            Some(rest_began) => self.resting.push_front(rest_began),
        }
    }
}

struct Inner {
    window: Duration,
    capacity: AtomicU32,
    slots: Mutex<Slots>,
}

impl Inner {
    fn slots(&self) -> MutexGuard<'_, Slots> {
        // Every update is a single step under the lock, so a panic elsewhere cannot leave the
        // slots half-changed.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The in-process slot store: the default backend, and the reference the shared one is tested
/// against.
#[derive(Clone)]
pub struct LocalSlots {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LocalSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let slots = self.inner.slots();
        f.debug_struct("LocalSlots")
            .field("capacity", &slots.capacity)
            .field("busy", &slots.busy)
            .field("resting", &slots.resting.len())
            .finish()
    }
}

impl LocalSlots {
    pub fn new(rps: u32, window: Duration) -> Self {
        let capacity = rps.max(1);
        Self {
            inner: Arc::new(Inner {
                window,
                capacity: AtomicU32::new(capacity),
                slots: Mutex::new(Slots {
                    unused: capacity as usize,
                    resting: VecDeque::new(),
                    busy: 0,
                    capacity: capacity as usize,
                }),
            }),
        }
    }

    /// Slots that have been used and are resting or free again (memory follows use).
    #[cfg(test)]
    pub(crate) fn remembered(&self) -> usize {
        self.inner.slots().resting.len()
    }
}

struct LocalLease {
    store: Arc<Inner>,
    entry: SlotEntry,
}

impl SlotLease for LocalLease {
    fn complete(self: Box<Self>) -> BoxFuture<'static, ()> {
        self.store.slots().release(Instant::now());
        Box::pin(std::future::ready(()))
    }

    /// Once its future is dropped the request can no longer leave this process; bytes already
    /// sent reach CAMS within the network delay, so resting from now keeps the bound as long as
    /// that delay is well under a window (on the same terms as the proof in the module docs).
    fn abandon(self: Box<Self>) {
        self.store.slots().release(Instant::now());
    }

    fn give_back(self: Box<Self>) {
        self.store.slots().restore(self.entry);
    }
}

#[async_trait::async_trait]
impl SlotStore for LocalSlots {
    async fn try_take(&self, reserve: u32, _hungry: Duration) -> Result<Box<dyn SlotLease>, Busy> {
        let now = Instant::now();
        let window = self.inner.window;
        let mut slots = self.inner.slots();
        match slots.take(window, now, reserve as usize) {
            Some(entry) => Ok(Box::new(LocalLease {
                store: Arc::clone(&self.inner),
                entry,
            })),
            None => Err(Busy::Until(slots.next_rest_end(window, now))),
        }
    }

    /// Busy slots count as freeing a window from now, the earliest they can.
    fn earliest_start(&self, ahead: usize, now: Instant) -> Instant {
        let window = self.inner.window;
        let slots = self.inner.slots();
        let n = slots.len().max(1);
        let rounds = u32::try_from(ahead / n).unwrap_or(u32::MAX);
        // Free slots come free in taking order, all before the busy ones can.
        let first = slots
            .ready_at(ahead % n, window, now)
            .unwrap_or(now + window);
        first + window.saturating_mul(rounds)
    }

    fn capacity(&self) -> u32 {
        self.inner.capacity.load(Ordering::Relaxed)
    }

    fn set_capacity(&self, rps: u32) {
        let capacity = rps.max(1);
        let mut slots = self.inner.slots();
        slots.resize(capacity as usize);
        self.inner.capacity.store(capacity, Ordering::Relaxed);
    }
}
