"""The poller: the outcome the flavour maps from its states decides when a wait ends; the v1
flavour's Tekton reasons map to success, failure and 'still running'."""

import datetime

import pytest

from runner import wait
from runner.errors import AuthError, ServerError
from runner.flavour_v1 import states
from runner.server import ServerRun


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
    assert states.outcome_of(status) == outcome


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
        return ServerRun(
            run_id, f"name-{run_id}", answer, "", "", outcome=states.outcome_of(answer)
        )


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


def test_a_run_whose_state_cannot_be_read_ends_its_wait_as_an_error_not_at_the_timeout():
    clock = FakeClock()
    failing = [ServerError("get run: HTTP 503: unavailable")] * wait.FAILED_POLLS_LIMIT
    client = ScriptedClient({"blind": failing, "fine": ["Running", "Running", "Succeeded"]})
    done = wait.wait_for(
        client,
        {"blind": 3600, "fine": 3600},
        interval=10,
        clock=clock,
        sleep=clock.sleep,
        names={"blind": "add-pipeline-1@abc"},
    )
    assert done["blind"].outcome == wait.UNREADABLE
    assert done["blind"].error == (
        f"run add-pipeline-1@abc: its state could not be read in {wait.FAILED_POLLS_LIMIT} polls "
        "in a row; last error: get run: HTTP 503: unavailable"
    )
    assert done["fine"].outcome == "success"
    assert clock.now == 10 * (wait.FAILED_POLLS_LIMIT - 1)


def test_failed_polls_must_come_in_a_row_to_end_the_wait():
    clock = FakeClock()
    blip = ServerError("get run: HTTP 503")
    script = [blip] * (wait.FAILED_POLLS_LIMIT - 1) + ["Running"]
    script += [blip] * (wait.FAILED_POLLS_LIMIT - 1) + ["Succeeded"]
    client = ScriptedClient({"a": script})
    done = wait.wait_for(client, {"a": 3600}, interval=1, clock=clock, sleep=clock.sleep)
    assert done["a"].outcome == "success"


def test_a_finished_run_reports_its_duration_and_an_unstamped_one_none():
    start = datetime.datetime(2026, 1, 2, 10, 0, 0, tzinfo=datetime.UTC)
    done = ServerRun(
        "r",
        "n",
        "Succeeded",
        "",
        "",
        start,
        start + datetime.timedelta(seconds=90.26),
        outcome="success",
    )
    assert wait._finished(done) == wait.Finished(done, "success", 90.3)
    no_end = ServerRun("r", "n", "Failed", "boom", "", start, None, outcome="failed")
    assert wait._finished(no_end) == wait.Finished(no_end, "failed", None)
    no_start = ServerRun("r", "n", "Failed", "boom", "", None, start, outcome="failed")
    assert wait._finished(no_start).duration_s is None
