//! The simulated ECS metadata service: `PUT /latest/api/token` hands out session tokens (IMDSv2),
//! the role's name and its temporary keys are read with one (or without, unless hardened). A
//! wrong role name gets an HTML 404, as on ECS.

use std::sync::Arc;

use axum::{
    extract::{Path, State as Extract},
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use secrecy::ExposeSecret;
use serde_json::json;

use super::{
    issuer::{Fault, MetadataCall, State},
    keyring::RoleSession,
};

const TTL_HEADER: &str = "x-aliyun-ecs-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aliyun-ecs-metadata-token";
/// The simulated instance, which names the sessions of its role's keys.
const INSTANCE_ID: &str = "i-sandbox";

fn record(
    state: &State,
    method: &Method,
    uri: &Uri,
    with_token: bool,
    response: Response,
) -> Response {
    let status = response.status().as_u16();
    tracing::debug!(%method, path = uri.path(), with_token, status, "sandbox metadata service answered");
    state.record_metadata(MetadataCall {
        method: method.to_string(),
        path: uri.path().to_owned(),
        with_token,
        status,
    });
    response
}

pub(super) async fn token(
    Extract(state): Extract<Arc<State>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let response = if method != Method::PUT {
        StatusCode::METHOD_NOT_ALLOWED.into_response()
    } else if state.metadata_fault() == Some(Fault::TokenRefused) {
        (StatusCode::FORBIDDEN, "Forbidden").into_response()
    } else {
        let ttl = headers
            .get(TTL_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok());
        match ttl {
            Some(1..=21_600) => state.new_session_token().into_response(),
            _ => (StatusCode::BAD_REQUEST, "Bad Request").into_response(),
        }
    };
    record(&state, &method, &uri, false, response)
}

/// `None` when the call may go on (with a valid token, or without one on a service that is not
/// hardened); the refusal otherwise.
fn check_token(state: &State, headers: &HeaderMap) -> (bool, Option<Response>) {
    let unauthorized = || Some((StatusCode::UNAUTHORIZED, "Unauthorized").into_response());
    match headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()) {
        Some(_) if state.metadata_fault() == Some(Fault::TokenRejected) => (true, unauthorized()),
        Some(token) if state.known_session_token(token) => (true, None),
        Some(_) => (
            true,
            Some((StatusCode::UNAUTHORIZED, "Unauthorized").into_response()),
        ),
        None if state.config.hardened => (
            false,
            Some((StatusCode::UNAUTHORIZED, "Unauthorized").into_response()),
        ),
        None => (false, None),
    }
}

pub(super) async fn role(
    Extract(state): Extract<Arc<State>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let (with_token, refused) = check_token(&state, &headers);
    let response = refused.unwrap_or_else(|| state.config.role_name.clone().into_response());
    record(&state, &method, &uri, with_token, response)
}

pub(super) async fn credentials(
    Extract(state): Extract<Arc<State>>,
    Path(role): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let (with_token, refused) = check_token(&state, &headers);
    let response = refused.unwrap_or_else(|| answer(&state, &role));
    record(&state, &method, &uri, with_token, response)
}

fn answer(state: &State, role: &str) -> Response {
    let fault = state.metadata_fault();
    match &fault {
        Some(Fault::Unavailable) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Some(Fault::Garbage) => {
            return (StatusCode::OK, r#"{"Code":"Success","AccessKeyId":"#).into_response();
        }
        Some(Fault::Error { status, code }) => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::OK);
            return (status, json!({ "Code": code }).to_string()).into_response();
        }
        Some(Fault::Expired | Fault::TokenRefused | Fault::TokenRejected) | None => {}
    }
    if role != state.config.role_name {
        return (
            StatusCode::NOT_FOUND,
            [("content-type", "text/html")],
            "<html><head><title>404 Not Found</title></head><body>404 Not Found</body></html>",
        )
            .into_response();
    }
    let session = RoleSession {
        role_name: state.config.role_name.clone(),
        session_name: INSTANCE_ID.to_owned(),
    };
    let (id, issued) = state.issue(fault.as_ref(), session);
    let now = crate::acs::format_timestamp(state.config.clock.now());
    let body = json!({
        "Code": "Success",
        "AccessKeyId": id,
        "AccessKeySecret": issued.secret.expose_secret(),
        "SecurityToken": issued.token.expose_secret(),
        "Expiration": crate::acs::format_timestamp(issued.expires_at),
        "LastUpdated": now,
    });
    (
        StatusCode::OK,
        [("content-type", "text/plain")],
        body.to_string(),
    )
        .into_response()
}
