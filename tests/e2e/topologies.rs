//! The Redis topologies the gateway's tests run on, checked through a plain Redis client (the
//! `redis` crate, as the gateway uses it): what a test of the gateway takes for granted when it
//! kills a primary, fails a shard over or freezes a connection. Sentinel (one primary, its replica,
//! three Sentinels), Cluster (three shards of two nodes), a proxy that freezes, retargets or cuts
//! connections, and a standalone Redis run with options.

use std::time::{Duration, Instant};

use redis::{Commands, Connection, ErrorKind, ServerErrorKind};

use crate::support::{
    cluster::RedisCluster,
    poll,
    proxy::Proxy,
    redis::{RedisOptions, RedisServer},
    sentinel::SentinelSet,
};

/// A client's read timeout for the commands of these tests: long enough for a loaded host,
/// short enough that a connection that never answers costs little.
const CLIENT_TIMEOUT: Duration = Duration::from_millis(500);

/// A plain blocking connection to "127.0.0.1:port".
fn connect(addr: &str) -> Connection {
    try_connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"))
}

fn try_connect(addr: &str) -> redis::RedisResult<Connection> {
    let client = redis::Client::open(format!("redis://{addr}"))?;
    let connection = client.get_connection_with_timeout(Duration::from_secs(2))?;
    connection.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    Ok(connection)
}

