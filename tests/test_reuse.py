"""Compile skipping: what a deploy compiles, uploads and records after each kind of change."""

import pytest

from runner import versions
from runner_helpers import events

pytestmark = pytest.mark.integration

MODULES = 4


def skipped(result) -> int:
    """How many modules the deploy did not import (0 when it compiled them all)."""
    return sum(e["modules"] for e in events(result.err) if e["event"] == "compile_skipped")


def records(kfp_client) -> dict[str, object]:
    """The fingerprint records on the server, by name."""
    listed = kfp_client.experiments.list_experiment(page_size=200).experiments or []
    return {e.name: e for e in listed if e.name.startswith("dsp-runner-fingerprint-")}


def api_requests(localdsp) -> list[dict]:
    return [r for r in localdsp.requests() if r["path"].startswith("/apis/")]


def writes(localdsp) -> list[dict]:
    return [r for r in api_requests(localdsp) if r["method"] in ("POST", "DELETE")]


def test_editing_the_settings_file_recompiles_nothing(project, capsys):
    assert project.run(capsys).code == 0
    settings = project.pipelines / "dsp-runner.yaml"
    settings.write_text(settings.read_text() + "# a comment\n")
    result = project.run(capsys)
    assert result.code == 0
    assert skipped(result) == MODULES
    assert result.summary["counts"]["versions_created"] == 0


def upgrade_the_runner(project, monkeypatch):
    installed = versions._installed_version
    monkeypatch.setattr(
        versions,
        "_installed_version",
        lambda package: "99.0" if package == "dsp-runner" else installed(package),
    )


def comment_a_helper(project, monkeypatch):
    (project.pipelines / "_shared.py").write_text("# nothing any pipeline reads\n")


@pytest.mark.parametrize("change", [comment_a_helper, upgrade_the_runner])
def test_after_a_change_that_compiles_to_the_same_yaml_the_next_deploy_compiles_nothing(
    project, capsys, kfp_client, localdsp, monkeypatch, change
):
    assert project.run(capsys).code == 0
    change(project, monkeypatch)

    first = project.run(capsys)
    assert first.code == 0
    assert skipped(first) == 0
    assert first.summary["counts"]["versions_created"] == 0
    recorded = records(kfp_client)
    assert len(recorded) == MODULES
    assert {e.storage_state for e in recorded.values()} == {"STORAGESTATE_ARCHIVED"}
    assert all(e.description.startswith("dsp-runner: ") for e in recorded.values())

    localdsp.clear_requests()
    second = project.run(capsys)
    assert second.code == 0
    assert skipped(second) == MODULES
    assert second.summary["counts"]["versions_created"] == 0
    assert writes(localdsp) == []
    assert len(api_requests(localdsp)) == 7

    project.edit("add_pipeline.py", 'b="7"', 'b="8"')
    third = project.run(capsys)
    assert third.summary["counts"]["versions_created"] == 1
    assert skipped(third) == MODULES - 1

    fourth = project.run(capsys)
    assert skipped(fourth) == MODULES
    assert fourth.summary["counts"]["versions_created"] == 0
    assert len(records(kfp_client)) == MODULES - 1


def test_a_no_op_deploy_sends_six_requests(project, capsys, localdsp):
    assert project.run(capsys).code == 0
    localdsp.clear_requests()
    result = project.run(capsys)
    assert skipped(result) == MODULES
    paths = [
        (r["method"], r["path"].removeprefix("/apis/v1beta1/")) for r in api_requests(localdsp)
    ]
    assert sorted(paths) == [
        ("GET", "/apis/v2beta1/healthz"),
        ("GET", "experiments"),
        ("GET", "healthz"),
        ("GET", "jobs"),
        ("GET", "pipelines"),
        ("GET", "runs"),
    ]


def test_a_second_helper_change_replaces_the_records_instead_of_adding_to_them(
    project, capsys, kfp_client
):
    assert project.run(capsys).code == 0
    comment_a_helper(project, None)
    assert project.run(capsys).code == 0
    before = set(records(kfp_client))
    (project.pipelines / "_shared.py").write_text("# another comment\n")
    result = project.run(capsys)
    assert skipped(result) == 0
    after = set(records(kfp_client))
    assert len(after) == MODULES
    assert not after & before
    assert skipped(project.run(capsys)) == MODULES


def test_plan_reads_the_records_and_writes_none(project, capsys, localdsp):
    assert project.run(capsys).code == 0
    comment_a_helper(project, None)
    localdsp.clear_requests()
    assert skipped(project.run(capsys, "plan")) == 0
    assert writes(localdsp) == []
    assert project.run(capsys).code == 0
    localdsp.clear_requests()
    assert skipped(project.run(capsys, "plan")) == MODULES
    assert writes(localdsp) == []


def test_a_record_the_server_refuses_is_a_warning_and_the_next_deploy_compiles_again(
    project, capsys, kfp_client, localdsp
):
    assert project.run(capsys).code == 0
    comment_a_helper(project, None)
    localdsp.inject(
        method="POST", path="/apis/v1beta1/experiments", action="status", status=400, times=100
    )
    result = project.run(capsys)
    assert result.code == 0
    refused = [e for e in events(result.err) if e["event"] == "fingerprint_not_recorded"]
    assert len(refused) == MODULES
    assert refused[0]["record"].startswith("dsp-runner-fingerprint-")
    assert records(kfp_client) == {}
    localdsp.clear_faults()
    assert skipped(project.run(capsys)) == 0
    assert skipped(project.run(capsys)) == MODULES
