"""Tekton's side of a custom task: the Run it creates for a pipeline task, handed to the plug-in.

The scheduler treats a custom task like any other task (dependencies, `when`, retries, skipping,
cancellation); only the attempt differs: instead of a pod, the plug-in that plays the custom
task's controller runs it in a worker thread, and its outcome comes back as an `Attempt`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

from localdsp.tekton.custom import RunContext, plugin_for
from localdsp.tekton.plan import PipelineTask, Plan
from localdsp.tekton.status import FAILED, now
from localdsp.tekton.steps import Attempt

log = logging.getLogger(__name__)


def make_context(
    plan: Plan,
    task: PipelineTask,
    params: Mapping[str, str | list[str]],
    *,
    env: Mapping[str, str],
    max_parallel: int,
    stopped: threading.Event,
    report: Callable[[dict], None],
) -> RunContext:
    """The Run Tekton would create for this attempt, with the local means to run it."""
    assert task.custom is not None
    return RunContext(
        task=task.name,
        run_name=plan.taskrun(task.name),
        custom=task.custom,
        params=dict(params),
        timeout=task.timeout,
        retries=task.retries,
        pipelinerun=plan.run.name,
        namespace=plan.run.namespace,
        labels=dict(plan.labels),
        annotations=dict(plan.annotations),
        workdir=plan.task_dir(task.name),
        env=env,
        max_parallel=max_parallel,
        stopped=stopped,
        report=report,
    )


def run_custom(context: RunContext) -> Attempt:
    """One attempt of a custom task (in a worker thread); never raises."""
    try:
        outcome = plugin_for(context.task, context.custom).run(context)
    except Exception as exc:
        log.exception("local executor: custom task %s crashed", context.task)
        return Attempt(FAILED, f'task "{context.task}": executor error: {exc!r}', [], {}, now())
    return Attempt(
        reason=outcome.reason,
        message=outcome.message,
        steps=[],
        results=dict(outcome.results),
        finished=now(),
        run_cancelled=outcome.cancelled,
        extra_fields=dict(outcome.extra_fields),
    )
