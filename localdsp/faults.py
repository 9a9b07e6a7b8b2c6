"""Fault injection and the request log: localdsp misbehaving the way a cluster's path does.

Between a CI job and DSP sit a router, an oauth-proxy and a busy API server: requests fail with
503/502/504 pages, get throttled with 429, hang past the client's timeout, or lose their
connection after the server already committed. `FaultMiddleware` replays those in front of the
API: scripted rules (method + path regex, `skip` then `times`) and random faults (an error rate,
a drop-after-commit rate, latency), seeded for reproducible runs. Admin paths (`/_localdsp/`)
are never faulted nor logged.

A dropped connection closes the TCP socket with no HTTP response at all, which needs the server's
transport: this works under uvicorn's h11 protocol, whose ASGI `send` is a bound method of the
request cycle that holds it.
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

ADMIN_PREFIX = "/_localdsp/"
ACTIONS = ("status", "delay", "drop_after_commit", "drop_before")
REQUEST_LOG_SIZE = 10_000

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass
class FaultRule:
    """One scripted fault: the first `skip` matching requests pass, the next `times` get it.

    `times` None means every matching request from then on. `path` is a regular expression
    matched against the whole request path; `method` "*" matches any method.
    """

    action: str
    method: str = "*"
    path: str = ".*"
    times: int | None = 1
    skip: int = 0
    status: int = 503
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    seconds: float = 0.0
    id: int = 0
    fired: int = 0
    skipped: int = 0

    @classmethod
    def create(cls, **settings: Any) -> FaultRule:
        """A rule from keyword settings (the admin JSON), checked; raises ValueError."""
        allowed = {f.name for f in fields(cls)} - {"id", "fired", "skipped"}
        unknown = sorted(set(settings) - allowed)
        if unknown:
            raise ValueError(f"unknown fault setting(s): {', '.join(unknown)}")
        rule = cls(**settings)
        rule._check()
        return rule

    def _check(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ACTIONS)}; got {self.action!r}")
        try:
            re.compile(self.path)
        except re.error as err:
            raise ValueError(f"path is not a regular expression: {err}") from err
        if self.times is not None and self.times < 1:
            raise ValueError("times must be at least 1 (or null for every request)")
        if self.skip < 0 or self.seconds < 0:
            raise ValueError("skip and seconds cannot be negative")
        if not 100 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP status code; got {self.status}")

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method.upper()) and re.fullmatch(self.path, path) is not None

    def describe(self) -> str:
        """Short text for the request log: "status 503", "delay 2s", "drop_after_commit"."""
        if self.action == "status":
            return f"status {self.status}"
        if self.action == "delay":
            return f"delay {self.seconds:g}s"
        return self.action

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RandomFaults:
    """Faults on a share of all API requests, plus latency on every one; `seed` repeats a run."""

    error_rate: float = 0.0
    error_status: int = 503
    latency_ms: int = 0
    drop_after_commit_rate: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("error_rate", "drop_after_commit_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.latency_ms < 0:
            raise ValueError("latency_ms cannot be negative")
        if not 100 <= self.error_status <= 599:
            raise ValueError(f"error_status must be an HTTP status code; got {self.error_status}")


class FaultInjector:
    """The scripted rules, the random faults and the request log, shared across threads."""

    def __init__(self, random_faults: RandomFaults | None = None):
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._next_id = 1
        self._log: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self.set_random(random_faults or RandomFaults())

    def add(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            rule.id, self._next_id = self._next_id, self._next_id + 1
            self._rules.append(rule)
        return rule

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [rule.as_dict() for rule in self._rules]

    def set_random(self, random_faults: RandomFaults) -> None:
        with self._lock:
            self.random = random_faults
            self._rng = random.Random(random_faults.seed)  # noqa: S311 - not for security

    def clear(self) -> None:
        """Forget every scripted rule and switch random faults off."""
        self.set_random(RandomFaults())
        with self._lock:
            self._rules.clear()

    def choose(self, method: str, path: str) -> FaultRule | None:
        """The fault for this request, if any: scripted rules first, in order, then random."""
        with self._lock:
            for rule in self._rules:
                if rule.exhausted or not rule.matches(method, path):
                    continue
                if rule.skipped < rule.skip:
                    rule.skipped += 1
                    continue
                rule.fired += 1
                return rule
            return self._random_fault()

    def _random_fault(self) -> FaultRule | None:
        chance = self._rng.random()
        if chance < self.random.error_rate:
            return FaultRule("status", status=self.random.error_status)
        if chance < self.random.error_rate + self.random.drop_after_commit_rate:
            return FaultRule("drop_after_commit")
        return None

    def record(self, method: str, path: str, query: str) -> dict[str, Any]:
        """A new request log entry; the caller fills in `status` and `fault` as they happen."""
        entry = {"method": method, "path": path, "query": query, "status": None, "fault": None}
        with self._lock:
            self._log.append(entry)
        return entry

    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(entry) for entry in self._log]

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()


class FaultMiddleware:
    """ASGI middleware applying the injector's faults and logging every API request.

    It must wrap the app directly under uvicorn (no other middleware outside it), so that `send`
    is uvicorn's own and the drop actions can reach the connection.
    """

    def __init__(self, app: ASGIApp, injector: FaultInjector):
        self.app = app
        self.injector = injector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        entry = self.injector.record(
            scope["method"], scope["path"], scope.get("query_string", b"").decode("latin-1")
        )
        fault = self.injector.choose(scope["method"], scope["path"])
        if fault is not None:
            entry["fault"] = fault.describe()
        # Read the whole body first: once a client gives up (timeout, drop), uvicorn no longer
        # hands out what it buffered, and the request must still be processed.
        receive = await _buffered(receive)
        if self.injector.random.latency_ms:
            await asyncio.sleep(self.injector.random.latency_ms / 1000)
        await self._apply(fault, scope, receive, _RecordingSend(send, entry))

    async def _apply(
        self, fault: FaultRule | None, scope: Scope, receive: Receive, send: _RecordingSend
    ) -> None:
        if fault is None:
            await self.app(scope, receive, send)
        elif fault.action == "status":
            await _respond(fault, send)
        elif fault.action == "delay":
            await asyncio.sleep(fault.seconds)
            await self.app(scope, receive, send)
        elif fault.action == "drop_after_commit":
            await self.app(scope, receive, send.swallowing())
            await _drop_connection(send.original)
        else:
            await _drop_connection(send.original)


async def _buffered(receive: Receive) -> Receive:
    """Read the request body now; the returned `receive` replays it, then defers to uvicorn."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    pending = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


