//! Several gateway processes sharing one Redis in front of one simulated CAMS, which enforces the
//! real quota (5 calls per sliding second per AccessKey) and counts what it accepted.

use std::time::Duration;

use cams_flows::pb::GetFlowRequest;
use tokio::time::Instant;
use tonic::{Code, Status};

use crate::support::{
    details, error_info,
    process::Running,
    redis::RedisServer,
    replica::{Replica, sandbox, stats},
    wait,
};

/// Waits until `process` has logged a line holding `needle` (its output is read as it comes, a
/// little after it is written).
async fn logged(process: &Running, needle: &str) {
    wait::until(
        Duration::from_secs(10),
        &format!("a log line with {needle:?}"),
        || async { process.output() },
        |output| output.contains(needle),
    )
    .await;
}

/// Calls that each need CAMS (a new flow every time) through every replica until `end`: the
/// successes, and the failures by reason.
async fn flood(replicas: &[Replica], tag: &str, end: Instant) -> (u32, Vec<Status>) {
    let mut tasks = Vec::new();
    for (r, replica) in replicas.iter().enumerate() {
        for lane in 0..3 {
            let client = replica.client.clone();
            let tag = format!("{tag}-{r}-{lane}");
            tasks.push(tokio::spawn(async move {
                let (mut ok, mut failed, mut i) = (0, Vec::new(), 0);
                while Instant::now() < end {
                    i += 1;
                    let mut request = tonic::Request::new(GetFlowRequest {
                        flow_id: format!("sim:ok:{tag}-{i}"),
                        cust_space_id: format!("tenant-{r}-{lane}"),
                    });
                    request.set_timeout(Duration::from_secs(3));
                    match client.clone().get_flow(request).await {
                        Ok(_) => ok += 1,
                        Err(status) => {
                            failed.push(status);
                            // pacing: as a client that honours RetryInfo would, if less
                            // patiently: the flood stays a flood without spinning the cores.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                (ok, failed)
            }));
        }
    }
    let (mut ok, mut failed) = (0, Vec::new());
    for task in tasks {
        let (o, f) = task.await.expect("flood task");
        ok += o;
        failed.extend(f);
    }
    (ok, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_the_account_quota_even_when_redis_is_lost() {
    let mut redis = RedisServer::start();
    let (_sandbox, endpoint) = sandbox().await;
    // Calls bounded at 2.5 s: when all five slots were just taken, a quiet tenant's call can
    // wait the second they rest.
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(
            Replica::start(
                &endpoint,
                &[
                    ("CAMS_FLOWS_REDIS_URL", &redis.url()),
                    ("CAMS_FLOWS_CALL_TIMEOUT_MS", "2500"),
                ],
            )
            .await,
        );
    }
    // A flow every replica has cached, for the calls that must go on without Redis.
    for replica in &replicas {
        replica.get_eventually("100000000000002", "warm").await;
    }

    // Two replicas are flooded; through the third, a quiet tenant calls every half second with
    // a 3 s deadline: the shared quota is not the first come's.
    let end = Instant::now() + Duration::from_secs(3);
    let quiet = {
        let client = replicas[2].client.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_millis(500));
            let mut results = Vec::new();
            while Instant::now() < end {
                ticks.tick().await;
                let mut request = tonic::Request::new(GetFlowRequest {
                    flow_id: format!("sim:ok:quiet-{}", results.len()),
                    cust_space_id: "quiet".into(),
                });
                request.set_timeout(Duration::from_secs(3));
                results.push(client.clone().get_flow(request).await.map(drop));
            }
            results
        })
    };
    let (ok, failed) = flood(&replicas[..2], "a", end).await;
    assert!(ok >= 10, "{ok} calls served in 3 s");
    for result in quiet.await.expect("quiet") {
        result.expect("the quiet tenant's call is served");
    }
    // Past the quota, calls are refused by the account quota, or (granted a slot too late to
    // finish within their bound) end at their deadline: never anything else.
    for status in &failed {
        let reason = error_info(status).reason;
        assert!(
            reason == "ACCOUNT_RATE_LIMITED" || reason == "DEADLINE_EXCEEDED",
            "{status:?}"
        );
    }
    let before = stats(&endpoint).await;
    assert_eq!(before.throttled, 0, "{before:?}");
    assert!(before.max_accepted_per_sliding_second <= 5, "{before:?}");

    // Redis dies: calls that need CAMS are refused quickly, with the documented details; cache
    // hits go on.
    redis.kill();
    let t0 = Instant::now();
    let status = replicas[1]
        .get("sim:ok:after-the-loss", "t", Duration::from_secs(5))
        .await
        .expect_err("no quota without Redis");
    assert!(
        t0.elapsed() < Duration::from_millis(1_500),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(error_info(&status).reason, "QUOTA_STORE_UNAVAILABLE");
    assert!(details(&status).retry_info().is_some(), "{status:?}");
    for replica in &replicas {
        replica
            .get("100000000000002", "warm", Duration::from_secs(2))
            .await
            .expect("a cache hit without Redis");
    }
    assert_eq!(
        stats(&endpoint).await.accepted,
        before.accepted,
        "nothing reached CAMS"
    );

    // Redis comes back empty: nothing is admitted until every lease that might have been lost
    // has ended, then the replicas go on, and the bound held across the loss.
    redis.restart();
    replicas[2]
        .get_eventually("sim:ok:after-the-restart", "t")
        .await;
    // The quiet period is explained in the log.
    logged(
        &replicas[2].process,
        "the account quota's state in Redis is new",
    )
    .await;
    let (ok, _) = flood(&replicas, "b", Instant::now() + Duration::from_secs(2)).await;
    assert!(ok > 0, "served again");
    let after = stats(&endpoint).await;
    assert_eq!(after.throttled, 0, "{after:?}");
    assert!(after.max_accepted_per_sliding_second <= 5, "{after:?}");
    // The recovery is logged.
    for replica in &replicas {
        logged(&replica.process, "Redis reachable again").await;
    }
}

/// A replica frozen while it holds slots cannot release them; the others go on once its leases
/// have ended: not when the calls would have finished, and not much later either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_replica_loses_its_slots_when_its_leases_end() {
    let redis = RedisServer::start();
    let (_sandbox, endpoint) = sandbox().await;
    // Its calls are bounded at 2 s, so its leases last 2 s + 1 s of rest + 2 s of margin = 5 s.
    let url = redis.url();
    let frozen = Replica::start(
        &endpoint,
        &[
            ("CAMS_FLOWS_REDIS_URL", &url),
            ("CAMS_FLOWS_CALL_TIMEOUT_MS", "2000"),
        ],
    )
    .await;
    let other = Replica::start(
        &endpoint,
        &[
            ("CAMS_FLOWS_REDIS_URL", &url),
            ("CAMS_FLOWS_CALL_TIMEOUT_MS", "10000"),
            ("CAMS_FLOWS_LIMITS_MAX_WAIT_MS", "20000"),
        ],
    )
    .await;
    frozen.get_eventually("sim:ok:first", "t").await;
    // pacing: past that first call's slot's rest (a second from its end, a wall-clock instant),
    // so that the frozen replica takes all five at once.
    tokio::time::sleep(Duration::from_millis(1_100)).await;

    let held_at = Instant::now();
    let mut holding = Vec::new();
    for i in 0..5 {
        let client = frozen.client.clone();
        holding.push(tokio::spawn(async move {
            client
                .clone()
                .get_flow(GetFlowRequest {
                    flow_id: format!("sim:slow:1500:held-{i}"),
                    cust_space_id: format!("held-{i}"),
                })
                .await
        }));
    }
    wait::until(
        Duration::from_secs(10),
        "the five held calls at CAMS",
        || async { stats(&endpoint).await.accepted },
        |&accepted| accepted >= 6,
    )
    .await;
    frozen.process.signal("STOP");

    other
        .get(
            "sim:ok:after-the-leases",
            "another",
            Duration::from_secs(15),
        )
        .await
        .expect("served once the frozen replica's leases ended");
    // Released normally, the slots would be free 1.5 s + 1 s after they were taken.
    let waited = held_at.elapsed();
    assert!(
        waited >= Duration::from_millis(4_500),
        "a slot was free again after {waited:?}, before the frozen replica's leases ended"
    );
    assert!(waited < Duration::from_secs(8), "{waited:?}");
    frozen.process.signal("CONT");
    let after = stats(&endpoint).await;
    assert_eq!(after.throttled, 0, "{after:?}");
    assert!(after.max_accepted_per_sliding_second <= 5, "{after:?}");
    drop(holding);
}

/// One tenant calling through all three replicas gets its configured rate for the whole
/// service: at most one burst plus the rate over the span and one batch lifetime (1 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenant_through_three_replicas_stays_within_its_quota() {
    let redis = RedisServer::start();
    let (_sandbox, endpoint) = sandbox().await;
    let url = redis.url();
    let settings = [
        ("CAMS_FLOWS_REDIS_URL", url.as_str()),
        ("CAMS_FLOWS_CALL_TIMEOUT_MS", "1000"),
        ("CAMS_FLOWS_LIMITS_TENANT_RPS", "4"),
        ("CAMS_FLOWS_LIMITS_TENANT_BURST", "4"),
    ];
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Replica::start(&endpoint, &settings).await);
    }
    // Each replica caches the flow first, so that the measured calls are hits.
    for replica in &replicas {
        replica.get_eventually("100000000000002", "measured").await;
    }
    // pacing: the tenant's bucket refills (in a second) and the batches taken so far end (a
    // second after they were granted) before the measured span starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let span = Duration::from_secs(5);
    let end = Instant::now() + span;
    let mut tasks = Vec::new();
    for replica in &replicas {
        let client = replica.client.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut limited) = (0u32, 0u32);
            while Instant::now() < end {
                let result = client
                    .clone()
                    .get_flow(GetFlowRequest {
                        flow_id: "100000000000002".into(),
                        cust_space_id: "measured".into(),
                    })
                    .await;
                match result {
                    Ok(_) => ok += 1,
                    Err(status) => {
                        assert_eq!(error_info(&status).reason, "TENANT_RATE_LIMITED");
                        limited += 1;
                        // pacing: a refused caller tries again a little later.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            (ok, limited)
        }));
    }
    let (mut ok, mut limited) = (0, 0);
    for task in tasks {
        let (o, l) = task.await.expect("task");
        ok += o;
        limited += l;
    }
    // Burst 4 + 4/s × (5 s + 1 s of batch life) = 28 at most; and the service does not starve
    // the tenant either (at least half its rate over the span).
    assert!(
        ok <= 28,
        "{ok} calls admitted for 4/s over 5 s through 3 replicas"
    );
    assert!(ok >= 10, "{ok} calls admitted");
    assert!(limited > 0);
}

