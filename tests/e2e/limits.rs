//! Rate limits end to end: through gRPC, against a simulated CAMS that enforces the real quota
//! (5 calls per sliding second per AccessKey) and counts what it accepted.

use std::{num::NonZeroU32, time::Duration};

use crate::support::{TestApp, all_quiet_calls_served, details, error_info};
use cams_flows::limits::{LimitsConfig, Quota};
use tokio::time::Instant;
use tonic::{Code, Status};

const FLOW: &str = "100000000000002";

fn quota(rps: f64, burst: u32) -> Quota {
    Quota {
        rps,
        burst: NonZeroU32::new(burst).expect("non-zero"),
    }
}

/// The product's defaults for limits, against the real quota.
async fn app_with_default_limits() -> TestApp {
    TestApp::builder()
        .sandbox_rps(5)
        .limits(LimitsConfig::default())
        .spawn()
        .await
}

/// A RESOURCE_EXHAUSTED from the gateway's own limits, with every detail a client needs.
fn assert_rate_limited(status: &Status, reason: &str, subject: &str) -> Duration {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let info = error_info(status);
    assert_eq!(info.reason, reason);
    assert_eq!(info.domain, "cams-flows");
    assert!(info.metadata.contains_key("tenant") && info.metadata.contains_key("limit"));
    let d = details(status);
    let quota = d.quota_failure().cloned().expect("QuotaFailure");
    assert_eq!(quota.violations.len(), 1);
    assert_eq!(quota.violations[0].subject, subject);
    assert!(!quota.violations[0].description.is_empty());
    let retry = d
        .retry_info()
        .cloned()
        .expect("RetryInfo")
        .retry_delay
        .expect("delay");
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_secs(10),
        "{retry:?}"
    );
    let pushback = status
        .metadata()
        .get("grpc-retry-pushback-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u128>().ok())
        .expect("grpc-retry-pushback-ms");
    assert_eq!(pushback, retry.as_millis(), "trailer and RetryInfo agree");
    retry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noisy_neighbour_cannot_starve_quiet_tenants() {
    let app = app_with_default_limits().await;
    let run_for = Duration::from_secs(4);
    let end = Instant::now() + run_for;

    // One tenant sends as fast as it can, from several connections' worth of concurrency.
    let mut noisy = Vec::new();
    for _ in 0..8 {
        let client = app.client.clone();
        noisy.push(tokio::spawn(async move {
            let (mut ok, mut limited) = (0u32, Vec::new());
            while Instant::now() < end {
                let result = client
                    .clone()
                    .get_flow(cams_flows::pb::GetFlowRequest {
                        flow_id: FLOW.into(),
                        cust_space_id: "noisy".into(),
                    })
                    .await;
                match result {
                    Ok(_) => ok += 1,
                    Err(status) => limited.push(status),
                }
            }
            (ok, limited)
        }));
    }

    // Four quiet tenants each send one call every two seconds.
    let mut quiet = Vec::new();
    for q in 0..4 {
        let client = app.client.clone();
        quiet.push(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(2));
            let mut results = Vec::new();
            while Instant::now() < end {
                ticks.tick().await;
                let result = client
                    .clone()
                    .get_flow(cams_flows::pb::GetFlowRequest {
                        flow_id: FLOW.into(),
                        cust_space_id: format!("quiet-{q}"),
                    })
                    .await;
                results.push(result.map(|_| ()));
            }
            results
        }));
    }

    let quiet_calls = all_quiet_calls_served(quiet).await;
    assert!(quiet_calls >= 8, "{quiet_calls} quiet calls");

    let (mut noisy_ok, mut noisy_limited) = (0, Vec::new());
    for task in noisy {
        let (ok, limited) = task.await.expect("noisy task");
        noisy_ok += ok;
        noisy_limited.extend(limited);
    }
    assert!(
        noisy_ok > 0,
        "the noisy tenant is served too, within its share"
    );
    assert!(!noisy_limited.is_empty(), "the noisy tenant is limited");
    for status in &noisy_limited {
        let reason = error_info(status).reason;
        let subject = if reason == "TENANT_RATE_LIMITED" {
            "tenant:noisy"
        } else {
            "account"
        };
        assert_rate_limited(status, &reason, subject);
    }

    // CAMS never saw more than its quota, so it throttled nobody.
    let stats = app.sandbox_stats().await;
    assert_eq!(stats.throttled, 0, "{stats:?}");
    assert!(stats.max_accepted_per_sliding_second <= 5, "{stats:?}");
    assert!(
        stats.max_accepted_per_sliding_second >= 4,
        "the quota is used: {stats:?}"
    );
}

