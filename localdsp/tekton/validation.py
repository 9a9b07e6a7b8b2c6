"""Refusals: what Tekton (or this executor) would not run, decided before anything runs.

Every field the manifest may carry is either acted on, knowingly ignored, or refused here with a
message naming it, so a local run never silently differs from the cluster's.
"""

from __future__ import annotations

# Fields read from the manifest; anything else changes behaviour in ways not emulated here.
RUN_SPEC_KEYS = {"params", "pipelineSpec", "timeout", "timeouts", "workspaces", "status"}

RUN_SPEC_IGNORED = {
    "serviceAccountName",
    "serviceAccountNames",
    "podTemplate",
    "taskRunSpecs",
    "taskRunTemplate",
}
PIPELINE_KEYS = {
    "params",
    "tasks",
    "finally",
    "workspaces",
    "results",
    "description",
    "displayName",
}
TASK_KEYS = {
    "name",
    "taskSpec",
    "taskRef",
    "params",
    "runAfter",
    "when",
    "timeout",
    "retries",
    "workspaces",
    "displayName",
    "description",
}
_TASK_SPEC_KEYS = {
    "steps",
    "params",
    "results",
    "metadata",
    "description",
    "displayName",
    "workspaces",
    "stepTemplate",
    "volumes",
    "sidecars",
}
_STEP_KEYS = {
    "name",
    "image",
    "command",
    "args",
    "script",
    "env",
    "workingDir",
    "onError",
    "timeout",
    "volumeMounts",
    "envFrom",
    "volumeDevices",
}
_STEP_IGNORED = {
    "resources",
    "computeResources",
    "imagePullPolicy",
    "securityContext",
    "ports",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
    "stdin",
    "stdinOnce",
    "tty",
}
_LOCAL_WORKSPACES = ("emptyDir", "volumeClaimTemplate")
_CANCEL_STATUSES = ("Cancelled", "PipelineRunCancelled", "CancelledRunFinally", "StoppedRunFinally")


class RunError(Exception):
    """Why Tekton would reject or fail the run as a whole; reason is Tekton's reason string."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def check_keys(obj: dict, known: set[str], ignored: set[str], where: str) -> None:
    """Fail on fields this executor does not act on, so a run never silently differs."""
    unknown = sorted(k for k in obj if k not in known and k not in ignored)
    if unknown:
        raise RunError(
            "PipelineValidationFailed",
            f"{where} uses {', '.join(unknown)}, not supported by the local executor",
        )


def check_string_param(param: dict, where: str) -> None:
    if not param.get("name"):
        raise RunError("PipelineValidationFailed", f"a {where} parameter has no name")
    if param.get("type", "string") != "string":
        raise RunError(
            "PipelineValidationFailed",
            f'{where} parameter "{param["name"]}" is of type {param["type"]}; only '
            "string parameters are supported by the local executor",
        )


def param_text(value: object, name: str) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str | int | float):
        return str(value)
    raise RunError("ParameterTypeMismatch", f'parameter "{name}" is not a string: {value!r}')


def embedded_task_spec(raw: dict) -> dict:
    """The task's own taskSpec (custom tasks are sorted out before); references cannot run."""
    name = raw["name"]
    ref = raw.get("taskRef")
    if ref:
        raise RunError(
            "CouldntGetTask",
            f'task "{name}" refers to {ref.get("kind") or "Task"} '
            f'"{ref.get("name", "")}" (taskRef); the local executor runs only '
            "embedded taskSpec",
        )
    spec = raw.get("taskSpec")
    if not isinstance(spec, dict):
        raise RunError("PipelineValidationFailed", f'task "{name}" has no taskSpec')
    _check_task_spec(name, spec)
    return spec


def _check_task_spec(name: str, spec: dict) -> None:
    check_keys(spec, _TASK_SPEC_KEYS, set(), f'task "{name}"')
    if spec.get("sidecars"):
        raise RunError(
            "PipelineValidationFailed",
            f'task "{name}" uses sidecars, not supported by the local executor',
        )
    for param in spec.get("params") or []:
        check_string_param(param, f'task "{name}"')
    for result in spec.get("results") or []:
        if result.get("type", "string") != "string":
            raise RunError(
                "PipelineValidationFailed",
                f'task "{name}" result "{result.get("name")}" is of type '
                f"{result['type']}; only string results are supported",
            )
    if not spec.get("steps"):
        raise RunError("PipelineValidationFailed", f'task "{name}" has no steps')
    for index, step in enumerate([spec.get("stepTemplate") or {}, *spec["steps"]]):
        _check_step(name, step, index)


def _check_step(task: str, step: dict, index: int) -> None:
    where = f'task "{task}" step "{step.get("name") or index}"'
    check_keys(step, _STEP_KEYS, _STEP_IGNORED, where)
    for feature in ("envFrom", "volumeDevices"):
        if step.get(feature):
            raise RunError(
                "PipelineValidationFailed",
                f"{where} uses {feature}, not supported by the local executor",
            )
    if step.get("onError") not in (None, "continue", "stopAndFail"):
        raise RunError("PipelineValidationFailed", f"{where}: unknown onError {step['onError']!r}")


def check_when(task: str, when: dict) -> None:
    if "cel" in when:
        raise RunError(
            "PipelineValidationFailed",
            f'task "{task}" uses a CEL when expression, not supported locally',
        )
    if when.get("operator") not in ("in", "notin") or "input" not in when:
        raise RunError(
            "PipelineValidationFailed",
            f'task "{task}": when expressions need input and operator in/notin',
        )


def pipeline_task_texts(raw: dict) -> list[str]:
    """The strings Tekton resolves at pipeline level: param values and when expressions."""
    texts = [str(p.get("value", "")) for p in raw.get("params") or []]
    for when in raw.get("when") or []:
        texts.append(str(when.get("input", "")))
        texts.extend(str(v) for v in when.get("values") or [])
    return texts
