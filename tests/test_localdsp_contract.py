"""The contract suite: localdsp's answers validated against the official KFP v1beta1 swagger.

For every operation the kfp 1.8.22 / kfp-tekton 1.5.10 client can call, and for requests it never
makes (bad page tokens, unknown sort keys, unsupported filter keys, oversize or non-Tekton
uploads, long names), the response body is validated with `jsonschema` against the schema the
swagger gives for that operation and status code (`200`, else `default`), from the unmodified
kfp-tekton 1.5.x files in `../shared/reference/kfp-api-swagger/` (beside this repository, as CI
checks it out).

The swagger 2.0 definitions are used as JSON Schema with every object definition made closed
(`additionalProperties: false`), so a field the spec does not know fails; `int64` fields must be
strings of digits and `date-time` ones RFC 3339, as jsonpb writes them; enums must be the spec's.

Why jsonschema and not schemathesis: property-based generation from this spec would mostly test
the spec's own errors, not the server. The spec documents `filter` as base64 (the server wants
URL-encoded JSON), describes the multipart uploads differently from what the client sends, and
declares error bodies (`apiStatus` with `type_url`/`value` Anys) that grpc-gateway does not
write. Hand-written requests, each validated strictly, pin down what the real client and server
exchange; the few places where the spec and the real server differ are listed in `WIRE_FIXES`
with the reason, so they are explicit rather than hidden in a loose schema.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import datetime
from pathlib import Path

import jsonschema
import pytest
from jsonschema import Draft4Validator, FormatChecker

from localdsp.backend import ListRequest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
SWAGGER = REPO.parent / "shared" / "reference" / "kfp-api-swagger"
B = "/apis/v1beta1"
INT64 = re.compile(r"-?\d+")

# Where the real 1.5.x server's wire format differs from its generated swagger (reasons inline).
WIRE_FIXES: dict[str, dict] = {
    # jsonpb writes a google.protobuf.Any as {"@type": url, <fields of the packed message>}; the
    # server packs api.Error into grpc-gateway error details.
    "protobufAny": {
        "type": "object",
        "properties": {
            "@type": {"type": "string"},
            "error_message": {"type": "string"},
            "error_details": {"type": "string"},
        },
        "required": ["@type"],
    },
    # grpc-gateway v1's runtime errorBody has `message` besides error, code and details.
    "apiStatus+": {"properties": {"message": {"type": "string"}}},
    # The 1.5.x server's healthz also reports its build (commit_sha, tag_name).
    "apiGetHealthzResponse+": {
        "properties": {"commit_sha": {"type": "string"}, "tag_name": {"type": "string"}}
    },
}
# The upload handlers write api.Error ({error_message, error_details}), not the spec's apiStatus.
UPLOAD_ERROR = {
    "type": "object",
    "properties": {"error_message": {"type": "string"}, "error_details": {"type": "string"}},
    "required": ["error_message"],
    "additionalProperties": False,
}


# ---------------------------------------------------------------- the spec


def _load(name: str) -> dict:
    path = SWAGGER / name
    if not path.is_file():
        pytest.fail(
            f"KFP swagger not found at {path}: the contract tests expect the shared/ folder beside "
            "this repository (as CI checks it out), with shared/reference/kfp-api-swagger/",
            pytrace=False,
        )
    return json.loads(path.read_text())


def _closed(schema: dict) -> dict:
    """Every object schema (with properties, or none at all) refuses unknown fields."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "object" or ("properties" in node and "$ref" not in node):
                node.setdefault("type", "object")
                node.setdefault("properties", {})
                node.setdefault("additionalProperties", False)
            if node.get("format") == "int64" and node.get("type") == "string":
                node["pattern"] = INT64.pattern.join("^$")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


class Spec:
    def __init__(self):
        single = _load("kfp_api_single_file.swagger.json")
        upload = _load("pipeline.upload.swagger.json")
        definitions = copy.deepcopy(single["definitions"])
        for name, fix in WIRE_FIXES.items():
            if name.endswith("+"):
                definitions[name[:-1]]["properties"].update(fix["properties"])
            else:
                definitions[name] = fix
        self.paths = single["paths"]
        self.upload_paths = upload["paths"]
        self.definitions = _closed(definitions)
        self.checker = FormatChecker()
        self.checker.checks("date-time", raises=ValueError)(_rfc3339)
        self.checker.checks("int64", raises=ValueError)(
            lambda v: not isinstance(v, str) or bool(INT64.fullmatch(v))
        )

    def schema(self, method: str, template: str, status: int) -> dict:
        operation = self.paths[template][method.lower()]
        responses = operation["responses"]
        chosen = responses["200"] if status == 200 else responses["default"]
        return chosen["schema"]

    def validate(self, instance, schema: dict) -> None:
        root = {**_closed(schema), "definitions": self.definitions}
        Draft4Validator(root, format_checker=self.checker).validate(instance)


