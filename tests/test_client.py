"""The transport: TLS is verified, and a server that is down for a while is waited for."""

import threading
import time

import pytest
from conftest import TOKEN

from localdsp.server import LocalDSP
from runner import auth
from runner.errors import ExperimentGone
from runner.flavour_v1.client import DSPClient
from runner_helpers import Project, events

pytestmark = pytest.mark.integration


def test_tls_is_verified_against_the_configured_ca(tmp_path, capsys, monkeypatch):
    with LocalDSP(tmp_path / "data", tokens=["test-token"], tls=True) as dsp:
        assert dsp.url.startswith("https://")
        project = Project(tmp_path / "p", dsp.url, "test-token")
        project.env(monkeypatch)
        refused = project.run(capsys)
        assert refused.code == 5
        assert "TLSError: TLS verification failed" in refused.err.strip().splitlines()[-1]
        assert "set DSP_CA_BUNDLE" in refused.err
        monkeypatch.setenv("DSP_CA_BUNDLE", str(dsp.ca_file))
        assert project.run(capsys).code == 0


def test_turning_verification_off_is_explicit_and_warned_on_every_run(
    tmp_path, capsys, monkeypatch
):
    with LocalDSP(tmp_path / "data", tokens=["test-token"], tls=True) as dsp:
        project = Project(tmp_path / "p", dsp.url, "test-token")
        project.env(monkeypatch, DSP_INSECURE_SKIP_TLS_VERIFY="true")
        for _ in range(2):
            result = project.run(capsys)
            assert result.code == 0
            warned = [e for e in events(result.err) if e["event"] == "tls_verification_disabled"]
            assert warned and warned[0]["level"] == "warning"


def test_a_server_down_for_longer_than_one_backoff_step_is_waited_for(
    tmp_path, capsys, monkeypatch
):
    data = tmp_path / "data"
    with LocalDSP(data, tokens=["test-token"]) as first:
        port = first.port
    project = Project(tmp_path / "p", f"http://127.0.0.1:{port}", "test-token")
    project.env(monkeypatch, DSP_RETRY_MAX_WAIT="1", DSP_RETRIES="8")
    server = LocalDSP(data, tokens=["test-token"], port=port)
    restart = threading.Timer(2.0, server.start)
    restart.start()
    try:
        started = time.monotonic()
        result = project.run(capsys)
        assert result.code == 0, result.err
        assert time.monotonic() - started >= 2.0
        retries = [e for e in events(result.err) if e["event"] == "server_call_retry"]
        assert retries and all(e["operation"] == "connect" for e in retries)
    finally:
        restart.join()
        server.stop()


# ---------------------------------------------------------------- objects deleted mid-deploy


def before_first_call(monkeypatch, method: str, action) -> None:
    """A user acts (deletes something) just before the runner's first call of `method`."""
    original = getattr(DSPClient, method)
    pending = [action]
    lock = threading.Lock()  # concurrent workers wait until the user is done

    def wrapper(self, *args, **kwargs):
        with lock:
            while pending:
                pending.pop()(*args, **kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DSPClient, method, wrapper)


RUNS = "/apis/v1beta1/runs"


def post_count(localdsp, path: str) -> int:
    return sum(r["method"] == "POST" and r["path"] == path for r in localdsp.requests())


def test_a_pipeline_deleted_after_the_listing_is_uploaded_anew(
    project, capsys, kfp_client, monkeypatch
):
    """Its version lookup answers 404 (not an empty listing): the pipeline is created again."""
    assert project.run(capsys).code == 0
    project.edit("add_pipeline.py", 'b="7"', 'b="8"')
    add_id = kfp_client.get_pipeline_id("Add Pipeline")
    before_first_call(monkeypatch, "find_version", lambda *_: kfp_client.delete_pipeline(add_id))
    result = project.run(capsys)
    assert result.code == 0, result.err
    assert kfp_client.get_pipeline_id("Add Pipeline") not in (None, add_id)
    (add,) = [p for p in result.summary["pipelines"] if p["pipeline"] == "Add Pipeline"]
    assert (add["action"], add["run_started"]) == ("create", True)


