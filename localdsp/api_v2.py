"""The HTTP face of a localdsp started with `api="v2"`: the DSP 2.x server (KFP backend 2.5.0).

A 2.5 server serves /apis/v2beta1 and still answers /apis/v1beta1: its v1beta1 healthz, v1
uploads, which refuse a kfp-tekton PipelineRun ("unknown template format"), and the v1beta1
pipeline listing, which joins each pipeline to its newest version (the one listing across
pipelines that shows versions: the v2 runner reads it). localdsp serves those v1beta1 faces and no
other v1beta1 route (404). Handlers translate HTTP into `rules_v2.BackendV2` calls and its models
into JSON (`wire_v2`); the layers around them (faults, the oauth-proxy, admin) and the route
plumbing are those of v1 (`routes`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from localdsp.admin import Admin
from localdsp.errors import ApiError, InvalidInput
from localdsp.faults import ASGIApp, FaultInjector
from localdsp.models import ListRequest, Page
from localdsp.models_v2 import PipelineV2, VersionV2
from localdsp.pipeline_files import UploadFailed, read_upload, upload_name, upload_pipeline_id
from localdsp.proxy import Tokens
from localdsp.routes import api_app, by_path, collection, delete, get, list_of, post
from localdsp.rules_v2 import BackendV2
from localdsp.wire import handler_error, read_body
from localdsp.wire_v1 import reference_key
from localdsp.wire_v2 import (
    api_experiment,
    api_listed_pipeline_v1,
    api_pipeline,
    api_pipeline_v1,
    api_recurring_run,
    api_run,
    api_state,
    api_version,
    api_version_v1,
    recurring_settings,
    run_request,
)

API = "/apis/v2beta1"
V1_API = "/apis/v1beta1"
# The 2.5 server writes both healthz bodies by hand, as JSON; `pipeline_store` came in 2.14.
HEALTHZ_BODY = '{"commit_sha":"unknown", "tag_name":"localdsp", "multi_user":false}'


def _created_status(error: ApiError) -> int:
    """409 when the name is taken, else 500: the upload handlers' choice."""
    return 409 if error.status == 409 else 500


