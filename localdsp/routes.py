"""Route plumbing both API generations share, and the ASGI app around their routes.

Most handlers of both servers only hand path parameters to a rule and answer with what it
returns, rendered (or `{}`): they differ in paths, rules and renderers, not in logic, so they are
built here from those (`by_path`, `list_of`, `collection`). Handlers with more to do (creates
with a body, uploads, logs) stay in each generation's `app` / `api_v2`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from localdsp.errors import ApiError
from localdsp.faults import ASGIApp, FaultInjector, FaultMiddleware
from localdsp.models import ListRequest, Page
from localdsp.proxy import AuthMiddleware, Tokens
from localdsp.wire import error_handler, list_request, listing

Endpoint = Callable[[Request], Awaitable[Response]]
Render = Callable[[Any], dict]


def get(path: str, endpoint: Endpoint) -> Route:
    return Route(path, endpoint, methods=["GET"])


def post(path: str, endpoint: Endpoint) -> Route:
    return Route(path, endpoint, methods=["POST"])


def delete(path: str, endpoint: Endpoint) -> Route:
    return Route(path, endpoint, methods=["DELETE"])


def by_path(call: Callable[..., Any], *params: str, render: Render | None = None) -> Endpoint:
    """A handler that hands the path parameters `params` (`id` if none are named) to `call`
    and answers `render(result)`, or the servers' empty message `{}` without `render`."""
    names = params or ("id",)

    async def endpoint(request: Request) -> Response:
        result = call(*(request.path_params[name] for name in names))
        return JSONResponse(render(result) if render else {})

    return endpoint


def list_of(field: str, render: Render, page: Callable[[Request, ListRequest], Page]) -> Endpoint:
    """A List handler: `page(request, its list request)` rendered under `field`."""

    async def endpoint(request: Request) -> Response:
        return listing(field, page(request, list_request(request)), render)

    return endpoint


def collection(
    path: str,
    *,
    create: Endpoint,
    list_all: Endpoint,
    get_one: Callable[[str], Any],
    render: Render,
    delete_one: Callable[[str], Any],
    actions: Mapping[str, Callable[[str], Any]],
) -> list[Route]:
    """The routes of a collection both servers serve alike: create and list at `path`, get and
    delete at `path/{id}`, and each action (`:archive`, `/terminate`, ...) as a POST that hands
    the id to its rule and answers `{}`."""
    item = f"{path}/{{id}}"
    return [
        post(path, create),
        get(path, list_all),
        get(item, by_path(get_one, render=render)),
        delete(item, by_path(delete_one)),
        *(post(f"{item}{suffix}", by_path(rule)) for suffix, rule in actions.items()),
    ]


def api_app(
    routes: list[Route],
    error_body: Callable[[ApiError], dict],
    injector: FaultInjector,
    tokens: Tokens,
) -> ASGIApp:
    """The whole server as one ASGI app: faults outside, then the oauth-proxy, then the routes,
    whose ApiErrors become grpc-gateway's error JSON (`error_body` writes the generation's)."""
    app = Starlette(routes=routes, exception_handlers={ApiError: error_handler(error_body)})
    return FaultMiddleware(AuthMiddleware(app, tokens), injector)
