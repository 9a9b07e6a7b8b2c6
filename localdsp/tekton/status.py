"""What a PipelineRun and its TaskRuns look like to readers: outcomes, Tekton's words, durations.

The scheduler records outcomes here and `pipelinerun_with_status` renders them as the Tekton
v1beta1 `status` the DSP persistence agent would store as `pipeline_runtime.workflow_manifest`,
so localdsp, runner and the UI read a local run exactly as they read a cluster's. Kept apart from
the scheduling so that every reader of a status (and every plug-in) shares one vocabulary.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from localdsp.tekton.names import pod_name

__all__ = [
    "Execution",
    "SkippedTask",
    "StepOutcome",
    "TaskOutcome",
    "format_duration",
    "parse_duration",
    "pipelinerun_with_status",
]

SUCCESS_REASONS = frozenset({"Succeeded", "Completed"})

# TaskRun reasons (Tekton's).
RUNNING = "Running"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
SKIPPED = "Skipped"  # not a TaskRun reason: the task never got a TaskRun, see status.skippedTasks
TASKRUN_TIMEOUT = "TaskRunTimeout"
TASKRUN_CANCELLED = "TaskRunCancelled"
RESULTS_TOO_LARGE = "TaskRunResultLargerThanAllowedLimit"

# Skipping reasons (Tekton's SkippingReason strings).
WHEN_SKIP = "When Expressions evaluated to false"
PARENT_SKIP = "Parent Tasks were skipped"
MISSING_RESULTS_SKIP = "Results were missing"
STOPPING_SKIP = "PipelineRun was stopping"
PIPELINE_TIMEOUT_SKIP = "PipelineRun timeout has been reached"
TASKS_TIMEOUT_SKIP = "PipelineRun Tasks timeout has been reached"
FINALLY_TIMEOUT_SKIP = "PipelineRun Finally timeout has been reached"

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass
class StepOutcome:
    """One step's process: what it ran as, how it ended, where its output went."""

    name: str
    image: str
    log: Path
    reason: str = "Waiting"  # Completed | Error | Continued | TimeoutExceeded | Cancelled | Skipped
    exit_code: int | None = None
    started: datetime | None = None
    finished: datetime | None = None


@dataclass
class TaskOutcome:
    """A pipeline task: its TaskRun (or why it was skipped), results and logs."""

    name: str
    taskrun: str
    reason: str  # Running | Succeeded | Failed | TaskRunTimeout | TaskRunCancelled | ... | Skipped
    message: str = ""
    results: dict[str, str] = field(default_factory=dict)
    log_dir: Path | None = None
    steps: list[StepOutcome] = field(default_factory=list)
    started: datetime | None = None
    finished: datetime | None = None
    is_finally: bool = False
    when: list[dict] = field(default_factory=list)
    retries: list[TaskOutcome] = field(default_factory=list)  # earlier attempts, oldest first
    kind: str = "TaskRun"  # "Run" for a custom task, which its plug-in runs
    run_cancelled: bool = False  # a Run that its controller ended because it was cancelled
    extra_fields: dict = field(default_factory=dict)  # a Run's status.extraFields

    @property
    def status(self) -> str:
        """The TaskRun condition status: Unknown while running, True on success, else False."""
        if self.reason == RUNNING:
            return "Unknown"
        return "True" if self.reason == SUCCEEDED else "False"

    @property
    def cancelled(self) -> bool:
        """Ended by a cancellation (a TaskRun's reason says so; a Run's controller names it)."""
        return self.reason == TASKRUN_CANCELLED or self.run_cancelled

    @property
    def failed(self) -> bool:
        return self.reason not in (RUNNING, SUCCEEDED, SKIPPED) and not self.cancelled

    @property
    def logs(self) -> dict[str, Path]:
        """Step name → log file, for the steps that started."""
        return {s.name: s.log for s in self.steps if s.started is not None}


@dataclass(frozen=True)
class SkippedTask:
    name: str
    reason: str
    when: tuple[dict, ...] = ()


@dataclass
class Execution:
    """A PipelineRun's outcome so far (finished is None while it runs) or at its end."""

    name: str
    uid: str
    reason: str
    message: str
    started: datetime
    finished: datetime | None = None
    tasks: dict[str, TaskOutcome] = field(default_factory=dict)
    images: list[str] = field(default_factory=list)
    pipeline_results: dict[str, str] = field(default_factory=dict)
    finally_started: datetime | None = None

    @property
    def status(self) -> str:
        """The condition status Tekton reports: Unknown, True or False."""
        if self.finished is None:
            return "Unknown"
        return "True" if self.reason in SUCCESS_REASONS else "False"

    @property
    def succeeded(self) -> bool:
        """DSP treats Completed (some tasks skipped) as success too."""
        return self.finished is not None and self.reason in SUCCESS_REASONS

    @property
    def skipped(self) -> list[SkippedTask]:
        return [
            SkippedTask(t.name, t.message, tuple(t.when))
            for t in self.tasks.values()
            if t.reason == SKIPPED
        ]


def live_status_file(workdir: Path) -> Path:
    """Where the scheduler keeps the live PipelineRun (with its status) as JSON: what a program
    that watches the PipelineRun through the API server reads here (the any-sequencer)."""
    return workdir / "_pipelinerun.json"


def write_live_status(workdir: Path, live: dict) -> None:
    """Replace the live PipelineRun file at once, so a reader never sees half of it."""
    target = live_status_file(workdir)
    partial = target.with_suffix(".partial")
    partial.write_text(json.dumps(live))
    partial.replace(target)


