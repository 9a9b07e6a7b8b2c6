"""plan writes nothing; trigger starts one run per schedule slot; --only selects."""

import pytest

from runner.flavour_v1.client import DSPClient
from runner_helpers import events

pytestmark = pytest.mark.integration


def writes(localdsp):
    return [
        r
        for r in localdsp.requests()
        if r["method"] in ("POST", "PUT", "PATCH", "DELETE") and r["path"].startswith("/apis")
    ]


def test_plan_sends_no_write_request_and_says_what_deploy_would_do(project, capsys, localdsp):
    result = project.run(capsys, "plan")
    assert result.code == 0
    assert writes(localdsp) == []
    assert {p["action"] for p in result.summary["pipelines"]} == {"create"}
    (quality,) = [p for p in result.summary["pipelines"] if p["pipeline"] == "Data Quality Gate"]
    assert quality["schedules"][0].startswith("create data-quality-gate-nightly-")

    assert project.run(capsys).code == 0
    project.edit("add_pipeline.py", 'b="7"', 'b="9"')
    localdsp.clear_requests()
    result = project.run(capsys, "plan")
    assert writes(localdsp) == []
    actions = {p["pipeline"]: p["action"] for p in result.summary["pipelines"]}
    assert actions == {
        "Add Pipeline": "new-version",
        "Data Quality Gate": "unchanged",
        "Square Numbers": "unchanged",
        "Train and Evaluate": "unchanged",
    }


def test_a_doubled_trigger_for_one_slot_starts_one_run(project, capsys, kfp_client, monkeypatch):
    monkeypatch.setenv("DSP_RUN_POLICY", "never")
    assert project.run(capsys).code == 0
    monkeypatch.setenv("DSP_RUN_KEY", "dsp-runner-trigger-29123456")
    first = project.run(capsys, "trigger")
    second = project.run(capsys, "trigger")
    assert (first.code, second.code) == (0, 0)
    assert first.summary["counts"]["runs_started"] == 4
    assert second.summary["counts"]["runs_started"] == 0
    runs = kfp_client.list_runs(page_size=100).runs
    assert len(runs) == 4
    assert all(r.name.endswith("@dsp-runner-trigger-29123456") for r in runs)
    monkeypatch.setenv("DSP_RUN_KEY", "dsp-runner-trigger-29123516")
    assert project.run(capsys, "trigger").summary["counts"]["runs_started"] == 4


def test_trigger_runs_only_what_dsp_runner_deployed_and_what_only_selects(
    project, capsys, kfp_client, monkeypatch
):
    monkeypatch.setenv("DSP_RUN_POLICY", "never")
    assert project.run(capsys).code == 0
    kfp_client.upload_pipeline(
        str(project.output / "pipelines" / "add-pipeline.yaml"), "Uploaded By Hand"
    )
    monkeypatch.setenv("DSP_ONLY", "add-pipeline,Data Quality Gate")
    result = project.run(capsys, "trigger")
    assert sorted(p["pipeline"] for p in result.summary["pipelines"]) == [
        "Add Pipeline",
        "Data Quality Gate",
    ]


def test_only_deploys_the_selected_pipelines(project, capsys, kfp_client):
    result = project.run(capsys, "deploy", "--only", "Add Pipeline")
    assert result.code == 0
    names = [p.name for p in kfp_client.list_pipelines(page_size=100).pipelines]
    assert names == ["Add Pipeline"]


def test_tekton_results_are_written_small(project, capsys, monkeypatch):
    results = project.root / "results"
    monkeypatch.setenv("DSP_RESULTS_DIR", str(results))
    assert project.run(capsys).code == 0
    assert (results / "versions-created").read_text() == "4"
    assert len(__import__("json").loads((results / "run-ids").read_text())) == 4
    assert (results / "summary-path").read_text().endswith("summary.json")
    assert sum(len(p.read_bytes()) for p in results.iterdir()) < 4096


def test_a_bug_inside_a_server_call_is_exit_70_with_its_traceback_not_a_network_error(
    project, capsys, localdsp
):
    """A 200 without the run (a model the code does not expect) breaks our own code: that is a
    bug to report, not 'could not reach' the server."""
    localdsp.inject(
        method="POST", path="/apis/v1beta1/runs", action="status", status=200, body="{}"
    )
    result = project.run(capsys, "deploy", "--only", "Add Pipeline")
    assert result.code == 70
    assert "Traceback (most recent call last)" in result.err
    assert "AttributeError: 'NoneType' object has no attribute 'id'" in result.err
    assert "could not reach" not in result.err
    assert result.summary["exit_code"] == 70
    assert result.summary["error"] == "internal error: AttributeError (traceback in the log)"


