//! What operators see: `/metrics` on the admin listener, read with a parser of the exposition
//! format after a known mix of calls; the series a flood of tenants cannot add; the spans an OTLP
//! collector receives, and the trace context CAMS does (or does not) receive; the trace id on the
//! call's log line.

use std::{
    collections::{BTreeMap, BTreeSet},
    num::NonZeroU32,
    time::Duration,
};

use cams_flows::{
    domain::TenantId,
    limits::Quota,
    pb::{GetFlowPreviewUrlRequest, GetFlowRequest},
    telemetry::trace::{OtlpExport, RootSampler, SamplerChoice, TracingConfig},
};
use futures_util::future::join_all;
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind};
use tonic::Code;

use crate::support::{
    DOC_FLOW, TestApp, cache_header,
    otlp::Receiver,
    process::{Running, binary},
    wait,
};

const SAMPLE_FLOW: &str = "100000000000002";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

/// A scrape, read as Prometheus reads it: `(name, sorted labels) → value`.
struct Scrape(BTreeMap<(String, String), f64>);

impl Scrape {
    fn parse(text: &str) -> Self {
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        let scrape = prometheus_parse::Scrape::parse(lines).expect("a valid exposition");
        let mut series = BTreeMap::new();
        for sample in scrape.samples {
            let labels = sample.labels.to_string();
            match sample.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => {
                    series.insert((sample.metric, labels), v);
                }
                prometheus_parse::Value::Histogram(buckets) => {
                    for bucket in buckets {
                        let le = if bucket.less_than.is_infinite() {
                            "+Inf".to_owned()
                        } else {
                            bucket.less_than.to_string()
                        };
                        let le = if labels.is_empty() {
                            format!("le=\"{le}\"")
                        } else {
                            format!("{labels},le=\"{le}\"")
                        };
                        series.insert((format!("{}_bucket", sample.metric), le), bucket.count);
                    }
                }
                prometheus_parse::Value::Summary(_) => panic!("no summaries are exported"),
            }
        }
        Self(series)
    }

    /// The value of the series `name` whose labels include all of `labels`; panics unless
    /// exactly one matches.
    #[track_caller]
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let found: Vec<f64> = self
            .0
            .iter()
            .filter(|((n, l), _)| n == name && wanted.iter().all(|w| l.split(',').any(|p| p == w)))
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
        found[0]
    }

    /// Every series: names and labels, without values.
    fn series(&self) -> BTreeSet<(String, String)> {
        self.0.keys().cloned().collect()
    }
}

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).expect("tenant")
}

/// A gateway with the metrics on, a cache, and one named tenant that may make one call.
async fn metered_app() -> TestApp {
    TestApp::builder()
        .admin()
        .config(|c| {
            c.cache.ttl = Duration::from_secs(60);
            c.limits.tenants.insert(
                tenant("t-limited"),
                Quota {
                    rps: 0.001,
                    burst: NonZeroU32::new(1).expect("non-zero"),
                },
            );
        })
        .spawn()
        .await
}

