//! What one call came to, the per-worker tally of many, and the summary printed at the end.

use std::{borrow::Cow, collections::BTreeMap, fmt::Write as _, time::Duration};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::{cli::Shape, keys::Keys};

/// Latencies are kept in nanoseconds from 1 µs (finer is noise here) up to a minute, to three
/// significant digits.
const LOWEST_NS: u64 = 1_000;
const HIGHEST_NS: u64 = 60_000_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;
/// Longest example message kept per error kind.
const EXAMPLE_CHARS: usize = 160;

/// The result of one call, as the driver records it.
#[derive(Debug)]
pub enum Outcome {
    Ok {
        /// The `x-cams-cache` header (hit, shared, miss, coalesced, stale), when the answer
        /// carried one.
        cache: Option<Cow<'static, str>>,
    },
    Failed {
        /// A gRPC code name (`RESOURCE_EXHAUSTED`) or an upstream error kind.
        kind: Cow<'static, str>,
        detail: String,
    },
}

#[derive(Debug, Clone, Default)]
struct ErrorTally {
    count: u64,
    example: String,
}

/// The measured calls of one worker; workers' tallies are merged at the end, so recording takes
/// no lock and shares no cache line.
#[derive(Debug, Clone)]
pub struct Tally {
    all: Histogram<u64>,
    ok: Histogram<u64>,
    errors: BTreeMap<Cow<'static, str>, ErrorTally>,
    cache: BTreeMap<Cow<'static, str>, u64>,
}

impl Tally {
    pub fn new() -> anyhow::Result<Self> {
        let histogram = || {
            Histogram::new_with_bounds(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_DIGITS)
                .context("latency histogram")
        };
        Ok(Self {
            all: histogram()?,
            ok: histogram()?,
            errors: BTreeMap::new(),
            cache: BTreeMap::new(),
        })
    }

    pub fn record(&mut self, latency: Duration, outcome: Outcome) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.all.saturating_record(ns);
        match outcome {
            Outcome::Ok { cache } => {
                self.ok.saturating_record(ns);
                if let Some(tag) = cache {
                    *self.cache.entry(tag).or_default() += 1;
                }
            }
            Outcome::Failed { kind, detail } => {
                let tally = self.errors.entry(kind).or_default();
                if tally.count == 0 {
                    tally.example = detail.chars().take(EXAMPLE_CHARS).collect();
                }
                tally.count += 1;
            }
        }
    }

    pub fn merge(&mut self, other: Tally) -> anyhow::Result<()> {
        self.all.add(&other.all).context("merging latencies")?;
        self.ok.add(&other.ok).context("merging latencies")?;
        for (kind, tally) in other.errors {
            let mine = self.errors.entry(kind).or_default();
            if mine.count == 0 {
                mine.example = tally.example;
            }
            mine.count += tally.count;
        }
        for (tag, n) in other.cache {
            *self.cache.entry(tag).or_default() += n;
        }
        Ok(())
    }

    pub fn summarize(&self, run: RunInfo, elapsed: Duration) -> Summary {
        let secs = elapsed.as_secs_f64().max(f64::EPSILON);
        let calls = self.all.len();
        let ok = self.ok.len();
        Summary {
            run,
            elapsed_s: secs,
            calls,
            ok,
            failed: calls - ok,
            calls_per_s: calls as f64 / secs,
            ok_per_s: ok as f64 / secs,
            latency_us: Percentiles::of(&self.all),
            latency_ok_us: Percentiles::of(&self.ok),
            errors: self
                .errors
                .iter()
                .map(|(kind, t)| {
                    let summary = ErrorSummary {
                        count: t.count,
                        example: t.example.clone(),
                    };
                    (kind.to_string(), summary)
                })
                .collect(),
            cache: self
                .cache
                .iter()
                .map(|(tag, n)| (tag.to_string(), *n))
                .collect(),
            cams_calls: None,
            calls_per_cams_call: None,
        }
    }
}

/// What was run, carried into the summary so a JSON file explains itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    pub label: Option<String>,
    /// `grpc` (through a gRPC server) or `http` (straight to the simulated CAMS).
    pub mode: String,
    pub target: String,
    pub concurrency: u32,
    pub connections: Option<u32>,
    pub tenants: usize,
    pub flows: usize,
    pub warmup_s: f64,
}

