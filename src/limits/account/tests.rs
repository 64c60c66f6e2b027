//! The gate over in-process slots: the strict sliding bound, bursts, refusals, the bounded
//! queue and the order in which waiting tenants are served, on Tokio's paused clock.

use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::*;
use crate::domain::TenantId;

/// A gate over in-process slots, its dispatcher running.
fn gate(rps: u32, max_wait_ms: u64, max_queue: usize) -> AccountGate {
    let window = Duration::from_secs(1);
    let gate = AccountGate::new(
        AccountLimits {
            rps,
            window,
            max_wait: Duration::from_millis(max_wait_ms),
            max_queue,
        },
        Weights::default(),
        Arc::new(LocalSlots::new(rps, window)),
    );
    tokio::spawn(gate.dispatcher());
    gate
}

fn party(tenant: &str) -> Party {
    Party {
        caller: Arc::from("anonymous"),
        tenant: TenantId::parse(tenant).expect("valid"),
    }
}

/// A caller's call for `tenant`, waiting until `deadline` at most.
async fn ask(
    gate: &AccountGate,
    tenant: &str,
    deadline: Instant,
) -> Result<Lease, AccountRejection> {
    let party = party(tenant);
    gate.acquire(Claim {
        party: &party,
        class: Class::Caller,
        deadline,
    })
    .await
}

