//! The RateLimit metadata of an answer, as the IETF draft "RateLimit header fields for HTTP"
//! (draft-ietf-httpapi-ratelimit-headers, structured fields) defines them:
//!
//! ```text
//! ratelimit-policy: "tenant";q=10;w=2, "caller";q=5;w=1
//! ratelimit: "tenant";r=3;t=2
//! ```
//!
//! `ratelimit-policy` lists the limits the call was checked against: the tenant's, and the
//! caller's when it has one. A GCRA of `rps` calls per second with a burst of `burst` reads as a
//! quota `q` = `burst` calls (what can be spent at once) over a window `w` = `burst / rps`
//! seconds rounded up, at least 1 (the time a spent burst takes to come back whole).
//! `ratelimit` names the one that binds now, the one with the fewest calls left (on a tie, the
//! one further from whole again, then the tenant's): `r` the calls it leaves, `t` the seconds,
//! rounded up, until its whole burst is back (0: it is). A refusal leaves `r=0`; when to try again
//! is in its `RetryInfo`.
//!
//! The figures come from the decision the limiter made on the call: no store is asked for them.

use std::{fmt::Write as _, time::Duration};

use tonic::metadata::{AsciiMetadataValue, MetadataMap};

use crate::{gateway::Noted, limits::Standing};

/// The limits a call was checked against.
pub(crate) const POLICY_HEADER: &str = "ratelimit-policy";
/// The limit that binds now: what it leaves, and when it resets.
pub(crate) const HEADER: &str = "ratelimit";

/// A limit's name in the metadata.
const TENANT: &str = "tenant";
const CALLER: &str = "caller";

/// Adds the call's RateLimit metadata to `metadata`; nothing when no limit was checked (the
/// call was refused before, or neither the caller nor the tenant is limited).
pub(crate) fn insert(noted: &Noted, metadata: &mut MetadataMap) {
    let limits = [
        noted.tenant.get().map(|s| (TENANT, s)),
        noted.caller.get().map(|s| (CALLER, s)),
    ];
    let Some((policy, binding)) = render(limits) else {
        return;
    };
    if let (Ok(policy), Ok(binding)) = (
        AsciiMetadataValue::try_from(policy),
        AsciiMetadataValue::try_from(binding),
    ) {
        metadata.insert(POLICY_HEADER, policy);
        metadata.insert(HEADER, binding);
    }
}

/// The two values, for the limits that were checked.
fn render(limits: [Option<(&str, &Standing)>; 2]) -> Option<(String, String)> {
    let mut policy = String::with_capacity(48);
    let mut binding: Option<(&str, &Standing)> = None;
    for (name, standing) in limits.into_iter().flatten() {
        if !policy.is_empty() {
            policy.push_str(", ");
        }
        let (q, w) = policy_of(standing.quota.rps, standing.quota.burst.get());
        let _ = write!(policy, "\"{name}\";q={q};w={w}");
        binding = match binding {
            Some(held) if !binds_before(standing, held.1) => Some(held),
            _ => Some((name, standing)),
        };
    }
    let (name, standing) = binding?;
    let mut now = String::with_capacity(32);
    let _ = write!(
        now,
        "\"{name}\";r={};t={}",
        standing.remaining,
        ceil_secs(standing.reset)
    );
    Some((policy, now))
}

/// Whether `a` binds rather than `b`, which came first: fewer calls left, or as many and further
/// from whole again.
fn binds_before(a: &Standing, b: &Standing) -> bool {
    (a.remaining, std::cmp::Reverse(a.reset)) < (b.remaining, std::cmp::Reverse(b.reset))
}

/// The draft's quota and window of a GCRA: the window is the time a spent burst takes to come
/// back, whole seconds rounded up, at least 1; the quota is the burst, or the calls the rate
/// gives in that window when more (a rate of 50 with a burst of 10 is `q=50;w=1`, not a
/// policy of 10 calls a second that a client following the draft would hold itself to).
fn policy_of(rps: f64, burst: u32) -> (u64, u64) {
    let w = window_secs(rps, burst);
    let by_rate = (rps * w as f64).floor();
    let q = if by_rate.is_finite() && by_rate > f64::from(burst) {
        by_rate as u64
    } else {
        u64::from(burst)
    };
    (q, w)
}

