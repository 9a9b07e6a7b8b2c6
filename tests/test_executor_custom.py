"""Custom tasks run through their plug-in, as Tekton hands a Run to the custom task's controller."""

import copy
import threading

import pytest

from localdsp.tekton import custom
from localdsp.tekton.custom import RunContext, RunOutcome
from localdsp.tekton.run import execute
from localdsp.tekton.status import pipelinerun_with_status
from localdsp.tekton.validation import RunError

KIND = ("example.dev/v1alpha1", "Echo")


class EchoPlugin:
    """Plays a toy controller: its Run succeeds with `text` as result `said`, or waits until
    the PipelineRun stops when `text` is "wait"."""

    seen: list[RunContext]

    def __init__(self) -> None:
        self.seen = []

    def check(self, task: str, spec: custom.CustomTask) -> None:
        if "text" not in spec.spec and not spec.ref_name:
            raise RunError("PipelineValidationFailed", f'task "{task}": no text')

    def run(self, context: RunContext) -> RunOutcome:
        self.seen.append(context)
        context.report({"heard": context.params.get("text", "")})
        if context.params.get("text") == "wait":
            context.stopped.wait(10)
            return RunOutcome("EchoCancelled", "stopped", cancelled=True)
        return RunOutcome("Succeeded", "echoed", {"said": context.params["text"]}, {"n": 1})


PLUGIN = EchoPlugin()


@pytest.fixture(autouse=True)
def echo_plugin(monkeypatch):
    monkeypatch.setitem(custom.PLUGINS, KIND, f"{__name__}:PLUGIN")
    PLUGIN.seen.clear()
    return PLUGIN


def echo_task(name: str, text: str, **extra) -> dict:
    spec = {"apiVersion": KIND[0], "kind": KIND[1], "spec": {"text": True}}
    return {"name": name, "params": [{"name": "text", "value": text}], "taskSpec": spec, **extra}


def consumer(name: str, producer: str) -> dict:
    return {
        "name": name,
        "params": [{"name": "got", "value": f"$(tasks.{producer}.results.said)"}],
        "taskSpec": {
            "params": [{"name": "got"}],
            "results": [{"name": "copy"}],
            "steps": [
                {
                    "name": "main",
                    "image": "alpine",
                    "script": 'printf %s "$(params.got)" > $(results.copy.path)',
                }
            ],
        },
    }


def pipelinerun(tasks: list[dict]) -> dict:
    return {
        "apiVersion": "tekton.dev/v1beta1",
        "kind": "PipelineRun",
        "metadata": {"name": "local", "uid": "local-uid"},
        "spec": {
            "params": [{"name": "msg", "value": "hi"}],
            "pipelineSpec": {"params": [{"name": "msg"}], "tasks": tasks},
        },
    }


def test_a_custom_task_runs_through_its_plugin_and_its_results_feed_later_tasks(tmp_path):
    updates: list[dict] = []
    run = pipelinerun([echo_task("say", "$(params.msg)"), consumer("copy", "say")])

    result = execute(copy.deepcopy(run), workdir=tmp_path, on_update=updates.append)

    assert result.reason == "Succeeded", result.message
    assert result.tasks["say"].results == {"said": "hi"}
    assert result.tasks["copy"].results == {"copy": "hi"}
    context = PLUGIN.seen[0]
    assert (context.run_name, context.params, context.pipelinerun) == (
        "local-say",
        {"text": "hi"},
        "local",
    )
    status = updates[-1]["status"]
    assert "local-say" not in status["taskRuns"]
    assert status["runs"]["local-say"]["status"]["results"] == [{"name": "said", "value": "hi"}]
    assert status["runs"]["local-say"]["status"]["extraFields"] == {"n": 1}
    assert {
        "apiVersion": "tekton.dev/v1alpha1",
        "kind": "Run",
        "name": "local-say",
        "pipelineTaskName": "say",
    } in status["childReferences"]


def test_a_kind_without_a_plugin_fails_the_run_naming_it(tmp_path):
    task = echo_task("say", "x")
    task["taskSpec"]["kind"] = "Unknown"

    result = execute(pipelinerun([task]), workdir=tmp_path)

    assert result.reason == "PipelineValidationFailed"
    assert "example.dev/v1alpha1 Unknown" in result.message and result.tasks == {}


def test_the_plugin_refuses_a_spec_before_anything_runs(tmp_path):
    task = echo_task("say", "x")
    task["taskSpec"]["spec"] = {}

    result = execute(pipelinerun([task, consumer("copy", "say")]), workdir=tmp_path)

    assert (result.reason, result.message) == ("PipelineValidationFailed", 'task "say": no text')
    assert PLUGIN.seen == []


def test_cancelling_the_run_stops_a_running_custom_task(tmp_path):
    cancel = threading.Event()
    updates: list[dict] = []

    def on_update(live: dict) -> None:
        updates.append(live)
        runs = live["status"].get("runs", {})
        if runs.get("local-say", {}).get("status", {}).get("extraFields"):
            cancel.set()

    result = execute(
        pipelinerun([echo_task("say", "wait")]),
        workdir=tmp_path,
        cancel=cancel,
        on_update=on_update,
    )

    assert result.reason == "Cancelled"
    assert result.tasks["say"].reason == "EchoCancelled" and result.tasks["say"].cancelled
    assert not result.tasks["say"].failed


def test_a_custom_task_reads_as_a_run_in_a_stored_manifest(tmp_path):
    result = execute(pipelinerun([echo_task("say", "yo")]), workdir=tmp_path)

    live = pipelinerun_with_status(pipelinerun([]), result)

    assert live["status"]["runs"]["local-say"]["pipelineTaskName"] == "say"
    assert live["status"]["taskRuns"] == {}
