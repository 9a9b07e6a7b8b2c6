"""Recurring runs: the ScheduledWorkflow controller's job, while localdsp is up.

A daemon thread looks at the jobs once a second (`Scheduler.tick` does one look, for tests). An
enabled job with a cron or periodic trigger starts a run when its next time has come, unless
`max_concurrency` of its runs are still in progress (it waits for a slot, as the controller
does). `no_catchup`: after a wait, skip the missed times and go on from now; without it, the
missed times are run one per tick. Times are counted from when the server (or the job's enabling)
first saw the job: schedules missed while the server was down are not caught up. `start_time`
and `end_time` bound the schedule. Cron is robfig/cron v1's (`runner.cron`, the controller's
library), evaluated in UTC, the controller's usual time zone. A cron that parses but never fires
(30 February: robfig gives up after five years) starts nothing; the real controller would fire it
at once or spin on it, and the runner refuses such schedules. One job's failure is logged and
never keeps the other jobs from firing.

A run a job starts references the job (`JOB`/`CREATOR`) and the job's experiment (`OWNER`), runs
the manifest the job pinned, and is named like the controller names its workflows:
`<job name, lower-cased, 25 characters><5 characters>-<index>-<fnv32a hash>` *(the 5 characters
stand in for the random suffix Kubernetes adds to the ScheduledWorkflow's generateName)*.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from localdsp.backend import IN_PROGRESS, Backend, Job, Reference, Run, StoreClosed
from localdsp.validation import swf_name
from runner import cron

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0


def fnv32a(text: str) -> int:
    h = 0x811C9DC5
    for byte in text.encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def job_run_name(job: Job, index: int) -> str:
    """`<swf name>-<index>-<fnv32a>`, as the ScheduledWorkflow controller names workflows."""
    resource = f"{swf_name(job.name, job.id)}-{index}"
    return f"{resource}-{fnv32a(resource)}"


# --------------------------------------------------------------------------- the loop


@dataclass(frozen=True)
class _Due:
    updated_at: int  # the job's, when this was computed: enabling/disabling starts afresh
    at: float  # the next time the job fires
    index: int  # runs started so far


class Scheduler:
    """Starts the runs of enabled recurring jobs; `start()`/`stop()` run `tick` every second."""

    def __init__(
        self,
        backend: Backend,
        clock: Callable[[], float] = time.time,
        poll: float = POLL_SECONDS,
    ):
        self.backend = backend
        self._clock = clock
        self._poll = poll
        self._due: dict[str, _Due] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Scheduler:
        self._thread = threading.Thread(target=self._loop, name="localdsp-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self._poll):
            try:
                self.tick()
            except StoreClosed:
                return
            except Exception:
                log.exception("localdsp: the scheduler failed a tick")

    def tick(self, now: float | None = None) -> list[str]:
        """Start the runs that are due now; returns their ids."""
        now = self._clock() if now is None else now
        started = []
        jobs = self.backend.store.all(Job)
        self._due = {k: v for k, v in self._due.items() if k in {j.id for j in jobs}}
        for job in jobs:
            if not job.enabled or job.trigger.kind not in ("cron", "periodic"):
                self._due.pop(job.id, None)
                continue
            try:
                run_id = self._tick_job(job, now)
            except StoreClosed:
                raise
            except Exception:
                log.exception("localdsp: the scheduler failed job %s", job.id)
                continue
            if run_id:
                started.append(run_id)
        return started

    def _tick_job(self, job: Job, now: float) -> str | None:
        trigger = job.trigger
        schedule = _schedule(job)
        if schedule is None:
            return None
        due = self._due.get(job.id)
        if due is None or due.updated_at != job.updated_at:
            base = max(now, float(trigger.start_time or 0))
            index = due.index if due is not None else self._count(job)
            # The first time after the server (or enabling) saw the job, as the controller
            # counts from the job's creation; periodic: one interval later.
            due = _Due(job.updated_at, _next(schedule, base), index)
            self._due[job.id] = due
        if due.at > now or (trigger.end_time and due.at > trigger.end_time):
            return None
        if self._active(job) >= job.max_concurrency:
            return None  # wait for a slot; the time stays due
        run = self._create_run(job, due.index + 1)
        following = _next(schedule, now if job.no_catchup else due.at)
        self._due[job.id] = replace(due, at=following, index=due.index + 1)
        return run

    def _create_run(self, job: Job, index: int) -> str:
        spec = replace(job.pipeline_spec, pipeline_id="", pipeline_name="")
        owners = [r for r in job.references if r.type == "EXPERIMENT" and r.relationship == "OWNER"]
        references = (*owners, Reference("JOB", job.id, "CREATOR", job.name))
        run = self.backend.create_run(
            name=job_run_name(job, index),
            description=job.description,
            pipeline_spec=spec,
            references=references,
            service_account=job.service_account,
        )
        return run.id

    def _runs_of(self, job: Job) -> list:
        return [r for r in self.backend.store.all(Run) if job.id in r.references_of("JOB")]

    def _active(self, job: Job) -> int:
        return sum(1 for r in self._runs_of(job) if r.status in IN_PROGRESS)

    def _count(self, job: Job) -> int:
        return len(self._runs_of(job))


def _schedule(job: Job) -> cron.Schedule | None:
    """The job's schedule; None for a cron the server would have refused (not created here)."""
    trigger = job.trigger
    if trigger.kind == "periodic":
        return cron.EverySchedule(max(1, trigger.interval_second))
    try:
        return cron.parse(trigger.cron)
    except cron.CronError:
        return None


def _next(schedule: cron.Schedule, after: float) -> float:
    """The next fire time; infinity for a date that never comes."""
    following = schedule.next(after)
    return math.inf if following is None else following
