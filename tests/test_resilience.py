"""The runner as a process: killed, terminated, or doubled, the server still converges."""

import json
import signal

import pytest
from test_faults import assert_no_duplicates

from runner_helpers import Project, events, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def project(tmp_path, localdsp):
    return Project(tmp_path, localdsp.url, "test-token")


def wait_for_request(localdsp, method, path, *, answered=False, timeout=60):
    """Block until the server has seen this request (and, if `answered`, finished it)."""

    def seen():
        return any(
            r["method"] == method and r["path"] == path and (r["status"] or not answered)
            for r in localdsp.requests()
        )

    wait_until(seen, timeout, f"{method} {path} {'answered' if answered else 'received'}")


def test_sigkill_mid_deploy_then_a_rerun_converges_without_duplicates(
    project, localdsp, kfp_client
):
    localdsp.inject(method="POST", path="/apis/v1beta1/runs", action="delay", seconds=1.5, times=1)
    runner = project.spawn()
    wait_for_request(localdsp, "POST", "/apis/v1beta1/runs")
    runner.send_signal(signal.SIGKILL)
    runner.wait(30)
    wait_for_request(localdsp, "POST", "/apis/v1beta1/runs", answered=True)
    rerun = project.spawn()
    _, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    assert_no_duplicates(kfp_client)


def test_sigterm_stops_new_work_writes_the_summary_and_exits_143(project, localdsp):
    localdsp.inject(
        method="POST", path="/apis/v1beta1/pipelines/upload", action="delay", seconds=2, times=1
    )
    runner = project.spawn(DSP_CONCURRENCY="1")
    wait_for_request(localdsp, "POST", "/apis/v1beta1/pipelines/upload")
    runner.send_signal(signal.SIGTERM)
    _, err = runner.communicate(timeout=120)
    assert runner.returncode == 143, err
    summary = json.loads((project.output / "summary.json").read_text())
    errors = [p["error"] for p in summary["pipelines"]]
    assert errors.count("not started: the job was asked to stop (SIGTERM)") == 3
    assert summary["exit_code"] == 143
    assert any(e["event"] == "pipeline_skipped" for e in events(err))


def test_two_runners_deploying_one_commit_at_once_make_one_version_and_run_each(
    project, localdsp, kfp_client
):
    localdsp.inject(method="POST", path=".*", action="delay", seconds=0.2, times=1000)
    first, second = project.spawn(), project.spawn()
    for runner in (first, second):
        _, err = runner.communicate(timeout=180)
        last = "\n".join(err.splitlines()[-10:])
        assert runner.returncode == 0, f"exit {runner.returncode}; last log lines:\n{last}"
    assert_no_duplicates(kfp_client)


def test_a_token_revoked_mid_job_is_a_clear_failure_the_next_run_finishes(
    project, localdsp, kfp_client
):
    localdsp.inject(
        method="POST",
        path="/apis/v1beta1/pipelines/upload_version",
        action="delay",
        seconds=1.5,
        times=1,
    )
    runner = project.spawn(DSP_CONCURRENCY="1")
    wait_for_request(localdsp, "POST", "/apis/v1beta1/pipelines/upload_version")
    localdsp.set_tokens(["someone-elses-token"])
    _, err = runner.communicate(timeout=120)
    assert runner.returncode == 5, err
    assert "AuthError" in err.strip().splitlines()[-1]
    summary = json.loads((project.output / "summary.json").read_text())
    assert summary["exit_code"] == 5
    assert any("not started: the job halted" in p["error"] for p in summary["pipelines"])
    localdsp.set_tokens(["test-token"])
    rerun = project.spawn()
    _, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    assert_no_duplicates(kfp_client)


def test_sigterm_stops_trigger_too_it_reports_and_exits_143(project, localdsp, kfp_client, capsys):
    """The CronJob's command: a pod eviction mid-trigger starts nothing more."""
    with pytest.MonkeyPatch.context() as env:
        project.env(env, DSP_RUN_POLICY="never")
        assert project.run(capsys).code == 0
    localdsp.inject(method="POST", path="/apis/v1beta1/runs", action="delay", seconds=2, times=1)
    runner = project.spawn("trigger", DSP_RUN_KEY="slot-1")
    wait_for_request(localdsp, "POST", "/apis/v1beta1/runs")
    runner.send_signal(signal.SIGTERM)
    _, err = runner.communicate(timeout=120)
    assert runner.returncode == 143, err
    summary = json.loads((project.output / "summary.json").read_text())
    assert summary["exit_code"] == 143
    errors = [p["error"] for p in summary["pipelines"]]
    assert errors.count("not started: the job was asked to stop (SIGTERM)") == 3
    assert len(kfp_client.list_runs(page_size=100).runs or []) == 1
    assert any(e["event"] == "pipeline_skipped" for e in events(err))


def test_a_token_refused_mid_trigger_stops_it_reports_and_exits_5(
    project, localdsp, kfp_client, capsys, monkeypatch
):
    project.env(monkeypatch, DSP_RUN_POLICY="never", DSP_RESULTS_DIR=str(project.root / "res"))
    assert project.run(capsys).code == 0
    localdsp.inject(
        method="POST", path="/apis/v1beta1/runs", action="status", status=403, times=None
    )
    result = project.run(capsys, "trigger")
    assert result.code == 5
    assert result.err.strip().splitlines()[-1].startswith("dsp-runner: AuthError: start run:")
    assert result.summary["exit_code"] == 5
    assert result.summary["error"].startswith("AuthError: start run:")
    errors = sorted(p["error"] for p in result.summary["pipelines"])
    assert [e.startswith("not started: the job halted") for e in errors].count(True) == 3
    assert (project.root / "res" / "run-ids").read_text() == "[]"
    assert kfp_client.list_runs(page_size=100).runs is None


def test_a_token_refused_before_trigger_started_anything_still_writes_the_summary(
    project, localdsp, capsys, monkeypatch
):
    project.env(monkeypatch)
    localdsp.set_tokens(["someone-elses-token"])
    result = project.run(capsys, "trigger")
    assert result.code == 5
    assert result.summary["exit_code"] == 5
    assert result.summary["pipelines"] == []
    assert (
        result.err.strip()
        .splitlines()[-1]
        .startswith("dsp-runner: AuthError: connect: the server refused the token")
    )


def test_a_token_refused_mid_deploy_is_exit_5_in_the_summary_too(
    project, localdsp, capsys, monkeypatch
):
    project.env(monkeypatch, DSP_CONCURRENCY="1")
    localdsp.inject(
        method="POST",
        path="/apis/v1beta1/pipelines/upload_version",
        action="status",
        status=403,
        times=None,
    )
    result = project.run(capsys)
    assert result.code == 5
    assert result.summary["exit_code"] == 5
    assert result.summary["error"].startswith("AuthError: upload pipeline version:")
    assert "the job ended early: AuthError" in result.out
