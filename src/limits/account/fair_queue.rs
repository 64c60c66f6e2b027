//! Who is served next when the account quota is the bottleneck: per-tenant queues served in
//! turn, one call from each waiting tenant before a second from any, so a flood from one tenant
//! delays the others by at most one turn each.

use std::collections::{HashMap, VecDeque};

use crate::domain::TenantId;

/// Identifies a queued call, so that one that gives up can leave the queue.
pub type Ticket = u64;

struct Queued<W> {
    ticket: Ticket,
    waiter: W,
}

pub struct FairQueue<W> {
    by_tenant: HashMap<TenantId, VecDeque<Queued<W>>>,
    /// Tenants with waiters, in serving order.
    turn: VecDeque<TenantId>,
    len: usize,
    next_ticket: Ticket,
}

impl<W> Default for FairQueue<W> {
    fn default() -> Self {
        Self {
            by_tenant: HashMap::new(),
            turn: VecDeque::new(),
            len: 0,
            next_ticket: 0,
        }
    }
}

impl<W> FairQueue<W> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push(&mut self, tenant: &TenantId, waiter: W) -> Ticket {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let queue = self.by_tenant.entry(tenant.clone()).or_default();
        if queue.is_empty() {
            self.turn.push_back(tenant.clone());
        }
        queue.push_back(Queued { ticket, waiter });
        self.len += 1;
        ticket
    }

    /// Next waiter in turn: one from each waiting tenant before a second from any.
    pub fn pop(&mut self) -> Option<W> {
        let tenant = self.turn.pop_front()?;
        let queue = self.by_tenant.get_mut(&tenant)?;
        let queued = queue.pop_front();
        if queue.is_empty() {
            self.by_tenant.remove(&tenant);
        } else {
            self.turn.push_back(tenant);
        }
        if queued.is_some() {
            self.len -= 1;
        }
        queued.map(|q| q.waiter)
    }

    /// Takes a waiter out however its wait ended (served already, timed out or cancelled).
    pub fn remove(&mut self, tenant: &TenantId, ticket: Ticket) {
        let Some(queue) = self.by_tenant.get_mut(tenant) else {
            return;
        };
        let before = queue.len();
        queue.retain(|q| q.ticket != ticket);
        self.len -= before - queue.len();
        if queue.is_empty() {
            self.by_tenant.remove(tenant);
            self.turn.retain(|t| t != tenant);
        }
    }

    /// Waiters served before a new one of `tenant`, at most: its own queue, and from every other
    /// tenant as many as one more than that (one per turn).
    pub fn ahead_of_newcomer(&self, tenant: &TenantId) -> usize {
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
