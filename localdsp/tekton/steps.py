"""The step runner: one attempt of one task as local subprocesses, in a worker thread.

Each step runs in its own process group so a timeout or cancellation can take down everything it
started, as a pod's termination would; results are read back from the files the steps wrote.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from localdsp.tekton.jobs import Job, StepJob, TaskPaths
from localdsp.tekton.status import (
    FAILED,
    RESULTS_TOO_LARGE,
    SUCCEEDED,
    TASKRUN_TIMEOUT,
    StepOutcome,
    format_duration,
    now,
)
from localdsp.tekton.stops import Stop
from localdsp.tekton.volumes import missing_claim

log = logging.getLogger(__name__)

RESULTS_LIMIT = 4096  # bytes; Tekton's termination-message budget for all results of a TaskRun
KILL_GRACE = 1.0  # seconds between SIGTERM and SIGKILL, like a (short) pod termination grace
STEP_POLL = 0.02
NOT_FOUND = 127  # the exit code of a program that could not be found (shells, exec)
STEP_TIMEOUT = "step-timeout"
TASK_TIMEOUT = "task-timeout"


class Gate:
    """Lets the scheduler stop every step: once `stop` is set no process starts, and running
    ones see it in their wait loop and kill their process group."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.stop: Stop | None = None
        self.stopped = threading.Event()  # mirrors `stop`, for custom tasks that wait on it

    def close(self, stop: Stop | None) -> None:
        with self._lock:
            self.stop = stop
            if stop is None:
                self.stopped.clear()
            else:
                self.stopped.set()

    def start(self, argv: list[str], **kwargs) -> subprocess.Popen | None:
        with self._lock:
            if self.stop is not None:
                return None
            return subprocess.Popen(
                argv, start_new_session=True, stdin=subprocess.DEVNULL, **kwargs
            )


@dataclass
class Attempt:
    """How one attempt of a task ended (a TaskRun's pod, or a custom task's Run)."""

    reason: str
    message: str
    steps: list[StepOutcome]
    results: dict[str, str]
    finished: datetime
    run_cancelled: bool = False  # a Run its controller ended as cancelled
    extra_fields: dict = field(default_factory=dict)  # a Run's status.extraFields


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


def _wait(proc: subprocess.Popen, deadline: _StepDeadline, gate: Gate) -> Stop | str | None:
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


def run_job(job: Job, gate: Gate, base_env: Mapping[str, str]) -> Attempt:
    """One attempt of one task (in a worker thread); never raises."""
    try:
        return run_steps(job, gate, base_env)
    except Exception as exc:
        log.exception("local executor: task %s crashed", job.task)
        return Attempt(FAILED, f'task "{job.task}": executor error: {exc!r}', [], {}, now())


def _prepare_folders(job: Job) -> None:
    """Folders of a new pod: results and emptyDir volumes start empty."""
    paths = job.paths
    for folder in (paths.results, *paths.volumes.empty):
        shutil.rmtree(folder, ignore_errors=True)
    folders = (paths.dir, paths.results, paths.scripts, paths.tmp, *paths.volumes.empty)
    for folder in (*folders, *paths.workspaces.values()):
        folder.mkdir(parents=True, exist_ok=True)


def run_steps(job: Job, gate: Gate, base_env: Mapping[str, str]) -> Attempt:
    claim = missing_claim(job.paths.volumes)
    if claim is not None:
        return Attempt(FAILED, _no_claim(job, claim), [], {}, now())
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
    return Attempt(reason, message, steps, results, now())


def _no_claim(job: Job, claim: str) -> str:
    """A pod whose claim does not exist never starts on a cluster (it stays Pending)."""
    return (
        f'task "{job.task}": PersistentVolumeClaim "{claim}" does not exist: the local '
        f"executor keeps claims as folders, so create {job.paths.volumes.claims[claim]} with "
        "what the claim holds (a VolumeOp makes its own)"
    )


