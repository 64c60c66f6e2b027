//! The sample flows the simulated CAMS knows: the documented example, verbatim, a few others
//! that cover every status and category CAMS documents (and some it does not), and the generated
//! flows of the catalogue spaces; and how each Flow read renders them.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::envelope::{Outcome, new_request_id};
use crate::acs::v3::encode;

pub(super) const DOCUMENTED_FLOW_ID: &str = "926753328126430";
const DOCUMENTED_REQUEST_ID: &str = "DAC72B08-3327-33EF-BEDC-8EC3E83A6575\n";
const DOCUMENTED_NAME: &str = "flow_001";
const DOCUMENTED_CATEGORIES: &[&str] = &["SIGN_UP"];
const DOCUMENTED_PREVIEW_URL: &str = "https://pre-url";
const DOCUMENTED_PREVIEW_EXPIRES: u64 = 1_700_617_436_633;
const PREVIEW_LIFETIME: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Where the simulated Flow JSON files live, shaped like the documented example
/// (`https://bucket-*****-ap-southeast-1.aliyuncs.com/9658820125168****.json`).
const JSON_ASSET_BASE: &str = "https://bucket-sandbox-ap-southeast-1.aliyuncs.com";
/// The ids of the catalogue spaces' generated flows: `sim:ok:catalogue-<i>`, named
/// `catalogue_flow_<i>`. Being `sim:ok:` ids, every Flow read answers them.
pub(super) const CATALOGUE_FLOW_PREFIX: &str = "sim:ok:catalogue-";

pub(super) struct Sample {
    pub id: &'static str,
    pub status: &'static str,
    pub name: &'static str,
    pub categories: &'static [&'static str],
    pub endpoint_uri: Option<&'static str>,
}

pub(super) const ORDER_STATUS: Sample = Sample {
    id: "100000000000002",
    status: "PUBLISHED",
    name: "order_status",
    categories: &["CUSTOMER_SUPPORT", "OTHER"],
    endpoint_uri: Some("https://flows.example.com/endpoint"),
};

pub(super) const SAMPLES: &[Sample] = &[
    ORDER_STATUS,
    Sample {
        id: "100000000000003",
        status: "DEPRECATED",
        name: "old_survey",
        categories: &["SURVEY"],
        endpoint_uri: None,
    },
    Sample {
        id: "100000000000004",
        status: "BLOCKED",
        name: "booking",
        categories: &["APPOINTMENT_BOOKING"],
        endpoint_uri: None,
    },
    Sample {
        id: "100000000000005",
        status: "THROTTLED",
        name: "shop",
        categories: &["SHOPPING", "LEAD_GENERATION"],
        endpoint_uri: None,
    },
    Sample {
        id: "100000000000009",
        status: "ARCHIVED",
        name: "future_flow",
        categories: &["SIGN_IN", "TELEPATHY"],
        endpoint_uri: None,
    },
];

/// A flow the simulation knows, under the FlowId it was asked by.
pub(super) enum Known<'a> {
    /// The documented example, answered verbatim.
    Documented,
    /// A sample's content under the id asked for (the `sim:` ids that succeed borrow
    /// [`ORDER_STATUS`]'s).
    Sample {
        id: &'a str,
        sample: &'static Sample,
        name: Cow<'static, str>,
        /// How far ahead of the simulated CAMS's now the preview URL expires, in milliseconds.
        preview_lifetime_ms: u64,
    },
}

