#!/usr/bin/env bash
# The benchmark suite of issue 5, in release mode, with one command: every scenario runs next to
# its baseline in the same run on the same machine, and the results table replaces the part of
# BENCHMARKS.md between the `bench:start` and `bench:end` markers.
#
#   scripts/bench.sh                      # about 16 minutes on 2 cores, scripts/bench-fleet.sh included
#   BENCH_DURATION=3s BENCH_STEADY=15s scripts/bench.sh   # a quick look
#
# Settings (environment): BENCH_DURATION (measured time per scenario, default 10s), BENCH_STEADY
# (the memory run, default 60s), BENCH_STEADY_WARMUP (load before its first sample, default 20s),
# BENCH_ROUNDS and BENCH_ROUND (the interleaved rounds behind the target verdicts, default 5 of
# 4s each), BENCH_WARMUP (default 3s), BENCH_CONCURRENCY (default 50),
# BENCH_CONNECTIONS (HTTP/2 connections of the load generator, default 1), BENCH_RESULTS (where
# the raw results are kept, default target/bench).
#
# Linux only: peak and current memory come from /proc/<pid>/status.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${BENCH_DURATION:-10s}
STEADY=${BENCH_STEADY:-60s}
STEADY_WARMUP=${BENCH_STEADY_WARMUP:-20s}
ROUNDS=${BENCH_ROUNDS:-5}
ROUND=${BENCH_ROUND:-4s}
WARMUP=${BENCH_WARMUP:-3s}
CONCURRENCY=${BENCH_CONCURRENCY:-50}
CONNECTIONS=${BENCH_CONNECTIONS:-1}
RESULTS=${BENCH_RESULTS:-target/bench}
# Credentials shared by the standalone simulated CAMS and the clients in front of it.
KEY_ID=bench
KEY_SECRET=bench-secret

GATEWAY=target/release/cams-flows
BENCH=target/release/cams-flows-bench

# The exact command, with the settings that were overridden, for the report.
command_line() {
  local var settings=()
  for var in BENCH_DURATION BENCH_STEADY BENCH_STEADY_WARMUP BENCH_ROUNDS BENCH_ROUND BENCH_WARMUP \
    BENCH_CONCURRENCY BENCH_CONNECTIONS; do
    if [ -n "${!var:-}" ]; then settings+=("$var=${!var}"); fi
  done
  echo "${settings[*]:+${settings[*]} }scripts/bench.sh"
}
COMMAND=$(command_line)

# Processes, the gateway and its baselines, measured runs: shared with scripts/bench-fleet.sh.
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

# --- scenarios -----------------------------------------------------------------------------------

# Calls spread over 10 000 (tenant, flow) pairs, so that no two calls in flight share a key and
# the miss path measures misses, not coalescing.
MISS_KEYS=(--tenants 10 --flows 1000)
# With the cache on, a tenant may be allowed more than the account's CAMS quota; lifted so that
# the hit path meets no limit.
NO_TENANT_LIMIT=(--tenant-rps 1000000 --tenant-burst 100000)
# The miss path with every limit lifted far above what the machine can serve, so that the
# figure is the gateway's own cost, not a quota.
NO_LIMITS=(--account-rps 1000000 "${NO_TENANT_LIMIT[@]}")

# baseline_grpc NAME CONCURRENCY
baseline_grpc() {
  step "baseline 1: bare tonic server ($2 in flight)"
  start_bare "$1"
  load "$1" "$2" "$BARE_TARGET" --flows 10
  record_peak "$BARE_PID" "$1"
  stop "$BARE_PID"
}

# Evidence for a server setting: the same bare server with Nagle's algorithm left on.
baseline_grpc_nagle() {
  step "baseline 1 with TCP_NODELAY off"
  start_bare bare_nagle --tcp-nodelay false
  load baseline_grpc_nagle "$CONCURRENCY" "$BARE_TARGET" --flows 10
  record_peak "$BARE_PID" baseline_grpc_nagle
  stop "$BARE_PID"
}

