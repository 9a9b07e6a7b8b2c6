"""The backend's rules without HTTP: cron, archives, run manifests, transactions, error texts."""

import json

import pytest
import yaml

from localdsp.backend import (
    Backend,
    InvalidInput,
    ListRequest,
    Parameter,
    Pipeline,
    PipelineSpec,
    read_pipeline_file,
    runtime_pipelinerun,
    upload_name,
)
from localdsp.errors import AlreadyExists, NotFound
from localdsp.validation import check_cron


@pytest.fixture
def backend(tmp_path):
    backend = Backend(tmp_path)
    yield backend
    backend.close()


@pytest.mark.parametrize(
    "expression",
    [
        "0 0 * * * *",
        "0 */5 9-17 * * MON-FRI",
        "30 0 0 1 JAN,JUL ?",
        "0 0 0 * *",
        "@hourly",
        "@every 1h30m",
    ],
)
def test_cron_expressions_robfig_accepts(expression):
    check_cron(expression)


@pytest.mark.parametrize(
    ("expression", "why"),
    [
        ("* * * *", "Expected 5 to 6 fields, found 4: * * * *"),
        ("60 * * * * *", "End of range (60) above maximum (59): 60"),
        ("0 0 0 0 * *", "Beginning of range (0) below minimum (1): 0"),
        ("0 0 22-2 * * *", "Beginning of range (22) beyond end of range (2): 22-2"),
        ("0 0 0 * * FRI-MON", "Beginning of range (5) beyond end of range (1): FRI-MON"),
        (
            "0 0 * * FOO *",
            'Failed to parse int from FOO: strconv.Atoi: parsing "FOO": invalid syntax',
        ),
        ("0 */0 * * * *", "Step of range should be a positive number: */0"),
        ("@sometimes", "Unrecognized descriptor: @sometimes"),
        (" @daily", "Expected 5 to 6 fields, found 1:  @daily"),
    ],
)
def test_cron_expressions_robfig_refuses(expression, why):
    with pytest.raises(InvalidInput) as caught:
        check_cron(expression)
    assert caught.value.message == (
        "Schedule cron is not a supported format(https://godoc.org/github.com/robfig/cron). "
        f"Error: {why}"
    )


def test_plain_files_are_taken_by_their_name_whatever_they_hold():
    assert read_pipeline_file("p.json", b"PK not a zip") == b"PK not a zip"


def test_upload_names_fall_back_to_the_file_name():
    assert upload_name("", "add.yaml") == "add.yaml"
    with pytest.raises(InvalidInput, match="Support maximum length of 100"):
        upload_name("", "x" * 101)


def test_the_run_manifest_is_named_after_the_run_and_takes_known_arguments():
    template = yaml.safe_load(
        """
        apiVersion: tekton.dev/v1beta1
        kind: PipelineRun
        metadata: {name: add-pipeline}
        spec:
          params: [{name: a, value: '1'}, {name: b, value: '7'}]
        """
    )
    run_id = "abcdef12-0000-0000-0000-000000000000"
    parameters = (Parameter("b", "9"), Parameter("c", "ignored"))
    pipelinerun = runtime_pipelinerun(template, run_id, "my run", parameters)
    assert pipelinerun["metadata"]["name"] == "add-pipeline-abcde"
    assert pipelinerun["metadata"]["labels"] == {
        "pipeline/runid": run_id,
        "custom.tekton.dev/originalPipelineRun": "add-pipeline-abcde",
    }
    assert pipelinerun["metadata"]["annotations"] == {"pipelines.kubeflow.org/run_name": "my run"}
    assert pipelinerun["spec"]["params"] == [
        {"name": "a", "value": "1"},
        {"name": "b", "value": "9"},
    ]
    assert template["metadata"] == {"name": "add-pipeline"}


def test_a_failed_create_leaves_nothing_behind(backend, add_yaml):
    backend.create_pipeline("p", "", add_yaml.read_bytes())
    with pytest.raises(AlreadyExists) as caught:
        backend.create_pipeline("P", "", add_yaml.read_bytes())
    assert caught.value.status == 409  # the gateway status; the upload handler answers 500
    assert [p.name for p in backend.store.all(Pipeline)] == ["p"]
    assert backend.list_pipelines(ListRequest()).total_size == 1


def test_reports_after_the_server_stopped_are_dropped(backend, add_yaml):
    manifest = json.dumps(yaml.safe_load(add_yaml.read_text()))
    run = backend.create_run(name="r", pipeline_spec=PipelineSpec(workflow_manifest=manifest))
    backend.record_run_status(run.id, "Succeeded", {"status": {}})
    assert backend.get_run(run.id).status == "Succeeded"
    assert backend.get_run(run.id).finished_at > 0
    backend.close()
    backend.record_run_status(run.id, "Failed", {})


def test_errors_keep_the_user_text_and_grow_the_internal_chain():
    error = NotFound.of("Run", "r1").wrap("Get run failed")
    assert error.message == "Run r1 not found."
    assert error.internal == "Get run failed: ResourceNotFoundError: Run r1 not found."
    assert error.gateway_body()["code"] == 5
    assert error.upload_body() == {"error_message": error.internal, "error_details": error.internal}


def test_the_run_manifest_has_the_servers_macros_replaced():
    template = {
        "apiVersion": "tekton.dev/v1beta1",
        "kind": "PipelineRun",
        "metadata": {"name": "data"},
        "spec": {
            "params": [{"name": "where", "value": "runs/{{workflow.uid}}"}],
            "pipelineSpec": {
                "tasks": [
                    {
                        "name": "t",
                        "params": [{"name": "id", "value": "$(context.pipelineRun.uid)"}],
                        "taskSpec": {"steps": [{"args": ["/ws/artifacts/$ORIG_PR_NAME/x"]}]},
                    }
                ]
            },
        },
    }
    run_id = "abcdef12-0000-0000-0000-000000000000"

    pipelinerun = runtime_pipelinerun(template, run_id, "r", ())

    task = pipelinerun["spec"]["pipelineSpec"]["tasks"][0]
    assert pipelinerun["spec"]["params"] == [{"name": "where", "value": f"runs/{run_id}"}]
    assert task["params"] == [{"name": "id", "value": run_id}]
    assert task["taskSpec"]["steps"][0]["args"] == ["/ws/artifacts/data-abcde/x"]
