//! The account's CAMS quota: never more than `rps` upstream calls in any sliding second, however
//! late each one arrives at CAMS, with a fair queue when the quota is the bottleneck.
//!
//! The gate holds `rps` slots. A call takes a free slot for as long as it runs; when it ends, the
//! slot rests for one window before it can be taken again. Any two calls on the same slot thus
//! reach CAMS at least a window apart (the later one leaves after the earlier one has finished, so
//! after it arrived), and by pigeonhole no window at CAMS ever sees more than `rps` calls, whatever
//! the network delay. (governor's GCRA, by contrast, admits up to `2 * rps - 1` in a sliding
//! second, and counts departures, not arrivals.)
//!
//! Calls that find no slot wait in per-tenant queues served in turn, so a flood from one tenant
//! delays the others by at most one turn each. A call that cannot be served within its deadline
//! and `max_wait` is refused at once with an estimate of when capacity frees up.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use tokio::{
    sync::{Notify, oneshot},
    task::AbortHandle,
    time::Instant,
};

use crate::domain::TenantId;

/// Why the account quota turned a call away, and when to try again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRejection {
    pub retry_after: Duration,
    pub cause: RejectionCause,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionCause {
    /// Too many calls are already waiting.
    QueueFull,
    /// The call's deadline or `max_wait` ends before a slot could be its.
    WouldWaitTooLong,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountLimits {
    pub rps: u32,
    pub window: Duration,
    pub max_wait: Duration,
    pub max_queue: usize,
}

/// Held while one upstream call runs; dropping it starts the slot's rest.
#[must_use = "the slot is released when the permit is dropped"]
pub struct AccountPermit {
    /// `None` once disarmed: a permit that was never handed out frees its slot differently.
    gate: Option<Arc<Inner>>,
}

impl std::fmt::Debug for AccountPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountPermit").finish_non_exhaustive()
    }
}

impl Drop for AccountPermit {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            let waiting = {
                let mut state = gate.state();
                state.slots.release(Instant::now());
                state.queues.len > 0
            };
            // Only waiters need the dispatcher; one that queues after this check wakes it
            // itself, and finds the slot released.
            if waiting {
                gate.wake.notify_one();
            }
        }
    }
}

/// Takes a waiter out of its queue however its wait ends: served, timed out or cancelled.
struct LeaveQueue<'a> {
    inner: &'a Inner,
    tenant: &'a TenantId,
    id: u64,
}

impl Drop for LeaveQueue<'_> {
    fn drop(&mut self) {
        remove_waiter(&mut self.inner.state().queues, self.tenant, self.id);
    }
}

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
}

/// A taken slot as it was before: `None` if it had never been used.
type SlotEntry = Option<Instant>;

impl Slots {
    fn new(n: usize) -> Self {
        Self {
            unused: n,
            resting: VecDeque::new(),
            busy: 0,
        }
    }

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

    fn len(&self) -> usize {
        self.unused + self.resting.len() + self.busy
    }

    /// Takes the oldest free slot if its rest is over; returns its entry for [`Self::restore`].
    fn take(&mut self, window: Duration, now: Instant) -> Option<SlotEntry> {
        if self.next_ready(window, now)? > now {
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
        self.resting.push_back(now);
    }

    /// Gives back a slot that was taken but never used, as it was.
    fn restore(&mut self, entry: SlotEntry) {
        self.busy = self.busy.saturating_sub(1);
        match entry {
            None => self.unused += 1,
            Some(rest_began) => self.resting.push_front(rest_began),
        }
    }
}

struct Waiter {
    id: u64,
    tx: oneshot::Sender<AccountPermit>,
}

#[derive(Default)]
struct Queues {
    by_tenant: HashMap<TenantId, VecDeque<Waiter>>,
    /// Tenants with waiters, in serving order.
    turn: VecDeque<TenantId>,
    len: usize,
}

struct State {
    slots: Slots,
    queues: Queues,
    next_id: u64,
}

struct Inner {
    limits: AccountLimits,
    state: Mutex<State>,
    wake: Notify,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic elsewhere: every update is a single store.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A refusal never says "retry now": at least the average spacing of calls.
    fn retry_after(&self, start: Instant, now: Instant) -> Duration {
        let spacing = self.limits.window / self.limits.rps.max(1);
        start.saturating_duration_since(now).max(spacing)
    }

