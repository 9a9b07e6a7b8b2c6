"""Pipelines and versions: uploads, uniqueness, default versions and the upload error shapes."""

import gzip
import io
import json
import tarfile
import zipfile

import pytest
from kfp_server_api.exceptions import ApiException

from localdsp.backend import MAX_FILE_SIZE

pytestmark = pytest.mark.integration

UPLOAD = "/apis/v1beta1/pipelines/upload"
UPLOAD_VERSION = "/apis/v1beta1/pipelines/upload_version"


def test_upload_creates_the_pipeline_and_a_first_version_with_its_id_and_name(kfp_client, add_yaml):
    pipeline = kfp_client.upload_pipeline(str(add_yaml), "Add Pipeline", "adds")
    assert pipeline.name == "Add Pipeline"
    assert pipeline.description == "adds"
    assert [(p.name, p.value) for p in pipeline.parameters] == [("a", "1"), ("b", "7")]
    assert pipeline.default_version.id == pipeline.id
    assert pipeline.default_version.name == "Add Pipeline"
    (version,) = kfp_client.list_pipeline_versions(pipeline.id).versions
    assert (version.id, version.name) == (pipeline.id, "Add Pipeline")
    assert version.resource_references[0].key.type == "PIPELINE"
    assert version.resource_references[0].key.id == pipeline.id
    assert kfp_client.get_pipeline_id("Add Pipeline") == pipeline.id


def test_each_uploaded_version_becomes_the_default(kfp_client, add_yaml):
    pipeline = kfp_client.upload_pipeline(str(add_yaml), "Add Pipeline")
    first = kfp_client.upload_pipeline_version(str(add_yaml), "v1", pipeline_id=pipeline.id)
    assert kfp_client.get_pipeline(pipeline.id).default_version.id == first.id
    second = kfp_client.upload_pipeline_version(
        str(add_yaml), "v2", pipeline_name="Add Pipeline", description="second"
    )
    latest = kfp_client.get_pipeline(pipeline.id)
    assert latest.default_version.id == second.id
    assert latest.default_version.description == "second"
    listed = kfp_client.list_pipeline_versions(pipeline.id, page_size=10)
    assert listed.total_size == 3


def test_the_default_can_be_set_and_deleting_it_promotes_the_newest(kfp_client, add_yaml):
    pipeline = kfp_client.upload_pipeline(str(add_yaml), "Add Pipeline")
    v1 = kfp_client.upload_pipeline_version(str(add_yaml), "v1", pipeline_id=pipeline.id)
    v2 = kfp_client.upload_pipeline_version(str(add_yaml), "v2", pipeline_id=pipeline.id)
    assert kfp_client.pipelines.update_pipeline_default_version(pipeline.id, v1.id) == {}
    assert kfp_client.get_pipeline(pipeline.id).default_version.id == v1.id
    kfp_client.pipelines.delete_pipeline_version(v1.id)
    assert kfp_client.get_pipeline(pipeline.id).default_version.id == v2.id
    kfp_client.pipelines.delete_pipeline_version(v2.id)
    kfp_client.pipelines.delete_pipeline_version(pipeline.id)
    assert kfp_client.get_pipeline(pipeline.id).default_version is None


def test_a_default_version_of_another_pipeline_is_refused(kfp_client, add_yaml):
    one = kfp_client.upload_pipeline(str(add_yaml), "One")
    other = kfp_client.upload_pipeline(str(add_yaml), "Other")
    with pytest.raises(ApiException) as caught:
        kfp_client.pipelines.update_pipeline_default_version(one.id, other.id)
    assert caught.value.status == 400


def test_deleting_a_pipeline_deletes_its_versions(kfp_client, add_yaml, api):
    pipeline = kfp_client.upload_pipeline(str(add_yaml), "Add Pipeline")
    version = kfp_client.upload_pipeline_version(str(add_yaml), "v1", pipeline_id=pipeline.id)
    kfp_client.delete_pipeline(pipeline.id)
    assert api("GET", f"/apis/v1beta1/pipelines/{pipeline.id}").status == 404
    assert api("GET", f"/apis/v1beta1/pipeline_versions/{version.id}").status == 404
    assert kfp_client.get_pipeline_id("Add Pipeline") is None


def test_a_duplicate_pipeline_is_a_500_that_says_already_exist(kfp_client, add_yaml, api):
    kfp_client.upload_pipeline(str(add_yaml), "Add Pipeline")
    with pytest.raises(ApiException) as caught:
        kfp_client.upload_pipeline(str(add_yaml), "Add Pipeline")
    assert caught.value.status == 500
    body = json.loads(caught.value.body)
    assert body["error_message"] == (
        "Error creating pipeline: Create pipeline failed: Already exist error: Failed to create "
        "a new pipeline. The name Add Pipeline already exist. Please specify a new name."
    )
    assert set(body) == {"error_message", "error_details"}


