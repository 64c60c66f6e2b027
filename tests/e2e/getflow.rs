//! GetFlow end to end: a generated tonic client over loopback, the real server, the simulated
//! CAMS over real HTTP.

use std::time::{Duration, SystemTime};

use crate::support::{
    DOC_FLOW, KEY_ID, KEY_SECRET, TestApp, assert_failure, details, error_info, spawn_app,
};
use cams_flows::pb::{FlowCategory, FlowStatus};
use tonic::Code;

const CAMS: &str = "cams.aliyuncs.com";
const LOCAL: &str = "cams-flows";

#[tokio::test]
async fn documented_success_field_by_field() {
    let app = spawn_app().await;
    let response = app.get_flow(DOC_FLOW, "cams-kei1").await.expect("success");
    assert_eq!(response.request_id, "DAC72B08-3327-33EF-BEDC-8EC3E83A6575");
    let flow = response.flow.expect("flow");
    assert_eq!(flow.flow_id, DOC_FLOW);
    assert_eq!(flow.flow_name, "flow_001");
    assert_eq!(flow.status(), FlowStatus::Draft);
    assert_eq!(flow.raw_status, "DRAFT");
    assert_eq!(
        flow.categories().collect::<Vec<_>>(),
        [FlowCategory::SignUp]
    );
    assert_eq!(flow.raw_categories, ["SIGN_UP"]);
    assert_eq!(flow.json_version, "2.1");
    assert_eq!(flow.data_api_version, "3.0");
    assert_eq!(flow.preview_url, "https://pre-url");
    let expires = flow.preview_url_expire_time.expect("expiry");
    assert_eq!(
        (expires.seconds, expires.nanos),
        (1_700_617_436, 633_000_000)
    );
    assert_eq!(flow.endpoint_uri, "");

    // CustSpaceId reached CAMS as sent; the call was signed and accepted once.
    let requests = app.sandbox_requests().await;
    assert_eq!(requests.len(), 1);
    let mut params = requests[0].params.clone();
    params.sort();
    assert_eq!(
        params,
        [
            ("CustSpaceId".to_owned(), "cams-kei1".to_owned()),
            ("FlowId".to_owned(), DOC_FLOW.to_owned())
        ]
    );
    assert_eq!(requests[0].code, "OK");
}

#[tokio::test]
async fn empty_space_is_not_sent_and_success_reports_cache_miss() {
    let app = spawn_app().await;
    let response = app
        .client
        .clone()
        .get_flow(cams_flows::pb::GetFlowRequest {
            flow_id: "100000000000002".into(),
            cust_space_id: String::new(),
        })
        .await
        .expect("success");
    assert_eq!(
        response
            .metadata()
            .get("x-cams-cache")
            .map(|v| v.to_str().ok()),
        Some(Some("miss"))
    );
    let flow = response.into_inner().flow.expect("flow");
    assert_eq!(flow.status(), FlowStatus::Published);
    assert_eq!(
        flow.categories().collect::<Vec<_>>(),
        vec![FlowCategory::CustomerSupport, FlowCategory::Other]
    );
    assert_eq!(flow.endpoint_uri, "https://flows.example.com/endpoint");
    let expires = flow.preview_url_expire_time.expect("expiry");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    assert!(expires.seconds > now, "preview URL expiry is in the future");

    let requests = app.sandbox_requests().await;
    assert_eq!(
        requests[0].params,
        [("FlowId".to_owned(), "100000000000002".to_owned())]
    );
}

#[tokio::test]
async fn every_status_and_category_maps() {
    let app = spawn_app().await;
    let cases = [
        (
            "100000000000003",
            FlowStatus::Deprecated,
            vec![FlowCategory::Survey],
        ),
        (
            "100000000000004",
            FlowStatus::Blocked,
            vec![FlowCategory::AppointmentBooking],
        ),
        (
            "100000000000005",
            FlowStatus::Throttled,
            vec![FlowCategory::Shopping, FlowCategory::LeadGeneration],
        ),
    ];
    for (id, status, categories) in cases {
        let flow = app.get_flow(id, "").await.expect(id).flow.expect("flow");
        assert_eq!(flow.status(), status, "{id}");
        assert_eq!(flow.categories().collect::<Vec<_>>(), categories, "{id}");
    }
}

