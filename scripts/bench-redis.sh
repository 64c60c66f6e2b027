#!/usr/bin/env bash
# The benchmarks of the Redis topologies (issue 20), in release mode: the GetFlow cache-hit path
# through gateways whose shared state is in Redis in standalone, sentinel and cluster mode,
# against the bare tonic server, in interleaved rounds; then, on the miss path (cache off, one
# call in flight), the latency each mode adds to a CAMS call against a gateway without Redis,
# with the admission's WAIT for the replicas on and off, and the Redis commands per CAMS call.
# The Markdown goes between the `redis:start` and `redis:end` markers of BENCHMARKS.md.
#
#   scripts/bench-redis.sh                        # about 5 minutes on 2 cores
#   BENCH_ROUNDS=3 scripts/bench-redis.sh         # a quick look
#
# Settings (environment): BENCH_ROUNDS and BENCH_ROUND (interleaved rounds, default 5 of 3s),
# BENCH_CONCURRENCY (of the hit path, default 50), BENCH_RESULTS (default target/bench-redis).
# Needs redis-server, redis-sentinel and redis-cli (Redis 7; Debian: redis-server, redis-tools),
# jq and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${BENCH_ROUNDS:-5}
ROUND=${BENCH_ROUND:-3s}
CONCURRENCY=${BENCH_CONCURRENCY:-50}
RESULTS=${BENCH_RESULTS:-target/bench-redis}
CONNECTIONS=1
WARMUP=1s
DURATION=$ROUND
KEY_ID=bench
KEY_SECRET=bench-secret
GATEWAY=target/release/cams-flows
BENCH=target/release/cams-flows-bench
MASTER_NAME=cams-flows

command_line() {
  local var settings=()
  for var in BENCH_ROUNDS BENCH_ROUND BENCH_CONCURRENCY; do
    if [ -n "${!var:-}" ]; then settings+=("$var=${!var}"); fi
  done
  echo "${settings[*]:+${settings[*]} }scripts/bench-redis.sh"
}
COMMAND=$(command_line)

for tool in redis-server redis-sentinel redis-cli jq python3; do
  command -v "$tool" >/dev/null || {
    echo "bench-redis.sh: $tool is missing (Debian: apt-get install redis-server redis-tools jq python3)" >&2
    exit 1
  }
done

# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

NO_TENANT_LIMIT=(--tenant-rps 1000000 --tenant-burst 100000)
NO_LIMITS=(--account-rps 100000 --tenant-rps 100000 --tenant-burst 100000)

