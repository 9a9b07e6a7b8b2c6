"""`prune` against localdsp (DSP 1.x) through the real TektonClient: what the server holds after."""

import json
import signal

import pytest

from localdsp.scheduler import Scheduler
from runner_helpers import deploy_revisions, events, wait_until

pytestmark = pytest.mark.integration
ADD = "Add Pipeline"
REVISIONS = ('b="7"', 'b="70"', 'b="700"')
VERSION_PATH = r"/apis/v1beta1/pipeline_versions/.*"


def three_revisions(project, capsys, monkeypatch) -> list[str]:
    """Deploy the add pipeline three times, each time changed; its version names, oldest first."""
    return deploy_revisions(project, capsys, monkeypatch, ADD, REVISIONS)


def versions_of(kfp_client, name=ADD) -> tuple[str, list[str]]:
    """The pipeline's default version and all its versions, by name."""
    pipeline = next(p for p in kfp_client.list_pipelines(page_size=100).pipelines if p.name == name)
    listed = kfp_client.list_pipeline_versions(pipeline.id, page_size=100).versions or []
    return pipeline.default_version.name, sorted(v.name for v in listed)


def runs_by_version(kfp_client) -> dict[str, str]:
    """Run id by the name of the version it ran."""
    return {r.name.split("@")[0]: r.id for r in kfp_client.list_runs(page_size=100).runs or []}


def deletes(localdsp) -> list[tuple[str, int]]:
    return [
        (r["path"].rsplit("/", 1)[-1], r["status"])
        for r in localdsp.requests()
        if r["method"] == "DELETE"
    ]


def pruned(result, action) -> list[str]:
    return sorted(p["version"] for p in result.summary["pruned"] if p["action"] == action)


def test_prune_keep_1_leaves_the_default_and_the_runs_of_deleted_versions_readable(
    project, capsys, monkeypatch, kfp_client, localdsp
):
    old, middle, newest = three_revisions(project, capsys, monkeypatch)
    runs = runs_by_version(kfp_client)
    manifests = {
        name: kfp_client.runs.get_run(runs[name]).pipeline_runtime.workflow_manifest
        for name in (old, middle)
    }
    assert all(manifests.values())

    result = project.run(capsys, "prune", "--keep", "1", "--keep-days", "0")

    assert result.code == 0, result.err
    assert versions_of(kfp_client) == (newest, sorted([ADD, newest]))
    assert pruned(result, "deleted") == sorted([old, middle])
    kept = {p["version"]: p["reason"] for p in result.summary["pruned"] if p["action"] == "kept"}
    assert kept == {
        newest: "the pipeline's default version",
        ADD: "not uploaded by dsp-runner",
    }
    for name in (old, middle):
        detail = kfp_client.runs.get_run(runs[name])
        assert detail.run.name.startswith(name)
        assert detail.pipeline_runtime.workflow_manifest == manifests[name]
        version_ref = next(
            r for r in detail.run.resource_references if r.key.type == "PIPELINE_VERSION"
        )
        assert version_ref.name == name
    logged = {e["version"]: e for e in events(result.err) if e["event"] == "version_deleted"}
    assert set(logged) == {old, middle}
    assert "older than the 1 newest" in logged[old]["reason"]
    assert f"{middle}  deleted" in result.out
    assert "prune: 2 deleted" in result.out


def test_a_second_prune_deletes_nothing_more(project, capsys, monkeypatch, kfp_client, localdsp):
    three_revisions(project, capsys, monkeypatch)
    assert project.run(capsys, "prune", "--keep", "1", "--keep-days", "0").code == 0
    before = versions_of(kfp_client)
    localdsp.clear_requests()
    again = project.run(capsys, "prune", "--keep", "1", "--keep-days", "0")
    assert again.code == 0
    assert deletes(localdsp) == []
    assert pruned(again, "deleted") == []
    assert versions_of(kfp_client) == before


def test_a_version_an_enabled_recurring_run_uses_is_kept_a_disabled_one_does_not_protect(
    project, capsys, monkeypatch, kfp_client, localdsp
):
    old, middle, newest = three_revisions(project, capsys, monkeypatch)
    ids = version_ids(kfp_client)
    experiment = kfp_client.create_experiment("by-hand")
    for name, version, enabled in (("hourly", old, True), ("paused", middle, False)):
        kfp_client.create_recurring_run(
            experiment.id,
            name,
            cron_expression="0 0 * * * *",
            version_id=ids[version],
            pipeline_id=ids[ADD],
            enabled=enabled,
        )

    result = project.run(capsys, "prune", "--keep", "1", "--keep-days", "0")

    assert result.code == 0, result.err
    assert versions_of(kfp_client)[1] == sorted([ADD, old, newest])
    reasons = {p["version"]: p["reason"] for p in result.summary["pruned"]}
    assert reasons[old] == "enabled recurring run 'hourly' uses it"
    assert pruned(result, "deleted") == [middle]