/// The time a spent burst takes to come back, whole seconds rounded up, at least 1.
fn window_secs(rps: f64, burst: u32) -> u64 {
    let secs = (f64::from(burst) / rps).ceil();
    if secs.is_finite() && secs >= 1.0 {
        secs as u64
    } else {
        1
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use crate::limits::Quota;

    fn standing(rps: f64, burst: u32, remaining: u32, reset_ms: u64) -> Standing {
        Standing {
            quota: Quota {
                rps,
                burst: NonZeroU32::new(burst).expect("non-zero"),
            },
            remaining,
            reset: Duration::from_millis(reset_ms),
        }
    }

    #[test]
    fn the_tenant_alone() {
        let tenant = standing(5.0, 10, 7, 600);
        assert_eq!(
            render([Some((TENANT, &tenant)), None]),
            Some((
                "\"tenant\";q=10;w=2".to_owned(),
                "\"tenant\";r=7;t=1".to_owned()
            ))
        );
    }

    #[test]
    fn the_limit_with_fewer_calls_left_binds() {
        let tenant = standing(5.0, 5, 4, 200);
        let caller = standing(0.5, 1, 0, 2000);
        assert_eq!(
            render([Some((TENANT, &tenant)), Some((CALLER, &caller))]),
            Some((
                "\"tenant\";q=5;w=1, \"caller\";q=1;w=2".to_owned(),
                "\"caller\";r=0;t=2".to_owned()
            ))
        );
        let roomy = standing(100.0, 100, 90, 100);
        assert_eq!(
            render([Some((TENANT, &tenant)), Some((CALLER, &roomy))]).map(|(_, now)| now),
            Some("\"tenant\";r=4;t=1".to_owned())
        );
    }

    #[test]
    fn on_a_tie_the_one_further_from_whole_binds_then_the_tenant() {
        let tenant = standing(5.0, 5, 2, 600);
        let later = standing(1.0, 5, 2, 3000);
        assert_eq!(
            render([Some((TENANT, &tenant)), Some((CALLER, &later))]).map(|(_, now)| now),
            Some("\"caller\";r=2;t=3".to_owned())
        );
        assert_eq!(
            render([Some((TENANT, &tenant)), Some((CALLER, &tenant))]).map(|(_, now)| now),
            Some("\"tenant\";r=2;t=1".to_owned())
        );
    }

    #[test]
    fn nothing_checked_nothing_sent() {
        assert_eq!(render([None, None]), None);
        let mut metadata = MetadataMap::new();
        insert(&Noted::default(), &mut metadata);
        assert!(metadata.is_empty());
    }

    #[test]
    fn windows_and_resets_round_up() {
        assert_eq!(window_secs(2.0, 3), 2, "1.5 s");
        assert_eq!(window_secs(100.0, 1), 1, "at least a second");
        assert_eq!(window_secs(0.1, 1), 10);
        assert_eq!(policy_of(5.0, 5), (5, 1));
        assert_eq!(policy_of(0.01, 10), (10, 1000));
        assert_eq!(
            policy_of(50.0, 10),
            (50, 1),
            "the rate, not the burst, in a second"
        );
        assert_eq!(
            policy_of(2.0, 3),
            (4, 2),
            "1.5 s rounded up: two seconds of the rate"
        );
        assert_eq!(ceil_secs(Duration::ZERO), 0);
        assert_eq!(ceil_secs(Duration::from_nanos(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
    }

    #[test]
    fn the_values_are_valid_metadata() {
        let noted = Noted::default();
        let _ = noted.tenant.set(standing(5.0, 5, 4, 200));
        let mut metadata = MetadataMap::new();
        insert(&noted, &mut metadata);
        assert_eq!(
            metadata.get(POLICY_HEADER).map(|v| v.to_str().ok()),
            Some(Some("\"tenant\";q=5;w=1"))
        );
        assert_eq!(
            metadata.get(HEADER).map(|v| v.to_str().ok()),
            Some(Some("\"tenant\";r=4;t=1"))
        );
    }
}
