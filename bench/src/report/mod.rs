//! `report`: the Markdown that scripts/bench.sh puts between the `bench:start`/`bench:end`
//! markers of BENCHMARKS.md, from the files one run of the suite left in a directory:
//!
//! - `<scenario>.json`: the `--json` summary of a `load` or `baseline-http` run;
//! - `<scenario>.skipped`: why a scenario did not run (one line);
//! - `<scenario>.hwm_kb`: peak resident memory (VmHWM) of the server process, in KiB;
//! - `rss_series.txt`: `<seconds> <VmRSS KiB>` lines sampled during the steady-load run.
//!
//! [`table`] holds the scenarios and the table of one run each; [`verdicts`] the targets
//! and how the run met them (interleaved rounds, added latency, resident memory).

mod table;
mod verdicts;

use std::{fmt::Write as _, fs, path::Path};

use anyhow::Context;

use crate::{cli::ReportArgs, record::Summary};

/// Scenario file names, shared with scripts/bench.sh.
const BASELINE_GRPC: &str = "baseline_grpc";
const BASELINE_GRPC_NAGLE: &str = "baseline_grpc_nagle";
const HIT: &str = "hit";
const REJECT: &str = "reject";
const BASELINE_HTTP: &str = "baseline_http";
const BASELINE_PROXY: &str = "baseline_proxy";
const MISS: &str = "miss";
const BASELINE_GRPC_1: &str = "baseline_grpc_1";
const BASELINE_HTTP_1: &str = "baseline_http_1";
const BASELINE_PROXY_1: &str = "baseline_proxy_1";
const MISS_1: &str = "miss_1";
const STEADY: &str = "steady";

pub fn run(args: &ReportArgs) -> anyhow::Result<()> {
    print!("{}", render(args)?);
    Ok(())
}

fn render(args: &ReportArgs) -> anyhow::Result<String> {
    let dir = args.dir.as_path();
    let mut out = String::new();
    header(&mut out, args, dir)?;
    table::table(&mut out, dir)?;
    verdicts::rounds(&mut out, dir)?;
    verdicts::miss_latency(&mut out, dir)?;
    verdicts::memory(&mut out, dir)?;
    Ok(out)
}

fn header(out: &mut String, args: &ReportArgs, dir: &Path) -> anyhow::Result<()> {
    let revision = if args.revision.is_empty() {
        String::new()
    } else {
        format!(", revision `{}`", args.revision)
    };
    writeln!(
        out,
        "Command: `{}` ({} cores, {}{revision}).",
        args.command, args.cores, args.date
    )?;
    if let Some(base) = load(dir, BASELINE_GRPC)? {
        writeln!(
            out,
            "\nEach scenario: {:.1} s measured after {:.0} s of warm-up, {} calls in flight \
             (closed loop), {} HTTP/2 connection(s) for the gRPC runs; the load generator runs on \
             the same cores.",
            base.elapsed_s,
            base.run.warmup_s,
            base.run.concurrency,
            base.run.connections.unwrap_or(1)
        )?;
    }
    writeln!(out)?;
    Ok(())
}

/// What the answers were: cache header values and failure codes with their counts.
fn answers(s: &Summary) -> String {
    let mut parts: Vec<String> = s
        .cache
        .iter()
        .map(|(tag, n)| format!("{tag} {}", thousands(*n as f64)))
        .collect();
    let untagged = s.ok - s.cache.values().sum::<u64>();
    if untagged > 0 {
        parts.push(format!("OK {}", thousands(untagged as f64)));
    }
    parts.extend(
        s.errors
            .iter()
            .map(|(kind, e)| format!("{kind} {}", thousands(e.count as f64))),
    );
    parts.join(", ")
}

fn load(dir: &Path, name: &str) -> anyhow::Result<Option<Summary>> {
    let path = dir.join(format!("{name}.json"));
    let Ok(text) = fs::read_to_string(&path) else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a load summary", path.display()))
        .map(Some)
}

fn read_kib(dir: &Path, name: &str) -> anyhow::Result<Option<u64>> {
    let path = dir.join(name);
    let Ok(text) = fs::read_to_string(&path) else {
        return Ok(None);
    };
    text.trim()
        .parse()
        .with_context(|| format!("{}: not a number of KiB", path.display()))
        .map(Some)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// `12345.6` → `12 346`, the style of the rest of BENCHMARKS.md.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(12_345.6), "12 346");
        assert_eq!(thousands(1_000_000.0), "1 000 000");
    }
}
