"""The v2 contract suite: localdsp `api="v2"` answers validated against the KFP 2.5.0 swagger.

Each operation the kfp 2 client calls (and a few error paths) is requested over HTTP and its body
validated with jsonschema against the schema the official 2.5.0 swagger gives for that operation
and status (`200`, else `default`), from `../shared/reference/kfp-v2-api-swagger/2.5.0/`. Object
schemas are closed (an unknown field fails), int64 must be a string of digits and date-time RFC
3339, as in the v1 contract suite. Where the real server's wire differs from its swagger, the fix
is in WIRE_FIXES with the reason.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
from conftest import TOKEN
from jsonschema import Draft4Validator, FormatChecker
from test_localdsp_contract import INT64, _closed, _rfc3339

from localdsp.server import LocalDSP

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
SWAGGER = REPO.parent / "shared" / "reference" / "kfp-v2-api-swagger" / "2.5.0"
B = "/apis/v2beta1"
IR = (Path(__file__).resolve().parent / "data" / "add_pipeline_v2.yaml").read_bytes()
WIRE_FIXES: dict[str, dict] = {
    # jsonpb writes an Any as {"@type": url, <fields of the packed message>}; 2.5 packs a
    # google.rpc.Status ({code, message}) into grpc-gateway's error details.
    "protobufAny": {
        "type": "object",
        "properties": {
            "@type": {"type": "string"},
            "code": {"type": "integer"},
            "message": {"type": "string"},
        },
        "required": ["@type"],
    },
    # The healthz handler also reports its build (commit_sha, tag_name).
    "v2beta1GetHealthzResponse+": {
        "properties": {"commit_sha": {"type": "string"}, "tag_name": {"type": "string"}}
    },
}
# google.protobuf.Struct fields (the IR, run parameters) hold any JSON object: not closed.
STRUCT_FIELDS = {
    "v2beta1PipelineVersion": "pipeline_spec",
    "v2beta1Run": "pipeline_spec",
    "v2beta1RecurringRun": "pipeline_spec",
    "v2beta1RuntimeConfig": "parameters",
}
# The upload handlers write api.Error ({error_message, error_details}), not googlerpcStatus.
UPLOAD_ERROR = {
    "type": "object",
    "properties": {"error_message": {"type": "string"}, "error_details": {"type": "string"}},
    "required": ["error_message"],
    "additionalProperties": False,
}


class Spec:
    def __init__(self):
        path = SWAGGER / "kfp_api_single_file.swagger.json"
        if not path.is_file():
            pytest.fail(f"KFP 2.5.0 swagger not found at {path}", pytrace=False)
        single = json.loads(path.read_text())
        definitions = copy.deepcopy(single["definitions"])
        for name, fix in WIRE_FIXES.items():
            if name.endswith("+"):
                definitions[name[:-1]]["properties"].update(fix["properties"])
            else:
                definitions[name] = fix
        self.paths = single["paths"]
        self.definitions = _closed(definitions)
        for name, field in STRUCT_FIELDS.items():
            self.definitions[name]["properties"][field]["additionalProperties"] = True
        self.checker = FormatChecker()
        self.checker.checks("date-time", raises=ValueError)(_rfc3339)
        self.checker.checks("int64", raises=ValueError)(
            lambda v: not isinstance(v, str) or bool(INT64.fullmatch(v))
        )

    def validate(self, instance, method: str, template: str, status: int) -> None:
        responses = self.paths[template][method.lower()]["responses"]
        schema = (responses["200"] if status == 200 else responses["default"])["schema"]
        root = {**_closed(schema), "definitions": self.definitions}
        Draft4Validator(root, format_checker=self.checker).validate(instance)


@pytest.fixture(scope="module")
def spec() -> Spec:
    return Spec()


@pytest.fixture
def call(tmp_path, api_for, spec):
    """`call(method, template, status, ...)`: request, check the status, validate the body."""
    with LocalDSP(tmp_path / "v2", tokens=[TOKEN], api="v2") as dsp:
        api = api_for(dsp.url)

        def request(method, template, expected, *, ids=None, query=None, body=None, upload=None):
            path = B + template.format(**(ids or {}))
            if upload is not None:
                response = api.upload(path, upload, filename="add.yaml", **(query or {}))
            else:
                response = api(method, path, query=query, body=body)
            assert response.status == expected, f"{method} {path}: {response.text}"
            payload = response.json
            if upload is not None and expected != 200:
                jsonschema.validate(payload, UPLOAD_ERROR)
            else:
                spec.validate(payload, method, B + template, response.status)
            return payload

        yield request


def test_every_object_and_listing_matches_the_swagger(call):
    pipeline = call("POST", "/pipelines/upload", 200, upload=IR, query={"name": "contract"})
    pid = {"pipeline_id": pipeline["pipeline_id"]}
    version = call("POST", "/pipelines/upload_version", 200, upload=IR,
                   query={"name": "v-2", "pipelineid": pid["pipeline_id"]})  # fmt: skip
    vid = {**pid, "pipeline_version_id": version["pipeline_version_id"]}
    experiment = call("POST", "/experiments", 200, body={"display_name": "contract"})
    eid = {"experiment_id": experiment["experiment_id"]}
    source = {
        "pipeline_version_reference": vid,
        "runtime_config": {"parameters": {"a": 7, "b": 8}},
        "experiment_id": eid["experiment_id"],
    }
    run = call("POST", "/runs", 200, body={"display_name": "r", **source})
    job = call("POST", "/recurringruns", 200, body={
        "display_name": "j", "mode": "ENABLE", "max_concurrency": "2", **source,
        "trigger": {"cron_schedule": {"cron": "0 0 2 * * *",
                                      "start_time": "2026-01-01T00:00:00Z"}},
    })  # fmt: skip
    rid, jid = {"run_id": run["run_id"]}, {"recurring_run_id": job["recurring_run_id"]}
    call("GET", "/healthz", 200)
    call("GET", "/pipelines", 200, query={"page_size": 1})
    call("GET", "/pipelines/{pipeline_id}", 200, ids=pid)
    call("GET", "/pipelines/names/{name}", 200, ids={"name": "contract"})
    call("GET", "/pipelines/{pipeline_id}/versions", 200, ids=pid)
    call("GET", "/pipelines/{pipeline_id}/versions/{pipeline_version_id}", 200, ids=vid)
    call("GET", "/experiments", 200)
    call("GET", "/experiments/{experiment_id}", 200, ids=eid)
    call("GET", "/runs", 200, query={"experiment_id": eid["experiment_id"]})
    call("GET", "/runs/{run_id}", 200, ids=rid)
    call("GET", "/recurringruns", 200)
    call("GET", "/recurringruns/{recurring_run_id}", 200, ids=jid)
    call("POST", "/recurringruns/{recurring_run_id}:disable", 200, ids=jid)
    call("POST", "/recurringruns/{recurring_run_id}:enable", 200, ids=jid)
    call("POST", "/runs/{run_id}:terminate", 200, ids=rid)
    call("POST", "/runs/{run_id}:retry", 200, ids=rid)
    call("POST", "/experiments/{experiment_id}:archive", 200, ids=eid)
    call("DELETE", "/recurringruns/{recurring_run_id}", 200, ids=jid)
    call("DELETE", "/runs/{run_id}", 200, ids=rid)
    call("DELETE", "/pipelines/{pipeline_id}/versions/{pipeline_version_id}", 200, ids=vid)
    call("DELETE", "/experiments/{experiment_id}", 200, ids=eid)


def test_errors_match_the_swagger(call, add_yaml):
    call("GET", "/pipelines/{pipeline_id}", 404, ids={"pipeline_id": "nope"})
    call("GET", "/runs/{run_id}", 404, ids={"run_id": "nope"})
    call("GET", "/experiments", 400, query={"sort_by": "nope"})
    call("GET", "/runs", 400, query={"page_token": "%%%"})
    call("GET", "/pipelines", 400, query={"filter": '{"predicates":[{"key":"x"}]}'})
    call("POST", "/experiments", 409, body={"display_name": "Default"})
    call("POST", "/runs", 400, body={"display_name": ""})
    call("POST", "/pipelines/upload", 500, upload=add_yaml.read_bytes())
    call("POST", "/pipelines/upload", 200, upload=IR, query={"name": "dup"})
    call("POST", "/pipelines/upload", 409, upload=IR, query={"name": "dup"})
