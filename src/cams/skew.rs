//! How far the gateway's clock is from CAMS's, read from the `Date` header of CAMS's answers.
//! CAMS refuses a signature dated more than 15 minutes off (`InvalidTimeStamp.Expired`); the
//! official SDKs leave that to the host's time sync, which a gateway cannot count on. So the
//! skew is measured on every answer, a warning is logged when it passes a minute (once when that
//! starts, once when it ends), and past the minute signatures are dated by CAMS's clock: the
//! gateway's clock plus the measured offset.

use std::{
    sync::atomic::{AtomicBool, AtomicI64, Ordering},
    time::{Duration, SystemTime},
};

/// Skew past this is warned about and corrected.
pub(crate) const TOLERATED: Duration = Duration::from_secs(60);

/// A `Date` outside these years (seconds since the epoch: 2000-01-01 and 2200-01-01) is not a
/// clock reading but a broken or hostile header; adopting it would date every later signature
/// by it (and past year 9999 no timestamp can even be written), so it is ignored.
const PLAUSIBLE_DATES: std::ops::Range<u64> = 946_684_800..7_258_118_400;

#[derive(Debug, Default)]
pub(crate) struct ClockSkew {
    /// Added to the gateway's clock when signing, in milliseconds (CAMS minus gateway).
    offset_ms: AtomicI64,
    /// Whether the last measurement was past [`TOLERATED`].
    off: AtomicBool,
    /// The last measurement, whatever its size, for the metric.
    measured_ms: AtomicI64,
    measured: AtomicBool,
}

impl ClockSkew {
    /// The time to sign with.
    pub(crate) fn corrected(&self, now: SystemTime) -> SystemTime {
        shift(now, self.offset_ms.load(Ordering::Relaxed))
    }

    pub(crate) fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }

    /// The last skew measured, corrected or not; `None` before the first.
    pub(crate) fn measured_ms(&self) -> Option<i64> {
        self.measured
            .load(Ordering::Relaxed)
            .then(|| self.measured_ms.load(Ordering::Relaxed))
    }

    /// Records CAMS's `Date` (whole seconds) against the gateway's clock halfway between sending
    /// and receiving. Returns the measured skew in milliseconds; `None` for a date no clock
    /// could read (see [`PLAUSIBLE_DATES`]), which changes nothing.
    pub(crate) fn observe(
        &self,
        date: SystemTime,
        sent: SystemTime,
        received: SystemTime,
    ) -> Option<i64> {
        let secs = date.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
        if !PLAUSIBLE_DATES.contains(&secs) {
            tracing::debug!(
                date_secs = secs,
                "ignored an implausible Date header from CAMS"
            );
            return None;
        }
        let rtt = millis_between(received, sent).max(0);
        let midpoint = shift(sent, rtt / 2);
        // The header drops the fraction of its second: on average half a second.
        let measured = millis_between(shift(date, 500), midpoint);
        self.measured_ms.store(measured, Ordering::Relaxed);
        self.measured.store(true, Ordering::Relaxed);
        let off = measured.unsigned_abs() > TOLERATED.as_millis() as u64;
        self.offset_ms
            .store(if off { measured } else { 0 }, Ordering::Relaxed);
        if self.off.swap(off, Ordering::Relaxed) != off {
            let skew_ms = measured;
            if off {
                tracing::warn!(
                    skew_ms,
                    "the gateway's clock is more than a minute off CAMS's (Date header); \
                     signatures are dated by CAMS's clock until the host's time is fixed"
                );
            } else {
                tracing::info!(skew_ms, "the gateway's clock agrees with CAMS's again");
            }
        }
        Some(measured)
    }

    /// After `InvalidTimeStamp.Expired`: date the retry by CAMS's clock whatever the size of the
    /// measured skew.
    pub(crate) fn adopt(&self, measured_ms: i64) {
        self.offset_ms.store(measured_ms, Ordering::Relaxed);
    }
}

fn shift(t: SystemTime, ms: i64) -> SystemTime {
    let d = Duration::from_millis(ms.unsigned_abs());
    let shifted = if ms >= 0 {
        t.checked_add(d)
    } else {
        t.checked_sub(d)
    };
    shifted.unwrap_or(t)
}

