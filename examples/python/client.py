#!/usr/bin/env python3
"""Call the cams-flows gateway from Python: GetFlow and the gRPC health check.

The stubs are generated at run time from proto/cams/flows/v1/flows.proto (grpcio-tools), so there
is no generated code to keep in sync. The channel loads examples/service-config.json: a deadline
for GetFlow and retries of UNAVAILABLE and RESOURCE_EXHAUSTED that wait as long as the gateway's
grpc-retry-pushback-ms trailer says. Failures are printed with their google.rpc details decoded
(ErrorInfo, RetryInfo, BadRequest, QuotaFailure), which is what a real caller should branch on.

    pip install -r examples/python/requirements.txt
    python examples/python/client.py get 926753328126430 --space cams-kei1
    python examples/python/client.py get sim:throttle:500
    python examples/python/client.py health

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
SERVICE = "cams.flows.v1.FlowService"


def load_stubs(proto_dir: Path):
    """Compiles flows.proto in process; returns (messages module, services module)."""
    if not (proto_dir / FLOWS_PROTO).is_file():
        sys.exit(f"error: {proto_dir / FLOWS_PROTO} not found (use --proto-dir)")
    # grpc.protos_and_services resolves proto paths against sys.path (plus the well-known types
    # that grpcio-tools ships, such as google/protobuf/timestamp.proto).
    sys.path.insert(0, str(proto_dir))
    return grpc.protos_and_services(FLOWS_PROTO)


def load_service_config(path: str) -> tuple[str | None, float | None]:
    """The service config for the channel, and GetFlow's timeout in seconds (None: none).

    The timeout is taken out of the config and applied to each call instead: grpcio (gRPC's
    C-core) starts a service config's timeout from a clock that runs up to two seconds ahead, so
    calls end in DEADLINE_EXCEEDED that much too early (grpc/grpc#34547); a call's own timeout
    has no such error. The rest (retries, pushback, throttling) is gRPC's to apply.
    """
    if not path:
        return None, None
    config = json.loads(Path(path).read_text())
    timeout = None
    for method in config.get("methodConfig", []):
        value = method.pop("timeout", None)
        names = method.get("name", [])
        if value and any(n.get("service") == SERVICE and n.get("method", "GetFlow") == "GetFlow"
                         for n in names):
            timeout = float(value.removesuffix("s"))
    return json.dumps(config), timeout


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


def print_sandbox_calls(sandbox_url: str, flow_id: str) -> None:
    """How many calls for this FlowId the simulated CAMS accepted (its /_sandbox/stats)."""
    url = sandbox_url.rstrip("/") + "/_sandbox/stats"
    with urllib.request.urlopen(url, timeout=5) as reply:
        stats = json.load(reply)
    print(f"cams calls: {stats['calls_by_flow'].get(flow_id, 0)}")


def get_flow(args: argparse.Namespace) -> int:
    protos, services = load_stubs(args.proto_dir)
    service_config, config_timeout = load_service_config(args.service_config)
    timeout = args.timeout if args.timeout is not None else config_timeout
    request = protos.GetFlowRequest(flow_id=args.flow_id, cust_space_id=args.space)
    started = time.monotonic()
    with open_channel(args, service_config) as channel:
        stub = services.FlowServiceStub(channel)
        try:
            # The timeout travels as grpc-timeout and bounds every attempt together; the gateway
            # bounds its call to CAMS by what is left of it.
            response, call = stub.GetFlow.with_call(
                request, timeout=timeout, metadata=call_metadata()
            )
            status = 0
        except grpc.RpcError as error:
            print_error(error)
            status = 1
    elapsed_ms = round((time.monotonic() - started) * 1000)
    if status == 0:
        headers = dict(call.initial_metadata() or ())
        print(json_format.MessageToJson(response, indent=2))
        print(f"x-cams-cache: {headers.get('x-cams-cache', '')}")
    print(f"elapsed: {elapsed_ms} ms")
    if args.sandbox_url:
        print_sandbox_calls(args.sandbox_url, args.flow_id)
    return status


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
        help="deadline of the call in seconds, retries included (default: the service config's "
        "timeout, 5 s; none without a service config)",
    )
    parser.add_argument(
        "--service-config",
        default=str(DEFAULT_SERVICE_CONFIG),
        help='gRPC service config JSON file (default: examples/service-config.json; "" for none)',
    )
    parser.add_argument("--tls", action="store_true", help="TLS, with the system's CA roots")
    parser.add_argument("--ca-file", help="TLS, trusting the CA certificates in this PEM file")
    commands = parser.add_subparsers(dest="command", required=True)

    get = commands.add_parser("get", help="call cams.flows.v1.FlowService/GetFlow")
    get.add_argument("flow_id", help="the flow id, e.g. 926753328126430 or sim:error:Ram.PermissionDeny")
    get.add_argument("--space", default="", help="CustSpaceId (empty: the account's own space)")
    get.add_argument(
        "--proto-dir",
        type=Path,
        default=DEFAULT_PROTO_DIR,
        help=f"directory holding {FLOWS_PROTO} (default: the repository's proto/)",
    )
    get.add_argument(
        "--sandbox-url",
        default=os.environ.get("CAMS_SANDBOX_URL", ""),
        help="the simulated CAMS's URL (env CAMS_SANDBOX_URL): then print how many calls for "
        "this flow id it accepted",
    )
    get.set_defaults(run=get_flow)

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
