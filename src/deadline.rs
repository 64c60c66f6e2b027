//! One call's time. The transport reads the caller's `grpc-timeout` once, when the stream
//! arrives, and every layer after it reads its own bound from the one [`Budget`] it made: the
//! transport answers a bare DEADLINE_EXCEEDED at [`Budget::expires`], the gateway answers with
//! its own status by [`Budget::answer_by`], and a wait for capacity ends at [`wait_end`] of
//! that, so that each one's answer reaches the caller before the next one's bound.

use std::time::Duration;

use http::HeaderMap;
use tokio::time::Instant;

/// Kept between the end of a wait for account capacity and the answer's deadline: the refusal
/// (ACCOUNT_RATE_LIMITED, with the time to retry) still has to be written.
const WAIT_MARGIN: Duration = Duration::from_millis(20);

/// A call's deadline from the stream's arrival: the caller's `grpc-timeout` cut down to the
/// server's bound on every call, or that bound when the caller sets none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Budget {
    arrival: Instant,
    allowed: Duration,
}

impl Budget {
    pub(crate) fn new(
        arrival: Instant,
        grpc_timeout: Option<Duration>,
        max_call: Duration,
    ) -> Self {
        Self {
            arrival,
            allowed: grpc_timeout.map_or(max_call, |t| t.min(max_call)),
        }
    }

    /// When the stream arrived.
    pub(crate) fn arrival(&self) -> Instant {
        self.arrival
    }

    /// The caller's own deadline: past it the caller has stopped listening, and the transport
    /// answers DEADLINE_EXCEEDED for whatever is still running.
    pub(crate) fn expires(&self) -> Instant {
        self.arrival + self.allowed
    }

    /// When the gateway answers with a status of its own (its DEADLINE_EXCEEDED carries details,
    /// a stale answer may stand in): a fifth of the budget before [`Self::expires`], between
    /// 5 ms and 200 ms, so that the answer beats the caller's timer on a loaded host.
    pub(crate) fn answer_by(&self) -> Instant {
        let margin = (self.allowed / 5).clamp(Duration::from_millis(5), Duration::from_millis(200));
        self.arrival + self.allowed.saturating_sub(margin)
    }
}

/// When a wait for capacity that must answer by `answer_by` gives up.
pub(crate) fn wait_end(answer_by: Instant) -> Instant {
    answer_by.checked_sub(WAIT_MARGIN).unwrap_or(answer_by)
}

/// Parses the caller's `grpc-timeout` header (`<1-8 digits><H|M|S|m|u|n>`, gRPC over HTTP/2).
/// A malformed value is treated as absent, as the gRPC spec allows servers to do.
pub(crate) fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-timeout", v.parse().expect("ascii"));
        grpc_timeout(&headers)
    }

    #[test]
    fn units() {
        assert_eq!(parse("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse("99999999n"), Some(Duration::from_nanos(99_999_999)));
        assert_eq!(parse("123456789m"), None);
        assert_eq!(parse("12x"), None);
        assert_eq!(parse("m"), None);
        assert_eq!(parse("-1S"), None);
    }

    /// Each bound comes before the next one's: the wait ends before the gateway answers, which
    /// answers before the caller's deadline, which is never past the server's bound.
    #[test]
    fn bounds_come_in_order() {
        let arrival = Instant::now();
        let max = Duration::from_secs(10);
        for timeout in [
            None,
            Some(Duration::from_millis(1)),
            Some(Duration::from_secs(2)),
        ]
        .into_iter()
        .chain([Some(Duration::from_secs(60))])
        {
            let budget = Budget::new(arrival, timeout, max);
            assert!(budget.expires() <= arrival + max);
            assert!(budget.answer_by() < budget.expires(), "{timeout:?}");
            assert!(wait_end(budget.answer_by()) <= budget.answer_by());
            assert!(budget.answer_by() >= arrival);
        }
        let two = Budget::new(arrival, Some(Duration::from_secs(2)), max);
        assert_eq!(two.expires(), arrival + Duration::from_secs(2));
        assert_eq!(two.answer_by(), arrival + Duration::from_millis(1_800));
        let none = Budget::new(arrival, None, max);
        assert_eq!(none.answer_by(), arrival + Duration::from_millis(9_800));
    }
}
