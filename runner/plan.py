"""Decide, from compiled pipelines and what the server holds, what a deploy must do.

Reads only: a plan can be printed (dry run) without changing anything. The common no-op case
costs one paged pipeline listing, because each pipeline arrives with its default version.
"""

from __future__ import annotations

import dataclasses

from runner import versions
from runner.client import DSPClient, ServerPipeline, ServerVersion
from runner.compiler import CompiledPipeline
from runner.gitinfo import Origin

CREATE = "create"
NEW_VERSION = "new-version"
SET_DEFAULT = "set-default"
UNCHANGED = "unchanged"


@dataclasses.dataclass(frozen=True)
class RunPlan:
    name: str
    params: dict[str, str]
    existing_id: str = ""


@dataclasses.dataclass(frozen=True)
class PipelinePlan:
    pipeline: CompiledPipeline
    action: str
    version_name: str
    version_description: str
    server_pipeline: ServerPipeline | None = None
    existing_version: ServerVersion | None = None
    run: RunPlan | None = None
    error: str = ""


def arguments(pipeline: CompiledPipeline, overrides: dict[str, dict[str, str]]) -> dict[str, str]:
    """The pipeline's defaults with the configured overrides on top, checked against its
    parameters: an unknown or missing argument is an error before anything is uploaded."""
    given = {**overrides.get(pipeline.slug, {}), **overrides.get(pipeline.name, {})}
    known = {p.name for p in pipeline.parameters}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ValueError(
            f"unknown run argument(s) {', '.join(unknown)} for pipeline "
            f"{pipeline.name!r}; its parameters are {', '.join(sorted(known)) or 'none'}"
        )
    merged = {**pipeline.defaults, **given}
    missing = sorted(p.name for p in pipeline.parameters if p.name not in merged)
    if missing:
        raise ValueError(
            f"pipeline {pipeline.name!r} needs a value for {', '.join(missing)} "
            "(no default): set it with --arg or DSP_RUN_ARGS"
        )
    return merged


def make_plan(
    pipelines: list[CompiledPipeline],
    *,
    client: DSPClient,
    origin: Origin,
    experiment: str,
    run_policy: str,
    overrides: dict[str, dict[str, str]],
) -> list[PipelinePlan]:
    on_server = {p.name.lower(): p for p in client.list_pipelines()}
    plans = [
        _plan_one(p, on_server.get(p.name.lower()), client, origin, run_policy, overrides)
        for p in pipelines
    ]
    return _mark_existing_runs(plans, client, experiment)


def _plan_one(pipeline, server_pipeline, client, origin, run_policy, overrides) -> PipelinePlan:
    name = versions.version_name(pipeline.slug, pipeline.content_hash)
    description = versions.version_description(
        pipeline.content_hash, origin.commit, origin.repo, pipeline.source.name
    )
    plan = PipelinePlan(pipeline, CREATE, name, description, server_pipeline)
    if server_pipeline is not None:
        plan = _against_server(plan, server_pipeline, client)
    try:
        params = arguments(pipeline, overrides)
    except ValueError as exc:
        return dataclasses.replace(plan, error=str(exc))
    return dataclasses.replace(plan, run=_run_plan(plan, params, origin, run_policy))


def _against_server(plan: PipelinePlan, server_pipeline: ServerPipeline, client) -> PipelinePlan:
    """Unchanged when the default version is ours; a revert or a hand upload needs a lookup."""
    default = server_pipeline.default_version
    if default is not None and default.name == plan.version_name:
        return dataclasses.replace(plan, action=UNCHANGED, existing_version=default)
    existing = client.find_version(server_pipeline.id, plan.version_name)
    if existing is not None:
        return dataclasses.replace(plan, action=SET_DEFAULT, existing_version=existing)
    return dataclasses.replace(plan, action=NEW_VERSION)


def _run_plan(plan: PipelinePlan, params, origin: Origin, run_policy: str) -> RunPlan | None:
    """on-change: one run per version (named after the commit that brought it);
    always: one run per version and commit; never: none."""
    if run_policy == "never":
        return None
    commit = origin.commit
    if run_policy == "on-change" and plan.existing_version is not None:
        commit = versions.commit_of(plan.existing_version.description) or commit
    return RunPlan(versions.run_name(plan.version_name, commit), params)


def _mark_existing_runs(plans: list[PipelinePlan], client, experiment: str) -> list[PipelinePlan]:
    """One filtered listing tells which planned runs already exist (a re-deploy, a retried job)."""
    wanted = [p.run.name for p in plans if p.run and not p.error]
    experiment_id = client.find_experiment(experiment) if wanted else None
    if not experiment_id:
        return plans
    existing = client.find_runs(experiment_id, wanted)
    return [
        dataclasses.replace(p, run=dataclasses.replace(p.run, existing_id=existing[p.run.name].id))
        if p.run and p.run.name in existing
        else p
        for p in plans
    ]
