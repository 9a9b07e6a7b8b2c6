"""Execute a kfp-tekton PipelineRun on this machine, its steps as local subprocesses.

localdsp has no cluster, yet a created run should really run: this module reads the PipelineRun
that kfp_tekton compiled, schedules its tasks the way the Tekton controller would (dependencies,
`when` expressions, `finally`, retries, timeouts, cancellation) and runs each step's
command with the local Python instead of pulling its container image. It reports progress and the
end as the PipelineRun with a Tekton v1beta1 `status`, which is what the DSP persistence agent
would store as `pipeline_runtime.workflow_manifest`.

What cannot be emulated faithfully (Task references, custom tasks such as PipelineLoop, sidecars,
volumes, secrets) fails the run with a message naming the feature, never a silent success.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

__all__ = [
    "Execution",
    "SkippedTask",
    "StepOutcome",
    "TaskOutcome",
    "execute",
    "format_duration",
    "parse_duration",
    "pipelinerun_with_status",
]

log = logging.getLogger(__name__)

RESULTS_LIMIT = 4096  # bytes; Tekton's termination-message budget for all results of a TaskRun
DEFAULT_PIPELINE_TIMEOUT = 3600.0  # Tekton's default-timeout-minutes when the run sets none
SUCCESS_REASONS = frozenset({"Succeeded", "Completed"})
KILL_GRACE = 1.0  # seconds between SIGTERM and SIGKILL, like a (short) pod termination grace
STEP_POLL = 0.02
SCHEDULER_POLL = 0.05
STEP_TIMEOUT = "step-timeout"
TASK_TIMEOUT = "task-timeout"

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

# Fields read from the manifest; anything else changes behaviour in ways not emulated here.
_RUN_SPEC_KEYS = {"params", "pipelineSpec", "timeout", "timeouts", "workspaces", "status"}
_RUN_SPEC_IGNORED = {
    "serviceAccountName",
    "serviceAccountNames",
    "podTemplate",
    "taskRunSpecs",
    "taskRunTemplate",
}
_PIPELINE_KEYS = {
    "params",
    "tasks",
    "finally",
    "workspaces",
    "results",
    "description",
    "displayName",
}
_TASK_KEYS = {
    "name",
    "taskSpec",
    "taskRef",
    "params",
    "runAfter",
    "when",
    "timeout",
    "retries",
    "workspaces",
    "displayName",
    "description",
}
_TASK_SPEC_KEYS = {
    "steps",
    "params",
    "results",
    "metadata",
    "description",
    "displayName",
    "workspaces",
    "stepTemplate",
    "volumes",
    "sidecars",
}
_STEP_KEYS = {
    "name",
    "image",
    "command",
    "args",
    "script",
    "env",
    "workingDir",
    "onError",
    "timeout",
    "volumeMounts",
    "envFrom",
    "volumeDevices",
}
_STEP_IGNORED = {
    "resources",
    "computeResources",
    "imagePullPolicy",
    "securityContext",
    "ports",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
    "stdin",
    "stdinOnce",
    "tty",
}
_LOCAL_WORKSPACES = ("emptyDir", "volumeClaimTemplate")
_CANCEL_STATUSES = ("Cancelled", "PipelineRunCancelled", "CancelledRunFinally", "StoppedRunFinally")

_REF = re.compile(
    r"\$\((?P<root>params|inputs|outputs|tasks|results|context|workspaces|steps|resources"
    r"|credentials)(?P<rest>(?:\.[\w-]+|\[(?:'[^']*'|\"[^\"]*\"|\*|\d+)\])+)\)"
)
_REF_PART = re.compile(r"\.([\w-]+)|\['([^']*)'\]|\[\"([^\"]*)\"\]|\[(\*|\d+)\]")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PYTHON = re.compile(r"python(\d+(\.\d+)?)?")
_FIELD_REF = re.compile(r"metadata\.(labels|annotations)\['([^']+)'\]")


# --------------------------------------------------------------------------- results and status


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

    @property
    def status(self) -> str:
        """The TaskRun condition status: Unknown while running, True on success, else False."""
        if self.reason == RUNNING:
            return "Unknown"
        return "True" if self.reason == SUCCEEDED else "False"

    @property
    def failed(self) -> bool:
        return self.reason not in (RUNNING, SUCCEEDED, SKIPPED, TASKRUN_CANCELLED)

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
        "startTime": _timestamp(execution.started),
    }
    if execution.finished is not None:
        status["completionTime"] = _timestamp(execution.finished)
    pipeline_spec = (run.get("spec") or {}).get("pipelineSpec")
    if pipeline_spec is not None:
        status["pipelineSpec"] = copy.deepcopy(pipeline_spec)
    ran = [t for t in execution.tasks.values() if t.reason != SKIPPED]
    status["taskRuns"] = {t.taskrun: _pipeline_taskrun_status(t) for t in ran}
    status["childReferences"] = [_child_reference(t) for t in ran]
    if execution.skipped:
        status["skippedTasks"] = [_skipped_task_status(s) for s in execution.skipped]
    if execution.pipeline_results:
        status["pipelineResults"] = [
            {"name": k, "value": v} for k, v in execution.pipeline_results.items()
        ]
    if execution.finally_started is not None:
        status["finallyStartTime"] = _timestamp(execution.finally_started)
    run["status"] = status
    return run


def _condition(status: str, reason: str, message: str, changed: datetime) -> dict:
    return {
        "type": "Succeeded",
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": _timestamp(changed),
    }


def _pipeline_taskrun_status(task: TaskOutcome) -> dict:
    entry = {"pipelineTaskName": task.name, "status": _taskrun_status(task)}
    if task.when:
        entry["whenExpressions"] = copy.deepcopy(task.when)
    return entry


def _taskrun_status(task: TaskOutcome) -> dict:
    changed = task.finished or task.started or _now()
    status: dict = {
        "conditions": [_condition(task.status, task.reason, task.message, changed)],
        "podName": f"{task.taskrun}-pod",
        "steps": [_step_status(s) for s in task.steps],
    }
    if task.started is not None:
        status["startTime"] = _timestamp(task.started)
    if task.finished is not None:
        status["completionTime"] = _timestamp(task.finished)
    if task.results:
        status["taskResults"] = [
            {"name": k, "type": "string", "value": v} for k, v in task.results.items()
        ]
    if task.retries:
        status["retriesStatus"] = [_taskrun_status(r) for r in task.retries]
    return status


def _step_status(step: StepOutcome) -> dict:
    entry: dict = {"name": step.name, "container": f"step-{step.name}", "imageID": step.image}
    if step.exit_code is not None:
        entry["terminated"] = {
            "exitCode": step.exit_code,
            "reason": step.reason,
            "startedAt": _timestamp(step.started or step.finished),
            "finishedAt": _timestamp(step.finished or step.started),
        }
    elif step.started is not None:
        entry["running"] = {"startedAt": _timestamp(step.started)}
    else:
        entry["waiting"] = {"reason": "PodInitializing"}
    return entry


def _child_reference(task: TaskOutcome) -> dict:
    ref = {
        "apiVersion": "tekton.dev/v1beta1",
        "kind": "TaskRun",
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


def _now() -> datetime:
    return datetime.now(UTC)


def _timestamp(moment: datetime | None) -> str:
    return (moment or _now()).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- durations


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


# --------------------------------------------------------------------------- substitution


class Unresolved(Exception):
    """Tekton `$(...)` references with no value; Tekton rejects the run for these."""

    def __init__(self, references: list[str]):
        super().__init__(", ".join(references))
        self.references = references


def _ref_key(match: re.Match) -> tuple[str, ...]:
    """`$(inputs.params['a'])` → ("params", "a"): one key whatever the spelling."""
    parts = [match.group("root")]
    for part in _REF_PART.finditer(match.group("rest")):
        index = part.group(4)
        parts.append(f"[{index}]" if index else part.group(1) or part.group(2) or part.group(3))
    if parts[:2] == ["inputs", "params"]:
        parts = parts[1:]
    return tuple(parts)


def substitute(text: str, values: Mapping[tuple[str, ...], str]) -> str:
    """Replace Tekton's `$(...)` variables in one pass, like Tekton does.

    Only Tekton's own roots (params, tasks, results, context, ...) are variables; shell syntax
    such as kfp's `$(mktemp)` or `"$@"` is left alone. Unknown variables raise Unresolved.
    """
    missing: list[str] = []

    def replace_one(match: re.Match) -> str:
        value = values.get(_ref_key(match))
        if value is None:
            missing.append(match.group(0))
            return match.group(0)
        return value

    result = _REF.sub(replace_one, text)
    if missing:
        raise Unresolved(missing)
    return result


def _result_refs(texts: Iterable[str]) -> set[tuple[str, str]]:
    """(task, result) pairs a pipeline task reads: these order it after the producer."""
    refs = set()
    for text in texts:
        for match in _REF.finditer(text):
            key = _ref_key(match)
            if len(key) >= 4 and key[0] == "tasks" and key[2] == "results":
                refs.add((key[1], key[3]))
    return refs


# --------------------------------------------------------------------------- the plan


class RunError(Exception):
    """Why Tekton would reject or fail the run as a whole; reason is Tekton's reason string."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class _Task:
    name: str
    spec: dict  # the PipelineTask
    task_spec: dict
    is_finally: bool
    deps: frozenset[str]  # runAfter plus the producers of results it reads
    result_refs: frozenset[tuple[str, str]]
    timeout: float  # seconds, 0 = none
    retries: int


