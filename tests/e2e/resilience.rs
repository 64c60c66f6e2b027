//! Serving more than the quota allows: coalescing, caching, retries and overload protection,
//! through gRPC against the simulated CAMS and its fault switches.

use std::time::{Duration, Instant};

use crate::support::{TestApp, assert_failure, error_info, wait};
use cams_flows::{
    config::Config,
    config::{CacheConfig, RetryConfig},
    pb::GetFlowRequest,
};
use tonic::Code;

/// The product's defaults for caching and retries (the support module turns them off).
fn production_defaults(config: &mut Config) {
    config.cache = CacheConfig::default();
    config.retry = RetryConfig::default();
}

async fn app(tweak: impl FnOnce(&mut Config) + Send + 'static) -> TestApp {
    TestApp::builder().config(tweak).spawn().await
}

/// A call and the `x-cams-cache` header of its answer.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_calls_share_one_upstream_call() {
    let app = app(production_defaults).await;
    let flow = "sim:slow:400:coalesce";
    let mut calls = Vec::new();
    for _ in 0..200 {
        let client = app.client.clone();
        calls.push(tokio::spawn(async move {
            client
                .clone()
                .get_flow(GetFlowRequest {
                    flow_id: flow.into(),
                    cust_space_id: "tenant-a".into(),
                })
                .await
        }));
    }
    let mut sources = Vec::new();
    for c in calls {
        let response = c.await.expect("task").expect("every caller gets the flow");
        sources.push(
            response
                .metadata()
                .get("x-cams-cache")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
        );
        assert_eq!(response.into_inner().flow.expect("flow").flow_id, flow);
    }
    assert_eq!(app.upstream_calls(flow).await, 1);
    assert_eq!(
        sources.iter().filter(|s| *s == "miss").count(),
        1,
        "{sources:?}"
    );
    assert!(
        sources
            .iter()
            .all(|s| ["miss", "coalesced", "hit"].contains(&s.as_str()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_gives_up_does_not_strand_the_others() {
    let app = app(production_defaults).await;
    // The leader's deadline (1 s, so that the gateway has its whole margin to answer it before
    // the leader's own timer fires) ends while CAMS still holds the call.
    let flow = "sim:slow:2000:leader";
    let leader = {
        let client = app.client.clone();
        tokio::spawn(async move {
            let mut request = tonic::Request::new(GetFlowRequest {
                flow_id: flow.into(),
                cust_space_id: String::new(),
            });
            request.set_timeout(Duration::from_secs(1));
            client.clone().get_flow(request).await
        })
    };
    // The follower joins once the load is at CAMS.
    wait::until(
        Duration::from_secs(5),
        "the leader's call at CAMS",
        || app.sandbox_requests(),
        |requests| !requests.is_empty(),
    )
    .await;
    let (response, source) = app.call(flow, "").await.expect("follower served");
    assert_eq!(source, "coalesced");
    assert_eq!(response.flow.expect("flow").flow_id, flow);
    let status = leader.await.expect("task").expect_err("leader's deadline");
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(app.upstream_calls(flow).await, 1);
}

#[tokio::test]
async fn cached_flows_are_served_without_cams_then_refetched_after_the_ttl() {
    let app = app(|c| {
        production_defaults(c);
        c.cache.ttl = Duration::from_millis(300);
        // The TTL alone, exactly: refresh-ahead and jitter have tests of their own.
        c.cache.refresh_window = Duration::ZERO;
        c.cache.ttl_jitter_percent = 0;
    })
    .await;
    let flow = "100000000000002";
    assert_eq!(app.call(flow, "t").await.expect("first").1, "miss");
    assert_eq!(app.call(flow, "t").await.expect("second").1, "hit");
    assert_eq!(app.upstream_calls(flow).await, 1);
    // pacing: past the TTL (300 ms from CAMS's answer), a wall-clock instant.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(app.call(flow, "t").await.expect("after TTL").1, "miss");
    assert_eq!(app.upstream_calls(flow).await, 2);
}

#[tokio::test]
async fn a_cached_flow_never_outlives_its_preview_url() {
    let app = app(|c| {
        production_defaults(c);
        // Without refresh-ahead, which would fetch a flow this close to its expiry again.
        c.cache.refresh_window = Duration::ZERO;
    })
    .await;
    // The preview URL dies in 2.5 s, and the gateway gives it up a second before (its margin for
    // its reading of CAMS's clock); the TTL (30 s) would keep the answer far longer.
    let flow = "sim:expiring:2500:x";
    assert_eq!(app.call(flow, "").await.expect("first").1, "miss");
    assert_eq!(app.call(flow, "").await.expect("second").1, "hit");
    // pacing: past the preview URL's expiry (2.5 s from CAMS's answer), a wall-clock instant.
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    assert_eq!(app.call(flow, "").await.expect("after expiry").1, "miss");
    assert_eq!(app.upstream_calls(flow).await, 2);

    // An answer whose preview URL is already dead is passed on but never kept.
    let dead = crate::support::DOC_FLOW;
    assert_eq!(app.call(dead, "").await.expect("first").1, "miss");
    assert_eq!(app.call(dead, "").await.expect("second").1, "miss");
}

#[tokio::test]
async fn tenants_never_share_cached_answers() {
    let app = app(production_defaults).await;
    let flow = "100000000000002";
    let (a, _) = app.call(flow, "tenant-a").await.expect("a");
    let (b, source) = app.call(flow, "tenant-b").await.expect("b");
    assert_eq!(source, "miss", "tenant B must not get tenant A's entry");
    assert!(
        a.flow
            .expect("flow")
            .preview_url
            .ends_with("space=tenant-a")
    );
    assert!(
        b.flow
            .expect("flow")
            .preview_url
            .ends_with("space=tenant-b")
    );
    assert_eq!(app.upstream_calls(flow).await, 2);
    assert_eq!(app.call(flow, "tenant-a").await.expect("a again").1, "hit");
}

#[tokio::test]
async fn retries_turn_a_short_outage_into_success() {
    let app = app(production_defaults).await;
    let flow = "sim:flaky:2:burst";
    let (response, source) = app.call(flow, "").await.expect("third attempt succeeds");
    assert_eq!(source, "miss");
    assert_eq!(response.flow.expect("flow").flow_id, flow);
    assert_eq!(app.upstream_calls(flow).await, 3);
}

#[tokio::test]
async fn permission_errors_are_not_retried() {
    let app = app(production_defaults).await;
    let flow = "sim:error:Ram.PermissionDeny";
    assert_failure(
        app.call(flow, "").await.map(|r| r.0),
        Code::PermissionDenied,
        "Ram.PermissionDeny",
        "cams.aliyuncs.com",
    );
    assert_eq!(app.upstream_calls(flow).await, 1);
}

#[tokio::test]
async fn retries_wait_as_long_as_cams_asks() {
    let app = app(|c| {
        production_defaults(c);
        c.retry.max_attempts = 2;
    })
    .await;
    let flow = "sim:throttle:400:wait";
    let started = Instant::now();
    let status = app
        .get_flow_within(flow, "", Some(Duration::from_secs(5)))
        .await
        .expect_err("always throttled");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(app.upstream_calls(flow).await, 2);
}

#[tokio::test]
async fn a_long_outage_ends_in_unavailable_within_the_deadline() {
    let app = app(|c| {
        production_defaults(c);
        c.retry.max_attempts = 10;
    })
    .await;
    let started = Instant::now();
    let status = assert_failure(
        app.get_flow_within(
            "sim:error:ServiceUnavailable",
            "",
            Some(Duration::from_secs(3)),
        )
        .await,
        Code::Unavailable,
        "ServiceUnavailable",
        "cams.aliyuncs.com",
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?} {status:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_bounds_extra_upstream_calls() {
    let app = app(|c| {
        production_defaults(c);
        c.retry.max_attempts = 5;
        c.retry.budget_ratio = 0.1;
        c.retry.budget_min_retries = 5;
    })
    .await;
    let calls = 60;
    let mut tasks = Vec::new();
    for i in 0..calls {
        let client = app.client.clone();
        tasks.push(tokio::spawn(async move {
            client
                .clone()
                .get_flow(GetFlowRequest {
                    flow_id: format!("sim:flaky:1000:outage-{i}"),
                    cust_space_id: String::new(),
                })
                .await
        }));
    }
    for t in tasks {
        let status = t.await.expect("task").expect_err("outage");
        assert_eq!(status.code(), Code::Unavailable);
    }
    let upstream: u64 = app.sandbox_stats().await.calls_by_flow.values().sum();
    // Without a budget: 5 attempts each, 300 calls. With it: 60 + 10 % of 60 + 5.
    assert!(upstream <= 60 + 6 + 5, "{upstream} upstream calls");
    assert!(upstream > 60, "some retries were allowed");
}

#[tokio::test]
async fn stale_answers_stand_in_while_cams_fails() {
    let app = app(|c| {
        production_defaults(c);
        c.cache.ttl = Duration::from_millis(200);
        c.cache.stale_if_error = Duration::from_secs(30);
    })
    .await;
    let flow = "sim:fail-after:1:stale";
    let (fresh, source) = app.call(flow, "").await.expect("first");
    assert_eq!(source, "miss");
    // pacing: past the TTL (200 ms from CAMS's answer), a wall-clock instant.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (stale, source) = app.call(flow, "").await.expect("stale stands in");
    assert_eq!(source, "stale");
    assert_eq!(stale, fresh);
    assert!(app.upstream_calls(flow).await >= 2, "CAMS was asked again");

    // Off by default: the failure comes through.
    let app = app_without_stale().await;
    app.call(flow, "").await.expect("first");
    // pacing: past the TTL (200 ms from CAMS's answer), a wall-clock instant.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = app.call(flow, "").await.expect_err("no stale fallback");
    assert_eq!(status.code(), Code::Unavailable);
}

#[tokio::test]
async fn a_stale_answer_that_runs_out_during_the_fetch_is_not_served() {
    // One CAMS call a second: the second call's fetch waits for the first call's slot to rest
    // (about a second), longer than its stale entry stays usable (TTL 200 ms + 300 ms).
    let app = app(|c| {
        production_defaults(c);
        c.limits.account_rps = 1;
        c.cache.ttl = Duration::from_millis(200);
        c.cache.refresh_window = Duration::ZERO;
        c.cache.stale_if_error = Duration::from_millis(300);
        c.retry.max_attempts = 1;
    })
    .await;
    let flow = "sim:fail-after:1:runs-out";
    let (_, source) = app.call(flow, "").await.expect("first");
    assert_eq!(source, "miss");
    // pacing: past the TTL (200 ms from CAMS's answer), into the stale window, a wall-clock
    // instant.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The entry is stale and usable when the call looks it up, no longer when CAMS fails.
    let status = app.call(flow, "").await.expect_err("the entry ran out");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(app.upstream_calls(flow).await, 2, "CAMS was asked again");
}

async fn app_without_stale() -> TestApp {
    app(|c| {
        production_defaults(c);
        c.cache.ttl = Duration::from_millis(200);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_past_the_concurrency_bound_fail_fast() {
    let app = app(|c| c.max_in_flight = 5).await;
    let mut tasks = Vec::new();
    for i in 0..30 {
        let client = app.client.clone();
        tasks.push(tokio::spawn(async move {
            let result = client
                .clone()
                .get_flow(GetFlowRequest {
                    flow_id: format!("sim:slow:1500:busy-{i}"),
                    cust_space_id: String::new(),
                })
                .await;
            (result, Instant::now())
        }));
    }
    let (mut served, mut shed) = (Vec::new(), Vec::new());
    for t in tasks {
        match t.await.expect("task") {
            (Ok(_), answered) => served.push(answered),
            (Err(status), answered) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                assert_eq!(error_info(&status).reason, "OVERLOADED");
                shed.push(answered);
            }
        }
    }
    assert_eq!((served.len(), shed.len()), (5, 25));
    // Shed at once: not held until a call in flight (1.5 s at CAMS) makes room.
    let first_served = served.iter().min().expect("served calls");
    let last_shed = shed.iter().max().expect("shed calls");
    assert!(
        last_shed < first_served,
        "a call was shed {:?} after the first admitted one was answered",
        *last_shed - *first_served
    );
}
