"""The poller: the outcome the flavour maps from its states decides when a wait ends; the v1
flavour's Tekton reasons map to success, failure and 'still running'."""

import datetime

import pytest

from runner import wait
from runner.errors import AuthError, NotFoundError, ServerError
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
    """Time that moves only when the poller sleeps; a poller that would sleep on past every
    deadline fails the test at once instead of hanging it."""

    def __init__(self):
        self.now = 0.0
        self.sleeps = 0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps += 1
        assert self.sleeps < 1000, "the wait went on past every deadline"
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


def test_a_run_never_read_before_its_timeout_is_reported_by_its_id_as_still_running():
    clock = FakeClock()
    client = ScriptedClient({"lost": [ServerError("get run: HTTP 503")]})
    done = wait.wait_for(client, {"lost": 3}, interval=1, clock=clock, sleep=clock.sleep)
    assert done["lost"] == wait.Finished(ServerRun("lost", "", "", "", ""), "running", None)


def test_the_last_pause_ends_at_the_deadline_not_a_whole_interval_later():
    clock = FakeClock()
    client = ScriptedClient({"a": ["Running"]})
    wait.wait_for(client, {"a": 0.5}, interval=10, clock=clock, sleep=clock.sleep)
    assert clock.now == 0.5
    assert client.calls == 2


class DeletingClient(ScriptedClient):
    """A server on which some runs were deleted (by a racing runner keeping their twin)."""

    def __init__(self, script, gone):
        super().__init__(script)
        self.gone = set(gone)

    def get_run(self, run_id):
        if run_id in self.gone:
            raise NotFoundError(f"get run: run {run_id} not found")
        return super().get_run(run_id)


def test_a_deleted_run_is_followed_to_the_run_that_now_carries_its_name():
    clock = FakeClock()
    client = DeletingClient({"twin": ["Succeeded"]}, gone=["mine"])
    asked = []

    def relocate(run_id):
        asked.append(run_id)
        return ServerRun("twin", "add@abc", "Running", "", "", outcome="running")

    done = wait.wait_for(
        client, {"mine": 60}, interval=1, clock=clock, sleep=clock.sleep, relocate=relocate
    )
    assert asked == ["mine"]
    assert (done["mine"].run.id, done["mine"].outcome) == ("twin", "success")


def test_a_deleted_run_nothing_replaces_ends_as_a_failure_naming_why():
    clock = FakeClock()
    client = DeletingClient({}, gone=["mine"])
    done = wait.wait_for(
        client, {"mine": 60}, interval=1, clock=clock, sleep=clock.sleep, relocate=lambda r: None
    )
    assert done["mine"] == wait.Finished(
        ServerRun(
            "mine", "", "NotFound", "the run no longer exists on the server", "", outcome="failed"
        ),
        "failed",
        None,
    )
    assert clock.now == 0


def test_an_unreadable_run_never_read_is_named_from_the_plan_and_keeps_its_id():
    clock = FakeClock()
    failing = [ServerError("get run: HTTP 502")] * wait.FAILED_POLLS_LIMIT
    done = wait.wait_for(
        ScriptedClient({"r1": failing}),
        {"r1": 3600},
        interval=1,
        clock=clock,
        sleep=clock.sleep,
        names={"r1": "add@abc"},
    )
    assert done["r1"].run == ServerRun("r1", "add@abc", "", "", "")
    assert done["r1"].error.startswith("run add@abc: its state could not be read")
    unnamed = wait.wait_for(
        ScriptedClient({"r2": failing}), {"r2": 3600}, interval=1, clock=clock, sleep=clock.sleep
    )
    assert unnamed["r2"].run == ServerRun("r2", "", "", "", "")
    assert unnamed["r2"].error.startswith("run r2: its state could not be read")


def test_an_unreadable_run_read_before_keeps_what_was_last_read_and_its_name():
    clock = FakeClock()
    script = ["Running"] + [ServerError("get run: HTTP 502")] * wait.FAILED_POLLS_LIMIT
    done = wait.wait_for(
        ScriptedClient({"r1": script}), {"r1": 3600}, interval=1, clock=clock, sleep=clock.sleep
    )
    assert done["r1"].run == ServerRun("r1", "name-r1", "Running", "", "", outcome="running")
    assert done["r1"].error.startswith("run name-r1: its state could not be read")


def test_a_deleted_run_whose_twin_is_gone_too_ends_as_a_failure_and_is_followed_once():
    clock = FakeClock()
    client = DeletingClient({}, gone=["mine", "twin"])
    asked = []

    def relocate(run_id):
        asked.append(run_id)
        return ServerRun("twin", "add@abc", "Running", "", "", outcome="running")

    done = wait.wait_for(
        client, {"mine": 60}, interval=1, clock=clock, sleep=clock.sleep, relocate=relocate
    )
    assert asked == ["mine"]
    assert (done["mine"].run.id, done["mine"].outcome) == ("twin", "failed")
    assert done["mine"].run.error == "the run no longer exists on the server"
