"""The admin endpoints under `/_localdsp/`, alike for both API generations.

Health, state (each generation dumps its own objects), reset, fault rules and random faults,
the request log and the accepted tokens. They live apart from the real API's paths and are
never faulted, logged or authenticated.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from localdsp.faults import ADMIN_PREFIX, FaultInjector, FaultRule, RandomFaults
from localdsp.proxy import Tokens


class Resettable(Protocol):
    """A generation's backend, as the reset endpoint sees it."""

    def reset(self) -> None: ...


class Admin:
    """`/_localdsp/...`: health, state, reset, faults, request log and tokens."""

    def __init__(
        self,
        backend: Resettable,
        state: Callable[[], dict],
        injector: FaultInjector,
        tokens: Tokens,
    ):
        """`state` is the generation's dump of everything stored (`wire_v1.api_state`, ...)."""
        self.backend = backend
        self.dump = state
        self.injector = injector
        self.tokens = tokens

    def routes(self) -> list[Route]:
        a = ADMIN_PREFIX.rstrip("/")
        return [
            Route(f"{a}/health", self.health, methods=["GET"]),
            Route(f"{a}/state", self.state, methods=["GET"]),
            Route(f"{a}/reset", self.reset, methods=["POST"]),
            Route(f"{a}/faults", self.faults, methods=["GET", "POST", "DELETE"]),
            Route(f"{a}/faults/random", self.random_faults, methods=["PUT"]),
            Route(f"{a}/requests", self.requests, methods=["GET", "DELETE"]),
            Route(f"{a}/tokens", self.set_tokens, methods=["PUT"]),
        ]

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def state(self, request: Request) -> Response:
        """Everything stored, flat and without manifests: for people and scripts to check."""
        return JSONResponse(self.dump())

    async def reset(self, request: Request) -> Response:
        self.backend.reset()
        return JSONResponse({})

    async def faults(self, request: Request) -> Response:
        """GET lists the rules, POST adds one rule (or a list), DELETE removes all faults."""
        if request.method == "DELETE":
            self.injector.clear()
            return JSONResponse({})
        if request.method == "POST":
            try:
                document = json.loads(await request.body())
                items = document if isinstance(document, list) else [document]
                new_rules = [FaultRule.create(**item) for item in items]
            except (ValueError, TypeError) as err:
                return JSONResponse({"error": str(err)}, status_code=400)
            added = [self.injector.add(rule).as_dict() for rule in new_rules]
            return JSONResponse(added if isinstance(document, list) else added[0])
        return JSONResponse(self.injector.rules())

    async def random_faults(self, request: Request) -> Response:
        try:
            settings = RandomFaults(**json.loads(await request.body()))
        except (ValueError, TypeError) as err:
            return JSONResponse({"error": str(err)}, status_code=400)
        self.injector.set_random(settings)
        return JSONResponse({})

    async def requests(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.injector.clear_requests()
            return JSONResponse({})
        return JSONResponse(self.injector.requests())

    async def set_tokens(self, request: Request) -> Response:
        """{"tokens": [...]} replaces the accepted tokens; null switches the check off."""
        try:
            self.tokens.set(json.loads(await request.body())["tokens"])
        except (ValueError, TypeError, KeyError) as err:
            return JSONResponse({"error": f'expected {{"tokens": [...] or null}}: {err}'}, 400)
        return JSONResponse({})
