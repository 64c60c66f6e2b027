use super::*;

/// `secs` and `ms` after an arbitrary plausible moment (2023-11-14).
fn at(secs: u64, ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs) + Duration::from_millis(ms)
}

/// A host clock that reads one moment.
#[derive(Debug)]
struct Fixed(SystemTime);

impl Clock for Fixed {
    fn now(&self) -> SystemTime {
        self.0
    }
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
fn the_cams_clock_adds_the_offset_the_answers_show_whatever_its_size() {
    let skew = Arc::new(ClockSkew::default());
    let host = Arc::new(Fixed(at(1000, 0)));
    let cams = CamsClock::new(host, Arc::clone(&skew));
    // Before CAMS has answered, the host's clock stands for CAMS's.
    assert_eq!(cams.now(), at(1000, 0));

    // An answer that the host's clock agrees with (CAMS read 1000.x between 1000.2 and
    // 1000.4: anything from -400 ms to +800 ms) leaves it alone.
    skew.observe(at(1000, 0), at(1000, 200), at(1000, 400));
    assert_eq!(cams.now(), at(1000, 0));

    // CAMS 40 s ahead: the middle of what the answer allows (39.98 s to 41 s).
    skew.observe(at(1040, 0), at(1000, 0), at(1000, 20));
    assert_eq!(cams.now(), at(1040, 490));
    assert_eq!(skew.offset_ms(), 0, "signatures wait for a minute");
    // And 40 s behind: the clocks stepped, what came before no longer counts.
    skew.observe(at(960, 0), at(1000, 0), at(1000, 20));
    assert_eq!(cams.now(), at(960, 490));
}

/// A small deterministic generator, so that the sequences below are the same on every run.
fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *state >> 33
}

/// For CAMS's clock ahead, behind or right, answers at every fraction of CAMS's second, CAMS
/// reading its clock at any moment of the exchange and round trips up to a second: after
/// every answer the clock is within the margin of CAMS's, and its offset moves once at most
/// (it does not jitter with the whole seconds of each `Date`).
#[test]
fn the_margin_covers_what_the_answers_leave_unknown() {
    let margin = MARGIN.as_millis() as i64;
    let mut seed = 7;
    for true_offset in [-40_000, -1_234, -999, -1, 0, 1, 400, 999, 1_001, 40_000] {
        for _ in 0..50 {
            let skew = ClockSkew::default();
            let mut moves = 0;
            let mut before = skew.cams_offset_ms();
            for n in 0..40 {
                let sent = at(5000 + n * 3, lcg(&mut seed) % 1000);
                let rtt = [0, 1, 30, 250, 999, 1000][lcg(&mut seed) as usize % 6];
                let received = shift(sent, rtt);
                // CAMS reads its clock somewhere in the exchange; `Date` drops the fraction.
                let stamp = (lcg(&mut seed) as i64) % (rtt + 1);
                let cams_read = shift(shift(sent, stamp), true_offset);
                let whole = cams_read
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .expect("after 1970")
                    .as_secs();
                let date = SystemTime::UNIX_EPOCH + Duration::from_secs(whole);
                skew.observe(date, sent, received);
                let error = skew.cams_offset_ms() - true_offset;
                assert!(
                    error.abs() <= margin,
                    "CAMS {true_offset} ms off, answer {n} (rtt {rtt}, read at +{stamp}): \
                     off by {error} ms"
                );
                moves += usize::from(skew.cams_offset_ms() != before);
                before = skew.cams_offset_ms();
            }
            assert!(moves <= 1, "CAMS {true_offset} ms off: moved {moves} times");
        }
    }
}

#[test]
fn a_slow_answer_moves_the_clock_only_when_it_rules_the_offset_out() {
    let skew = ClockSkew::default();
    // CAMS 10 s ahead, from a quick exchange: 9.69 s to 10.7 s.
    skew.observe(at(1010, 0), at(1000, 300), at(1000, 310));
    assert_eq!(skew.cams_offset_ms(), 10_195);
    // Four seconds of round trip: CAMS's offset lies anywhere from 8 s to 13 s, as the offset
    // in use does; it stays.
    let m = skew.observe(at(1012, 0), at(1000, 0), at(1004, 0));
    assert_eq!(m, Some(10_500));
    assert_eq!(skew.cams_offset_ms(), 10_195);
    assert_eq!(
        skew.measured_ms(),
        Some(10_500),
        "the metric shows every reading"
    );
    // A slow answer that rules it out (CAMS's clock stepped: 30 s to 35 s ahead) is taken.
    skew.observe(at(1034, 0), at(1000, 0), at(1004, 0));
    assert_eq!(skew.cams_offset_ms(), 32_500);
    // A quick one that narrows that down to 32.09 s to 33.1 s finds the offset within the
    // margin of all of it: it stays.
    skew.observe(at(1038, 0), at(1005, 900), at(1005, 910));
    assert_eq!(skew.cams_offset_ms(), 32_500);
    // One that allows none of it (33.59 s to 34.6 s: CAMS's clock stepped again) starts
    // over from the middle of what it allows.
    skew.observe(at(1039, 0), at(1005, 400), at(1005, 410));
    assert_eq!(skew.cams_offset_ms(), 34_095);
}

