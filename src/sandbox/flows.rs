//! What the simulated Flow reads answer, chosen once a call has passed every check. GetFlow,
//! GetFlowPreviewUrl and GetFlowJSONAssest dispatch on `FlowId` by one table, so that every
//! fault can be injected on every action; ListFlow lists a space's catalogue (see
//! [`super::catalogue`]) and dispatches the same `sim:` faults on its `CustSpaceId`.
//!
//! | `FlowId` | answer |
//! |---|---|
//! | `926753328126430` | 200, the documented example: GetFlow verbatim (`DRAFT` `flow_001` [`SIGN_UP`], JSONVersion `2.1`, PreviewUrl `https://pre-url`, PreviewUrlExpires `1700617436633`, RequestId `DAC72B08-3327-33EF-BEDC-8EC3E83A6575\n`, trailing newline included) |
//! | `100000000000002` | 200, `PUBLISHED` `order_status` [`CUSTOMER_SUPPORT`, `OTHER`], EndpointUri `https://flows.example.com/endpoint` |
//! | `100000000000003` | 200, `DEPRECATED` `old_survey` [`SURVEY`] |
//! | `100000000000004` | 200, `BLOCKED` `booking` [`APPOINTMENT_BOOKING`] |
//! | `100000000000005` | 200, `THROTTLED` `shop` [`SHOPPING`, `LEAD_GENERATION`] |
//! | `100000000000009` | 200, `ARCHIVED` (a status the gateway does not know) `future_flow` [`SIGN_IN`, `TELEPATHY`] (an unknown category) |
//! | `sim:error:<Code>` | the error envelope with that Code: `Product.Unsubscript`, `Ram.PermissionDeny`, `System.LimitControl`, `Unknown.ResourceOwnerId` → 400 with the documented message; `Forbidden.RAM` → 403 with an `AccessDeniedDetail` object naming the action; `InvalidAccessKeyId.NotFound` → 404; `InternalError` → 500; `ServiceUnavailable` → 503; `Throttling*` and `System.LimitControl*` → 400 with `x-acs-retry-after: 1500`; any other Code → 400 `Simulated error <Code>.` |
//! | `sim:ok-error:<Code>` | the same envelope (and headers) under HTTP 200 |
//! | `sim:html` | 502, `text/html`, an nginx "502 Bad Gateway" page |
//! | `sim:garbage` | 200, `application/json`, a truncated body `{"RequestId":"X","Code":"OK","Data":{"Status":"DRA` |
//! | `sim:slow:<ms>` | waits `<ms>` (at most 60000), then answers like `100000000000002` with the requested FlowId |
//! | `sim:huge` | 200, a streamed 16 MiB JSON body with `Content-Length` |
//! | `sim:hang` | 200, headers and `{"Code":"OK",` sent, then the body never ends |
//! | `sim:reset` | the connection is cut right after the response headers |
//! | `sim:ok:<tag>` | answers like `100000000000002` with the requested FlowId (any number of distinct flows); `sim:ok:catalogue-<i>`, the catalogue spaces' flows, are named `catalogue_flow_<i>` |
//! | `sim:flaky:<n>[:<tag>]` | the first `<n>` accepted calls of this action for this exact FlowId get 503 `ServiceUnavailable`, later ones succeed |
//! | `sim:fail-after:<n>[:<tag>]` | the first `<n>` accepted calls of this action for this exact FlowId succeed, later ones get 503 `ServiceUnavailable` (an outage after good answers) |
//! | `sim:throttle:<ms>[:<tag>]` | 400 `Throttling.User` with `x-acs-retry-after: <ms>` |
//! | `sim:expiring:<ms>[:<tag>]` | a success whose PreviewUrlExpires is `<ms>` from now, by the simulated CAMS's clock |
//! | `sim:slow:<ms>[:<tag>]` | as `sim:slow:<ms>`; the tag makes distinct flows with the same delay |
//! | missing or empty | 400 `MissingParameter` |
//! | anything else | 404 `Flow.NotExist` |
//!
//! What a success carries depends on the action ([`super::samples`]): GetFlow the whole flow,
//! GetFlowPreviewUrl its `{FlowId, PreviewUrl, PreviewUrlExpires}` (the same URL scheme and
//! expiry as GetFlow's), GetFlowJSONAssest `{FlowId, FilePath}`. The sample flows answer for every
//! `CustSpaceId`. Except for the documented example they carry JSONVersion `6.0`, DataApiVersion
//! `3.0`, a fresh upper-case RequestId, PreviewUrlExpires 30 days ahead and a PreviewUrl that
//! names the flow, a random token and the `CustSpaceId`, so answers differ per tenant.
//! Parameters the action does not take are ignored.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_stream::{Stream, StreamExt};

