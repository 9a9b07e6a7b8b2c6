"""The DSP v1 server's rules for experiments, runs and jobs (kfp-tekton 1.5.x).

A run or job names a pipeline version (or a pipeline, meaning its default version) or brings a
manifest; it goes into "Default" unless it names an experiment. A run's PipelineRun is handed to
the optional `RunExecutor`, whose reports `record_run_status` stores as the persistence agent
does. Terminate and retry follow the server's states and messages.
"""

from __future__ import annotations

import copy
import json
import uuid
from dataclasses import replace

from localdsp.backend_pipelines import PipelineRules
from localdsp.errors import ApiError, Internal, InvalidInput, NotFound
from localdsp.models import (
    DEFAULT_EXPERIMENT,
    DEFAULT_EXPERIMENT_DESCRIPTION,
    ListRequest,
    Page,
    Trigger,
)
from localdsp.models_v1 import (
    ARCHIVED,
    AVAILABLE,
    EXPERIMENT_FIELDS,
    IN_PROGRESS,
    JOB_FIELDS,
    RUN_FIELDS,
    SUCCEEDED,
    TERMINABLE,
    TERMINATING,
    Experiment,
    Job,
    Pipeline,
    PipelineSpec,
    PipelineVersion,
    Reference,
    Run,
    RunExecutor,
)
from localdsp.store import StoreClosed
from localdsp.templates_v1 import (
    check_parameter_size,
    manifest_pipelinerun,
    parse_pipelinerun,
    run_service_account,
    runtime_pipelinerun,
)
from localdsp.validation import (
    VALIDATE_JOB,
    check_experiment_columns,
    check_job_columns,
    check_run_columns,
    check_trigger,
    swf_name,
)

TERMINATE_STATUS = "Cancelled"

# Reference types whose objects the server names in the references it returns.
_NAMED_REFERENCES: dict[str, tuple[type, str]] = {
    "EXPERIMENT": (Experiment, "Experiment"),
    "PIPELINE_VERSION": (PipelineVersion, "Version"),
}


class RunRules(PipelineRules):
    """Experiments, runs and jobs, over the pipelines they run (`backend.Backend` builds on it)."""

    executor: RunExecutor | None

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
            service_account = run_service_account(template, service_account)
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
        runs = _referencing(self.store.all(Run), key_type, key_id)
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
                    service_account=run_service_account(template, service_account),
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
        jobs = _referencing(self.store.all(Job), key_type, key_id)
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
            template = parse_pipelinerun(self.store.template(PipelineVersion, version_id))
            spec = replace(spec, workflow_manifest=json.dumps(template))
        else:
            template = manifest_pipelinerun(spec.workflow_manifest)
        check_parameter_size(spec.parameters)
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


def _check_job_settings(max_concurrency: int, trigger: Trigger) -> None:
    if not 1 <= max_concurrency <= 10:
        raise InvalidInput(
            "The max concurrency of the job is out of range. Support 1-10. "
            f"Received {max_concurrency}."
        )
    check_trigger(trigger, ".")


def _referencing(items: list, key_type: str, key_id: str) -> list:
    """The runs or jobs referencing the object a List call names (all: none, or a namespace)."""
    if not key_type or key_type == "NAMESPACE":
        return items
    return [item for item in items if key_id in item.references_of(key_type)]