class _RecordingSend:
    """Uvicorn's `send`, noting the status in the log entry; can also swallow the response."""

    def __init__(self, original: Send, entry: dict[str, Any], deliver: bool = True):
        self.original = original
        self.entry = entry
        self.deliver = deliver

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.entry["status"] = message["status"]
        if self.deliver:
            await self.original(message)

    def swallowing(self) -> _RecordingSend:
        return _RecordingSend(self.original, self.entry, deliver=False)


async def _respond(rule: FaultRule, send: Send) -> None:
    body = rule.body
    if body is None:
        body = '{"error":"localdsp injected fault","code":14,"message":"localdsp injected fault"}'
    headers = [(b"content-type", rule.content_type.encode("latin-1"))]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in rule.headers.items()]
    payload = body.encode()
    headers.append((b"content-length", str(len(payload)).encode()))
    await send({"type": "http.response.start", "status": rule.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def _drop_connection(send: Send) -> None:
    """Close the TCP connection without a response (a reset, as when a proxy dies)."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise RuntimeError("dropping a connection needs uvicorn's h11 server as the ASGI server")
    transport.abort()
    # Let uvicorn notice the disconnect before it checks whether the app responded.
    for _ in range(100):
        if getattr(cycle, "disconnected", True):
            break
        await asyncio.sleep(0)
