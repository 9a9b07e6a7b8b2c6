"""The run policy: which runs a deploy starts (README, per-pipeline settings `run_policy`)."""

import pytest

from runner_helpers import COMMIT

pytestmark = pytest.mark.integration

LATER = "fedcba9876543210fedcba9876543210fedcba98"


def run_names(kfp_client) -> list[str]:
    return sorted(r.name for r in kfp_client.list_runs(page_size=100).runs or [])


def test_on_change_starts_no_run_when_only_the_commit_changed(
    project, capsys, kfp_client, monkeypatch
):
    """on-change: one run per new version, named after the commit that brought the version."""
    assert project.run(capsys).code == 0
    first = run_names(kfp_client)
    assert len(first) == 4 and all(name.endswith(f"@{COMMIT[:12]}") for name in first)

    monkeypatch.setenv("DSP_GIT_COMMIT", LATER)
    result = project.run(capsys)

    assert result.code == 0
    assert result.summary["counts"]["runs_started"] == 0
    assert run_names(kfp_client) == first


def test_on_change_starts_a_run_of_a_changed_pipeline_named_after_the_new_commit(
    project, capsys, kfp_client, monkeypatch
):
    assert project.run(capsys).code == 0
    project.edit("add_pipeline.py", 'b="7"', 'b="8"')
    monkeypatch.setenv("DSP_GIT_COMMIT", LATER)
    result = project.run(capsys)

    assert result.summary["counts"]["runs_started"] == 1
    new = [name for name in run_names(kfp_client) if name.endswith(f"@{LATER[:12]}")]
    assert len(new) == 1 and new[0].startswith("add-pipeline-")
