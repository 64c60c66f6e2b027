#!/usr/bin/env bash
# The benchmarks of the cache and the quota under pressure and across replicas (issues 11, 12 and
# 13), in release mode: every figure is set against a baseline measured in the same run. The
# Markdown goes between the `fleet:start` and `fleet:end` markers of BENCHMARKS.md.
#
#   scripts/bench-fleet.sh             # about 9 minutes on 2 cores; scripts/bench.sh runs it last
#   BENCH_FLEET_SPAN=20s BENCH_ROUNDS=3 scripts/bench-fleet.sh     # a quick look
#
# Settings (environment): BENCH_FLEET_SPAN (the measured time of the quota-pressure and leverage
# runs, default 60s), BENCH_NOISY (the noisy-neighbours run, default 30s), BENCH_ROUNDS and
# BENCH_ROUND (interleaved rounds, default 5 of 4s), BENCH_CONCURRENCY (default 50),
# BENCH_RESULTS (default target/bench-fleet), BENCH_FLEET_ONLY (some of the scenarios: pressure
# noisy leverage rounds_redis_hit rounds_redis_miss rounds_shared_tier; no report). Needs redis-server, redis-cli, redis-benchmark
# (Debian: redis-server, redis-tools), jq and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

SPAN=${BENCH_FLEET_SPAN:-60s}
NOISY=${BENCH_NOISY:-30s}
ROUNDS=${BENCH_ROUNDS:-5}
ROUND=${BENCH_ROUND:-4s}
CONCURRENCY=${BENCH_CONCURRENCY:-50}
RESULTS=${BENCH_RESULTS:-target/bench-fleet}
CONNECTIONS=1
WARMUP=1s
DURATION=$ROUND
KEY_ID=bench
KEY_SECRET=bench-secret
GATEWAY=target/release/cams-flows
BENCH=target/release/cams-flows-bench

command_line() {
  local var settings=()
  for var in BENCH_FLEET_SPAN BENCH_NOISY BENCH_ROUNDS BENCH_ROUND BENCH_CONCURRENCY; do
    if [ -n "${!var:-}" ]; then settings+=("$var=${!var}"); fi
  done
  echo "${settings[*]:+${settings[*]} }scripts/bench-fleet.sh"
}
COMMAND=$(command_line)

for tool in redis-server redis-cli redis-benchmark jq python3; do
  command -v "$tool" >/dev/null || {
    echo "bench-fleet.sh: $tool is missing (Debian: apt-get install redis-server redis-tools jq python3)" >&2
    exit 1
  }
done

# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

# Lifted limits: the figures are the gateway's, not a quota's.
NO_TENANT_LIMIT=(--tenant-rps 1000000 --tenant-burst 100000)
NO_LIMITS=(--account-rps 100000 --tenant-rps 100000 --tenant-burst 100000)

# round_trips OUT CMD...: runs CMD while MONITOR watches the Redis, and writes to OUT the
# commands clients sent (a script counts once, not once per command it runs). MONITOR slows
# Redis down, so no latency is measured this way.
round_trips() {
  local out=$1 monitor
  shift
  redis-cli -p "$REDIS_PORT" monitor >"$out.monitor" &
  monitor=$!
  sleep 0.3
  "$@"
  sleep 0.3
  kill "$monitor" 2>/dev/null || true
  wait "$monitor" 2>/dev/null || true
  grep -cE '^[0-9.]+ \[[0-9]+ [0-9.]+:[0-9]+\]' "$out.monitor" >"$out" || true
}

# --- issue 11: quota pressure and noisy neighbours ----------------------------------------------

# 10 tenants x 10 flows through one gateway whose simulated CAMS allows 5 calls a second, TTL
# 30 s: the warm-up fills the cache (100 entries at 5 a second), then refresh-ahead must keep
# every entry fresh within the quota while 50 calls are in flight.
pressure() {
  step "quota pressure, warm: 10 tenants x 10 flows, $CONCURRENCY in flight, $SPAN"
  start_gateway pressure --sandbox --cache-ttl-ms 30000 "${NO_TENANT_LIMIT[@]}"
  local cams
  cams=$(grep -m1 'simulated CAMS started' "$WORK/pressure.log" | json_field endpoint)
  "$BENCH" load --json --label pressure --target "$GATEWAY_TARGET" --concurrency "$CONCURRENCY" \
    --tenants 10 --flows 10 --warmup 25s --duration "$SPAN" --cams-stats "$cams" \
    >"$RESULTS/pressure.json"
  stop "$GATEWAY_PID"
}