# cache_hit NAME: the in-process simulated CAMS of --sandbox allows 5 calls a second, as CAMS
# does, so the warm-up fills the cache for the 10 flows within about 2 s.
cache_hit() {
  step "cache hit path"
  start_gateway "$1" --sandbox --cache-ttl-ms 30000 "${NO_TENANT_LIMIT[@]}"
  load "$1" "$CONCURRENCY" "$GATEWAY_TARGET" --flows 10
  record_peak "$GATEWAY_PID" "$1"
  stop "$GATEWAY_PID"
}

rejection() {
  step "rate-limit rejection path"
  start_gateway reject --sandbox --tenant-rps 1 --tenant-burst 1
  load reject "$CONCURRENCY" "$GATEWAY_TARGET" --flows 1
  record_peak "$GATEWAY_PID" reject
  stop "$GATEWAY_PID"
}

# baseline_http NAME CONCURRENCY. Each run, here and in cache_miss, gets a fresh simulated CAMS,
# so that none inherits another's nonces.
baseline_http() {
  step "baseline 2: straight to the simulated CAMS ($2 in flight)"
  start_sandbox "sandbox_$1"
  "$BENCH" baseline-http --json --label "$1" "${UPSTREAM[@]}" --concurrency "$2" \
    --warmup "$WARMUP" --duration "$DURATION" "${MISS_KEYS[@]}" \
    >"$RESULTS/$1.json"
  stop "$SANDBOX_PID"
}

# baseline_proxy NAME CONCURRENCY: a bare gRPC server forwarding to its own simulated CAMS.
baseline_proxy() {
  step "baseline 3: bare gRPC-to-CAMS proxy ($2 in flight)"
  start_sandbox "sandbox_$1"
  start_proxy "$1"
  load "$1" "$2" "$PROXY_TARGET" "${MISS_KEYS[@]}"
  record_peak "$PROXY_PID" "$1"
  stop "$PROXY_PID"
  stop "$SANDBOX_PID"
}

# cache_miss NAME CONCURRENCY
cache_miss() {
  step "cache miss path, limits lifted ($2 in flight)"
  start_sandbox "sandbox_$1"
  start_miss_gateway "$1"
  load "$1" "$2" "$GATEWAY_TARGET" "${MISS_KEYS[@]}"
  record_peak "$GATEWAY_PID" "$1"
  stop "$GATEWAY_PID"
  stop "$SANDBOX_PID"
}

# The target verdicts come from interleaved rounds: the servers compared run side by side and are
# measured in turn, round after round, so that a noisy neighbour slows both alike; the verdict is
# the median of the per-round ratios (one long run each, above, gives the absolute figures).
rounds_hit() {
  step "cache hit path vs baseline 1: $ROUNDS interleaved rounds of $ROUND"
  start_bare rounds_bare
  start_gateway rounds_hit --sandbox --cache-ttl-ms 30000 "${NO_TENANT_LIMIT[@]}"
  # Fills the cache (the in-process simulated CAMS allows 5 calls a second).
  "$BENCH" load --target "$GATEWAY_TARGET" --concurrency "$CONCURRENCY" --warmup 0s \
    --duration "$WARMUP" --flows 10 >/dev/null 2>&1
  : >"$RESULTS/rounds_hit.txt"
  local i
  for ((i = 0; i < ROUNDS; i++)); do
    echo "$(round_rate "$BARE_TARGET" --flows 10) $(round_rate "$GATEWAY_TARGET" --flows 10)" \
      >>"$RESULTS/rounds_hit.txt"
  done
  stop "$GATEWAY_PID"
  stop "$BARE_PID"
}

