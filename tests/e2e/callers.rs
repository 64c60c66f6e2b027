//! Callers' own rate limits, kept by the same keyed limiter as the tenants': in process, or shared
//! by every replica through Redis. One suite that both kinds of party pass on both backends, then
//! one caller flooding three gateway processes that share one Redis.

use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use cams_flows::{
    auth::hash_key,
    domain::TenantId,
    limits::{
        CallerLimits, GovernorCallerLimits, GovernorTenantLimits, Quota, RedisCallerLimits,
        RedisTenantLimits, TenantLimits,
        keyed::{Check, Rejection},
    },
    pb::{GetFlowRequest, flow_service_client::FlowServiceClient},
    store::{Redis, RedisConfig, account_tag},
};
use redis::AsyncCommands;
use tokio::time::Instant;
use tonic::{Code, Status, transport::Channel};

use crate::support::{
    details, error_info,
    redis::RedisServer,
    replica::{Replica, sandbox},
    wait,
};

fn quota(rps: f64, burst: u32) -> Quota {
    Quota {
        rps,
        burst: NonZeroU32::new(burst).expect("non-zero"),
    }
}

/// The decision on one call, and whether the limiter had to ask its store for it.
async fn decide(check: Check<'_>) -> (Result<(), Rejection>, bool) {
    match check {
        Check::Decided(verdict) => (verdict.map(drop), false),
        Check::Pending(verdict) => (verdict.await.map(drop), true),
    }
}

async fn tenant(limits: &dyn TenantLimits, id: &str) -> (Result<(), Rejection>, bool) {
    let id = TenantId::parse(id).expect("valid");
    decide(limits.check(&id)).await
}

async fn caller(limits: &dyn CallerLimits, name: &str) -> (Result<(), Rejection>, bool) {
    decide(limits.check(&Arc::from(name))).await
}

/// A slow rate (a call every 10 s), so that nothing refills while a test runs: what is admitted
/// is the burst.
const SLOW: f64 = 0.1;

/// `spent` was refused with `quota`, and told a wait no longer than one call's period.
#[track_caller]
fn refused(spent: Result<(), Rejection>, quota: Quota) -> Duration {
    let rejection = spent.expect_err("over the quota");
    assert_eq!(rejection.quota, quota);
    assert!(
        rejection.retry_after > Duration::ZERO
            && rejection.retry_after <= Duration::from_secs_f64(1.0 / quota.rps),
        "{rejection:?}"
    );
    rejection.retry_after
}

/// A tenant and a caller of one name, on either backend: each has its own quota and its own state,
/// and neither spends the other's.
async fn one_name_two_quotas(tenants: &dyn TenantLimits, callers: &dyn CallerLimits) {
    let (tenant_quota, caller_quota) = (quota(SLOW, 3), quota(SLOW, 5));
    // Interleaved: a state the two shared would be spent after three rounds.
    for _ in 0..3 {
        tenant(tenants, "same").await.0.expect("the tenant's burst");
        caller(callers, "same").await.0.expect("the caller's burst");
    }
    refused(tenant(tenants, "same").await.0, tenant_quota);
    for _ in 0..2 {
        caller(callers, "same")
            .await
            .0
            .expect("the rest of the caller's burst");
    }
    refused(caller(callers, "same").await.0, caller_quota);
    // Another tenant has the default quota, and its own state.
    for _ in 0..2 {
        tenant(tenants, "other")
            .await
            .0
            .expect("another tenant's burst");
    }
    refused(tenant(tenants, "other").await.0, quota(SLOW, 2));
    // A caller without a quota is not limited.
    for _ in 0..20 {
        caller(callers, "stranger")
            .await
            .0
            .expect("no caller limit");
    }
}

fn tenant_quotas() -> (Quota, HashMap<TenantId, Quota>) {
    let same = TenantId::parse("same").expect("valid");
    (quota(SLOW, 2), HashMap::from([(same, quota(SLOW, 3))]))
}

fn caller_quotas() -> HashMap<Arc<str>, Quota> {
    HashMap::from([
        (Arc::from("same"), quota(SLOW, 5)),
        (Arc::from("crowd"), quota(1000.0, 100)),
    ])
}

