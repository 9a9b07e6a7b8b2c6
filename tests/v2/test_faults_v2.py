"""Injected faults on the v2beta1 routes: deploy still succeeds, and the server holds no
duplicate pipeline, version, experiment, run or recurring run."""

import pytest
from v2_helpers import jobs, server_state

from runner_helpers import events

pytestmark = pytest.mark.integration
B = "/apis/v2beta1"


def assert_no_duplicates(client):
    """The three pipelines, each with its one content version; one run each; one experiment;
    the one enabled nightly recurring run."""
    pipelines, runs = server_state(client)
    assert len(pipelines) == 3
    for pipeline in pipelines.values():
        assert pipeline["versions"] == [pipeline["newest"]]
    assert len(runs) == 3
    assert len({r.display_name for r in runs}) == 3
    experiments = client.list_experiments(page_size=100).experiments or []
    assert [e.display_name for e in experiments if e.display_name == "dsp-runner"] == ["dsp-runner"]
    assert [
        (j.display_name.startswith("data-quality-gate-nightly-"), j.mode) for j in jobs(client)
    ] == [(True, "ENABLE")]


@pytest.mark.parametrize(
    ("path", "method"),
    [
        (f"{B}/pipelines", "POST"),
        (f"{B}/pipelines/upload_version", "POST"),
        (f"{B}/experiments", "POST"),
        (f"{B}/runs", "POST"),
        (f"{B}/recurringruns", "POST"),
        ("/apis/v1beta1/pipelines", "GET"),
    ],
)
def test_503_bursts_are_retried(project, capsys, kfp_client, dsp, path, method):
    dsp.inject(method=method, path=path, action="status", status=503, times=2)
    result = project.run(capsys)
    assert result.code == 0, result.err
    assert_no_duplicates(kfp_client)
    retries = [e for e in events(result.err) if e["event"] == "server_call_retry"]
    assert [e["error"] for e in retries] == [503, 503]


def test_429_waits_as_long_as_retry_after_says(project, capsys, kfp_client, dsp):
    dsp.inject(
        method="POST",
        path=f"{B}/pipelines/upload_version",
        action="status",
        status=429,
        headers={"Retry-After": "1"},
        times=1,
    )
    result = project.run(capsys)
    assert result.code == 0
    (retry,) = [e for e in events(result.err) if e["event"] == "server_call_retry"]
    assert (retry["error"], retry["wait_s"]) == (429, 1.0)
    assert_no_duplicates(kfp_client)


@pytest.mark.parametrize(
    "path",
    [
        f"{B}/pipelines",
        f"{B}/pipelines/upload_version",
        f"{B}/experiments",
        f"{B}/runs",
        f"{B}/recurringruns",
    ],
)
def test_connection_dropped_after_the_server_committed_a_create(
    project, capsys, kfp_client, dsp, path
):
    dsp.inject(method="POST", path=path, action="drop_after_commit", times=1)
    result = project.run(capsys)
    assert result.code == 0, result.err
    assert_no_duplicates(kfp_client)
    assert any(e["event"] == "adopted_existing" for e in events(result.err))


def test_a_409_on_a_create_is_adopted_never_retried(project, capsys, kfp_client, dsp):
    """A racing runner made the pipeline first: its upload answers 409, which means 'it
    exists', and the runner goes on with that pipeline."""
    dsp.inject(method="POST", path=f"{B}/pipelines", action="drop_after_commit", times=1)
    dsp.inject(method="GET", path=f"{B}/pipelines/names/.*", action="status", status=404, times=1)
    result = project.run(capsys)
    assert result.code == 0, result.err
    assert_no_duplicates(kfp_client)
    retried = [e for e in events(result.err) if e["event"] == "server_call_retry"]
    assert all(e["error"] != 409 for e in retried)


def test_a_2xx_html_page_is_an_error_not_an_empty_listing(project, capsys, dsp):
    dsp.inject(
        method="GET",
        path="/apis/v1beta1/pipelines",
        action="status",
        status=200,
        content_type="text/html",
        body="<html>Log in with OpenShift</html>",
        times=None,
    )
    result = project.run(capsys)
    assert result.code == 1
    assert "non-JSON page" in result.err.strip().splitlines()[-1]
    assert result.summary["counts"]["versions_created"] == 0


def test_a_taken_pipeline_name_is_looked_up_until_the_pipeline_shows(
    project, capsys, kfp_client, dsp
):
    """CreatePipeline inserts the pipeline CREATING (hidden) and marks it READY after: a racing
    create's 409 can come before the pipeline is visible, so the lookup is tried again."""
    dsp.inject(method="POST", path=f"{B}/pipelines", action="drop_after_commit", times=1)
    dsp.inject(method="GET", path=f"{B}/pipelines/names/.*", action="status", status=404, times=2)
    result = project.run(capsys)
    assert result.code == 0, result.err
    assert_no_duplicates(kfp_client)
