//! CAMS's JSON envelopes, read tolerantly: unknown fields are ignored, `AccessDeniedDetail` may be
//! a string or an object, `PreviewUrlExpires` a number or a numeric string. Anything that is not
//! an envelope at all becomes [`CamsError::BadResponse`], never a panic.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::error::{ApiError, CamsError};
use crate::domain::Flow;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Envelope {
    request_id: Option<String>,
    code: Option<String>,
    message: Option<String>,
    recommend: Option<String>,
    data: Option<FlowData>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct FlowData {
    status: Option<String>,
    flow_id: Option<String>,
    flow_name: Option<String>,
    categories: Option<Vec<String>>,
    #[serde(rename = "JSONVersion")]
    json_version: Option<String>,
    data_api_version: Option<String>,
    preview_url: Option<String>,
    #[serde(deserialize_with = "millis")]
    preview_url_expires: Option<i64>,
    endpoint_uri: Option<String>,
}

/// Accepts `1700617436633`, `"1700617436633"` or `null`.
fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Millis {
        Number(i64),
        Text(String),
    }
    match Option::<Millis>::deserialize(d)? {
        None => Ok(None),
        Some(Millis::Number(n)) => Ok(Some(n)),
        Some(Millis::Text(s)) if s.trim().is_empty() => Ok(None),
        Some(Millis::Text(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom("PreviewUrlExpires is not a number")),
    }
}

/// A successful GetFlow answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowAnswer {
    pub flow: Flow,
    /// CAMS's RequestId, trimmed (CAMS has been seen to send a trailing newline).
    pub request_id: String,
}

/// Decodes a complete response body. `retry_after` is the parsed `x-acs-retry-after` header.
pub fn decode(
    http_status: u16,
    body: &[u8],
    retry_after: Option<Duration>,
) -> Result<FlowAnswer, CamsError> {
    let envelope: Envelope = match serde_json::from_slice(body) {
        Ok(envelope) => envelope,
        Err(e) => {
            return Err(CamsError::BadResponse {
                http_status,
                detail: describe_bad_body(body, &e),
            });
        }
    };
    let request_id = envelope
        .request_id
        .as_deref()
        .map(str::trim)
        .unwrap_or_default()
        .to_owned();
    let success = (200..300).contains(&http_status);
    match envelope.code.as_deref() {
        Some("OK") | None if success => {}
        Some(code) => {
            return Err(CamsError::Api(ApiError {
                code: code.to_owned(),
                message: envelope.message.unwrap_or_default(),
                request_id,
                http_status,
                retry_after,
                recommend: envelope.recommend,
            }));
        }
        None => {
            return Err(CamsError::BadResponse {
                http_status,
                detail: "JSON body without a Code".to_owned(),
            });
        }
    }
    let Some(data) = envelope.data else {
        return Err(CamsError::BadResponse {
            http_status,
            detail: "success without Data".to_owned(),
        });
    };
    Ok(FlowAnswer {
        flow: Flow {
            flow_id: data.flow_id.unwrap_or_default(),
            flow_name: data.flow_name.unwrap_or_default(),
            raw_status: data.status.unwrap_or_default(),
            raw_categories: data.categories.unwrap_or_default(),
            json_version: data.json_version.unwrap_or_default(),
            data_api_version: data.data_api_version.unwrap_or_default(),
            preview_url: data.preview_url.unwrap_or_default(),
            preview_url_expires: data
                .preview_url_expires
                .and_then(Flow::expiry_from_unix_millis),
            endpoint_uri: data.endpoint_uri.unwrap_or_default(),
        },
        request_id,
    })
}

/// A short, safe description of a body that is not a CAMS envelope: what it looks like and
/// where parsing stopped, never the body itself (it could be large or echo request data).
fn describe_bad_body(body: &[u8], err: &serde_json::Error) -> String {
    let start = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .copied()
        .unwrap_or(b' ');
    let looks_like = match start {
        b'<' => "an HTML or XML document",
        b'{' | b'[' => "malformed or mistyped JSON",
        b' ' => "an empty body",
        _ => "a non-JSON body",
    };
    format!(
        "{looks_like} ({} bytes; {:?} at line {} column {})",
        body.len(),
        err.classify(),
        err.line(),
        err.column()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC_SUCCESS: &str = r#"{
      "RequestId": "DAC72B08-3327-33EF-BEDC-8EC3E83A6575\n",
      "Code": "OK", "Message": "None",
      "Data": {"Status": "DRAFT", "FlowId": "92675332812643****", "FlowName": "flow_001",
               "Categories": ["SIGN_UP"], "JSONVersion": "2.1", "DataApiVersion": "3.0",
               "PreviewUrl": "https://pre-url", "PreviewUrlExpires": 1700617436633}
    }"#;

    #[test]
    fn documented_success() {
        let answer = decode(200, DOC_SUCCESS.as_bytes(), None).expect("decodes");
        assert_eq!(answer.request_id, "DAC72B08-3327-33EF-BEDC-8EC3E83A6575");
        assert_eq!(answer.flow.flow_id, "92675332812643****");
        assert_eq!(answer.flow.raw_categories, vec!["SIGN_UP"]);
        assert_eq!(answer.flow.json_version, "2.1");
        assert_eq!(
            answer.flow.preview_url_expires,
            Flow::expiry_from_unix_millis(1_700_617_436_633)
        );
    }

    #[test]
    fn tolerant_of_extra_fields_and_shapes() {
        let body = r#"{"Code":"OK","RequestId":"r","AccessDeniedDetail":"none","New":1,
            "Data":{"Status":"NEW","PreviewUrlExpires":"42","Extra":{"a":[1]},"Categories":null}}"#;
        let answer = decode(200, body.as_bytes(), None).expect("decodes");
        assert_eq!(answer.flow.raw_status, "NEW");
        assert!(answer.flow.raw_categories.is_empty());
        assert_eq!(
            answer.flow.preview_url_expires,
            Flow::expiry_from_unix_millis(42)
        );
    }

    #[test]
    fn code_not_ok_is_failure_even_with_200() {
        let body = r#"{"Code":"Ram.PermissionDeny","Message":"no","RequestId":" x ",
            "AccessDeniedDetail":{"PolicyType":"AccountLevelIdentityBasedPolicy"}}"#;
        match decode(200, body.as_bytes(), None) {
            Err(CamsError::Api(e)) => {
                assert_eq!(e.code, "Ram.PermissionDeny");
                assert_eq!(e.request_id, "x");
                assert_eq!(e.http_status, 200);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn non_envelopes_are_bad_responses() {
        let deep = "[".repeat(10_000);
        let cases: [&[u8]; 6] = [
            b"<html><body>502 Bad Gateway</body></html>",
            b"",
            b"{\"Code\":\"OK\",\"Data\":{\"Status\":7}}",
            b"{\"Code\":\"OK\",\"Data\":{\"Status\":\"DRAFT\"",
            deep.as_bytes(),
            b"{\"Code\":\"OK\"}",
        ];
        for body in cases {
            assert!(
                matches!(decode(200, body, None), Err(CamsError::BadResponse { .. })),
                "{:?}",
                String::from_utf8_lossy(&body[..body.len().min(40)])
            );
        }
    }
}