    /// When a caller queued behind `ahead` others would get a slot, assuming each call returns its
    /// slot at once. Busy slots count as freeing a window from now, the earliest they can.
    fn estimate_start(&self, state: &State, ahead: usize, now: Instant) -> Instant {
        let window = self.limits.window;
        let slots = &state.slots;
        let n = slots.len().max(1);
        let rounds = u32::try_from(ahead / n).unwrap_or(u32::MAX);
        // Free slots come free in taking order, all before the busy ones can.
        let first = slots
            .ready_at(ahead % n, window, now)
            .unwrap_or(now + window);
        first + window.saturating_mul(rounds)
    }
}

/// The in-process account limiter.
pub struct AccountGate {
    inner: Arc<Inner>,
    dispatcher: AbortHandle,
}

impl Drop for AccountGate {
    fn drop(&mut self) {
        self.dispatcher.abort();
    }
}

impl AccountGate {
    /// Starts the gate and its dispatcher task (needs a Tokio runtime).
    pub fn new(limits: AccountLimits) -> Self {
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                slots: Slots::new(limits.rps.max(1) as usize),
                queues: Queues::default(),
                next_id: 0,
            }),
            limits,
            wake: Notify::new(),
        });
        let dispatcher = tokio::spawn(dispatch(Arc::clone(&inner))).abort_handle();
        Self { inner, dispatcher }
    }

    pub fn limits(&self) -> AccountLimits {
        self.inner.limits
    }

    /// Calls waiting for a slot.
    pub fn queued(&self) -> usize {
        self.inner.state().queues.len
    }

    /// Takes a slot for one upstream call, waiting in `tenant`'s queue until `deadline` (or
    /// `max_wait`) at most.
    pub async fn acquire(
        &self,
        tenant: &TenantId,
        deadline: Instant,
    ) -> Result<AccountPermit, AccountRejection> {
        let now = Instant::now();
        let give_up = deadline.min(now + self.inner.limits.max_wait);
        let (id, rx) = {
            let mut state = self.inner.state();
            if state.queues.len == 0 && state.slots.take(self.inner.limits.window, now).is_some() {
                return Ok(AccountPermit {
                    gate: Some(Arc::clone(&self.inner)),
                });
            }
            let ahead = state.queues.ahead_of_newcomer(tenant);
            let start = self.inner.estimate_start(&state, ahead, now);
            let retry_after = self.inner.retry_after(start, now);
            if state.queues.len >= self.inner.limits.max_queue {
                return Err(AccountRejection {
                    retry_after,
                    cause: RejectionCause::QueueFull,
                });
            }
            if start > give_up {
                return Err(AccountRejection {
                    retry_after,
                    cause: RejectionCause::WouldWaitTooLong,
                });
            }
            let (tx, rx) = oneshot::channel();
            let id = state.next_id;
            state.next_id += 1;
            let queues = &mut state.queues;
            let queue = queues.by_tenant.entry(tenant.clone()).or_default();
            if queue.is_empty() {
                queues.turn.push_back(tenant.clone());
            }
            queue.push_back(Waiter { id, tx });
            queues.len += 1;
            (id, rx)
        };
        self.inner.wake.notify_one();

        let leave = LeaveQueue {
            inner: &self.inner,
            tenant,
            id,
        };
        let outcome = tokio::time::timeout_at(give_up, rx).await;
        drop(leave);
        match outcome {
            Ok(Ok(permit)) => Ok(permit),
            // Timed out, or the gate is gone. A permit handed over at the last moment was
            // dropped with the receiver, which returned its slot to rest.
            _ => {
                let state = self.inner.state();
                let now = Instant::now();
                let ahead = state.queues.ahead_of_newcomer(tenant);
                let start = self.inner.estimate_start(&state, ahead, now);
                let retry_after = self.inner.retry_after(start, now);
                Err(AccountRejection {
                    retry_after,
                    cause: RejectionCause::WouldWaitTooLong,
                })
            }
        }
    }
}