#[tokio::test]
async fn tenant_rejection_carries_every_detail() {
    let app = TestApp::builder()
        .config(|c| c.limits.tenant = quota(1.0, 1))
        .spawn()
        .await;
    app.get_flow(FLOW, "cams-kei1").await.expect("first call");
    let status = app
        .get_flow(FLOW, "cams-kei1")
        .await
        .expect_err("over quota");
    let retry = assert_rate_limited(&status, "TENANT_RATE_LIMITED", "tenant:cams-kei1");
    assert!(retry <= Duration::from_secs(1));
    assert!(
        status.message().contains("cams-kei1"),
        "{}",
        status.message()
    );

    // Other tenants, and the account's own space (an empty CustSpaceId), are separate tenants.
    app.get_flow(FLOW, "other").await.expect("other tenant");
    app.get_flow(FLOW, "").await.expect("own space");
    let status = app
        .get_flow(FLOW, "")
        .await
        .expect_err("own space over quota");
    assert_rate_limited(&status, "TENANT_RATE_LIMITED", "tenant:");

    // The limited calls never reached CAMS.
    assert_eq!(app.sandbox_stats().await.accepted, 3);
}

#[tokio::test]
async fn overrides_raise_a_tenant_above_the_default() {
    let app = TestApp::builder()
        .config(|c| {
            c.limits.tenant = quota(1.0, 1);
            c.limits.tenants.insert(
                cams_flows::domain::TenantId::parse("vip").expect("id"),
                quota(1.0, 5),
            );
        })
        .spawn()
        .await;
    for _ in 0..5 {
        app.get_flow(FLOW, "vip").await.expect("vip burst");
    }
    let status = app
        .get_flow(FLOW, "vip")
        .await
        .expect_err("vip burst spent");
    assert_rate_limited(&status, "TENANT_RATE_LIMITED", "tenant:vip");
    app.get_flow(FLOW, "plain").await.expect("plain first");
    assert!(app.get_flow(FLOW, "plain").await.is_err());
}

#[tokio::test]
async fn account_rejection_when_waiting_cannot_help() {
    let app = TestApp::builder()
        .config(|c| {
            c.limits.account_rps = 1;
            c.limits.max_wait = Duration::ZERO;
        })
        .spawn()
        .await;
    app.get_flow(FLOW, "a").await.expect("first");
    let started = std::time::Instant::now();
    let status = app
        .get_flow(FLOW, "b")
        .await
        .expect_err("account quota spent");
    // At once: before the slot the first call used has rested (a second from its end), which
    // is what a wait would have lasted.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refused at once, not after {:?}",
        started.elapsed()
    );
    assert_rate_limited(&status, "ACCOUNT_RATE_LIMITED", "account");
    assert_eq!(
        error_info(&status).metadata.get("tenant"),
        Some(&"b".to_owned())
    );
}

#[tokio::test]
async fn a_call_waits_for_account_capacity_within_its_deadline() {
    let app = TestApp::builder()
        .sandbox_rps(1)
        .config(|c| c.limits.account_rps = 1)
        .spawn()
        .await;
    app.get_flow(FLOW, "a").await.expect("first");
    // The second call waits for the slot instead of failing, and CAMS does not throttle it.
    app.get_flow_within(FLOW, "b", Some(Duration::from_secs(5)))
        .await
        .expect("served after waiting");
    // With a deadline shorter than the wait (the slot rests a second), it is refused at once
    // instead.
    let status = app
        .get_flow_within(FLOW, "c", Some(Duration::from_millis(500)))
        .await
        .expect_err("cannot be served in time");
    assert_rate_limited(&status, "ACCOUNT_RATE_LIMITED", "account");
    assert_eq!(app.sandbox_stats().await.throttled, 0);
}

#[tokio::test]
async fn health_and_reflection_are_never_limited() {
    let app = TestApp::builder()
        .config(|c| {
            c.limits.tenant = quota(1.0, 1);
            c.limits.account_rps = 1;
        })
        .spawn()
        .await;
    app.get_flow(FLOW, "").await.expect("spend the quota");
    assert!(app.get_flow(FLOW, "").await.is_err());
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel.clone());
    for _ in 0..50 {
        health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "cams.flows.v1.FlowService".into(),
            })
            .await
            .expect("health is not limited");
    }
}
