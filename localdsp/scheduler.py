"""Recurring runs: the ScheduledWorkflow controller's job, while localdsp is up.

A daemon thread looks at the jobs once a second (`Scheduler.tick` does one look, for tests). An
enabled job with a cron or periodic trigger starts a run when its next time has come, unless
`max_concurrency` of its runs are still in progress (it waits for a slot, as the controller
does). `no_catchup`: after a wait, skip the missed times and go on from now; without it, the
missed times are run one per tick. Times are counted from when the server (or the job's enabling)
first saw the job: schedules missed while the server was down are not caught up. `start_time`
and `end_time` bound the schedule. Cron is robfig/cron's (seconds first, 5 or 6 fields, names,
`*`/`?`, lists, ranges, steps, `@hourly`-style descriptors, `@every 10s`), evaluated in UTC, the
controller's usual time zone.

A run a job starts references the job (`JOB`/`CREATOR`) and the job's experiment (`OWNER`), runs
the manifest the job pinned, and is named like the controller names its workflows:
`<job name, lower-cased, 25 characters><5 characters>-<index>-<fnv32a hash>` *(the 5 characters
stand in for the random suffix Kubernetes adds to the ScheduledWorkflow's generateName)*.
"""

from __future__ import annotations

import calendar
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from localdsp.backend import IN_PROGRESS, Backend, Job, Reference, Run, StoreClosed, check_cron

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
_FIELDS = (  # name, low, high, names
    ("second", 0, 59, ()),
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, tuple("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())),
    ("day of week", 0, 6, tuple("SUN MON TUE WED THU FRI SAT".split())),
)
_DESCRIPTORS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


# --------------------------------------------------------------------------- cron


@dataclass(frozen=True)
class Cron:
    """A parsed robfig/cron schedule: allowed values per field, or a fixed interval (@every)."""

    fields: tuple[frozenset[int], ...] = ()
    star_dom: bool = True
    star_dow: bool = True
    every: float = 0.0

    @classmethod
    def parse(cls, expression: str) -> Cron:
        """Parse like robfig/cron v1's Parse; raises ValueError with its message."""
        expression = expression.strip()
        if expression.startswith("@every"):
            text = expression[len("@every") :].strip()
            parts = _DURATION.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise ValueError(f"Failed to parse duration {expression}")
            return cls(every=max(1.0, float(sum(float(n) * _UNITS[u] for n, u in parts))))
        expression = _DESCRIPTORS.get(expression, expression)
        if expression.startswith("@"):
            raise ValueError(f"Unrecognized descriptor: {expression}")
        parts = expression.split()
        if not 5 <= len(parts) <= 6:
            raise ValueError(f"Expected 5 to 6 fields, found {len(parts)}: {expression}")
        parts += ["*"] * (6 - len(parts))
        sets = tuple(_field(p, *spec) for p, spec in zip(parts, _FIELDS, strict=True))
        return cls(sets, parts[3] in ("*", "?"), parts[5] in ("*", "?"))

    def next(self, after: float) -> float:
        """The first time strictly after `after` (epoch seconds) that the schedule fires."""
        if self.every:
            return after + self.every
        seconds, minutes, hours, days, months, weekdays = self.fields
        t = datetime.fromtimestamp(int(after) + 1, UTC)
        limit = t + timedelta(days=366 * 5)
        while t < limit:
            if t.month not in months:
                t = (t.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=0)
                t = t.replace(second=0)
            elif not self._day_matches(t, days, weekdays):
                t = (t + timedelta(days=1)).replace(hour=0, minute=0, second=0)
            elif t.hour not in hours:
                t = (t + timedelta(hours=1)).replace(minute=0, second=0)
            elif t.minute not in minutes:
                t = (t + timedelta(minutes=1)).replace(second=0)
            elif t.second not in seconds:
                t += timedelta(seconds=1)
            else:
                return float(calendar.timegm(t.timetuple()))
        raise ValueError("the schedule never fires")

    def _day_matches(self, t: datetime, days: frozenset[int], weekdays: frozenset[int]) -> bool:
        """robfig: with a `*` day of month or day of week both must match, else either."""
        dom, dow = t.day in days, (t.weekday() + 1) % 7 in weekdays
        return dom and dow if self.star_dom or self.star_dow else dom or dow


def _field(text: str, what: str, low: int, high: int, names: tuple[str, ...]) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        span, _, step_text = item.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else 0
        if step_text and not step:
            raise ValueError(f"Failed to parse int from {step_text}")
        if span in ("*", "?"):
            first, last = low, high
        else:
            bounds = [_number(b, what, low, high, names) for b in span.split("-", 1)]
            first = bounds[0]
            last = bounds[1] if len(bounds) == 2 else (high if step else first)
        if first > last:
            raise ValueError(f"Beginning of range ({first}) beyond end of range ({last}): {item}")
        values.update(range(first, last + 1, step or 1))
    return frozenset(values)


def _number(text: str, what: str, low: int, high: int, names: tuple[str, ...]) -> int:
    if text.upper() in names:
        return names.index(text.upper()) + low
    if not text.isdigit():
        raise ValueError(f"Failed to parse int from {text}")
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{what}: {value} out of range [{low}, {high}]")
    return value


def fnv32a(text: str) -> int:
    h = 0x811C9DC5
    for byte in text.encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def job_run_name(job: Job, index: int) -> str:
    """`<swf name>-<index>-<fnv32a>`, as the ScheduledWorkflow controller names workflows."""
    base = re.sub(r"[^a-z0-9-]+", "", job.name.lower())[:25] or "job"
    swf = f"{base}{job.id.replace('-', '')[:5]}"
    resource = f"{swf}-{index}"
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
            run_id = self._tick_job(job, now)
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
            due = _Due(job.updated_at, schedule.next(base), index)
            self._due[job.id] = due
        if due.at > now or (trigger.end_time and due.at > trigger.end_time):
            return None
        if self._active(job) >= job.max_concurrency:
            return None  # wait for a slot; the time stays due
        run = self._create_run(job, due.index + 1)
        following = schedule.next(now if job.no_catchup else due.at)
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


def _schedule(job: Job) -> Cron | None:
    trigger = job.trigger
    if trigger.kind == "periodic":
        return Cron(every=float(max(1, trigger.interval_second)))
    try:
        check_cron(trigger.cron)
        return Cron.parse(trigger.cron)
    except Exception:
        return None
