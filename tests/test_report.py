"""The job's exit code: the worst thing that happened wins (README, exit codes)."""

import pytest

from runner import report, stopping
from runner.apply import Outcome


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
