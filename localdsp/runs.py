"""`LocalExecutor`: localdsp's `RunExecutor`, running each run's PipelineRun on this machine.

Tekton and the persistence agent in one object: `start` hands the PipelineRun the server would
create to `localdsp.tekton.run.execute` in a daemon thread (one per run), each run in its own folder
`<data_dir>/runs/<run_id>/`, and reports every change as `on_status(reason, live_pipelinerun)`.
At most `max_runs` runs execute at once (the others wait, status `""`, as a PipelineRun waits for
a busy cluster), and each runs at most `max_parallel` tasks at once, so a deploy of many pipelines
cannot fork-bomb a laptop.

`terminate` sets the run's cancel event: the steps are stopped and the run ends `Cancelled`.
Between the terminate request and that end the server keeps the run `Terminating`, so progress
reports (`Running`) that arrive in between are not stored. `start` again with the same id (a
retry) waits for the earlier thread and runs the PipelineRun afresh in a clean folder.

Steps get this process's environment without the API credentials (`DSP_TOKEN`,
`LOCALDSP_TOKEN`, ...): pipeline code has no business with the token of whoever started the run.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from localdsp.tekton.names import pod_name
from localdsp.tekton.run import execute
from localdsp.tekton.status import Execution
from localdsp.tekton.volumes import CLAIMS_VARIABLE

log = logging.getLogger(__name__)

MAX_RUNS = 2  # runs executing at once
MAX_PARALLEL = 2  # tasks executing at once within one run
JOIN_TIMEOUT = 3.0  # seconds `close` waits for cancelled runs to end
# Never handed to pipeline steps: the API credentials of the server or of its caller.
SCRUBBED_ENV = frozenset({"DSP_TOKEN", "LOCALDSP_TOKEN", "KF_PIPELINES_TOKEN"})
IN_PROGRESS = frozenset({"", "Running", "Started", "Pending", "PipelineRunPending"})

StatusCallback = Callable[[str, dict], None]


@dataclass
class _RunState:
    thread: threading.Thread
    cancel: threading.Event
    workdir: Path
    execution: Execution | None = None
    live: dict = field(default_factory=dict)


class LocalExecutor:
    """Runs PipelineRuns as local processes for localdsp (see the module docstring).

    `read_log(run_id, node_id)`: `node_id` is the TaskRun name as it appears in the manifest's
    `status.taskRuns` / `childReferences` (`<pipelinerun>-<task>`), its pod (`<taskrun>-pod`,
    what DSP's UI passes) or the pipeline task's name;
    the text is that task's step logs in step order (one step: its log as is; several: each under
    a `--- step <name> ---` line). None if the run or task is unknown or has no log yet.
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        max_runs: int = MAX_RUNS,
        max_parallel: int = MAX_PARALLEL,
        timeout: float | None = None,
    ):
        self.runs_dir = Path(data_dir) / "runs"
        self.claims_dir = Path(data_dir) / "claims"  # the namespace's PersistentVolumeClaims
        self.max_parallel = max_parallel
        self.timeout = timeout
        self._slots = threading.BoundedSemaphore(max(1, max_runs))
        self._lock = threading.Lock()
        self._runs: dict[str, _RunState] = {}
        self._closed = False

    # ---- RunExecutor

    def start(self, run_id: str, pipelinerun: dict, on_status: StatusCallback) -> None:
        """Run `pipelinerun` in a new thread; a retry (same id) first waits for the old one."""
        with self._lock:
            if self._closed:
                return
            previous = self._runs.get(run_id)
            state = _RunState(
                thread=threading.Thread(
                    target=self._run,
                    args=(run_id, pipelinerun, on_status, previous),
                    name=f"localdsp-run-{run_id[:8]}",
                    daemon=True,
                ),
                cancel=threading.Event(),
                workdir=self.runs_dir / run_id,
            )
            self._runs[run_id] = state
        state.thread.start()

    def terminate(self, run_id: str) -> None:
        with self._lock:
            state = self._runs.get(run_id)
        if state is not None:
            state.cancel.set()

    def read_log(self, run_id: str, node_id: str) -> str | None:
        with self._lock:
            state = self._runs.get(run_id)
        logs = _task_logs(state, node_id) if state is not None else None
        if not logs:
            return None
        texts = [(step, _read(path)) for step, path in logs.items()]
        if len(texts) == 1:
            return texts[0][1]
        return "".join(f"--- step {step} ---\n{text}" for step, text in texts)

    # ---- life cycle

    def running(self) -> list[str]:
        """Ids of the runs whose thread is still alive (queued or executing)."""
        with self._lock:
            return [i for i, s in self._runs.items() if s.thread.is_alive()]

    def close(self, timeout: float = JOIN_TIMEOUT) -> None:
        """Cancel every run and wait up to `timeout` seconds for their threads to end.

        Runs started while this waits are refused; afterwards the executor takes runs again.
        """
        with self._lock:
            self._closed = True
            states = list(self._runs.values())
        for state in states:
            state.cancel.set()
        deadline = time.monotonic() + timeout
        for state in states:
            state.thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:  # usable again, for a server started anew
            self._runs = {k: s for k, s in self._runs.items() if s.thread.is_alive()}
            self._closed = False

    # ---- the worker

    def _run(
        self,
        run_id: str,
        pipelinerun: dict,
        on_status: StatusCallback,
        previous: _RunState | None,
    ) -> None:
        with self._lock:
            state = self._runs[run_id]
        if previous is not None:
            previous.cancel.set()
            previous.thread.join()

        def on_update(live: dict) -> None:
            reason = _reason(live)
            state.live = live
            # After a terminate the server shows Terminating until the run really ends.
            if state.cancel.is_set() and reason in IN_PROGRESS:
                return
            try:
                on_status(reason, live)
            except Exception:
                log.exception("localdsp: could not record the status of run %s", run_id)

        with self._slots:
            shutil.rmtree(state.workdir, ignore_errors=True)
            state.execution = execute(
                pipelinerun,
                workdir=state.workdir,
                timeout=self.timeout,
                cancel=state.cancel,
                on_update=on_update,
                max_parallel=self.max_parallel,
                env={**scrubbed_env(os.environ), CLAIMS_VARIABLE: str(self.claims_dir)},
            )