def pipelinerun_with_status(pipelinerun: dict, execution_or_progress: Execution) -> dict:
    """The PipelineRun as Tekton would show it now: a copy with a v1beta1 `status`.

    Full embedded status (taskRuns) plus childReferences, so readers of either shape work.
    """
    execution = execution_or_progress
    run = copy.deepcopy(pipelinerun)
    metadata = run.setdefault("metadata", {})
    metadata["name"] = execution.name
    metadata["uid"] = execution.uid
    changed = execution.finished or execution.started
    status: dict = {
        "conditions": [_condition(execution.status, execution.reason, execution.message, changed)],
        "startTime": timestamp(execution.started),
    }
    if execution.finished is not None:
        status["completionTime"] = timestamp(execution.finished)
    pipeline_spec = (run.get("spec") or {}).get("pipelineSpec")
    if pipeline_spec is not None:
        status["pipelineSpec"] = copy.deepcopy(pipeline_spec)
    ran = [t for t in execution.tasks.values() if t.reason != SKIPPED]
    status["taskRuns"] = {
        t.taskrun: _pipeline_taskrun_status(t) for t in ran if t.kind == "TaskRun"
    }
    runs = {t.taskrun: _pipeline_taskrun_status(t) for t in ran if t.kind == "Run"}
    if runs:
        status["runs"] = runs
    status["childReferences"] = [_child_reference(t) for t in ran]
    if execution.skipped:
        status["skippedTasks"] = [_skipped_task_status(s) for s in execution.skipped]
    if execution.pipeline_results:
        status["pipelineResults"] = [
            {"name": k, "value": v} for k, v in execution.pipeline_results.items()
        ]
    if execution.finally_started is not None:
        status["finallyStartTime"] = timestamp(execution.finally_started)
    run["status"] = status
    return run


def _condition(status: str, reason: str, message: str, changed: datetime) -> dict:
    return {
        "type": "Succeeded",
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": timestamp(changed),
    }


def _pipeline_taskrun_status(task: TaskOutcome) -> dict:
    entry = {"pipelineTaskName": task.name, "status": _taskrun_status(task)}
    if task.when:
        entry["whenExpressions"] = copy.deepcopy(task.when)
    return entry


def _taskrun_status(task: TaskOutcome) -> dict:
    if task.kind == "Run":
        return _run_status(task)
    changed = task.finished or task.started or now()
    status: dict = {
        "conditions": [_condition(task.status, task.reason, task.message, changed)],
        "podName": pod_name(task.taskrun, len(task.retries)),
        "steps": [_step_status(s) for s in task.steps],
    }
    if task.started is not None:
        status["startTime"] = timestamp(task.started)
    if task.finished is not None:
        status["completionTime"] = timestamp(task.finished)
    if task.results:
        status["taskResults"] = [
            {"name": k, "type": "string", "value": v} for k, v in task.results.items()
        ]
    if task.retries:
        status["retriesStatus"] = [_taskrun_status(r) for r in task.retries]
    return status


def _run_status(task: TaskOutcome) -> dict:
    """A custom task's Run status (tekton.dev/v1alpha1): no pod or steps; results and the
    controller's own extraFields."""
    changed = task.finished or task.started or now()
    status: dict = {"conditions": [_condition(task.status, task.reason, task.message, changed)]}
    if task.started is not None:
        status["startTime"] = timestamp(task.started)
    if task.finished is not None:
        status["completionTime"] = timestamp(task.finished)
    if task.results:
        status["results"] = [{"name": k, "value": v} for k, v in task.results.items()]
    if task.retries:
        status["retriesStatus"] = [_run_status(r) for r in task.retries]
    if task.extra_fields:
        status["extraFields"] = copy.deepcopy(task.extra_fields)
    return status


def _step_status(step: StepOutcome) -> dict:
    entry: dict = {"name": step.name, "container": f"step-{step.name}", "imageID": step.image}
    if step.exit_code is not None:
        entry["terminated"] = {
            "exitCode": step.exit_code,
            "reason": step.reason,
            "startedAt": timestamp(step.started or step.finished),
            "finishedAt": timestamp(step.finished or step.started),
        }
    elif step.started is not None:
        entry["running"] = {"startedAt": timestamp(step.started)}
    else:
        entry["waiting"] = {"reason": "PodInitializing"}
    return entry


def _child_reference(task: TaskOutcome) -> dict:
    ref = {
        "apiVersion": "tekton.dev/v1beta1" if task.kind == "TaskRun" else "tekton.dev/v1alpha1",
        "kind": task.kind,
        "name": task.taskrun,
        "pipelineTaskName": task.name,
    }
    if task.when:
        ref["whenExpressions"] = copy.deepcopy(task.when)
    return ref


def _skipped_task_status(skipped: SkippedTask) -> dict:
    entry: dict = {"name": skipped.name, "reason": skipped.reason}
    if skipped.when:
        entry["whenExpressions"] = [copy.deepcopy(w) for w in skipped.when]
    return entry


def now() -> datetime:
    return datetime.now(UTC)


def timestamp(moment: datetime | None) -> str:
    return (moment or now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_duration(text: object) -> float:
    """Seconds in a Go duration ("1h0m0s", "90s", "0"), the format of Tekton's timeouts."""
    value = str(text).strip()
    if value == "0":
        return 0.0
    total, position = 0.0, 0
    for match in _DURATION_PART.finditer(value):
        if match.start() != position:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position == 0 or position != len(value):
        raise ValueError(f"not a Go duration: {value!r}")
    return total


def format_duration(seconds: float) -> str:
    """A Go-style duration ("1h0m0s"), so messages read like Tekton's."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms" if seconds else "0s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    secs_text = f"{secs:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{int(hours)}h{int(minutes)}m{secs_text}"
    return f"{int(minutes)}m{secs_text}" if minutes else secs_text