def test_a_job_pinned_to_a_deleted_version_keeps_running_it(
    project, capsys, monkeypatch, kfp_client, localdsp
):
    """The v1 server embeds the version's manifest in the job (its ScheduledWorkflow): deleting
    the version changes nothing for the job, which starts runs of the manifest it holds."""
    old, _, _ = three_revisions(project, capsys, monkeypatch)
    ids = version_ids(kfp_client)
    experiment = kfp_client.create_experiment("by-hand")
    job = kfp_client.create_recurring_run(
        experiment.id, "paused", cron_expression="@every 1s", version_id=ids[old], enabled=False
    )
    assert project.run(capsys, "prune", "--keep", "1", "--keep-days", "0").code == 0
    assert old not in versions_of(kfp_client)[1]

    kfp_client.jobs.enable_job(job.id)
    scheduler = Scheduler(localdsp.backend)
    scheduler.tick(now=1e10)
    (run_id,) = scheduler.tick(now=1e10 + 5)
    detail = kfp_client.runs.get_run(run_id)
    assert json.loads(detail.pipeline_runtime.workflow_manifest)["kind"] == "PipelineRun"


def test_a_version_with_a_recent_run_is_kept(project, capsys, monkeypatch, kfp_client):
    old, middle, newest = three_revisions(project, capsys, monkeypatch)
    result = project.run(capsys, "prune", "--keep", "1")  # DSP_KEEP_DAYS: 7 by default
    assert result.code == 0, result.err
    assert versions_of(kfp_client)[1] == sorted([ADD, old, middle, newest])
    reasons = {p["version"]: p["reason"] for p in result.summary["pruned"]}
    assert reasons[old] == f"run '{old}@0123456789ab' started within 7 day(s)"


def test_prune_never_touches_a_pipeline_dsp_runner_did_not_create(
    project, capsys, monkeypatch, kfp_client, localdsp, add_yaml
):
    """Made by hand (with a hand upload first), then deployed to: none of its versions go."""
    pipeline = kfp_client.upload_pipeline(str(add_yaml), ADD)
    kfp_client.upload_pipeline_version(str(add_yaml), "by-hand", pipeline_id=pipeline.id)
    three_revisions(project, capsys, monkeypatch)
    before = versions_of(kfp_client)
    localdsp.clear_requests()
    result = project.run(capsys, "prune", "--keep", "1", "--keep-days", "0")
    assert result.code == 0, result.err
    assert deletes(localdsp) == []
    assert versions_of(kfp_client) == before
    assert {p["reason"] for p in result.summary["pruned"]} == {
        "the pipeline's first versions were not uploaded by dsp-runner"
    }


@pytest.mark.parametrize(
    "fault",
    [
        {"action": "status", "status": 503, "times": 1},
        {"action": "drop_after_commit", "times": 1},
    ],
)
def test_faults_during_prune_delete_nothing_twice_and_the_job_ends_right(
    project, capsys, monkeypatch, kfp_client, localdsp, fault
):
    old, middle, newest = three_revisions(project, capsys, monkeypatch)
    localdsp.clear_requests()
    localdsp.inject(method="DELETE", path=VERSION_PATH, **fault)

    result = project.run(capsys, "prune", "--keep", "1", "--keep-days", "0")

    assert result.code == 0, result.err
    assert pruned(result, "deleted") == sorted([old, middle])
    assert versions_of(kfp_client)[1] == sorted([ADD, newest])
    ids = [version_id for version_id, status in deletes(localdsp) if status in (200, None)]
    assert len(ids) == len(set(ids)) == 2, deletes(localdsp)
    if fault["action"] == "drop_after_commit":
        assert [status for _, status in deletes(localdsp)].count(404) == 1
    localdsp.clear_requests()
    assert project.run(capsys, "prune", "--keep", "1", "--keep-days", "0").code == 0
    assert deletes(localdsp) == []