/// What `SENTINEL get-master-addr-by-name` says, through the client.
fn named_primary(sentinel: &str, name: &str) -> String {
    let (ip, port): (String, u16) = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(name)
        .query(&mut connect(sentinel))
        .unwrap_or_else(|e| panic!("asking {sentinel} for the primary: {e}"));
    format!("{ip}:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_name_the_primary_and_promote_its_replica_when_it_is_killed() {
    let mut set = SentinelSet::start();
    let old = set.primary_addr();
    let replica = set.replicas()[0].addr();
    for sentinel in set.sentinel_addrs() {
        assert_eq!(named_primary(&sentinel, set.master_name()), old);
    }
    let mut primary = connect(&old);
    let () = primary
        .set("written-before", "kept")
        .expect("SET on the primary");
    // Acknowledged by the replica, so that the promotion cannot lose it.
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(2000)
        .query(&mut primary)
        .expect("WAIT");
    assert_eq!(acked, 1, "the replica acknowledged the write");

    let killed = Instant::now();
    set.kill_primary();
    let promoted = set.wait_for_failover(set.detection_time()).await;
    let took = killed.elapsed();
    eprintln!("sentinel failover after SIGKILL: {took:?}");
    assert_eq!(promoted, replica, "the only replica is promoted");
    assert_eq!(set.primary_addr(), promoted);
    for sentinel in set.sentinel_addrs() {
        assert_eq!(named_primary(&sentinel, set.master_name()), promoted);
    }
    let mut new_primary = connect(&promoted);
    let kept: String = new_primary.get("written-before").expect("GET");
    assert_eq!(kept, "kept");
    let () = new_primary
        .set("written-after", "accepted")
        .expect("the promoted replica takes writes");

    // The old primary comes back empty as a replica of the new one, and catches up.
    set.restart_killed_as_replicas(Duration::from_secs(10))
        .await;
    assert_eq!(
        set.replicas()[0].role(),
        "slave",
        "the old primary is a replica now"
    );
    let caught_up = poll::until(
        Duration::from_secs(5),
        "the old primary to replicate the new one's data",
        move || {
            let value: Option<String> = try_connect(&old)
                .and_then(|mut c| c.get("written-after"))
                .map_err(|e| e.to_string())?;
            value.ok_or_else(|| "not yet".to_owned())
        },
    )
    .await;
    assert_eq!(caught_up, "accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_sentinel_failover_fences_the_old_primary() {
    let mut set = SentinelSet::start();
    let old = set.primary_addr();
    let mut old_primary = connect(&old);
    let () = old_primary.set("k", "v").expect("SET on the primary");

    let promoted = set.failover(Duration::from_secs(10)).await;
    assert_ne!(promoted, old);
    let () = connect(&promoted)
        .set("k", "on the new primary")
        .expect("the promoted replica takes writes");
    // Fenced by min-replicas-to-write: its replica left, so it refuses writes until the
    // Sentinels turn it into a replica (then it closes its clients' connections: a reconnect
    // is answered as a replica would, READONLY).
    let refused = connect(&old)
        .set::<_, _, ()>("k", "on the old primary")
        .expect_err("the old primary refuses writes");
    assert!(
        matches!(refused.code(), Some("NOREPLICAS") | Some("READONLY")),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_serves_every_slot_and_keeps_a_key_across_a_planned_failover() {
    let cluster = RedisCluster::start();
    assert_eq!(cluster.nodes().len(), 6);
    assert_eq!(cluster.masters().len(), 3);
    for node in cluster.nodes() {
        let info: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query(&mut connect(&node))
            .expect("CLUSTER INFO");
        assert!(info.contains("cluster_state:ok"), "{node}: {info}");
        assert!(info.contains("cluster_slots_ok:16384"), "{node}: {info}");
    }

    let key = "{acct:0123456789abcdef}:quota";
    let master = cluster.master_of(key);
    let () = connect(&master)
        .set(key, "before")
        .expect("SET on the key's master");
    // Any other master redirects to it: master_of names the node a cluster client must use.
    let other = cluster
        .masters()
        .into_iter()
        .find(|m| *m != master)
        .expect("another master");
    let moved = connect(&other)
        .get::<_, String>(key)
        .expect_err("another master redirects");
    assert_eq!(moved.kind(), ErrorKind::Server(ServerErrorKind::Moved));
    assert_eq!(
        moved.redirect_node().map(|(addr, _)| addr.to_owned()),
        Some(master.clone())
    );

    let promoted = cluster.failover_shard_of(key).await;
    assert_ne!(promoted, master);
    assert_eq!(cluster.master_of(key), promoted);
    let kept: String = connect(&promoted).get(key).expect("GET on the new master");
    assert_eq!(kept, "before");
    let moved = connect(&master)
        .get::<_, String>(key)
        .expect_err("the old master redirects");
    assert_eq!(
        moved.redirect_node().map(|(addr, _)| addr.to_owned()),
        Some(promoted)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_cluster_master_promotes_its_replica_within_the_bound() {
    let mut cluster = RedisCluster::start();
    let key = "{acct:fedcba9876543210}:quota";
    let master = cluster.master_of(key);
    let replica = cluster.replicas_of(&master)[0].clone();
    let mut connection = connect(&master);
    let () = connection.set(key, "before").expect("SET");
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(2000)
        .query(&mut connection)
        .expect("WAIT");
    assert_eq!(acked, 1, "the replica acknowledged the write");

    let killed = Instant::now();
    let promoted = cluster.kill_master_of(key).await;
    eprintln!("cluster promotion after SIGKILL: {:?}", killed.elapsed());
    assert_eq!(promoted, replica);
    let kept: String = connect(&promoted).get(key).expect("GET on the new master");
    assert_eq!(kept, "before");

    // The killed node comes back (a rescheduled pod with its nodes.conf) as a replica.
    cluster.restart_node(&master).await;
    assert_eq!(cluster.replicas_of(&promoted), vec![master]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_cluster_master_is_replaced_and_rejoins_as_a_replica_once_thawed() {
    let cluster = RedisCluster::start();
    let key = "{acct:00000000000000ff}:quota";
    let master = cluster.master_of(key);
    let replica = cluster.replicas_of(&master)[0].clone();
    let mut held = connect(&master);
    let () = held.set(key, "before").expect("SET");

    let promoted = cluster.freeze_master_of(key).await;
    assert_eq!(promoted, replica);
    let unanswered = held
        .get::<_, String>(key)
        .expect_err("a frozen node answers nothing");
    assert!(unanswered.is_timeout(), "{unanswered:?}");
    let () = connect(&promoted)
        .set(key, "after")
        .expect("the promoted replica takes writes");

    cluster.node(&master).freeze(false);
    cluster.wait_healthy(Duration::from_secs(10)).await;
    assert_eq!(cluster.replicas_of(&promoted), vec![master.clone()]);
    assert_eq!(cluster.master_of(key), promoted);
}

#[tokio::test]
async fn a_frozen_proxy_leaves_open_connections_unanswered_and_relays_new_ones() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis.addr());
    let mut before = connect(&proxy.addr());
    let pong: String = redis::cmd("PING").query(&mut before).expect("PING through");
    assert_eq!(pong, "PONG");

    proxy.freeze();
    let asked = Instant::now();
    let unanswered = redis::cmd("PING")
        .query::<String>(&mut before)
        .expect_err("a frozen connection does not answer");
    assert!(unanswered.is_timeout(), "{unanswered:?}");
    assert!(asked.elapsed() >= CLIENT_TIMEOUT);

    let mut after = connect(&proxy.addr());
    let pong: String = redis::cmd("PING").query(&mut after).expect("PING through");
    assert_eq!(pong, "PONG");
    assert_eq!(proxy.accepted(), 2);
    assert_eq!(proxy.open(), 2, "the frozen connection stays open");
}

#[tokio::test]
async fn retarget_sends_new_connections_to_the_other_server() {
    let (first, second) = (RedisServer::start(), RedisServer::start());
    let () = connect(&first.addr()).set("who", "first").expect("SET");
    let () = connect(&second.addr()).set("who", "second").expect("SET");
    let proxy = Proxy::start(&first.addr());
    let mut old = connect(&proxy.addr());
    assert_eq!(old.get::<_, String>("who").expect("GET"), "first");

    proxy.retarget(&second.addr());
    let mut new = connect(&proxy.addr());
    assert_eq!(new.get::<_, String>("who").expect("GET"), "second");
    assert_eq!(
        old.get::<_, String>("who").expect("GET"),
        "first",
        "an open connection keeps its target"
    );
}

#[tokio::test]
async fn cut_resets_open_connections_and_relays_new_ones() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(&redis.addr());
    let mut before = connect(&proxy.addr());
    let _: String = redis::cmd("PING").query(&mut before).expect("PING through");

    proxy.cut();
    assert_eq!(proxy.open(), 0);
    let dropped = redis::cmd("PING")
        .query::<String>(&mut before)
        .expect_err("a cut connection is gone");
    assert!(
        dropped.is_connection_dropped() && !dropped.is_timeout(),
        "{dropped:?}"
    );
    let mut after = connect(&proxy.addr());
    let pong: String = redis::cmd("PING").query(&mut after).expect("PING through");
    assert_eq!(pong, "PONG");
}

#[tokio::test]
async fn options_set_the_memory_limit_and_its_policy() {
    let value = "x".repeat(64 * 1024);
    let redis = RedisServer::start_with(
        RedisOptions::default()
            .maxmemory("2mb")
            .maxmemory_policy("allkeys-lru"),
    );
    let mut connection = connect(&redis.addr());
    for i in 0..64 {
        let () = connection
            .set(format!("k{i}"), &value)
            .expect("a Redis under allkeys-lru evicts to take a write");
    }
    let keys: usize = redis::cmd("DBSIZE").query(&mut connection).expect("DBSIZE");
    assert!(keys < 64, "some keys were evicted: {keys} left");
    assert_ne!(redis.info("stats")["evicted_keys"], "0");

    redis.config_set("maxmemory-policy", "noeviction");
    let refused = (64..128)
        .find_map(|i| connection.set::<_, _, ()>(format!("k{i}"), &value).err())
        .expect("a full Redis under noeviction refuses writes");
    assert_eq!(refused.code(), Some("OOM"), "{refused:?}");
    redis.flushall();
    let () = connection
        .set("k", &value)
        .expect("an emptied Redis takes writes again");
}
