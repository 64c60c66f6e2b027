//! The sample flows the simulated CAMS knows: the documented example, verbatim, and a few
//! others that cover every status and category CAMS documents (and some it does not).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::envelope::{Outcome, new_request_id};
use crate::acs::v3::encode;

pub(super) const DOCUMENTED_FLOW_ID: &str = "926753328126430";
const DOCUMENTED_REQUEST_ID: &str = "DAC72B08-3327-33EF-BEDC-8EC3E83A6575\n";
const PREVIEW_LIFETIME: Duration = Duration::from_secs(30 * 24 * 60 * 60);

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

pub(super) fn documented_flow() -> Outcome {
    Outcome::Flow {
        request_id: DOCUMENTED_REQUEST_ID.to_owned(),
        body: json!({
            "RequestId": DOCUMENTED_REQUEST_ID,
            "Code": "OK",
            "Message": "None",
            "AccessDeniedDetail": "",
            "Data": {
                "Status": "DRAFT",
                "FlowId": DOCUMENTED_FLOW_ID,
                "FlowName": "flow_001",
                "Categories": ["SIGN_UP"],
                "JSONVersion": "2.1",
                "DataApiVersion": "3.0",
                "PreviewUrl": "https://pre-url",
                "PreviewUrlExpires": 1_700_617_436_633_u64,
            },
        }),
    }
}

/// `now` is the simulated CAMS's clock, which dates the preview URL's expiry.
pub(super) fn sample_flow(sample: &Sample, flow_id: &str, space: &str, now: SystemTime) -> Outcome {
    let request_id = new_request_id();
    let preview_url = format!(
        "https://business.facebook.com/wa/manage/flows/{}/preview/?token={}&space={}",
        encode(flow_id),
        uuid::Uuid::new_v4(),
        encode(space),
    );
    let mut data = json!({
        "Status": sample.status,
        "FlowId": flow_id,
        "FlowName": sample.name,
        "Categories": sample.categories,
        "JSONVersion": "6.0",
        "DataApiVersion": "3.0",
        "PreviewUrl": preview_url,
        "PreviewUrlExpires": unix_millis(now + PREVIEW_LIFETIME),
    });
    if let (Some(uri), Some(fields)) = (sample.endpoint_uri, data.as_object_mut()) {
        fields.insert("EndpointUri".to_owned(), uri.into());
    }
    Outcome::Flow {
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
