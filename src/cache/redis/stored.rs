//! The stored form of a shared entry: the answer as CAMS gave it and its times, as JSON. Times
//! are Unix milliseconds of the writer's clock.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use crate::{
    cache::{CachedFlow, Demand},
    cams::FlowAnswer,
    domain::Flow,
};

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Stored {
    fetched_at_ms: u64,
    fresh_until_ms: u64,
    usable_until_ms: u64,
    request_id: String,
    flow: StoredFlow,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredFlow {
    flow_id: String,
    flow_name: String,
    raw_status: String,
    raw_categories: Vec<String>,
    json_version: String,
    data_api_version: String,
    preview_url: String,
    preview_url_expires_ms: Option<i64>,
    endpoint_uri: String,
}

pub(super) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn signed_unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

impl Stored {
    pub(super) fn of(entry: &CachedFlow) -> Self {
        let flow = &entry.answer.flow;
        Self {
            fetched_at_ms: unix_ms(entry.fetched_at),
            fresh_until_ms: unix_ms(entry.fresh_until),
            usable_until_ms: unix_ms(entry.usable_until),
            request_id: entry.answer.request_id.clone(),
            flow: StoredFlow {
                flow_id: flow.flow_id.clone(),
                flow_name: flow.flow_name.clone(),
                raw_status: flow.raw_status.clone(),
                raw_categories: flow.raw_categories.clone(),
                json_version: flow.json_version.clone(),
                data_api_version: flow.data_api_version.clone(),
                preview_url: flow.preview_url.clone(),
                preview_url_expires_ms: flow.preview_url_expires.map(signed_unix_ms),
                endpoint_uri: flow.endpoint_uri.clone(),
            },
        }
    }

    /// Back into an entry. Refresh-ahead starts its window where this process would have:
    /// `refresh_window` before the end of the entry's freshness.
    pub(super) fn into_entry(self, refresh_window: Duration) -> CachedFlow {
        let fresh_until = from_unix_ms(self.fresh_until_ms);
        let fetched_at = from_unix_ms(self.fetched_at_ms);
        let f = self.flow;
        CachedFlow {
            answer: Arc::new(FlowAnswer {
                flow: Flow {
                    flow_id: f.flow_id,
                    flow_name: f.flow_name,
                    raw_status: f.raw_status,
                    raw_categories: f.raw_categories,
                    json_version: f.json_version,
                    data_api_version: f.data_api_version,
                    preview_url: f.preview_url,
                    preview_url_expires: f
                        .preview_url_expires_ms
                        .and_then(Flow::expiry_from_unix_millis),
                    endpoint_uri: f.endpoint_uri,
                },
                request_id: self.request_id,
            }),
            fetched_at,
            fresh_until,
            usable_until: from_unix_ms(self.usable_until_ms),
            refresh_at: if refresh_window.is_zero() {
                fresh_until
            } else {
                fresh_until
                    .checked_sub(refresh_window)
                    .map_or(fetched_at, |at| at.max(fetched_at))
            },
            demand: Arc::new(Demand::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_survives_its_encoding() {
        let now = SystemTime::now();
        let entry = CachedFlow {
            answer: Arc::new(FlowAnswer {
                flow: Flow {
                    flow_id: "f".into(),
                    flow_name: "n".into(),
                    raw_status: "DRAFT".into(),
                    raw_categories: vec!["SIGN_UP".into()],
                    json_version: "2.1".into(),
                    data_api_version: "3.0".into(),
                    preview_url: "https://p".into(),
                    preview_url_expires: Flow::expiry_from_unix_millis(1_700_617_436_633),
                    endpoint_uri: "https://e".into(),
                },
                request_id: "R".into(),
            }),
            fetched_at: now,
            fresh_until: now + Duration::from_secs(30),
            usable_until: now + Duration::from_secs(60),
            refresh_at: now + Duration::from_secs(24),
            demand: Arc::default(),
        };
        let bytes = serde_json::to_vec(&Stored::of(&entry)).expect("encode");
        let back: Stored = serde_json::from_slice(&bytes).expect("decode");
        let back = back.into_entry(Duration::from_secs(6));
        assert_eq!(back.answer, entry.answer);
        assert_eq!(unix_ms(back.fresh_until), unix_ms(entry.fresh_until));
        assert_eq!(unix_ms(back.refresh_at), unix_ms(entry.refresh_at));
    }
}