def _rfc3339(value) -> bool:
    if not isinstance(value, str):
        return True
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", value):
        raise ValueError(f"not RFC 3339: {value}")
    datetime.fromisoformat(value.replace("Z", "+00:00"))
    return True


@pytest.fixture(scope="module")
def spec() -> Spec:
    return Spec()


@pytest.fixture
def call(api, spec):
    """`call(method, template, status, **params)`: request, check the status, validate the body."""

    def request(
        method, template, expected, *, path_params=None, query=None, body=None, upload=None
    ):
        path = B + template.format(**(path_params or {}))
        if upload is not None:
            content, filename = upload
            response = api.upload(path, content, filename=filename, **(query or {}))
        else:
            response = api(method, path, query=query, body=body)
        assert response.status == expected, f"{method} {path}: {response.status} {response.text}"
        payload = json.loads(response.text)
        swagger_template = B + template
        if upload is not None and expected != 200:
            # The spec says apiStatus; the handlers really write api.Error (see UPLOAD_ERROR).
            assert spec.upload_paths[swagger_template]["post"]["responses"]["default"]
            jsonschema.validate(payload, UPLOAD_ERROR)
        else:
            spec.validate(payload, spec.schema(method, swagger_template, response.status))
        return payload

    return request


@pytest.fixture
def objects(call, add_yaml):
    """One of everything: pipeline (+ a second version), experiment, run and job."""
    content = add_yaml.read_bytes()
    pipeline = call("POST", "/pipelines/upload", 200, upload=(content, "add.yaml"),
                    query={"name": "contract"})  # fmt: skip
    version = call("POST", "/pipelines/upload_version", 200, upload=(content, "add.yaml"),
                   query={"name": "v2", "pipelineid": pipeline["id"]})  # fmt: skip
    experiment = call("POST", "/experiments", 200, body={"name": "contract", "description": "d"})
    references = [
        {"key": {"type": "EXPERIMENT", "id": experiment["id"]}, "relationship": "OWNER"},
        {"key": {"type": "PIPELINE_VERSION", "id": version["id"]}, "relationship": "CREATOR"},
    ]
    run = call("POST", "/runs", 200, body={
        "name": "r1", "resource_references": references,
        "pipeline_spec": {"parameters": [{"name": "a", "value": "7"}]},
    })  # fmt: skip
    job = call("POST", "/jobs", 200, body={
        "name": "j1", "resource_references": references, "max_concurrency": "2",
        "trigger": {"cron_schedule": {"cron": "0 0 * * * *",
                                      "start_time": "2026-01-01T00:00:00Z"}},
        "enabled": True, "no_catchup": True,
    })  # fmt: skip
    return {
        "pipeline": pipeline, "version": version, "experiment": experiment,
        "run": run["run"], "job": job,
    }  # fmt: skip


# ---------------------------------------------------------------- the client's operations


def test_spec_is_the_shared_copy(spec):
    assert "/apis/v1beta1/pipelines/upload" in spec.upload_paths
    assert spec.definitions["apiPipeline"]["additionalProperties"] is False


def test_healthz(api, spec):
    response = api("GET", f"{B}/healthz")
    assert response.status == 200
    spec.validate(json.loads(response.text), spec.schema("GET", f"{B}/healthz", 200))


