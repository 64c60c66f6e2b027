//! The targets and the verdicts on them: throughput from interleaved rounds, the
//! latency the gateway adds on the cache-miss path, and whether resident memory stays flat under
//! steady load.

use std::{fmt::Write as _, fs, path::Path};

use anyhow::Context;

use super::{
    BASELINE_GRPC_1, BASELINE_HTTP, BASELINE_HTTP_1, BASELINE_PROXY, BASELINE_PROXY_1, MISS,
    MISS_1, STEADY, answers, load, mib, thousands,
};
use crate::record::Summary;

/// The targets.
const HIT_TARGET: f64 = 0.90;
const MISS_THROUGHPUT_TARGET: f64 = 0.70;
const MISS_ADDED_P50_TARGET_US: f64 = 100.0;
/// Resident memory may move by this much across the steady run and still count as flat: the
/// allocator keeps and returns pages in chunks.
const FLAT_RSS_KIB: i64 = 1024;

pub(super) fn miss_latency(out: &mut String, dir: &Path) -> anyhow::Result<()> {
    let runs = [
        (MISS, BASELINE_PROXY, BASELINE_HTTP),
        (MISS_1, BASELINE_PROXY_1, BASELINE_HTTP_1),
    ];
    let mut lines = Vec::new();
    for (gateway, proxy, direct) in runs {
        let (Some(g), Some(d)) = (load(dir, gateway)?, load(dir, direct)?) else {
            continue;
        };
        let mut line = added_latency(&g, &d);
        if let Some(p) = load(dir, proxy)? {
            let (g, p, d) = (&g.latency_ok_us, &p.latency_ok_us, &d.latency_ok_us);
            write!(
                line,
                " Of the p50, the gRPC hop itself (baseline 3 − baseline 2) is {:+.0} µs and the \
                 gateway's own features (gateway − baseline 3) {:+.0} µs; at p99, {:+.0} µs and \
                 {:+.0} µs.",
                p.p50 - d.p50,
                g.p50 - p.p50,
                p.p99 - d.p99,
                g.p99 - p.p99,
            )?;
        }
        lines.push(line);
    }
    if !lines.is_empty() {
        writeln!(
            out,
            "\nAdded latency per call on the cache-miss path (gateway − direct, successful calls):"
        )?;
        writeln!(out)?;
        for line in lines {
            writeln!(out, "- {line}")?;
        }
    }
    if let Some(grpc) = load(dir, BASELINE_GRPC_1)? {
        writeln!(
            out,
            "\nA bare gRPC round trip alone (baseline 1, 1 call in flight) takes p50 {:.0} µs on \
             this machine.",
            grpc.latency_ok_us.p50
        )?;
    }
    Ok(())
}

/// The target verdicts, from rounds in which the servers compared ran side by side and were
/// measured in turn (`rounds_hit.txt`: baseline 1 and gateway OK/s per line; `rounds_miss.txt`:
/// baseline 2, baseline 3 and gateway).
pub(super) fn rounds(out: &mut String, dir: &Path) -> anyhow::Result<()> {
    let hit = read_rounds(dir, "rounds_hit.txt", 2)?;
    let miss = read_rounds(dir, "rounds_miss.txt", 3)?;
    if hit.is_empty() && miss.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "\nTarget verdicts, from interleaved rounds: the servers compared run side by side and \
         are measured in turn, round after round, so that a noisy neighbour slows both alike; \
         each figure is the median of the per-round ratios (the per-round ratios in brackets)."
    )?;
    writeln!(out)?;
    if !hit.is_empty() {
        writeln!(
            out,
            "- Cache hit path vs baseline 1: {}",
            ratio_line(&hit, 0, 1, Some(HIT_TARGET))
        )?;
    }
    if !miss.is_empty() {
        writeln!(
            out,
            "- Cache miss path vs baseline 2: {}",
            ratio_line(&miss, 0, 2, Some(MISS_THROUGHPUT_TARGET))
        )?;
        writeln!(
            out,
            "- Cache miss path vs baseline 3 (what the gateway's features cost): {}",
            ratio_line(&miss, 1, 2, None)
        )?;
        writeln!(
            out,
            "- Baseline 3 vs baseline 2 (what any gRPC hop costs here): {}",
            ratio_line(&miss, 0, 1, None)
        )?;
    }
    Ok(())
}

/// `median % [r1 %, r2 %, …]` of column `mine` over column `base`, with the verdict if any.
fn ratio_line(rows: &[Vec<f64>], base: usize, mine: usize, target: Option<f64>) -> String {
    let ratios: Vec<f64> = rows
        .iter()
        .filter(|r| r[base] > 0.0)
        .map(|r| r[mine] / r[base])
        .collect();
    let Some(mid) = median(&ratios) else {
        return "no usable round".to_owned();
    };
    let each: Vec<String> = ratios
        .iter()
        .map(|r| format!("{:.0} %", r * 100.0))
        .collect();
    let verdict = match target {
        Some(t) if mid >= t => format!(" (target ≥ {:.0} %: met)", t * 100.0),
        Some(t) => format!(" (target ≥ {:.0} %: **missed**)", t * 100.0),
        None => String::new(),
    };
    format!("**{:.0} %**{verdict} [{}]", mid * 100.0, each.join(", "))
}

fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// Lines of `columns` calls-per-second figures; a missing file is no rounds.
fn read_rounds(dir: &Path, name: &str, columns: usize) -> anyhow::Result<Vec<Vec<f64>>> {
    let path = dir.join(name);
    let Ok(text) = fs::read_to_string(&path) else {
        return Ok(Vec::new());
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let row: Vec<f64> = line
                .split_whitespace()
                .map(str::parse::<f64>)
                .collect::<Result<_, _>>()
                .with_context(|| format!("{}: bad line {line:?}", path.display()))?;
            anyhow::ensure!(
                row.len() == columns,
                "{}: {line:?} has {} figures, expected {columns} (a run failed?)",
                path.display(),
                row.len()
            );
            Ok(row)
        })
        .collect()
}

fn added_latency(gateway: &Summary, direct: &Summary) -> String {
    let (g, d) = (&gateway.latency_ok_us, &direct.latency_ok_us);
    let added_p50 = g.p50 - d.p50;
    let verdict = if added_p50 < MISS_ADDED_P50_TARGET_US {
        "met"
    } else {
        "**missed**"
    };
    format!(
        "{} in flight: p50 {:+.0} µs (target < {MISS_ADDED_P50_TARGET_US:.0} µs: {verdict}), \
         p90 {:+.0} µs, p99 {:+.0} µs.",
        gateway.run.concurrency,
        added_p50,
        g.p90 - d.p90,
        g.p99 - d.p99,
    )
}

pub(super) fn memory(out: &mut String, dir: &Path) -> anyhow::Result<()> {
    let series = rss_series(dir)?;
    if series.is_empty() {
        return Ok(());
    }
    let points: Vec<String> = series
        .iter()
        .map(|(t, kib)| format!("{t} s: {}", mib(*kib)))
        .collect();
    write!(
        out,
        "\nResident memory (VmRSS) of the gateway during a steady cache-hit run: {}.",
        points.join(" · ")
    )?;
    // Every sample is taken under load, the first after the steady warm-up.
    if let (Some((from_t, from)), Some((to_t, to))) = (series.first(), series.last()) {
        let delta = *to as i64 - *from as i64;
        let verdict = if delta <= FLAT_RSS_KIB {
            "no growth"
        } else {
            "**grew**"
        };
        write!(
            out,
            " From {from_t} s to {to_t} s: {:+.1} MiB ({verdict}).",
            delta as f64 / 1024.0
        )?;
    }
    if let Some(steady) = load(dir, STEADY)? {
        write!(
            out,
            " The run: {} calls/s, p99 {:.0} µs, answers: {}.",
            thousands(steady.calls_per_s),
            steady.latency_us.p99,
            answers(&steady)
        )?;
    }
    writeln!(out)?;
    Ok(())
}

fn rss_series(dir: &Path) -> anyhow::Result<Vec<(u64, u64)>> {
    let path = dir.join("rss_series.txt");
    let Ok(text) = fs::read_to_string(&path) else {
        return Ok(Vec::new());
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut fields = line.split_whitespace().map(str::parse::<u64>);
            match (fields.next(), fields.next()) {
                (Some(Ok(t)), Some(Ok(kib))) => Ok((t, kib)),
                _ => anyhow::bail!("{}: bad line {line:?}", path.display()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[0.9, 0.5, 1.2]), Some(0.9));
        assert_eq!(median(&[1.0, 0.25, 0.75, 0.5]), Some(0.625));
    }

    #[test]
    fn rounds_judge_the_median_ratio() {
        let rows = vec![vec![100.0, 95.0], vec![100.0, 80.0], vec![200.0, 186.0]];
        let line = ratio_line(&rows, 0, 1, Some(0.9));
        assert!(line.starts_with("**93 %** (target ≥ 90 %: met)"), "{line}");
        assert!(line.ends_with("[95 %, 80 %, 93 %]"), "{line}");
        let line = ratio_line(&rows, 1, 0, None);
        assert!(line.starts_with("**108 %** ["), "{line}");
    }

    #[test]
    fn a_round_with_a_missing_figure_is_an_error() {
        let dir = std::env::temp_dir().join(format!("bench-rounds-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        fs::write(dir.join("r.txt"), "100 90\n100\n").expect("write");
        let err = read_rounds(&dir, "r.txt", 2).expect_err("short line");
        assert!(err.to_string().contains("expected 2"), "{err}");
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
