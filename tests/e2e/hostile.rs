//! Hostile clients over real sockets: what a client can send that tonic's client never would
//! (bodies that never end, no preface, PRIORITY floods, wrong content types, two messages in a
//! unary call, bytes that are not UTF-8), and what it can do to others (hold connections, rotate
//! tenant ids, disconnect mid-stream). Each test asserts what a well-behaved client or an operator
//! depends on while that happens.
//!
//! Where tonic's client cannot send what is needed, h2's client does ([`H2`]); where even h2
//! cannot (no preface, PRIORITY frames), the bytes go over a plain `TcpStream`.

use std::{
    collections::HashMap,
    future::Future,
    net::SocketAddr,
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::{BufMut, Bytes, BytesMut};
use cams_flows::{
    auth::{ApiKey, AuthConfig, AuthMode, CallerQuotas, TenantSet},
    limits::{LimitsConfig, Quota},
    pb::{GetFlowRequest, GetFlowResponse, flow_service_client::FlowServiceClient},
};
use h2::client::{ResponseFuture, SendRequest};
use http::{HeaderMap, StatusCode};
use prost::Message;
use sha2::Digest;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    task::JoinHandle,
    time::Instant,
};
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, HealthCheckResponse, health_check_response::ServingStatus,
    health_client::HealthClient,
};
use tonic_reflection::pb::v1;

use crate::support::{
    TestApp, details, error_info,
    process::{ServedSandbox, serve_sandbox},
    wait,
};

const FLOW: &str = "100000000000002";
const GET_FLOW: &str = "/cams.flows.v1.FlowService/GetFlow";
const REFLECTION: [&str; 2] = [
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];
const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";
const GRPC: Option<&str> = Some("application/grpc");
/// The client connection preface (RFC 9113, section 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `what`, or a panic naming it once `bound` has passed.
async fn within<T>(bound: Duration, what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(bound, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {bound:?}"))
}

// ---- what goes on the wire ----

/// One gRPC message: uncompressed, its length, its bytes.
fn grpc_frame(message: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(5 + message.len());
    frame.put_u8(0);
    frame.put_u32(u32::try_from(message.len()).expect("small message"));
    frame.put_slice(message);
    frame.freeze()
}

fn get_flow(flow_id: &str, space: &str) -> Bytes {
    grpc_frame(
        &GetFlowRequest {
            flow_id: flow_id.into(),
            cust_space_id: space.into(),
        }
        .encode_to_vec(),
    )
}

/// A `GetFlowRequest` encoded by hand, so that its strings can be any bytes: `flow_id` is field 1,
/// `cust_space_id` field 2, both length-delimited.
fn get_flow_raw(flow_id: &[u8], space: &[u8]) -> Bytes {
    let mut message = Vec::new();
    for (tag, value) in [(0x0a_u8, flow_id), (0x12, space)] {
        message.push(tag);
        message.push(u8::try_from(value.len()).expect("short field"));
        message.extend_from_slice(value);
    }
    grpc_frame(&message)
}

fn list_services() -> Bytes {
    grpc_frame(
        &v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            )),
        }
        .encode_to_vec(),
    )
}

/// The header of an HTTP/2 frame: length, type, flags, stream.
fn frame_header(len: u32, kind: u8, flags: u8, stream: u32) -> [u8; 9] {
    let len = len.to_be_bytes();
    let stream = stream.to_be_bytes();
    [
        len[1], len[2], len[3], kind, flags, stream[0], stream[1], stream[2], stream[3],
    ]
}

// ---- a raw HTTP/2 client ----

/// An HTTP/2 connection through h2's client, driven by a task of its own that ends (and closes
/// the socket) when this is dropped.
struct H2 {
    send: SendRequest<Bytes>,
    driver: JoinHandle<()>,
}

