//! CAMS's JSON envelopes, read tolerantly: unknown fields are ignored, `AccessDeniedDetail` may be
//! a string or an object, `PreviewUrlExpires` a number or a numeric string. Anything that is not
//! an envelope at all, or whose `Data` is not the shape its read answers, becomes
//! [`CamsError::BadResponse`], never a panic.

use std::time::Duration;

use serde::{Deserialize, Deserializer, de::DeserializeOwned};

use super::error::{ApiError, CamsError};
use crate::domain::{Action, Answer, Data, Flow, FlowSummary, JsonAsset, PreviewUrl};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Envelope {
    request_id: Option<String>,
    code: Option<String>,
    message: Option<String>,
    recommend: Option<String>,
    /// Read as the action's shape once the envelope says the call succeeded.
    data: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct SummaryData {
    flow_id: Option<String>,
    flow_name: Option<String>,
    categories: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct PreviewData {
    flow_id: Option<String>,
    preview_url: Option<String>,
    #[serde(deserialize_with = "millis")]
    preview_url_expires: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct AssetData {
    flow_id: Option<String>,
    file_path: Option<String>,
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

/// Decodes a complete response body of `action`. `retry_after` is the parsed
/// `x-acs-retry-after` header.
pub fn decode(
    action: Action,
    http_status: u16,
    body: &[u8],
    retry_after: Option<Duration>,
) -> Result<Answer, CamsError> {
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
    let Some(data) = envelope.data.filter(|value| !value.is_null()) else {
        return Err(CamsError::BadResponse {
            http_status,
            detail: "success without Data".to_owned(),
        });
    };
    let data = match action {
        Action::GetFlow => Data::Flow(flow(shape(http_status, data)?)),
        Action::ListFlow => Data::List(
            shape::<Vec<SummaryData>>(http_status, data)?
                .into_iter()
                .map(|s| FlowSummary {
                    flow_id: s.flow_id.unwrap_or_default(),
                    flow_name: s.flow_name.unwrap_or_default(),
                    raw_categories: s.categories.unwrap_or_default(),
                })
                .collect(),
        ),
        Action::GetFlowPreviewUrl => {
            let p: PreviewData = shape(http_status, data)?;
            Data::PreviewUrl(PreviewUrl {
                flow_id: p.flow_id.unwrap_or_default(),
                preview_url: p.preview_url.unwrap_or_default(),
                preview_url_expires: p
                    .preview_url_expires
                    .and_then(Flow::expiry_from_unix_millis),
            })
        }
        Action::GetFlowJsonAsset => {
            let a: AssetData = shape(http_status, data)?;
            Data::JsonAsset(JsonAsset {
                flow_id: a.flow_id.unwrap_or_default(),
                file_path: a.file_path.unwrap_or_default(),
            })
        }
    };
    Ok(Answer { data, request_id })
}

/// `Data` as the shape its read answers.
fn shape<T: DeserializeOwned>(http_status: u16, data: serde_json::Value) -> Result<T, CamsError> {
    serde_json::from_value(data).map_err(|e| CamsError::BadResponse {
        http_status,
        detail: format!(
            "Data of an unexpected shape ({:?} at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ),
    })
}

fn flow(data: FlowData) -> Flow {
    Flow {
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
    }
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
        let answer = decode(Action::GetFlow, 200, DOC_SUCCESS.as_bytes(), None).expect("decodes");
        let Data::Flow(flow) = &answer.data else {
            panic!("a flow")
        };
        assert_eq!(answer.request_id, "DAC72B08-3327-33EF-BEDC-8EC3E83A6575");
        assert_eq!(flow.flow_id, "92675332812643****");
        assert_eq!(flow.raw_categories, vec!["SIGN_UP"]);
        assert_eq!(flow.json_version, "2.1");
        assert_eq!(
            flow.preview_url_expires,
            Flow::expiry_from_unix_millis(1_700_617_436_633)
        );
    }

    #[test]
    fn tolerant_of_extra_fields_and_shapes() {
        let body = r#"{"Code":"OK","RequestId":"r","AccessDeniedDetail":"none","New":1,
            "Data":{"Status":"NEW","PreviewUrlExpires":"42","Extra":{"a":[1]},"Categories":null}}"#;
        let answer = decode(Action::GetFlow, 200, body.as_bytes(), None).expect("decodes");
        let Data::Flow(flow) = &answer.data else {
            panic!("a flow")
        };
        assert_eq!(flow.raw_status, "NEW");
        assert!(flow.raw_categories.is_empty());
        assert_eq!(flow.preview_url_expires, Flow::expiry_from_unix_millis(42));
    }

    #[test]
    fn code_not_ok_is_failure_even_with_200() {
        let body = r#"{"Code":"Ram.PermissionDeny","Message":"no","RequestId":" x ",
            "AccessDeniedDetail":{"PolicyType":"AccountLevelIdentityBasedPolicy"}}"#;
        match decode(Action::ListFlow, 200, body.as_bytes(), None) {
            Err(CamsError::Api(e)) => {
                assert_eq!(e.code, "Ram.PermissionDeny");
                assert_eq!(e.request_id, "x");
                assert_eq!(e.http_status, 200);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn each_read_has_its_shape() {
        let list = r#"{"Code":"OK","RequestId":"r","Data":[
            {"FlowId":"1","FlowName":"a","Categories":["SIGN_UP"]},{"FlowId":"2"}]}"#;
        let answer = decode(Action::ListFlow, 200, list.as_bytes(), None).expect("a list");
        let Data::List(flows) = answer.data else {
            panic!("a list")
        };
        assert_eq!(flows.len(), 2);
        assert_eq!(flows[0].raw_categories, ["SIGN_UP"]);
        assert_eq!(flows[1].flow_name, "");
        let preview = r#"{"Code":"OK","RequestId":"r","Data":{"FlowId":"1",
            "PreviewUrl":"https://p","PreviewUrlExpires":"1700617436633"}}"#;
        let answer =
            decode(Action::GetFlowPreviewUrl, 200, preview.as_bytes(), None).expect("a preview");
        assert_eq!(
            answer.preview_url_expires(),
            Flow::expiry_from_unix_millis(1_700_617_436_633)
        );
        let asset =
            r#"{"Code":"OK","RequestId":"r","Data":{"FlowId":"1","FilePath":"https://b/1.json"}}"#;
        let answer = decode(Action::GetFlowJsonAsset, 200, asset.as_bytes(), None).expect("asset");
        assert!(
            matches!(answer.data, Data::JsonAsset(JsonAsset { ref file_path, .. }) if file_path == "https://b/1.json")
        );
        // A list where an object is due, or the other way round, is not CAMS's answer.
        for (action, body) in [
            (Action::ListFlow, r#"{"Code":"OK","Data":{"FlowId":"1"}}"#),
            (Action::GetFlow, r#"{"Code":"OK","Data":[1]}"#),
            (Action::GetFlowPreviewUrl, r#"{"Code":"OK","Data":null}"#),
        ] {
            assert!(
                matches!(
                    decode(action, 200, body.as_bytes(), None),
                    Err(CamsError::BadResponse { .. })
                ),
                "{action}: {body}"
            );
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
                matches!(
                    decode(Action::GetFlow, 200, body, None),
                    Err(CamsError::BadResponse { .. })
                ),
                "{:?}",
                String::from_utf8_lossy(&body[..body.len().min(40)])
            );
        }
    }
}
