"""DSP 1.x run states: the Tekton PipelineRun reasons the kfp-tekton server reports.

kfp's own waits cannot be used: `kfp.Client.wait_for_run_completion` never stops on `Completed`
(a run with skipped tasks) and `TektonClient.wait_for_run_completion` 1.5.10 always raises. The
server's final-state list, and Tekton's own failure reasons it leaves out, are in
../shared/reference/kfp-v1-api.md §2.6: anything neither a success nor in progress is a failure.
"""

from __future__ import annotations

from runner.server import FAILED, RUNNING, SUCCESS

SUCCEEDED = frozenset({"Succeeded", "Completed"})
IN_PROGRESS = frozenset(
    {
        "",
        "Running",
        "Started",
        "Pending",
        "PipelineRunPending",
        "PipelineRunStopping",
        "Terminating",
    }
)


def outcome_of(status: str) -> str:
    """success, running, or failed: anything that is neither is a terminal failure."""
    if status in SUCCEEDED:
        return SUCCESS
    if status in IN_PROGRESS:
        return RUNNING
    return FAILED