use super::action::Action;
use super::catalogue;
use super::envelope::{ErrorReply, Outcome, json_response, new_request_id};
use super::samples::{self, DOCUMENTED_FLOW_ID, Known, ORDER_STATUS, SAMPLES};

const MAX_SLOW: Duration = Duration::from_secs(60);
/// Far beyond any sane CAMS answer, so a client's response size cap must trip.
const HUGE_BODY_LEN: usize = 16 * 1024 * 1024;
const HUGE_CHUNK_LEN: usize = 64 * 1024;
/// Retry hint on simulated throttling, in milliseconds.
const SIMULATED_RETRY_AFTER_MS: u64 = 1500;

/// The answer to an accepted call, and how long to sit on it first.
pub(super) struct Plan {
    pub delay: Duration,
    pub outcome: Outcome,
}

/// What a call asks for: the query parameters the Flow reads take.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Asked<'a> {
    pub flow_id: Option<&'a str>,
    pub space: Option<&'a str>,
    pub flow_name: Option<&'a str>,
    pub page: Option<&'a str>,
}

/// Chooses the answer from the action and the call's parameters.
/// `nth` counts the accepted calls of this action for this FlowId (ListFlow: this CustSpaceId)
/// since the last reset, this one included; `now` is the simulated CAMS's clock, which dates
/// preview URLs' expiry.
pub(super) fn plan(action: Action, asked: &Asked<'_>, nth: u64, now: SystemTime) -> Plan {
    let render = match action {
        Action::ListFlow => return catalogue::plan(asked, nth),
        Action::GetFlow => samples::get_flow,
        Action::GetFlowPreviewUrl => samples::get_preview_url,
        Action::GetFlowJsonAsset => samples::get_json_asset,
    };
    let Some(flow_id) = asked.flow_id.filter(|id| !id.is_empty()) else {
        return Plan::now(Outcome::Error(ErrorReply::bad_request(
            "MissingParameter",
            "The input parameter \"FlowId\" that is mandatory for processing this request is \
             not supplied.",
        )));
    };
    let space = asked.space.unwrap_or_default();
    let (delay, target) = resolve(flow_id, nth, action);
    let outcome = match target {
        Target::Known(flow) => render(&flow, space, now),
        Target::Fixed(outcome) => outcome,
        Target::Unknown => Outcome::Error(ErrorReply::new(
            StatusCode::NOT_FOUND,
            "Flow.NotExist",
            "The specified flow does not exist.",
        )),
    };
    Plan { delay, outcome }
}

/// What an id names, before an action renders it.
pub(super) enum Target<'a> {
    /// A flow that exists: each action answers it in its own shape.
    Known(Known<'a>),
    /// The same answer whatever the action: an error, a broken body, a hang.
    Fixed(Outcome),
    /// Nothing the simulation knows.
    Unknown,
}

