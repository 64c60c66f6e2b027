//! Serving HTTP/2 on the accepted connections, each in its own task, with the bounds a hostile
//! client meets:
//!
//! - at most `max_connections` at once; past that a new connection is closed at once (logged
//!   once per burst);
//! - a connection that has not sent the HTTP/2 preface within `preface_timeout` is dropped, one
//!   with no open stream for `idle_timeout` is told to go away (GOAWAY), and one older than
//!   `max_connection_age` (±10 %) too, however busy: its long-lived streams end, its calls in
//!   flight get their bound, and then it is closed (so that no client holds a connection forever,
//!   and clients spread again over the replicas);
//! - a flood of PRIORITY frames closes the connection ([`super::guard`]);
//! - at the drain, every connection gets GOAWAY at once (idle ones close, long-lived streams end)
//!   and in-flight calls get until the drain runs out; then they are answered UNAVAILABLE by
//!   their handlers (or by [`super::layers`] while still reading), and each connection has a
//!   short grace to deliver those answers before it is dropped.

use std::{
    convert::Infallible,
    io,
    sync::Arc,
    time::{Duration, Instant as StdInstant},
};

use futures_util::{Stream, StreamExt};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{sync::Semaphore, time::Instant};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::body::Body;

use super::{
    Conn,
    deadline::sleep_until_opt,
    guard::{Guarded, Seen},
    layers::{Activity, Answers, Front, Shared},
};

/// How long a connection gets, after the drain has run out, to deliver the answers of its last
/// calls before it is dropped.
const LAST_WORDS: Duration = Duration::from_secs(1);

/// How often the refusal of connections past the cap is logged at most.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// The bounds of the HTTP/2 server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub preface_timeout: Duration,
    pub idle_timeout: Duration,
    /// After about this long (±10 %), a connection is told to go away, however busy; `None`:
    /// never.
    pub max_connection_age: Option<Duration>,
    pub max_concurrent_streams: u32,
    /// Bound on the time until a response starts, from the stream's arrival.
    pub max_call: Duration,
}

/// The two moments of a shutdown: the drain starts, and later runs out.
#[derive(Debug, Clone, Default)]
pub struct Drain {
    pub started: CancellationToken,
    pub expired: CancellationToken,
}

/// Serves `routes` on every connection `incoming` yields until the drain starts, then drains.
/// Returns once every connection has closed.
pub async fn serve<I, S>(incoming: I, routes: S, limits: HttpLimits, drain: Drain, answers: Answers)
where
    I: Stream<Item = Result<Conn, io::Error>> + Send,
    S: tower::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        // GetFlow metadata is a few headers; 16 KiB leaves room for tracing and auth headers.
        .max_header_list_size(16 * 1024)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    let builder = Arc::new(builder);
    let shared = Arc::new(Shared {
        max_call: limits.max_call,
        expired: drain.expired.clone(),
        answers,
    });
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    let mut refusals = Refusals::default();
    {
        let mut incoming = std::pin::pin!(incoming);
        loop {
            let conn = tokio::select! {
                () = drain.started.cancelled() => break,
                conn = incoming.next() => match conn {
                    Some(Ok(conn)) => conn,
                    Some(Err(error)) => {
                        tracing::debug!(%error, "accept failed");
                        continue;
                    }
                    None => break,
                },
            };
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                refusals.refused(limits.max_connections);
                drop(conn);
                continue;
            };
            let task = Connection {
                builder: Arc::clone(&builder),
                routes: routes.clone(),
                shared: Arc::clone(&shared),
                limits,
                drain: drain.clone(),
            };
            connections.spawn(async move {
                task.run(conn).await;
                drop(slot);
            });
        }
        // Leaving the block drops `incoming`, which closes the listening socket: from now on new
        // clients are refused by the kernel rather than left waiting.
    }
    connections.close();
    connections.wait().await;
}

