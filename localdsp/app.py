"""The HTTP face of localdsp's DSP v1 server (kfp-tekton 1.5.x): its routes.

Handlers only translate: query strings, JSON bodies and multipart uploads into backend calls, and
models into the JSON the real server writes (`wire_v1`). The rules live in `backend`. Errors
become grpc-gateway's error JSON, except on the two upload endpoints, which write their own
`{"error_message", "error_details"}` with 400 or 500 as the real handlers do.

Layers, outermost first (`routes.api_app`): faults (and the request log), the oauth-proxy's
bearer-token check (`proxy`), then the routes. The admin endpoints (`admin`) live under
`/_localdsp/`, apart from the real API's paths.
"""

from __future__ import annotations

from functools import partial

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from localdsp.admin import Admin
from localdsp.backend import Backend
from localdsp.errors import ApiError
from localdsp.faults import ASGIApp, FaultInjector
from localdsp.models import ListRequest, Page
from localdsp.models_v1 import CREATING, Pipeline
from localdsp.pipeline_files import (
    UploadFailed,
    read_upload,
    upload_check,
    upload_description,
    upload_name,
    upload_pipeline_id,
)
from localdsp.proxy import Tokens
from localdsp.routes import api_app, by_path, collection, delete, get, list_of, post
from localdsp.uploads import ObjectStore, pipeline_key
from localdsp.wire import handler_error, parse_int, parse_trigger, read_body
from localdsp.wire_v1 import (
    api_experiment,
    api_job,
    api_pipeline,
    api_run,
    api_run_detail,
    api_state,
    api_version,
    filter_key,
    parse_pipeline_spec,
    parse_references,
    reference_key,
)

API = "/apis/v1beta1"
# The real healthz handler writes this by hand and sets no Content-Type, so Go sniffs it as
# text/plain; clients that insist on JSON content types fail there too.
HEALTHZ_BODY = '{"commit_sha":"unknown", "tag_name":"localdsp", "multi_user":false}'


def _template(template: str) -> dict:
    """The templates endpoints' answer: the uploaded file, byte for byte, as a string."""
    return {"template": template}


