"""The PipelineLoop controller (kfp-tekton 1.5.x) as a plug-in: `dsl.ParallelFor`, kfp-tekton's
`Loop`s and `@dsl.graph_component` recursion run here as they run on the cluster.

The controller runs each iteration as a PipelineRun of the loop's `pipelineSpec` named
`<run>-<00001>-<random>`, at most `parallelism` at once (default 1: one after the other), and
stops starting iterations once one failed; the Run fails when the last running one ended. Its
results are only `last-idx`, `last-elem` and `condition` (no outputs of the iterations: those stay
in the iteration PipelineRuns, which the Run's `extraFields.pipelineRuns` lists with their status,
as the persistence agent stores them). A task named `pipelineloop-break-operation*` (kfp-tekton's
`Break()`, a `BreakTask` that simply succeeds) ends the loop early: the running iterations are
cancelled and the Run succeeds with `condition=pass`. A loop whose pipeline holds another loop
passes `maxNestedStackDepth - 1` down (default 30); at 0 the Run fails
`NestedCallStackLimitExceeded`, which is how endless recursion ends on the cluster. A loop named
by `taskRef` (recursion) is read from the PipelineRun's `tekton.dev/resource_templates`, the
PipelineLoop objects the DSP API server creates for the run.

Here each iteration PipelineRun is executed by this same executor in a thread, in the Run's
folder; cancelling the PipelineRun cancels them. Differences: the controller's result cache is off
(as its default config has it) and retries re-run the failed iteration.
"""

from __future__ import annotations

import copy
import logging
import secrets
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from localdsp.tekton import loop_objects
from localdsp.tekton.custom import CustomTask, RunContext, RunOutcome
from localdsp.tekton.loop_iterations import (
    IterationError,
    go_json,
    go_text,
    iteration_params,
    iterations,
)
from localdsp.tekton.status import SUCCESS_REASONS, Execution
from localdsp.tekton.validation import RunError

log = logging.getLogger(__name__)

GROUP = "custom.tekton.dev"
BREAK_PREFIX = "pipelineloop-break-operation"
DEPTH_KEY = "maxNestedStackDepth"
DEFAULT_DEPTH = 30
ITERATION_LIMIT = 10000
POLL = 0.05
_DROPPED_LABELS = (
    "tekton.dev/pipelineRun",
    "tekton.dev/pipelineTask",
    "tekton.dev/pipeline",
    f"{GROUP}/pipelineLoopIteration",
    "pipeline/runid",  # the persistence agent's run id must stay unique to the run
)
_SUFFIX = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io utilrand: what Tekton draws name suffixes from


class LoopFailure(Exception):
    """The controller marks the Run failed at once with this reason."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass
class Loop:
    """The PipelineLoop a Run runs: its name, spec and metadata (pipelineLoopMeta)."""

    name: str
    spec: dict
    labels: dict[str, str]
    annotations: dict[str, str]
    shared: dict | None = None  # the PipelineLoop object of a loop named by taskRef


class PipelineLoopPlugin:
    """custom.tekton.dev/v1alpha1 PipelineLoop."""

    def check(self, task: str, custom: CustomTask) -> None:
        """A loop over a Pipeline fetched by reference cannot run locally; refuse it by name."""
        if (custom.spec.get("pipelineRef") or {}).get("name"):
            raise RunError(
                "PipelineValidationFailed",
                f'task "{task}" is a PipelineLoop over pipelineRef '
                f'"{custom.spec["pipelineRef"]["name"]}"; the local executor runs only loops '
                "with an embedded pipelineSpec",
            )

    def run(self, context: RunContext) -> RunOutcome:
        try:
            loop = _loop_of(context)
            count, items = _iterations(context, loop)
        except LoopFailure as failure:
            return RunOutcome(failure.reason, failure.message)
        return _LoopRun(context, loop, count, items).run()


class BreakTaskPlugin:
    """custom.tekton.dev/v1alpha1 BreakTask: the loop's controller marks it done at once; the
    loop notices it in the iteration's status and stops."""

    def check(self, task: str, custom: CustomTask) -> None:
        """Any spec will do: the controller reads none of it."""

    def run(self, context: RunContext) -> RunOutcome:
        return RunOutcome("Succeeded", "Break task is a dummy task.")


PIPELINE_LOOP = PipelineLoopPlugin()
BREAK_TASK = BreakTaskPlugin()