impl Drop for H2 {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// What a server answered on one stream.
#[derive(Debug)]
struct Answer {
    http: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    trailers: Option<HeaderMap>,
}

impl Answer {
    /// The gRPC status, from the trailers or, in a trailers-only answer, the headers.
    fn status(&self) -> tonic::Status {
        self.trailers
            .as_ref()
            .and_then(tonic::Status::from_header_map)
            .or_else(|| tonic::Status::from_header_map(&self.headers))
            .unwrap_or_else(|| panic!("no grpc-status in {self:?}"))
    }

    /// The `GetFlowResponse` of a successful call.
    fn flow(&self) -> GetFlowResponse {
        let status = self.status();
        assert_eq!(status.code(), Code::Ok, "{status:?}");
        assert!(self.body.len() > 5, "{self:?}");
        GetFlowResponse::decode(&self.body[5..]).expect("GetFlowResponse")
    }
}

impl H2 {
    async fn connect(addr: SocketAddr) -> Self {
        Self::connect_with(addr, &h2::client::Builder::new())
            .await
            .expect("HTTP/2 connection")
    }

    async fn connect_with(addr: SocketAddr, builder: &h2::client::Builder) -> Result<Self, String> {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let (send, connection) = builder.handshake(tcp).await.map_err(|e| e.to_string())?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self { send, driver })
    }

    /// Opens a stream to `path` with this `content-type` (none for `None`); its body is for the
    /// caller to send, and end.
    async fn open(
        &self,
        path: &str,
        content_type: Option<&str>,
    ) -> Result<(ResponseFuture, h2::SendStream<Bytes>), h2::Error> {
        let mut request = http::Request::builder()
            .method("POST")
            .uri(format!("http://cams-flows{path}"))
            .header("te", "trailers");
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let request = request.body(()).expect("request");
        self.send
            .clone()
            .ready()
            .await?
            .send_request(request, false)
    }

    /// A call whose body is `data`, one DATA frame each, the last with END_STREAM.
    async fn call(
        &self,
        path: &str,
        content_type: Option<&str>,
        data: &[Bytes],
    ) -> Result<Answer, h2::Error> {
        let (response, mut body) = self.open(path, content_type).await?;
        for (i, chunk) in data.iter().enumerate() {
            body.send_data(chunk.clone(), i + 1 == data.len())?;
        }
        answer(response).await
    }

    async fn get_flow(&self, flow_id: &str, space: &str) -> Result<Answer, h2::Error> {
        self.call(GET_FLOW, GRPC, &[get_flow(flow_id, space)]).await
    }
}

/// Reads a whole answer: headers, body, trailers.
async fn answer(response: ResponseFuture) -> Result<Answer, h2::Error> {
    let (parts, mut body) = response.await?.into_parts();
    let mut data = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await?;
    Ok(Answer {
        http: parts.status,
        headers: parts.headers,
        body: data.freeze(),
        trailers,
    })
}

/// Reads (and drops) what the server sends until it closes the connection; panics if it has
/// not within `bound`.
async fn closed_within(tcp: &mut TcpStream, bound: Duration, what: &str) {
    let started = Instant::now();
    let mut buf = [0_u8; 16 * 1024];
    loop {
        match tokio::time::timeout_at(started + bound, tcp.read(&mut buf)).await {
            Err(_) => panic!("{what}: still open after {bound:?}"),
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(_)) => {}
        }
    }
}

// ---- the streams ----

