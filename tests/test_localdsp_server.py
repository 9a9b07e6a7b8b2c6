"""The in-process server: persistence, the oauth-proxy's 403 page, admin endpoints and TLS."""

import time

import kfp_tekton
import pytest
import urllib3
from kfp_server_api.exceptions import ApiException

from localdsp.server import LocalDSP

pytestmark = pytest.mark.integration

HEALTHZ = "/apis/v1beta1/healthz"


def test_state_survives_a_restart_on_the_same_folder(tmp_path, add_yaml):
    with LocalDSP(tmp_path / "data") as first:
        client = kfp_tekton.TektonClient(host=first.url)
        pipeline = client.upload_pipeline(str(add_yaml), "Add Pipeline")
        version = client.upload_pipeline_version(str(add_yaml), "v2", pipeline_id=pipeline.id)
        experiment = client.create_experiment("exp")
        run = client.run_pipeline(experiment.id, "r", version_id=version.id)
    with LocalDSP(tmp_path / "data") as second:
        client = kfp_tekton.TektonClient(host=second.url)
        assert client.get_pipeline_id("Add Pipeline") == pipeline.id
        assert client.get_pipeline(pipeline.id).default_version.id == version.id
        assert client.get_run(run.id).run.name == "r"
        later = client.upload_pipeline_version(str(add_yaml), "v3", pipeline_id=pipeline.id)
        versions = client.list_pipeline_versions(pipeline.id, sort_by="created_at desc").versions
        assert versions[0].id == later.id
        assert [e.name for e in client.list_experiments().experiments] == ["Default", "exp"]


def test_stop_is_quick_even_with_a_client_connection_open(tmp_path):
    dsp = LocalDSP(tmp_path / "data").start()
    client = kfp_tekton.TektonClient(host=dsp.url)
    client.list_pipelines()
    started = time.monotonic()
    dsp.stop()
    assert time.monotonic() - started < 2


def test_healthz_is_the_hand_written_json_as_text_plain(api, kfp_client):
    response = api("GET", HEALTHZ)
    assert response.text == '{"commit_sha":"unknown", "tag_name":"localdsp", "multi_user":false}'
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert kfp_client.get_kfp_healthz().multi_user is False


@pytest.mark.parametrize("token", [None, "wrong-token"])
@pytest.mark.parametrize("path", [HEALTHZ, "/apis/v1beta1/pipelines", "/anything"])
def test_a_missing_or_wrong_token_gets_the_403_sign_in_page(api, token, path):
    response = api("GET", path, token=token)
    assert response.status == 403
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "Log in with OpenShift" in response.text


def test_tokens_can_be_rotated_and_revoked_at_runtime(localdsp, kfp_client, api):
    kfp_client.list_pipelines()
    localdsp.set_tokens(["rotated"])
    with pytest.raises(ApiException) as caught:
        kfp_client.list_pipelines()
    assert caught.value.status == 403
    assert api("GET", HEALTHZ, token="rotated").status == 200
    assert api("PUT", "/_localdsp/tokens", body={"tokens": ["third"]}).status == 200
    assert api("GET", HEALTHZ, token="rotated").status == 403
    assert api("GET", HEALTHZ, token="third").status == 200
    localdsp.set_tokens(None)
    assert api("GET", HEALTHZ, token=None).status == 200


def test_tokens_never_show(localdsp, api):
    assert "test-token" not in repr(localdsp.tokens)
    api("GET", HEALTHZ)
    assert "test-token" not in str(localdsp.requests())
    assert api("PUT", "/_localdsp/tokens", body={"tokens": "x"}).status == 400


def test_admin_endpoints_need_no_token_and_are_not_logged(api):
    assert api("GET", "/_localdsp/health", token=None).json == {"status": "ok"}
    api("GET", HEALTHZ)
    log = api("GET", "/_localdsp/requests", token=None).json
    assert [(r["method"], r["path"], r["status"]) for r in log] == [("GET", HEALTHZ, 200)]
    assert api("DELETE", "/_localdsp/requests").json == {}
    assert api("GET", "/_localdsp/requests").json == []


def test_state_dump_and_reset(api, kfp_client, add_yaml):
    pipeline = kfp_client.upload_pipeline(str(add_yaml), "Add Pipeline")
    experiment = kfp_client.create_experiment("exp")
    kfp_client.run_pipeline(experiment.id, "r", pipeline_id=pipeline.id, params={"a": "2"})
    state = api("GET", "/_localdsp/state").json
    ((dumped,),) = [state["pipelines"]]
    assert (dumped["name"], dumped["default_version_name"]) == ("Add Pipeline", "Add Pipeline")
    assert [(v["id"], v["pipeline_id"]) for v in state["versions"]] == [(pipeline.id, pipeline.id)]
    assert [e["name"] for e in state["experiments"]] == ["Default", "exp"]
    (run,) = state["runs"]
    assert (run["name"], run["status"], run["finished_at"]) == ("r", "", None)
    assert (run["experiment_id"], run["pipeline_version_id"]) == (experiment.id, pipeline.id)
    assert run["parameters"] == {"a": "2"}
    assert api("POST", "/_localdsp/reset").status == 200
    state = api("GET", "/_localdsp/state").json
    assert [e["name"] for e in state["experiments"]] == ["Default"]
    assert state["pipelines"] == state["runs"] == state["jobs"] == []


def test_unknown_routes_are_plain_404s(api):
    response = api("GET", "/apis/v1beta1/nothing-here")
    assert (response.status, response.text) == (404, "Not Found")


def test_tls_with_a_self_signed_certificate(tmp_path):
    with LocalDSP(tmp_path / "data", tokens=["t"], tls=True) as dsp:
        assert dsp.url.startswith("https://127.0.0.1:")
        trusted = kfp_tekton.TektonClient(
            host=dsp.url, existing_token="t", ssl_ca_cert=str(dsp.ca_file)
        )
        assert trusted.list_pipelines().total_size is None
        untrusted = kfp_tekton.TektonClient(host=dsp.url, existing_token="t", namespace="x")
        with pytest.raises(urllib3.exceptions.MaxRetryError, match="CERTIFICATE_VERIFY_FAILED"):
            untrusted.pipelines.list_pipelines()
