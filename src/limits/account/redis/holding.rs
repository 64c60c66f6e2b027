//! What this replica holds of the shared log: the admissions it was granted that may still count,
//! reported with every request and heartbeat so that the scripts can tell a state that lost
//! them (`scripts.rs`).

use std::collections::HashMap;

use tokio::time::Instant;

/// One admission this replica was granted and that may still count: under which bookkeeping
/// generation and replication history, its sequence number there, and until when it counts.
#[derive(Debug, Clone)]
pub(super) struct Granted {
    pub(super) generation: String,
    pub(super) history: String,
    pub(super) seq: u64,
    pub(super) counts_until: Instant,
}

/// What this replica holds, as reported with every request and heartbeat: the latest admission's
/// generation, history and sequence number, and how long any of them may still count.
#[derive(Debug, Default)]
pub(super) struct Holding {
    pub(super) by_id: HashMap<String, Granted>,
    /// When the store was last asked (an acquire checks what is held, as a heartbeat does).
    pub(super) last_checked: Option<Instant>,
}

impl Holding {
    /// What is held at `now`: the latest admission and how long any may still count.
    pub(super) fn report(&mut self, now: Instant) -> Report {
        self.by_id.retain(|_, g| g.counts_until > now);
        let pending = self
            .by_id
            .values()
            .map(|g| g.counts_until.saturating_duration_since(now))
            .max()
            .unwrap_or_default();
        match self.by_id.iter().max_by_key(|(_, g)| g.seq) {
            Some((id, latest)) => Report {
                generation: latest.generation.clone(),
                history: latest.history.clone(),
                seq: latest.seq,
                pending_ms: u64::try_from(pending.as_millis()).unwrap_or(u64::MAX),
                id: id.clone(),
            },
            None => Report::default(),
        }
    }
}

/// What a replica says it holds, with every request and heartbeat.
#[derive(Debug, Default)]
pub(super) struct Report {
    pub(super) generation: String,
    pub(super) history: String,
    pub(super) seq: u64,
    pub(super) pending_ms: u64,
    pub(super) id: String,
}
