"""Loops that a cluster runs through more than the PipelineLoop controller: Tekton's handling of
the params an iteration PipelineRun gets, and the storage behind kfp-tekton's big-data passing.

Each pipeline is compiled by kfp-tekton 1.5's TektonCompiler from kfp 1.8 DSL; the assertions
are what the cluster shows (kfp-tekton 1.5.x controller, Tekton 0.41).
"""

import uuid
from pathlib import Path

import kfp
import pytest
import yaml
from kfp import dsl
from kfp.components import InputPath, OutputPath
from kfp_tekton.compiler import TektonCompiler
from test_pipelineloop import echo_op, iterations, loop_run, outputs, run

from localdsp.tekton import loop_objects
from localdsp.templates_v1 import runtime_pipelinerun


def write_lines(text: str, lines_path: OutputPath(str)):
    with open(lines_path, "w") as f:
        f.write(text)


def read_lines(lines_path: InputPath(str)) -> str:
    with open(lines_path) as f:
        return f.read()


write_lines_op = kfp.components.create_component_from_func(write_lines, base_image="python:3.11")
read_lines_op = kfp.components.create_component_from_func(read_lines, base_image="python:3.11")


@dsl.pipeline(name="big-data-loop")
def big_data_loop():
    written = write_lines_op("hello")
    with dsl.ParallelFor(["x", "y"]):
        read_lines_op(written.output)


@dsl.pipeline(name="dict-item-loop")
def dict_item_loop():
    with dsl.ParallelFor([{"a": 1, "b": 2}, {"a": 10, "b": 20}], parallelism=2) as item:
        echo_op(item)
        echo_op(item.a)


@dsl.pipeline(name="one-echo")
def one_echo(text: str = "default"):
    echo_op(text)


def compile_pipeline(function, folder: Path) -> dict:
    target = folder / f"{function.__name__}.yaml"
    TektonCompiler().compile(function, str(target))
    return yaml.safe_load(target.read_text())


def server_pipelinerun(function, folder: Path) -> dict:
    """The PipelineRun the DSP server creates for a run (`$ORIG_PR_NAME` replaced, labelled)."""
    return runtime_pipelinerun(compile_pipeline(function, folder), str(uuid.uuid4()), "run", ())


@pytest.fixture(autouse=True)
def fresh_namespace(monkeypatch):
    monkeypatch.setattr(loop_objects, "_OBJECTS", {})


def test_a_task_taking_a_whole_dict_item_gets_tektons_unreplaced_reference(tmp_path):
    """The controller passes a dict item only as `-subvar-` fields; Tekton's webhook accepts
    the whole item's `$(params.loop-item-param-1)` (a task declares that name) and its
    reconciler, having no value for it, leaves the text as it is: the cluster prints it."""
    pipelinerun = compile_pipeline(dict_item_loop, tmp_path)

    result, _ = run(pipelinerun, tmp_path / "work")

    assert result.reason == "Succeeded", result.message
    done = iterations(loop_run(result).extra_fields)
    assert [outputs(i)["echo-2"]["Output"] for i in done] == ["1", "10"]
    assert [outputs(i)["echo"]["Output"] for i in done] == ["$(params.loop-item-param-1)"] * 2


def test_a_run_param_the_pipeline_does_not_declare_still_reaches_a_task(tmp_path):
    """Propagated parameters: Tekton replaces `$(params.x)` with any param the run gives."""
    pipelinerun = compile_pipeline(one_echo, tmp_path)
    pipelinerun["spec"]["pipelineSpec"]["params"] = []  # "text" is no longer declared
    pipelinerun["spec"]["params"] = [{"name": "text", "value": "given"}]

    result, _ = run(pipelinerun, tmp_path / "work")

    assert result.reason == "Succeeded", result.message
    assert result.tasks["echo"].results == {"Output": "given"}


def test_big_data_passing_into_a_loop_reads_the_runs_files_from_the_csi_s3_bucket(tmp_path):
    """kfp-tekton binds the big-data workspace to a `kfp-csi-s3` volumeClaimTemplate; each
    iteration PipelineRun gets a claim of its own, and every claim of that class shows the one
    `mlpipeline` bucket, where the run's files sit under `artifacts/<run>/`."""
    pipelinerun = server_pipelinerun(big_data_loop, tmp_path)
    (binding,) = pipelinerun["spec"]["workspaces"]
    assert binding["volumeClaimTemplate"]["spec"]["storageClassName"] == "kfp-csi-s3"

    result, _ = run(pipelinerun, tmp_path / "work")

    assert result.reason == "Succeeded", result.message
    done = iterations(loop_run(result).extra_fields)
    assert [outputs(i)["read-lines"]["Output"] for i in done] == ["hello", "hello"]


def test_with_another_storage_class_each_iteration_gets_an_empty_claim(tmp_path):
    """A class of the user's (DEFAULT_STORAGE_CLASS at compile time) makes a new, empty volume
    per claim: the iterations do not see the run's files and fail, as on the cluster."""
    pipelinerun = server_pipelinerun(big_data_loop, tmp_path)
    for node in _claim_templates(pipelinerun):
        node["spec"]["storageClassName"] = "ocs-storagecluster-cephfs"

    result, _ = run(pipelinerun, tmp_path / "work")

    assert result.reason == "Failed"
    assert result.tasks["write-lines"].reason == "Succeeded"
    (first,) = iterations(loop_run(result).extra_fields)
    assert first["status"]["conditions"][0]["reason"] == "Failed"


def _claim_templates(node: object) -> list[dict]:
    """Every volumeClaimTemplate in a manifest (the run's and each loop's)."""
    if isinstance(node, list):
        return [t for item in node for t in _claim_templates(item)]
    if not isinstance(node, dict):
        return []
    found = [node["volumeClaimTemplate"]] if "volumeClaimTemplate" in node else []
    return found + [t for value in node.values() for t in _claim_templates(value)]