@dataclass(frozen=True)
class _Timeouts:
    pipeline: float  # seconds, 0 = none
    tasks: float
    finally_: float


@dataclass(frozen=True)
class _Identity:
    name: str
    uid: str
    namespace: str


@dataclass
class _Plan:
    run: _Identity
    labels: dict[str, str]
    annotations: dict[str, str]
    service_account: str
    params: dict[str, str]
    tasks: dict[str, _Task]
    dag: list[str]
    final: list[str]
    workspaces: dict[str, str]  # pipeline workspace → binding kind (emptyDir | volumeClaimTemplate)
    timeouts: _Timeouts
    workdir: Path
    results: list[dict]  # pipelineSpec.results

    def taskrun(self, task: str) -> str:
        return f"{self.run.name}-{task}"

    def task_dir(self, task: str) -> Path:
        return self.workdir / task


def _identity(pipelinerun: dict) -> _Identity:
    """Name, uid and namespace; a generateName gets a random suffix as the API server would."""
    metadata = pipelinerun.get("metadata") or {}
    name = metadata.get("name") or f"{metadata.get('generateName') or 'run-'}{uuid.uuid4().hex[:5]}"
    return _Identity(
        name=str(name),
        uid=str(metadata.get("uid") or uuid.uuid4()),
        namespace=str(metadata.get("namespace") or "default"),
    )


def _plan(
    pipelinerun: dict,
    identity: _Identity,
    workdir: Path,
    params: Mapping[str, object] | None,
    timeout: float | None,
) -> _Plan:
    """Check the PipelineRun and turn it into what the scheduler runs; RunError when Tekton
    (or this executor) would not run it."""
    spec = _checked_run_spec(pipelinerun)
    if spec.get("status") in _CANCEL_STATUSES:
        raise RunError("Cancelled", f'PipelineRun "{identity.name}" was cancelled')
    if spec.get("status"):
        raise RunError(
            "PipelineValidationFailed",
            f"spec.status {spec['status']!r} is not supported by the local executor",
        )
    pipeline_spec = spec.get("pipelineSpec")
    if not isinstance(pipeline_spec, dict):
        raise RunError("CouldntGetPipeline", "PipelineRun has no embedded spec.pipelineSpec")
    _check_keys(pipeline_spec, _PIPELINE_KEYS, set(), "spec.pipelineSpec")
    metadata = pipelinerun.get("metadata") or {}
    dag = [_task(raw, is_finally=False) for raw in pipeline_spec.get("tasks") or []]
    final = [_task(raw, is_finally=True) for raw in pipeline_spec.get("finally") or []]
    tasks = {t.name: t for t in [*dag, *final]}
    if len(tasks) != len(dag) + len(final):
        raise RunError("PipelineValidationFailed", "pipeline task names are not unique")
    _check_graph(dag)
    plan = _Plan(
        run=identity,
        labels={str(k): str(v) for k, v in (metadata.get("labels") or {}).items()},
        annotations={str(k): str(v) for k, v in (metadata.get("annotations") or {}).items()},
        service_account=str(spec.get("serviceAccountName") or "default"),
        params=_run_params(spec, pipeline_spec, params, identity.name),
        tasks=tasks,
        dag=[t.name for t in dag],
        final=[t.name for t in final],
        workspaces=_workspace_bindings(spec, pipeline_spec),
        timeouts=_timeouts(spec, timeout),
        workdir=workdir,
        results=list(pipeline_spec.get("results") or []),
    )
    _dry_run(plan)
    return plan


def _checked_run_spec(pipelinerun: dict) -> dict:
    if not isinstance(pipelinerun, dict) or pipelinerun.get("kind") != "PipelineRun":
        raise RunError("PipelineValidationFailed", "not a Tekton PipelineRun")
    if pipelinerun.get("apiVersion") not in ("tekton.dev/v1beta1", "tekton.dev/v1"):
        raise RunError(
            "PipelineValidationFailed", f"unsupported apiVersion {pipelinerun.get('apiVersion')!r}"
        )
    spec = pipelinerun.get("spec") or {}
    if spec.get("pipelineRef"):
        raise RunError(
            "CouldntGetPipeline",
            "spec.pipelineRef is not supported by the local "
            "executor: it needs the pipeline embedded as spec.pipelineSpec",
        )
    if spec.get("resources"):
        raise RunError(
            "PipelineValidationFailed",
            "PipelineResources (spec.resources) are not supported by the local executor",
        )
    _check_keys(spec, _RUN_SPEC_KEYS, _RUN_SPEC_IGNORED | {"pipelineRef", "resources"}, "spec")
    return spec


def _check_keys(obj: dict, known: set[str], ignored: set[str], where: str) -> None:
    """Fail on fields this executor does not act on, so a run never silently differs."""
    unknown = sorted(k for k in obj if k not in known and k not in ignored)
    if unknown:
        raise RunError(
            "PipelineValidationFailed",
            f"{where} uses {', '.join(unknown)}, not supported by the local executor",
        )


def _run_params(
    spec: dict, pipeline_spec: dict, overrides: Mapping[str, object] | None, run_name: str
) -> dict[str, str]:
    """Pipeline defaults, then the run's spec.params, then the caller's values."""
    declared: dict[str, str | None] = {}
    for param in pipeline_spec.get("params") or []:
        _check_string_param(param, "pipeline")
        default = param.get("default")
        declared[param["name"]] = None if default is None else _param_text(default, param["name"])
    given = {p["name"]: p.get("value") for p in spec.get("params") or []}
    given.update(overrides or {})
    values = {}
    for name, default in declared.items():
        value = _param_text(given[name], name) if name in given else default
        if value is not None:
            values[name] = value
    missing = sorted(set(declared) - set(values))
    if missing:
        raise RunError(
            "ParameterMissing",
            f'PipelineRun "{run_name}" is missing parameters '
            f"required by its pipeline: {', '.join(missing)}",
        )
    return values


def _check_string_param(param: dict, where: str) -> None:
    if not param.get("name"):
        raise RunError("PipelineValidationFailed", f"a {where} parameter has no name")
    if param.get("type", "string") != "string":
        raise RunError(
            "PipelineValidationFailed",
            f'{where} parameter "{param["name"]}" is of type {param["type"]}; only '
            "string parameters are supported by the local executor",
        )


def _param_text(value: object, name: str) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str | int | float):
        return str(value)
    raise RunError("ParameterTypeMismatch", f'parameter "{name}" is not a string: {value!r}')