def test_a_pipeline_deleted_before_its_version_upload_is_one_clear_line(
    project, capsys, kfp_client, monkeypatch
):
    assert project.run(capsys).code == 0
    project.edit("add_pipeline.py", 'b="7"', 'b="8"')
    before_first_call(
        monkeypatch,
        "upload_version",
        lambda _path, pipeline_id, *_, **__: kfp_client.delete_pipeline(pipeline_id),
    )
    result = project.run(capsys)
    assert result.code == 1
    errors = {p["pipeline"]: p["error"] for p in result.summary["pipelines"] if p["error"]}
    assert errors == {
        "Add Pipeline": "upload pipeline version: pipeline 'Add Pipeline' was deleted on the "
        "server during this deploy; deploy again to upload it anew"
    }
    monkeypatch.undo()
    project.env(monkeypatch)
    assert project.run(capsys).code == 0


def test_an_experiment_deleted_mid_job_is_made_again_not_retried_as_transient(
    project, capsys, kfp_client, localdsp, monkeypatch
):
    """The server answers a run in a deleted experiment with a 500 that never mends: one try,
    then the experiment is looked up (or created) again and the run started there."""
    before_first_call(
        monkeypatch, "start_run", lambda **call: kfp_client.delete_experiment(call["experiment_id"])
    )
    result = project.run(capsys)
    assert result.code == 0, result.err
    assert result.summary["counts"]["runs_started"] == 4
    posts = [r for r in localdsp.requests() if (r["method"], r["path"]) == ("POST", RUNS)]
    refused = [r for r in posts if r["status"] == 500]
    assert 1 <= len(refused) <= 4  # once per pipeline at most (they run concurrently)
    assert len(posts) == 4 + len(refused)
    experiment = kfp_client.get_experiment(experiment_name="dsp-runner")
    runs = kfp_client.list_runs(experiment_id=experiment.id, page_size=10).runs
    assert len(runs) == 4
    deleted = [e for e in events(result.err) if e["event"] == "experiment_deleted"]
    assert {e["experiment"] for e in deleted} == {"dsp-runner"}
    listed = kfp_client.list_experiments(page_size=10).experiments
    assert [e.name for e in listed].count("dsp-runner") == 1


def test_a_schedule_in_a_deleted_experiment_is_made_in_a_new_one(
    project, capsys, kfp_client, localdsp, monkeypatch
):
    monkeypatch.setenv("DSP_RUN_POLICY", "never")
    before_first_call(
        monkeypatch,
        "create_job",
        lambda **call: kfp_client.delete_experiment(call["experiment_id"]),
    )
    result = project.run(capsys)
    assert result.code == 0, result.err
    assert post_count(localdsp, "/apis/v1beta1/jobs") == 2
    (job,) = kfp_client.list_recurring_runs(page_size=10).jobs
    experiment = kfp_client.get_experiment(experiment_name="dsp-runner")
    assert [r.key.id for r in job.resource_references if r.key.type == "EXPERIMENT"] == [
        experiment.id
    ]


def test_a_run_in_a_deleted_experiment_fails_at_once_with_a_line_saying_so(
    localdsp, kfp_client, add_yaml, tmp_path
):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    client = DSPClient(
        host=localdsp.url,
        credentials=auth.credentials("", token_file),
        ca_bundle=None,
        verify_tls=True,
        request_timeout=5,
        retries=5,
        retry_max_wait=0.1,
    )
    pipeline = kfp_client.upload_pipeline(str(add_yaml), "p")
    experiment = kfp_client.create_experiment("gone")
    kfp_client.delete_experiment(experiment.id)
    with pytest.raises(ExperimentGone) as caught:
        client.start_run(
            experiment_id=experiment.id,
            name="r",
            pipeline_id=pipeline.id,
            version_id=pipeline.default_version.id,
            params={},
        )
    assert str(caught.value) == f"start run: experiment {experiment.id} was deleted on the server"
    assert post_count(localdsp, "/apis/v1beta1/runs") == 1


def test_a_dsp_2_server_is_refused_in_one_line_before_anything_is_written(
    tmp_path, capsys, monkeypatch
):
    """A DSP 2.x server still answers v1beta1's healthz: the v1 flavour asks v2beta1's too."""
    with LocalDSP(tmp_path / "data", tokens=["test-token"], api="v2") as dsp:
        project = Project(tmp_path / "p", dsp.url, "test-token")
        project.env(monkeypatch)
        result = project.run(capsys)
        sent = dsp.requests()
    assert result.code == 2
    (line,) = result.err.strip().splitlines()[-1:]
    assert f"DSP_HOST {dsp.url} is a DSP 2.x (Kubeflow Pipelines 2) server" in line
    assert "this is the v1 image" in line and "BACKEND=v2" in line
    assert [r for r in sent if r["method"] != "GET"] == []
    assert result.summary["exit_code"] == 2
