//! Redis as production runs it, under the gateway: a node that vanishes without closing its
//! sockets, Sentinel and Cluster failovers under load, state lost (`FLUSHALL`, the lease log
//! deleted alone), a Redis that would evict the quota. Real gateway processes, real Redis
//! processes, one simulated CAMS that counts what it accepted: the account's quota (5 calls in any
//! sliding second) holds through all of it, and CAMS never throttles.

use std::time::Duration;

use cams_flows::{
    limits::{Busy, RedisSlots, SlotLease, SlotStore},
    pb::GetFlowRequest,
    store::{Redis, RedisConfig, account_tag},
};
use tokio::time::Instant;

use crate::support::{
    cluster::RedisCluster,
    process::{Running, binary},
    proxy::Proxy,
    redis::{RedisOptions, RedisServer},
    replica::{Replica, sandbox, stats, sts},
    sentinel::{SentinelOptions, SentinelSet},
    wait,
};

/// The account's quota at the simulated CAMS.
const QUOTA: u64 = 5;

/// One call of a flood: when it was sent and when it ended, and whether it was served.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    sent: Instant,
    at: Instant,
    served: bool,
}

/// Calls that each need CAMS (a new flow every time) through every replica until `end`, every
/// outcome timed.
async fn flood(replicas: &[Replica], tag: &str, end: Instant) -> Vec<Outcome> {
    let mut tasks = Vec::new();
    for (r, replica) in replicas.iter().enumerate() {
        for lane in 0..2 {
            let client = replica.client.clone();
            let tag = format!("{tag}-{r}-{lane}");
            tasks.push(tokio::spawn(async move {
                let (mut outcomes, mut i) = (Vec::new(), 0);
                while Instant::now() < end {
                    i += 1;
                    let mut request = tonic::Request::new(GetFlowRequest {
                        flow_id: format!("sim:ok:{tag}-{i}"),
                        cust_space_id: format!("tenant-{r}-{lane}"),
                    });
                    request.set_timeout(Duration::from_secs(2));
                    let sent = Instant::now();
                    let served = client.clone().get_flow(request).await.is_ok();
                    outcomes.push(Outcome {
                        sent,
                        at: Instant::now(),
                        served,
                    });
                    if !served {
                        // pacing: a refused lane backs off as a client honouring RetryInfo
                        // would, instead of spinning on refusals.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                outcomes
            }));
        }
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("flood task"));
    }
    all.sort_by_key(|o| o.at);
    all
}

/// When the first call sent after `since` was served: calls already on their way when
/// something happened say nothing of what it cost.
fn first_served_after(outcomes: &[Outcome], since: Instant) -> Option<Instant> {
    outcomes
        .iter()
        .filter(|o| o.served && o.sent > since)
        .map(|o| o.at)
        .min()
}

/// CAMS never saw more than the quota in a sliding second, and never throttled.
async fn within_quota(endpoint: &str) {
    let seen = stats(endpoint).await;
    assert!(
        seen.max_accepted_per_sliding_second <= QUOTA,
        "CAMS saw {} calls in a second: {seen:?}",
        seen.max_accepted_per_sliding_second
    );
    assert_eq!(seen.throttled, 0, "{seen:?}");
}

async fn replicas(endpoint: &str, count: usize, settings: &[(&str, &str)]) -> Vec<Replica> {
    let mut started = Vec::new();
    for _ in 0..count {
        started.push(Replica::start(endpoint, settings).await);
    }
    // Past the first use's probation: each replica has made a call through the shared quota.
    for (i, replica) in started.iter().enumerate() {
        replica
            .get_eventually("100000000000002", &format!("warm-{i}"))
            .await;
    }
    started
}

/// A Redis node that vanishes without closing its sockets (a node crash, a pod moved behind the
/// same Service address): the gateways' connections stay open and never answer. Each gateway
/// gives them up and connects anew, its subscription too; hits are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_answer_are_replaced_within_five_seconds() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis.addr());
    let (_sandbox, endpoint) = sandbox().await;
    let r = replicas(&endpoint, 2, &[("CAMS_FLOWS_REDIS_URL", &proxy.url())]).await;
    // Each replica holds a connection for commands and one for its subscription.
    let connected = proxy.accepted();
    assert!(connected >= 4, "{connected} connections through the proxy");

    proxy.freeze();
    let frozen = Instant::now();
    for (i, replica) in r.iter().enumerate() {
        assert_eq!(
            replica
                .source("100000000000002", &format!("warm-{i}"))
                .await,
            "hit",
            "a cached flow is served while Redis does not answer"
        );
    }
    for (i, replica) in r.iter().enumerate() {
        wait::until(
            Duration::from_secs(5),
            &format!("replica {i} to serve a miss again"),
            || async {
                let flow = format!("sim:ok:after-freeze-{i}-{}", uuid::Uuid::new_v4().simple());
                replica.get(&flow, "t", Duration::from_millis(1_500)).await
            },
            Result::is_ok,
        )
        .await
        .expect("served");
    }
    assert!(
        frozen.elapsed() < Duration::from_secs(5),
        "misses served again {:?} after the freeze",
        frozen.elapsed()
    );
    // Both connections of each replica were made anew (the subscription is pinged, so its death
    // is noticed too).
    wait::until(
        Duration::from_secs(5),
        "every replica's command and subscription connections made anew",
        || async { proxy.accepted() },
        |accepted| *accepted >= connected + 4,
    )
    .await;
    within_quota(&endpoint).await;
}