class HandlersV2:
    """The v2beta1 routes (and the two v1beta1 faces), bound to one BackendV2."""

    def __init__(self, backend: BackendV2):
        self.backend = backend

    def routes(self) -> list[Route]:
        b, p, backend = API, f"{API}/pipelines", self.backend
        return [
            get(f"{V1_API}/healthz", self.healthz),
            post(f"{V1_API}/pipelines/upload", self.upload_pipeline_v1),
            post(f"{V1_API}/pipelines/upload_version", self.upload_version_v1),
            get(f"{V1_API}/pipelines", list_of("pipelines", self._listed_v1, self._pipelines_v1)),
            get(f"{b}/healthz", self.healthz),
            post(p, self.create_pipeline),
            post(f"{p}/upload", self.upload_pipeline),
            post(f"{p}/upload_version", self.upload_version),
            get(p, list_of("pipelines", api_pipeline, self._pipelines)),
            get(
                f"{p}/names/{{name}}",
                by_path(backend.pipeline_by_name, "name", render=api_pipeline),
            ),
            get(f"{p}/{{id}}", by_path(backend.get_pipeline, render=api_pipeline)),
            delete(f"{p}/{{id}}", by_path(backend.delete_pipeline)),
            get(
                f"{p}/{{id}}/versions",
                list_of("pipeline_versions", self._version_json, self._versions),
            ),
            get(
                f"{p}/{{id}}/versions/{{vid}}",
                by_path(backend.get_version, "vid", render=self._version_json),
            ),
            delete(f"{p}/{{id}}/versions/{{vid}}", by_path(backend.delete_version, "id", "vid")),
            *collection(
                f"{b}/experiments",
                create=self.create_experiment,
                list_all=list_of("experiments", api_experiment, self._experiments),
                get_one=backend.get_experiment,
                render=api_experiment,
                delete_one=backend.delete_experiment,
                actions={
                    ":archive": backend.archive_experiment,
                    ":unarchive": partial(backend.archive_experiment, archived=False),
                },
            ),
            *collection(
                f"{b}/runs",
                create=self.create_run,
                list_all=list_of("runs", api_run, self._runs),
                get_one=backend.get_run,
                render=api_run,
                delete_one=backend.delete_run,
                actions={
                    ":terminate": backend.terminate_run,
                    ":retry": backend.retry_run,
                    ":archive": backend.archive_run,
                    ":unarchive": partial(backend.archive_run, archived=False),
                },
            ),
            *collection(
                f"{b}/recurringruns",
                create=self.create_recurring_run,
                list_all=list_of("recurringRuns", api_recurring_run, self._recurring_runs),
                get_one=backend.get_recurring_run,
                render=api_recurring_run,
                delete_one=backend.delete_recurring_run,
                actions={
                    ":enable": partial(backend.enable_recurring_run, enabled=True),
                    ":disable": partial(backend.enable_recurring_run, enabled=False),
                },
            ),
        ]

    async def healthz(self, request: Request) -> Response:
        return Response(HEALTHZ_BODY, media_type="application/json")

    # ---- uploads (plain HTTP handlers on the real server, not grpc-gateway)

    async def _upload_pipeline(self, request: Request, render: Callable[[Any, Any], dict]):
        query = request.query_params
        try:
            filename, content = await read_upload(
                request,
                "Failed to read pipeline from file",
                "Failed to read a pipeline spec file",
            )
        except UploadFailed as failed:
            return handler_error(failed.status, failed.error)
        try:
            name = upload_name(query.get("name", ""), filename)
            pipeline, version = self.backend.create_pipeline(
                name, query.get("description", ""), content
            )
        except ApiError as err:
            context = "Failed to create a pipeline and a pipeline version"
            if err.status == 409:
                context += ". The pipeline already exists."
            return handler_error(_created_status(err), err.wrap(context))
        return JSONResponse(render(pipeline, version))

    async def _upload_version(self, request: Request, render: Callable[[Any], dict]):
        query = request.query_params
        try:
            filename, content = await read_upload(
                request,
                "Failed to create a pipeline version due to error parsing pipeline spec filename",
                "Failed to create a pipeline version due to error reading pipeline spec file",
            )
            pipeline_id = upload_pipeline_id(
                query.get("pipelineid", ""),
                "Failed to create a pipeline version due to error reading pipeline id",
                self.backend.get_pipeline,
                "Failed to create a pipeline version due to error reading namespace",
            )
        except UploadFailed as failed:
            return handler_error(failed.status, failed.error)
        try:
            name = upload_name(query.get("name", ""), filename)
            version = self.backend.create_version(
                pipeline_id, name, query.get("description", ""), content
            )
        except ApiError as err:
            context = "Failed to create a pipeline version"
            if err.status == 409:
                context += ". The pipeline already exists."
            return handler_error(_created_status(err), err.wrap(context))
        return JSONResponse(render(version))

    async def upload_pipeline(self, request: Request) -> Response:
        return await self._upload_pipeline(request, lambda pipeline, _: api_pipeline(pipeline))

    async def upload_version(self, request: Request) -> Response:
        return await self._upload_version(request, self._version_json)

    async def upload_pipeline_v1(self, request: Request) -> Response:
        """The same rules; an accepted IR answers with a v1beta1-shaped pipeline."""
        return await self._upload_pipeline(request, api_pipeline_v1)

    async def upload_version_v1(self, request: Request) -> Response:
        return await self._upload_version(request, api_version_v1)

    # ---- lists

    def _version_json(self, version: VersionV2) -> dict:
        return api_version(version, self.backend.version_spec(version.id))

    def _pipelines(self, request: Request, options: ListRequest) -> Page:
        return self.backend.list_pipelines(options)

    def _pipelines_v1(self, request: Request, options: ListRequest) -> Page:
        """ListPipelinesV1: a resource reference key may name a namespace, nothing else (the
        single-user server lists every pipeline whatever namespace is named)."""
        kind, _ = reference_key(request, "resource_reference_key")
        if kind and kind != "NAMESPACE":
            raise InvalidInput(
                "Failed to list pipelines (v1beta1) due to invalid resource references for "
                f"pipelines: {kind}"
            )
        return self.backend.list_pipelines(options)

    def _listed_v1(self, pipeline: PipelineV2) -> dict:
        return api_listed_pipeline_v1(pipeline, self.backend.newest_for_listing(pipeline))

    def _versions(self, request: Request, options: ListRequest) -> Page:
        return self.backend.list_versions(request.path_params["id"], options)

    def _experiments(self, request: Request, options: ListRequest) -> Page:
        return self.backend.list_experiments(options)

    def _runs(self, request: Request, options: ListRequest) -> Page:
        return self.backend.list_runs(options, request.query_params.get("experiment_id", ""))

    def _recurring_runs(self, request: Request, options: ListRequest) -> Page:
        experiment_id = request.query_params.get("experiment_id", "")
        return self.backend.list_recurring_runs(options, experiment_id)

    # ---- creates

    async def create_pipeline(self, request: Request) -> Response:
        body = await read_body(request)
        pipeline = self.backend.create_empty_pipeline(
            str(body.get("display_name", "")), str(body.get("description", ""))
        )
        return JSONResponse(api_pipeline(pipeline))

    async def create_experiment(self, request: Request) -> Response:
        body = await read_body(request)
        experiment = self.backend.create_experiment(
            str(body.get("display_name", "")), str(body.get("description", ""))
        )
        return JSONResponse(api_experiment(experiment))

    async def create_run(self, request: Request) -> Response:
        run = self.backend.create_run(run_request(await read_body(request)))
        return JSONResponse(api_run(run))

    async def create_recurring_run(self, request: Request) -> Response:
        body = await read_body(request)
        job = self.backend.create_recurring_run(run_request(body), **recurring_settings(body))
        return JSONResponse(api_recurring_run(job))


def create_app_v2(backend: BackendV2, injector: FaultInjector, tokens: Tokens) -> ASGIApp:
    """The DSP 2.x server as one ASGI app: faults outside, then auth, then the routes."""
    admin = Admin(backend, partial(api_state, backend), injector, tokens)
    routes = HandlersV2(backend).routes() + admin.routes()
    return api_app(routes, ApiError.rpc_status_body, injector, tokens)
