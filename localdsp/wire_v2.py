"""The v2beta1 wire format of the KFP 2.5 server: its models as JSON, and requests into rules calls.

The jsonpb rules (grpc-gateway v1.16, what 2.5.0 links) are those of v1, in `wire`; so is the
error JSON, whose detail here is a google.rpc.Status (`errors.ApiError.rpc_status_body`).
"""

from __future__ import annotations

import json
from typing import Any

from localdsp import wire_v1
from localdsp.errors import InvalidInput
from localdsp.models_v1 import Pipeline, PipelineVersion
from localdsp.models_v2 import (
    ExperimentV2,
    PipelineV2,
    RecurringRunV2,
    RunRequest,
    RunV2,
    Source,
    TaskDetailV2,
    VersionV2,
)
from localdsp.rules_v2 import BackendV2
from localdsp.wire import api_trigger, parse_int, parse_trigger, pb, timestamp

RECURRING_MODES = ("MODE_UNSPECIFIED", "ENABLE", "DISABLE")


def api_pipeline(pipeline: PipelineV2) -> dict:
    return pb(
        pipeline_id=pipeline.id,
        display_name=pipeline.name,
        description=pipeline.description,
        created_at=timestamp(pipeline.created_at),
    )


def api_version(version: VersionV2, spec: dict) -> dict:
    return pb(
        pipeline_id=version.pipeline_id,
        pipeline_version_id=version.id,
        display_name=version.name,
        description=version.description,
        created_at=timestamp(version.created_at),
        pipeline_spec=spec,
    )


def api_experiment(experiment: ExperimentV2) -> dict:
    return pb(
        experiment_id=experiment.id,
        display_name=experiment.name,
        description=experiment.description,
        created_at=timestamp(experiment.created_at),
        last_run_created_at=timestamp(experiment.last_run_created_at),
        storage_state=experiment.storage_state,
    )


def _source(source: Source) -> dict:
    """A version reference when the run names a version, else the IR it was given inline."""
    if source.pipeline_version_id or source.pipeline_id:
        reference = pb(
            pipeline_id=source.pipeline_id, pipeline_version_id=source.pipeline_version_id
        )
        return {"pipeline_version_reference": reference}
    return {"pipeline_spec": json.loads(source.spec)} if source.spec else {}


def _runtime_config(parameters: str, pipeline_root: str) -> dict | None:
    config = pb(parameters=json.loads(parameters or "{}"), pipeline_root=pipeline_root)
    return config or None


def _status(message: str) -> dict | None:
    """A google.rpc.Status; code 2 (UNKNOWN): a step failed, no API call did."""
    return {"code": 2, "message": message} if message else None


def api_task(run_id: str, task: TaskDetailV2) -> dict:
    """A PipelineTaskDetail with the fields 2.5 fills from an Argo node, plus localdsp's
    `output_parameters` (see docs/localdsp.md: the 2.5 API carries no output parameters)."""
    return pb(
        run_id=run_id,
        task_id=task.task_id,
        display_name=task.name,
        create_time=timestamp(task.start_time),
        start_time=timestamp(task.start_time),
        end_time=timestamp(task.end_time),
        state=task.state,
        error=_status(task.error),
        output_parameters=task.output_parameters,
    )


def api_run(run: RunV2) -> dict:
    history = [{"update_time": timestamp(t), "state": state} for t, state in run.state_history]
    details = {"task_details": [api_task(run.id, t) for t in run.tasks]} if run.tasks else None
    return pb(
        run_id=run.id,
        experiment_id=run.experiment_id,
        recurring_run_id=run.recurring_run_id,
        display_name=run.name,
        description=run.description,
        service_account=run.service_account,
        runtime_config=_runtime_config(run.parameters, run.pipeline_root),
        storage_state=run.storage_state,
        state=run.state,
        state_history=history,
        created_at=timestamp(run.created_at),
        scheduled_at=timestamp(run.scheduled_at),
        finished_at=timestamp(run.finished_at),
        error=_status(run.error),
        run_details=details,
        **_source(run.source),
    )


