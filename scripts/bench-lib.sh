# Functions of the benchmark scripts (scripts/bench.sh, scripts/bench-fleet.sh,
# scripts/bench-observability.sh, scripts/bench-family.sh, scripts/bench-redis.sh), sourced by them
# after they set GATEWAY, BENCH, RESULTS, CONCURRENCY, CONNECTIONS and ROUND (and, for what uses
# them, KEY_ID, KEY_SECRET, WARMUP, DURATION). Starting it creates a scratch directory and stops
# every process started with `start` on exit; a script with more to undo defines `cleanup_more`.

step() { printf '\n==> %s\n' "$*" >&2; }

# --- processes -----------------------------------------------------------------------------------

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if declare -F cleanup_more >/dev/null; then cleanup_more; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CMD...: runs CMD in the background with its output in $WORK/NAME.log; sets STARTED.
start() {
  local name=$1
  shift
  "$@" >"$WORK/$name.log" 2>&1 &
  STARTED=$!
  PIDS+=("$STARTED")
}

stop() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# wait_for PID FILE REGEX: the first line of FILE matching REGEX, once the process has written it.
wait_for() {
  local pid=$1 file=$2 regex=$3 line i
  for ((i = 0; i < 300; i++)); do
    if line=$(grep -m1 -E "$regex" "$file" 2>/dev/null); then
      printf '%s\n' "$line"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "${0##*/}: no line matching /$regex/ from pid $pid; its output:" >&2
  cat "$file" >&2
  return 1
}

# Seconds in a duration as the load generator takes it: 500ms, 10s, 2m, or plain seconds.
seconds_of() {
  awk -v d="$1" 'BEGIN {
    if (d ~ /ms$/) { sub(/ms$/, "", d); print d / 1000 }
    else if (d ~ /s$/) { sub(/s$/, "", d); print d + 0 }
    else if (d ~ /m$/) { sub(/m$/, "", d); print d * 60 }
    else print d + 0
  }'
}

json_field() { sed -E "s/.*\"$1\":\"([^\"]+)\".*/\1/"; }

# KiB of a /proc/<pid>/status field (VmHWM: peak resident memory, VmRSS: current).
proc_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

# start_gateway NAME FLAGS...: the gateway on a free port; it logs JSON, and the bench waits for
# {"message":"listening","addr":"..."}. GATEWAY_ENV holds extra environment (credentials). At the
# default level (info) the gateway logs one JSON line per miss and per failure, a real part of its
# cost, so the log is kept (in a file, as a container runtime's pipe would take it). Callers are
# not authenticated: the suite measures the call path.
GATEWAY_ENV=()
start_gateway() {
  local name=$1 auth=()
  shift
  if "$GATEWAY" serve --help | grep -q -- '--auth-mode'; then auth=(--auth-mode none); fi
  start "$name" env RUST_LOG=info "${GATEWAY_ENV[@]}" "$GATEWAY" serve \
    --listen 127.0.0.1:0 --log-format json "${auth[@]}" "$@"
  GATEWAY_PID=$STARTED
  GATEWAY_TARGET="http://$(wait_for "$STARTED" "$WORK/$name.log" '"message":"listening"' | json_field addr)"
}

# start_sandbox NAME [RPS]: a simulated CAMS on its own on a free port, its quota lifted unless
# RPS says how many calls of each action it accepts in a sliding second (CAMS's own is 5).
# Its simulated STS tells a gateway with a Redis which account it serves (STS_ENDPOINT).
start_sandbox() {
  start "$1" "$GATEWAY" sandbox --listen 127.0.0.1:0 --sts-listen 127.0.0.1:0 --rps "${2:-1000000}" \
    --access-key-id "$KEY_ID" --access-key-secret "$KEY_SECRET" --log-format json
  SANDBOX_PID=$STARTED
  SANDBOX_ENDPOINT=$(wait_for "$STARTED" "$WORK/$1.log" 'simulated CAMS listening' | json_field endpoint)
  STS_ENDPOINT=$(wait_for "$STARTED" "$WORK/$1.log" 'simulated STS and ECS metadata service listening' | json_field endpoint)
  # How the direct client and baseline 3 reach it.
  UPSTREAM=(--endpoint "$SANDBOX_ENDPOINT" --access-key-id "$KEY_ID" --access-key-secret "$KEY_SECRET")
}

# The gateway against the standalone simulated CAMS, cache off and every limit lifted.
start_miss_gateway() {
  GATEWAY_ENV=(ALIBABA_CLOUD_ACCESS_KEY_ID="$KEY_ID" ALIBABA_CLOUD_ACCESS_KEY_SECRET="$KEY_SECRET")
  start_gateway "$1" --endpoint "$SANDBOX_ENDPOINT" --cache-ttl-ms 0 "${NO_LIMITS[@]}"
  GATEWAY_ENV=()
}

# A gateway in front of the simulated CAMS started last (start_sandbox), with its credentials and
# its STS (which names the account's state in Redis); sets GATEWAY_TARGET and GATEWAY_PID.
start_replica() {
  local name=$1
  shift
  GATEWAY_ENV=(ALIBABA_CLOUD_ACCESS_KEY_ID="$KEY_ID" ALIBABA_CLOUD_ACCESS_KEY_SECRET="$KEY_SECRET"
    ALIBABA_CLOUD_STS_ENDPOINT="$STS_ENDPOINT")
  start_gateway "$name" --endpoint "$SANDBOX_ENDPOINT" "$@"
  GATEWAY_ENV=()
}

