"""The HTTP face of a localdsp started with `api="v2"`: the DSP 2.x server (KFP backend 2.5.0).

A 2.5 server serves /apis/v2beta1 and still answers /apis/v1beta1: its v1beta1 healthz, and v1
uploads, which refuse a kfp-tekton PipelineRun ("unknown template format"). localdsp serves those
two v1beta1 faces and no other v1beta1 route (404): the runner only asks a server which generation
it is, it never mixes them. Handlers translate HTTP into `rules_v2.BackendV2` calls and its models
into JSON (`wire_v2`); the layers around them (faults, the oauth-proxy, admin) are those of v1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from localdsp.app import Admin, AuthMiddleware, Tokens
from localdsp.errors import ApiError
from localdsp.faults import ASGIApp, FaultInjector, FaultMiddleware
from localdsp.models_v2 import (
    ExperimentV2,
    PipelineV2,
    RecurringRunV2,
    RunV2,
    VersionV2,
)
from localdsp.pipeline_files import UploadFailed, read_upload, upload_name
from localdsp.rules_v2 import BackendV2
from localdsp.wire import error_handler, handler_error, list_request, listing, read_body, timestamp
from localdsp.wire_v2 import (
    api_experiment,
    api_pipeline,
    api_recurring_run,
    api_run,
    api_version,
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
        b, p = API, f"{API}/pipelines"
        return [
            Route(f"{V1_API}/healthz", self.healthz, methods=["GET"]),
            Route(f"{V1_API}/pipelines/upload", self.upload_pipeline_v1, methods=["POST"]),
            Route(f"{V1_API}/pipelines/upload_version", self.upload_version_v1, methods=["POST"]),
            Route(f"{b}/healthz", self.healthz, methods=["GET"]),
            Route(f"{p}/upload", self.upload_pipeline, methods=["POST"]),
            Route(f"{p}/upload_version", self.upload_version, methods=["POST"]),
            Route(p, self.list_pipelines, methods=["GET"]),
            Route(f"{p}/names/{{name}}", self.pipeline_by_name, methods=["GET"]),
            Route(f"{p}/{{id}}", self.get_pipeline, methods=["GET"]),
            Route(f"{p}/{{id}}", self.delete_pipeline, methods=["DELETE"]),
            Route(f"{p}/{{id}}/versions", self.list_versions, methods=["GET"]),
            Route(f"{p}/{{id}}/versions/{{vid}}", self.get_version, methods=["GET"]),
            Route(f"{p}/{{id}}/versions/{{vid}}", self.delete_version, methods=["DELETE"]),
            Route(f"{b}/experiments", self.create_experiment, methods=["POST"]),
            Route(f"{b}/experiments", self.list_experiments, methods=["GET"]),
            Route(f"{b}/experiments/{{id}}", self.get_experiment, methods=["GET"]),
            Route(f"{b}/experiments/{{id}}", self.delete_experiment, methods=["DELETE"]),
            Route(f"{b}/experiments/{{id}}:archive", self.archive_experiment, methods=["POST"]),
            Route(f"{b}/experiments/{{id}}:unarchive", self.unarchive_experiment, methods=["POST"]),
            Route(f"{b}/runs", self.create_run, methods=["POST"]),
            Route(f"{b}/runs", self.list_runs, methods=["GET"]),
            Route(f"{b}/runs/{{id}}", self.get_run, methods=["GET"]),
            Route(f"{b}/runs/{{id}}", self.delete_run, methods=["DELETE"]),
            Route(f"{b}/runs/{{id}}:terminate", self.terminate_run, methods=["POST"]),
            Route(f"{b}/runs/{{id}}:retry", self.retry_run, methods=["POST"]),
            Route(f"{b}/runs/{{id}}:archive", self.archive_run, methods=["POST"]),
            Route(f"{b}/runs/{{id}}:unarchive", self.unarchive_run, methods=["POST"]),
            Route(f"{b}/recurringruns", self.create_recurring_run, methods=["POST"]),
            Route(f"{b}/recurringruns", self.list_recurring_runs, methods=["GET"]),
            Route(f"{b}/recurringruns/{{id}}", self.get_recurring_run, methods=["GET"]),
            Route(f"{b}/recurringruns/{{id}}", self.delete_recurring_run, methods=["DELETE"]),
            Route(f"{b}/recurringruns/{{id}}:enable", self.enable_recurring_run, methods=["POST"]),
            Route(
                f"{b}/recurringruns/{{id}}:disable", self.disable_recurring_run, methods=["POST"]
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
            pipeline_id = query.get("pipelineid", "")
            if not pipeline_id:
                raise UploadFailed(
                    400,
                    ApiError(
                        "Failed to create a pipeline version due to error reading pipeline id",
                        internal="Failed to create a pipeline version due to error reading "
                        "pipeline id",
                    ),
                )
            try:
                self.backend.get_pipeline(pipeline_id)
            except ApiError as err:
                context = "Failed to create a pipeline version due to error reading namespace"
                raise UploadFailed(400, err.wrap(context)) from err
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
        return await self._upload_version(
            request, lambda v: api_version(v, self.backend.version_spec(v.id))
        )

    async def upload_pipeline_v1(self, request: Request) -> Response:
        """The same rules; an accepted IR answers with a v1beta1-shaped pipeline."""
        return await self._upload_pipeline(request, _v1_pipeline)

    async def upload_version_v1(self, request: Request) -> Response:
        return await self._upload_version(request, _v1_version)

    # ---- pipelines and versions

    async def list_pipelines(self, request: Request) -> Response:
        page = self.backend.list_pipelines(list_request(request))
        return listing("pipelines", page, api_pipeline)

    async def pipeline_by_name(self, request: Request) -> Response:
        pipeline = self.backend.pipeline_by_name(request.path_params["name"])
        return JSONResponse(api_pipeline(pipeline))

    async def get_pipeline(self, request: Request) -> Response:
        return JSONResponse(api_pipeline(self.backend.get_pipeline(request.path_params["id"])))

    async def delete_pipeline(self, request: Request) -> Response:
        self.backend.delete_pipeline(request.path_params["id"])
        return JSONResponse({})

    def _version_json(self, version: VersionV2) -> dict:
        return api_version(version, self.backend.version_spec(version.id))

    async def list_versions(self, request: Request) -> Response:
        page = self.backend.list_versions(request.path_params["id"], list_request(request))
        return listing("pipeline_versions", page, self._version_json)

    async def get_version(self, request: Request) -> Response:
        version = self.backend.get_version(request.path_params["vid"])
        return JSONResponse(self._version_json(version))

    async def delete_version(self, request: Request) -> Response:
        self.backend.delete_version(request.path_params["id"], request.path_params["vid"])
        return JSONResponse({})

    # ---- experiments

    async def create_experiment(self, request: Request) -> Response:
        body = await read_body(request)
        experiment = self.backend.create_experiment(
            str(body.get("display_name", "")), str(body.get("description", ""))
        )
        return JSONResponse(api_experiment(experiment))

    async def list_experiments(self, request: Request) -> Response:
        page = self.backend.list_experiments(list_request(request))
        return listing("experiments", page, api_experiment)

    async def get_experiment(self, request: Request) -> Response:
        return JSONResponse(api_experiment(self.backend.get_experiment(request.path_params["id"])))

    async def delete_experiment(self, request: Request) -> Response:
        self.backend.delete_experiment(request.path_params["id"])
        return JSONResponse({})

    async def archive_experiment(self, request: Request) -> Response:
        self.backend.archive_experiment(request.path_params["id"])
        return JSONResponse({})

    async def unarchive_experiment(self, request: Request) -> Response:
        self.backend.archive_experiment(request.path_params["id"], archived=False)
        return JSONResponse({})

    # ---- runs

    async def create_run(self, request: Request) -> Response:
        run = self.backend.create_run(run_request(await read_body(request)))
        return JSONResponse(api_run(run))

    async def list_runs(self, request: Request) -> Response:
        experiment_id = request.query_params.get("experiment_id", "")
        page = self.backend.list_runs(list_request(request), experiment_id)
        return listing("runs", page, api_run)

    async def get_run(self, request: Request) -> Response:
        return JSONResponse(api_run(self.backend.get_run(request.path_params["id"])))

    async def delete_run(self, request: Request) -> Response:
        self.backend.delete_run(request.path_params["id"])
        return JSONResponse({})

    async def terminate_run(self, request: Request) -> Response:
        self.backend.terminate_run(request.path_params["id"])
        return JSONResponse({})

    async def retry_run(self, request: Request) -> Response:
        self.backend.retry_run(request.path_params["id"])
        return JSONResponse({})

    async def archive_run(self, request: Request) -> Response:
        self.backend.archive_run(request.path_params["id"])
        return JSONResponse({})

    async def unarchive_run(self, request: Request) -> Response:
        self.backend.archive_run(request.path_params["id"], archived=False)
        return JSONResponse({})

    # ---- recurring runs

    async def create_recurring_run(self, request: Request) -> Response:
        body = await read_body(request)
        job = self.backend.create_recurring_run(run_request(body), **recurring_settings(body))
        return JSONResponse(api_recurring_run(job))

    async def list_recurring_runs(self, request: Request) -> Response:
        experiment_id = request.query_params.get("experiment_id", "")
        page = self.backend.list_recurring_runs(list_request(request), experiment_id)
        return listing("recurringRuns", page, api_recurring_run)

    async def get_recurring_run(self, request: Request) -> Response:
        job = self.backend.get_recurring_run(request.path_params["id"])
        return JSONResponse(api_recurring_run(job))

    async def delete_recurring_run(self, request: Request) -> Response:
        self.backend.delete_recurring_run(request.path_params["id"])
        return JSONResponse({})

    async def enable_recurring_run(self, request: Request) -> Response:
        self.backend.enable_recurring_run(request.path_params["id"], enabled=True)
        return JSONResponse({})

    async def disable_recurring_run(self, request: Request) -> Response:
        self.backend.enable_recurring_run(request.path_params["id"], enabled=False)
        return JSONResponse({})


def _v1_pipeline(pipeline: PipelineV2, version: VersionV2) -> dict:
    """toApiPipelineV1: the pipeline with its first version as the default version."""
    return {
        "id": pipeline.id,
        "created_at": timestamp(pipeline.created_at),
        "name": pipeline.name,
        **({"description": pipeline.description} if pipeline.description else {}),
        "default_version": _v1_version(version),
    }


def _v1_version(version: VersionV2) -> dict:
    return {
        "id": version.id,
        "name": version.name,
        "created_at": timestamp(version.created_at),
        "resource_references": [
            {"key": {"type": "PIPELINE", "id": version.pipeline_id}, "relationship": "OWNER"}
        ],
        **({"description": version.description} if version.description else {}),
    }


class AdminV2(Admin):
    """The admin endpoints over a BackendV2: `state` lists v2 objects, `reset` clears them."""

    async def state(self, request: Request) -> Response:
        """Everything stored, as the API writes it but without the IR."""
        store = self.backend.store
        return JSONResponse(
            {
                "pipelines": [api_pipeline(p) for p in store.all(PipelineV2)],
                "versions": [api_version(v, {}) for v in store.all(VersionV2)],
                "experiments": [api_experiment(e) for e in store.all(ExperimentV2)],
                "runs": [api_run(r) for r in store.all(RunV2)],
                "recurring_runs": [api_recurring_run(j) for j in store.all(RecurringRunV2)],
            }
        )


def create_app_v2(backend: BackendV2, injector: FaultInjector, tokens: Tokens) -> ASGIApp:
    """The DSP 2.x server as one ASGI app: faults outside, then auth, then the routes."""
    routes = HandlersV2(backend).routes() + AdminV2(backend, injector, tokens).routes()
    app = Starlette(
        routes=routes, exception_handlers={ApiError: error_handler(ApiError.rpc_status_body)}
    )
    return FaultMiddleware(AuthMiddleware(app, tokens), injector)
