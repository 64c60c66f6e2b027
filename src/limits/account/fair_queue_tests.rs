//! The order of the fair queue and its admission estimate, on Tokio's paused clock.

use super::*;
use std::sync::atomic::AtomicU64;

fn party(caller: &str, tenant: &str) -> Party {
    Party {
        caller: Arc::from(caller),
        tenant: TenantId::parse(tenant).expect("tenant"),
    }
}

/// Serves the whole queue, recording each call's use, and returns the order.
fn drain(queue: &mut FairQueue<&'static str>, now: Instant) -> Vec<&'static str> {
    std::iter::from_fn(|| queue.pop(true, now)).collect()
}

#[tokio::test(start_paused = true)]
async fn a_tenant_that_used_less_goes_before_older_calls_of_busier_ones() {
    let mut queue = FairQueue::new(Weights::default());
    let now = Instant::now();
    // Six noisy tenants have each used the quota a lot lately and have calls waiting.
    for n in 0..6 {
        let noisy = party("anonymous", &format!("noisy-{n}"));
        for _ in 0..8 {
            queue.record_use(&noisy, now);
        }
        queue.push(&noisy, &Class::Caller, "noisy");
        queue.push(&noisy, &Class::Caller, "noisy");
    }
    // A quiet tenant that called once a while ago arrives last.
    let quiet = party("anonymous", "quiet");
    queue.record_use(&quiet, now - Duration::from_secs(2));
    assert_eq!(
        queue.surely_ahead_of_newcomer(&quiet, &Class::Caller, now),
        0
    );
    queue.push(&quiet, &Class::Caller, "quiet");
    assert_eq!(queue.pop(true, now), Some("quiet"));
}

#[tokio::test(start_paused = true)]
async fn equal_tenants_alternate_and_weights_change_the_shares() {
    let mut queue = FairQueue::new(Weights {
        tenants: HashMap::from([(TenantId::parse("heavy").expect("id"), 3.0)]),
        callers: HashMap::new(),
    });
    let now = Instant::now();
    for _ in 0..8 {
        queue.push(&party("c", "heavy"), &Class::Caller, "heavy");
        queue.push(&party("c", "light"), &Class::Caller, "light");
    }
    let order = drain(&mut queue, now);
    // While both wait, weight 3 against 1 gives three calls to one.
    let first_eight = &order[..8];
    let heavy = first_eight.iter().filter(|n| **n == "heavy").count();
    assert_eq!(heavy, 6, "{order:?}");

    let mut queue = FairQueue::new(Weights::default());
    for _ in 0..4 {
        queue.push(&party("c", "a"), &Class::Caller, "a");
    }
    for _ in 0..4 {
        queue.push(&party("c", "b"), &Class::Caller, "b");
    }
    assert_eq!(
        drain(&mut queue, now),
        ["a", "b", "a", "b", "a", "b", "a", "b"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_callers_weight_changes_its_share_against_other_callers() {
    let mut queue = FairQueue::new(Weights {
        tenants: HashMap::new(),
        callers: HashMap::from([(Arc::from("heavy"), 3.0)]),
    });
    let now = Instant::now();
    for _ in 0..8 {
        queue.push(&party("heavy", "t"), &Class::Caller, "heavy");
        queue.push(&party("light", "t"), &Class::Caller, "light");
    }
    let order = drain(&mut queue, now);
    // While both wait, weight 3 against 1 gives three calls to one, whatever their tenants.
    let heavy = order[..8].iter().filter(|n| **n == "heavy").count();
    assert_eq!(heavy, 6, "{order:?}");
}

#[tokio::test(start_paused = true)]
async fn callers_share_first_so_rotating_tenants_gains_nothing() {
    let mut queue = FairQueue::new(Weights::default());
    let now = Instant::now();
    // One caller spreads 20 calls over 20 fresh tenant ids; another has 2 calls for one.
    for n in 0..20 {
        let id: &'static str = Box::leak(format!("t{n}").into_boxed_str());
        queue.push(&party("rotator", id), &Class::Caller, "rotator");
    }
    queue.push(&party("steady", "s"), &Class::Caller, "steady");
    queue.push(&party("steady", "s"), &Class::Caller, "steady");
    let order = drain(&mut queue, now);
    let steady_at: Vec<_> = order
        .iter()
        .enumerate()
        .filter(|(_, n)| **n == "steady")
        .map(|(i, _)| i)
        .collect();
    assert!(steady_at[0] <= 1 && steady_at[1] <= 3, "{order:?}");
}

#[tokio::test(start_paused = true)]
async fn callers_go_before_background_and_background_goes_most_read_first() {
    let mut queue = FairQueue::new(Weights::default());
    let now = Instant::now();
    queue.push(
        &party("refresh", "a"),
        &Class::Background {
            reads: Arc::new(AtomicU64::new(3)),
        },
        "bg-3",
    );
    queue.push(
        &party("refresh", "b"),
        &Class::Background {
            reads: Arc::new(AtomicU64::new(9)),
        },
        "bg-9",
    );
    queue.push(&party("c", "t"), &Class::Caller, "caller");
    assert_eq!(queue.pop(false, now), Some("caller"));
    assert_eq!(queue.pop(false, now), None, "background held back");
    assert_eq!(drain(&mut queue, now), ["bg-9", "bg-3"]);
    assert_eq!(
        queue.surely_ahead_of_newcomer(&party("c", "t"), &Class::Caller, now),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn the_estimate_never_counts_a_call_that_could_fall_behind() {
    let mut queue = FairQueue::new(Weights::default());
    let start = Instant::now();
    let busy = party("c", "busy");
    for _ in 0..30 {
        queue.record_use(&busy, start);
    }
    for _ in 0..3 {
        queue.push(&busy, &Class::Caller, "busy");
    }
    let newcomer = party("c", "new");
    // Now the newcomer goes first: the busy tenant's calls finish later while its use lasts.
    assert_eq!(
        queue.surely_ahead_of_newcomer(&newcomer, &Class::Caller, start),
        0
    );
    // The own queue always counts.
    queue.push(&newcomer, &Class::Caller, "new");
    assert_eq!(
        queue.surely_ahead_of_newcomer(&newcomer, &Class::Caller, start),
        1
    );
    // Far later, with all use decayed, order is plain alternation: a second call of the new
    // tenant comes after its first and after the busy tenant's first, and ties with the busy
    // tenant's second, which is therefore not counted.
    let later = start + USAGE_TAU * 20;
    assert_eq!(
        queue.surely_ahead_of_newcomer(&newcomer, &Class::Caller, later),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn usage_of_idle_parties_is_forgotten() {
    let mut queue: FairQueue<()> = FairQueue::new(Weights::default());
    let start = Instant::now();
    for n in 0..2000 {
        queue.record_use(&party("rotator", &format!("t{n}")), start);
    }
    let later = start + USAGE_TAU * 20;
    queue.sweep(later);
    assert!(queue.tenant_usage.is_empty() && queue.caller_usage.is_empty());
}