#[tokio::test]
async fn unknown_status_and_category_succeed_and_stay_visible() {
    let app = spawn_app().await;
    let flow = app
        .get_flow("100000000000009", "")
        .await
        .expect("success")
        .flow
        .expect("flow");
    assert_eq!(flow.status(), FlowStatus::Unspecified);
    assert_eq!(flow.raw_status, "ARCHIVED");
    assert_eq!(
        flow.categories().collect::<Vec<_>>(),
        vec![FlowCategory::SignIn, FlowCategory::Unspecified]
    );
    assert_eq!(flow.raw_categories, ["SIGN_IN", "TELEPATHY"]);
}

#[tokio::test]
async fn invalid_arguments_never_reach_cams() {
    let app = spawn_app().await;
    let long = "9".repeat(129);
    let huge = "9".repeat(10_000);
    let cases = [
        (huge.as_str(), "", "flow_id"),
        ("", "", "flow_id"),
        (long.as_str(), "", "flow_id"),
        ("123\n456", "", "flow_id"),
        ("123\u{0}", "", "flow_id"),
        ("123", "space\r\n", "cust_space_id"),
        ("123", &long, "cust_space_id"),
    ];
    for (flow_id, space, field) in cases {
        let status = assert_failure(
            app.get_flow(flow_id, space).await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
            LOCAL,
        );
        let bad = details(&status).bad_request().cloned().expect("BadRequest");
        assert_eq!(bad.field_violations.len(), 1, "{flow_id:?}/{space:?}");
        assert_eq!(bad.field_violations[0].field, field);
        assert!(status.message().contains(field), "{}", status.message());
    }
    let stats = app.sandbox_stats().await;
    assert_eq!((stats.accepted, stats.rejected, stats.throttled), (0, 0, 0));
}