def test_sigterm_during_prune_finishes_the_delete_in_flight_and_the_next_prune_the_rest(
    project, capsys, monkeypatch, kfp_client, localdsp
):
    old, middle, _ = three_revisions(project, capsys, monkeypatch)
    ids = version_ids(kfp_client)
    localdsp.clear_requests()
    localdsp.inject(method="DELETE", path=VERSION_PATH, action="delay", seconds=2)
    runner = project.spawn("prune", DSP_KEEP_VERSIONS="1", DSP_KEEP_DAYS="0")
    wait_until(lambda: deletes(localdsp), 60, "a delete received")
    runner.send_signal(signal.SIGTERM)
    _, err = runner.communicate(timeout=120)

    assert runner.returncode == 143, err
    summary = json.loads((project.output / "summary.json").read_text())
    outcome = {p["version"]: (p["action"], p["error"]) for p in summary["pruned"]}
    assert outcome[middle] == ("deleted", "")
    assert outcome[old] == ("not-deleted", "not deleted: the job was asked to stop (SIGTERM)")
    localdsp.clear_requests()
    again = project.run(capsys, "prune", "--keep", "1", "--keep-days", "0")
    assert again.code == 0, again.err
    assert pruned(again, "deleted") == [old]
    assert deletes(localdsp) == [(ids[old], 200)]


def test_a_delete_the_server_keeps_refusing_fails_that_version_only(
    project, capsys, monkeypatch, kfp_client, localdsp
):
    old, _, newest = three_revisions(project, capsys, monkeypatch)
    ids = version_ids(kfp_client)
    path = f"/apis/v1beta1/pipeline_versions/{ids[old]}"
    localdsp.inject(method="DELETE", path=path, action="status", status=500, times=None)
    result = project.run(capsys, "prune", "--keep", "1", "--keep-days", "0", "--retries", "2")
    assert result.code == 1
    assert versions_of(kfp_client)[1] == sorted([ADD, old, newest])
    (failed,) = [p for p in result.summary["pruned"] if p["error"]]
    assert failed["version"] == old and failed["action"] == "not-deleted"
    assert "delete pipeline version: HTTP 500" in failed["error"]


def test_plan_shows_what_deploy_would_prune_and_deploy_prunes_it(
    project, capsys, monkeypatch, kfp_client, localdsp
):
    old, middle, newest = three_revisions(project, capsys, monkeypatch)
    settings = project.pipelines / "dsp-runner.yaml"
    settings.write_text(
        settings.read_text().replace(
            "  run_policy: on-change\n",
            "  run_policy: on-change\n  retention: {keep_versions: 2, keep_days: 0}\n",
        )
    )
    project.edit("add_pipeline.py", 'b="700"', 'b="7000"')
    localdsp.clear_requests()

    plan = project.run(capsys, "plan")

    assert plan.code == 0, plan.err
    assert all(r["method"] == "GET" for r in localdsp.requests())
    assert pruned(plan, "would-delete") == sorted([old, middle])
    assert f"{old}  would-delete" in plan.out

    deploy = project.run(capsys)

    assert deploy.code == 0, deploy.err
    assert pruned(deploy, "deleted") == sorted([old, middle])
    (outcome,) = deploy.summary["pipelines"]
    assert versions_of(kfp_client)[1] == sorted([ADD, newest, outcome["version_name"]])


def test_prune_reads_the_retention_of_the_target_it_runs_for(
    project, capsys, monkeypatch, kfp_client
):
    old, middle, newest = three_revisions(project, capsys, monkeypatch)
    settings = project.pipelines / "dsp-runner.yaml"
    settings.write_text(
        settings.read_text()
        + "targets:\n  prod:\n    defaults: {retention: {keep_versions: 2, keep_days: 0}}\n"
    )
    monkeypatch.setenv("DSP_TARGET", "prod")

    result = project.run(capsys, "prune")

    assert result.code == 0, result.err
    assert pruned(result, "deleted") == [old]
    assert versions_of(kfp_client)[1] == sorted([ADD, middle, newest])


def test_deploy_without_retention_prunes_nothing(project, capsys, monkeypatch, kfp_client):
    three_revisions(project, capsys, monkeypatch)
    result = project.run(capsys)
    assert result.summary["pruned"] == []
    assert len(versions_of(kfp_client)[1]) == 4


def version_ids(kfp_client) -> dict[str, str]:
    """Version id by name, and the pipeline's id under its own name."""
    pipeline = next(p for p in kfp_client.list_pipelines(page_size=100).pipelines if p.name == ADD)
    listed = kfp_client.list_pipeline_versions(pipeline.id, page_size=100).versions or []
    return {**{v.name: v.id for v in listed}, ADD: pipeline.id}
