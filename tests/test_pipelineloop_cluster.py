"""Loops that a cluster runs through more than the PipelineLoop controller: Tekton's handling of
the params an iteration PipelineRun gets, and the storage behind kfp-tekton's big-data passing.

Each pipeline is compiled by kfp-tekton 1.5's TektonCompiler from kfp 1.8 DSL; the assertions
are what the cluster shows (kfp-tekton 1.5.x controller, Tekton 0.41).
"""

from pathlib import Path

import pytest
import yaml
from kfp import dsl
from kfp_tekton.compiler import TektonCompiler
from test_pipelineloop import echo_op, iterations, loop_run, outputs, run

from localdsp.tekton import loop_objects


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