#[tokio::test]
async fn a_request_body_that_never_ends_is_answered_and_its_stream_freed() {
    let app = TestApp::builder()
        .config(|c| {
            c.call_timeout = ms(500);
            c.max_concurrent_streams = 2;
        })
        .spawn()
        .await;
    let conn = H2::connect(app.addr).await;

    // Two streams, all the connection may have, each with the length prefix of a 64-byte message
    // and 10 bytes of it, then nothing: no END_STREAM, and no grpc-timeout.
    let mut partial = BytesMut::new();
    partial.put_u8(0);
    partial.put_u32(64);
    partial.put_slice(&[0x0a; 10]);
    let partial = partial.freeze();
    let started = Instant::now();
    let mut pending = Vec::new();
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let (response, mut body) = conn.open(GET_FLOW, GRPC).await.expect("open");
        body.send_data(partial.clone(), false)
            .expect("part of a message");
        pending.push(response);
        bodies.push(body);
    }
    // Each is answered once call_timeout + 100 ms have passed since it arrived.
    for response in pending {
        let answer = within(
            ms(1_500),
            "a stream whose body never ends",
            answer(response),
        )
        .await
        .expect("an answer");
        let status = answer.status();
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
        assert_eq!(error_info(&status).reason, "DEADLINE_EXCEEDED");
    }
    assert!(
        started.elapsed() >= ms(600),
        "answered at its bound, not before: {:?}",
        started.elapsed()
    );

    // Their streams are free: two calls at once, on the same connection, while the client still
    // holds the two unfinished bodies.
    let calls = futures_util::future::join(
        conn.get_flow(FLOW, "after-1"),
        conn.get_flow(FLOW, "after-2"),
    );
    let (a, b) = within(ms(2_000), "calls after the unfinished streams", calls).await;
    for answer in [a, b] {
        assert_eq!(
            answer.expect("served").flow().flow.expect("flow").flow_id,
            FLOW
        );
    }
    drop(bodies);
}

// ---- the connections ----

#[tokio::test]
async fn a_connection_without_the_preface_is_closed_at_its_deadline() {
    let app = TestApp::builder()
        .config(|c| c.preface_timeout = ms(300))
        .spawn()
        .await;
    // A client that behaves, connected before the silent ones: its preface deadline passes
    // while they wait.
    let good = H2::connect(app.addr).await;

    // Taken before connecting, so that the server accepted the connections after it.
    let before = Instant::now();
    let mut silent = TcpStream::connect(app.addr).await.expect("connect");
    let mut partial = TcpStream::connect(app.addr).await.expect("connect");
    partial
        .write_all(&PREFACE[..10])
        .await
        .expect("part of the preface");
    // Meanwhile the others are served.
    app.get_flow(FLOW, "meanwhile")
        .await
        .expect("served meanwhile");
    good.get_flow(FLOW, "meanwhile")
        .await
        .expect("served meanwhile")
        .flow();

    closed_within(&mut silent, ms(2_000), "a connection that sent nothing").await;
    let took = before.elapsed();
    assert!(
        took >= ms(300),
        "closed at the deadline, not before: {took:?}"
    );
    closed_within(
        &mut partial,
        ms(2_000),
        "a connection that sent part of the preface",
    )
    .await;

    // The deadline is for the preface only: the good connections live on.
    good.get_flow(FLOW, "after")
        .await
        .expect("the good connection still serves")
        .flow();
    app.get_flow(FLOW, "after").await.expect("still served");
}

