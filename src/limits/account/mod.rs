//! The account's CAMS quota: never more than `rps` upstream calls in any sliding second, however
//! late each one arrives at CAMS, with a fair queue when the quota is the bottleneck.
//!
//! The pieces, each replaceable on its own:
//! - [`AccountQuota`], the seam the gateway sees: `acquire` a [`Lease`] for one upstream call,
//!   then `complete` it once the answer has been read. A lease dropped without `complete` is
//!   abandoned: the call may still be on its way to CAMS, so each store decides how long it
//!   keeps counting it.
//! - [`AccountGate`] (gate.rs), the one implementation of the seam: callers that find no free
//!   slot wait in a [`FairQueue`](fair_queue) and a dispatcher hands them slots in turn.
//! - [`SlotStore`], where the slots live: [`LocalSlots`] (local.rs) in this process; a store
//!   shared by several replicas implements the same trait.
//!
//! Why slots and not a rate: a call holds a slot while it runs, and a released slot rests one
//! window before it can be taken again. Any two calls on the same slot thus reach CAMS at least
//! a window apart (the later leaves after the earlier has finished, so after it arrived), and by
//! pigeonhole no window at CAMS ever sees more than `rps` calls, whatever the network delay.
//! (governor's GCRA, by contrast, admits up to `2 * rps - 1` in a sliding second, and counts
//! departures, not arrivals.)

mod fair_queue;
mod gate;
mod local;
mod recent;
mod redis;
#[cfg(test)]
mod tests;

use std::{fmt, sync::Arc, time::Duration};

use futures_util::future::BoxFuture;
use tokio::time::Instant;

use crate::domain::Action;

pub use fair_queue::{Class, Party, Weights};
pub use gate::AccountGate;
pub use local::LocalSlots;
pub use redis::RedisSlots;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountLimits {
    pub rps: u32,
    /// How long a released slot rests: the span in which CAMS counts at most `rps` calls.
    pub window: Duration,
    pub max_wait: Duration,
    pub max_queue: usize,
}

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
    /// The shared store of the quota does not answer; no call is admitted without it.
    StoreUnavailable,
}

/// What a call asks of the account quota.
#[derive(Debug, Clone)]
pub struct Claim<'a> {
    pub party: &'a Party,
    pub class: Class,
    /// Waits no longer than this (nor than the configured `max_wait`).
    pub deadline: Instant,
}

/// The account's quota as the gateway sees it.
#[async_trait::async_trait]
pub trait AccountQuota: Send + Sync + fmt::Debug {
    /// A slot for one upstream call, in the order the fair queue decides.
    async fn acquire(&self, claim: Claim<'_>) -> Result<Lease, AccountRejection>;

    /// The account's calls per second, for error details.
    fn rps(&self) -> u32;

    /// Calls waiting for a slot now.
    fn queued(&self) -> usize;

    /// Slots this process took in the last second.
    fn used_last_second(&self) -> u32 {
        0
    }

    /// Replaces the limits and the weights (a configuration reload); calls waiting keep their
    /// place, and calls holding a slot keep it.
    fn reconfigure(&self, limits: AccountLimits, weights: Weights);
}

/// The account's budget of every CAMS action: CAMS counts each operation's calls on their own
/// (5 per second each, for the whole account), and so does the gateway, each with its own quota
/// and fair queue.
#[derive(Debug, Clone)]
pub struct AccountQuotas {
    by_action: [Arc<dyn AccountQuota>; 4],
}

impl AccountQuotas {
    /// One quota per action, made by `quota`.
    pub fn new(mut quota: impl FnMut(Action) -> Arc<dyn AccountQuota>) -> Self {
        Self {
            by_action: Action::ALL.map(&mut quota),
        }
    }

    /// The same quota for every action (tests that do not tell the actions apart).
    pub fn shared(quota: Arc<dyn AccountQuota>) -> Self {
        Self::new(|_| Arc::clone(&quota))
    }

    pub fn of(&self, action: Action) -> &Arc<dyn AccountQuota> {
        &self.by_action[action.index()]
    }
}

/// One taken slot, as its store knows it.
pub trait SlotLease: Send + Sync {
    /// The answer has been read: the slot rests from now.
    fn complete(self: Box<Self>) -> BoxFuture<'static, ()>;
    /// The call was given up while it may still be on its way to CAMS.
    fn abandon(self: Box<Self>);
    /// The slot was taken but no call was made with it: it goes back as it was.
    fn give_back(self: Box<Self>);
}

/// Why a slot could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// No slot now: ask again at the instant given (the earliest one may be ready), or, with
    /// `None`, when the gate hears of a release.
    Until(Option<Instant>),
    /// The store cannot be asked (a shared store that does not answer): nothing is admitted.
    StoreUnavailable,
}

/// The slots, wherever they are kept.
#[async_trait::async_trait]
pub trait SlotStore: Send + Sync + fmt::Debug + 'static {
    /// Takes a slot whose rest is over, provided more than `reserve` slots are ready (so that
    /// background work leaves room for callers), or says why not. `hungry` is how long this
    /// process's waiting callers have gone without a slot (zero for a call that has not
    /// waited): a store shared by several processes hands a free slot to the one that has gone
    /// without longest, so that a flood through one process cannot starve the callers of
    /// another.
    async fn try_take(&self, reserve: u32, hungry: Duration) -> Result<Box<dyn SlotLease>, Busy>;

    /// This process has no callers waiting any more: it stops claiming a turn.
    fn withdraw(&self) {}

    /// The earliest a call could start that has `ahead` calls before it, assuming each of
    /// those returns its slot at once: a lower bound, so that a call refused on it could
    /// really not have been served in time.
    fn earliest_start(&self, ahead: usize, now: Instant) -> Instant;

    /// The number of slots (`rps`).
    fn capacity(&self) -> u32;

    /// Changes the number of slots (a configuration reload): calls holding a slot keep it, and
    /// no window at CAMS sees more calls than the slots there were during it.
    fn set_capacity(&self, rps: u32);
}

/// A slot held for one upstream call. `complete` it once the answer is read; dropping it
/// abandons it.
#[must_use = "a lease dropped without complete() is abandoned"]
pub struct Lease {
    slot: Option<Box<dyn SlotLease>>,
    /// Told when the slot is returned, so that waiters are served.
    on_release: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease").finish_non_exhaustive()
    }
}

impl Lease {
    pub fn new(slot: Box<dyn SlotLease>, on_release: Option<Arc<dyn Fn() + Send + Sync>>) -> Self {
        Self {
            slot: Some(slot),
            on_release,
        }
    }

    /// The call's answer has been read (or it failed with an answer): the slot rests from now.
    pub async fn complete(mut self) {
        if let Some(slot) = self.slot.take() {
            slot.complete().await;
            self.released();
        }
    }

    /// No call was made with this lease.
    pub(crate) fn give_back(mut self) {
        if let Some(slot) = self.slot.take() {
            slot.give_back();
            self.released();
        }
    }

    fn released(&self) {
        if let Some(notify) = &self.on_release {
            notify();
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.abandon();
            self.released();
        }
    }
}