/// Lets spawned callers run until `n` of them wait (bounded, so a wrong count fails).
async fn wait_queued(gate: &AccountGate, n: usize) {
    for _ in 0..10_000 {
        if gate.queued() >= n {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("{} callers queued, expected {n}", gate.queued());
}

/// A very high quota costs nothing up front: the store remembers only the slots that calls
/// have used, and those used slots are the ones it hands out last.
#[tokio::test(start_paused = true)]
async fn memory_follows_use_not_the_quota() {
    let slots = LocalSlots::new(1_000_000, Duration::from_secs(1));
    let gate = AccountGate::new(
        AccountLimits {
            rps: 1_000_000,
            window: Duration::from_secs(1),
            max_wait: Duration::ZERO,
            max_queue: 10,
        },
        Weights::default(),
        Arc::new(slots.clone()),
    );
    let far = Instant::now() + Duration::from_secs(5);
    let leases: Vec<_> = futures_util::future::join_all((0..3).map(|_| ask(&gate, "t", far)))
        .await
        .into_iter()
        .map(|p| p.expect("a slot is free"))
        .collect();
    assert_eq!(slots.remembered(), 0);
    for lease in leases {
        lease.complete().await;
    }
    assert_eq!(slots.remembered(), 3, "only used slots are kept");
    // The next call gets a never-used slot at once rather than a resting one.
    let _next = ask(&gate, "t", far).await.expect("an unused slot");
    assert_eq!(slots.remembered(), 3);
}

/// No more than `n` of `starts` lie in any window of one second.
fn assert_sliding_bound(starts: &mut [Instant], n: usize) {
    starts.sort();
    for pair in starts.windows(n + 1) {
        let span = pair[n] - pair[0];
        assert!(
            span >= Duration::from_secs(1),
            "{} starts within {span:?}",
            n + 1
        );
    }
}

#[tokio::test(start_paused = true)]
async fn strict_sliding_second_under_pressure() {
    let gate = Arc::new(gate(5, 60_000, 10_000));
    let far = Instant::now() + Duration::from_secs(3600);
    let mut tasks = Vec::new();
    for i in 0..60u64 {
        let gate = Arc::clone(&gate);
        tasks.push(tokio::spawn(async move {
            let lease = ask(&gate, "t", far).await.expect("waits");
            let started = Instant::now();
            // Calls of varied length hold their slot while they run.
            tokio::time::sleep(Duration::from_millis(i * 37 % 300)).await;
            lease.complete().await;
            started
        }));
    }
    let mut starts = Vec::new();
    for t in tasks {
        starts.push(t.await.expect("task"));
    }
    assert_eq!(starts.len(), 60);
    assert_sliding_bound(&mut starts, 5);
    // And the gate is not needlessly slow: 60 calls at 5 per second take ~12 s, plus call time.
    let span = *starts.last().expect("some") - starts[0];
    assert!(span < Duration::from_secs(14), "{span:?}");
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_rps_goes_at_once_then_waits_a_window() {
    let gate = gate(5, 5_000, 100);
    let far = Instant::now() + Duration::from_secs(60);
    let t0 = Instant::now();
    for _ in 0..5 {
        ask(&gate, "a", far).await.expect("burst").complete().await;
    }
    assert_eq!(Instant::now(), t0, "the first five do not wait");
    ask(&gate, "a", far)
        .await
        .expect("sixth waits")
        .complete()
        .await;
    assert_eq!(Instant::now() - t0, Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn refuses_at_once_when_the_deadline_is_too_close() {
    let gate = gate(1, 5_000, 100);
    let lease = ask(&gate, "a", Instant::now() + Duration::from_secs(10))
        .await
        .expect("first");
    drop(lease);
    let t0 = Instant::now();
    let rejection = ask(&gate, "a", Instant::now() + Duration::from_millis(300))
        .await
        .expect_err("slot rests for a second");
    assert_eq!(Instant::now(), t0, "refused without waiting");
    assert_eq!(rejection.cause, RejectionCause::WouldWaitTooLong);
    assert_eq!(rejection.retry_after, Duration::from_secs(1));

    // max_wait bounds the wait even with a distant deadline.
    let gate2 = self::gate(1, 200, 100);
    drop(
        ask(&gate2, "a", t0 + Duration::from_secs(60))
            .await
            .expect("first"),
    );
    let rejection = ask(&gate2, "a", t0 + Duration::from_secs(60))
        .await
        .expect_err("max_wait");
    assert_eq!(rejection.cause, RejectionCause::WouldWaitTooLong);
}

#[tokio::test(start_paused = true)]
async fn bounded_queue() {
    let gate = Arc::new(gate(1, 60_000, 3));
    let far = Instant::now() + Duration::from_secs(60);
    let held = ask(&gate, "a", far).await.expect("first");
    let mut waiting = Vec::new();
    for _ in 0..3 {
        let gate = Arc::clone(&gate);
        waiting.push(tokio::spawn(
            async move { ask(&gate, "a", far).await.map(drop) },
        ));
    }
    wait_queued(&gate, 3).await;
    let rejection = ask(&gate, "b", far).await.expect_err("full");
    assert_eq!(rejection.cause, RejectionCause::QueueFull);
    // Tenant b has used nothing, so it goes before a's waiting calls: it would start when the
    // held slot has rested, a window from now at the earliest.
    assert_eq!(rejection.retry_after, Duration::from_secs(1));
    drop(held);
    for w in waiting {
        w.await.expect("task").expect("served in time");
    }
    assert_eq!(gate.queued(), 0);
}

#[tokio::test(start_paused = true)]
async fn waiting_tenants_are_served_in_turn() {
    let gate = Arc::new(gate(1, 120_000, 1000));
    let far = Instant::now() + Duration::from_secs(120);
    let held = ask(&gate, "noisy", far).await.expect("first");
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    let mut enqueue = |name: &'static str| {
        let gate = Arc::clone(&gate);
        let order = Arc::clone(&order);
        tasks.push(tokio::spawn(async move {
            let lease = ask(&gate, name, far).await.expect("served");
            order.lock().expect("lock").push(name);
            lease.complete().await;
        }));
    };
    for _ in 0..10 {
        enqueue("noisy");
    }
    enqueue("quiet");
    wait_queued(&gate, 11).await;
    drop(held);
    for t in tasks {
        t.await.expect("task");
    }
    let order = order.lock().expect("lock").clone();
    let quiet_at = order
        .iter()
        .position(|n| *n == "quiet")
        .expect("quiet served");
    assert!(
        quiet_at <= 1,
        "quiet tenant served at position {quiet_at}: {order:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_quiet_tenant_is_not_refused_for_a_noisy_queue() {
    let gate = Arc::new(gate(1, 60_000, 1000));
    let far = Instant::now() + Duration::from_secs(60);
    let held = ask(&gate, "noisy", far).await.expect("first");
    let mut noisy = Vec::new();
    for _ in 0..5 {
        let gate = Arc::clone(&gate);
        noisy.push(tokio::spawn(async move {
            ask(&gate, "noisy", far).await.map(drop)
        }));
    }
    wait_queued(&gate, 5).await;
    // In arrival order the quiet call would start after ~6 s; in turn it starts after ~2 s,
    // so a 2.5 s deadline is enough and the call is not refused.
    let t0 = Instant::now();
    let quiet = {
        let gate = Arc::clone(&gate);
        tokio::spawn(async move {
            ask(&gate, "quiet", t0 + Duration::from_millis(2_500))
                .await
                .map(drop)
        })
    };
    wait_queued(&gate, 6).await;
    drop(held);
    quiet.await.expect("task").expect("quiet served in turn");
    assert!(Instant::now() - t0 <= Duration::from_secs(2));
    for n in noisy {
        n.await.expect("task").expect("noisy served later");
    }
}

#[tokio::test(start_paused = true)]
async fn a_waiter_that_gives_up_leaves_the_queue() {
    let gate = Arc::new(gate(1, 60_000, 10));
    let held = ask(&gate, "a", Instant::now() + Duration::from_secs(60))
        .await
        .expect("first");
    let short = {
        let gate = Arc::clone(&gate);
        tokio::spawn(async move {
            // Its deadline allows the estimated start (1 s) but the holder never lets go.
            ask(&gate, "b", Instant::now() + Duration::from_millis(1_500))
                .await
                .map(drop)
        })
    };
    let rejection = short.await.expect("task").expect_err("gave up");
    assert_eq!(rejection.cause, RejectionCause::WouldWaitTooLong);
    assert_eq!(gate.queued(), 0);
    drop(held);
}

/// A refresh for `tenant`, with `reads` reads, waiting until `deadline` at most.
async fn refresh(
    gate: &AccountGate,
    tenant: &str,
    reads: u64,
    deadline: Instant,
) -> Result<Lease, AccountRejection> {
    let party = party(tenant);
    gate.acquire(Claim {
        party: &party,
        class: Class::Background {
            reads: Arc::new(std::sync::atomic::AtomicU64::new(reads)),
        },
        deadline,
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn a_callers_miss_goes_before_queued_refreshes() {
    let gate = Arc::new(gate(1, 60_000, 100));
    let far = Instant::now() + Duration::from_secs(60);
    let held = ask(&gate, "a", far).await.expect("first");
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for (name, reads) in [("refresh-few", 1), ("refresh-many", 50)] {
        let (gate, order) = (Arc::clone(&gate), Arc::clone(&order));
        tasks.push(tokio::spawn(async move {
            let lease = refresh(&gate, name, reads, far).await.expect("served");
            order.lock().expect("lock").push(name);
            lease.complete().await;
        }));
    }
    wait_queued(&gate, 2).await;
    {
        let (gate, order) = (Arc::clone(&gate), Arc::clone(&order));
        tasks.push(tokio::spawn(async move {
            let lease = ask(&gate, "caller", far).await.expect("served");
            order.lock().expect("lock").push("caller");
            lease.complete().await;
        }));
    }
    wait_queued(&gate, 3).await;
    drop(held);
    for t in tasks {
        t.await.expect("task");
    }
    // The caller first, though it came last; then the most-read refresh.
    assert_eq!(
        *order.lock().expect("lock"),
        ["caller", "refresh-many", "refresh-few"]
    );
}

#[tokio::test(start_paused = true)]
async fn background_work_leaves_a_slot_for_callers() {
    let gate = gate(2, 60_000, 100);
    let far = Instant::now() + Duration::from_secs(60);
    let first = refresh(&gate, "r", 1, far).await.expect("one of two slots");
    // The last ready slot is the callers': a refresh waits (and gives up at its deadline) ...
    let t0 = Instant::now();
    let rejection = refresh(&gate, "r", 1, t0 + Duration::from_millis(500))
        .await
        .expect_err("the last slot is kept");
    assert_eq!(rejection.cause, RejectionCause::WouldWaitTooLong);
    // ... while a caller gets it at once.
    let caller = ask(&gate, "c", far).await.expect("the kept slot");
    assert_eq!(Instant::now(), t0 + Duration::from_millis(500));
    drop((first, caller));
}

/// The case where a quiet tenant used to be refused at once: six tenants, each with calls
/// waiting and a recent history of use, in front of it. It has used less than its share, so it
/// goes first, is admitted, and is served within its 2 s.
#[tokio::test(start_paused = true)]
async fn a_quiet_tenant_behind_six_busy_ones_is_admitted_and_served_in_time() {
    let gate = Arc::new(gate(5, 60_000, 1000));
    let far = Instant::now() + Duration::from_secs(120);
    let mut held = Vec::new();
    for n in 0..5 {
        held.push(ask(&gate, &format!("noisy-{n}"), far).await.expect("slot"));
    }
    let mut noisy = Vec::new();
    for n in 0..6 {
        for _ in 0..3 {
            let gate = Arc::clone(&gate);
            noisy.push(tokio::spawn(async move {
                let _ = ask(&gate, &format!("noisy-{n}"), far).await;
            }));
        }
    }
    wait_queued(&gate, 18).await;
    let t0 = Instant::now();
    let quiet = {
        let gate = Arc::clone(&gate);
        tokio::spawn(async move { ask(&gate, "quiet", t0 + Duration::from_secs(2)).await })
    };
    wait_queued(&gate, 19).await;
    for lease in held {
        lease.complete().await;
    }
    let lease = quiet.await.expect("task").expect("served in time");
    lease.complete().await;
    assert!(Instant::now() - t0 <= Duration::from_secs(1) + Duration::from_millis(1));
    for n in noisy {
        n.abort();
    }
}

/// A reload that lowers the quota: calls holding slots keep them, and the slots go as they come
/// back; one that raises it adds slots ready at once.
#[tokio::test(start_paused = true)]
async fn a_reconfigured_quota_drops_slots_as_they_free_and_adds_new_ones_at_once() {
    let gate = gate(4, 0, 10);
    let limits = |rps| AccountLimits {
        rps,
        window: Duration::from_secs(1),
        max_wait: Duration::ZERO,
        max_queue: 10,
    };
    let far = Instant::now() + Duration::from_secs(5);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(ask(&gate, "t", far).await.expect("within the quota"));
    }
    gate.reconfigure(limits(2), Weights::default());
    assert_eq!(gate.rps(), 2);
    for lease in held.drain(..) {
        lease.complete().await;
    }
    tokio::time::advance(Duration::from_secs(1)).await;
    for _ in 0..2 {
        held.push(ask(&gate, "t", far).await.expect("two slots rested"));
    }
    assert!(
        ask(&gate, "t", far).await.is_err(),
        "two slots kept of four"
    );

    gate.reconfigure(limits(5), Weights::default());
    for _ in 0..3 {
        held.push(
            ask(&gate, "t", far)
                .await
                .expect("a new slot, ready at once"),
        );
    }
    assert!(ask(&gate, "t", far).await.is_err(), "five in all");
}