#[tokio::test]
async fn metrics_count_a_known_mix_of_calls() {
    let app = metered_app().await;
    // A miss, then two hits.
    for expected in ["miss", "hit", "hit"] {
        let (_, source) = app.call(SAMPLE_FLOW, "t-a").await.expect("served");
        assert_eq!(source, expected);
    }
    // The preview URL of the cached flow: from GetFlow's answer, no CAMS call.
    let preview = app
        .client
        .clone()
        .get_flow_preview_url(GetFlowPreviewUrlRequest {
            flow_id: SAMPLE_FLOW.into(),
            cust_space_id: "t-a".into(),
        })
        .await
        .expect("preview URL");
    assert_eq!(cache_header(preview.metadata()), "hit");
    // CAMS refuses: PERMISSION_DENIED, CAMS's Ram.PermissionDeny.
    let denied = app.get_flow("sim:error:Ram.PermissionDeny", "t-a").await;
    assert_eq!(denied.expect_err("denied").code(), Code::PermissionDenied);
    // The named tenant's one call, then its refusal.
    app.get_flow(SAMPLE_FLOW, "t-limited")
        .await
        .expect("first call");
    let limited = app.get_flow(SAMPLE_FLOW, "t-limited").await;
    assert_eq!(
        limited.expect_err("limited").code(),
        Code::ResourceExhausted
    );
    // An invalid argument.
    let invalid = app.get_flow("", "t-a").await;
    assert_eq!(invalid.expect_err("invalid").code(), Code::InvalidArgument);

    let (content_type, text) = app.scrape_as(None).await;
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let m = Scrape::parse(&text);
    let grpc = [
        ("grpc_service", "cams.flows.v1.FlowService"),
        ("grpc_method", "GetFlow"),
        ("grpc_type", "unary"),
    ];
    assert_eq!(m.value("grpc_server_started_total", &grpc), 7.0);
    let handled = |code| {
        let mut labels = grpc.to_vec();
        labels.push(("grpc_code", code));
        m.value("grpc_server_handled_total", &labels)
    };
    assert_eq!(handled("OK"), 4.0);
    assert_eq!(handled("PermissionDenied"), 1.0);
    assert_eq!(handled("ResourceExhausted"), 1.0);
    assert_eq!(handled("InvalidArgument"), 1.0);
    assert_eq!(handled("Unavailable"), 0.0);
    assert_eq!(
        m.value(
            "grpc_server_handling_seconds_bucket",
            &[("grpc_method", "GetFlow"), ("le", "+Inf")]
        ),
        7.0
    );
    // Each RPC has its own series.
    let preview = [("grpc_method", "GetFlowPreviewUrl"), ("grpc_code", "OK")];
    assert_eq!(m.value("grpc_server_handled_total", &preview), 1.0);
    assert_eq!(
        m.value("grpc_server_started_total", &[("grpc_method", "ListFlows")]),
        0.0
    );

    let cache = |action, result| {
        m.value(
            "cams_flows_cache_results_total",
            &[("action", action), ("result", result)],
        )
    };
    assert_eq!(cache("GetFlow", "miss"), 2.0);
    assert_eq!(cache("GetFlow", "hit"), 2.0);
    assert_eq!(cache("GetFlow", "stale"), 0.0);
    assert_eq!(cache("GetFlowPreviewUrl", "hit"), 1.0);
    assert_eq!(cache("GetFlowPreviewUrl", "miss"), 0.0);

    let rejected = |reason, tenant| {
        m.value(
            "cams_flows_rejections_total",
            &[("reason", reason), ("tenant", tenant)],
        )
    };
    assert_eq!(rejected("TENANT_RATE_LIMITED", "t-limited"), 1.0);
    assert_eq!(rejected("TENANT_RATE_LIMITED", "_other"), 0.0);
    assert_eq!(rejected("INVALID_ARGUMENT", "_other"), 1.0);

    let attempts = |action, code| {
        m.value(
            "cams_flows_upstream_attempts_total",
            &[("action", action), ("code", code)],
        )
    };
    assert_eq!(attempts("GetFlow", "OK"), 2.0);
    assert_eq!(attempts("GetFlow", "Ram.PermissionDeny"), 1.0);
    assert_eq!(attempts("GetFlow", "other"), 0.0);
    assert_eq!(attempts("GetFlowPreviewUrl", "OK"), 0.0);
    assert_eq!(
        m.value(
            "cams_flows_upstream_attempt_duration_seconds_bucket",
            &[("action", "GetFlow"), ("result", "error"), ("le", "+Inf")]
        ),
        1.0
    );
    let account = |name, action| m.value(name, &[("action", action)]);
    assert_eq!(
        account("cams_flows_account_slots_acquired_total", "GetFlow"),
        3.0
    );
    assert_eq!(
        account(
            "cams_flows_account_slots_acquired_total",
            "GetFlowPreviewUrl"
        ),
        0.0
    );
    assert_eq!(account("cams_flows_account_slots_in_use", "GetFlow"), 0.0);
    assert_eq!(account("cams_flows_account_calls_waiting", "GetFlow"), 0.0);
    assert_eq!(account("cams_flows_account_quota_rps", "GetFlow"), 10_000.0);
    // Each action has its own budget: the others keep the default 5.
    for action in ["ListFlow", "GetFlowPreviewUrl", "GetFlowJSONAssest"] {
        assert_eq!(account("cams_flows_account_quota_rps", action), 5.0);
    }
    assert_eq!(m.value("cams_flows_calls_in_flight", &[]), 0.0);
    assert_eq!(m.value("cams_flows_calls_max_in_flight", &[]), 1024.0);
    assert_eq!(m.value("cams_flows_upstream_retries_total", &[]), 0.0);
    // Fixed keys never expire: no lifetime to show.
    assert!(!text.contains("cams_flows_credentials_remaining_seconds"));
    // The simulated CAMS's clock is the machine's.
    assert!(m.value("cams_flows_upstream_clock_skew_seconds", &[]).abs() < 5.0);
    // Metrics never carry a secret.
    assert!(!text.contains(crate::support::KEY_SECRET));

    // OpenMetrics when the scraper asks for it, as Prometheus does.
    let (content_type, open) = app
        .scrape_as(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        ))
        .await;
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(open.ends_with("# EOF\n"));
    assert!(open.contains("grpc_server_started_total{"));
}