def test_a_connection_the_server_drops_is_still_one_line_naming_the_host(
    project, capsys, localdsp, monkeypatch
):
    monkeypatch.setenv("DSP_RETRIES", "2")
    localdsp.inject(method="GET", path="/apis/v1beta1/healthz", action="drop_before", times=None)
    result = project.run(capsys)
    assert result.code == 1
    last = result.err.strip().splitlines()[-1]
    assert last.startswith(f"dsp-runner: ServerError: connect: could not reach {localdsp.url}")
    assert "Traceback" not in result.err
    healthz = [r for r in localdsp.requests() if r["path"] == "/apis/v1beta1/healthz"]
    assert len(healthz) == 2, "one request per try: urllib3 retries nothing behind the policy"


def test_a_deploy_where_nothing_changed_sends_six_requests_whatever_the_number_of_pipelines(
    project, capsys, localdsp
):
    """The README's Performance promise, counted in the server's request log."""
    expected = [
        ("GET", "/apis/v1beta1/healthz"),
        ("GET", "/apis/v2beta1/healthz"),
        ("GET", "/apis/v1beta1/pipelines"),
        ("GET", "/apis/v1beta1/experiments"),
        ("GET", "/apis/v1beta1/runs"),
        ("GET", "/apis/v1beta1/jobs"),
    ]
    for extra in range(3):
        assert project.run(capsys).code == 0
        localdsp.clear_requests()
        assert project.run(capsys).code == 0
        sent = [(r["method"], r["path"]) for r in localdsp.requests()]
        assert sorted(sent) == sorted(expected), f"with {3 + extra} pipelines"
        (project.pipelines / f"copy_{extra}.py").write_text(
            (project.pipelines / "add_pipeline.py")
            .read_text()
            .replace('name="Add Pipeline"', f'name="Copy {extra}"')
        )


def test_retry_after_is_honoured_up_to_120_seconds(project, capsys, localdsp, monkeypatch):
    """A server asking for a day's pause gets MAX_RETRY_AFTER, the README's 120 s."""
    import time

    from runner import calls

    assert calls.MAX_RETRY_AFTER == 120
    pauses = []
    real_sleep = time.sleep

    def sleep(seconds):
        if seconds >= 60:
            pauses.append(seconds)
        else:
            real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", sleep)
    localdsp.inject(
        method="GET",
        path="/apis/v1beta1/pipelines",
        action="status",
        status=429,
        headers={"Retry-After": "86400"},
        times=1,
    )
    result = project.run(capsys, "plan")
    assert result.code == 0
    assert pauses == [120.0]
    (retry,) = [e for e in events(result.err) if e["event"] == "server_call_retry"]
    assert (retry["error"], retry["wait_s"]) == (429, 120.0)


def test_trigger_never_runs_a_pipeline_uploaded_by_hand(project, capsys, kfp_client, monkeypatch):
    """The cron mode runs what dsp-runner deployed, not whatever else the namespace holds."""
    monkeypatch.setenv("DSP_RUN_POLICY", "never")
    monkeypatch.setenv("DSP_ONLY", "add-pipeline")
    assert project.run(capsys).code == 0
    kfp_client.upload_pipeline(
        str(project.output / "pipelines" / "add-pipeline.yaml"), "Uploaded By Hand"
    )
    monkeypatch.delenv("DSP_ONLY")
    result = project.run(capsys, "trigger")
    assert result.code == 0
    assert [p["pipeline"] for p in result.summary["pipelines"]] == ["Add Pipeline"]
    runs = kfp_client.list_runs(page_size=100).runs or []
    assert [r.name.split("@")[0].rsplit("-", 1)[0] for r in runs] == ["add-pipeline"]


def test_plan_of_a_pipeline_deleted_during_the_lookups_says_create_and_names_no_pipeline(
    project, capsys, kfp_client, monkeypatch
):
    """Add Pipeline is deleted between the listing and its version lookup (which answers 404):
    deploy would create it, and the plan names no pipeline id (the listed one is gone)."""
    assert project.run(capsys).code == 0
    project.edit("add_pipeline.py", 'b="7"', 'b="9"')
    add_id = kfp_client.get_pipeline_id("Add Pipeline")
    find_version = DSPClient.find_version

    def deleted_first(self, pipeline_id, name):
        if pipeline_id == add_id:
            kfp_client.delete_pipeline(add_id)
        return find_version(self, pipeline_id, name)

    monkeypatch.setattr(DSPClient, "find_version", deleted_first)
    result = project.run(capsys, "plan")
    assert result.code == 0, result.err
    (add,) = [p for p in result.summary["pipelines"] if p["pipeline"] == "Add Pipeline"]
    assert (add["action"], add["pipeline_id"]) == ("create", "")
