//! Purging cached answers (`FlowAdminService/InvalidateFlows`, `cams-flows purge`): replicas
//! sharing their cache through a Redis of their own, in front of one simulated CAMS that counts
//! the calls it accepted; a purge through one replica is a miss through another. Only callers
//! with the admin role may purge.

use std::{collections::HashSet, net::SocketAddr, time::Duration};

use cams_flows::{
    auth::{Admins, ApiKey, AuthConfig, AuthMode, TenantSet, hash_key},
    pb::{
        GetFlowRequest, InvalidateFlowsRequest, InvalidateFlowsResponse, ListFlowsRequest,
        flow_admin_service_client::FlowAdminServiceClient, flow_service_client::FlowServiceClient,
    },
};
use redis::AsyncCommands;
use sha2::Digest;
use tonic::{Code, Status, transport::Channel};

use crate::support::{
    TestApp, cache_header,
    cluster::RedisCluster,
    error_info,
    process::{Running, binary, serve_sandbox},
    redis::RedisServer,
    replica::{Replica, sandbox, stats},
    wait,
};

/// The bound on background work the tests wait for (a fill into Redis, a notice reaching a
/// replica), far above the milliseconds it takes.
const BACKGROUND: Duration = Duration::from_secs(10);

/// A key with the admin role, allowed every tenant.
const ADMIN_KEY: &str = "cf-admin-key";
/// A key that may read every tenant, without the admin role.
const READER_KEY: &str = "cf-reader-key";
/// A key with the admin role, allowed one tenant only.
const NARROW_ADMIN_KEY: &str = "cf-narrow-admin-key";

/// The auth section of the replicas' config file.
fn auth_config() -> String {
    format!(
        r#"[auth]
mode = "api_key"

[[auth.keys]]
name = "ops"
sha256 = "{}"
tenants = ["*"]
roles = ["admin"]

[[auth.keys]]
name = "reader"
sha256 = "{}"
tenants = ["*"]
"#,
        hash_key(ADMIN_KEY),
        hash_key(READER_KEY),
    )
}

/// The same callers, for an in-process gateway, and a third: an admin of `cams-a` only.
fn auth() -> AuthConfig {
    let key = |name: &str, key: &str, tenants: &str| ApiKey {
        name: name.into(),
        sha256: sha2::Sha256::digest(key.as_bytes()).into(),
        tenants: TenantSet::parse(&[tenants.to_owned()]).expect("patterns"),
    };
    AuthConfig {
        mode: AuthMode::ApiKey,
        keys: vec![
            key("ops", ADMIN_KEY, "*"),
            key("reader", READER_KEY, "*"),
            key("narrow", NARROW_ADMIN_KEY, "cams-a"),
        ],
        admins: Admins {
            keys: HashSet::from(["ops".to_owned(), "narrow".to_owned()]),
            identities: HashSet::new(),
        },
        ..AuthConfig::none()
    }
}

/// A replica with the admin listener on, and clients of both services.
struct Gateway {
    replica: Replica,
    admin: FlowAdminServiceClient<Channel>,
}

/// `n` replicas sharing their cache in `redis`, each connected to it and subscribed to its
/// channel (a notice published before a replica subscribes would not reach it).
async fn replicas(
    n: usize,
    endpoint: &str,
    redis: &RedisServer,
    config: &std::path::Path,
) -> Vec<Gateway> {
    let url = redis.url();
    let started = start(
        n,
        endpoint,
        config,
        &[("CAMS_FLOWS_CACHE_REDIS_URL", url.as_str())],
    )
    .await;
    wait::until(
        BACKGROUND,
        &format!("{n} replicas subscribed to the shared cache's channel"),
        || subscribers(redis),
        |count| *count >= n as i64,
    )
    .await;
    started
}

