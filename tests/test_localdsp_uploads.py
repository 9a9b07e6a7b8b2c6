"""Uploads are not atomic on the server: the row is CREATING until its file is stored.

Between the steps the name is taken but hidden from get and list; if storing fails it stays so.
"""

import re
import threading

import pytest

pytestmark = pytest.mark.integration

API = "/apis/v1beta1"
UPLOAD = f"{API}/pipelines/upload"
UPLOAD_VERSION = f"{API}/pipelines/upload_version"


def names(api, path, field, **query):
    return [item["name"] for item in api("GET", f"{API}/{path}", query=query).json.get(field, [])]


def stored_id(response) -> str:
    """The version id in a storage failure's message ("Failed to store pipelines/<id>")."""
    return re.search(r"Failed to store pipelines/([0-9a-f-]+)", response.json["error_message"])[1]


def test_a_held_upload_takes_its_name_but_shows_only_once_stored(api, localdsp, add_yaml):
    content = add_yaml.read_bytes()
    localdsp.storage.hold()
    answers = []
    rival = threading.Thread(target=lambda: answers.append(api.upload(UPLOAD, content, name="p")))
    rival.start()
    assert localdsp.storage.wait_for_held()
    assert names(api, "pipelines", "pipelines") == []
    second = api.upload(UPLOAD, content, name="p")
    assert second.status == 500
    assert second.json["error_message"] == (
        "Error creating pipeline: Create pipeline failed: Already exist error: Failed to create "
        "a new pipeline. The name p already exist. Please specify a new name."
    )
    localdsp.storage.release()
    rival.join(10)
    (created,) = answers
    assert created.status == 200
    assert names(api, "pipelines", "pipelines") == ["p"]
    assert api("GET", f"{API}/pipelines/{created.json['id']}").status == 200


def test_a_failed_store_leaves_the_pipeline_creating_for_good(api, localdsp, add_yaml):
    content = add_yaml.read_bytes()
    localdsp.storage.fail()
    failed = api.upload(UPLOAD, content, name="p")
    assert failed.status == 500
    pipeline_id = stored_id(failed)
    assert failed.json["error_message"] == (
        "Error creating pipeline: Create pipeline failed: InternalServerError: Failed to store "
        f"pipelines/{pipeline_id}: dial tcp minio-service:9000: connect: connection refused"
    )
    localdsp.storage.release()
    assert names(api, "pipelines", "pipelines") == []
    state = api("GET", "/_localdsp/state").json
    assert [(p["id"], p["status"]) for p in state["pipelines"]] == [(pipeline_id, "CREATING")]
    assert api("GET", f"{API}/pipelines/{pipeline_id}").status == 404
    assert api("DELETE", f"{API}/pipelines/{pipeline_id}").status == 404
    again = api.upload(UPLOAD, content, name="p")
    assert again.status == 500
    assert "The name p already exist" in again.json["error_message"]


def test_a_failed_version_store_hides_the_version_until_its_pipeline_is_deleted(
    api, localdsp, add_yaml
):
    content = add_yaml.read_bytes()
    pipeline_id = api.upload(UPLOAD, content, name="p").json["id"]
    localdsp.storage.fail()
    failed = api.upload(UPLOAD_VERSION, content, name="v1", pipelineid=pipeline_id)
    assert failed.status == 500
    assert failed.json["error_message"].startswith(
        "Error creating pipeline version: Create pipeline version failed: InternalServerError: "
        f"Failed to store pipelines/{stored_id(failed)}: "
    )
    localdsp.storage.release()
    listed = names(
        api, "pipeline_versions", "versions", **{"resource_key.id": pipeline_id, "page_size": 50}
    )
    assert listed == ["p"]
    assert api("GET", f"{API}/pipeline_versions/{stored_id(failed)}").status == 404
    again = api.upload(UPLOAD_VERSION, content, name="v1", pipelineid=pipeline_id)
    assert "The name v1 already exist" in again.json["error_message"]
    assert api("DELETE", f"{API}/pipelines/{pipeline_id}").status == 200
    recreated = api.upload(UPLOAD, content, name="p").json["id"]
    assert api.upload(UPLOAD_VERSION, content, name="v1", pipelineid=recreated).status == 200


def test_deleting_the_default_makes_the_newest_stored_version_the_default(api, localdsp, add_yaml):
    """kfp-tekton 1.5's DeletePipelineVersion picks the newest version whose status is READY:
    one whose file was never stored cannot become the default."""
    content = add_yaml.read_bytes()
    pipeline_id = api.upload(UPLOAD, content, name="p").json["id"]
    v1 = api.upload(UPLOAD_VERSION, content, name="v1", pipelineid=pipeline_id).json["id"]
    localdsp.storage.fail()
    assert api.upload(UPLOAD_VERSION, content, name="v2", pipelineid=pipeline_id).status == 500
    localdsp.storage.release()
    assert api("POST", f"{API}/pipelines/{pipeline_id}/default_version/{v1}").status == 200
    assert api("DELETE", f"{API}/pipeline_versions/{v1}").status == 200
    pipeline = api("GET", f"{API}/pipelines/{pipeline_id}").json
    assert pipeline["default_version"]["id"] == pipeline_id
