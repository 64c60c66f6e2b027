//! The HTTP side: routes, the pipeline every Flow read goes through (verify, throttle, record,
//! answer) and the control endpoints.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State as Extract;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::watch;
use tokio::time::Instant;

use super::SandboxConfig;
use super::envelope::ErrorReply;
use super::flows::{self, Asked};
use super::nonces::NonceCache;
use super::stats::{RecordedRequest, Recorder};
use super::throttle::Throttle;
use super::verify::{self, Incoming, Verified, invalid_action};
use crate::acs::openapi::{CUST_SPACE_ID_PARAM, FLOW_ID_PARAM, FLOW_NAME_PARAM, PAGE_PARAM};
use crate::acs::v3::parse_query;
use crate::clock::SharedClock;

/// The Flow reads send no body; anything bigger than this is not a CAMS call.
const MAX_BODY: usize = 1024 * 1024;

pub(super) struct State {
    config: SandboxConfig,
    nonces: Mutex<NonceCache>,
    /// Throttle and records share a lock so that admitting a call and counting it are one step.
    books: Mutex<Books>,
    closing: watch::Sender<bool>,
}

struct Books {
    throttle: Throttle,
    recorder: Recorder,
}

impl State {
    pub(super) fn new(config: SandboxConfig) -> Self {
        Self {
            nonces: Mutex::new(NonceCache::default()),
            books: Mutex::new(Books {
                throttle: Throttle::new(config.rps_per_key),
                recorder: Recorder::default(),
            }),
            closing: watch::Sender::new(false),
            config,
        }
    }

    /// Ends held-open answers; the server is going away.
    pub(super) fn close(&self) {
        self.closing.send_replace(true);
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(super) fn router(state: Arc<State>) -> Router {
    let clock = Arc::clone(&state.config.clock);
    Router::new()
        .route("/", post(flow_read).fallback(unknown))
        .route("/_sandbox/stats", get(stats).fallback(unknown))
        .route("/_sandbox/requests", get(requests).fallback(unknown))
        .route("/_sandbox/reset", post(reset).fallback(unknown))
        .fallback(unknown)
        .with_state(state)
        .layer(axum::middleware::map_response(move |response| {
            std::future::ready(dated(&clock, response))
        }))
}

/// CAMS's `Date`, from the simulated CAMS's own clock, on every answer: what a client reads to
/// tell how far off its clock is.
pub(super) fn dated(clock: &SharedClock, mut response: Response) -> Response {
    if let Ok(value) = header::HeaderValue::from_str(&httpdate::fmt_http_date(clock.now())) {
        response.headers_mut().insert(header::DATE, value);
    }
    response
}

async fn unknown() -> Response {
    invalid_action().into_response()
}

async fn stats(Extract(state): Extract<Arc<State>>) -> Response {
    let stats = state.books().recorder.stats();
    Json(stats).into_response()
}

async fn requests(Extract(state): Extract<Arc<State>>) -> Response {
    let requests = state.books().recorder.requests();
    Json(requests).into_response()
}

/// Clears what tests observe; nonces and the throttle window stay, as they model the real
/// gateway's state rather than observations of it.
async fn reset(Extract(state): Extract<Arc<State>>) -> StatusCode {
    state.books().recorder.reset();
    StatusCode::NO_CONTENT
}

async fn flow_read(
    Extract(state): Extract<Arc<State>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let raw_query = uri.query().unwrap_or_default().to_owned();
    let params = decode_query(&raw_query);
    let traceparent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let named_action = headers
        .get("x-acs-action")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let entry = |code: &str, access_key_id: &str| RecordedRequest {
        action: named_action.clone(),
        raw_query: raw_query.clone(),
        params: params.clone().unwrap_or_default(),
        code: code.to_owned(),
        access_key_id: access_key_id.to_owned(),
        traceparent: traceparent.clone(),
    };
    let param = |name: &str| {
        params
            .as_deref()
            .and_then(|ps| ps.iter().find(|(k, _)| k == name))
            .map(|(_, v)| v.as_str())
    };
    let asked = Asked {
        flow_id: param(FLOW_ID_PARAM),
        space: param(CUST_SPACE_ID_PARAM),
        flow_name: param(FLOW_NAME_PARAM),
        page: param(PAGE_PARAM),
    };
    let flow_id = asked.flow_id;

    let refuse = |reply: ErrorReply| {
        tracing::debug!(code = %reply.code, action = %named_action, flow_id, "sandbox call refused");
        state.books().recorder.rejected(entry(&reply.code, ""));
        reply.into_response()
    };
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return refuse(ErrorReply::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "InvalidParameter",
            "The request body is too large.",
        ));
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    let call = Incoming {
        headers: &headers,
        host,
        params: params.as_deref(),
        body: &body,
    };
    let now = Instant::now();
    let wall_clock = state.config.clock.now();
    let Verified {
        access_key_id: signer,
        action,
    } = match verify::verify(&state.config, &state.nonces, &call, wall_clock, now) {
        Ok(verified) => verified,
        Err(reply) => return refuse(reply),
    };

    let (plan, code) = {
        let mut books = state.books();
        // Every key of the account (its temporary keys too) draws on the account's budget.
        if let Err(wait) = books
            .throttle
            .admit(&state.config.access_key_id, action, now)
        {
            books
                .recorder
                .throttled(action, entry("Throttling.User", signer));
            drop(books);
            tracing::debug!(
                code = "Throttling.User",
                %action,
                flow_id,
                "sandbox call throttled"
            );
            return throttled(wait);
        }
        // The faults that depend on history (`sim:flaky:`) see which call of this action for
        // this id this is.
        let nth = books.recorder.calls_for(action, flow_id, asked.space) + 1;
        let plan = flows::plan(action, &asked, nth, wall_clock);
        let code = plan.outcome.code();
        books
            .recorder
            .accepted(action, flow_id, asked.space, now, entry(&code, signer));
        (plan, code)
    };
    tracing::debug!(code = %code, %action, flow_id, "sandbox call accepted");

    let mut closing = state.closing.subscribe();
    if !plan.delay.is_zero() {
        tokio::select! {
            () = tokio::time::sleep(plan.delay) => {}
            _ = closing.wait_for(|closed| *closed) => {}
        }
    }
    plan.outcome.into_response(closing)
}

/// The query's pairs, a raw `+` read as a space: Alibaba's SDKs send spaces as `+` (Python's
/// `urlencode`) while signing them as `%20`, which CAMS accepts, so its gateway decodes `+` as a
/// space. A `+` meant literally arrives as `%2B`, as the gateway's own client sends it.
fn decode_query(raw: &str) -> Option<Vec<(String, String)>> {
    parse_query(&raw.replace('+', "%20"))
}

fn throttled(wait: Duration) -> Response {
    // Rounded up, so a client that waits exactly this long finds the slot free.
    let ms = u64::try_from(wait.as_nanos().div_ceil(1_000_000).max(1)).unwrap_or(u64::MAX);
    ErrorReply::bad_request(
        "Throttling.User",
        "Request was denied due to user flow control.",
    )
    .with_retry_after(ms)
    .into_response()
}
