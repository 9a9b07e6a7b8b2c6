"""`dsl.ParallelFor` and kfp-tekton's loops run as the PipelineLoop controller runs them.

Every pipeline here is compiled by kfp-tekton 1.5's TektonCompiler (the fixtures in
tests/pipelines_loops through the runner's own compile path); the assertions are what the cluster
would show: each iteration's PipelineRun and task outputs, the Run's results and reason, the run's
final state.
"""

import copy
import re
import threading
from pathlib import Path

import kfp
import pytest
import yaml
from kfp import dsl
from kfp_tekton.compiler import TektonCompiler
from kfp_tekton.tekton import Break, Loop

from localdsp.tekton import loop_iterations, loop_objects
from localdsp.tekton.run import execute
from localdsp.tekton.status import Execution, pipelinerun_with_status
from runner.flavour_v1 import compile as v1

LOOPS = Path(__file__).resolve().parent / "pipelines_loops"


def echo(text: str) -> str:
    return text


def fail_on(text: str, bad: str) -> str:
    if text == bad:
        raise SystemExit(f"{text} is bad")
    return text


def show(number: int) -> int:
    return number


def decrement(value: int) -> int:
    return value - 1


def meet(folder: str, me: str) -> str:
    """Waits for the other iteration: succeeds only when both run at once."""
    import os
    import time

    other = {"left": "right", "right": "left"}[me]
    open(os.path.join(folder, me), "w").close()
    for _ in range(100):
        if os.path.exists(os.path.join(folder, other)):
            return me
        time.sleep(0.05)
    raise SystemExit(f"{other} never showed up")


def flaky(marker: str) -> str:
    import os

    if not os.path.exists(marker):
        open(marker, "w").close()
        raise SystemExit("first attempt fails")
    return "ok"


def nap(pidfile: str) -> str:
    import os
    import time

    with open(pidfile, "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(30)
    return "woke"


echo_op = kfp.components.create_component_from_func(echo, base_image="python:3.11")
fail_on_op = kfp.components.create_component_from_func(fail_on, base_image="python:3.11")
show_op = kfp.components.create_component_from_func(show, base_image="python:3.11")
decrement_op = kfp.components.create_component_from_func(decrement, base_image="python:3.11")
meet_op = kfp.components.create_component_from_func(meet, base_image="python:3.11")
flaky_op = kfp.components.create_component_from_func(flaky, base_image="python:3.11")
nap_op = kfp.components.create_component_from_func(nap, base_image="python:3.11")


@dsl.pipeline(name="range-loop")
def range_loop():
    with Loop.range(2, 8, 3) as number:
        show_op(number)


@dsl.pipeline(name="enumerate-loop")
def enumerate_loop(csv: str = "a;b;c"):
    with Loop.from_string(csv, separator=";").enumerate() as (index, item):
        echo_op(item).set_display_name("item")
        show_op(index)


@dsl.pipeline(name="failing-loop")
def failing_loop():
    with dsl.ParallelFor(["1", "0", "2"]) as item:
        fail_on_op(item, "0")


@dsl.pipeline(name="meeting-loop")
def meeting_loop(folder: str = "."):
    with dsl.ParallelFor(["left", "right"], parallelism=2) as side:
        meet_op(folder, side)


@dsl.pipeline(name="one-at-a-time-loop")
def one_at_a_time_loop(folder: str = "."):
    with dsl.ParallelFor(["left", "right"]) as side:
        meet_op(folder, side)


@dsl.pipeline(name="break-loop")
def break_loop():
    with dsl.ParallelFor(["a", "b", "c", "d"]) as item:
        said = echo_op(item)
        with dsl.Condition(said.output == "b"):
            Break()


@dsl.pipeline(name="loop-in-condition")
def loop_in_condition(go: str = "yes"):
    with dsl.Condition(go == "yes"):
        with dsl.ParallelFor(["p", "q"]) as item:
            echo_op(item)


@dsl.graph_component
def countdown(value: int):
    lower = decrement_op(value)
    with dsl.Condition(lower.output > 0):
        countdown(lower.output)


@dsl.pipeline(name="countdown")
def countdown_pipeline(start: int = 3):
    countdown(start)


@dsl.pipeline(name="napping-loop")
def napping_loop(pidfile: str = "/dev/null"):
    with dsl.ParallelFor(["1", "2"], parallelism=2) as item:
        nap_op(pidfile).after(echo_op(item))


@dsl.pipeline(name="flaky-loop")
def flaky_loop(marker: str = "/dev/null"):
    with dsl.ParallelFor(["only"]):
        flaky_op(marker)


INLINE = [
    flaky_loop,
    range_loop,
    enumerate_loop,
    failing_loop,
    meeting_loop,
    one_at_a_time_loop,
    break_loop,
    loop_in_condition,
    countdown_pipeline,
    napping_loop,
]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, dict]:
    """The loop fixtures through the runner's compile path, and this module's pipelines."""
    runs = {}
    for path in sorted(LOOPS.glob("[!_]*.py")):
        if path.stem == "tekton_loops":
            continue  # also mounts a secret and holds a user-defined custom task
        for pipeline in v1.compile_module(path, module_name=path.stem, twice=False):
            runs[pipeline.function] = yaml.safe_load(pipeline.yaml_text)
    folder = tmp_path_factory.mktemp("loops")
    for function in INLINE:
        target = folder / f"{function.__name__}.yaml"
        TektonCompiler().compile(function, str(target))
        runs[function.__name__] = yaml.safe_load(target.read_text())
    return runs


