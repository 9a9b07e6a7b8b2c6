"""The local executor runs kfp-tekton PipelineRuns with the local Python, reporting like Tekton."""

import copy
import os
import threading
import time
from pathlib import Path
from typing import NamedTuple

import kfp
import kfp_tekton
import pytest
import yaml
from kfp import dsl
from kfp.components import InputPath, OutputPath

from localdsp.tekton import steps
from localdsp.tekton.run import execute
from localdsp.tekton.status import (
    Execution,
    format_duration,
    parse_duration,
    pipelinerun_with_status,
)

# ---------------------------------------------------------------- kfp pipelines, compiled once


def add(a: float, b: float) -> float:
    return a + b


def fail() -> None:
    import sys

    print("about to fail")
    sys.exit(3)


def echo(msg: str) -> str:
    print(msg)
    return msg


def score(rows: int) -> float:
    return round(min(rows / 10000.0, 1.0), 4)


def produce(out: OutputPath(str)):
    with open(out, "w") as f:
        f.write("hello file")


def consume(inp: InputPath(str)) -> str:
    with open(inp) as f:
        return f.read()


def pair() -> NamedTuple("Pair", [("left", str), ("right", str)]):
    return ("L", "R")


add_op = kfp.components.create_component_from_func(add, base_image="python:3.11")
fail_op = kfp.components.create_component_from_func(fail)
echo_op = kfp.components.create_component_from_func(echo)
score_op = kfp.components.create_component_from_func(score)
produce_op = kfp.components.create_component_from_func(produce)
consume_op = kfp.components.create_component_from_func(consume)
pair_op = kfp.components.create_component_from_func(pair)
# The kubelet turns `$$` in command/args into `$`, so the shell's own pid is `$$$$` here.
sleep_op = kfp.components.load_component_from_text("""
name: Sleep
inputs: [{name: pidfile}]
implementation:
  container:
    image: alpine
    command: [sh, -c, 'echo $$$$ > "$0"; sleep 30', {inputValue: pidfile}]
""")
meet_op = kfp.components.load_component_from_text("""
name: Meet
inputs: [{name: folder}, {name: me}, {name: other}]
implementation:
  container:
    image: alpine
    command:
    - sh
    - -c
    - |
      touch "$0/$1"
      for _ in $(seq 100); do [ -e "$0/$2" ] && exit 0; sleep 0.05; done
      echo "$2 never showed up"; exit 1
    - {inputValue: folder}
    - {inputValue: me}
    - {inputValue: other}
""")


@dsl.pipeline(name="add-pipeline")
def add_pipeline(a="1", b="7"):
    first = add_op(a, 4)
    add_op(first.output, b)


@dsl.pipeline(name="exit-pipeline")
def exit_pipeline():
    with dsl.ExitHandler(echo_op("cleanup")):
        failing = fail_op()
        echo_op("never").after(failing)


@dsl.pipeline(name="gate-pipeline")
def gate_pipeline(rows="12000", threshold="0.9"):
    quality = score_op(rows)
    with dsl.Condition(quality.output >= threshold, name="good"):
        echo_op("published")


@dsl.pipeline(name="sleep-pipeline")
def sleep_pipeline(pidfile="/dev/null"):
    nap = sleep_op(pidfile)
    echo_op("after").after(nap)


@dsl.pipeline(name="task-timeout-pipeline")
def task_timeout_pipeline():
    sleep_op("/dev/null").set_timeout(1)


@dsl.pipeline(name="loop-pipeline")
def loop_pipeline():
    with dsl.ParallelFor(["x", "y"]) as item:
        echo_op(item)


@dsl.pipeline(name="meet-pipeline")
def meet_pipeline(folder="."):
    meet_op(folder, "left", "right")
    meet_op(folder, "right", "left")


@dsl.pipeline(name="files-pipeline")
def files_pipeline():
    consume_op(produce_op().output)


@dsl.pipeline(name="pair-pipeline")
def pair_pipeline():
    both = pair_op()
    echo_op(both.outputs["right"])


