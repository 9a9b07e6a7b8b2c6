"""The v1beta1 wire format of the kfp-tekton 1.5.x server: its models as JSON, requests into
backend calls, and the admin state dump.

The jsonpb rules (snake_case names, enums as names, int64 as strings, zero values left out,
Timestamps always sent) are grpc-gateway v1's, shared with v2 in `wire`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.requests import Request

from localdsp.backend import Backend
from localdsp.errors import InvalidInput
from localdsp.models_v1 import (
    AVAILABLE,
    Experiment,
    Job,
    Parameter,
    Pipeline,
    PipelineSpec,
    PipelineVersion,
    Reference,
    Run,
)
from localdsp.wire import api_trigger, parse_enum, pb, timestamp

RESOURCE_TYPES = (
    "UNKNOWN_RESOURCE_TYPE",
    "EXPERIMENT",
    "JOB",
    "PIPELINE",
    "PIPELINE_VERSION",
    "NAMESPACE",
)
RELATIONSHIPS = ("UNKNOWN_RELATIONSHIP", "OWNER", "CREATOR")

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


def parse_references(items: Any) -> tuple[Reference, ...]:
    """A request's `resource_references`, enums by name or number."""
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


def parse_pipeline_spec(data: dict | None) -> PipelineSpec:
    """A run's or job's `pipeline_spec`; KFP v2's `runtime_config` is refused."""
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


def reference_key(request: Request, prefix: str) -> tuple[str, str]:
    """The (type, id) of a List call's `<prefix>.type` and `<prefix>.id` query parameters."""
    query = request.query_params
    kind = parse_enum(query.get(f"{prefix}.type"), RESOURCE_TYPES, "api.ResourceType")
    return kind, query.get(f"{prefix}.id", "")


FILTER_TYPES = ("EXPERIMENT", "JOB", "PIPELINE_VERSION", "NAMESPACE")


def filter_key(request: Request, prefix: str = "resource_reference_key") -> tuple[str, str]:
    """The key ListExperiment, ListRuns and ListJobs filter by. As the server's ValidateFilter:
    a key given at all (either parameter) must have a type it filters by, so an id sent
    without its type is refused, where a kinder reading would list every object."""
    kind, key_id = reference_key(request, prefix)
    given = f"{prefix}.type" in request.query_params or f"{prefix}.id" in request.query_params
    if given and kind not in FILTER_TYPES:
        refused = InvalidInput(f"Unsupported resource type: {kind or RESOURCE_TYPES[0]}")
        raise refused.wrap("Unrecognized resource reference type.").wrap(
            "Validating filter failed."
        )
    return kind, key_id


# --------------------------------------------------------------------------- admin state


def api_state(backend: Backend) -> dict:
    """The admin state endpoint's dump: every object, flat and without manifests."""
    dump = backend.dump()
    return {
        "pipelines": [_pipeline_state(p, backend.default_version(p)) for p in dump["pipelines"]],
        "versions": [_version_state(v) for v in dump["versions"]],
        "experiments": [api_experiment(e) for e in dump["experiments"]],
        "runs": [_run_state(r) for r in dump["runs"]],
        "jobs": [_job_state(j) for j in dump["jobs"]],
    }


def _pipeline_state(pipeline: Pipeline, default: PipelineVersion | None) -> dict:
    return {
        "id": pipeline.id,
        "name": pipeline.name,
        "description": pipeline.description,
        "created_at": timestamp(pipeline.created_at),
        "default_version_id": default.id if default else None,
        "default_version_name": default.name if default else None,
        "status": pipeline.status,
    }


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
