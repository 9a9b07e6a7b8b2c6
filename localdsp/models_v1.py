"""Models of the DSP v1 stand-in (kfp-tekton 1.5.x), the fields its lists sort and filter on,
and the tables `store.Store` keeps them in.

Plain frozen dataclasses, one JSON document per row, with the real server's unique indexes as
SQLite constraints (`models.tables`), so "already exists" comes from the database as it does on
MariaDB. A run's `status` is its PipelineRun's condition reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from localdsp.filters import Fields
from localdsp.models import Trigger, tables

AVAILABLE = "STORAGESTATE_AVAILABLE"
ARCHIVED = "STORAGESTATE_ARCHIVED"
TERMINATING = "Terminating"
TERMINABLE = frozenset({"Running", "Pending", "", "PipelineRunStopping"})
IN_PROGRESS = frozenset(
    {"", "Running", "Started", "Pending", "PipelineRunPending", "PipelineRunStopping", TERMINATING}
)
SUCCEEDED = frozenset({"Succeeded", "Completed"})
READY, CREATING = "READY", "CREATING"  # an upload's row, before and after its file is stored


@dataclass(frozen=True)
class Parameter:
    name: str
    value: str = ""


@dataclass(frozen=True)
class Reference:
    """A resource reference: which object (type, id) and how it relates (OWNER, CREATOR)."""

    type: str
    id: str
    relationship: str = ""
    name: str = ""


@dataclass(frozen=True)
class PipelineSpec:
    """What a run or job executes: a pipeline (version) or an inline manifest, and arguments."""

    pipeline_id: str = ""
    pipeline_name: str = ""
    workflow_manifest: str = ""
    pipeline_manifest: str = ""
    parameters: tuple[Parameter, ...] = ()


@dataclass(frozen=True)
class Pipeline:
    id: str
    name: str
    description: str
    created_at: int
    parameters: tuple[Parameter, ...] = ()
    default_version_id: str = ""
    status: str = READY
    seq: int = 0


@dataclass(frozen=True)
class PipelineVersion:
    id: str
    pipeline_id: str
    name: str
    description: str
    created_at: int
    parameters: tuple[Parameter, ...] = ()
    status: str = READY
    seq: int = 0


@dataclass(frozen=True)
class Experiment:
    id: str
    name: str
    description: str
    created_at: int
    storage_state: str = AVAILABLE
    seq: int = 0


@dataclass(frozen=True)
class Run:
    """A run; `status` is the PipelineRun's condition reason, `manifest` the live PipelineRun."""

    id: str
    name: str
    description: str
    created_at: int
    pipeline_spec: PipelineSpec
    references: tuple[Reference, ...]
    service_account: str
    manifest: str
    scheduled_at: int = 0
    finished_at: int = 0
    status: str = ""
    error: str = ""
    storage_state: str = AVAILABLE
    seq: int = 0

    def references_of(self, kind: str) -> list[str]:
        return [r.id for r in self.references if r.type == kind]


@dataclass(frozen=True)
class Job:
    """A recurring run; it embeds its manifest when created (new versions do not change it)."""

    id: str
    name: str
    description: str
    created_at: int
    pipeline_spec: PipelineSpec
    references: tuple[Reference, ...]
    service_account: str
    max_concurrency: int
    trigger: Trigger
    enabled: bool
    no_catchup: bool = False
    updated_at: int = 0
    seq: int = 0

    @property
    def status(self) -> str:
        """What the ScheduledWorkflow controller reports once it has seen the job."""
        return "Enabled" if self.enabled else "Disabled"

    def references_of(self, kind: str) -> list[str]:
        return [r.id for r in self.references if r.type == kind]


StatusCallback = Callable[[str, dict], None]


class RunExecutor(Protocol):
    """Runs PipelineRuns for localdsp, in place of Tekton and the persistence agent.

    `start` is called after a run is committed (and again on retry, with the same id); it must
    not block. It reports progress through `on_status(reason, pipelinerun_with_status)`, where
    `reason` is the PipelineRun's `status.conditions[0].reason`. `terminate` asks it to cancel.
    An executor may also offer `read_log(run_id, node_id) -> str | None` for the log endpoint.
    """

    def start(self, run_id: str, pipelinerun: dict, on_status: StatusCallback) -> None: ...

    def terminate(self, run_id: str) -> None: ...


# The API fields each list can sort and filter on, and how to read them.
PIPELINE_FIELDS: Fields = {
    "id": lambda p: p.id,
    "name": lambda p: p.name,
    "created_at": lambda p: p.created_at,
    "description": lambda p: p.description,
    "namespace": lambda p: "",
}
VERSION_FIELDS: Fields = {
    "id": lambda v: v.id,
    "name": lambda v: v.name,
    "created_at": lambda v: v.created_at,
    "status": lambda v: "READY",
}
EXPERIMENT_FIELDS: Fields = {
    "id": lambda e: e.id,
    "name": lambda e: e.name,
    "created_at": lambda e: e.created_at,
    "description": lambda e: e.description,
    "namespace": lambda e: "",
    "storage_state": lambda e: e.storage_state,
}
RUN_FIELDS: Fields = {
    "id": lambda r: r.id,
    "name": lambda r: r.name,
    "created_at": lambda r: r.created_at,
    "description": lambda r: r.description,
    "scheduled_at": lambda r: r.scheduled_at,
    "storage_state": lambda r: r.storage_state,
    "status": lambda r: r.status,
}
JOB_FIELDS: Fields = {
    "id": lambda j: j.id,
    "name": lambda j: j.name,
    "created_at": lambda j: j.created_at,
    "package_id": lambda j: j.pipeline_spec.pipeline_id,
}


# --------------------------------------------------------------------------- storage

TABLES = tables(
    pipeline=Pipeline,
    version=PipelineVersion,
    experiment=Experiment,
    run=Run,
    schedule=(Job, "jobs"),
)