PIPELINES = [
    add_pipeline,
    exit_pipeline,
    gate_pipeline,
    sleep_pipeline,
    task_timeout_pipeline,
    loop_pipeline,
    meet_pipeline,
    files_pipeline,
    pair_pipeline,
]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, dict]:
    folder = tmp_path_factory.mktemp("compiled")
    runs = {}
    for func in PIPELINES:
        path = folder / f"{func.__name__}.yaml"
        kfp_tekton.compiler.TektonCompiler().compile(func, str(path))
        runs[func.__name__] = yaml.safe_load(path.read_text())
    return runs


def run(pipelinerun: dict, tmp_path: Path, **kwargs) -> Execution:
    return execute(copy.deepcopy(pipelinerun), workdir=tmp_path / "work", **kwargs)


# ---------------------------------------------------------------- hand-written PipelineRuns


def pipelinerun(
    tasks: list[dict], *, final: list[dict] | None = None, params: list[dict] | None = None, **spec
) -> dict:
    pipeline_spec = {"params": params or [], "tasks": tasks}
    if final:
        pipeline_spec["finally"] = final
    return {
        "apiVersion": "tekton.dev/v1beta1",
        "kind": "PipelineRun",
        "metadata": {"name": "local", "uid": "local-uid"},
        "spec": {"pipelineSpec": pipeline_spec, **spec},
    }


def script_task(name: str, script: str, *, results: tuple[str, ...] = (), **extra) -> dict:
    task_spec = {
        "results": [{"name": r, "type": "string"} for r in results],
        "steps": [{"name": "main", "image": "alpine", "script": script}],
    }
    return {"name": name, "taskSpec": task_spec, **extra}


# ---------------------------------------------------------------- success, params, results


def test_add_pipeline_adds_with_the_run_params(compiled, tmp_path):
    result = run(compiled["add_pipeline"], tmp_path, params={"a": "7", "b": "8"})

    assert result.reason == "Succeeded" and result.succeeded
    assert result.tasks["add"].results == {"Output": "11.0"}
    assert result.tasks["add-2"].results == {"Output": "19.0"}  # kfp writes str(float), no newline
    assert "executed locally; container images not pulled: python:3.11" in result.message.lower()


def test_params_come_from_defaults_then_the_run_then_the_caller(tmp_path):
    spec = pipelinerun(
        [script_task("t", 'printf %s "$(params.p)" > $(results.v.path)', results=("v",))],
        params=[{"name": "p", "default": "default"}],
    )
    from_run = copy.deepcopy(spec)
    from_run["spec"]["params"] = [{"name": "p", "value": "run"}]

    assert run(spec, tmp_path / "1").tasks["t"].results == {"v": "default"}
    assert run(from_run, tmp_path / "2").tasks["t"].results == {"v": "run"}
    assert run(from_run, tmp_path / "3", params={"p": "arg"}).tasks["t"].results == {"v": "arg"}


def test_a_required_param_without_value_is_parameter_missing(tmp_path):
    spec = pipelinerun([script_task("t", "true")], params=[{"name": "needed"}])

    result = run(spec, tmp_path)

    assert result.reason == "ParameterMissing" and "needed" in result.message
    assert not (tmp_path / "work" / "t").exists()


def test_named_outputs_pass_between_tasks(compiled, tmp_path):
    result = run(compiled["pair_pipeline"], tmp_path)

    assert result.reason == "Succeeded"
    assert result.tasks["echo"].results == {"Output": "R"}


def test_files_pass_through_the_volume_claim_template_workspace(compiled, tmp_path):
    result = run(compiled["files_pipeline"], tmp_path)

    assert result.reason == "Succeeded", result.message
    assert result.tasks["consume"].results == {"Output": "hello file"}


def test_results_over_4096_bytes_fail_the_task_like_tekton(tmp_path):
    spec = pipelinerun(
        [
            script_task(
                "big", "head -c 5000 /dev/zero | tr '\\0' x > $(results.r.path)", results=("r",)
            )
        ]
    )

    result = run(spec, tmp_path)

    assert result.reason == "Failed"
    assert result.tasks["big"].reason == "TaskRunResultLargerThanAllowedLimit"
    assert "4096" in result.tasks["big"].message


