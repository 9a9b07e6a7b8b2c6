"""Injected faults: deploy still succeeds, and the server holds no duplicate version or run."""

import threading
import time

import pytest

from runner_helpers import events

pytestmark = pytest.mark.integration


def assert_no_duplicates(client):
    """Exactly the four pipelines, each with its implicit and one content version, one run each."""
    pipelines = client.list_pipelines(page_size=100).pipelines or []
    assert len(pipelines) == 4
    for pipeline in pipelines:
        versions = client.list_pipeline_versions(pipeline.id, page_size=100).versions or []
        assert sorted(v.name for v in versions) == sorted(
            [pipeline.name, pipeline.default_version.name]
        )
    runs = client.list_runs(page_size=100).runs or []
    assert len(runs) == 4
    assert len({r.name for r in runs}) == 4
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
    result = project.run(capsys)
    assert result.code == 0
    assert_no_duplicates(kfp_client)
    retries = [e for e in events(result.err) if e["event"] == "server_call_retry"]
    assert [(e["operation"], e["error"]) for e in retries] == [("start run", "ReadTimeoutError")]


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
    assert result.summary["counts"]["versions_created"] == 4


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


# ---------------------------------------------------------------- uploads still CREATING


def release_after_a_lookup_found_nothing(localdsp):
    """Release the held upload once the runner's upload was refused as a duplicate and its
    lookup by name that followed found nothing (the name is taken, the pipeline unseen)."""

    def refused_then_looked_up() -> bool:
        log = localdsp.requests()
        refused = [i for i, r in enumerate(log) if r["path"].endswith("/upload")]
        refused = [i for i in refused if log[i]["status"] == 500]
        return bool(refused) and any(
            r["method"] == "GET" and r["path"] == "/apis/v1beta1/pipelines"
            for r in log[refused[0] + 1 :]
        )

    deadline = time.monotonic() + 30
    while not refused_then_looked_up() and time.monotonic() < deadline:
        time.sleep(0.02)
    localdsp.storage.release()


def test_a_racing_upload_still_creating_is_waited_for_and_adopted(
    project, capsys, kfp_client, localdsp, add_yaml
):
    """Another runner's upload of "Add Pipeline" holds the name while its file is stored: this
    runner's upload is refused as a duplicate and its lookup finds nothing, until it shows."""
    localdsp.storage.hold(uploads=1)
    rival = threading.Thread(
        target=kfp_client.upload_pipeline, args=(str(add_yaml), "Add Pipeline")
    )
    rival.start()
    assert localdsp.storage.wait_for_held()
    releaser = threading.Thread(target=release_after_a_lookup_found_nothing, args=(localdsp,))
    releaser.start()
    result = project.run(capsys)
    releaser.join()
    rival.join(10)
    assert result.code == 0, result.err
    (pipeline,) = [
        p for p in kfp_client.list_pipelines(page_size=100).pipelines if p.name == "Add Pipeline"
    ]
    adopted = {p["pipeline"]: p["pipeline_id"] for p in result.summary["pipelines"]}
    assert adopted["Add Pipeline"] == pipeline.id
    unseen = [e for e in events(result.err) if e["event"] == "upload_not_visible_yet"]
    assert unseen, "the lookup found nothing at first"
    assert {e["operation"] for e in unseen} == {"upload pipeline: look up existing"}
    assert all(e["wait_s"] > 0 for e in unseen), "it looks again after the retry backoff"
    assert any(e["event"] == "adopted_existing" for e in events(result.err))


def test_a_pipeline_name_stuck_creating_is_one_line_saying_what_to_do(
    project, capsys, kfp_client, localdsp
):
    """Storing the file fails: the rows stay CREATING for good, invisible and undeletable."""
    localdsp.storage.fail()
    result = project.run(capsys)
    assert result.code == 1
    errors = {p["pipeline"]: p["error"] for p in result.summary["pipelines"]}
    assert errors["Add Pipeline"] == (
        "pipeline 'Add Pipeline' is taken on the server but never became visible: the server "
        "keeps an upload in status CREATING until its file is stored, and for good when storing "
        "failed, where the API can neither show nor delete it; remove its row (Status CREATING) "
        "from the pipelines table of the DSP database, or rename the pipeline"
    )
    assert kfp_client.list_pipelines(page_size=100).pipelines is None


def test_a_version_stuck_creating_names_its_pipeline_and_is_cleared_by_deleting_it(
    project, capsys, kfp_client, localdsp
):
    assert project.run(capsys).code == 0
    project.edit("add_pipeline.py", 'b="7"', 'b="8"')
    localdsp.storage.fail()
    result = project.run(capsys)
    assert result.code == 1
    (failed,) = [p for p in result.summary["pipelines"] if p["error"]]
    assert failed["pipeline"] == "Add Pipeline"
    assert failed["error"] == (
        f"version '{failed['version_name']}' of pipeline 'Add Pipeline' is taken on the server but "
        "never became visible: the server keeps an upload in status CREATING until its file is "
        "stored, and for good when storing failed, where the API can neither show nor delete it; "
        "delete pipeline 'Add Pipeline' on the server (its versions go with it) and deploy again"
    )
    localdsp.storage.release()
    kfp_client.delete_pipeline(kfp_client.get_pipeline_id("Add Pipeline"))
    assert project.run(capsys).code == 0


def test_a_retried_call_of_one_pipeline_s_work_is_logged_under_its_name(
    project, capsys, localdsp, monkeypatch
):
    monkeypatch.setenv("DSP_CONCURRENCY", "1")
    localdsp.inject(
        method="POST",
        path="/apis/v1beta1/pipelines/upload_version",
        action="status",
        status=503,
        times=1,
    )
    result = project.run(capsys)
    assert result.code == 0, result.err
    retries = [e for e in events(result.err) if e["event"] == "server_call_retry"]
    assert [(e["pipeline"], e["operation"]) for e in retries] == [
        ("Add Pipeline", "upload pipeline version")
    ]


def test_a_plain_500_on_a_run_s_create_is_retried_not_taken_for_a_deleted_experiment(
    project, capsys, kfp_client, localdsp
):
    localdsp.inject(method="POST", path="/apis/v1beta1/runs", action="status", status=500, times=1)
    result = project.run(capsys)
    assert result.code == 0, result.err
    logged = events(result.err)
    assert [e["error"] for e in logged if e["event"] == "server_call_retry"] == [500]
    assert not [e for e in logged if e["event"] == "experiment_deleted"]
    assert_no_duplicates(kfp_client)
