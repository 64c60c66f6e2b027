//! The shared tier against a real `redis-server` (started here on a free loopback port; these
//! tests fail, never skip, without one): a fetch begun before a purge never leaves its answer in
//! Redis, however the steps of its put and the purge's interleave, on whichever replica.

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use arc_swap::ArcSwap;

use super::*;
use crate::{
    cache::CacheConfig,
    domain::{Answer, Flow, FlowId},
    store::RedisConfig,
};

/// A `redis-server` of the test's own, stopped when dropped.
struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let dir = tempfile::tempdir().expect("a temp dir");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is needed by these tests (Debian: apt-get install redis-server)");
        Self {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A replica's shared tier on `server`, once Redis answers.
async fn replica(server: &Server) -> RedisTier {
    let redis = Redis::new(&RedisConfig::standalone(
        format!("redis://127.0.0.1:{}/", server.port),
        "t",
    ))
    .expect("a Redis handle");
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis
        .run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "redis-server did not answer");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let keys = SharedKeys::new(&redis, "acct");
    let policy = Arc::new(ArcSwap::from_pointee(CacheConfig::default()));
    RedisTier::new(redis, keys, policy, crate::clock::system())
}

fn read() -> Read {
    Read::flow(
        TenantId::parse("t").expect("tenant"),
        FlowId::parse("f").expect("flow"),
    )
}

/// An answer fetched now, as `flow_name` then stood.
fn entry(flow_name: &str) -> CachedFlow {
    let now = SystemTime::now();
    CachedFlow {
        answer: Arc::new(Answer {
            data: Data::Flow(Flow {
                flow_id: "f".into(),
                flow_name: flow_name.into(),
                raw_status: "DRAFT".into(),
                raw_categories: Vec::new(),
                json_version: String::new(),
                data_api_version: String::new(),
                preview_url: String::new(),
                preview_url_expires: None,
                endpoint_uri: String::new(),
            }),
            request_id: "r".into(),
        }),
        fetched_at: now,
        fresh_until: now + Duration::from_secs(30),
        usable_until: now + Duration::from_secs(60),
        refresh_at: now + Duration::from_secs(30),
        demand: Arc::default(),
        began: None,
    }
}

fn name_of(entry: Option<CachedFlow>) -> Option<String> {
    match entry?.answer.data.clone() {
        Data::Flow(flow) => Some(flow.flow_name),
        _ => None,
    }
}

fn purge_of_tenant() -> Scope {
    Scope::tenant(TenantId::parse("t").expect("tenant"))
}

fn purge_of_flow() -> Scope {
    Scope {
        tenant: TenantId::parse("t").expect("tenant"),
        flows: vec![FlowId::parse("f").expect("flow")],
    }
}

#[tokio::test]
async fn a_fetch_begun_before_a_purge_leaves_nothing_in_redis_however_the_two_interleave() {
    let server = Server::start();
    let (fetcher, purger) = (replica(&server).await, replica(&server).await);

    // Indexed before the purge read the index, written after it deleted the entries: the
    // write that the index check alone would let through.
    let began = fetcher.mark().await.expect("a mark");
    let write = fetcher
        .write_of(&read(), &entry("before the edit"), began)
        .expect("a write");
    assert!(fetcher.indexed(&write).await);
    purger.purge(&purge_of_flow()).await.expect("purged");
    assert!(fetcher.written(&write).await);
    fetcher.taken_back_if_purged(write).await;
    assert_eq!(name_of(fetcher.get(&read()).await), None);

    // Indexed and written before the purge: the purge finds and deletes it.
    let began = fetcher.mark().await.expect("a mark");
    let write = fetcher
        .write_of(&read(), &entry("before the edit"), began)
        .expect("a write");
    assert!(fetcher.indexed(&write).await);
    assert!(fetcher.written(&write).await);
    purger.purge(&purge_of_tenant()).await.expect("purged");
    fetcher.taken_back_if_purged(write).await;
    assert_eq!(name_of(fetcher.get(&read()).await), None);

    // The whole put after the purge (the notice had not reached the fetcher yet): refused.
    let began = fetcher.mark().await.expect("a mark");
    purger.purge(&purge_of_flow()).await.expect("purged");
    fetcher.put(read(), entry("before the edit"), began).await;
    assert_eq!(name_of(fetcher.get(&read()).await), None);

    // A fetch begun after the purge is kept, and a later tenant-wide purge still finds it.
    let began = fetcher.mark().await.expect("a mark");
    fetcher.put(read(), entry("after the edit"), began).await;
    assert_eq!(
        name_of(purger.get(&read()).await).as_deref(),
        Some("after the edit")
    );
    assert_eq!(purger.purge(&purge_of_tenant()).await.expect("purged"), 1);
    assert_eq!(name_of(fetcher.get(&read()).await), None);
}

/// A write taken back is only the one written: an answer fetched after the purge that replaced it
/// meanwhile stays.
#[tokio::test]
async fn taking_back_a_purged_write_spares_a_newer_one() {
    let server = Server::start();
    let (old, new, purger) = (
        replica(&server).await,
        replica(&server).await,
        replica(&server).await,
    );
    let began_old = old.mark().await.expect("a mark");
    let write = old
        .write_of(&read(), &entry("before the edit"), began_old)
        .expect("a write");
    assert!(old.indexed(&write).await);
    purger.purge(&purge_of_flow()).await.expect("purged");
    assert!(old.written(&write).await);
    let began_new = new.mark().await.expect("a mark");
    new.put(read(), entry("after the edit"), began_new).await;
    old.taken_back_if_purged(write).await;
    assert_eq!(
        name_of(purger.get(&read()).await).as_deref(),
        Some("after the edit")
    );
}