# until BOUND_S WHAT CMD...: runs CMD every 0.2 s until it succeeds, for BOUND_S seconds at most.
until_true() {
  local bound=$1 what=$2 i
  shift 2
  for ((i = 0; i < bound * 5; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "bench-redis.sh: $what within ${bound}s" >&2
  return 1
}

# --- the topologies ------------------------------------------------------------------------------

# A primary, one replica and three Sentinels (quorum 2) watching it as MASTER_NAME; sets
# SENTINEL_PRIMARY (port), SENTINEL_ADDRS (host:port,...) and SENTINEL_FLAGS (the gateway's).
start_sentinel_set() {
  step "Redis with Sentinel: a primary, one replica, three Sentinels"
  start_redis sentinel_primary --repl-diskless-sync-delay 0
  SENTINEL_PRIMARY=$REDIS_PORT
  start_redis sentinel_replica --replicaof 127.0.0.1 "$SENTINEL_PRIMARY"
  local replica=$REDIS_PORT i port addrs=()
  for i in 0 1 2; do
    port=$(free_port)
    printf '%s\n' "port $port" "bind 127.0.0.1" "dir $WORK" \
      "sentinel monitor $MASTER_NAME 127.0.0.1 $SENTINEL_PRIMARY 2" \
      "sentinel down-after-milliseconds $MASTER_NAME 5000" >"$WORK/sentinel_$i.conf"
    start "sentinel_$i" redis-sentinel "$WORK/sentinel_$i.conf"
    wait_redis "$port" "sentinel_$i"
    addrs+=("127.0.0.1:$port")
  done
  SENTINEL_ADDRS=$(IFS=,; echo "${addrs[*]}")
  until_true 30 "the replica did not follow the primary" \
    sh -c "redis-cli -p $replica info replication | grep -q '^master_link_status:up'"
  for port in "${addrs[@]#127.0.0.1:}"; do
    until_true 30 "Sentinel $port did not see the replica and the other Sentinels" sh -c "
      redis-cli -p $port sentinel replicas $MASTER_NAME | grep -qx 127.0.0.1:$replica &&
      [ \"\$(redis-cli -p $port sentinel sentinels $MASTER_NAME | grep -c '^name\$')\" = 2 ]"
  done
  SENTINEL_FLAGS=(--redis-mode sentinel --redis-sentinels "$SENTINEL_ADDRS"
    --redis-master-name "$MASTER_NAME")
}

# Six nodes, three primaries with one replica each, made a cluster with redis-cli; sets
# CLUSTER_ADDRS (host:port,...), CLUSTER_PRIMARIES (ports) and CLUSTER_FLAGS (the gateway's).
start_cluster() {
  step "Redis Cluster: three primaries with a replica each"
  local i ports=() addrs=()
  for i in 0 1 2 3 4 5; do
    start_redis "cluster_$i" --cluster-enabled yes --cluster-node-timeout 2000 \
      --cluster-config-file "$WORK/nodes_$i.conf" --cluster-port "$(free_port)" \
      --repl-diskless-sync-delay 0
    ports+=("$REDIS_PORT")
    addrs+=("127.0.0.1:$REDIS_PORT")
  done
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes \
    >"$WORK/cluster_create.log" 2>&1 || {
    cat "$WORK/cluster_create.log" >&2
    return 1
  }
  local port
  for port in "${ports[@]}"; do
    until_true 30 "cluster node $port did not reach cluster_state:ok" \
      sh -c "redis-cli -p $port cluster info | grep -q '^cluster_state:ok'"
  done
  CLUSTER_PRIMARIES=()
  for port in "${ports[@]}"; do
    if [ "$(redis-cli -p "$port" role | head -1)" = master ]; then
      CLUSTER_PRIMARIES+=("$port")
      until_true 30 "the replica of cluster node $port did not follow it" \
        sh -c "redis-cli -p $port info replication | grep -q '^slave0:.*state=online'"
    fi
  done
  CLUSTER_ADDRS=$(IFS=,; echo "${addrs[*]}")
  CLUSTER_FLAGS=(--redis-mode cluster --redis-nodes "$CLUSTER_ADDRS")
}

# commandstats OUT PORT...: the calls of each command the Redis servers on PORT... have run and
# the time they took, summed, one `command calls usec` line each (commands run inside scripts
# included, and in the script's time too).
commandstats() {
  local out=$1 port
  shift
  for port in "$@"; do
    redis-cli -p "$port" info commandstats
  done | sed -nE 's/^cmdstat_([^:]+):calls=([0-9]+),usec=([0-9]+),.*/\1 \2 \3/p' |
    awk '{ n[$1] += $2; t[$1] += $3 } END { for (c in n) print c, n[c], t[c] }' | sort >"$out"
  echo "_servers $# 0" >>"$out"
}

# --- the hit path --------------------------------------------------------------------------------

# The bare server and a gateway per mode (its in-process simulated CAMS allows 5 calls a second;
# the quota and the shared cache in Redis), measured in turn, round after round, the cache warm.
rounds_hit() {
  step "cache-hit path, standalone / sentinel / cluster vs the bare server: $ROUNDS rounds of $ROUND"
  start_bare hit_bare
  local mode flags targets=() pids=() i t
  for mode in standalone sentinel cluster; do
    case $mode in
      standalone) flags=(--redis-url "$STANDALONE_URL") ;;
      sentinel) flags=("${SENTINEL_FLAGS[@]}") ;;
      cluster) flags=("${CLUSTER_FLAGS[@]}") ;;
    esac
    start_gateway "hit_$mode" --sandbox --cache-ttl-ms 600000 "${NO_TENANT_LIMIT[@]}" \
      --redis-key-prefix "bench-hit-$mode" "${flags[@]}"
    targets+=("$GATEWAY_TARGET")
    pids+=("$GATEWAY_PID")
  done
  for t in "${targets[@]}"; do
    wait_admitted "$t"
    "$BENCH" load --target "$t" --concurrency "$CONCURRENCY" --warmup 0s --duration 3s \
      --flows 10 >/dev/null 2>&1
  done
  commandstats "$RESULTS/hit_standalone.before" "$STANDALONE_PORT"
  commandstats "$RESULTS/hit_sentinel.before" "$SENTINEL_PRIMARY"
  commandstats "$RESULTS/hit_cluster.before" "${CLUSTER_PRIMARIES[@]}"
  # The order of the four rotates from round to round, so that none always follows another.
  # No warm-up, so that the CPU time over a run (the server's, and the load generator's as
  # `time` reports it) is that of the calls counted.
  local names=(bare standalone sentinel cluster) all=("$BARE_TARGET" "${targets[@]}")
  local servers=("$BARE_PID" "${pids[@]}") k s before out TIMEFORMAT='%3U %3S'
  for ((i = 0; i < ROUNDS; i++)); do
    for ((k = 0; k < 4; k++)); do
      s=$(((k + i) % 4))
      out="$RESULTS/hit_${names[$s]}_$i.json"
      before=$(cpu_ticks "${servers[$s]}")
      { time "$BENCH" load --json --target "${all[$s]}" --concurrency "$CONCURRENCY" \
        --warmup 0s --duration "$ROUND" --flows 10 >"$out" 2>/dev/null; } 2>"$out.client_cpu"
      echo $(($(cpu_ticks "${servers[$s]}") - before)) >"$out.cpu"
    done
  done
  commandstats "$RESULTS/hit_standalone.after" "$STANDALONE_PORT"
  commandstats "$RESULTS/hit_sentinel.after" "$SENTINEL_PRIMARY"
  commandstats "$RESULTS/hit_cluster.after" "${CLUSTER_PRIMARIES[@]}"
  for i in "${pids[@]}"; do stop "$i"; done
  stop "$BARE_PID"
}

