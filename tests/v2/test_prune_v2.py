"""`prune` against localdsp --api v2 through kfp 2's client: the twin of tests/test_prune.py."""

import pytest
from v2_helpers import server_state

from runner_helpers import deploy_revisions, events

pytestmark = pytest.mark.integration
ADD = "Add Pipeline"
REVISIONS = ("b: float = 7.0", "b: float = 70.0", "b: float = 700.0")


def three_revisions(project, capsys, monkeypatch) -> list[str]:
    """Deploy the add pipeline three times, each time changed; its version names, oldest first."""
    return deploy_revisions(project, capsys, monkeypatch, ADD, REVISIONS)


def test_prune_keep_1_leaves_the_newest_and_the_runs_of_deleted_versions_readable(
    project, capsys, monkeypatch, kfp_client, dsp
):
    old, middle, newest = three_revisions(project, capsys, monkeypatch)
    pipelines, runs = server_state(kfp_client)
    ids = pipelines[ADD]["version_ids"]
    by_version = {r.pipeline_version_reference.pipeline_version_id: r for r in runs}
    old_run = by_version[ids[old]]
    specs = {
        name: dsp.backend.get_run(by_version[ids[name]].run_id).source.spec
        for name in (old, middle)
    }
    experiment = kfp_client.create_experiment("by-hand")
    job = kfp_client.create_recurring_run(
        experiment.experiment_id,
        "paused",
        cron_expression="0 0 * * * *",
        pipeline_id=pipelines[ADD]["id"],
        version_id=ids[middle],
        enabled=False,
    )

    result = project.run(capsys, "prune", "--keep", "1", "--keep-days", "0")

    assert result.code == 0, result.err
    after, _ = server_state(kfp_client)
    assert after[ADD]["versions"] == [newest]  # created empty: no version named after it
    assert after[ADD]["newest"] == newest
    kept = {p["version"]: p["reason"] for p in result.summary["pruned"] if p["action"] == "kept"}
    assert kept == {newest: "the pipeline's default version"}
    assert {e["version"] for e in events(result.err) if e["event"] == "version_deleted"} == {
        old,
        middle,
    }
    run = kfp_client.get_run(old_run.run_id)
    assert run.display_name == old_run.display_name
    assert run.pipeline_version_reference.pipeline_version_id == ids[old]
    for name in (old, middle):
        assert dsp.backend.get_run(by_version[ids[name]].run_id).source.spec == specs[name]
    pinned = kfp_client.get_recurring_run(job.recurring_run_id)
    assert pinned.pipeline_version_reference.pipeline_version_id == ids[middle]

    dsp.clear_requests()
    again = project.run(capsys, "prune", "--keep", "1", "--keep-days", "0")
    assert again.code == 0
    assert [r for r in dsp.requests() if r["method"] == "DELETE"] == []


def test_a_dropped_delete_answer_is_done_on_the_retry(project, capsys, monkeypatch, dsp):
    old, middle, _ = three_revisions(project, capsys, monkeypatch)
    dsp.clear_requests()
    dsp.inject(
        method="DELETE", path=r"/apis/v2beta1/pipelines/.*/versions/.*", action="drop_after_commit"
    )
    result = project.run(capsys, "prune", "--keep", "1", "--keep-days", "0")
    assert result.code == 0, result.err
    assert sorted(p["version"] for p in result.summary["pruned"] if p["action"] == "deleted") == (
        sorted([old, middle])
    )
    statuses = [r["status"] for r in dsp.requests() if r["method"] == "DELETE"]
    assert statuses.count(404) == 1 and len(statuses) == 3


def test_versions_with_recent_runs_and_an_enabled_recurring_run_are_kept(
    project, capsys, monkeypatch, kfp_client
):
    old, middle, newest = three_revisions(project, capsys, monkeypatch)
    pipelines, _ = server_state(kfp_client)
    experiment = kfp_client.create_experiment("by-hand")
    kfp_client.create_recurring_run(
        experiment.experiment_id,
        "hourly",
        cron_expression="0 0 * * * *",
        pipeline_id=pipelines[ADD]["id"],
        version_id=pipelines[ADD]["version_ids"][old],
    )
    result = project.run(capsys, "prune", "--keep", "1")  # DSP_KEEP_DAYS: 7 by default
    assert result.code == 0, result.err
    assert server_state(kfp_client)[0][ADD]["versions"] == sorted([old, middle, newest])
    reasons = {p["version"]: p["reason"] for p in result.summary["pruned"]}
    assert reasons[old] == "enabled recurring run 'hourly' uses it"
    assert reasons[middle] == f"run '{middle}@0123456789ab' started within 7 day(s)"
