"""Why a PipelineRun stops running work, in Tekton's words for the run, its TaskRuns and the
tasks it never started: cancellation, the three timeouts, and a failure that ends the run.

One record per cause, so the scheduler decides once and every step, custom task and skipped task
reports the same reason Tekton would.
"""

from __future__ import annotations

from dataclasses import dataclass

from localdsp.tekton.status import (
    FINALLY_TIMEOUT_SKIP,
    PIPELINE_TIMEOUT_SKIP,
    STOPPING_SKIP,
    TASKRUN_CANCELLED,
    TASKS_TIMEOUT_SKIP,
    format_duration,
)


@dataclass(frozen=True)
class Stop:
    """Why the scheduler stops running work, and what that makes of the run and its tasks."""

    run_reason: str
    run_message: str
    task_reason: str
    task_message: str
    skip_reason: str
    runs_finally: bool = False


def cancelled(name: str) -> Stop:
    return Stop(
        "Cancelled",
        f'PipelineRun "{name}" was cancelled',
        TASKRUN_CANCELLED,
        f'TaskRun cancelled as the PipelineRun "{name}" was cancelled',
        STOPPING_SKIP,
    )


def pipeline_timed_out(name: str, seconds: float) -> Stop:
    return Stop(
        "PipelineRunTimeout",
        f'PipelineRun "{name}" failed to finish within "{format_duration(seconds)}"',
        TASKRUN_CANCELLED,
        "TaskRun cancelled as the PipelineRun it belongs to has timed out.",
        PIPELINE_TIMEOUT_SKIP,
    )


def tasks_timed_out(name: str, seconds: float) -> Stop:
    return Stop(
        "PipelineRunTimeout",
        f'PipelineRun "{name}" tasks failed to finish within "{format_duration(seconds)}"',
        TASKRUN_CANCELLED,
        "TaskRun cancelled as the PipelineRun tasks timeout was reached.",
        TASKS_TIMEOUT_SKIP,
        runs_finally=True,
    )


def finally_timed_out(name: str, seconds: float) -> Stop:
    return Stop(
        "PipelineRunTimeout",
        f'PipelineRun "{name}" finally tasks failed to finish within "{format_duration(seconds)}"',
        TASKRUN_CANCELLED,
        "TaskRun cancelled as the PipelineRun finally timeout was reached.",
        FINALLY_TIMEOUT_SKIP,
    )


def run_failed(reason: str, message: str) -> Stop:
    return Stop(
        reason,
        message,
        TASKRUN_CANCELLED,
        f"TaskRun cancelled as the PipelineRun failed: {message}",
        STOPPING_SKIP,
    )