# Six tenants flood with calls that all need CAMS; four call at a steady, modest pace (one call
# every 4 s each, half their fair share of the 5 calls a second), also needing CAMS every time.
noisy() {
  step "noisy neighbours: 6 flooding tenants, 4 quiet ones, $NOISY"
  start_gateway noisy --sandbox "${NO_TENANT_LIMIT[@]}"
  # Each flooding worker calls again 100 ms after an answer or a refusal: 300 calls a second, 60
  # times the quota, without spinning the load generator's cores.
  "$BENCH" load --json --label noisy-flood --target "$GATEWAY_TARGET" --concurrency 30 --pace 100ms \
    --tenants 6 --tenant-prefix noisy- --flows 1000000 --flow-prefix sim:ok:flood- \
    --warmup 2s --duration "$NOISY" --timeout 2s >"$RESULTS/noisy_flood.json" &
  local flood=$!
  PIDS+=("$flood")
  "$BENCH" load --json --label noisy-quiet --target "$GATEWAY_TARGET" --concurrency 4 --pace 4s \
    --tenants 4 --tenant-prefix quiet- --flows 1000000 --flow-prefix sim:ok:quiet- \
    --warmup 2s --duration "$NOISY" --timeout 2s >"$RESULTS/noisy_quiet.json"
  wait "$flood"
  stop "$GATEWAY_PID"
}

# --- issue 13: leverage across replicas ----------------------------------------------------------

# leverage NAME REPLICAS [REDIS]: 10 tenants x 100 flows through REPLICAS gateways (sharing one
# Redis when REDIS is set) for SPAN from a cold start, against a simulated CAMS with the quota
# lifted, so that the CAMS calls counted are what the replicas need, not what a quota allows.
leverage() {
  local name=$1 replicas=$2 shared=${3:-} targets=() pids=() i
  step "leverage: $replicas replica(s)${shared:+ sharing one Redis}, 10 tenants x 100 flows, $SPAN"
  start_sandbox "sandbox_$name"
  if [ -n "$shared" ]; then start_redis "redis_$name"; fi
  for ((i = 0; i < replicas; i++)); do
    if [ -n "$shared" ]; then
      start_replica "${name}_$i" --cache-ttl-ms 30000 "${NO_LIMITS[@]}" --redis-url "$REDIS_URL"
    else
      start_replica "${name}_$i" --cache-ttl-ms 30000 "${NO_LIMITS[@]}"
    fi
    targets+=(--target "$GATEWAY_TARGET")
    pids+=("$GATEWAY_PID")
  done
  if [ -n "$shared" ]; then wait_admitted "$GATEWAY_TARGET"; fi
  "$BENCH" load --json --label "$name" "${targets[@]}" --concurrency "$CONCURRENCY" \
    --tenants 10 --flows 100 --warmup 0s --duration "$SPAN" --cams-stats "$SANDBOX_ENDPOINT" \
    >"$RESULTS/$name.json"
  for i in "${pids[@]}"; do stop "$i"; done
  if [ -n "$shared" ]; then stop "$REDIS_PID"; fi
  stop "$SANDBOX_PID"
}

# --- issue 12: the hit and miss paths with the quota in Redis ------------------------------------

# Interleaved rounds: the bare tonic server and a gateway whose quota and cache are in Redis, on
# the cache-hit path (a hit must not touch Redis).
rounds_redis_hit() {
  step "cache hit path with Redis vs baseline 1: $ROUNDS interleaved rounds of $ROUND"
  start_redis redis_hit
  start_bare rounds_bare
  start_gateway rounds_redis_hit --sandbox --cache-ttl-ms 30000 "${NO_TENANT_LIMIT[@]}" \
    --redis-url "$REDIS_URL"
  wait_admitted "$GATEWAY_TARGET"
  "$BENCH" load --target "$GATEWAY_TARGET" --concurrency "$CONCURRENCY" --warmup 0s \
    --duration 3s --flows 10 >/dev/null 2>&1
  local before i
  before=$(redis_commands)
  : >"$RESULTS/rounds_redis_hit.txt"
  for ((i = 0; i < ROUNDS; i++)); do
    echo "$(round_rate "$BARE_TARGET" --flows 10) $(round_rate "$GATEWAY_TARGET" --flows 10)" \
      >>"$RESULTS/rounds_redis_hit.txt"
  done
  echo $(($(redis_commands) - before)) >"$RESULTS/redis_hit_commands.txt"
  stop "$GATEWAY_PID"
  stop "$BARE_PID"
  stop "$REDIS_PID"
}

# One call in flight on the miss path (cache off, limits lifted), in turn through a gateway with
# the in-process gate and one with the lease log in Redis: the quota's added latency, and the
# Redis commands per CAMS call.
rounds_redis_miss() {
  step "miss path, in-process gate vs Redis lease log: $ROUNDS interleaved rounds of $ROUND"
  start_sandbox sandbox_redis_miss
  start_redis redis_miss
  start_replica miss_local --cache-ttl-ms 0 "${NO_LIMITS[@]}"
  local local_target=$GATEWAY_TARGET local_pid=$GATEWAY_PID i
  start_replica miss_redis --cache-ttl-ms 0 "${NO_LIMITS[@]}" --redis-url "$REDIS_URL"
  wait_admitted "$GATEWAY_TARGET"
  for ((i = 0; i < ROUNDS; i++)); do
    "$BENCH" load --json --target "$local_target" --concurrency 1 --tenants 10 --flows 1000 \
      --warmup 1s --duration "$ROUND" >"$RESULTS/miss_local_$i.json" 2>/dev/null
    "$BENCH" load --json --target "$GATEWAY_TARGET" --concurrency 1 --tenants 10 --flows 1000 \
      --warmup 1s --duration "$ROUND" >"$RESULTS/miss_redis_$i.json" 2>/dev/null
  done
  round_trips "$RESULTS/miss_redis.commands" "$BENCH" load --json --target "$GATEWAY_TARGET" \
    --concurrency 1 --tenants 10 --flows 1000 --warmup 0s --duration "$ROUND" \
    --cams-stats "$SANDBOX_ENDPOINT" >"$RESULTS/miss_redis_counted.json" 2>/dev/null
  stop "$GATEWAY_PID"
  stop "$local_pid"
  stop "$REDIS_PID"
  stop "$SANDBOX_PID"
}

