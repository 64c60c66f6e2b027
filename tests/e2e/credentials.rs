//! Temporary credentials end to end: a gateway on RRSA (OIDC) credentials from the simulated STS
//! that expire every few seconds, under a steady stream of calls; STS failing during refreshes;
//! and `serve` refusing to start without credentials, naming every provider it tried.

use std::time::{Duration, Instant};

use cams_flows::{credentials::RefreshPolicy, sandbox::Fault};
use tonic::Code;

use crate::support::{DOC_FLOW, TestApp, assert_failure, process::binary, wait};

/// Retries quickly, so that the tests wait for the credentials' lifetimes and little else.
fn quick() -> RefreshPolicy {
    RefreshPolicy {
        base_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(400),
        ..RefreshPolicy::default()
    }
}

/// Pause between the calls of a steady stream.
const STREAM_GAP: Duration = Duration::from_millis(20);

/// The AccessKeyIds the simulated CAMS accepted calls from, in order of first use.
async fn keys_seen(app: &TestApp) -> Vec<String> {
    let mut seen = Vec::new();
    for r in app.sandbox_requests().await {
        if r.code == "OK" && !seen.contains(&r.access_key_id) {
            seen.push(r.access_key_id);
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_that_expire_every_two_seconds_serve_a_steady_stream_for_three_lifetimes() {
    let lifetime = Duration::from_secs(2);
    let app = TestApp::builder().sts(lifetime, quick()).spawn().await;
    let started = Instant::now();
    let mut calls = 0;
    while started.elapsed() < lifetime * 3 + Duration::from_secs(1) {
        if let Err(status) = app.get_flow(DOC_FLOW, "").await {
            panic!(
                "call {calls} failed after {:?}: {status:?}",
                started.elapsed()
            );
        }
        calls += 1;
        // pacing: a steady stream of calls.
        tokio::time::sleep(STREAM_GAP).await;
    }
    let keys = keys_seen(&app).await;
    // The first set, then a new one at about half of each set's lifetime (2 to 3 s: STS writes
    // expiries in whole seconds): at least one per lifetime.
    assert!(keys.len() >= 4, "{calls} calls, keys {keys:?}");
    assert!(keys.iter().all(|k| k.starts_with("STS.")), "{keys:?}");
    let sts = app.identity.as_ref().expect("sts").stats().sts;
    assert!(
        sts.iter()
            .all(|c| c.action == "AssumeRoleWithOIDC" && c.code == "OK")
    );
    assert!(
        sts.len() >= keys.len(),
        "{} STS calls, {} keys",
        sts.len(),
        keys.len()
    );
    eprintln!(
        "{calls} calls in {:?}: {} STS calls, {} keys seen by CAMS",
        started.elapsed(),
        sts.len(),
        keys.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_down_during_refreshes_fails_no_call_until_expiry_then_unavailable_then_recovers() {
    // Long enough that calls go on for a while between the first failed refresh (half the
    // lifetime before expiry) and the expiry.
    let lifetime = Duration::from_secs(4);
    let app = TestApp::builder().sts(lifetime, quick()).spawn().await;
    let identity = app.identity.as_ref().expect("sts");
    identity.set_sts_fault(Some(Fault::Unavailable));
    let started = Instant::now();
    let sts_failed = |identity: &cams_flows::sandbox::IdentityHandle| {
        identity
            .stats()
            .sts
            .iter()
            .any(|c| c.code == "ServiceUnavailable")
    };

    // Calls go on with the old keys while the refreshes fail; then the keys expire.
    let mut served_after_a_failed_refresh = 0;
    let first_failure = loop {
        assert!(
            started.elapsed() < lifetime * 2,
            "the old keys outlived their lifetime"
        );
        let refresh_failed = sts_failed(identity);
        match app.get_flow(DOC_FLOW, "").await {
            Ok(_) if refresh_failed => served_after_a_failed_refresh += 1,
            Ok(_) => {}
            Err(status) => break status,
        }
        // pacing: a steady stream of calls.
        tokio::time::sleep(STREAM_GAP).await;
    };
    let expired_after = started.elapsed();
    assert!(
        served_after_a_failed_refresh > 0,
        "a refresh failed while the keys were valid, and calls were still served"
    );
    let status = assert_failure(
        Err(first_failure),
        Code::Unavailable,
        "CREDENTIALS_UNAVAILABLE",
        "cams-flows",
    );
    assert!(!status.message().contains("STS."), "{status:?}");
    // While STS stays down, every call fails the same way, without waiting.
    for _ in 0..5 {
        let t = Instant::now();
        assert_failure(
            app.get_flow(DOC_FLOW, "").await,
            Code::Unavailable,
            "CREDENTIALS_UNAVAILABLE",
            "cams-flows",
        );
        assert!(t.elapsed() < Duration::from_millis(500));
    }

    // STS is back: the calls that fail wake the refresher, and calls are served again.
    identity.set_sts_fault(None);
    let back = Instant::now();
    wait::until(
        Duration::from_secs(3),
        "a call served after STS returned",
        || app.get_flow(DOC_FLOW, ""),
        Result::is_ok,
    )
    .await
    .expect("served");
    let recovered_in = back.elapsed();
    for _ in 0..5 {
        app.get_flow(DOC_FLOW, "").await.expect("served again");
    }
    assert_eq!(
        keys_seen(&app).await.len(),
        2,
        "the old keys, then the new ones"
    );
    eprintln!(
        "keys unusable after {expired_after:?} ({served_after_a_failed_refresh} calls served \
         after a failed refresh); recovered {recovered_in:?} after STS returned"
    );
}

#[tokio::test]
async fn serve_without_credentials_exits_2_naming_every_provider_tried() {
    let home = tempfile::tempdir().expect("home");
    // A port held for the test and never listened on: connections to it are refused.
    let held = tokio::net::TcpSocket::new_v4().expect("socket");
    held.bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let closed = held.local_addr().expect("addr");
    let output = binary()
        .args(["serve", "--listen", "127.0.0.1:0", "--auth-mode", "none"])
        .env("HOME", home.path())
        .env_remove("ALIBABA_CLOUD_ECS_METADATA_DISABLED")
        .env(
            "ALIBABA_CLOUD_ECS_METADATA_SERVICE_ENDPOINT",
            format!("http://{closed}"),
        )
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for provider in [
        "environment: does not apply",
        "oidc_role_arn: does not apply",
        "cli_profile: does not apply",
        "credentials_file: does not apply",
        "ecs_ram_role: does not apply: could not reach the ECS metadata service",
        "credentials_uri: does not apply",
    ] {
        assert!(stderr.contains(provider), "{provider:?} not in {stderr}");
    }

    // Pinned to one provider, only that one is tried.
    let output = binary()
        .args(["serve", "--listen", "127.0.0.1:0", "--auth-mode", "none"])
        .args(["--credentials-provider", "oidc"])
        .env("HOME", home.path())
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIunused")
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "unused-secret")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("providers tried: oidc_role_arn: does not apply: ALIBABA_CLOUD_ROLE_ARN")
            && !stderr.contains("environment")
            && !stderr.contains("unused-secret"),
        "{stderr}"
    );
}