# Direct HTTP, baseline 3 and the gateway's miss path, all against one simulated CAMS.
rounds_miss() {
  step "cache miss path vs baselines 2 and 3: $ROUNDS interleaved rounds of $ROUND"
  start_sandbox rounds_sandbox
  start_proxy rounds_proxy
  start_miss_gateway rounds_miss
  local i direct
  : >"$RESULTS/rounds_miss.txt"
  for ((i = 0; i < ROUNDS; i++)); do
    direct=$("$BENCH" baseline-http --json "${UPSTREAM[@]}" --concurrency "$CONCURRENCY" \
      --warmup 1s --duration "$ROUND" "${MISS_KEYS[@]}" 2>/dev/null | ok_per_s)
    echo "$direct $(round_rate "$PROXY_TARGET" "${MISS_KEYS[@]}") \
$(round_rate "$GATEWAY_TARGET" "${MISS_KEYS[@]}")" >>"$RESULTS/rounds_miss.txt"
  done
  stop "$GATEWAY_PID"
  stop "$PROXY_PID"
  stop "$SANDBOX_PID"
}

# Resident memory every 10 s through a long cache-hit run at steady load. The 0 s sample is taken
# after the steady warm-up: the cache is full by then, and the allocator has grown its heap to
# what the load needs (mimalloc takes 10-20 s to get there; a leak keeps growing after that).
steady_memory() {
  step "resident memory over $STEADY of steady cache-hit load"
  start_gateway steady --sandbox "${NO_TENANT_LIMIT[@]}"
  "$BENCH" load --json --label steady --target "$GATEWAY_TARGET" --concurrency "$CONCURRENCY" \
    --connections "$CONNECTIONS" --warmup "$STEADY_WARMUP" --duration "$STEADY" --flows 10 \
    >"$RESULTS/steady.json" &
  local load_pid=$! seconds=0 total
  PIDS+=("$load_pid")
  total=$(seconds_of "$STEADY")
  total=${total%.*}
  sleep "$(seconds_of "$STEADY_WARMUP")"
  : >"$RESULTS/rss_series.txt"
  while ((seconds <= total)); do
    echo "$seconds $(proc_kib "$GATEWAY_PID" VmRSS)" >>"$RESULTS/rss_series.txt"
    ((seconds + 10 <= total)) || break
    sleep 10
    seconds=$((seconds + 10))
  done
  wait "$load_pid"
  record_peak "$GATEWAY_PID" steady
  stop "$GATEWAY_PID"
}

# --- the suite -----------------------------------------------------------------------------------

step "release build"
cargo build --release --workspace --bins

rm -rf "$RESULTS"
mkdir -p "$RESULTS"

baseline_grpc baseline_grpc "$CONCURRENCY"
baseline_grpc_nagle
cache_hit hit
rejection
baseline_http baseline_http "$CONCURRENCY"
baseline_proxy baseline_proxy "$CONCURRENCY"
cache_miss miss "$CONCURRENCY"
# One call in flight: the added latency per call without queueing behind other calls, and the
# shares of it that the gRPC hop (baseline 3) and the gateway's own features take.
baseline_grpc baseline_grpc_1 1
baseline_http baseline_http_1 1
baseline_proxy baseline_proxy_1 1
cache_miss miss_1 1
rounds_hit
rounds_miss
steady_memory

step "report"
revision=$(tree_revision)
"$BENCH" report --dir "$RESULTS" --cores "$(nproc)" --date "$(date -u '+%Y-%m-%d %H:%M UTC')" \
  --command "$COMMAND" --revision "$revision" >"$WORK/report.md"
cat "$WORK/report.md"

splice_report bench "Gateway cost against the limits of the machine (issue 5)" "$WORK/report.md"
step "BENCHMARKS.md updated; raw results in $RESULTS"

# The cache and the quota under pressure and across replicas: a script of its own (it needs
# Redis), run here too so that one command measures everything. BENCH_FLEET=0 skips it.
if [ "${BENCH_FLEET:-1}" != 0 ]; then
  scripts/bench-fleet.sh
fi