def test_each_step_logs_to_its_own_file(tmp_path):
    task = script_task("t", "echo out; echo err >&2")
    task["taskSpec"]["steps"].append(
        {"name": "second", "image": "alpine", "command": ["echo"], "args": ["two"]}
    )

    result = run(pipelinerun([task]), tmp_path)

    logs = result.tasks["t"].logs
    assert logs == {"main": tmp_path / "work/t/main.log", "second": tmp_path / "work/t/second.log"}
    assert logs["main"].read_text() == "out\nerr\n"
    assert logs["second"].read_text() == "two\n"


def test_shell_syntax_is_left_alone_and_kubelet_variables_expand(tmp_path):
    task = script_task(
        "t", 'printf "%s %s" "$(echo shell)" "$GREETING" > $(results.r.path)', results=("r",)
    )
    task["taskSpec"]["steps"][0]["env"] = [
        {"name": "GREETING", "value": "hi $(context.pipelineRun.name)"}
    ]
    task["taskSpec"]["steps"].append(
        {
            "name": "argv",
            "image": "alpine",
            "command": ["sh", "-c", 'printf %s "$0" > "$1"'],
            "args": ["$(GREETING) $$(kept)", "$(results.s.path)"],
            "env": [{"name": "GREETING", "value": "hello"}],
        }
    )
    task["taskSpec"]["results"].append({"name": "s"})

    result = run(pipelinerun([task]), tmp_path)

    assert result.tasks["t"].results == {"r": "shell hi local", "s": "hello $(kept)"}


# ---------------------------------------------------------------- failure, finally, when


def test_a_failing_step_fails_the_run_naming_the_task_and_finally_still_runs(compiled, tmp_path):
    result = run(compiled["exit_pipeline"], tmp_path)

    assert result.reason == "Failed" and not result.succeeded
    assert 'task "fail"' in result.message and "exited with code 3" in result.message
    assert result.tasks["fail"].reason == "Failed"
    assert result.tasks["fail"].steps[0].exit_code == 3
    assert result.tasks["echo-2"].reason == "Skipped"  # ran after the failure: never started
    assert result.tasks["echo"].reason == "Succeeded"  # the exit handler
    assert result.tasks["echo"].started >= result.tasks["fail"].finished
    status = pipelinerun_with_status(compiled["exit_pipeline"], result)["status"]
    assert status["taskRuns"]["exit-pipeline-fail"]["status"]["conditions"][0]["status"] == "False"
    assert {"name": "echo-2", "reason": "PipelineRun was stopping"} in status["skippedTasks"]


def test_finally_tasks_read_the_tasks_statuses(tmp_path):
    spec = pipelinerun(
        [script_task("ok", "true"), script_task("bad", "exit 1")],
        final=[
            script_task(
                "report",
                'printf "%s %s %s" "$(params.all)" "$(params.ok)" '
                '"$(params.bad)" > $(results.r.path)',
                results=("r",),
                params=[
                    {"name": "all", "value": "$(tasks.status)"},
                    {"name": "ok", "value": "$(tasks.ok.status)"},
                    {"name": "bad", "value": "$(tasks.bad.status)"},
                ],
            )
        ],
    )
    spec["spec"]["pipelineSpec"]["finally"][0]["taskSpec"]["params"] = [
        {"name": "all"},
        {"name": "ok"},
        {"name": "bad"},
    ]

    result = run(spec, tmp_path)

    assert result.reason == "Failed"
    assert result.tasks["report"].results == {"r": "Failed Succeeded Failed"}


@pytest.mark.parametrize(("threshold", "reason"), [("1.5", "Completed"), ("0.9", "Succeeded")])
def test_a_condition_skips_its_tasks_when_false(compiled, tmp_path, threshold, reason):
    result = run(compiled["gate_pipeline"], tmp_path, params={"threshold": threshold})

    assert result.reason == reason and result.succeeded
    skipped = pipelinerun_with_status(compiled["gate_pipeline"], result)["status"].get(
        "skippedTasks", []
    )
    if reason == "Completed":
        assert [s["name"] for s in skipped] == ["echo"]
        assert skipped[0]["reason"] == "When Expressions evaluated to false"
        assert skipped[0]["whenExpressions"][0]["input"] == "false"
        assert "Skipped: 1" in result.message
    else:
        assert skipped == [] and result.tasks["echo"].results == {"Output": "published"}


