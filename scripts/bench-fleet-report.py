#!/usr/bin/env python3
"""Renders the results of scripts/bench-fleet.sh as the Markdown of BENCHMARKS.md.

Arguments: RESULTS_DIR CORES DATE COMMAND REVISION SPAN NOISY ROUNDS ROUND.
"""

import json
import statistics
import sys
from pathlib import Path

# The issues' targets.
PRESSURE_MAX_MS = 50.0
REDIS_HIT_RATIO = 0.90
SHARED_TIER_SLACK_US = 50.0
# The cache settings of the quota-pressure run: TTL, refresh window (a fifth), jitter (10 %).
TTL_S, WINDOW_S, JITTER = 30.0, 6.0, 0.10


def load(path):
    return json.loads(Path(path).read_text())


def verdict(met):
    return "met" if met else "**missed**"


def seconds(span):
    span = span.strip()
    if span.endswith("ms"):
        return float(span[:-2]) / 1000
    if span.endswith("s"):
        return float(span[:-1])
    if span.endswith("m"):
        return float(span[:-1]) * 60
    return float(span)


def cache_tags(summary):
    tags = summary.get("cache", {})
    return ", ".join(f"{k} {v}" for k, v in sorted(tags.items())) or "-"


def main():
    (results, cores, date, command, revision, span, noisy, rounds, round_) = sys.argv[1:10]
    d = Path(results)
    out = []
    w = out.append
    w(f"Measured {date} on {cores} cores, revision {revision}, release build, with")
    w(f"`{command}` (also run by `scripts/bench.sh`). Each figure is set against a baseline measured")
    w("in the same run; the verdicts of the hit paths come from interleaved rounds (median of the")
    w(f"per-round ratios, {rounds} rounds of {round_}).")
    w("")

    # Issue 11: quota pressure.
    p = load(d / "pressure.json")
    span_s = seconds(span)
    need = 100 * span_s / (TTL_S - WINDOW_S)
    need_max = 100 * span_s / (TTL_S * (1 - JITTER) - WINDOW_S)
    max_ms = p["latency_ok_us"]["max"] / 1000
    w("### Quota pressure, warm (issue 11)")
    w("")
    w(f"10 tenants × 10 flows through one gateway whose simulated CAMS allows 5 calls a second, TTL")
    w(f"30 s (refresh window 6 s, jitter ±10 %), {p['run']['concurrency']} calls in flight, {span}")
    w("measured after a 25 s warm-up that fills the cache.")
    w("")
    w("| calls | failed | p50 | p99 | slowest ok call | CAMS calls | client calls per CAMS call | CAMS calls the refreshes need |")
    w("|---:|---:|---:|---:|---:|---:|---:|---:|")
    w(f"| {p['calls']} | {p['failed']} | {p['latency_ok_us']['p50']:.0f} µs | {p['latency_ok_us']['p99']:.0f} µs "
      f"| {max_ms:.1f} ms | {p.get('cams_calls', '-')} | {p.get('calls_per_cams_call', 0):,.0f} "
      f"| {need:.0f} (at most {need_max:.0f} with the shortest jittered TTLs) |")
    w("")
    w(f"Targets: 0 failed calls: {verdict(p['failed'] == 0)}; slowest successful call under "
      f"{PRESSURE_MAX_MS:.0f} ms: {verdict(max_ms < PRESSURE_MAX_MS)}; CAMS calls no more than the "
      f"refreshes need: {verdict(p.get('cams_calls', 10**9) <= need_max)}. Answers: {cache_tags(p)}.")
    w("")

    # Issue 11: noisy neighbours.
    flood = load(d / "noisy_flood.json")
    quiet = load(d / "noisy_quiet.json")
    w("### Noisy neighbours (issue 11)")
    w("")
    w(f"One gateway, simulated CAMS at 5 calls a second, {noisy}: six tenants flood it with calls that")
    w("all need CAMS (30 workers, each calling again 100 ms after any answer: about 60 times the")
    w("quota); four quiet tenants call at a steady pace (one call every 4 s each), also needing CAMS")
    w("every time.")
    w("")
    w("| tenants | calls | served | refused | served % | p50 (served) | p99 (served) |")
    w("|---|---:|---:|---:|---:|---:|---:|")
    for name, s in (("6 flooding", flood), ("4 quiet", quiet)):
        pct = 100 * s["ok"] / max(1, s["calls"])
        w(f"| {name} | {s['calls']} | {s['ok']} | {s['failed']} | {pct:.1f} % "
          f"| {s['latency_ok_us']['p50'] / 1000:.1f} ms | {s['latency_ok_us']['p99'] / 1000:.1f} ms |")
    w("")
    w(f"Target: 100 % of the quiet calls served: {verdict(quiet['failed'] == 0 and quiet['calls'] > 0)}.")
    w("")

    # Issue 13: leverage.
    runs = [("1 replica", "leverage_1"), ("3 replicas, each on its own", "leverage_3_alone"),
            ("3 replicas sharing one Redis", "leverage_3_redis")]
    w("### Leverage across replicas (issue 13)")
    w("")
    w(f"10 tenants × 100 flows, {span} from a cold start (TTL 30 s, refresh-ahead on), 50 calls in")
    w("flight spread over the replicas in turn, against a simulated CAMS with the quota lifted, so")
    w("that the CAMS calls counted are what the replicas need.")
    w("")
    w("| run | calls served | CAMS calls | client calls per CAMS call | answers |")
    w("|---|---:|---:|---:|---|")
    cams = {}
    for label, name in runs:
        s = load(d / f"{name}.json")
        cams[name] = s.get("cams_calls", 0)
        w(f"| {label} | {s['ok']} | {s.get('cams_calls', '-')} | {s.get('calls_per_cams_call', 0):,.0f} | {cache_tags(s)} |")
    w("")
    ratio = cams["leverage_3_redis"] / max(1, cams["leverage_1"])
    w(f"Three replicas sharing Redis make {ratio:.2f} times the CAMS calls of one replica alone "
      f"(target: equal, within 10 %: {verdict(ratio <= 1.10)}); on their own they make "
      f"{cams['leverage_3_alone'] / max(1, cams['leverage_1']):.2f} times as many.")
    w("")

    # Issue 12: the hit path with Redis.
    rows = [list(map(float, line.split())) for line in (d / "rounds_redis_hit.txt").read_text().split("\n") if line.strip()]
    ratios = [g / b for b, g in rows if b > 0]
    mid = statistics.median(ratios) if ratios else 0.0
    commands = int((d / "redis_hit_commands.txt").read_text().strip() or 0)
    w("### Cache-hit path with the quota and the cache in Redis (issue 12)")
    w("")
    w("Bare tonic server (baseline 1) and a gateway configured with `redis.url`, measured in turn,")
    w(f"{CONCURRENCY_NOTE}.")
    w("")
    w("| round | baseline 1 calls/s | gateway with Redis calls/s | ratio |")
    w("|---:|---:|---:|---:|")
    for i, (b, g) in enumerate(rows, 1):
        w(f"| {i} | {b:,.0f} | {g:,.0f} | {100 * g / b:.0f} % |")
    w("")
    hits = sum(g for _, g in rows) * seconds(round_)
    w(f"**{100 * mid:.0f} %** (target ≥ {100 * REDIS_HIT_RATIO:.0f} %: {verdict(mid >= REDIS_HIT_RATIO)}). "
      f"Redis processed {commands} commands during the rounds (those run by scripts included), for "
      f"about {hits:,.0f} hits: the health probe (one `PING` a second) and a batch of the tenant's "
      "calls a second; none per hit.")
    w("")

    # Issue 12: the miss path.
    local = [load(d / f"miss_local_{i}.json") for i in range(int(rounds))]
    redis_ = [load(d / f"miss_redis_{i}.json") for i in range(int(rounds))]
    cmds = int((d / "miss_redis.commands").read_text().strip() or 0)
    camss = load(d / "miss_redis_counted.json").get("cams_calls", 0)
    med = lambda runs, q: statistics.median(s["latency_ok_us"][q] for s in runs)
    w("### Miss path: the account quota in Redis against the in-process gate (issue 12)")
    w("")
    w("One call in flight, cache off, limits lifted, the same simulated CAMS; a gateway with the")
    w("in-process gate and one with the lease log in Redis (same host, loopback), measured in turn.")
    w("Medians of the rounds:")
    w("")
    w("| | p50 | p99 |")
    w("|---|---:|---:|")
    w(f"| in-process gate | {med(local, 'p50'):.0f} µs | {med(local, 'p99'):.0f} µs |")
    w(f"| lease log in Redis | {med(redis_, 'p50'):.0f} µs | {med(redis_, 'p99'):.0f} µs |")
    w(f"| added by Redis | {med(redis_, 'p50') - med(local, 'p50'):+.0f} µs | {med(redis_, 'p99') - med(local, 'p99'):+.0f} µs |")
    w("")
    w(f"Redis commands per CAMS call: **{cmds / max(1, camss):.2f}** ({cmds} commands for {camss} CAMS calls,")
    w("counted with `MONITOR` in a separate run: the admission and the completion scripts, the")
    w("tenants' batches, and the once-a-second `PING`; a script counts once).")
    w("")

    # Issue 13: the shared tier.
    first = [load(d / f"tier_first_{i}.json") for i in range(int(rounds))]
    shared = [load(d / f"tier_shared_{i}.json") for i in range(int(rounds))]
    rtt = [1000 * float((d / f"tier_rtt_{i}.ms").read_text().strip() or 0) for i in range(int(rounds))]
    f50, s50, r50 = med(first, "p50"), med(shared, "p50"), statistics.median(rtt)
    tags = {}
    for s in shared:
        for k, v in s.get("cache", {}).items():
            tags[k] = tags.get(k, 0) + v
    share = 100 * tags.get("shared", 0) / max(1, sum(tags.values()))
    fetch = load(d / "shared_fetch.json")
    fetch_cmds = int((d / "shared_fetch.commands").read_text().strip() or 0)
    w("### Shared-tier hit against first-tier hit (issue 13)")
    w("")
    w("One call in flight over 1000 (tenant, flow) pairs: a replica serving them from its own cache,")
    w("and one whose own cache holds a single entry, so that it serves them from Redis; between them,")
    w("`redis-benchmark -t get -c 1` measures one Redis round trip. Medians of the rounds:")
    w("")
    w("| first-tier hit p50 | shared-tier hit p50 | added | one Redis round trip p50 | target |")
    w("|---:|---:|---:|---:|---|")
    added = s50 - f50
    w(f"| {f50:.0f} µs | {s50:.0f} µs | {added:+.0f} µs | {r50:.0f} µs | added < round trip + {SHARED_TIER_SLACK_US:.0f} µs: {verdict(added < r50 + SHARED_TIER_SLACK_US)} |")
    w("")
    w(f"{share:.1f} % of the second replica's answers were `shared`. A CAMS fetch with the shared cache")
    w(f"on costs **{fetch_cmds / max(1, fetch.get('cams_calls', 0)):.2f}** Redis commands ({fetch_cmds} for "
      f"{fetch.get('cams_calls', 0)} fetches, counted with `MONITOR`: the lookup's `GET`, the claim, the second")
    w("look, and the fill script; the quota stays in process here).")
    print("\n".join(out))


CONCURRENCY_NOTE = "50 calls in flight over 10 flows, the cache warm"

if __name__ == "__main__":
    main()
