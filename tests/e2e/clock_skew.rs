//! A gateway whose host clock disagrees with CAMS's: preview URLs die by CAMS's clock, so the
//! cache serves an answer until then by CAMS's clock (as the gateway measures it from CAMS's
//! `Date`), never after, and keeps an answer whose preview URL only looks dead by the host's
//! clock. The simulated CAMS runs its clock ahead of the host's or behind, which to the gateway
//! is the same as its own clock running behind or ahead; the tests know CAMS's clock exactly
//! (the host's plus the offset) and judge every answer by it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cams_flows::{
    cache::CacheConfig,
    clock::{millis_between, shift},
    config::Config,
    pb::GetFlowResponse,
};
use tokio::time::Instant;

use crate::support::{
    KEY_ID, KEY_SECRET, TestApp,
    process::{Running, binary},
    redis::RedisServer,
    replica::{Replica, stats},
    wait,
};

/// How far the simulated CAMS's clock is from the host's, either way: under a minute, so that
/// signatures are still dated by the host's clock, and far more than any preview URL here lives.
const SKEW_MS: i64 = 40_000;

/// How long each answer's preview URL lives, from CAMS's answer, by CAMS's clock.
const LIFE: &str = "5000";

/// The bound on serving one answer from the cache: its preview URL's life and ample room.
const BOUND: Duration = Duration::from_secs(20);

/// How much earlier than the preview URL's death the last answer from the cache may come: the
/// gateway's margin (1 s), its reading's own error (half a second at most on loopback) and the
/// time between two reads on a loaded host.
const LAST_HIT_WITHIN_MS: i64 = 3_000;

/// CAMS's clock, as the simulated CAMS `offset_ms` from the host's reads it.
fn cams_now(offset_ms: i64) -> SystemTime {
    shift(SystemTime::now(), offset_ms)
}

/// The answer's `PreviewUrlExpires`, a time on CAMS's clock.
fn preview_ends(response: &GetFlowResponse) -> SystemTime {
    let at = response
        .flow
        .as_ref()
        .and_then(|f| f.preview_url_expire_time)
        .expect("an expiry");
    UNIX_EPOCH
        + Duration::from_secs(u64::try_from(at.seconds).expect("after 1970"))
        + Duration::from_nanos(u64::try_from(at.nanos).expect("nanos"))
}

/// A cache with a TTL far longer than any preview URL here, without refresh-ahead (which would
/// fetch an answer this close to its end again) or stale answers.
fn caching(c: &mut Config) {
    c.cache = CacheConfig {
        ttl: Duration::from_secs(30),
        refresh_window: Duration::ZERO,
        stale_if_error: Duration::ZERO,
        ..CacheConfig::default()
    };
}

