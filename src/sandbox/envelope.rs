//! CAMS's JSON envelopes and the HTTP answers around them, shaped like the real service's.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::acs::openapi::RETRY_AFTER_HEADER;
use crate::acs::v3::encode;

pub(super) const HOST_ID: &str = "cams.ap-southeast-1.aliyuncs.com";
pub(super) const JSON_CONTENT_TYPE: &str = "application/json;charset=utf-8";
const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-acs-request-id");

/// Alibaba's request ids are upper-case UUIDs.
pub(super) fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string().to_uppercase()
}

/// An error answer: the envelope's Code and Message, and the HTTP status and headers around it.
#[derive(Debug, Clone)]
pub(super) struct ErrorReply {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub retry_after_ms: Option<u64>,
    pub access_denied_detail: Option<Value>,
}

impl ErrorReply {
    pub(super) fn new(
        status: StatusCode,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            retry_after_ms: None,
            access_denied_detail: None,
        }
    }

    pub(super) fn bad_request(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(super) fn with_retry_after(mut self, ms: u64) -> Self {
        self.retry_after_ms = Some(ms);
        self
    }

    pub(super) fn into_response(self) -> Response {
        let request_id = new_request_id();
        let mut body = json!({
            "RequestId": request_id,
            "HostId": HOST_ID,
            "Code": self.code,
            "Message": self.message,
            "Recommend": format!(
                "https://api.aliyun.com/troubleshoot?q={}&product=cams",
                encode(&self.code)
            ),
        });
        if let (Some(detail), Some(fields)) = (self.access_denied_detail, body.as_object_mut()) {
            fields.insert("AccessDeniedDetail".to_owned(), detail);
        }
        let mut response = json_response(self.status, &body, &request_id);
        if let Some(ms) = self.retry_after_ms {
            response
                .headers_mut()
                .insert(RETRY_AFTER_HEADER, HeaderValue::from(ms));
        }
        response
    }
}

/// A JSON answer with the headers every CAMS answer carries.
pub(super) fn json_response(status: StatusCode, body: &Value, request_id: &str) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(JSON_CONTENT_TYPE),
    );
    // The documented sample id ends in a newline, which a header cannot carry.
    if let Ok(value) = HeaderValue::from_str(request_id.trim()) {
        headers.insert(REQUEST_ID_HEADER, value);
    }
    (status, headers, Body::from(body.to_string())).into_response()
}

/// What the simulated CAMS answers an accepted call with.
pub(super) enum Outcome {
    Success { request_id: String, body: Value },
    Error(ErrorReply),
    Html,
    Garbage,
    Huge,
    Hang,
    Reset,
}