@pytest.fixture(autouse=True)
def fresh_namespace(monkeypatch):
    """PipelineLoop objects outlive a run, as in a namespace: each test starts without any."""
    monkeypatch.setattr(loop_objects, "_OBJECTS", {})


def run(pipelinerun: dict, tmp_path: Path, **kwargs) -> tuple[Execution, dict]:
    """Execute; the execution and the last live PipelineRun (what localdsp would store)."""
    live: dict = {}
    result = execute(copy.deepcopy(pipelinerun), workdir=tmp_path, on_update=live.update, **kwargs)
    return result, live


def loop_run(execution: Execution):
    """The one Run (custom task) of a run."""
    (run_outcome,) = [t for t in execution.tasks.values() if t.kind == "Run"]
    return run_outcome


def iterations(extra_fields: dict) -> list[dict]:
    """The iteration PipelineRuns of a loop's Run status, in iteration order."""
    runs = extra_fields.get("pipelineRuns") or {}
    return sorted(runs.values(), key=lambda entry: entry["iteration"])


def outputs(iteration: dict) -> dict[str, dict[str, str]]:
    """{task: {result: value}} of one iteration PipelineRun."""
    return {
        task["pipelineTaskName"]: {r["name"]: r["value"] for r in task["status"]["taskResults"]}
        for task in (iteration["status"].get("taskRuns") or {}).values()
        if task["status"].get("taskResults")
    }


def reason(status: dict) -> str:
    return status["conditions"][0]["reason"]


# ---------------------------------------------------------------- what a loop iterates over


def test_a_loop_over_a_literal_list_runs_one_pipelinerun_per_item(compiled, tmp_path):
    result, live = run(compiled["literal_loop"], tmp_path)

    assert result.reason == "Succeeded", result.message
    loop = loop_run(result)
    assert loop.results == {"last-idx": "3", "last-elem": "c", "condition": "succeeded"}
    done = iterations(loop.extra_fields)
    assert [(i["iteration"], i["iterationItem"]) for i in done] == [(1, "a"), (2, "b"), (3, "c")]
    assert [outputs(i)["echo"]["Output"] for i in done] == ["a", "b", "c"]
    assert all(reason(i["status"]) == "Succeeded" for i in done)
    stored = live["status"]["runs"][loop.taskrun]["status"]
    assert reason(stored) == "Succeeded"
    assert len(stored["extraFields"]["pipelineRuns"]) == 3
    assert all(name.startswith(loop.taskrun[:57]) for name in stored["extraFields"]["pipelineRuns"])


def test_a_loop_over_a_pipeline_parameter_takes_the_run_argument(compiled, tmp_path):
    result, _ = run(compiled["param_loop"], tmp_path, params={"items": '["p", "q", "r"]'})

    assert result.reason == "Succeeded", result.message
    done = iterations(loop_run(result).extra_fields)
    assert [outputs(i)["echo"]["Output"] for i in done] == ["p", "q", "r"]


