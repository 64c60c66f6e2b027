"""Checks that the simulated CAMS speaks CAMS's wire format: Alibaba Cloud's official Python SDK
(alibabacloud-cams20200606 on alibabacloud-tea-openapi, pinned in requirements-cams-sdk.txt)
calls `cams-flows sandbox` for the four Flow reads and the answers it decodes are checked field
by field.

    python .ci/check-cams-sdk.py BINARY        (e.g. target/release/cams-flows)

The SDK is used as an application would use it, pointed at the simulation on loopback over HTTP:
it builds the RPC-style calls itself (`POST /`, parameters in the query string, ListFlow's `Page`
as one compact JSON string) and signs them with ACS3-HMAC-SHA256, its default for this API, over
every header it sends. Checked:

- GetFlow of the documented example flow: every field and the documented RequestId.
- ListFlow of a `sim:catalogue:<n>` space with a `FlowName` filter, over two pages and past the
  end; the `Page` query parameter exactly as the SDK sent it; a `Page` out of bounds refused.
- GetFlowPreviewUrl and GetFlowJSONAssest: the documented flow, a sample flow in a space whose
  name has a space (the SDK sends it as `+`), an expiry by the simulation's clock.
- Errors as the SDK raises them: ClientException with CAMS's Code and status (and the
  AccessDeniedDetail), ServerException for a 503, ThrottlingException with `x-acs-retry-after`.
- Finally the simulation's own statistics: no call refused for its signature, none throttled (no
  action is called more than its quota of 5 allows), and the calls counted per action.

Exit status 0 when every check passed.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any, Callable

from alibabacloud_cams20200606 import models as cams
from alibabacloud_cams20200606.client import Client
from alibabacloud_tea_openapi import models as open_api_models
from alibabacloud_tea_openapi.exceptions import (
    ClientException,
    ServerException,
    ThrottlingException,
)

KEY_ID = "sdk-check-id"
KEY_SECRET = "sdk-check-secret"
DOCUMENTED_FLOW_ID = "926753328126430"
CATALOGUE = "sim:catalogue:150"
ASSET_BASE = "https://bucket-sandbox-ap-southeast-1.aliyuncs.com"
PREVIEW_BASE = "https://business.facebook.com/wa/manage/flows"
DAY_MS = 24 * 3600 * 1000

passed = 0
failed = 0


def check(what: str, ok: bool, detail: Any = None) -> None:
    global passed, failed
    if ok:
        passed += 1
        print(f"ok: {what}")
    else:
        failed += 1
        print(f"FAILED: {what}" + ("" if detail is None else f": {detail!r}"))


def equal(what: str, got: Any, want: Any) -> None:
    shown = repr(want)
    check(what if len(shown) > 100 else f"{what} = {shown}", got == want, got)


def raises(what: str, call: Callable[[], Any], kind: type) -> Any:
    """The exception `call` raises, checked to be a `kind`; None when it raised none or another."""
    try:
        answer = call()
    except kind as error:
        check(f"{what} raises {kind.__name__}", True)
        return error
    except Exception as error:  # noqa: BLE001 - reported, not swallowed
        check(f"{what} raises {kind.__name__}", False, error)
        return None
    check(f"{what} raises {kind.__name__}", False, answer)
    return None


def now_ms() -> int:
    return int(time.time() * 1000)


def start_sandbox(binary: str) -> tuple[subprocess.Popen[str], str]:
    """Starts `BINARY sandbox` on a free loopback port; answers the process and its endpoint."""
    process = subprocess.Popen(
        [binary, "sandbox", "--listen", "127.0.0.1:0", "--access-key-id", KEY_ID,
         "--access-key-secret", KEY_SECRET, "--log-format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + 30
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        if "simulated CAMS listening" in line:
            endpoint = json.loads(line).get("fields", {}).get("endpoint") or json.loads(line).get(
                "endpoint")
            if endpoint:
                return process, endpoint
    process.kill()
    sys.exit("the simulated CAMS did not start; its output:\n" + "".join(seen))


def control(endpoint: str, path: str) -> Any:
    with urllib.request.urlopen(f"{endpoint}{path}", timeout=10) as response:
        return json.load(response)


def client_for(endpoint: str) -> Client:
    config = open_api_models.Config(
        access_key_id=KEY_ID,
        access_key_secret=KEY_SECRET,
        endpoint=endpoint.removeprefix("http://"),
        protocol="http",
        connect_timeout=5000,
        read_timeout=10000,
    )
    return Client(config)


def check_get_flow(client: Client) -> None:
    answer = client.get_flow(cams.GetFlowRequest(flow_id=DOCUMENTED_FLOW_ID))
    body = answer.body
    equal("GetFlow: HTTP status", answer.status_code, 200)
    equal("GetFlow: Code", body.code, "OK")
    equal("GetFlow: RequestId (the documented one)", body.request_id,
          "DAC72B08-3327-33EF-BEDC-8EC3E83A6575\n")
    data = body.data
    equal("GetFlow: FlowId", data.flow_id, DOCUMENTED_FLOW_ID)
    equal("GetFlow: FlowName", data.flow_name, "flow_001")
    equal("GetFlow: Status", data.status, "DRAFT")
    equal("GetFlow: Categories", data.categories, ["SIGN_UP"])
    equal("GetFlow: JSONVersion", data.jsonversion, "2.1")
    equal("GetFlow: DataApiVersion", data.data_api_version, "3.0")
    equal("GetFlow: PreviewUrl", data.preview_url, "https://pre-url")
    equal("GetFlow: PreviewUrlExpires", data.preview_url_expires, 1700617436633)


def catalogue_row(i: int) -> tuple[str, str, list[str]]:
    return (f"sim:ok:catalogue-{i}", f"catalogue_flow_{i}", ["CUSTOMER_SUPPORT", "OTHER"])


def check_list_flow(client: Client, endpoint: str) -> None:
    def page(index: int, size: int) -> list[tuple[str, str, list[str]]]:
        request = cams.ListFlowRequest(
            cust_space_id=CATALOGUE,
            flow_name="flow_1",
            page=cams.ListFlowRequestPage(index=index, size=size),
        )
        answer = client.list_flow(request)
        equal(f"ListFlow page {index}: Code", answer.body.code, "OK")
        return [(row.flow_id, row.flow_name, row.categories) for row in answer.body.data]

    # In a catalogue of 150, "flow_1" names flows 1, 10 to 19 and 100 to 150: 62 flows.
    matching = [catalogue_row(i) for i in [1, *range(10, 20), *range(100, 151)]]
    equal("ListFlow page 1 of 50: flows 1, 10 to 19, 100 to 138", page(1, 50), matching[:50])
    equal("ListFlow page 2 of 50: flows 139 to 150", page(2, 50), matching[50:])
    equal("ListFlow page 3 (past the end)", page(3, 50), [])

    sent = [entry for entry in control(endpoint, "/_sandbox/requests")
            if entry.get("action") == "ListFlow"]
    pages = [value for entry in sent for name, value in entry["params"] if name == "Page"]
    equal("ListFlow: Page as the SDK sent it", pages,
          ['{"Index":1,"Size":50}', '{"Index":2,"Size":50}', '{"Index":3,"Size":50}'])

    too_big = cams.ListFlowRequest(page=cams.ListFlowRequestPage(index=1, size=101))
    error = raises("ListFlow with Size 101", lambda: client.list_flow(too_big), ClientException)
    if error is not None:
        equal("ListFlow with Size 101: code", error.code, "InvalidParameter")
        equal("ListFlow with Size 101: status", error.status_code, 400)
        check("ListFlow with Size 101: the message names Page", '"Page"' in str(error.message),
              error.message)


def check_preview_url(client: Client, endpoint: str) -> None:
    def preview(flow_id: str, space: str | None = None) -> Any:
        request = cams.GetFlowPreviewUrlRequest(flow_id=flow_id, cust_space_id=space)
        answer = client.get_flow_preview_url(request)
        equal(f"GetFlowPreviewUrl {flow_id}: Code", answer.body.code, "OK")
        return answer.body.data

    data = preview("100000000000002", "tenant one")
    equal("GetFlowPreviewUrl: FlowId", data.flow_id, "100000000000002")
    url = data.preview_url or ""
    check("GetFlowPreviewUrl: the URL names the flow and the space (sent as tenant+one)",
          url.startswith(f"{PREVIEW_BASE}/100000000000002/preview/?token=")
          and url.endswith("&space=tenant%20one"), url)
    raw = [entry["raw_query"] for entry in control(endpoint, "/_sandbox/requests")
           if entry.get("action") == "GetFlowPreviewUrl"]
    check("GetFlowPreviewUrl: the SDK sent the space as tenant+one",
          any("CustSpaceId=tenant+one" in query for query in raw), raw)
    expires = data.preview_url_expires or 0
    check("GetFlowPreviewUrl: expires 30 days from now",
          abs(expires - (now_ms() + 30 * DAY_MS)) < 10 * 60 * 1000, expires)

    data = preview(DOCUMENTED_FLOW_ID)
    equal("GetFlowPreviewUrl of the documented flow",
          (data.flow_id, data.preview_url, data.preview_url_expires),
          (DOCUMENTED_FLOW_ID, "https://pre-url", 1700617436633))

    data = preview("sim:expiring:60000:sdk")
    equal("GetFlowPreviewUrl: FlowId of a sim: id", data.flow_id, "sim:expiring:60000:sdk")
    check("GetFlowPreviewUrl: sim:expiring:60000 expires a minute from now",
          abs((data.preview_url_expires or 0) - (now_ms() + 60_000)) < 30_000,
          data.preview_url_expires)

    request = cams.GetFlowPreviewUrlRequest(flow_id="sim:error:ServiceUnavailable")
    error = raises("GetFlowPreviewUrl of sim:error:ServiceUnavailable",
                   lambda: client.get_flow_preview_url(request), ServerException)
    if error is not None:
        equal("ServiceUnavailable: code and status", (error.code, error.status_code),
              ("ServiceUnavailable", 503))


def check_json_asset(client: Client) -> None:
    def asset(flow_id: str, space: str | None = None) -> Any:
        request = cams.GetFlowJSONAssestRequest(flow_id=flow_id, cust_space_id=space)
        answer = client.get_flow_jsonassest(request)
        equal(f"GetFlowJSONAssest {flow_id}: Code", answer.body.code, "OK")
        return answer.body.data

    data = asset(DOCUMENTED_FLOW_ID)
    equal("GetFlowJSONAssest of the documented flow", (data.flow_id, data.file_path),
          (DOCUMENTED_FLOW_ID, f"{ASSET_BASE}/{DOCUMENTED_FLOW_ID}.json"))
    data = asset("100000000000003", "tenant-a")
    equal("GetFlowJSONAssest of a sample in a space", (data.flow_id, data.file_path),
          ("100000000000003", f"{ASSET_BASE}/100000000000003.json?space=tenant-a"))

    request = cams.GetFlowJSONAssestRequest(flow_id="sim:error:Forbidden.RAM")
    error = raises("GetFlowJSONAssest of sim:error:Forbidden.RAM",
                   lambda: client.get_flow_jsonassest(request), ClientException)
    if error is not None:
        equal("Forbidden.RAM: code and status", (error.code, error.status_code),
              ("Forbidden.RAM", 403))
        detail = error.access_denied_detail or {}
        equal("Forbidden.RAM: AccessDeniedDetail.AuthAction", detail.get("AuthAction"),
              "cams:GetFlowJSONAssest")


def check_errors(client: Client) -> None:
    request = cams.GetFlowRequest(flow_id="sim:error:Ram.PermissionDeny")
    error = raises("GetFlow of sim:error:Ram.PermissionDeny", lambda: client.get_flow(request),
                   ClientException)
    if error is not None:
        equal("Ram.PermissionDeny: code and status", (error.code, error.status_code),
              ("Ram.PermissionDeny", 400))
        check("Ram.PermissionDeny: CAMS's message",
              "You are not authorized to perform the operation." in str(error.message),
              error.message)

    request = cams.GetFlowRequest(flow_id="sim:throttle:700:sdk")
    error = raises("GetFlow of sim:throttle:700", lambda: client.get_flow(request),
                   ThrottlingException)
    if error is not None:
        equal("Throttling.User: code and retry_after (ms)", (error.code, error.retry_after),
              ("Throttling.User", 700))


def check_stats(endpoint: str) -> None:
    stats = control(endpoint, "/_sandbox/stats")
    equal("no call refused (every SDK signature verified)", stats.get("rejected"), 0)
    equal("no call throttled", stats.get("throttled"), 0)
    by_action = stats.get("by_action", {})
    accepted = {name: figures.get("accepted") for name, figures in by_action.items()}
    equal("accepted calls per action", accepted,
          {"GetFlow": 3, "ListFlow": 4, "GetFlowPreviewUrl": 4, "GetFlowJSONAssest": 3})


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    process, endpoint = start_sandbox(sys.argv[1])
    try:
        print(f"simulated CAMS at {endpoint}")
        client = client_for(endpoint)
        sections: list[tuple[str, Callable[[], None]]] = [
            ("GetFlow", lambda: check_get_flow(client)),
            ("ListFlow", lambda: check_list_flow(client, endpoint)),
            ("GetFlowPreviewUrl", lambda: check_preview_url(client, endpoint)),
            ("GetFlowJSONAssest", lambda: check_json_asset(client)),
            ("errors", lambda: check_errors(client)),
            ("statistics", lambda: check_stats(endpoint)),
        ]
        for name, section in sections:
            try:
                section()
            except Exception as error:  # noqa: BLE001 - an unexpected answer is a failed check
                check(f"{name}: no unexpected exception", False, error)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