def test_a_when_skip_guards_only_its_task_and_the_users_of_its_results(tmp_path):
    spec = pipelinerun(
        [
            script_task(
                "guarded",
                "echo x > $(results.r.path)",
                results=("r",),
                when=[{"input": "a", "operator": "notin", "values": ["a"]}],
            ),
            script_task("ordered", "true", runAfter=["guarded"]),
            script_task(
                "reader",
                "echo $(params.v)",
                params=[{"name": "v", "value": "$(tasks.guarded.results.r)"}],
            ),
        ]
    )
    spec["spec"]["pipelineSpec"]["tasks"][2]["taskSpec"]["params"] = [{"name": "v"}]

    result = run(spec, tmp_path)

    assert result.reason == "Completed"
    assert result.tasks["ordered"].reason == "Succeeded"  # Tekton scopes `when` to the task
    assert result.tasks["reader"].reason == "Skipped"
    assert result.tasks["reader"].message == "Results were missing"


def test_a_result_the_producer_never_wrote_is_an_invalid_reference(tmp_path):
    spec = pipelinerun(
        [
            script_task("quiet", "true", results=("r",)),
            script_task(
                "reader", "true", params=[{"name": "v", "value": "$(tasks.quiet.results.r)"}]
            ),
        ]
    )

    result = run(spec, tmp_path)

    assert result.reason == "InvalidTaskResultReference"
    assert '"r" of task "quiet"' in result.message


def test_a_failed_task_is_retried(tmp_path):
    marker = tmp_path / "tried"
    spec = pipelinerun(
        [
            script_task(
                "flaky",
                f"if [ -e {marker} ]; then echo second; else touch {marker}; echo first; "
                "exit 1; fi",
                retries=1,
            )
        ]
    )

    result = run(spec, tmp_path)

    flaky = result.tasks["flaky"]
    assert result.reason == "Succeeded" and flaky.reason == "Succeeded"
    assert [r.reason for r in flaky.retries] == ["Failed"]
    assert flaky.retries[0].steps[0].log.read_text() == "first\n"
    assert flaky.steps[0].log.read_text() == "second\n"
    status = pipelinerun_with_status(spec, result)["status"]["taskRuns"]["local-flaky"]["status"]
    assert len(status["retriesStatus"]) == 1


# ---------------------------------------------------------------- time limits and cancel


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("how", ["argument", "spec"])
def test_the_pipeline_timeout_kills_the_run(compiled, tmp_path, how):
    spec = copy.deepcopy(compiled["sleep_pipeline"])
    pidfile = tmp_path / "pid"
    spec["spec"]["params"] = [{"name": "pidfile", "value": str(pidfile)}]
    kwargs = {"timeout": 0.5} if how == "argument" else {}
    if how == "spec":
        spec["spec"]["timeouts"] = {"pipeline": "500ms"}

    began = time.monotonic()
    result = run(spec, tmp_path, **kwargs)

    assert time.monotonic() - began < 5
    assert result.reason == "PipelineRunTimeout" and "500ms" in result.message
    assert result.tasks["sleep"].reason == "TaskRunCancelled"
    assert result.tasks["echo"].message == "PipelineRun timeout has been reached"
    assert not _pid_alive(int(pidfile.read_text()))


def test_a_task_timeout_fails_that_task(compiled, tmp_path):
    began = time.monotonic()
    result = run(compiled["task_timeout_pipeline"], tmp_path)

    assert time.monotonic() - began < 5
    assert result.reason == "Failed"
    assert result.tasks["sleep"].reason == "TaskRunTimeout"
    assert '"1s"' in result.tasks["sleep"].message


def test_a_step_timeout_fails_the_task_naming_the_step(tmp_path):
    task = script_task("t", "sleep 30")
    task["taskSpec"]["steps"][0]["timeout"] = "300ms"

    result = run(pipelinerun([task]), tmp_path)

    assert result.tasks["t"].reason == "Failed"
    assert result.tasks["t"].message == 'task "t": step "main" exceeded its timeout of "300ms"'
    assert result.tasks["t"].steps[0].reason == "TimeoutExceeded"