#[tokio::test]
async fn the_connection_cap_holds_and_frees_as_connections_close() {
    let app = TestApp::builder()
        .config(|c| c.max_connections = 3)
        .spawn()
        .await;
    // The test app's own client is the first connection; two more are served.
    app.get_flow(FLOW, "first").await.expect("first connection");
    let second = H2::connect(app.addr).await;
    let third = H2::connect(app.addr).await;
    for conn in [&second, &third] {
        conn.get_flow(FLOW, "t").await.expect("served").flow();
    }

    // A fourth is closed at once (the preface deadline is the default 10 s, so this is the cap).
    let mut fourth = TcpStream::connect(app.addr)
        .await
        .expect("the kernel accepts");
    let _ = fourth.write_all(PREFACE).await;
    closed_within(&mut fourth, ms(2_000), "a connection past the cap").await;

    // Those within the cap are unaffected.
    app.get_flow(FLOW, "first").await.expect("first connection");
    third.get_flow(FLOW, "t").await.expect("served").flow();

    // Once one closes, a new one is served; the server learns of the close a moment later, and
    // a connection refused meanwhile is refused at once, so trying again is cheap.
    drop(second);
    let answer = wait::until(
        ms(3_000),
        "a new connection served after one closed",
        || async {
            match H2::connect_with(app.addr, &h2::client::Builder::new()).await {
                Ok(conn) => conn.get_flow(FLOW, "new").await.map_err(|e| e.to_string()),
                Err(e) => Err(e),
            }
        },
        Result::is_ok,
    )
    .await
    .expect("served");
    answer.flow();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_priority_flood_closes_its_connection_and_nobody_elses() {
    let app = TestApp::builder().spawn().await;

    // A well-behaved client keeps calling on its own connection throughout.
    let flood_over = Arc::new(AtomicBool::new(false));
    let well_behaved = {
        let client = app.client.clone();
        let flood_over = Arc::clone(&flood_over);
        tokio::spawn(async move {
            loop {
                let over = flood_over.load(Ordering::SeqCst);
                client
                    .clone()
                    .get_flow(GetFlowRequest {
                        flow_id: FLOW.into(),
                        cust_space_id: "steady".into(),
                    })
                    .await
                    .expect("a well-behaved client is answered during the flood");
                if over {
                    return;
                }
            }
        })
    };

    // The preface, SETTINGS, then 5000 PRIORITY frames (stream 1, depending on stream 0).
    let mut flood = PREFACE.to_vec();
    flood.extend(frame_header(0, 0x4, 0, 0));
    for _ in 0..5_000 {
        flood.extend(frame_header(5, 0x2, 0, 1));
        flood.extend([0, 0, 0, 0, 15]);
    }
    let mut tcp = TcpStream::connect(app.addr).await.expect("connect");
    // The server may close before it has read all of it.
    let _ = within(ms(2_000), "writing the flood", tcp.write_all(&flood)).await;
    closed_within(&mut tcp, ms(2_000), "a connection flooding PRIORITY frames").await;

    flood_over.store(true, Ordering::SeqCst);
    within(ms(5_000), "the well-behaved client", well_behaved)
        .await
        .expect("task");
    app.get_flow(FLOW, "after").await.expect("served after");
}

// ---- what a request carries ----

#[tokio::test]
async fn a_wrong_content_type_is_refused_with_415_before_anything_is_done() {
    let app = TestApp::builder().spawn().await;
    let conn = H2::connect(app.addr).await;
    for (content_type, flow) in [
        (Some("application/json"), "sim:ok:json"),
        (Some("text/plain"), "sim:ok:text"),
        (None, "sim:ok:none"),
    ] {
        let answer = conn
            .call(GET_FLOW, content_type, &[get_flow(flow, "t")])
            .await
            .expect("an answer");
        assert_eq!(
            answer.http,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}: {answer:?}"
        );
    }
    // The same request as gRPC is served: it was only the content type.
    conn.call(GET_FLOW, GRPC, &[get_flow("sim:ok:grpc", "t")])
        .await
        .expect("an answer")
        .flow();
    let stats = app.sandbox_stats().await;
    assert_eq!(stats.accepted, 1, "{stats:?}");
    assert_eq!(
        stats.calls_by_flow.get("sim:ok:grpc"),
        Some(&1),
        "{stats:?}"
    );
}

#[tokio::test]
async fn invalid_utf8_is_invalid_argument_naming_the_field() {
    let app = TestApp::builder().spawn().await;
    let conn = H2::connect(app.addr).await;
    for (body, field) in [
        (get_flow_raw(&[b'1', 0xff, 0xfe], b"t"), "flow_id"),
        (
            get_flow_raw(FLOW.as_bytes(), &[0xc3, 0x28]),
            "cust_space_id",
        ),
    ] {
        let status = conn
            .call(GET_FLOW, GRPC, &[body])
            .await
            .expect("an answer")
            .status();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        let info = error_info(&status);
        assert_eq!(info.reason, "INVALID_ARGUMENT");
        assert_eq!(info.domain, "cams-flows");
        let bad = details(&status).bad_request().cloned().expect("BadRequest");
        assert_eq!(bad.field_violations.len(), 1, "{bad:?}");
        assert_eq!(bad.field_violations[0].field, field, "{bad:?}");
    }
    // The hand encoding is right: with valid bytes, the same request is served.
    conn.call(GET_FLOW, GRPC, &[get_flow_raw(FLOW.as_bytes(), b"t")])
        .await
        .expect("an answer")
        .flow();
    assert_eq!(app.sandbox_stats().await.accepted, 1);
}

