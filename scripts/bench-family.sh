#!/usr/bin/env bash
# The benchmarks of the Flow read family (issue 21), in release mode: the cache-hit path of each
# of FlowService's four reads against the bare tonic server answering the same RPC, in
# interleaved rounds; then one mixed workload of the four reads against a simulated CAMS with
# its real quota (5 calls a second per action), counted per CAMS action. The Markdown goes
# between the `family:start` and `family:end` markers of BENCHMARKS.md.
#
#   scripts/bench-family.sh                                  # about 5 minutes on 2 cores
#   BENCH_ROUNDS=3 BENCH_MIXED=15s scripts/bench-family.sh   # a quick look
#
# Settings (environment): BENCH_ROUNDS and BENCH_ROUND (interleaved rounds, default 5 of 3s),
# BENCH_MIXED (the measured time of the mixed workload, default 30s), BENCH_CONCURRENCY
# (default 50), BENCH_RESULTS (default target/bench-family). Needs jq and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${BENCH_ROUNDS:-5}
ROUND=${BENCH_ROUND:-3s}
MIXED=${BENCH_MIXED:-30s}
CONCURRENCY=${BENCH_CONCURRENCY:-50}
RESULTS=${BENCH_RESULTS:-target/bench-family}
CONNECTIONS=1
WARMUP=1s
DURATION=$ROUND
KEY_ID=bench
KEY_SECRET=bench-secret
GATEWAY=target/release/cams-flows
BENCH=target/release/cams-flows-bench

command_line() {
  local var settings=()
  for var in BENCH_ROUNDS BENCH_ROUND BENCH_MIXED BENCH_CONCURRENCY; do
    if [ -n "${!var:-}" ]; then settings+=("$var=${!var}"); fi
  done
  echo "${settings[*]:+${settings[*]} }scripts/bench-family.sh"
}
COMMAND=$(command_line)

for tool in jq python3; do
  command -v "$tool" >/dev/null || {
    echo "bench-family.sh: $tool is missing (Debian: apt-get install jq python3)" >&2
    exit 1
  }
done

# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

# With the cache on, a tenant may be allowed more than the account's CAMS quota; lifted so that
# the hit path meets no limit.
NO_TENANT_LIMIT=(--tenant-rps 1000000 --tenant-burst 100000)

# The keys of each read on the hit path: GetFlow, GetFlowPreviewUrl and GetFlowJsonAsset over
# 10 flows of one tenant; ListFlows over the first 20-flow page of 10 catalogue spaces of 100
# flows each (the bare server answers a constant 20-flow page of such a space).
READS=(get-flow list-flows preview-url json-asset)
keys_of() {
  case $1 in
    list-flows) echo "--rpc list-flows --page-size 20 --tenants 10 --tenant-prefix sim:catalogue:100:" ;;
    *) echo "--rpc $1 --flows 10" ;;
  esac
}

# round_json OUT TARGET PID ARGS...: one round against the server PID serving TARGET, its summary
# in OUT, the CPU time the server used meanwhile (clock ticks) in OUT.cpu and the load
# generator's (seconds, user and system) in OUT.client_cpu. No warm-up, so that the CPU time is
# that of the calls counted (the connection and the first calls are a few milliseconds of the
# round, on both sides).
round_json() {
  local out=$1 target=$2 pid=$3 before TIMEFORMAT='%3U %3S'
  shift 3
  before=$(cpu_ticks "$pid")
  { time "$BENCH" load --json --target "$target" --concurrency "$CONCURRENCY" \
    --connections "$CONNECTIONS" --warmup 0s --duration "$ROUND" "$@" >"$out" 2>/dev/null; } \
    2>"$out.client_cpu"
  echo $(($(cpu_ticks "$pid") - before)) >"$out.cpu"
}

# Interleaved rounds: in each round, each read in turn against the bare server and the gateway,
# whose cache the in-process simulated CAMS (5 calls a second per action) has filled first. A
# read's keys go unread while the others are measured, and refresh-ahead refreshes only what is
# read: the TTL (10 minutes) outlasts the rounds, so that every answer measured is a hit.
rounds_family() {
  step "cache-hit path of the four reads vs the bare server: $ROUNDS interleaved rounds of $ROUND"
  start_bare family_bare --page-size 20
  start_gateway family_hit --sandbox --cache-ttl-ms 600000 "${NO_TENANT_LIMIT[@]}"
  local read i keys
  for read in "${READS[@]}"; do
    read -ra keys <<<"$(keys_of "$read")"
    "$BENCH" load --target "$GATEWAY_TARGET" --concurrency "$CONCURRENCY" --warmup 0s \
      --duration 3s "${keys[@]}" >/dev/null 2>&1
  done
  for ((i = 0; i < ROUNDS; i++)); do
    for read in "${READS[@]}"; do
      read -ra keys <<<"$(keys_of "$read")"
      # The side measured first alternates from round to round, so that neither always follows
      # the other.
      if ((i % 2 == 0)); then
        round_json "$RESULTS/hit_${read}_bare_$i.json" "$BARE_TARGET" "$BARE_PID" "${keys[@]}"
        round_json "$RESULTS/hit_${read}_gateway_$i.json" "$GATEWAY_TARGET" "$GATEWAY_PID" "${keys[@]}"
      else
        round_json "$RESULTS/hit_${read}_gateway_$i.json" "$GATEWAY_TARGET" "$GATEWAY_PID" "${keys[@]}"
        round_json "$RESULTS/hit_${read}_bare_$i.json" "$BARE_TARGET" "$BARE_PID" "${keys[@]}"
      fi
    done
  done
  record_peak "$GATEWAY_PID" family_hit
  stop "$GATEWAY_PID"
  stop "$BARE_PID"
}