def test_the_tasks_timeout_stops_the_tasks_but_runs_finally(tmp_path):
    spec = pipelinerun(
        [script_task("slow", "sleep 30"), script_task("next", "true", runAfter=["slow"])],
        final=[script_task("cleanup", "true")],
        timeouts={"pipeline": "1m", "tasks": "300ms"},
    )

    result = run(spec, tmp_path)

    assert result.reason == "PipelineRunTimeout"
    assert result.tasks["slow"].reason == "TaskRunCancelled"
    assert result.tasks["next"].message == "PipelineRun Tasks timeout has been reached"
    assert result.tasks["cleanup"].reason == "Succeeded"


def test_a_run_already_cancelled_in_its_spec_does_not_start(tmp_path):
    spec = pipelinerun([script_task("t", "true")], status="Cancelled")

    result = run(spec, tmp_path)

    assert result.reason == "Cancelled" and result.tasks == {}


def test_cancel_kills_the_running_step(compiled, tmp_path):
    spec = copy.deepcopy(compiled["sleep_pipeline"])
    pidfile = tmp_path / "pid"
    spec["spec"]["params"] = [{"name": "pidfile", "value": str(pidfile)}]
    cancel = threading.Event()
    outcome: list[Execution] = []
    worker = threading.Thread(target=lambda: outcome.append(run(spec, tmp_path, cancel=cancel)))
    worker.start()
    for _ in range(200):
        if pidfile.exists() and pidfile.read_text().strip():
            break
        time.sleep(0.02)
    pid = int(pidfile.read_text())

    cancel.set()
    worker.join(5)

    assert not worker.is_alive()
    assert outcome[0].reason == "Cancelled"
    assert outcome[0].tasks["sleep"].reason == "TaskRunCancelled"
    assert not _pid_alive(pid)


# ---------------------------------------------------------------- unsupported features


def test_a_custom_task_without_a_controller_here_fails_the_run_naming_it(tmp_path):
    custom = {"apiVersion": "example.com/v1alpha1", "kind": "Retrying", "spec": {}}
    spec = pipelinerun([{"name": "group", "taskSpec": custom}])

    result = run(spec, tmp_path)

    assert result.reason == "PipelineValidationFailed"
    assert "example.com/v1alpha1 Retrying" in result.message
    assert result.tasks == {}


def test_a_parallel_for_loop_runs_each_iteration(compiled, tmp_path):
    result = run(compiled["loop_pipeline"], tmp_path)

    assert result.reason == "Succeeded", result.message
    (loop,) = result.tasks.values()
    assert loop.kind == "Run" and loop.results["condition"] == "succeeded"


def test_a_task_reference_cannot_be_fetched(tmp_path):
    spec = pipelinerun([{"name": "t", "taskRef": {"name": "git-clone", "kind": "ClusterTask"}}])

    result = run(spec, tmp_path)

    assert result.reason == "CouldntGetTask" and "git-clone" in result.message


@pytest.mark.parametrize(
    ("change", "reason", "named"),
    [
        (
            lambda s: s["steps"][0].update(volumeMounts=[{"name": "v", "mountPath": "/v"}]),
            "PipelineValidationFailed",
            "volumeMounts",
        ),
        (
            lambda s: s.update(sidecars=[{"name": "db", "image": "postgres"}]),
            "PipelineValidationFailed",
            "sidecars",
        ),
        (
            lambda s: s["steps"][0].update(env=[{"name": "X", "valueFrom": {"secretKeyRef": {}}}]),
            "PipelineValidationFailed",
            "secretKeyRef",
        ),
        (
            lambda s: s["steps"][0].update(script="echo $(params.nope)"),
            "PipelineValidationFailed",
            "$(params.nope)",
        ),
        (
            lambda s: s["steps"][0].update(script=None, command=None, args=["x"]),
            "PipelineValidationFailed",
            "entrypoint",
        ),
    ],
)
def test_what_cannot_run_locally_fails_naming_it(tmp_path, change, reason, named):
    spec = pipelinerun([script_task("t", "true")])
    change(spec["spec"]["pipelineSpec"]["tasks"][0]["taskSpec"])

    result = run(spec, tmp_path)

    assert result.reason == reason and named in result.message