#[tokio::test]
async fn a_unary_request_with_two_messages_is_refused() {
    let app = TestApp::builder().spawn().await;
    let conn = H2::connect(app.addr).await;
    let one = get_flow(FLOW, "a");
    let two = get_flow(FLOW, "b");
    let together = Bytes::from([one.as_ref(), two.as_ref()].concat());
    // Both messages in one DATA frame, and each in its own.
    for data in [vec![together], vec![one.clone(), two]] {
        let status = conn
            .call(GET_FLOW, GRPC, &data)
            .await
            .expect("an answer")
            .status();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(error_info(&status).reason, "INVALID_ARGUMENT");
    }
    assert_eq!(app.sandbox_stats().await.accepted, 0);
    conn.call(GET_FLOW, GRPC, &[one])
        .await
        .expect("an answer")
        .flow();
}

// ---- the shutdown ----

#[tokio::test]
async fn calls_still_running_when_the_drain_runs_out_are_told_to_go_elsewhere() {
    let mut app = TestApp::builder()
        .config(|c| c.drain_timeout = ms(300))
        .spawn()
        .await;
    let other = tonic::transport::Channel::from_shared(format!("http://{}", app.addr))
        .expect("uri")
        .connect()
        .await
        .expect("second connection");
    // Calls the simulated CAMS holds for 5 s, on two connections.
    let mut calls = Vec::new();
    for i in 0..4 {
        let channel = if i % 2 == 0 {
            app.channel.clone()
        } else {
            other.clone()
        };
        calls.push(tokio::spawn(async move {
            FlowServiceClient::new(channel)
                .get_flow(GetFlowRequest {
                    flow_id: format!("sim:slow:5000:drain-{i}"),
                    cust_space_id: "t".into(),
                })
                .await
        }));
    }
    // And one whose body the server is still reading (it would have 10 s).
    let raw = H2::connect(app.addr).await;
    let (unread, _body) = raw.open(GET_FLOW, GRPC).await.expect("open");
    wait::until(
        ms(5_000),
        "the slow calls at CAMS",
        || async {
            app.sandbox_requests()
                .await
                .iter()
                .filter(|r| {
                    r.params
                        .iter()
                        .any(|(_, v)| v.starts_with("sim:slow:5000:drain-"))
                })
                .count()
        },
        |&held| held == calls.len(),
    )
    .await;

    let started = Instant::now();
    app.trigger_shutdown();
    let mut statuses = Vec::new();
    for call in calls {
        let result = within(ms(3_000), "an in-flight call at the drain's end", call)
            .await
            .expect("task");
        statuses.push(result.expect_err("cut short by the drain"));
    }
    let unread = within(ms(3_000), "a request still being read", answer(unread))
        .await
        .expect("an answer");
    statuses.push(unread.status());
    assert!(
        started.elapsed() >= ms(250),
        "answered at the drain's end, not its start: {:?}",
        started.elapsed()
    );
    for status in &statuses {
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert_eq!(error_info(status).reason, "SHUTTING_DOWN", "{status:?}");
        let retry = details(status)
            .retry_info()
            .cloned()
            .expect("RetryInfo")
            .retry_delay
            .expect("delay");
        let pushback = status
            .metadata()
            .get("grpc-retry-pushback-ms")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u128>().ok())
            .unwrap_or_else(|| panic!("no grpc-retry-pushback-ms in {status:?}"));
        assert_eq!(pushback, retry.as_millis(), "{status:?}");
    }
    within(ms(3_000), "the server stopping", app.stop())
        .await
        .expect("clean stop");
    assert!(
        started.elapsed() < ms(3_000),
        "stopped in {:?}",
        started.elapsed()
    );
}