class Handlers:
    """The route handlers, bound to one backend."""

    def __init__(self, backend: Backend, storage: ObjectStore):
        self.backend = backend
        self.storage = storage

    def routes(self) -> list[Route]:
        b, backend = API, self.backend
        return [
            get(f"{b}/healthz", self.healthz),
            post(f"{b}/pipelines/upload", self.upload_pipeline),
            post(f"{b}/pipelines/upload_version", self.upload_version),
            get(f"{b}/pipelines", list_of("pipelines", self._pipeline_json, self._pipelines)),
            get(f"{b}/pipelines/{{id}}", by_path(backend.get_pipeline, render=self._pipeline_json)),
            delete(f"{b}/pipelines/{{id}}", by_path(backend.delete_pipeline)),
            get(
                f"{b}/pipelines/{{id}}/templates",
                by_path(backend.pipeline_template, render=_template),
            ),
            post(
                f"{b}/pipelines/{{pipeline_id}}/default_version/{{version_id}}",
                by_path(backend.set_default_version, "pipeline_id", "version_id"),
            ),
            get(f"{b}/pipeline_versions", list_of("versions", api_version, self._versions)),
            get(f"{b}/pipeline_versions/{{id}}", by_path(backend.get_version, render=api_version)),
            delete(f"{b}/pipeline_versions/{{id}}", by_path(backend.delete_version)),
            get(
                f"{b}/pipeline_versions/{{id}}/templates",
                by_path(backend.version_template, render=_template),
            ),
            *collection(
                f"{b}/experiments",
                create=self.create_experiment,
                list_all=list_of("experiments", api_experiment, self._experiments),
                get_one=backend.get_experiment,
                render=api_experiment,
                delete_one=backend.delete_experiment,
                actions={
                    ":archive": backend.archive_experiment,
                    ":unarchive": backend.unarchive_experiment,
                },
            ),
            *collection(
                f"{b}/runs",
                create=self.create_run,
                list_all=list_of("runs", api_run, self._runs),
                get_one=backend.get_run,
                render=api_run_detail,
                delete_one=backend.delete_run,
                actions={
                    "/terminate": backend.terminate_run,
                    "/retry": backend.retry_run,
                    ":archive": partial(backend.archive_run, archived=True),
                    ":unarchive": partial(backend.archive_run, archived=False),
                },
            ),
            get(f"{b}/runs/{{id}}/nodes/{{node_id}}/log", self.run_log),
            *collection(
                f"{b}/jobs",
                create=self.create_job,
                list_all=list_of("jobs", api_job, self._jobs),
                get_one=backend.get_job,
                render=api_job,
                delete_one=backend.delete_job,
                actions={
                    "/enable": partial(backend.enable_job, enabled=True),
                    "/disable": partial(backend.enable_job, enabled=False),
                },
            ),
        ]

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse(HEALTHZ_BODY)

    # ---- uploads (plain HTTP handlers on the real server, not grpc-gateway)

    async def upload_pipeline(self, request: Request) -> Response:
        query = request.query_params
        try:
            filename, content = await read_upload(
                request, "Failed to read pipeline from file", "Error read pipeline file."
            )
            name = upload_check(
                lambda: upload_name(query.get("name", ""), filename), "Invalid pipeline name."
            )
            description = upload_check(
                lambda: upload_description(query.get("description", "")),
                "Error read pipeline description.",
            )
        except UploadFailed as failed:
            return handler_error(failed.status, failed.error)
        try:
            pipeline = self.backend.create_pipeline(name, description, content, CREATING)
            await self._store(pipeline.default_version_id, "Create pipeline failed")
        except ApiError as err:
            return handler_error(500, err.wrap("Error creating pipeline"))
        pipeline = self.backend.get_pipeline(pipeline.id)
        return JSONResponse(api_pipeline(pipeline, self.backend.default_version(pipeline)))

    async def upload_version(self, request: Request) -> Response:
        query = request.query_params
        pipeline_id = query.get("pipelineid", "")
        try:
            filename, content = await read_upload(
                request,
                "Failed to read pipeline version from file",
                "Error read pipeline version file.",
            )
            name = upload_check(
                lambda: upload_name(query.get("name", ""), filename),
                "Invalid pipeline version name.",
            )
            upload_pipeline_id(
                pipeline_id,
                "Please specify a pipeline id when creating versions.",
                self.backend.pipeline_namespace,
                "Failed to get namespace from pipelineId.",
            )
        except UploadFailed as failed:
            return handler_error(failed.status, failed.error)
        try:
            version = self.backend.create_version(
                pipeline_id, name, query.get("description", ""), content, CREATING
            )
            await self._store(version.id, "Create pipeline version failed")
        except ApiError as err:
            return handler_error(500, err.wrap("Error creating pipeline version"))
        return JSONResponse(api_version(self.backend.get_version(version.id)))

    async def _store(self, version_id: str, context: str) -> None:
        """The upload's second step: store the file, then make the rows READY. Until then the
        name is taken but hidden; if storing fails it stays so (see localdsp.uploads)."""
        try:
            await self.storage.store(pipeline_key(version_id))
        except ApiError as err:
            raise err.wrap(context) from err
        self.backend.stored(version_id)

    # ---- lists

    def _pipeline_json(self, pipeline: Pipeline) -> dict:
        return api_pipeline(pipeline, self.backend.default_version(pipeline))

    def _pipelines(self, request: Request, options: ListRequest) -> Page:
        return self.backend.list_pipelines(options)

    def _versions(self, request: Request, options: ListRequest) -> Page:
        return self.backend.list_versions(*reference_key(request, "resource_key"), options)

    def _experiments(self, request: Request, options: ListRequest) -> Page:
        return self.backend.list_experiments(options, *filter_key(request))

    def _runs(self, request: Request, options: ListRequest) -> Page:
        return self.backend.list_runs(options, *filter_key(request))

    def _jobs(self, request: Request, options: ListRequest) -> Page:
        return self.backend.list_jobs(options, *filter_key(request))

    # ---- creates and the run log

    async def create_experiment(self, request: Request) -> Response:
        body = await read_body(request)
        experiment = self.backend.create_experiment(
            str(body.get("name", "")),
            str(body.get("description", "")),
            parse_references(body.get("resource_references")),
        )
        return JSONResponse(api_experiment(experiment))

    async def create_run(self, request: Request) -> Response:
        body = await read_body(request)
        run = self.backend.create_run(
            name=str(body.get("name", "")),
            description=str(body.get("description", "")),
            pipeline_spec=parse_pipeline_spec(body.get("pipeline_spec")),
            references=parse_references(body.get("resource_references")),
            service_account=str(body.get("service_account", "")),
        )
        return JSONResponse(api_run_detail(run))

    async def run_log(self, request: Request) -> Response:
        """Plain HTTP on the real server: text on success, {error_message, ...} with 500."""
        params = request.path_params
        try:
            text = self.backend.read_run_log(params["id"], params["node_id"])
        except ApiError as err:
            return handler_error(500, err)
        return PlainTextResponse(text)

    async def create_job(self, request: Request) -> Response:
        body = await read_body(request)
        job = self.backend.create_job(
            name=str(body.get("name", "")),
            description=str(body.get("description", "")),
            pipeline_spec=parse_pipeline_spec(body.get("pipeline_spec")),
            references=parse_references(body.get("resource_references")),
            service_account=str(body.get("service_account", "")),
            max_concurrency=parse_int(body.get("max_concurrency"), "max_concurrency"),
            trigger=parse_trigger(body.get("trigger")),
            enabled=bool(body.get("enabled", False)),
            no_catchup=bool(body.get("no_catchup", False)),
        )
        return JSONResponse(api_job(job))


def create_app(
    backend: Backend, injector: FaultInjector, tokens: Tokens, storage: ObjectStore | None = None
) -> ASGIApp:
    """The whole v1 server as one ASGI app: faults outside, then auth, then the routes."""
    routes = Handlers(backend, storage or ObjectStore()).routes()
    admin = Admin(backend, partial(api_state, backend), injector, tokens)
    return api_app(routes + admin.routes(), ApiError.gateway_body, injector, tokens)
