//! Which account a replica's state in Redis belongs to: the Alibaba Cloud account whose UID STS
//! `GetCallerIdentity` gives, never a key pair. Real `serve` processes, a real Redis, the
//! simulated CAMS and the simulated STS (see `support::replica`).

use std::{collections::BTreeSet, time::Duration};

use cams_flows::{
    pb::GetFlowRequest,
    sandbox::{ACCOUNT_ID, Identity, IdentityConfig, RecordedRequest},
    store::account_tag,
};
use redis::AsyncCommands;
use secrecy::SecretString;
use tokio::time::Instant;

use crate::support::{
    KEY_ID, KEY_SECRET,
    process::{Running, binary},
    redis::RedisServer,
    replica::{Replica, sandbox, stats, sts},
};

/// The tag every key of `account` carries in Redis, without its braces.
fn tag(account: &str) -> String {
    account_tag(account)
        .trim_matches(|c| c == '{' || c == '}')
        .to_owned()
}

async fn keys(redis: &RedisServer, pattern: &str) -> BTreeSet<String> {
    let mut connection = redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connected to the test Redis");
    let keys: Vec<String> = connection.keys(pattern).await.expect("KEYS");
    keys.into_iter().collect()
}

/// The account a replica said it names its state after, at start.
fn account_of(replica: &Replica) -> String {
    let output = replica.process.output();
    let line = output
        .lines()
        .find(|l| l.contains("the account's state in Redis is named after"))
        .unwrap_or_else(|| panic!("no account at start in {output}"));
    let line: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
    line["account"]
        .as_str()
        .unwrap_or_else(|| panic!("no account in {line}"))
        .to_owned()
}

async fn requests(endpoint: &str) -> Vec<RecordedRequest> {
    let body = reqwest::get(format!("{endpoint}/_sandbox/requests"))
        .await
        .expect("requests")
        .bytes()
        .await
        .expect("body");
    serde_json::from_slice(&body).expect("JSON")
}

