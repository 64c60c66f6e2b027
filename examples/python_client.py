#!/usr/bin/env python3
"""Call the cams-flows gateway from Python: GetFlow and the gRPC health check.

The stubs are generated at run time from proto/cams/flows/v1/flows.proto (grpcio-tools), so there
is no generated code to keep in sync. Failures are printed with their google.rpc details decoded
(ErrorInfo, RetryInfo, BadRequest), which is what a real caller should branch on.

    pip install grpcio grpcio-tools grpcio-status grpcio-health-checking
    python examples/python_client.py get 926753328126430 --space cams-kei1
    python examples/python_client.py get sim:error:Throttling.User
    python examples/python_client.py health

Exit status: 0 on success, 1 on a gRPC error (or a health status other than SERVING).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import grpc
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

DEFAULT_PROTO_DIR = Path(__file__).resolve().parent.parent / "proto"
FLOWS_PROTO = "cams/flows/v1/flows.proto"


def load_stubs(proto_dir: Path):
    """Compiles flows.proto in process; returns (messages module, services module)."""
    if not (proto_dir / FLOWS_PROTO).is_file():
        sys.exit(f"error: {proto_dir / FLOWS_PROTO} not found (use --proto-dir)")
    # grpc.protos_and_services resolves proto paths against sys.path (plus the well-known types
    # that grpcio-tools ships, such as google/protobuf/timestamp.proto).
    sys.path.insert(0, str(proto_dir))
    return grpc.protos_and_services(FLOWS_PROTO)


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
        else:
            print(f"  {detail.type_url}")


def get_flow(args: argparse.Namespace) -> int:
    protos, services = load_stubs(args.proto_dir)
    with grpc.insecure_channel(args.target) as channel:
        stub = services.FlowServiceStub(channel)
        request = protos.GetFlowRequest(flow_id=args.flow_id, cust_space_id=args.space)
        try:
            # The timeout travels as grpc-timeout; the gateway bounds its call to CAMS by it.
            response, call = stub.GetFlow.with_call(request, timeout=args.timeout)
        except grpc.RpcError as error:
            print_error(error)
            return 1
    cache = dict(call.initial_metadata() or ()).get("x-cams-cache", "")
    print(json_format.MessageToJson(response, indent=2))
    print(f"x-cams-cache: {cache}")
    return 0


def health(args: argparse.Namespace) -> int:
    with grpc.insecure_channel(args.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
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
        "--timeout", type=float, default=5.0, help="deadline of the call in seconds (default 5)"
    )
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