impl RunInfo {
    pub fn new(
        shape: &Shape,
        keys: &Keys,
        mode: &str,
        target: &str,
        connections: Option<u32>,
    ) -> Self {
        Self {
            label: shape.label.clone(),
            mode: mode.to_owned(),
            target: target.to_owned(),
            concurrency: shape.concurrency,
            connections,
            tenants: keys.tenants.len(),
            flows: keys.flows.len(),
            warmup_s: shape.warmup.as_secs_f64(),
        }
    }
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
    pub mean: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let us = |ns: u64| ns as f64 / 1_000.0;
        Self {
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p99_9: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            mean: h.mean() / 1_000.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorSummary {
    pub count: u64,
    /// The message of the first such failure.
    pub example: String,
}

/// The result of a measured run; `--json` prints exactly this.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub run: RunInfo,
    /// From the end of the warm-up until the last measured call returned.
    pub elapsed_s: f64,
    pub calls: u64,
    pub ok: u64,
    pub failed: u64,
    pub calls_per_s: f64,
    pub ok_per_s: f64,
    /// Every measured call, failures included.
    pub latency_us: Percentiles,
    /// Successful calls only.
    pub latency_ok_us: Percentiles,
    /// Failures by gRPC code name (or upstream error kind for the HTTP baseline).
    pub errors: BTreeMap<String, ErrorSummary>,
    /// Successful answers by their `x-cams-cache` header value.
    pub cache: BTreeMap<String, u64>,
    /// Calls the simulated CAMS accepted during the measured phase (`--cams-stats`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cams_calls: Option<u64>,
    /// Successful client calls per CAMS call: what the cache and coalescing save.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls_per_cams_call: Option<f64>,
}

impl Summary {
    /// Records what the simulated CAMS accepted during the measured phase.
    pub fn with_cams_calls(&mut self, cams_calls: u64) {
        self.cams_calls = Some(cams_calls);
        self.calls_per_cams_call = (cams_calls > 0).then(|| self.ok as f64 / cams_calls as f64);
    }

    /// The human-readable table printed at the end of a run.
    pub fn table(&self) -> String {
        let run = &self.run;
        let mut out = String::new();
        let connections = run
            .connections
            .map(|c| format!(", {c} connection{}", if c == 1 { "" } else { "s" }))
            .unwrap_or_default();
        let label = run
            .label
            .as_deref()
            .map(|l| format!(" [{l}]"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "target      {} ({}, {} in flight{connections}){label}",
            run.target, run.mode, run.concurrency
        );
        let _ = writeln!(
            out,
            "keys        {} tenant(s) x {} flow(s)",
            run.tenants, run.flows
        );
        let _ = writeln!(
            out,
            "measured    {:.2} s after {:.1} s of warm-up",
            self.elapsed_s, run.warmup_s
        );
        let _ = writeln!(
            out,
            "calls       {} (ok {}, failed {})",
            self.calls, self.ok, self.failed
        );
        let _ = writeln!(
            out,
            "calls/s     {:.0} (ok {:.0})",
            self.calls_per_s, self.ok_per_s
        );
        let _ = writeln!(
            out,
            "latency µs  {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "p50", "p90", "p99", "p99.9", "max", "mean"
        );
        for (name, p) in [("  all", &self.latency_us), ("  ok", &self.latency_ok_us)] {
            let _ = writeln!(
                out,
                "{name:<11} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
                p.p50, p.p90, p.p99, p.p99_9, p.max, p.mean
            );
        }
        if self.errors.is_empty() {
            let _ = writeln!(out, "errors      none");
        }
        for (kind, e) in &self.errors {
            let _ = writeln!(out, "error       {kind} x{}: {}", e.count, e.example);
        }
        if !self.cache.is_empty() {
            let tags: Vec<String> = self.cache.iter().map(|(t, n)| format!("{t} {n}")).collect();
            let _ = writeln!(out, "x-cams-cache {}", tags.join(", "));
        }
        if let Some(cams) = self.cams_calls {
            let per = self
                .calls_per_cams_call
                .map_or_else(|| "-".to_owned(), |r| format!("{r:.1}"));
            let _ = writeln!(
                out,
                "CAMS calls  {cams} ({per} client calls answered per CAMS call)"
            );
        }
        out
    }

    /// Prints the table, or the JSON on stdout and the table on stderr.
    pub fn print(&self, json: bool) -> anyhow::Result<()> {
        if json {
            eprint!("{}", self.table());
            println!("{}", serde_json::to_string_pretty(self)?);
        } else {
            print!("{}", self.table());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> RunInfo {
        RunInfo {
            label: None,
            mode: "grpc".into(),
            target: "t".into(),
            concurrency: 1,
            connections: Some(1),
            tenants: 1,
            flows: 1,
            warmup_s: 0.0,
        }
    }

    #[test]
    fn merged_tallies_count_every_call() -> anyhow::Result<()> {
        let mut a = Tally::new()?;
        a.record(
            Duration::from_micros(100),
            Outcome::Ok {
                cache: Some("hit".into()),
            },
        );
        let mut b = Tally::new()?;
        b.record(
            Duration::from_micros(300),
            Outcome::Failed {
                kind: "RESOURCE_EXHAUSTED".into(),
                detail: "slow down".into(),
            },
        );
        a.merge(b)?;
        let s = a.summarize(info(), Duration::from_secs(2));
        assert_eq!((s.calls, s.ok, s.failed), (2, 1, 1));
        assert_eq!(s.calls_per_s, 1.0);
        assert_eq!(s.errors["RESOURCE_EXHAUSTED"].example, "slow down");
        assert_eq!(s.cache["hit"], 1);
        assert!((s.latency_ok_us.p50 - 100.0).abs() < 1.0);
        assert!((s.latency_us.max - 300.0).abs() < 1.0);
        Ok(())
    }
}