/// `FLUSHALL`, then the lease log deleted on its own, in the middle of a flood through three
/// replicas: both are losses of state, fenced; the quota holds and CAMS never throttles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushall_and_a_deleted_lease_log_during_a_flood_keep_the_quota() {
    let redis = RedisServer::start();
    let (_sandbox, endpoint) = sandbox().await;
    let r = replicas(&endpoint, 3, &[("CAMS_FLOWS_REDIS_URL", &redis.url())]).await;
    let tag = cams_flows::store::account_tag(cams_flows::sandbox::ACCOUNT_ID);
    let log = format!("cams-flows:{tag}:slots");

    let start = Instant::now();
    let end = start + Duration::from_secs(7);
    let flooding = {
        let r = &r;
        async move { flood(r, "loss", end).await }
    };
    let losses = async {
        // pacing: the losses come at set points of the flood, while calls are in flight.
        tokio::time::sleep_until(start + Duration::from_millis(1_500)).await;
        let deleted = redis.del(&log);
        let deleted_at = Instant::now();
        // pacing: as above.
        tokio::time::sleep_until(start + Duration::from_millis(4_000)).await;
        redis.flushall();
        (deleted, deleted_at, Instant::now())
    };
    let (outcomes, (deleted, deleted_at, flushed_at)) = tokio::join!(flooding, losses);
    assert_eq!(deleted, 1, "the lease log existed when it was deleted");
    within_quota(&endpoint).await;
    assert!(
        first_served_after(&outcomes, deleted_at).is_some()
            && first_served_after(&outcomes, flushed_at).is_some(),
        "calls are served again after each loss"
    );
}