def api_recurring_run(job: RecurringRunV2) -> dict:
    return pb(
        recurring_run_id=job.id,
        display_name=job.name,
        description=job.description,
        service_account=job.service_account,
        status="ENABLED" if job.enabled else "DISABLED",
        mode="ENABLE" if job.enabled else "DISABLE",
        created_at=timestamp(job.created_at),
        updated_at=timestamp(job.updated_at),
        max_concurrency=str(job.max_concurrency),
        no_catchup=job.no_catchup,
        trigger=api_trigger(job.trigger),
        runtime_config=_runtime_config(job.parameters, job.pipeline_root),
        experiment_id=job.experiment_id,
        **_source(job.source),
    )


def api_pipeline_v1(pipeline: PipelineV2, version: VersionV2) -> dict:
    """toApiPipelineV1 (a v1beta1 upload): the pipeline as v1 writes it, with its first version
    as the default version; a v2 pipeline has no v1 parameters."""
    return wire_v1.api_pipeline(
        Pipeline(pipeline.id, pipeline.name, pipeline.description, pipeline.created_at),
        _as_v1_version(version),
    )


def api_listed_pipeline_v1(pipeline: PipelineV2, newest: VersionV2 | None) -> dict:
    """A pipeline of the v1beta1 listing (toApiPipelineV1 over the LEFT JOIN): its newest
    version as `default_version`; a pipeline without versions joins an empty row, which
    renders as a version holding only the zero created_at."""
    if newest is not None:
        return api_pipeline_v1(pipeline, newest)
    listed = api_pipeline_v1(pipeline, VersionV2("", "", "", "", 0))
    return {**listed, "default_version": {"created_at": timestamp(0)}}


def api_version_v1(version: VersionV2) -> dict:
    """toApiPipelineVersionV1 (a v1beta1 version upload)."""
    return wire_v1.api_version(_as_v1_version(version))


def _as_v1_version(version: VersionV2) -> PipelineVersion:
    return PipelineVersion(
        version.id, version.pipeline_id, version.name, version.description, version.created_at
    )


def api_state(backend: BackendV2) -> dict:
    """The admin state endpoint's dump: every object as the API writes it, without the IR."""
    dump = backend.dump()
    return {
        "pipelines": [api_pipeline(p) for p in dump["pipelines"]],
        "versions": [api_version(v, {}) for v in dump["versions"]],
        "experiments": [api_experiment(e) for e in dump["experiments"]],
        "runs": [api_run(r) for r in dump["runs"]],
        "recurring_runs": [api_recurring_run(j) for j in dump["recurring_runs"]],
    }


# --------------------------------------------------------------------------- requests


def run_request(body: dict) -> RunRequest:
    """The fields a run and a recurring run share, from a (snake_cased) JSON body."""
    reference = body.get("pipeline_version_reference") or {}
    spec = body.get("pipeline_spec")
    if not isinstance(reference, dict) or (spec is not None and not isinstance(spec, dict)):
        raise InvalidInput("pipeline_version_reference and pipeline_spec must be JSON objects")
    config = body.get("runtime_config") or {}
    parameters = config.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidInput("runtime_config.parameters must be a JSON object")
    return RunRequest(
        name=str(body.get("display_name", "")),
        description=str(body.get("description", "")),
        experiment_id=str(body.get("experiment_id", "")),
        source=Source(
            pipeline_id=str(reference.get("pipeline_id", "")),
            pipeline_version_id=str(reference.get("pipeline_version_id", "")),
            spec=json.dumps(spec) if spec else "",
        ),
        parameters=parameters,
        pipeline_root=str(config.get("pipeline_root", "")),
        service_account=str(body.get("service_account", "")),
    )


def recurring_settings(body: dict) -> dict[str, Any]:
    """max_concurrency, trigger, mode (ENABLE, else disabled) and no_catchup of a request."""
    mode = body.get("mode") or "MODE_UNSPECIFIED"
    if isinstance(mode, int) and not isinstance(mode, bool) and 0 <= mode < len(RECURRING_MODES):
        mode = RECURRING_MODES[mode]
    if mode not in RECURRING_MODES:
        raise InvalidInput(f"unknown value {json.dumps(mode)} for enum v2beta1.RecurringRun_Mode")
    return {
        "max_concurrency": parse_int(body.get("max_concurrency"), "max_concurrency"),
        "trigger": parse_trigger(body.get("trigger")),
        "enabled": mode == "ENABLE",
        "no_catchup": bool(body.get("no_catchup", False)),
    }