def _loop_of(context: RunContext) -> Loop:
    """The embedded spec, or the PipelineLoop object a taskRef names (getPipelineLoop)."""
    custom = context.custom
    if not custom.ref_name:
        metadata = custom.metadata
        return Loop(
            name=context.run_name,
            spec=copy.deepcopy(custom.spec),
            labels=dict(metadata.get("labels") or {}),
            annotations=dict(metadata.get("annotations") or {}),
        )
    shared = loop_objects.get(context, custom.ref_name)
    if shared is None:
        raise LoopFailure(
            "CouldntGetPipelineLoop",
            f"Error retrieving PipelineLoop for Run {context.namespace}/{context.run_name}: "
            f'pipelineloops.{GROUP} "{custom.ref_name}" not found',
        )
    with loop_objects.LOCK:
        metadata = copy.deepcopy(shared.get("metadata") or {})
        spec = copy.deepcopy(shared.get("spec") or {})
    return Loop(
        name=custom.ref_name,
        spec=spec,
        labels=dict(metadata.get("labels") or {}),
        annotations=dict(metadata.get("annotations") or {}),
        shared=shared,
    )


def _iterations(context: RunContext, loop: Loop) -> tuple[int, list]:
    """Defaults, validation and the iterations, failing the Run as the controller does."""
    spec = loop.spec
    if not spec.get("parallelism"):
        spec["parallelism"] = 1
    where = f"PipelineLoop {context.namespace}/{loop.name} can't be Run; it has an invalid spec"
    if not isinstance(spec["parallelism"], int) or spec["parallelism"] < 1:
        raise LoopFailure(
            "PipelineLoopValidationFailed",
            f"{where}: invalid value: {spec['parallelism']}: spec.Parallelism",
        )
    if not isinstance(spec.get("pipelineSpec"), dict):
        raise LoopFailure(
            "PipelineLoopValidationFailed",
            f"{where}: expected exactly one, got neither: spec.pipelineRef, spec.pipelineSpec",
        )
    try:
        count, items = iterations(context.params, spec)
    except IterationError as err:
        raise LoopFailure(
            "PipelineLoopValidationFailed", f"Cannot determine number of iterations: {err}"
        ) from err
    if count > ITERATION_LIMIT:
        raise LoopFailure(
            "PipelineLoopValidationFailed",
            f"Total number of iterations exceeds the limit: {ITERATION_LIMIT}",
        )
    return count, items


@dataclass
class _Iteration:
    number: int
    name: str
    cancel: threading.Event
    future: Future | None = None
    status: dict = field(default_factory=dict)


