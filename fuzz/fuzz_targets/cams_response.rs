//! Whatever CAMS, or anything between it and the gateway, sends back must become an answer or a
//! clean error, and then a gRPC status, without a panic.
//!
//! Every input is decoded as the answer of each CAMS read, since each has its own `Data`.
//!
//! Input: three ASCII digits for the HTTP status (so that seeds stay readable text), then the
//! body. Anything else in the first three bytes is read as a raw status so that values outside
//! 100..=999 are reached too.
#![no_main]

use std::time::Duration;

use cams_flows::{
    cams::{CamsError, wire},
    domain::{Action, Data},
    error::Error,
    grpc::status::to_status,
    pb,
};
use libfuzzer_sys::fuzz_target;

/// Longest `BadResponse` detail the decoder may produce. It describes the body's shape and size,
/// never the body, so its length must not grow with the input.
const MAX_BAD_RESPONSE_DETAIL: usize = 200;

fn split(data: &[u8]) -> (u16, &[u8]) {
    let Some((head, body)) = data.split_first_chunk::<3>() else {
        return (200, data);
    };
    let status = if head.iter().all(u8::is_ascii_digit) {
        head.iter()
            .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'))
    } else {
        u16::from_be_bytes([head[0], head[1]])
    };
    (status, body)
}

fuzz_target!(|data: &[u8]| {
    let (http_status, body) = split(data);
    // Odd statuses carry a retry-after, so both shapes of the header reach the decoder.
    let retry_after = (http_status % 2 == 1).then(|| Duration::from_millis(http_status.into()));

    for action in Action::ALL {
        let error = match wire::decode(action, http_status, body, retry_after) {
            Ok(answer) => {
                assert!(
                    (200..300).contains(&http_status),
                    "success on HTTP {http_status}"
                );
                assert_eq!(
                    answer.request_id,
                    answer.request_id.trim(),
                    "untrimmed RequestId"
                );
                // The rest of the success path: enum mapping and the protobuf answer, whose
                // timestamp conversion sees whatever PreviewUrlExpires said.
                match &answer.data {
                    Data::Flow(flow) => {
                        assert_eq!(action, Action::GetFlow, "a flow answers {action:?}");
                        let _ = flow.status();
                        let _ = flow.categories().count();
                        let _ = pb::Flow::from(flow);
                    }
                    Data::List(flows) => {
                        assert_eq!(action, Action::ListFlow, "a list answers {action:?}");
                        for flow in flows {
                            let _ = pb::FlowSummary::from(flow);
                        }
                    }
                    Data::PreviewUrl(_) => {
                        assert_eq!(
                            action,
                            Action::GetFlowPreviewUrl,
                            "a URL answers {action:?}"
                        );
                    }
                    Data::JsonAsset(_) => {
                        assert_eq!(
                            action,
                            Action::GetFlowJsonAsset,
                            "an asset answers {action:?}"
                        );
                    }
                }
                let _ = answer.preview_url();
                continue;
            }
            Err(error) => error,
        };
        match &error {
            CamsError::Api(api) => {
                assert_eq!(api.http_status, http_status);
                assert_eq!(api.retry_after, retry_after);
                assert_eq!(api.request_id, api.request_id.trim(), "untrimmed RequestId");
                let _ = api.kind();
            }
            CamsError::BadResponse {
                http_status: reported,
                detail,
            } => {
                assert_eq!(*reported, http_status);
                assert!(
                    detail.len() <= MAX_BAD_RESPONSE_DETAIL,
                    "detail grows with the body: {detail:?}"
                );
            }
            other => panic!("decode produced {other:?}, which only the transport may produce"),
        }
        // What the caller receives. tonic unwraps this very conversion when it answers with an error
        // status, so CAMS text that could not become a header would panic the server there.
        let _ = to_status(&Error::Cams(error)).into_http::<()>();
    }
});
