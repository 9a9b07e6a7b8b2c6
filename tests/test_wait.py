"""The poller: Tekton reasons decide success, failure and 'still running'."""

import datetime

import pytest

from runner import wait
from runner.client import ServerRun
from runner.errors import AuthError, ServerError


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("Succeeded", "success"),
        ("Completed", "success"),
        ("", "running"),
        ("Running", "running"),
        ("Pending", "running"),
        ("PipelineRunPending", "running"),
        ("Terminating", "running"),
        ("Failed", "failed"),
        ("PipelineRunTimeout", "failed"),
        ("Cancelled", "failed"),
        ("PipelineRunCancelled", "failed"),
        ("StoppedRunFinally", "failed"),
        ("CancelledRunFinally", "failed"),
        ("InvalidTaskResultReference", "failed"),
        ("CouldntGetTask", "failed"),
    ],
)
def test_tekton_reasons(status, outcome):
    assert wait.outcome_of(status) == outcome


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class ScriptedClient:
    """Answers get_run from a script of statuses (or exceptions) per run."""

    def __init__(self, script):
        self.script = {k: list(v) for k, v in script.items()}
        self.calls = 0

    def get_run(self, run_id):
        self.calls += 1
        answer = (
            self.script[run_id].pop(0) if len(self.script[run_id]) > 1 else self.script[run_id][0]
        )
        if isinstance(answer, Exception):
            raise answer
        return ServerRun(run_id, f"name-{run_id}", answer, "", "")


def test_waits_until_every_run_is_final_and_survives_a_failed_poll():
    clock = FakeClock()
    client = ScriptedClient(
        {
            "a": ["", "Running", ServerError("get run: HTTP 503"), "Succeeded"],
            "b": ["Running", "Failed"],
        }
    )
    done = wait.wait_for(client, {"a": 100, "b": 100}, interval=5, clock=clock, sleep=clock.sleep)
    assert done["a"].outcome == "success"
    assert done["b"].outcome == "failed"
    assert clock.now == 15


def test_a_run_still_going_at_its_timeout_comes_back_running():
    clock = FakeClock()
    client = ScriptedClient({"slow": ["Running"], "fast": ["Completed"]})
    done = wait.wait_for(
        client, {"slow": 12, "fast": 12}, interval=5, clock=clock, sleep=clock.sleep
    )
    assert done["slow"].outcome == "running"
    assert done["slow"].run.status == "Running"
    assert done["fast"].outcome == "success"
    assert clock.now == 12


def test_a_refused_token_ends_the_wait():
    clock = FakeClock()
    client = ScriptedClient({"a": [AuthError("refused")]})
    with pytest.raises(AuthError):
        wait.wait_for(client, {"a": 10}, interval=1, clock=clock, sleep=clock.sleep)


def test_a_finished_run_reports_its_duration_and_an_unstamped_one_none():
    start = datetime.datetime(2026, 1, 2, 10, 0, 0, tzinfo=datetime.UTC)
    done = ServerRun(
        "r", "n", "Succeeded", "", "", start, start + datetime.timedelta(seconds=90.26)
    )
    assert wait._finished(done) == wait.Finished(done, "success", 90.3)
    no_end = ServerRun("r", "n", "Failed", "boom", "", start, None)
    assert wait._finished(no_end) == wait.Finished(no_end, "failed", None)
    no_start = ServerRun("r", "n", "Failed", "boom", "", None, start)
    assert wait._finished(no_start).duration_s is None
