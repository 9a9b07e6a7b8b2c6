"""Schedules in the settings file become DSP 2.x recurring runs, and follow the file: no gap, no
duplicate, a user's own recurring run untouched, a run in flight left alone."""

import io
import textwrap
import time
import warnings

import pytest
from conftest import TOKEN, v2_project
from v2_helpers import writes

from localdsp.server import LocalDSP

pytestmark = pytest.mark.integration
B = "/apis/v2beta1"
SETTINGS = """
pipelines:
  Add Pipeline:
    arguments: {{a: 7, b: 8}}
    schedules:
{schedules}
"""
SLOW_ADD = """
from kfp import dsl


@dsl.component(base_image="python:3.11")
def add(a: float, b: float) -> float:
    import time

    time.sleep(60)
    return a + b


@dsl.pipeline(name="add-pipeline", display_name="Add Pipeline")
def add_pipeline(a: float = 1.0, b: float = 7.0) -> float:
    return add(a=a, b=b).output
"""


@pytest.fixture
def project(tmp_path, dsp, monkeypatch):
    project = v2_project(tmp_path / "project", dsp.url)
    project.env(monkeypatch, DSP_RUN_POLICY="never")
    return project


def declare(project, *lines):
    body = "\n".join(f"      - {line}" for line in lines) if lines else "      []"
    (project.pipelines / "dsp-runner.yaml").write_text(
        textwrap.dedent(SETTINGS).format(schedules=body)
    )


def jobs(client):
    """(name, mode, cron) of every recurring run on the server."""
    found = client.list_recurring_runs(page_size=100).recurring_runs or []
    return sorted((j.display_name, j.mode, j.trigger.cron_schedule.cron) for j in found)


def test_add_change_remove_follow_the_file_and_a_second_deploy_is_a_no_op(
    project, capsys, kfp_client, dsp
):
    declare(project, '{name: hourly, cron: "0 0 * * * *"}')
    assert project.run(capsys).code == 0
    (first,) = jobs(kfp_client)
    assert first[0].startswith("add-pipeline-hourly-") and first[1:] == ("ENABLE", "0 0 * * * *")
    (job,) = kfp_client.list_recurring_runs(page_size=100).recurring_runs
    pipelines, _ = _pipeline_ids(kfp_client)
    assert job.pipeline_version_reference.pipeline_version_id in pipelines["Add Pipeline"]
    assert job.runtime_config.parameters == {"a": 7.0, "b": 8.0}
    assert job.no_catchup is True

    dsp.clear_requests()
    result = project.run(capsys)
    assert result.code == 0
    assert result.summary["counts"]["schedule_changes"] == 0
    assert writes(dsp) == []

    declare(project, '{name: hourly, cron: "0 30 * * * *"}')
    assert project.run(capsys).code == 0
    (changed,) = jobs(kfp_client)
    assert changed[1:] == ("ENABLE", "0 30 * * * *") and changed[0] != first[0]

    declare(project, '{name: hourly, cron: "0 30 * * * *", enabled: false}')
    assert project.run(capsys).code == 0
    assert [j[1] for j in jobs(kfp_client)] == ["DISABLE"]

    declare(project)
    assert project.run(capsys).code == 0
    assert jobs(kfp_client) == []


def _pipeline_ids(client):
    pipelines = {}
    for p in client.list_pipelines(page_size=100).pipelines or []:
        versions = client.list_pipeline_versions(p.pipeline_id).pipeline_versions or []
        pipelines[p.display_name] = {v.pipeline_version_id for v in versions}
    return pipelines, None


def test_a_swap_never_has_two_enabled_recurring_runs_for_one_schedule(
    project, capsys, dsp, kfp_client
):
    declare(project, '{name: hourly, cron: "0 0 * * * *"}')
    assert project.run(capsys).code == 0
    ((old, _, _),) = jobs(kfp_client)
    old_id = kfp_client.list_recurring_runs().recurring_runs[0].recurring_run_id
    declare(project, '{name: hourly, cron: "0 30 * * * *"}')
    dsp.clear_requests()
    assert project.run(capsys).code == 0
    (job,) = kfp_client.list_recurring_runs().recurring_runs
    steps = [
        (r["method"], r["path"].removeprefix(f"{B}/recurringruns"))
        for r in writes(dsp)
        if "recurringruns" in r["path"]
    ]
    assert steps == [
        ("POST", ""),
        ("POST", f"/{old_id}:disable"),
        ("POST", f"/{job.recurring_run_id}:enable"),
        ("DELETE", f"/{old_id}"),
    ]
    created = next(r for r in writes(dsp) if r["path"] == f"{B}/recurringruns")
    assert created["status"] == 200 and job.display_name != old


