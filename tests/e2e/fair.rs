//! Fair share of the account quota and refresh-ahead, end to end through gRPC against a simulated
//! CAMS that enforces the real quota (5 calls per sliding second per AccessKey).

use std::time::Duration;

use cams_flows::{
    config::{CacheConfig, Config, RetryConfig},
    limits::{LimitsConfig, Quota},
    pb::GetFlowRequest,
};
use tokio::time::Instant;

use crate::support::{TestApp, all_quiet_calls_served, wait};

fn quota(rps: f64, burst: u32) -> Quota {
    Quota {
        rps,
        burst: std::num::NonZeroU32::new(burst).expect("non-zero"),
    }
}

/// Six tenants flood at their own limit (2/s, burst 2) with calls that all need CAMS, while four
/// quiet tenants each send one call every two seconds with a 3 s deadline: ten tenants share 5
/// calls per second, and the quiet ones ask for less than their share, so every quiet call is
/// served, and CAMS, never over its quota, throttles nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_noisy_tenants_cannot_starve_quiet_ones() {
    let app = TestApp::builder()
        .sandbox_rps(5)
        .limits(LimitsConfig {
            tenant: quota(2.0, 2),
            ..LimitsConfig::default()
        })
        .spawn()
        .await;
    let end = Instant::now() + Duration::from_secs(6);

    let mut noisy = Vec::new();
    for n in 0..6 {
        for lane in 0..2 {
            let client = app.client.clone();
            noisy.push(tokio::spawn(async move {
                let (mut ok, mut refused) = (0u32, 0u32);
                let mut i = 0u32;
                while Instant::now() < end {
                    i += 1;
                    let result = client
                        .clone()
                        .get_flow(GetFlowRequest {
                            flow_id: format!("sim:ok:noisy-{n}-{lane}-{i}"),
                            cust_space_id: format!("noisy-{n}"),
                        })
                        .await;
                    match result {
                        Ok(_) => ok += 1,
                        Err(_) => {
                            refused += 1;
                            // pacing: over its own limit, the flood goes on as fast as it is let.
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                (ok, refused)
            }));
        }
    }

    let mut quiet = Vec::new();
    for q in 0..4 {
        let client = app.client.clone();
        quiet.push(tokio::spawn(async move {
            // pacing: staggered, as independent backends would be.
            tokio::time::sleep(Duration::from_millis(250 * q)).await;
            let mut ticks = tokio::time::interval(Duration::from_secs(2));
            let mut results = Vec::new();
            let mut i = 0;
            while Instant::now() < end {
                ticks.tick().await;
                i += 1;
                let mut request = tonic::Request::new(GetFlowRequest {
                    flow_id: format!("sim:ok:quiet-{q}-{i}"),
                    cust_space_id: format!("quiet-{q}"),
                });
                request.set_timeout(Duration::from_secs(3));
                results.push(client.clone().get_flow(request).await.map(|_| ()));
            }
            results
        }));
    }

    let quiet_calls = all_quiet_calls_served(quiet).await;
    assert!(quiet_calls >= 12, "{quiet_calls} quiet calls");
    let (mut ok, mut refused) = (0, 0);
    for task in noisy {
        let (o, r) = task.await.expect("noisy task");
        ok += o;
        refused += r;
    }
    assert!(
        ok > 0 && refused > 0,
        "the floods were served and held back: {ok} / {refused}"
    );
    let stats = app.sandbox_stats().await;
    assert_eq!(stats.throttled, 0, "{stats:?}");
    assert!(stats.max_accepted_per_sliding_second <= 5, "{stats:?}");
    assert!(
        stats.max_accepted_per_sliding_second >= 4,
        "the quota was the bottleneck: {stats:?}"
    );
}

/// Caching as in production, with refresh-ahead over a short TTL whose timing the tests can
/// follow: a 1 s TTL, no jitter, a 500 ms refresh window, and no retries (each upstream call is
/// one fetch).
fn refreshing(c: &mut Config) {
    c.cache = CacheConfig {
        ttl: Duration::from_millis(1_000),
        refresh_window: Duration::from_millis(500),
        ttl_jitter_percent: 0,
        ..CacheConfig::default()
    };
    c.retry = RetryConfig {
        max_attempts: 1,
        ..RetryConfig::default()
    };
}

/// Waits until the simulated CAMS has accepted `n` calls for `flow`: a refresh runs in the
/// background, after the hit that asked for it was answered.
async fn wait_upstream(app: &TestApp, flow: &str, n: u64) {
    wait::until(
        Duration::from_secs(5),
        &format!("{n} calls for {flow} at CAMS"),
        || app.upstream_calls(flow),
        |&calls| calls >= n,
    )
    .await;
}

#[tokio::test]
async fn a_read_in_the_refresh_window_refreshes_once_while_callers_get_hits() {
    let app = TestApp::builder().config(refreshing).spawn().await;
    let flow = "sim:slow:300:refreshed";
    let unread = "sim:ok:unread";
    assert_eq!(app.call(flow, "t").await.expect("first").1, "miss");
    // An entry's TTL runs from when CAMS's answer arrived, which was before this.
    let started = Instant::now();
    assert_eq!(app.call(unread, "t").await.expect("first").1, "miss");
    let unread_fetched = Instant::now();
    // Before the window: hits, and no refresh.
    assert_eq!(app.call(flow, "t").await.expect("early").1, "hit");
    // pacing: into the refresh window (the TTL's last 500 ms), early enough that the refresh
    // (300 ms at CAMS) ends well before the TTL.
    tokio::time::sleep_until(started + Duration::from_millis(550)).await;
    // In the window: still hits; the first of them starts exactly one refresh, and the reads
    // while it is under way (it takes 300 ms at CAMS) are hits too.
    let mut reads = Vec::new();
    for _ in 0..20 {
        let app_call = app.call(flow, "t");
        reads.push(app_call.await.expect("hit while refreshing").1);
    }
    assert!(reads.iter().all(|r| r == "hit"), "{reads:?}");
    wait_upstream(&app, flow, 2).await;
    // Past the old TTL the refreshed answer serves: a hit, and no further CAMS call (the
    // refreshed answer comes due 500 ms after it arrived, so 800 ms after the window's first
    // read at the earliest).
    // pacing: past the old TTL, a wall-clock instant.
    tokio::time::sleep_until(started + Duration::from_millis(1_250)).await;
    assert_eq!(app.call(flow, "t").await.expect("after").1, "hit");
    assert_eq!(app.upstream_calls(flow).await, 2, "refreshed exactly once");
    // An entry nobody read in its window was not refreshed: it expired.
    assert_eq!(app.upstream_calls(unread).await, 1);
    // pacing: past that entry's TTL, a wall-clock instant (already, unless the host is slow).
    tokio::time::sleep_until(unread_fetched + Duration::from_millis(1_050)).await;
    assert_eq!(app.call(unread, "t").await.expect("expired").1, "miss");
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_entry_until_its_ttl() {
    let app = TestApp::builder().config(refreshing).spawn().await;
    // CAMS answers the first call and fails every later one.
    let flow = "sim:fail-after:1:refresh";
    assert_eq!(app.call(flow, "t").await.expect("first").1, "miss");
    // The entry's TTL runs from when CAMS's answer arrived, which was before this.
    let fetched = Instant::now();
    // pacing: into the refresh window (the TTL's last 500 ms), a wall-clock instant.
    tokio::time::sleep_until(fetched + Duration::from_millis(550)).await;
    assert_eq!(app.call(flow, "t").await.expect("in the window").1, "hit");
    wait_upstream(&app, flow, 2).await;
    // The refresh failed; the entry serves on until its TTL ...
    assert_eq!(app.call(flow, "t").await.expect("still cached").1, "hit");
    // pacing: past the TTL, a wall-clock instant.
    tokio::time::sleep_until(fetched + Duration::from_millis(1_050)).await;
    // ... and then CAMS's failure reaches the caller (stale_if_error is off).
    let status = app.call(flow, "t").await.expect_err("past the TTL");
    assert_eq!(status.code(), tonic::Code::Unavailable);
}

#[tokio::test]
async fn refreshed_answers_never_pass_their_preview_url() {
    let app = TestApp::builder()
        .config(refreshing)
        .config(|c| c.cache.ttl = Duration::from_secs(3))
        .spawn()
        .await;
    // Each answer's preview URL dies 2 s after CAMS sends it, and the gateway gives it up a
    // second before (its margin for its reading of CAMS's clock): before the TTL would end.
    let flow = "sim:expiring:2000:refresh";
    let end = Instant::now() + Duration::from_millis(2_500);
    let mut served = 0;
    while Instant::now() < end {
        let (response, _) = app.call(flow, "t").await.expect("served");
        let expires = response
            .flow
            .and_then(|f| f.preview_url_expire_time)
            .expect("an expiry");
        let expires = std::time::UNIX_EPOCH
            + Duration::from_secs(u64::try_from(expires.seconds).expect("after 1970"))
            + Duration::from_nanos(u64::try_from(expires.nanos).expect("nanos"));
        assert!(
            expires > std::time::SystemTime::now(),
            "served a dead preview URL"
        );
        served += 1;
        // pacing: a read every 20 ms or so, across several preview URLs' lives.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served > 50);
    // Refreshed ahead rather than missed each time: several upstream calls, none throttled.
    assert!(app.upstream_calls(flow).await >= 3);
}

/// A warm cache under quota pressure crosses several TTLs without a failed call or a miss:
/// refresh-ahead keeps the read entries fresh within what the account's quota allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_cache_crosses_several_ttls_without_a_failed_call() {
    let app = TestApp::builder()
        .sandbox_rps(5)
        .limits(LimitsConfig::default())
        .config(|c| {
            c.limits.tenant = quota(100_000.0, 100_000);
            c.cache = CacheConfig {
                ttl: Duration::from_millis(2_000),
                refresh_window: Duration::from_millis(1_000),
                ..CacheConfig::default()
            };
            c.retry = RetryConfig::default();
        })
        .spawn()
        .await;
    let keys: Vec<(String, String)> = (0..2)
        .flat_map(|t| (0..2).map(move |f| (format!("sim:ok:warm-{f}"), format!("tenant-{t}"))))
        .collect();
    for (flow, tenant) in &keys {
        app.call(flow, tenant).await.expect("warm-up");
    }
    // 4 entries over a 2 s TTL need 2 refreshes per second: within the quota of 5.
    let end = Instant::now() + Duration::from_millis(7_000);
    let mut callers = Vec::new();
    for c in 0..20 {
        let (client, keys) = (app.client.clone(), keys.clone());
        callers.push(tokio::spawn(async move {
            let (mut sources, mut i) = (Vec::new(), c);
            while Instant::now() < end {
                let (flow, tenant) = &keys[i % keys.len()];
                i += 1;
                let response = client
                    .clone()
                    .get_flow(GetFlowRequest {
                        flow_id: flow.clone(),
                        cust_space_id: tenant.clone(),
                    })
                    .await
                    .expect("no call fails");
                let source = response
                    .metadata()
                    .get("x-cams-cache")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                sources.push(source);
                // pacing: steady reads, without spinning the machine's cores.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            sources
        }));
    }
    let mut sources = Vec::new();
    for task in callers {
        sources.extend(task.await.expect("caller"));
    }
    let misses: Vec<_> = sources.iter().filter(|s| *s != "hit").collect();
    assert!(
        misses.is_empty(),
        "every call after the warm-up is a hit: {misses:?}"
    );
    assert!(sources.len() > 1_000, "{} calls", sources.len());
    let stats = app.sandbox_stats().await;
    assert_eq!(stats.throttled, 0, "{stats:?}");
    // Warm-up plus one refresh per entry each time its refresh window comes round, that is
    // every TTL − window = 1 s (7 in 7 s, 8 with the jitter), not one per call.
    assert!(
        stats.accepted <= 4 + 4 * 8,
        "{} CAMS calls for {} client calls",
        stats.accepted,
        sources.len()
    );
}