def _timeouts(spec: dict, limit: float | None) -> _Timeouts:
    """spec.timeouts (or the older spec.timeout), Tekton's 1h default, capped by `limit`."""
    timeouts = spec.get("timeouts") or {}
    try:
        given = timeouts.get("pipeline", spec.get("timeout"))
        pipeline = DEFAULT_PIPELINE_TIMEOUT if given is None else parse_duration(given)
        tasks = parse_duration(timeouts.get("tasks", "0"))
        finally_ = parse_duration(timeouts.get("finally", "0"))
    except ValueError as err:
        raise RunError("PipelineValidationFailed", f"bad timeout: {err}") from err
    if limit:
        pipeline = min(pipeline, limit) if pipeline else limit
    return _Timeouts(pipeline=pipeline, tasks=tasks, finally_=finally_)


def _workspace_bindings(spec: dict, pipeline_spec: dict) -> dict[str, str]:
    """Pipeline workspace → local kind. Folders stand in for emptyDir and volumeClaimTemplate;
    real volumes (PVCs, ConfigMaps, Secrets) do not exist here."""
    bindings = {b.get("name"): b for b in spec.get("workspaces") or []}
    kinds = {}
    for declared in pipeline_spec.get("workspaces") or []:
        name = declared.get("name")
        binding = bindings.get(name)
        if binding is None:
            if not declared.get("optional"):
                raise RunError(
                    "InvalidWorkspaceBindings",
                    f'pipeline workspace "{name}" is not bound by the PipelineRun',
                )
            continue
        kind = next((k for k in binding if k not in ("name", "subPath")), "")
        if kind not in _LOCAL_WORKSPACES:
            raise RunError(
                "InvalidWorkspaceBindings",
                f'workspace "{name}" is bound with {kind or "nothing"}, which the '
                "local executor cannot provide (supported: emptyDir, "
                "volumeClaimTemplate)",
            )
        if binding.get("subPath"):
            raise RunError(
                "InvalidWorkspaceBindings",
                f'workspace "{name}": subPath on a PipelineRun binding is not '
                "supported by the local executor",
            )
        kinds[name] = kind
    return kinds


def _task(raw: dict, *, is_finally: bool) -> _Task:
    name = raw.get("name")
    if not name:
        raise RunError("PipelineValidationFailed", "a pipeline task has no name")
    _check_keys(raw, _TASK_KEYS, set(), f'pipeline task "{name}"')
    task_spec = _embedded_task_spec(raw)
    if is_finally and raw.get("runAfter"):
        raise RunError("PipelineValidationFailed", f'finally task "{name}" cannot use runAfter')
    for when in raw.get("when") or []:
        _check_when(name, when)
    refs = _result_refs(_pipeline_task_texts(raw))
    try:
        timeout = parse_duration(raw["timeout"]) if raw.get("timeout") else 0.0
    except ValueError as err:
        raise RunError("PipelineValidationFailed", f'task "{name}": {err}') from err
    return _Task(
        name=name,
        spec=raw,
        task_spec=task_spec,
        is_finally=is_finally,
        deps=frozenset({*map(str, raw.get("runAfter") or []), *(t for t, _ in refs)}),
        result_refs=frozenset(refs),
        timeout=timeout,
        retries=int(raw.get("retries") or 0),
    )


def _embedded_task_spec(raw: dict) -> dict:
    """The task's own taskSpec; references and custom tasks cannot run locally."""
    name = raw["name"]
    ref = raw.get("taskRef")
    if ref:
        if ref.get("apiVersion") or (ref.get("kind") not in (None, "Task", "ClusterTask")):
            raise RunError(
                "PipelineValidationFailed",
                f'task "{name}" is a custom task ({ref.get("apiVersion", "")} '
                f"{ref.get('kind', '')}), which the local executor does not run",
            )
        raise RunError(
            "CouldntGetTask",
            f'task "{name}" refers to {ref.get("kind") or "Task"} '
            f'"{ref.get("name", "")}" (taskRef); the local executor runs only '
            "embedded taskSpec",
        )
    spec = raw.get("taskSpec")
    if not isinstance(spec, dict):
        raise RunError("PipelineValidationFailed", f'task "{name}" has no taskSpec')
    if spec.get("apiVersion") or spec.get("kind"):
        raise RunError(
            "PipelineValidationFailed",
            f'task "{name}" is a custom task ({spec.get("apiVersion", "")} '
            f"{spec.get('kind', '')}), which the local executor does not run",
        )
    _check_task_spec(name, spec)
    return spec


def _check_task_spec(name: str, spec: dict) -> None:
    _check_keys(spec, _TASK_SPEC_KEYS, set(), f'task "{name}"')
    for feature in ("volumes", "sidecars"):
        if spec.get(feature):
            raise RunError(
                "PipelineValidationFailed",
                f'task "{name}" uses {feature}, not supported by the local executor',
            )
    for param in spec.get("params") or []:
        _check_string_param(param, f'task "{name}"')
    for result in spec.get("results") or []:
        if result.get("type", "string") != "string":
            raise RunError(
                "PipelineValidationFailed",
                f'task "{name}" result "{result.get("name")}" is of type '
                f"{result['type']}; only string results are supported",
            )
    if not spec.get("steps"):
        raise RunError("PipelineValidationFailed", f'task "{name}" has no steps')
    for index, step in enumerate([spec.get("stepTemplate") or {}, *spec["steps"]]):
        _check_step(name, step, index)


def _check_step(task: str, step: dict, index: int) -> None:
    where = f'task "{task}" step "{step.get("name") or index}"'
    _check_keys(step, _STEP_KEYS, _STEP_IGNORED, where)
    for feature in ("volumeMounts", "envFrom", "volumeDevices"):
        if step.get(feature):
            raise RunError(
                "PipelineValidationFailed",
                f"{where} uses {feature}, not supported by the local executor",
            )
    if step.get("onError") not in (None, "continue", "stopAndFail"):
        raise RunError("PipelineValidationFailed", f"{where}: unknown onError {step['onError']!r}")


def _check_when(task: str, when: dict) -> None:
    if "cel" in when:
        raise RunError(
            "PipelineValidationFailed",
            f'task "{task}" uses a CEL when expression, not supported locally',
        )
    if when.get("operator") not in ("in", "notin") or "input" not in when:
        raise RunError(
            "PipelineValidationFailed",
            f'task "{task}": when expressions need input and operator in/notin',
        )


def _pipeline_task_texts(raw: dict) -> list[str]:
    """The strings Tekton resolves at pipeline level: param values and when expressions."""
    texts = [str(p.get("value", "")) for p in raw.get("params") or []]
    for when in raw.get("when") or []:
        texts.append(str(when.get("input", "")))
        texts.extend(str(v) for v in when.get("values") or [])
    return texts


def _check_graph(dag: list[_Task]) -> None:
    """Tasks form a DAG over known names (result producers that do not exist are reported by
    the dry run, which names the reference)."""
    names = {t.name for t in dag}
    for task in dag:
        unknown = sorted(set(task.spec.get("runAfter") or []) - names)
        if unknown:
            raise RunError(
                "PipelineInvalidGraph",
                f'task "{task.name}" runs after unknown task(s): {", ".join(unknown)}',
            )
    deps = {t.name: {d for d in t.deps if d in names} for t in dag}
    done: set[str] = set()
    while len(done) < len(deps):
        ready = [n for n, d in deps.items() if n not in done and d <= done]
        if not ready:
            cycle = sorted(set(deps) - done)
            raise RunError(
                "PipelineInvalidGraph",
                f"pipeline tasks depend on each other in a cycle: {', '.join(cycle)}",
            )
        done.update(ready)


def _dry_run(plan: _Plan) -> None:
    """Resolve every task with placeholder results, so bad references and unsupported step
    forms fail the run before anything executes, as Tekton's validation would."""
    placeholders = {
        name: {str(r.get("name")): "" for r in plan.tasks[name].task_spec.get("results") or []}
        for name in plan.dag
    }
    for name, task in plan.tasks.items():
        statuses = dict.fromkeys(plan.dag, "None") if task.is_finally else None
        values = _pipeline_values(plan, placeholders, statuses)
        try:
            params, _ = _resolve_pipeline_task(task, values)
            _build_job(plan, task, params, retry=0)
        except Unresolved as err:
            raise RunError(
                "PipelineValidationFailed", f'task "{name}" references {err}, which has no value'
            ) from err