#[tokio::test]
async fn a_thousand_tenants_add_no_series() {
    let app = metered_app().await;
    // Every kind of call once, so that every series that can appear has.
    app.call(SAMPLE_FLOW, "warm").await.expect("miss");
    app.call(SAMPLE_FLOW, "warm").await.expect("hit");
    app.get_flow("", "warm").await.expect_err("invalid");
    let before = Scrape::parse(&app.scrape().await).series();

    for batch in 0..10 {
        let calls = (0..100).map(|n| {
            let app = &app;
            async move {
                let i = batch * 100 + n;
                let space = format!("space-{i}");
                // Half are served (each tenant misses once), half refused before the cache.
                let flow = if i % 2 == 0 { SAMPLE_FLOW } else { "" };
                let _ = app.get_flow(flow, &space).await;
            }
        });
        join_all(calls).await;
    }
    let after = Scrape::parse(&app.scrape().await);
    assert_eq!(before, after.series());
    assert_eq!(
        after.value(
            "cams_flows_rejections_total",
            &[("reason", "INVALID_ARGUMENT"), ("tenant", "_other")]
        ),
        501.0
    );
}

/// A gateway exporting its spans to `receiver`.
async fn traced_app(receiver: &Receiver, propagate_upstream: bool) -> TestApp {
    let endpoint = receiver.endpoint();
    TestApp::builder()
        .config(move |c| {
            c.tracing = TracingConfig {
                export: Some(OtlpExport {
                    endpoint,
                    service_name: "cams-flows-test".to_owned(),
                    sampler: SamplerChoice::ParentBased(RootSampler::AlwaysOn),
                }),
                propagate_upstream,
            };
        })
        .spawn()
        .await
}

/// A GetFlow request sent as part of the trace `TRACE_ID`, from the span `PARENT_ID`.
fn traced_request(flow_id: &str) -> tonic::Request<GetFlowRequest> {
    let mut request = tonic::Request::new(GetFlowRequest {
        flow_id: flow_id.into(),
        cust_space_id: "cams-kei1".into(),
    });
    let metadata = request.metadata_mut();
    metadata.insert(
        "traceparent",
        format!("00-{TRACE_ID}-{PARENT_ID}-01")
            .parse()
            .expect("ascii"),
    );
    metadata.insert("tracestate", "vendor=opaque".parse().expect("ascii"));
    request
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    let value = span
        .attributes
        .iter()
        .find(|a| a.key == key)?
        .value
        .as_ref()?;
    match value.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        Value::DoubleValue(d) => Some(d.to_string()),
        Value::BoolValue(b) => Some(b.to_string()),
        _ => None,
    }
}

