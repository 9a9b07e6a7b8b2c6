"""Custom tasks: the plug-ins that stand in for their controllers, keyed by (apiVersion, kind).

On a cluster Tekton does not run a custom task itself: it creates a `Run` (tekton.dev/v1alpha1,
Tekton 0.41 as kfp-tekton 1.5 uses) and waits for the custom task's controller to finish it with
a condition, results and `extraFields`. A plug-in here plays that controller: it gets the Run as
Tekton would create it (the embedded spec or the reference, the resolved params, a name and a
timeout) plus what it needs to run things locally, and returns the Run's outcome. A kind without a
plug-in fails the run before anything starts, naming the kind, as a cluster without its controller
would leave the run waiting forever.

Plug-ins are named in `PLUGINS` ("module:attribute") and imported on first use, so a plug-in may
itself call back into the executor (a loop runs PipelineRuns) without an import cycle.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from localdsp.tekton.validation import RunError

RUN_API_VERSION = "tekton.dev/v1alpha1"  # the Run objects of Tekton 0.41

# (apiVersion, kind) → "module:attribute" of the plug-in that plays that controller.
PLUGINS: dict[tuple[str, str], str] = {
    ("custom.tekton.dev/v1alpha1", "PipelineLoop"): "localdsp.tekton.pipelineloop:PIPELINE_LOOP",
    ("custom.tekton.dev/v1alpha1", "BreakTask"): "localdsp.tekton.pipelineloop:BREAK_TASK",
    ("cel.tekton.dev/v1alpha1", "CEL"): "localdsp.tekton.plugin_cel:PLUGIN",
}


@dataclass(frozen=True)
class CustomTask:
    """A pipeline task that is a custom task: what its Run's spec would hold."""

    api_version: str
    kind: str
    spec: dict  # taskSpec.spec of an embedded custom task; {} for a reference
    ref_name: str  # taskRef.name of a referenced one; "" when embedded
    metadata: dict = field(default_factory=dict)  # taskSpec.metadata (labels, annotations)


@dataclass(frozen=True)
class RunContext:
    """Everything a plug-in gets for one Run: the Run itself and the means to run locally."""

    task: str  # the pipeline task's name
    run_name: str  # the Run object's name, <pipelinerun>-<task>
    custom: CustomTask
    params: dict[str, str | list[str]]  # a Run's params may be arrays
    timeout: float  # seconds, 0 = none (the pipeline task's timeout)
    retries: int  # the pipeline task's retries: the controller, not Tekton, retries a Run
    pipelinerun: str  # the owning PipelineRun's name
    namespace: str
    labels: dict[str, str]  # the owning PipelineRun's labels
    annotations: dict[str, str]
    workdir: Path  # this Run's folder
    env: Mapping[str, str]  # the base environment of processes it starts
    max_parallel: int  # tasks a PipelineRun it starts may run at once
    stopped: threading.Event  # set when the owning PipelineRun stops (cancel, timeout)
    report: Callable[[dict], None]  # publish the Run's extraFields while it runs


@dataclass
class RunOutcome:
    """How the Run ended, as its controller would set its status."""

    reason: str  # "Succeeded" (condition True), or the controller's reason for ending it
    message: str
    results: dict[str, str] = field(default_factory=dict)
    extra_fields: dict = field(default_factory=dict)
    cancelled: bool = False  # it ended because `stopped` was set


class Plugin(Protocol):
    """What a custom-task plug-in provides."""

    def check(self, task: str, custom: CustomTask) -> None:
        """Raise RunError for a spec its controller could never run (before anything starts)."""

    def run(self, context: RunContext) -> RunOutcome:
        """Run it to its end (in a worker thread); honour `context.stopped`."""


def custom_task(raw: dict) -> CustomTask | None:
    """The custom task a pipeline task names (by taskRef or embedded taskSpec), else None."""
    ref = raw.get("taskRef") or {}
    if ref.get("apiVersion") or ref.get("kind") not in (None, "Task", "ClusterTask"):
        return CustomTask(
            str(ref.get("apiVersion", "")), str(ref.get("kind", "")), {}, str(ref.get("name", ""))
        )
    spec = raw.get("taskSpec")
    if isinstance(spec, dict) and (spec.get("apiVersion") or spec.get("kind")):
        return CustomTask(
            str(spec.get("apiVersion", "")), str(spec.get("kind", "")), spec.get("spec") or {}, ""
        )
    return None


def plugin_for(task: str, custom: CustomTask) -> Plugin:
    """The plug-in of a custom task's kind; RunError naming the kind when there is none."""
    target = PLUGINS.get((custom.api_version, custom.kind))
    if target is None:
        raise RunError(
            "PipelineValidationFailed",
            f'task "{task}" is a custom task ({custom.api_version} {custom.kind}), '
            "which the local executor does not run",
        )
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute or "PLUGIN")