# --- the miss path -------------------------------------------------------------------------------

MISS_VARIANTS=(none standalone sentinel_wait sentinel_nowait cluster_wait cluster_nowait)

# One call in flight, cache off, limits lifted, every gateway in front of one simulated CAMS with
# its quota lifted; each variant keeps its state under its own key prefix. Then one counted run
# per variant: the Redis commands its primaries ran (INFO commandstats before and after) against
# the CAMS calls of the run.
rounds_miss() {
  step "miss path, one call in flight, per mode, WAIT on and off: $ROUNDS rounds of $ROUND"
  start_sandbox sandbox_miss
  local variant flags targets=() pids=() i k v ports
  for variant in "${MISS_VARIANTS[@]}"; do
    case $variant in
      none) flags=() ;;
      standalone) flags=(--redis-url "$STANDALONE_URL") ;;
      sentinel_wait) flags=("${SENTINEL_FLAGS[@]}" --redis-wait-for-replicas true) ;;
      sentinel_nowait) flags=("${SENTINEL_FLAGS[@]}" --redis-wait-for-replicas false) ;;
      cluster_wait) flags=("${CLUSTER_FLAGS[@]}" --redis-wait-for-replicas true) ;;
      cluster_nowait) flags=("${CLUSTER_FLAGS[@]}" --redis-wait-for-replicas false) ;;
    esac
    if [ "$variant" != none ]; then flags+=(--redis-key-prefix "bench-miss-$variant"); fi
    start_replica "miss_$variant" --cache-ttl-ms 0 "${NO_LIMITS[@]}" "${flags[@]}"
    targets+=("$GATEWAY_TARGET")
    pids+=("$GATEWAY_PID")
  done
  for ((v = 1; v < ${#targets[@]}; v++)); do wait_admitted "${targets[$v]}"; done
  for ((i = 0; i < ROUNDS; i++)); do
    # The order rotates from round to round, as in rounds_hit.
    for ((k = 0; k < ${#targets[@]}; k++)); do
      v=$(((k + i) % ${#targets[@]}))
      "$BENCH" load --json --target "${targets[$v]}" --concurrency 1 --tenants 10 --flows 1000 \
        --warmup 1s --duration "$ROUND" >"$RESULTS/miss_${MISS_VARIANTS[$v]}_$i.json" 2>/dev/null
    done
  done
  for ((v = 1; v < ${#targets[@]}; v++)); do
    variant=${MISS_VARIANTS[$v]}
    case $variant in
      standalone) ports=("$STANDALONE_PORT") ;;
      sentinel_*) ports=("$SENTINEL_PRIMARY") ;;
      cluster_*) ports=("${CLUSTER_PRIMARIES[@]}") ;;
    esac
    commandstats "$RESULTS/count_$variant.before" "${ports[@]}"
    "$BENCH" load --json --target "${targets[$v]}" --concurrency 1 --tenants 10 \
      --flows 1000000 --flow-prefix "sim:ok:count-$variant-" --warmup 0s --duration "$ROUND" \
      --cams-stats "$SANDBOX_ENDPOINT" >"$RESULTS/count_$variant.json" 2>/dev/null
    commandstats "$RESULTS/count_$variant.after" "${ports[@]}"
  done
  for i in "${pids[@]}"; do stop "$i"; done
  stop "$SANDBOX_PID"
}

# --- the suite -----------------------------------------------------------------------------------

step "release build"
cargo build --release --workspace --bins

rm -rf "$RESULTS"
mkdir -p "$RESULTS"

start_redis standalone
STANDALONE_PORT=$REDIS_PORT
STANDALONE_URL=$REDIS_URL
start_sentinel_set
start_cluster
redis-server --version >"$RESULTS/redis_version.txt"

rounds_hit
rounds_miss

step "report"
revision=$(tree_revision)
python3 - "$RESULTS" "$(getconf CLK_TCK)" "$(nproc)" "$(date -u '+%Y-%m-%d %H:%M UTC')" "$COMMAND" "$revision" \
  "$ROUNDS" "$ROUND" "$CONCURRENCY" >"$WORK/report.md" <<'PY'
import json, statistics, sys

results, tck, cores, date, command, revision, rounds, round_, concurrency = sys.argv[1:]
rounds, tck = int(rounds), int(tck)

def load(name):
    with open(f"{results}/{name}") as f:
        return json.load(f)

def cpu_us(name):
    """Server CPU per successful call of a run, in µs."""
    with open(f"{results}/{name}.cpu") as f:
        ticks = int(f.read())
    return ticks / tck * 1e6 / load(name)["ok"]

def client_cpu_us(name):
    """The load generator's CPU per successful call of a run, in µs."""
    with open(f"{results}/{name}.client_cpu") as f:
        user, system = (float(x) for x in f.read().split())
    return (user + system) * 1e6 / load(name)["ok"]

def stats(name, field=1):
    with open(f"{results}/{name}") as f:
        return {c[0]: int(c[field]) for c in (line.split() for line in f if line.strip())}

def script_us(name):
    """Redis's time in the scripts (EVALSHA, the commands they run included) per script."""
    calls = stats(f"{name}.after")["evalsha"] - stats(f"{name}.before").get("evalsha", 0)
    usec = stats(f"{name}.after", 2)["evalsha"] - stats(f"{name}.before", 2).get("evalsha", 0)
    return usec / calls

def delta(name):
    before, after = stats(f"{name}.before"), stats(f"{name}.after")
    d = {c: after[c] - before.get(c, 0) for c in after if c != "_servers"}
    # Less the `INFO commandstats` that took the first figures, one per server.
    d["info"] = d.get("info", 0) - before["_servers"]
    return {c: n for c, n in d.items() if n > 0}

# Commands a client sends that never run inside a script: one each is a round trip.
SENT = {"evalsha", "eval", "evalsha_ro", "eval_ro", "fcall", "fcall_ro", "wait", "ping",
        "script|load", "script", "hello", "client|setinfo", "client|setname", "select",
        "readonly", "cluster|slots", "cluster|shards", "cluster|nodes", "command"}
version = open(f"{results}/redis_version.txt").read().split()[2].removeprefix("v=")

out = []
p = out.append
p(f"Measured {date} on {cores} cores (a machine shared with other builds, so timing is noisy), "
  f"revision {revision}, release build, Redis {version}, all on one host over loopback, with "
  f"`{command}`. Sentinel: a primary, one replica and three Sentinels (quorum 2). Cluster: "
  f"three primaries with one replica each, made with `redis-cli --cluster create`.")
p("")
p("### GetFlow cache-hit path per Redis mode against the bare server")
p("")
p(f"The bare tonic server (baseline 1) and three gateways (`--sandbox`, cache warm, the quota and "
  f"the shared cache in Redis: standalone `--redis-url`, `--redis-mode sentinel`, "
  f"`--redis-mode cluster`), measured in turn, {concurrency} calls in flight over 10 flows, "
  f"{rounds} interleaved rounds of {round_} (the order rotating from round to round); verdicts "
  f"are medians of the per-round ratios.")
p("")
p("| mode | bare calls/s (median) | gateway calls/s (median) | per-round ratios | ratio (median) "
  "| target | server CPU per call, bare / gateway | with the load generator's "
  "| Redis commands during the rounds |")
p("|---|---:|---:|---|---:|---|---:|---:|---:|")
bare = [load(f"hit_bare_{i}.json") for i in range(rounds)]
cpu_b = statistics.median(cpu_us(f"hit_bare_{i}.json") for i in range(rounds))
all_b = statistics.median(cpu_us(f"hit_bare_{i}.json") + client_cpu_us(f"hit_bare_{i}.json")
                          for i in range(rounds))
for mode in ["standalone", "sentinel", "cluster"]:
    gw = [load(f"hit_{mode}_{i}.json") for i in range(rounds)]
    ratios = [g["ok_per_s"] / b["ok_per_s"] for b, g in zip(bare, gw)]
    ratio = statistics.median(ratios)
    failed = sum(g["failed"] for g in gw)
    not_hit = sum(n for g in gw for k, n in g["cache"].items() if k != "hit")
    hits = sum(g["ok"] for g in gw)
    d = delta(f"hit_{mode}")
    cmds = sum(d.values())
    target = 95
    met = "met" if ratio * 100 >= target else "**missed**"
    extra = []
    if failed:
        extra.append(f"{failed} failed")
    if not_hit:
        extra.append(f"{not_hit} not hits")
    cpu_g = statistics.median(cpu_us(f"hit_{mode}_{i}.json") for i in range(rounds))
    all_g = statistics.median(cpu_us(f"hit_{mode}_{i}.json")
                              + client_cpu_us(f"hit_{mode}_{i}.json") for i in range(rounds))
    p(f"| {mode} | {statistics.median(b['ok_per_s'] for b in bare):,.0f} | "
      f"{statistics.median(g['ok_per_s'] for g in gw):,.0f} | "
      f"{' '.join(f'{r:.0%}' for r in ratios)} | **{ratio:.1%}** | "
      f"≥ {target} %: {met}{' (' + ', '.join(extra) + ')' if extra else ''} | "
      f"{cpu_b:.1f} / {cpu_g:.1f} µs ({cpu_b / cpu_g:.0%}) | "
      f"{all_b:.1f} / {all_g:.1f} µs ({all_b / all_g:.0%}) | {cmds:,} for {hits:,} hits |")
p("")
p("CPU per call: medians over the rounds of the CPU time (user and system) a process used during "
  "a run divided by the run's successful calls, the server's (`/proc/<pid>/stat`), then the "
  "server's and the load generator's together; in brackets the bare side's as a share of the "
  "gateway's, the second being the throughput ratio the two would have with the cores to "
  "themselves (see the Flow read family above). The commands during the rounds are those the gateway runs by the clock (the health `PING`, "
  "the quota's heartbeat, the tenants' batches), and with Sentinel the Sentinels' own "
  "`PING`s and `PUBLISH`es to the primary; none is per hit.")
p("")

LABELS = {
    "none": "no Redis (in-process gate)",
    "standalone": "standalone",
    "sentinel_wait": "sentinel, WAIT on",
    "sentinel_nowait": "sentinel, WAIT off",
    "cluster_wait": "cluster, WAIT on",
    "cluster_nowait": "cluster, WAIT off",
}
p("### GetFlow miss path per Redis mode: added latency and Redis commands per CAMS call")
p("")
p(f"One call in flight, cache off, limits lifted, six gateways in front of one simulated CAMS "
  f"(quota lifted), measured in turn, {rounds} interleaved rounds of {round_} (the order "
  f"rotating); each keeps its "
  f"state under its own key prefix. `WAIT on` is `redis.wait_for_replicas = true` (the default: "
  f"an admission is used once every connected replica has it); standalone has no replica, so "
  f"WAIT never runs there. Latencies are medians of the rounds' p50 and p99. The commands are "
  f"`INFO commandstats` of the primaries (summed over the cluster's three) before and after one "
  f"counted run of {round_} per gateway, against the CAMS calls of that run at the simulated "
  f"CAMS's `/_sandbox/stats`; commands run inside the gateway's scripts count too, and the "
  f"round trips are the commands a client sends (`EVALSHA`, `WAIT`, `PING`, ...).")
p("")
p("| mode | p50 | p99 | added p50 | added p99 | CAMS calls counted | Redis commands per CAMS call "
  "(those in scripts included) | round trips per CAMS call | sent per CAMS call | Redis's time "
  "per script |")
p("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
med = {}
for v in LABELS:
    runs = [load(f"miss_{v}_{i}.json") for i in range(rounds)]
    failed = sum(r["failed"] for r in runs)
    med[v] = (statistics.median(r["latency_ok_us"]["p50"] for r in runs),
              statistics.median(r["latency_ok_us"]["p99"] for r in runs), failed)
scripts = {}
for v, label in LABELS.items():
    p50, p99, failed = med[v]
    row = f"| {label}{f' ({failed} failed)' if failed else ''} | {p50:.0f} µs | {p99:.0f} µs | "
    if v == "none":
        p(row + "— | — | — | — | — | — | — |")
        continue
    c = load(f"count_{v}.json")
    cams = c["cams_calls"]
    d = delta(f"count_{v}")
    total = sum(d.values())
    sent = {cmd: n for cmd, n in d.items() if cmd in SENT}
    scripts[v] = (cams, d)
    shown = ", ".join(f"{cmd.upper()} {n / cams:.2f}"
                      for cmd, n in sorted(sent.items(), key=lambda x: -x[1]))
    p(row + f"{p50 - med['none'][0]:+.0f} µs | {p99 - med['none'][1]:+.0f} µs | {cams:,} | "
      f"{total / cams:.1f} | {sum(sent.values()) / cams:.2f} | {shown} | "
      f"{script_us(f'count_{v}'):.1f} µs |")
p("")
for v in ["standalone", "sentinel_wait"]:
    cams, d = scripts[v]
    p(f"Every command run per CAMS call, {LABELS[v]}: " + ", ".join(
        f"{cmd.upper()} {n / cams:.2f}" for cmd, n in sorted(d.items(), key=lambda x: -x[1])
        if n / cams >= 0.005) + ".")
    p("")
p("`REPLCONF` (WAIT on) is the replica's acknowledgement that `WAIT` asks for; `INFO`, `TIME` "
  "and the hash, sorted-set and key commands run inside the admission and completion scripts "
  "(`EVALSHA`); `PING` is the health probe, once a second per gateway. Redis's time per script "
  "is `INFO commandstats`' `usec` of `EVALSHA` (the commands the script runs included) over its "
  "calls: two scripts per CAMS call.")
print("\n".join(out))
PY
cat "$WORK/report.md"

splice_report redis "Redis topologies: sentinel and cluster (issue 20)" "$WORK/report.md"
step "BENCHMARKS.md updated; raw results in $RESULTS"
