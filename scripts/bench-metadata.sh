#!/usr/bin/env bash
# The cost of the RateLimit metadata (issue 23), in release mode: GetFlow's cache-hit path with
# the metadata on (the default) and off (`--server-ratelimit-metadata false`) against the bare
# tonic server, in interleaved rounds. The Markdown goes between the `metadata:start` and
# `metadata:end` markers of BENCHMARKS.md.
#
#   scripts/bench-metadata.sh                    # about 2 minutes on 2 cores
#   BENCH_ROUNDS=3 scripts/bench-metadata.sh     # a quick look
#
# Settings (environment): BENCH_ROUNDS and BENCH_ROUND (interleaved rounds, default 7 of 3s),
# BENCH_CONCURRENCY (default 50), BENCH_RESULTS (default target/bench-metadata). Needs jq and
# python3.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${BENCH_ROUNDS:-7}
ROUND=${BENCH_ROUND:-3s}
CONCURRENCY=${BENCH_CONCURRENCY:-50}
RESULTS=${BENCH_RESULTS:-target/bench-metadata}
CONNECTIONS=1
WARMUP=1s
DURATION=$ROUND
GATEWAY=target/release/cams-flows
BENCH=target/release/cams-flows-bench

command_line() {
  local var settings=()
  for var in BENCH_ROUNDS BENCH_ROUND BENCH_CONCURRENCY; do
    if [ -n "${!var:-}" ]; then settings+=("$var=${!var}"); fi
  done
  echo "${settings[*]:+${settings[*]} }scripts/bench-metadata.sh"
}
COMMAND=$(command_line)

# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

# A tenant limit far above what the machine serves: every call is admitted and still carries
# the tenant's policy and standing when the metadata is on.
NO_TENANT_LIMIT=(--tenant-rps 1000000 --tenant-burst 100000)
KEYS=(--flows 10)

# round_json OUT TARGET PID: one round, its summary in OUT and the server's CPU ticks in OUT.cpu.
round_json() {
  local before
  before=$(cpu_ticks "$3")
  "$BENCH" load --json --target "$2" --concurrency "$CONCURRENCY" --connections "$CONNECTIONS" \
    --warmup 0s --duration "$ROUND" "${KEYS[@]}" >"$1" 2>/dev/null
  echo $(($(cpu_ticks "$3") - before)) >"$1.cpu"
}

step "release build"
cargo build --release --workspace --bins
mkdir -p "$RESULTS"
rm -f "$RESULTS"/*.json "$RESULTS"/*.cpu

step "GetFlow cache-hit path, metadata on and off, vs the bare server: $ROUNDS rounds of $ROUND"
start_bare bare
start_gateway meta_on --sandbox --cache-ttl-ms 600000 "${NO_TENANT_LIMIT[@]}"
ON_TARGET=$GATEWAY_TARGET ON_PID=$GATEWAY_PID
start_gateway meta_off --sandbox --cache-ttl-ms 600000 "${NO_TENANT_LIMIT[@]}" \
  --server-ratelimit-metadata false
OFF_TARGET=$GATEWAY_TARGET OFF_PID=$GATEWAY_PID
# Fills both caches (the in-process simulated CAMS allows 5 calls a second).
for target in "$ON_TARGET" "$OFF_TARGET"; do
  "$BENCH" load --target "$target" --concurrency 10 --warmup 0s --duration 3s "${KEYS[@]}" \
    >/dev/null 2>&1
done
SIDES=(bare on off)
for ((i = 0; i < ROUNDS; i++)); do
  # The order rotates from round to round, so that no side always follows the same one.
  for ((j = 0; j < 3; j++)); do
    side=${SIDES[$(((i + j) % 3))]}
    case $side in
      bare) round_json "$RESULTS/bare_$i.json" "$BARE_TARGET" "$BARE_PID" ;;
      on) round_json "$RESULTS/on_$i.json" "$ON_TARGET" "$ON_PID" ;;
      off) round_json "$RESULTS/off_$i.json" "$OFF_TARGET" "$OFF_PID" ;;
    esac
  done
done
stop "$OFF_PID"
stop "$ON_PID"
stop "$BARE_PID"

step "report"
python3 - "$RESULTS" "$ROUNDS" "$ROUND" "$CONCURRENCY" "$(date -u '+%Y-%m-%d %H:%M UTC')" \
  "$(tree_revision)" "$COMMAND" "$(nproc)" "$(getconf CLK_TCK)" >"$WORK/report.md" <<'PY'
import json, statistics, sys
results, rounds, round_, concurrency, when, revision, command, cores, tck = sys.argv[1:]
rounds, tck = int(rounds), int(tck)
def load(name):
    with open(f"{results}/{name}.json") as f:
        return json.load(f)
def cpu_us(name):
    with open(f"{results}/{name}.json.cpu") as f:
        return int(f.read()) / tck * 1e6 / max(load(name)["ok"], 1)
out = [f"Measured {when} on {cores} cores (a shared machine: timing is noisy), revision "
       f"{revision}, release build, with `{command}`.", "",
       f"GetFlow over 10 flows of one tenant, every answer a hit, {concurrency} calls in flight "
       f"over one connection; {rounds} interleaved rounds of {round_} (the order of the three "
       f"servers rotating); verdicts are medians of the per-round ratios. Server CPU per call: "
       f"the CPU time (user and system) the server used in a round over the round's calls, "
       f"median over the rounds.", "",
       "| server | calls/s (median) | per-round ratios to the bare server | ratio (median) | "
       "target | server CPU per call | failed | answers not hits |",
       "|---|---:|---|---:|---|---:|---:|---:|"]
bare = [load(f"bare_{i}") for i in range(rounds)]
for side, label in (("bare", "bare tonic server"), ("on", "gateway, metadata on (default)"),
                    ("off", "gateway, metadata off")):
    runs = [load(f"{side}_{i}") for i in range(rounds)]
    ratios = [r["ok_per_s"] / b["ok_per_s"] for r, b in zip(runs, bare)]
    ratio = statistics.median(ratios)
    cpu = statistics.median(cpu_us(f"{side}_{i}") for i in range(rounds))
    failed = sum(r["failed"] for r in runs)
    not_hit = sum(v for r in runs for k, v in r.get("cache", {}).items() if k != "hit")
    target = "—"
    if side == "on":
        target = "≥ 95 %: " + ("met" if ratio >= 0.95 else "**missed**")
    out.append(f"| {label} | {statistics.median(r['ok_per_s'] for r in runs):,.0f} | "
               f"{' '.join(f'{x:.0%}' for x in ratios)} | **{ratio:.1%}** | {target} | "
               f"{cpu:.1f} µs | {failed} | {not_hit if side != 'bare' else '—'} |")
on = [load(f"on_{i}") for i in range(rounds)]
off = [load(f"off_{i}") for i in range(rounds)]
on_off = statistics.median(a["ok_per_s"] / b["ok_per_s"] for a, b in zip(on, off))
out += ["", f"Metadata on against off, same rounds: **{on_off:.1%}** of the throughput "
        f"(median of the per-round ratios)."]
print("\n".join(out))
PY
cat "$WORK/report.md"
splice_report metadata "The RateLimit metadata on the cache-hit path (issue 23)" "$WORK/report.md"
step "BENCHMARKS.md updated; raw results in $RESULTS"