/// Cache hits with Redis configured spend tenant calls taken from Redis in batches, shared by
/// the hits that arrive together: Redis sees a few commands a second, not one per hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_hits_do_not_each_touch_redis() {
    let redis = RedisServer::start();
    let (_sandbox, endpoint) = sandbox().await;
    let url = redis.url();
    // A high rate: a tenth of a second of it is a large batch, and callers that each took their
    // own would each get a sliver of it (and drop the one before).
    let replica = Replica::start(
        &endpoint,
        &[
            ("CAMS_FLOWS_REDIS_URL", &url),
            ("CAMS_FLOWS_LIMITS_TENANT_RPS", "1000000"),
            ("CAMS_FLOWS_LIMITS_TENANT_BURST", "100000"),
        ],
    )
    .await;
    replica.get_eventually("100000000000002", "t").await;
    // pacing: the miss's admission counts for a window (1 s) after its answer, and while it does
    // the replica checks now and then that Redis still holds it; hits are measured after that.
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    let mut connection = redis::Client::open(url)
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connected");
    let processed = |info: String| -> u64 {
        info.lines()
            .find_map(|line| line.strip_prefix("total_commands_processed:"))
            .and_then(|n| n.trim().parse().ok())
            .expect("total_commands_processed")
    };
    let mut info = redis::cmd("INFO");
    info.arg("stats");
    let before = processed(info.query_async(&mut connection).await.expect("INFO"));
    let started = Instant::now();
    let mut lanes = Vec::new();
    for _ in 0..20 {
        let client = replica.client.clone();
        lanes.push(tokio::spawn(async move {
            for _ in 0..100 {
                let response = client
                    .clone()
                    .get_flow(GetFlowRequest {
                        flow_id: "100000000000002".into(),
                        cust_space_id: "t".into(),
                    })
                    .await
                    .expect("a hit");
                assert_eq!(
                    response
                        .metadata()
                        .get("x-cams-cache")
                        .map(|v| v.as_bytes()),
                    Some(&b"hit"[..])
                );
            }
        }));
    }
    for lane in lanes {
        lane.await.expect("lane");
    }
    let seconds = started.elapsed().as_secs() + 1;
    let commands = processed(info.query_async(&mut connection).await.expect("INFO")) - before;
    // Per second: a batch of the tenant's calls (a script of four commands), the health probe,
    // and this test's INFO; 2000 hits must not show.
    assert!(
        commands <= 10 * seconds,
        "{commands} Redis commands for 2000 hits in {seconds} s"
    );
}