/// The table above, for one id: how long to wait, then what it names. `nth` matters to the
/// faults that depend on history; `action` names itself in a simulated `Forbidden.RAM`.
pub(super) fn resolve(id: &str, nth: u64, action: Action) -> (Duration, Target<'_>) {
    let at_once = |target| (Duration::ZERO, target);
    let fixed = |outcome| at_once(Target::Fixed(outcome));
    let order_status = || Target::Known(Known::sample(id, &ORDER_STATUS));
    if id == DOCUMENTED_FLOW_ID {
        return at_once(Target::Known(Known::Documented));
    }
    if let Some(sample) = SAMPLES.iter().find(|s| s.id == id) {
        return at_once(Target::Known(Known::sample(id, sample)));
    }
    if let Some(code) = id.strip_prefix("sim:error:").filter(|c| !c.is_empty()) {
        return fixed(Outcome::Error(simulated_error(code, action)));
    }
    if let Some(code) = id.strip_prefix("sim:ok-error:").filter(|c| !c.is_empty()) {
        let mut reply = simulated_error(code, action);
        reply.status = StatusCode::OK;
        return fixed(Outcome::Error(reply));
    }
    if let Some(ms) = number_arg(id, "sim:slow:") {
        return (Duration::from_millis(ms).min(MAX_SLOW), order_status());
    }
    if let Some(failures) = number_arg(id, "sim:flaky:") {
        return at_once(if nth <= failures {
            Target::Fixed(Outcome::Error(simulated_error(
                "ServiceUnavailable",
                action,
            )))
        } else {
            order_status()
        });
    }
    if let Some(successes) = number_arg(id, "sim:fail-after:") {
        return at_once(if nth <= successes {
            order_status()
        } else {
            Target::Fixed(Outcome::Error(simulated_error(
                "ServiceUnavailable",
                action,
            )))
        });
    }
    if let Some(ms) = number_arg(id, "sim:throttle:") {
        return fixed(Outcome::Error(
            ErrorReply::bad_request(
                "Throttling.User",
                "Request was denied due to user flow control.",
            )
            .with_retry_after(ms),
        ));
    }
    if let Some(ms) = number_arg(id, "sim:expiring:") {
        return at_once(Target::Known(
            Known::sample(id, &ORDER_STATUS).expiring_in(ms),
        ));
    }
    if id.starts_with("sim:ok:") {
        return at_once(order_status());
    }
    match id {
        "sim:html" => fixed(Outcome::Html),
        "sim:garbage" => fixed(Outcome::Garbage),
        "sim:huge" => fixed(Outcome::Huge),
        "sim:hang" => fixed(Outcome::Hang),
        "sim:reset" => fixed(Outcome::Reset),
        _ => at_once(Target::Unknown),
    }
}

/// The number in `<prefix><number>` or `<prefix><number>:<tag>`; the tag only makes ids distinct.
pub(super) fn number_arg(id: &str, prefix: &str) -> Option<u64> {
    let rest = id.strip_prefix(prefix)?;
    rest.split(':').next()?.parse().ok()
}

impl Plan {
    pub(super) fn now(outcome: Outcome) -> Self {
        Self {
            delay: Duration::ZERO,
            outcome,
        }
    }
}

fn simulated_error(code: &str, action: Action) -> ErrorReply {
    let bad_request = |message: &str| ErrorReply::bad_request(code, message);
    match code {
        "Product.Unsubscript" => bad_request("You have not subscribed to the specified product."),
        "Ram.PermissionDeny" => bad_request("You are not authorized to perform the operation."),
        "Unknown.ResourceOwnerId" => {
            bad_request("The resource does not belong to the current user.")
        }
        "Forbidden.RAM" => ErrorReply {
            access_denied_detail: Some(access_denied_detail(action)),
            ..ErrorReply::new(
                StatusCode::FORBIDDEN,
                code,
                "User not authorized to operate on the specified resource.",
            )
        },
        "InvalidAccessKeyId.NotFound" => ErrorReply::new(
            StatusCode::NOT_FOUND,
            code,
            "Specified access key is not found.",
        ),
        "InternalError" => ErrorReply::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            code,
            "The request processing has failed due to some unknown error, exception or failure.",
        ),
        "ServiceUnavailable" => ErrorReply::new(
            StatusCode::SERVICE_UNAVAILABLE,
            code,
            "The request has failed due to a temporary failure of the server.",
        ),
        _ if code.starts_with("System.LimitControl") => {
            bad_request("The system is under flow control.")
                .with_retry_after(SIMULATED_RETRY_AFTER_MS)
        }
        "Throttling.User" => bad_request("Request was denied due to user flow control.")
            .with_retry_after(SIMULATED_RETRY_AFTER_MS),
        _ if code.starts_with("Throttling") => {
            bad_request("Request was denied due to request throttling.")
                .with_retry_after(SIMULATED_RETRY_AFTER_MS)
        }
        _ => bad_request(&format!("Simulated error {code}.")),
    }
}

