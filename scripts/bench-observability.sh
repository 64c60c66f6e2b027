#!/usr/bin/env bash
# What observability costs the cache-hit path, the gateway's highest-volume path (issue 14):
# one release build of the gateway runs side by side as
#
#   off      no admin listener and no OTLP endpoint: no metrics recorded, no span machinery
#   metrics  --admin-listen: every call counted and timed (what production runs)
#   unsampled an OTLP endpoint with OTEL_TRACES_SAMPLER=always_off: a span per call, none exported
#   base     (with BENCH_BASE_REV) the gateway built from a revision without observability
#
# and `cams-flows-bench load` measures each in turn, round after round (interleaved, the order
# rotating), so that a noisy neighbour slows all alike. The verdicts are medians of per-round
# ratios against `off`: metrics must keep at least 97 %; `off` against `base` shows whether the
# disabled machinery costs anything. The table replaces the part of BENCHMARKS.md between the
# `bench-observability:start` and `bench-observability:end` markers.
#
#   scripts/bench-observability.sh                          # about 4 minutes on 2 cores
#   BENCH_BASE_REV=a6460db scripts/bench-observability.sh   # with the base (+ its release build)
#
# Settings (environment): BENCH_ROUNDS (default 9), BENCH_ROUND (measured time per round and
# variant, default 4s), BENCH_CONCURRENCY (default 50), BENCH_BASE_REV (none by default),
# BENCH_RESULTS (default target/bench-observability).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${BENCH_ROUNDS:-9}
ROUND=${BENCH_ROUND:-4s}
CONCURRENCY=${BENCH_CONCURRENCY:-50}
BASE_REV=${BENCH_BASE_REV:-}
RESULTS=${BENCH_RESULTS:-target/bench-observability}
GATEWAY=target/release/cams-flows
BENCH=target/release/cams-flows-bench
BASE_TARGET_DIR=target/bench-base

CONNECTIONS=1

# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

BASE_TREE=""
cleanup_more() {
  if [ -n "$BASE_TREE" ]; then git worktree remove --force "$BASE_TREE" >/dev/null 2>&1 || true; fi
}

# obs_gateway NAME BINARY ENV... -- FLAGS...: a gateway built from BINARY on a free port, cache
# on, tenant limit lifted, against its in-process simulated CAMS, logging JSON at info (hits log
# nothing then), its cache filled; its target goes to TARGET_<NAME>.
obs_gateway() {
  local name=$1 binary=$2 env=() built=$GATEWAY
  shift 2
  while [ "$1" != "--" ]; do env+=("$1"); shift; done
  shift
  GATEWAY=$binary
  GATEWAY_ENV=("${env[@]}")
  start_gateway "$name" --sandbox --cache-ttl-ms 3600000 --tenant-rps 1000000 \
    --tenant-burst 100000 "$@"
  GATEWAY=$built
  GATEWAY_ENV=()
  printf -v "TARGET_$name" '%s' "$GATEWAY_TARGET"
  # Fills the cache for the 10 flows (the in-process simulated CAMS allows 5 calls a second).
  "$BENCH" load --target "$GATEWAY_TARGET" --concurrency "$CONCURRENCY" --warmup 0s \
    --duration 3s --flows 10 >/dev/null 2>&1
}

step "release build"
cargo build --release --workspace --bins

VARIANTS=(off metrics unsampled)
BASE_GATEWAY=""
if [ -n "$BASE_REV" ]; then
  step "release build of the base revision $BASE_REV (its own target dir)"
  BASE_TREE="$WORK/base"
  git worktree add --detach "$BASE_TREE" "$BASE_REV" >/dev/null
  cargo build --release --locked --bin cams-flows --manifest-path "$BASE_TREE/Cargo.toml" \
    --target-dir "$BASE_TARGET_DIR"
  BASE_GATEWAY="$BASE_TARGET_DIR/release/cams-flows"
  VARIANTS+=(base)
fi

rm -rf "$RESULTS"
mkdir -p "$RESULTS"

step "gateways: ${VARIANTS[*]}"
obs_gateway off "$GATEWAY" --
obs_gateway metrics "$GATEWAY" -- --admin-listen 127.0.0.1:0
# Port 9 (discard) on loopback: nothing listens, and nothing is sampled, so nothing is sent.
obs_gateway unsampled "$GATEWAY" OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:9 \
  OTEL_TRACES_SAMPLER=always_off --
if [ -n "$BASE_GATEWAY" ]; then obs_gateway base "$BASE_GATEWAY" --; fi

step "$ROUNDS interleaved rounds of $ROUND per variant, $CONCURRENCY calls in flight"
: >"$RESULTS/rounds.txt"
n=${#VARIANTS[@]}
for ((r = 0; r < ROUNDS; r++)); do
  declare -A rate=()
  for ((k = 0; k < n; k++)); do
    v=${VARIANTS[$(((r + k) % n))]}
    target_var="TARGET_$v"
    rate[$v]=$(round_rate "${!target_var}" --flows 10)
  done
  line=""
  for v in "${VARIANTS[@]}"; do line+="${rate[$v]} "; done
  echo "$line" | tee -a "$RESULTS/rounds.txt" >&2
  unset rate
done

step "report"
revision=$(tree_revision)
command="scripts/bench-observability.sh"
for var in BENCH_ROUNDS BENCH_ROUND BENCH_CONCURRENCY BENCH_BASE_REV; do
  if [ -n "${!var:-}" ]; then command="$var=${!var} $command"; fi
done
python3 - "$RESULTS/rounds.txt" "${VARIANTS[@]}" >"$WORK/report.md" <<EOF
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
names = sys.argv[2:]
col = {name: [r[i] for r in rows] for i, name in enumerate(names)}
what = {
    "off": "no admin listener, no OTLP endpoint (metrics and tracing off)",
    "metrics": "\`--admin-listen\`: every call counted and timed",
    "unsampled": "OTLP endpoint set, \`OTEL_TRACES_SAMPLER=always_off\`: a span per call, none exported",
    "base": "the gateway at $BASE_REV, before observability",
}
print(f"Measured $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores, revision $revision, with "
      f"\`$command\`: cache hits over 10 flows, $CONCURRENCY calls in flight, one connection; "
      f"{len(rows)} interleaved rounds of $ROUND per variant. Ratios are medians of the per-round "
      f"ratios to \`off\`.")
print()
print("| variant | what | median calls/s | min | max | ratio to off (median) |")
print("|---|---|---:|---:|---:|---:|")
for name in names:
    ratios = [x / o for x, o in zip(col[name], col["off"]) if o > 0]
    print(f"| {name} | {what[name]} | {statistics.median(col[name]):.0f} | {min(col[name]):.0f} "
          f"| {max(col[name]):.0f} | {statistics.median(ratios) * 100:.1f} % |")
ratios = [m / o for m, o in zip(col["metrics"], col["off"]) if o > 0]
verdict = statistics.median(ratios)
print()
print(f"Metrics on keep **{verdict * 100:.1f} %** of the cache-hit throughput with metrics off "
      f"(target: at least 97 %): {'met' if verdict >= 0.97 else 'NOT met'}.")
if "base" in col:
    ratios = [o / b for o, b in zip(col["off"], col["base"]) if b > 0]
    print(f"Tracing and metrics off run at **{statistics.median(ratios) * 100:.1f} %** of the "
          f"build without them (base = 100 %).")
EOF
cat "$WORK/report.md"

splice_report bench-observability "What observability costs the cache-hit path (issue 14)" \
  "$WORK/report.md"
step "BENCHMARKS.md updated; raw rounds in $RESULTS/rounds.txt"