def test_a_loop_over_another_tasks_output_waits_for_it(compiled, tmp_path):
    result, _ = run(compiled["output_loop"], tmp_path, params={"count": "2"})

    assert result.reason == "Succeeded", result.message
    assert result.tasks["fan-out"].results == {"Output": '["item-0", "item-1"]'}
    done = iterations(loop_run(result).extra_fields)
    assert [outputs(i)["echo"]["Output"] for i in done] == ["item-0", "item-1"]


def test_a_loop_over_dicts_passes_each_field_as_a_subvar_param(compiled, tmp_path):
    result, _ = run(compiled["graph_component"], tmp_path)

    loop = next(t for t in result.tasks.values() if "for-loop" in t.name)
    assert loop.reason == "Succeeded"
    assert loop.results["last-elem"] == "map[a:2]"  # Go's %s of the item, as the cluster shows
    assert [outputs(i)["echo-2"]["Output"] for i in iterations(loop.extra_fields)] == ["1", "2"]


def test_a_numeric_range_includes_its_end_and_prints_ints_the_go_way(compiled, tmp_path):
    result, _ = run(compiled["range_loop"], tmp_path)

    assert result.reason == "Succeeded", result.message
    loop = loop_run(result)
    done = iterations(loop.extra_fields)
    assert [outputs(i)["show"]["Output"] for i in done] == ["2", "5", "8"]
    assert loop.results["last-elem"] == "%!s(int=8)"


def test_a_string_split_by_a_separator_with_the_iteration_number(compiled, tmp_path):
    result, _ = run(compiled["enumerate_loop"], tmp_path, params={"csv": "x;y"})

    assert result.reason == "Succeeded", result.message
    done = iterations(loop_run(result).extra_fields)
    assert [outputs(i)["echo"]["Output"] for i in done] == ["x", "y"]
    assert [outputs(i)["show"]["Output"] for i in done] == ["1", "2"]


# ---------------------------------------------------------------- how iterations run


def test_parallelism_runs_iterations_at_the_same_time(compiled, tmp_path):
    folder = tmp_path / "meet"
    folder.mkdir()

    result, _ = run(compiled["meeting_loop"], tmp_path / "work", params={"folder": str(folder)})

    assert result.reason == "Succeeded", result.message


def test_without_parallelism_iterations_run_one_after_the_other(compiled, tmp_path):
    folder = tmp_path / "meet"
    folder.mkdir()

    result, _ = run(
        compiled["one_at_a_time_loop"], tmp_path / "work", params={"folder": str(folder)}
    )

    assert result.reason == "Failed"
    assert len(iterations(loop_run(result).extra_fields)) == 1  # the first never met the second


def test_a_failing_iteration_stops_the_loop_and_fails_the_run(compiled, tmp_path):
    result, _ = run(compiled["failing_loop"], tmp_path)

    assert result.reason == "Failed"
    loop = loop_run(result)
    done = iterations(loop.extra_fields)
    assert [reason(i["status"]) for i in done] == ["Succeeded", "Failed"]  # "2" never started
    failed_name = next(
        n for n, i in loop.extra_fields["pipelineRuns"].items() if i["iteration"] == 2
    )
    assert (loop.reason, loop.message) == ("Failed", f"PipelineRun {failed_name} has failed")
    assert loop.results == {"last-idx": "2", "last-elem": "0"}


def test_the_loops_retries_run_a_failed_iteration_again(compiled, tmp_path):
    pipelinerun = copy.deepcopy(compiled["flaky_loop"])
    (loop_task,) = pipelinerun["spec"]["pipelineSpec"]["tasks"]
    loop_task["retries"] = 1
    marker = tmp_path / "marker"

    result, _ = run(pipelinerun, tmp_path / "work", params={"marker": str(marker)})

    assert result.reason == "Succeeded", result.message
    done = iterations(loop_run(result).extra_fields)
    assert [(i["iteration"], reason(i["status"])) for i in done] == [
        (1, "Failed"),
        (1, "Succeeded"),
    ]


