"""Every pipeline with its newest version in a few requests, from the one listing that joins
pipelines to versions on a DSP 2.x server: v1beta1's `GET /apis/v1beta1/pipelines`.

v2beta1 lists versions per pipeline only. A KFP 2.x server backed by its database still serves
the v1beta1 pipeline listing, which LEFT JOINs each READY pipeline to its newest version
(`ROW_NUMBER() OVER (PARTITION BY PipelineId ORDER BY CreatedAtInSec DESC)`: ties within a
second in no promised order), giving the version's id, name, description and created_at but
neither its spec nor (for a kfp 2 pipeline) its parameters. A dsp-runner version records its
parameter signature in its description (`versions.read_signature`), so such a version needs
nothing more; any other newest version (hand-made, the pipeline-named version an upload makes,
one too big for a signature), or a pipeline without one, is asked for through v2beta1 as before.
A server without the listing (the Kubernetes pipeline store from 2.14 answers it with a 500)
is not asked (`usable`), and a listing that fails is `None`: the caller asks every pipeline.
"""

from __future__ import annotations

import dataclasses
import datetime
import types
from typing import Any

from kfp_server_api.exceptions import ApiException

from runner import versions
from runner.calls import PAGE_SIZE, Calls
from runner.errors import ServerError
from runner.harness import Parameter
from runner.server import ServerVersion, server_time

PATH = "/apis/v1beta1/pipelines"
OPERATION = "list pipelines with newest versions"
KUBERNETES_STORE = "kubernetes"
"""healthz's `pipeline_store` (KFP 2.14+) when pipelines are Kubernetes objects: no v1beta1."""


@dataclasses.dataclass(frozen=True)
class Listed:
    """One pipeline of the listing: id, name, and its newest version's record and parameter
    types when that version carries a signature (else `version` is None)."""

    id: str
    name: str
    version: ServerVersion | None
    types: tuple[Parameter, ...]


def usable(server_info: dict) -> bool:
    """Whether the server keeps pipelines in its database, where the v1beta1 listing works."""
    return server_info.get("pipeline_store", "database") != KUBERNETES_STORE


def read_all(calls: Calls, api_client, namespace: str | None) -> list[Listed] | None:
    """The listing, page by page under the retry policy; None when the server answered it
    with an HTTP error other than a refused token (404: no such route; 5xx that outlasted the
    retries), so the caller asks pipeline by pipeline. An unreachable server, a refused token
    or a non-JSON page is the caller's error as on any other call."""
    last: list[BaseException] = []

    def fetch(token: str) -> types.SimpleNamespace:
        try:
            return _page(api_client, namespace, token)
        except BaseException as exc:
            last[:] = [exc]
            raise

    try:
        return [_listed(item) for item in calls.pages(OPERATION, "pipelines", fetch)]
    except ServerError:
        answered = last and isinstance(last[0], ApiException)
        if answered and last[0].status not in (0, 403):
            return None
        raise


def _page(api_client, namespace: str | None, token: str) -> types.SimpleNamespace:
    """One page through the generated client's own `call_api` (the token hook, the guard)."""
    query: list[tuple[str, Any]] = [("page_size", PAGE_SIZE)]
    if token:
        query.append(("page_token", token))
    if namespace:
        query += [("resource_reference_key.type", "NAMESPACE")]
        query += [("resource_reference_key.id", namespace)]
    body = api_client.call_api(
        PATH,
        "GET",
        query_params=query,
        header_params={"Accept": "application/json"},
        response_type="object",
        auth_settings=["Bearer"],
        _return_http_data_only=True,
    )
    body = body if isinstance(body, dict) else {}
    return types.SimpleNamespace(
        pipelines=body.get("pipelines") or [], next_page_token=body.get("next_page_token")
    )


def _listed(item: dict) -> Listed:
    """The pipeline, with its newest version when that one is a signed dsp-runner version."""
    newest = item.get("default_version") or {}
    signature = versions.read_signature(newest.get("description"))
    version = None
    if newest.get("id") and signature is not None:
        version = ServerVersion(
            id=newest["id"],
            name=newest.get("name", ""),
            description=newest.get("description", ""),
            pipeline_id=item["id"],
            parameters=tuple((p.name, p.default) for p in signature),
            created_at=_time(newest.get("created_at")),
        )
    return Listed(id=item["id"], name=item.get("name", ""), version=version, types=signature or ())


def _time(text: str | None) -> datetime.datetime | None:
    """An RFC 3339 timestamp as the generated client reads one."""
    return server_time(
        datetime.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None
    )
