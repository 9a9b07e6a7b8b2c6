"""Carry a plan out on the server, each failure kept to its pipeline.

Pipelines are applied by a bounded thread pool (server calls are mostly waiting), but each
pipeline's log lines are recorded by its worker and emitted in pipeline order, so the log reads
the same whatever the timing. Errors that concern the whole job (the token is refused, TLS
fails) stop everything: going on would only repeat them once per pipeline.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import structlog

from runner import plan as planning
from runner import schedules, stopping
from runner.errors import AuthError, ConfigurationError, ExperimentGone, RunnerError, TLSError
from runner.server import Server, settle_duplicate_runs

logger = structlog.get_logger()
T = TypeVar("T")
UPLOADS = (planning.CREATE, planning.NEW_VERSION)


@dataclasses.dataclass
class Outcome:
    """What happened to one pipeline; the report is made of these."""

    pipeline: str
    source: str
    action: str
    version_name: str
    pipeline_id: str = ""
    version_id: str = ""
    run_name: str = ""
    run_id: str = ""
    run_status: str = ""
    run_started: bool = False
    run_outcome: str = ""
    run_duration_s: float | None = None
    run_url: str = ""
    run_outputs: dict = dataclasses.field(default_factory=dict)
    schedules: list[str] = dataclasses.field(default_factory=list)
    error: str = ""


class Experiments:
    """Experiment ids by name, looked up or created on first need, once per job."""

    def __init__(self, client: Server, description: str):
        self._client, self._description = client, description
        self._ids: dict[str, str] = {}
        self._lock = threading.Lock()

    def id(self, name: str) -> str:
        with self._lock:
            if name not in self._ids:
                self._ids[name] = self._client.ensure_experiment(name, self._description)
                logger.info("experiment_ready", experiment=name, experiment_id=self._ids[name])
            return self._ids[name]

    def within(self, name: str, create: Callable[[str], T]) -> T:
        """`create(experiment_id)`; if a user deleted the experiment (before this job or while
        it runs), the server refuses it for good: look the experiment up or create it again,
        once, and create in that one."""
        experiment_id = self.id(name)
        try:
            return create(experiment_id)
        except ExperimentGone:
            with self._lock:
                if self._ids.get(name) == experiment_id:
                    del self._ids[name]
            logger.warning("experiment_deleted", experiment=name, experiment_id=experiment_id)
            return create(self.id(name))


class Recorder:
    """A pipeline's log, kept by its worker thread and emitted later in pipeline order."""

    def __init__(self, **context):
        self._context = context
        self._events: list[tuple[str, str, dict]] = []

    def info(self, event: str, **fields) -> None:
        self._events.append(("info", event, fields))

    def warning(self, event: str, **fields) -> None:
        self._events.append(("warning", event, fields))

    def error(self, event: str, **fields) -> None:
        self._events.append(("error", event, fields))

    def emit(self) -> None:
        for level, event, fields in self._events:
            getattr(logger, level)(event, **self._context, **fields)


def apply(
    plans: list[planning.PipelinePlan],
    *,
    client: Server,
    packages: dict[str, Path],
    experiments: Experiments,
    concurrency: int,
) -> tuple[list[Outcome], RunnerError | None]:
    """Upload what changed and start the planned runs: one outcome per pipeline, and the error
    that halted the job, if one did (the caller reports the outcomes, then raises it)."""
    halt = _Halt()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = [
            pool.submit(_apply_one, p, client, packages.get(p.pipeline.slug), experiments, halt)
            for p in plans
        ]
        outcomes = []
        for future in futures:
            outcome, log = future.result()
            log.emit()
            outcomes.append(outcome)
    if halt.error is None:
        _check_defaults(client, outcomes)
        settle_runs(client, experiments, [(o, p.run) for o, p in zip(outcomes, plans, strict=True)])
    return outcomes, halt.error


def _check_defaults(client: Server, outcomes: list[Outcome]) -> None:
    """A new version becomes the default on servers that auto-update it (DSP's default); one
    listing afterwards finds the pipelines of a server that does not, and sets them. A server
    without default versions (DSP 2.x) is not asked: listing it would cost a request per
    pipeline and could set nothing."""
    uploaded = {o.pipeline_id: o for o in outcomes if o.version_id and o.action in UPLOADS}
    if not uploaded or not client.default_versions:
        return
    for pipeline in client.list_pipelines():
        outcome = uploaded.get(pipeline.id)
        default = pipeline.default_version
        if outcome and (default is None or default.id != outcome.version_id):
            if client.set_default_version(pipeline.id, outcome.version_id):
                logger.info(
                    "default_version_set", pipeline=outcome.pipeline, version_id=outcome.version_id
                )


def settle_runs(client: Server, experiments: Experiments, started) -> None:
    """One listing per experiment finds runs a racing runner started under the same names."""
    by_experiment: dict[str, list[Outcome]] = {}
    for outcome, run in started:
        if outcome.run_started:
            by_experiment.setdefault(run.experiment, []).append(outcome)
    for experiment, outcomes in by_experiment.items():
        try:
            keepers = settle_duplicate_runs(
                client, experiments.id(experiment), [o.run_name for o in outcomes]
            )
        except (AuthError, TLSError):
            raise
        except RunnerError as exc:
            logger.warning("duplicate_run_check_failed", experiment=experiment, error=str(exc))
            continue
        for outcome in outcomes:
            if outcome.run_name in keepers:
                outcome.run_id = keepers[outcome.run_name].id


