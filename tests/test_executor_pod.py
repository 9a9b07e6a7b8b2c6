"""What a step sees of its pod: downward-API fieldRefs with the values a TaskRun's pod would have,
and the names Tekton gives TaskRuns and pods; and steps that need their image fail naming it."""

import copy
import re
import uuid

import kfp_tekton
import pytest
import yaml
from kfp import dsl
from kubernetes.client import V1EnvVar, V1EnvVarSource, V1ObjectFieldSelector

from localdsp.tekton.names import child_name, pod_name, taskrun_name
from localdsp.tekton.run import execute

FIELDS = {
    "POD_NAME": "metadata.name",
    "POD_UID": "metadata.uid",
    "POD_NAMESPACE": "metadata.namespace",
    "TASK_LABEL": "metadata.labels['tekton.dev/pipelineTask']",
    "RUN_LABEL": "metadata.labels['pipeline/runid']",
    "NOTE": "metadata.annotations['example.com/note']",
}


def report_op(name: str = "report", fail_first: bool = False) -> dsl.ContainerOp:
    """A step that writes what the downward API gave it into its result, one line per field;
    with `fail_first`, its first attempt fails after writing a marker (so a retry runs)."""
    script = "for v in POD_NAME POD_UID POD_NAMESPACE TASK_LABEL RUN_LABEL NOTE; do\n"
    script += '  echo "$v=$(printenv $v)"; done > "$0"\n'
    if fail_first:
        script += 'if [ ! -e "$1" ]; then touch "$1"; exit 1; fi\n'
    op = dsl.ContainerOp(
        name=name,
        image="alpine",
        command=["sh", "-c", script, "/tmp/outputs/fields/data", "/tmp/attempted"],
        file_outputs={"fields": "/tmp/outputs/fields/data"},
    )
    for env, path in FIELDS.items():
        source = V1EnvVarSource(field_ref=V1ObjectFieldSelector(field_path=path))
        op.add_env_variable(V1EnvVar(name=env, value_from=source))
    op.add_pod_annotation("example.com/note", "from the task")
    return op


@dsl.pipeline(name="fields")
def fields_pipeline():
    report_op()


@dsl.pipeline(name="fields-retried")
def retried_pipeline():
    report_op(fail_first=True).set_retry(1)


@dsl.pipeline(name="entrypoint")
def entrypoint_pipeline():
    dsl.ContainerOp(name="entry", image="example.com/tool:1", arguments=["--go"])


@dsl.pipeline(name="working-dir")
def working_dir_pipeline():
    op = dsl.ContainerOp(
        name="work",
        image="alpine",
        command=["sh", "-c", 'echo made here > note.txt; pwd > "$0"', "/tmp/outputs/where/data"],
        file_outputs={"where": "/tmp/outputs/where/data"},
    )
    op.container.working_dir = "/opt/app-not-on-this-machine"


def compiled(pipeline, tmp_path) -> dict:
    """The PipelineRun as the DSP server creates it for a run (named, labelled with the run)."""
    path = tmp_path / "pipeline.yaml"
    kfp_tekton.compiler.TektonCompiler().compile(pipeline, str(path))
    document = yaml.safe_load(path.read_text())
    document["metadata"]["name"] += "-abcde"
    document["metadata"]["namespace"] = "team-a"
    document["metadata"].setdefault("labels", {})["pipeline/runid"] = "run-1"
    return document


def fields_of(execution, task: str) -> dict[str, str]:
    text = execution.tasks[task].results["fields"]
    return dict(line.split("=", 1) for line in text.splitlines())


def test_fieldrefs_get_the_values_of_the_taskruns_pod(tmp_path):
    pipelinerun = compiled(fields_pipeline, tmp_path)

    result = execute(copy.deepcopy(pipelinerun), workdir=tmp_path / "work")

    assert result.reason == "Succeeded", result.message
    seen = fields_of(result, "report")
    assert seen["POD_NAME"] == "fields-abcde-report-pod"
    assert uuid.UUID(seen["POD_UID"])
    assert seen["POD_NAMESPACE"] == "team-a"
    assert seen["TASK_LABEL"] == "report"
    assert seen["RUN_LABEL"] == "run-1"
    assert seen["NOTE"] == "from the task"