/// Sentinel: one primary, one replica, three sentinels; three gateways under load; SIGKILL the
/// primary. The replica holds every admission (each was confirmed by it), so the failover starts
/// no quiet period: misses are served again within the sentinels' detection time plus 3 s, and
/// the quota holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_under_load_keeps_the_quota_and_costs_no_quiet_period() {
    let mut set = SentinelSet::start();
    let (_sandbox, endpoint) = sandbox().await;
    let sentinels = set.sentinel_addrs().join(",");
    let r = replicas(
        &endpoint,
        3,
        &[
            ("CAMS_FLOWS_REDIS_MODE", "sentinel"),
            ("CAMS_FLOWS_REDIS_SENTINELS", &sentinels),
            ("CAMS_FLOWS_REDIS_MASTER_NAME", set.master_name()),
        ],
    )
    .await;

    // What each replica had logged before the failover (its first use's probation among it).
    let logged_before: Vec<usize> = r
        .iter()
        .map(|replica| replica.process.output().len())
        .collect();
    let start = Instant::now();
    let end = start + Duration::from_millis(1_500) + set.detection_time() + Duration::from_secs(4);
    let flooding = {
        let r = &r;
        async move { flood(r, "sentinel", end).await }
    };
    let detection = set.detection_time();
    let failing_over = async {
        // pacing: the primary dies a moment into the flood, with calls in flight.
        tokio::time::sleep_until(start + Duration::from_millis(1_500)).await;
        set.kill_primary();
        let killed = Instant::now();
        set.wait_for_failover(detection).await;
        killed
    };
    let (outcomes, killed) = tokio::join!(flooding, failing_over);
    within_quota(&endpoint).await;
    let served_again = first_served_after(&outcomes, killed)
        .unwrap_or_else(|| panic!("no call served after the failover: {outcomes:?}"));
    assert!(
        served_again - killed <= detection + Duration::from_secs(3),
        "misses served again {:?} after the primary died (detection time {detection:?})",
        served_again - killed
    );
    for (i, replica) in r.iter().enumerate() {
        let output = replica.process.output();
        let since = output.get(logged_before[i]..).unwrap_or_default();
        assert!(
            !since.contains("no CAMS call is admitted until"),
            "replica {i} met a quiet period although the failover lost nothing: {since}"
        );
    }
}

/// Cluster: three masters with a replica each; a planned `CLUSTER FAILOVER` of the shard that
/// holds the account's quota, under load: the same promises.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_failover_under_load_keeps_the_quota() {
    let cluster = RedisCluster::start();
    let (_sandbox, endpoint) = sandbox().await;
    let nodes = cluster.nodes().join(",");
    let r = replicas(
        &endpoint,
        3,
        &[
            ("CAMS_FLOWS_REDIS_MODE", "cluster"),
            ("CAMS_FLOWS_REDIS_NODES", &nodes),
        ],
    )
    .await;
    let tag = cams_flows::store::account_tag(cams_flows::sandbox::ACCOUNT_ID);
    let quota_key = format!("cams-flows:{tag}:slots");

    let start = Instant::now();
    let end = start + Duration::from_secs(6);
    let flooding = {
        let r = &r;
        async move { flood(r, "cluster", end).await }
    };
    let failing_over = async {
        // pacing: the failover comes a moment into the flood, with calls in flight.
        tokio::time::sleep_until(start + Duration::from_millis(1_500)).await;
        let at = Instant::now();
        cluster.failover_shard_of(&quota_key).await;
        at
    };
    let (outcomes, failed_over) = tokio::join!(flooding, failing_over);
    within_quota(&endpoint).await;
    let served_again = first_served_after(&outcomes, failed_over)
        .unwrap_or_else(|| panic!("no call served after the failover: {outcomes:?}"));
    assert!(
        served_again - failed_over <= cluster.promotion_time() + Duration::from_secs(3),
        "misses served again {:?} after the failover began",
        served_again - failed_over
    );
    // The quota's keys all share the account's slot, and the cache's entries spread over the
    // shards (each has a hash tag of its own).
    let shards_with_entries = cluster
        .masters()
        .iter()
        .filter(|master| {
            cluster
                .node(master)
                .cmd(&["KEYS", "cams-flows:v1:flow:*"])
                .items()
                .is_some_and(|keys| !keys.is_empty())
        })
        .count();
    assert!(
        shards_with_entries >= 2,
        "cache entries spread over {shards_with_entries} shard(s)"
    );
}