/// Every row of the documented mapping, as CAMS's envelopes come back from the simulated CAMS.
#[tokio::test]
async fn cams_codes_map_to_grpc_statuses() {
    let app = spawn_app().await;
    let cases = [
        ("Ram.PermissionDeny", Code::PermissionDenied, 400),
        ("Forbidden.RAM", Code::PermissionDenied, 403),
        ("Unknown.ResourceOwnerId", Code::PermissionDenied, 400),
        ("Product.Unsubscript", Code::FailedPrecondition, 400),
        ("System.LimitControl", Code::ResourceExhausted, 400),
        ("Throttling", Code::ResourceExhausted, 400),
        ("Throttling.User", Code::ResourceExhausted, 400),
        ("InvalidAccessKeyId.NotFound", Code::Internal, 404),
        ("SignatureDoesNotMatch", Code::Internal, 400),
        ("IncompleteSignature", Code::Internal, 400),
        ("InvalidTimeStamp.Expired", Code::Internal, 400),
        ("InternalError", Code::Unavailable, 500),
        ("ServiceUnavailable", Code::Unavailable, 503),
        ("MissingParameter", Code::InvalidArgument, 400),
        ("InvalidParameter", Code::InvalidArgument, 400),
        ("Flow.Brand.NewCode", Code::Unknown, 400),
    ];
    for (cams_code, grpc_code, http) in cases {
        let status = assert_failure(
            app.get_flow(&format!("sim:error:{cams_code}"), "space-1")
                .await,
            grpc_code,
            cams_code,
            CAMS,
        );
        let info = error_info(&status);
        assert_eq!(
            info.metadata.get("httpStatus"),
            Some(&http.to_string()),
            "{cams_code}"
        );
        let request_id = info.metadata.get("requestId").expect("requestId");
        assert_eq!(request_id.len(), 36, "a UUID RequestId: {request_id}");
        if grpc_code == Code::Internal {
            // Callers learn the code, not CAMS's description of the gateway's request.
            assert!(
                !status.message().contains("Simulated"),
                "{}",
                status.message()
            );
        } else {
            assert!(status.message().contains(cams_code), "{}", status.message());
        }
        if grpc_code == Code::ResourceExhausted {
            let retry = details(&status).retry_info().cloned().expect("RetryInfo");
            assert_eq!(
                retry.retry_delay,
                Some(Duration::from_millis(1500)),
                "{cams_code}"
            );
            assert_eq!(
                status
                    .metadata()
                    .get("grpc-retry-pushback-ms")
                    .map(|v| v.to_str().ok()),
                Some(Some("1500"))
            );
        }
    }
    // The unknown code's message travels too.
    let status = app
        .get_flow("sim:error:Flow.Brand.NewCode", "")
        .await
        .expect_err("fails");
    assert!(
        status
            .message()
            .contains("Simulated error Flow.Brand.NewCode."),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn missing_flow_is_not_found() {
    let app = spawn_app().await;
    assert_failure(
        app.get_flow("404404404", "").await,
        Code::NotFound,
        "Flow.NotExist",
        CAMS,
    );
}

#[tokio::test]
async fn http_200_with_error_code_is_a_failure() {
    let app = spawn_app().await;
    let status = assert_failure(
        app.get_flow("sim:ok-error:Ram.PermissionDeny", "").await,
        Code::PermissionDenied,
        "Ram.PermissionDeny",
        CAMS,
    );
    assert_eq!(
        error_info(&status).metadata.get("httpStatus"),
        Some(&"200".to_owned())
    );
}

#[tokio::test]
async fn bodies_that_are_not_envelopes_are_clean_errors() {
    let app = spawn_app().await;
    let status = assert_failure(
        app.get_flow("sim:html", "").await,
        Code::Unavailable,
        "UPSTREAM_BAD_RESPONSE",
        LOCAL,
    );
    assert!(status.message().contains("HTML"), "{}", status.message());
    assert_eq!(
        error_info(&status).metadata.get("httpStatus"),
        Some(&"502".to_owned())
    );
    assert_failure(
        app.get_flow("sim:garbage", "").await,
        Code::Unavailable,
        "UPSTREAM_BAD_RESPONSE",
        LOCAL,
    );
    assert_failure(
        app.get_flow("sim:huge", "").await,
        Code::Unavailable,
        "UPSTREAM_BODY_TOO_LARGE",
        LOCAL,
    );
    // The gateway still serves after all of that.
    app.get_flow(DOC_FLOW, "").await.expect("still serving");
}

#[tokio::test]
async fn unreachable_cams_is_unavailable() {
    // A port held for the test and never listened on: connections to it are refused.
    let held = tokio::net::TcpSocket::new_v4().expect("socket");
    held.bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let closed = held.local_addr().expect("addr");
    let app = TestApp::builder()
        .endpoint(format!("http://{closed}"))
        .spawn()
        .await;
    let status = assert_failure(
        app.get_flow(DOC_FLOW, "").await,
        Code::Unavailable,
        "UPSTREAM_UNREACHABLE",
        LOCAL,
    );
    assert!(
        status.message().contains("connection"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn injection_reaches_cams_as_one_literal_flow_id() {
    let app = spawn_app().await;
    let hostile = "1&Action=DeleteFlow&CustSpaceId=other%20+x";
    assert_failure(
        app.get_flow(hostile, "").await,
        Code::NotFound,
        "Flow.NotExist",
        CAMS,
    );
    let requests = app.sandbox_requests().await;
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].params,
        [("FlowId".to_owned(), hostile.to_owned())]
    );
    assert_eq!(requests[0].code, "Flow.NotExist");
}

#[tokio::test]
async fn unicode_ids_are_signed_and_sent_verbatim() {
    let app = spawn_app().await;
    let (flow, space) = ("流程 ✓*~", "空间/é+");
    assert_failure(
        app.get_flow(flow, space).await,
        Code::NotFound,
        "Flow.NotExist",
        CAMS,
    );
    let mut params = app.sandbox_requests().await[0].params.clone();
    params.sort();
    assert_eq!(
        params,
        [
            ("CustSpaceId".to_owned(), space.to_owned()),
            ("FlowId".to_owned(), flow.to_owned())
        ]
    );
}

#[tokio::test]
async fn deadline_bounds_a_slow_upstream() {
    let app = spawn_app().await;
    let started = std::time::Instant::now();
    let status = assert_failure(
        app.get_flow_within("sim:slow:5000", "", Some(Duration::from_secs(1)))
            .await,
        Code::DeadlineExceeded,
        "DEADLINE_EXCEEDED",
        LOCAL,
    );
    let elapsed = started.elapsed();
    // The answer comes at the deadline, not when the upstream finally answers.
    assert!(
        elapsed < Duration::from_millis(2_500),
        "took {elapsed:?}: {status:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(250),
        "too early: {elapsed:?}"
    );
}

#[tokio::test]
async fn hung_body_ends_at_the_deadline() {
    let app = spawn_app().await;
    let started = std::time::Instant::now();
    // A deadline of a second or more leaves the gateway its whole margin (200 ms) to answer
    // before the caller's own timer fires, even on a loaded host.
    assert_failure(
        app.get_flow_within("sim:hang", "", Some(Duration::from_secs(1)))
            .await,
        Code::DeadlineExceeded,
        "DEADLINE_EXCEEDED",
        LOCAL,
    );
    assert!(started.elapsed() < Duration::from_millis(3_000));
}

#[tokio::test]
async fn wrong_secret_is_internal_signature_mismatch() {
    let app = TestApp::builder()
        .credentials(KEY_ID, "not-the-secret", None)
        .spawn()
        .await;
    let status = assert_failure(
        app.get_flow(DOC_FLOW, "").await,
        Code::Internal,
        "SignatureDoesNotMatch",
        CAMS,
    );
    assert!(!status.message().contains("not-the-secret"));
    let stats = app.sandbox_stats().await;
    assert_eq!((stats.accepted, stats.rejected), (0, 1));
}

#[tokio::test]
async fn unknown_access_key_is_internal() {
    let app = TestApp::builder()
        .credentials("someone-else", KEY_SECRET, None)
        .spawn()
        .await;
    assert_failure(
        app.get_flow(DOC_FLOW, "").await,
        Code::Internal,
        "InvalidAccessKeyId.NotFound",
        CAMS,
    );
}

#[tokio::test]
async fn sts_credentials_sign_the_token() {
    let app = TestApp::builder()
        .sandbox_token("sts-token-1")
        .credentials(KEY_ID, KEY_SECRET, Some("sts-token-1"))
        .spawn()
        .await;
    app.get_flow(DOC_FLOW, "")
        .await
        .expect("signed with the STS token");

    let app = TestApp::builder()
        .sandbox_token("sts-token-1")
        .credentials(KEY_ID, KEY_SECRET, Some("sts-token-2"))
        .spawn()
        .await;
    let status = app.get_flow(DOC_FLOW, "").await.expect_err("wrong token");
    assert_eq!(status.code(), Code::Internal);
}

#[tokio::test]
async fn upstream_throttling_is_resource_exhausted_with_retry_info() {
    let app = TestApp::builder().sandbox_rps(1).spawn().await;
    let mut throttled = None;
    for _ in 0..4 {
        if let Err(status) = app.get_flow(DOC_FLOW, "").await {
            throttled = Some(status);
            break;
        }
    }
    let status = throttled.expect("the simulated CAMS throttles past 1 call per second");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(error_info(&status).reason, "Throttling.User");
    let retry = details(&status).retry_info().cloned().expect("RetryInfo");
    let delay = retry.retry_delay.expect("delay");
    assert!(
        delay > Duration::ZERO && delay <= Duration::from_secs(1),
        "{delay:?}"
    );
    assert_eq!(app.sandbox_stats().await.throttled, 1);
}
