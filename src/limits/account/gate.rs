//! The gate in front of a [`SlotStore`]: calls that find no free slot wait in a [`FairQueue`],
//! and one dispatcher hands them slots in its order as the store frees them. A call that surely
//! cannot be served within its deadline and `max_wait` is refused at once, with an estimate of
//! when capacity frees up; one that might be waits, and fails when its wait ends.
//!
//! Background work (refreshes) takes a slot only when no caller waits and another slot stays
//! ready, so that a caller's miss arriving next finds one.

use std::{
    future::Future,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use arc_swap::ArcSwap;
use tokio::{
    sync::{Notify, oneshot},
    time::Instant,
};

use super::{
    AccountLimits, AccountQuota, AccountRejection, Busy, Claim, Lease, RejectionCause, SlotLease,
    SlotStore,
    fair_queue::{Class, FairQueue, Party, Ticket, Weights},
    recent::Recent,
};

/// What a waiter is handed: a slot, or the reason it will get none (the store is unavailable).
type Handed = Result<Lease, RejectionCause>;

/// Suggested to callers while the quota's store does not answer: about the time a lost
/// connection takes to come back.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// While the store does not answer, the dispatcher tries again this often (the calls that were
/// waiting have been told at once).
const STORE_PAUSE: Duration = Duration::from_millis(100);

/// Slots background work leaves ready for callers (none when there is only one: background
/// work could never run then).
const CALLER_RESERVE: u32 = 1;

fn reserve(background: bool, capacity: u32) -> u32 {
    if background {
        CALLER_RESERVE.min(capacity.saturating_sub(1))
    } else {
        0
    }
}

/// What the dispatcher and the leases share; holds no store, so leases keep no cycle alive.
struct Queue {
    waiting: Mutex<FairQueue<oneshot::Sender<Handed>>>,
    wake: Notify,
}

impl Queue {
    fn waiting(&self) -> MutexGuard<'_, FairQueue<oneshot::Sender<Handed>>> {
        // Every update is a single step under the lock: a panic elsewhere cannot leave it
        // half-changed.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A returned slot matters to the dispatcher only when calls wait; one that queues after
    /// this check wakes it itself.
    fn slot_returned(&self) {
        if !self.waiting().is_empty() {
            self.wake.notify_one();
        }
    }
}

struct Inner {
    limits: ArcSwap<AccountLimits>,
    store: Arc<dyn SlotStore>,
    queue: Arc<Queue>,
    on_release: Arc<dyn Fn() + Send + Sync>,
    /// The slots taken in the last second.
    recent: Recent,
}

impl Inner {
    fn lease(&self, slot: Box<dyn SlotLease>) -> Lease {
        self.recent.record(Instant::now());
        Lease::new(slot, Some(Arc::clone(&self.on_release)))
    }

    /// A refusal never says "retry now": at least the average spacing of calls.
    fn retry_after(&self, start: Instant, now: Instant) -> Duration {
        let limits = self.limits.load();
        let spacing = limits.window / limits.rps.max(1);
        start.saturating_duration_since(now).max(spacing)
    }

    fn rejection(
        &self,
        waiting: &FairQueue<oneshot::Sender<Handed>>,
        claim: &Claim<'_>,
        cause: RejectionCause,
        now: Instant,
    ) -> AccountRejection {
        let ahead = waiting.surely_ahead_of_newcomer(claim.party, &claim.class, now);
        let start = self.store.earliest_start(ahead, now);
        AccountRejection {
            retry_after: self.retry_after(start, now),
            cause,
        }
    }
}

fn store_unavailable() -> AccountRejection {
    AccountRejection {
        retry_after: STORE_RETRY,
        cause: RejectionCause::StoreUnavailable,
    }
}

/// Takes a waiter out of the queue however its wait ends: served, timed out or cancelled.
struct LeaveQueue<'a> {
    queue: &'a Queue,
    party: &'a Party,
    background: bool,
    ticket: Ticket,
}

impl Drop for LeaveQueue<'_> {
    fn drop(&mut self) {
        self.queue
            .waiting()
            .remove(self.party, self.background, self.ticket);
    }
}

/// The account limiter: a fair queue and a dispatcher in front of a slot store.
pub struct AccountGate {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AccountGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountGate")
            .field("limits", &self.inner.limits.load())
            .field("store", &self.inner.store)
            .field("queued", &self.inner.queue.waiting().len())
            .finish()
    }
}

impl AccountGate {
    /// The gate; nobody who waits is served until [`Self::dispatcher`] runs.
    pub fn new(limits: AccountLimits, weights: Weights, store: Arc<dyn SlotStore>) -> Self {
        let queue = Arc::new(Queue {
            waiting: Mutex::new(FairQueue::new(weights)),
            wake: Notify::new(),
        });
        let on_release: Arc<dyn Fn() + Send + Sync> = {
            let queue = Arc::clone(&queue);
            Arc::new(move || queue.slot_returned())
        };
        Self {
            inner: Arc::new(Inner {
                limits: ArcSwap::from_pointee(limits),
                store,
                queue,
                on_release,
                recent: Recent::new(),
            }),
        }
    }

    pub fn limits(&self) -> AccountLimits {
        **self.inner.limits.load()
    }