/// A Redis that may evict holds the quota: the gateway does not start, and says what to set. A
/// cache of its own may evict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_redis_that_may_evict_is_refused_at_start() {
    let lru = RedisServer::start_with(
        RedisOptions::default()
            .maxmemory("64mb")
            .maxmemory_policy("allkeys-lru"),
    );
    let (_sandbox, endpoint) = sandbox().await;
    let mut refused = Running::start(
        binary()
            .arg("serve")
            .env("ALIBABA_CLOUD_ACCESS_KEY_ID", crate::support::KEY_ID)
            .env(
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
                crate::support::KEY_SECRET,
            )
            .env("ALIBABA_CLOUD_STS_ENDPOINT", &sts().endpoint)
            .env("CAMS_FLOWS_ENDPOINT", &endpoint)
            .env("CAMS_FLOWS_LISTEN", "127.0.0.1:0")
            .env("CAMS_FLOWS_AUTH_MODE", "none")
            .env("CAMS_FLOWS_REDIS_URL", lru.url()),
    );
    let status = refused.exit_within(Duration::from_secs(30));
    let output = refused.all_output();
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(
        output.contains("maxmemory-policy allkeys-lru")
            && output.contains("maxmemory-policy noeviction"),
        "{output}"
    );

    // The quota on a Redis that never evicts, the cache on the one that may: it starts.
    let quota = RedisServer::start();
    let started = Replica::start(
        &endpoint,
        &[
            ("CAMS_FLOWS_REDIS_URL", &quota.url()),
            ("CAMS_FLOWS_CACHE_REDIS_URL", &lru.url()),
        ],
    )
    .await;
    started.get_eventually("100000000000002", "t").await;
    assert_eq!(
        started
            .call("100000000000002", "t")
            .await
            .map(|(_, s)| s)
            .ok(),
        Some("hit".to_owned())
    );
}

/// The lease log of one account behind `proxy`, as one replica holds it: three slots, calls
/// bounded at 100 ms, short leases.
fn slots_behind(proxy: &Proxy) -> RedisSlots {
    let prefix = format!("promotion-{}", uuid::Uuid::new_v4().simple());
    let redis = Redis::new(&RedisConfig::standalone(proxy.url(), prefix)).expect("client");
    let call_bound = Duration::from_millis(100);
    RedisSlots::new(
        redis,
        &account_tag("promotion"),
        3,
        Duration::from_millis(300),
        call_bound,
    )
    .with_delivery_margin(call_bound, Duration::from_millis(200))
}

/// An admission, once the first use's probation is over.
async fn admitted(store: &RedisSlots) -> Box<dyn SlotLease> {
    let taken = std::sync::Mutex::new(None);
    wait::until(
        store.probation() + Duration::from_secs(5),
        "a slot of the lease log",
        || async {
            match store.try_take(0, Duration::ZERO).await {
                Ok(lease) => {
                    *taken.lock().expect("lock") = Some(lease);
                    Ok(())
                }
                Err(busy) => Err(format!("{busy:?}")),
            }
        },
        Result::is_ok,
    )
    .await
    .expect("admitted");
    taken.into_inner().expect("lock").expect("admitted")
}

/// A Redis and its replica, linked.
async fn primary_and_replica() -> (RedisServer, RedisServer) {
    let primary = RedisServer::start();
    let replica = RedisServer::start_with(RedisOptions::default().replica_of(primary.port()));
    wait::until(
        Duration::from_secs(10),
        "the replica's link to its primary",
        || async {
            replica
                .info("replication")
                .get("master_link_status")
                .cloned()
        },
        |status| status.as_deref() == Some("up"),
    )
    .await;
    (primary, replica)
}

/// The next answer of the store other than "unavailable" (its connection was cut: it connects
/// anew): admitted, or refused and why.
async fn next_answer(store: &RedisSlots) -> Result<(), Busy> {
    wait::until(
        Duration::from_secs(5),
        "an answer from the store once it has connected anew",
        || async { store.try_take(0, Duration::ZERO).await.map(drop) },
        |answer| !matches!(answer, Err(Busy::StoreUnavailable)),
    )
    .await
}

