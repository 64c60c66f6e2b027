//! How far the gateway's clock is from CAMS's, read from the `Date` header of CAMS's answers, and
//! CAMS's clock as the gateway knows it from that ([`CamsClock`]).
//!
//! Two things run on CAMS's clock. CAMS refuses a signature dated more than 15 minutes off
//! (`InvalidTimeStamp.Expired`); the official SDKs leave that to the host's time sync, which a
//! gateway cannot count on, so past a minute of skew signatures are dated by CAMS's clock. And
//! `PreviewUrlExpires` is a time on CAMS's clock: the cache compares it, and the times of its
//! entries (which replicas with clocks of their own share), with [`CamsClock`]: the gateway's
//! clock plus the offset CAMS's answers show, whatever its size, with a [`MARGIN`] kept in hand
//! for what they cannot show. The skew is measured on every answer; a warning is logged when it
//! passes 5 s and when it passes a minute (once when that starts, once when it ends).

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
    time::{Duration, SystemTime},
};

use crate::clock::{Clock, SharedClock, millis_between, shift};

/// Skew past this dates signatures by CAMS's clock (CAMS accepts 15 minutes either way).
pub(crate) const TOLERATED: Duration = Duration::from_secs(60);

/// Skew past this is logged: a host whose time sync works is within milliseconds, so seconds
/// mean it does not, and the cache's times are then CAMS's, not the host's.
pub(crate) const WARN_ABOVE: Duration = Duration::from_secs(5);

/// How far [`CamsClock`] may be from CAMS's own clock, and so what the cache keeps in hand
/// before every `PreviewUrlExpires`. One answer tells CAMS's clock to within a second and a round
/// trip: its `Date` has whole seconds (CAMS read its clock anywhere within that second), read at
/// some moment between the request leaving and the answer arriving. So the offset lies between
/// `Date − received` and `Date + 1 s − sent`, and each answer narrows that range further. The
/// offset in use is kept while it is within this margin of everything in the range, and moved to
/// the range's middle when it is not: within the margin whenever the range is at most two
/// seconds wide, that is for any round trip up to a second (CAMS answers in tens to hundreds of
/// milliseconds). A host whose clock is right nearly always keeps a zero offset, and no offset
/// jitters with the whole seconds of each `Date`. A preview URL lives far longer than a second: giving its
/// last second up costs nothing, serving it dead breaks the caller's flow.
pub(crate) const MARGIN: Duration = Duration::from_secs(1);

