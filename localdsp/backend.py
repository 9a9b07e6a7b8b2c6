"""State and rules of the DSP v1 API server (kfp-tekton 1.5.x in single-user mode).

The models are plain frozen dataclasses. `store.Store` keeps them in SQLite, one JSON document per
row, with the real server's unique indexes (`_TABLES`) as SQLite constraints, so "already exists"
comes from the database as it does on MariaDB. `Backend` holds the rules (validation, default
versions, which manifest a run uses, terminate/retry) and raises `errors.ApiError`s with the
server's wording; it knows nothing of HTTP. Run execution is delegated to an optional `RunExecutor`.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, TypeVar

import yaml

from localdsp.errors import ApiError, Internal, InvalidInput, NotFound
from localdsp.filters import Fields, paginate
from localdsp.models import (
    DEFAULT_EXPERIMENT,
    DEFAULT_EXPERIMENT_DESCRIPTION,
    DEFAULT_SERVICE_ACCOUNT,
    ListRequest,
    Page,
    Trigger,
    tables,
)

# Upload files are read in `pipeline_files`; these stay importable from here, as before.
from localdsp.pipeline_files import MAX_FILE_SIZE as MAX_FILE_SIZE
from localdsp.pipeline_files import read_pipeline_file as read_pipeline_file
from localdsp.pipeline_files import upload_name as upload_name
from localdsp.rules import StoreRules, newest
from localdsp.store import Store, StoreClosed
from localdsp.validation import (
    VALIDATE_JOB,
    check_experiment_columns,
    check_job_columns,
    check_run_columns,
    check_trigger,
    swf_name,
)

MAX_PARAMETER_BYTES = 10_000
SDK_SERVICE_ACCOUNT = "pipeline-runner"
TERMINATE_STATUS = "Cancelled"
AVAILABLE = "STORAGESTATE_AVAILABLE"
ARCHIVED = "STORAGESTATE_ARCHIVED"
TERMINATING = "Terminating"
TERMINABLE = frozenset({"Running", "Pending", "", "PipelineRunStopping"})
IN_PROGRESS = frozenset(
    {"", "Running", "Started", "Pending", "PipelineRunPending", "PipelineRunStopping", TERMINATING}
)
SUCCEEDED = frozenset({"Succeeded", "Completed"})
READY, CREATING = "READY", "CREATING"  # an upload's row, before and after its file is stored

# libyaml's safe loader when PyYAML has it: uploads are parsed on every request.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# --------------------------------------------------------------------------- models


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


M = TypeVar("M")
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


# Reference types whose objects the server names in the references it returns.
_NAMED_REFERENCES: dict[str, tuple[type, str]] = {
    "EXPERIMENT": (Experiment, "Experiment"),
    "PIPELINE_VERSION": (PipelineVersion, "Version"),
}


# --------------------------------------------------------------------------- storage

_TABLES = tables(
    pipeline=Pipeline,
    version=PipelineVersion,
    experiment=Experiment,
    run=Run,
    schedule=(Job, "jobs"),
)


# --------------------------------------------------------------------------- upload rules


def parse_pipelinerun(content: bytes | str) -> dict:
    """The uploaded template as a Tekton PipelineRun, the only v1 format the server accepts."""
    try:
        document = yaml.load(content, Loader=_YAML_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError:
        document = None
    if (
        not isinstance(document, dict)
        or not str(document.get("apiVersion", "")).startswith("tekton.dev/")
        or document.get("kind") != "PipelineRun"
    ):
        raise InvalidInput(
            "unknown template format",
            internal="Invalid input error: unknown template format: pipeline spec is invalid",
        )
    return document


def template_parameters(pipelinerun: dict) -> tuple[Parameter, ...]:
    """The pipeline's parameters: `spec.params`, non-string values as JSON."""
    parameters = []
    for param in (pipelinerun.get("spec") or {}).get("params") or []:
        value = param.get("value", "")
        text = value if isinstance(value, str) else json.dumps(value)
        parameters.append(Parameter(str(param.get("name", "")), text))
    _check_parameter_size(parameters)
    return tuple(parameters)


