"""The scheduler: walks a PipelineRun's DAG the way the Tekton controller does.

Dependencies, `when` expressions, `finally`, retries, timeouts and cancellation are decided here,
on the caller's thread, which owns all state; worker threads only run steps (or custom tasks).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import datetime

from localdsp.tekton import stops
from localdsp.tekton.custom_run import make_context, run_custom
from localdsp.tekton.jobs import build_job
from localdsp.tekton.plan import (
    PipelineTask,
    Plan,
    pipeline_values,
    resolve_pipeline_task,
    when_holds,
)
from localdsp.tekton.programs import watches_the_run
from localdsp.tekton.status import (
    FAILED,
    MISSING_RESULTS_SKIP,
    PARENT_SKIP,
    RUNNING,
    SKIPPED,
    STOPPING_SKIP,
    SUCCEEDED,
    TASKRUN_CANCELLED,
    WHEN_SKIP,
    Execution,
    StepOutcome,
    TaskOutcome,
    now,
    pipelinerun_with_status,
    write_live_status,
)
from localdsp.tekton.steps import Attempt, Gate, python_shim, run_job
from localdsp.tekton.stops import Stop
from localdsp.tekton.substitution import Unresolved, substitute
from localdsp.tekton.validation import RunError
from localdsp.tekton.volumes import CLAIMS_VARIABLE

log = logging.getLogger(__name__)

SCHEDULER_POLL = 0.05


@dataclass(frozen=True)
class _Deadline:
    at: float | None  # time.monotonic() value
    stop: Stop | None


@dataclass(frozen=True)
class _Admission:
    """A ready task's fate: run with these params, or skip for a reason."""

    params: dict[str, str]
    when: list[dict]
    skip: str | None = None