/// `n` replicas with the callers of [`auth_config`] and the Redis of `redis_settings`, each
/// connected to its Redis.
async fn start(
    n: usize,
    endpoint: &str,
    config: &std::path::Path,
    redis_settings: &[(&str, &str)],
) -> Vec<Gateway> {
    let config = config.to_str().expect("UTF-8 path");
    let mut settings = vec![
        ("CAMS_FLOWS_CONFIG", config),
        ("CAMS_FLOWS_AUTH_MODE", "api_key"),
        ("CAMS_FLOWS_ADMIN_LISTEN", "127.0.0.1:0"),
        ("CAMS_FLOWS_CALL_TIMEOUT_MS", "3000"),
        ("CAMS_FLOWS_LIMITS_TENANT_RPS", "10000"),
        ("CAMS_FLOWS_LIMITS_TENANT_BURST", "10000"),
    ];
    settings.extend_from_slice(redis_settings);
    let mut started = Vec::new();
    for _ in 0..n {
        let replica = Replica::start(endpoint, &settings).await;
        wait::until(
            BACKGROUND,
            "the replica's connection to Redis",
            || async { replica.process.output() },
            |log| log.contains("Redis connected"),
        )
        .await;
        let addr = logged_addr(&replica.process, "\"listening\"");
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
            .expect("connect");
        started.push(Gateway {
            replica,
            admin: FlowAdminServiceClient::new(channel),
        });
    }
    started
}

/// The address a log line holding `needle` gives.
fn logged_addr(process: &Running, needle: &str) -> SocketAddr {
    let output = process.output();
    let line = output
        .lines()
        .find(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("no log line with {needle}"));
    let logged: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
    logged["addr"]
        .as_str()
        .expect("addr")
        .parse()
        .expect("address")
}

async fn connection(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connected to the test Redis")
}

/// Subscribers of the channel the replicas share (fetch-lock releases and purge notices).
async fn subscribers(redis: &RedisServer) -> i64 {
    let mut c = connection(redis).await;
    let (_, count): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg("cams-flows:v1:released")
        .query_async(&mut c)
        .await
        .expect("PUBSUB NUMSUB");
    count
}

/// The shared entries (and index) of `tenant` in Redis.
async fn tenant_keys(redis: &RedisServer, tenant: &str) -> Vec<String> {
    let mut c = connection(redis).await;
    let mut keys: Vec<String> = c
        .keys(format!(
            "cams-flows:v1:*:{{acct:*:{}:{tenant}:*",
            tenant.len()
        ))
        .await
        .expect("KEYS");
    keys.sort();
    keys
}

async fn index_size(redis: &RedisServer, tenant: &str) -> usize {
    let mut c = connection(redis).await;
    let indexes: Vec<String> = c
        .keys(format!(
            "cams-flows:v1:index:{{acct:*:{}:{tenant}}}",
            tenant.len()
        ))
        .await
        .expect("KEYS");
    let mut size = 0;
    for index in indexes {
        size += c.zcard::<_, usize>(index).await.expect("ZCARD");
    }
    size
}

fn with_key<T>(message: T, key: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("ascii"),
    );
    request.set_timeout(Duration::from_secs(5));
    request
}

/// How a GetFlow read by the reader was served.
async fn read(client: &FlowServiceClient<Channel>, flow: &str, tenant: &str) -> String {
    let request = GetFlowRequest {
        flow_id: flow.into(),
        cust_space_id: tenant.into(),
    };
    match client.clone().get_flow(with_key(request, READER_KEY)).await {
        Ok(response) => cache_header(response.metadata()),
        Err(status) => panic!("{flow} for {tenant}: {status:?}"),
    }
}

/// How the first page of `tenant`'s flows was served.
async fn list(client: &FlowServiceClient<Channel>, tenant: &str) -> String {
    let request = ListFlowsRequest {
        cust_space_id: tenant.into(),
        ..Default::default()
    };
    match client
        .clone()
        .list_flows(with_key(request, READER_KEY))
        .await
    {
        Ok(response) => cache_header(response.metadata()),
        Err(status) => panic!("list of {tenant}: {status:?}"),
    }
}

