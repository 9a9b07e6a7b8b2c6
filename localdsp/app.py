"""The HTTP face of localdsp: DSP v1's routes, wire format, oauth-proxy and admin endpoints.

Handlers only translate: query strings, JSON bodies and multipart uploads into backend calls, and
models into the JSON the real server writes (jsonpb with original snake_case names, enums as
names, int64 as strings, RFC 3339 timestamps, empty fields left out). The rules live in
`backend`. Errors become grpc-gateway's error JSON, except on the two upload endpoints, which
write their own `{"error_message", "error_details"}` with 400 or 500 as the real handlers do.

Layers, outermost first: faults (and the request log), the oauth-proxy's bearer-token check,
then the routes. Admin endpoints live under `/_localdsp/`, apart from the real API's paths; they
are never faulted, logged or authenticated.
"""

from __future__ import annotations

import hmac
import json
import threading
from collections.abc import Callable, Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from localdsp.backend import (
    AVAILABLE,
    CREATING,
    Backend,
    Experiment,
    Job,
    Parameter,
    Pipeline,
    PipelineSpec,
    PipelineVersion,
    Reference,
    Run,
)
from localdsp.errors import ApiError, InvalidInput
from localdsp.faults import (
    ADMIN_PREFIX,
    ASGIApp,
    FaultInjector,
    FaultMiddleware,
    FaultRule,
    RandomFaults,
    Receive,
    Scope,
    Send,
)
from localdsp.pipeline_files import UploadFailed, read_upload, upload_description, upload_name
from localdsp.uploads import ObjectStore, pipeline_key
from localdsp.wire import (
    api_trigger,
    error_handler,
    handler_error,
    list_request,
    listing,
    parse_enum,
    parse_int,
    parse_trigger,
    pb,
    read_body,
    timestamp,
)

API = "/apis/v1beta1"
RESOURCE_TYPES = (
    "UNKNOWN_RESOURCE_TYPE",
    "EXPERIMENT",
    "JOB",
    "PIPELINE",
    "PIPELINE_VERSION",
    "NAMESPACE",
)
RELATIONSHIPS = ("UNKNOWN_RELATIONSHIP", "OWNER", "CREATOR")
# The real healthz handler writes this by hand and sets no Content-Type, so Go sniffs it as
# text/plain; clients that insist on JSON content types fail there too.
HEALTHZ_BODY = '{"commit_sha":"unknown", "tag_name":"localdsp", "multi_user":false}'
SIGN_IN_PAGE = """<!DOCTYPE html>
<html lang="en" charset="utf-8">
<head>
<title>Log In</title>
<meta name="viewport" content="width=device-width, initial-scale=1, maximum-scale=1">
</head>
<body>
<div class="signin center">
<form method="GET" action="/oauth/start">
<input type="hidden" name="rd" value="/">
<button type="submit" class="btn">Log in with OpenShift</button><br/>
</form>
</div>
</body>
</html>
"""


# --------------------------------------------------------------------------- the oauth-proxy


class Tokens:
    """The bearer tokens the stand-in oauth-proxy accepts; None switches the check off."""

    def __init__(self, tokens: Iterable[str] | None = None):
        self._lock = threading.Lock()
        self.set(tokens)

    def set(self, tokens: Iterable[str] | None) -> None:
        """Replace the accepted tokens; raises TypeError unless given strings (or None)."""
        accepted = None if tokens is None else tuple(tokens)
        if isinstance(tokens, str) or not all(isinstance(t, str) for t in accepted or ()):
            raise TypeError("tokens must be a list of strings, or None to switch the check off")
        with self._lock:
            self._tokens = accepted

    def allows(self, authorization: str) -> bool:
        with self._lock:
            tokens = self._tokens
        if tokens is None:
            return True
        scheme, _, presented = authorization.partition(" ")
        presented = presented.strip()
        return scheme == "Bearer" and any(hmac.compare_digest(presented, t) for t in tokens)

    def __repr__(self) -> str:
        return "Tokens(<hidden>)"