/// Calls that each need CAMS through both replicas until `end`: how many were served.
async fn flood(replicas: &[&Replica], end: Instant) -> u32 {
    let mut tasks = Vec::new();
    for (r, replica) in replicas.iter().enumerate() {
        for lane in 0..3 {
            let client = replica.client.clone();
            tasks.push(tokio::spawn(async move {
                let (mut ok, mut i) = (0, 0);
                while Instant::now() < end {
                    i += 1;
                    let mut request = tonic::Request::new(GetFlowRequest {
                        flow_id: format!("sim:ok:flood-{r}-{lane}-{i}"),
                        cust_space_id: format!("tenant-{r}-{lane}"),
                    });
                    request.set_timeout(Duration::from_secs(3));
                    match client.clone().get_flow(request).await {
                        Ok(_) => ok += 1,
                        // pacing: a refused lane backs off instead of spinning on refusals.
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
                ok
            }));
        }
    }
    let mut ok = 0;
    for task in tasks {
        ok += task.await.expect("flood task");
    }
    ok
}

/// A rolling update that changes the key pair (here: the AccessKey on one replica, a role's
/// temporary keys of the same account on the other) keeps one lease log and one cache: CAMS sees
/// both key pairs and never more than the account's 5 calls in a second, and a flow one replica
/// fetched is `shared` on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_key_pairs_of_one_account_share_one_lease_log_and_one_cache() {
    let redis = RedisServer::start();
    let (_sandbox, endpoint) = sandbox().await;
    let url = redis.url();
    let settings = [
        ("CAMS_FLOWS_REDIS_URL", url.as_str()),
        ("CAMS_FLOWS_CALL_TIMEOUT_MS", "2500"),
    ];
    let access_key = Replica::start(&endpoint, &settings).await;
    let role_arn = format!("acs:ram::{ACCOUNT_ID}:role/cams-flows");
    let mut with_role = settings.to_vec();
    with_role.push(("CAMS_FLOWS_CREDENTIALS_ASSUME_ROLE_ARN", &role_arn));
    let temporary = Replica::start(&endpoint, &with_role).await;
    assert_eq!(account_of(&access_key), ACCOUNT_ID);
    assert_eq!(account_of(&temporary), ACCOUNT_ID);

    // Past the quiet period of a fresh Redis, a flow fetched by one is shared by the other.
    access_key.get_eventually("sim:ok:rotated", "t").await;
    assert_eq!(temporary.source("sim:ok:rotated", "t").await, "shared");

    let served = flood(
        &[&access_key, &temporary],
        Instant::now() + Duration::from_secs(3),
    )
    .await;
    assert!(served >= 10, "{served} calls served in 3 s");
    let seen = stats(&endpoint).await;
    assert_eq!(seen.throttled, 0, "{seen:?}");
    assert!(seen.max_accepted_per_sliding_second <= 5, "{seen:?}");
    let signers: BTreeSet<String> = requests(&endpoint)
        .await
        .into_iter()
        .filter(|r| r.code == "OK")
        .map(|r| r.access_key_id)
        .collect();
    assert!(signers.contains(KEY_ID), "{signers:?}");
    assert!(
        signers.iter().any(|k| k.starts_with("STS.")),
        "the other replica signed with temporary keys: {signers:?}"
    );

    // One lease log, named after the account; the cache's entries carry the same name.
    let slots = keys(&redis, "*:slots").await;
    assert_eq!(
        slots,
        BTreeSet::from([format!("cams-flows:{}:slots", account_tag(ACCOUNT_ID))]),
    );
    let entries = keys(&redis, "*:flow:*").await;
    assert!(!entries.is_empty());
    assert!(
        entries.iter().all(|k| k.contains(&tag(ACCOUNT_ID))),
        "{entries:?}"
    );
}

/// Two accounts on one Redis never share an entry: each replica's account is the one STS names,
/// and the keys carry it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_accounts_never_share_an_entry() {
    let redis = RedisServer::start();
    let (_sandbox, endpoint) = sandbox().await;
    let other_account = "5000000000000002";
    let mut config = IdentityConfig::new(Default::default());
    config.account_id = other_account.to_owned();
    config.signers = vec![(KEY_ID.to_owned(), SecretString::from(KEY_SECRET.to_owned()))];
    let other_sts = Identity::bind(([127, 0, 0, 1], 0).into(), config)
        .await
        .expect("bind")
        .spawn();
    let url = redis.url();
    let settings = [("CAMS_FLOWS_CACHE_REDIS_URL", url.as_str())];
    let first = Replica::start(&endpoint, &settings).await;
    let other_endpoint = other_sts.endpoint();
    let second = Replica::start(
        &endpoint,
        &[
            settings[0],
            ("ALIBABA_CLOUD_STS_ENDPOINT", other_endpoint.as_str()),
        ],
    )
    .await;
    assert_eq!(account_of(&first), ACCOUNT_ID);
    assert_eq!(account_of(&second), other_account);

    let flow = "sim:ok:per-account";
    assert_eq!(first.source(flow, "t").await, "miss");
    assert_eq!(second.source(flow, "t").await, "miss", "not the first's");
    assert_eq!(stats(&endpoint).await.calls_by_flow.get(flow), Some(&2));
    let entries = keys(&redis, &format!("*:flow:*:{flow}}}")).await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    for account in [ACCOUNT_ID, other_account] {
        assert!(
            entries.iter().any(|k| k.contains(&tag(account))),
            "{account}: {entries:?}"
        );
    }
}

/// A loopback address nothing listens on.
fn closed() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    format!("http://{}", listener.local_addr().expect("addr"))
}

