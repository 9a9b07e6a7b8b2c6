"""State and rules of the DSP 2.x API server (KFP backend 2.5.0, single-user mode), v2beta1.

Models are frozen dataclasses kept by `store.Store` in their own SQLite file, with the real
server's unique indexes (pipeline names; version names per pipeline; experiment names) as
constraints. `BackendV2` holds the rules and raises `errors.ApiError`s with the 2.5 server's
wording (`resource_manager.go`, `*_server.go`); it knows nothing of HTTP.

Runs are stored in state PENDING, as the server stores them before Argo reports. Executing them
is the job of a `RunnerV2` given to the backend (`run_kfp_local.KfpLocalRunner`: kfp.local); its
reports are stored by `record`, as the persistence agent's are.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from localdsp.errors import ApiError, Internal, InvalidInput, NotFound
from localdsp.filters import V2
from localdsp.models import (
    DEFAULT_EXPERIMENT,
    DEFAULT_EXPERIMENT_DESCRIPTION,
    DEFAULT_SERVICE_ACCOUNT,
    ListRequest,
    Page,
    Trigger,
)
from localdsp.models_v2 import (
    ARCHIVED,
    AVAILABLE,
    CANCELING,
    EXPERIMENT_FIELDS,
    FINISHED,
    PENDING,
    PIPELINE_FIELDS,
    RECURRING_RUN_FIELDS,
    RUN_FIELDS,
    TABLES,
    VERSION_FIELDS,
    ExperimentV2,
    PipelineV2,
    RecurringRunV2,
    RunnerV2,
    RunReport,
    RunRequest,
    RunV2,
    Source,
    VersionV2,
)
from localdsp.rules import StoreRules, newest
from localdsp.store import Store
from localdsp.templates_v2 import PipelineTemplate, parse_template
from localdsp.validation import check_trigger


class BackendV2(StoreRules):
    """The 2.5 resource manager over its own store in `data_dir`."""

    end = ""  # 2.5's messages lose 1.5's final period
    dialect = V2

    def __init__(
        self,
        data_dir: Path,
        runner: RunnerV2 | None = None,
        clock: Callable[[], float] = time.time,
    ):
        data_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(Store(data_dir / "localdsp-v2.sqlite", TABLES), clock)
        self.runner = runner
        self.default_experiment_id = self._default_experiment()

    def _default_experiment(self) -> str:
        """The server creates "Default" at start-up; runs without an experiment go there."""
        with self.store.transaction():
            default = self._by_name(ExperimentV2, DEFAULT_EXPERIMENT)
            if default is None:
                default = self.store.insert(
                    ExperimentV2(
                        str(uuid.uuid4()),
                        DEFAULT_EXPERIMENT,
                        DEFAULT_EXPERIMENT_DESCRIPTION,
                        self._now(),
                    )
                )
            return default.id

    # ---- pipelines and versions

    def create_pipeline(
        self, name: str, description: str, content: bytes
    ) -> tuple[PipelineV2, VersionV2]:
        """Upload: a pipeline and its first version, named after the pipeline, in one commit."""
        context = "Failed to create a pipeline and a pipeline version"
        template = _template(content, f"{context} due to template creation error")
        name = name or template.name
        now = self._now()
        pipeline = PipelineV2(str(uuid.uuid4()), name, description, now)
        version = VersionV2(str(uuid.uuid4()), pipeline.id, name, description, now)
        with self.store.transaction():
            pipeline = self._insert_unique(
                pipeline,
                f"Failed to create a new pipeline. The name {name} already exists. "
                "Please specify a new name",
                context,
            )
            version = self.store.insert(version, pipeline_id=pipeline.id, template=template.text)
        return pipeline, version

    def create_empty_pipeline(self, name: str, description: str) -> PipelineV2:
        """CreatePipeline (v2beta1 POST /pipelines): a pipeline without any version."""
        context = "Failed to create a pipeline due to server error"
        if not name:
            raise InvalidInput("pipeline's name cannot be empty").wrap(context)
        return self._insert_unique(
            PipelineV2(str(uuid.uuid4()), name, description, self._now()),
            f"Failed to create a new pipeline. The name {name} already exist. "
            "Please specify a new name",
            f"{context}: Failed to create a pipeline in PipelineStore",
        )

    def newest_for_listing(self, pipeline: PipelineV2) -> VersionV2 | None:
        """The version the v1beta1 pipeline listing joins to a pipeline: the newest by
        created_at, which the server keeps in seconds and whose ties its ROW_NUMBER() breaks in
        no promised order. localdsp breaks them against the caller: a version named after the
        pipeline first, then the earliest stored."""
        versions = self._versions_of(pipeline.id)
        if not versions:
            return None
        top = max(v.created_at for v in versions)
        tied = [v for v in versions if v.created_at == top]
        return min(tied, key=lambda v: (v.name != pipeline.name, v.seq))

    def create_version(
        self, pipeline_id: str, name: str, description: str, content: bytes
    ) -> VersionV2:
        context = "Failed to create a pipeline version"
        self.get_pipeline(pipeline_id)
        template = _template(content, f"{context} due to template creation error")
        name = name or template.name
        version = VersionV2(str(uuid.uuid4()), pipeline_id, name, description, self._now())
        return self._insert_unique(
            version,
            f"Failed to create a new pipeline version. The name {name} already exist. "
            "Specify a new name",
            "Failed to create pipeline version in PipelineStore",
            pipeline_id=pipeline_id,
            template=template.text,
        )

    def get_pipeline(self, pipeline_id: str) -> PipelineV2:
        context = f"Failed to get a pipeline with id {pipeline_id}"
        return self._found(PipelineV2, "Pipeline", pipeline_id, context)

    def pipeline_by_name(self, name: str) -> PipelineV2:
        for pipeline in self.store.all(PipelineV2):
            if pipeline.name.casefold() == name.casefold():
                return pipeline
        raise NotFound(f"Namespace/Pipeline /{name} not found").wrap(
            f"Failed to get a pipeline named {name} in namespace "
        )

    def list_pipelines(self, request: ListRequest) -> Page:
        return self._page(self.store.all(PipelineV2), request, "Pipeline", PIPELINE_FIELDS)

    def delete_pipeline(self, pipeline_id: str) -> None:
        """Refused while versions exist (2.5 has no cascade)."""
        with self.store.transaction():
            self.get_pipeline(pipeline_id)
            latest = newest(self._versions_of(pipeline_id))
            if latest is not None:
                raise InvalidInput(
                    f"Failed to delete pipeline with id {pipeline_id} as it has existing "
                    f"pipeline versions (e.g. {latest.id})"
                )
            self.store.delete(PipelineV2, pipeline_id)

    def get_version(self, version_id: str, pipeline_id: str = "") -> VersionV2:
        context = f"Failed to get a pipeline version with id {version_id}"
        return self._found(VersionV2, "PipelineVersion", version_id, context)

    def version_spec(self, version_id: str) -> dict:
        """The stored IR of a version, as the server returns it in `pipeline_spec`."""
        return json.loads(self.store.template(VersionV2, version_id) or "{}")

    def list_versions(self, pipeline_id: str, request: ListRequest) -> Page:
        return self._page(
            self._versions_of(pipeline_id), request, "PipelineVersion", VERSION_FIELDS
        )

    def latest_version(self, pipeline_id: str) -> VersionV2:
        self.get_pipeline(pipeline_id)
        latest = newest(self._versions_of(pipeline_id))
        if latest is None:
            raise NotFound(f"PipelineVersion {pipeline_id} not found").wrap(
                "Failed to get the latest pipeline version for a pipeline"
            )
        return latest

    def _versions_of(self, pipeline_id: str) -> list[VersionV2]:
        return self.store.versions_of(VersionV2, pipeline_id)

    def delete_version(self, pipeline_id: str, version_id: str) -> None:
        """Deleting a version checks no run or schedule: they keep their own copy of the IR."""
        with self.store.transaction():
            self.get_version(version_id)
            self.store.delete(VersionV2, version_id)

    # ---- experiments

    def create_experiment(self, name: str, description: str) -> ExperimentV2:
        if not name:
            raise InvalidInput("Experiment name cannot be empty")
        experiment = ExperimentV2(str(uuid.uuid4()), name, description, self._now())
        return self._insert_unique(
            experiment,
            f"Failed to create a new experiment. The name {name} already exists. "
            "Please specify a new name",
            "Failed to create an experiment",
        )

    def get_experiment(self, experiment_id: str) -> ExperimentV2:
        return self._found(ExperimentV2, "Experiment", experiment_id, "Failed to get experiment")

    def list_experiments(self, request: ListRequest) -> Page:
        return self._page(self.store.all(ExperimentV2), request, "Experiment", EXPERIMENT_FIELDS)

    def delete_experiment(self, experiment_id: str) -> None:
        if experiment_id == self.default_experiment_id:
            raise InvalidInput(
                f"Failed to delete experiment {experiment_id}. The default experiment cannot be "
                "deleted"
            )
        with self.store.transaction():
            self.get_experiment(experiment_id)
            self.store.delete(ExperimentV2, experiment_id)

    def archive_experiment(self, experiment_id: str, archived: bool = True) -> None:
        """Archiving an experiment archives its runs and disables its recurring runs."""
        state = ARCHIVED if archived else AVAILABLE
        with self.store.transaction():
            experiment = self.get_experiment(experiment_id)
            self.store.save(replace(experiment, storage_state=state))
            if not archived:
                return
            self._archive_contents(
                _in_experiment(self.store.all(RunV2), experiment_id),
                _in_experiment(self.store.all(RecurringRunV2), experiment_id),
                ARCHIVED,
            )

    # ---- runs

    def _resolve(self, source: Source, context: str) -> tuple[Source, dict]:
        """The version a run uses (the latest when only the pipeline is named) and its IR."""
        try:
            if source.pipeline_version_id:
                version = self.get_version(source.pipeline_version_id)
                if source.pipeline_id and source.pipeline_id != version.pipeline_id:
                    raise InvalidInput(
                        f"Pipeline version {version.id} belongs to pipeline "
                        f"{version.pipeline_id} (not {source.pipeline_id})"
                    )
            elif source.pipeline_id:
                version = self.latest_version(source.pipeline_id)
            else:
                if not source.spec:
                    raise InvalidInput(
                        "Failed to fetch a template with an empty pipeline spec manifest"
                    )
                template = _template(source.spec.encode(), "Failed to fetch a template")
                return Source(spec=template.text), json.loads(template.text)
        except ApiError as err:
            raise Internal("Internal Server Error", internal=f"{context}: {err.internal}") from err
        spec = self.version_spec(version.id)
        return Source(version.pipeline_id, version.id, json.dumps(spec)), spec

    def _experiment_for(self, experiment_id: str) -> str:
        if not experiment_id:
            return self.default_experiment_id
        self.get_experiment(experiment_id)
        return experiment_id

    def create_run(self, request: RunRequest, recurring_run_id: str = "") -> RunV2:
        if not request.name:
            raise InvalidInput("The run name is empty. Please specify a valid name")
        experiment_id = self._experiment_for(request.experiment_id)
        source, spec = self._resolve(
            request.source,
            "InternalServerError: Failed to create a run due to error fetching manifest",
        )
        now = self._now()
        run = RunV2(
            **_from_request(request, experiment_id, source),
            created_at=now,
            scheduled_at=now,
            state_history=((now, PENDING),),
            recurring_run_id=recurring_run_id,
        )
        with self.store.transaction():
            run = self.store.insert(run)
            experiment = self.get_experiment(experiment_id)
            self.store.save(replace(experiment, last_run_created_at=now))
        if self.runner is not None:
            self.runner.start(run, spec, lambda report: self.record(run.id, report))
        return run

    def record(self, run_id: str, report: RunReport) -> None:
        """The runner's report, stored as the persistence agent stores Argo's: a new state joins
        the history, a final one sets `finished_at` (any other clears it), and a run being
        terminated stays CANCELING until it ends."""
        with self.store.transaction():
            run = self.get_run(run_id)
            state = report.state
            if run.state == CANCELING and state not in FINISHED:
                state = CANCELING
            history, finished_at = run.state_history, run.finished_at
            if run.state != state:
                history = (*history, (self._now(), state))
                finished_at = self._now() if state in FINISHED else 0
            self.store.save(
                replace(
                    run,
                    state=state,
                    state_history=history,
                    finished_at=finished_at,
                    tasks=report.tasks,
                    error=report.error,
                )
            )

    def get_run(self, run_id: str) -> RunV2:
        return self._found(RunV2, "Run", run_id, "Failed to get a run")

    def list_runs(self, request: ListRequest, experiment_id: str = "") -> Page:
        runs = _in_experiment(self.store.all(RunV2), experiment_id)
        return self._page(runs, request, "Run", RUN_FIELDS)

    def delete_run(self, run_id: str) -> None:
        with self.store.transaction():
            self.get_run(run_id)
            self.store.delete(RunV2, run_id)
        if self.runner is not None:
            self.runner.terminate(run_id)

    def terminate_run(self, run_id: str) -> None:
        """A pending or running run becomes CANCELING (any other is refused, as 2.5's
        `TerminateRun` updates no row); the runner's report of its end follows (FAILED, as Argo
        ends a terminated workflow). Without a runner nothing is going: it is CANCELED at once."""
        with self.store.transaction():
            run = self.get_run(run_id)
            if run.state not in (PENDING, "RUNNING", "PAUSED"):
                message = f"Failed to terminate a run {run_id}. Row not found"
                raise InvalidInput(
                    message,
                    internal=f"Failed to terminate run {run_id}: InvalidInputError: {message}",
                )
            self.record(run_id, RunReport(CANCELING, run.tasks))
        if self.runner is not None:
            self.runner.terminate(run_id)
        else:
            self.record(run_id, RunReport("CANCELED"))

    def retry_run(self, run_id: str) -> None:
        """Only a failed or canceled run is retried (Argo's retry needs a finished workflow);
        it runs again from its first task, under the same id."""
        run = self.get_run(run_id)
        if run.state not in ("FAILED", "CANCELED"):
            raise InvalidInput(
                f"Failed to retry run {run_id} as it is not in a failed state: {run.state}"
            )
        self.record(run_id, RunReport(PENDING))
        if self.runner is not None:
            spec = json.loads(run.source.spec or "{}")
            self.runner.start(run, spec, lambda report: self.record(run_id, report))

    def archive_run(self, run_id: str, archived: bool = True) -> None:
        with self.store.transaction():
            run = self.get_run(run_id)
            self.store.save(replace(run, storage_state=ARCHIVED if archived else AVAILABLE))

    # ---- recurring runs

    def create_recurring_run(
        self,
        request: RunRequest,
        *,
        max_concurrency: int,
        trigger: Trigger,
        enabled: bool,
        no_catchup: bool,
    ) -> RecurringRunV2:
        if not request.name:
            raise InvalidInput("Recurring run name is empty. Please specify a valid name")
        if not 1 <= max_concurrency <= 10:
            raise InvalidInput(
                "Max concurrency of a recurring run must be at least 1 and at most 10. "
                f"Received {max_concurrency}"
            )
        check_trigger(trigger, "")
        experiment_id = self._experiment_for(request.experiment_id)
        source, _ = self._resolve(
            request.source,
            "InternalServerError: Failed to create a recurring run with an "
            "invalid pipeline spec manifest",
        )
        if request.source.pipeline_id and not request.source.pipeline_version_id:
            source = replace(source, pipeline_version_id="")  # follows the latest version
        now = self._now()
        job = RecurringRunV2(
            **_from_request(request, experiment_id, source),
            max_concurrency=max_concurrency,
            trigger=trigger,
            enabled=enabled,
            no_catchup=no_catchup,
            created_at=now,
            updated_at=now,
        )
        return self.store.insert(job)

    def get_recurring_run(self, job_id: str) -> RecurringRunV2:
        return self._found(RecurringRunV2, "Job", job_id, "Failed to get a recurring run")

    def list_recurring_runs(self, request: ListRequest, experiment_id: str = "") -> Page:
        jobs = _in_experiment(self.store.all(RecurringRunV2), experiment_id)
        return self._page(jobs, request, "Job", RECURRING_RUN_FIELDS)

    def enable_recurring_run(self, job_id: str, enabled: bool) -> None:
        with self.store.transaction():
            job = self.get_recurring_run(job_id)
            self.store.save(replace(job, enabled=enabled, updated_at=self._now()))

    def delete_recurring_run(self, job_id: str) -> None:
        """Its runs are left alone: 2.5 has no propagation policy (2.16 added ORPHAN)."""
        with self.store.transaction():
            self.get_recurring_run(job_id)
            self.store.delete(RecurringRunV2, job_id)

    def dump(self) -> dict[str, list]:
        """Every object by kind, for the state endpoint."""
        return {
            "pipelines": self.store.all(PipelineV2),
            "versions": self.store.all(VersionV2),
            "experiments": self.store.all(ExperimentV2),
            "runs": self.store.all(RunV2),
            "recurring_runs": self.store.all(RecurringRunV2),
        }

    def reset(self) -> None:
        """Forget everything; the default experiment comes back, as on a fresh install."""
        self.store.clear()
        self.default_experiment_id = self._default_experiment()


def _template(content: bytes, context: str) -> PipelineTemplate:
    try:
        return parse_template(content)
    except ApiError as err:
        raise err.wrap(context) from err


def _in_experiment(items: list, experiment_id: str) -> list:
    """The runs or recurring runs of one experiment (all of them if none is named)."""
    return [i for i in items if not experiment_id or i.experiment_id == experiment_id]


def _from_request(request: RunRequest, experiment_id: str, source: Source) -> dict:
    """The fields a run and a recurring run take from their request alike: a new id, the
    experiment and source as resolved, and the default service account if none is named."""
    return {
        "id": str(uuid.uuid4()),
        "name": request.name,
        "description": request.description,
        "experiment_id": experiment_id,
        "source": source,
        "parameters": json.dumps(request.parameters),
        "pipeline_root": request.pipeline_root,
        "service_account": request.service_account or DEFAULT_SERVICE_ACCOUNT,
    }
