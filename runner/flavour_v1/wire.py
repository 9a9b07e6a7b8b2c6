"""DSP 1.x wire shapes: v1beta1 filters (`op`) and the generated models as `runner.server` records.

Pure functions over what kfp_server_api 1.8 returns; the client (`client.py`) makes the calls.
"""

from __future__ import annotations

import json

from runner.flavour_v1 import states
from runner.server import ServerJob, ServerPipeline, ServerRun, ServerVersion, server_time


def name_filter(name: str) -> str:
    return json.dumps({"predicates": [{"op": "EQUALS", "key": "name", "string_value": name}]})


def substring_filter(text: str) -> str:
    return json.dumps({"predicates": [{"op": "IS_SUBSTRING", "key": "name", "string_value": text}]})


def names_filter(names: list[str]) -> str:
    return json.dumps(
        {"predicates": [{"op": "IN", "key": "name", "string_values": {"values": names}}]}
    )


def pipeline(api) -> ServerPipeline:
    default = api.default_version
    return ServerPipeline(
        id=api.id, name=api.name, default_version=version(default, api.id) if default else None
    )


def version(api, pipeline_id: str) -> ServerVersion:
    return ServerVersion(
        id=api.id,
        name=api.name,
        description=api.description or "",
        pipeline_id=pipeline_id,
        parameters=tuple((p.name, p.value) for p in api.parameters or []),
        created_at=server_time(api.created_at),
    )


def _reference(api, kind: str) -> str:
    """The id an object's resource references give for `kind` (EXPERIMENT, PIPELINE_VERSION)."""
    return next(
        (ref.key.id for ref in api.resource_references or [] if ref.key and ref.key.type == kind),
        "",
    )


def run(api) -> ServerRun:
    return ServerRun(
        id=api.id,
        name=api.name,
        status=api.status or "",
        error=api.error or "",
        version_id=_reference(api, "PIPELINE_VERSION"),
        created_at=server_time(api.created_at),
        finished_at=server_time(api.finished_at),
        outcome=states.outcome_of(api.status or ""),
        job_id=_reference(api, "JOB"),
    )


def job(api) -> ServerJob:
    return ServerJob(
        id=api.id,
        name=api.name,
        description=api.description or "",
        enabled=bool(api.enabled),
        experiment_id=_reference(api, "EXPERIMENT"),
        version_id=_reference(api, "PIPELINE_VERSION"),
    )


def task_results(manifest: str | None) -> dict[str, dict[str, str]]:
    """{task: {result: value}} from a PipelineRun status (embedded taskRuns); a task inside a
    loop once per iteration, as `task[2]` (`task[1][2]` in a loop inside a loop), read from the
    iteration PipelineRuns the loop's Run lists in its `extraFields.pipelineRuns`."""
    try:
        status = json.loads(manifest or "{}").get("status") or {}
    except (ValueError, AttributeError):
        return {}
    return _results_of(status, "") if isinstance(status, dict) else {}


def _results_of(status: dict, suffix: str) -> dict[str, dict[str, str]]:
    outputs = {}
    for task_run in (status.get("taskRuns") or {}).values():
        results = (task_run.get("status") or {}).get("taskResults") or []
        if results:
            outputs[task_run.get("pipelineTaskName", "?") + suffix] = {
                r["name"]: r.get("value", "") for r in results if "name" in r
            }
    for run in (status.get("runs") or {}).values():
        extra = (run.get("status") or {}).get("extraFields") or {}
        iterations = (extra.get("pipelineRuns") or {}).values() if isinstance(extra, dict) else []
        for iteration in sorted(iterations, key=lambda i: i.get("iteration") or 0):
            inner = iteration.get("status") or {}
            outputs.update(_results_of(inner, f"{suffix}[{iteration.get('iteration', '?')}]"))
    return outputs