async fn purge(
    admin: &FlowAdminServiceClient<Channel>,
    key: &str,
    tenant: &str,
    flows: &[&str],
) -> Result<InvalidateFlowsResponse, Status> {
    let request = InvalidateFlowsRequest {
        cust_space_id: tenant.into(),
        flow_ids: flows.iter().map(|f| (*f).to_owned()).collect(),
        own_space: false,
    };
    admin
        .clone()
        .invalidate_flows(with_key(request, key))
        .await
        .map(tonic::Response::into_inner)
}

async fn calls_to(endpoint: &str, flow: &str) -> u64 {
    stats(endpoint)
        .await
        .calls_by_flow
        .get(flow)
        .copied()
        .unwrap_or(0)
}

/// The replica's `cams_flows_cache_purges_total` of `scope` and `origin`.
async fn purges(gateway: &Gateway, scope: &str, origin: &str) -> f64 {
    let admin = logged_addr(&gateway.replica.process, "admin listener");
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
        .find(|s| {
            s.metric == "cams_flows_cache_purges_total"
                && s.labels.get("scope") == Some(scope)
                && s.labels.get("origin") == Some(origin)
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("not a counter: {other:?}"),
        })
        .unwrap_or_else(|| panic!("no purges series of {scope}/{origin}"))
}