def test_names_collide_without_regard_to_case(kfp_client, add_yaml):
    kfp_client.upload_pipeline(str(add_yaml), "Add Pipeline")
    with pytest.raises(ApiException, match="already exist"):
        kfp_client.upload_pipeline(str(add_yaml), "add pipeline")


def test_a_duplicate_version_name_is_a_500_even_the_pipelines_own_name(kfp_client, add_yaml):
    pipeline = kfp_client.upload_pipeline(str(add_yaml), "Add Pipeline")
    kfp_client.upload_pipeline_version(str(add_yaml), "v1", pipeline_id=pipeline.id)
    for name in ("v1", "Add Pipeline"):
        with pytest.raises(ApiException) as caught:
            kfp_client.upload_pipeline_version(str(add_yaml), name, pipeline_id=pipeline.id)
        assert caught.value.status == 500
        assert (
            "Already exist error: Failed to create a new pipeline version. "
            f"The name {name} already exist." in caught.value.body
        )


def test_version_names_are_unique_per_pipeline_only(kfp_client, add_yaml):
    one = kfp_client.upload_pipeline(str(add_yaml), "One")
    other = kfp_client.upload_pipeline(str(add_yaml), "Other")
    kfp_client.upload_pipeline_version(str(add_yaml), "v1", pipeline_id=one.id)
    kfp_client.upload_pipeline_version(str(add_yaml), "v1", pipeline_id=other.id)


def test_without_a_name_the_pipeline_is_named_after_the_file(kfp_client, add_yaml):
    assert kfp_client.upload_pipeline(str(add_yaml)).name == "add.yaml"


def test_names_and_pipeline_descriptions_are_url_decoded_twice(api, add_yaml):
    response = api.upload(UPLOAD, add_yaml.read_bytes(), name="a+b%41", description="x+y")
    assert response.status == 200
    assert response.json["name"] == "a bA"
    assert response.json["description"] == "x y"
    pipeline_id = response.json["id"]
    version = api.upload(
        UPLOAD_VERSION, add_yaml.read_bytes(), name="v+1", pipelineid=pipeline_id, description="d+e"
    )
    assert (version.json["name"], version.json["description"]) == ("v 1", "d+e")


def test_a_malformed_escape_in_the_name_is_a_400(api, add_yaml):
    response = api.upload(UPLOAD, add_yaml.read_bytes(), name="100%")
    assert response.status == 400
    assert response.json["error_message"].startswith("Invalid pipeline name.: ")


def test_names_over_100_characters_are_a_400(api, add_yaml):
    response = api.upload(UPLOAD, add_yaml.read_bytes(), name="p" * 101)
    assert response.status == 400
    assert response.json["error_message"] == (
        "Invalid pipeline name.: Invalid input error: "
        "Pipeline name too long. Support maximum length of 100"
    )
    assert api.upload(UPLOAD, add_yaml.read_bytes(), name="p" * 100).status == 200
    version = api.upload(UPLOAD_VERSION, add_yaml.read_bytes(), name="v" * 101, pipelineid="any")
    assert version.status == 400
    assert version.json["error_message"].startswith("Invalid pipeline version name.: ")


def test_files_over_32_mib_are_a_400(api, add_yaml):
    padding = b"\n" + b"#" * (MAX_FILE_SIZE - len(add_yaml.read_bytes()))
    response = api.upload(UPLOAD, add_yaml.read_bytes() + padding, name="big")
    assert response.status == 400
    assert "File size too large. Maximum supported size: 33554432" in response.json["error_message"]


def test_an_argo_workflow_is_refused_with_unknown_template_format(kfp_client, argo_yaml):
    with pytest.raises(ApiException) as caught:
        kfp_client.upload_pipeline(str(argo_yaml), "Argo")
    assert caught.value.status == 500
    assert "unknown template format" in caught.value.body
    assert kfp_client.get_pipeline_id("Argo") is None