# Calls TARGET until CAMS answers one: a Redis used for the first time admits nothing for one
# lease and a second (the quota's quiet period).
wait_admitted() {
  local i
  for ((i = 0; i < 300; i++)); do
    if "$BENCH" load --json --target "$1" --concurrency 1 --calls 1 --warmup 0s \
      --flow-id "sim:ok:admitted-$i" 2>/dev/null | jq -e '.ok == 1' >/dev/null; then
      return 0
    fi
    sleep 0.2
  done
  echo "${0##*/}: $1 never reached CAMS" >&2
  return 1
}

# --- Redis ---------------------------------------------------------------------------------------

# A TCP port nothing listens on now (another process may take it before it is used: Redis then
# fails to start, loudly).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_redis PORT NAME: until the Redis started as NAME answers PING on PORT (10 s at most).
wait_redis() {
  local i
  for ((i = 0; i < 100; i++)); do
    redis-cli -p "$1" ping >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "${0##*/}: redis-server $2 did not answer on port $1; its output:" >&2
  cat "$WORK/$2.log" >&2
  return 1
}

# start_redis NAME [DIRECTIVE...]: an empty Redis without persistence on a free port, with
# more `--name value` directives if given; sets REDIS_PORT, REDIS_PID, REDIS_URL. Its files (a
# replica's copy of its primary's data, a cluster node's) go to the scratch directory.
start_redis() {
  local name=$1
  shift
  REDIS_PORT=$(free_port)
  start "$name" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$WORK" --dbfilename "$name.rdb" "$@"
  REDIS_PID=$STARTED
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
  wait_redis "$REDIS_PORT" "$name"
}

# redis_commands [PORT]: the commands the Redis on PORT (default REDIS_PORT) has processed since it
# started, this INFO included.
redis_commands() {
  redis-cli -p "${1:-$REDIS_PORT}" info stats | sed -nE 's/^total_commands_processed:([0-9]+).*/\1/p'
}

# The target a bench server started as PID announces in LOG with `listening <addr>`.
listening_target() {
  echo "http://$(wait_for "$1" "$2" '^listening ' | awk '{ print $2 }')"
}

start_bare() {
  start "$1" "$BENCH" baseline-grpc --listen 127.0.0.1:0 "${@:2}"
  BARE_PID=$STARTED
  BARE_TARGET=$(listening_target "$STARTED" "$WORK/$1.log")
}

# Baseline 3 in front of the simulated CAMS started last.
start_proxy() {
  start "$1" "$BENCH" baseline-proxy --listen 127.0.0.1:0 "${UPSTREAM[@]}"
  PROXY_PID=$STARTED
  PROXY_TARGET=$(listening_target "$STARTED" "$WORK/$1.log")
}

# load NAME CONCURRENCY TARGET ARGS...: a measured gRPC run; its summary goes to
# $RESULTS/NAME.json.
load() {
  local name=$1 concurrency=$2 target=$3
  shift 3
  "$BENCH" load --json --label "$name" --target "$target" --concurrency "$concurrency" \
    --connections "$CONNECTIONS" --warmup "$WARMUP" --duration "$DURATION" "$@" \
    >"$RESULTS/$name.json"
}

# cpu_ticks PID: the CPU time PID has used so far, user and system, in clock ticks (getconf
# CLK_TCK a second). Per call, it is far less sensitive than throughput to what a neighbour does
# to the machine.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

record_peak() { proc_kib "$1" VmHWM >"$RESULTS/$2.hwm_kb"; }

# Successful calls per second of a short measured gRPC run (TARGET ARGS...), for the rounds.
round_rate() {
  local target=$1
  shift
  "$BENCH" load --json --target "$target" --concurrency "$CONCURRENCY" \
    --connections "$CONNECTIONS" --warmup 1s --duration "$ROUND" "$@" 2>/dev/null | ok_per_s
}

ok_per_s() { sed -nE 's/^  "ok_per_s": ([0-9.]+),?$/\1/p'; }


# --- the report ----------------------------------------------------------------------------------

# The revision measured; BENCHMARKS.md is left out of "uncommitted changes" because the suite
# itself writes it between its scripts.
tree_revision() {
  local revision
  revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  if [ -n "$(git status --porcelain --untracked-files=no -- . ':!BENCHMARKS.md' 2>/dev/null)" ]; then
    revision="$revision + uncommitted changes"
  fi
  echo "$revision"
}

# splice_report MARKER HEADING REPORT: REPORT replaces what lies between the MARKER:start and
# MARKER:end comments of BENCHMARKS.md; the first time, a section HEADING with them is appended.
splice_report() {
  local marker=$1 heading=$2 report=$3
  if ! grep -q "^<!-- $marker:start -->\$" BENCHMARKS.md; then
    printf '\n## %s\n\n<!-- %s:start -->\n<!-- %s:end -->\n' "$heading" "$marker" "$marker" >>BENCHMARKS.md
  fi
  awk -v report="$report" -v start="<!-- $marker:start -->" -v end="<!-- $marker:end -->" '
    $0 == start { print; while ((getline line < report) > 0) print line; skipping = 1; next }
    $0 == end { skipping = 0 }
    !skipping { print }
  ' BENCHMARKS.md >"$WORK/BENCHMARKS.md"
  cp "$WORK/BENCHMARKS.md" BENCHMARKS.md
}