def scrubbed_env(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in SCRUBBED_ENV}


def _reason(live: dict) -> str:
    conditions = (live.get("status") or {}).get("conditions") or [{}]
    return str(conditions[0].get("reason", ""))


def _task_logs(state: _RunState, node_id: str) -> dict[str, Path] | None:
    execution = state.execution
    if execution is not None:
        for task in execution.tasks.values():
            if node_id in (task.taskrun, task.name, pod_name(task.taskrun, len(task.retries))):
                return task.logs
    # Still running, or a task inside a loop: the executor writes each step's log to
    # <workdir>/<task>/<step>.log, an iteration's under <loop task>/<iteration PipelineRun>/.
    return _logs_in(state.live.get("status") or {}, state.workdir, node_id, by_task=True)


def _logs_in(status: dict, folder: Path, node_id: str, *, by_task: bool) -> dict | None:
    """The step logs of TaskRun `node_id` (or its pod; at the top, its pipeline task) in this
    PipelineRun status, or in the iterations its loops (Runs) list."""
    for taskrun, entry in (status.get("taskRuns") or {}).items():
        task = str(entry.get("pipelineTaskName", ""))
        own = entry.get("status") or {}
        if node_id in (taskrun, own.get("podName")) or (by_task and node_id == task):
            steps = own.get("steps") or []
            paths = {s.get("name", ""): folder / task / f"{s.get('name', '')}.log" for s in steps}
            return {name: path for name, path in paths.items() if path.exists()} or None
    for run in (status.get("runs") or {}).values():
        extra = (run.get("status") or {}).get("extraFields") or {}
        for name, iteration in (extra.get("pipelineRuns") or {}).items():
            inner = folder / str(run.get("pipelineTaskName", "")) / name
            found = _logs_in(iteration.get("status") or {}, inner, node_id, by_task=False)
            if found:
                return found
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


if os.name != "posix":  # pragma: no cover - the executor needs process groups
    log.warning("localdsp: run execution is only supported on POSIX systems")