def test_a_missing_file_part_is_a_400(api, add_yaml):
    response = api.upload(UPLOAD, add_yaml.read_bytes(), field="file", name="x")
    assert response.status == 400
    assert response.json["error_message"] == (
        "Failed to read pipeline from file: http: no such file"
    )


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _tarball(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("pack", [_zip, _tarball])
def test_archives_are_sniffed_and_pipeline_yaml_is_preferred(api, add_yaml, argo_yaml, pack):
    archive = pack({"other.yaml": argo_yaml.read_bytes(), "pipeline.yaml": add_yaml.read_bytes()})
    response = api.upload(UPLOAD, archive, filename="package.bin", name="packed")
    assert response.status == 200, response.text
    assert [p["name"] for p in response.json["parameters"]] == ["a", "b"]


@pytest.mark.parametrize("pack", [_zip, _tarball])
def test_an_archive_whose_first_entry_is_not_yaml_is_a_400(api, add_yaml, pack):
    response = api.upload(UPLOAD, pack({"README.md": b"hello"}), filename="p.zip", name="x")
    assert response.status == 400
    assert "Expecting a pipeline.yaml file" in response.json["error_message"]


def test_the_client_s_zip_package_uploads(kfp_client, add_yaml, tmp_path):
    package = tmp_path / "add.zip"
    package.write_bytes(_zip({"pipeline.yaml": add_yaml.read_bytes()}))
    assert kfp_client.upload_pipeline(str(package), "Zipped").default_version.name == "Zipped"


def test_an_unknown_file_format_is_a_400(api):
    response = api.upload(UPLOAD, gzip.compress(b"x")[:1] + b"not an archive", filename="p.bin")
    assert response.status == 400
    assert response.json["error_message"].endswith(
        "Unexpected pipeline file format. Support .zip, .tar.gz, .json or YAML."
    )


def test_a_version_needs_an_existing_pipeline_id(api, add_yaml, kfp_client):
    missing = api.upload(UPLOAD_VERSION, add_yaml.read_bytes(), name="v1")
    assert missing.status == 400
    assert missing.json["error_message"] == "Please specify a pipeline id when creating versions."
    unknown = api.upload(UPLOAD_VERSION, add_yaml.read_bytes(), name="v1", pipelineid="nope")
    assert unknown.status == 400
    assert unknown.json["error_message"] == (
        "Failed to get namespace from pipelineId.: Failed to get namespace from Pipeline ID: "
        "ResourceNotFoundError: Pipeline nope not found."
    )
    with pytest.raises(ValueError, match="Either pipeline_id or pipeline_name is required"):
        kfp_client.upload_pipeline_version(str(add_yaml), "v1")


def test_listing_the_versions_of_a_missing_pipeline_is_a_404(api):
    """ListPipelineVersions reads the pipeline's namespace first (after checking the list
    options): a pipeline that is gone, or still CREATING, is a 404, not an empty listing."""
    chain = (
        "Failed to get namespace from pipelineId.: Failed to get namespace from Pipeline ID: "
        "ResourceNotFoundError: Pipeline nope not found."
    )
    versions = api(
        "GET",
        "/apis/v1beta1/pipeline_versions",
        query={"resource_key.type": "PIPELINE", "resource_key.id": "nope"},
    )
    assert versions.status == 404
    assert versions.json == {
        "error": chain,
        "code": 5,
        "message": chain,
        "details": [
            {
                "@type": "type.googleapis.com/api.Error",
                "error_message": "Pipeline nope not found.",
                "error_details": chain,
            }
        ],
    }
    bad_size = api(
        "GET",
        "/apis/v1beta1/pipeline_versions",
        query={"resource_key.id": "nope", "page_size": -1},
    )
    assert bad_size.status == 400


def test_get_and_delete_of_unknown_objects_are_grpc_gateway_404s(api):
    response = api("GET", "/apis/v1beta1/pipelines/nope")
    assert response.status == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json == {
        "error": "ResourceNotFoundError: Pipeline nope not found.",
        "code": 5,
        "message": "ResourceNotFoundError: Pipeline nope not found.",
        "details": [
            {
                "@type": "type.googleapis.com/api.Error",
                "error_message": "Pipeline nope not found.",
                "error_details": "ResourceNotFoundError: Pipeline nope not found.",
            }
        ],
    }
    for method, path in [
        ("DELETE", "/apis/v1beta1/pipelines/nope"),
        ("GET", "/apis/v1beta1/pipeline_versions/nope"),
        ("DELETE", "/apis/v1beta1/pipeline_versions/nope"),
        ("POST", "/apis/v1beta1/pipelines/nope/default_version/nope"),
    ]:
        assert api(method, path).status == 404, (method, path)


def test_templates_are_the_uploaded_file_byte_for_byte(api, kfp_client, add_yaml):
    """kfp-tekton 1.5 stores the upload untouched and returns it: no re-marshal."""
    pipeline = kfp_client.upload_pipeline(str(add_yaml), "Add Pipeline")
    template = api("GET", f"/apis/v1beta1/pipelines/{pipeline.id}/templates").json["template"]
    assert template == add_yaml.read_text()
    by_version = api("GET", f"/apis/v1beta1/pipeline_versions/{pipeline.id}/templates")
    assert by_version.json["template"] == template


def test_versions_need_a_resource_key(api):
    response = api("GET", "/apis/v1beta1/pipeline_versions")
    assert response.status == 400
    assert response.json["details"][0]["error_message"] == "ResourceKey must be set in the input"


def test_the_wire_format_is_jsonpb_with_snake_case_and_no_empty_fields(api, add_yaml):
    pipeline = api.upload(UPLOAD, add_yaml.read_bytes(), name="Add Pipeline").json
    assert set(pipeline) == {"id", "created_at", "name", "parameters", "default_version"}
    assert pipeline["created_at"].endswith("Z")
    assert len(pipeline["created_at"]) == len("2024-01-01T00:00:00Z")
    version = pipeline["default_version"]
    assert set(version) == {"id", "name", "created_at", "parameters", "resource_references"}
    assert version["resource_references"] == [
        {"key": {"type": "PIPELINE", "id": pipeline["id"]}, "relationship": "OWNER"}
    ]
