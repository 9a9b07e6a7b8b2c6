"""deploy --wait against a localdsp that really runs the steps: the job's exit code is the gate."""

import pytest

from runner_helpers import Project, events

pytestmark = pytest.mark.integration


@pytest.fixture
def project(tmp_path, executing_localdsp, monkeypatch):
    project = Project(tmp_path, executing_localdsp.url, "test-token")
    project.env(monkeypatch, DSP_POLL_INTERVAL="0.2", DSP_UI_HOST="https://dashboard.example.com")
    return project


def outcome(result, pipeline):
    (found,) = [p for p in result.summary["pipelines"] if p["pipeline"] == pipeline]
    return found


def test_waits_for_success_and_shows_outputs_and_links(project, capsys):
    result = project.run(capsys, "deploy", "--wait", "--only", "Add Pipeline")
    assert result.code == 0, result.err
    add = outcome(result, "Add Pipeline")
    assert (add["run_status"], add["run_outcome"]) == ("Succeeded", "success")
    assert add["run_outputs"]["add-2"] == {"Output": "19.0"}
    assert add["run_url"] == f"https://dashboard.example.com/#/runs/details/{add['run_id']}"
    assert "Succeeded" in result.out and "add-2.Output=19.0" in result.out


def test_completed_with_a_skipped_task_is_success(project, capsys, monkeypatch):
    monkeypatch.setenv("DSP_RUN_ARGS", '{"Data Quality Gate": {"threshold": "0.99"}}')
    result = project.run(capsys, "deploy", "--wait", "--only", "Data Quality Gate")
    assert result.code == 0, result.err
    assert outcome(result, "Data Quality Gate")["run_status"] == "Completed"


def test_a_failed_run_fails_the_job_with_exit_3(project, capsys, monkeypatch):
    monkeypatch.setenv("DSP_RUN_ARGS", '{"Train and Evaluate": {"max_mse": "0.0"}}')
    result = project.run(capsys, "deploy", "--wait", "--only", "Train and Evaluate")
    assert result.code == 3
    assert outcome(result, "Train and Evaluate")["run_status"] == "Failed"
    assert result.summary["counts"]["runs_failed"] == 1


SLOW = """
import kfp


def nap(seconds: int) -> int:
    import time

    time.sleep(seconds)
    return seconds


nap_op = kfp.components.create_component_from_func(nap, base_image="python:3.11")


@kfp.dsl.pipeline(name="Slow")
def slow(seconds="30"):
    nap_op(seconds)
"""


def test_a_run_still_going_at_the_timeout_exits_4(project, capsys, monkeypatch):
    (project.pipelines / "slow.py").write_text(SLOW)
    monkeypatch.setenv("DSP_WAIT_TIMEOUT", "1")
    result = project.run(capsys, "deploy", "--wait", "--only", "Slow")
    assert result.code == 4
    assert outcome(result, "Slow")["run_outcome"] == "running"


def test_a_run_whose_status_reads_keep_failing_ends_the_wait_as_exit_1(
    project, capsys, monkeypatch, executing_localdsp
):
    """Not 'still running' after the whole DSP_WAIT_TIMEOUT: a line naming the run and why."""
    monkeypatch.setenv("DSP_RETRIES", "2")
    monkeypatch.setenv("DSP_WAIT_TIMEOUT", "120")
    executing_localdsp.inject(
        method="GET", path="/apis/v1beta1/runs/[^/]+", action="status", status=503, times=None
    )
    result = project.run(capsys, "deploy", "--wait", "--only", "Add Pipeline")
    assert result.code == 1
    add = outcome(result, "Add Pipeline")
    assert add["run_outcome"] == "unreadable"
    assert add["error"].startswith(f"run {add['run_name']}: its state could not be read in 5 polls")
    assert add["error"].endswith("get run: HTTP 503: localdsp injected fault")
    (line,) = [e for e in events(result.err) if e["event"] == "run_status_unreadable"]
    assert (line["run"], line["level"]) == (add["run_name"], "error")
    assert f"FAILED: run {add['run_name']}" in result.out


def test_a_token_refused_while_waiting_is_exit_5_and_the_summary_keeps_the_runs(
    project, capsys, executing_localdsp
):
    executing_localdsp.inject(
        method="GET", path="/apis/v1beta1/runs/[^/]+", action="status", status=403, times=None
    )
    result = project.run(capsys, "deploy", "--wait", "--only", "Add Pipeline")
    assert result.code == 5
    assert result.summary["error"].startswith("AuthError: get run: the server refused the token")
    assert outcome(result, "Add Pipeline")["run_started"] is True


def test_a_parallel_for_loop_succeeds_with_each_iterations_output(project, capsys):
    result = project.run(capsys, "deploy", "--wait", "--only", "Square Numbers")
    assert result.code == 0, result.err
    square = outcome(result, "Square Numbers")
    assert square["run_status"] == "Succeeded"
    assert square["run_outputs"] == {
        "square[1]": {"Output": "1"},
        "square[2]": {"Output": "4"},
        "square[3]": {"Output": "9"},
    }
    assert "square[1].Output=1 square[2].Output=4 square[3].Output=9" in result.out
