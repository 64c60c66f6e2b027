//! What the sandbox saw, for tests and demos to assert on through the control endpoints.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::action::Action;
use super::throttle::prune;

/// Enough history for any test scenario without growing without bound.
const LOG_CAPACITY: usize = 1000;

/// JSON of `GET /_sandbox/stats`. The top-level figures are those of every action together,
/// except `max_accepted_per_sliding_second`, the largest of the actions' own (each action has its
/// own quota, so that is the figure that must stay within it), and `calls_by_flow`, GetFlow's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxStats {
    /// Calls that passed every check (signature, nonce, date, throttle), every action together.
    pub accepted: u64,
    /// Calls refused with `Throttling.User`, every action together.
    pub throttled: u64,
    /// Calls refused for signature, credential, date, nonce or action problems.
    pub rejected: u64,
    /// The most accepted calls of one action seen within any one-second sliding window since the
    /// last reset: the largest of the actions' figures.
    pub max_accepted_per_sliding_second: u64,
    /// Accepted GetFlow calls per `FlowId` value (the other actions' are in `by_action`).
    pub calls_by_flow: BTreeMap<String, u64>,
    /// The same figures per action, by the name CAMS gives it (`GetFlow`, `ListFlow`,
    /// `GetFlowPreviewUrl`, `GetFlowJSONAssest`); every action is listed, called or not.
    #[serde(default)]
    pub by_action: BTreeMap<String, ActionStats>,
}

/// One action's figures in [`SandboxStats::by_action`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionStats {
    /// Calls of this action that passed every check.
    pub accepted: u64,
    /// Calls of this action refused with `Throttling.User`.
    pub throttled: u64,
    /// The most accepted calls of this action within any one-second sliding window.
    pub max_accepted_per_sliding_second: u64,
    /// Accepted calls per `FlowId` value (ListFlow takes none, so its map stays empty).
    #[serde(default)]
    pub calls_by_flow: BTreeMap<String, u64>,
    /// Accepted calls per `CustSpaceId` value, `""` when the call named none.
    #[serde(default)]
    pub calls_by_space: BTreeMap<String, u64>,
}

impl SandboxStats {
    /// One action's figures, by the name CAMS gives it; zero when it was never called.
    pub fn action(&self, name: &str) -> ActionStats {
        self.by_action.get(name).cloned().unwrap_or_default()
    }
}

/// Nothing seen yet: what the stats read after a start or a reset.
impl Default for SandboxStats {
    fn default() -> Self {
        Self {
            accepted: 0,
            throttled: 0,
            rejected: 0,
            max_accepted_per_sliding_second: 0,
            calls_by_flow: BTreeMap::new(),
            by_action: Action::ALL
                .into_iter()
                .map(|action| (action.name().to_owned(), ActionStats::default()))
                .collect(),
        }
    }
}

/// One entry of `GET /_sandbox/requests`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// The `x-acs-action` the call named, as sent (empty when it named none).
    #[serde(default)]
    pub action: String,
    /// The query string exactly as received.
    pub raw_query: String,
    /// Decoded pairs in received order; empty when the query could not be decoded.
    pub params: Vec<(String, String)>,
    /// The `Code` answered (`OK`, `SignatureDoesNotMatch`, ...); lower-case `html`, `garbage`,
    /// `huge` or `hang` for answers that carry no envelope.
    pub code: String,
    /// The AccessKeyId that signed the call, once its signature verified; empty before.
    #[serde(default)]
    pub access_key_id: String,
    /// The W3C `traceparent` the call carried, if any (the gateway sends it only with
    /// `tracing.propagate_upstream`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

#[derive(Default)]
pub(super) struct Recorder {
    rejected: u64,
    actions: BTreeMap<Action, ActionBook>,
    log: VecDeque<RecordedRequest>,
}

#[derive(Default)]
struct ActionBook {
    stats: ActionStats,
    /// Accepted instants in the last second: the window maximum is always reached at a window
    /// ending on an accepted call, so measuring after each push finds it.
    recent: VecDeque<Instant>,
}

impl Recorder {
    pub(super) fn accepted(
        &mut self,
        action: Action,
        flow_id: Option<&str>,
        space: Option<&str>,
        now: Instant,
        entry: RecordedRequest,
    ) {
        let book = self.actions.entry(action).or_default();
        book.stats.accepted += 1;
        prune(&mut book.recent, now);
        book.recent.push_back(now);
        let in_window = u64::try_from(book.recent.len()).unwrap_or(u64::MAX);
        book.stats.max_accepted_per_sliding_second =
            book.stats.max_accepted_per_sliding_second.max(in_window);
        if let Some(flow_id) = flow_id.filter(|id| !id.is_empty()) {
            *book
                .stats
                .calls_by_flow
                .entry(flow_id.to_owned())
                .or_default() += 1;
        }
        *book
            .stats
            .calls_by_space
            .entry(space.unwrap_or_default().to_owned())
            .or_default() += 1;
        self.log(entry);
    }