/// `serve` with the tests' AccessKey, a Redis (not running: the account is settled before the
/// first command) and `env`; it must exit 2. Everything it wrote.
fn serve_exits_2(env: &[(&str, &str)]) -> String {
    let redis = closed().replace("http://", "redis://");
    let mut cmd = binary();
    cmd.arg("serve")
        .env("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID)
        .env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", KEY_SECRET)
        .env("CAMS_FLOWS_ENDPOINT", closed())
        .env("CAMS_FLOWS_LISTEN", "127.0.0.1:0")
        .env("CAMS_FLOWS_AUTH_MODE", "none")
        .env("CAMS_FLOWS_REDIS_URL", redis);
    for (key, value) in env {
        cmd.env(key, value);
    }
    let mut running = Running::start(&mut cmd);
    let status = running.exit_within(Duration::from_secs(30));
    let output = running.all_output();
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(!output.contains(KEY_SECRET), "{output}");
    output
}

#[test]
fn a_redis_account_that_sts_contradicts_stops_serve_naming_both() {
    let output = serve_exits_2(&[
        ("ALIBABA_CLOUD_STS_ENDPOINT", &sts().endpoint),
        ("CAMS_FLOWS_REDIS_ACCOUNT", "5000000000000009"),
    ]);
    for expected in [
        "redis.account is 5000000000000009, but the credentials belong to the account \
         1234567890123456 (as STS GetCallerIdentity says)",
        "Set redis.account to 1234567890123456 (or remove it)",
    ] {
        assert!(output.contains(expected), "{expected:?} not in {output}");
    }

    // A name that is no UID, the way redis.account was used before, is refused without asking.
    let output = serve_exits_2(&[
        ("ALIBABA_CLOUD_STS_ENDPOINT", &closed()),
        ("CAMS_FLOWS_REDIS_ACCOUNT", "isv-prod"),
    ]);
    assert!(
        output
            .contains("redis.account is \"isv-prod\", which is not an Alibaba Cloud account's UID"),
        "{output}"
    );
}

#[test]
fn without_sts_and_without_redis_account_serve_exits_2_naming_the_setting() {
    let output = serve_exits_2(&[("ALIBABA_CLOUD_STS_ENDPOINT", &closed())]);
    for expected in [
        "redis.account is not set, and STS GetCallerIdentity could not tell which account the \
         credentials belong to (could not reach STS",
        "set redis.account to the account's UID",
    ] {
        assert!(output.contains(expected), "{expected:?} not in {output}");
    }
}

/// STS out of reach, `redis.account` stated: the gateway starts with it, says it could not
/// confirm it, and names the account's state after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_sts_a_stated_redis_account_is_used_with_a_warning() {
    let redis = RedisServer::start();
    let (_sandbox, endpoint) = sandbox().await;
    let url = redis.url();
    let unreachable = closed();
    let replica = Replica::start(
        &endpoint,
        &[
            ("CAMS_FLOWS_CACHE_REDIS_URL", url.as_str()),
            ("CAMS_FLOWS_REDIS_ACCOUNT", ACCOUNT_ID),
            ("ALIBABA_CLOUD_STS_ENDPOINT", unreachable.as_str()),
        ],
    )
    .await;
    let output = replica.process.output();
    let warning = output
        .lines()
        .find(|l| l.contains("could not confirm redis.account with STS GetCallerIdentity"))
        .unwrap_or_else(|| panic!("no warning in {output}"));
    let warning: serde_json::Value = serde_json::from_str(warning).expect("JSON");
    assert_eq!(warning["level"], "WARN", "{warning}");
    assert_eq!(warning["account"], ACCOUNT_ID, "{warning}");
    assert!(
        warning["error"]
            .as_str()
            .is_some_and(|e| e.contains("could not reach STS")),
        "{warning}"
    );

    assert_eq!(replica.source("sim:ok:stated", "t").await, "miss");
    let entries = keys(&redis, "*:flow:*").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(
        entries.iter().all(|k| k.contains(&tag(ACCOUNT_ID))),
        "{entries:?}"
    );
}

/// `serve --sandbox` names its state after the simulated account without asking STS (which
/// here is out of reach, and no redis.account is set).
#[test]
fn serve_sandbox_uses_the_simulated_account_without_sts() {
    let unreachable = closed();
    let redis = unreachable.replace("http://", "redis://");
    let running = Running::start(
        binary()
            .args(["serve", "--sandbox", "--listen", "127.0.0.1:0"])
            .args(["--log-format", "json", "--cache-redis-url", &redis])
            .env("ALIBABA_CLOUD_STS_ENDPOINT", &unreachable),
    );
    let line = running.wait_for("the account's state in Redis is named after");
    assert_eq!(line["account"], ACCOUNT_ID, "{line}");
    running.wait_for("\"listening\"");
}
