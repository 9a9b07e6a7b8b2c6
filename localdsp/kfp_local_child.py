"""One v2 run, executed by kfp's own local engine in a process of its own (kfp 2 only).

    python -m localdsp.kfp_local_child RUN_DIR EVENTS_FD

`run_kfp_local.KfpLocalRunner` starts this in a new process group, with `RUN_DIR/job.json`
(`{"spec": <stored IR>, "arguments": <runtime_config.parameters>}`) and the write end of a pipe.
It runs the IR with `kfp.local` (SubprocessRunner, `use_venv=False`: steps import the packages of
this Python, no venv per task, no network), `pipeline_root` `RUN_DIR/root`, and writes one JSON
line per event to the pipe: `{"event": "task", ...}` when a task starts or ends, `{"event": "end",
"state": "SUCCEEDED"|"FAILED", "error": ...}` at the end. Step output goes to this process's
stdout (the runner's `run.log`).

kfp.local reports no per-task progress, so the tasks are observed by wrapping the two functions
its orchestrators call for each task (`task_executor.execute_single_task` for components,
`enhanced_dag_orchestrator.execute_task` for DAGs: conditions, loops and their iterations, nested
pipelines, exit handlers). The wrappers only watch: kfp.local decides what runs, in what order,
with what inputs. A separate process per run because kfp.local's configuration is process-global.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

SUCCEEDED, FAILED, RUNNING = "SUCCEEDED", "FAILED", "RUNNING"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Events:
    """JSON lines to the runner, one write per event, from any thread."""

    def __init__(self, fd: int):
        self._pipe = open(fd, "w", buffering=1)
        self._lock = threading.Lock()

    def send(self, **event: Any) -> None:
        with self._lock:
            self._pipe.write(json.dumps(event) + "\n")


class Recorder:
    """Watches kfp.local's tasks and sends each start and end as an event."""

    def __init__(self, events: Events, log: Path):
        self.events = events
        self.log = log
        self.failures: list[str] = []

    def install(self) -> None:
        """Wrap the per-task functions of kfp.local's orchestrators (see the module docstring)."""
        from kfp.local.orchestrator import enhanced_dag_orchestrator, task_executor

        task_executor.execute_single_task = self._observe(
            task_executor.execute_single_task, component=True
        )
        run_task = enhanced_dag_orchestrator.execute_task

        def execute_task(*args: Any, **kwargs: Any):
            """DAG tasks are recorded here; components by execute_single_task, once."""
            component = kwargs["components"][kwargs["task_spec"].component_ref.name]
            if component.WhichOneof("implementation") == "dag":
                return self._observe(run_task, component=False)(*args, **kwargs)
            return run_task(*args, **kwargs)

        enhanced_dag_orchestrator.execute_task = execute_task

    def _observe(self, original, component: bool):
        """`original`, reporting its task; a failed component's error becomes the run's."""
        from kfp.local import status

        def observed(*args: Any, **kwargs: Any):
            name = kwargs["task_name"]
            task = {"event": "task", "id": str(uuid.uuid4()), "name": name, "start": _now()}
            self.events.send(**task, state=RUNNING)
            try:
                outputs, task_status = original(*args, **kwargs)
            except Exception as err:
                self._end(task, FAILED, {}, _task_error(name, err, kwargs), component)
                raise
            ok = task_status == status.Status.SUCCESS
            error = "" if ok else f"task {name} failed; its output is in {self.log}"
            self._end(task, SUCCEEDED if ok else FAILED, outputs, error, component)
            return outputs, task_status

        return observed

    def _end(self, task: dict, state: str, outputs: dict, error: str, component: bool) -> None:
        if error and component:
            self.failures.append(error)
        self.events.send(**task, state=state, end=_now(), outputs=_parameters(outputs), error=error)


def _now() -> int:
    return int(time.time())


def _parameters(outputs: dict) -> dict:
    """The output parameters (JSON values); artifacts stay in the pipeline root."""
    found = {}
    for key, value in outputs.items():
        try:
            json.dumps(value)
        except TypeError:
            continue
        found[key] = value
    return found


def _task_error(name: str, err: Exception, call: dict) -> str:
    """What a task that raised tells the user; a container component is named as such."""
    text = _ANSI.sub("", str(err))
    if "only supports running Lightweight Python Components" in text:
        component = call["components"][call["task_spec"].component_ref.name]
        executor = call["executors"].get(component.executor_label)
        image = executor.container.image if executor is not None else "?"
        return (
            f"task {name} needs its container image {image} (a container component, not a "
            "Python function): localdsp runs steps with kfp.local's SubprocessRunner, which "
            "cannot run container images; run this pipeline on a DSP 2.x cluster"
        )
    return f"task {name} failed: {text}"


def unsupported(stored: dict) -> str:
    """Why this IR cannot run locally ("" if it can): Kubernetes platform settings."""
    platform = (stored.get("platform_spec") or {}).get("platforms", {}).get("kubernetes", {})
    executors = (platform.get("deploymentSpec") or {}).get("executors") or {}
    used = sorted({key for config in executors.values() for key in config})
    if not used:
        return ""
    return (
        f"the pipeline uses Kubernetes platform settings ({', '.join(used)}, from "
        "kfp-kubernetes), which localdsp's kfp.local runs cannot apply; run it on a DSP 2.x "
        "cluster"
    )


def arguments(spec: dict, given: dict) -> dict:
    """The run's parameters as the server's driver reads them: a JSON number is a protobuf
    double, so 7 fits a float input and 7.0 an int one (kfp's Python call checks types)."""
    inputs = (spec.get("root", {}).get("inputDefinitions") or {}).get("parameters") or {}
    converted = dict(given)
    for name, value in given.items():
        kind = inputs.get(name, {}).get("parameterType")
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if kind == "NUMBER_DOUBLE":
            converted[name] = float(value)
        elif kind == "NUMBER_INTEGER" and float(value).is_integer():
            converted[name] = int(value)
    return converted


def run(workdir: Path, events: Events) -> tuple[str, str]:
    """Run the job in `workdir` to its end; (final state, error)."""
    job = json.loads((workdir / "job.json").read_text())
    stored = job["spec"]
    problem = unsupported(stored)
    if problem:
        return FAILED, problem
    from kfp import local
    from kfp.components import load_component_from_file

    recorder = Recorder(events, workdir / "run.log")
    recorder.install()
    ir = workdir / "pipeline.json"  # JSON is YAML: kfp loads it as the IR it is
    spec = stored.get("pipeline_spec", stored)
    ir.write_text(json.dumps(spec))
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(workdir / "root"),
        raise_on_error=True,
    )
    try:
        load_component_from_file(str(ir))(**arguments(spec, job["arguments"]))
    except Exception as err:
        return FAILED, "; ".join(recorder.failures) or _ANSI.sub("", str(err))
    return SUCCEEDED, ""


def main(argv: list[str]) -> int:
    workdir, events = Path(argv[0]), Events(int(argv[1]))
    events.send(event="run", state=RUNNING)
    state, error = run(workdir, events)
    events.send(event="end", state=state, error=error)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