# ---------------------------------------------------------------- scheduling and reporting


def test_independent_tasks_run_in_parallel(compiled, tmp_path):
    folder = tmp_path / "meet"
    folder.mkdir()

    result = run(compiled["meet_pipeline"], tmp_path, params={"folder": str(folder)})

    assert result.reason == "Succeeded", result.message
    assert sorted(p.name for p in folder.iterdir()) == ["left", "right"]


def test_on_update_reports_running_then_the_final_status(compiled, tmp_path):
    updates: list[dict] = []

    result = run(compiled["add_pipeline"], tmp_path, on_update=updates.append)

    reasons = [u["status"]["conditions"][0]["reason"] for u in updates]
    assert reasons[0] == "Running" and reasons[-1] == "Succeeded"
    assert set(reasons[:-1]) == {"Running"}
    running_taskruns = [
        tr
        for u in updates[:-1]
        for tr in u["status"]["taskRuns"].values()
        if tr["status"]["conditions"][0]["status"] == "Unknown"
    ]
    assert running_taskruns, "a task was reported while it ran"
    assert updates[-1] == pipelinerun_with_status(compiled["add_pipeline"], result)


def test_the_status_has_tektons_v1beta1_shape(compiled, tmp_path):
    original = copy.deepcopy(compiled["add_pipeline"])

    result = run(compiled["add_pipeline"], tmp_path)
    live = pipelinerun_with_status(compiled["add_pipeline"], result)

    assert compiled["add_pipeline"] == original  # the input is not modified
    status = live["status"]
    condition = status["conditions"][0]
    assert condition["type"] == "Succeeded" and condition["status"] == "True"
    assert condition["message"].startswith(
        "Tasks Completed: 2 (Failed: 0, Cancelled 0), Skipped: 0"
    )
    assert status["startTime"] <= status["completionTime"]
    assert set(status["taskRuns"]) == {"add-pipeline-add", "add-pipeline-add-2"}
    taskrun = status["taskRuns"]["add-pipeline-add-2"]
    assert taskrun["pipelineTaskName"] == "add-2"
    assert taskrun["status"]["podName"] == "add-pipeline-add-2-pod"
    assert taskrun["status"]["steps"][0]["terminated"]["exitCode"] == 0
    assert taskrun["status"]["taskResults"] == [
        {"name": "Output", "type": "string", "value": "12.0"}
    ]
    assert [c["name"] for c in status["childReferences"]] == list(status["taskRuns"])
    assert live["metadata"]["uid"] == result.uid


def test_executor_errors_end_the_run_instead_of_raising(tmp_path, monkeypatch):
    def broken(*args):
        raise RuntimeError("boom")

    def bad_listener(pipelinerun: dict) -> None:
        raise ValueError("listener bug")

    monkeypatch.setattr(steps, "run_steps", broken)

    result = run(pipelinerun([script_task("t", "true")]), tmp_path, on_update=bad_listener)

    assert result.reason == "Failed" and "boom" in result.message


def test_go_durations_read_and_print_like_tekton():
    assert parse_duration("1h0m0s") == 3600
    assert parse_duration("1m30.5s") == 90.5
    assert parse_duration("250ms") == 0.25
    assert parse_duration("0") == 0
    with pytest.raises(ValueError):
        parse_duration("10 minutes")
    assert format_duration(3600) == "1h0m0s"
    assert format_duration(90) == "1m30s"
    assert format_duration(0.5) == "500ms"


def test_a_relative_workdir_works_like_an_absolute_one(compiled, tmp_path, monkeypatch):
    """`make run` keeps localdsp's data in the relative folder .localdsp."""
    monkeypatch.chdir(tmp_path)
    result = execute(
        copy.deepcopy(compiled["add_pipeline"]),
        workdir=Path("relative/run"),
        params={"a": "7", "b": "8"},
    )
    assert result.reason == "Succeeded", result.message
