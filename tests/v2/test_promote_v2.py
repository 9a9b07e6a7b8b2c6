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


def test_promote_gives_prod_dev_s_exact_specs_and_a_second_promote_uploads_nothing(
    tmp_path, dsp, prod, monkeypatch, capsys
):
    project = v2_project(tmp_path / "project", dsp.url)
    project.env(monkeypatch)
    assert project.run(capsys).code == 0
    prod_token = project.root / "prod-token"
    prod_token.write_text(PROD_TOKEN)
    monkeypatch.setenv("DSP_HOST", prod.url)
    monkeypatch.setenv("DSP_TOKEN_PATH", str(prod_token))
    monkeypatch.setenv("DSP_PROMOTE_FROM_HOST", dsp.url)
    monkeypatch.setenv("DSP_PROMOTE_FROM_TOKEN_PATH", str(project.token_file))

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