/// Reads `flow` every 50 ms until the gateway misses (fetches it again), and checks every
/// answer served from the cache on the way: the one CAMS gave first, whose preview URL dies at
/// `ends`, and only while it lives by CAMS's clock (read before the call: a hit decided later is
/// later still). Returns CAMS's clock at the last hit.
async fn cached_until_a_miss(
    app: &TestApp,
    flow: &str,
    offset_ms: i64,
    ends: SystemTime,
) -> SystemTime {
    let deadline = Instant::now() + BOUND;
    let mut last_hit = None;
    loop {
        let sent = cams_now(offset_ms);
        let (response, source) = app.call(flow, "t").await.expect("served");
        match source.as_str() {
            "hit" => {
                assert!(
                    sent < ends,
                    "a hit {} ms after the preview URL died by CAMS's clock",
                    millis_between(sent, ends)
                );
                assert_eq!(preview_ends(&response), ends, "the cached answer");
                last_hit = Some(sent);
            }
            "miss" => break,
            other => panic!("served as {other}"),
        }
        assert!(
            Instant::now() < deadline,
            "still served from the cache {BOUND:?} after the first answer"
        );
        // pacing: a read every 50 ms across the answer's life.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let last_hit = last_hit.expect("the answer was served from the cache");
    let early = millis_between(ends, last_hit);
    assert!(
        early <= LAST_HIT_WITHIN_MS,
        "the cache gave the answer up {early} ms before its preview URL died"
    );
    last_hit
}

/// CAMS 40 s ahead: by the host's clock the preview URL has 45 s to live, by CAMS's 5 s. The
/// answer is served from the cache for those 5 s (less the margin) and never after.
#[tokio::test]
async fn with_cams_ahead_an_answer_is_cached_until_its_preview_url_dies_by_cams_clock() {
    let app = TestApp::builder()
        .sandbox_clock_offset_ms(SKEW_MS)
        .config(caching)
        .spawn()
        .await;
    let flow = &format!("sim:expiring:{LIFE}:ahead");
    let (first, source) = app.call(flow, "t").await.expect("first");
    assert_eq!(source, "miss");
    let ends = preview_ends(&first);
    assert!(
        millis_between(ends, SystemTime::now()) > SKEW_MS,
        "CAMS dated the expiry by its own clock, ahead of the host's"
    );
    cached_until_a_miss(&app, flow, SKEW_MS, ends).await;
    assert_eq!(app.upstream_calls(flow).await, 2);
}

/// CAMS 40 s behind: by the host's clock the preview URL died 35 s ago, by CAMS's it has 5 s to
/// live. The answer is kept, and served until then.
#[tokio::test]
async fn with_cams_behind_an_answer_dead_by_the_host_clock_is_still_cached() {
    let app = TestApp::builder()
        .sandbox_clock_offset_ms(-SKEW_MS)
        .config(caching)
        .spawn()
        .await;
    let flow = &format!("sim:expiring:{LIFE}:behind");
    let (first, source) = app.call(flow, "t").await.expect("first");
    assert_eq!(source, "miss");
    let ends = preview_ends(&first);
    assert!(
        ends < SystemTime::now(),
        "by the host's clock the preview URL is already dead"
    );
    cached_until_a_miss(&app, flow, -SKEW_MS, ends).await;
    assert_eq!(app.upstream_calls(flow).await, 2);
}

/// `cams-flows sandbox --clock-offset-ms 40000`, with the tests' AccessKey, and its endpoint.
fn sandbox_ahead() -> (Running, String) {
    let offset = SKEW_MS.to_string();
    let sandbox = Running::start(binary().args([
        "sandbox",
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--access-key-id",
        KEY_ID,
        "--access-key-secret",
        KEY_SECRET,
        "--rps",
        "1000",
        "--clock-offset-ms",
        &offset,
    ]));
    let listening = sandbox.wait_for("simulated CAMS listening");
    assert_eq!(listening["clock_offset_ms"], SKEW_MS, "{listening}");
    let endpoint = listening["endpoint"].as_str().expect("endpoint").to_owned();
    (sandbox, endpoint)
}

/// A replica sharing its cache in `redis`, connected to it, with `extra` settings.
async fn replica(endpoint: &str, redis: &RedisServer, extra: &[(&str, &str)]) -> Replica {
    let url = redis.url();
    let mut settings = vec![
        ("CAMS_FLOWS_CACHE_REDIS_URL", url.as_str()),
        ("CAMS_FLOWS_CACHE_REFRESH_WINDOW_MS", "0"),
        ("CAMS_FLOWS_CALL_TIMEOUT_MS", "3000"),
        ("CAMS_FLOWS_LIMITS_TENANT_RPS", "10000"),
        ("CAMS_FLOWS_LIMITS_TENANT_BURST", "10000"),
    ];
    settings.extend_from_slice(extra);
    let replica = Replica::start(endpoint, &settings).await;
    wait::until(
        Duration::from_secs(10),
        "the replica's connection to the cache's Redis",
        || async { replica.process.output() },
        |log| log.contains("Redis connected"),
    )
    .await;
    replica
}

/// Two replicas on one Redis in front of a CAMS 40 s ahead of their host. One has heard from
/// CAMS and stores an answer whose times are CAMS's; the other has not, and its view of CAMS's
/// clock is its own: the entry was fetched 40 s in its future, so it does not trust it (by its
/// clock the preview URL would look alive for 45 s instead of 5) and fetches the flow itself.
/// Once both have heard from CAMS, neither serves an answer, its own or the other's, past its
/// preview URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_that_read_cams_clock_differently_never_serve_a_shared_entry_past_its_preview_url()
{
    let redis = RedisServer::start();
    let (_sandbox, endpoint) = sandbox_ahead();
    let a = replica(&endpoint, &redis, &[]).await;
    let b = replica(
        &endpoint,
        &redis,
        &[("RUST_LOG", "info,cams_flows::cache=debug")],
    )
    .await;
    let flow = &format!("sim:expiring:{LIFE}:shared");
    let calls = || async {
        stats(&endpoint)
            .await
            .calls_by_flow
            .get(flow.as_str())
            .copied()
            .unwrap_or(0)
    };

    let (first, source) = a.call(flow, "t").await.expect("first");
    assert_eq!(source, "miss");
    assert!(millis_between(preview_ends(&first), SystemTime::now()) > SKEW_MS);
    let connection = redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connected to the test Redis");
    wait::until(
        Duration::from_secs(10),
        "the shared entry in Redis",
        || {
            let mut connection = connection.clone();
            async move {
                redis::AsyncCommands::keys::<_, Vec<String>>(
                    &mut connection,
                    format!("*:flow:*:{flow}}}"),
                )
                .await
                .expect("KEYS")
            }
        },
        |keys| !keys.is_empty(),
    )
    .await;

    let (second, source) = b.call(flow, "t").await.expect("second");
    assert_eq!(source, "miss", "the entry is not trusted");
    assert_eq!(calls().await, 2);
    wait::until(
        Duration::from_secs(10),
        "the replica saying why it did not trust the entry",
        || async { b.process.output() },
        |log| log.contains("not trusted"),
    )
    .await;

    // Both now read CAMS's clock from its answers. Until both answers' preview URLs have died,
    // and a second more, every answer either serves from a cache (its own, or the other's
    // through Redis) is alive by CAMS's clock.
    let until = preview_ends(&second) + Duration::from_secs(1);
    let mut from_cache = 0;
    while cams_now(SKEW_MS) < until {
        for (i, replica) in [&a, &b].into_iter().enumerate() {
            let sent = cams_now(SKEW_MS);
            let (response, source) = replica.call(flow, "t").await.expect("served");
            match source.as_str() {
                "hit" | "shared" => {
                    from_cache += 1;
                    let ends = preview_ends(&response);
                    assert!(
                        sent < ends,
                        "replica {i}: {source} {} ms after the preview URL died by CAMS's clock",
                        millis_between(sent, ends)
                    );
                }
                "miss" => {}
                other => panic!("replica {i}: served as {other}"),
            }
        }
        // pacing: a read on each replica every 50 ms across the answers' lives.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(from_cache > 0, "the answers were served from the caches");
    assert!(
        calls().await > 2,
        "and fetched again once their preview URLs died"
    );
}
