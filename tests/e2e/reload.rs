//! Changing the configuration of a running gateway: the real binary reads its file again on
//! SIGHUP and when the file changes; limits, keys and cache times follow at once, a file that does
//! not validate changes nothing, and SIGHUP never ends the process.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime},
};

use cams_flows::pb::{GetFlowRequest, flow_service_client::FlowServiceClient};
use tempfile::TempDir;
use tonic::{Code, Status, transport::Channel};

use crate::support::{
    cache_header,
    certs::Ca,
    error_info,
    process::{Running, binary},
    redis::RedisServer,
    replica::{Replica, sandbox},
    tls::{TlsFiles, client_tls, replace},
    wait,
};

/// Long enough for a reload, or a log line, on a loaded host.
const PATIENCE: Duration = Duration::from_secs(30);

/// The log lines holding `needle`, as JSON.
fn logged(running: &Running, needle: &str) -> Vec<serde_json::Value> {
    running
        .output()
        .lines()
        .filter(|line| line.contains(needle))
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Waits until `running` has logged more than `before` lines holding `needle`; the last one.
async fn logged_more(running: &Running, needle: &str, before: usize) -> serde_json::Value {
    wait::until(
        PATIENCE,
        &format!("a log line with {needle:?}"),
        || async { logged(running, needle) },
        |lines| lines.len() > before,
    )
    .await
    .pop()
    .expect("a line")
}

/// The outcome of a reload (applied or refused) for `cause`, as logged.
fn outcomes(running: &Running, cause: &str) -> Vec<serde_json::Value> {
    logged(running, "configuration reload")
        .into_iter()
        .filter(|line| line["cause"] == cause)
        .collect()
}

/// Sends SIGHUP to `running` and returns the outcome of the reload it caused. (A change the poll
/// saw first may have been reloaded already; SIGHUP reloads it again, the same.)
async fn hangup(running: &Running) -> serde_json::Value {
    let before = outcomes(running, "SIGHUP").len();
    running.signal("HUP");
    wait::until(
        PATIENCE,
        "the outcome of a reload on SIGHUP",
        || async { outcomes(running, "SIGHUP") },
        |lines| lines.len() > before,
    )
    .await
    .pop()
    .expect("an outcome")
}

/// A `serve --sandbox` process reading its configuration from a file of its own.
struct Gateway {
    running: Running,
    addr: SocketAddr,
    admin: SocketAddr,
    config: PathBuf,
    _dir: TempDir,
}

impl Gateway {
    fn start(toml: &str, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("cams-flows.toml");
        replace(&config, toml);
        let running = Running::start(
            binary()
                .args(["serve", "--sandbox", "--listen", "127.0.0.1:0"])
                .args(["--admin-listen", "127.0.0.1:0", "--log-format", "json"])
                .arg("--config")
                .arg(&config)
                .args(extra),
        );
        let address = |needle: &str| -> SocketAddr {
            running.wait_for(needle)["addr"]
                .as_str()
                .expect("addr")
                .parse()
                .expect("address")
        };
        let admin = address("admin listener");
        let addr = address("\"listening\"");
        Self {
            running,
            addr,
            admin,
            config,
            _dir: dir,
        }
    }

    /// Replaces the configuration file whole, as a ConfigMap update or a deploy tool does.
    fn write(&self, toml: &str) {
        replace(&self.config, toml);
    }

    async fn client(&self) -> FlowServiceClient<Channel> {
        FlowServiceClient::connect(format!("http://{}", self.addr))
            .await
            .expect("connect")
    }

    /// `cams_flows_config_reloads_total{result}`.
    async fn reloads(&self, result: &str) -> f64 {
        let text = reqwest::get(format!("http://{}/metrics", self.admin))
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
                s.metric == "cams_flows_config_reloads_total"
                    && s.labels.get("result") == Some(result)
            })
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) => v,
                ref other => panic!("not a counter: {other:?}"),
            })
            .expect("cams_flows_config_reloads_total on /metrics")
    }
}

