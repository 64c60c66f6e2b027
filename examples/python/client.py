#!/usr/bin/env python3
"""Call the cams-flows gateway from Python: the four Flow reads and the gRPC health check.

The stubs are generated at run time from proto/cams/flows/v1/flows.proto (grpcio-tools), so there
is no generated code to keep in sync. The channel loads examples/service-config.json: a deadline
for every FlowService call and retries of UNAVAILABLE and RESOURCE_EXHAUSTED that wait as long as
the gateway's grpc-retry-pushback-ms trailer says. Failures are printed with their google.rpc
details decoded (ErrorInfo, RetryInfo, BadRequest, QuotaFailure), which is what a real caller
should branch on.

    pip install -r examples/python/requirements.txt
    python examples/python/client.py get 926753328126430 --space cams-kei1
    python examples/python/client.py get sim:throttle:500
    python examples/python/client.py list --space sim:catalogue:45 --name flow_1
    python examples/python/client.py preview 100000000000002
    python examples/python/client.py asset 100000000000002
    python examples/python/client.py quota --space cams-kei1
    python examples/python/client.py health

Every answer's RateLimit metadata (ratelimit-policy, ratelimit: the limit that binds, what it
leaves, when it resets) is printed with it; `quota` asks QuotaService/GetQuota, which spends
nothing.

Exit status: 0 on success, 1 on a gRPC error (or a health status other than SERVING).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
from pathlib import Path

import grpc
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

EXAMPLES = Path(__file__).resolve().parent.parent
DEFAULT_PROTO_DIR = EXAMPLES.parent / "proto"
DEFAULT_SERVICE_CONFIG = EXAMPLES / "service-config.json"
FLOWS_PROTO = "cams/flows/v1/flows.proto"
QUOTA_PROTO = "cams/flows/v1/quota.proto"
SERVICE = "cams.flows.v1.FlowService"
# The RateLimit metadata of every FlowService answer (response headers, or trailers on a failure).
RATELIMIT_HEADERS = ("ratelimit-policy", "ratelimit")


def load_stubs(proto_dir: Path, proto: str = FLOWS_PROTO):
    """Compiles a proto of the gateway in process; returns (messages module, services module)."""
    if not (proto_dir / proto).is_file():
        sys.exit(f"error: {proto_dir / proto} not found (use --proto-dir)")
    # grpc.protos_and_services resolves proto paths against sys.path (plus the well-known types
    # that grpcio-tools ships, such as google/protobuf/timestamp.proto).
    sys.path.insert(0, str(proto_dir))
    return grpc.protos_and_services(proto)


def load_service_config(path: str) -> tuple[str | None, dict[str, float]]:
    """The service config for the channel, and its timeouts in seconds by FlowService method
    ("" for an entry that names the whole service).

    The timeouts are taken out of the config and applied to each call instead: grpcio (gRPC's
    C-core) starts a service config's timeout from a clock that runs up to two seconds ahead, so
    calls end in DEADLINE_EXCEEDED that much too early (grpc/grpc#34547); a call's own timeout
    has no such error. The rest (retries, pushback, throttling) is gRPC's to apply.
    """
    if not path:
        return None, {}
    config = json.loads(Path(path).read_text())
    timeouts = {}
    for method in config.get("methodConfig", []):
        value = method.pop("timeout", None)
        if not value:
            continue
        for name in method.get("name", []):
            if name.get("service") == SERVICE:
                timeouts[name.get("method", "")] = float(value.removesuffix("s"))
    return json.dumps(config), timeouts


def open_channel(args: argparse.Namespace, service_config: str | None) -> grpc.Channel:
    """A channel with the service config (retries, pushback) and, if asked, TLS."""
    options = [("grpc.enable_retries", 1)]
    if service_config:
        # gRPC parses and checks the JSON, and fails the calls on a bad one.
        options.append(("grpc.service_config", service_config))
    if args.tls or args.ca_file:
        roots = Path(args.ca_file).read_bytes() if args.ca_file else None
        return grpc.secure_channel(
            args.target, grpc.ssl_channel_credentials(root_certificates=roots), options=options
        )
    return grpc.insecure_channel(args.target, options=options)


def call_metadata() -> list[tuple[str, str]]:
    """`authorization: Bearer <key>` when the gateway runs with `auth.mode = "api_key"`."""
    key = os.environ.get("CAMS_FLOWS_API_KEY")
    return [("authorization", f"Bearer {key}")] if key else []


def print_error(error: grpc.RpcError) -> None:
    """Prints the status code, message and every google.rpc detail the gateway attached."""
    print(f"error: {error.code().name}: {error.details()}")
    trailers = dict(error.trailing_metadata() or ())
    if "grpc-retry-pushback-ms" in trailers:
        print(f"  grpc-retry-pushback-ms: {trailers['grpc-retry-pushback-ms']}")
    print_ratelimit(trailers, indent="  ")
    status = rpc_status.from_call(error)
    if status is None:
        print("  (no google.rpc.Status details)")
        return
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            print(f"  ErrorInfo: reason={info.reason} domain={info.domain}")
            for key in sorted(info.metadata):
                print(f"    {key}: {info.metadata[key]}")
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            print(f"  RetryInfo: retry after {retry.retry_delay.ToMilliseconds()} ms")
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            for violation in bad.field_violations:
                print(f"  BadRequest: {violation.field}: {violation.description}")
        elif detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
            quota = error_details_pb2.QuotaFailure()
            detail.Unpack(quota)
            for violation in quota.violations:
                print(f"  QuotaFailure: {violation.subject}: {violation.description}")
        else:
            print(f"  {detail.type_url}")


# The CAMS action behind each FlowService method: the simulated CAMS counts its calls by action.
CAMS_ACTIONS = {
    "GetFlow": "GetFlow",
    "ListFlows": "ListFlow",
    "GetFlowPreviewUrl": "GetFlowPreviewUrl",
    "GetFlowJsonAsset": "GetFlowJSONAssest",  # CAMS spells it so
}


def print_sandbox_calls(sandbox_url: str, method: str, counted: tuple[str, str]) -> None:
    """How many calls of the method's CAMS action the simulated CAMS accepted (its
    /_sandbox/stats) for one flow id (`calls_by_flow`) or one space (`calls_by_space`)."""
    url = sandbox_url.rstrip("/") + "/_sandbox/stats"
    with urllib.request.urlopen(url, timeout=5) as reply:
        stats = json.load(reply)
    by, key = counted
    print(f"cams calls: {stats['by_action'][CAMS_ACTIONS[method]][by].get(key, 0)}")


def call_gateway(args: argparse.Namespace, method: str, counted: tuple[str, str], work) -> int:
    """Opens a channel, runs `work(protos, call)` and prints the error that ended it, if any, then
    the time taken and, given the simulated CAMS's URL, its count of calls of the method's action.

    `call(request)` calls `method` and returns the response and the response headers.
    """
    protos, services = load_stubs(args.proto_dir)
    service_config, timeouts = load_service_config(args.service_config)
    timeout = args.timeout if args.timeout is not None else timeouts.get(method, timeouts.get(""))
    started = time.monotonic()
    with open_channel(args, service_config) as channel:
        rpc = getattr(services.FlowServiceStub(channel), method)

        def call(request):
            # The timeout travels as grpc-timeout and bounds every attempt together; the gateway
            # bounds its call to CAMS by what is left of it.
            response, outcome = rpc.with_call(request, timeout=timeout, metadata=call_metadata())
            return response, dict(outcome.initial_metadata() or ())

        try:
            work(protos, call)
            status = 0
        except grpc.RpcError as error:
            print_error(error)
            status = 1
    print(f"elapsed: {round((time.monotonic() - started) * 1000)} ms")
    if args.sandbox_url:
        print_sandbox_calls(args.sandbox_url, method, counted)
    return status


def print_ratelimit(metadata: dict[str, str], indent: str = "") -> None:
    """The RateLimit metadata, when the answer has it: the limits checked, and the one that
    binds now with the calls it leaves (r) and the seconds until it is whole (t)."""
    for name in RATELIMIT_HEADERS:
        if name in metadata:
            print(f"{indent}{name}: {metadata[name]}")


def print_response(response, headers: dict[str, str]) -> None:
    """A response as the proto's JSON mapping writes it, where the gateway found it, and what is
    left of the quota."""
    print(json_format.MessageToJson(response, indent=2))
    print(f"x-cams-cache: {headers.get('x-cams-cache', '')}")
    print_ratelimit(headers)


def flow_read(method: str, request_type: str):
    """A command that reads one flow by id (get, preview, asset) and prints the response."""

    def command(args: argparse.Namespace) -> int:
        def work(protos, call):
            request = getattr(protos, request_type)(flow_id=args.flow_id, cust_space_id=args.space)
            print_response(*call(request))

        return call_gateway(args, method, ("calls_by_flow", args.flow_id), work)

    return command


def category_names(protos, flow) -> str:
    """The categories by enum name; one this version does not know, with CAMS's text."""
    names = []
    for category, raw in zip(flow.categories, flow.raw_categories):
        name = protos.FlowCategory.Name(category)
        names.append(f"{name} ({raw})" if category == protos.FLOW_CATEGORY_UNSPECIFIED else name)
    return ", ".join(names)