# --------------------------------------------------------------------------- values


def _pipeline_values(
    plan: _Plan, results: Mapping[str, Mapping[str, str]], statuses: Mapping[str, str] | None
) -> dict[tuple[str, ...], str]:
    """Variables of pipeline-level fields: params, task results, context; statuses in finally."""
    values = {("params", k): v for k, v in plan.params.items()} | _run_context(plan)
    for task, task_results in results.items():
        for name, value in task_results.items():
            values[("tasks", task, "results", name)] = value
    if statuses is not None:
        values[("tasks", "status")] = _aggregate_status(statuses.values())
        values.update({("tasks", t, "status"): s for t, s in statuses.items()})
    return values


def _run_context(plan: _Plan) -> dict[tuple[str, ...], str]:
    """`$(context.pipelineRun.*)`; an embedded pipeline is named after its run, as in Tekton."""
    return {
        ("context", "pipelineRun", "name"): plan.run.name,
        ("context", "pipelineRun", "namespace"): plan.run.namespace,
        ("context", "pipelineRun", "uid"): plan.run.uid,
        ("context", "pipeline", "name"): plan.run.name,
    }


def _aggregate_status(statuses: Iterable[str]) -> str:
    """`$(tasks.status)`: Failed if any task failed, Completed if any was skipped."""
    statuses = list(statuses)
    if "Failed" in statuses:
        return "Failed"
    return "Completed" if "None" in statuses else "Succeeded"


def _resolve_pipeline_task(
    task: _Task, values: Mapping[tuple[str, ...], str]
) -> tuple[dict[str, str], list]:
    """The task's param values and when expressions with pipeline variables filled in."""
    params = {
        str(p["name"]): substitute(_param_text(p.get("value", ""), p["name"]), values)
        for p in task.spec.get("params") or []
    }
    when = [
        {
            "input": substitute(str(w["input"]), values),
            "operator": w["operator"],
            "values": [substitute(str(v), values) for v in w.get("values") or []],
        }
        for w in task.spec.get("when") or []
    ]
    return params, when


def _when_holds(when: list[dict]) -> bool:
    return all((w["input"] in w["values"]) == (w["operator"] == "in") for w in when)


@dataclass(frozen=True)
class _TaskPaths:
    dir: Path
    results: Path
    scripts: Path
    tmp: Path
    workspaces: dict[str, Path]


def _task_paths(plan: _Plan, task: _Task) -> _TaskPaths:
    directory = plan.task_dir(task.name)
    return _TaskPaths(
        dir=directory,
        results=directory / "results",
        scripts=directory / "scripts",
        tmp=directory / "tmp",
        workspaces=_task_workspaces(plan, task, directory),
    )


def _task_workspaces(plan: _Plan, task: _Task, directory: Path) -> dict[str, Path]:
    """Task workspace → folder: a run-wide one for a volumeClaimTemplate (shared by tasks like
    the PVC), a task-private one for an emptyDir (like a pod's)."""
    mapping = {w.get("name"): w for w in task.spec.get("workspaces") or []}
    paths = {}
    for declared in task.task_spec.get("workspaces") or []:
        name = declared.get("name")
        use = mapping.get(name)
        pipeline_ws = (use or {}).get("workspace") or name
        kind = plan.workspaces.get(pipeline_ws)
        if use is None or kind is None:
            if declared.get("optional"):
                continue
            raise RunError(
                "InvalidWorkspaceBindings", f'task "{task.name}" workspace "{name}" is not bound'
            )
        root = (
            plan.workdir / "_workspaces"
            if kind == "volumeClaimTemplate"
            else (directory / "workspaces")
        )
        paths[name] = root / pipeline_ws / str(use.get("subPath") or "")
    return paths


def _task_values(
    plan: _Plan, task: _Task, params: Mapping[str, str], paths: _TaskPaths, retry: int
) -> dict[tuple[str, ...], str]:
    """Variables inside a taskSpec: its params (pipeline params propagate into embedded specs),
    result paths, workspaces, context."""
    values: dict[tuple[str, ...], str] = {("params", k): v for k, v in plan.params.items()}
    for param in task.task_spec.get("params") or []:
        name = param["name"]
        if name in params:
            values[("params", name)] = params[name]
        elif param.get("default") is not None:
            values[("params", name)] = _param_text(param["default"], name)
        else:
            raise RunError(
                "PipelineValidationFailed",
                f'task "{task.name}" gives no value for its param "{name}"',
            )
    for result in task.task_spec.get("results") or []:
        values[("results", result["name"], "path")] = str(paths.results / result["name"])
    for declared in task.task_spec.get("workspaces") or []:
        name = declared["name"]
        bound = name in paths.workspaces
        values[("workspaces", name, "bound")] = "true" if bound else "false"
        values[("workspaces", name, "path")] = str(paths.workspaces[name]) if bound else ""
    taskrun = plan.taskrun(task.name)
    values.update(_run_context(plan))
    values.update(
        {
            ("context", "taskRun", "name"): taskrun,
            ("context", "taskRun", "namespace"): plan.run.namespace,
            ("context", "taskRun", "uid"): str(
                uuid.uuid5(uuid.NAMESPACE_URL, f"{plan.run.uid}/{taskrun}")
            ),
            ("context", "task", "name"): taskrun,
            ("context", "task", "retry-count"): str(retry),
            ("context", "pipelineTask", "retries"): str(task.retries),
        }
    )
    return values


# --------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class _StepJob:
    name: str
    image: str
    argv: list[str]
    env: dict[str, str]
    working_dir: str
    script: str | None
    script_path: Path | None
    on_error: str
    timeout: float
    log: Path


@dataclass(frozen=True)
class _Job:
    """Everything a worker thread needs to run one attempt of one task, fully resolved."""

    task: str
    taskrun: str
    paths: _TaskPaths
    result_names: list[str]
    steps: list[_StepJob]
    timeout: float


def _build_job(plan: _Plan, task: _Task, params: Mapping[str, str], retry: int) -> _Job:
    """Resolve a task's steps into argv/env/cwd; pure, so the dry run can use it too."""
    paths = _task_paths(plan, task)
    values = _task_values(plan, task, params, paths, retry)
    template = task.task_spec.get("stepTemplate") or {}
    steps = [
        _build_step(plan, task, i, _merge_template(template, raw), values, paths)
        for i, raw in enumerate(task.task_spec["steps"])
    ]
    if len({s.name for s in steps}) != len(steps):
        raise RunError("PipelineValidationFailed", f'task "{task.name}" has duplicate step names')
    return _Job(
        task=task.name,
        taskrun=plan.taskrun(task.name),
        paths=paths,
        result_names=[r["name"] for r in task.task_spec.get("results") or []],
        steps=steps,
        timeout=task.timeout,
    )


def _merge_template(template: dict, step: dict) -> dict:
    """A stepTemplate under a step: the step's fields win, env merges by name."""
    merged = {**template, **step}
    if template.get("env") and step.get("env"):
        env = {e["name"]: e for e in template["env"]}
        env.update({e["name"]: e for e in step["env"]})
        merged["env"] = list(env.values())
    return merged