/// A GetFlow call, with an API key if given: how it was served (`x-cams-cache`).
async fn get(
    client: &FlowServiceClient<Channel>,
    flow: &str,
    tenant: &str,
    key: Option<&str>,
) -> Result<String, Status> {
    let mut request = tonic::Request::new(GetFlowRequest {
        flow_id: flow.into(),
        cust_space_id: tenant.into(),
    });
    request.set_timeout(Duration::from_secs(5));
    if let Some(key) = key {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {key}").parse().expect("ascii"),
        );
    }
    let response = client.clone().get_flow(request).await?;
    Ok(cache_header(response.metadata()))
}

fn assert_tenant_limited(status: &Status) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(
        error_info(status).reason,
        "TENANT_RATE_LIMITED",
        "{status:?}"
    );
}

fn still_running(running: &mut Running) {
    assert!(
        running.child.try_wait().expect("try_wait").is_none(),
        "the process ended: {}",
        running.output()
    );
}

// ---- SIGHUP ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_never_stops_a_gateway_without_tls() {
    // No TLS and no configuration file: nothing to reload, and SIGHUP must still not end it.
    let mut running = Running::start(binary().args([
        "serve",
        "--sandbox",
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
    ]));
    let addr: SocketAddr = running.wait_for("\"listening\"")["addr"]
        .as_str()
        .expect("addr")
        .parse()
        .expect("address");
    for sent in 1..=2 {
        running.signal("HUP");
        logged_more(&running, "SIGHUP: nothing to reload", sent - 1).await;
    }
    let client = FlowServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    get(&client, "sim:ok:0", "cams-kei1", None)
        .await
        .expect("served after two SIGHUPs");
    still_running(&mut running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificates_and_the_configuration_of_a_tls_gateway() {
    let ca = Ca::new("server CA");
    let files = TlsFiles::new(&ca.server_leaf("server one"), None);
    let (cert, key) = (
        files.cert.display().to_string(),
        files.key.display().to_string(),
    );
    let mut gateway = Gateway::start(
        "[limits]\ntenant_rps = 5\n",
        &["--tls-cert-file", &cert, "--tls-key-file", &key],
    );
    let second = ca.server_leaf("server two");
    replace(&files.cert, &second.cert_pem);
    replace(&files.key, &second.key_pem);
    let before = logged(&gateway.running, "TLS certificates reloaded").len();
    let outcome = hangup(&gateway.running).await;
    assert!(
        outcome["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("configuration reloaded")),
        "{outcome}"
    );
    let reloaded = logged_more(&gateway.running, "TLS certificates reloaded", before).await;
    assert!(
        reloaded["subject"]
            .as_str()
            .is_some_and(|s| s.contains("server two")),
        "{reloaded}"
    );
    let channel = Channel::from_shared(format!("https://localhost:{}", gateway.addr.port()))
        .expect("uri")
        .tls_config(client_tls(&ca.pem, None))
        .expect("tls")
        .connect()
        .await
        .expect("a TLS connection after the reload");
    get(
        &FlowServiceClient::new(channel),
        "sim:ok:0",
        "cams-kei1",
        None,
    )
    .await
    .expect("served over TLS");
    still_running(&mut gateway.running);
}

// ---- limits ----

/// One call of the load: when it ended, and how.
struct Outcome {
    at: SystemTime,
    result: Result<String, Status>,
}

/// Calls for `tenant` from `lanes` concurrent callers until `stop`.
fn load(
    client: &FlowServiceClient<Channel>,
    tenant: &'static str,
    lanes: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<Outcome>>> {
    (0..lanes)
        .map(|_| {
            let (client, stop) = (client.clone(), Arc::clone(stop));
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let result = get(&client, "sim:ok:0", tenant, None).await;
                    outcomes.push(Outcome {
                        at: SystemTime::now(),
                        result,
                    });
                    // pacing: a steady load well above both rates, without spinning the cores.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                outcomes
            })
        })
        .collect()
}

fn accepted_between(outcomes: &[Outcome], from: SystemTime, to: SystemTime) -> usize {
    outcomes
        .iter()
        .filter(|o| o.at >= from && o.at < to && o.result.is_ok())
        .count()
}

fn logged_at(line: &serde_json::Value) -> SystemTime {
    humantime::parse_rfc3339_weak(line["timestamp"].as_str().expect("timestamp"))
        .expect("an RFC 3339 timestamp")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lower_tenant_rate_holds_within_a_second_of_the_reload_under_load() {
    const BEFORE: &str = "[limits.tenants.\"load\"]\nrps = 40\nburst = 40\n";
    const AFTER: &str = "[limits.tenants.\"load\"]\nrps = 4\nburst = 4\n";
    let gateway = Gateway::start(BEFORE, &[]);
    let client = gateway.client().await;
    get(&client, "sim:ok:0", "load", None)
        .await
        .expect("the flow cached");

    let stop = Arc::new(AtomicBool::new(false));
    let lanes = load(&client, "load", 3, &stop);
    let started = SystemTime::now();
    wait::until(
        PATIENCE,
        "three seconds of load",
        || async { SystemTime::now() },
        |now| now.duration_since(started).unwrap_or_default() >= Duration::from_secs(3),
    )
    .await;
    gateway.write(AFTER);
    let outcome = hangup(&gateway.running).await;
    assert!(
        outcome["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("configuration reloaded")),
        "{outcome}"
    );
    let reloaded = logged_at(&outcome);
    wait::until(
        PATIENCE,
        "three seconds of load after the reload",
        || async { SystemTime::now() },
        |now| now.duration_since(reloaded).unwrap_or_default() >= Duration::from_secs(3),
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = Vec::new();
    for lane in lanes {
        outcomes.extend(lane.await.expect("load"));
    }

    for outcome in &outcomes {
        if let Err(status) = &outcome.result {
            assert_tenant_limited(status);
        }
    }
    let second = Duration::from_secs(1);
    let before = accepted_between(&outcomes, started + second, started + 3 * second);
    let after = accepted_between(&outcomes, reloaded + second, reloaded + 3 * second);
    // At 40 calls/s, about 80 in those two seconds; at 4 calls/s (burst 4), at most 4 + 2 × 4
    // in any two seconds, the burst included, with room for a loaded host's timing.
    assert!(
        before >= 40,
        "{before} calls accepted in 2 s before the reload"
    );
    assert!(
        after <= 16,
        "{after} calls accepted in 2 s, 1 s after the reload"
    );
    assert!(
        after >= 4,
        "{after} calls accepted in 2 s: the tenant is still served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_changes_nothing() {
    // Three calls, then one every 20 s: a reload that fell back to any other limit would serve
    // the fourth.
    const RUNNING: &str = "[limits.tenants.\"slow\"]\nrps = 0.05\nburst = 3\n";
    let gateway = Gateway::start(RUNNING, &[]);
    let client = gateway.client().await;
    for _ in 0..3 {
        get(&client, "sim:ok:0", "slow", None)
            .await
            .expect("within the burst");
    }
    assert_tenant_limited(
        &get(&client, "sim:ok:0", "slow", None)
            .await
            .expect_err("spent"),
    );

    for (text, key, says) in [
        ("[limits\ntenant_rps = 5\n", "config", "TOML"),
        (
            "[limits.tenants.\"slow\"]\nrps = -1\nburst = 3\n",
            "limits.tenants.\"slow\".rps",
            "positive",
        ),
        (
            "[limits]\ntenant_rps = 5\nno_such_key = 1\n",
            "limits.no_such_key",
            "unknown field",
        ),
    ] {
        let errors = gateway.reloads("error").await;
        gateway.write(text);
        let outcome = hangup(&gateway.running).await;
        assert_eq!(outcome["level"], "ERROR", "{outcome}");
        assert_eq!(outcome["key"], key, "{outcome}");
        let error = outcome["error"].as_str().expect("error");
        assert!(error.contains(says), "{error}");
        assert!(
            gateway.reloads("error").await > errors,
            "counted as an error"
        );
        assert_tenant_limited(
            &get(&client, "sim:ok:0", "slow", None)
                .await
                .expect_err("the running limit still holds"),
        );
    }
    assert_eq!(gateway.reloads("ok").await, 0.0);

    // And a valid file applies: the same tenant, now fast.
    gateway.write("[limits.tenants.\"slow\"]\nrps = 100\nburst = 100\n");
    let outcome = hangup(&gateway.running).await;
    assert_eq!(outcome["level"], "INFO", "{outcome}");
    assert!(gateway.reloads("ok").await >= 1.0);
    get(&client, "sim:ok:0", "slow", None)
        .await
        .expect("the new limit holds");
}

// ---- keys ----

fn keys_file(keys: &[(&str, &str)]) -> String {
    let mut toml = "[auth]\nmode = \"api_key\"\n".to_owned();
    for (name, key) in keys {
        toml.push_str(&format!(
            "[[auth.keys]]\nname = \"{name}\"\nsha256 = \"{}\"\ntenants = [\"*\"]\n",
            cams_flows::auth::hash_key(key)
        ));
    }
    toml
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_added_by_a_reload_is_accepted_and_a_key_removed_is_refused() {
    let gateway = Gateway::start(&keys_file(&[("first", "key-first-0123456789")]), &[]);
    let client = gateway.client().await;
    let call = |key: &'static str| get(&client, "sim:ok:0", "cams-kei1", Some(key));
    call("key-first-0123456789").await.expect("the first key");
    let refused = call("key-second-0123456789").await.expect_err("not yet");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");

    gateway.write(&keys_file(&[("second", "key-second-0123456789")]));
    let outcome = hangup(&gateway.running).await;
    assert_eq!(outcome["level"], "INFO", "{outcome}");
    call("key-second-0123456789").await.expect("the added key");
    let refused = call("key-first-0123456789")
        .await
        .expect_err("the removed key");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");

    // Another mode needs a restart: a file that changes it is refused whole, rather than its
    // keys (none, for mode none) applied under the running api_key mode, refusing everyone.
    let errors = gateway.reloads("error").await;
    gateway.write("[auth]\nmode = \"none\"\n");
    let outcome = hangup(&gateway.running).await;
    assert_eq!(outcome["level"], "ERROR", "{outcome}");
    assert_eq!(outcome["key"], "auth.mode", "{outcome}");
    assert!(
        gateway.reloads("error").await > errors,
        "counted as an error"
    );
    call("key-second-0123456789")
        .await
        .expect("the running keys stay");
    let refused = call("key-first-0123456789")
        .await
        .expect_err("still api_key mode");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
}

// ---- cache ----

/// How a call that must succeed was served.
async fn served(client: &FlowServiceClient<Channel>, flow: &str) -> String {
    get(client, flow, "cams-kei1", None)
        .await
        .unwrap_or_else(|status| panic!("{flow}: {status:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_ttl_change_reaches_new_entries_through_the_file_change_poll() {
    const LONG: &str = "[cache]\nttl_ms = 120000\nttl_jitter_percent = 0\n";
    const SHORT: &str = "[cache]\nttl_ms = 1000\nttl_jitter_percent = 0\n";
    let gateway = Gateway::start(LONG, &[]);
    let client = gateway.client().await;
    for expected in ["miss", "hit"] {
        assert_eq!(served(&client, "sim:ok:1").await, expected);
    }

    // No SIGHUP: the poll sees the file replaced.
    gateway.write(SHORT);
    let outcome = wait::until(
        PATIENCE,
        "a reload on the file change",
        || async { outcomes(&gateway.running, "file change") },
        |lines| !lines.is_empty(),
    )
    .await
    .pop()
    .expect("an outcome");
    assert_eq!(outcome["level"], "INFO", "{outcome}");

    for expected in ["miss", "hit"] {
        assert_eq!(served(&client, "sim:ok:2").await, expected);
    }
    // The new entry ends a second after it was kept...
    wait::until_every(
        Duration::from_millis(200),
        PATIENCE,
        "the entry kept under the new TTL to expire",
        || served(&client, "sim:ok:2"),
        |served| served == "miss",
    )
    .await;
    // ...and the one kept before the reload keeps its two minutes.
    assert_eq!(served(&client, "sim:ok:1").await, "hit");
}

// ---- replicas ----

/// The account settings each replica published in Redis (GetFlow's log): `n:lease:seen` by
/// replica.
fn published(redis: &RedisServer) -> Vec<String> {
    let keys: Vec<String> = redis
        .cmd(&["KEYS", "*:settings"])
        .items()
        .unwrap_or_default()
        .iter()
        .filter_map(|k| k.text())
        .collect();
    assert_eq!(keys.len(), 1, "GetFlow's settings: {keys:?}");
    redis
        .cmd(&["HGETALL", &keys[0]])
        .fields()
        .into_iter()
        .map(|(_, value)| value)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_reloaded_one_after_the_other_converge_on_the_published_settings() {
    let redis = RedisServer::start();
    let (_sandbox, endpoint) = sandbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut replicas = Vec::new();
    for name in ["a", "b"] {
        let file = dir.path().join(format!("{name}.toml"));
        replace(&file, "[limits]\naccount_rps = 5\n");
        let file = file.display().to_string();
        let replica = Replica::start(
            &endpoint,
            &[
                ("CAMS_FLOWS_REDIS_URL", &redis.url()),
                ("CAMS_FLOWS_CONFIG", &file),
            ],
        )
        .await;
        replicas.push((replica, file));
    }
    let flows = std::sync::atomic::AtomicU32::new(0);
    // A flow never asked for: a miss, which takes a slot and publishes the replica's settings.
    let miss_through = async |replica: &Replica| {
        let flow = format!("sim:ok:converge-{}", flows.fetch_add(1, Ordering::Relaxed));
        replica.get_eventually(&flow, "converge").await
    };
    for (replica, _) in &replicas {
        miss_through(replica).await;
    }
    assert!(
        published(&redis).iter().all(|s| s.starts_with("5:")),
        "{:?}",
        published(&redis)
    );

    // a first: b, still at 5, is told that it differs.
    let [(a, a_file), (b, b_file)] = &replicas[..] else {
        unreachable!()
    };
    replace(std::path::Path::new(a_file), "[limits]\naccount_rps = 3\n");
    assert_eq!(hangup(&a.process).await["level"], "INFO");
    miss_through(a).await;
    miss_through(b).await;
    logged_more(&b.process, "settings differ from another replica's", 0).await;

    // Then b: both publish 3, and b says that they agree again.
    replace(std::path::Path::new(b_file), "[limits]\naccount_rps = 3\n");
    assert_eq!(hangup(&b.process).await["level"], "INFO");
    miss_through(b).await;
    logged_more(&b.process, "settings agree again", 0).await;
    miss_through(a).await;
    let settings = published(&redis);
    assert_eq!(settings.len(), 2, "{settings:?}");
    assert!(
        settings.iter().all(|s| s.starts_with("3:")),
        "every replica publishes the reloaded quota: {settings:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_limit_shared_through_redis_follows_the_reload() {
    let redis = RedisServer::start();
    let (_sandbox, endpoint) = sandbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("cams-flows.toml");
    let limit = |rps: &str, burst: u32| {
        replace(
            &file,
            &format!("[limits.tenants.\"shared\"]\nrps = {rps}\nburst = {burst}\n"),
        );
    };
    limit("0.05", 2);
    let replica = Replica::start(
        &endpoint,
        &[
            ("CAMS_FLOWS_REDIS_URL", &redis.url()),
            ("CAMS_FLOWS_CONFIG", &file.display().to_string()),
        ],
    )
    .await;
    // Past the quiet period of a fresh Redis, through another tenant.
    replica.get_eventually("sim:ok:0", "warm").await;
    let call = || replica.get("sim:ok:0", "shared", Duration::from_secs(5));
    for _ in 0..2 {
        call().await.expect("within the burst");
    }
    assert_tenant_limited(&call().await.expect_err("spent: one call every 20 s"));

    // Raised: the state in Redis, left 40 s ahead by the old quota, counts as a spent burst of
    // the new one, which refills at 100 calls/s: the old quota would serve none in a second.
    limit("100", 100);
    assert_eq!(hangup(&replica.process).await["level"], "INFO");
    let (start, mut served) = (tokio::time::Instant::now(), 0);
    while start.elapsed() < Duration::from_secs(1) {
        match call().await {
            Ok(()) => served += 1,
            Err(status) => assert_tenant_limited(&status),
        }
    }
    assert!(
        served >= 20,
        "{served} calls served in the second after the reload"
    );

    // Lowered again: what was spent under the raised quota counts under the new one.
    limit("0.05", 1);
    assert_eq!(hangup(&replica.process).await["level"], "INFO");
    let mut served = 0;
    for _ in 0..3 {
        match call().await {
            Ok(()) => served += 1,
            Err(status) => assert_tenant_limited(&status),
        }
    }
    assert!(served <= 1, "{served} of 3 calls served under a burst of 1");
}
