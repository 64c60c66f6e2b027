//! What one call came to, the per-worker tally of many, and the summary printed at the end.

use std::{borrow::Cow, collections::BTreeMap, fmt::Write as _, time::Duration};

use anyhow::Context;
use cams_flows::{domain::Action, sandbox::SandboxStats};
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

/// The calls of one read (latencies are kept for all reads together: a histogram per read and
/// worker would take megabytes).
#[derive(Debug, Clone, Default)]
struct ReadTally {
    calls: u64,
    ok: u64,
    cache: BTreeMap<Cow<'static, str>, u64>,
}

/// The measured calls of one worker; workers' tallies are merged at the end, so recording takes
/// no lock and shares no cache line.
#[derive(Debug, Clone)]
pub struct Tally {
    all: Histogram<u64>,
    ok: Histogram<u64>,
    errors: BTreeMap<Cow<'static, str>, ErrorTally>,
    cache: BTreeMap<Cow<'static, str>, u64>,
    /// By read, indexed by [`Action::index`].
    reads: [ReadTally; Action::ALL.len()],
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
            reads: Default::default(),
        })
    }

    /// One measured call of the read `read`.
    pub fn record(&mut self, latency: Duration, read: Action, outcome: Outcome) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.all.saturating_record(ns);
        let counts = &mut self.reads[read.index()];
        counts.calls += 1;
        match outcome {
            Outcome::Ok { cache } => {
                self.ok.saturating_record(ns);
                counts.ok += 1;
                if let Some(tag) = cache {
                    *counts.cache.entry(tag.clone()).or_default() += 1;
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
        for (mine, theirs) in self.reads.iter_mut().zip(other.reads) {
            mine.calls += theirs.calls;
            mine.ok += theirs.ok;
            for (tag, n) in theirs.cache {
                *mine.cache.entry(tag).or_default() += n;
            }
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
            by_rpc: Action::ALL
                .into_iter()
                .zip(&self.reads)
                .filter(|(_, counts)| counts.calls > 0)
                .map(|(read, counts)| {
                    let summary = RpcSummary {
                        calls: counts.calls,
                        ok: counts.ok,
                        failed: counts.calls - counts.ok,
                        cache: counts
                            .cache
                            .iter()
                            .map(|(tag, n)| (tag.to_string(), *n))
                            .collect(),
                    };
                    (read.grpc_method().to_owned(), summary)
                })
                .collect(),
            cams_calls: None,
            calls_per_cams_call: None,
            cams_throttled: None,
            cams_by_action: None,
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

/// The calls of one RPC in a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RpcSummary {
    pub calls: u64,
    pub ok: u64,
    pub failed: u64,
    /// Successful answers by their `x-cams-cache` header value.
    pub cache: BTreeMap<String, u64>,
}

/// What one CAMS action saw at the simulated CAMS during the measured phase, against the client
/// calls of the RPC it answers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ActionCalls {
    /// The gateway's RPC that the action answers.
    pub rpc: String,
    /// Successful client calls of that RPC.
    pub answered: u64,
    /// Calls of the action the simulated CAMS accepted.
    pub cams_calls: u64,
    /// Calls of the action it refused with `Throttling.User`.
    pub cams_throttled: u64,
    /// `answered / cams_calls`; `None` when CAMS saw none.
    pub calls_per_cams_call: Option<f64>,
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
    /// The calls by RPC (gRPC method name), those that were made.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_rpc: BTreeMap<String, RpcSummary>,
    /// Calls the simulated CAMS accepted during the measured phase (`--cams-stats`), every
    /// action together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cams_calls: Option<u64>,
    /// Successful client calls per CAMS call: what the cache and coalescing save.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls_per_cams_call: Option<f64>,
    /// Calls the simulated CAMS refused with `Throttling.User` meanwhile, every action together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cams_throttled: Option<u64>,
    /// The same by CAMS action (CAMS's name: `GetFlow`, `ListFlow`, `GetFlowPreviewUrl`,
    /// `GetFlowJSONAssest`), each against the client calls of the RPC it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cams_by_action: Option<BTreeMap<String, ActionCalls>>,
}

impl Summary {
    /// Records what the simulated CAMS saw during the measured phase, from its statistics when
    /// the phase began and when it ended: in all, and per action against the RPC it answers.
    pub fn with_cams_stats(&mut self, before: &SandboxStats, after: &SandboxStats) {
        let cams_calls = after.accepted.saturating_sub(before.accepted);
        self.cams_calls = Some(cams_calls);
        self.calls_per_cams_call = ratio(self.ok, cams_calls);
        self.cams_throttled = Some(after.throttled.saturating_sub(before.throttled));
        let by_action = Action::ALL
            .into_iter()
            .map(|action| {
                let (was, is) = (
                    before.action(action.cams_name()),
                    after.action(action.cams_name()),
                );
                let rpc = action.grpc_method();
                let answered = self.by_rpc.get(rpc).map_or(0, |r| r.ok);
                let cams_calls = is.accepted.saturating_sub(was.accepted);
                let calls = ActionCalls {
                    rpc: rpc.to_owned(),
                    answered,
                    cams_calls,
                    cams_throttled: is.throttled.saturating_sub(was.throttled),
                    calls_per_cams_call: ratio(answered, cams_calls),
                };
                (action.cams_name().to_owned(), calls)
            })
            .collect();
        self.cams_by_action = Some(by_action);
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
            let _ = writeln!(out, "x-cams-cache {}", tags(&self.cache));
        }
        // One RPC's counts are the run's: listed when there are several.
        if self.by_rpc.len() > 1 {
            for (rpc, r) in &self.by_rpc {
                let _ = writeln!(
                    out,
                    "  {rpc:<18} calls {} (ok {}, failed {}); {}",
                    r.calls,
                    r.ok,
                    r.failed,
                    tags(&r.cache)
                );
            }
        }
        if let Some(cams) = self.cams_calls {
            let _ = writeln!(
                out,
                "CAMS calls  {cams} ({} client calls answered per CAMS call), throttled {}",
                per(self.calls_per_cams_call),
                self.cams_throttled.unwrap_or(0)
            );
        }
        for (action, a) in self.cams_by_action.iter().flatten() {
            if a.answered == 0 && a.cams_calls == 0 && a.cams_throttled == 0 {
                continue;
            }
            let _ = writeln!(
                out,
                "  {action:<18} {} CAMS calls for {} {} answers ({} per CAMS call), throttled {}",
                a.cams_calls,
                a.answered,
                a.rpc,
                per(a.calls_per_cams_call),
                a.cams_throttled
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

fn ratio(answered: u64, cams_calls: u64) -> Option<f64> {
    (cams_calls > 0).then(|| answered as f64 / cams_calls as f64)
}

fn per(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "-".to_owned(), |r| format!("{r:.1}"))
}

fn tags(cache: &BTreeMap<impl std::fmt::Display, u64>) -> String {
    let tags: Vec<String> = cache.iter().map(|(t, n)| format!("{t} {n}")).collect();
    tags.join(", ")
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
            Action::GetFlow,
            Outcome::Ok {
                cache: Some("hit".into()),
            },
        );
        let mut b = Tally::new()?;
        b.record(
            Duration::from_micros(300),
            Action::ListFlow,
            Outcome::Failed {
                kind: "RESOURCE_EXHAUSTED".into(),
                detail: "slow down".into(),
            },
        );
        b.record(
            Duration::from_micros(200),
            Action::GetFlow,
            Outcome::Ok {
                cache: Some("miss".into()),
            },
        );
        a.merge(b)?;
        let s = a.summarize(info(), Duration::from_secs(2));
        assert_eq!((s.calls, s.ok, s.failed), (3, 2, 1));
        assert_eq!(s.calls_per_s, 1.5);
        assert_eq!(s.errors["RESOURCE_EXHAUSTED"].example, "slow down");
        assert_eq!(s.cache["hit"], 1);
        assert!((s.latency_ok_us.p50 - 100.0).abs() < 1.0);
        assert!((s.latency_us.max - 300.0).abs() < 1.0);
        let get = &s.by_rpc["GetFlow"];
        assert_eq!((get.calls, get.ok, get.failed), (2, 2, 0));
        assert_eq!((get.cache["hit"], get.cache["miss"]), (1, 1));
        let list = &s.by_rpc["ListFlows"];
        assert_eq!((list.calls, list.ok, list.failed), (1, 0, 1));
        assert!(!s.by_rpc.contains_key("GetFlowJsonAsset"));
        Ok(())
    }

    /// The CAMS calls of each action are set against the answers of the RPC it serves.
    #[test]
    fn cams_calls_are_counted_per_action() -> anyhow::Result<()> {
        let mut tally = Tally::new()?;
        for _ in 0..6 {
            let ok = Outcome::Ok { cache: None };
            tally.record(Duration::from_micros(100), Action::GetFlowPreviewUrl, ok);
        }
        for _ in 0..4 {
            let ok = Outcome::Ok { cache: None };
            tally.record(Duration::from_micros(100), Action::GetFlowJsonAsset, ok);
        }
        let mut s = tally.summarize(info(), Duration::from_secs(1));
        let stats = |preview: u64, json: u64, throttled: u64| -> anyhow::Result<SandboxStats> {
            let mut stats = SandboxStats::default();
            let by = |name: &str| stats.by_action.get(name).cloned().unwrap_or_default();
            let mut p = by("GetFlowPreviewUrl");
            p.accepted = preview;
            let mut j = by("GetFlowJSONAssest");
            (j.accepted, j.throttled) = (json, throttled);
            stats.by_action.insert("GetFlowPreviewUrl".into(), p);
            stats.by_action.insert("GetFlowJSONAssest".into(), j);
            stats.accepted = preview + json;
            stats.throttled = throttled;
            anyhow::ensure!(stats.by_action.len() == 4, "four actions: {stats:?}");
            Ok(stats)
        };
        s.with_cams_stats(&stats(10, 20, 1)?, &stats(13, 22, 1)?);
        assert_eq!((s.cams_calls, s.cams_throttled), (Some(5), Some(0)));
        let by = s.cams_by_action.as_ref().context("per action")?;
        let preview = &by["GetFlowPreviewUrl"];
        assert_eq!(
            (preview.rpc.as_str(), preview.answered),
            ("GetFlowPreviewUrl", 6)
        );
        assert_eq!(
            (preview.cams_calls, preview.calls_per_cams_call),
            (3, Some(2.0))
        );
        let json = &by["GetFlowJSONAssest"];
        assert_eq!((json.rpc.as_str(), json.answered), ("GetFlowJsonAsset", 4));
        assert_eq!((json.cams_calls, json.calls_per_cams_call), (2, Some(2.0)));
        assert_eq!(by["ListFlow"].calls_per_cams_call, None);
        Ok(())
    }
}