def test_a_retry_runs_in_a_new_pod_with_its_own_name_and_uid(tmp_path):
    pipelinerun = compiled(retried_pipeline, tmp_path)
    command = pipelinerun["spec"]["pipelineSpec"]["tasks"][0]["taskSpec"]["steps"][0]["command"]
    command[-1] = str(tmp_path / "attempted")

    result = execute(copy.deepcopy(pipelinerun), workdir=tmp_path / "work")

    assert result.reason == "Succeeded", result.message
    seen = fields_of(result, "report")
    assert seen["POD_NAME"] == "fields-retried-abcde-report-pod-retry1"
    first = result.tasks["report"].retries[0]
    assert first.reason == "Failed"
    taskrun = result.tasks["report"].taskrun
    assert pod_name(taskrun, 0) != seen["POD_NAME"]


def test_names_past_63_characters_are_cut_with_a_hash_as_kubernetes_needs():
    pipelinerun = "a-pipeline-whose-name-is-long-" + "x" * 20 + "-abcde"

    taskrun = taskrun_name(pipelinerun, "the-task-with-a-long-name")
    pod = pod_name(taskrun)

    assert taskrun_name("add-pipeline-abcde", "add-2") == "add-pipeline-abcde-add-2"
    assert pod_name("add-pipeline-abcde-add-2", 2) == "add-pipeline-abcde-add-2-pod-retry2"
    assert len(taskrun) == 63 and taskrun.endswith("-the-task-with-a-long-name")
    assert re.fullmatch(r"a-pip[0-9a-f]{54}-pod", pod)
    assert child_name("p", "-" + "s" * 40) == "p-" + "s" * 40


def test_a_step_without_command_fails_naming_the_image_entrypoint(tmp_path):
    pipelinerun = compiled(entrypoint_pipeline, tmp_path)

    result = execute(copy.deepcopy(pipelinerun), workdir=tmp_path / "work")

    assert result.reason == "PipelineValidationFailed"
    assert 'step "main" has no command' in result.message
    assert 'entrypoint of image "example.com/tool:1"' in result.message
    assert not result.tasks


@pytest.mark.parametrize("path", ["status.podIPs", "metadata.generation"])
def test_a_fieldref_no_pod_has_fails_the_run_naming_it(tmp_path, path):
    pipelinerun = compiled(fields_pipeline, tmp_path)
    env = pipelinerun["spec"]["pipelineSpec"]["tasks"][0]["taskSpec"]["steps"][0]["env"]
    env[0]["valueFrom"]["fieldRef"]["fieldPath"] = path

    result = execute(copy.deepcopy(pipelinerun), workdir=tmp_path / "work")

    assert result.reason == "PipelineValidationFailed"
    assert f"fieldRef '{path}'" in result.message


def test_a_working_dir_missing_here_is_made_as_the_container_runtime_does(tmp_path):
    pipelinerun = compiled(working_dir_pipeline, tmp_path)

    result = execute(copy.deepcopy(pipelinerun), workdir=tmp_path / "work")

    assert result.reason == "Succeeded", result.message
    where = result.tasks["work"].results["where"].strip()
    assert where.endswith("/opt/app-not-on-this-machine")
    assert (tmp_path / "work" / "work" / "opt" / "app-not-on-this-machine" / "note.txt").exists()


@dsl.pipeline(name="image-tool")
def image_tool_pipeline():
    dsl.ContainerOp(name="direct", image="example.com/tool:1", command=["tool-only-in-image"])
    dsl.ContainerOp(
        name="in-shell", image="example.com/tool:2", command=["sh", "-c", "tool-only-in-image"]
    )


def test_a_program_only_its_image_has_fails_naming_the_image(tmp_path):
    pipelinerun = compiled(image_tool_pipeline, tmp_path)

    result = execute(copy.deepcopy(pipelinerun), workdir=tmp_path / "work")

    assert result.reason == "Failed"
    for task, image in (("direct", "example.com/tool:1"), ("in-shell", "example.com/tool:2")):
        message = result.tasks[task].message
        assert "exited with code 127" in message
        assert f'it may come with its image "{image}"' in message
        assert "which the local executor does not pull" in message