/// The replica is promoted (`REPLICAOF NO ONE`, as a failover does) and the replicas' address
/// now leads to it; their old connections are cut.
fn promote(replica: &RedisServer, proxy: &Proxy) {
    replica.cmd(&["REPLICAOF", "NO", "ONE"]);
    proxy.retarget(&replica.addr());
    proxy.cut();
}

/// A promotion of a replica that confirmed every admission starts no quiet period: the next call
/// is admitted at once. One whose replica missed an admission a replica still holds is fenced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_costs_nothing_unless_it_lost_an_admission() {
    // Kept: the replica confirmed the admission before it was used.
    let (primary, replica) = primary_and_replica().await;
    let proxy = Proxy::start(&primary.addr());
    let store = slots_behind(&proxy);
    let held = admitted(&store).await;
    promote(&replica, &proxy);
    assert_eq!(
        next_answer(&store).await,
        Ok(()),
        "the promoted replica holds every admission: no quiet period"
    );
    drop(held);

    // Lost: the replica left before the second admission, which the old primary made alone.
    let (primary, replica) = primary_and_replica().await;
    let proxy = Proxy::start(&primary.addr());
    let store = slots_behind(&proxy);
    let _first = admitted(&store).await;
    replica.cmd(&["REPLICAOF", "NO", "ONE"]);
    wait::until(
        Duration::from_secs(10),
        "the primary to see its replica gone",
        || async { primary.info("replication").get("connected_slaves").cloned() },
        |n| n.as_deref() == Some("0"),
    )
    .await;
    let _second = match store.try_take(0, Duration::ZERO).await {
        Ok(lease) => lease,
        Err(busy) => panic!("not admitted by the primary alone: {busy:?}"),
    };
    proxy.retarget(&replica.addr());
    proxy.cut();
    assert!(
        matches!(next_answer(&store).await, Err(Busy::Until(Some(_)))),
        "fenced: the promoted replica lost an admission that may still count"
    );
}

/// Outcomes shared between a prober and the test that reads them as they come.
type Outcomes = std::sync::Arc<std::sync::Mutex<Vec<Outcome>>>;

/// Misses through `replica` at a steady 3 a second (under the account's quota of 5), each with a
/// deadline of a second, until the task is aborted: every outcome, timed, into `outcomes`.
fn prober(replica: &Replica, outcomes: Outcomes) -> tokio::task::JoinHandle<()> {
    let client = replica.client.clone();
    tokio::spawn(async move {
        // pacing: the probes' rate, under the account's quota so that none is refused for it.
        let mut tick = tokio::time::interval(Duration::from_millis(333));
        for i in 0.. {
            tick.tick().await;
            let mut request = tonic::Request::new(GetFlowRequest {
                flow_id: format!("sim:ok:probe-{i}-{}", uuid::Uuid::new_v4().simple()),
                cust_space_id: "probe".into(),
            });
            request.set_timeout(Duration::from_secs(1));
            let sent = Instant::now();
            let served = client.clone().get_flow(request).await.is_ok();
            outcomes.lock().expect("outcomes").push(Outcome {
                sent,
                at: Instant::now(),
                served,
            });
        }
    })
}

/// The longest stretch without a miss served from `event` on (the resolution is the probes'
/// interval, a third of a second): it waits for a miss sent after `event` to be served (within
/// `bound`), and two more seconds of probing, so that an event still under way (a planned
/// failover switches a moment after it is asked for) is seen whole. Printed as a `cost:` line.
async fn cost_of(outcomes: &Outcomes, event: Instant, bound: Duration, what: &str) -> Duration {
    let served = wait::until(
        bound,
        &format!("a miss served after {what}"),
        || async { first_served_after(&outcomes.lock().expect("outcomes"), event) },
        Option::is_some,
    )
    .await
    .expect("served");
    // pacing: two seconds of probing past the recovery, for the rest of the event.
    tokio::time::sleep_until(served + Duration::from_secs(2)).await;
    let mut served: Vec<Instant> = outcomes
        .lock()
        .expect("outcomes")
        .iter()
        .filter(|o| o.served && o.sent > event)
        .map(|o| o.at)
        .collect();
    served.sort();
    let cost = std::iter::once(event)
        .chain(served.iter().copied())
        .zip(served.iter().copied())
        .map(|(before, after)| after - before)
        .max()
        .unwrap_or(bound);
    println!("cost: {what}: {:.1} s", cost.as_secs_f64());
    cost
}