def _build_step(
    plan: _Plan,
    task: _Task,
    index: int,
    raw: dict,
    values: Mapping[tuple[str, ...], str],
    paths: _TaskPaths,
) -> _StepJob:
    name = str(raw.get("name") or f"unnamed-{index}")
    image = str(raw.get("image") or "")

    def resolve(text: object) -> str:
        # kfp's own condition template writes to the literal /tekton/results.
        return substitute(str(text).replace("/tekton/results/", f"{paths.results}/"), values)

    env = _step_env(plan, task, raw.get("env") or [], resolve)
    args = [_kube_expand(resolve(a), env) for a in raw.get("args") or []]
    script, script_path = None, None
    if raw.get("script"):
        if raw.get("command"):
            raise RunError(
                "PipelineValidationFailed",
                f'task "{task.name}" step "{name}" has both script and command',
            )
        script = resolve(raw["script"])
        if not script.startswith("#!"):
            script = "#!/bin/sh\nset -e\n" + script  # what Tekton prepends
        script_path = paths.scripts / name
        argv = [*_shebang(script, task.name, name), str(script_path), *args]
    elif raw.get("command"):
        argv = [_kube_expand(resolve(c), env) for c in raw["command"]] + args
    else:
        raise RunError(
            "PipelineValidationFailed",
            f'task "{task.name}" step "{name}" has no command: it relies on the '
            f'entrypoint of image "{image}", which is not pulled locally',
        )
    return _StepJob(
        name=name,
        image=image,
        argv=_local_argv(argv, image),
        env=env,
        working_dir=resolve(raw.get("workingDir") or ""),
        script=script,
        script_path=script_path,
        on_error=str(raw.get("onError") or "stopAndFail"),
        timeout=_step_timeout(task.name, name, raw.get("timeout")),
        log=paths.dir / f"{name}.log",
    )


def _kube_expand(text: str, env: Mapping[str, str]) -> str:
    """What the kubelet does to command, args and env values after Tekton: `$(VAR)` of a
    variable the container defines becomes its value, `$$` becomes `$`, the rest stays."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        if text.startswith("$(", i):
            end = text.find(")", i + 2)
            if end != -1 and text[i + 2 : end] in env:
                out.append(env[text[i + 2 : end]])
                i = end + 1
                continue
        out.append(text[i])
        i += 1
    return "".join(out)


def _shebang(script: str, task: str, step: str) -> list[str]:
    words = script.splitlines()[0][2:].split()
    if words and Path(words[0]).name == "env":
        words = [w for w in words[1:] if w != "-S"]
    if not words or words[0] == "win":
        raise RunError(
            "PipelineValidationFailed",
            f'task "{task}" step "{step}": script shebang is not runnable locally',
        )
    return words


def _local_argv(argv: list[str], image: str) -> list[str]:
    """Map the container's programs to this machine's.

    python → this interpreter; busybox's `sh` → bash, since the local sh may be dash, which lacks
    the `pipefail` and `[[` that kfp-tekton's busybox helper steps use; an absolute path missing
    here → the same program on PATH.
    """
    program = Path(argv[0]).name
    if _PYTHON.fullmatch(program):
        return [sys.executable, *argv[1:]]
    if program == "sh" and "busybox" in image and shutil.which("bash"):
        return ["bash", *argv[1:]]
    if os.path.isabs(argv[0]) and not os.path.exists(argv[0]) and shutil.which(program):
        return [str(shutil.which(program)), *argv[1:]]
    return argv


def _step_timeout(task: str, step: str, value: object) -> float:
    try:
        return parse_duration(value) if value else 0.0
    except ValueError as err:
        raise RunError("PipelineValidationFailed", f'task "{task}" step "{step}": {err}') from err


def _step_env(
    plan: _Plan, task: _Task, env: list[dict], resolve: Callable[[object], str]
) -> dict[str, str]:
    """A step's own variables; downward-API fieldRefs get the values the pod would have."""
    result = {}
    for entry in env:
        name = str(entry["name"])
        source = entry.get("valueFrom")
        if source is None:
            result[name] = _kube_expand(resolve(entry.get("value", "")), result)
        elif set(source) == {"fieldRef"}:
            result[name] = _field_ref(plan, task, str(source["fieldRef"].get("fieldPath", "")))
        else:
            raise RunError(
                "PipelineValidationFailed",
                f'task "{task.name}" env "{name}" comes from '
                f"{', '.join(source)}, not available to the local executor",
            )
    return result


def _field_ref(plan: _Plan, task: _Task, path: str) -> str:
    taskrun = plan.taskrun(task.name)
    simple = {
        "metadata.name": f"{taskrun}-pod",
        "metadata.namespace": plan.run.namespace,
        "spec.serviceAccountName": plan.service_account,
        "spec.nodeName": os.uname().nodename,
        "status.podIP": "127.0.0.1",
        "status.hostIP": "127.0.0.1",
    }
    if path in simple:
        return simple[path]
    match = _FIELD_REF.fullmatch(path)
    if match is None:
        raise RunError(
            "PipelineValidationFailed",
            f'task "{task.name}" env fieldRef {path!r} is not supported locally',
        )
    metadata = task.task_spec.get("metadata") or {}
    if match.group(1) == "annotations":
        return {**plan.annotations, **(metadata.get("annotations") or {})}.get(match.group(2), "")
    labels = {
        "custom.tekton.dev/originalPipelineRun": plan.run.name,
        **plan.labels,
        **(metadata.get("labels") or {}),
        "tekton.dev/pipelineRun": plan.run.name,
        "tekton.dev/pipelineTask": task.name,
        "tekton.dev/taskRun": taskrun,
    }
    return str(labels.get(match.group(2), ""))


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class _Stop:
    """Why the scheduler stops running work, and what that makes of the run and its tasks."""

    run_reason: str
    run_message: str
    task_reason: str
    task_message: str
    skip_reason: str
    runs_finally: bool = False


