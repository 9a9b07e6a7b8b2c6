"""Runs that really execute: the real TektonClient against a LocalDSP with a LocalExecutor."""

from __future__ import annotations

import json
import time

import kfp
import kfp_tekton
import pytest
from kfp import dsl

from localdsp.scheduler import job_run_name
from runner_helpers import wait_until
from tests.conftest import TOKEN

pytestmark = pytest.mark.integration

IN_PROGRESS = {"", "Running", "Started", "Pending", "PipelineRunPending", "Terminating"}


# ---------------------------------------------------------------- tiny pipelines


def add(a: float, b: float) -> float:
    return a + b


def fail(x: float) -> float:
    import sys

    print("about to fail")
    sys.exit(3)


def nap(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


def flaky(marker: str) -> str:
    import os

    if not os.path.exists(marker):
        open(marker, "w").close()
        raise SystemExit("first attempt fails")
    return "ok"


def hello(name: str) -> str:
    import os

    print(f"hello {name}; token={os.environ.get('DSP_TOKEN', 'none')}")
    return name


add_op = kfp.components.create_component_from_func(add)
fail_op = kfp.components.create_component_from_func(fail)
nap_op = kfp.components.create_component_from_func(nap)
flaky_op = kfp.components.create_component_from_func(flaky)
hello_op = kfp.components.create_component_from_func(hello)


@dsl.pipeline(name="Add Pipeline")
def add_pipeline(a="1", b="7"):
    first = add_op(a, 4)
    add_op(first.output, b)


@dsl.pipeline(name="Fail Pipeline")
def fail_pipeline(x="1"):
    fail_op(x)


@dsl.pipeline(name="Condition Pipeline")
def condition_pipeline(a="1"):
    first = add_op(a, 1)
    with dsl.Condition(first.output == 100):
        add_op(first.output, 1)


@dsl.pipeline(name="Nap Pipeline")
def nap_pipeline(seconds="30"):
    nap_op(seconds)


@dsl.pipeline(name="Flaky Pipeline")
def flaky_pipeline(marker=""):
    flaky_op(marker)


@dsl.pipeline(name="Hello Pipeline")
def hello_pipeline(name="world"):
    hello_op(name)


@dsl.pipeline(name="Hello Loop")
def hello_loop():
    with dsl.ParallelFor(["ann", "bob"]) as name:
        hello_op(name)


PIPELINES = {
    "loop": hello_loop,
    "add": add_pipeline,
    "fail": fail_pipeline,
    "condition": condition_pipeline,
    "nap": nap_pipeline,
    "flaky": flaky_pipeline,
    "hello": hello_pipeline,
}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    folder = tmp_path_factory.mktemp("execution")
    paths = {}
    for key, pipeline in PIPELINES.items():
        paths[key] = str(folder / f"{key}.yaml")
        kfp_tekton.compiler.TektonCompiler().compile(pipeline, paths[key])
    return paths


@pytest.fixture
def client(executing_localdsp, monkeypatch):
    monkeypatch.setenv("DSP_TOKEN", "secret-of-the-caller")  # must not reach the steps
    return kfp_tekton.TektonClient(host=executing_localdsp.url, existing_token=TOKEN)


def upload(client, compiled, key):
    pipeline = client.upload_pipeline(compiled[key], pipeline_name=f"{key}-{time.time_ns()}")
    return pipeline.id, pipeline.default_version.id


def start(client, compiled, key, params=None):
    _, version_id = upload(client, compiled, key)
    experiment = client.get_experiment(experiment_name="Default")
    run = client.run_pipeline(
        experiment.id, f"{key}-run", params=params or {}, version_id=version_id
    )
    return run.id


def wait_final(client, run_id, timeout=20.0, statuses=None):
    deadline = time.monotonic() + timeout
    while True:
        detail = client.get_run(run_id)
        status = detail.run.status or ""
        if (statuses is None and status not in IN_PROGRESS) or (statuses and status in statuses):
            return detail
        assert time.monotonic() < deadline, f"run {run_id} still {status!r}"
        time.sleep(0.05)


def manifest(detail) -> dict:
    return json.loads(detail.pipeline_runtime.workflow_manifest)


def task_results(pipelinerun: dict) -> dict[str, dict[str, str]]:
    return {
        entry["pipelineTaskName"]: {
            r["name"]: r["value"] for r in entry["status"].get("taskResults", [])
        }
        for entry in pipelinerun["status"]["taskRuns"].values()
    }


# ---------------------------------------------------------------- runs


def test_add_pipeline_succeeds_with_the_run_parameters(client, compiled):
    run_id = start(client, compiled, "add", {"a": 7, "b": 8})
    detail = wait_final(client, run_id)
    assert detail.run.status == "Succeeded"
    assert detail.run.finished_at.year > 1970
    pipelinerun = manifest(detail)
    assert pipelinerun["status"]["conditions"][0]["reason"] == "Succeeded"
    assert task_results(pipelinerun)["add-2"] == {"Output": "19.0"}


def test_failing_step_fails_the_run_naming_the_task(client, compiled):
    detail = wait_final(client, start(client, compiled, "fail"))
    assert detail.run.status == "Failed"
    message = manifest(detail)["status"]["conditions"][0]["message"]
    assert "fail" in (detail.run.error or "") + message


def test_false_condition_completes(client, compiled):
    detail = wait_final(client, start(client, compiled, "condition"))
    assert detail.run.status == "Completed"
    skipped = manifest(detail)["status"]["skippedTasks"]
    assert [s["name"] for s in skipped] == ["add-2"]


def test_terminate_cancels_a_sleeping_run(client, compiled):
    run_id = start(client, compiled, "nap", {"seconds": 30})
    wait_final(client, run_id, statuses={"Running"})
    started = time.monotonic()
    client.runs.terminate_run(run_id)
    assert client.get_run(run_id).run.status in ("Terminating", "Cancelled")
    detail = wait_final(client, run_id)
    assert detail.run.status == "Cancelled"
    assert time.monotonic() - started < 10


def test_retry_of_a_failed_run_executes_it_again(client, compiled, tmp_path):
    marker = tmp_path / "flaky-marker"
    run_id = start(client, compiled, "flaky", {"marker": str(marker)})
    assert wait_final(client, run_id).run.status == "Failed"
    client.runs.retry_run(run_id)
    detail = wait_final(client, run_id)
    assert detail.run.status == "Succeeded"
    assert task_results(manifest(detail))["flaky"] == {"Output": "ok"}


def test_log_endpoint_returns_the_step_output_without_the_token(
    client, compiled, executing_localdsp, api_for
):
    api = api_for(executing_localdsp.url)
    run_id = start(client, compiled, "hello", {"name": "localdsp"})
    detail = wait_final(client, run_id)
    assert detail.run.status == "Succeeded"
    (taskrun,) = manifest(detail)["status"]["taskRuns"]
    for node in (taskrun, "hello", f"{taskrun}-pod"):
        response = api("GET", f"/apis/v1beta1/runs/{run_id}/nodes/{node}/log")
        assert response.status == 200, response.text
        assert "hello localdsp; token=none" in response.text
    missing = api("GET", f"/apis/v1beta1/runs/{run_id}/nodes/nothing/log")
    assert missing.status == 500


def test_log_endpoint_finds_a_task_inside_a_loop_by_its_taskrun_or_pod(
    client, compiled, executing_localdsp, api_for
):
    api = api_for(executing_localdsp.url)
    run_id = start(client, compiled, "loop")
    detail = wait_final(client, run_id)
    assert detail.run.status == "Succeeded"
    (loop,) = manifest(detail)["status"]["runs"].values()
    iterations = loop["status"]["extraFields"]["pipelineRuns"].values()
    for iteration in iterations:
        ((taskrun, entry),) = iteration["status"]["taskRuns"].items()
        name = iteration["iterationItem"]
        pod = entry["status"]["podName"]  # Tekton's ChildName: cut with a hash past 63
        for node in (taskrun, pod):
            response = api("GET", f"/apis/v1beta1/runs/{run_id}/nodes/{node}/log")
            assert response.status == 200, response.text
            assert f"hello {name}; token=none" in response.text


# ---------------------------------------------------------------- recurring runs


def job_runs(client, job_id):
    runs = client.list_runs(page_size=100).runs or []
    return [
        r
        for r in runs
        if any(
            ref.key.type == "JOB" and ref.key.id == job_id and ref.relationship == "CREATOR"
            for ref in r.resource_references or []
        )
    ]


def test_enabled_cron_job_starts_runs_and_a_disabled_one_does_not(client, compiled):
    _, version_id = upload(client, compiled, "add")
    experiment = client.get_experiment(experiment_name="Default")
    enabled = client.create_recurring_run(
        experiment.id, "every-second", cron_expression="* * * * * *", version_id=version_id,
        params={"a": 1, "b": 2}, max_concurrency=2,
    )  # fmt: skip
    disabled = client.create_recurring_run(
        experiment.id, "never", cron_expression="* * * * * *", version_id=version_id,
        enabled=False,
    )  # fmt: skip
    deadline = time.monotonic() + 8
    while len(job_runs(client, enabled.id)) < 2:
        assert time.monotonic() < deadline, "the enabled job started fewer than 2 runs"
        time.sleep(0.1)
    assert job_runs(client, disabled.id) == []
    run = job_runs(client, enabled.id)[0]
    assert run.name.startswith("every-second")
    refs = {(r.key.type, r.relationship) for r in run.resource_references}
    assert {("JOB", "CREATOR"), ("EXPERIMENT", "OWNER")} <= refs
    detail = wait_final(client, run.id)
    assert detail.run.status == "Succeeded"
    assert task_results(manifest(detail))["add-2"] == {"Output": "7.0"}
    witness = client.create_recurring_run(
        experiment.id, "witness", cron_expression="* * * * * *", version_id=version_id,
        params={"a": 1, "b": 2}, max_concurrency=10,
    )  # fmt: skip
    client.disable_job(enabled.id)
    wait_for_ticks(client, witness.id, 2)  # a tick in flight may still start one run
    count = len(job_runs(client, enabled.id))
    wait_for_ticks(client, witness.id, 2)
    assert len(job_runs(client, enabled.id)) == count


def wait_for_ticks(client, witness_id: str, ticks: int) -> None:
    """Let the scheduler fire `ticks` more times, seen as runs of an every-second job."""
    target = len(job_runs(client, witness_id)) + ticks
    wait_until(lambda: len(job_runs(client, witness_id)) >= target, 10, "scheduler ticking")


# ---------------------------------------------------------------- run names


def test_job_run_name_follows_the_controller():
    from localdsp.backend import Job, PipelineSpec, Trigger

    job = Job("1234abcd-0000", "Nightly Build!", "", 0, PipelineSpec(), (), "", 1, Trigger(), True)
    name = job_run_name(job, 3)
    assert name.startswith("nightlybuild1234a-3-")
    assert name.rsplit("-", 1)[1].isdigit()