/// What each event costs callers that need CAMS, in seconds with no miss served, each within its
/// bound: the first start, a planned and a crash failover and `FLUSHALL` (Sentinel), and an
/// empty restart of a standalone Redis. The figures are printed (`cost:` lines, run with
/// `--nocapture`) for docs/shared-state.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_costs_misses_at_most_its_bound() {
    // Without min-replicas-to-write: with one replica, a primary that keeps it refuses every
    // write once its replica is the node that died (an operator's choice, not the gateway's).
    let mut set = SentinelSet::start_with(SentinelOptions {
        min_replicas: None,
        ..SentinelOptions::default()
    });
    let (_sandbox, endpoint) = sandbox().await;
    let sentinels = set.sentinel_addrs().join(",");
    let outcomes = Outcomes::default();
    let started = Instant::now();
    let replica = Replica::start(
        &endpoint,
        &[
            ("CAMS_FLOWS_REDIS_MODE", "sentinel"),
            ("CAMS_FLOWS_REDIS_SENTINELS", &sentinels),
            ("CAMS_FLOWS_REDIS_MASTER_NAME", set.master_name()),
        ],
    )
    .await;
    let probe = prober(&replica, std::sync::Arc::clone(&outcomes));
    // The first start: the probation of a state nobody used before (about 2 s), from the start
    // of the process.
    let first = cost_of(&outcomes, started, Duration::from_secs(8), "first start").await;
    assert!(first <= Duration::from_secs(5), "first start: {first:?}");

    let planned = Instant::now();
    set.failover(set.detection_time()).await;
    let cost = cost_of(
        &outcomes,
        planned,
        Duration::from_secs(10),
        "planned failover",
    )
    .await;
    assert!(cost <= Duration::from_secs(4), "planned failover: {cost:?}");
    // The old primary follows the new one before the next failover can go through.
    set.wait_for_replicas(Duration::from_secs(30)).await;

    let crash = Instant::now();
    set.kill_primary();
    let bound = set.detection_time() + Duration::from_secs(3);
    let cost = cost_of(&outcomes, crash, bound, "crash failover (SIGKILL)").await;
    assert!(cost <= bound, "crash failover: {cost:?}");
    set.wait_for_failover(bound).await;

    let flushed = Instant::now();
    let primary = set.primary().addr();
    crate::support::resp::call(&primary, &["FLUSHALL"]).expect("FLUSHALL");
    let cost = cost_of(&outcomes, flushed, Duration::from_secs(8), "FLUSHALL").await;
    assert!(cost <= Duration::from_secs(4), "FLUSHALL: {cost:?}");
    probe.abort();
    drop(replica);
    drop(set);

    // An empty restart of a standalone Redis (no persistence).
    let mut redis = RedisServer::start();
    let outcomes = Outcomes::default();
    let replica = Replica::start(&endpoint, &[("CAMS_FLOWS_REDIS_URL", &redis.url())]).await;
    replica.get_eventually("100000000000002", "warm").await;
    let probe = prober(&replica, std::sync::Arc::clone(&outcomes));
    let steady = cost_of(&outcomes, Instant::now(), Duration::from_secs(8), "steady").await;
    assert!(
        steady < Duration::from_millis(1_500),
        "steady probing shows no gap: {steady:?}"
    );
    let restarted = Instant::now();
    redis.restart();
    let cost = cost_of(
        &outcomes,
        restarted,
        Duration::from_secs(10),
        "empty restart",
    )
    .await;
    assert!(cost <= Duration::from_secs(5), "empty restart: {cost:?}");
    probe.abort();
}