    /// Hands free slots to waiters in the fair queue's order; sleeps until the store's next slot
    /// is ready or a slot or a waiter arrives. Runs until dropped: the application's task owner
    /// runs it.
    pub fn dispatcher(&self) -> impl Future<Output = ()> + Send + 'static {
        let inner = Arc::clone(&self.inner);
        async move {
            // Since when this process's callers have waited without being handed a slot.
            let mut hungry_since: Option<Instant> = None;
            loop {
                let (callers, background) = {
                    let waiting = inner.queue.waiting();
                    let callers = waiting.callers_waiting();
                    (callers, waiting.len() - callers)
                };
                if callers == 0 && hungry_since.take().is_some() {
                    inner.store.withdraw();
                }
                if callers == 0 && background == 0 {
                    inner.queue.wake.notified().await;
                    continue;
                }
                let background = callers == 0;
                let hungry = if background {
                    Duration::ZERO
                } else {
                    hungry_since.get_or_insert_with(Instant::now).elapsed()
                };
                match inner
                    .store
                    .try_take(reserve(background, inner.store.capacity()), hungry)
                    .await
                {
                    Ok(slot) => {
                        if !background {
                            hungry_since = Some(Instant::now());
                        }
                        let lease = inner.lease(slot);
                        let waiter = inner.queue.waiting().pop(background, Instant::now());
                        match waiter {
                            // A waiter that left meanwhile never used the slot: it goes back as
                            // it was.
                            Some(tx) => {
                                if let Err(Ok(lease)) = tx.send(Ok(lease)) {
                                    lease.give_back();
                                }
                            }
                            None => lease.give_back(),
                        }
                    }
                    Err(Busy::Until(Some(ready_at))) => {
                        tokio::select! {
                            () = tokio::time::sleep_until(ready_at) => {}
                            () = inner.queue.wake.notified() => {}
                        }
                    }
                    Err(Busy::Until(None)) => inner.queue.wake.notified().await,
                    // Nobody waits for a store that does not answer: every waiter hears it now,
                    // and the dispatcher tries again shortly for the calls that come next.
                    Err(Busy::StoreUnavailable) => {
                        let told = inner.queue.waiting().drain();
                        for tx in told {
                            let _ = tx.send(Err(RejectionCause::StoreUnavailable));
                        }
                        tokio::time::sleep(STORE_PAUSE).await;
                    }
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl AccountQuota for AccountGate {
    async fn acquire(&self, claim: Claim<'_>) -> Result<Lease, AccountRejection> {
        let inner = &self.inner;
        let now = Instant::now();
        // `max_wait` is what a caller waits at most; background work waits until its own deadline.
        let give_up = if claim.class.is_background() {
            claim.deadline
        } else {
            claim.deadline.min(now + inner.limits.load().max_wait)
        };
        // Straight to the store when nobody this call would have to let go first is waiting.
        let queue_ahead = {
            let waiting = inner.queue.waiting();
            match &claim.class {
                Class::Caller => waiting.callers_waiting(),
                Class::Background { .. } => waiting.len(),
            }
        };
        if queue_ahead == 0 {
            match inner
                .store
                .try_take(
                    reserve(claim.class.is_background(), inner.store.capacity()),
                    Duration::ZERO,
                )
                .await
            {
                Ok(slot) => {
                    if !claim.class.is_background() {
                        inner.queue.waiting().record_use(claim.party, now);
                    }
                    return Ok(inner.lease(slot));
                }
                Err(Busy::StoreUnavailable) => return Err(store_unavailable()),
                Err(Busy::Until(_)) => {}
            }
        }
        let (ticket, rx) = {
            let mut waiting = inner.queue.waiting();
            if waiting.len() >= inner.limits.load().max_queue {
                return Err(inner.rejection(&waiting, &claim, RejectionCause::QueueFull, now));
            }
            let ahead = waiting.surely_ahead_of_newcomer(claim.party, &claim.class, now);
            let start = inner.store.earliest_start(ahead, now);
            if start > give_up {
                return Err(AccountRejection {
                    retry_after: inner.retry_after(start, now),
                    cause: RejectionCause::WouldWaitTooLong,
                });
            }
            let (tx, rx) = oneshot::channel();
            (waiting.push(claim.party, &claim.class, tx), rx)
        };
        inner.queue.wake.notify_one();

        let leave = LeaveQueue {
            queue: &inner.queue,
            party: claim.party,
            background: claim.class.is_background(),
            ticket,
        };
        let mut rx = Unclaimed(rx);
        let outcome = tokio::time::timeout_at(give_up, &mut rx.0).await;
        drop(leave);
        match outcome {
            Ok(Ok(Ok(lease))) => Ok(lease),
            Ok(Ok(Err(RejectionCause::StoreUnavailable))) => Err(store_unavailable()),
            // Timed out, or the dispatcher is gone.
            _ => {
                let waiting = inner.queue.waiting();
                Err(inner.rejection(
                    &waiting,
                    &claim,
                    RejectionCause::WouldWaitTooLong,
                    Instant::now(),
                ))
            }
        }
    }

    fn rps(&self) -> u32 {
        self.inner.limits.load().rps
    }

    fn queued(&self) -> usize {
        self.inner.queue.waiting().len()
    }

    fn used_last_second(&self) -> u32 {
        self.inner.recent.last_second(Instant::now())
    }

    fn reconfigure(&self, limits: AccountLimits, weights: Weights) {
        let inner = &self.inner;
        inner.store.set_capacity(limits.rps);
        inner.limits.store(Arc::new(limits));
        inner.queue.waiting().set_weights(weights);
        // More slots, or a longer wait allowed: the waiters may be served now.
        inner.queue.wake.notify_one();
    }
}

/// The receiving end of a waiter's lease. A lease handed over just as the waiter gave up (its
/// deadline, or its caller going away) was never used: it goes back as it was, where dropping it
/// would count it as a call that may have been sent.
struct Unclaimed(oneshot::Receiver<Handed>);

impl Drop for Unclaimed {
    fn drop(&mut self) {
        self.0.close();
        if let Ok(Ok(lease)) = self.0.try_recv() {
            lease.give_back();
        }
    }
}