def _check_parameter_size(parameters: list[Parameter] | tuple[Parameter, ...]) -> None:
    encoded = json.dumps([{"name": p.name, "value": p.value} for p in parameters])
    if len(encoded) > MAX_PARAMETER_BYTES:
        raise InvalidInput(
            f"The input parameter length exceed maximum size of {MAX_PARAMETER_BYTES}."
        )


# --------------------------------------------------------------------------- the backend


class Backend(StoreRules):
    """The server's resource manager: every rule, over a `Store` in `data_dir`."""

    list_context = "Failed to create list options"

    def __init__(
        self,
        data_dir: Path,
        executor: RunExecutor | None = None,
        clock: Callable[[], float] = time.time,
        auto_update_default: bool = True,
    ):
        """`auto_update_default` is the server's AUTO_UPDATE_PIPELINE_DEFAULT_VERSION (DSPA
        `autoUpdatePipelineDefaultVersion`, true by default): whether a new version becomes
        the pipeline's default."""
        data_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(Store(data_dir / "localdsp.sqlite", _TABLES), clock)
        self.executor = executor
        self.auto_update_default = auto_update_default
        self._default_experiment()

    def _visible(self, found: object) -> bool:
        """An upload still CREATING is not found (see localdsp.uploads)."""
        return not isinstance(found, Pipeline | PipelineVersion) or found.status == READY

    # ---- pipelines and versions

    def create_pipeline(
        self, name: str, description: str, content: bytes, status: str = READY
    ) -> Pipeline:
        """Upload: the pipeline and its first version, same id and name, that version default.
        The upload handler inserts them CREATING and calls `stored` once the file is stored."""
        try:
            template = parse_pipelinerun(content)
            parameters = template_parameters(template)
        except ApiError as err:
            raise err.wrap("Create pipeline failed") from err
        pipeline_id, now = str(uuid.uuid4()), self._now()
        pipeline = Pipeline(pipeline_id, name, description, now, parameters, pipeline_id, status)
        version = PipelineVersion(pipeline_id, pipeline_id, name, "", now, parameters, status)
        with self.store.transaction():
            pipeline = self._insert_unique(
                pipeline,
                f"Failed to create a new pipeline. The name {name} already exist. "
                "Please specify a new name.",
                "Create pipeline failed",
            )
            self.store.insert(version, pipeline_id=pipeline_id, template=json.dumps(template))
        return pipeline

    def pipeline_namespace(self, pipeline_id: str) -> str:
        """The pipeline's namespace: always "" in single-user mode, once the pipeline exists."""
        self._found(Pipeline, "Pipeline", pipeline_id, "Failed to get namespace from Pipeline ID")
        return ""

    def create_version(
        self, pipeline_id: str, name: str, description: str, content: bytes, status: str = READY
    ) -> PipelineVersion:
        """Upload a version; it becomes the default unless auto-update is off (at insertion,
        as the server does, even while the version is still CREATING)."""
        try:
            template = parse_pipelinerun(content)
            parameters = template_parameters(template)
        except ApiError as err:
            raise err.wrap("Create pipeline version failed") from err
        version = PipelineVersion(
            str(uuid.uuid4()), pipeline_id, name, description, self._now(), parameters, status
        )
        with self.store.transaction():
            pipeline = self.get_pipeline(pipeline_id)
            version = self._insert_unique(
                version,
                f"Failed to create a new pipeline version. The name {name} already exist. "
                "Please specify a new name.",
                "Create pipeline version failed",
                pipeline_id=pipeline_id,
                template=json.dumps(template),
            )
            if self.auto_update_default:
                self.store.save(replace(pipeline, default_version_id=version.id))
        return version

    def stored(self, version_id: str) -> None:
        """The upload's file is stored: its version (and a new pipeline) become READY."""
        with self.store.transaction():
            for kind, object_id in ((Pipeline, version_id), (PipelineVersion, version_id)):
                found = self.store.get(kind, object_id)
                if found is not None:
                    self.store.save(replace(found, status=READY))

    def get_pipeline(self, pipeline_id: str) -> Pipeline:
        return self._found(Pipeline, "Pipeline", pipeline_id)

    def default_version(self, pipeline: Pipeline) -> PipelineVersion | None:
        if not pipeline.default_version_id:
            return None
        return self.store.get(PipelineVersion, pipeline.default_version_id)

    def list_pipelines(self, request: ListRequest) -> Page:
        ready = [p for p in self.store.all(Pipeline) if p.status == READY]
        return self._page(ready, request, "Pipeline", PIPELINE_FIELDS)

    def delete_pipeline(self, pipeline_id: str) -> None:
        with self.store.transaction():
            self._found(Pipeline, "Pipeline", pipeline_id, "Delete pipeline failed")
            for version in self._versions_of(pipeline_id):
                self.store.delete(PipelineVersion, version.id)
            self.store.delete(Pipeline, pipeline_id)

    def set_default_version(self, pipeline_id: str, version_id: str) -> None:
        """Make `version_id` the default; localdsp also checks that it belongs to the pipeline."""
        with self.store.transaction():
            pipeline = self.get_pipeline(pipeline_id)
            version = self.get_version(version_id)
            if version.pipeline_id != pipeline_id:
                raise InvalidInput(
                    f"Pipeline version {version_id} does not belong to pipeline {pipeline_id}."
                )
            self.store.save(replace(pipeline, default_version_id=version_id))

    def pipeline_template(self, pipeline_id: str) -> str:
        pipeline = self._found(Pipeline, "Pipeline", pipeline_id, "Get pipeline template failed")
        if not pipeline.default_version_id:
            raise Internal("Get pipeline template failed since no default version is defined")
        return self.store.template(PipelineVersion, pipeline.default_version_id)

    def get_version(self, version_id: str) -> PipelineVersion:
        return self._found(PipelineVersion, "Version", version_id)

    def version_template(self, version_id: str) -> str:
        self._found(PipelineVersion, "Version", version_id, "Get pipeline version template failed")
        return self.store.template(PipelineVersion, version_id)

    def list_versions(self, key_type: str, key_id: str, request: ListRequest) -> Page:
        """The READY versions of an existing (READY) pipeline; a missing one is a 404."""
        options = self._list_options(request, "PipelineVersion", VERSION_FIELDS)
        if not key_type and not key_id:
            raise InvalidInput("ResourceKey must be set in the input")
        try:
            self.pipeline_namespace(key_id)
        except ApiError as err:
            raise err.wrap("Failed to get namespace from pipelineId.") from err
        ready = [v for v in self._versions_of(key_id) if v.status == READY]
        return Page(*paginate(ready, options, VERSION_FIELDS))

    def delete_version(self, version_id: str) -> None:
        """Delete a version; if it was the default, the newest remaining one takes over."""
        with self.store.transaction():
            version = self._found(
                PipelineVersion, "Version", version_id, "Delete pipeline version failed"
            )
            self.store.delete(PipelineVersion, version_id)
            pipeline = self.store.get(Pipeline, version.pipeline_id)
            if pipeline is not None and pipeline.default_version_id == version_id:
                latest = newest(self._versions_of(pipeline.id))
                self.store.save(replace(pipeline, default_version_id=latest.id if latest else ""))

    def _versions_of(self, pipeline_id: str) -> list[PipelineVersion]:
        return [v for v in self.store.all(PipelineVersion) if v.pipeline_id == pipeline_id]

    # ---- experiments

    def create_experiment(
        self, name: str, description: str, references: tuple[Reference, ...] = ()
    ) -> Experiment:
        if references:
            raise InvalidInput(
                "In single-user mode, CreateExperimentRequest shouldn't contain resource "
                "references."
            )
        if not name:
            raise InvalidInput("Experiment name is empty. Please specify a valid experiment name.")
        check_experiment_columns(name, description)
        experiment = Experiment(str(uuid.uuid4()), name, description, self._now())
        return self._insert_unique(
            experiment,
            f"Failed to create a new experiment. The name {name} already exists. "
            "Please specify a new name.",
            "Failed to create a new experiment",
        )

    def get_experiment(self, experiment_id: str) -> Experiment:
        return self._found(Experiment, "Experiment", experiment_id)

    def list_experiments(self, request: ListRequest, key_type: str = "", key_id: str = "") -> Page:
        self._refuse_namespace(key_type, key_id, "ListExperiment")
        return self._page(self.store.all(Experiment), request, "Experiment", EXPERIMENT_FIELDS)

    def delete_experiment(self, experiment_id: str) -> None:
        with self.store.transaction():
            self._found(Experiment, "Experiment", experiment_id, "Delete experiment failed")
            self.store.delete(Experiment, experiment_id)

    def archive_experiment(self, experiment_id: str) -> None:
        """Archive the experiment and its runs, and disable its jobs."""
        with self.store.transaction():
            experiment = self.get_experiment(experiment_id)
            self.store.save(replace(experiment, storage_state=ARCHIVED))
            self._archive_contents(
                [r for r in self.store.all(Run) if experiment_id in r.references_of("EXPERIMENT")],
                [j for j in self.store.all(Job) if experiment_id in j.references_of("EXPERIMENT")],
                ARCHIVED,
            )

    def unarchive_experiment(self, experiment_id: str) -> None:
        with self.store.transaction():
            experiment = self.get_experiment(experiment_id)
            self.store.save(replace(experiment, storage_state=AVAILABLE))

    def _default_experiment(self) -> Experiment:
        """The experiment of runs created without one; the server creates it at start-up."""
        with self.store.transaction():
            default = self._by_name(Experiment, DEFAULT_EXPERIMENT)
            return default or self.create_experiment(
                DEFAULT_EXPERIMENT, DEFAULT_EXPERIMENT_DESCRIPTION
            )

    # ---- runs

    def create_run(
        self,
        *,
        name: str,
        description: str = "",
        pipeline_spec: PipelineSpec,
        references: tuple[Reference, ...] = (),
        service_account: str = "",
    ) -> Run:
        """Create a run from a pipeline version (or the pipeline's default) or a manifest."""
        if not name:
            raise InvalidInput("The run name is empty. Please specify a valid name.")
        with self.store.transaction():
            try:
                spec, references, template = self._resolve_pipeline(pipeline_spec, references)
            except Internal as err:
                raise err.wrap("Failed to create a new run.") from err
            run_id = str(uuid.uuid4())
            service_account = _service_account(template, service_account)
            pipelinerun = runtime_pipelinerun(template, run_id, name, spec.parameters)
            pipelinerun["spec"]["serviceAccountName"] = service_account
            check_run_columns(pipelinerun["metadata"]["name"], name, description)
            now = self._now()
            run = self.store.insert(
                Run(
                    id=run_id,
                    name=name,
                    description=description,
                    created_at=now,
                    scheduled_at=now,
                    pipeline_spec=spec,
                    references=references,
                    service_account=service_account,
                    manifest=json.dumps(pipelinerun),
                )
            )
        self._start(run.id, pipelinerun)
        return run

    def get_run(self, run_id: str) -> Run:
        return self._found(Run, "Run", run_id)

    def list_runs(self, request: ListRequest, key_type: str = "", key_id: str = "") -> Page:
        self._refuse_namespace(key_type, key_id, "ListRuns")
        runs = self.store.all(Run)
        if key_type and key_type != "NAMESPACE":
            runs = [r for r in runs if key_id in r.references_of(key_type)]
        return self._page(runs, request, "Run", RUN_FIELDS)

    def delete_run(self, run_id: str) -> None:
        run = self._found(Run, "Run", run_id, "Delete run failed")
        self.store.delete(Run, run_id)
        if run.status in IN_PROGRESS and self.executor is not None:
            self.executor.terminate(run_id)

    def terminate_run(self, run_id: str) -> None:
        """Mark a running run Terminating and patch its PipelineRun's spec.status to cancel it."""
        with self.store.transaction():
            run = self._found(Run, "Run", run_id, "Terminate run failed")
            if run.status not in TERMINABLE:
                raise InvalidInput(f"Failed to terminate run {run_id}. Row not found.").wrap(
                    "Terminate run failed"
                )
            pipelinerun = json.loads(run.manifest)
            pipelinerun.setdefault("spec", {})["status"] = TERMINATE_STATUS
            self.store.save(replace(run, status=TERMINATING, manifest=json.dumps(pipelinerun)))
        if self.executor is not None:
            self.executor.terminate(run_id)

    def retry_run(self, run_id: str) -> None:
        """Start a failed run again under the same id, as the server re-creates its PipelineRun."""
        with self.store.transaction():
            run = self._found(Run, "Run", run_id, "Retry run failed")
            if run.status in IN_PROGRESS or run.status in SUCCEEDED:
                raise InvalidInput("Workflow must be Failed/Error to retry").wrap(
                    "Retry run failed."
                )
            pipelinerun = json.loads(run.manifest)
            pipelinerun.pop("status", None)
            pipelinerun.get("spec", {}).pop("status", None)
            self.store.save(
                replace(run, status="", finished_at=0, error="", manifest=json.dumps(pipelinerun))
            )
        self._start(run_id, pipelinerun)

    def archive_run(self, run_id: str, archived: bool = True) -> None:
        with self.store.transaction():
            run = self.get_run(run_id)
            self.store.save(replace(run, storage_state=ARCHIVED if archived else AVAILABLE))

    def record_run_status(self, run_id: str, status: str, pipelinerun: dict) -> None:
        """What the persistence agent does: copy the PipelineRun's reason and body into the run.

        Reports on deleted runs, or arriving after the server stopped, are dropped, and so are
        progress reports on a Terminating run (it keeps that status until it ends).
        """
        try:
            with self.store.transaction():
                run = self.store.get(Run, run_id)
                if run is None:
                    return
                final = status not in IN_PROGRESS
                if run.status == TERMINATING and not final:
                    return  # a progress report overtaken by a terminate: it stays Terminating
                finished_at = (run.finished_at or self._now()) if final else 0
                manifest = json.dumps(pipelinerun)
                self.store.save(
                    replace(run, status=status, finished_at=finished_at, manifest=manifest)
                )
        except StoreClosed:
            return

    def read_run_log(self, run_id: str, node_id: str) -> str:
        """A step's log, if the executor keeps logs (the real server reads the pod's log)."""
        self.get_run(run_id)
        read_log = getattr(self.executor, "read_log", None)
        text = read_log(run_id, node_id) if read_log is not None else None
        if text is None:
            raise Internal(f"Failed to read the log of node {node_id} of run {run_id}.")
        return text

    def _start(self, run_id: str, pipelinerun: dict) -> None:
        if self.executor is None:
            return

        def on_status(status: str, live: dict) -> None:
            self.record_run_status(run_id, status, live)

        self.executor.start(run_id, copy.deepcopy(pipelinerun), on_status)

    # ---- jobs

    def create_job(
        self,
        *,
        name: str,
        description: str = "",
        pipeline_spec: PipelineSpec,
        references: tuple[Reference, ...] = (),
        service_account: str = "",
        max_concurrency: int = 0,
        trigger: Trigger = Trigger(),
        enabled: bool = False,
        no_catchup: bool = False,
    ) -> Job:
        """Create a recurring run; its manifest is fixed now (later versions do not change it)."""
        with self.store.transaction():
            spec, references, template = self._resolve_pipeline(pipeline_spec, references)
            try:
                _check_job_settings(max_concurrency, trigger)
            except ApiError as err:
                raise err.wrap(VALIDATE_JOB) from err
            job_id = str(uuid.uuid4())
            check_job_columns(swf_name(name, job_id), name, description, trigger.cron)
            now = self._now()
            return self.store.insert(
                Job(
                    id=job_id,
                    name=name,
                    description=description,
                    created_at=now,
                    updated_at=now,
                    pipeline_spec=spec,
                    references=references,
                    service_account=_service_account(template, service_account),
                    max_concurrency=max_concurrency,
                    trigger=trigger,
                    enabled=enabled,
                    no_catchup=no_catchup,
                )
            )

    def get_job(self, job_id: str) -> Job:
        return self._found(Job, "Job", job_id)

    def list_jobs(self, request: ListRequest, key_type: str = "", key_id: str = "") -> Page:
        self._refuse_namespace(key_type, key_id, "ListJobs")
        jobs = self.store.all(Job)
        if key_type and key_type != "NAMESPACE":
            jobs = [j for j in jobs if key_id in j.references_of(key_type)]
        return self._page(jobs, request, "Job", JOB_FIELDS)

    def enable_job(self, job_id: str, enabled: bool) -> None:
        with self.store.transaction():
            job = self._found(Job, "Job", job_id, "Enable/Disable job failed")
            self.store.save(replace(job, enabled=enabled, updated_at=self._now()))

    def delete_job(self, job_id: str) -> None:
        with self.store.transaction():
            self._found(Job, "Job", job_id, "Delete job failed")
            self.store.delete(Job, job_id)

    # ---- shared rules

    def _resolve_pipeline(
        self, spec: PipelineSpec, references: tuple[Reference, ...]
    ) -> tuple[PipelineSpec, tuple[Reference, ...], dict]:
        """Which PipelineRun a run or job uses, with its references completed.

        A version reference wins; a pipeline id alone means its current default version, which
        is added as a reference; otherwise the inline manifest. The owning experiment defaults
        to "Default". Reference names are filled in, as the server does.
        """
        _check_pipeline_source(spec, references)
        version_id = _version_reference(references)
        if spec.pipeline_id:
            pipeline = self._found(Pipeline, "Pipeline", spec.pipeline_id, "Get pipelineId failed.")
            spec = replace(spec, pipeline_name=pipeline.name)
            if not version_id:
                version_id = self._default_version_id(pipeline)
                references = (*references, Reference("PIPELINE_VERSION", version_id, "CREATOR"))
        if version_id:
            version = self._found(
                PipelineVersion, "Version", version_id, "Get pipelineVersionId failed."
            )
            if spec.pipeline_id and version.pipeline_id != spec.pipeline_id:
                raise InvalidInput("pipeline ID should be parent of pipeline version.")
            template = json.loads(self.store.template(PipelineVersion, version_id))
            spec = replace(spec, workflow_manifest=json.dumps(template))
        else:
            template = _manifest_pipelinerun(spec.workflow_manifest)
        _check_parameter_size(spec.parameters)
        if not any(r.type == "EXPERIMENT" and r.relationship == "OWNER" for r in references):
            default = self._default_experiment()
            references = (*references, Reference("EXPERIMENT", default.id, "OWNER"))
        return spec, tuple(self._named(r) for r in references), template

    def _default_version_id(self, pipeline: Pipeline) -> str:
        if not pipeline.default_version_id:
            raise InvalidInput(f"Pipeline {pipeline.id} has no default version.").wrap(
                "Failed to find default version to create run with pipeline id."
            )
        return pipeline.default_version_id

    def _named(self, reference: Reference) -> Reference:
        """The reference with its object's name. The server reads the experiment only after
        validating the request, to find its namespace, and answers a missing one with a 500
        (`getNamespaceFromExperiment`): a run or job in a deleted experiment fails so."""
        if reference.type not in _NAMED_REFERENCES:
            return reference
        if reference.type == "EXPERIMENT" and self.store.get(Experiment, reference.id) is None:
            raise Internal.server_error(
                "Failed to get experiment.", NotFound.of("Experiment", reference.id)
            )
        kind, label = _NAMED_REFERENCES[reference.type]
        return replace(reference, name=self._found(kind, label, reference.id).name)

    @staticmethod
    def _refuse_namespace(key_type: str, key_id: str, call: str) -> None:
        """Single-user mode lists everything in namespace "": naming another one is an error.

        (kfp.Client.list_experiments always sends NAMESPACE with an empty id.)
        """
        if key_type == "NAMESPACE" and key_id:
            raise InvalidInput(f"In single-user mode, {call} cannot filter by namespace.")

    # ---- admin

    def reset(self) -> None:
        """Forget everything (runs in progress are terminated first), as a fresh install."""
        in_progress = [r.id for r in self.store.all(Run) if r.status in IN_PROGRESS]
        self.store.clear()
        if self.executor is not None:
            for run_id in in_progress:
                self.executor.terminate(run_id)
        self._default_experiment()

    def dump(self) -> dict[str, list]:
        """Every object by kind, for the state endpoint."""
        return {
            "pipelines": self.store.all(Pipeline),
            "versions": self.store.all(PipelineVersion),
            "experiments": self.store.all(Experiment),
            "runs": self.store.all(Run),
            "jobs": self.store.all(Job),
        }


