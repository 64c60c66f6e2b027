//! What operators and meshes depend on: health, reflection, shutdown, the command line.

use std::time::Duration;

use crate::support::{
    DOC_FLOW,
    process::{ServedSandbox, binary, serve_sandbox},
    spawn_app, wait,
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::{v1, v1alpha};

const FLOW_SERVICE: &str = "cams.flows.v1.FlowService";

#[tokio::test]
async fn health_reports_serving_then_not_serving_on_shutdown() {
    let mut app = spawn_app().await;
    let mut health = HealthClient::new(app.channel.clone());
    for service in ["", FLOW_SERVICE] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("check")
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving, "{service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    let mut watch = health
        .watch(HealthCheckRequest {
            service: FLOW_SERVICE.into(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = watch.message().await.expect("stream").expect("first");
    assert_eq!(first.status(), ServingStatus::Serving);

    app.trigger_shutdown();
    let next = watch.message().await.expect("stream").expect("update");
    assert_eq!(next.status(), ServingStatus::NotServing);
}

#[tokio::test]
async fn reflection_lists_services_in_v1_and_v1alpha() {
    let app = spawn_app().await;

    let mut client = v1::server_reflection_client::ServerReflectionClient::new(app.channel.clone());
    let response = ask_v1(
        &mut client,
        v1::server_reflection_request::MessageRequest::ListServices(String::new()),
    )
    .await;
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("unexpected {response:?}")
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [FLOW_SERVICE, "grpc.health.v1.Health"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }

    // The descriptors resolve, with their imports, for `describe`; google.rpc too, so that
    // clients can decode the error details.
    for symbol in [
        "cams.flows.v1.GetFlowResponse",
        "google.rpc.ErrorInfo",
        "google.rpc.RetryInfo",
    ] {
        let response = ask_v1(
            &mut client,
            v1::server_reflection_request::MessageRequest::FileContainingSymbol(symbol.into()),
        )
        .await;
        assert!(
            matches!(
                response.message_response,
                Some(v1::server_reflection_response::MessageResponse::FileDescriptorResponse(ref f))
                    if !f.file_descriptor_proto.is_empty()
            ),
            "{symbol}: {response:?}"
        );
    }

    let mut old =
        v1alpha::server_reflection_client::ServerReflectionClient::new(app.channel.clone());
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut stream = old
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection v1alpha")
        .into_inner();
    let response = stream.message().await.expect("stream").expect("response");
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("unexpected {response:?}")
    };
    assert!(list.service.iter().any(|s| s.name == FLOW_SERVICE));
}

/// One reflection v1 request on a stream of its own, and its answer.
async fn ask_v1(
    client: &mut v1::server_reflection_client::ServerReflectionClient<tonic::transport::Channel>,
    request: v1::server_reflection_request::MessageRequest,
) -> v1::ServerReflectionResponse {
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection v1")
        .into_inner();
    stream.message().await.expect("stream").expect("response")
}

#[tokio::test]
async fn in_flight_calls_finish_during_shutdown() {
    let mut app = spawn_app().await;
    let client = app.client.clone();
    let call = tokio::spawn(async move {
        client
            .clone()
            .get_flow(cams_flows::pb::GetFlowRequest {
                flow_id: "sim:slow:700".into(),
                cust_space_id: String::new(),
            })
            .await
    });
    // Wait until the simulated CAMS holds the call, so that shutdown starts mid-call.
    wait::until(
        Duration::from_secs(5),
        "the call at CAMS",
        || app.sandbox_requests(),
        |requests| !requests.is_empty(),
    )
    .await;
    app.trigger_shutdown();
    let response = call.await.expect("task").expect("in-flight call completes");
    assert_eq!(
        response.into_inner().flow.expect("flow").flow_id,
        "sim:slow:700"
    );
    app.stop().await.expect("clean stop");
}

// ---- the binary ----

// Multi-threaded so that the client's connection keeps being driven (it must answer the
// server's GOAWAY) while this test blocks on the child process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_sandbox_answers_then_exits_cleanly_on_sigterm() {
    let ServedSandbox {
        mut running, addr, ..
    } = serve_sandbox(&[]);

    let mut client =
        cams_flows::pb::flow_service_client::FlowServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
    let response = client
        .get_flow(cams_flows::pb::GetFlowRequest {
            flow_id: DOC_FLOW.into(),
            cust_space_id: "cams-kei1".into(),
        })
        .await
        .expect("GetFlow through the sandbox")
        .into_inner();
    assert_eq!(response.flow.expect("flow").flow_name, "flow_001");

    // One structured line per call, its fields at the top level, where log pipelines index them.
    let served = running.wait_for("\"served\"");
    assert_eq!(served["tenant"], "cams-kei1");
    assert_eq!(served["flow_id"], DOC_FLOW);
    assert_eq!(served["caller"], "anonymous");
    assert_eq!(
        served["cams_request_id"],
        "DAC72B08-3327-33EF-BEDC-8EC3E83A6575"
    );
    assert_eq!(served["grpc_code"], "OK");
    assert_eq!(served["cache"], "miss");
    assert!(served["latency_us"].is_u64(), "{served}");

    // A cache hit is the high-volume path: no line at the default level. (The documentation's
    // flow above carries a preview URL that has expired, so it is never cached; a sample flow is.)
    for expected in ["miss", "hit"] {
        let response = client
            .get_flow(cams_flows::pb::GetFlowRequest {
                flow_id: "sim:ok:0".into(),
                cust_space_id: "cams-kei1".into(),
            })
            .await
            .expect("GetFlow of a sample flow");
        assert_eq!(
            response.metadata().get("x-cams-cache").expect("header"),
            expected
        );
    }

    let t0 = std::time::Instant::now();
    running.signal("TERM");
    let rest = running.lines_until("\"stopped\"");
    let served: Vec<&String> = rest.iter().filter(|l| l.contains("\"served\"")).collect();
    assert_eq!(served.len(), 1, "only the miss is logged at info: {rest:?}");
    assert!(served[0].contains("\"cache\":\"miss\""), "{served:?}");
    let status = running.exit_within(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0));
    // Nothing was in flight, so the exit does not wait for the drain bound (10 s by default),
    // even though the client still holds its connection.
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(5), "exit took {took:?}");
    drop(client);
}

