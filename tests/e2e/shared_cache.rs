//! Replicas sharing their cache through a Redis of its own (`cache.redis_url`), in front of one
//! simulated CAMS that counts the calls it accepted per flow. The quota stays per replica here,
//! so that no test waits out the shared quota's quiet period.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::AsyncCommands;
use tokio::time::Instant;

use crate::support::{
    redis::RedisServer,
    replica::{Replica, sandbox, stats},
    wait,
};

/// The bound on background work the tests wait for (a fill into Redis, a replica's connection to
/// it), far above the milliseconds it takes.
const BACKGROUND: Duration = Duration::from_secs(10);

/// Replicas sharing the cache in `redis`, with `extra` settings.
async fn replicas(
    n: usize,
    endpoint: &str,
    redis: &RedisServer,
    extra: &[(&str, &str)],
) -> Vec<Replica> {
    let url = redis.url();
    let mut settings = vec![
        ("CAMS_FLOWS_CACHE_REDIS_URL", url.as_str()),
        ("CAMS_FLOWS_CALL_TIMEOUT_MS", "3000"),
        ("CAMS_FLOWS_LIMITS_TENANT_RPS", "10000"),
        ("CAMS_FLOWS_LIMITS_TENANT_BURST", "10000"),
    ];
    settings.extend_from_slice(extra);
    let mut started = Vec::new();
    for _ in 0..n {
        let replica = Replica::start(endpoint, &settings).await;
        // Connected to the cache's Redis, so that its first call shares: until the connection is
        // made, calls go on without the shared tier, as they do while Redis is down.
        wait::until(
            BACKGROUND,
            "the replica's connection to the cache's Redis",
            || async { replica.process.output() },
            |log| log.contains("Redis connected"),
        )
        .await;
        started.push(replica);
    }
    started
}

async fn calls_to(endpoint: &str, flow: &str) -> u64 {
    stats(endpoint)
        .await
        .calls_by_flow
        .get(flow)
        .copied()
        .unwrap_or(0)
}

async fn connection(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connected to the test Redis")
}

/// The Redis keys of the shared entries of `flow`.
async fn entry_keys(redis: &RedisServer, flow: &str) -> Vec<String> {
    let mut connection = connection(redis).await;
    connection
        .keys(format!("*:flow:*:{flow}}}"))
        .await
        .expect("KEYS")
}

