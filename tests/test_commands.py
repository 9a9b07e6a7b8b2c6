"""plan writes nothing; trigger starts one run per schedule slot; --only selects."""

import pytest

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
        "Train and Evaluate": "unchanged",
    }


def test_a_doubled_trigger_for_one_slot_starts_one_run(project, capsys, kfp_client, monkeypatch):
    monkeypatch.setenv("DSP_RUN_POLICY", "never")
    assert project.run(capsys).code == 0
    monkeypatch.setenv("DSP_RUN_KEY", "dsp-runner-trigger-29123456")
    first = project.run(capsys, "trigger")
    second = project.run(capsys, "trigger")
    assert (first.code, second.code) == (0, 0)
    assert first.summary["counts"]["runs_started"] == 3
    assert second.summary["counts"]["runs_started"] == 0
    runs = kfp_client.list_runs(page_size=100).runs
    assert len(runs) == 3
    assert all(r.name.endswith("@dsp-runner-trigger-29123456") for r in runs)
    monkeypatch.setenv("DSP_RUN_KEY", "dsp-runner-trigger-29123516")
    assert project.run(capsys, "trigger").summary["counts"]["runs_started"] == 3


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
    assert (results / "versions-created").read_text() == "3"
    assert len(__import__("json").loads((results / "run-ids").read_text())) == 3
    assert (results / "summary-path").read_text().endswith("summary.json")
    assert sum(len(p.read_bytes()) for p in results.iterdir()) < 4096


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