class Scheduler:
    """The scheduler: runs on the caller's thread, owns all state; workers only run steps."""

    def __init__(
        self,
        plan: Plan,
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
        self.gate = Gate()
        self.started = now()
        self.started_at = time.monotonic()
        self.finally_started: datetime | None = None
        self.outcomes: dict[str, TaskOutcome] = {}
        self.params: dict[str, dict[str, str]] = {}
        self.futures: dict[Future, str] = {}
        self.interrupt: Stop | None = None  # the first stop: decides the run's reason
        self.images: list[str] = []
        self.dirty = False
        self.base_env = dict(env)
        shim = python_shim(plan.workdir)
        self.base_env["PATH"] = os.pathsep.join([str(shim), env.get("PATH", "")])
        self.base_env[CLAIMS_VARIABLE] = str(plan.claim(""))
        # Tasks that wait for others (any-sequencers) take no slot, or two could starve the run.
        self.watchers = {n for n, t in plan.tasks.items() if watches_the_run(t.task_spec)}
        workers = self.max_parallel + len(self.watchers)
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="localdsp-task")
        self.reports: dict[str, dict] = {}  # custom task → extraFields it reported, not yet shown
        self.reports_lock = threading.Lock()

    def run(self) -> Execution:
        """Schedule everything, then report; a bug ends the run Failed instead of raising."""
        try:
            self._publish()
            self._phase(
                self.plan.dag, self._deadline(self.plan.timeouts.tasks, stops.tasks_timed_out)
            )
            self._finally()
        except Exception as exc:
            log.exception("local executor: run %s crashed", self.plan.run.name)
            self.interrupt = stops.run_failed(FAILED, f"executor error: {exc!r}")
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
                finished=now(),
                tasks=dict(self.outcomes),
            )
        self._notify(execution)
        return execution

    # ---- phases

    def _deadline(self, seconds: float, stop: Callable[[str, float], Stop]) -> _Deadline:
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
            self.finally_started = now()
        self._phase(
            self.plan.final, self._deadline(self.plan.timeouts.finally_, stops.finally_timed_out)
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
        moment = time.monotonic()
        if self.cancel.is_set():
            self._halt(stops.cancelled(self.plan.run.name))
        elif (
            self.plan.timeouts.pipeline and moment >= self.started_at + self.plan.timeouts.pipeline
        ):
            self._halt(stops.pipeline_timed_out(self.plan.run.name, self.plan.timeouts.pipeline))
        elif deadline.at is not None and deadline.stop is not None and moment >= deadline.at:
            self._halt(deadline.stop)

    def _halt(self, stop: Stop) -> None:
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
                if admission.skip is None and self._busy(name) >= self.max_parallel:
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

    def _busy(self, name: str) -> int:
        """Slots taken, as `name` would see them: watchers neither take nor wait for one."""
        if name in self.watchers:
            return 0
        return sum(task not in self.watchers for task in self.futures.values())

    def _admit(self, task: PipelineTask) -> _Admission | None:
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
        params, when = resolve_pipeline_task(task, self._values(task))
        return _Admission(params, when, None if when_holds(when) else WHEN_SKIP)

    def _stopping(self) -> bool:
        return any(
            self.outcomes[n].failed or self.outcomes[n].cancelled
            for n in self.plan.dag
            if n in self.outcomes
        )

    def _missing_results(self, task: PipelineTask) -> bool:
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
                self._halt(stops.run_failed("InvalidTaskResultReference", message))
                return True
        return False

    def _values(self, task: PipelineTask) -> dict[tuple[str, ...], str]:
        results = {n: o.results for n, o in self.outcomes.items() if o.reason == SUCCEEDED}
        statuses = None
        if task.is_finally:
            statuses = {n: self._task_status(n) for n in self.plan.dag}
        return pipeline_values(self.plan, results, statuses)

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

    def _start(self, task: PipelineTask, admission: _Admission, retry: int = 0) -> None:
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
        outcome.started, outcome.finished, outcome.results = now(), None, {}
        self.outcomes[task.name] = outcome
        self.params[task.name] = admission.params
        self.dirty = True
        if task.custom is not None:
            self._start_custom(task, outcome, admission.params)
            return
        try:
            job = build_job(self.plan, task, admission.params, retry)
        except (RunError, Unresolved) as err:
            self._complete(outcome, Attempt(FAILED, f'task "{task.name}": {err}', [], {}, now()))
            return
        outcome.steps = [StepOutcome(s.name, s.image, s.log) for s in job.steps]
        self.futures[self.pool.submit(run_job, job, self.gate, self.base_env)] = task.name

    def _start_custom(self, task: PipelineTask, outcome: TaskOutcome, params: dict) -> None:
        """Hand the Run Tekton would create to the custom task's plug-in, in a worker."""
        outcome.kind, outcome.steps = "Run", []
        outcome.message = ""

        def report(extra_fields: dict) -> None:
            with self.reports_lock:
                self.reports[task.name] = extra_fields

        context = make_context(
            self.plan,
            task,
            params,
            env=self.base_env,
            max_parallel=self.max_parallel,
            stopped=self.gate.stopped,
            report=report,
        )
        self.futures[self.pool.submit(run_custom, context)] = task.name

    def _take_reports(self) -> None:
        """Show what running custom tasks reported (their Runs' extraFields) in the status."""
        with self.reports_lock:
            reports, self.reports = self.reports, {}
        for name, extra_fields in reports.items():
            outcome = self.outcomes.get(name)
            if outcome is not None and outcome.reason == RUNNING:
                outcome.extra_fields = extra_fields
                self.dirty = True

    # ---- finishing tasks

    def _collect(self, timeout: float) -> None:
        if not self.futures:
            return
        done, _ = wait(list(self.futures), timeout=timeout, return_when=FIRST_COMPLETED)
        self._take_reports()
        for future in done:
            self._record(self.futures.pop(future), future.result())

    def _drain(self) -> None:
        """Let running workers end (they see the gate) and record them, whatever happened."""
        if self.futures and self.gate.stop is None:
            self.gate.close(self.interrupt or stops.run_failed(FAILED, "executor stopped"))
        for future, name in list(self.futures.items()):
            with contextlib.suppress(Exception):
                self._record(name, future.result())
        self.futures.clear()

    def _record(self, name: str, attempt: Attempt) -> None:
        outcome = self.outcomes[name]
        task = self.plan.tasks[name]
        retry = len(outcome.retries)
        if (
            attempt.reason not in (SUCCEEDED, TASKRUN_CANCELLED)
            and not attempt.run_cancelled
            and retry < task.retries
            and task.custom is None  # a Run's controller does its own retries
            and self.gate.stop is None
        ):
            self._complete(outcome, attempt)
            outcome.retries.append(replace(outcome, retries=[]))
            self._keep_attempt_logs(outcome.retries[-1], retry)
            self._start(task, _Admission(self.params[name], outcome.when), retry + 1)
            return
        self._complete(outcome, attempt)

    def _complete(self, outcome: TaskOutcome, attempt: Attempt) -> None:
        outcome.reason, outcome.message = attempt.reason, attempt.message
        outcome.results, outcome.finished = attempt.results, attempt.finished
        outcome.run_cancelled = attempt.run_cancelled
        if attempt.extra_fields:
            outcome.extra_fields = attempt.extra_fields
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
        if self.on_update is None and not self.watchers:
            return
        live = pipelinerun_with_status(self.pipelinerun, execution)
        if self.watchers:  # only they read it, and rendering a large run costs
            write_live_status(self.plan.workdir, live)
        if self.on_update is None:
            return
        try:
            self.on_update(live)
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
        return self._snapshot(reason, message, now())

    def _counts_message(self, *, done: bool) -> str:
        """Tekton's wording: "Tasks Completed: 2 (Failed: 0, Cancelled 0), Skipped: 0"."""
        outcomes = list(self.outcomes.values())
        skipped = sum(o.reason == SKIPPED for o in outcomes)
        cancelled = sum(o.cancelled for o in outcomes)
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
        values = pipeline_values(
            self.plan,
            {n: o.results for n, o in self.outcomes.items() if o.reason == SUCCEEDED},
            None,
        )
        results = {}
        for result in self.plan.results:
            with contextlib.suppress(Unresolved):
                results[str(result["name"])] = substitute(str(result.get("value", "")), values)
        return results
