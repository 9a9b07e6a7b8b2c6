"""Decide, from compiled pipelines and what the server holds, what a deploy must do.

Reads only: a plan can be printed (dry run) without changing anything. The common no-op case
costs one paged pipeline listing, because each pipeline arrives with its default version.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from runner import flavour, schedules, versions
from runner.config import PipelineOptions
from runner.errors import NotFoundError
from runner.gitinfo import Origin
from runner.harness import CompiledPipeline
from runner.server import Server, ServerJob, ServerPipeline, ServerVersion

CREATE = "create"
NEW_VERSION = "new-version"
SET_DEFAULT = "set-default"
UNCHANGED = "unchanged"


@dataclasses.dataclass(frozen=True)
class RunPlan:
    name: str
    params: dict[str, str]
    experiment: str
    existing_id: str = ""


@dataclasses.dataclass(frozen=True)
class PipelinePlan:
    pipeline: CompiledPipeline
    options: PipelineOptions
    action: str
    version_name: str
    version_description: str
    server_pipeline: ServerPipeline | None = None
    existing_version: ServerVersion | None = None
    run: RunPlan | None = None
    jobs_wanted: tuple[schedules.DesiredJob, ...] = ()
    jobs_owned: tuple[ServerJob, ...] = ()
    error: str = ""

    @property
    def schedule_changes(self) -> schedules.Changes:
        return schedules.changes(list(self.jobs_wanted), list(self.jobs_owned))


def arguments(pipeline: CompiledPipeline, given: dict[str, str]) -> dict[str, str]:
    """The pipeline's defaults with the configured arguments on top, checked against its
    parameters: an unknown or missing argument, or one that is not of its parameter's (kfp 2)
    type, is an error before anything is uploaded."""
    known = {p.name for p in pipeline.parameters}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ValueError(
            f"unknown run argument(s) {', '.join(unknown)} for pipeline "
            f"{pipeline.name!r}; its parameters are {', '.join(sorted(known)) or 'none'}"
        )
    for parameter in pipeline.parameters:
        if parameter.name in given:
            try:
                parameter.typed(given[parameter.name])
            except ValueError as exc:
                raise ValueError(f"pipeline {pipeline.name!r}: {exc}") from None
    merged = {**pipeline.defaults, **given}
    missing = sorted(p.name for p in pipeline.parameters if p.required and p.name not in merged)
    if missing:
        raise ValueError(
            f"pipeline {pipeline.name!r} needs a value for {', '.join(missing)} "
            "(no default): set it with --arg, DSP_RUN_ARGS or the settings file"
        )
    return merged


def make_plan(
    pipelines: list[tuple[CompiledPipeline, PipelineOptions]],
    *,
    client: Server,
    origin: Origin,
    server: list[ServerPipeline],
    folder: Path,
) -> list[PipelinePlan]:
    """`server` is the pipeline listing the caller already read (one paged request); `folder`
    is the pipelines folder, which version descriptions name files relative to."""
    on_server = {p.name.lower(): p for p in server}
    with ThreadPoolExecutor(max_workers=1) as pool:
        jobs = pool.submit(client.list_jobs)  # meanwhile: the versions and runs lookups
        plans = [
            _plan_one(
                pipeline, options, on_server.get(pipeline.name.lower()), client, origin, folder
            )
            for pipeline, options in pipelines
        ]
        plans = _mark_existing_runs(plans, client)
        return [_with_owned_jobs(p, jobs.result()) for p in plans]


def _with_owned_jobs(plan: PipelinePlan, jobs: list[ServerJob]) -> PipelinePlan:
    if plan.error:
        return plan
    return dataclasses.replace(plan, jobs_owned=tuple(schedules.owned_by(plan.pipeline.slug, jobs)))


def _plan_one(pipeline, options, server_pipeline, client, origin, folder) -> PipelinePlan:
    name = versions.version_name(pipeline.slug, pipeline.content_hash)
    description = versions.version_description(
        pipeline.content_hash,
        origin.commit,
        origin.repo,
        str(pipeline.source.relative_to(folder)),
        pipeline.module,
        pipeline.parameters if flavour.current() == flavour.V2 else None,
    )
    plan = PipelinePlan(pipeline, options, CREATE, name, description, server_pipeline)
    if server_pipeline is not None:
        plan = _against_server(plan, server_pipeline, client)
    try:
        params = arguments(pipeline, options.arguments)
        for schedule in options.schedules:
            arguments(pipeline, {**options.arguments, **schedule.arguments})
    except ValueError as exc:
        return dataclasses.replace(plan, error=str(exc))
    return dataclasses.replace(
        plan,
        run=_run_plan(plan, params, origin, options.run_policy),
        jobs_wanted=tuple(
            schedules.desired(pipeline.slug, name, options.experiment, params, options.schedules)
        ),
    )


def _against_server(plan: PipelinePlan, server_pipeline: ServerPipeline, client) -> PipelinePlan:
    """Unchanged when the default version is ours; a revert or a hand upload needs a lookup."""
    default = server_pipeline.default_version
    if default is not None and default.name == plan.version_name:
        return dataclasses.replace(plan, action=UNCHANGED, existing_version=default)
    try:
        existing = client.find_version(server_pipeline.id, plan.version_name)
    except NotFoundError:  # deleted since the listing (404): the plan stays a create
        return dataclasses.replace(plan, server_pipeline=None)
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
    return RunPlan(
        versions.run_name(plan.version_name, versions.short_commit(commit)),
        params,
        plan.options.experiment,
    )


def existing_runs(client, runs: list[RunPlan]) -> dict[tuple[str, str], str]:
    """Which planned runs exist already, as (experiment, name) → run id: a filtered listing per
    experiment (a re-deploy of a commit, a retried or doubled cron trigger)."""
    found: dict[tuple[str, str], str] = {}
    for experiment in sorted({run.experiment for run in runs}):
        experiment_id = client.find_experiment(experiment)
        if experiment_id:
            names = [run.name for run in runs if run.experiment == experiment]
            for name, run in client.find_runs(experiment_id, names).items():
                found[experiment, name] = run.id
    return found


def _mark_existing_runs(plans: list[PipelinePlan], client) -> list[PipelinePlan]:
    existing = existing_runs(client, [p.run for p in plans if p.run and not p.error])
    return [
        dataclasses.replace(
            p, run=dataclasses.replace(p.run, existing_id=existing[p.run.experiment, p.run.name])
        )
        if p.run and (p.run.experiment, p.run.name) in existing
        else p
        for p in plans
    ]
