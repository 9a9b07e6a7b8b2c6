"""Injected faults: deploy still succeeds, and the server holds no duplicate version or run."""

import pytest

from runner_helpers import events

pytestmark = pytest.mark.integration


def assert_no_duplicates(client):
    """Exactly the three pipelines, each with its implicit and one content version, one run each."""
    pipelines = client.list_pipelines(page_size=100).pipelines or []
    assert len(pipelines) == 3
    for pipeline in pipelines:
        versions = client.list_pipeline_versions(pipeline.id, page_size=100).versions or []
        assert sorted(v.name for v in versions) == sorted(
            [pipeline.name, pipeline.default_version.name]
        )
    runs = client.list_runs(page_size=100).runs or []
    assert len(runs) == 3
    assert len({r.name for r in runs}) == 3
    experiments = client.list_experiments(page_size=100).experiments or []
    assert [e.name for e in experiments if e.name == "dsp-runner"] == ["dsp-runner"]
    jobs = client.list_recurring_runs(page_size=100).jobs or []
    assert [(j.name.startswith("data-quality-gate-nightly-"), j.enabled) for j in jobs] == [
        (True, True)
    ]


@pytest.mark.parametrize(
    ("path", "method"),
    [
        (r"/apis/v1beta1/pipelines/upload", "POST"),
        (r"/apis/v1beta1/pipelines/upload_version", "POST"),
        (r"/apis/v1beta1/experiments", "POST"),
        (r"/apis/v1beta1/runs", "POST"),
        (r"/apis/v1beta1/pipelines", "GET"),
    ],
)
def test_503_bursts_are_retried(project, capsys, kfp_client, localdsp, path, method):
    localdsp.inject(method=method, path=path, action="status", status=503, times=2)
    result = project.run(capsys)
    assert result.code == 0, result.err
    assert_no_duplicates(kfp_client)
    retries = [e for e in events(result.err) if e["event"] == "server_call_retry"]
    assert [e["error"] for e in retries] == [503, 503]


@pytest.mark.parametrize("status", [502, 504])
def test_gateway_errors_with_html_bodies_are_retried(project, capsys, kfp_client, localdsp, status):
    localdsp.inject(
        method="POST",
        path="/apis/v1beta1/runs",
        action="status",
        status=status,
        body="<html><body>Application is not available</body></html>",
        content_type="text/html",
        times=1,
    )
    assert project.run(capsys).code == 0
    assert_no_duplicates(kfp_client)


def test_429_waits_as_long_as_retry_after_says(project, capsys, kfp_client, localdsp):
    localdsp.inject(
        method="POST",
        path="/apis/v1beta1/pipelines/upload_version",
        action="status",
        status=429,
        headers={"Retry-After": "1"},
        times=1,
    )
    result = project.run(capsys)
    assert result.code == 0
    (retry,) = [e for e in events(result.err) if e["event"] == "server_call_retry"]
    assert retry["error"] == 429
    assert retry["wait_s"] == 1.0
    assert_no_duplicates(kfp_client)


@pytest.mark.parametrize(
    "path",
    [
        "/apis/v1beta1/pipelines/upload",
        "/apis/v1beta1/pipelines/upload_version",
        "/apis/v1beta1/experiments",
        "/apis/v1beta1/runs",
        "/apis/v1beta1/jobs",
    ],
)
def test_connection_dropped_after_the_server_committed_a_create(
    project, capsys, kfp_client, localdsp, path
):
    localdsp.inject(method="POST", path=path, action="drop_after_commit", times=1)
    result = project.run(capsys)
    assert result.code == 0, result.err
    assert_no_duplicates(kfp_client)
    assert any(e["event"] == "adopted_existing" for e in events(result.err))


def test_answer_slower_than_the_timeout_after_the_server_committed(
    project, capsys, kfp_client, localdsp, monkeypatch
):
    monkeypatch.setenv("DSP_REQUEST_TIMEOUT", "1")
    localdsp.inject(method="POST", path="/apis/v1beta1/runs", action="delay", seconds=2, times=1)
    assert project.run(capsys).code == 0
    assert_no_duplicates(kfp_client)


def test_retry_budget_exhausted_fails_the_pipeline_with_the_last_error(
    project, capsys, localdsp, monkeypatch
):
    monkeypatch.setenv("DSP_RETRIES", "3")
    localdsp.inject(
        method="POST", path="/apis/v1beta1/runs", action="status", status=503, times=1000
    )
    result = project.run(capsys)
    assert result.code == 1
    errors = {p["pipeline"]: p["error"] for p in result.summary["pipelines"]}
    assert all(error.startswith("start run: HTTP 503") for error in errors.values())
    assert result.summary["counts"]["versions_created"] == 3


def test_a_2xx_html_page_is_an_error_not_an_empty_listing(project, capsys, localdsp):
    localdsp.inject(
        method="GET",
        path="/apis/v1beta1/pipelines",
        action="status",
        status=200,
        body="<html>Log in with OpenShift</html>",
        content_type="text/html",
        times=1000,
    )
    result = project.run(capsys)
    assert result.code == 1
    assert "with a non-JSON page: is DSP_HOST the DSP API route" in result.err


def test_a_truncated_json_answer_is_an_error_not_a_traceback(project, capsys, localdsp):
    localdsp.inject(
        method="GET",
        path="/apis/v1beta1/pipelines",
        action="status",
        status=200,
        body='{"pipelines": [{"id": "',
        content_type="application/json",
        times=1000,
    )
    result = project.run(capsys)
    assert result.code == 1
    (last,) = result.err.strip().splitlines()[-1:]
    assert last.startswith("dsp-runner: UnexpectedResponse: GET /apis/v1beta1/pipelines answered")
    assert "Traceback" not in result.err
