//! One behavioural suite for every slot store of the account quota: the in-process slots and the
//! lease log in a real Redis pass the same tests, in real time, through the same gate.

use std::{sync::Arc, time::Duration};

use cams_flows::{
    limits::{
        AccountGate, AccountLimits, AccountQuota, AccountRejection, Claim, Class, Lease,
        LocalSlots, Party, RedisSlots, RejectionCause, SlotStore, Weights,
    },
    store::{Redis, RedisConfig, account_tag},
};
use tokio::time::Instant;

use crate::support::{redis::RedisServer, wait};

const WINDOW: Duration = Duration::from_millis(300);
const RPS: u32 = 3;

/// A gate in front of `store`, its dispatcher running.
fn gate(store: Arc<dyn SlotStore>) -> Arc<AccountGate> {
    let gate = AccountGate::new(
        AccountLimits {
            rps: RPS,
            window: WINDOW,
            max_wait: Duration::from_secs(30),
            max_queue: 1000,
        },
        Weights::default(),
        store,
    );
    tokio::spawn(gate.dispatcher());
    Arc::new(gate)
}

async fn ask(gate: &AccountGate, deadline: Instant) -> Result<Lease, AccountRejection> {
    let party = Party {
        caller: Arc::from("anonymous"),
        tenant: cams_flows::domain::TenantId::own_space(),
    };
    gate.acquire(Claim {
        party: &party,
        class: Class::Caller,
        deadline,
    })
    .await
}

/// The stores under test: in-process slots, and a lease log in a fresh Redis whose first-use
/// quiet period (every lease that might have been lost must end) has passed.
async fn stores(redis: &RedisServer) -> Vec<(&'static str, Arc<dyn SlotStore>)> {
    let [shared] = replicas(redis).await;
    vec![
        ("local", Arc::new(LocalSlots::new(RPS, WINDOW))),
        ("redis", Arc::new(shared)),
    ]
}

/// `N` replicas' lease logs of one account in `redis` (a fresh key prefix), past the first-use
/// quiet period.
async fn replicas<const N: usize>(redis: &RedisServer) -> [RedisSlots; N] {
    let prefix = format!("suite-{}", uuid::Uuid::new_v4().simple());
    let call_bound = Duration::from_millis(100);
    let stores = std::array::from_fn(|_| {
        let client =
            Redis::new(&RedisConfig::standalone(redis.url(), prefix.clone())).expect("client");
        RedisSlots::new(client, &account_tag("suite"), RPS, WINDOW, call_bound)
            .with_delivery_margin(call_bound, Duration::from_millis(200))
    });
    let first = &stores[0];
    let quiet = first.lease() + WINDOW;
    let probe = gate(Arc::new(first.clone()));
    // The first ask starts the quiet period; after it, the store admits.
    let _ = ask(&probe, Instant::now() + Duration::from_millis(50)).await;
    // pacing: the quiet period is a span of wall-clock time from that first ask.
    tokio::time::sleep(quiet).await;
    stores
}

/// All `RPS` slots at once, held by the caller.
async fn take_every_slot(gate: &AccountGate, deadline: Instant) -> Vec<Lease> {
    futures_util::future::join_all((0..RPS).map(|_| ask(gate, deadline)))
        .await
        .into_iter()
        .map(|l| l.expect("a slot"))
        .collect()
}