/// Script runs Redis has served (the limiter's takes), by `INFO commandstats`.
fn script_runs(redis: &RedisServer) -> u64 {
    let stats = redis.info("commandstats");
    ["cmdstat_evalsha", "cmdstat_eval"]
        .iter()
        .filter_map(|name| stats.get(*name))
        .filter_map(|fields| {
            fields
                .split(',')
                .find_map(|field| field.strip_prefix("calls="))
                .and_then(|calls| calls.parse::<u64>().ok())
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_and_callers_each_keep_their_own_quota_in_process() {
    let (default, overrides) = tenant_quotas();
    let tenants = GovernorTenantLimits::new(default, overrides);
    let callers = GovernorCallerLimits::new(caller_quotas());
    one_name_two_quotas(&tenants, &callers).await;
}

/// The same suite in Redis, where the states live under names of their own; then what sharing
/// adds: another replica's limiter spends the same states, a batch is spent without asking
/// Redis, a refusal is remembered, and concurrent calls wait for one take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_and_callers_each_keep_their_own_quota_in_redis() {
    let redis = RedisServer::start();
    let prefix = format!("suite-{}", uuid::Uuid::new_v4().simple());
    let tag = account_tag("suite");
    let client =
        || Redis::new(&RedisConfig::standalone(redis.url(), prefix.clone())).expect("client");
    let (default, overrides) = tenant_quotas();
    let tenants = RedisTenantLimits::new(client(), &tag, default, overrides);
    let callers = RedisCallerLimits::new(client(), &tag, caller_quotas());
    one_name_two_quotas(&tenants, &callers).await;

    // One key per party, never the same: the kind is part of the name.
    let mut connection = redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connected to the test Redis");
    let mut keys: Vec<String> = connection.keys(format!("{prefix}:*")).await.expect("KEYS");
    keys.sort();
    assert_eq!(
        keys,
        [
            format!("{prefix}:{tag}:caller:same"),
            format!("{prefix}:{tag}:tenant:other"),
            format!("{prefix}:{tag}:tenant:same"),
        ],
        "one GCRA state per tenant and per limited caller, under the account's tag"
    );

    // Another replica's limiter spends the same state: the caller's burst is spent for both, and
    // the refusal is Redis's. Once refused, it refuses again without asking, for no longer.
    let elsewhere = RedisCallerLimits::new(client(), &tag, caller_quotas());
    let (spent, asked) = caller(&elsewhere, "same").await;
    assert!(asked, "a replica with nothing held asks Redis");
    let first = refused(spent, quota(SLOW, 5));
    let (spent, asked) = caller(&elsewhere, "same").await;
    assert!(
        !asked,
        "the refusal is remembered until the time Redis gave"
    );
    assert!(refused(spent, quota(SLOW, 5)) <= first);
    // Another account's callers are apart, in the same Redis.
    let other_account = RedisCallerLimits::new(client(), &account_tag("other"), caller_quotas());
    caller(&other_account, "same")
        .await
        .0
        .expect("another account's caller of the same name");

    // Concurrent calls of a caller with nothing held wait for one take, and spend its batch (a
    // tenth of a second's worth, 100 calls) without asking Redis again.
    let before = script_runs(&redis);
    let callers = Arc::new(callers);
    let asked = Arc::new(AtomicU32::new(0));
    let mut calls = Vec::new();
    for _ in 0..50 {
        let (callers, asked) = (Arc::clone(&callers), Arc::clone(&asked));
        calls.push(tokio::spawn(async move {
            let (spent, pending) = caller(callers.as_ref(), "crowd").await;
            spent.expect("within the batch");
            asked.fetch_add(u32::from(pending), Ordering::Relaxed);
        }));
    }
    for call in calls {
        call.await.expect("call");
    }
    assert_eq!(script_runs(&redis) - before, 1, "one take for 50 calls");
    let mut decided_at_once = 0;
    for _ in 0..49 {
        let (spent, pending) = caller(callers.as_ref(), "crowd").await;
        spent.expect("the rest of the batch");
        decided_at_once += u32::from(!pending);
    }
    assert_eq!(
        decided_at_once, 49,
        "the rest of the batch is spent without waiting"
    );
    assert!(asked.load(Ordering::Relaxed) >= 1);
}

// ---- replicas ----

/// The cached flow the flood reads.
const FLOW: &str = "100000000000002";
const TENANT: &str = "measured";
/// The flooding caller's key, and its rate: 4 calls/s, burst 4.
const FLOODER: &str = "cf-flooder-key";
const RATE: f64 = 4.0;
const BURST: f64 = 4.0;
/// Another caller with the same quota, which calls slowly.
const QUIET: &str = "cf-quiet-key";
/// A caller without a limit, which fills the replicas' caches.
const WARMER: &str = "cf-warmer-key";

/// The auth section of the replicas' config file: three API keys, two with their own rate.
fn auth_config() -> String {
    format!(
        r#"[auth]
mode = "api_key"

[[auth.keys]]
name = "flooder"
sha256 = "{}"
tenants = ["*"]
rps = {RATE}
burst = {BURST}

[[auth.keys]]
name = "quiet"
sha256 = "{}"
tenants = ["*"]
rps = {RATE}
burst = {BURST}

[[auth.keys]]
name = "warmer"
sha256 = "{}"
tenants = ["*"]
"#,
        hash_key(FLOODER),
        hash_key(QUIET),
        hash_key(WARMER),
    )
}

async fn get_as(
    client: &FlowServiceClient<Channel>,
    key: &str,
    timeout: Duration,
) -> Result<String, Status> {
    let mut request = tonic::Request::new(GetFlowRequest {
        flow_id: FLOW.into(),
        cust_space_id: TENANT.into(),
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("ascii"),
    );
    request.set_timeout(timeout);
    let response = client.clone().get_flow(request).await?;
    Ok(response
        .metadata()
        .get("x-cams-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("absent")
        .to_owned())
}

/// `status` is the caller limit's refusal, with the documented details.
#[track_caller]
fn assert_caller_limited(status: &Status) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let info = error_info(status);
    assert_eq!(info.reason, "CALLER_RATE_LIMITED", "{status:?}");
    assert_eq!(info.metadata.get("caller"), Some(&"flooder".to_owned()));
    let d = details(status);
    let violations = d.quota_failure().cloned().expect("QuotaFailure").violations;
    assert_eq!(violations.len(), 1, "{status:?}");
    assert_eq!(violations[0].subject, "caller:flooder");
    let retry = d
        .retry_info()
        .cloned()
        .expect("RetryInfo")
        .retry_delay
        .expect("delay");
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_secs_f64(1.0 / RATE),
        "{retry:?}"
    );
}

/// The replica's count of calls refused for their caller's rate, on its `/metrics`.
async fn caller_rejections(replica: &Replica) -> f64 {
    let output = replica.process.output();
    let line = output
        .lines()
        .find(|line| line.contains("admin listener"))
        .expect("the admin listener's address in the log");
    let logged: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
    let admin = logged["addr"].as_str().expect("admin addr");
    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("a valid exposition");
    scrape
        .samples
        .iter()
        .filter(|s| {
            s.metric == "cams_flows_rejections_total"
                && s.labels.get("reason") == Some("CALLER_RATE_LIMITED")
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => panic!("a counter"),
        })
        .sum()
}

/// One caller with its own rate, calling three replicas at once, gets that rate for the whole
/// service: at most `burst + rate × (T + 1 s)` over the span `T`, and CALLER_RATE_LIMITED past
/// it; another caller with a quota of its own is served meanwhile. With each replica on its own,
/// the caller would get three times its rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_caller_through_three_replicas_stays_within_its_rate() {
    let mut redis = RedisServer::start();
    let (_sandbox, endpoint) = sandbox().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("cams-flows.toml");
    std::fs::write(&config, auth_config()).expect("config file");
    let url = redis.url();
    let config = config.to_str().expect("UTF-8 path");
    let settings = [
        ("CAMS_FLOWS_REDIS_URL", url.as_str()),
        ("CAMS_FLOWS_CONFIG", config),
        ("CAMS_FLOWS_AUTH_MODE", "api_key"),
        ("CAMS_FLOWS_ADMIN_LISTEN", "127.0.0.1:0"),
        ("CAMS_FLOWS_CALL_TIMEOUT_MS", "1000"),
        // Tenant limits far above the caller's: only the caller's limit applies.
        ("CAMS_FLOWS_LIMITS_TENANT_RPS", "100000"),
        ("CAMS_FLOWS_LIMITS_TENANT_BURST", "100000"),
    ];
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(Replica::start(&endpoint, &settings).await);
    }
    // Each replica caches the flow first (through a caller without a limit), so that the
    // measured calls are cache hits: CAMS's quota has no part in them.
    for replica in &replicas {
        wait::until_every(
            Duration::from_millis(200),
            Duration::from_secs(30),
            "the flow cached by the replica (past the shared quota's first-use quiet period)",
            || get_as(&replica.client, WARMER, Duration::from_secs(3)),
            Result::is_ok,
        )
        .await
        .expect("served");
    }

    let span = Duration::from_secs(5);
    let started = Instant::now();
    let end = started + span;
    // The other caller, every half second through each replica in turn: within its own rate.
    let quiet = {
        let clients: Vec<_> = replicas.iter().map(|r| r.client.clone()).collect();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_millis(500));
            let mut results = Vec::new();
            while Instant::now() < end {
                ticks.tick().await;
                let client = &clients[results.len() % clients.len()];
                results.push(get_as(client, QUIET, Duration::from_secs(2)).await);
            }
            results
        })
    };
    let mut lanes = Vec::new();
    for replica in &replicas {
        for _ in 0..2 {
            let client = replica.client.clone();
            lanes.push(tokio::spawn(async move {
                let (mut ok, mut limited) = (0u32, Vec::new());
                while Instant::now() < end {
                    match get_as(&client, FLOODER, Duration::from_secs(2)).await {
                        Ok(source) => {
                            assert_eq!(source, "hit", "the flood reads the cache");
                            ok += 1;
                        }
                        Err(status) => {
                            limited.push(status);
                            // pacing: a refused caller tries again a little later.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                (ok, limited)
            }));
        }
    }
    let (mut ok, mut limited) = (0u32, Vec::new());
    for lane in lanes {
        let (o, l) = lane.await.expect("lane");
        ok += o;
        limited.extend(l);
    }
    let measured = started.elapsed();
    for result in quiet.await.expect("quiet") {
        let source = result.expect("the other caller's call is served");
        assert_eq!(source, "hit");
    }

    let bound = BURST + RATE * (measured.as_secs_f64() + 1.0);
    assert!(
        f64::from(ok) <= bound,
        "{ok} calls admitted in {measured:?} through 3 replicas for {RATE}/s, burst {BURST}: \
         more than {bound:.1}"
    );
    // Nor is the caller starved: at least half its rate over the span.
    assert!(
        f64::from(ok) >= RATE * span.as_secs_f64() / 2.0,
        "{ok} calls admitted in {measured:?}"
    );
    assert!(!limited.is_empty(), "the flood went past the caller's rate");
    for status in &limited {
        assert_caller_limited(status);
    }
    // Each refusal was counted by the replica that made it.
    let refused = limited.len() as f64;
    wait::until(
        Duration::from_secs(10),
        "every refusal counted in cams_flows_rejections_total",
        || async {
            let mut counted = 0.0;
            for replica in &replicas {
                counted += caller_rejections(replica).await;
            }
            counted
        },
        |&counted| counted == refused,
    )
    .await;

    // Redis lost: cache hits go on, and each replica keeps the caller to its rate on its own.
    redis.kill();
    let replica = &replicas[0];
    // Once the refusal Redis gave last has run out.
    wait::until_every(
        Duration::from_millis(100),
        Duration::from_secs(10),
        "the caller served without Redis",
        || get_as(&replica.client, FLOODER, Duration::from_secs(3)),
        |result| match result {
            Ok(_) => true,
            Err(status) => {
                assert_caller_limited(status);
                false
            }
        },
    )
    .await
    .expect("served");
    let mut refusal = None;
    for _ in 0..100 {
        if let Err(status) = get_as(&replica.client, FLOODER, Duration::from_secs(3)).await {
            refusal = Some(status);
            break;
        }
    }
    assert_caller_limited(&refusal.expect("refused past its rate without Redis"));
}