def _check_pipeline_source(spec: PipelineSpec, references: tuple[Reference, ...]) -> None:
    """The server's ValidatePipelineSpecAndResourceReferences, messages included."""
    version_id = _version_reference(references)
    if spec.pipeline_manifest:
        raise InvalidInput("localdsp does not run KFP v2 pipeline_manifest; use a Tekton YAML.")
    if spec.workflow_manifest:
        if spec.pipeline_id or version_id:
            raise InvalidInput(
                "Please don't specify a pipeline version or pipeline ID when you specify a "
                "workflow manifest or pipeline manifest."
            )
    elif not spec.pipeline_id and not version_id:
        raise InvalidInput(
            "Please specify a pipeline by providing a (workflow manifest or pipeline manifest) "
            "or (pipeline id or/and pipeline version)."
        )


def _version_reference(references: tuple[Reference, ...]) -> str:
    return next(
        (
            r.id
            for r in reversed(references)
            if r.type == "PIPELINE_VERSION" and r.relationship == "CREATOR"
        ),
        "",
    )


def _manifest_pipelinerun(manifest: str) -> dict:
    """An inline workflow_manifest: JSON, and (for Tekton to accept it) a PipelineRun."""
    try:
        json.loads(manifest)
    except ValueError as err:
        raise InvalidInput(f"Invalid argo workflow format. Workflow: {manifest}") from err
    try:
        return parse_pipelinerun(manifest)
    except ApiError as err:
        raise Internal(
            "Failed to create a workflow: the manifest is not a Tekton PipelineRun"
        ) from err


