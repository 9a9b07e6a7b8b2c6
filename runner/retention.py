"""Retention, the server half: the `prune` command, deploy's prune afterwards, plan's preview.

Each reads the recurring runs and the recent runs once, each pipeline's versions once, lets
`runner.prune` decide, and (except plan) deletes what it chose, one version at a time, through
the shared retry policy. Deleting is idempotent: the same rules over what is left choose nothing
more, and a delete whose answer was lost is done (`ClientBase.delete_version`). A stop request
or a whole-job error (token refused, TLS) ends the deleting; what was not deleted is reported.
"""

from __future__ import annotations

import dataclasses
import datetime

import structlog

from runner import config, stopping, versions
from runner.errors import AuthError, ConfigurationError, NotFoundError, RunnerError, TLSError
from runner.prune import DELETE, Retention, Usage, decide
from runner.server import Server, ServerPipeline, ServerVersion

logger = structlog.get_logger()
DELETED, WOULD_DELETE, KEPT, NOT_DELETED = "deleted", "would-delete", "kept", "not-deleted"
SETTINGS = frozenset({"keep_versions", "keep_days"})


@dataclasses.dataclass
class Pruned:
    """One version in the summary: what became of it and why."""

    pipeline: str
    version: str
    version_id: str
    action: str
    reason: str
    error: str = ""


def command(settings, *, stdout) -> int:
    """`prune`: delete the old versions of dsp-runner's own pipelines (`--only` selects)."""
    from runner import commands

    job = commands._Job(settings, "prune", stdout)
    with job.reporting():
        credentials = commands._credentials(settings)
        repo = config.load(
            settings.config_path, required=settings.config is not None, target=settings.target
        )
        client = commands._connect(settings, credentials)
        targets = []
        for pipeline in client.list_pipelines():
            slug = _slug(pipeline)
            if slug and settings.selects(pipeline.name, slug):
                retention = retention_of(settings, repo, pipeline.name, slug, required=True)
                targets.append((pipeline, retention))
        if not targets:
            logger.warning("nothing_to_prune", reason="no pipeline deployed by dsp-runner matches")
        job.pruned, halted = prune(client, targets)
        return job.finish([], [], halted)


def after_deploy(settings, client: Server, repo, plans, outcomes):
    """deploy's prune: the pipelines it shipped without error whose retention is set, against
    the server as the deploy left it (their new default versions)."""
    wanted = {}
    for plan, outcome in zip(plans, outcomes, strict=True):
        retention = retention_of(settings, repo, plan.pipeline.name, plan.pipeline.slug)
        if retention is not None and not outcome.error:
            wanted[plan.pipeline.name.lower()] = retention
    if not wanted:
        return [], None
    listing = [p for p in client.list_pipelines() if p.name.lower() in wanted]
    return prune(client, [(p, wanted[p.name.lower()]) for p in listing])


def preview(settings, client: Server, repo, plans) -> list[Pruned]:
    """plan's part: what deploy's prune would delete once this plan is applied (a new version
    counts as the newest and the default). Reads only."""
    from runner.plan import NEW_VERSION, SET_DEFAULT

    targets, extra = [], {}
    now = datetime.datetime.now(datetime.UTC)
    for plan in plans:
        retention = retention_of(settings, repo, plan.pipeline.name, plan.pipeline.slug)
        pipeline = plan.server_pipeline
        if retention is None or pipeline is None or plan.error:
            continue
        if plan.action == NEW_VERSION:
            new = ServerVersion("", plan.version_name, plan.version_description, pipeline.id)
            extra[pipeline.id] = dataclasses.replace(new, created_at=now)
            pipeline = dataclasses.replace(pipeline, default_version=extra[pipeline.id])
        elif plan.action == SET_DEFAULT:
            pipeline = dataclasses.replace(pipeline, default_version=plan.existing_version)
        targets.append((pipeline, retention))
    found, _ = prune(client, targets, dry_run=True, extra=extra)
    return found


def retention_of(settings, repo, name: str, slug: str, *, required: bool = False):
    """The pipeline's retention: this job's DSP_KEEP_VERSIONS / DSP_KEEP_DAYS over its entry's
    and the file's `retention`. None when neither sets any (deploy and plan then prune nothing);
    `prune` itself always has one (the built-in defaults)."""
    entry = repo.for_pipeline(name, slug).retention
    if entry is None and not required and not SETTINGS & settings.explicit:
        return None
    entry = entry or {}
    return Retention(
        keep=settings.given("keep_versions", entry.get("keep_versions")),
        keep_days=settings.given("keep_days", entry.get("keep_days")),
    )


def prune(
    client: Server,
    targets: list[tuple[ServerPipeline, Retention]],
    *,
    dry_run: bool = False,
    extra: dict[str, ServerVersion] | None = None,
) -> tuple[list[Pruned], RunnerError | None]:
    """Decide for every target, then delete (unless `dry_run`); `extra` adds a version not yet
    uploaded to a pipeline's listing (plan). Returns the records and the whole-job error that
    stopped the deleting, if one did."""
    if not targets:
        return [], None
    now = datetime.datetime.now(datetime.UTC)
    longest = max(retention.keep_days for _, retention in targets)
    usage = Usage.of(client.list_jobs(), client.runs_since(now - datetime.timedelta(longest)))
    records: list[Pruned] = []
    halted: RunnerError | None = None
    for pipeline, retention in targets:
        try:
            listed = client.list_versions(pipeline.id)
        except NotFoundError:
            logger.info("pipeline_gone", pipeline=pipeline.name, reason="deleted since listed")
            continue
        listed += [extra[pipeline.id]] if extra and pipeline.id in extra else []
        for verdict in decide(pipeline, listed, retention, usage, now=now):
            record = Pruned(*dataclasses.astuple(verdict))
            if verdict.action != DELETE:
                record.action = KEPT
            elif dry_run:
                record.action = WOULD_DELETE
            else:
                halted = _delete(client, pipeline, record, halted)
            _log(record)
            records.append(record)
    return records, halted


def _delete(client: Server, pipeline, record: Pruned, halted):
    """Delete one version unless the job must stop; returns the whole-job error, if any."""
    record.action = NOT_DELETED
    if stopping.requested():
        record.error = "not deleted: the job was asked to stop (SIGTERM)"
        return halted
    if halted is not None:
        record.error = f"not deleted: the job halted: {halted}"
        return halted
    try:
        client.delete_version(pipeline.id, record.version_id)
    except (AuthError, TLSError, ConfigurationError) as exc:
        record.error = str(exc)
        return exc
    except RunnerError as exc:
        record.error = str(exc)
        return halted
    record.action = DELETED
    return halted


def _log(record: Pruned) -> None:
    fields = {"pipeline": record.pipeline, "version": record.version, "reason": record.reason}
    if record.error:
        logger.error("version_not_deleted", **fields, error=record.error)
    else:
        logger.info(f"version_{record.action.replace('-', '_')}", **fields)


def _slug(pipeline: ServerPipeline) -> str:
    """The slug of a pipeline whose default version dsp-runner uploaded ("" for others)."""
    default = pipeline.default_version
    if default is None or not versions.is_runner_version(default.description):
        return ""
    return versions.slug_of(default.name)