def test_pipeline_operations(call, objects):
    pid, vid = objects["pipeline"]["id"], objects["version"]["id"]
    assert objects["pipeline"]["default_version"]["id"] == pid
    listing = call("GET", "/pipelines", 200, query={"page_size": 1, "sort_by": "name desc"})
    assert listing["pipelines"] and listing["total_size"] == 1
    got = call("GET", "/pipelines/{id}", 200, path_params={"id": pid})
    assert got["default_version"]["id"] == vid
    call("GET", "/pipelines/{id}/templates", 200, path_params={"id": pid})
    call("POST", "/pipelines/{pipeline_id}/default_version/{version_id}", 200,
         path_params={"pipeline_id": pid, "version_id": pid})  # fmt: skip
    versions = call("GET", "/pipeline_versions", 200,
                    query={"resource_key.type": "PIPELINE", "resource_key.id": pid})  # fmt: skip
    assert len(versions["versions"]) == 2
    call("GET", "/pipeline_versions/{version_id}", 200, path_params={"version_id": vid})
    call("GET", "/pipeline_versions/{version_id}/templates", 200,
         path_params={"version_id": vid})  # fmt: skip
    call("DELETE", "/pipeline_versions/{version_id}", 200, path_params={"version_id": vid})
    call("DELETE", "/pipelines/{id}", 200, path_params={"id": pid})
    call("GET", "/pipelines/{id}", 404, path_params={"id": pid})


def test_experiment_operations(call, objects):
    eid = objects["experiment"]["id"]
    listing = call("GET", "/experiments", 200,
                   query={"resource_reference_key.type": "NAMESPACE",
                          "resource_reference_key.id": ""})  # fmt: skip
    assert {e["name"] for e in listing["experiments"]} == {"Default", "contract"}
    call("GET", "/experiments/{id}", 200, path_params={"id": eid})
    call("POST", "/experiments/{id}:archive", 200, path_params={"id": eid})
    archived = call("GET", "/experiments/{id}", 200, path_params={"id": eid})
    assert archived["storage_state"] == "STORAGESTATE_ARCHIVED"
    call("POST", "/experiments/{id}:unarchive", 200, path_params={"id": eid})
    call("POST", "/experiments", 409, body={"name": "contract"})
    call("DELETE", "/experiments/{id}", 200, path_params={"id": eid})
    call("GET", "/experiments/{id}", 404, path_params={"id": eid})


def test_run_operations(call, objects, localdsp):
    rid = objects["run"]["id"]
    listing = call("GET", "/runs", 200,
                   query={"resource_reference_key.type": "EXPERIMENT",
                          "resource_reference_key.id": objects["experiment"]["id"]})  # fmt: skip
    assert [r["id"] for r in listing["runs"]] == [rid]
    detail = call("GET", "/runs/{run_id}", 200, path_params={"run_id": rid})
    assert json.loads(detail["pipeline_runtime"]["workflow_manifest"])["kind"] == "PipelineRun"
    call("POST", "/runs/{run_id}/retry", 400, path_params={"run_id": rid})  # not failed
    call("POST", "/runs/{run_id}/terminate", 200, path_params={"run_id": rid})
    call("POST", "/runs/{run_id}/terminate", 400, path_params={"run_id": rid})  # terminating
    localdsp.backend.record_run_status(rid, "Failed", {"kind": "PipelineRun"})
    failed = call("GET", "/runs/{run_id}", 200, path_params={"run_id": rid})
    assert failed["run"]["status"] == "Failed"
    call("POST", "/runs/{run_id}/retry", 200, path_params={"run_id": rid})
    call("POST", "/runs/{id}:archive", 200, path_params={"id": rid})
    call("POST", "/runs/{id}:unarchive", 200, path_params={"id": rid})
    call("DELETE", "/runs/{id}", 200, path_params={"id": rid})
    call("GET", "/runs/{run_id}", 404, path_params={"run_id": rid})


def test_job_operations(call, objects):
    jid = objects["job"]["id"]
    assert objects["job"]["max_concurrency"] == "2"
    listing = call("GET", "/jobs", 200)
    assert [j["id"] for j in listing["jobs"]] == [jid]
    call("POST", "/jobs/{id}/disable", 200, path_params={"id": jid})
    assert "enabled" not in call("GET", "/jobs/{id}", 200, path_params={"id": jid})
    call("POST", "/jobs/{id}/enable", 200, path_params={"id": jid})
    periodic = call("POST", "/jobs", 200, body={
        "name": "p", "max_concurrency": "1", "enabled": False,
        "pipeline_spec": {"pipeline_id": objects["pipeline"]["id"]},
        "trigger": {"periodic_schedule": {"interval_second": "3600"}},
    })  # fmt: skip
    assert periodic["trigger"]["periodic_schedule"]["interval_second"] == "3600"
    call("DELETE", "/jobs/{id}", 200, path_params={"id": jid})
    call("GET", "/jobs/{id}", 404, path_params={"id": jid})
    call(
        "POST",
        "/jobs",
        400,
        body={
            "name": "bad",
            "max_concurrency": "0",
            "pipeline_spec": {"pipeline_id": objects["pipeline"]["id"]},
        },
    )


