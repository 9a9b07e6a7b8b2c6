"""localdsp with `api="v2"` answers as a KFP 2.5.0 server (DSP 2.x) does, over plain HTTP.

The rules checked here come from kubeflow/pipelines tag 2.5.0 (backend/src/apiserver): 409 on a
taken name, "unknown template format" for a kfp-tekton PipelineRun, the v2 filter's `operation`,
page tokens, 404 bodies ({error, code, message, details: [google.rpc.Status]}) and both healthz.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TOKEN

from localdsp.server import LocalDSP

pytestmark = pytest.mark.integration

B = "/apis/v2beta1"
IR = (Path(__file__).resolve().parent / "data" / "add_pipeline_v2.yaml").read_bytes()


@pytest.fixture
def dsp2(tmp_path):
    with LocalDSP(tmp_path / "v2", tokens=[TOKEN], api="v2") as dsp:
        yield dsp


@pytest.fixture
def api2(dsp2, api_for):
    return api_for(dsp2.url)


def _filter(**predicate) -> str:
    return json.dumps({"predicates": [predicate]})


def test_a_v2_server_answers_both_healthz_as_json(api2):
    for generation in ("v1beta1", "v2beta1"):
        response = api2("GET", f"/apis/{generation}/healthz")
        assert response.status == 200
        assert response.headers["content-type"] == "application/json"
        assert response.json["multi_user"] is False


def test_a_v1_server_answers_404_on_the_v2_healthz(api):
    assert api("GET", f"{B}/healthz").status == 404
    assert api("GET", "/apis/v1beta1/healthz").status == 200


def test_an_unknown_api_generation_is_refused(tmp_path):
    with pytest.raises(ValueError, match="api must be one of v1, v2"):
        LocalDSP(tmp_path, api="v3")


def test_the_upload_makes_a_pipeline_and_a_version_named_after_it(api2):
    pipeline = api2.upload(f"{B}/pipelines/upload", IR, name="adder", description="d").json
    assert pipeline["display_name"] == "adder"
    versions = api2("GET", f"{B}/pipelines/{pipeline['pipeline_id']}/versions").json
    assert [v["display_name"] for v in versions["pipeline_versions"]] == ["adder"]
    assert versions["pipeline_versions"][0]["pipeline_spec"]["pipelineInfo"]["name"] == (
        "add-pipeline"
    )


def test_a_taken_pipeline_name_is_409_and_nothing_more_is_stored(api2):
    assert api2.upload(f"{B}/pipelines/upload", IR, name="adder").status == 200
    again = api2.upload(f"{B}/pipelines/upload", IR, name="ADDER")
    assert again.status == 409
    assert "The name ADDER already exists" in again.json["error_message"]
    assert api2("GET", f"{B}/pipelines").json["total_size"] == 1


def test_a_taken_version_name_is_409(api2):
    pipeline = api2.upload(f"{B}/pipelines/upload", IR, name="adder").json
    query = {"pipelineid": pipeline["pipeline_id"], "name": "v-1"}
    assert api2.upload(f"{B}/pipelines/upload_version", IR, **query).status == 200
    again = api2.upload(f"{B}/pipelines/upload_version", IR, **query)
    assert again.status == 409
    assert "The name v-1 already exist" in again.json["error_message"]


def test_a_version_upload_needs_the_id_of_an_existing_pipeline(api2):
    missing = api2.upload(f"{B}/pipelines/upload_version", IR, name="v-1")
    assert missing.status == 400
    assert missing.json["error_message"] == (
        "Failed to create a pipeline version due to error reading pipeline id"
    )
    unknown = api2.upload(f"{B}/pipelines/upload_version", IR, pipelineid="nope", name="v-1")
    assert unknown.status == 400
    assert unknown.json["error_message"] == (
        "Failed to create a pipeline version due to error reading namespace: "
        "Failed to get a pipeline with id nope: ResourceNotFoundError: Pipeline nope not found"
    )
    assert api2("GET", f"{B}/pipelines").json.get("total_size", 0) == 0


def test_a_tekton_pipelinerun_is_unknown_template_format_on_both_apis(api2, add_yaml):
    for path in (f"{B}/pipelines/upload", "/apis/v1beta1/pipelines/upload"):
        response = api2.upload(path, add_yaml.read_bytes(), name="tekton")
        assert response.status == 500
        assert "unknown template format" in response.json["error_message"]
    assert api2("GET", f"{B}/pipelines").json == {}


def test_the_ir_is_accepted_on_the_v1_upload_of_a_v2_server(api2):
    pipeline = api2.upload("/apis/v1beta1/pipelines/upload", IR, name="adder").json
    assert pipeline["default_version"]["name"] == "adder"
    assert api2("GET", f"{B}/pipelines/{pipeline['id']}").json["display_name"] == "adder"


def test_a_wrong_schema_version_is_refused(api2):
    response = api2.upload(
        f"{B}/pipelines/upload", IR.replace(b"schemaVersion: 2.1.0", b"schemaVersion: 2.0.0")
    )
    assert response.status == 500
    assert "KFP only supports schema version 2.1.0" in response.json["error_message"]


def test_a_missing_pipeline_is_404_with_the_servers_error_json(api2):
    response = api2("GET", f"{B}/pipelines/nope")
    assert response.status == 404
    assert response.json["code"] == 5
    assert response.json["details"] == [
        {
            "@type": "type.googleapis.com/google.rpc.Status",
            "code": 5,
            "message": "Pipeline nope not found",
        }
    ]
    for path in (f"{B}/runs/nope", f"{B}/experiments/nope", f"{B}/recurringruns/nope"):
        assert api2("GET", path).status == 404


def test_find_a_pipeline_by_name(api2):
    pipeline = api2.upload(f"{B}/pipelines/upload", IR, name="adder").json
    assert api2("GET", f"{B}/pipelines/names/adder").json == pipeline
    assert api2("GET", f"{B}/pipelines/names/other").status == 404


def test_filters_use_operation_and_the_v1_op_field_is_refused(api2):
    for name in ("alpha", "beta"):
        api2("POST", f"{B}/experiments", body={"display_name": name})
    query = {"filter": _filter(key="display_name", operation="EQUALS", string_value="beta")}
    found = api2("GET", f"{B}/experiments", query=query).json["experiments"]
    assert [e["display_name"] for e in found] == ["beta"]
    v1_shaped = {"filter": _filter(key="display_name", op="EQUALS", string_value="beta")}
    assert api2("GET", f"{B}/experiments", query=v1_shaped).status == 400


def test_pages_follow_the_token_and_the_sort(api2):
    for name in ("e1", "e2", "e3"):
        api2("POST", f"{B}/experiments", body={"display_name": name})
    query = {"page_size": 2, "sort_by": "display_name desc"}
    first = api2("GET", f"{B}/experiments", query=query).json
    token = first["next_page_token"]
    second = api2("GET", f"{B}/experiments", query={"page_token": token, "page_size": 2}).json
    names = [e["display_name"] for e in first["experiments"] + second["experiments"]]
    assert names == ["e3", "e2", "e1", "Default"]
    assert first["total_size"] == 4


def test_a_pipeline_with_versions_cannot_be_deleted(api2):
    pipeline = api2.upload(f"{B}/pipelines/upload", IR, name="adder").json
    pid = pipeline["pipeline_id"]
    refused = api2("DELETE", f"{B}/pipelines/{pid}")
    assert refused.status == 400
    assert "has existing pipeline versions" in refused.json["message"]
    version = api2("GET", f"{B}/pipelines/{pid}/versions").json["pipeline_versions"][0]
    vid = version["pipeline_version_id"]
    assert api2("DELETE", f"{B}/pipelines/{pid}/versions/{vid}").json == {}
    assert api2("DELETE", f"{B}/pipelines/{pid}").status == 200


def test_a_run_names_its_version_and_waits_in_pending(api2):
    pipeline = api2.upload(f"{B}/pipelines/upload", IR, name="adder").json
    version = api2("GET", f"{B}/pipelines/{pipeline['pipeline_id']}/versions").json
    reference = {
        "pipeline_id": pipeline["pipeline_id"],
        "pipeline_version_id": version["pipeline_versions"][0]["pipeline_version_id"],
    }
    run = api2("POST", f"{B}/runs", body={
        "display_name": "r", "pipeline_version_reference": reference,
        "runtime_config": {"parameters": {"a": 7, "b": 8}},
    }).json  # fmt: skip
    stored = api2("GET", f"{B}/runs/{run['run_id']}").json
    assert stored["state"] == "PENDING"
    assert stored["pipeline_version_reference"] == reference
    assert stored["runtime_config"] == {"parameters": {"a": 7, "b": 8}}
    assert api2("POST", f"{B}/runs/{run['run_id']}:terminate").status == 200
    assert api2("GET", f"{B}/runs/{run['run_id']}").json["state"] == "CANCELED"


def test_without_kfp_2_an_executing_v2_server_leaves_runs_pending(tmp_path, api_for):
    """kfp 1.8 (this venv) has no kfp.local: runs are stored and stay PENDING, nothing crashes."""
    with LocalDSP(tmp_path / "v2", tokens=[TOKEN], api="v2", execute=True) as dsp:
        assert dsp.execute_v2 is False
        api2 = api_for(dsp.url)
        pipeline = api2.upload(f"{B}/pipelines/upload", IR, name="adder").json
        reference = {"pipeline_id": pipeline["pipeline_id"]}
        body = {"display_name": "r", "pipeline_version_reference": reference}
        run = api2("POST", f"{B}/runs", body=body).json
        assert api2("GET", f"{B}/runs/{run['run_id']}").json["state"] == "PENDING"
        assert api2("POST", f"{B}/runs/{run['run_id']}:terminate").status == 200
        assert api2("GET", f"{B}/runs/{run['run_id']}").json["state"] == "CANCELED"
        response = api2("POST", f"{B}/runs/{run['run_id']}:terminate")
        assert response.status == 400  # 2.5's TerminateRun updates no finished run
        assert "Row not found" in response.json["details"][0]["message"]


def test_a_run_of_a_missing_version_is_500_as_on_2_5(api2):
    body = {"display_name": "r", "pipeline_version_reference": {"pipeline_version_id": "nope"}}
    response = api2("POST", f"{B}/runs", body=body)
    assert response.status == 500
    assert "PipelineVersion nope not found" in response.json["message"]


def test_recurring_runs_are_enabled_disabled_and_deleted(api2):
    pipeline = api2.upload(f"{B}/pipelines/upload", IR, name="adder").json
    job = api2("POST", f"{B}/recurringruns", body={
        "display_name": "nightly", "mode": "ENABLE", "max_concurrency": "1",
        "pipeline_version_reference": {"pipeline_id": pipeline["pipeline_id"]},
        "trigger": {"cron_schedule": {"cron": "0 0 2 * * *"}},
    }).json  # fmt: skip
    assert (job["status"], job["mode"]) == ("ENABLED", "ENABLE")
    assert "pipeline_version_id" not in job["pipeline_version_reference"]  # follows the latest
    path = f"{B}/recurringruns/{job['recurring_run_id']}"
    api2("POST", f"{path}:disable")
    assert api2("GET", path).json["status"] == "DISABLED"
    assert api2("DELETE", path).status == 200
    assert api2("GET", path).status == 404


def test_a_bad_cron_is_400(api2):
    pipeline = api2.upload(f"{B}/pipelines/upload", IR, name="adder").json
    response = api2("POST", f"{B}/recurringruns", body={
        "display_name": "bad", "max_concurrency": "1",
        "pipeline_version_reference": {"pipeline_id": pipeline["pipeline_id"]},
        "trigger": {"cron_schedule": {"cron": "every day"}},
    })  # fmt: skip
    assert response.status == 400
    assert "Schedule cron is not a supported format" in response.json["message"]


def test_the_cli_serves_the_v2_api_with_api_v2(tmp_path):
    import sys

    from localdsp.cli import main

    script = (
        "import os, sys, urllib.request\n"
        "request = urllib.request.Request(os.environ['DSP_HOST'] + '/apis/v2beta1/healthz',\n"
        "    headers={'Authorization': 'Bearer ' + os.environ['DSP_TOKEN']})\n"
        "sys.exit(0 if urllib.request.urlopen(request).status == 200 else 1)\n"
    )
    command = ["exec", "--data-dir", str(tmp_path), "--api", "v2", "--", sys.executable, "-c"]
    assert main([*command, script]) == 0