fn access_denied_detail(action: Action) -> Value {
    json!({
        "PolicyType": "AccountLevelIdentityBasedPolicy",
        "AuthPrincipalOwnerId": "1234",
        "AuthPrincipalType": "SubUser",
        "AuthPrincipalDisplayName": "sandbox-user",
        "NoPermissionType": "ImplicitDeny",
        "AuthAction": format!("cams:{action}"),
        "EncodedDiagnosticMessage": "AQEAAAAAZ2FuZGJveC1zaW11bGF0ZWQtZGVuaWFs",
    })
}

impl Outcome {
    /// The Code the answer carries, for the request log; non-envelope answers get a lower-case
    /// marker that no CAMS code can collide with.
    pub(super) fn code(&self) -> String {
        match self {
            Outcome::Success { .. } => "OK".to_owned(),
            Outcome::Error(reply) => reply.code.clone(),
            Outcome::Html => "html".to_owned(),
            Outcome::Garbage => "garbage".to_owned(),
            Outcome::Huge => "huge".to_owned(),
            Outcome::Hang => "hang".to_owned(),
            Outcome::Reset => "reset".to_owned(),
        }
    }

    /// `closing` ends the bodies that would otherwise never end, so the server can shut down.
    pub(super) fn into_response(self, closing: watch::Receiver<bool>) -> Response {
        match self {
            Outcome::Success { request_id, body } => {
                json_response(StatusCode::OK, &body, &request_id)
            }
            Outcome::Error(reply) => reply.into_response(),
            Outcome::Html => (
                StatusCode::BAD_GATEWAY,
                [(header::CONTENT_TYPE, "text/html")],
                BAD_GATEWAY_PAGE,
            )
                .into_response(),
            Outcome::Garbage => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"RequestId":"X","Code":"OK","Data":{"Status":"DRA"#,
            )
                .into_response(),
            Outcome::Huge => huge_response(),
            Outcome::Reset => {
                // The body fails at once: the server cuts the connection after the headers,
                // which is what a reset looks like to the client.
                let broken = tokio_stream::once(Err::<Bytes, _>(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "simulated connection reset",
                )));
                (StatusCode::OK, Body::from_stream(broken)).into_response()
            }
            Outcome::Hang => {
                let head = tokio_stream::once(Ok(Bytes::from_static(br#"{"Code":"OK","#)));
                let body = Body::from_stream(head.chain(UntilClosed::new(closing)));
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, super::envelope::JSON_CONTENT_TYPE)],
                    body,
                )
                    .into_response()
            }
        }
    }
}

const BAD_GATEWAY_PAGE: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

/// Valid JSON of exactly [`HUGE_BODY_LEN`] bytes, streamed so the sandbox never holds it whole.
fn huge_response() -> Response {
    let head = format!(
        r#"{{"RequestId":"{}","Code":"OK","Message":"None","Data":{{"Status":"PUBLISHED","FlowId":"sim:huge","FlowName":""#,
        new_request_id()
    );
    let tail: &'static [u8] = br#""}}"#;
    let mut padding_left = HUGE_BODY_LEN.saturating_sub(head.len() + tail.len());
    let chunk = Bytes::from(vec![b'x'; HUGE_CHUNK_LEN]);
    let mut parts = vec![Bytes::from(head)];
    while padding_left > 0 {
        let len = padding_left.min(HUGE_CHUNK_LEN);
        parts.push(chunk.slice(..len));
        padding_left -= len;
    }
    parts.push(Bytes::from_static(tail));
    let len: usize = parts.iter().map(Bytes::len).sum();
    let body = Body::from_stream(tokio_stream::iter(
        parts.into_iter().map(Ok::<_, Infallible>),
    ));
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(super::envelope::JSON_CONTENT_TYPE),
            ),
            (header::CONTENT_LENGTH, HeaderValue::from(len)),
        ],
        body,
    )
        .into_response()
}

/// A body stream that yields nothing and ends once the sandbox closes.
struct UntilClosed(Pin<Box<dyn Future<Output = ()> + Send>>);

impl UntilClosed {
    fn new(mut closing: watch::Receiver<bool>) -> Self {
        Self(Box::pin(async move {
            // An error means the sandbox is gone, which ends the body as well.
            let _ = closing.wait_for(|closed| *closed).await;
        }))
    }
}

impl Stream for UntilClosed {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.as_mut().poll(cx).map(|()| None)
    }
}

#[cfg(test)]
#[path = "flows_tests.rs"]
mod tests;