/// `a − b` in milliseconds, signed.
fn millis_between(a: SystemTime, b: SystemTime) -> i64 {
    match a.duration_since(b) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `secs` and `ms` after an arbitrary plausible moment (2023-11-14).
    fn at(secs: u64, ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH
            + Duration::from_secs(1_700_000_000 + secs)
            + Duration::from_millis(ms)
    }

    #[test]
    fn small_skew_is_not_corrected_and_large_skew_is() {
        let skew = ClockSkew::default();
        // CAMS says 1000 s (+ up to a second); the gateway sent at 1000.2 and heard at 1000.4.
        let m = skew.observe(at(1000, 0), at(1000, 200), at(1000, 400));
        assert_eq!(m, Some(200));
        assert_eq!(skew.offset_ms(), 0);
        assert_eq!(skew.corrected(at(5, 0)), at(5, 0));

        // The gateway runs 20 minutes fast.
        let m = skew.observe(at(1000, 0), at(2200, 0), at(2200, 0));
        assert_eq!(m, Some(-1_199_500));
        assert_eq!(skew.corrected(at(2200, 0)), at(1000, 500));

        // Fixed again: no more correction.
        skew.observe(at(3000, 0), at(3000, 0), at(3000, 100));
        assert_eq!(skew.offset_ms(), 0);

        // After an expired timestamp, even a small measured skew is adopted.
        skew.adopt(30_000);
        assert_eq!(skew.corrected(at(10, 0)), at(40, 0));
    }

    #[test]
    fn the_state_changes_only_when_crossing_the_minute() {
        let skew = ClockSkew::default();
        for _ in 0..3 {
            skew.observe(at(1000, 0), at(1100, 0), at(1100, 0));
            assert!(skew.off.load(Ordering::Relaxed));
        }
        skew.observe(at(1000, 0), at(1000, 0), at(1000, 0));
        assert!(!skew.off.load(Ordering::Relaxed));
    }

    #[test]
    fn a_date_no_clock_could_read_changes_nothing() {
        let skew = ClockSkew::default();
        skew.observe(at(1000, 0), at(2200, 0), at(2200, 0));
        let offset = skew.offset_ms();
        let now = at(2200, 0);
        for date in [
            "Fri, 31 Dec 9999 23:59:59 GMT",
            "Thu, 01 Jan 1970 00:00:00 GMT",
        ] {
            let date = httpdate::parse_http_date(date).expect("a valid HTTP date");
            assert_eq!(skew.observe(date, now, now), None, "{date:?}");
            assert_eq!(skew.offset_ms(), offset);
            // Signatures can still be dated.
            assert!(!crate::acs::format_timestamp(skew.corrected(now)).is_empty());
        }
    }
}

/// The real client against the simulated CAMS, with the gateway's clock put off through the
/// `Clock` seam: CAMS's 15-minute window refuses the first signature, the client reads CAMS's
/// `Date`, signs again by it, and keeps the offset for the calls after.
#[cfg(all(test, feature = "sandbox"))]
mod against_the_sandbox {
    use std::{
        sync::Arc,
        time::{Duration, SystemTime},
    };

    use secrecy::SecretString;

    use crate::{
        cams::{CamsClient, UpstreamConfig},
        clock::{Clock, SharedClock},
        credentials::{Credentials, StaticCredentials},
        domain::{FlowId, TenantId},
        sandbox::{Sandbox, SandboxConfig},
    };

    /// The host's clock, `ahead` seconds fast (negative: slow).
    #[derive(Debug)]
    struct Off(i64);

    impl Clock for Off {
        fn now(&self) -> SystemTime {
            let now = SystemTime::now();
            let d = Duration::from_secs(self.0.unsigned_abs());
            if self.0 >= 0 { now + d } else { now - d }
        }
    }

    async fn client(ahead: i64) -> (CamsClient, crate::sandbox::SandboxHandle) {
        let sandbox = Sandbox::bind(
            ([127, 0, 0, 1], 0).into(),
            SandboxConfig::new("id", "secret"),
        )
        .await
        .expect("bind")
        .spawn();
        let credentials = Credentials::new("id", SecretString::from("secret".to_owned()), None);
        let clock: SharedClock = Arc::new(Off(ahead));
        let client = CamsClient::new(
            UpstreamConfig::new(sandbox.endpoint().parse().expect("url")),
            Arc::new(StaticCredentials::new(credentials)),
            clock,
        )
        .expect("client");
        (client, sandbox)
    }

    async fn codes(sandbox: &crate::sandbox::SandboxHandle) -> Vec<String> {
        let body = reqwest::get(format!("{}/_sandbox/requests", sandbox.endpoint()))
            .await
            .expect("requests")
            .text()
            .await
            .expect("body");
        let requests: Vec<crate::sandbox::RecordedRequest> =
            serde_json::from_str(&body).expect("json");
        requests.into_iter().map(|r| r.code).collect()
    }

    fn flow() -> (TenantId, FlowId) {
        (
            TenantId::parse("").expect("own space"),
            FlowId::parse("100000000000002").expect("flow"),
        )
    }

    #[tokio::test]
    async fn twenty_minutes_fast_is_refused_once_then_signed_by_cams_clock() {
        let (client, sandbox) = client(20 * 60).await;
        let (tenant, flow_id) = flow();
        client.fetch(&tenant, &flow_id).await.expect("corrected");
        assert_eq!(codes(&sandbox).await, ["InvalidTimeStamp.Expired", "OK"]);
        let offset = client.clock_offset_ms();
        assert!((-1_202_000..=-1_198_000).contains(&offset), "{offset}");
        // The offset is kept: the next call is dated right the first time.
        client.fetch(&tenant, &flow_id).await.expect("dated right");
        assert_eq!(codes(&sandbox).await.len(), 3);
    }

    #[tokio::test]
    async fn two_minutes_slow_is_accepted_and_corrected_from_the_first_date() {
        let (client, sandbox) = client(-120).await;
        let (tenant, flow_id) = flow();
        client
            .fetch(&tenant, &flow_id)
            .await
            .expect("within the window");
        let offset = client.clock_offset_ms();
        assert!((118_000..=122_000).contains(&offset), "{offset}");
        client.fetch(&tenant, &flow_id).await.expect("ok");
        assert_eq!(codes(&sandbox).await, ["OK", "OK"]);
    }

    #[tokio::test]
    async fn a_clock_within_a_minute_is_left_alone() {
        let (client, _sandbox) = client(20).await;
        let (tenant, flow_id) = flow();
        client.fetch(&tenant, &flow_id).await.expect("ok");
        assert_eq!(client.clock_offset_ms(), 0);
    }
}
