"""DSP 2.x wire shapes: v2beta1 filters (`operation`) and the generated models as records.

Pure functions over what kfp_server_api 2 returns (and, for a run's task outputs, the raw JSON
it would drop); the client (`client.py`) makes the calls.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from runner.flavour_v2 import states
from runner.flavour_v2.compile import parameters as ir_parameters
from runner.harness import Parameter
from runner.server import ServerJob, ServerPipeline, ServerRun, ServerVersion, server_time

NAME_KEY = "display_name"
"""What the 2.5 server filters names by; 2.14+ keeps it equal to `name` for our uploads."""


def name_filter(name: str) -> str:
    return _filter("EQUALS", string_value=name)


def substring_filter(text: str) -> str:
    return _filter("IS_SUBSTRING", string_value=text)


def names_filter(names: list[str]) -> str:
    return _filter("IN", string_values={"values": names})


def _filter(operation: str, **value: Any) -> str:
    return json.dumps({"predicates": [{"operation": operation, "key": NAME_KEY, **value}]})


def name_of(api) -> str:
    """A pipeline's or version's name: `name` from 2.14 (the unique key), else `display_name`."""
    return getattr(api, "name", None) or api.display_name or ""


def pipeline(api, newest: ServerVersion | None) -> ServerPipeline:
    return ServerPipeline(id=api.pipeline_id, name=name_of(api), default_version=newest)


def newest(candidates: list, pipeline_name: str) -> Any | None:
    """The pipeline's newest version, from a listing sorted by created_at, newest first: what
    the KFP 2 dashboard shows first and what a schedule naming only the pipeline runs. The
    server keeps created_at in seconds, and a pipeline an older dsp-runner created by upload
    has a version named after it made right before ours: on a tie, a version of another name
    wins."""
    if not candidates:
        return None
    top = candidates[0].created_at
    tied = [v for v in candidates if v.created_at == top]
    return next((v for v in tied if name_of(v) != pipeline_name), tied[0])


def version(api, pipeline_id: str) -> ServerVersion:
    return ServerVersion(
        id=api.pipeline_version_id,
        name=name_of(api),
        description=api.description or "",
        pipeline_id=pipeline_id,
        parameters=tuple((p.name, p.default) for p in typed_parameters(api)),
        created_at=server_time(api.created_at),
    )


def typed_parameters(api) -> tuple[Parameter, ...]:
    """The version's run parameters with their IR types, from the pipeline spec it holds (a
    spec with a platform part arrives as {pipeline_spec, platform_spec})."""
    spec = api.pipeline_spec or {}
    if isinstance(spec, dict) and "pipeline_spec" in spec:
        spec = spec["pipeline_spec"] or {}
    return ir_parameters(spec) if isinstance(spec, dict) else ()


def run(api) -> ServerRun:
    state = str(api.state or "")
    reference = api.pipeline_version_reference
    return ServerRun(
        id=api.run_id,
        name=api.display_name or "",
        status=state,
        error=(api.error.message or "") if api.error else "",
        version_id=(reference.pipeline_version_id or "") if reference else "",
        created_at=server_time(api.created_at),
        finished_at=server_time(api.finished_at),
        outcome=states.outcome_of(state),
        job_id=api.recurring_run_id or "",
    )


def job(api) -> ServerJob:
    """`status` (ENABLED/DISABLED) is what the server reports; `mode` what was last asked."""
    enabled = api.status == "ENABLED" if api.status else api.mode == "ENABLE"
    return ServerJob(
        id=api.recurring_run_id,
        name=api.display_name or "",
        description=api.description or "",
        enabled=enabled,
        experiment_id=api.experiment_id or "",
        version_id=_version_of(api.pipeline_version_reference),
    )


def _version_of(reference) -> str:
    return (reference.pipeline_version_id or "") if reference else ""


def task_outputs(raw_run: dict) -> dict[str, dict[str, str]]:
    """{task: {output: value}} from a run's raw JSON. `output_parameters` on a task detail is
    localdsp's own field (the 2.5 API has nowhere to put output parameters: on a cluster they
    live in ML Metadata), so a real server's runs simply have no outputs here."""
    details = (raw_run.get("run_details") or {}).get("task_details") or []
    outputs = {}
    for task in details:
        values = task.get("output_parameters") if isinstance(task, dict) else None
        if values:
            outputs[task.get("display_name", "?")] = {
                name: _text(value) for name, value in values.items()
            }
    return outputs


def _text(value: Any) -> str:
    """An output as the summary shows it: 19.0 → "19.0", lists and structs as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def spec_file(spec: dict) -> str:
    """A version's `pipeline_spec` as an upload file: the server returns a spec with a platform
    part as {pipeline_spec, platform_spec}, which uploads as two YAML documents."""
    if set(spec) == {"pipeline_spec", "platform_spec"}:
        return yaml.safe_dump_all([spec["pipeline_spec"], spec["platform_spec"]], sort_keys=False)
    return yaml.safe_dump(spec, sort_keys=False)
