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
    sync::Arc,
    time::Duration,
};

use tokio::time::Instant;

use crate::domain::TenantId;

/// How long use is remembered: usage decays by `e` over this span.
pub const USAGE_TAU: Duration = Duration::from_secs(10);

/// Usage below this is forgotten: the party is indistinguishable from one never seen.
const FORGET_BELOW: f64 = 0.01;

/// Identifies a queued call, so that one that gives up can leave the queue.
pub type Ticket = u64;

/// Who a call is for: the authenticated caller and the tenant it asks about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Party {
    pub caller: Arc<str>,
    pub tenant: TenantId,
}

/// The two classes of work that compete for the account quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A call a backend is waiting for.
    Caller,
    /// Work nobody waits for (refresh-ahead); `reads` orders it, most-read first.
    Background { reads: u64 },
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
    reads: u64,
    ticket: Ticket,
    waiter: W,
}

pub struct FairQueue<W> {
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
    pub fn new(weights: Weights) -> Self {
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

    /// Calls waiting, of both classes.
    pub fn len(&self) -> usize {
        self.caller_len + self.background.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Callers' calls waiting (background work excluded).
    pub fn callers_waiting(&self) -> usize {
        self.caller_len
    }

    pub fn push(&mut self, party: &Party, class: Class, waiter: W) -> Ticket {
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
                reads,
                ticket,
                waiter,
            }),
        }
        ticket
    }

    /// Takes a waiter out however its wait ended (served already, timed out or cancelled).
    pub fn remove(&mut self, party: &Party, class: Class, ticket: Ticket) {
        if let Class::Background { .. } = class {
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

    /// Counts a call dispatched to CAMS, whether it waited here or found a slot at once.
    pub fn record_use(&mut self, party: &Party, now: Instant) {
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
    pub fn pop(&mut self, background: bool, now: Instant) -> Option<W> {
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
            .max_by(|(_, a), (_, b)| a.reads.cmp(&b.reads).then(b.ticket.cmp(&a.ticket)))
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
    pub fn surely_ahead_of_newcomer(&self, party: &Party, class: Class, now: Instant) -> usize {
        if let Class::Background { reads } = class {
            let before = self.background.iter().filter(|b| b.reads >= reads).count();
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
mod tests {
    use super::*;

    fn party(caller: &str, tenant: &str) -> Party {
        Party {
            caller: Arc::from(caller),
            tenant: TenantId::parse(tenant).expect("tenant"),
        }
    }

    /// Serves the whole queue, recording each call's use, and returns the order.
    fn drain(queue: &mut FairQueue<&'static str>, now: Instant) -> Vec<&'static str> {
        std::iter::from_fn(|| queue.pop(true, now)).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_tenant_that_used_less_goes_before_older_calls_of_busier_ones() {
        let mut queue = FairQueue::new(Weights::default());
        let now = Instant::now();
        // Six noisy tenants have each used the quota a lot lately and have calls waiting.
        for n in 0..6 {
            let noisy = party("anonymous", &format!("noisy-{n}"));
            for _ in 0..8 {
                queue.record_use(&noisy, now);
            }
            queue.push(&noisy, Class::Caller, "noisy");
            queue.push(&noisy, Class::Caller, "noisy");
        }
        // A quiet tenant that called once a while ago arrives last.
        let quiet = party("anonymous", "quiet");
        queue.record_use(&quiet, now - Duration::from_secs(2));
        assert_eq!(
            queue.surely_ahead_of_newcomer(&quiet, Class::Caller, now),
            0
        );
        queue.push(&quiet, Class::Caller, "quiet");
        assert_eq!(queue.pop(true, now), Some("quiet"));
    }

    #[tokio::test(start_paused = true)]
    async fn equal_tenants_alternate_and_weights_change_the_shares() {
        let mut queue = FairQueue::new(Weights {
            tenants: HashMap::from([(TenantId::parse("heavy").expect("id"), 3.0)]),
            callers: HashMap::new(),
        });
        let now = Instant::now();
        for _ in 0..8 {
            queue.push(&party("c", "heavy"), Class::Caller, "heavy");
            queue.push(&party("c", "light"), Class::Caller, "light");
        }
        let order = drain(&mut queue, now);
        // While both wait, weight 3 against 1 gives three calls to one.
        let first_eight = &order[..8];
        let heavy = first_eight.iter().filter(|n| **n == "heavy").count();
        assert_eq!(heavy, 6, "{order:?}");

        let mut queue = FairQueue::new(Weights::default());
        for _ in 0..4 {
            queue.push(&party("c", "a"), Class::Caller, "a");
        }
        for _ in 0..4 {
            queue.push(&party("c", "b"), Class::Caller, "b");
        }
        assert_eq!(
            drain(&mut queue, now),
            ["a", "b", "a", "b", "a", "b", "a", "b"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn callers_share_first_so_rotating_tenants_gains_nothing() {
        let mut queue = FairQueue::new(Weights::default());
        let now = Instant::now();
        // One caller spreads 20 calls over 20 fresh tenant ids; another has 2 calls for one.
        for n in 0..20 {
            let id: &'static str = Box::leak(format!("t{n}").into_boxed_str());
            queue.push(&party("rotator", id), Class::Caller, "rotator");
        }
        queue.push(&party("steady", "s"), Class::Caller, "steady");
        queue.push(&party("steady", "s"), Class::Caller, "steady");
        let order = drain(&mut queue, now);
        let steady_at: Vec<_> = order
            .iter()
            .enumerate()
            .filter(|(_, n)| **n == "steady")
            .map(|(i, _)| i)
            .collect();
        assert!(steady_at[0] <= 1 && steady_at[1] <= 3, "{order:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn callers_go_before_background_and_background_goes_most_read_first() {
        let mut queue = FairQueue::new(Weights::default());
        let now = Instant::now();
        queue.push(
            &party("refresh", "a"),
            Class::Background { reads: 3 },
            "bg-3",
        );
        queue.push(
            &party("refresh", "b"),
            Class::Background { reads: 9 },
            "bg-9",
        );
        queue.push(&party("c", "t"), Class::Caller, "caller");
        assert_eq!(queue.pop(false, now), Some("caller"));
        assert_eq!(queue.pop(false, now), None, "background held back");
        assert_eq!(drain(&mut queue, now), ["bg-9", "bg-3"]);
        assert_eq!(
            queue.surely_ahead_of_newcomer(&party("c", "t"), Class::Caller, now),
            0
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_estimate_never_counts_a_call_that_could_fall_behind() {
        let mut queue = FairQueue::new(Weights::default());
        let start = Instant::now();
        let busy = party("c", "busy");
        for _ in 0..30 {
            queue.record_use(&busy, start);
        }
        for _ in 0..3 {
            queue.push(&busy, Class::Caller, "busy");
        }
        let newcomer = party("c", "new");
        // Now the newcomer goes first: the busy tenant's calls finish later while its use lasts.
        assert_eq!(
            queue.surely_ahead_of_newcomer(&newcomer, Class::Caller, start),
            0
        );
        // The own queue always counts.
        queue.push(&newcomer, Class::Caller, "new");
        assert_eq!(
            queue.surely_ahead_of_newcomer(&newcomer, Class::Caller, start),
            1
        );
        // Far later, with all use decayed, order is plain alternation: a second call of the new
        // tenant comes after its first and after the busy tenant's first, and ties with the busy
        // tenant's second, which is therefore not counted.
        let later = start + USAGE_TAU * 20;
        assert_eq!(
            queue.surely_ahead_of_newcomer(&newcomer, Class::Caller, later),
            2
        );
    }

    #[tokio::test(start_paused = true)]
    async fn usage_of_idle_parties_is_forgotten() {
        let mut queue: FairQueue<()> = FairQueue::new(Weights::default());
        let start = Instant::now();
        for n in 0..2000 {
            queue.record_use(&party("rotator", &format!("t{n}")), start);
        }
        let later = start + USAGE_TAU * 20;
        queue.sweep(later);
        assert!(queue.tenant_usage.is_empty() && queue.caller_usage.is_empty());
    }
}
