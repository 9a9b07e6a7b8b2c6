"""localdsp's v2 runs execute with kfp.local, and report as the KFP 2.5 server does.

Over HTTP against an in-process `LocalDSP(api="v2", execute=True)`: IR compiled here by kfp 2 is
uploaded, a run is created for its version, and the test polls the run (with a deadline) until
it ends, then checks its state, history, error and task details.
"""

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import sample_pipelines as pipelines_v2
from kfp import compiler

from localdsp.server import LocalDSP

B = "/apis/v2beta1"
DEADLINE = 90.0  # seconds a run gets to end on a loaded 2-core machine
FINAL = {"SUCCEEDED", "SKIPPED", "FAILED", "CANCELED"}


class Api:
    """Plain JSON over HTTP, with the few calls these tests make."""

    def __init__(self, url: str, tmp_path: Path):
        self.url = url
        self.tmp_path = tmp_path
        self.versions: dict[str, dict] = {}

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - the test's own loopback server
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    def upload(self, pipeline) -> dict:
        """Compile `pipeline` with kfp 2 and upload it; the reference of its first version."""
        ir = self.tmp_path / f"{pipeline.name}.yaml"
        compiler.Compiler().compile(pipeline, str(ir))
        boundary = "localdsp-test"
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="uploadfile"; '
                f'filename="pipeline.yaml"\r\nContent-Type: application/octet-stream\r\n\r\n'
            ).encode()
            + ir.read_bytes()
            + f"\r\n--{boundary}--\r\n".encode()
        )
        request = urllib.request.Request(  # noqa: S310 - the test's own loopback server
            f"{self.url}{B}/pipelines/upload?name={pipeline.name}",
            data=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            pipeline_id = json.loads(response.read())["pipeline_id"]
        _, versions = self.call("GET", f"{B}/pipelines/{pipeline_id}/versions")
        version_id = versions["pipeline_versions"][0]["pipeline_version_id"]
        return {"pipeline_id": pipeline_id, "pipeline_version_id": version_id}

    def version(self, pipeline) -> dict:
        """The pipeline's version, uploaded on first use."""
        if pipeline.name not in self.versions:
            self.versions[pipeline.name] = self.upload(pipeline)
        return self.versions[pipeline.name]

    def run(self, pipeline, **parameters) -> str:
        body = {
            "display_name": f"run of {pipeline.name}",
            "pipeline_version_reference": self.version(pipeline),
            "runtime_config": {"parameters": parameters},
        }
        status, run = self.call("POST", f"{B}/runs", body)
        assert status == 200, run
        return run["run_id"]

    def get_run(self, run_id: str) -> dict:
        return self.call("GET", f"{B}/runs/{run_id}")[1]

    def wait(self, run_id: str, until, what: str) -> dict:
        """Poll the run until `until(run)` holds; fail with the run as it was at the deadline."""
        deadline = time.monotonic() + DEADLINE
        while True:
            run = self.get_run(run_id)
            if until(run):
                return run
            assert time.monotonic() < deadline, f"run never {what}: {json.dumps(run)[:2000]}"
            time.sleep(0.1)

    def finished(self, run_id: str) -> dict:
        return self.wait(run_id, lambda r: r["state"] in FINAL, "finished")


@pytest.fixture
def dsp(tmp_path):
    with LocalDSP(tmp_path / "data", api="v2", execute=True) as server:
        yield server


@pytest.fixture
def api(dsp, tmp_path):
    return Api(dsp.url, tmp_path)


def tasks(run: dict) -> dict[str, dict]:
    """Task details by display name (the last one of a name that repeats)."""
    return {t["display_name"]: t for t in run.get("run_details", {}).get("task_details", [])}


def _running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie, reparented to an init that never reaps it,
    is not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def states(run: dict) -> list[str]:
    return [entry["state"] for entry in run["state_history"]]


def test_the_add_pipeline_succeeds_with_19_in_its_task_outputs(api):
    run = api.finished(api.run(pipelines_v2.add_pipeline, a=7, b=8))
    assert run["state"] == "SUCCEEDED", run.get("error")
    assert states(run) == ["PENDING", "RUNNING", "SUCCEEDED"]
    assert run["finished_at"] >= run["created_at"]
    assert "error" not in run
    by_name = tasks(run)
    assert by_name["add"]["output_parameters"] == {"Output": 11.0}
    assert by_name["add-2"]["output_parameters"] == {"Output": 19.0}
    assert {t["state"] for t in by_name.values()} == {"SUCCEEDED"}
    assert {t["run_id"] for t in by_name.values()} == {run["run_id"]}


def test_if_else_and_parallel_for_run_as_kfp_defines_them(api, tmp_path):
    marks = tmp_path / "marks.txt"
    run = api.finished(api.run(pipelines_v2.control_flow, path=str(marks), threshold=0))
    assert run["state"] == "SUCCEEDED", run.get("error")
    assert sorted(marks.read_text().splitlines()) == ["below", "item 1", "item 2", "item 3"]
    names = [t["display_name"] for t in run["run_details"]["task_details"]]
    assert names.count("record-item") == 3
    assert "for-loop-2-iteration-2" in names
    assert "record-2" in names  # the Else branch's step; the If branch's never ran
    assert "record" not in names


def test_a_nested_pipeline_runs_as_a_task_and_passes_its_output_on(api):
    run = api.finished(api.run(pipelines_v2.nested, x=5))
    assert run["state"] == "SUCCEEDED", run.get("error")
    by_name = tasks(run)
    assert by_name["inner"]["output_parameters"] == {"Output": 10}
    assert by_name["double"]["output_parameters"] == {"Output": 20}


def test_a_failing_step_fails_the_run_naming_the_task_and_the_exit_handler_still_runs(
    api, tmp_path
):
    marks = tmp_path / "exit.txt"
    run = api.finished(api.run(pipelines_v2.exit_handler, path=str(marks), message="boom"))
    assert run["state"] == "FAILED"
    assert states(run) == ["PENDING", "RUNNING", "FAILED"]
    assert run["error"]["code"] == 2
    assert "task fail failed" in run["error"]["message"]
    assert tasks(run)["fail"]["state"] == "FAILED"
    assert tasks(run)["report"]["state"] == "SUCCEEDED"
    assert marks.read_text().splitlines() == ["exit FAILED"]


def test_a_container_component_fails_the_run_naming_the_feature(api):
    run = api.finished(api.run(pipelines_v2.container_step))
    assert run["state"] == "FAILED"
    message = run["error"]["message"]
    assert "task shell-echo needs its container image alpine:3.20" in message
    assert "container component" in message
    assert tasks(run)["add"]["state"] == "SUCCEEDED"
    assert tasks(run)["shell-echo"]["state"] == "FAILED"


def test_terminate_stops_the_steps_shows_canceling_and_ends_failed_as_on_2_5(api, tmp_path):
    """2.5 marks the run CANCELING and stops Argo's workflow, which Argo ends Failed: FAILED."""
    pid_file = tmp_path / "hold.pid"
    run_id = api.run(pipelines_v2.holding, path=str(pid_file))
    api.wait(run_id, lambda r: pid_file.exists() and pid_file.read_text(), "started its step")
    step = int(pid_file.read_text())
    assert api.call("POST", f"{B}/runs/{run_id}:terminate")[0] == 200
    run = api.finished(run_id)
    assert run["state"] == "FAILED"
    assert states(run) == ["PENDING", "RUNNING", "CANCELING", "FAILED"]
    assert "terminated" in run["error"]["message"]
    assert tasks(run)["hold"]["state"] == "FAILED"
    api.wait(run_id, lambda r: not _running(step), "stopped its step")  # none left behind
    status, body = api.call("POST", f"{B}/runs/{run_id}:terminate")
    assert status == 400
    assert body["details"][0]["message"] == f"Failed to terminate a run {run_id}. Row not found"


def test_a_failed_run_is_retried_from_the_start_and_can_then_succeed(api, tmp_path):
    pid_file = tmp_path / "hold.pid"
    run_id = api.run(pipelines_v2.holding, path=str(pid_file))
    api.wait(run_id, lambda r: pid_file.exists() and pid_file.read_text(), "started its step")
    api.call("POST", f"{B}/runs/{run_id}:terminate")
    api.finished(run_id)
    pid_file.unlink()
    Path(f"{pid_file}.done").touch()  # the retried step ends at once
    assert api.call("POST", f"{B}/runs/{run_id}:retry")[0] == 200
    run = api.wait(run_id, lambda r: r["state"] == "SUCCEEDED", "succeeded after the retry")
    assert states(run)[-3:] == ["PENDING", "RUNNING", "SUCCEEDED"]
    assert pid_file.exists()  # the step ran again
    assert [t["display_name"] for t in run["run_details"]["task_details"]] == ["hold"]


def test_steps_never_see_a_token(api, monkeypatch):
    monkeypatch.setenv("DSP_TOKEN", "canary-dsp-token")
    monkeypatch.setenv("LOCALDSP_TOKEN", "canary-localdsp-token")
    monkeypatch.setenv("MY_API_TOKEN", "canary-other-token")
    run = api.finished(api.run(pipelines_v2.environment))
    assert run["state"] == "SUCCEEDED", run.get("error")
    assert tasks(run)["token-names"]["output_parameters"] == {"Output": ""}


def test_runs_beyond_the_limit_wait_pending_for_a_slot(api, tmp_path):
    """At most two runs execute at once: a third stays PENDING until one ends."""
    holds = [tmp_path / f"hold-{i}.pid" for i in range(3)]
    run_ids = [api.run(pipelines_v2.holding, path=str(path)) for path in holds]
    api.wait(run_ids[0], lambda r: sum(p.exists() for p in holds) == 2, "started two steps")
    waiting = next(i for i, path in enumerate(holds) if not path.exists())
    assert api.get_run(run_ids[waiting])["state"] == "PENDING"
    for path in holds:
        Path(f"{path}.done").touch()
    assert [api.finished(r)["state"] for r in run_ids] == ["SUCCEEDED"] * 3
    assert holds[waiting].exists()  # it ran once a slot was free


def test_a_relative_data_folder_runs_as_an_absolute_one(tmp_path, monkeypatch):
    """`make run` passes `--data-dir .localdsp`; each run's child works in a folder of its own."""
    monkeypatch.chdir(tmp_path)
    with LocalDSP(Path("data"), api="v2", execute=True) as server:
        api = Api(server.url, tmp_path)
        run = api.finished(api.run(pipelines_v2.add_pipeline, a=7, b=8))
    assert run["state"] == "SUCCEEDED", run.get("error")
