//! What the sandbox saw, for tests and demos to assert on through the control endpoints.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::throttle::prune;

/// Enough history for any test scenario without growing without bound.
const LOG_CAPACITY: usize = 1000;

/// JSON of `GET /_sandbox/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxStats {
    /// Calls that passed every check (signature, nonce, date, throttle).
    pub accepted: u64,
    /// Calls refused with `Throttling.User`.
    pub throttled: u64,
    /// Calls refused for signature, credential, date, nonce or action problems.
    pub rejected: u64,
    /// The most accepted calls seen within any one-second sliding window since the last reset.
    pub max_accepted_per_sliding_second: u64,
    /// Accepted calls per `FlowId` value.
    pub calls_by_flow: BTreeMap<String, u64>,
}

/// One entry of `GET /_sandbox/requests`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
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
    stats: SandboxStats,
    /// Accepted instants in the last second: the window maximum is always reached at a window
    /// ending on an accepted call, so measuring after each push finds it.
    recent: VecDeque<Instant>,
    log: VecDeque<RecordedRequest>,
}

impl Recorder {
    pub(super) fn accepted(&mut self, flow_id: Option<&str>, now: Instant, entry: RecordedRequest) {
        self.stats.accepted += 1;
        prune(&mut self.recent, now);
        self.recent.push_back(now);
        let in_window = u64::try_from(self.recent.len()).unwrap_or(u64::MAX);
        self.stats.max_accepted_per_sliding_second =
            self.stats.max_accepted_per_sliding_second.max(in_window);
        if let Some(flow_id) = flow_id.filter(|id| !id.is_empty()) {
            *self
                .stats
                .calls_by_flow
                .entry(flow_id.to_owned())
                .or_default() += 1;
        }
        self.log(entry);
    }

    /// Accepted calls for `flow_id` since the last reset.
    pub(super) fn calls_for(&self, flow_id: Option<&str>) -> u64 {
        flow_id
            .and_then(|id| self.stats.calls_by_flow.get(id))
            .copied()
            .unwrap_or(0)
    }

    pub(super) fn throttled(&mut self, entry: RecordedRequest) {
        self.stats.throttled += 1;
        self.log(entry);
    }

    pub(super) fn rejected(&mut self, entry: RecordedRequest) {
        self.stats.rejected += 1;
        self.log(entry);
    }

    pub(super) fn stats(&self) -> SandboxStats {
        self.stats.clone()
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
            recorder.accepted(Some("f"), t0 + Duration::from_millis(ms), entry("OK"));
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
}
