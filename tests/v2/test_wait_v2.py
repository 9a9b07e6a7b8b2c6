"""deploy --wait against a localdsp --api v2 whose runs execute with kfp.local: the job's exit
code is the gate (success 0, failure 3, still running at the timeout 4), outputs in the table."""

import pytest
from conftest import v2_project

from runner_helpers import events

pytestmark = pytest.mark.integration


@pytest.fixture
def project(tmp_path, executing_dsp, monkeypatch):
    project = v2_project(tmp_path / "project", executing_dsp.url)
    project.env(monkeypatch, DSP_POLL_INTERVAL="0.2", DSP_UI_HOST="https://dashboard.example.com")
    return project


def outcome(result, pipeline):
    (found,) = [p for p in result.summary["pipelines"] if p["pipeline"] == pipeline]
    return found


def test_waits_for_success_and_shows_outputs_and_links(project, capsys):
    result = project.run(capsys, "deploy", "--wait", "--only", "Add Pipeline")
    assert result.code == 0, result.err
    add = outcome(result, "Add Pipeline")
    assert (add["run_status"], add["run_outcome"]) == ("SUCCEEDED", "success")
    assert add["run_outputs"]["add-2"] == {"Output": "19.0"}
    assert add["run_url"] == f"https://dashboard.example.com/#/runs/details/{add['run_id']}"
    assert "SUCCEEDED" in result.out and "add-2.Output=19.0" in result.out


def test_a_failed_run_fails_the_job_with_exit_3(project, capsys, monkeypatch):
    monkeypatch.setenv("DSP_RUN_ARGS", '{"Train and Evaluate": {"max_mse": "0.0"}}')
    result = project.run(capsys, "deploy", "--wait", "--only", "Train and Evaluate")
    assert result.code == 3, result.err
    train = outcome(result, "Train and Evaluate")
    assert (train["run_status"], train["run_outcome"]) == ("FAILED", "failed")
    assert result.summary["counts"]["runs_failed"] == 1
    finished = [e for e in events(result.err) if e["event"] == "run_finished"]
    assert "report" in finished[0]["error"]


SLOW = """
from kfp import dsl


@dsl.component(base_image="python:3.11")
def nap(seconds: int) -> int:
    import time

    time.sleep(seconds)
    return seconds


@dsl.pipeline(name="slow")
def slow(seconds: int = 30):
    nap(seconds=seconds)
"""


def test_a_run_still_going_at_the_timeout_exits_4(project, capsys, monkeypatch):
    (project.pipelines / "slow.py").write_text(SLOW)
    monkeypatch.setenv("DSP_WAIT_TIMEOUT", "1")
    result = project.run(capsys, "deploy", "--wait", "--only", "slow")
    assert result.code == 4, result.err
    assert outcome(result, "slow")["run_outcome"] == "running"
