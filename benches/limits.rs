//! Cost of one rate-limit decision and memory per tracked tenant.
//! Run: `cargo bench --bench limits` (release build; prints a Markdown table).

use std::{collections::HashMap, hint::black_box, num::NonZeroU32, time::Instant};

use cams_flows::{
    domain::TenantId,
    limits::{
        AccountGate, AccountLimits, AccountQuota, Claim, Class, GovernorTenantLimits, LocalSlots,
        Party, Quota, TenantLimits, Weights,
    },
};

/// Resident memory of this process, from /proc (Linux).
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn tenants(n: usize) -> Vec<TenantId> {
    (0..n)
        .map(|i| TenantId::parse(format!("cams-space-{i:08}")).expect("valid id"))
        .collect()
}

fn generous() -> Quota {
    Quota {
        rps: 1_000_000.0,
        burst: NonZeroU32::new(1_000).expect("non-zero"),
    }
}

/// ns per `check` cycling over `n` distinct tenants, all already tracked.
fn decision_ns(n: usize) -> f64 {
    let ids = tenants(n);
    let limiter = GovernorTenantLimits::new(generous(), HashMap::new());
    for id in &ids {
        let _ = limiter.decide(id);
    }
    let rounds = (4_000_000 / n).max(2);
    let started = Instant::now();
    for _ in 0..rounds {
        for id in &ids {
            black_box(limiter.decide(black_box(id)).is_ok());
        }
    }
    started.elapsed().as_nanos() as f64 / (rounds * n) as f64
}

fn bytes_per_tenant(n: usize) -> Option<f64> {
    let ids = tenants(n);
    let limiter = GovernorTenantLimits::new(generous(), HashMap::new());
    let before = rss_bytes()?;
    for id in &ids {
        let _ = limiter.decide(id);
    }
    let after = rss_bytes()?;
    assert_eq!(limiter.tracked(), n);
    Some(after.saturating_sub(before) as f64 / n as f64)
}

fn account_ns() -> f64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let window = std::time::Duration::from_nanos(1);
        let gate = AccountGate::new(
            AccountLimits {
                rps: 1_000_000,
                window,
                max_wait: std::time::Duration::from_secs(1),
                max_queue: 16,
            },
            Weights::default(),
            std::sync::Arc::new(LocalSlots::new(1_000_000, window)),
        );
        let party = Party {
            caller: std::sync::Arc::from("anonymous"),
            tenant: TenantId::own_space(),
        };
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        let n = 1_000_000;
        let started = Instant::now();
        for _ in 0..n {
            if let Ok(lease) = black_box(
                gate.acquire(Claim {
                    party: &party,
                    class: Class::Caller,
                    deadline,
                })
                .await,
            ) {
                lease.complete().await;
            }
        }
        started.elapsed().as_nanos() as f64 / n as f64
    })
}

fn main() {
    println!("| measurement | value |");
    println!("|---|---|");
    for n in [1, 10_000, 1_000_000] {
        println!(
            "| tenant limit decision, {n} tenants | {:.0} ns |",
            decision_ns(n)
        );
    }
    match bytes_per_tenant(1_000_000) {
        Some(b) => {
            println!("| memory per tracked tenant (1 000 000 tracked, RSS delta) | {b:.0} bytes |")
        }
        None => println!("| memory per tracked tenant | n/a (no /proc) |"),
    }
    println!(
        "| account gate acquire + release, uncontended | {:.0} ns |",
        account_ns()
    );
}
