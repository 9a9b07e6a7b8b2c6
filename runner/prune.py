"""Retention, the pure half: which versions of a pipeline `prune` deletes, and why each other
one stays.

Only dsp-runner's own versions are ever deleted (their description carries `versions.MARK`), and
only from a pipeline whose history begins the way a dsp-runner deploy begins it. A version older
than the `keep` newest dsp-runner versions is deleted unless something still needs it: it is the
default, an enabled recurring run uses it, a run of it started within `keep_days`, or it would be
the pipeline's last. Deciding reads nothing: `runner.retention` reads the server and deletes.
"""

from __future__ import annotations

import dataclasses
import datetime

from runner import versions
from runner.server import ServerJob, ServerPipeline, ServerRun, ServerVersion

DELETE, KEEP = "delete", "keep"
FIRST_UPLOAD_WINDOW = datetime.timedelta(hours=1)
"""How soon after a pipeline's first (implicit) version a deploy's first content-named version
follows it when that deploy created the pipeline: the two uploads of one job."""
_OLDEST = datetime.datetime.min.replace(tzinfo=datetime.UTC)


@dataclasses.dataclass(frozen=True)
class Retention:
    """How many of a pipeline's newest dsp-runner versions stay for their age alone, and for how
    many days a run keeps its version."""

    keep: int
    keep_days: float


@dataclasses.dataclass(frozen=True)
class Verdict:
    pipeline: str
    version: str
    version_id: str
    action: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Usage:
    """What the server's recurring runs and recent runs say about versions, read once a job."""

    scheduled: dict[str, str]
    """version id → name of an enabled recurring run that uses it."""
    last_run: dict[str, ServerRun]
    """version id → its newest run (a run a recurring run started counts for the job's version)."""

    @classmethod
    def of(cls, jobs: list[ServerJob], runs: list[ServerRun]) -> Usage:
        scheduled = {}
        for job in sorted(jobs, key=lambda j: j.name):
            if job.enabled and job.version_id:
                scheduled.setdefault(job.version_id, job.name)
        job_versions = {job.id: job.version_id for job in jobs}
        last_run: dict[str, ServerRun] = {}
        for run in runs:
            version_id = run.version_id or job_versions.get(run.job_id, "")
            newest = last_run.get(version_id)
            if version_id and (newest is None or _created(run) > _created(newest)):
                last_run[version_id] = run
        return cls(scheduled, last_run)


def decide(
    pipeline: ServerPipeline,
    listed: list[ServerVersion],
    retention: Retention,
    usage: Usage,
    *,
    now: datetime.datetime,
) -> list[Verdict]:
    """One verdict per version, newest first."""
    history = sorted(listed, key=lambda v: (_created(v), v.name != pipeline.name, v.id))
    newest_first = list(reversed(history))
    if not created_by_runner(pipeline.name, history):
        reason = "the pipeline's first versions were not uploaded by dsp-runner"
        return [_verdict(pipeline, v, KEEP, reason) for v in newest_first]
    ours = [v for v in newest_first if versions.is_runner_version(v.description)]
    recent = set(ours[: retention.keep])
    verdicts = [
        _verdict(pipeline, v, *_judge(v, pipeline, recent, retention, usage, now))
        for v in newest_first
    ]
    if verdicts and all(v.action == DELETE for v in verdicts):
        verdicts[0] = dataclasses.replace(
            verdicts[0], action=KEEP, reason="the pipeline's last version"
        )
    return verdicts


def created_by_runner(pipeline_name: str, history: list[ServerVersion]) -> bool:
    """Whether a dsp-runner deploy created the pipeline: its oldest version is a dsp-runner
    version, or the server's implicit first version (named after the pipeline) followed, within
    the same job, by a dsp-runner version. A pipeline made by hand and deployed to later starts
    with a hand upload, or with its first version long before dsp-runner's."""
    if not history:
        return False
    first = history[0]
    if versions.is_runner_version(first.description):
        return True
    if first.name != pipeline_name or len(history) < 2:
        return False
    second = history[1]
    return (
        versions.is_runner_version(second.description)
        and _created(second) - _created(first) <= FIRST_UPLOAD_WINDOW
    )


def _judge(version, pipeline, recent, retention, usage, now) -> tuple[str, str]:
    """(action, reason) for one version, the strongest reason to keep it first."""
    if not versions.is_runner_version(version.description):
        return KEEP, "not uploaded by dsp-runner"
    if pipeline.default_version is not None and version.id == pipeline.default_version.id:
        return KEEP, "the pipeline's default version"
    if version.id in usage.scheduled:
        return KEEP, f"enabled recurring run {usage.scheduled[version.id]!r} uses it"
    run = usage.last_run.get(version.id)
    since = now - datetime.timedelta(days=retention.keep_days)
    if run is not None and (run.created_at is None or run.created_at >= since):
        return KEEP, f"run {run.name!r} started within {retention.keep_days:g} day(s)"
    if version in recent:
        return KEEP, f"one of the {retention.keep} newest dsp-runner versions"
    return DELETE, f"older than the {retention.keep} newest dsp-runner versions, and unused"


def _verdict(pipeline: ServerPipeline, version: ServerVersion, action: str, reason: str):
    return Verdict(pipeline.name, version.name, version.id, action, reason)


def _created(item: ServerVersion | ServerRun) -> datetime.datetime:
    return item.created_at or _OLDEST