def test_nested_loops_with_a_condition_inside(compiled, tmp_path):
    result, _ = run(compiled["nested_loops"], tmp_path, params={"limit": "a"})

    assert result.reason == "Succeeded", result.message
    said = []
    for outer in iterations(loop_run(result).extra_fields):
        (inner,) = outer["status"]["runs"].values()
        for iteration in iterations(inner["status"]["extraFields"]):
            status = iteration["status"]
            if reason(status) == "Completed":  # the condition was false: echo skipped
                assert [s["name"] for s in status["skippedTasks"]] == ["echo"]
            else:
                said.append((iteration["iterationItem"], outputs(iteration)["echo"]["Output"]))
    assert said == [("a", "1"), ("a", "2")]


def test_a_condition_inside_a_loop_skips_some_iterations_tasks(compiled, tmp_path):
    result, _ = run(compiled["condition_in_loop"], tmp_path, params={"wanted": "c"})

    done = iterations(loop_run(result).extra_fields)
    assert [reason(i["status"]) for i in done] == ["Completed", "Completed", "Succeeded"]
    assert outputs(done[2])["echo"] == {"Output": "c"}


@pytest.mark.parametrize(("go", "ran"), [("yes", True), ("no", False)])
def test_a_loop_inside_a_condition_runs_only_when_it_holds(compiled, tmp_path, go, ran):
    result, _ = run(compiled["loop_in_condition"], tmp_path, params={"go": go})

    assert result.reason == ("Succeeded" if ran else "Completed"), result.message
    loop = next(t for t in result.tasks.values() if "for-loop" in t.name)
    assert loop.reason == ("Succeeded" if ran else "Skipped")


def test_a_break_task_ends_the_loop_early_and_it_succeeds(compiled, tmp_path):
    result, _ = run(compiled["break_loop"], tmp_path)

    assert result.reason == "Succeeded", result.message
    loop = loop_run(result)
    assert loop.results == {"last-idx": "2", "last-elem": "b", "condition": "pass"}
    assert [i["iterationItem"] for i in iterations(loop.extra_fields)] == ["a", "b"]


def test_a_graph_component_recurses_until_its_condition_fails(compiled, tmp_path):
    result, _ = run(compiled["countdown_pipeline"], tmp_path, params={"start": "3"})

    assert result.reason == "Succeeded", result.message
    seen, level = [], loop_run(result).extra_fields
    while level:
        (iteration,) = iterations(level)
        seen.append(outputs(iteration)["decrement"]["Output"])
        inner = iteration["status"].get("runs") or {}
        level = next(iter(inner.values()))["status"]["extraFields"] if inner else None
    assert seen == ["2", "1", "0"]


def test_endless_recursion_stops_at_the_controllers_nesting_limit(compiled, tmp_path):
    """The fixture's countdown never counts down: the cluster fails it 30 levels deep."""
    result, _ = run(compiled["graph_component"], tmp_path / "first")

    assert result.reason == "Failed"
    top = next(t for t in result.tasks.values() if "countdown" in t.name)
    depth, level, level_reason = 0, top.extra_fields, top.reason
    while level_reason != "NestedCallStackLimitExceeded":
        (iteration,) = iterations(level)
        (inner,) = iteration["status"]["runs"].values()
        depth += 1
        level, level_reason = inner["status"].get("extraFields", {}), reason(inner["status"])
    assert depth == 30
    again, _ = run(compiled["graph_component"], tmp_path / "again")  # the budget is spent
    top = next(t for t in again.tasks.values() if "countdown" in t.name)
    assert top.reason == "NestedCallStackLimitExceeded"


def test_cancelling_the_run_cancels_the_running_iterations(compiled, tmp_path):
    pidfile = tmp_path / "pids"
    cancel = threading.Event()
    done: list[Execution] = []
    worker = threading.Thread(
        target=lambda: done.append(
            execute(
                copy.deepcopy(compiled["napping_loop"]),
                workdir=tmp_path / "work",
                params={"pidfile": str(pidfile)},
                cancel=cancel,
            )
        )
    )
    worker.start()
    try:
        for _ in range(400):
            if pidfile.exists() and len(pidfile.read_text().split()) == 2:
                break
            threading.Event().wait(0.05)
        cancel.set()
    finally:
        worker.join(20)

    assert done and done[0].reason == "Cancelled"
    loop = loop_run(done[0])
    assert loop.reason == "PipelineLoopRunCancelled" and loop.cancelled
    assert {reason(i["status"]) for i in iterations(loop.extra_fields)} == {"Cancelled"}