def list_flows(args: argparse.Namespace) -> int:
    """Every page of ListFlows, following next_page_token until it comes back empty."""

    def work(protos, call):
        pages = flows = 0
        token = args.page_token
        while True:
            request = protos.ListFlowsRequest(
                cust_space_id=args.space,
                flow_name=args.name,
                page_size=args.page_size,
                page_token=token,
            )
            response, headers = call(request)
            pages += 1
            flows += len(response.flows)
            print(
                f"page: {pages} flows: {len(response.flows)} "
                f"x-cams-cache: {headers.get('x-cams-cache', '')}"
            )
            for flow in response.flows:
                print(f"  {flow.flow_id}  {flow.flow_name}  [{category_names(protos, flow)}]")
            token = response.next_page_token
            if not token:
                break
        print(f"pages: {pages} flows: {flows}")

    return call_gateway(args, "ListFlows", ("calls_by_space", args.space), work)


def print_limit(limit) -> None:
    reset_ms = limit.reset.seconds * 1000 + limit.reset.nanos // 1_000_000
    print(
        f"{limit.name}: rps={limit.rps:g} burst={limit.burst} remaining={limit.remaining} "
        f"reset={reset_ms} ms shadow={str(limit.shadow).lower()}"
    )


def quota(args: argparse.Namespace) -> int:
    """QuotaService/GetQuota for a tenant: its limit and the caller's, and the account's budget
    of each CAMS action. It spends nothing, so it may be polled."""
    protos, services = load_stubs(args.proto_dir, QUOTA_PROTO)
    with open_channel(args, None) as channel:
        stub = services.QuotaServiceStub(channel)
        try:
            answer = stub.GetQuota(
                protos.GetQuotaRequest(cust_space_id=args.space),
                timeout=args.timeout or 5,
                metadata=call_metadata(),
            )
        except grpc.RpcError as error:
            print_error(error)
            return 1
    print_limit(answer.tenant)
    if answer.HasField("caller"):
        print_limit(answer.caller)
    else:
        print("caller: no limit of its own")
    for action in answer.actions:
        print(
            f"account {action.action}: rps={action.account_rps} "
            f"used_last_second={action.used_last_second} waiting={action.waiting}"
        )
    return 0


