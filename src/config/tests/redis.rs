//! `[redis]`: the three topologies, each written in every layer, and the mistakes a mixed-up
//! section makes named with their key.

use secrecy::ExposeSecret;

use super::{load, load_with_file};
use crate::store::Topology;

#[test]
fn each_mode_from_the_environment_with_lists_separated_by_commas() {
    let sentinel = load(
        &["--sandbox"],
        &[
            ("CAMS_FLOWS_REDIS_MODE", "sentinel"),
            (
                "CAMS_FLOWS_REDIS_SENTINELS",
                "10.0.0.1:26379, 10.0.0.2:26379,redis://10.0.0.3:26379",
            ),
            ("CAMS_FLOWS_REDIS_MASTER_NAME", "cams"),
            ("CAMS_FLOWS_REDIS_SENTINEL_PASSWORD", "s3cret"),
            ("CAMS_FLOWS_REDIS_PASSWORD", "data-secret"),
        ],
    )
    .expect("sentinel mode");
    let redis = sentinel.redis.expect("a Redis");
    match &redis.topology {
        Topology::Sentinel {
            sentinels,
            master_name,
            sentinel_password,
        } => {
            assert_eq!(
                sentinels,
                &["10.0.0.1:26379", "10.0.0.2:26379", "redis://10.0.0.3:26379"]
            );
            assert_eq!(master_name, "cams");
            assert_eq!(
                sentinel_password.as_ref().map(|p| p.expose_secret()),
                Some("s3cret")
            );
        }
        other => panic!("not sentinel: {}", other.mode()),
    }
    assert_eq!(
        redis.password.as_ref().map(|p| p.expose_secret()),
        Some("data-secret")
    );
    // The cache shares the state's Redis, topology and all.
    assert_eq!(sentinel.cache_redis.as_ref(), Some(&redis));

    let cluster = load(
        &[
            "--sandbox",
            "--redis-mode",
            "cluster",
            "--redis-nodes",
            "a:7000,b:7001",
        ],
        &[],
    )
    .expect("cluster mode");
    match cluster.redis.expect("a Redis").topology {
        Topology::Cluster { nodes } => assert_eq!(nodes, ["a:7000", "b:7001"]),
        other => panic!("not cluster: {}", other.mode()),
    }
}

#[test]
fn lists_are_arrays_in_the_file() {
    let config = load_with_file(
        "[redis]\nmode = \"cluster\"\nnodes = [\"127.0.0.1:7000\", \"127.0.0.1:7001\"]\n",
        &["--sandbox"],
        &[],
    )
    .expect("cluster from the file");
    assert_eq!(config.redis.expect("a Redis").topology.mode(), "cluster");
}

#[test]
fn a_mixed_up_section_names_the_key_at_fault() {
    let problem = |argv: &[&str]| {
        let mut all = vec!["--sandbox"];
        all.extend_from_slice(argv);
        let error = load(&all, &[]).expect_err("refused");
        (error.key, error.problem)
    };
    let (key, why) = problem(&["--redis-mode", "sentinel", "--redis-sentinels", "a:1"]);
    assert_eq!(key, "redis.master_name");
    assert!(why.contains("not set"), "{why}");
    let (key, why) = problem(&["--redis-mode", "sentinel", "--redis-master-name", "m"]);
    assert_eq!(key, "redis.sentinels");
    assert!(why.contains("at least one"), "{why}");
    let (key, _) = problem(&[
        "--redis-mode",
        "cluster",
        "--redis-nodes",
        "a:1",
        "--redis-url",
        "redis://x:6379",
    ]);
    assert_eq!(key, "redis.url");
    let (key, why) = problem(&["--redis-sentinels", "a:1"]);
    assert_eq!(key, "redis.sentinels");
    assert!(why.contains("redis.mode"), "{why}");
    let (key, _) = problem(&["--redis-mode", "cluster", "--redis-nodes", "a:1,nohost"]);
    assert_eq!(key, "redis.nodes[1]");
    let (key, _) = problem(&["--redis-mode", "bogus"]);
    assert_eq!(key, "redis.mode");
}

#[test]
fn standalone_stays_as_it_was_and_the_cache_may_have_its_own() {
    let config = load(
        &[
            "--sandbox",
            "--redis-mode",
            "sentinel",
            "--redis-sentinels",
            "s:26379",
            "--redis-master-name",
            "m",
            "--cache-redis-url",
            "redis://cache:6379",
        ],
        &[],
    )
    .expect("a cache of its own beside a sentinel-watched state");
    assert_eq!(config.redis.expect("state").topology.mode(), "sentinel");
    assert_eq!(
        config.cache_redis.expect("cache").topology.mode(),
        "standalone"
    );
    let plain = load(&["--sandbox", "--redis-url", "redis://r:6379"], &[]).expect("standalone");
    assert_eq!(plain.redis.expect("state").topology.mode(), "standalone");
}
