//! The table of the report: every scenario of the suite, measured once each, set against the
//! baselines it is compared with.

use std::{fmt::Write as _, fs, path::Path};

use super::{
    BASELINE_GRPC, BASELINE_GRPC_1, BASELINE_GRPC_NAGLE, BASELINE_HTTP, BASELINE_HTTP_1,
    BASELINE_PROXY, BASELINE_PROXY_1, HIT, MISS, MISS_1, REJECT, answers, load, mib, read_kib,
    thousands,
};
use crate::record::Summary;

/// Which figure a ratio compares.
#[derive(Debug, Clone, Copy)]
enum Rate {
    /// Successful answers per second.
    Ok,
    /// Every answer per second, failures included (the rejection path answers only failures).
    All,
}

/// A baseline a scenario is compared with. The table's ratios come from one run each; the
/// target verdicts come from the interleaved rounds (see [`super::verdicts`]).
struct Against {
    file: &'static str,
    name: &'static str,
    rate: Rate,
}

const fn against(file: &'static str, name: &'static str) -> Against {
    Against {
        file,
        name,
        rate: Rate::Ok,
    }
}

struct Scenario {
    file: &'static str,
    title: &'static str,
    against: &'static [Against],
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        file: BASELINE_GRPC,
        title: "**baseline 1**: bare tonic server, constant real-sized answer",
        against: &[],
    },
    Scenario {
        file: BASELINE_GRPC_NAGLE,
        title: "baseline 1 with Nagle left on (`--tcp-nodelay false`)",
        against: &[against(BASELINE_GRPC, "baseline 1")],
    },
    Scenario {
        file: HIT,
        title: "cache hit path (`serve --sandbox`)",
        against: &[against(BASELINE_GRPC, "baseline 1")],
    },
    Scenario {
        file: REJECT,
        title: "rate-limit rejection path (tenant 1 rps, burst 1)",
        against: &[Against {
            rate: Rate::All,
            ..against(BASELINE_GRPC, "baseline 1")
        }],
    },
    Scenario {
        file: BASELINE_HTTP,
        title: "**baseline 2**: straight to the simulated CAMS, one pooled `CamsClient`",
        against: &[],
    },
    Scenario {
        file: BASELINE_PROXY,
        title: "**baseline 3**: bare gRPC server forwarding each call through one `CamsClient`, \
                nothing else",
        against: &[against(BASELINE_HTTP, "baseline 2")],
    },
    Scenario {
        file: MISS,
        title: "cache miss path, limits lifted (cache off)",
        against: &[
            against(BASELINE_HTTP, "baseline 2"),
            against(BASELINE_PROXY, "baseline 3"),
        ],
    },
    Scenario {
        file: BASELINE_GRPC_1,
        title: "baseline 1, 1 call in flight",
        against: &[],
    },
    Scenario {
        file: BASELINE_HTTP_1,
        title: "baseline 2, 1 call in flight",
        against: &[],
    },
    Scenario {
        file: BASELINE_PROXY_1,
        title: "baseline 3, 1 call in flight",
        against: &[against(BASELINE_HTTP_1, "baseline 2")],
    },
    Scenario {
        file: MISS_1,
        title: "cache miss path, 1 call in flight",
        against: &[
            against(BASELINE_HTTP_1, "baseline 2"),
            against(BASELINE_PROXY_1, "baseline 3"),
        ],
    },
];

pub(super) fn table(out: &mut String, dir: &Path) -> anyhow::Result<()> {
    writeln!(
        out,
        "| scenario | calls/s | OK/s | p50 µs | p90 µs | p99 µs | p99.9 µs | vs baseline | \
         server peak RSS | answers |"
    )?;
    writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---|---:|---|")?;
    for scenario in SCENARIOS {
        let row = match load(dir, scenario.file)? {
            Some(summary) => measured_row(dir, scenario, &summary)?,
            None => skipped_row(dir, scenario)?,
        };
        writeln!(out, "{row}")?;
    }
    Ok(())
}

fn measured_row(dir: &Path, scenario: &Scenario, s: &Summary) -> anyhow::Result<String> {
    let p = &s.latency_us;
    let mut comparisons = Vec::new();
    for base in scenario.against {
        comparisons.push(match load(dir, base.file)? {
            Some(summary) => versus(s, &summary, base),
            None => format!("{} did not run", base.name),
        });
    }
    let versus = if comparisons.is_empty() {
        "—".to_owned()
    } else {
        comparisons.join("; ")
    };
    let hwm = read_kib(dir, &format!("{}.hwm_kb", scenario.file))?
        .map(mib)
        .unwrap_or_else(|| "—".to_owned());
    Ok(format!(
        "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {versus} | {hwm} | {} |",
        scenario.title,
        thousands(s.calls_per_s),
        thousands(s.ok_per_s),
        p.p50,
        p.p90,
        p.p99,
        p.p99_9,
        answers(s),
    ))
}

fn skipped_row(dir: &Path, scenario: &Scenario) -> anyhow::Result<String> {
    let why = fs::read_to_string(dir.join(format!("{}.skipped", scenario.file)))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "no result".to_owned());
    Ok(format!(
        "| {} | not run: {why} | | | | | | | | |",
        scenario.title
    ))
}

fn versus(s: &Summary, base: &Summary, against: &Against) -> String {
    let name = against.name;
    let (mine, theirs) = match against.rate {
        Rate::Ok => (s.ok_per_s, base.ok_per_s),
        Rate::All => (s.calls_per_s, base.calls_per_s),
    };
    if theirs <= 0.0 {
        return format!("{name} made no calls");
    }
    format!("{:.0} % of {name}", mine / theirs * 100.0)
}
