"""The wire format both API generations share: grpc-gateway v1's jsonpb, in and out.

DSP 1.x (kfp-tekton 1.5) and DSP 2.x (KFP 2.5.0) both serve their REST API through grpc-gateway
v1.16, whose jsonpb writes the proto's original snake_case names, enums as names, int64 as
strings, zero values left out but every Timestamp sent (1970 for "never"), and reads
lowerCamelCase as well as snake_case names. Its error JSON is `{error, code, message, details}`;
what a detail holds is the generation's (`errors.ApiError.gateway_body`, `rpc_status_body`).
The upload handlers are plain HTTP on both servers and write their own error JSON.

Each generation's `wire_v1` / `wire_v2` renders its models with these helpers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from localdsp.errors import ApiError, InvalidInput
from localdsp.models import ListRequest, Page, Trigger

# --------------------------------------------------------------------------- models → JSON


def pb(**fields: Any) -> dict[str, Any]:
    """A message as jsonpb writes it with EmitDefaults off: zero values are left out."""
    return {k: v for k, v in fields.items() if v not in (None, "", 0, False, [], {})}


def timestamp(seconds: int) -> str:
    """A Timestamp; the servers always send these, the zero time as 1970-01-01T00:00:00Z."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def api_trigger(trigger: Trigger) -> dict | None:
    """A schedule's `trigger` (the same message in v1beta1 and v2beta1); none: left out."""
    times = {
        "start_time": timestamp(trigger.start_time) if trigger.start_time else None,
        "end_time": timestamp(trigger.end_time) if trigger.end_time else None,
    }
    if trigger.kind == "cron":
        return {"cron_schedule": pb(**times, cron=trigger.cron)}
    if trigger.kind == "periodic":
        return {"periodic_schedule": pb(**times, interval_second=str(trigger.interval_second))}
    return None


def listing(field: str, page: Page, render: Callable[[Any], dict]) -> JSONResponse:
    """A List response: the items under `field`, `total_size` and `next_page_token` (each left
    out when zero, so an empty listing is `{}`)."""
    return JSONResponse(
        pb(
            **{field: [render(item) for item in page.items]},
            total_size=page.total_size,
            next_page_token=page.next_page_token,
        )
    )


def error_handler(
    body: Callable[[ApiError], dict],
) -> Callable[[Request, ApiError], Awaitable[Response]]:
    """Starlette's handler for ApiError: grpc-gateway's error JSON (`body` writes the
    generation's), with the HTTP status of the error's gRPC code."""

    async def handle(request: Request, error: ApiError) -> Response:
        return JSONResponse(body(error), status_code=error.status)

    return handle


def handler_error(status: int, error: ApiError) -> JSONResponse:
    """An error of the plain HTTP handlers (uploads, logs): their JSON, their chosen status."""
    return JSONResponse(error.upload_body(), status_code=status)


# --------------------------------------------------------------------------- JSON → requests


def snake_keys(value: Any) -> Any:
    """jsonpb accepts lowerCamelCase field names as well as the proto's snake_case ones."""
    if isinstance(value, dict):
        return {
            re.sub(r"(?<!^)([A-Z])", r"_\1", k).lower(): snake_keys(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [snake_keys(v) for v in value]
    return value


async def read_body(request: Request) -> dict:
    """The request's JSON object with snake_case field names; anything else is a 400."""
    try:
        document = json.loads(await request.body() or b"{}")
    except ValueError as err:
        raise InvalidInput(f"invalid character in request body: {err}") from err
    if not isinstance(document, dict):
        raise InvalidInput("the request body must be a JSON object")
    return snake_keys(document)


def parse_enum(value: Any, names: tuple[str, ...], what: str) -> str:
    """An enum given by name or number; the zero value (UNKNOWN_*) becomes ""."""
    if value in (None, ""):
        return ""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
        name = names[value]
    elif isinstance(value, str) and value.isdigit() and int(value) < len(names):
        name = names[int(value)]
    elif value in names:
        name = value
    else:
        raise InvalidInput(f"unknown value {json.dumps(value)} for enum {what}")
    return "" if name == names[0] else name


def parse_int(value: Any, what: str) -> int:
    """An integer field: jsonpb reads int64 from JSON numbers or strings."""
    if value in (None, ""):
        return 0
    try:
        return int(value)
    except (TypeError, ValueError) as err:
        raise InvalidInput(f"invalid value {json.dumps(value)} for {what}") from err


def parse_timestamp(value: Any) -> int:
    """An RFC 3339 Timestamp as epoch seconds (0 when not given)."""
    if not value:
        return 0
    try:
        return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp())
    except ValueError as err:
        raise InvalidInput(f"bad Timestamp {json.dumps(value)}") from err


def parse_trigger(data: dict | None) -> Trigger:
    """A request's `trigger`: a cron or a periodic schedule (not both), or none."""
    data = data or {}
    cron, periodic = data.get("cron_schedule"), data.get("periodic_schedule")
    if cron is not None and periodic is not None:
        raise InvalidInput("a trigger takes either cron_schedule or periodic_schedule")
    schedule = cron if cron is not None else periodic
    if schedule is None:
        return Trigger()
    times = {
        "start_time": parse_timestamp(schedule.get("start_time")),
        "end_time": parse_timestamp(schedule.get("end_time")),
    }
    if cron is not None:
        return Trigger("cron", cron=str(cron.get("cron", "")), **times)
    interval = parse_int(periodic.get("interval_second"), "interval_second")
    return Trigger("periodic", interval_second=interval, **times)


def list_request(request: Request) -> ListRequest:
    """A List call's paging, sort and filter query parameters, as sent."""
    query = request.query_params
    return ListRequest(
        page_token=query.get("page_token", ""),
        page_size=query.get("page_size", ""),
        sort_by=query.get("sort_by", ""),
        filter=query.get("filter", ""),
    )
