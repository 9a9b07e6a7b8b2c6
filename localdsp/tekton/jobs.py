"""A pipeline task resolved into the processes of one attempt: argv, env, folders, results paths.

Pure (nothing runs here), so the dry run can resolve every task before the run starts and report
a bad reference the way Tekton's validation would.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from localdsp.tekton.names import pod_name
from localdsp.tekton.plan import (
    PipelineTask,
    Plan,
    pipeline_values,
    resolve_pipeline_task,
    run_context,
)
from localdsp.tekton.programs import Program, program_for, refusal
from localdsp.tekton.status import live_status_file, parse_duration
from localdsp.tekton.substitution import Unresolved, substitute
from localdsp.tekton.validation import RunError, param_text
from localdsp.tekton.volumes import (
    BUCKET_CLASSES,
    NO_VOLUMES,
    Volumes,
    merge_mounts,
    mount_paths,
    rewriter,
    task_volumes,
)

_PYTHON = re.compile(r"python(\d+(\.\d+)?)?")
_FIELD_REF = re.compile(r"metadata\.(labels|annotations)\['([^']+)'\]")


@dataclass(frozen=True)
class TaskPaths:
    dir: Path
    results: Path
    scripts: Path
    tmp: Path
    workspaces: dict[str, Path]
    volumes: Volumes = NO_VOLUMES


def _task_paths(plan: Plan, task: PipelineTask) -> TaskPaths:
    directory = plan.task_dir(task.name)
    return TaskPaths(
        dir=directory,
        results=directory / "results",
        scripts=directory / "scripts",
        tmp=directory / "tmp",
        workspaces=_task_workspaces(plan, task, directory),
    )


def _task_workspaces(plan: Plan, task: PipelineTask, directory: Path) -> dict[str, Path]:
    """Task workspace → folder: a run-wide one for a volumeClaimTemplate (shared by tasks like
    the PVC; the bucket's when its storage class shows every claim one bucket), a task-private
    one for an emptyDir (like a pod's)."""
    mapping = {w.get("name"): w for w in task.spec.get("workspaces") or []}
    paths = {}
    for declared in task.task_spec.get("workspaces") or []:
        name = declared.get("name")
        use = mapping.get(name)
        pipeline_ws = (use or {}).get("workspace") or name
        kind = plan.workspaces.get(pipeline_ws)
        if use is None or kind is None:
            if declared.get("optional"):
                continue
            raise RunError(
                "InvalidWorkspaceBindings", f'task "{task.name}" workspace "{name}" is not bound'
            )
        if kind == "persistentVolumeClaim":
            root = plan.claim(plan.workspace_claims[pipeline_ws])
        elif kind == "volumeClaimTemplate":
            bucket = BUCKET_CLASSES.get(plan.workspace_classes.get(pipeline_ws, ""))
            root = plan.claim(bucket) if bucket else plan.workdir / "_workspaces" / pipeline_ws
        else:
            root = directory / "workspaces" / pipeline_ws
        within = plan.workspace_subpaths.get(pipeline_ws, "")
        paths[name] = root / within / str(use.get("subPath") or "")
    return paths


def _task_values(
    plan: Plan, task: PipelineTask, params: Mapping[str, str], paths: TaskPaths, retry: int
) -> dict[tuple[str, ...], str]:
    """Variables inside a taskSpec: its params (pipeline params propagate into embedded specs),
    result paths, workspaces, context."""
    values: dict[tuple[str, ...], str] = {("params", k): v for k, v in plan.params.items()}
    for param in task.task_spec.get("params") or []:
        name = param["name"]
        if name in params:
            values[("params", name)] = params[name]
        elif param.get("default") is not None:
            values[("params", name)] = param_text(param["default"], name)
        else:
            raise RunError(
                "PipelineValidationFailed",
                f'task "{task.name}" gives no value for its param "{name}"',
            )
    for result in task.task_spec.get("results") or []:
        values[("results", result["name"], "path")] = str(paths.results / result["name"])
    for declared in task.task_spec.get("workspaces") or []:
        name = declared["name"]
        bound = name in paths.workspaces
        values[("workspaces", name, "bound")] = "true" if bound else "false"
        values[("workspaces", name, "path")] = str(paths.workspaces[name]) if bound else ""
    taskrun = plan.taskrun(task.name)
    values.update(run_context(plan))
    values.update(
        {
            ("context", "taskRun", "name"): taskrun,
            ("context", "taskRun", "namespace"): plan.run.namespace,
            ("context", "taskRun", "uid"): str(
                uuid.uuid5(uuid.NAMESPACE_URL, f"{plan.run.uid}/{taskrun}")
            ),
            ("context", "task", "name"): taskrun,
            ("context", "task", "retry-count"): str(retry),
            ("context", "pipelineTask", "retries"): str(task.retries),
        }
    )
    return values


@dataclass(frozen=True)
class StepJob:
    name: str
    image: str
    argv: list[str]
    env: dict[str, str]
    working_dir: str
    script: str | None
    script_path: Path | None
    on_error: str
    timeout: float
    log: Path


@dataclass(frozen=True)
class Job:
    """Everything a worker thread needs to run one attempt of one task, fully resolved."""

    task: str
    taskrun: str
    paths: TaskPaths
    result_names: list[str]
    steps: list[StepJob]
    timeout: float


def build_job(plan: Plan, task: PipelineTask, params: Mapping[str, str], retry: int) -> Job:
    """Resolve a task's steps into argv/env/cwd; pure, so the dry run can use it too."""
    paths = _task_paths(plan, task)
    values = _task_values(plan, task, params, paths, retry)
    volumes = task_volumes(
        task.task_spec, paths.dir, plan.claim, lambda t: substitute(str(t), values)
    )
    paths = replace(paths, volumes=_with_workspace_claims(plan, task, volumes))
    template = task.task_spec.get("stepTemplate") or {}
    steps = [
        _build_step(plan, task, i, _merge_template(template, raw), values, paths, retry)
        for i, raw in enumerate(task.task_spec["steps"])
    ]
    if len({s.name for s in steps}) != len(steps):
        raise RunError("PipelineValidationFailed", f'task "{task.name}" has duplicate step names')
    return Job(
        task=task.name,
        taskrun=plan.taskrun(task.name),
        paths=paths,
        result_names=[r["name"] for r in task.task_spec.get("results") or []],
        steps=steps,
        timeout=task.timeout,
    )


def _with_workspace_claims(plan: Plan, task: PipelineTask, volumes: Volumes) -> Volumes:
    """The claims behind the task's workspaces must exist too, as its volumes' must."""
    claims = dict(volumes.claims)
    for use in task.spec.get("workspaces") or []:
        claim = plan.workspace_claims.get(str(use.get("workspace") or use.get("name")))
        if claim is not None:
            claims[claim] = plan.claim(claim)
    return replace(volumes, claims=claims)


def _merge_template(template: dict, step: dict) -> dict:
    """A stepTemplate under a step: the step's fields win, env merges by name."""
    merged = {**template, **step}
    if template.get("env") and step.get("env"):
        env = {e["name"]: e for e in template["env"]}
        env.update({e["name"]: e for e in step["env"]})
        merged["env"] = list(env.values())
    if template.get("volumeMounts") and step.get("volumeMounts"):
        merged["volumeMounts"] = merge_mounts(template, step)
    return merged


def _build_step(
    plan: Plan,
    task: PipelineTask,
    index: int,
    raw: dict,
    values: Mapping[tuple[str, ...], str],
    paths: TaskPaths,
    retry: int,
) -> StepJob:
    name = str(raw.get("name") or f"unnamed-{index}")
    mounted = rewriter(mount_paths(raw, paths.volumes.folders))
    step_values = {k: mounted(v) if k[0] == "params" else v for k, v in values.items()}

    def resolve(text: object) -> str:
        # Mount paths in the step's own text and in params become the volumes' folders; kfp's
        # own condition template writes to the literal /tekton/results.
        local = mounted(str(text)).replace("/tekton/results/", f"{paths.results}/")
        return substitute(local, step_values)

    image = resolve(raw.get("image") or "")
    env = _step_env(plan, task, retry, raw.get("env") or [], resolve)
    args = [_kube_expand(resolve(a), env) for a in raw.get("args") or []]
    script, script_path = None, None
    if raw.get("script"):
        if raw.get("command"):
            raise RunError(
                "PipelineValidationFailed",
                f'task "{task.name}" step "{name}" has both script and command',
            )
        script = resolve(raw["script"])
        if not script.startswith("#!"):
            script = "#!/bin/sh\nset -e\n" + script  # what Tekton prepends
        script_path = paths.scripts / name
        argv = [*_shebang(script, task.name, name), str(script_path), *args]
    elif raw.get("command"):
        argv = [_kube_expand(resolve(c), env) for c in raw["command"]] + args
    else:
        raise RunError(
            "PipelineValidationFailed",
            f'task "{task.name}" step "{name}" has no command: it relies on the '
            f'entrypoint of image "{image}", which is not pulled locally',
        )
    program = program_for(argv, image)
    if program is not None:
        argv, env = _program_argv(
            plan, task, f'step "{name}" (image {image})', program, argv, env, paths
        )
    return StepJob(
        name=name,
        image=image,
        argv=_local_argv(argv, image),
        env=env,
        working_dir=resolve(raw.get("workingDir") or ""),
        script=script,
        script_path=script_path,
        on_error=str(raw.get("onError") or "stopAndFail"),
        timeout=_step_timeout(task.name, name, raw.get("timeout")),
        log=paths.dir / f"{name}.log",
    )


def _program_argv(
    plan: Plan,
    task: PipelineTask,
    step: str,
    program: Program,
    argv: list[str],
    env: dict[str, str],
    paths: TaskPaths,
) -> tuple[list[str], dict[str, str]]:
    """The stand-in of a program of kfp-tekton's images, with what the pod would give it."""
    refused = refusal(program, argv[1:])
    if refused:
        raise RunError(
            "PipelineValidationFailed",
            f'task "{task.name}" {step} runs {program.command}: {refused}; not supported by '
            "the local executor",
        )
    given = {
        "LOCALDSP_RESULTS": str(paths.results),
        "LOCALDSP_NAMESPACE": plan.run.namespace,
        "LOCALDSP_PIPELINERUN": str(live_status_file(plan.workdir)),
    }
    return program.argv(argv[1:]), {**env, **given}


def _kube_expand(text: str, env: Mapping[str, str]) -> str:
    """What the kubelet does to command, args and env values after Tekton: `$(VAR)` of a
    variable the container defines becomes its value, `$$` becomes `$`, the rest stays."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        if text.startswith("$(", i):
            end = text.find(")", i + 2)
            if end != -1 and text[i + 2 : end] in env:
                out.append(env[text[i + 2 : end]])
                i = end + 1
                continue
        out.append(text[i])
        i += 1
    return "".join(out)


def _shebang(script: str, task: str, step: str) -> list[str]:
    words = script.splitlines()[0][2:].split()
    if words and Path(words[0]).name == "env":
        words = [w for w in words[1:] if w != "-S"]
    if not words or words[0] == "win":
        raise RunError(
            "PipelineValidationFailed",
            f'task "{task}" step "{step}": script shebang is not runnable locally',
        )
    return words


def _local_argv(argv: list[str], image: str) -> list[str]:
    """Map the container's programs to this machine's.

    python → this interpreter; busybox's `sh` → bash, since the local sh may be dash, which lacks
    the `pipefail` and `[[` that kfp-tekton's busybox helper steps use; an absolute path missing
    here → the same program on PATH.
    """
    program = Path(argv[0]).name
    if _PYTHON.fullmatch(program):
        return [sys.executable, *argv[1:]]
    if program == "sh" and "busybox" in image and shutil.which("bash"):
        return ["bash", *argv[1:]]
    if os.path.isabs(argv[0]) and not os.path.exists(argv[0]) and shutil.which(program):
        return [str(shutil.which(program)), *argv[1:]]
    return argv


def _step_timeout(task: str, step: str, value: object) -> float:
    try:
        return parse_duration(value) if value else 0.0
    except ValueError as err:
        raise RunError("PipelineValidationFailed", f'task "{task}" step "{step}": {err}') from err


def _step_env(
    plan: Plan, task: PipelineTask, retry: int, env: list[dict], resolve: Callable[[object], str]
) -> dict[str, str]:
    """A step's own variables; downward-API fieldRefs get the values the pod would have."""
    result = {}
    for entry in env:
        name = str(entry["name"])
        source = entry.get("valueFrom")
        if source is None:
            result[name] = _kube_expand(resolve(entry.get("value", "")), result)
        elif set(source) == {"fieldRef"}:
            path = str(source["fieldRef"].get("fieldPath", ""))
            result[name] = _field_ref(plan, task, retry, path)
        else:
            raise RunError(
                "PipelineValidationFailed",
                f'task "{task.name}" env "{name}" comes from '
                f"{', '.join(source)}, not available to the local executor",
            )
    return result


def _field_ref(plan: Plan, task: PipelineTask, retry: int, path: str) -> str:
    """The downward API's value for `path`, as the attempt's pod would have it: its name and
    uid, namespace, labels and annotations (the PipelineRun's, the taskSpec's metadata, then
    Tekton's own labels), service account, node and addresses."""
    taskrun = plan.taskrun(task.name)
    pod = pod_name(taskrun, retry)
    simple = {
        "metadata.name": pod,
        "metadata.uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{plan.run.uid}/{pod}")),
        "metadata.namespace": plan.run.namespace,
        "spec.serviceAccountName": plan.service_account,
        "spec.nodeName": os.uname().nodename,
        "status.podIP": "127.0.0.1",
        "status.hostIP": "127.0.0.1",
    }
    if path in simple:
        return simple[path]
    match = _FIELD_REF.fullmatch(path)
    if match is None:
        raise RunError(
            "PipelineValidationFailed",
            f'task "{task.name}" env fieldRef {path!r} is not supported locally',
        )
    metadata = task.task_spec.get("metadata") or {}
    if match.group(1) == "annotations":
        return {**plan.annotations, **(metadata.get("annotations") or {})}.get(match.group(2), "")
    labels = {
        "custom.tekton.dev/originalPipelineRun": plan.run.name,
        **plan.labels,
        **(metadata.get("labels") or {}),
        "tekton.dev/pipelineRun": plan.run.name,
        "tekton.dev/pipelineTask": task.name,
        "tekton.dev/taskRun": taskrun,
    }
    return str(labels.get(match.group(2), ""))


def dry_run(plan: Plan) -> None:
    """Resolve every task with placeholder results, so bad references and unsupported step
    forms fail the run before anything executes, as Tekton's validation would. A custom task
    declares no results, so every result read from one gets a placeholder."""
    placeholders = {
        name: {str(r.get("name")): "" for r in plan.tasks[name].task_spec.get("results") or []}
        for name in plan.dag
    }
    for task in plan.tasks.values():
        for producer, result in task.result_refs:
            if producer in plan.dag and plan.tasks[producer].custom is not None:
                placeholders[producer][result] = ""
    for name, task in plan.tasks.items():
        statuses = dict.fromkeys(plan.dag, "None") if task.is_finally else None
        values = pipeline_values(plan, placeholders, statuses)
        try:
            params, _ = resolve_pipeline_task(task, values)
            if task.custom is None:
                build_job(plan, task, params, retry=0)
        except Unresolved as err:
            raise RunError(
                "PipelineValidationFailed", f'task "{name}" references {err}, which has no value'
            ) from err