/// No `RPS + 1` of `starts` lie within one window.
fn assert_sliding_bound(name: &str, starts: &mut [Instant]) {
    starts.sort();
    for pair in starts.windows(RPS as usize + 1) {
        let span = pair[RPS as usize] - pair[0];
        assert!(span >= WINDOW, "{name}: {} starts within {span:?}", RPS + 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_slot_store_keeps_the_strict_sliding_bound() {
    let redis = RedisServer::start();
    for (name, store) in stores(&redis).await {
        let gate = gate(store);
        let far = Instant::now() + Duration::from_secs(30);
        let mut calls = Vec::new();
        for i in 0..12u64 {
            let gate = Arc::clone(&gate);
            calls.push(tokio::spawn(async move {
                let lease = ask(&gate, far).await.expect("served");
                let started = Instant::now();
                // pacing: calls of varied length hold their slot while they run.
                tokio::time::sleep(Duration::from_millis(i * 17 % 50)).await;
                lease.complete().await;
                started
            }));
        }
        let mut starts = Vec::new();
        for call in calls {
            starts.push(call.await.expect("call"));
        }
        assert_sliding_bound(name, &mut starts);
        // Not needlessly slow either: 12 calls at 3 per window take about 4 windows.
        let span = *starts.last().expect("some") - starts[0];
        assert!(span < WINDOW * 6, "{name}: {span:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_slot_store_lets_a_burst_through_then_rests_the_slots() {
    let redis = RedisServer::start();
    for (name, store) in stores(&redis).await {
        let gate = gate(store);
        let far = Instant::now() + Duration::from_secs(30);
        let t0 = Instant::now();
        for _ in 0..RPS {
            ask(&gate, far).await.expect("burst").complete().await;
        }
        // Had a call of the burst waited for a slot to rest (a window), or had the store spread
        // the calls out (a window / RPS apart, as a token bucket without a burst would), the
        // burst would have taken two windows / RPS at least.
        let burst = t0.elapsed();
        assert!(burst < WINDOW * 2 / RPS, "{name}: the burst took {burst:?}");
        ask(&gate, far).await.expect("waits").complete().await;
        assert!(t0.elapsed() >= WINDOW, "{name}: the next waited a window");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_slot_store_refuses_a_call_that_cannot_be_served_in_time() {
    let redis = RedisServer::start();
    for (name, store) in stores(&redis).await {
        let gate = gate(store);
        let far = Instant::now() + Duration::from_secs(30);
        let held = take_every_slot(&gate, far).await;
        let rejection = ask(&gate, Instant::now() + Duration::from_millis(100))
            .await
            .expect_err("no slot within 100 ms");
        assert_eq!(rejection.cause, RejectionCause::WouldWaitTooLong, "{name}");
        assert!(rejection.retry_after > Duration::ZERO, "{name}");
        for lease in held {
            lease.complete().await;
        }
    }
}

/// A call given up mid-flight may still reach CAMS: its slot keeps counting (in-process for a
/// window from the abandonment, in Redis until its lease ends), never handed out at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_slot_store_keeps_counting_an_abandoned_call() {
    let redis = RedisServer::start();
    for (name, store) in stores(&redis).await {
        let gate = gate(store);
        let far = Instant::now() + Duration::from_secs(30);
        let held = take_every_slot(&gate, far).await;
        let t0 = Instant::now();
        drop(held);
        ask(&gate, far).await.expect("eventually").complete().await;
        assert!(
            t0.elapsed() >= WINDOW,
            "{name}: an abandoned slot was handed out after {:?}",
            t0.elapsed()
        );
    }
}

/// Two replicas, one flooded by many callers (each asking again as soon as its call ends), the
/// other with one quiet caller at a time: each quiet call gets one of the next slots that free,
/// not whatever the flood leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_through_one_replica_does_not_starve_another() {
    let redis = RedisServer::start();
    let [busy, quiet] = replicas(&redis).await;
    let (busy, quiet) = (gate(Arc::new(busy)), gate(Arc::new(quiet)));
    let end = Instant::now() + Duration::from_secs(4);
    let mut flood = Vec::new();
    for _ in 0..30 {
        let busy = Arc::clone(&busy);
        flood.push(tokio::spawn(async move {
            let mut served = 0u32;
            while Instant::now() < end {
                match ask(&busy, end).await {
                    Ok(lease) => {
                        // pacing: the call holds its slot while it runs.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        lease.complete().await;
                        served += 1;
                    }
                    // pacing: refused, as it would wait past the end; as a client honouring the
                    // retry hint would, if less patiently.
                    Err(rejection) => tokio::time::sleep(rejection.retry_after.min(WINDOW)).await,
                }
            }
            served
        }));
    }
    // The flood holds every slot, and its callers queue.
    wait::until(
        Duration::from_secs(5),
        "callers of the flood queued on the busy replica",
        || async { busy.queued() },
        |&queued| queued > 0,
    )
    .await;
    let mut waits = Vec::new();
    for _ in 0..5 {
        let asked = Instant::now();
        let lease = ask(&quiet, asked + Duration::from_secs(2))
            .await
            .expect("the quiet replica's call is served");
        waits.push(asked.elapsed());
        lease.complete().await;
    }
    let mut flooded = 0;
    for task in flood {
        flooded += task.await.expect("flood");
    }
    assert!(flooded >= 15, "the flood was served too: {flooded}");
    // A slot frees at least every window / RPS on average; two windows leave ample room for
    // the Redis round trips, and are far less than the flood's queue would take.
    for wait in &waits {
        assert!(*wait < WINDOW * 2, "{waits:?}");
    }
}