impl Queues {
    /// Waiters served before a new one of `tenant`, at most: its own queue, and from every other
    /// tenant as many as one more than that (one per turn).
    fn ahead_of_newcomer(&self, tenant: &TenantId) -> usize {
        let own = self.by_tenant.get(tenant).map_or(0, VecDeque::len);
        let others: usize = self
            .by_tenant
            .iter()
            .filter(|(t, _)| *t != tenant)
            .map(|(_, q)| q.len().min(own + 1))
            .sum();
        own + others
    }
}

fn remove_waiter(queues: &mut Queues, tenant: &TenantId, id: u64) {
    let Some(queue) = queues.by_tenant.get_mut(tenant) else {
        return;
    };
    let before = queue.len();
    queue.retain(|w| w.id != id);
    queues.len -= before - queue.len();
    if queue.is_empty() {
        queues.by_tenant.remove(tenant);
        queues.turn.retain(|t| t != tenant);
    }
}

/// Next waiter in turn: one from each waiting tenant before a second from any.
fn next_waiter(queues: &mut Queues) -> Option<Waiter> {
    let tenant = queues.turn.pop_front()?;
    let queue = queues.by_tenant.get_mut(&tenant)?;
    let waiter = queue.pop_front();
    if queue.is_empty() {
        queues.by_tenant.remove(&tenant);
    } else {
        queues.turn.push_back(tenant);
    }
    if waiter.is_some() {
        queues.len -= 1;
    }
    waiter
}