def test_the_stored_manifest_lists_each_iteration_under_the_run(compiled, tmp_path):
    result, _ = run(compiled["literal_loop"], tmp_path)

    stored = pipelinerun_with_status(compiled["literal_loop"], result)["status"]
    (child,) = stored["childReferences"]
    assert (child["apiVersion"], child["kind"]) == ("tekton.dev/v1alpha1", "Run")
    iteration = next(iter(stored["runs"][child["name"]]["status"]["extraFields"]["pipelineRuns"]))
    assert iteration.startswith(child["name"][:57])


# ---------------------------------------------------------------- the controller's parsing


@pytest.mark.parametrize(
    ("params", "spec", "expected"),
    [
        ({"p": '["a", "b"]'}, {"iterateParam": "p"}, (2, ["a", "b"])),
        ({"p": "[3, 4]"}, {"iterateParam": "p"}, (2, [3, 4])),
        ({"p": '[{"k": "v"}]'}, {"iterateParam": "p"}, (1, [{"k": "v"}])),
        ({"p": "a,b,c"}, {"iterateParam": "p"}, (3, ["a", "b", "c"])),
        ({"p": '["a", 1]'}, {"iterateParam": "p"}, (2, ['["a"', " 1]"])),  # neither: commas
        (
            {"p": "x|y", "s": "|"},
            {"iterateParam": "p", "iterateParamStringSeparator": "s"},
            (2, ["x", "y"]),
        ),
        ({"p": ["1"]}, {"iterateParam": "p"}, (1, ["1"])),  # an array param: graph components
        ({"from": "1", "to": "3"}, {"iterateNumeric": "n"}, (3, [1, 2, 3])),
        ({"from": "5", "to": "1", "step": "-2"}, {"iterateNumeric": "n"}, (3, [5, 3, 1])),
        ({"from": "1", "to": "3", "step": "5"}, {"iterateNumeric": "n"}, (1, [1])),
        ({"from": "4", "to": "4"}, {"iterateNumeric": "n"}, (1, [4])),
        ({"from": "3", "to": "1"}, {"iterateNumeric": "n"}, (1, [3])),  # a range backwards
        ({"q": "a,b"}, {"iterateParam": "p"}, (-1, [])),  # no such param: no iteration
    ],
)
def test_iterations_are_what_the_controller_computes(params, spec, expected):
    assert loop_iterations.iterations(params, spec) == expected


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"p": "plain"}, 'the value of the iterate parameter "p" can not transfer to array'),
        ({"from": "1", "to": "3", "step": "0"}, "invalid values step: 0 found in runs"),
        ({"from": "one", "to": "3"}, 'input "from" is not a number'),
    ],
)
def test_what_the_controller_cannot_iterate_over_fails_with_its_message(params, message):
    with pytest.raises(loop_iterations.IterationError, match=re.escape(message)):
        loop_iterations.iterations(params, {"iterateParam": "p"})


def test_each_iteration_gets_its_item_the_other_params_and_its_number():
    spec = {"iterateParam": "p", "iterationNumberParam": "n"}
    params = {"p": '[{"a": "1", "b": "2"}, {"a": "3", "b": "4"}]', "other": "o"}

    got = loop_iterations.iteration_params(params, spec, 2, {"a": "3", "b": "4"})

    assert got == [
        {"name": "other", "value": "o"},
        {"name": "p-subvar-a", "value": "3"},
        {"name": "p-subvar-b", "value": "4"},
        {"name": "n", "value": "2"},
    ]


def test_a_numeric_loop_passes_the_item_as_json_and_drops_from_to_step():
    spec = {"iterateNumeric": "item"}
    params = {"from": "1", "to": "3", "keep": "k"}

    got = loop_iterations.iteration_params(params, spec, 3, 3)

    assert got == [{"name": "keep", "value": "k"}, {"name": "item", "value": "3"}]