/// A `Health/Watch` of the gateway's service that has reported SERVING: it stays open until
/// the status changes or the server ends it.
async fn serving_watch(app: &TestApp) -> tonic::Streaming<HealthCheckResponse> {
    let mut watch = HealthClient::new(app.channel.clone())
        .watch(HealthCheckRequest {
            service: "cams.flows.v1.FlowService".into(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = within(ms(2_000), "the first update", watch.message())
        .await
        .expect("stream")
        .expect("an update");
    assert_eq!(first.status(), ServingStatus::Serving);
    watch
}

#[tokio::test]
async fn a_health_watch_does_not_hold_the_shutdown_open() {
    let mut app = TestApp::builder()
        .config(|c| c.drain_timeout = Duration::from_secs(10))
        .spawn()
        .await;
    let mut watch = serving_watch(&app).await;

    let started = Instant::now();
    app.trigger_shutdown();
    let update = within(ms(2_000), "NOT_SERVING", watch.message())
        .await
        .expect("stream")
        .expect("an update");
    assert_eq!(update.status(), ServingStatus::NotServing);
    let end = within(ms(2_000), "the end of the watch", watch.message())
        .await
        .expect_err("the watch ends");
    assert_eq!(end.code(), Code::Unavailable, "{end:?}");
    within(ms(2_000), "the server stopping", app.stop())
        .await
        .expect("clean stop");
    assert!(
        started.elapsed() < ms(2_000),
        "stopped in {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_connection_held_open_by_a_watch_goes_away_at_its_maximum_age() {
    let app = TestApp::builder()
        .config(|c| c.max_connection_age = Some(ms(1_000)))
        .spawn()
        .await;
    let mut watch = serving_watch(&app).await;
    // Nothing changes, so the watch would stay open for ever: at about a second (±10 %) the
    // connection goes away and the watch ends with a status the client can act on.
    let started = Instant::now();
    let end = within(ms(3_000), "the end of the watch", watch.message())
        .await
        .expect_err("the watch ends");
    assert_eq!(end.code(), Code::Unavailable, "{end:?}");
    // The connection was made before `started`, so 1.1 s is the latest it may be told to go
    // away; 400 ms more for that to reach the client on a loaded host.
    assert!(
        started.elapsed() <= ms(1_500),
        "ended after {:?}",
        started.elapsed()
    );
    // The client connects again and is served.
    app.call("sim:ok:after-age", "")
        .await
        .expect("served on a new connection");
}

// ---- the binary ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_streams_cut_mid_stream_leave_no_panic() {
    let ServedSandbox {
        mut running, addr, ..
    } = serve_sandbox(&[]);
    // A client that reads nothing: 64 bytes of window per stream, never given back.
    let mut stingy = h2::client::Builder::new();
    stingy.initial_window_size(64);
    let requests: Vec<Bytes> = (0..8).map(|_| list_services()).collect();
    let health = grpc_frame(
        &HealthCheckRequest {
            service: String::new(),
        }
        .encode_to_vec(),
    );

    for i in 0..50 {
        let conn = H2::connect_with(addr, &stingy).await.expect("connect");
        // v1 and v1alpha (whose requests are encoded alike), each cut both ways below.
        let path = REFLECTION[i / 2 % 2];
        let (response, mut body) = conn.open(path, GRPC).await.expect("open");
        for request in &requests {
            body.send_data(request.clone(), false).expect("request");
        }
        // The server is mid-answer: its first bytes came, and the rest wait for a window.
        let mut answers = within(ms(5_000), "reflection headers", response)
            .await
            .expect("headers")
            .into_body();
        within(ms(5_000), "the first answer's bytes", answers.data())
            .await
            .expect("data")
            .expect("bytes");
        for request in &requests {
            body.send_data(request.clone(), false).expect("request");
        }
        if i % 2 == 1 {
            // The stream is reset; the connection goes on, and the reset is seen before the
            // next call on it.
            body.send_reset(h2::Reason::CANCEL);
            let answer = within(
                ms(5_000),
                "a call after the reset",
                conn.call(HEALTH_CHECK, GRPC, std::slice::from_ref(&health)),
            )
            .await
            .expect("an answer");
            assert_eq!(answer.status().code(), Code::Ok);
        }
        // Then the connection is gone, its stream open and unread.
        drop((answers, body, conn));
    }

    // It keeps serving: GetFlow, and reflection.
    let endpoint = tonic::transport::Channel::from_shared(format!("http://{addr}")).expect("uri");
    let channel = within(ms(5_000), "a new connection", endpoint.connect())
        .await
        .expect("connect");
    let mut client = FlowServiceClient::new(channel.clone());
    let call = client.get_flow(GetFlowRequest {
        flow_id: FLOW.into(),
        cust_space_id: "t".into(),
    });
    within(ms(5_000), "a call after the cut streams", call)
        .await
        .expect("served after the cut streams");
    let mut reflection = v1::server_reflection_client::ServerReflectionClient::new(channel.clone())
        .server_reflection_info(tokio_stream::iter([v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            )),
        }]))
        .await
        .expect("reflection")
        .into_inner();
    within(ms(5_000), "a reflection answer", reflection.message())
        .await
        .expect("stream")
        .expect("an answer");
    drop((reflection, channel));

    running.signal("TERM");
    let status = running.exit_within(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    let output = running.all_output();
    assert!(output.contains("\"stopped\""), "the whole run was captured");
    for needle in ["panicked", "a task panicked"] {
        let found: Vec<&str> = output.lines().filter(|l| l.contains(needle)).collect();
        assert!(
            found.is_empty(),
            "{needle:?} in the gateway's output, {} times:\n{}",
            found.len(),
            found.join("\n")
        );
    }
}

// ---- callers ----

fn quota(rps: f64, burst: u32) -> Quota {
    Quota {
        rps,
        burst: NonZeroU32::new(burst).expect("non-zero"),
    }
}

/// API key auth with these keys (name, key), each allowed every tenant.
fn api_keys(keys: &[(&str, &str)], callers: CallerQuotas) -> AuthConfig {
    AuthConfig {
        mode: AuthMode::ApiKey,
        keys: keys
            .iter()
            .map(|(name, key)| ApiKey {
                name: (*name).into(),
                sha256: sha2::Sha256::digest(key.as_bytes()).into(),
                tenants: TenantSet::parse(&["*".to_owned()]).expect("pattern"),
            })
            .collect(),
        identities: HashMap::new(),
        callers,
        ..AuthConfig::none()
    }
}

async fn call_as(
    client: &FlowServiceClient<tonic::transport::Channel>,
    key: &str,
    flow_id: &str,
    space: &str,
    timeout: Option<Duration>,
) -> Result<GetFlowResponse, tonic::Status> {
    let mut request = tonic::Request::new(GetFlowRequest {
        flow_id: flow_id.into(),
        cust_space_id: space.into(),
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("ascii"),
    );
    if let Some(timeout) = timeout {
        request.set_timeout(timeout);
    }
    client
        .clone()
        .get_flow(request)
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn a_caller_over_its_own_rate_is_refused_and_others_are_not() {
    const LIMITED: &str = "cf_limited_key";
    const FREE: &str = "cf_free_key";
    let app = TestApp::builder()
        .auth(api_keys(
            &[("limited", LIMITED), ("free", FREE)],
            CallerQuotas {
                default: None,
                by_name: HashMap::from([("limited".to_owned(), quota(1.0, 2))]),
                ..CallerQuotas::default()
            },
        ))
        .spawn()
        .await;
    // Each call for a tenant of its own: only the caller's limit applies.
    for i in 0..2 {
        call_as(&app.client, LIMITED, FLOW, &format!("l-{i}"), None)
            .await
            .expect("within the burst");
    }
    let status = call_as(&app.client, LIMITED, FLOW, "l-2", None)
        .await
        .expect_err("the third quick call");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let info = error_info(&status);
    assert_eq!(info.reason, "CALLER_RATE_LIMITED");
    assert_eq!(info.metadata.get("caller"), Some(&"limited".to_owned()));
    let d = details(&status);
    let violations = d.quota_failure().cloned().expect("QuotaFailure").violations;
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].subject, "caller:limited");
    let retry = d
        .retry_info()
        .cloned()
        .expect("RetryInfo")
        .retry_delay
        .expect("delay");
    assert!(retry > Duration::ZERO && retry <= ms(1_000), "{retry:?}");
    assert!(status.metadata().contains_key("grpc-retry-pushback-ms"));

    // The other key is unaffected.
    for i in 0..5 {
        call_as(&app.client, FREE, FLOW, &format!("f-{i}"), None)
            .await
            .expect("another caller");
    }
    assert_eq!(app.sandbox_stats().await.accepted, 2 + 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_rotating_tenants_cannot_starve_another_caller() {
    const ROTATOR: &str = "cf_rotator_key";
    const STEADY: &str = "cf_steady_key";
    let app = TestApp::builder()
        .sandbox_rps(5)
        .limits(LimitsConfig::default())
        .auth(api_keys(
            &[("rotator", ROTATOR), ("steady", STEADY)],
            CallerQuotas::default(),
        ))
        .spawn()
        .await;
    let end = Instant::now() + Duration::from_secs(4);

    // One caller floods from several tasks, each call for a new tenant and a new flow.
    let mut rotators = Vec::new();
    for task in 0..12 {
        let client = app.client.clone();
        rotators.push(tokio::spawn(async move {
            let mut results = Vec::new();
            let mut i = 0;
            while Instant::now() < end {
                let flow = format!("sim:ok:rotator-{task}-{i}");
                let space = format!("rot-{task}-{i}");
                results.push(
                    call_as(&client, ROTATOR, &flow, &space, None)
                        .await
                        .map(drop),
                );
                i += 1;
            }
            results
        }));
    }

    // The other sends one uncached call every 500 ms, each with a 3 s deadline, whether or not
    // the one before has been answered.
    let mut ticks = tokio::time::interval(ms(500));
    let mut steady = Vec::new();
    while Instant::now() < end {
        ticks.tick().await;
        let client = app.client.clone();
        let n = steady.len();
        steady.push(tokio::spawn(async move {
            let flow = format!("sim:ok:steady-{n}");
            let started = Instant::now();
            let result = call_as(&client, STEADY, &flow, "steady", Some(ms(3_000))).await;
            (flow, result, started.elapsed())
        }));
    }
    assert!(steady.len() >= 8, "{} steady calls", steady.len());
    for call in steady {
        let (flow, result, took) = within(ms(5_000), "a steady call", call)
            .await
            .expect("task");
        let response = result.unwrap_or_else(|status| {
            panic!("the steady caller's {flow} failed after {took:?}: {status:?}")
        });
        assert_eq!(response.flow.expect("flow").flow_id, flow);
    }

    let (mut served, mut refused) = (0, 0);
    for task in rotators {
        for result in within(ms(10_000), "the rotating caller", task)
            .await
            .expect("task")
        {
            match result {
                Ok(()) => served += 1,
                Err(status) => {
                    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                    assert_eq!(error_info(&status).reason, "ACCOUNT_RATE_LIMITED");
                    refused += 1;
                }
            }
        }
    }
    // The flood pressed the quota: it was served within its share, and refused past it.
    assert!(served > 0, "the rotating caller is served too");
    assert!(refused > 0, "the rotating caller met the account quota");
    let stats = app.sandbox_stats().await;
    assert_eq!(stats.throttled, 0, "{stats:?}");
    assert!(stats.max_accepted_per_sliding_second <= 5, "{stats:?}");
}