#[tokio::test]
async fn a_traced_call_is_a_server_span_under_the_callers_with_a_client_span_per_attempt() {
    let receiver = Receiver::start().await;
    let app = traced_app(&receiver, true).await;
    app.client
        .clone()
        .get_flow(traced_request(SAMPLE_FLOW))
        .await
        .expect("served");
    let upstream = app.sandbox_requests().await;
    // The drain's end flushes the spans: nothing to wait for after it.
    app.stop().await.expect("stopped");

    let spans = receiver.spans();
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .unwrap_or_else(|| panic!("a server span in {spans:?}"));
    assert_eq!(hex::encode(&server.trace_id), TRACE_ID);
    assert_eq!(hex::encode(&server.parent_span_id), PARENT_ID);
    assert_eq!(server.trace_state, "vendor=opaque");
    assert_eq!(server.name, "cams.flows.v1.FlowService/GetFlow");
    assert_eq!(
        attribute(server, "rpc.system.name").as_deref(),
        Some("grpc")
    );
    assert_eq!(attribute(server, "rpc.status_code").as_deref(), Some("OK"));
    assert_eq!(
        attribute(server, "cams_flows.tenant").as_deref(),
        Some("cams-kei1")
    );
    assert_eq!(
        attribute(server, "cams_flows.cache.result").as_deref(),
        Some("miss")
    );
    assert!(attribute(server, "cams_flows.account.wait_ms").is_some());

    let client = spans
        .iter()
        .find(|s| s.kind == SpanKind::Client as i32)
        .unwrap_or_else(|| panic!("a client span in {spans:?}"));
    assert_eq!(client.trace_id, server.trace_id);
    assert_eq!(client.parent_span_id, server.span_id);
    assert_eq!(attribute(client, "cams.code").as_deref(), Some("OK"));
    assert_eq!(
        attribute(client, "cams_flows.attempt").as_deref(),
        Some("1")
    );
    assert!(attribute(client, "cams.request_id").is_some_and(|id| !id.is_empty()));

    // CAMS got the context, as the client span's child.
    let sent = upstream
        .iter()
        .find_map(|r| r.traceparent.clone())
        .expect("CAMS received a traceparent");
    assert_eq!(
        sent,
        format!("00-{TRACE_ID}-{}-01", hex::encode(&client.span_id))
    );
}

#[tokio::test]
async fn the_trace_context_stays_in_unless_propagation_is_on() {
    let receiver = Receiver::start().await;
    let app = traced_app(&receiver, false).await;
    app.client
        .clone()
        .get_flow(traced_request(SAMPLE_FLOW))
        .await
        .expect("served");
    // A CAMS failure marks the attempt's span as an error.
    let _ = app
        .client
        .clone()
        .get_flow(traced_request("sim:error:ServiceUnavailable"))
        .await
        .expect_err("unavailable");
    let upstream = app.sandbox_requests().await;
    app.stop().await.expect("stopped");

    assert_eq!(upstream.len(), 2);
    assert!(
        upstream.iter().all(|r| r.traceparent.is_none()),
        "{upstream:?}"
    );
    let spans = receiver.spans();
    let failed = spans
        .iter()
        .find(|s| attribute(s, "cams.code").as_deref() == Some("ServiceUnavailable"))
        .unwrap_or_else(|| panic!("the failed attempt's span in {spans:?}"));
    assert_eq!(
        attribute(failed, "error.type").as_deref(),
        Some("ServiceUnavailable")
    );
    assert!(spans.iter().any(|s| s.kind == SpanKind::Server as i32
        && attribute(s, "rpc.status_code").as_deref() == Some("UNAVAILABLE")));
}

/// The real binary: `--admin-listen` serves /metrics, OTEL_EXPORTER_OTLP_ENDPOINT turns traces
/// on, the call's log line carries its trace id, and SIGTERM flushes the spans.
#[tokio::test]
async fn the_binary_logs_the_trace_id_and_flushes_its_spans_on_shutdown() {
    let receiver = Receiver::start().await;
    let mut running = Running::start(
        binary()
            .args([
                "serve",
                "--sandbox",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
            ])
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
            .env("OTEL_SERVICE_NAME", "cams-flows-e2e"),
    );
    let admin = running.wait_for("admin listener");
    let admin = admin["addr"].as_str().expect("admin addr").to_owned();
    let listening = running.wait_for("\"listening\"");
    let addr = listening["addr"].as_str().expect("addr").to_owned();

    let mut client =
        cams_flows::pb::flow_service_client::FlowServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
    let mut request = traced_request(DOC_FLOW);
    request.get_mut().cust_space_id = "cams-kei1".into();
    client.get_flow(request).await.expect("served");
    let line = running.wait_for("\"served\"");
    assert_eq!(line["trace_id"], TRACE_ID, "{line}");
    let span_id = line["span_id"].as_str().expect("span_id").to_owned();
    assert_eq!(span_id.len(), 16);

    let metrics = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    let m = Scrape::parse(&metrics);
    assert_eq!(
        m.value(
            "cams_flows_cache_results_total",
            &[("action", "GetFlow"), ("result", "miss")]
        ),
        1.0
    );

    running.signal("TERM");
    let status = tokio::task::spawn_blocking(move || {
        let status = running.exit_within(Duration::from_secs(30));
        (status, running)
    })
    .await
    .expect("join");
    assert!(status.0.success(), "{}", status.1.output());
    let spans = receiver.spans();
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .unwrap_or_else(|| panic!("the call's span was flushed: {spans:?}"));
    assert_eq!(hex::encode(&server.trace_id), TRACE_ID);
    assert_eq!(hex::encode(&server.span_id), span_id);
}