def health(args: argparse.Namespace) -> int:
    with open_channel(args, None) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout or 5
            )
        except grpc.RpcError as error:
            print_error(error)
            return 1
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{args.service or '(server)'}: {name}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--target",
        default=os.environ.get("CAMS_FLOWS_TARGET", "localhost:50051"),
        help="gateway address, host:port (env CAMS_FLOWS_TARGET; default localhost:50051)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        help="deadline of each call in seconds (of each page, for list), retries included "
        "(default: the service config's timeout, 5 s; none without a service config)",
    )
    parser.add_argument(
        "--service-config",
        default=str(DEFAULT_SERVICE_CONFIG),
        help='gRPC service config JSON file (default: examples/service-config.json; "" for none)',
    )
    parser.add_argument("--tls", action="store_true", help="TLS, with the system's CA roots")
    parser.add_argument("--ca-file", help="TLS, trusting the CA certificates in this PEM file")
    commands = parser.add_subparsers(dest="command", required=True)

    # The options every FlowService command takes.
    flow_service = argparse.ArgumentParser(add_help=False)
    flow_service.add_argument(
        "--space", default="", help="CustSpaceId (empty: the account's own space)"
    )
    flow_service.add_argument(
        "--proto-dir",
        type=Path,
        default=DEFAULT_PROTO_DIR,
        help=f"directory holding {FLOWS_PROTO} (default: the repository's proto/)",
    )
    flow_service.add_argument(
        "--sandbox-url",
        default=os.environ.get("CAMS_SANDBOX_URL", ""),
        help="the simulated CAMS's URL (env CAMS_SANDBOX_URL): then print how many calls of the "
        "command's CAMS action it accepted for this flow id (for list: this space)",
    )

    for name, method, request_type, what in (
        ("get", "GetFlow", "GetFlowRequest", "the flow"),
        ("preview", "GetFlowPreviewUrl", "GetFlowPreviewUrlRequest", "its preview URL"),
        ("asset", "GetFlowJsonAsset", "GetFlowJsonAssetRequest", "where its Flow JSON file is"),
    ):
        command = commands.add_parser(
            name, parents=[flow_service], help=f"call {SERVICE}/{method}: {what}"
        )
        command.add_argument(
            "flow_id", help="the flow id, e.g. 926753328126430 or sim:error:Ram.PermissionDeny"
        )
        command.set_defaults(run=flow_read(method, request_type))

    listing = commands.add_parser(
        "list",
        parents=[flow_service],
        help=f"call {SERVICE}/ListFlows, page after page, until the last",
    )
    listing.add_argument(
        "--name", default="", help="only flows whose name matches this (CAMS's FlowName)"
    )
    listing.add_argument(
        "--page-size", type=int, default=0, help="flows per page, at most 100 (default 0: 20)"
    )
    # Where to start: a next_page_token from an earlier listing (used to show a refused token).
    listing.add_argument("--page-token", default="", help=argparse.SUPPRESS)
    listing.set_defaults(run=list_flows)

    asking = commands.add_parser(
        "quota",
        help="call cams.flows.v1.QuotaService/GetQuota: the tenant's and the caller's limits "
        "and each CAMS action's account budget (spends nothing)",
    )
    asking.add_argument("--space", default="", help="CustSpaceId (empty: the account's own space)")
    asking.add_argument(
        "--proto-dir",
        type=Path,
        default=DEFAULT_PROTO_DIR,
        help=f"directory holding {QUOTA_PROTO} (default: the repository's proto/)",
    )
    asking.set_defaults(run=quota)

    check = commands.add_parser("health", help="call grpc.health.v1.Health/Check")
    check.add_argument(
        "--service",
        default="",
        help='service to check: "" (the server, default) or cams.flows.v1.FlowService',
    )
    check.set_defaults(run=health)

    args = parser.parse_args()
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
