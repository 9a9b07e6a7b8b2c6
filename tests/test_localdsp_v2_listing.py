"""localdsp `api="v2"`'s two pipeline faces beside the uploads, as KFP 2.5.0 serves them:
the v1beta1 listing (each pipeline joined to its newest version; `ListPipelinesV1`) validated
against the v1beta1 swagger, and v2beta1 CreatePipeline (a pipeline without a version) against
the 2.5.0 swagger."""

from __future__ import annotations

import pytest
from conftest import TOKEN
from test_localdsp_contract import Spec as V1Spec
from test_localdsp_v2_contract import IR
from test_localdsp_v2_contract import Spec as V2Spec

from localdsp.models import ListRequest
from localdsp.rules_v2 import BackendV2
from localdsp.server import LocalDSP

pytestmark = pytest.mark.integration

V1 = "/apis/v1beta1/pipelines"
V2 = "/apis/v2beta1/pipelines"


@pytest.fixture(scope="module")
def specs():
    return V1Spec(), V2Spec()


@pytest.fixture
def api(tmp_path, api_for):
    with LocalDSP(tmp_path / "v2", tokens=[TOKEN], api="v2") as dsp:
        yield api_for(dsp.url)


def _listing(api, specs, **query):
    """The listing's status and body; a 200 body checked against the v1beta1 swagger (an error
    carries a google.rpc.Status as every 2.5 error does: see the v2 contract suite)."""
    response = api("GET", V1, query=query or None)
    body = response.json
    if response.status == 200:
        specs[0].validate(body, specs[0].schema("GET", V1, 200))
    return response.status, body


def test_listing_joins_each_pipeline_to_its_newest_version(api, specs):
    made = api.upload(f"{V2}/upload", IR, name="made").json
    newer = api.upload(
        f"{V2}/upload_version", IR, name="made-1", pipelineid=made["pipeline_id"], description="d"
    ).json
    bare = api("POST", V2, body={"display_name": "bare", "description": "no versions"})
    assert bare.status == 200
    specs[1].validate(bare.json, "POST", V2, 200)

    status, body = _listing(api, specs)

    assert status == 200
    listed = {p["name"]: p for p in body["pipelines"]}
    assert set(listed) == {"made", "bare"}
    version = listed["made"]["default_version"]
    assert "parameters" not in listed["made"]  # a kfp 2 version's parameters are "[]"
    assert version["resource_references"] == [
        {"key": {"type": "PIPELINE", "id": made["pipeline_id"]}, "relationship": "OWNER"}
    ]
    if version["id"] == newer["pipeline_version_id"]:  # else both landed in one second
        assert (version["name"], version["description"]) == ("made-1", "d")
    assert listed["bare"]["default_version"] == {"created_at": "1970-01-01T00:00:00Z"}
    assert listed["bare"]["description"] == "no versions"


def test_a_tie_within_a_second_goes_against_the_caller(tmp_path):
    """ROW_NUMBER() breaks a created_at tie in no promised order: localdsp picks the version
    named after the pipeline, else the one stored first."""
    backend = BackendV2(tmp_path, clock=lambda: 1_700_000_000.0)
    pipeline, _ = backend.create_pipeline("tied", "", IR)
    backend.create_version(pipeline.id, "tied-abc", "", IR)
    assert backend.newest_for_listing(pipeline).name == "tied"
    other = backend.create_empty_pipeline("two", "")
    backend.create_version(other.id, "two-a", "", IR)
    backend.create_version(other.id, "two-b", "", IR)
    assert backend.newest_for_listing(other).name == "two-a"
    assert [p.name for p in backend.list_pipelines(ListRequest()).items] == ["tied", "two"]


def test_listing_pages_and_takes_only_a_namespace_key(api, specs):
    for name in ("a", "b", "c"):
        assert api("POST", V2, body={"display_name": name}).status == 200
    _, first = _listing(api, specs, page_size=2)
    _, second = _listing(api, specs, page_size=2, page_token=first["next_page_token"])
    assert [p["name"] for p in first["pipelines"] + second["pipelines"]] == ["a", "b", "c"]
    assert "next_page_token" not in second
    status, _ = _listing(api, specs, **{"resource_reference_key.type": "NAMESPACE"})
    assert status == 200
    status, error = _listing(api, specs, **{"resource_reference_key.type": "EXPERIMENT"})
    assert status == 400
    assert "invalid resource references for pipelines" in error["error"]


def test_create_pipeline_refuses_a_taken_or_empty_name(api, specs):
    assert api("POST", V2, body={"display_name": "once"}).status == 200
    for body, status in (({"display_name": "once"}, 409), ({"description": "x"}, 400)):
        response = api("POST", V2, body=body)
        assert response.status == status, response.text
        specs[1].validate(response.json, "POST", V2, status)
    assert "The name once already exist" in api("POST", V2, body={"display_name": "once"}).text
