"""Models of the DSP 2.x stand-in (KFP backend 2.5.0) and the fields its lists sort and filter on.

Frozen dataclasses, kept by `store.Store` in `TABLES` with the real server's unique indexes
(pipeline names; version names per pipeline; experiment names) as SQLite constraints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from localdsp.filters import Fields
from localdsp.models import Trigger, tables

AVAILABLE = "AVAILABLE"
ARCHIVED = "ARCHIVED"
PENDING = "PENDING"
CANCELING = "CANCELING"
FINISHED = frozenset({"SUCCEEDED", "SKIPPED", "FAILED", "CANCELED"})


@dataclass(frozen=True)
class PipelineV2:
    id: str
    name: str
    description: str
    created_at: int
    seq: int = 0


@dataclass(frozen=True)
class VersionV2:
    id: str
    pipeline_id: str
    name: str
    description: str
    created_at: int
    seq: int = 0


@dataclass(frozen=True)
class ExperimentV2:
    id: str
    name: str
    description: str
    created_at: int
    storage_state: str = AVAILABLE
    last_run_created_at: int = 0
    seq: int = 0


@dataclass(frozen=True)
class Source:
    """What a run or recurring run executes: a stored version, or (ids empty) `spec` inline.

    `spec` is the IR as JSON text, copied at creation: a later version never changes it.
    """

    pipeline_id: str = ""
    pipeline_version_id: str = ""
    spec: str = ""


@dataclass(frozen=True)
class TaskDetailV2:
    """One executed task of a run (a component, or a DAG: condition, loop, iteration, nested
    pipeline, exit handler), as `run_details.task_details` shows it.

    `output_parameters` is localdsp's own field (the 2.5 API has none; see docs/localdsp.md).
    """

    task_id: str
    name: str
    state: str
    start_time: int
    end_time: int = 0
    output_parameters: dict[str, Any] = field(default_factory=dict)
    error: str = ""


@dataclass(frozen=True)
class RunV2:
    id: str
    name: str
    description: str
    experiment_id: str
    source: Source
    parameters: str  # runtime_config.parameters as JSON text ("{}": none)
    pipeline_root: str
    service_account: str
    created_at: int
    scheduled_at: int
    state: str = PENDING
    state_history: tuple[tuple[int, str], ...] = ()
    finished_at: int = 0
    storage_state: str = AVAILABLE
    recurring_run_id: str = ""
    tasks: tuple[TaskDetailV2, ...] = ()
    error: str = ""  # why a FAILED run failed ("" otherwise)
    seq: int = 0


@dataclass(frozen=True)
class RecurringRunV2:
    id: str
    name: str
    description: str
    experiment_id: str
    source: Source
    parameters: str
    pipeline_root: str
    service_account: str
    max_concurrency: int
    trigger: Trigger
    enabled: bool
    no_catchup: bool
    created_at: int
    updated_at: int
    seq: int = 0


class RunReport(NamedTuple):
    """What a runner knows of a run: its state, the tasks so far and (FAILED) why."""

    state: str
    tasks: tuple[TaskDetailV2, ...] = ()
    error: str = ""


class RunnerV2(Protocol):
    """Executes v2 runs (`run_kfp_local.KfpLocalRunner`). `start` must not block; it reports
    each change through `on_report`; `terminate` asks it to stop the run; `close` stops all."""

    def start(self, run: RunV2, spec: dict, on_report: Callable[[RunReport], None]) -> None: ...

    def terminate(self, run_id: str) -> None: ...

    def close(self) -> None: ...


TABLES = tables(
    pipeline=PipelineV2,
    version=VersionV2,
    experiment=ExperimentV2,
    run=RunV2,
    schedule=(RecurringRunV2, "recurring_runs"),
)
# The API fields each v2beta1 list sorts and filters on (the models' APIToModelFieldMap).
PIPELINE_FIELDS: Fields = {
    "pipeline_id": lambda p: p.id,
    "display_name": lambda p: p.name,
    "created_at": lambda p: p.created_at,
    "description": lambda p: p.description,
    "namespace": lambda p: "",
}
VERSION_FIELDS: Fields = {
    "pipeline_version_id": lambda v: v.id,
    "display_name": lambda v: v.name,
    "created_at": lambda v: v.created_at,
    "description": lambda v: v.description,
    "status": lambda v: "READY",
}
EXPERIMENT_FIELDS: Fields = {
    "experiment_id": lambda e: e.id,
    "display_name": lambda e: e.name,
    "created_at": lambda e: e.created_at,
    "last_run_created_at": lambda e: e.last_run_created_at,
    "description": lambda e: e.description,
    "namespace": lambda e: "",
    "storage_state": lambda e: e.storage_state,
}
RUN_FIELDS: Fields = {
    "run_id": lambda r: r.id,
    "display_name": lambda r: r.name,
    "created_at": lambda r: r.created_at,
    "finished_at": lambda r: r.finished_at,
    "description": lambda r: r.description,
    "scheduled_at": lambda r: r.scheduled_at,
    "storage_state": lambda r: r.storage_state,
    "namespace": lambda r: "",
    "experiment_id": lambda r: r.experiment_id,
    "state": lambda r: r.state,
    "recurring_run_id": lambda r: r.recurring_run_id,
}
RECURRING_RUN_FIELDS: Fields = {
    "recurring_run_id": lambda j: j.id,
    "display_name": lambda j: j.name,
    "created_at": lambda j: j.created_at,
    "updated_at": lambda j: j.updated_at,
    "description": lambda j: j.description,
}


class RunRequest(NamedTuple):
    """A run or recurring run as the client asked for it (before the rules fill it in)."""

    name: str
    description: str
    experiment_id: str
    source: Source
    parameters: dict[str, Any]
    pipeline_root: str
    service_account: str
