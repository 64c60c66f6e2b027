//! One behavioural suite for every fetch lock: the in-process lock and the lock in a real Redis
//! pass the same tests. Two handles on one Redis stand for two replicas.

use std::{sync::Arc, time::Duration};

use cams_flows::{
    cache::lock::{FetchLock, LocalLock, Locked, RedisLock, Waited},
    domain::{FlowId, Read, TenantId},
    store::{Redis, RedisConfig, account_tag},
};
use tokio::time::Instant;

use crate::support::redis::RedisServer;

const HOLD: Duration = Duration::from_secs(5);

fn key(flow: &str) -> Read {
    Read::flow(
        TenantId::parse("t").expect("tenant"),
        FlowId::parse(flow).expect("flow"),
    )
}

/// An implementation's name and two handles on one lock, as two replicas hold them.
type Pair = (&'static str, Arc<dyn FetchLock>, Arc<dyn FetchLock>);

/// Every implementation's pair; the Redis handles listen for releases.
fn pairs(redis: &RedisServer) -> Vec<Pair> {
    let local = LocalLock::default();
    let prefix = format!("lock-{}", uuid::Uuid::new_v4().simple());
    let replica = || {
        let client =
            Redis::new(&RedisConfig::standalone(redis.url(), prefix.clone())).expect("client");
        let lock = RedisLock::new(client, &account_tag("suite"));
        tokio::spawn(lock.listen());
        lock
    };
    vec![
        ("local", Arc::new(local.clone()), Arc::new(local)),
        ("redis", Arc::new(replica()), Arc::new(replica())),
    ]
}

fn written(locked: Locked, name: &str) -> cams_flows::cache::lock::WritePermit {
    match locked {
        Locked::Write(permit) => permit,
        Locked::Read(_) => panic!("{name}: expected to get the lock"),
    }
}

fn waiting(locked: Locked, name: &str) -> cams_flows::cache::lock::Waiting {
    match locked {
        Locked::Read(waiting) => waiting,
        Locked::Write(_) => panic!("{name}: expected to wait, the lock is held"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_holder_at_a_time_and_a_release_wakes_the_waiter() {
    let redis = RedisServer::start();
    for (name, a, b) in pairs(&redis) {
        let flow = key("one-holder");
        let permit = written(a.lock(&flow, HOLD).await, name);
        let wait = waiting(b.lock(&flow, HOLD).await, name);
        // A second ask from the holder's side waits too: the lock is not re-entrant.
        let _also = waiting(a.lock(&flow, HOLD).await, name);
        let other = written(b.lock(&key("another-flow"), HOLD).await, name);
        drop(other);

        let woken = tokio::spawn(async move {
            let started = Instant::now();
            (wait.until(Instant::now() + HOLD).await, started.elapsed())
        });
        permit.release().await;
        let (waited, after) = woken.await.expect("waiter");
        assert_eq!(waited, Waited::Released, "{name}");
        // Woken by the release, well before the bound it was given.
        assert!(after < HOLD, "{name}: woke after {after:?}");
        // Released: the next ask gets it.
        let _next = written(b.lock(&flow, HOLD).await, name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permit_dropped_unreleased_lets_the_others_in() {
    let redis = RedisServer::start();
    for (name, a, b) in pairs(&redis) {
        let flow = key("abandoned");
        let permit = written(a.lock(&flow, HOLD).await, name);
        let wait = waiting(b.lock(&flow, HOLD).await, name);
        // The fetch failed (or panicked, or its task was cancelled): the permit goes unreleased.
        drop(permit);
        assert_eq!(
            wait.until(Instant::now() + HOLD).await,
            Waited::Released,
            "{name}: an abandoned fetch ends the wait before the lock's hold"
        );
        let _taken = written(b.lock(&flow, HOLD).await, name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_ends_at_its_bound_while_the_lock_is_held() {
    let redis = RedisServer::start();
    for (name, a, b) in pairs(&redis) {
        let flow = key("held");
        let _permit = written(a.lock(&flow, HOLD).await, name);
        let wait = waiting(b.lock(&flow, HOLD).await, name);
        let bound = Instant::now() + Duration::from_millis(200);
        assert_eq!(wait.until(bound).await, Waited::TimedOut, "{name}");
        assert!(Instant::now() >= bound, "{name}: not before its bound");
    }
}

/// A holder that dies without a word (its process is gone) loses the lock when its hold ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_holder_loses_the_lock_when_its_hold_ends() {
    let redis = RedisServer::start();
    // In-process, a holder cannot vanish without its process: only the shared lock has this case.
    let (name, a, b) = pairs(&redis).pop().expect("the Redis pair");
    let flow = key("vanished");
    let hold = Duration::from_millis(300);
    let permit = written(a.lock(&flow, hold).await, name);
    // The process dies: nothing it would have sent on the way out is sent.
    std::mem::forget(permit);
    let wait = waiting(b.lock(&flow, hold).await, name);
    assert_eq!(
        wait.until(Instant::now() + HOLD).await,
        Waited::Released,
        "{name}: the lock expires"
    );
    let _taken = written(b.lock(&flow, HOLD).await, name);
}
