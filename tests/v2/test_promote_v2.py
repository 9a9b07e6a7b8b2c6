"""promote between two DSP 2.x localdsp servers (dev → prod): what each server returns."""

from __future__ import annotations

import json
import urllib.request

import pytest
from conftest import TOKEN, v2_project

from localdsp.server import LocalDSP
from runner_helpers import COMMIT

pytestmark = pytest.mark.integration
PROD_TOKEN = "prod-token"
API = "/apis/v2beta1"


def get(url: str, token: str, path: str) -> dict:
    headers = {"Authorization": f"Bearer {token}"}
    request = urllib.request.Request(url + path, headers=headers)  # noqa: S310 - a test server
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        return json.loads(answer.read())


def held(url: str, token: str) -> dict[str, dict]:
    """Each pipeline's newest version (DSP 2.x's default) as the server returns it."""
    found = {}
    for pipeline in get(url, token, f"{API}/pipelines?page_size=100")["pipelines"]:
        listed = get(
            url,
            token,
            f"{API}/pipelines/{pipeline['pipeline_id']}/versions?page_size=100"
            "&sort_by=created_at%20desc",
        )["pipeline_versions"]
        newest = listed[0]
        found[pipeline["display_name"]] = {
            "version": newest["display_name"],
            "description": newest.get("description", ""),
            "spec": newest["pipeline_spec"],
            "versions": sorted(v["display_name"] for v in listed),
        }
    return found


@pytest.fixture
def prod(tmp_path):
    with LocalDSP(tmp_path / "prod-data", tokens=[PROD_TOKEN], api="v2") as server:
        yield server


@pytest.fixture
def project(tmp_path, dsp, prod, monkeypatch, capsys):
    """The kfp 2 examples deployed to `dsp` (dev), the runner then turned to promote to prod."""
    project = v2_project(tmp_path / "project", dsp.url)
    project.env(monkeypatch)
    assert project.run(capsys).code == 0
    prod_token = project.root / "prod-token"
    prod_token.write_text(PROD_TOKEN)
    monkeypatch.setenv("DSP_HOST", prod.url)
    monkeypatch.setenv("DSP_TOKEN_PATH", str(prod_token))
    monkeypatch.setenv("DSP_PROMOTE_FROM_HOST", dsp.url)
    monkeypatch.setenv("DSP_PROMOTE_FROM_TOKEN_PATH", str(project.token_file))
    return project


def test_promote_gives_prod_dev_s_exact_specs_and_a_second_promote_uploads_nothing(
    project, dsp, prod, capsys
):
    result = project.run(capsys, "promote")
    assert result.code == 0, result.err
    source, destination = held(dsp.url, TOKEN), held(prod.url, PROD_TOKEN)
    assert (
        set(destination)
        == set(source)
        == {
            "Add Pipeline",
            "Data Quality Gate",
            "Train and Evaluate",
        }
    )
    for name, version in source.items():
        assert destination[name]["version"] == version["version"]
        assert destination[name]["spec"] == version["spec"], f"{name}: other pipeline_spec"
        assert destination[name]["description"] == version["description"]
    assert result.summary["counts"]["versions_created"] == 3
    runs = get(prod.url, PROD_TOKEN, f"{API}/runs?page_size=100")["runs"]
    assert sorted(r["display_name"] for r in runs) == sorted(
        f"{v['version']}@{COMMIT[:12]}" for v in source.values()
    )

    prod.clear_requests()
    again = project.run(capsys, "promote")
    assert again.code == 0, again.err
    assert again.summary["counts"]["versions_created"] == 0
    assert "0 new version(s)" in again.out
    assert not [r for r in prod.requests() if r["method"] == "POST" and "upload" in r["path"]]
    assert held(prod.url, PROD_TOKEN) == destination


def test_require_success_reads_the_newest_run_of_each_version_on_a_v2_source(
    project, dsp, prod, capsys
):
    from localdsp.models_v2 import RunReport

    runs = get(dsp.url, TOKEN, f"{API}/runs?page_size=100")["runs"]
    by_prefix = {r["display_name"].split("-")[0]: r["run_id"] for r in runs}
    dsp.backend.record(by_prefix["add"], RunReport("SUCCEEDED"))
    dsp.backend.record(by_prefix["data"], RunReport("FAILED", error="bad data"))
    result = project.run(capsys, "promote", "--require-success")
    assert result.code == 1
    by_name = {o["pipeline"]: o for o in result.summary["pipelines"]}
    assert by_name["Add Pipeline"]["action"] == "create"
    assert by_name["Data Quality Gate"]["action"] == "skipped"
    assert "is FAILED, not succeeded" in by_name["Data Quality Gate"]["error"]
    assert by_name["Train and Evaluate"]["action"] == "skipped"
    assert set(held(prod.url, PROD_TOKEN)) == {"Add Pipeline"}


def test_a_version_name_prod_holds_with_other_content_is_refused(project, dsp, prod, capsys):
    from runner.flavour_v2.wire import spec_file

    source = held(dsp.url, TOKEN)
    add, other = source["Add Pipeline"], source["Data Quality Gate"]
    forged = dict(add["spec"])
    forged["root"] = other["spec"]["root"]
    forged["components"] = other["spec"]["components"]
    forged["deploymentSpec"] = other["spec"]["deploymentSpec"]
    pipeline = upload(prod.url, "pipelines/upload?name=Add%20Pipeline", spec_file(add["spec"]))
    upload(
        prod.url,
        f"pipelines/upload_version?name={add['version']}&pipelineid={pipeline['pipeline_id']}",
        spec_file(forged),
    )
    result = project.run(capsys, "promote", "--only", "add-pipeline")
    assert result.code == 1
    (outcome,) = result.summary["pipelines"]
    for part in ("'Add Pipeline'", add["version"], prod.url, dsp.url, "never overwritten"):
        assert part in outcome["error"]
    assert held(prod.url, PROD_TOKEN)["Add Pipeline"]["spec"]["root"] == other["spec"]["root"]


def upload(url: str, path: str, text: str) -> dict:
    """A multipart upload, as kfp's client sends one."""
    boundary = "dsp-runner-test"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="uploadfile"; '
        f'filename="p.yaml"\r\nContent-Type: application/octet-stream\r\n\r\n{text}'
        f"\r\n--{boundary}--\r\n"
    ).encode()
    headers = {
        "Authorization": f"Bearer {PROD_TOKEN}",
        "Content-Type": f"multipart/form-data; boundary={boundary}",
    }
    request = urllib.request.Request(f"{url}/apis/v2beta1/{path}", body, headers)  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        return json.loads(answer.read())


def test_a_spec_with_a_platform_part_uploads_as_the_two_documents_the_server_split_it_from():
    """The server returns {pipeline_spec, platform_spec} for such a version; uploaded back as
    `spec_file` writes it, the server stores the same thing again."""
    from localdsp.templates_v2 import parse_template
    from runner.flavour_v2.wire import spec_file

    spec = {
        "pipelineInfo": {"name": "add-pipeline"},
        "root": {"dag": {"tasks": {}}},
        "schemaVersion": "2.1.0",
        "sdkVersion": "kfp-2.17.0",
    }
    platform = {"platforms": {"kubernetes": {"deploymentSpec": {"executors": {}}}}}
    for returned in (spec, {"pipeline_spec": spec, "platform_spec": platform}):
        stored = parse_template(spec_file(returned))
        assert json.loads(stored.text) == returned