class _Gate:
    """Lets the scheduler stop every step: once `stop` is set no process starts, and running
    ones see it in their wait loop and kill their process group."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.stop: _Stop | None = None

    def close(self, stop: _Stop | None) -> None:
        with self._lock:
            self.stop = stop

    def start(self, argv: list[str], **kwargs) -> subprocess.Popen | None:
        with self._lock:
            if self.stop is not None:
                return None
            return subprocess.Popen(
                argv, start_new_session=True, stdin=subprocess.DEVNULL, **kwargs
            )


@dataclass
class _Attempt:
    reason: str
    message: str
    steps: list[StepOutcome]
    results: dict[str, str]
    finished: datetime


def _exited(pid: int) -> bool:
    """True once the process ended; it is not reaped, so its group id stays valid."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _terminate(proc: subprocess.Popen) -> None:
    """SIGTERM the step's whole process group, SIGKILL what is left after a grace period."""
    _signal_group(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + KILL_GRACE
    while not _exited(proc.pid) and time.monotonic() < deadline:
        time.sleep(STEP_POLL)
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()


def _wait(proc: subprocess.Popen, deadline: _StepDeadline, gate: _Gate) -> _Stop | str | None:
    """Wait for a step; the deadline's kind or the gate's stop when it had to be killed.

    When the step ends on its own, what it left running in its group is killed, as a container
    takes its processes down with it.
    """
    while not _exited(proc.pid):
        if gate.stop is not None:
            stop = gate.stop
            _terminate(proc)
            return stop
        if deadline.at is not None and time.monotonic() >= deadline.at:
            _terminate(proc)
            return deadline.kind
        time.sleep(STEP_POLL)
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()
    return None


def _run_job(job: _Job, gate: _Gate, base_env: Mapping[str, str]) -> _Attempt:
    """One attempt of one task (in a worker thread); never raises."""
    try:
        return _run_steps(job, gate, base_env)
    except Exception as exc:
        log.exception("local executor: task %s crashed", job.task)
        return _Attempt(FAILED, f'task "{job.task}": executor error: {exc!r}', [], {}, _now())


def _prepare_folders(job: _Job) -> None:
    paths = job.paths
    shutil.rmtree(paths.results, ignore_errors=True)
    for folder in (paths.dir, paths.results, paths.scripts, paths.tmp, *paths.workspaces.values()):
        folder.mkdir(parents=True, exist_ok=True)


def _run_steps(job: _Job, gate: _Gate, base_env: Mapping[str, str]) -> _Attempt:
    _prepare_folders(job)
    deadline = time.monotonic() + job.timeout if job.timeout else None
    steps: list[StepOutcome] = []
    failure: tuple[str, str] | None = None
    for step in job.steps:
        if failure is not None:
            steps.append(StepOutcome(step.name, step.image, step.log, "Skipped", 1))
            continue
        outcome, interrupt, error = _run_step(job, step, gate, base_env, deadline)
        steps.append(outcome)
        failure = _step_failure(job, step, outcome, interrupt, error)
    results = _read_results(job)
    if failure is None:
        failure = _results_failure(job, results)
    reason, message = failure or (SUCCEEDED, "All Steps have completed executing")
    return _Attempt(reason, message, steps, results, _now())


def _run_step(
    job: _Job, step: _StepJob, gate: _Gate, base_env: Mapping[str, str], task_deadline: float | None
) -> tuple[StepOutcome, _Stop | str | None, str]:
    """Run one step to its end; returns its outcome, what interrupted it, a start error."""
    outcome = StepOutcome(step.name, step.image, step.log, started=_now())
    if step.script is not None and step.script_path is not None:
        step.script_path.write_text(step.script)
        step.script_path.chmod(0o700)
    env = {**base_env, "TMPDIR": str(job.paths.tmp), **step.env}
    deadline, interrupt, error = _step_deadline(step, task_deadline), None, ""
    with step.log.open("wb") as out:
        try:
            cwd = _working_dir(step.working_dir, job.paths)
            proc = gate.start(step.argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        except OSError as exc:
            proc, error = None, f"could not start {step.argv[0]!r}: {exc}"
            out.write(f"{error}\n".encode())
        if proc is None and not error:
            interrupt = gate.stop
        elif proc is not None:
            interrupt = _wait(proc, deadline, gate)
    outcome.finished = _now()
    if proc is None:
        outcome.exit_code = 127 if error else 1
    else:
        code = proc.returncode
        outcome.exit_code = code if code >= 0 else 128 - code
    outcome.reason = _step_reason(step, outcome.exit_code, interrupt)
    return outcome, interrupt, error


def _working_dir(working_dir: str, paths: _TaskPaths) -> Path:
    """A step's folder: its task folder by default; a container's /workspace/... maps into it."""
    if not working_dir:
        return paths.dir
    path = Path(working_dir)
    if path.is_absolute() and path.parts[1:2] != ("workspace",):
        if not path.is_dir():
            raise FileNotFoundError(f"workingDir {working_dir} does not exist on this machine")
        return path
    local = paths.dir / (path.relative_to("/") if path.is_absolute() else path)
    local.mkdir(parents=True, exist_ok=True)
    return local


@dataclass(frozen=True)
class _StepDeadline:
    at: float | None  # time.monotonic() value
    kind: str  # STEP_TIMEOUT | TASK_TIMEOUT: which limit `at` is


def _step_deadline(step: _StepJob, task_deadline: float | None) -> _StepDeadline:
    """The nearer of the step's own timeout and what is left of the task's."""
    if step.timeout:
        at = time.monotonic() + step.timeout
        if task_deadline is None or at < task_deadline:
            return _StepDeadline(at, STEP_TIMEOUT)
    return _StepDeadline(task_deadline, TASK_TIMEOUT)


def _step_reason(step: _StepJob, exit_code: int, interrupt: _Stop | str | None) -> str:
    if isinstance(interrupt, _Stop):
        return "Cancelled"
    if interrupt in (STEP_TIMEOUT, TASK_TIMEOUT):
        return "TimeoutExceeded"
    if exit_code == 0:
        return "Completed"
    return "Continued" if step.on_error == "continue" else "Error"


def _step_failure(
    job: _Job, step: _StepJob, outcome: StepOutcome, interrupt: _Stop | str | None, error: str
) -> tuple[str, str] | None:
    """(TaskRun reason, message) when this step ends the task, else None."""
    if isinstance(interrupt, _Stop):
        return interrupt.task_reason, interrupt.task_message
    if interrupt == STEP_TIMEOUT:
        return FAILED, (
            f'task "{job.task}": step "{step.name}" exceeded its timeout of '
            f'"{format_duration(step.timeout)}"'
        )
    if interrupt == TASK_TIMEOUT:
        return TASKRUN_TIMEOUT, (
            f'task "{job.task}": TaskRun "{job.taskrun}" failed to '
            f'finish within "{format_duration(job.timeout)}"'
        )
    if outcome.exit_code == 0 or step.on_error == "continue":
        return None
    detail = f": {error}" if error else ""
    return FAILED, (
        f'task "{job.task}": step "{step.name}" exited with code {outcome.exit_code}{detail}'
    )


def _read_results(job: _Job) -> dict[str, str]:
    """Declared results whose files exist, content as written (Tekton keeps it as-is)."""
    results = {}
    for name in job.result_names:
        path = job.paths.results / name
        if path.is_file():
            results[name] = path.read_bytes().decode("utf-8", errors="replace")
    return results


def _results_failure(job: _Job, results: Mapping[str, str]) -> tuple[str, str] | None:
    size = sum(len(v.encode()) for v in results.values())
    if size <= RESULTS_LIMIT:
        return None
    return RESULTS_TOO_LARGE, (
        f'task "{job.task}": results are {size} bytes, over Tekton\'s '
        f"{RESULTS_LIMIT}-byte limit for a TaskRun's results"
    )


def _python_shim(workdir: Path) -> Path:
    """A folder with python/python3 that run this interpreter, put first on the steps' PATH:
    kfp's steps call `python3` from inside `sh -ec`, out of reach of argv translation."""
    folder = workdir / "_bin"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("python", "python3"):
        shim = folder / name
        shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
        shim.chmod(0o700)
    return folder


# --------------------------------------------------------------------------- scheduling


def _cancelled(name: str) -> _Stop:
    return _Stop(
        "Cancelled",
        f'PipelineRun "{name}" was cancelled',
        TASKRUN_CANCELLED,
        f'TaskRun cancelled as the PipelineRun "{name}" was cancelled',
        STOPPING_SKIP,
    )


def _pipeline_timed_out(name: str, seconds: float) -> _Stop:
    return _Stop(
        "PipelineRunTimeout",
        f'PipelineRun "{name}" failed to finish within "{format_duration(seconds)}"',
        TASKRUN_CANCELLED,
        "TaskRun cancelled as the PipelineRun it belongs to has timed out.",
        PIPELINE_TIMEOUT_SKIP,
    )


def _tasks_timed_out(name: str, seconds: float) -> _Stop:
    return _Stop(
        "PipelineRunTimeout",
        f'PipelineRun "{name}" tasks failed to finish within "{format_duration(seconds)}"',
        TASKRUN_CANCELLED,
        "TaskRun cancelled as the PipelineRun tasks timeout was reached.",
        TASKS_TIMEOUT_SKIP,
        runs_finally=True,
    )


def _finally_timed_out(name: str, seconds: float) -> _Stop:
    return _Stop(
        "PipelineRunTimeout",
        f'PipelineRun "{name}" finally tasks failed to finish within "{format_duration(seconds)}"',
        TASKRUN_CANCELLED,
        "TaskRun cancelled as the PipelineRun finally timeout was reached.",
        FINALLY_TIMEOUT_SKIP,
    )


def _run_failed(reason: str, message: str) -> _Stop:
    return _Stop(
        reason,
        message,
        TASKRUN_CANCELLED,
        f"TaskRun cancelled as the PipelineRun failed: {message}",
        STOPPING_SKIP,
    )


@dataclass(frozen=True)
class _Deadline:
    at: float | None  # time.monotonic() value
    stop: _Stop | None


@dataclass(frozen=True)
class _Admission:
    """A ready task's fate: run with these params, or skip for a reason."""

    params: dict[str, str]
    when: list[dict]
    skip: str | None = None


class _Run:
    """The scheduler: runs on the caller's thread, owns all state; workers only run steps."""

    def __init__(
        self,
        plan: _Plan,
        pipelinerun: dict,
        *,
        cancel: threading.Event | None,
        on_update: Callable[[dict], None] | None,
        max_parallel: int,
        env: Mapping[str, str],
    ):
        self.plan = plan
        self.pipelinerun = pipelinerun
        self.cancel = cancel or threading.Event()
        self.on_update = on_update
        self.max_parallel = max(1, max_parallel)
        self.gate = _Gate()
        self.started = _now()
        self.started_at = time.monotonic()
        self.finally_started: datetime | None = None
        self.outcomes: dict[str, TaskOutcome] = {}
        self.params: dict[str, dict[str, str]] = {}
        self.futures: dict[Future, str] = {}
        self.interrupt: _Stop | None = None  # the first stop: decides the run's reason
        self.images: list[str] = []
        self.dirty = False
        self.base_env = dict(env)
        shim = _python_shim(plan.workdir)
        self.base_env["PATH"] = os.pathsep.join([str(shim), env.get("PATH", "")])
        self.pool = ThreadPoolExecutor(self.max_parallel, thread_name_prefix="localdsp-task")

    def run(self) -> Execution:
        """Schedule everything, then report; a bug ends the run Failed instead of raising."""
        try:
            self._publish()
            self._phase(self.plan.dag, self._deadline(self.plan.timeouts.tasks, _tasks_timed_out))
            self._finally()
        except Exception as exc:
            log.exception("local executor: run %s crashed", self.plan.run.name)
            self.interrupt = _run_failed(FAILED, f"executor error: {exc!r}")
            self.gate.close(self.interrupt)
        finally:
            self._drain()
            self.pool.shutdown(wait=True)
        try:
            execution = self._finish()
        except Exception as exc:
            log.exception("local executor: run %s could not be reported", self.plan.run.name)
            execution = Execution(
                name=self.plan.run.name,
                uid=self.plan.run.uid,
                reason=FAILED,
                message=f"executor error: {exc!r}",
                started=self.started,
                finished=_now(),
                tasks=dict(self.outcomes),
            )
        self._notify(execution)
        return execution

    # ---- phases

    def _deadline(self, seconds: float, stop: Callable[[str, float], _Stop]) -> _Deadline:
        if not seconds:
            return _Deadline(None, None)
        return _Deadline(time.monotonic() + seconds, stop(self.plan.run.name, seconds))

    def _finally(self) -> None:
        """Finally tasks run after the others, failed or not, unless the run was stopped."""
        stop = self.gate.stop
        if stop is not None and not stop.runs_finally:
            self._skip_all(list(self.plan.final), stop.skip_reason)
            return
        self.gate.close(None)
        if self.plan.final:
            self.finally_started = _now()
        self._phase(
            self.plan.final, self._deadline(self.plan.timeouts.finally_, _finally_timed_out)
        )

    def _phase(self, names: list[str], deadline: _Deadline) -> None:
        waiting = list(names)
        while waiting or self.futures:
            self._check_stop(deadline)
            progress = False
            if self.gate.stop is not None:
                progress = self._skip_all(waiting, self.gate.stop.skip_reason)
            else:
                progress = self._start_ready(waiting)
            if not self.futures and waiting and not progress:
                raise RuntimeError(f"scheduler stuck with tasks {waiting}")
            if self.dirty:
                self._publish()
            self._collect(SCHEDULER_POLL)
            if self.dirty:
                self._publish()

    def _check_stop(self, deadline: _Deadline) -> None:
        if self.gate.stop is not None:
            return
        now = time.monotonic()
        if self.cancel.is_set():
            self._halt(_cancelled(self.plan.run.name))
        elif self.plan.timeouts.pipeline and now >= self.started_at + self.plan.timeouts.pipeline:
            self._halt(_pipeline_timed_out(self.plan.run.name, self.plan.timeouts.pipeline))
        elif deadline.at is not None and deadline.stop is not None and now >= deadline.at:
            self._halt(deadline.stop)

    def _halt(self, stop: _Stop) -> None:
        self.interrupt = self.interrupt or stop
        self.gate.close(stop)
        self.dirty = True

    def _skip_all(self, waiting: list[str], reason: str) -> bool:
        for name in waiting:
            self._mark_skipped(name, reason, [])
        progress = bool(waiting)
        waiting.clear()
        return progress

    # ---- starting tasks

    def _start_ready(self, waiting: list[str]) -> bool:
        """Skip or start every task whose turn has come; True if anything changed."""
        progress, changed = False, True
        while changed and self.gate.stop is None:
            changed = False
            for name in list(waiting):
                admission = self._admit(self.plan.tasks[name])
                if admission is None:
                    continue
                if admission.skip is None and len(self.futures) >= self.max_parallel:
                    continue
                waiting.remove(name)
                changed = progress = True
                if admission.skip is not None:
                    self._mark_skipped(name, admission.skip, admission.when)
                else:
                    self._start(self.plan.tasks[name], admission)
                if self.gate.stop is not None:
                    break
        return progress

    def _admit(self, task: _Task) -> _Admission | None:
        """Tekton's order of skipping: stopping, skipped parents, missing results, when."""
        if not task.is_finally and self._stopping():
            return _Admission({}, [], STOPPING_SKIP)
        if any(
            self.outcomes.get(d) is None or self.outcomes[d].reason == RUNNING for d in task.deps
        ):
            return None
        if not task.is_finally and any(
            self.outcomes[d].reason == SKIPPED and self.outcomes[d].message != WHEN_SKIP
            for d in task.deps
        ):
            return _Admission({}, [], PARENT_SKIP)
        missing = self._missing_results(task)
        if missing:
            return _Admission({}, [], MISSING_RESULTS_SKIP)
        params, when = _resolve_pipeline_task(task, self._values(task))
        return _Admission(params, when, None if _when_holds(when) else WHEN_SKIP)

    def _stopping(self) -> bool:
        return any(
            self.outcomes[n].failed or self.outcomes[n].reason == TASKRUN_CANCELLED
            for n in self.plan.dag
            if n in self.outcomes
        )

    def _missing_results(self, task: _Task) -> bool:
        """True when a producer did not succeed; a producer that succeeded without writing a
        result fails the run with InvalidTaskResultReference, as in Tekton."""
        for producer, result in sorted(task.result_refs):
            outcome = self.outcomes[producer]
            if outcome.reason != SUCCEEDED:
                return True
            if result not in outcome.results:
                message = (
                    f'task "{task.name}" uses result "{result}" of task "{producer}", '
                    "which did not write it"
                )
                if task.is_finally:
                    return True
                self._halt(_run_failed("InvalidTaskResultReference", message))
                return True
        return False

    def _values(self, task: _Task) -> dict[tuple[str, ...], str]:
        results = {n: o.results for n, o in self.outcomes.items() if o.reason == SUCCEEDED}
        statuses = None
        if task.is_finally:
            statuses = {n: self._task_status(n) for n in self.plan.dag}
        return _pipeline_values(self.plan, results, statuses)

    def _task_status(self, name: str) -> str:
        """`$(tasks.<name>.status)`: Succeeded, Failed, or None when it did not run."""
        reason = self.outcomes[name].reason if name in self.outcomes else SKIPPED
        if reason == SUCCEEDED:
            return "Succeeded"
        return "None" if reason == SKIPPED else "Failed"

    def _mark_skipped(self, name: str, reason: str, when: list[dict]) -> None:
        task = self.plan.tasks[name]
        self.outcomes[name] = TaskOutcome(
            name=name,
            taskrun=self.plan.taskrun(name),
            reason=SKIPPED,
            message=reason,
            is_finally=task.is_finally,
            when=when,
        )
        self.dirty = True

    def _start(self, task: _Task, admission: _Admission, retry: int = 0) -> None:
        outcome = self.outcomes.get(task.name) or TaskOutcome(
            name=task.name,
            taskrun=self.plan.taskrun(task.name),
            reason=RUNNING,
            log_dir=self.plan.task_dir(task.name),
            is_finally=task.is_finally,
            when=admission.when,
        )
        outcome.reason = RUNNING
        outcome.message = "Not all Steps in the Task have finished executing"
        outcome.started, outcome.finished, outcome.results = _now(), None, {}
        self.outcomes[task.name] = outcome
        self.params[task.name] = admission.params
        self.dirty = True
        try:
            job = _build_job(self.plan, task, admission.params, retry)
        except (RunError, Unresolved) as err:
            self._complete(outcome, _Attempt(FAILED, f'task "{task.name}": {err}', [], {}, _now()))
            return
        outcome.steps = [StepOutcome(s.name, s.image, s.log) for s in job.steps]
        self.futures[self.pool.submit(_run_job, job, self.gate, self.base_env)] = task.name

    # ---- finishing tasks

    def _collect(self, timeout: float) -> None:
        if not self.futures:
            return
        done, _ = wait(list(self.futures), timeout=timeout, return_when=FIRST_COMPLETED)
        for future in done:
            self._record(self.futures.pop(future), future.result())

    def _drain(self) -> None:
        """Let running workers end (they see the gate) and record them, whatever happened."""
        if self.futures and self.gate.stop is None:
            self.gate.close(self.interrupt or _run_failed(FAILED, "executor stopped"))
        for future, name in list(self.futures.items()):
            with contextlib.suppress(Exception):
                self._record(name, future.result())
        self.futures.clear()

    def _record(self, name: str, attempt: _Attempt) -> None:
        outcome = self.outcomes[name]
        task = self.plan.tasks[name]
        retry = len(outcome.retries)
        if (
            attempt.reason not in (SUCCEEDED, TASKRUN_CANCELLED)
            and retry < task.retries
            and self.gate.stop is None
        ):
            self._complete(outcome, attempt)
            outcome.retries.append(replace(outcome, retries=[]))
            self._keep_attempt_logs(outcome.retries[-1], retry)
            self._start(task, _Admission(self.params[name], outcome.when), retry + 1)
            return
        self._complete(outcome, attempt)

    def _complete(self, outcome: TaskOutcome, attempt: _Attempt) -> None:
        outcome.reason, outcome.message = attempt.reason, attempt.message
        outcome.results, outcome.finished = attempt.results, attempt.finished
        if attempt.steps:
            outcome.steps = attempt.steps
        for step in attempt.steps:
            if step.started is not None and step.image and step.image not in self.images:
                self.images.append(step.image)
        self.dirty = True

    @staticmethod
    def _keep_attempt_logs(attempt: TaskOutcome, retry: int) -> None:
        """Move an attempt's logs aside (<step>.attempt-N.log) before the retry writes anew."""
        steps = []
        for step in attempt.steps:
            kept = step.log.with_name(f"{step.name}.attempt-{retry}.log")
            if step.log.exists():
                step.log.replace(kept)
            steps.append(replace(step, log=kept))
        attempt.steps = steps

    # ---- reporting

    def _publish(self) -> None:
        self.dirty = False
        self._notify(self._snapshot(RUNNING, self._counts_message(done=False), None))

    def _notify(self, execution: Execution) -> None:
        if self.on_update is None:
            return
        try:
            self.on_update(pipelinerun_with_status(self.pipelinerun, execution))
        except Exception:
            log.exception("local executor: on_update failed for run %s", self.plan.run.name)

    def _snapshot(self, reason: str, message: str, finished: datetime | None) -> Execution:
        return Execution(
            name=self.plan.run.name,
            uid=self.plan.run.uid,
            reason=reason,
            message=message,
            started=self.started,
            finished=finished,
            tasks=dict(self.outcomes),
            images=list(self.images),
            pipeline_results=self._pipeline_results() if finished else {},
            finally_started=self.finally_started,
        )

    def _finish(self) -> Execution:
        unreached = [n for n in self.plan.tasks if n not in self.outcomes]
        reason_skipped = self.interrupt.skip_reason if self.interrupt else STOPPING_SKIP
        self._skip_all(unreached, reason_skipped)
        failed = [o for o in self.outcomes.values() if o.failed]
        if self.interrupt is not None:
            reason, message = self.interrupt.run_reason, self.interrupt.run_message
        elif failed:
            reason = FAILED
            details = "; ".join(o.message for o in failed)
            message = f"{self._counts_message(done=True)}. Failed: {details}"
        else:
            skipped = any(o.reason == SKIPPED for o in self.outcomes.values())
            reason = "Completed" if skipped else SUCCEEDED
            message = self._counts_message(done=True)
        if self.images:
            message += ". Executed locally; container images not pulled: " + ", ".join(self.images)
        return self._snapshot(reason, message, _now())

    def _counts_message(self, *, done: bool) -> str:
        """Tekton's wording: "Tasks Completed: 2 (Failed: 0, Cancelled 0), Skipped: 0"."""
        outcomes = list(self.outcomes.values())
        skipped = sum(o.reason == SKIPPED for o in outcomes)
        cancelled = sum(o.reason == TASKRUN_CANCELLED for o in outcomes)
        failed = sum(o.failed for o in outcomes)
        completed = sum(o.reason not in (RUNNING, SKIPPED) for o in outcomes)
        incomplete = len(self.plan.tasks) - completed - skipped
        middle = "" if done else f", Incomplete: {incomplete}"
        return (
            f"Tasks Completed: {completed} (Failed: {failed}, Cancelled {cancelled})"
            f"{middle}, Skipped: {skipped}"
        )

    def _pipeline_results(self) -> dict[str, str]:
        """spec.pipelineSpec.results whose referenced task results exist."""
        values = _pipeline_values(
            self.plan,
            {n: o.results for n, o in self.outcomes.items() if o.reason == SUCCEEDED},
            None,
        )
        results = {}
        for result in self.plan.results:
            with contextlib.suppress(Unresolved):
                results[str(result["name"])] = substitute(str(result.get("value", "")), values)
        return results


# --------------------------------------------------------------------------- entry point


def execute(
    pipelinerun: dict,
    *,
    workdir: Path,
    params: dict[str, str] | None = None,
    timeout: float | None = None,
    cancel: threading.Event | None = None,
    on_update: Callable[[dict], None] | None = None,
    max_parallel: int = 2,
    env: Mapping[str, str] | None = None,
) -> Execution:
    """Run a kfp-tekton PipelineRun locally and return how it ended.

    Blocks until the run ends; call it from a worker thread and set `cancel` to stop it.
    `params` override the run's spec.params; `timeout` (seconds) caps the run's own timeout.
    `on_update` gets the live PipelineRun (with `status`) whenever a task starts or ends.
    `env` is the steps' base environment (default: this process's), so a server can keep its
    credentials out of the steps.
    Never raises for a bad manifest or a failing step: those end the run with a reason.
    """
    started = _now()
    identity = _identity(pipelinerun if isinstance(pipelinerun, dict) else {})
    try:
        workdir = Path(workdir).resolve()  # steps run in their own folders: no relative paths
        workdir.mkdir(parents=True, exist_ok=True)
        plan = _plan(pipelinerun, identity, workdir, params, timeout)
        run = _Run(
            plan,
            pipelinerun,
            cancel=cancel,
            on_update=on_update,
            max_parallel=max_parallel,
            env=os.environ if env is None else env,
        )
    except RunError as err:
        return _rejected(pipelinerun, identity, started, err.reason, err.message, on_update)
    except Exception as exc:
        log.exception("local executor: could not start run %s", identity.name)
        return _rejected(
            pipelinerun, identity, started, FAILED, f"executor error: {exc!r}", on_update
        )
    return run.run()


def _rejected(
    pipelinerun: dict,
    identity: _Identity,
    started: datetime,
    reason: str,
    message: str,
    on_update: Callable[[dict], None] | None,
) -> Execution:
    """The Execution of a run that never started a task (validation, setup)."""
    execution = Execution(
        name=identity.name,
        uid=identity.uid,
        reason=reason,
        message=message,
        started=started,
        finished=_now(),
    )
    if on_update is not None and isinstance(pipelinerun, dict):
        try:
            on_update(pipelinerun_with_status(pipelinerun, execution))
        except Exception:
            log.exception("local executor: on_update failed for run %s", identity.name)
    return execution