# ---------------------------------------------------------------- what the client never sends


@pytest.mark.parametrize("template", ["/pipelines", "/experiments", "/runs", "/jobs"])
def test_empty_lists_are_empty_objects(call, localdsp, template):
    localdsp.reset()
    if template == "/experiments":  # a fresh server has Default; without it the list is empty
        (default,) = localdsp.backend.list_experiments(ListRequest()).items
        localdsp.backend.delete_experiment(default.id)
    assert call("GET", template, 200) == {}


def test_empty_version_list_is_an_empty_object(call, objects):
    nothing = json.dumps({"predicates": [{"op": 1, "key": "name", "string_value": "none"}]})
    query = {
        "resource_key.type": "PIPELINE",
        "resource_key.id": objects["pipeline"]["id"],
        "filter": nothing,
    }
    assert call("GET", "/pipeline_versions", 200, query=query) == {}


def test_versions_of_a_missing_pipeline_are_a_404(call):
    query = {"resource_key.type": "PIPELINE", "resource_key.id": "no-such-pipeline"}
    body = call("GET", "/pipeline_versions", 404, query=query)
    assert body["details"][0]["error_message"] == "Pipeline no-such-pipeline not found."


@pytest.mark.parametrize(
    ("template", "query"),
    [
        ("/pipelines", {"page_token": "not-a-token"}),
        ("/experiments", {"page_token": "bm90IGpzb24="}),
        ("/runs", {"page_size": "-1"}),
        ("/pipelines", {"sort_by": "bogus"}),
        ("/runs", {"sort_by": "name sideways"}),
        (
            "/jobs",
            {
                "filter": json.dumps(
                    {"predicates": [{"key": "bogus", "op": "EQUALS", "string_value": "x"}]}
                )
            },
        ),
        ("/pipelines", {"filter": "{not json"}),
        (
            "/experiments",
            {"resource_reference_key.type": "NAMESPACE", "resource_reference_key.id": "other"},
        ),
    ],
)
def test_bad_list_requests_are_gateway_errors(call, template, query):
    error = call("GET", template, 400, query=query)
    assert error["details"][0]["error_message"]


def test_not_found_and_malformed_bodies(call):
    call("GET", "/runs/{run_id}", 404, path_params={"run_id": "nope"})
    call("DELETE", "/jobs/{id}", 404, path_params={"id": "nope"})
    call("POST", "/runs", 400, body={"name": ""})
    call("POST", "/experiments", 400, body={"name": ""})


def test_oversize_upload(call):
    content = b"#" * ((32 << 20) + 1)
    error = call("POST", "/pipelines/upload", 400, upload=(content, "big.yaml"))
    assert "File size too large" in error["error_message"]


def test_argo_upload_is_refused(call, argo_yaml):
    error = call("POST", "/pipelines/upload", 500, upload=(argo_yaml.read_bytes(), "argo.yaml"))
    assert "unknown template format" in error["error_message"]


def test_long_name_upload(call, add_yaml):
    error = call("POST", "/pipelines/upload", 400, upload=(add_yaml.read_bytes(), "a.yaml"),
                 query={"name": "x" * 101})  # fmt: skip
    assert "too long" in error["error_message"]


def test_duplicate_upload_and_bad_version_upload(call, add_yaml):
    content = add_yaml.read_bytes()
    call("POST", "/pipelines/upload", 200, upload=(content, "a.yaml"), query={"name": "dup"})
    call("POST", "/pipelines/upload", 500, upload=(content, "a.yaml"), query={"name": "dup"})
    call("POST", "/pipelines/upload_version", 400, upload=(content, "a.yaml"),
         query={"name": "v"})  # fmt: skip


def test_the_validator_is_strict(spec):
    schema = spec.schema("GET", f"{B}/pipelines/{{id}}", 200)
    with pytest.raises(jsonschema.ValidationError):
        spec.validate({"id": "x", "surprise": 1}, schema)
    with pytest.raises(jsonschema.ValidationError):
        spec.validate({"id": "x", "created_at": "yesterday"}, schema)
    job = spec.schema("GET", f"{B}/jobs/{{id}}", 200)
    with pytest.raises(jsonschema.ValidationError):
        spec.validate({"max_concurrency": 2}, job)