class _LoopRun:
    """One Run of a PipelineLoop: starts iteration PipelineRuns and watches them."""

    def __init__(self, context: RunContext, loop: Loop, count: int, items: list):
        self.context, self.loop, self.count, self.items = context, loop, count, items
        self.parallelism = min(loop.spec["parallelism"], max(count, 1))
        self.lock = threading.Lock()
        self.iterations: dict[str, _Iteration] = {}
        self.running: list[_Iteration] = []
        self.failed: list[str] = []
        self.broke = False
        self.highest = 0
        self.retries_done = 0
        self.changed = True  # something to report in the Run's extraFields
        self.deadline = time.monotonic() + context.timeout if context.timeout else None

    def run(self) -> RunOutcome:
        """The controller's reconcile loop, from the first iteration to the Run's end."""
        pool = ThreadPoolExecutor(self.parallelism, thread_name_prefix="localdsp-loop")
        try:
            return self._loop(pool)
        except LoopFailure as failure:
            self._cancel_all()
            self._wait_all()
            return self._outcome(failure.reason, failure.message)
        finally:
            self._cancel_all()
            pool.shutdown(wait=True)

    def _loop(self, pool: ThreadPoolExecutor) -> RunOutcome:
        upcoming = 1
        while True:
            self._reap()
            stop = self._stop_reason()
            if stop is not None:
                return self._stopped(stop)
            if self.broke:
                self._cancel_all()
                self._wait_all()
                message = "PipelineRuns completed successfully with the conditions are met"
                return self._outcome("Succeeded", message, condition="pass")
            if self.failed:
                if self.retries_done < self.context.retries and self._retry(pool):
                    continue
                if not self.running:
                    return self._outcome("Failed", f"PipelineRun {self.failed[0]} has failed")
            elif upcoming > self.count and not self.running:
                message = "All PipelineRuns completed successfully"
                return self._outcome("Succeeded", message, condition="succeeded")
            while not self.failed and upcoming <= self.count and self._has_room():
                self._start(pool, upcoming)
                upcoming += 1
            self._report()
            futures = [i.future for i in self.running if i.future is not None]
            if futures:
                wait(futures, timeout=POLL, return_when=FIRST_COMPLETED)
            else:
                self.context.stopped.wait(POLL)

    def _has_room(self) -> bool:
        return len(self.running) < self.parallelism

    # ---- iterations

    def _start(self, pool: ThreadPoolExecutor, number: int) -> None:
        """Create the PipelineRun of iteration `number` and run it in a worker."""
        self._check_depth()
        item = self.items[min(number, len(self.items)) - 1]
        base = f"{self.context.run_name}-{number:05d}"[:57]
        name = f"{base}-{''.join(secrets.choice(_SUFFIX) for _ in range(5))}"
        pipelinerun = self._pipelinerun(name, number, item)
        iteration = _Iteration(number, name, threading.Event())
        iteration.status = {"iteration": number, "iterationItem": item, "status": {}}
        with self.lock:
            self.iterations[name] = iteration
            self.changed = True
        self.running.append(iteration)
        self.highest = max(self.highest, number)
        iteration.future = pool.submit(self._execute, iteration, pipelinerun)

    def _pipelinerun(self, name: str, number: int, item: object) -> dict:
        """The iteration's PipelineRun (createPipelineRun): the Run's labels and annotations
        passed down, the iteration's params, the loop's pipelineSpec, timeout and workspaces."""
        context, spec = self.context, self.loop.spec
        labels = {
            **context.labels,
            **self.loop.labels,
            f"{GROUP}/pipelineLoop": self.loop.name,
        }
        labels = {k: v for k, v in labels.items() if k not in _DROPPED_LABELS}
        labels.update(
            {
                "tekton.dev/run": context.run_name,
                f"{GROUP}/pipelineLoopIteration": str(number),
                f"{GROUP}/parentPipelineRun": context.pipelinerun,
                f"{GROUP}/originalPipelineRun": context.labels.get(
                    f"{GROUP}/originalPipelineRun", context.pipelinerun
                ),
            }
        )
        annotations = {
            **context.annotations,
            **self.loop.annotations,
            f"{GROUP}/pipelineLoopCurrentIterationItem": go_json(item),
        }
        run_spec: dict = {
            "params": iteration_params(context.params, spec, number, item),
            "pipelineSpec": copy.deepcopy(spec["pipelineSpec"]),
        }
        if spec.get("timeout"):
            run_spec["timeout"] = spec["timeout"]
        if spec.get("workspaces"):
            run_spec["workspaces"] = copy.deepcopy(spec["workspaces"])
        self._pass_depth(run_spec["pipelineSpec"])
        return {
            "apiVersion": "tekton.dev/v1beta1",
            "kind": "PipelineRun",
            "metadata": {
                "name": name,
                "namespace": context.namespace,
                "labels": labels,
                "annotations": annotations,
            },
            "spec": run_spec,
        }

    def _execute(self, iteration: _Iteration, pipelinerun: dict) -> Execution:
        """Run one iteration to its end (in a worker), recording its live status."""
        from localdsp.tekton.run import execute  # the executor runs the plug-in: import late

        return execute(
            pipelinerun,
            workdir=self.context.workdir / iteration.name,
            cancel=iteration.cancel,
            on_update=lambda live: self._observe(iteration, live),
            max_parallel=self.context.max_parallel,
            env=self.context.env,
        )

    def _observe(self, iteration: _Iteration, live: dict) -> None:
        """An iteration's status changed: keep it (without its pipelineSpec, as the controller
        stores it) and see whether a break task has finished in it."""
        status = {k: v for k, v in (live.get("status") or {}).items() if k != "pipelineSpec"}
        with self.lock:
            iteration.status["status"] = status
            self.changed = True
            if _broke(status):
                self.broke = True

    def _reap(self) -> None:
        """Take in the iterations that ended; a failed one stops the loop from going on."""
        for iteration in list(self.running):
            if iteration.future is None or not iteration.future.done():
                continue
            self.running.remove(iteration)
            try:
                execution = iteration.future.result()
            except Exception as exc:  # the executor does not raise; a bug should not hang
                log.exception("local PipelineLoop: iteration %s crashed", iteration.name)
                self.failed.append(f"{iteration.name} ({exc!r})")
                continue
            if execution.reason not in SUCCESS_REASONS and not self.broke:
                self.failed.append(iteration.name)

    def _retry(self, pool: ThreadPoolExecutor) -> bool:
        """Run a failed iteration again (the Run's retries), once the others have ended."""
        if self.running:
            return False
        failed = self.failed.pop(0)
        number = next(i.number for n, i in self.iterations.items() if failed.startswith(n))
        self.retries_done += 1
        self._start(pool, number)
        return True

    # ---- stopping

    def _stop_reason(self) -> str | None:
        if self.context.stopped.is_set():
            return "PipelineLoopRunCancelled"
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return "RunTimedOut"
        return None

    def _stopped(self, reason: str) -> RunOutcome:
        """Cancelled (or timed out): cancel the iterations; failed ones make the Run Failed."""
        self._cancel_all()
        self._wait_all()
        where = f"{self.context.namespace}/{self.context.run_name}"
        if self.failed:
            return self._outcome("Failed", f"Run {where} was failed", cancelled=True)
        return self._outcome(reason, f"Run {where} was cancelled", cancelled=True)

    def _cancel_all(self) -> None:
        for iteration in self.running:
            iteration.cancel.set()

    def _wait_all(self) -> None:
        futures = [i.future for i in self.running if i.future is not None]
        wait(futures)
        self.running.clear()

    def _check_depth(self) -> None:
        """A loop that holds loops may only nest so deep (maxNestedStackDepth, default 30)."""
        if _nested_loops(self.loop.spec) and self._depth() <= 0:
            raise LoopFailure("NestedCallStackLimitExceeded", "nested stack depth limit reached.")

    def _depth(self) -> int:
        annotations = self.loop.annotations
        if self.loop.shared is not None:
            with loop_objects.LOCK:
                annotations = (self.loop.shared.get("metadata") or {}).get("annotations") or {}
        try:
            return int(annotations.get(DEPTH_KEY, DEFAULT_DEPTH))
        except ValueError:
            return DEFAULT_DEPTH

    def _pass_depth(self, pipeline_spec: dict) -> None:
        """setMaxNestedStackDepth: each inner loop gets this loop's depth - 1 (an embedded one
        in its spec's metadata, one named by taskRef on its PipelineLoop object)."""
        if not _nested_loops(self.loop.spec):
            return
        depth = str(self._depth() - 1)
        for task in pipeline_spec.get("tasks") or []:
            spec, ref = task.get("taskSpec") or {}, task.get("taskRef") or {}
            if spec.get("kind") == "PipelineLoop":
                spec.setdefault("metadata", {})["annotations"] = {DEPTH_KEY: depth}
            elif ref.get("kind") == "PipelineLoop":
                shared = loop_objects.get(self.context, str(ref.get("name", "")))
                if shared is not None:
                    with loop_objects.LOCK:
                        metadata = shared.setdefault("metadata", {})
                        metadata.setdefault("annotations", {})[DEPTH_KEY] = depth

    # ---- status

    def _extra_fields(self) -> dict:
        with self.lock:
            runs = {n: copy.deepcopy(i.status) for n, i in self.iterations.items()}
        return {
            "pipelineLoopSpec": copy.deepcopy(self.loop.spec),
            "currentRunning": len(self.running),
            "pipelineRuns": runs,
        }

    def _report(self) -> None:
        """Publish the extraFields when an iteration started, ended or changed."""
        with self.lock:
            changed, self.changed = self.changed, False
        if changed:
            self.context.report(self._extra_fields())

    def _outcome(
        self, reason: str, message: str, *, condition: str = "", cancelled: bool = False
    ) -> RunOutcome:
        results = {}
        if self.highest > 0:
            results["last-idx"] = str(self.highest)
            results["last-elem"] = go_text(self.items[min(self.highest, len(self.items)) - 1])
        if condition:
            results["condition"] = condition
        return RunOutcome(reason, message, results, self._extra_fields(), cancelled)


def _nested_loops(spec: dict) -> bool:
    """isNestedPipelineLoop: does the loop's pipeline hold a PipelineLoop task?"""
    for task in (spec.get("pipelineSpec") or {}).get("tasks") or []:
        kind = (task.get("taskSpec") or {}).get("kind") or (task.get("taskRef") or {}).get("kind")
        if kind == "PipelineLoop":
            return True
    return False


def _broke(status: dict) -> bool:
    """A break task (TaskRun or Run) of this iteration has finished."""
    for group in ("taskRuns", "runs"):
        for child in (status.get(group) or {}).values():
            if str(child.get("pipelineTaskName", "")).startswith(BREAK_PREFIX):
                conditions = (child.get("status") or {}).get("conditions") or [{}]
                if conditions[0].get("status") in ("True", "False"):
                    return True
    return False