# The shared tier against the first: a replica whose own cache holds one entry serves 1000
# (tenant, flow) pairs from Redis, another serves them from its own cache; one call in flight,
# interleaved with redis-benchmark's GET round trip on the same Redis. The cache's Redis only
# (cache.redis_url): the quota stays in process. Then the Redis commands of a CAMS fetch with the
# shared cache on.
rounds_shared_tier() {
  step "shared-tier hit vs first-tier hit: $ROUNDS interleaved rounds of $ROUND"
  start_sandbox sandbox_tiers
  start_redis redis_tiers
  start_replica first_tier --cache-ttl-ms 600000 "${NO_LIMITS[@]}" --cache-redis-url "$REDIS_URL"
  local first=$GATEWAY_TARGET first_pid=$GATEWAY_PID i
  start_replica shared_tier --cache-ttl-ms 600000 --cache-max-entries 1 "${NO_LIMITS[@]}" \
    --cache-redis-url "$REDIS_URL"
  # Fills Redis and the first replica's cache with the 1000 pairs.
  "$BENCH" load --target "$first" --concurrency 10 --tenants 10 --flows 100 --warmup 0s \
    --duration 3s >/dev/null 2>&1
  for ((i = 0; i < ROUNDS; i++)); do
    "$BENCH" load --json --target "$first" --concurrency 1 --tenants 10 --flows 100 \
      --warmup 1s --duration "$ROUND" >"$RESULTS/tier_first_$i.json" 2>/dev/null
    "$BENCH" load --json --target "$GATEWAY_TARGET" --concurrency 1 --tenants 10 --flows 100 \
      --warmup 1s --duration "$ROUND" >"$RESULTS/tier_shared_$i.json" 2>/dev/null
    redis-benchmark -p "$REDIS_PORT" -t get -c 1 -n 20000 --csv 2>/dev/null |
      awk -F'"' 'NR == 2 { print $10 }' >"$RESULTS/tier_rtt_$i.ms"
  done
  round_trips "$RESULTS/shared_fetch.commands" "$BENCH" load --json --target "$first" \
    --concurrency 10 --tenants 10 --flows 1000000 --flow-prefix sim:ok:fetch- --warmup 0s \
    --duration "$ROUND" --cams-stats "$SANDBOX_ENDPOINT" >"$RESULTS/shared_fetch.json" 2>/dev/null
  stop "$GATEWAY_PID"
  stop "$first_pid"
  stop "$REDIS_PID"
  stop "$SANDBOX_PID"
}

# --- the suite -----------------------------------------------------------------------------------

step "release build"
cargo build --release --workspace --bins

[ -n "${BENCH_FLEET_ONLY:-}" ] || rm -rf "$RESULTS"
mkdir -p "$RESULTS"

SCENARIOS=${BENCH_FLEET_ONLY:-pressure noisy leverage rounds_redis_hit rounds_redis_miss rounds_shared_tier}
for scenario in $SCENARIOS; do
  case $scenario in
    leverage)
      leverage leverage_1 1
      leverage leverage_3_alone 3
      leverage leverage_3_redis 3 redis
      ;;
    pressure | noisy | rounds_redis_hit | rounds_redis_miss | rounds_shared_tier) "$scenario" ;;
    *) echo "bench-fleet.sh: no scenario $scenario" >&2; exit 2 ;;
  esac
done
if [ -n "${BENCH_FLEET_ONLY:-}" ]; then
  step "only $SCENARIOS: results in $RESULTS, BENCHMARKS.md left as it is"
  exit 0
fi

step "report"
revision=$(tree_revision)
python3 scripts/bench-fleet-report.py "$RESULTS" "$(nproc)" "$(date -u '+%Y-%m-%d %H:%M UTC')" \
  "$COMMAND" "$revision" "$SPAN" "$NOISY" "$ROUNDS" "$ROUND" >"$WORK/report.md"
cat "$WORK/report.md"

splice_report fleet "The cache and the quota under pressure and across replicas (issues 11, 12, 13)" \
  "$WORK/report.md"
step "BENCHMARKS.md updated; raw results in $RESULTS"