class _Halt:
    """The first whole-job error (token refused, TLS): no pipeline starts after it."""

    def __init__(self):
        self.error: RunnerError | None = None
        self._lock = threading.Lock()

    def set(self, error: RunnerError) -> None:
        with self._lock:
            self.error = self.error or error

    def reason(self) -> str:
        if stopping.requested():
            return "the job was asked to stop (SIGTERM)"
        return f"the job halted: {self.error}" if self.error else ""


def _apply_one(
    item: planning.PipelinePlan,
    client: Server,
    package: Path,
    experiments: Experiments,
    halt: _Halt,
) -> tuple[Outcome, Recorder]:
    pipeline = item.pipeline
    outcome = Outcome(
        pipeline=pipeline.name,
        source=str(pipeline.source),
        action=item.action,
        version_name=item.version_name,
    )
    log = Recorder(pipeline=pipeline.name, version=item.version_name)
    if halt.reason():
        outcome.error = f"not started: {halt.reason()}"
        log.warning("pipeline_skipped", reason=outcome.error)
        return outcome, log
    if item.error:
        outcome.error = item.error
        log.error("pipeline_rejected", error=item.error)
        return outcome, log
    with structlog.contextvars.bound_contextvars(pipeline=pipeline.name):
        try:
            with contained(outcome, log):
                _ship_version(item, client, package, outcome, log)
                if item.run is not None and not _halted(halt, log, "start run"):
                    start_run(client, experiments, outcome, item.run, log)
                if item.schedule_changes and not _halted(halt, log, "reconcile schedules"):
                    _reconcile_schedules(item, client, experiments, outcome, log)
        except (AuthError, TLSError, ConfigurationError) as exc:
            outcome.error = str(exc)
            halt.set(exc)
            log.error("job_halted", error=str(exc))
    return outcome, log


def _halted(halt: _Halt, log, step: str) -> bool:
    """Checked before each step that starts something new."""
    if halt.reason():
        log.warning("step_skipped", step=step, reason=halt.reason())
        return True
    return False


def _reconcile_schedules(item, client, experiments: Experiments, outcome: Outcome, log) -> None:
    done = experiments.within(
        item.options.experiment,
        lambda experiment_id: schedules.reconcile(
            client,
            experiment_id=experiment_id,
            pipeline_id=outcome.pipeline_id,
            version_id=outcome.version_id,
            want=list(item.jobs_wanted),
            owned=list(item.jobs_owned),
            log=log,
        ),
    )
    outcome.schedules = done.describe()


@contextlib.contextmanager
def contained(outcome: Outcome, log):
    """Keep a pipeline's failure to its outcome; whole-job failures propagate."""
    try:
        yield
    except (AuthError, TLSError, ConfigurationError):
        raise
    except RunnerError as exc:
        outcome.error = str(exc)
        log.error("pipeline_failed", error=str(exc))


def _ship_version(item, client: Server, package: Path, outcome: Outcome, log) -> None:
    pipeline = item.pipeline
    if item.action == planning.CREATE:
        created = client.upload_pipeline(package, pipeline.name, pipeline.description)
        log.info("pipeline_created", pipeline_id=created.id)
        item = dataclasses.replace(item, server_pipeline=created)
    outcome.pipeline_id = item.server_pipeline.id
    if item.action in (planning.CREATE, planning.NEW_VERSION):
        version = client.upload_version(
            package,
            outcome.pipeline_id,
            item.version_name,
            item.version_description,
            pipeline_name=pipeline.name,
        )
        outcome.version_id = version.id
        log.info(
            "pipeline_version_uploaded", pipeline_id=outcome.pipeline_id, version_id=version.id
        )
        return
    outcome.version_id = item.existing_version.id
    if item.action == planning.SET_DEFAULT:
        made_default = client.set_default_version(outcome.pipeline_id, outcome.version_id)
        log.info(
            "pipeline_version_reused",
            version_id=outcome.version_id,
            reason="the server already holds this content; made it the default version"
            if made_default
            else "the server already holds this content; runs and schedules name it (DSP 2.x "
            "has no default version)",
        )
    else:
        log.info(
            "pipeline_unchanged",
            version_id=outcome.version_id,
            reason="the default version already has this content; nothing uploaded",
        )


def start_run(
    client: Server, experiments: Experiments, outcome: Outcome, run: planning.RunPlan, log
) -> None:
    """Start the planned run unless it exists; either way the outcome names it."""
    outcome.run_name = run.name
    if run.existing_id:
        outcome.run_id = run.existing_id
        log.info(
            "run_exists",
            run=run.name,
            run_id=run.existing_id,
            reason="a run of this version with this key already exists",
        )
        return
    started = experiments.within(
        run.experiment,
        lambda experiment_id: client.start_run(
            experiment_id=experiment_id,
            name=run.name,
            pipeline_id=outcome.pipeline_id,
            version_id=outcome.version_id,
            params=run.params,
        ),
    )
    outcome.run_id, outcome.run_status, outcome.run_started = started.id, started.status, True
    log.info("run_started", run=started.name, run_id=started.id, params=run.params)
