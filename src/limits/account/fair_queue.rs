//! Who is served next when the account quota is the bottleneck.
//!
//! Calls of callers (misses a backend waits for) always go before background work (refreshes),
//! and background work goes most-read entry first.
//!
//! Among callers' calls, capacity is shared between callers first and between the tenants of a
//! caller second, each weighted, by **recent use**: every call dispatched to CAMS adds one to its
//! caller's and its tenant's usage, which decays exponentially (time constant [`USAGE_TAU`]).
//! The k-th waiting call of a party has the virtual finish `(usage + k) / weight`, and the
//! smallest goes first. A party that has used less than its share lately therefore goes ahead of
//! the parties that used more, including calls of theirs that have waited longer: a quiet
//! tenant's call waits for the calls already being dispatched, not for a turn of every flooding
//! tenant. Under steady load each backlogged party's usage converges to its rate times the time
//! constant, so the order equalises rate ÷ weight, which is the weighted fair share.
//!
//! A caller rotating tenant ids gains nothing: its tenants share its own caller-level share.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;

use crate::domain::TenantId;

/// How long use is remembered: usage decays by `e` over this span.
pub(super) const USAGE_TAU: Duration = Duration::from_secs(10);

/// Usage below this is forgotten: the party is indistinguishable from one never seen.
const FORGET_BELOW: f64 = 0.01;

/// Identifies a queued call, so that one that gives up can leave the queue.
pub(super) type Ticket = u64;

/// Who a call is for: the authenticated caller and the tenant it asks about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Party {
    pub caller: Arc<str>,
    pub tenant: TenantId,
}

/// The two classes of work that compete for the account quota.
#[derive(Debug, Clone)]
pub enum Class {
    /// A call a backend is waiting for.
    Caller,
    /// Work nobody waits for (refresh-ahead). `reads` orders it, most-read first; it is read when
    /// the work is dispatched, so reads made while it waits count too.
    Background { reads: Arc<AtomicU64> },
}

impl Class {
    pub fn is_background(&self) -> bool {
        matches!(self, Self::Background { .. })
    }
}

/// Decayed count of dispatched calls.
#[derive(Debug, Clone, Copy)]
struct Usage {
    used: f64,
    at: Instant,
}

impl Usage {
    fn at(self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.used * (-elapsed / USAGE_TAU.as_secs_f64()).exp()
    }
}

/// Weights of tenants and callers; 1 for any not named.
#[derive(Debug, Clone, Default)]
pub struct Weights {
    pub tenants: HashMap<TenantId, f64>,
    pub callers: HashMap<Arc<str>, f64>,
}

impl Weights {
    fn tenant(&self, tenant: &TenantId) -> f64 {
        self.tenants.get(tenant).copied().unwrap_or(1.0)
    }

    fn caller(&self, caller: &str) -> f64 {
        self.callers.get(caller).copied().unwrap_or(1.0)
    }
}

struct Queued<W> {
    ticket: Ticket,
    waiter: W,
}

/// The waiting calls of one caller, by tenant.
struct CallerQueue<W> {
    tenants: HashMap<TenantId, VecDeque<Queued<W>>>,
    len: usize,
}

impl<W> Default for CallerQueue<W> {
    fn default() -> Self {
        Self {
            tenants: HashMap::new(),
            len: 0,
        }
    }
}

struct Background<W> {
    reads: Arc<AtomicU64>,
    ticket: Ticket,
    waiter: W,
}

impl<W> Background<W> {
    fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }
}

pub(super) struct FairQueue<W> {
    weights: Weights,
    caller_usage: HashMap<Arc<str>, Usage>,
    tenant_usage: HashMap<Party, Usage>,
    callers: HashMap<Arc<str>, CallerQueue<W>>,
    caller_len: usize,
    background: Vec<Background<W>>,
    next_ticket: Ticket,
    /// Dispatches since usage was last swept of forgotten parties.
    since_sweep: usize,
}

/// Virtual finish of the `k`-th next call of a party (1 = its next).
fn finish(usage: f64, k: usize, weight: f64) -> f64 {
    (usage + k as f64) / weight
}

/// Whether a call of finish `(ua + ka) / wa` goes before one of `(ub + kb) / wb` now and at every
/// later time while both wait. Usage only decays while nothing is dispatched, and the difference
/// of the two finishes then moves monotonically from its value now to its value once all usage
/// has decayed, so being ahead at both ends means being ahead throughout. Dispatches in between
/// move a party's later calls neither way (its usage grows by one as its position drops by one).
fn surely_before(ua: f64, ka: usize, wa: f64, ub: f64, kb: usize, wb: f64) -> bool {
    finish(ua, ka, wa) < finish(ub, kb, wb) && finish(0.0, ka, wa) < finish(0.0, kb, wb)
}

