//! The stored form of a shared entry: the answer as CAMS gave it and its times, as JSON. Times
//! are Unix milliseconds of CAMS's clock as the writer knew it.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use crate::{
    cache::{CachedFlow, Demand, entry::servable_until},
    domain::{Answer, Data, Flow, FlowSummary, JsonAsset, PreviewUrl},
};

/// An entry as JSON. A GetFlow answer keeps the shape of earlier releases (`flow`), so that
/// replicas of both read each other's entries; each other read has a field of its own (their keys
/// differ, so an earlier replica never reads them).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Stored {
    fetched_at_ms: u64,
    fresh_until_ms: u64,
    usable_until_ms: u64,
    request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    flow: Option<StoredFlow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    list: Option<Vec<StoredSummary>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    preview: Option<StoredPreview>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    asset: Option<StoredAsset>,
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

#[derive(Debug, Serialize, Deserialize)]
struct StoredSummary {
    flow_id: String,
    flow_name: String,
    raw_categories: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredPreview {
    flow_id: String,
    preview_url: String,
    preview_url_expires_ms: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredAsset {
    flow_id: String,
    file_path: String,
}

fn unix_ms(t: SystemTime) -> u64 {
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
        let mut stored = Self {
            fetched_at_ms: unix_ms(entry.fetched_at),
            fresh_until_ms: unix_ms(entry.fresh_until),
            usable_until_ms: unix_ms(entry.usable_until),
            request_id: entry.answer.request_id.clone(),
            flow: None,
            list: None,
            preview: None,
            asset: None,
        };
        match &entry.answer.data {
            Data::Flow(flow) => {
                stored.flow = Some(StoredFlow {
                    flow_id: flow.flow_id.clone(),
                    flow_name: flow.flow_name.clone(),
                    raw_status: flow.raw_status.clone(),
                    raw_categories: flow.raw_categories.clone(),
                    json_version: flow.json_version.clone(),
                    data_api_version: flow.data_api_version.clone(),
                    preview_url: flow.preview_url.clone(),
                    preview_url_expires_ms: flow.preview_url_expires.map(signed_unix_ms),
                    endpoint_uri: flow.endpoint_uri.clone(),
                });
            }
            Data::List(flows) => {
                stored.list = Some(
                    flows
                        .iter()
                        .map(|f| StoredSummary {
                            flow_id: f.flow_id.clone(),
                            flow_name: f.flow_name.clone(),
                            raw_categories: f.raw_categories.clone(),
                        })
                        .collect(),
                );
            }
            Data::PreviewUrl(p) => {
                stored.preview = Some(StoredPreview {
                    flow_id: p.flow_id.clone(),
                    preview_url: p.preview_url.clone(),
                    preview_url_expires_ms: p.preview_url_expires.map(signed_unix_ms),
                });
            }
            Data::JsonAsset(a) => {
                stored.asset = Some(StoredAsset {
                    flow_id: a.flow_id.clone(),
                    file_path: a.file_path.clone(),
                });
            }
        }
        stored
    }

    /// The answer stored, if the entry holds one.
    fn answer(self) -> Option<Answer> {
        let expires = |ms: Option<i64>| ms.and_then(Flow::expiry_from_unix_millis);
        let data = if let Some(f) = self.flow {
            Data::Flow(Flow {
                flow_id: f.flow_id,
                flow_name: f.flow_name,
                raw_status: f.raw_status,
                raw_categories: f.raw_categories,
                json_version: f.json_version,
                data_api_version: f.data_api_version,
                preview_url: f.preview_url,
                preview_url_expires: expires(f.preview_url_expires_ms),
                endpoint_uri: f.endpoint_uri,
            })
        } else if let Some(list) = self.list {
            Data::List(
                list.into_iter()
                    .map(|f| FlowSummary {
                        flow_id: f.flow_id,
                        flow_name: f.flow_name,
                        raw_categories: f.raw_categories,
                    })
                    .collect(),
            )
        } else if let Some(p) = self.preview {
            Data::PreviewUrl(PreviewUrl {
                flow_id: p.flow_id,
                preview_url: p.preview_url,
                preview_url_expires: expires(p.preview_url_expires_ms),
            })
        } else if let Some(a) = self.asset {
            Data::JsonAsset(JsonAsset {
                flow_id: a.flow_id,
                file_path: a.file_path,
            })
        } else {
            return None;
        };
        Some(Answer {
            data,
            request_id: self.request_id,
        })
    }

    /// Back into an entry; `None` if it holds no answer. Refresh-ahead starts its window where
    /// this process would have: `refresh_window` before the end of the entry's freshness. The
    /// preview URL's margin is applied again, whatever the writer did.
    pub(super) fn into_entry(self, refresh_window: Duration) -> Option<CachedFlow> {
        let (fetched_ms, fresh_ms, usable_ms) = (
            self.fetched_at_ms,
            self.fresh_until_ms,
            self.usable_until_ms,
        );
        let answer = self.answer()?;
        let cap = |t: SystemTime| match answer.preview_url_expires() {
            Some(expires) => t.min(servable_until(expires)),
            None => t,
        };
        let fresh_until = cap(from_unix_ms(fresh_ms));
        let fetched_at = from_unix_ms(fetched_ms);
        let usable_until = cap(from_unix_ms(usable_ms));
        Some(CachedFlow {
            answer: Arc::new(answer),
            fetched_at,
            fresh_until,
            usable_until,
            refresh_at: if refresh_window.is_zero() {
                fresh_until
            } else {
                fresh_until
                    .checked_sub(refresh_window)
                    .map_or(fetched_at, |at| at.max(fetched_at))
            },
            demand: Arc::new(Demand::default()),
            began: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cams::CLOCK_MARGIN;

    /// Now, to the millisecond the stored form keeps.
    fn now() -> SystemTime {
        from_unix_ms(unix_ms(SystemTime::now()))
    }

    /// An entry fetched at `now`, fresh for 30 s and usable for 60 s, whose preview URL dies at
    /// `preview_ends`.
    fn entry(now: SystemTime, preview_ends: SystemTime) -> CachedFlow {
        CachedFlow {
            answer: Arc::new(Answer {
                data: Data::Flow(Flow {
                    flow_id: "f".into(),
                    flow_name: "n".into(),
                    raw_status: "DRAFT".into(),
                    raw_categories: vec!["SIGN_UP".into()],
                    json_version: "2.1".into(),
                    data_api_version: "3.0".into(),
                    preview_url: "https://p".into(),
                    preview_url_expires: Some(preview_ends),
                    endpoint_uri: "https://e".into(),
                }),
                request_id: "R".into(),
            }),
            fetched_at: now,
            fresh_until: now + Duration::from_secs(30),
            usable_until: now + Duration::from_secs(60),
            refresh_at: now + Duration::from_secs(24),
            demand: Arc::default(),
            began: None,
        }
    }

    fn round_trip(entry: &CachedFlow) -> CachedFlow {
        let bytes = serde_json::to_vec(&Stored::of(entry)).expect("encode");
        let back: Stored = serde_json::from_slice(&bytes).expect("decode");
        back.into_entry(Duration::from_secs(6)).expect("an answer")
    }

    #[test]
    fn an_entry_survives_its_encoding() {
        let now = now();
        let entry = entry(now, now + Duration::from_secs(3_600));
        let back = round_trip(&entry);
        assert_eq!(back.answer, entry.answer);
        assert_eq!(unix_ms(back.fetched_at), unix_ms(entry.fetched_at));
        assert_eq!(unix_ms(back.fresh_until), unix_ms(entry.fresh_until));
        assert_eq!(unix_ms(back.usable_until), unix_ms(entry.usable_until));
        assert_eq!(unix_ms(back.refresh_at), unix_ms(entry.refresh_at));
    }

    /// A writer that kept no margin before the preview URL's end (an older version) does not
    /// make a reader serve into it.
    #[test]
    fn a_reader_keeps_the_margin_before_the_preview_url_whatever_the_writer_did() {
        let now = now();
        let preview_ends = now + Duration::from_secs(10);
        let back = round_trip(&entry(now, preview_ends));
        let servable = preview_ends - CLOCK_MARGIN;
        assert_eq!(unix_ms(back.fresh_until), unix_ms(servable));
        assert_eq!(unix_ms(back.usable_until), unix_ms(servable));
        assert_eq!(
            unix_ms(back.refresh_at),
            unix_ms(servable - Duration::from_secs(6))
        );
        // What callers are told is CAMS's expiry, as it was.
        assert_eq!(back.answer.preview_url_expires(), Some(preview_ends));
    }

    /// Every read's answer survives its encoding; a GetFlow answer keeps the shape earlier
    /// releases wrote, and an entry that holds no answer is not one.
    #[test]
    fn every_kind_survives_and_flows_keep_their_shape() {
        let now = now();
        let flow = entry(now, now + Duration::from_secs(3_600));
        let json = serde_json::to_value(Stored::of(&flow)).expect("encode");
        assert!(
            json.get("flow").is_some() && json.get("list").is_none(),
            "{json}"
        );
        for data in [
            Data::List(vec![FlowSummary {
                flow_id: "1".into(),
                flow_name: "a".into(),
                raw_categories: vec!["SURVEY".into()],
            }]),
            Data::PreviewUrl(PreviewUrl {
                flow_id: "1".into(),
                preview_url: "https://p".into(),
                preview_url_expires: Some(now + Duration::from_secs(3_600)),
            }),
            Data::JsonAsset(JsonAsset {
                flow_id: "1".into(),
                file_path: "https://b/1.json".into(),
            }),
        ] {
            let mut kind = flow.clone();
            kind.answer = Arc::new(Answer {
                data,
                request_id: "R".into(),
            });
            assert_eq!(round_trip(&kind).answer, kind.answer);
        }
        let empty: Stored = serde_json::from_str(
            r#"{"fetched_at_ms":1,"fresh_until_ms":2,"usable_until_ms":3,"request_id":"r"}"#,
        )
        .expect("decodes");
        assert!(empty.into_entry(Duration::ZERO).is_none());
    }
}