# The four reads in turn on one key (a flow, its space's first page, its preview URL, its Flow
# JSON), over 10 catalogue spaces x 10 flows, 50 calls in flight, against the in-process
# simulated CAMS with CAMS's own quota of 5 calls a second per action, cache TTL 30 s. The
# warm-up fills the cache (100 keys per action at 5 a second); then refresh-ahead must keep it
# fresh within each action's quota (100 keys / 30 s, about 3.3 calls a second per action).
mixed() {
  step "mixed workload of the four reads, 10 tenants x 10 flows, $CONCURRENCY in flight, $MIXED"
  start_gateway mixed --sandbox --cache-ttl-ms 30000 "${NO_TENANT_LIMIT[@]}"
  local cams
  cams=$(grep -m1 'simulated CAMS started' "$WORK/mixed.log" | json_field endpoint)
  "$BENCH" load --json --label mixed --target "$GATEWAY_TARGET" --concurrency "$CONCURRENCY" \
    --rpc mixed --page-size 20 --tenants 10 --tenant-prefix sim:catalogue:100: --flows 10 \
    --warmup 25s --duration "$MIXED" --cams-stats "$cams" >"$RESULTS/mixed.json"
  curl -sf "$cams/_sandbox/stats" >"$RESULTS/mixed_sandbox_stats.json"
  stop "$GATEWAY_PID"
}

# --- the suite -----------------------------------------------------------------------------------

step "release build"
cargo build --release --workspace --bins

rm -rf "$RESULTS"
mkdir -p "$RESULTS"

rounds_family
mixed

step "report"
revision=$(tree_revision)
python3 - "$RESULTS" "$(getconf CLK_TCK)" "$(nproc)" "$(date -u '+%Y-%m-%d %H:%M UTC')" "$COMMAND" "$revision" \
  "$ROUNDS" "$ROUND" "$MIXED" "$CONCURRENCY" >"$WORK/report.md" <<'PY'
import json, statistics, sys

results, tck, cores, date, command, revision, rounds, round_, mixed, concurrency = sys.argv[1:]
rounds, tck = int(rounds), int(tck)

def load(name):
    with open(f"{results}/{name}") as f:
        return json.load(f)

def cpu_us(name):
    """Server CPU per successful call of a round, in µs."""
    with open(f"{results}/{name}.cpu") as f:
        ticks = int(f.read())
    return ticks / tck * 1e6 / load(name)["ok"]

def client_cpu_us(name):
    """The load generator's CPU per successful call of a round, in µs."""
    with open(f"{results}/{name}.client_cpu") as f:
        user, system = (float(x) for x in f.read().split())
    return (user + system) * 1e6 / load(name)["ok"]

READS = [
    ("get-flow", "GetFlow", "10 flows", 95),
    ("list-flows", "ListFlows", "first page of 20 flows, 10 catalogue spaces", 90),
    ("preview-url", "GetFlowPreviewUrl", "10 flows", 95),
    ("json-asset", "GetFlowJsonAsset", "10 flows", 95),
]

out = []
p = out.append
p(f"Measured {date} on {cores} cores (a machine shared with other builds, so timing is noisy), "
  f"revision {revision}, release build, with `{command}`.")
p("")
p("### Cache-hit path of each read against the bare server")
p("")
p(f"The bare tonic server (`cams-flows-bench baseline-grpc --page-size 20`, a constant real answer "
  f"per RPC) and `cams-flows serve --sandbox` with its cache filled, measured in turn, "
  f"{concurrency} calls in flight over one connection; {rounds} interleaved rounds of {round_} "
  f"(each read against both sides in every round, the side measured first alternating), cache "
  f"TTL 10 minutes so that every answer is a hit. The verdict is the median of the per-round "
  f"ratios.")
p("")
p("| read | keys | bare calls/s (median) | gateway calls/s (median) | per-round ratios | "
  "ratio (median) | target | server CPU per call, bare / gateway | with the load generator's | "
  "gateway p50 / p99 |")
