"""The plan: a checked PipelineRun turned into the tasks, params and limits the scheduler runs,
and the pipeline-level values (params, results, context) its tasks' fields are resolved with.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from localdsp.tekton.custom import CustomTask, custom_task, plugin_for
from localdsp.tekton.names import taskrun_name
from localdsp.tekton.status import parse_duration
from localdsp.tekton.substitution import result_refs, substitute
from localdsp.tekton.validation import (
    PIPELINE_KEYS,
    RUN_SPEC_IGNORED,
    RUN_SPEC_KEYS,
    TASK_KEYS,
    RunError,
    check_keys,
    check_string_param,
    check_when,
    embedded_task_spec,
    param_text,
    pipeline_task_texts,
)
from localdsp.tekton.volumes import CLAIMS_FOLDER, check_volumes, claim_folder

DEFAULT_PIPELINE_TIMEOUT = 3600.0  # Tekton's default-timeout-minutes when the run sets none
_LOCAL_WORKSPACES = ("emptyDir", "volumeClaimTemplate", "persistentVolumeClaim")
_CANCEL_STATUSES = ("Cancelled", "PipelineRunCancelled", "CancelledRunFinally", "StoppedRunFinally")


@dataclass(frozen=True)
class PipelineTask:
    name: str
    spec: dict  # the PipelineTask
    task_spec: dict
    is_finally: bool
    deps: frozenset[str]  # runAfter plus the producers of results it reads
    result_refs: frozenset[tuple[str, str]]
    timeout: float  # seconds, 0 = none
    retries: int
    custom: CustomTask | None = None  # set for a custom task, run by its plug-in


@dataclass(frozen=True)
class Timeouts:
    pipeline: float  # seconds, 0 = none
    tasks: float
    finally_: float


@dataclass(frozen=True)
class Identity:
    name: str
    uid: str
    namespace: str


@dataclass
class Plan:
    run: Identity
    labels: dict[str, str]
    annotations: dict[str, str]
    service_account: str
    params: dict[str, str]
    tasks: dict[str, PipelineTask]
    dag: list[str]
    final: list[str]
    workspaces: dict[str, str]  # pipeline workspace → binding kind (emptyDir | volumeClaimTemplate)
    timeouts: Timeouts
    workdir: Path
    results: list[dict]  # pipelineSpec.results
    claims: Path | None = None  # the namespace's PersistentVolumeClaims, one folder each
    workspace_claims: dict[str, str] = field(default_factory=dict)  # workspace → claimName
    workspace_subpaths: dict[str, str] = field(default_factory=dict)  # binding's subPath
    propagated: dict[str, str] = field(default_factory=dict)  # undeclared params: see _propagated
    workspace_classes: dict[str, str] = field(default_factory=dict)  # volumeClaimTemplate's class

    def claim(self, name: str) -> Path:
        """The folder of a PersistentVolumeClaim (by default under the run's folder)."""
        return claim_folder(self.claims or self.workdir / CLAIMS_FOLDER, name)

    def taskrun(self, task: str) -> str:
        return taskrun_name(self.run.name, task)

    def task_dir(self, task: str) -> Path:
        return self.workdir / task


def identity_of(pipelinerun: dict) -> Identity:
    """Name, uid and namespace; a generateName gets a random suffix as the API server would."""
    metadata = pipelinerun.get("metadata") or {}
    name = metadata.get("name") or f"{metadata.get('generateName') or 'run-'}{uuid.uuid4().hex[:5]}"
    return Identity(
        name=str(name),
        uid=str(metadata.get("uid") or uuid.uuid4()),
        namespace=str(metadata.get("namespace") or "default"),
    )


def make_plan(
    pipelinerun: dict,
    identity: Identity,
    workdir: Path,
    params: Mapping[str, object] | None,
    timeout: float | None,
    claims: Path | None = None,
) -> Plan:
    """Check the PipelineRun and turn it into what the scheduler runs; RunError when Tekton
    (or this executor) would not run it."""
    spec = checked_run_spec(pipelinerun)
    if spec.get("status") in _CANCEL_STATUSES:
        raise RunError("Cancelled", f'PipelineRun "{identity.name}" was cancelled')
    if spec.get("status"):
        raise RunError(
            "PipelineValidationFailed",
            f"spec.status {spec['status']!r} is not supported by the local executor",
        )
    pipeline_spec = spec.get("pipelineSpec")
    if not isinstance(pipeline_spec, dict):
        raise RunError("CouldntGetPipeline", "PipelineRun has no embedded spec.pipelineSpec")
    check_keys(pipeline_spec, PIPELINE_KEYS, set(), "spec.pipelineSpec")
    metadata = pipelinerun.get("metadata") or {}
    dag = [_task(raw, is_finally=False) for raw in pipeline_spec.get("tasks") or []]
    final = [_task(raw, is_finally=True) for raw in pipeline_spec.get("finally") or []]
    tasks = {t.name: t for t in [*dag, *final]}
    if len(tasks) != len(dag) + len(final):
        raise RunError("PipelineValidationFailed", "pipeline task names are not unique")
    check_graph(dag)
    plan = Plan(
        run=identity,
        labels={str(k): str(v) for k, v in (metadata.get("labels") or {}).items()},
        annotations={str(k): str(v) for k, v in (metadata.get("annotations") or {}).items()},
        service_account=str(spec.get("serviceAccountName") or "default"),
        params=_run_params(spec, pipeline_spec, params, identity.name),
        propagated=_propagated(spec, pipeline_spec, params),
        tasks=tasks,
        dag=[t.name for t in dag],
        final=[t.name for t in final],
        workspaces=_workspace_bindings(spec, pipeline_spec),
        timeouts=_timeouts(spec, timeout),
        workdir=workdir,
        results=list(pipeline_spec.get("results") or []),
        claims=claims,
        workspace_claims={
            str(b.get("name")): str(b["persistentVolumeClaim"].get("claimName", ""))
            for b in spec.get("workspaces") or []
            if "persistentVolumeClaim" in b
        },
        workspace_subpaths={
            str(b.get("name")): str(b["subPath"])
            for b in spec.get("workspaces") or []
            if b.get("subPath")
        },
        workspace_classes={
            str(b.get("name")): str(b["volumeClaimTemplate"]["spec"].get("storageClassName") or "")
            for b in spec.get("workspaces") or []
            if isinstance((b.get("volumeClaimTemplate") or {}).get("spec"), dict)
        },
    )
    return plan


def checked_run_spec(pipelinerun: dict) -> dict:
    if not isinstance(pipelinerun, dict) or pipelinerun.get("kind") != "PipelineRun":
        raise RunError("PipelineValidationFailed", "not a Tekton PipelineRun")
    if pipelinerun.get("apiVersion") not in ("tekton.dev/v1beta1", "tekton.dev/v1"):
        raise RunError(
            "PipelineValidationFailed", f"unsupported apiVersion {pipelinerun.get('apiVersion')!r}"
        )
    spec = pipelinerun.get("spec") or {}
    if spec.get("pipelineRef"):
        raise RunError(
            "CouldntGetPipeline",
            "spec.pipelineRef is not supported by the local "
            "executor: it needs the pipeline embedded as spec.pipelineSpec",
        )
    if spec.get("resources"):
        raise RunError(
            "PipelineValidationFailed",
            "PipelineResources (spec.resources) are not supported by the local executor",
        )
    check_keys(spec, RUN_SPEC_KEYS, RUN_SPEC_IGNORED | {"pipelineRef", "resources"}, "spec")
    return spec


def _timeouts(spec: dict, limit: float | None) -> Timeouts:
    """spec.timeouts (or the older spec.timeout), Tekton's 1h default, capped by `limit`."""
    timeouts = spec.get("timeouts") or {}
    try:
        given = timeouts.get("pipeline", spec.get("timeout"))
        pipeline = DEFAULT_PIPELINE_TIMEOUT if given is None else parse_duration(given)
        tasks = parse_duration(timeouts.get("tasks", "0"))
        finally_ = parse_duration(timeouts.get("finally", "0"))
    except ValueError as err:
        raise RunError("PipelineValidationFailed", f"bad timeout: {err}") from err
    if limit:
        pipeline = min(pipeline, limit) if pipeline else limit
    return Timeouts(pipeline=pipeline, tasks=tasks, finally_=finally_)


def _workspace_bindings(spec: dict, pipeline_spec: dict) -> dict[str, str]:
    """Pipeline workspace → local kind. Folders stand in for emptyDir, volumeClaimTemplate and
    persistentVolumeClaim (the namespace's claim folder); ConfigMaps and Secrets do not exist
    here."""
    bindings = {b.get("name"): b for b in spec.get("workspaces") or []}
    kinds = {}
    for declared in pipeline_spec.get("workspaces") or []:
        name = declared.get("name")
        binding = bindings.get(name)
        if binding is None:
            if not declared.get("optional"):
                raise RunError(
                    "InvalidWorkspaceBindings",
                    f'pipeline workspace "{name}" is not bound by the PipelineRun',
                )
            continue
        kind = next((k for k in binding if k not in ("name", "subPath")), "")
        if kind not in _LOCAL_WORKSPACES:
            raise RunError(
                "InvalidWorkspaceBindings",
                f'workspace "{name}" is bound with {kind or "nothing"}, which the '
                "local executor cannot provide (supported: emptyDir, "
                "volumeClaimTemplate, persistentVolumeClaim)",
            )
        kinds[name] = kind
    return kinds


def _task(raw: dict, *, is_finally: bool) -> PipelineTask:
    name = raw.get("name")
    if not name:
        raise RunError("PipelineValidationFailed", "a pipeline task has no name")
    check_keys(raw, TASK_KEYS, set(), f'pipeline task "{name}"')
    custom = custom_task(raw)
    if custom is not None:
        plugin_for(name, custom).check(name, custom)
    task_spec = {} if custom is not None else embedded_task_spec(raw)
    if custom is None:
        check_volumes(name, task_spec)
    if is_finally and raw.get("runAfter"):
        raise RunError("PipelineValidationFailed", f'finally task "{name}" cannot use runAfter')
    for when in raw.get("when") or []:
        check_when(name, when)
    refs = result_refs(pipeline_task_texts(raw))
    try:
        timeout = parse_duration(raw["timeout"]) if raw.get("timeout") else 0.0
    except ValueError as err:
        raise RunError("PipelineValidationFailed", f'task "{name}": {err}') from err
    return PipelineTask(
        name=name,
        spec=raw,
        task_spec=task_spec,
        is_finally=is_finally,
        deps=frozenset({*map(str, raw.get("runAfter") or []), *(t for t, _ in refs)}),
        result_refs=frozenset(refs),
        timeout=timeout,
        retries=int(raw.get("retries") or 0),
        custom=custom,
    )


def pipeline_values(
    plan: Plan, results: Mapping[str, Mapping[str, str]], statuses: Mapping[str, str] | None
) -> dict[tuple[str, ...], str]:
    """Variables of pipeline-level fields: params, task results, context; statuses in finally."""
    params = {**plan.propagated, **plan.params}
    values = {("params", k): v for k, v in params.items()} | run_context(plan)
    for task, task_results in results.items():
        for name, value in task_results.items():
            values[("tasks", task, "results", name)] = value
    if statuses is not None:
        values[("tasks", "status")] = _aggregate_status(statuses.values())
        values.update({("tasks", t, "status"): s for t, s in statuses.items()})
    return values


def run_context(plan: Plan) -> dict[tuple[str, ...], str]:
    """`$(context.pipelineRun.*)`; an embedded pipeline is named after its run, as in Tekton."""
    return {
        ("context", "pipelineRun", "name"): plan.run.name,
        ("context", "pipelineRun", "namespace"): plan.run.namespace,
        ("context", "pipelineRun", "uid"): plan.run.uid,
        ("context", "pipeline", "name"): plan.run.name,
    }


def _aggregate_status(statuses: Iterable[str]) -> str:
    """`$(tasks.status)`: Failed if any task failed, Completed if any was skipped."""
    statuses = list(statuses)
    if "Failed" in statuses:
        return "Failed"
    return "Completed" if "None" in statuses else "Succeeded"


def resolve_pipeline_task(
    task: PipelineTask, values: Mapping[tuple[str, ...], str]
) -> tuple[dict, list]:
    """The task's param values and when expressions with pipeline variables filled in.

    A custom task's Run takes array params as they are (its controller decides what they
    mean: a loop iterates over one); a TaskRun's string params must be strings.
    """
    params: dict = {}
    for p in task.spec.get("params") or []:
        value = p.get("value", "")
        if task.custom is not None and isinstance(value, list):
            params[str(p["name"])] = [substitute(param_text(v, p["name"]), values) for v in value]
        else:
            params[str(p["name"])] = substitute(param_text(value, p["name"]), values)
    when = [
        {
            "input": substitute(str(w["input"]), values),
            "operator": w["operator"],
            "values": [substitute(str(v), values) for v in w.get("values") or []],
        }
        for w in task.spec.get("when") or []
    ]
    return params, when


def when_holds(when: list[dict]) -> bool:
    return all((w["input"] in w["values"]) == (w["operator"] == "in") for w in when)


def _run_params(
    spec: dict, pipeline_spec: dict, overrides: Mapping[str, object] | None, run_name: str
) -> dict[str, str]:
    """Pipeline defaults, then the run's spec.params, then the caller's values."""
    declared: dict[str, str | None] = {}
    for param in pipeline_spec.get("params") or []:
        check_string_param(param, "pipeline")
        default = param.get("default")
        declared[param["name"]] = None if default is None else param_text(default, param["name"])
    given = {p["name"]: p.get("value") for p in spec.get("params") or []}
    given.update(overrides or {})
    values = {}
    for name, default in declared.items():
        value = param_text(given[name], name) if name in given else default
        if value is not None:
            values[name] = value
    missing = sorted(set(declared) - set(values))
    if missing:
        raise RunError(
            "ParameterMissing",
            f'PipelineRun "{run_name}" is missing parameters '
            f"required by its pipeline: {', '.join(missing)}",
        )
    return values


def _propagated(
    spec: dict, pipeline_spec: dict, overrides: Mapping[str, object] | None
) -> dict[str, str]:
    """The params a pipeline task may name though the pipeline does not declare them, with the
    value each gets.

    For an embedded pipelineSpec Tekton 0.41's webhook checks a task's `$(params.x)` against
    every name the PipelineRun gives, the pipeline declares, a pipeline task passes or an
    embedded taskSpec declares (`validateInlineParameters`, made for propagated parameters);
    its reconciler then replaces only the names the PipelineRun or a default gives a value
    (`ApplyParameters`) and leaves any other reference as it is. So a run param the pipeline
    does not declare still reaches `$(params.x)`, and a name nothing gives a value to stays the
    text `$(params.x)` in what the task gets: what a kfp-tekton loop over dicts hands a task
    that takes the whole item, since the controller passes only the items' fields.
    """
    given = {str(p.get("name")): p.get("value") for p in spec.get("params") or []}
    given.update(overrides or {})
    names = set(given)
    for task in pipeline_spec.get("tasks") or []:
        names.update(str(p.get("name")) for p in task.get("params") or [])
        task_spec = task.get("taskSpec") or {}
        names.update(str(p.get("name")) for p in task_spec.get("params") or [])
    names -= {str(p.get("name")) for p in pipeline_spec.get("params") or []}
    values = {}
    for name in sorted(names):
        value = given.get(name, f"$(params.{name})")
        if not isinstance(value, list | dict):  # an array or object param is not a string
            values[name] = param_text(value, name)
    return values


def check_graph(dag: list[PipelineTask]) -> None:
    """Tasks form a DAG over known names (result producers that do not exist are reported by
    the dry run, which names the reference)."""
    names = {t.name for t in dag}
    for task in dag:
        unknown = sorted(set(task.spec.get("runAfter") or []) - names)
        if unknown:
            raise RunError(
                "PipelineInvalidGraph",
                f'task "{task.name}" runs after unknown task(s): {", ".join(unknown)}',
            )
    deps = {t.name: {d for d in t.deps if d in names} for t in dag}
    done: set[str] = set()
    while len(done) < len(deps):
        ready = [n for n, d in deps.items() if n not in done and d <= done]
        if not ready:
            cycle = sorted(set(deps) - done)
            raise RunError(
                "PipelineInvalidGraph",
                f"pipeline tasks depend on each other in a cycle: {', '.join(cycle)}",
            )
        done.update(ready)