def test_a_users_own_recurring_run_is_never_touched(project, capsys, kfp_client):
    declare(project, '{name: hourly, cron: "0 0 * * * *"}')
    assert project.run(capsys).code == 0
    pipeline_id = kfp_client.get_pipeline_id("Add Pipeline")
    versions = kfp_client.list_pipeline_versions(pipeline_id).pipeline_versions
    with warnings.catch_warnings(), _quiet():
        experiment = kfp_client.create_experiment("by-hand")
    kfp_client.create_recurring_run(
        experiment.experiment_id,
        "my own recurring run",
        cron_expression="0 0 5 * * *",
        pipeline_id=pipeline_id,
        version_id=versions[0].pipeline_version_id,
    )
    declare(project)
    assert project.run(capsys).code == 0
    assert jobs(kfp_client) == [("my own recurring run", "ENABLE", "0 0 5 * * *")]


def _quiet():
    """kfp's create_experiment prints a link; keep it out of the runner's captured output."""
    import contextlib

    return contextlib.redirect_stdout(io.StringIO())


def test_a_run_in_flight_is_not_stopped_by_a_schedule_swap(tmp_path, capsys, monkeypatch):
    with LocalDSP(tmp_path / "data", tokens=[TOKEN], api="v2", execute=True) as server:
        project = v2_project(tmp_path / "project", server.url)
        project.env(monkeypatch, DSP_RUN_POLICY="on-change", DSP_ONLY="Add Pipeline")
        (project.pipelines / "add_pipeline.py").write_text(SLOW_ADD)
        declare(project, '{name: hourly, cron: "0 0 * * * *"}')
        first = project.run(capsys)
        assert first.code == 0, first.err
        (add,) = first.summary["pipelines"]
        _wait_for_state(server, add["run_id"], "RUNNING")
        declare(project, '{name: hourly, cron: "0 15 * * * *"}')
        server.clear_requests()
        assert project.run(capsys).code == 0
        assert any(r["method"] == "DELETE" for r in writes(server))
        assert not any(":terminate" in r["path"] for r in server.requests())
        assert _state(server, add["run_id"]) == "RUNNING"


def _state(server, run_id):
    import json
    import urllib.request

    request = urllib.request.Request(  # noqa: S310 - the test's own loopback server
        f"{server.url}{B}/runs/{run_id}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())["state"]


def _wait_for_state(server, run_id, wanted, deadline=60.0):
    end = time.monotonic() + deadline
    while _state(server, run_id) != wanted:
        assert time.monotonic() < end, f"run {run_id} never became {wanted}"
        time.sleep(0.1)


@pytest.mark.parametrize(("tag", "orphan"), [("2.16.0", True), ("2.5.0", False)])
def test_a_recurring_run_is_deleted_without_its_runs_where_the_server_can(
    project, capsys, dsp, tag, orphan
):
    """KFP 2.16 added propagation_policy=ORPHAN; an older server is not sent what it lacks."""
    dsp.inject(
        method="GET",
        path=f"{B}/healthz",
        action="status",
        status=200,
        body=f'{{"commit_sha": "x", "tag_name": "{tag}", "multi_user": false}}',
        times=None,
    )
    declare(project, '{name: hourly, cron: "0 0 * * * *"}')
    assert project.run(capsys).code == 0
    declare(project)
    dsp.clear_requests()
    assert project.run(capsys).code == 0
    (delete,) = [r for r in writes(dsp) if r["method"] == "DELETE"]
    assert ("propagation_policy=ORPHAN" in (delete["query"] or "")) is orphan