/// The keys of `flow`'s shared entries once there are at least `n`: a replica fills Redis after
/// it has answered, off the answer's path.
async fn filled_keys(redis: &RedisServer, flow: &str, n: usize) -> Vec<String> {
    wait::until(
        BACKGROUND,
        &format!("{n} shared entries of {flow} in Redis"),
        || entry_keys(redis, flow),
        |keys| keys.len() >= n,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_one_replica_fetched_is_served_by_the_others() {
    let redis = RedisServer::start();
    let (_sandbox, endpoint) = sandbox().await;
    let r = replicas(3, &endpoint, &redis, &[]).await;
    let flow = "sim:ok:shared";

    assert_eq!(r[0].source(flow, "t").await, "miss");
    assert_eq!(r[1].source(flow, "t").await, "shared");
    // Kept locally from then on: the next call touches nothing but the replica's own cache.
    assert_eq!(r[1].source(flow, "t").await, "hit");
    assert_eq!(r[2].source(flow, "t").await, "shared");
    assert_eq!(calls_to(&endpoint, flow).await, 1);

    // The same answer everywhere: the one CAMS sent, RequestId included.
    let (a, _) = r[0].call(flow, "t").await.expect("a");
    let (c, _) = r[2].call(flow, "t").await.expect("c");
    assert_eq!(a, c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_on_three_replicas_make_one_cams_call() {
    let redis = RedisServer::start();
    let (_sandbox, endpoint) = sandbox().await;
    let r = replicas(3, &endpoint, &redis, &[]).await;
    // Slow enough that every call arrives while the first fetch is under way.
    let flow = "sim:slow:400:stampede";

    let mut calls = Vec::new();
    for i in 0..200 {
        let client = r[i % 3].client.clone();
        calls.push(tokio::spawn(async move {
            let response = client
                .clone()
                .get_flow(cams_flows::pb::GetFlowRequest {
                    flow_id: flow.into(),
                    cust_space_id: "t".into(),
                })
                .await?;
            Ok::<_, tonic::Status>(
                response
                    .metadata()
                    .get("x-cams-cache")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("absent")
                    .to_owned(),
            )
        }));
    }
    let mut misses = 0;
    for call in calls {
        let source = call.await.expect("task").expect("every call is served");
        assert!(
            ["miss", "coalesced", "shared", "hit"].contains(&source.as_str()),
            "{source}"
        );
        misses += usize::from(source == "miss");
    }
    assert_eq!(misses, 1, "exactly one call fetched");
    assert_eq!(calls_to(&endpoint, flow).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_replica_starts_warm() {
    let redis = RedisServer::start();
    let (_sandbox, endpoint) = sandbox().await;
    let first = replicas(1, &endpoint, &redis, &[]).await;
    let flows = ["sim:ok:warm-1", "sim:ok:warm-2", "100000000000003"];
    for flow in flows {
        assert_eq!(first[0].source(flow, "t").await, "miss");
    }
    let before = stats(&endpoint).await.accepted;

    // Started after the fetches, as a scale-up or a rolling restart would.
    let late = replicas(1, &endpoint, &redis, &[]).await;
    for flow in flows {
        assert_eq!(late[0].source(flow, "t").await, "shared");
    }
    assert_eq!(
        stats(&endpoint).await.accepted,
        before,
        "no call reached CAMS"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_never_share_entries_across_replicas() {
    let redis = RedisServer::start();
    let (_sandbox, endpoint) = sandbox().await;
    let r = replicas(2, &endpoint, &redis, &[]).await;
    let flow = "100000000000002";

    let (a, source) = r[0].call(flow, "tenant-a").await.expect("a");
    assert_eq!(source, "miss");
    let (b, source) = r[1].call(flow, "tenant-b").await.expect("b");
    assert_eq!(source, "miss", "tenant B must not get tenant A's entry");
    let preview = |r: &cams_flows::pb::GetFlowResponse| r.flow.clone().expect("flow").preview_url;
    assert!(preview(&a).ends_with("space=tenant-a"), "{}", preview(&a));
    assert!(preview(&b).ends_with("space=tenant-b"), "{}", preview(&b));
    // Each tenant's entry reaches the other replica as that tenant's.
    let (b_elsewhere, source) = r[0].call(flow, "tenant-b").await.expect("b on A");
    assert_eq!(source, "shared");
    assert_eq!(preview(&b_elsewhere), preview(&b));
    assert_eq!(calls_to(&endpoint, flow).await, 2);
    let keys = filled_keys(&redis, flow, 2).await;
    assert_eq!(keys.len(), 2, "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_replica_serves_a_shared_answer_past_its_preview_url() {
    let redis = RedisServer::start();
    let (_sandbox, endpoint) = sandbox().await;
    // Without refresh-ahead, which would fetch a flow this close to its expiry again.
    let r = replicas(
        2,
        &endpoint,
        &redis,
        &[("CAMS_FLOWS_CACHE_REFRESH_WINDOW_MS", "0")],
    )
    .await;
    // The preview URL dies in 3 s (the gateway gives it up a second before, its margin for its
    // reading of CAMS's clock); the TTL (30 s) would keep the answer far longer.
    let flow = "sim:expiring:3000:shared";
    assert_eq!(r[0].source(flow, "t").await, "miss");

    // Redis drops the entry when the preview URL dies, not at the end of the TTL.
    let mut connection = connection(&redis).await;
    let keys = filled_keys(&redis, flow, 1).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let ttl_ms: i64 = connection.pttl(&keys[0]).await.expect("PTTL");
    assert!(ttl_ms > 0 && ttl_ms <= 3_000, "the entry lives {ttl_ms} ms");

    let (answer, source) = r[1].call(flow, "t").await.expect("shared");
    assert_eq!(source, "shared");
    let expires = answer
        .flow
        .and_then(|f| f.preview_url_expire_time)
        .expect("an expiry");
    let expires = UNIX_EPOCH
        + Duration::from_secs(u64::try_from(expires.seconds).expect("after 1970"))
        + Duration::from_nanos(u64::try_from(expires.nanos).expect("nanos"));
    assert!(expires > SystemTime::now());

    // pacing: until the preview URL's expiry, a wall-clock instant, has passed.
    tokio::time::sleep(
        expires
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            + Duration::from_millis(50),
    )
    .await;
    assert_eq!(r[1].source(flow, "t").await, "miss");
    assert_eq!(calls_to(&endpoint, flow).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_shared_entry_is_a_miss_and_is_replaced() {
    let redis = RedisServer::start();
    let (_sandbox, endpoint) = sandbox().await;
    let r = replicas(3, &endpoint, &redis, &[]).await;
    let mut connection = connection(&redis).await;
    let garbage: [&[u8]; 4] = [b"{\"fetched_at_ms\":1,", b"\xff\xfe not JSON", b"[]", b""];
    for (i, garbage) in garbage.into_iter().enumerate() {
        let flow = format!("sim:ok:corrupt-{i}");
        assert_eq!(r[0].source(&flow, "t").await, "miss");
        let keys = filled_keys(&redis, &flow, 1).await;
        assert_eq!(keys.len(), 1, "{keys:?}");
        let () = connection.set_ex(&keys[0], garbage, 60).await.expect("SET");
        // Another replica cannot read it: it fetches, serves, and stores a good entry ...
        assert_eq!(r[1].source(&flow, "t").await, "miss");
        // ... which the third one reads.
        assert_eq!(r[2].source(&flow, "t").await, "shared");
        assert_eq!(calls_to(&endpoint, &flow).await, 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_go_on_while_the_cache_redis_is_down_and_sharing_resumes() {
    let mut redis = RedisServer::start();
    let (_sandbox, endpoint) = sandbox().await;
    let r = replicas(3, &endpoint, &redis, &[]).await;
    let warm = "sim:ok:warm";
    assert_eq!(r[0].source(warm, "t").await, "miss");
    assert_eq!(r[1].source(warm, "t").await, "shared");

    redis.kill();
    // Each replica answers from its own cache, or from CAMS; no call fails for want of Redis.
    assert_eq!(r[1].source(warm, "t").await, "hit");
    assert_eq!(r[2].source(warm, "t").await, "miss");
    for (i, replica) in r.iter().enumerate() {
        assert_eq!(
            replica.source(&format!("sim:ok:down-{i}"), "t").await,
            "miss"
        );
        assert_eq!(
            replica.source(&format!("sim:ok:down-{i}"), "t").await,
            "hit"
        );
    }

    redis.restart();
    // Once Redis is back (empty) and the replicas have noticed (they probe it every second), a
    // fetch on one replica is shared with the others again.
    let replicas = &r;
    let mut round = 0;
    wait::until(
        Duration::from_secs(15),
        "a flow fetched by one replica, served to another from the restarted Redis",
        || {
            round += 1;
            let flow = format!("sim:ok:back-{round}");
            async move {
                assert_eq!(replicas[0].source(&flow, "t").await, "miss");
                replicas[1].source(&flow, "t").await
            }
        },
        |source| source == "shared",
    )
    .await;
}

/// An entry read on every replica near the end of its TTL is refreshed once for all of them,
/// and every replica serves the refreshed answer as a hit once the old one's TTL is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_is_one_cams_call_for_all_replicas() {
    let redis = RedisServer::start();
    let (_sandbox, endpoint) = sandbox().await;
    let r = replicas(
        3,
        &endpoint,
        &redis,
        &[
            ("CAMS_FLOWS_CACHE_TTL_MS", "3000"),
            ("CAMS_FLOWS_CACHE_REFRESH_WINDOW_MS", "1000"),
            ("CAMS_FLOWS_CACHE_TTL_JITTER_PERCENT", "0"),
        ],
    )
    .await;
    let flow = "sim:ok:refreshed";
    assert_eq!(r[0].source(flow, "t").await, "miss");
    // The entry's TTL runs from CAMS's answer, which came before this.
    let fetched = Instant::now();
    assert_eq!(r[1].source(flow, "t").await, "shared");
    assert_eq!(r[2].source(flow, "t").await, "shared");

    // pacing: into the refresh window (the last second of the TTL), where every replica asks
    // for a refresh, all at once.
    tokio::time::sleep_until(fetched + Duration::from_millis(2_100)).await;
    let reads = r.iter().map(|replica| replica.call(flow, "t"));
    for read in futures_util::future::join_all(reads).await {
        assert_eq!(read.expect("a hit").1, "hit");
    }
    let ttl_over = fetched + Duration::from_millis(3_000);
    wait::until(
        ttl_over.saturating_duration_since(Instant::now()),
        "the refresh at CAMS before the first answer's TTL is over",
        || calls_to(&endpoint, flow),
        |&calls| calls >= 2,
    )
    .await;

    // Past the first answer's TTL, every replica has the refreshed one: kept locally already
    // (the replica that refreshed, and any that read it at once), or read from Redis now. The
    // refreshed answer is not due for a refresh of its own before 2 s after it was fetched.
    // pacing: past the first answer's TTL, a wall-clock instant.
    tokio::time::sleep_until(ttl_over + Duration::from_millis(100)).await;
    for replica in &r {
        let source = replica.source(flow, "t").await;
        assert!(source == "hit" || source == "shared", "{source}");
    }
    assert_eq!(calls_to(&endpoint, flow).await, 2, "refreshed once for all");
}

/// A cache Redis that holds its connections and answers nothing costs at most one wait of
/// `redis.timeout_ms`: the replicas skip it while it is known to be down, and do not hold an
/// answer for its fill. Calls with a deadline of twice that bound are all served (the gateway
/// answers a little before the deadline, so a second wait would not fit; the bound is a second,
/// so that the rest of a call has ample room on a loaded host).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_cache_redis_costs_a_miss_one_timeout_at_most() {
    let redis = RedisServer::start();
    let (_sandbox, endpoint) = sandbox().await;
    let r = replicas(
        2,
        &endpoint,
        &redis,
        &[("CAMS_FLOWS_REDIS_TIMEOUT_MS", "1000")],
    )
    .await;
    assert_eq!(r[0].source("sim:ok:before", "t").await, "miss");

    redis.freeze(true);
    for i in 0..6 {
        let flow = format!("sim:ok:hung-{i}");
        r[i % 2]
            .get(&flow, "t", Duration::from_millis(2_000))
            .await
            .unwrap_or_else(|status| panic!("{flow}: {status:?}"));
    }
    redis.freeze(false);
}