impl<W> FairQueue<W> {
    pub(super) fn new(weights: Weights) -> Self {
        Self {
            weights,
            caller_usage: HashMap::new(),
            tenant_usage: HashMap::new(),
            callers: HashMap::new(),
            caller_len: 0,
            background: Vec::new(),
            next_ticket: 0,
            since_sweep: 0,
        }
    }

    /// Replaces the weights; usage so far is kept.
    pub(super) fn set_weights(&mut self, weights: Weights) {
        self.weights = weights;
    }

    /// Calls waiting, of both classes.
    pub(super) fn len(&self) -> usize {
        self.caller_len + self.background.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Callers' calls waiting (background work excluded).
    pub(super) fn callers_waiting(&self) -> usize {
        self.caller_len
    }

    pub(super) fn push(&mut self, party: &Party, class: &Class, waiter: W) -> Ticket {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        match class {
            Class::Caller => {
                let queue = self.callers.entry(Arc::clone(&party.caller)).or_default();
                queue
                    .tenants
                    .entry(party.tenant.clone())
                    .or_default()
                    .push_back(Queued { ticket, waiter });
                queue.len += 1;
                self.caller_len += 1;
            }
            Class::Background { reads } => self.background.push(Background {
                reads: Arc::clone(reads),
                ticket,
                waiter,
            }),
        }
        ticket
    }

    /// Takes a waiter out however its wait ended (served already, timed out or cancelled).
    pub(super) fn remove(&mut self, party: &Party, background: bool, ticket: Ticket) {
        if background {
            self.background.retain(|b| b.ticket != ticket);
            return;
        }
        let Some(queue) = self.callers.get_mut(&party.caller) else {
            return;
        };
        let Some(calls) = queue.tenants.get_mut(&party.tenant) else {
            return;
        };
        let before = calls.len();
        calls.retain(|q| q.ticket != ticket);
        let removed = before - calls.len();
        if calls.is_empty() {
            queue.tenants.remove(&party.tenant);
        }
        queue.len -= removed;
        self.caller_len -= removed;
        if queue.len == 0 {
            self.callers.remove(&party.caller);
        }
    }

    /// Takes every waiter out, without counting any use: none of them will call CAMS.
    pub(super) fn drain(&mut self) -> Vec<W> {
        let mut all: Vec<W> = self
            .callers
            .drain()
            .flat_map(|(_, queue)| queue.tenants.into_values().flatten().map(|q| q.waiter))
            .collect();
        all.extend(self.background.drain(..).map(|b| b.waiter));
        self.caller_len = 0;
        all
    }

    /// Counts a call dispatched to CAMS, whether it waited here or found a slot at once.
    pub(super) fn record_use(&mut self, party: &Party, now: Instant) {
        for usage in [
            self.caller_usage
                .entry(Arc::clone(&party.caller))
                .or_insert(Usage { used: 0.0, at: now }),
            self.tenant_usage
                .entry(party.clone())
                .or_insert(Usage { used: 0.0, at: now }),
        ] {
            *usage = Usage {
                used: usage.at(now) + 1.0,
                at: now,
            };
        }
        self.since_sweep += 1;
        if self.since_sweep >= 1024 {
            self.sweep(now);
        }
    }

    /// Forgets parties whose usage has decayed away, so that a flood of distinct tenant ids
    /// cannot grow memory without bound (usage grows only with dispatches, which the account
    /// quota itself limits).
    fn sweep(&mut self, now: Instant) {
        self.since_sweep = 0;
        self.caller_usage.retain(|_, u| u.at(now) >= FORGET_BELOW);
        self.tenant_usage.retain(|_, u| u.at(now) >= FORGET_BELOW);
    }

    fn caller_usage(&self, caller: &str, now: Instant) -> f64 {
        self.caller_usage.get(caller).map_or(0.0, |u| u.at(now))
    }

    fn tenant_usage(&self, party: &Party, now: Instant) -> f64 {
        self.tenant_usage.get(party).map_or(0.0, |u| u.at(now))
    }

    /// The next call to serve: callers' calls in fair order, then, if `background` allows it,
    /// the most-read background work. The call's use is recorded.
    pub(super) fn pop(&mut self, background: bool, now: Instant) -> Option<W> {
        if let Some((party, waiter)) = self.pop_caller(now) {
            self.record_use(&party, now);
            return Some(waiter);
        }
        if !background || self.background.is_empty() {
            return None;
        }
        let best = self
            .background
            .iter()
            .enumerate()
            .max_by(|(_, a), (_, b)| a.reads().cmp(&b.reads()).then(b.ticket.cmp(&a.ticket)))
            .map(|(i, _)| i)?;
        Some(self.background.swap_remove(best).waiter)
    }

    fn pop_caller(&mut self, now: Instant) -> Option<(Party, W)> {
        // The caller whose next call finishes first; the oldest call breaks ties.
        let caller = self
            .callers
            .iter()
            .map(|(caller, queue)| {
                let key = finish(
                    self.caller_usage(caller, now),
                    1,
                    self.weights.caller(caller),
                );
                (key, oldest(queue), caller)
            })
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
            .map(|(_, _, caller)| Arc::clone(caller))?;
        let queue = self.callers.get(&caller)?;
        let tenant = queue
            .tenants
            .iter()
            .filter_map(|(tenant, calls)| {
                let head = calls.front()?;
                let party = Party {
                    caller: Arc::clone(&caller),
                    tenant: tenant.clone(),
                };
                let key = finish(
                    self.tenant_usage(&party, now),
                    1,
                    self.weights.tenant(tenant),
                );
                Some((key, head.ticket, tenant))
            })
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
            .map(|(_, _, tenant)| tenant.clone())?;
        let queue = self.callers.get_mut(&caller)?;
        let calls = queue.tenants.get_mut(&tenant)?;
        let queued = calls.pop_front()?;
        if calls.is_empty() {
            queue.tenants.remove(&tenant);
        }
        queue.len -= 1;
        self.caller_len -= 1;
        if queue.len == 0 {
            self.callers.remove(&caller);
        }
        Some((Party { caller, tenant }, queued.waiter))
    }

    /// How many waiting calls go before a new call of `party` for certain, whatever the decay of
    /// usage until then: a lower bound of its place in the order, so that a call refused on it
    /// could really not have been served in time. Later arrivals can only push it back.
    pub(super) fn surely_ahead_of_newcomer(
        &self,
        party: &Party,
        class: &Class,
        now: Instant,
    ) -> usize {
        if let Class::Background { reads } = class {
            let reads = reads.load(Ordering::Relaxed);
            let before = self
                .background
                .iter()
                .filter(|b| b.reads() >= reads)
                .count();
            return self.caller_len + before;
        }
        let own_caller = self.callers.get(&party.caller);
        // Within the caller: the tenant's own queue (first in, first out), and the calls of its
        // other tenants that surely finish first.
        let tenant_usage = self.tenant_usage(party, now);
        let tenant_weight = self.weights.tenant(&party.tenant);
        let own_queue = own_caller
            .and_then(|q| q.tenants.get(&party.tenant))
            .map_or(0, VecDeque::len);
        let mut within = own_queue;
        if let Some(queue) = own_caller {
            for (tenant, calls) in &queue.tenants {
                if *tenant == party.tenant {
                    continue;
                }
                let other = Party {
                    caller: Arc::clone(&party.caller),
                    tenant: tenant.clone(),
                };
                let (usage, weight) = (self.tenant_usage(&other, now), self.weights.tenant(tenant));
                within += (1..=calls.len())
                    .take_while(|&k| {
                        surely_before(usage, k, weight, tenant_usage, own_queue + 1, tenant_weight)
                    })
                    .count();
            }
        }
        // Other callers: their calls that surely finish before this caller's dispatch that
        // carries the newcomer (at the earliest its `within + 1`-th).
        let caller_usage = self.caller_usage(&party.caller, now);
        let caller_weight = self.weights.caller(&party.caller);
        let mut others = 0;
        for (caller, queue) in &self.callers {
            if *caller == party.caller {
                continue;
            }
            let (usage, weight) = (self.caller_usage(caller, now), self.weights.caller(caller));
            others += (1..=queue.len)
                .take_while(|&k| {
                    surely_before(usage, k, weight, caller_usage, within + 1, caller_weight)
                })
                .count();
        }
        within + others
    }
}

fn oldest<W>(queue: &CallerQueue<W>) -> Ticket {
    queue
        .tenants
        .values()
        .filter_map(|calls| calls.front().map(|q| q.ticket))
        .min()
        .unwrap_or(Ticket::MAX)
}

#[cfg(test)]
#[path = "fair_queue_tests.rs"]
mod tests;