    /// Accepted calls of `action` for this FlowId since the last reset; for ListFlow, which
    /// takes no FlowId, for this CustSpaceId.
    pub(super) fn calls_for(
        &self,
        action: Action,
        flow_id: Option<&str>,
        space: Option<&str>,
    ) -> u64 {
        let Some(book) = self.actions.get(&action) else {
            return 0;
        };
        let count = match action {
            Action::ListFlow => book.stats.calls_by_space.get(space.unwrap_or_default()),
            _ => flow_id.and_then(|id| book.stats.calls_by_flow.get(id)),
        };
        count.copied().unwrap_or(0)
    }

    pub(super) fn throttled(&mut self, action: Action, entry: RecordedRequest) {
        self.actions.entry(action).or_default().stats.throttled += 1;
        self.log(entry);
    }

    pub(super) fn rejected(&mut self, entry: RecordedRequest) {
        self.rejected += 1;
        self.log(entry);
    }

    pub(super) fn stats(&self) -> SandboxStats {
        let mut stats = SandboxStats {
            rejected: self.rejected,
            ..SandboxStats::default()
        };
        for (action, book) in &self.actions {
            stats.accepted += book.stats.accepted;
            stats.throttled += book.stats.throttled;
            stats.max_accepted_per_sliding_second = stats
                .max_accepted_per_sliding_second
                .max(book.stats.max_accepted_per_sliding_second);
            if *action == Action::GetFlow {
                stats.calls_by_flow.clone_from(&book.stats.calls_by_flow);
            }
            stats
                .by_action
                .insert(action.name().to_owned(), book.stats.clone());
        }
        stats
    }

    pub(super) fn requests(&self) -> Vec<RecordedRequest> {
        self.log.iter().cloned().collect()
    }

    pub(super) fn reset(&mut self) {
        *self = Self::default();
    }

    fn log(&mut self, entry: RecordedRequest) {
        if self.log.len() >= LOG_CAPACITY {
            self.log.pop_front();
        }
        self.log.push_back(entry);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn entry(code: &str) -> RecordedRequest {
        RecordedRequest {
            action: String::new(),
            raw_query: String::new(),
            params: Vec::new(),
            code: code.to_owned(),
            access_key_id: String::new(),
            traceparent: None,
        }
    }

    #[test]
    fn sliding_maximum_and_bounded_log() {
        let mut recorder = Recorder::default();
        let t0 = Instant::now();
        for ms in [0, 100, 900, 950, 990, 1050, 3000] {
            let at = t0 + Duration::from_millis(ms);
            recorder.accepted(Action::GetFlow, Some("f"), None, at, entry("OK"));
        }
        // Windows ending at 990 and at 1050 hold five calls each; none holds six.
        let stats = recorder.stats();
        assert_eq!(stats.accepted, 7);
        assert_eq!(stats.max_accepted_per_sliding_second, 5);
        assert_eq!(stats.calls_by_flow.get("f"), Some(&7));

        for _ in 0..LOG_CAPACITY {
            recorder.rejected(entry("SignatureDoesNotMatch"));
        }
        let log = recorder.requests();
        assert_eq!(log.len(), LOG_CAPACITY);
        assert!(log.iter().all(|e| e.code == "SignatureDoesNotMatch"));
    }

    /// Totals add the actions up, the sliding maximum is the largest action's, and
    /// `calls_by_flow` stays GetFlow's.
    #[test]
    fn figures_per_action_and_together() {
        let mut recorder = Recorder::default();
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        for ms in 0..3 {
            recorder.accepted(Action::GetFlow, Some("f"), Some("a"), at(ms), entry("OK"));
        }
        for ms in 0..4 {
            recorder.accepted(
                Action::GetFlowPreviewUrl,
                Some("p"),
                None,
                at(ms),
                entry("OK"),
            );
        }
        recorder.accepted(Action::ListFlow, None, Some("a"), at(0), entry("OK"));
        recorder.throttled(Action::ListFlow, entry("Throttling.User"));
        recorder.rejected(entry("SignatureDoesNotMatch"));

        let stats = recorder.stats();
        assert_eq!((stats.accepted, stats.throttled, stats.rejected), (8, 1, 1));
        assert_eq!(stats.max_accepted_per_sliding_second, 4);
        assert_eq!(stats.calls_by_flow, BTreeMap::from([("f".to_owned(), 3)]));
        assert_eq!(stats.by_action.len(), 4, "every action is listed");
        let preview = stats.action("GetFlowPreviewUrl");
        assert_eq!(
            (preview.accepted, preview.max_accepted_per_sliding_second),
            (4, 4)
        );
        assert_eq!(preview.calls_by_flow.get("p"), Some(&4));
        assert_eq!(preview.calls_by_space.get(""), Some(&4));
        let list = stats.action("ListFlow");
        assert_eq!((list.accepted, list.throttled), (1, 1));
        assert!(list.calls_by_flow.is_empty());
        assert_eq!(stats.action("GetFlowJSONAssest"), ActionStats::default());

        assert_eq!(recorder.calls_for(Action::GetFlow, Some("f"), None), 3);
        assert_eq!(
            recorder.calls_for(Action::GetFlowJsonAsset, Some("f"), None),
            0
        );
        assert_eq!(
            recorder.calls_for(Action::ListFlow, Some("f"), Some("a")),
            1
        );

        recorder.reset();
        assert_eq!(recorder.stats(), SandboxStats::default());
    }
}
