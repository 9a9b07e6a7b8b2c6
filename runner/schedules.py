"""Schedules as code: the declared schedules become KFP recurring runs (jobs), and follow the file.

KFP v1 cannot update a job, and a job embeds its manifest when it is created, so a changed
schedule (or a new version) means a new job. The runner owns only jobs whose description carries
its mark; a user's hand-made job is never touched. For each schedule:
1. a job with the current spec is created *disabled* (its name carries the spec hash, so a
   retried create finds it);
2. every other job of that schedule is disabled;
3. the current job is set to the declared enabled state;
4. the other jobs are deleted.
There is never a moment with two enabled jobs for one schedule, and a failure at any step leaves
a state the next deploy finishes from: it starts again at step 1 and finds the job made before.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re

from runner.config import Schedule
from runner.errors import NotFoundError
from runner.server import Server, ServerJob

MARK = re.compile(r"^dsp-runner schedule (?P<slug>[^/\s]+)/(?P<key>\S+) spec (?P<spec>[0-9a-f]+)")
SPEC_LENGTH = 10
MAX_DESCRIPTION = 255


@dataclasses.dataclass(frozen=True)
class DesiredJob:
    name: str
    description: str
    spec: str
    schedule: Schedule
    params: dict[str, str]


@dataclasses.dataclass(frozen=True)
class Changes:
    """What reconciling one pipeline's schedules will do; empty when all is in place."""

    create: tuple[DesiredJob, ...] = ()
    enable: tuple[ServerJob, ...] = ()
    disable: tuple[ServerJob, ...] = ()
    delete: tuple[ServerJob, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.create or self.enable or self.disable or self.delete)

    def describe(self) -> list[str]:
        return (
            [
                f"create {d.name}" + ("" if d.schedule.enabled else " (disabled)")
                for d in self.create
            ]
            + [f"enable {j.name}" for j in self.enable]
            + [f"disable {j.name}" for j in self.disable]
            + [f"delete {j.name}" for j in self.delete]
        )


def desired(
    slug: str, version_name: str, experiment: str, params: dict[str, str], schedules
) -> list[DesiredJob]:
    """One job per declared schedule, named and marked by everything that defines it."""
    jobs = []
    for schedule in schedules:
        job_params = {**params, **schedule.arguments}
        spec = _spec_hash(version_name, experiment, schedule, job_params)
        jobs.append(
            DesiredJob(
                name=f"{slug}-{schedule.name}-{spec}"[-100:],
                description=(
                    f"dsp-runner schedule {slug}/{schedule.name} spec {spec}; "
                    f"version {version_name}; cron {schedule.cron}"
                )[:MAX_DESCRIPTION],
                spec=spec,
                schedule=schedule,
                params=job_params,
            )
        )
    return jobs


def owned_by(slug: str, jobs: list[ServerJob]) -> list[ServerJob]:
    """The jobs a dsp-runner deploy made for this pipeline (by the mark in their description)."""
    return [j for j in jobs if (m := MARK.match(j.description)) and m["slug"] == slug]


def changes(want: list[DesiredJob], owned: list[ServerJob]) -> Changes:
    """Compare declared and existing jobs (pure: a dry run prints it).

    One job per current spec stays (an enabled one first, then the lowest id): a duplicate left
    by two racing deploys is disabled and deleted like any other superseded job.
    """
    current = {d.spec: d for d in want}
    keepers: dict[str, ServerJob] = {}
    for job in sorted(owned, key=lambda j: (not j.enabled, j.id)):
        keepers.setdefault(_mark(job)["spec"], job)
    create = tuple(d for d in want if d.spec not in keepers)
    enable, disable, delete = [], [], []
    for job in owned:
        spec = _mark(job)["spec"]
        wanted = current.get(spec)
        if wanted is None or keepers[spec] is not job:
            if job.enabled:
                disable.append(job)
            delete.append(job)
        elif wanted.schedule.enabled != job.enabled:
            (enable if wanted.schedule.enabled else disable).append(job)
    return Changes(create, tuple(enable), tuple(disable), tuple(delete))


def reconcile(
    client: Server,
    *,
    experiment_id: str,
    pipeline_id: str,
    version_id: str,
    want: list[DesiredJob],
    owned: list[ServerJob],
    log,
) -> Changes:
    """Carry out `changes` in the order that never has two enabled jobs for one schedule."""
    plan = changes(want, owned)
    made = {}
    for d in plan.create:
        mine = client.create_job(
            experiment_id=experiment_id,
            name=d.name,
            description=d.description,
            pipeline_id=pipeline_id,
            version_id=version_id,
            cron=d.schedule.cron,
            max_concurrency=d.schedule.max_concurrency,
            catchup=d.schedule.catchup,
            enabled=False,
            params=d.params,
        )
        made[d.spec] = _one_copy(client, d, mine, log)
        log.info("schedule_created", schedule=d.schedule.name, job=d.name, job_id=made[d.spec].id)
    for job in plan.disable:
        client.set_job_enabled(job.id, False)
        log.info("schedule_disabled", job=job.name, job_id=job.id)
    to_enable = [*plan.enable, *(made[d.spec] for d in plan.create if d.schedule.enabled)]
    for job in to_enable:
        try:
            client.set_job_enabled(job.id, True)
        except NotFoundError:
            log.info("schedule_taken_over", job=job.name, reason="a racing deploy kept its copy")
            continue
        log.info("schedule_enabled", job=job.name, job_id=job.id)
    for job in plan.delete:
        client.delete_job(job.id)
        log.info("schedule_removed", job=job.name, job_id=job.id)
    return plan


def _one_copy(client: Server, wanted: DesiredJob, mine: ServerJob, log) -> ServerJob:
    """Two deploys racing (a webhook delivered twice) can each create the job. Each, still
    holding its copy disabled, lists the name: the lowest id stays, every other copy is
    disabled and deleted, whoever made it. Both agree on which stays."""
    copies = client.jobs_named(wanted.name) or [mine]
    keeper, *extra = copies
    for job in extra:
        client.set_job_enabled(job.id, False)
        client.delete_job(job.id)
        log.info("schedule_duplicate_removed", job=job.name, job_id=job.id, kept=keeper.id)
    return keeper


def _mark(job: ServerJob):
    return MARK.match(job.description)


def _spec_hash(version_name: str, experiment: str, schedule: Schedule, params) -> str:
    spec = {
        "version": version_name,
        "experiment": experiment,
        **dataclasses.asdict(schedule),
        "arguments": params,
    }
    canonical = json.dumps(spec, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:SPEC_LENGTH]