class AuthMiddleware:
    """DSP's oauth-proxy: a request without an accepted bearer token gets the 403 sign-in page.

    Healthz is no exception: DSP's skip-auth regex never matches (see the fact sheet §3.2).
    """

    def __init__(self, app: ASGIApp, tokens: Tokens):
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(ADMIN_PREFIX):
            headers = dict(scope.get("headers") or [])
            authorization = headers.get(b"authorization", b"").decode("latin-1")
            if not self.tokens.allows(authorization):
                page = Response(SIGN_IN_PAGE, 403, media_type="text/html; charset=utf-8")
                await page(scope, receive, send)
                return
        await self.app(scope, receive, send)


# --------------------------------------------------------------------------- models → JSON


def _parameters(parameters: Iterable[Parameter]) -> list[dict]:
    return [pb(name=p.name, value=p.value) for p in parameters]


def _reference(reference: Reference) -> dict:
    return pb(
        key=pb(type=reference.type, id=reference.id),
        name=reference.name,
        relationship=reference.relationship,
    )


def api_version(version: PipelineVersion) -> dict:
    owner = Reference("PIPELINE", version.pipeline_id, "OWNER")
    return pb(
        id=version.id,
        name=version.name,
        created_at=timestamp(version.created_at),
        parameters=_parameters(version.parameters),
        resource_references=[_reference(owner)],
        description=version.description,
    )


def api_pipeline(pipeline: Pipeline, default_version: PipelineVersion | None) -> dict:
    return pb(
        id=pipeline.id,
        created_at=timestamp(pipeline.created_at),
        name=pipeline.name,
        description=pipeline.description,
        parameters=_parameters(pipeline.parameters),
        default_version=api_version(default_version) if default_version else None,
    )


def api_experiment(experiment: Experiment) -> dict:
    return pb(
        id=experiment.id,
        name=experiment.name,
        description=experiment.description,
        created_at=timestamp(experiment.created_at),
        storage_state=experiment.storage_state,
    )


def _spec(spec: PipelineSpec) -> dict:
    return pb(
        pipeline_id=spec.pipeline_id,
        pipeline_name=spec.pipeline_name,
        workflow_manifest=spec.workflow_manifest,
        pipeline_manifest=spec.pipeline_manifest,
        parameters=_parameters(spec.parameters),
    )


def api_run(run: Run) -> dict:
    return pb(
        id=run.id,
        name=run.name,
        # A run's storage-state enum starts at AVAILABLE, so AVAILABLE is the omitted zero.
        storage_state=None if run.storage_state == AVAILABLE else run.storage_state,
        description=run.description,
        pipeline_spec=_spec(run.pipeline_spec),
        resource_references=[_reference(r) for r in run.references],
        service_account=run.service_account,
        created_at=timestamp(run.created_at),
        scheduled_at=timestamp(run.scheduled_at),
        finished_at=timestamp(run.finished_at),
        status=run.status,
        error=run.error,
    )


def api_run_detail(run: Run) -> dict:
    return {"run": api_run(run), "pipeline_runtime": pb(workflow_manifest=run.manifest)}


def api_job(job: Job) -> dict:
    """The job as ToApiJob builds it; it never sets `mode`, so that field is always omitted."""
    return pb(
        id=job.id,
        name=job.name,
        description=job.description,
        pipeline_spec=_spec(job.pipeline_spec),
        resource_references=[_reference(r) for r in job.references],
        service_account=job.service_account,
        max_concurrency=str(job.max_concurrency),
        trigger=api_trigger(job.trigger),
        created_at=timestamp(job.created_at),
        updated_at=timestamp(job.updated_at),
        status=job.status,
        enabled=job.enabled,
        no_catchup=job.no_catchup,
    )


# --------------------------------------------------------------------------- JSON → requests


def _references(items: Any) -> tuple[Reference, ...]:
    references = []
    for item in items or []:
        key = item.get("key") or {}
        references.append(
            Reference(
                type=parse_enum(key.get("type"), RESOURCE_TYPES, "api.ResourceType"),
                id=str(key.get("id", "")),
                relationship=parse_enum(
                    item.get("relationship"), RELATIONSHIPS, "api.Relationship"
                ),
                name=str(item.get("name", "")),
            )
        )
    return tuple(references)