def _check_job_settings(max_concurrency: int, trigger: Trigger) -> None:
    if not 1 <= max_concurrency <= 10:
        raise InvalidInput(
            "The max concurrency of the job is out of range. Support 1-10. "
            f"Received {max_concurrency}."
        )
    check_trigger(trigger, ".")


def _service_account(template: dict, requested: str) -> str:
    """The request's account, else the manifest's, unless that is the SDK default."""
    if requested:
        return requested
    own = (template.get("spec") or {}).get("serviceAccountName", "")
    return own if own and own != SDK_SERVICE_ACCOUNT else DEFAULT_SERVICE_ACCOUNT


def runtime_pipelinerun(
    template: dict, run_id: str, run_name: str, parameters: tuple[Parameter, ...]
) -> dict:
    """The PipelineRun the server creates for a run: named `<name>-<run id[:5]>`, arguments set.

    Arguments override `spec.params` by name; unknown names are ignored (the server only logs).
    """
    pipelinerun = copy.deepcopy(template)
    metadata = pipelinerun.setdefault("metadata", {})
    metadata["name"] = f"{metadata.get('name', 'pipeline')}-{run_id[:5]}"
    metadata.setdefault("labels", {})["pipeline/runid"] = run_id
    metadata.setdefault("annotations", {})["pipelines.kubeflow.org/run_name"] = run_name
    spec = pipelinerun.setdefault("spec", {})
    given = {p.name: p.value for p in parameters}
    spec["params"] = [
        {**param, "value": given[param["name"]]} if param.get("name") in given else param
        for param in spec.get("params") or []
    ]
    return pipelinerun