/// Hands free slots to waiters in turn; sleeps until the next slot's rest ends or a permit or a
/// waiter arrives.
async fn dispatch(inner: Arc<Inner>) {
    loop {
        let next = {
            let mut state = inner.state();
            let now = Instant::now();
            let window = inner.limits.window;
            while state.queues.len > 0 {
                let Some(entry) = state.slots.take(window, now) else {
                    break;
                };
                let Some(waiter) = next_waiter(&mut state.queues) else {
                    state.slots.restore(entry);
                    break;
                };
                let permit = AccountPermit {
                    gate: Some(Arc::clone(&inner)),
                };
                if let Err(mut permit) = waiter.tx.send(permit) {
                    // The waiter left; the slot was never used, so it goes back as it was
                    // (and the permit must not take the lock this loop holds).
                    permit.gate = None;
                    state.slots.restore(entry);
                }
            }
            if state.queues.len == 0 {
                None
            } else {
                state.slots.next_ready(window, now)
            }
        };
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = inner.wake.notified() => {}
                }
            }
            None => inner.wake.notified().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(rps: u32, max_wait_ms: u64, max_queue: usize) -> AccountGate {
        AccountGate::new(AccountLimits {
            rps,
            window: Duration::from_secs(1),
            max_wait: Duration::from_millis(max_wait_ms),
            max_queue,
        })
    }

    fn tenant(id: &str) -> TenantId {
        TenantId::parse(id).expect("valid")
    }

    /// Lets spawned callers run until `n` of them wait (bounded, so a wrong count fails).
    async fn wait_queued(gate: &AccountGate, n: usize) {
        for _ in 0..10_000 {
            if gate.queued() >= n {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("{} callers queued, expected {n}", gate.queued());
    }

    /// A very high quota costs nothing up front: the gate remembers only the slots that calls
    /// have used, and those used slots are the ones it hands out last.
    #[tokio::test(start_paused = true)]
    async fn memory_follows_use_not_the_quota() {
        let gate = gate(1_000_000, 0, 10);
        let t = tenant("t");
        let far = Instant::now() + Duration::from_secs(5);
        let permits: Vec<_> = futures_util::future::join_all((0..3).map(|_| gate.acquire(&t, far)))
            .await
            .into_iter()
            .map(|p| p.expect("a slot is free"))
            .collect();
        assert_eq!(gate.inner.state().slots.resting.len(), 0);
        drop(permits);
        {
            let state = gate.inner.state();
            assert_eq!(state.slots.resting.len(), 3, "only used slots are kept");
            assert_eq!(state.slots.unused, 1_000_000 - 3);
        }
        // The next call gets a never-used slot at once rather than a resting one.
        let _next = gate.acquire(&t, far).await.expect("an unused slot");
        assert_eq!(gate.inner.state().slots.resting.len(), 3);
    }

    /// No more than `n` of `starts` lie in any window of one second.
    fn assert_sliding_bound(starts: &mut [Instant], n: usize) {
        starts.sort();
        for pair in starts.windows(n + 1) {
            let span = pair[n] - pair[0];
            assert!(
                span >= Duration::from_secs(1),
                "{} starts within {span:?}",
                n + 1
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn strict_sliding_second_under_pressure() {
        let gate = Arc::new(gate(5, 60_000, 10_000));
        let far = Instant::now() + Duration::from_secs(3600);
        let mut tasks = Vec::new();
        for i in 0..60u64 {
            let gate = Arc::clone(&gate);
            tasks.push(tokio::spawn(async move {
                let permit = gate.acquire(&tenant("t"), far).await.expect("waits");
                let started = Instant::now();
                // Calls of varied length hold their slot while they run.
                tokio::time::sleep(Duration::from_millis(i * 37 % 300)).await;
                drop(permit);
                started
            }));
        }
        let mut starts = Vec::new();
        for t in tasks {
            starts.push(t.await.expect("task"));
        }
        assert_eq!(starts.len(), 60);
        assert_sliding_bound(&mut starts, 5);
        // And the gate is not needlessly slow: 60 calls at 5 per second take ~12 s, plus call time.
        let span = *starts.last().expect("some") - starts[0];
        assert!(span < Duration::from_secs(14), "{span:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_rps_goes_at_once_then_waits_a_window() {
        let gate = gate(5, 5_000, 100);
        let far = Instant::now() + Duration::from_secs(60);
        let t0 = Instant::now();
        for _ in 0..5 {
            drop(gate.acquire(&tenant("a"), far).await.expect("burst"));
        }
        assert_eq!(Instant::now(), t0, "the first five do not wait");
        drop(gate.acquire(&tenant("a"), far).await.expect("sixth waits"));
        assert_eq!(Instant::now() - t0, Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn refuses_at_once_when_the_deadline_is_too_close() {
        let gate = gate(1, 5_000, 100);
        let permit = gate
            .acquire(&tenant("a"), Instant::now() + Duration::from_secs(10))
            .await
            .expect("first");
        drop(permit);
        let t0 = Instant::now();
        let rejection = gate
            .acquire(&tenant("a"), Instant::now() + Duration::from_millis(300))
            .await
            .expect_err("slot rests for a second");
        assert_eq!(Instant::now(), t0, "refused without waiting");
        assert_eq!(rejection.cause, RejectionCause::WouldWaitTooLong);
        assert_eq!(rejection.retry_after, Duration::from_secs(1));

        // max_wait bounds the wait even with a distant deadline.
        let gate2 = self::gate(1, 200, 100);
        drop(
            gate2
                .acquire(&tenant("a"), t0 + Duration::from_secs(60))
                .await
                .expect("first"),
        );
        let rejection = gate2
            .acquire(&tenant("a"), t0 + Duration::from_secs(60))
            .await
            .expect_err("max_wait");
        assert_eq!(rejection.cause, RejectionCause::WouldWaitTooLong);
    }

    #[tokio::test(start_paused = true)]
    async fn bounded_queue() {
        let gate = Arc::new(gate(1, 60_000, 3));
        let far = Instant::now() + Duration::from_secs(60);
        let held = gate.acquire(&tenant("a"), far).await.expect("first");
        let mut waiting = Vec::new();
        for _ in 0..3 {
            let gate = Arc::clone(&gate);
            waiting.push(tokio::spawn(async move {
                gate.acquire(&tenant("a"), far).await.map(drop)
            }));
        }
        wait_queued(&gate, 3).await;
        let rejection = gate.acquire(&tenant("b"), far).await.expect_err("full");
        assert_eq!(rejection.cause, RejectionCause::QueueFull);
        // Tenant b would be next in turn after one of a's: the held slot frees in a window at the
        // earliest, and a's call takes it for another.
        assert_eq!(rejection.retry_after, Duration::from_secs(2));
        drop(held);
        for w in waiting {
            w.await.expect("task").expect("served in time");
        }
        assert_eq!(gate.queued(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_tenants_are_served_in_turn() {
        let gate = Arc::new(gate(1, 120_000, 1000));
        let far = Instant::now() + Duration::from_secs(120);
        let held = gate.acquire(&tenant("noisy"), far).await.expect("first");
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        let mut enqueue = |name: &'static str| {
            let gate = Arc::clone(&gate);
            let order = Arc::clone(&order);
            tasks.push(tokio::spawn(async move {
                let permit = gate.acquire(&tenant(name), far).await.expect("served");
                order.lock().expect("lock").push(name);
                drop(permit);
            }));
        };
        for _ in 0..10 {
            enqueue("noisy");
        }
        enqueue("quiet");
        wait_queued(&gate, 11).await;
        drop(held);
        for t in tasks {
            t.await.expect("task");
        }
        let order = order.lock().expect("lock").clone();
        let quiet_at = order
            .iter()
            .position(|n| *n == "quiet")
            .expect("quiet served");
        assert!(
            quiet_at <= 1,
            "quiet tenant served at position {quiet_at}: {order:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_tenant_is_not_refused_for_a_noisy_queue() {
        let gate = Arc::new(gate(1, 60_000, 1000));
        let far = Instant::now() + Duration::from_secs(60);
        let held = gate.acquire(&tenant("noisy"), far).await.expect("first");
        let mut noisy = Vec::new();
        for _ in 0..5 {
            let gate = Arc::clone(&gate);
            noisy.push(tokio::spawn(async move {
                gate.acquire(&tenant("noisy"), far).await.map(drop)
            }));
        }
        wait_queued(&gate, 5).await;
        // In arrival order the quiet call would start after ~6 s; in turn it starts after ~2 s,
        // so a 2.5 s deadline is enough and the call is not refused.
        let t0 = Instant::now();
        let quiet = {
            let gate = Arc::clone(&gate);
            tokio::spawn(async move {
                gate.acquire(&tenant("quiet"), t0 + Duration::from_millis(2_500))
                    .await
                    .map(drop)
            })
        };
        wait_queued(&gate, 6).await;
        drop(held);
        quiet.await.expect("task").expect("quiet served in turn");
        assert!(Instant::now() - t0 <= Duration::from_secs(2));
        for n in noisy {
            n.await.expect("task").expect("noisy served later");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_gives_up_leaves_the_queue() {
        let gate = Arc::new(gate(1, 60_000, 10));
        let held = gate
            .acquire(&tenant("a"), Instant::now() + Duration::from_secs(60))
            .await
            .expect("first");
        let short = {
            let gate = Arc::clone(&gate);
            tokio::spawn(async move {
                // Its deadline allows the estimated start (1 s) but the holder never lets go.
                gate.acquire(&tenant("b"), Instant::now() + Duration::from_millis(1_500))
                    .await
                    .map(drop)
            })
        };
        let rejection = short.await.expect("task").expect_err("gave up");
        assert_eq!(rejection.cause, RejectionCause::WouldWaitTooLong);
        assert_eq!(gate.queued(), 0);
        drop(held);
    }
}