/// Clocks drift apart: what older answers allowed widens with time, so that a drift is
/// followed rather than taken for a step.
#[test]
fn the_range_widens_with_time_for_drift() {
    let skew = ClockSkew::default();
    let range = |skew: &ClockSkew| {
        let possible = skew.possible.lock().expect("lock").expect("an answer");
        (possible.lo, possible.hi)
    };
    skew.observe(at(1010, 0), at(1000, 300), at(1000, 310));
    skew.observe(at(1011, 0), at(1000, 900), at(1000, 910));
    assert_eq!(range(&skew), (10_090, 10_700));
    // An hour on, CAMS a little further ahead: the range has widened by 359 ms (an hour at
    // 100 ppm), and still meets the answer's.
    skew.observe(at(4611, 0), at(4600, 600), at(4600, 610));
    assert_eq!(range(&skew), (10_390, 11_059));
    assert_eq!(skew.cams_offset_ms(), 10_195, "still within the margin");
}

#[test]
fn the_warning_state_changes_only_when_crossing_five_seconds() {
    let skew = ClockSkew::default();
    skew.observe(at(1004, 0), at(1000, 0), at(1000, 0));
    assert!(!skew.warned.load(Ordering::Relaxed), "4.5 s");
    for _ in 0..3 {
        skew.observe(at(1005, 0), at(1000, 0), at(1000, 0));
        assert!(skew.warned.load(Ordering::Relaxed), "5.5 s");
        assert!(!skew.off.load(Ordering::Relaxed));
    }
    skew.observe(at(996, 0), at(1000, 0), at(1000, 0));
    assert!(!skew.warned.load(Ordering::Relaxed), "-3.5 s");
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
        assert_eq!(skew.cams_offset_ms(), offset);
        // Signatures can still be dated.
        assert!(!crate::acs::format_timestamp(skew.corrected(now)).is_empty());
    }
}

/// The real client against the simulated CAMS, with the gateway's clock put off through the
/// `Clock` seam: CAMS's 15-minute window refuses the first signature, the client reads CAMS's
/// `Date`, signs again by it, and keeps the offset for the calls after.
#[cfg(feature = "sandbox")]
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
        domain::{FlowId, Read, TenantId},
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

    fn flow() -> Read {
        Read::flow(
            TenantId::parse("").expect("own space"),
            FlowId::parse("100000000000002").expect("flow"),
        )
    }

    #[tokio::test]
    async fn twenty_minutes_fast_is_refused_once_then_signed_by_cams_clock() {
        let (client, sandbox) = client(20 * 60).await;
        let read = flow();
        client.fetch(&read).await.expect("corrected");
        assert_eq!(codes(&sandbox).await, ["InvalidTimeStamp.Expired", "OK"]);
        let offset = client.clock_offset_ms();
        assert!((-1_202_000..=-1_198_000).contains(&offset), "{offset}");
        // The offset is kept: the next call is dated right the first time.
        client.fetch(&read).await.expect("dated right");
        assert_eq!(codes(&sandbox).await.len(), 3);
    }

    #[tokio::test]
    async fn two_minutes_slow_is_accepted_and_corrected_from_the_first_date() {
        let (client, sandbox) = client(-120).await;
        let read = flow();
        client.fetch(&read).await.expect("within the window");
        let offset = client.clock_offset_ms();
        assert!((118_000..=122_000).contains(&offset), "{offset}");
        client.fetch(&read).await.expect("ok");
        assert_eq!(codes(&sandbox).await, ["OK", "OK"]);
    }

    #[tokio::test]
    async fn a_clock_within_a_minute_is_left_alone() {
        let (client, _sandbox) = client(20).await;
        let read = flow();
        client.fetch(&read).await.expect("ok");
        assert_eq!(client.clock_offset_ms(), 0);
    }
}
