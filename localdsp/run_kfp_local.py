"""`KfpLocalRunner`: localdsp's `RunnerV2`, executing v2 runs with kfp's own local engine.

Argo and the persistence agent of a DSP 2.x server, for one machine: `start` runs the run's IR in
a daemon thread (one per run) that starts `python -m localdsp.kfp_local_child` in a process group
of its own, in `<data_dir>/runs-v2/<run_id>/` (its `run.log` holds the steps' output, `root/` is
the pipeline root). kfp.local (SubprocessRunner, no venv per task) decides what runs: conditions,
loops, nested pipelines and exit handlers behave as kfp defines them. The child's events become
`RunReport`s: RUNNING with the tasks so far, then SUCCEEDED or FAILED with the error.

A separate process per run, because kfp.local keeps its configuration in process-global state,
and because terminating a run is then one process-group kill (SIGTERM, SIGKILL after a second),
whatever steps are running. A terminated run ends FAILED, as Argo ends a workflow whose deadline
the 2.5 server set to 0; the server shows CANCELING until then. At most `max_runs` runs execute at
once (the others stay PENDING); a retry (`start` again, same id) waits for the earlier attempt and
runs afresh in a cleaned folder. The child's environment has no API credential (`DSP_TOKEN`,
`LOCALDSP_TOKEN`, nor any variable with TOKEN in its name): pipeline code has no business with
them.

Nothing here imports kfp: the server process stays free of kfp.local's global state, and a Python
without kfp 2 (`available()` is False) simply gets no runner.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import localdsp
from localdsp.models_v2 import RunReport, RunV2, TaskDetailV2
from localdsp.runs import SCRUBBED_ENV

log = logging.getLogger(__name__)

MAX_RUNS = 2  # runs executing at once
KILL_GRACE = 1.0  # seconds between SIGTERM and SIGKILL of a terminated run's process group
JOIN_TIMEOUT = 3.0  # seconds `close` waits for the runs' threads
TERMINATED = "Run terminated: localdsp stopped its kfp.local process group"

Report = Callable[[RunReport], None]


def available() -> bool:
    """Whether this Python has kfp 2's local engine (kfp 1.8 has no `kfp.local`)."""
    try:
        return importlib.util.find_spec("kfp.local") is not None
    except (ImportError, ValueError):
        return False


def child_env(env: Mapping[str, str]) -> dict[str, str]:
    """This environment without credentials, with this localdsp importable in the child."""
    kept = {k: v for k, v in env.items() if k not in SCRUBBED_ENV and "TOKEN" not in k.upper()}
    source = str(Path(localdsp.__file__).resolve().parent.parent)
    kept["PYTHONPATH"] = os.pathsep.join(p for p in (source, kept.get("PYTHONPATH", "")) if p)
    return kept


@dataclass
class _Attempt:
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    process: subprocess.Popen | None = None