def _run_step(
    job: Job, step: StepJob, gate: Gate, base_env: Mapping[str, str], task_deadline: float | None
) -> tuple[StepOutcome, Stop | str | None, str]:
    """Run one step to its end; returns its outcome, what interrupted it, a start error."""
    outcome = StepOutcome(step.name, step.image, step.log, started=now())
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
    outcome.finished = now()
    if proc is None:
        outcome.exit_code = NOT_FOUND if error else 1
    else:
        code = proc.returncode
        outcome.exit_code = code if code >= 0 else 128 - code
    outcome.reason = _step_reason(step, outcome.exit_code, interrupt)
    return outcome, interrupt, error


def _working_dir(working_dir: str, paths: TaskPaths) -> Path:
    """A step's folder: its task folder by default; a container's /workspace/... maps into it,
    and so does a folder this machine lacks: the container runtime makes a missing workingDir."""
    if not working_dir:
        return paths.dir
    path = Path(working_dir)
    if path.is_absolute() and path.parts[1:2] != ("workspace",) and path.is_dir():
        return path
    local = paths.dir / (path.relative_to("/") if path.is_absolute() else path)
    local.mkdir(parents=True, exist_ok=True)
    return local


@dataclass(frozen=True)
class _StepDeadline:
    at: float | None  # time.monotonic() value
    kind: str  # STEP_TIMEOUT | TASK_TIMEOUT: which limit `at` is


def _step_deadline(step: StepJob, task_deadline: float | None) -> _StepDeadline:
    """The nearer of the step's own timeout and what is left of the task's."""
    if step.timeout:
        at = time.monotonic() + step.timeout
        if task_deadline is None or at < task_deadline:
            return _StepDeadline(at, STEP_TIMEOUT)
    return _StepDeadline(task_deadline, TASK_TIMEOUT)


def _step_reason(step: StepJob, exit_code: int, interrupt: Stop | str | None) -> str:
    if isinstance(interrupt, Stop):
        return "Cancelled"
    if interrupt in (STEP_TIMEOUT, TASK_TIMEOUT):
        return "TimeoutExceeded"
    if exit_code == 0:
        return "Completed"
    return "Continued" if step.on_error == "continue" else "Error"


def _step_failure(
    job: Job, step: StepJob, outcome: StepOutcome, interrupt: Stop | str | None, error: str
) -> tuple[str, str] | None:
    """(TaskRun reason, message) when this step ends the task, else None."""
    if isinstance(interrupt, Stop):
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
    if outcome.exit_code == NOT_FOUND:
        detail += (
            f"; a program it runs is not on this machine (it may come with its image "
            f'"{step.image}", which the local executor does not pull)'
        )
    return FAILED, (
        f'task "{job.task}": step "{step.name}" exited with code {outcome.exit_code}{detail}'
    )


def _read_results(job: Job) -> dict[str, str]:
    """Declared results whose files exist, content as written (Tekton keeps it as-is)."""
    results = {}
    for name in job.result_names:
        path = job.paths.results / name
        if path.is_file():
            results[name] = path.read_bytes().decode("utf-8", errors="replace")
    return results


def _results_failure(job: Job, results: Mapping[str, str]) -> tuple[str, str] | None:
    size = sum(len(v.encode()) for v in results.values())
    if size <= RESULTS_LIMIT:
        return None
    return RESULTS_TOO_LARGE, (
        f'task "{job.task}": results are {size} bytes, over Tekton\'s '
        f"{RESULTS_LIMIT}-byte limit for a TaskRun's results"
    )


def python_shim(workdir: Path) -> Path:
    """A folder with python/python3 that run this interpreter, put first on the steps' PATH:
    kfp's steps call `python3` from inside `sh -ec`, out of reach of argv translation."""
    folder = workdir / "_bin"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("python", "python3"):
        shim = folder / name
        shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
        shim.chmod(0o700)
    return folder
