//! What every request meets before (and after) the gRPC services, on every connection:
//!
//! - a `content-type` other than `application/grpc` or `application/grpc+proto` is refused with
//!   HTTP 415, as the gRPC protocol asks of servers, before anything is decoded;
//! - the connection's [`ConnInfo`] goes into the request's extensions, with the call's
//!   [`Budget`] (its deadline, made once here from the caller's `grpc-timeout` and the server's
//!   own bound, and read by every layer after this one);
//! - the time until the response starts is bounded by the budget, so a request whose body never
//!   ends cannot hold its stream, and once the drain has run out every such request is answered
//!   UNAVAILABLE;
//! - every open stream is counted for the connection, whose idle deadline only runs while none
//!   is open;
//! - long-lived streams (health watches, reflection) end, with UNAVAILABLE, when their
//!   connection goes away (the drain starts, or the connection reaches its maximum age), so that
//!   they never hold a shutdown, or a connection, open.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header::CONTENT_TYPE};
use http_body::Frame;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::{Status, body::Body};

use super::ConnInfo;
use crate::deadline::{Budget, grpc_timeout};

/// Requests whose responses are streams meant to stay open (and that end at the drain).
const LONG_LIVED: &[&str] = &[
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// The statuses the server answers on its own; built by the gRPC layer, which knows the details
/// each carries.
#[derive(Clone, Copy)]
pub struct Answers {
    /// The request's deadline passed before the service answered.
    pub deadline_exceeded: fn() -> Status,
    /// The drain ran out before the service answered.
    pub shutting_down: fn() -> Status,
}

/// Settings and signals every connection shares.
pub(crate) struct Shared {
    /// Bound on the time until a response starts, whatever `grpc-timeout` says.
    pub max_call: Duration,
    /// Fires when the drain has run out.
    pub expired: CancellationToken,
    pub answers: Answers,
}

/// Activity of one connection.
#[derive(Debug)]
pub(crate) struct Activity {
    open: AtomicUsize,
    /// Milliseconds from `since` to the last stream's start or end.
    last: AtomicU64,
    since: Instant,
    /// Fires when this connection is going away (the drain started, or it reached its maximum
    /// age): its long-lived streams then end.
    pub(crate) going_away: CancellationToken,
}

impl Activity {
    /// `going_away` fires with the drain, or earlier for this connection alone.
    pub(crate) fn new(now: Instant, going_away: CancellationToken) -> Self {
        Self {
            open: AtomicUsize::new(0),
            last: AtomicU64::new(0),
            since: now,
            going_away,
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    /// When the connection has been idle for `limit`; `None` while a stream is open.
    pub(crate) fn idle_deadline(&self, limit: Duration) -> Option<Instant> {
        if self.open.load(Ordering::Relaxed) > 0 {
            return None;
        }
        Some(self.since + Duration::from_millis(self.last.load(Ordering::Relaxed)) + limit)
    }
}

/// Counts a stream open until dropped (with its response body, or with the request when no
/// response came).
struct OpenStream(Arc<Activity>);

impl OpenStream {
    fn new(activity: &Arc<Activity>) -> Self {
        activity.open.fetch_add(1, Ordering::Relaxed);
        activity.touch();
        Self(Arc::clone(activity))
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// The per-connection service in front of the gRPC routes.
#[derive(Clone)]
pub(crate) struct Front<S> {
    pub inner: S,
    pub info: ConnInfo,
    pub activity: Arc<Activity>,
    pub shared: Arc<Shared>,
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response<ServerBody>, Infallible>> + Send>>;

impl<S, B> tower::Service<Request<B>> for Front<S>
where
    S: tower::Service<Request<B>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<ServerBody>;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let arrival = Instant::now();
        let stream = OpenStream::new(&self.activity);
        if !is_grpc(request.headers()) {
            let mut response = Response::new(ServerBody::new(Body::empty(), stream, None));
            *response.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
            return Box::pin(std::future::ready(Ok(response)));
        }
        let budget = Budget::new(
            arrival,
            grpc_timeout(request.headers()),
            self.shared.max_call,
        );
        let long_lived = LONG_LIVED
            .iter()
            .any(|p| request.uri().path().starts_with(p));
        request.extensions_mut().insert(self.info.clone());
        request.extensions_mut().insert(budget);
        // The clone that was made ready is the one that serves; a fresh one waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        let going_away = long_lived.then(|| self.activity.going_away.clone().cancelled_owned());
        Box::pin(async move {
            let drain = going_away;
            let response = tokio::select! {
                biased;
                response = inner.call(request) => match response {
                    Ok(response) => response,
                    Err(never) => match never {},
                },
                () = tokio::time::sleep_until(budget.expires()) => {
                    (shared.answers.deadline_exceeded)().into_http()
                }
                () = shared.expired.cancelled() => {
                    tracing::info!(
                        target: "cams_flows::call",
                        grpc_code = "UNAVAILABLE",
                        "failed: the drain ran out before the request was read"
                    );
                    (shared.answers.shutting_down)().into_http()
                }
            };
            Ok(response.map(|body| ServerBody::new(body, stream, drain)))
        })
    }
}

/// `application/grpc` or `application/grpc+proto`, with any parameters.
fn is_grpc(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let media = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    media == "application/grpc" || media == "application/grpc+proto"
}

/// A response body that keeps its stream counted while it lasts, and, for long-lived streams,
/// ends with UNAVAILABLE when its connection goes away (the drain, or the connection's age).
pub(crate) struct ServerBody {
    inner: Body,
    _stream: OpenStream,
    drain: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    ended: bool,
}

impl ServerBody {
    fn new(inner: Body, stream: OpenStream, drain: Option<WaitForCancellationFutureOwned>) -> Self {
        Self {
            inner,
            _stream: stream,
            drain: drain.map(Box::pin),
            ended: false,
        }
    }
}

impl http_body::Body for ServerBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let draining = match &mut self.drain {
            Some(drain) => drain.as_mut().poll(cx).is_ready(),
            None => false,
        };
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        // What the stream has ready still goes out (a watch's NOT_SERVING, say); it ends only
        // where it would wait.
        if draining && frame.is_pending() {
            self.ended = true;
            let status = Status::unavailable("the server is closing this connection; call again");
            let mut trailers = status.into_http::<()>().into_parts().0.headers;
            trailers.remove(CONTENT_TYPE);
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_grpc_content_types_pass() {
        let with = |ct: Option<&str>| {
            let mut headers = HeaderMap::new();
            if let Some(ct) = ct {
                headers.insert(CONTENT_TYPE, ct.parse().expect("header"));
            }
            is_grpc(&headers)
        };
        assert!(with(Some("application/grpc")));
        assert!(with(Some("application/grpc+proto")));
        assert!(with(Some("Application/GRPC; charset=utf-8")));
        assert!(!with(Some("application/grpc+json")));
        assert!(!with(Some("application/json")));
        assert!(!with(Some("text/plain")));
        assert!(!with(None));
    }
}