impl<'a> Known<'a> {
    /// `sample` under `id`, with its own name, or `catalogue_flow_<i>` for a catalogue flow.
    pub(super) fn sample(id: &'a str, sample: &'static Sample) -> Self {
        let name = catalogue_index(id)
            .map(|i| Cow::Owned(catalogue_name(i)))
            .unwrap_or(Cow::Borrowed(sample.name));
        Known::Sample {
            id,
            sample,
            name,
            preview_lifetime_ms: u64::try_from(PREVIEW_LIFETIME.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// The same flow, its preview URL expiring `ms` from now.
    pub(super) fn expiring_in(mut self, ms: u64) -> Self {
        if let Known::Sample {
            preview_lifetime_ms,
            ..
        } = &mut self
        {
            *preview_lifetime_ms = ms;
        }
        self
    }
}

/// One row of ListFlow's `Data`: what ListFlow says of a flow (no status).
pub(super) struct Row {
    pub id: Cow<'static, str>,
    pub name: Cow<'static, str>,
    pub categories: &'static [&'static str],
}

impl Row {
    pub(super) fn to_json(&self) -> Value {
        json!({
            "FlowId": self.id,
            "FlowName": self.name,
            "Categories": self.categories,
        })
    }
}

/// What every ordinary space lists: the documented example, then the samples, in that order.
pub(super) fn sample_rows() -> impl Iterator<Item = Row> {
    let documented = Row {
        id: Cow::Borrowed(DOCUMENTED_FLOW_ID),
        name: Cow::Borrowed(DOCUMENTED_NAME),
        categories: DOCUMENTED_CATEGORIES,
    };
    std::iter::once(documented).chain(SAMPLES.iter().map(|sample| Row {
        id: Cow::Borrowed(sample.id),
        name: Cow::Borrowed(sample.name),
        categories: sample.categories,
    }))
}

/// The `i`th generated flow of a catalogue space (from 1).
pub(super) fn catalogue_row(i: u32) -> Row {
    Row {
        id: Cow::Owned(format!("{CATALOGUE_FLOW_PREFIX}{i}")),
        name: Cow::Owned(catalogue_name(i)),
        categories: ORDER_STATUS.categories,
    }
}

fn catalogue_name(i: u32) -> String {
    format!("catalogue_flow_{i}")
}

fn catalogue_index(flow_id: &str) -> Option<u32> {
    flow_id.strip_prefix(CATALOGUE_FLOW_PREFIX)?.parse().ok()
}

/// GetFlow's answer. `now` is the simulated CAMS's clock, which dates the preview URL's expiry.
pub(super) fn get_flow(flow: &Known<'_>, space: &str, now: SystemTime) -> Outcome {
    let Known::Sample {
        id,
        sample,
        name,
        preview_lifetime_ms,
    } = flow
    else {
        return documented_flow();
    };
    let mut data = json!({
        "Status": sample.status,
        "FlowId": id,
        "FlowName": name,
        "Categories": sample.categories,
        "JSONVersion": "6.0",
        "DataApiVersion": "3.0",
        "PreviewUrl": preview_url(id, space),
        "PreviewUrlExpires": unix_millis(now).saturating_add(*preview_lifetime_ms),
    });
    if let (Some(uri), Some(fields)) = (sample.endpoint_uri, data.as_object_mut()) {
        fields.insert("EndpointUri".to_owned(), uri.into());
    }
    success(data)
}

/// GetFlowPreviewUrl's answer: the same URL scheme and expiry as GetFlow's for the flow.
pub(super) fn get_preview_url(flow: &Known<'_>, space: &str, now: SystemTime) -> Outcome {
    let data = match flow {
        Known::Documented => json!({
            "FlowId": DOCUMENTED_FLOW_ID,
            "PreviewUrl": DOCUMENTED_PREVIEW_URL,
            "PreviewUrlExpires": DOCUMENTED_PREVIEW_EXPIRES,
        }),
        Known::Sample {
            id,
            preview_lifetime_ms,
            ..
        } => json!({
            "FlowId": id,
            "PreviewUrl": preview_url(id, space),
            "PreviewUrlExpires": unix_millis(now).saturating_add(*preview_lifetime_ms),
        }),
    };
    success(data)
}

/// GetFlowJSONAssest's answer: a stable URL of the flow's JSON file. The documented example's is
/// the same for every space; the others name the space, so answers differ per tenant.
pub(super) fn get_json_asset(flow: &Known<'_>, space: &str, _now: SystemTime) -> Outcome {
    let (id, path) = match flow {
        Known::Documented => (
            DOCUMENTED_FLOW_ID,
            format!("{JSON_ASSET_BASE}/{DOCUMENTED_FLOW_ID}.json"),
        ),
        Known::Sample { id, .. } => (
            *id,
            format!(
                "{JSON_ASSET_BASE}/{}.json?space={}",
                encode(id),
                encode(space)
            ),
        ),
    };
    success(json!({ "FlowId": id, "FilePath": path }))
}

/// A preview URL that names the flow, a random token and the space, as WhatsApp's do.
fn preview_url(flow_id: &str, space: &str) -> String {
    format!(
        "https://business.facebook.com/wa/manage/flows/{}/preview/?token={}&space={}",
        encode(flow_id),
        uuid::Uuid::new_v4(),
        encode(space),
    )
}

fn documented_flow() -> Outcome {
    Outcome::Success {
        request_id: DOCUMENTED_REQUEST_ID.to_owned(),
        body: json!({
            "RequestId": DOCUMENTED_REQUEST_ID,
            "Code": "OK",
            "Message": "None",
            "AccessDeniedDetail": "",
            "Data": {
                "Status": "DRAFT",
                "FlowId": DOCUMENTED_FLOW_ID,
                "FlowName": DOCUMENTED_NAME,
                "Categories": DOCUMENTED_CATEGORIES,
                "JSONVersion": "2.1",
                "DataApiVersion": "3.0",
                "PreviewUrl": DOCUMENTED_PREVIEW_URL,
                "PreviewUrlExpires": DOCUMENTED_PREVIEW_EXPIRES,
            },
        }),
    }
}

/// The success envelope around `data`, with a fresh RequestId.
pub(super) fn success(data: Value) -> Outcome {
    let request_id = new_request_id();
    Outcome::Success {
        body: json!({
            "RequestId": request_id,
            "Code": "OK",
            "Message": "Success",
            "AccessDeniedDetail": "",
            "Data": data,
        }),
        request_id,
    }
}

pub(super) fn unix_millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}