/// The dashboard and the alert rules name only metrics the gateway exports: a renamed metric
/// fails here, not silently on an operator's screen.
#[tokio::test]
async fn the_dashboard_and_the_alerts_use_only_exported_metrics() {
    let app = metered_app().await;
    app.call(SAMPLE_FLOW, "t-a").await.expect("served");
    let text = app.scrape().await;
    let mut exported: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect();
    // Exported only with temporary credentials, and with a Redis.
    exported.extend(
        [
            "cams_flows_credentials_remaining_seconds",
            "cams_flows_redis_up",
            "cams_flows_redis_errors",
            "cams_flows_redis_command_duration_seconds",
        ]
        .map(String::from),
    );
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let files = [
        root.join("grafana/cams-flows.dashboard.json"),
        root.join("prometheus/cams-flows.rules.yml"),
        root.join("prometheus/cams-flows.rules.test.yml"),
    ];
    for file in files {
        let content = std::fs::read_to_string(&file).expect("deploy file");
        let mut named = 0;
        for word in content.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if !(word.starts_with("cams_flows_") || word.starts_with("grpc_server_")) {
                continue;
            }
            named += 1;
            let family = ["_bucket", "_sum", "_count", "_total"]
                .iter()
                .find_map(|suffix| word.strip_suffix(suffix))
                .unwrap_or(word);
            assert!(
                exported.contains(family) || exported.contains(word),
                "{} names {word}, which the gateway does not export",
                file.display()
            );
        }
        assert!(named > 5, "{} names the gateway's metrics", file.display());
    }
}

/// With a shared Redis: whether it answers, and how long its exchanges take, by store.
#[tokio::test]
async fn redis_is_measured_and_its_loss_shows() {
    let mut redis = crate::support::redis::RedisServer::start();
    let url = redis.url();
    let app = TestApp::builder()
        .admin()
        .config(move |c| {
            c.redis = Some(cams_flows::store::RedisConfig {
                timeout: Duration::from_millis(300),
                account: None,
                ..cams_flows::store::RedisConfig::standalone(url, "obs")
            });
        })
        .spawn()
        .await;
    let up = |text: &str| Scrape::parse(text).value("cams_flows_redis_up", &[("store", "state")]);
    // The connection's watch pings Redis every second, calls or not.
    let text = wait::until(
        Duration::from_secs(10),
        "cams_flows_redis_up 1 for the state's Redis",
        || app.scrape(),
        |text| text.contains("cams_flows_redis_up{store=\"state\"} 1"),
    )
    .await;
    assert_eq!(up(&text), 1.0);
    let m = Scrape::parse(&text);
    assert!(
        m.value(
            "cams_flows_redis_command_duration_seconds_bucket",
            &[("store", "state"), ("le", "+Inf")]
        ) > 0.0
    );

    redis.kill();
    let text = wait::until(
        Duration::from_secs(10),
        "cams_flows_redis_up 0 once Redis is gone",
        || app.scrape(),
        |text| up(text) == 0.0,
    )
    .await;
    let m = Scrape::parse(&text);
    let errors = m.value(
        "cams_flows_redis_errors_total",
        &[("store", "state"), ("kind", "error")],
    ) + m.value(
        "cams_flows_redis_errors_total",
        &[("store", "state"), ("kind", "timeout")],
    );
    assert!(errors > 0.0, "{text}");
}
