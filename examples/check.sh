#!/usr/bin/env bash
# Runs the example clients against a sandbox gateway and checks what they print: a GetFlow call,
# the x-cams-cache header, errors with their decoded ErrorInfo, RetryInfo and BadRequest, a
# deadline, the service config's timeout, a retry that the service config made, and retries that
# waited for the gateway's pushback; then ListFlows followed page after page (with a name filter,
# from the cache, and a made-up page token refused), GetFlowPreviewUrl answered from a cached
# GetFlow, GetFlowJsonAsset, and the service config's retries of the three; the RateLimit metadata
# of an answer and of a failure, and QuotaService/GetQuota, which spends nothing.
#
#   examples/check.sh GATEWAY_BINARY [python] [node]      (both clients when none is named)
#
# For each client it starts `GATEWAY_BINARY serve --sandbox` on a free loopback port, with the
# gateway's own retries of CAMS off (--retry-max-attempts 1) so that every retry the simulated CAMS
# counts is the client's, runs the scenarios, and stops the gateway. Each scenario uses a tenant of
# its own, so that tenant limits never interfere. The clients' dependencies must be installed:
# PYTHON (default python3) with examples/python/requirements.txt, and examples/node/node_modules
# (`npm ci --prefix examples/node`). Exit status 0 when every check passed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
if [ $# -lt 1 ] || [ ! -x "$1" ]; then
  echo "usage: $0 GATEWAY_BINARY [python] [node]   (e.g. target/release/cams-flows)" >&2
  exit 2
fi
gateway=$1
shift
clients=("$@")
[ ${#clients[@]} -gt 0 ] || clients=(python node)
PYTHON=${PYTHON:-python3}
NODE=${NODE:-node}

passed=0
failed=0
gateway_pid=
log=$(mktemp)
trap 'stop_gateway; rm -f "$log"' EXIT

start_gateway() {
  "$gateway" serve --sandbox --listen 127.0.0.1:0 --retry-max-attempts 1 --drain-timeout-ms 2000 \
    --log-format json >"$log" 2>&1 &
  gateway_pid=$!
  local _
  for _ in $(seq 100); do
    grep -q '"message":"listening"' "$log" && break
    kill -0 "$gateway_pid" 2>/dev/null || break
    sleep 0.1
  done
  target=$(grep '"message":"listening"' "$log" | grep -o '"addr":"[^"]*"' | cut -d'"' -f4 || true)
  sandbox=$(grep '"message":"simulated CAMS started' "$log" | grep -o '"endpoint":"[^"]*"' |
    cut -d'"' -f4 || true)
  if [ -z "$target" ] || [ -z "$sandbox" ]; then
    echo "the gateway did not start; its log:" >&2
    cat "$log" >&2
    exit 1
  fi
  export CAMS_FLOWS_TARGET=$target CAMS_SANDBOX_URL=$sandbox
  echo "gateway pid $gateway_pid on $target, simulated CAMS on $sandbox"
}

stop_gateway() {
  if [ -n "$gateway_pid" ]; then
    kill -TERM "$gateway_pid" 2>/dev/null || true
    wait "$gateway_pid" 2>/dev/null || true
    gateway_pid=
  fi
}

# run EXPECTED_EXIT_STATUS ARGS...: runs the client with ARGS; its output goes to $out.
run() {
  local want=$1
  shift
  printf '\n$ %s' "$client"
  printf ' %q' "$@"
  printf '\n'
  local status=0
  out=$("${client_cmd[@]}" "$@" 2>&1) || status=$?
  printf '%s\n' "$out" | sed 's/^/    /'
  check "exit status $want" [ "$status" -eq "$want" ]
}

# check DESCRIPTION COMMAND...: counts one check, passed when COMMAND succeeds.
check() {
  local what=$1
  shift
  if "$@"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAILED ($client): $what"
  fi
}

# expect REGEX: a line of the last output matches the extended regular expression.
expect() {
  check "a line matching /$1/" grep -Eq -- "$1" <<<"$out"
}

# count REGEX: how many lines of the last output match the extended regular expression.
count() { grep -Ec -- "$1" <<<"$out" || true; }
# distinct REGEX: how many different strings of the last output match it.
distinct() { grep -Eo -- "$1" <<<"$out" | sort -u | wc -l; }

elapsed_ms() { sed -n 's/^elapsed: \([0-9]*\) ms$/\1/p' <<<"$out"; }
at_least_ms() { check "elapsed at least $1 ms" [ "$(elapsed_ms)" -ge "$1" ]; }
at_most_ms() { check "elapsed at most $1 ms" [ "$(elapsed_ms)" -le "$1" ]; }

scenarios() {
  local tag="$client-$$-$RANDOM"

  if [ "$client" = python ]; then
    run 0 health
    expect '^\(server\): SERVING$'
    run 0 health --service cams.flows.v1.FlowService
    expect '^cams.flows.v1.FlowService: SERVING$'
    run 0 health --service cams.flows.v1.QuotaService
    expect '^cams.flows.v1.QuotaService: SERVING$'
  fi

  # A deadline: the client gives up after 0.5 s although CAMS answers after 3 s. First, while the
  # account quota's slots are all free, so that the call's 0.5 s go to CAMS, not to a wait.
  run 1 --timeout 0.5 get "sim:slow:3000:$tag" --space "deadline-$tag"
  expect '^error: DEADLINE_EXCEEDED'
  at_least_ms 400
  at_most_ms 1500

  # The documented flow and its JSON. (Its preview URL expired in 2023, so it is never cached.)
  run 0 get 926753328126430 --space "doc-$tag"
  expect '"flowId": "926753328126430"'
  expect '"flowName": "flow_001"'
  expect '"status": "FLOW_STATUS_DRAFT"'
  expect '"FLOW_CATEGORY_SIGN_UP"'
  expect '"previewUrlExpireTime": "2023-11-22T01:43:56.633Z"'
  expect '"requestId": "DAC72B08-3327-33EF-BEDC-8EC3E83A6575"'
  expect '^x-cams-cache: miss$'
  # The x-cams-cache header: a miss, then a hit; CAMS was asked once.
  run 0 get 100000000000002 --space "cache-$tag"
  expect '"status": "FLOW_STATUS_PUBLISHED"'
  expect '^x-cams-cache: miss$'
  # The RateLimit metadata: the sandbox's tenant limit (5 calls/s, burst 5) binds, one call spent.
  expect '^ratelimit-policy: "tenant";q=5;w=1$'
  expect '^ratelimit: "tenant";r=4;t=1$'
  run 0 get 100000000000002 --space "cache-$tag"
  expect '^x-cams-cache: hit$'
  expect '^cams calls: 1$'

  # A CAMS error: ErrorInfo with CAMS's code, HTTP status and RequestId; not retryable.
  run 1 get sim:error:Ram.PermissionDeny --space "denied-$tag"
  expect '^error: PERMISSION_DENIED: CAMS Ram.PermissionDeny: You are not authorized'
  expect '^  ErrorInfo: reason=Ram.PermissionDeny domain=cams.aliyuncs.com$'
  expect '^    httpStatus: 400$'
  expect '^    requestId: [0-9A-F-]{36}$'
  expect '^cams calls: 1$'
  # ... with the RateLimit metadata in its trailers.
  expect '^  ratelimit: "tenant";r=4;t=1$'

  # GetQuota: a tenant's limit whole, the account's budget of each action; asked again, still
  # whole: looking spends nothing.
  local asked
  for asked in first again; do
    run 0 quota --space "quota-$tag"
    check "the tenant's limit whole ($asked)" \
      grep -q '^tenant: rps=5 burst=5 remaining=5 reset=0 ms shadow=false$' <<<"$out"
  done
  expect '^caller: no limit of its own$'
  expect '^account GetFlow: rps=5 used_last_second=[0-9]+ waiting=[0-9]+$'
  expect '^account GetFlowJSONAssest: rps=5 used_last_second=[0-9]+ waiting=[0-9]+$'

  # A refusal by the gateway itself: BadRequest names the field; CAMS is not called.
  run 1 get "" --space "invalid-$tag"
  expect '^error: INVALID_ARGUMENT: '
  expect '^  BadRequest: flow_id: '
  expect '^  ErrorInfo: reason=INVALID_ARGUMENT domain=cams-flows$'

  # A retry from the service config: CAMS answers 503 once, then the flow; the gateway does not
  # retry (--retry-max-attempts 1), so the second CAMS call is the client's second attempt.
  run 0 get "sim:flaky:1:$tag" --space "flaky-$tag"
  expect "\"flowId\": \"sim:flaky:1:$tag\""
  expect '^x-cams-cache: miss$'
  expect '^cams calls: 2$'
  if [ "$client" = node ]; then
    expect '^attempts: 2$' # grpc-js says so itself (grpc-previous-rpc-attempts); grpcio does not
  fi
  # ... and without the service config, the same kind of flow fails: there was no other retry.
  run 1 --service-config "" get "sim:flaky:1:$tag-no-retry" --space "no-retry-$tag"
  expect '^error: UNAVAILABLE: CAMS ServiceUnavailable'
  expect '^  ErrorInfo: reason=ServiceUnavailable domain=cams.aliyuncs.com$'
  expect '^cams calls: 1$'

  # Pushback: CAMS throttles every attempt with a 700 ms retry-after; the gateway passes it on as
  # RetryInfo and grpc-retry-pushback-ms; the client makes its 3 attempts 700 ms apart, where its
  # own backoff would have waited less than 0.1 s + 0.2 s in all.
  run 1 get "sim:throttle:700:$tag" --space "throttled-$tag"
  expect '^error: RESOURCE_EXHAUSTED: CAMS Throttling.User'
  expect '^  grpc-retry-pushback-ms: 700$'
  expect '^  RetryInfo: retry after 700 ms$'
  expect '^  ErrorInfo: reason=Throttling.User domain=cams.aliyuncs.com$'
  expect '^cams calls: 3$'
  at_least_ms 1400
  if [ "$client" = node ]; then
    expect '^attempts: 3$'
  fi

  # ListFlows, page after page: 45 flows in pages of 20 are 3 pages (20, 20, 5) and each flow
  # once; the client followed next_page_token until the gateway sent it empty, one CAMS call a page.
  local catalogue="sim:catalogue:45:paging-$tag"
  run 0 list --space "$catalogue" --page-size 20
  expect '^page: 1 flows: 20 x-cams-cache: miss'
  expect '^page: 2 flows: 20 x-cams-cache: miss'
  expect '^page: 3 flows: 5 x-cams-cache: miss'
  expect '^  sim:ok:catalogue-45  catalogue_flow_45  \[FLOW_CATEGORY_CUSTOMER_SUPPORT, FLOW_CATEGORY_OTHER\]$'
  expect '^pages: 3 flows: 45$'
  check "45 distinct flows listed" [ "$(distinct '^  sim:ok:catalogue-[0-9]+ ')" -eq 45 ]
  expect '^cams calls: 3$'
  # ... and again: every page from the cache, CAMS not asked again.
  run 0 list --space "$catalogue" --page-size 20
  expect '^page: 1 flows: 20 x-cams-cache: hit'
  expect '^page: 3 flows: 5 x-cams-cache: hit'
  expect '^pages: 3 flows: 45$'
  expect '^cams calls: 3$'
  # A name filter, over pages too: flow_1 keeps catalogue_flow_1 and _10 to _19, 11 flows in
  # pages of 5 (the tokens carry the filter on).
  run 0 list --space "sim:catalogue:45:filter-$tag" --name flow_1 --page-size 5
  expect '^page: 3 flows: 1 '
  expect '^pages: 3 flows: 11$'
  check "11 distinct flows named catalogue_flow_1*" \
    [ "$(distinct '^  sim:ok:catalogue-1[0-9]?  catalogue_flow_1[0-9]?  ')" -eq 11 ]
  check "no other flow listed" [ "$(count '^  ')" -eq 11 ]
  # A made-up page token: INVALID_ARGUMENT with BadRequest naming page_token; CAMS is not called.
  run 1 list --space "sim:catalogue:45:forged-$tag" --page-token eyJwYWdlIjoyfQ
  expect '^error: INVALID_ARGUMENT: '
  expect '^  BadRequest: page_token: '
  expect '^  ErrorInfo: reason=INVALID_ARGUMENT domain=cams-flows$'
  expect '^cams calls: 0$'

  # GetFlowPreviewUrl after GetFlow of the same flow and space: the URL of the cached GetFlow
  # answer (the same RequestId), x-cams-cache: hit, and no GetFlowPreviewUrl call to CAMS.
  run 0 get "sim:ok:preview-$tag" --space "preview-$tag"
  expect '^x-cams-cache: miss$'
  local request_id
  request_id=$(sed -n 's/^  "requestId": "\(.*\)"$/\1/p' <<<"$out")
  run 0 preview "sim:ok:preview-$tag" --space "preview-$tag"
  expect "^  \"flowId\": \"sim:ok:preview-$tag\""
  expect "^  \"previewUrl\": \"https://business.facebook.com/wa/manage/flows/sim%3Aok%3Apreview-$tag/preview/"
  expect '^  "previewUrlExpireTime": "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9.]+Z"'
  check "the RequestId of the GetFlow answer ($request_id)" grep -q "\"requestId\": \"$request_id\"" <<<"$out"
  expect '^x-cams-cache: hit$'
  expect '^cams calls: 0$'
  # Without one, CAMS's GetFlowPreviewUrl answers: the documented flow's URL and expiry.
  run 0 preview 926753328126430 --space "preview-doc-$tag"
  expect '^  "previewUrl": "https://pre-url"'
  expect '^  "previewUrlExpireTime": "2023-11-22T01:43:56.633Z"'
  expect '^x-cams-cache: miss$'
  expect '^cams calls: 1$'

  # GetFlowJsonAsset: where the flow's Flow JSON file is.
  run 0 asset 100000000000002 --space "asset-$tag"
  expect "^  \"filePath\": \"https://bucket-sandbox-ap-southeast-1.aliyuncs.com/100000000000002.json\\?space=asset-$tag\""
  expect '^x-cams-cache: miss$'
  expect '^cams calls: 1$'
  # Its errors, as GetFlow's.
  run 1 asset sim:error:Ram.PermissionDeny --space "asset-denied-$tag"
  expect '^error: PERMISSION_DENIED: CAMS Ram.PermissionDeny: '
  expect '^  ErrorInfo: reason=Ram.PermissionDeny domain=cams.aliyuncs.com$'
  expect '^cams calls: 1$'

  # The service config covers the three new methods too: each retries CAMS's 503 once.
  run 0 list --space "sim:flaky:1:list-$tag"
  expect '^pages: 1 flows: 6$'
  expect '^cams calls: 2$'
  if [ "$client" = node ]; then
    expect '^page: 1 flows: 6 x-cams-cache: miss attempts: 2$'
  fi
  local command
  for command in preview asset; do
    run 0 "$command" "sim:flaky:1:$command-$tag" --space "flaky-$command-$tag"
    expect "^  \"flowId\": \"sim:flaky:1:$command-$tag\""
    expect '^cams calls: 2$'
    if [ "$client" = node ]; then
      expect '^attempts: 2$'
    fi
  done

  # The service config's timeout: with no deadline of its own, the call ends after 5 s. (grpcio
  # would end it up to 2 s early if the client left the timeout in the config: grpc/grpc#34547.)
  run 1 get "sim:slow:7000:$tag" --space "config-timeout-$tag"
  expect '^error: DEADLINE_EXCEEDED'
  at_least_ms 4500
  at_most_ms 5800
  # ... and every page of ListFlows gets it as well: the config names the method.
  run 1 list --space "sim:slow:7000:list-$tag"
  expect '^error: DEADLINE_EXCEEDED'
  at_least_ms 4500
  at_most_ms 5800

  # The gateway kept the account within CAMS's quota throughout: CAMS never throttled for real.
  out=$(python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())' \
    "$CAMS_SANDBOX_URL/_sandbox/stats")
  check "the simulated CAMS throttled nothing ($out)" grep -q '"throttled":0' <<<"$out"
}

for client in "${clients[@]}"; do
  case $client in
  python) client_cmd=("$PYTHON" "$here/python/client.py") ;;
  node) client_cmd=("$NODE" "$here/node/client.js") ;;
  *)
    echo "unknown client: $client (python or node)" >&2
    exit 2
    ;;
  esac
  printf '\n== %s client\n' "$client"
  start_gateway
  scenarios
  stop_gateway
done

printf '\nexamples: %d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
