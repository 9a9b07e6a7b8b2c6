"""kfp-tekton's any-sequencer runs as its program does: it lets its dependents go as soon as one
watched task succeeds (with its conditions on results holding), else ends Skipped."""

import copy

import kfp
import kfp_tekton
import yaml
from kfp import dsl
from kfp_tekton.tekton import after_any

from localdsp.tekton.run import execute


def shell(name: str, script: str, *args) -> dsl.ContainerOp:
    return dsl.ContainerOp(name=name, image="alpine", command=["sh", "-c", script, *args])


def coin(side: str) -> str:
    return side


coin_op = kfp.components.create_component_from_func(coin, base_image="python:3.11")

WAIT_FOR = 'for _ in $(seq 200); do [ -e "$0" ] && exit 0; sleep 0.05; done; exit 1'


@dsl.pipeline(name="any-first")
def first_pipeline(flag: str = "/nonexistent"):
    slow = shell("slow", WAIT_FOR, flag)  # ends only once "after" has run
    quick = shell("quick", "echo done")
    after_any([slow, quick], name="any-test", statusPath="status")(
        shell("after", 'touch "$0"', flag)
    )


@dsl.pipeline(name="any-none")
def none_pipeline(side: str = "tails"):
    flip = coin_op(side)
    broken = shell("broken", "exit 3")
    after_any([broken, flip.output == "heads"], name="any-test", statusPath="status")(
        shell("after", "echo went on")
    )


def compiled(pipeline, tmp_path) -> dict:
    path = tmp_path / "pipeline.yaml"
    kfp_tekton.compiler.TektonCompiler().compile(pipeline, str(path))
    return yaml.safe_load(path.read_text())


def run(pipelinerun: dict, tmp_path, **kwargs):
    return execute(copy.deepcopy(pipelinerun), workdir=tmp_path / "work", timeout=60, **kwargs)


def test_dependents_go_once_any_watched_task_succeeds(tmp_path):
    flag = str(tmp_path / "after-ran")

    result = run(compiled(first_pipeline, tmp_path), tmp_path, params={"flag": flag})

    assert result.reason == "Succeeded", result.message
    assert result.tasks["any-test"].results["status"] == "Completed"
    assert result.tasks["after"].started < result.tasks["slow"].finished  # slow waited for it


def test_a_waiting_sequencer_takes_none_of_the_runs_task_slots(tmp_path):
    pipelinerun = compiled(first_pipeline, tmp_path)
    tasks = pipelinerun["spec"]["pipelineSpec"]["tasks"]
    tasks.sort(key=lambda t: t["name"] != "any-test")  # Tekton's order of tasks means nothing
    tasks[:] = [t for t in tasks if t["name"] != "slow"]

    result = run(pipelinerun, tmp_path, params={"flag": str(tmp_path / "f")}, max_parallel=1)

    assert result.reason == "Succeeded", result.message
    assert result.tasks["any-test"].started < result.tasks["quick"].started


def test_when_no_watched_task_succeeds_with_its_conditions_the_status_is_skipped(tmp_path):
    result = run(compiled(none_pipeline, tmp_path), tmp_path)

    assert result.reason == "Failed"  # "broken" failed the run, as on the cluster
    assert result.tasks["any-test"].reason == "Succeeded"  # skipOnNoMatch: exit 0
    assert result.tasks["any-test"].results["status"] == "Skipped"
    log = result.tasks["any-test"].logs["main"].read_text()
    assert "The condition results_coin_Output == 'heads' for the task coin does not meet." in log


def test_a_watched_condition_that_holds_completes_the_sequencer(tmp_path):
    result = run(compiled(none_pipeline, tmp_path), tmp_path, params={"side": "heads"})

    assert result.tasks["any-test"].results["status"] == "Completed"
    log = result.tasks["any-test"].logs["main"].read_text()
    assert "The TaskRun of coin succeeded." in log