class KfpLocalRunner:
    """Executes v2 runs with kfp.local, one process group per run (see the module docstring)."""

    def __init__(self, data_dir: str | Path, *, max_runs: int = MAX_RUNS):
        self.runs_dir = Path(data_dir).resolve() / "runs-v2"  # each child runs in its own cwd
        self._slots = threading.BoundedSemaphore(max(1, max_runs))
        self._lock = threading.Lock()
        self._attempts: dict[str, _Attempt] = {}

    def start(self, run: RunV2, spec: dict, on_report: Report) -> None:
        """Run `spec` in a new thread; a retry (same id) first ends and awaits the old one."""
        attempt = _Attempt()
        with self._lock:
            previous = self._attempts.get(run.id)
            self._attempts[run.id] = attempt
        attempt.thread = threading.Thread(
            target=self._execute,
            args=(run, spec, on_report, attempt, previous),
            name=f"localdsp-v2-run-{run.id[:8]}",
            daemon=True,
        )
        attempt.thread.start()

    def terminate(self, run_id: str) -> None:
        with self._lock:
            attempt = self._attempts.get(run_id)
            if attempt is None:
                return
            attempt.cancel.set()
            process = attempt.process
        if process is not None:
            _kill(process)

    def close(self, timeout: float = JOIN_TIMEOUT) -> None:
        """Stop every run and wait up to `timeout` seconds for their threads."""
        with self._lock:
            run_ids = list(self._attempts)
        for run_id in run_ids:
            self.terminate(run_id)
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = [a.thread for a in self._attempts.values() if a.thread is not None]
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _execute(
        self,
        run: RunV2,
        spec: dict,
        on_report: Report,
        attempt: _Attempt,
        previous: _Attempt | None,
    ) -> None:
        if previous is not None and previous.thread is not None:
            previous.thread.join()
        tracker = _Tracker(run.id, on_report)
        with self._slots:
            if attempt.cancel.is_set():
                tracker.report(RunReport("FAILED", error=TERMINATED))
                return
            workdir = self.runs_dir / run.id
            shutil.rmtree(workdir, ignore_errors=True)
            workdir.mkdir(parents=True)
            job = {"spec": spec, "arguments": json.loads(run.parameters or "{}")}
            (workdir / "job.json").write_text(json.dumps(job))
            code = self._run_child(workdir, attempt, tracker)
        tracker.finish(code, attempt.cancel.is_set(), workdir / "run.log")

    def _run_child(self, workdir: Path, attempt: _Attempt, tracker: _Tracker) -> int:
        """Start the child, feed its events to `tracker` until it exits; its exit code."""
        read_fd, write_fd = os.pipe()
        try:
            with open(workdir / "run.log", "wb") as output:
                process = subprocess.Popen(
                    [sys.executable, "-m", "localdsp.kfp_local_child", str(workdir), str(write_fd)],
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    env=child_env(os.environ),
                    cwd=workdir,
                    pass_fds=(write_fd,),
                    start_new_session=True,
                )
        finally:
            os.close(write_fd)
        with self._lock:
            attempt.process = process
            cancelled = attempt.cancel.is_set()
        if cancelled:
            _kill(process)
        with open(read_fd, encoding="utf-8") as events:
            for line in events:
                with contextlib.suppress(ValueError):
                    tracker.event(json.loads(line))
        return process.wait()


class _Tracker:
    """The child's events as RunReports: the tasks in start order, the final state."""

    def __init__(self, run_id: str, on_report: Report):
        self.run_id = run_id
        self.on_report = on_report
        self.tasks: dict[str, TaskDetailV2] = {}
        self.end: RunReport | None = None

    def event(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "task":
            self.tasks[event["id"]] = TaskDetailV2(
                task_id=event["id"],
                name=event["name"],
                state=event["state"],
                start_time=event["start"],
                end_time=event.get("end", 0),
                output_parameters=event.get("outputs") or {},
                error=event.get("error", ""),
            )
            self.report(RunReport("RUNNING", tuple(self.tasks.values())))
        elif kind == "run":
            self.report(RunReport(event["state"], tuple(self.tasks.values())))
        elif kind == "end":
            self.end = RunReport(event["state"], tuple(self.tasks.values()), event["error"])

    def finish(self, code: int, terminated: bool, output: Path) -> None:
        """The final report; tasks still running when the run was stopped end FAILED."""
        if self.end is not None and not terminated:
            self.report(self.end)
            return
        error = TERMINATED
        if not terminated:
            error = (
                f"localdsp: the kfp.local process of run {self.run_id} exited with code {code} "
                f"before the run ended; its output is in {output}"
            )
        now = int(time.time())
        tasks = tuple(
            replace(t, state="FAILED", end_time=now, error=error) if t.state == "RUNNING" else t
            for t in self.tasks.values()
        )
        self.report(RunReport("FAILED", tasks, error))

    def report(self, report: RunReport) -> None:
        """Hand the report to the server; a deleted run or a stopped server drops it."""
        try:
            self.on_report(report)
        except Exception as err:
            log.debug("localdsp: report on v2 run %s dropped: %s", self.run_id, err)


def _kill(process: subprocess.Popen) -> None:
    """SIGTERM the run's process group, then SIGKILL whatever of it is left after KILL_GRACE."""
    _signal_group(process, signal.SIGTERM)
    timer = threading.Timer(KILL_GRACE, _signal_group, (process, signal.SIGKILL))
    timer.daemon = True
    timer.start()


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)
