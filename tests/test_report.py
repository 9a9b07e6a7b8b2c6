"""The job's exit code: the worst thing that happened wins (README, exit codes)."""

import json

import pytest

from runner import report, stopping
from runner.apply import Outcome
from runner.flavour_v1 import wire


def summary(*run_outcomes: str, errors: int = 0) -> report.Summary:
    outcomes = [
        Outcome(f"p{i}", f"p{i}.py", "new-version", f"p{i}-v", run_outcome=outcome)
        for i, outcome in enumerate(run_outcomes)
    ]
    outcomes += [
        Outcome(f"e{i}", f"e{i}.py", "create", "", error="upload failed") for i in range(errors)
    ]
    return report.Summary("deploy", "http://dsp", "dsp-runner", "abc", "", outcomes, [])


@pytest.mark.parametrize(
    ("runs", "errors", "code"),
    [
        (("success", "success"), 0, 0),
        (("success",), 1, 1),
        (("success", "running"), 1, 4),
        (("failed", "running"), 0, 3),
        (("running", "failed"), 1, 3),
        (("failed",), 1, 3),
    ],
)
def test_a_failed_run_outranks_a_timed_out_wait_which_outranks_a_failed_pipeline(
    runs, errors, code
):
    assert summary(*runs, errors=errors).exit_code == code


def test_a_stop_request_outranks_everything(monkeypatch):
    monkeypatch.setattr(stopping, "requested", lambda: True)
    assert summary("failed", "running", errors=1).exit_code == stopping.EXIT_CODE


def nested_loop_manifest() -> str:
    """A PipelineRun whose loop (a Run) ran two iterations, each holding an inner loop."""

    def iteration(number: int, status: dict) -> dict:
        return {"iteration": number, "iterationItem": str(number), "status": status}

    def echo(value: str) -> dict:
        result = {"name": "Output", "type": "string", "value": value}
        return {"echo": {"pipelineTaskName": "echo", "status": {"taskResults": [result]}}}

    def loop(*iterations: dict) -> dict:
        runs = {f"pr-{i}": it for i, it in enumerate(iterations)}
        return {
            "loop": {"pipelineTaskName": "loop", "status": {"extraFields": {"pipelineRuns": runs}}}
        }

    inner = [
        loop(iteration(2, {"taskRuns": echo(f"{o}b")}), iteration(1, {"taskRuns": echo(f"{o}a")}))
        for o in "12"
    ]
    top = loop(iteration(1, {"runs": inner[0]}), iteration(2, {"runs": inner[1]}))
    return json.dumps({"status": {"taskRuns": echo("first"), "runs": top}})


def test_outputs_of_tasks_in_nested_loops_are_named_by_their_iterations():
    assert wire.task_results(nested_loop_manifest()) == {
        "echo": {"Output": "first"},
        "echo[1][1]": {"Output": "1a"},
        "echo[1][2]": {"Output": "1b"},
        "echo[2][1]": {"Output": "2a"},
        "echo[2][2]": {"Output": "2b"},
    }


def test_the_table_shows_every_iteration_of_the_last_task_with_outputs():
    outputs = {
        "prepare": {"Output": "x"},
        "square[1]": {"Output": "1"},
        "square[2]": {"Output": "4"},
    }
    outcome = Outcome(
        "p",
        "p.py",
        "new-version",
        "p-v",
        run_outcome="success",
        run_status="Succeeded",
        run_outputs=outputs,
    )

    line = report.table(report.Summary("deploy", "http://dsp", "e", "abc", "", [outcome], []))

    assert "Succeeded square[1].Output=1 square[2].Output=4" in line
    assert "prepare" not in line