#[test]
fn missing_credentials_fail_fast_naming_the_variables() {
    let output = binary()
        .args(["serve", "--listen", "127.0.0.1:0", "--auth-mode", "none"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ALIBABA_CLOUD_ACCESS_KEY_ID")
            && stderr.contains("ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
        "{stderr}"
    );
}

#[test]
fn bad_configuration_exits_2_naming_the_key() {
    let path = std::env::temp_dir().join(format!("cams-flows-bad-{}.toml", std::process::id()));
    std::fs::write(&path, "[upstream]\nmax_body_bytes = -5\n").expect("write");
    let output = binary()
        .args(["serve", "--sandbox", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    let _ = std::fs::remove_file(&path);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("upstream.max_body_bytes"), "{stderr}");

    let output = binary()
        .args(["serve", "--sandbox", "--listen", "not-an-address"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--listen"));

    let output = binary()
        .args(["serve", "--sandbox"])
        .env("CAMS_FLOWS_DRAIN_TIMEOUT_MS", "0")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("drain_timeout_ms"));

    // The message names where the value came from, under the name it was given.
    let output = binary()
        .args(["serve", "--sandbox"])
        .env("CAMS_FLOWS_ACCOUNT_RPS", "0")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "error: configuration: limits.account_rps (from environment variable \
             CAMS_FLOWS_ACCOUNT_RPS): 0 must be between 1 and 1000000"
        ),
        "{stderr}"
    );
    let output = binary()
        .args(["serve", "--sandbox", "--retry-base-backoff-ms", "soon"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("retry.base_backoff_ms (from flag --retry-base-backoff-ms)"),
        "{stderr}"
    );
}

#[test]
fn unknown_variables_are_named_on_stderr_without_their_value() {
    let output = binary()
        .args(["serve", "--sandbox", "--listen", "not-an-address"])
        .env("CAMS_FLOWS_LIMITS_ACOUNT_RPS", "hunter2")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "warning: CAMS_FLOWS_LIMITS_ACOUNT_RPS is not a cams-flows setting and is ignored \
             (did you mean CAMS_FLOWS_LIMITS_ACCOUNT_RPS?)"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn help_documents_the_flags() {
    let output = binary().args(["serve", "--help"]).output().expect("run");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--listen",
        "--endpoint",
        "--config",
        "--log-format",
        "--sandbox",
        "--drain-timeout-ms",
        "CAMS_FLOWS_LISTEN",
        "CAMS_FLOWS_CONFIG",
        // One flag and variable per key, by the naming rule...
        "--limits-account-rps",
        "CAMS_FLOWS_LIMITS_ACCOUNT_RPS",
        "--retry-base-backoff-ms",
        "CAMS_FLOWS_RETRY_BUDGET_MIN_RETRIES",
        "--server-max-in-flight",
        "--tls-client-ca-file",
        "--auth-mode",
        // ... and the names they had before it.
        "--account-rps",
        "CAMS_FLOWS_ACCOUNT_RPS",
        "--max-in-flight",
        "--stale-if-error-ms",
    ] {
        assert!(help.contains(flag), "{flag} missing from help");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drains_in_flight_calls_and_refuses_new_ones() {
    use cams_flows::pb::{GetFlowRequest, flow_service_client::FlowServiceClient};

    let ServedSandbox {
        mut running,
        addr,
        sandbox,
    } = serve_sandbox(&["--drain-timeout-ms", "5000"]);
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut watch = HealthClient::new(channel.clone())
        .watch(HealthCheckRequest {
            service: FLOW_SERVICE.into(),
        })
        .await
        .expect("watch")
        .into_inner();
    assert_eq!(
        watch
            .message()
            .await
            .expect("stream")
            .expect("first")
            .status(),
        ServingStatus::Serving
    );

    // Calls that are inside the gateway, held by a slow CAMS, when the signal comes.
    let mut slow = Vec::new();
    for i in 0..3 {
        let mut client = FlowServiceClient::new(channel.clone());
        slow.push(tokio::spawn(async move {
            client
                .get_flow(GetFlowRequest {
                    flow_id: format!("sim:slow:1500:drain-{i}"),
                    cust_space_id: format!("slow-{i}"),
                })
                .await
        }));
    }
    // They go first, so that the load's first misses do not take the account quota from them.
    let http = reqwest::Client::new();
    wait::until(
        Duration::from_secs(10),
        "the three slow calls at the simulated CAMS",
        || async {
            http.get(format!("{sandbox}/_sandbox/requests"))
                .send()
                .await
                .expect("sandbox")
                .text()
                .await
                .expect("body")
        },
        |body| body.matches("sim:slow:1500:drain-").count() >= 3,
    )
    .await;

    // Steady load on a cached flow from several tenants, until the server goes away.
    let signalled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for t in 0..6 {
        let mut client = FlowServiceClient::new(channel.clone());
        let signalled = std::sync::Arc::clone(&signalled);
        load.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..10_000 {
                let before = !signalled.load(std::sync::atomic::Ordering::SeqCst);
                let result = client
                    .get_flow(GetFlowRequest {
                        flow_id: "100000000000002".into(),
                        cust_space_id: format!("load-{t}"),
                    })
                    .await;
                let code = match result {
                    Ok(_) => tonic::Code::Ok,
                    // A call the transport refused (the server's GOAWAY, then its closed
                    // connection): tonic's client names these INTERNAL, CANCELLED or UNKNOWN,
                    // where gRPC's other clients say UNAVAILABLE and retry elsewhere.
                    Err(s) if refused_by_transport(&s) => tonic::Code::Unavailable,
                    Err(s) => s.code(),
                };
                seen.push((before, code));
                if !before && code == tonic::Code::Unavailable {
                    break;
                }
            }
            seen
        }));
    }

    let t0 = std::time::Instant::now();
    signalled.store(true, std::sync::atomic::Ordering::SeqCst);
    running.signal("TERM");

    assert_eq!(
        watch
            .message()
            .await
            .expect("stream")
            .expect("update")
            .status(),
        ServingStatus::NotServing
    );
    drop(watch);
    for call in slow {
        let flow = call
            .await
            .expect("task")
            .expect("an in-flight call completes during the drain")
            .into_inner()
            .flow
            .expect("flow");
        assert!(flow.flow_id.starts_with("sim:slow:1500:drain-"));
    }
    for task in load {
        for (before_signal, code) in task.await.expect("load task") {
            // Every answer the server gave is a clean one: the flow, the tenant's limit, or
            // UNAVAILABLE for a call refused once shutdown began. (That no in-flight call is cut
            // off is shown by the slow calls above, which were inside the gateway at the signal.)
            let allowed = [
                tonic::Code::Ok,
                tonic::Code::ResourceExhausted,
                tonic::Code::Unavailable,
            ];
            assert!(
                allowed.contains(&code),
                "{code:?} (before signal: {before_signal})"
            );
        }
    }

    // A new connection is refused.
    let refused = FlowServiceClient::connect(format!("http://{addr}")).await;
    assert!(refused.is_err(), "the listener is closed");

    drop(channel);
    let status = tokio::task::spawn_blocking(move || running.exit_within(Duration::from_secs(30)))
        .await
        .expect("join");
    assert_eq!(status.code(), Some(0));
    assert!(
        t0.elapsed() < Duration::from_secs(5 + 3),
        "exited within the drain bound"
    );
}

fn refused_by_transport(status: &tonic::Status) -> bool {
    std::error::Error::source(status)
        .is_some_and(|e| e.downcast_ref::<tonic::transport::Error>().is_some())
}