p("|---|---|---:|---:|---|---:|---|---:|---:|---:|")
verdicts = []
for read, rpc, keys, target in READS:
    bare = [load(f"hit_{read}_bare_{i}.json") for i in range(rounds)]
    gw = [load(f"hit_{read}_gateway_{i}.json") for i in range(rounds)]
    ratios = [g["ok_per_s"] / b["ok_per_s"] for b, g in zip(bare, gw)]
    ratio = statistics.median(ratios)
    failed = sum(r["failed"] for r in bare + gw)
    not_hit = sum(n for g in gw for k, n in g["cache"].items() if k != "hit")
    cpu_b = statistics.median(cpu_us(f"hit_{read}_bare_{i}.json") for i in range(rounds))
    cpu_g = statistics.median(cpu_us(f"hit_{read}_gateway_{i}.json") for i in range(rounds))
    all_b = statistics.median(cpu_us(f"hit_{read}_bare_{i}.json")
                              + client_cpu_us(f"hit_{read}_bare_{i}.json") for i in range(rounds))
    all_g = statistics.median(cpu_us(f"hit_{read}_gateway_{i}.json")
                              + client_cpu_us(f"hit_{read}_gateway_{i}.json")
                              for i in range(rounds))
    p50 = statistics.median(g["latency_ok_us"]["p50"] for g in gw)
    p99 = statistics.median(g["latency_ok_us"]["p99"] for g in gw)
    met = "met" if ratio * 100 >= target else "**missed**"
    extra = []
    if failed:
        extra.append(f"{failed} failed calls")
    if not_hit:
        extra.append(f"{not_hit} answers not from the cache")
    p(f"| {rpc} | {keys} | {statistics.median(b['ok_per_s'] for b in bare):,.0f} | "
      f"{statistics.median(g['ok_per_s'] for g in gw):,.0f} | "
      f"{' '.join(f'{r:.0%}' for r in ratios)} | **{ratio:.1%}** | ≥ {target} %: {met}"
      f"{' (' + ', '.join(extra) + ')' if extra else ''} | {cpu_b:.1f} / {cpu_g:.1f} µs "
      f"({cpu_b / cpu_g:.0%}) | {all_b:.1f} / {all_g:.1f} µs ({all_b / all_g:.0%}) | "
      f"{p50:.0f} / {p99:.0f} µs |")
    verdicts.append((rpc, ratio, target))
p("")
p("The CPU columns are medians over the rounds of the CPU time (user and system) a process used "
  "during a round divided by the round's successful calls: the server's (`/proc/<pid>/stat`), "
  "then the server's and the load generator's together (the load generator shares the two "
  "cores); in brackets, the bare side's as a share of the gateway's. The second is the "
  "throughput ratio the two sides would have if the cores were theirs alone, since then CPU "
  "is all that bounds a closed loop at 50 calls in flight. On a machine shared with other "
  "builds a neighbour moves throughput between two runs of a few seconds by tens of per cent; "
  "it moves CPU per call much less (though not to nothing: with less throughput, fewer calls "
  "share each wake-up and each write).")
p("")

m = load("mixed.json")
p("### Mixed workload against CAMS's quota")
p("")
p(f"The four reads in turn on one key (a flow, its space's first page of 20, its preview URL, "
  f"its Flow JSON), over 10 catalogue spaces × 10 flows, {concurrency} calls in flight, "
  f"through `cams-flows serve --sandbox` (its simulated CAMS allows 5 calls a second per "
  f"action, as CAMS does; the gateway's budgets are the defaults, 5 per action), cache TTL "
  f"30 s, tenant limits lifted; {mixed} measured after a 25 s warm-up that fills the cache. "
  f"CAMS calls are what the simulated CAMS's `/_sandbox/stats` `by_action` counted during the "
  f"measured phase.")
p("")
p("| action (RPC) | client calls answered | CAMS calls | client calls per CAMS call | "
  "CAMS throttled | most CAMS calls in one sliding second (whole run) |")
p("|---|---:|---:|---:|---:|---:|")
stats = load("mixed_sandbox_stats.json")["by_action"]
throttled = 0
for action, a in m["cams_by_action"].items():
    per = a["calls_per_cams_call"]
    throttled += a["cams_throttled"] + stats[action]["throttled"]
    p(f"| {action} ({a['rpc']}) | {a['answered']:,} | {a['cams_calls']} | "
      f"{'n/a' if per is None else f'{per:,.0f}'} | {a['cams_throttled']} | "
      f"{stats[action]['max_accepted_per_sliding_second']} |")
p("")
errors = ", ".join(f"{k} {v['count']}" for k, v in m["errors"].items()) or "none"
answers = ", ".join(f"{k} {v:,}" for k, v in sorted(m["cache"].items()))
p(f"{m['ok']:,} calls answered ({m['ok_per_s']:,.0f}/s), {m['failed']} failed ({errors}); "
  f"answers: {answers}; p50 {m['latency_ok_us']['p50']:.0f} µs, p99 "
  f"{m['latency_ok_us']['p99']:.0f} µs. Throttled by CAMS over the whole run, warm-up "
  f"included: {throttled} (target: none: {'met' if throttled == 0 else '**missed**'}).")
print("\n".join(out))
PY
cat "$WORK/report.md"

splice_report family "The Flow read family (issue 21)" "$WORK/report.md"
step "BENCHMARKS.md updated; raw results in $RESULTS"