/// How many milliseconds of the host's time widen the range of possible offsets by one between
/// answers: two clocks kept by quartz drift apart by less than 100 ppm, 1 ms every 10 s.
const MS_PER_MS_OF_DRIFT: i64 = 10_000;

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
    /// Whether the last measurement was past [`WARN_ABOVE`].
    warned: AtomicBool,
    /// Added to the gateway's clock by [`CamsClock`], in milliseconds, whatever its size.
    cams_offset_ms: AtomicI64,
    /// What CAMS's answers since the clocks last stepped allow the offset to be.
    possible: Mutex<Option<Possible>>,
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

    /// What [`CamsClock`] adds to the gateway's clock; zero before the first measurement.
    pub(crate) fn cams_offset_ms(&self) -> i64 {
        self.cams_offset_ms.load(Ordering::Relaxed)
    }

    /// The last skew measured, corrected or not; `None` before the first.
    pub(crate) fn measured_ms(&self) -> Option<i64> {
        self.measured
            .load(Ordering::Relaxed)
            .then(|| self.measured_ms.load(Ordering::Relaxed))
    }

    /// Records CAMS's `Date` (whole seconds) against the gateway's clock halfway between sending
    /// and receiving. Returns the measured skew in milliseconds; `None` for a date no clock
    /// could read (see [`PLAUSIBLE_DATES`]), which changes nothing. [`CamsClock`]'s offset
    /// follows as [`MARGIN`] says.
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
        self.follow(Possible {
            lo: millis_between(date, received),
            hi: millis_between(date, sent).saturating_add(1_000),
            at: received,
        });

        let skew_ms = measured;
        let warned = measured.unsigned_abs() > WARN_ABOVE.as_millis() as u64;
        if self.warned.swap(warned, Ordering::Relaxed) != warned {
            if warned {
                tracing::warn!(
                    skew_ms,
                    "the gateway's clock is more than 5 s off CAMS's (Date header): the host's \
                     time sync is failing; the cache reckons preview URLs' expiry by CAMS's clock"
                );
            } else {
                tracing::info!(skew_ms, "the gateway's clock agrees with CAMS's again");
            }
        }
        let off = measured.unsigned_abs() > TOLERATED.as_millis() as u64;
        self.offset_ms
            .store(if off { measured } else { 0 }, Ordering::Relaxed);
        if self.off.swap(off, Ordering::Relaxed) != off {
            if off {
                tracing::warn!(
                    skew_ms,
                    "the gateway's clock is more than a minute off CAMS's (Date header); \
                     signatures are dated by CAMS's clock until the host's time is fixed"
                );
            } else {
                tracing::info!(
                    skew_ms,
                    "the gateway's clock is within a minute of CAMS's again; signatures are \
                     dated by it"
                );
            }
        }
        Some(measured)
    }

    /// After `InvalidTimeStamp.Expired`: date the retry by CAMS's clock whatever the size of the
    /// measured skew.
    pub(crate) fn adopt(&self, measured_ms: i64) {
        self.offset_ms.store(measured_ms, Ordering::Relaxed);
    }

    /// Narrows the possible offsets by one answer's, and moves [`CamsClock`]'s offset to their
    /// middle if it is no longer within [`MARGIN`] of all of them.
    fn follow(&self, answer: Possible) {
        // The host's clock went back during the exchange by more than a second: nothing to learn.
        if answer.lo > answer.hi {
            return;
        }
        let mut possible = self.possible.lock().unwrap_or_else(PoisonError::into_inner);
        let narrowed = match *possible {
            Some(before) => {
                let drift = millis_between(answer.at, before.at).max(0) / MS_PER_MS_OF_DRIFT;
                let lo = before.lo.saturating_sub(drift).max(answer.lo);
                let hi = before.hi.saturating_add(drift).min(answer.hi);
                // Disjoint: one of the clocks stepped; what came before says nothing any more.
                if lo <= hi {
                    Possible { lo, hi, ..answer }
                } else {
                    answer
                }
            }
            None => answer,
        };
        *possible = Some(narrowed);
        let margin = MARGIN.as_millis() as i64;
        let in_use = self.cams_offset_ms.load(Ordering::Relaxed);
        if in_use < narrowed.hi.saturating_sub(margin)
            || in_use > narrowed.lo.saturating_add(margin)
        {
            let middle = narrowed
                .lo
                .saturating_add(narrowed.hi.saturating_sub(narrowed.lo) / 2);
            self.cams_offset_ms.store(middle, Ordering::Relaxed);
        }
    }
}

/// The offsets (CAMS's clock minus the gateway's, in milliseconds) that CAMS's answers allow, as
/// of the gateway's time `at`.
#[derive(Debug, Clone, Copy)]
struct Possible {
    lo: i64,
    hi: i64,
    at: SystemTime,
}

/// CAMS's clock as this gateway knows it: its own clock plus the offset CAMS's `Date` headers
/// show ([`ClockSkew::cams_offset_ms`]). Before CAMS has answered once the offset is zero: the
/// host's clock stands for CAMS's. The cache reads it, so that its entries' times are
/// CAMS's, compare with `PreviewUrlExpires` as they are, and mean the same to every replica
/// (each reads them with its own measurement). Within [`MARGIN`] of CAMS's real clock.
#[derive(Debug, Clone)]
pub(crate) struct CamsClock {
    host: SharedClock,
    skew: Arc<ClockSkew>,
}

impl CamsClock {
    pub(crate) fn new(host: SharedClock, skew: Arc<ClockSkew>) -> Self {
        Self { host, skew }
    }
}

impl Clock for CamsClock {
    fn now(&self) -> SystemTime {
        shift(self.host.now(), self.skew.cams_offset_ms())
    }
}

#[cfg(test)]
#[path = "skew_tests.rs"]
mod tests;