def _pipeline_spec(data: dict | None) -> PipelineSpec:
    data = data or {}
    if data.get("runtime_config"):
        raise InvalidInput("localdsp does not run KFP v2 runtime_config; use parameters.")
    parameters = tuple(
        Parameter(str(p.get("name", "")), str(p.get("value", "")))
        for p in data.get("parameters") or []
    )
    return PipelineSpec(
        pipeline_id=str(data.get("pipeline_id", "")),
        workflow_manifest=str(data.get("workflow_manifest", "")),
        pipeline_manifest=str(data.get("pipeline_manifest", "")),
        parameters=parameters,
    )


def _reference_key(request: Request, prefix: str) -> tuple[str, str]:
    query = request.query_params
    kind = parse_enum(query.get(f"{prefix}.type"), RESOURCE_TYPES, "api.ResourceType")
    return kind, query.get(f"{prefix}.id", "")


# --------------------------------------------------------------------------- multipart uploads


# --------------------------------------------------------------------------- handlers


class Handlers:
    """The route handlers, bound to one backend."""

    def __init__(self, backend: Backend, storage: ObjectStore):
        self.backend = backend
        self.storage = storage

    def routes(self) -> list[Route]:
        b = API
        return [
            Route(f"{b}/healthz", self.healthz, methods=["GET"]),
            Route(f"{b}/pipelines/upload", self.upload_pipeline, methods=["POST"]),
            Route(f"{b}/pipelines/upload_version", self.upload_version, methods=["POST"]),
            Route(f"{b}/pipelines", self.list_pipelines, methods=["GET"]),
            Route(f"{b}/pipelines/{{id}}", self.get_pipeline, methods=["GET"]),
            Route(f"{b}/pipelines/{{id}}", self.delete_pipeline, methods=["DELETE"]),
            Route(f"{b}/pipelines/{{id}}/templates", self.pipeline_template, methods=["GET"]),
            Route(
                f"{b}/pipelines/{{pipeline_id}}/default_version/{{version_id}}",
                self.set_default_version,
                methods=["POST"],
            ),
            Route(f"{b}/pipeline_versions", self.list_versions, methods=["GET"]),
            Route(f"{b}/pipeline_versions/{{id}}", self.get_version, methods=["GET"]),
            Route(f"{b}/pipeline_versions/{{id}}", self.delete_version, methods=["DELETE"]),
            Route(
                f"{b}/pipeline_versions/{{id}}/templates", self.version_template, methods=["GET"]
            ),
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
            Route(f"{b}/runs/{{id}}/terminate", self.terminate_run, methods=["POST"]),
            Route(f"{b}/runs/{{id}}/retry", self.retry_run, methods=["POST"]),
            Route(f"{b}/runs/{{id}}:archive", self.archive_run, methods=["POST"]),
            Route(f"{b}/runs/{{id}}:unarchive", self.unarchive_run, methods=["POST"]),
            Route(f"{b}/runs/{{id}}/nodes/{{node_id}}/log", self.run_log, methods=["GET"]),
            Route(f"{b}/jobs", self.create_job, methods=["POST"]),
            Route(f"{b}/jobs", self.list_jobs, methods=["GET"]),
            Route(f"{b}/jobs/{{id}}", self.get_job, methods=["GET"]),
            Route(f"{b}/jobs/{{id}}", self.delete_job, methods=["DELETE"]),
            Route(f"{b}/jobs/{{id}}/enable", self.enable_job, methods=["POST"]),
            Route(f"{b}/jobs/{{id}}/disable", self.disable_job, methods=["POST"]),
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
            name = self._upload_step(
                lambda: upload_name(query.get("name", ""), filename), "Invalid pipeline name."
            )
            description = self._upload_step(
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
            name = self._upload_step(
                lambda: upload_name(query.get("name", ""), filename),
                "Invalid pipeline version name.",
            )
            if not pipeline_id:
                raise UploadFailed(
                    400, ApiError("Please specify a pipeline id when creating versions.")
                )
            self._upload_step(
                lambda: self.backend.pipeline_namespace(pipeline_id),
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

    @staticmethod
    def _upload_step(step: Callable[[], str], context: str) -> str:
        """One of the checks the upload handlers answer with 400."""
        try:
            return step()
        except ApiError as err:
            raise UploadFailed(400, err.wrap(context)) from err

    # ---- pipelines and versions

    def _pipeline_json(self, pipeline: Pipeline) -> dict:
        return api_pipeline(pipeline, self.backend.default_version(pipeline))

    async def list_pipelines(self, request: Request) -> Response:
        page = self.backend.list_pipelines(list_request(request))
        return listing("pipelines", page, self._pipeline_json)

    async def get_pipeline(self, request: Request) -> Response:
        pipeline = self.backend.get_pipeline(request.path_params["id"])
        return JSONResponse(self._pipeline_json(pipeline))

    async def delete_pipeline(self, request: Request) -> Response:
        self.backend.delete_pipeline(request.path_params["id"])
        return JSONResponse({})

    async def pipeline_template(self, request: Request) -> Response:
        template = self.backend.pipeline_template(request.path_params["id"])
        return JSONResponse({"template": template})

    async def set_default_version(self, request: Request) -> Response:
        params = request.path_params
        self.backend.set_default_version(params["pipeline_id"], params["version_id"])
        return JSONResponse({})

    async def list_versions(self, request: Request) -> Response:
        key_type, key_id = _reference_key(request, "resource_key")
        page = self.backend.list_versions(key_type, key_id, list_request(request))
        return listing("versions", page, api_version)

    async def get_version(self, request: Request) -> Response:
        return JSONResponse(api_version(self.backend.get_version(request.path_params["id"])))

    async def delete_version(self, request: Request) -> Response:
        self.backend.delete_version(request.path_params["id"])
        return JSONResponse({})

    async def version_template(self, request: Request) -> Response:
        template = self.backend.version_template(request.path_params["id"])
        return JSONResponse({"template": template})

    # ---- experiments

    async def create_experiment(self, request: Request) -> Response:
        body = await read_body(request)
        experiment = self.backend.create_experiment(
            str(body.get("name", "")),
            str(body.get("description", "")),
            _references(body.get("resource_references")),
        )
        return JSONResponse(api_experiment(experiment))

    async def list_experiments(self, request: Request) -> Response:
        key_type, key_id = _reference_key(request, "resource_reference_key")
        page = self.backend.list_experiments(list_request(request), key_type, key_id)
        return listing("experiments", page, api_experiment)

    async def get_experiment(self, request: Request) -> Response:
        experiment = self.backend.get_experiment(request.path_params["id"])
        return JSONResponse(api_experiment(experiment))

    async def delete_experiment(self, request: Request) -> Response:
        self.backend.delete_experiment(request.path_params["id"])
        return JSONResponse({})

    async def archive_experiment(self, request: Request) -> Response:
        self.backend.archive_experiment(request.path_params["id"])
        return JSONResponse({})

    async def unarchive_experiment(self, request: Request) -> Response:
        self.backend.unarchive_experiment(request.path_params["id"])
        return JSONResponse({})

    # ---- runs

    async def create_run(self, request: Request) -> Response:
        body = await read_body(request)
        run = self.backend.create_run(
            name=str(body.get("name", "")),
            description=str(body.get("description", "")),
            pipeline_spec=_pipeline_spec(body.get("pipeline_spec")),
            references=_references(body.get("resource_references")),
            service_account=str(body.get("service_account", "")),
        )
        return JSONResponse(api_run_detail(run))

    async def list_runs(self, request: Request) -> Response:
        key_type, key_id = _reference_key(request, "resource_reference_key")
        page = self.backend.list_runs(list_request(request), key_type, key_id)
        return listing("runs", page, api_run)

    async def get_run(self, request: Request) -> Response:
        return JSONResponse(api_run_detail(self.backend.get_run(request.path_params["id"])))

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
        self.backend.archive_run(request.path_params["id"], archived=True)
        return JSONResponse({})

    async def unarchive_run(self, request: Request) -> Response:
        self.backend.archive_run(request.path_params["id"], archived=False)
        return JSONResponse({})

    async def run_log(self, request: Request) -> Response:
        """Plain HTTP on the real server: text on success, {error_message, ...} with 500."""
        params = request.path_params
        try:
            text = self.backend.read_run_log(params["id"], params["node_id"])
        except ApiError as err:
            return handler_error(500, err)
        return PlainTextResponse(text)

    # ---- jobs

    async def create_job(self, request: Request) -> Response:
        body = await read_body(request)
        job = self.backend.create_job(
            name=str(body.get("name", "")),
            description=str(body.get("description", "")),
            pipeline_spec=_pipeline_spec(body.get("pipeline_spec")),
            references=_references(body.get("resource_references")),
            service_account=str(body.get("service_account", "")),
            max_concurrency=parse_int(body.get("max_concurrency"), "max_concurrency"),
            trigger=parse_trigger(body.get("trigger")),
            enabled=bool(body.get("enabled", False)),
            no_catchup=bool(body.get("no_catchup", False)),
        )
        return JSONResponse(api_job(job))

    async def list_jobs(self, request: Request) -> Response:
        key_type, key_id = _reference_key(request, "resource_reference_key")
        page = self.backend.list_jobs(list_request(request), key_type, key_id)
        return listing("jobs", page, api_job)

    async def get_job(self, request: Request) -> Response:
        return JSONResponse(api_job(self.backend.get_job(request.path_params["id"])))

    async def delete_job(self, request: Request) -> Response:
        self.backend.delete_job(request.path_params["id"])
        return JSONResponse({})

    async def enable_job(self, request: Request) -> Response:
        self.backend.enable_job(request.path_params["id"], enabled=True)
        return JSONResponse({})

    async def disable_job(self, request: Request) -> Response:
        self.backend.enable_job(request.path_params["id"], enabled=False)
        return JSONResponse({})


# --------------------------------------------------------------------------- admin endpoints


class Admin:
    """`/_localdsp/...`: health, state, reset, faults, request log and tokens."""

    def __init__(self, backend: Backend, injector: FaultInjector, tokens: Tokens):
        self.backend = backend
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
        dump = self.backend.dump()
        return JSONResponse(
            {
                "pipelines": [self._pipeline_state(p) for p in dump["pipelines"]],
                "versions": [_version_state(v) for v in dump["versions"]],
                "experiments": [api_experiment(e) for e in dump["experiments"]],
                "runs": [_run_state(r) for r in dump["runs"]],
                "jobs": [_job_state(j) for j in dump["jobs"]],
            }
        )

    def _pipeline_state(self, pipeline: Pipeline) -> dict:
        default = self.backend.default_version(pipeline)
        return {
            "id": pipeline.id,
            "name": pipeline.name,
            "description": pipeline.description,
            "created_at": timestamp(pipeline.created_at),
            "default_version_id": default.id if default else None,
            "default_version_name": default.name if default else None,
            "status": pipeline.status,
        }

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


def _version_state(version: PipelineVersion) -> dict:
    return {
        "id": version.id,
        "pipeline_id": version.pipeline_id,
        "name": version.name,
        "description": version.description,
        "created_at": timestamp(version.created_at),
        "status": version.status,
    }


def _references_state(references: Iterable[Reference]) -> dict:
    """The experiment and pipeline version ids of a run or job."""
    ids = {r.type: r.id for r in references}
    return {
        "experiment_id": ids.get("EXPERIMENT"),
        "pipeline_version_id": ids.get("PIPELINE_VERSION"),
    }


def _run_state(run: Run) -> dict:
    return {
        "id": run.id,
        "name": run.name,
        "status": run.status,
        "storage_state": run.storage_state,
        "created_at": timestamp(run.created_at),
        "finished_at": timestamp(run.finished_at) if run.finished_at else None,
        **_references_state(run.references),
        "parameters": {p.name: p.value for p in run.pipeline_spec.parameters},
    }


def _job_state(job: Job) -> dict:
    return {
        "id": job.id,
        "name": job.name,
        "enabled": job.enabled,
        "trigger": api_trigger(job.trigger),
        "max_concurrency": job.max_concurrency,
        "created_at": timestamp(job.created_at),
        **_references_state(job.references),
        "parameters": {p.name: p.value for p in job.pipeline_spec.parameters},
    }


# --------------------------------------------------------------------------- the app


def create_app(
    backend: Backend, injector: FaultInjector, tokens: Tokens, storage: ObjectStore | None = None
) -> ASGIApp:
    """The whole server as one ASGI app: faults outside, then auth, then the routes."""
    handlers = Handlers(backend, storage or ObjectStore())
    routes = handlers.routes() + Admin(backend, injector, tokens).routes()
    app = Starlette(
        routes=routes, exception_handlers={ApiError: error_handler(ApiError.gateway_body)}
    )
    return FaultMiddleware(AuthMiddleware(app, tokens), injector)