/// Reads of `flow` through `gateway` until one is not a local hit (the notice has reached it),
/// and how that one was served.
async fn read_until_dropped(
    client: &FlowServiceClient<Channel>,
    flow: &str,
    tenant: &str,
) -> String {
    wait::until_every(
        Duration::from_millis(50),
        BACKGROUND,
        &format!("{flow} of {tenant} dropped from the replica's own cache"),
        || read(client, flow, tenant),
        |source| source != "hit",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_purged_through_one_replica_is_a_miss_through_the_other() {
    let redis = RedisServer::start();
    let (_sandbox, endpoint) = sandbox().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("cams-flows.toml");
    std::fs::write(&config, auth_config()).expect("config file");
    let r = replicas(2, &endpoint, &redis, &config).await;
    let (a, b) = (&r[0], &r[1]);
    let flow = "sim:ok:purged";
    let other = "sim:ok:kept";

    assert_eq!(read(&a.replica.client, flow, "t").await, "miss");
    assert_eq!(read(&a.replica.client, other, "t").await, "miss");
    assert_eq!(read(&b.replica.client, flow, "t").await, "shared");
    assert_eq!(read(&b.replica.client, flow, "t").await, "hit");
    assert_eq!(read(&b.replica.client, other, "t").await, "shared");
    assert_eq!(read(&a.replica.client, flow, "t").await, "hit");
    assert_eq!(calls_to(&endpoint, flow).await, 1);

    let purged = purge(&a.admin, ADMIN_KEY, "t", &[flow])
        .await
        .expect("purged");
    assert_eq!(purged.local_entries, 1, "{purged:?}");
    assert_eq!(purged.shared_entries, 1, "{purged:?}");
    assert!(purged.peers_notified);

    // The notice reaches B within milliseconds; until then B may still hit its own copy.
    assert_eq!(
        read_until_dropped(&b.replica.client, flow, "t").await,
        "miss"
    );
    assert_eq!(calls_to(&endpoint, flow).await, 2, "B asked CAMS again");
    // A's own copy went with the purge: it reads what B fetched since.
    assert_eq!(read(&a.replica.client, flow, "t").await, "shared");
    // The flow not named stays cached everywhere.
    assert_eq!(read(&b.replica.client, other, "t").await, "hit");
    assert_eq!(read(&a.replica.client, other, "t").await, "hit");
    assert_eq!(calls_to(&endpoint, other).await, 1);
    assert_eq!(calls_to(&endpoint, flow).await, 2);

    assert_eq!(purges(a, "flows", "local").await, 1.0);
    assert_eq!(purges(a, "flows", "peer").await, 0.0, "its own notice");
    assert_eq!(purges(b, "flows", "peer").await, 1.0);
    assert_eq!(purges(b, "flows", "local").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_purge_drops_every_read_of_the_tenant_and_nothing_else() {
    let redis = RedisServer::start();
    let (_sandbox, endpoint) = sandbox().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("cams-flows.toml");
    std::fs::write(&config, auth_config()).expect("config file");
    let r = replicas(2, &endpoint, &redis, &config).await;
    let (a, b) = (&r[0].replica.client, &r[1].replica.client);
    let (one, two) = ("sim:ok:one", "sim:ok:two");

    for flow in [one, two] {
        assert_eq!(read(a, flow, "t").await, "miss");
    }
    assert_eq!(list(a, "t").await, "miss");
    assert_eq!(read(a, one, "u").await, "miss");
    assert_eq!(read(b, one, "t").await, "shared");
    // Three entries of t in Redis, and its index naming them (filled off the answers' path).
    wait::until(
        BACKGROUND,
        "t's three shared entries",
        || tenant_keys(&redis, "t"),
        |keys| keys.len() == 3,
    )
    .await;
    assert_eq!(index_size(&redis, "t").await, 3);

    let purged = purge(&r[1].admin, ADMIN_KEY, "t", &[])
        .await
        .expect("purged");
    assert_eq!(purged.shared_entries, 3, "{purged:?}");
    assert_eq!(purged.local_entries, 1, "B held one of t's: {purged:?}");
    assert_eq!(tenant_keys(&redis, "t").await, Vec::<String>::new());
    assert_eq!(
        index_size(&redis, "t").await,
        3,
        "names leave the index when their entries would have ended, never at a purge (which \
         could race a put that had just added one)"
    );

    assert_eq!(read_until_dropped(a, one, "t").await, "miss");
    assert_eq!(read(a, two, "t").await, "miss");
    assert_eq!(list(a, "t").await, "miss");
    assert_eq!(
        read(a, one, "u").await,
        "hit",
        "another tenant's answer stays"
    );
    assert_eq!(read(b, one, "u").await, "shared");
    assert_eq!(calls_to(&endpoint, one).await, 3, "t twice, u once");
    assert_eq!(calls_to(&endpoint, two).await, 2);
    assert_eq!(purges(&r[0], "tenant", "peer").await, 1.0);
    assert_eq!(purges(&r[1], "tenant", "local").await, 1.0);
}

/// An in-process gateway without Redis, caching, with the three callers of [`auth`].
async fn single() -> TestApp {
    TestApp::builder()
        .auth(auth())
        .config(|c| c.cache.ttl = Duration::from_secs(60))
        .spawn()
        .await
}

#[tokio::test]
async fn only_an_admin_of_the_tenant_may_purge_and_a_refusal_purges_nothing() {
    let app = single().await;
    let admin = FlowAdminServiceClient::new(app.channel.clone());
    let flow = "sim:ok:guarded";
    assert_eq!(read(&app.client, flow, "cams-b").await, "miss");

    let refused = purge(&admin, READER_KEY, "cams-b", &[flow])
        .await
        .expect_err("not an admin");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let info = error_info(&refused);
    assert_eq!(info.reason, "ADMIN_ROLE_REQUIRED");
    assert_eq!(info.domain, "cams-flows");
    assert_eq!(
        info.metadata.get("caller").map(String::as_str),
        Some("reader")
    );

    let refused = purge(&admin, NARROW_ADMIN_KEY, "cams-b", &[flow])
        .await
        .expect_err("not its tenant");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert_eq!(error_info(&refused).reason, "TENANT_NOT_ALLOWED");

    let anonymous = admin
        .clone()
        .invalidate_flows(InvalidateFlowsRequest {
            cust_space_id: "cams-b".into(),
            flow_ids: vec![flow.into()],
            own_space: false,
        })
        .await
        .expect_err("no key");
    assert_eq!(anonymous.code(), Code::Unauthenticated, "{anonymous:?}");
    assert_eq!(error_info(&anonymous).reason, "MISSING_CREDENTIAL");

    let invalid = purge(&admin, ADMIN_KEY, "", &[flow])
        .await
        .expect_err("no space named");
    assert_eq!(invalid.code(), Code::InvalidArgument, "{invalid:?}");

    assert_eq!(
        read(&app.client, flow, "cams-b").await,
        "hit",
        "nothing purged"
    );
    assert_eq!(app.upstream_calls(flow).await, 1);
}

#[tokio::test]
async fn a_purge_on_a_single_replica_without_redis_drops_its_own_entries() {
    let app = single().await;
    let admin = FlowAdminServiceClient::new(app.channel.clone());
    let flow = "sim:ok:alone";
    assert_eq!(read(&app.client, flow, "cams-a").await, "miss");
    assert_eq!(read(&app.client, flow, "cams-a").await, "hit");

    let purged = purge(&admin, NARROW_ADMIN_KEY, "cams-a", &[flow])
        .await
        .expect("purged");
    assert_eq!(
        (
            purged.local_entries,
            purged.shared_entries,
            purged.peers_notified
        ),
        (1, 0, false)
    );
    assert_eq!(read(&app.client, flow, "cams-a").await, "miss");
    assert_eq!(app.upstream_calls(flow).await, 2);
    // Again: nothing more to drop, and no harm done.
    let again = purge(&admin, ADMIN_KEY, "cams-a", &[flow])
        .await
        .expect("purged");
    assert_eq!(again.local_entries, 1, "the answer fetched since");
    let idle = purge(&admin, ADMIN_KEY, "cams-a", &[flow])
        .await
        .expect("purged");
    assert_eq!(idle.local_entries, 0);
}

/// Reflection lists the admin service beside the reads (for grpcurl), and health reports it.
#[tokio::test]
async fn reflection_and_health_know_the_admin_service() {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    use tonic_reflection::pb::v1;
    let app = TestApp::builder().spawn().await;
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut stream = v1::server_reflection_client::ServerReflectionClient::new(app.channel.clone())
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection v1")
        .into_inner();
    let response = stream.message().await.expect("stream").expect("response");
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("unexpected {response:?}")
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.iter().any(|n| n == "cams.flows.v1.FlowAdminService"),
        "{names:?}"
    );
    let status = HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest {
            service: "cams.flows.v1.FlowAdminService".into(),
        })
        .await
        .expect("health")
        .into_inner()
        .status();
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
}

/// Without authentication only the sandbox's caller is an admin: anyone could purge otherwise.
#[tokio::test]
async fn without_authentication_nobody_is_an_admin_outside_the_sandbox() {
    let app = TestApp::builder()
        .config(|c| c.cache.ttl = Duration::from_secs(60))
        .spawn()
        .await;
    let refused = FlowAdminServiceClient::new(app.channel.clone())
        .invalidate_flows(InvalidateFlowsRequest {
            cust_space_id: "t".into(),
            flow_ids: Vec::new(),
            own_space: false,
        })
        .await
        .expect_err("anonymous");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert_eq!(error_info(&refused).reason, "ADMIN_ROLE_REQUIRED");
}

/// `cams-flows purge` with its arguments and environment: its exit code and what it printed.
async fn cli(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = binary();
    cmd.arg("purge").args(args);
    for (key, value) in env {
        cmd.env(key, value);
    }
    let output = tokio::task::spawn_blocking(move || cmd.output().expect("run cams-flows purge"))
        .await
        .expect("joined");
    (
        output.status.code().expect("an exit code"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_purges_with_an_admin_key_and_says_why_not_without() {
    let app = single().await;
    let flow = "sim:ok:cli";
    let target = app.addr.to_string();
    assert_eq!(read(&app.client, flow, "cams-a").await, "miss");

    let (code, _, stderr) = cli(
        &["--target", &target, "--tenant", "cams-a", "--flow", flow],
        &[("CAMS_FLOWS_API_KEY", READER_KEY)],
    )
    .await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("PERMISSION_DENIED (ADMIN_ROLE_REQUIRED)"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(READER_KEY),
        "the key stays secret: {stderr}"
    );
    assert_eq!(read(&app.client, flow, "cams-a").await, "hit");

    let (code, stdout, stderr) = cli(
        &["--target", &target, "--tenant", "cams-a", "--flow", flow],
        &[("CAMS_FLOWS_API_KEY", ADMIN_KEY)],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("1 entries dropped at the replica"),
        "{stdout}"
    );
    assert_eq!(read(&app.client, flow, "cams-a").await, "miss");

    let (code, _, stderr) = cli(&["--target", &target, "--flow", flow], &[]).await;
    assert_eq!(code, 2, "no tenant is a usage error: {stderr}");
    let (code, _, stderr) = cli(&["--target", "127.0.0.1:1", "--tenant", "t"], &[]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cannot reach the gateway"), "{stderr}");
}

/// `serve --sandbox`: no authentication, and its caller may purge, from the CLI too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandboxs_caller_may_purge() {
    let served = serve_sandbox(&[]);
    let channel = Channel::from_shared(format!("http://{}", served.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let client = FlowServiceClient::new(channel);
    let flow = "sim:ok:sandboxed";
    let get = || {
        let client = client.clone();
        async move {
            client
                .clone()
                .get_flow(GetFlowRequest {
                    flow_id: flow.into(),
                    cust_space_id: "t".into(),
                })
                .await
                .map(|r| cache_header(r.metadata()))
                .expect("served")
        }
    };
    assert_eq!(get().await, "miss");
    assert_eq!(get().await, "hit");
    let (code, stdout, stderr) = cli(
        &["--target", &served.addr.to_string(), "--tenant", "t"],
        &[],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("every cached answer of t"), "{stdout}");
    assert_eq!(get().await, "miss");
}

/// Subscribers of the replicas' channel on every node of `cluster` (a subscriber is counted by
/// the node it is connected to; a message published on any node reaches all of them).
fn cluster_subscribers(cluster: &RedisCluster) -> i64 {
    cluster
        .nodes()
        .iter()
        .filter_map(|node| {
            let reply = cluster
                .node(node)
                .cmd(&["PUBSUB", "NUMSUB", "cams-flows:v1:released"]);
            reply
                .items()
                .and_then(|items| items.get(1))
                .and_then(|n| n.int())
        })
        .sum()
}

/// The names under `pattern` on every master of `cluster`.
fn cluster_keys(cluster: &RedisCluster, pattern: &str) -> Vec<String> {
    let mut keys: Vec<String> = cluster
        .masters()
        .iter()
        .flat_map(|master| {
            cluster
                .node(master)
                .cmd(&["KEYS", pattern])
                .items()
                .map(|items| items.iter().filter_map(|k| k.text()).collect::<Vec<_>>())
                .unwrap_or_default()
        })
        .collect();
    keys.sort();
    keys
}

/// In a Redis Cluster a tenant's entries are spread over the slots (each has a hash tag of its
/// own): a tenant-wide purge finds them through the tenant's index and deletes them on every
/// shard, and the other replica hears the notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_purge_reaches_every_shard_of_a_cluster() {
    let cluster = RedisCluster::start();
    let (_sandbox, endpoint) = sandbox().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("cams-flows.toml");
    std::fs::write(&config, auth_config()).expect("config file");
    let nodes = cluster.nodes().join(",");
    let r = start(
        2,
        &endpoint,
        &config,
        &[
            ("CAMS_FLOWS_REDIS_MODE", "cluster"),
            ("CAMS_FLOWS_REDIS_NODES", &nodes),
        ],
    )
    .await;
    wait::until(
        BACKGROUND,
        "2 replicas subscribed to the shared cache's channel",
        || async { cluster_subscribers(&cluster) },
        |count| *count >= 2,
    )
    .await;
    let (a, b) = (&r[0].replica.client, &r[1].replica.client);
    let flows: Vec<String> = (0..8).map(|i| format!("sim:ok:spread-{i}")).collect();
    // The shared quota admits no CAMS call for a moment after a fresh Redis.
    wait::until_every(
        Duration::from_millis(200),
        Duration::from_secs(30),
        "the first flow served past the shared quota's first-use quiet period",
        || {
            let request = GetFlowRequest {
                flow_id: flows[0].clone(),
                cust_space_id: "t".into(),
            };
            let a = a.clone();
            async move {
                a.clone()
                    .get_flow(with_key(request, READER_KEY))
                    .await
                    .is_ok()
            }
        },
        |ok| *ok,
    )
    .await;
    for flow in &flows[1..] {
        assert_eq!(read(a, flow, "t").await, "miss");
    }
    for flow in &flows {
        assert_eq!(read(b, flow, "t").await, "shared");
    }
    let pattern = "cams-flows:v1:flow:{acct:*:1:t:*";
    let keys = wait::until(
        BACKGROUND,
        "t's eight shared entries",
        || async { cluster_keys(&cluster, pattern) },
        |keys| keys.len() == flows.len(),
    )
    .await;
    let shards: HashSet<String> = keys.iter().map(|k| cluster.master_of(k)).collect();
    assert!(
        shards.len() >= 2,
        "entries spread over {} shard(s)",
        shards.len()
    );

    let purged = purge(&r[0].admin, ADMIN_KEY, "t", &[])
        .await
        .expect("purged");
    assert_eq!(purged.shared_entries, flows.len() as u64, "{purged:?}");
    assert_eq!(purged.local_entries, flows.len() as u64, "{purged:?}");
    assert_eq!(cluster_keys(&cluster, pattern), Vec::<String>::new());
    assert_eq!(read_until_dropped(b, &flows[0], "t").await, "miss");
    assert_eq!(read(b, &flows[1], "t").await, "miss");
}

/// A notice published while a replica's subscription is down never reaches it; when it
/// subscribes again, the account's purge counter tells it that purges were missed, and it drops
/// its whole cache (which entries they covered it cannot know), refilling from the shared tier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_missed_a_notice_drops_its_cache_when_it_subscribes_again() {
    let redis = RedisServer::start();
    let (_sandbox, endpoint) = sandbox().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("cams-flows.toml");
    std::fs::write(&config, auth_config()).expect("config file");
    let r = replicas(2, &endpoint, &redis, &config).await;
    let (a, b) = (&r[0].replica.client, &r[1].replica.client);
    let (purged, kept) = ("sim:ok:missed", "sim:ok:bystander");
    for flow in [purged, kept] {
        assert_eq!(read(a, flow, "t").await, "miss");
        assert_eq!(read(b, flow, "t").await, "shared");
        assert_eq!(read(b, flow, "t").await, "hit");
    }

    // Every subscription cut: the replicas subscribe again a second later, so the purge that
    // follows at once goes out while nobody listens.
    let killed = redis.cmd(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert!(killed.int().is_some_and(|n| n >= 2), "{killed:?}");
    purge(&r[0].admin, ADMIN_KEY, "t", &[purged])
        .await
        .expect("purged");

    assert_eq!(read_until_dropped(b, purged, "t").await, "miss");
    assert_eq!(
        read(b, kept, "t").await,
        "shared",
        "the whole local tier went, the shared tier kept what was not purged"
    );
    assert_eq!(purges(&r[1], "flows", "peer").await, 0.0, "no notice heard");
    assert_eq!(
        purges(&r[1], "tenant", "peer").await,
        1.0,
        "the whole cache dropped, counted as a purge at a peer's word"
    );
    assert!(
        r[1].replica
            .process
            .output()
            .contains("purges were made while this replica was not subscribed"),
        "the replica says why it dropped its cache"
    );
    assert_eq!(calls_to(&endpoint, purged).await, 2);
    assert_eq!(calls_to(&endpoint, kept).await, 1);
}