/// Logs connections refused past the cap at most every [`REFUSAL_LOG_EVERY`].
#[derive(Default)]
struct Refusals {
    since_log: u64,
    last_log: Option<StdInstant>,
}

impl Refusals {
    fn refused(&mut self, cap: usize) {
        self.since_log += 1;
        if self
            .last_log
            .is_none_or(|at| at.elapsed() >= REFUSAL_LOG_EVERY)
        {
            tracing::warn!(
                max_connections = cap,
                refused = self.since_log,
                "connection limit reached; refusing new connections"
            );
            self.since_log = 0;
            self.last_log = Some(StdInstant::now());
        }
    }
}

struct Connection<S> {
    builder: Arc<hyper::server::conn::http2::Builder<TokioExecutor>>,
    routes: S,
    shared: Arc<Shared>,
    limits: HttpLimits,
    drain: Drain,
}

impl<S> Connection<S>
where
    S: tower::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    async fn run(self, conn: Conn) {
        let accepted = Instant::now();
        let info = conn.connect_info();
        let remote = info.remote_addr;
        let seen = Arc::new(Seen::default());
        let activity = Arc::new(Activity::new(accepted, self.drain.started.child_token()));
        // Spread over ±10 %, so that connections opened together are not all closed together.
        let age_limit = self
            .limits
            .max_connection_age
            .map(|age| accepted + age.mul_f64(rand::random_range(0.9..=1.1)));
        // Once told to go away for its age, the calls in flight get their bound and the last
        // answers a moment to leave; then the connection is closed.
        let mut close_at: Option<Instant> = None;
        let front = Front {
            inner: self.routes,
            info,
            activity: Arc::clone(&activity),
            shared: self.shared,
        };
        let io = TokioIo::new(Guarded::new(conn, Arc::clone(&seen)));
        let served = self
            .builder
            .serve_connection(io, TowerToHyperService::new(front));
        let mut served = std::pin::pin!(served);
        let mut going_away = false;
        loop {
            // Before the preface, the preface deadline; after it, the idle deadline while no
            // stream is open. Activity moves the deadline: waking at an old one just loops.
            let deadline = if seen.preface() {
                activity.idle_deadline(self.limits.idle_timeout)
            } else {
                Some(accepted + self.limits.preface_timeout)
            };
            tokio::select! {
                result = served.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(?remote, %error, "connection ended with an error");
                    }
                    return;
                }
                () = self.drain.started.cancelled(), if !going_away => {
                    served.as_mut().graceful_shutdown();
                    going_away = true;
                }
                () = sleep_until_opt(age_limit), if !going_away && age_limit.is_some() => {
                    tracing::debug!(?remote, "connection at its maximum age; sending GOAWAY");
                    activity.going_away.cancel();
                    served.as_mut().graceful_shutdown();
                    going_away = true;
                    close_at = Some(Instant::now() + self.limits.max_call + LAST_WORDS);
                }
                () = sleep_until_opt(close_at), if close_at.is_some() => {
                    tracing::debug!(?remote, "connection closed after its age's grace");
                    return;
                }
                () = sleep_until_opt(deadline), if !going_away && deadline.is_some() => {
                    let still_due = if seen.preface() {
                        activity
                            .idle_deadline(self.limits.idle_timeout)
                            .is_some_and(|at| at <= Instant::now())
                    } else {
                        true
                    };
                    if !still_due {
                        continue;
                    }
                    if !seen.preface() {
                        tracing::debug!(?remote, "no HTTP/2 preface in time; closing");
                        return;
                    }
                    tracing::debug!(?remote, "idle connection; sending GOAWAY");
                    served.as_mut().graceful_shutdown();
                    going_away = true;
                }
                () = self.drain.expired.cancelled() => {
                    // The handlers answer now; give the answers a moment to leave.
                    if tokio::time::timeout(LAST_WORDS, served.as_mut()).await.is_err() {
                        tracing::debug!(?remote, "connection dropped at the end of the drain");
                    }
                    return;
                }
            }
        }
    }
}
