"""The v1 flavour's server client: kfp_tekton's TektonClient and kfp_server_api 1.8 (DSP 1.x).

What is v1 here: the generated client and its constructor's healthz, the v1beta1 wire shapes
(resource references, `op` filters, Tekton task results in the run's manifest), the status words
(`states`), and how the kfp-tekton 1.5 server says that an experiment or pipeline was deleted.
The retry policy is the shared one (`runner.calls`), the transport guard too (`runner.transport`).
Nothing outside this flavour imports kfp_tekton or kfp_server_api; callers get `runner.server`
records.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import kfp_server_api
import structlog
from kfp_server_api.exceptions import ApiException
from kfp_tekton import TektonClient

from runner import generation, transport
from runner.calls import PAGE_SIZE
from runner.client_base import ClientBase
from runner.errors import ExperimentGone, NotFoundError, ServerError
from runner.flavour_v1 import wire
from runner.server import (
    ServerExperiment,
    ServerJob,
    ServerPipeline,
    ServerRun,
    ServerVersion,
)

logger = structlog.get_logger()
T = TypeVar("T")
NAMES_PER_FILTER = 50
FORBIDDEN_HINT = "may `get` the route ds-pipeline-<dspa> in the DSP namespace"


class DSPClient(ClientBase):
    """Typed, retried, idempotent calls to one DSP 1.x server (kfp-tekton 1.5, v1beta1)."""

    API_EXCEPTION = ApiException
    FORBIDDEN_HINT = FORBIDDEN_HINT
    default_versions = True

    def _connect(self, **options):
        return _GuardedTektonClient(**options)

    def _check_generation(self) -> None:
        """A DSP 2.x server answers v1beta1's healthz too, then refuses every Tekton upload:
        its v2beta1 healthz tells it apart (one GET) before anything is written."""
        api_client = self._kfp._healthz_api.api_client
        found = self._calls.call(
            "connect",
            lambda: generation.healthz(api_client, generation.V2_HEALTHZ, ApiException),
        )
        if found is not None:
            raise generation.refuse_v2_server(self.host)

    # Reads -------------------------------------------------------------------------------

    def list_pipelines(self) -> list[ServerPipeline]:
        """Every pipeline with its default version: one paged listing answers 'what changed?'."""
        pipelines = [
            wire.pipeline(p)
            for p in self._calls.pages(
                "list pipelines",
                "pipelines",
                lambda token: self._kfp.pipelines.list_pipelines(
                    page_token=token, page_size=PAGE_SIZE
                ),
            )
        ]
        return [self._with_version_description(p) for p in pipelines]

    def _with_version_description(self, pipeline: ServerPipeline) -> ServerPipeline:
        """Some KFP v1 stores leave the default version's description out of the pipeline
        listing; the commit it names decides run names, so read the version then."""
        default = pipeline.default_version
        if default is None or default.description:
            return pipeline
        version = self._calls.call(
            "get pipeline version", lambda: self._kfp.pipelines.get_pipeline_version(default.id)
        )
        return dataclasses.replace(pipeline, default_version=wire.version(version, pipeline.id))

    def find_pipeline(self, name: str) -> ServerPipeline | None:
        found = self._named("find pipeline", "pipelines", self._kfp.pipelines.list_pipelines, name)
        return next((wire.pipeline(p) for p in found), None)

    def find_version(self, pipeline_id: str, name: str) -> ServerVersion | None:
        found = self._named(
            "find pipeline version",
            "versions",
            self._kfp.pipelines.list_pipeline_versions,
            name,
            resource_key_type="PIPELINE",
            resource_key_id=pipeline_id,
        )
        return next((wire.version(v, pipeline_id) for v in found), None)

    def find_experiment(self, name: str) -> str | None:
        found = self._named(
            "find experiment", "experiments", self._kfp.experiments.list_experiment, name
        )
        return next((e.id for e in found), None)

    def runs_named(self, experiment_id: str, names: Iterable[str]) -> list[ServerRun]:
        """A few filtered listings for any number of names, oldest first."""
        wanted = sorted(set(names))
        runs: list[ServerRun] = []
        for start in range(0, len(wanted), NAMES_PER_FILTER):
            batch = wanted[start : start + NAMES_PER_FILTER]
            for run in self._calls.filtered_pages(
                "find runs",
                "runs",
                self._kfp.runs.list_runs,
                {"filter": wire.names_filter(batch), "sort_by": "created_at"},
                resource_reference_key_type="EXPERIMENT",
                resource_reference_key_id=experiment_id,
            ):
                runs.append(wire.run(run))
        return runs

    def get_run(self, run_id: str) -> ServerRun:
        """The run with its task outputs, read from the live PipelineRun the server keeps."""
        detail = self._calls.call("get run", lambda: self._kfp.runs.get_run(run_id))
        manifest = detail.pipeline_runtime.workflow_manifest if detail.pipeline_runtime else None
        return dataclasses.replace(wire.run(detail.run), outputs=wire.task_results(manifest))

    def list_jobs(self) -> list[ServerJob]:
        return [
            wire.job(j)
            for j in self._calls.pages(
                "list recurring runs",
                "jobs",
                lambda token: self._kfp.jobs.list_jobs(page_token=token, page_size=PAGE_SIZE),
            )
        ]

    def jobs_named(self, name: str) -> list[ServerJob]:
        """Every job with this name, lowest id first (job names are not unique on the server)."""
        found = self._named("find recurring run", "jobs", self._kfp.jobs.list_jobs, name)
        return sorted((wire.job(j) for j in found), key=lambda job: job.id)

    def experiments_containing(self, text: str) -> list[ServerExperiment]:
        """Every experiment, archived or not, whose name contains `text` (one paged listing)."""
        return [
            ServerExperiment(id=e.id, name=e.name, description=e.description or "")
            for e in self._calls.filtered_pages(
                "list fingerprint records",
                "experiments",
                self._kfp.experiments.list_experiment,
                {"filter": wire.substring_filter(text)},
            )
        ]

    def list_versions(self, pipeline_id: str) -> list[ServerVersion]:
        """Every version of the pipeline (`prune`), oldest first."""
        return [
            wire.version(v, pipeline_id)
            for v in self._calls.filtered_pages(
                "list pipeline versions",
                "versions",
                self._kfp.pipelines.list_pipeline_versions,
                {"sort_by": "created_at"},
                resource_key_type="PIPELINE",
                resource_key_id=pipeline_id,
            )
        ]

    def _newest_runs(self) -> Iterator[ServerRun]:
        return map(
            wire.run,
            self._calls.filtered_pages(
                "list recent runs", "runs", self._kfp.runs.list_runs, {"sort_by": "created_at desc"}
            ),
        )

    # Writes (idempotent) -----------------------------------------------------------------

    def create_job(
        self,
        *,
        experiment_id: str,
        name: str,
        description: str,
        pipeline_id: str,
        version_id: str,
        cron: str,
        max_concurrency: int,
        catchup: bool,
        enabled: bool,
        params: dict[str, str],
    ) -> ServerJob:
        """A recurring run of exactly this version; it embeds the manifest at creation. Job names
        are not unique on the server, so look first: a racing deploy may have made it."""
        existing = self.find_job(name)
        if existing is not None:
            return existing
        return self._calls.create(
            "create recurring run",
            lambda: wire.job(
                _in_experiment(
                    "create recurring run",
                    experiment_id,
                    lambda: self._kfp.create_recurring_run(
                        experiment_id,
                        name,
                        description=description,
                        cron_expression=cron,
                        max_concurrency=max_concurrency,
                        no_catchup=not catchup,
                        params=params,
                        pipeline_id=pipeline_id,
                        version_id=version_id,
                        enabled=enabled,
                    ),
                )
            ),
            lambda: self.find_job(name),
        )

    def upload_pipeline(self, path: Path, name: str, description: str) -> ServerPipeline:
        """Create the pipeline (and the server's implicit first version named after it). The
        server URL-decodes this description a second time, so it is encoded once more here."""
        return self._calls.create(
            "upload pipeline",
            lambda: wire.pipeline(
                self._kfp.upload_pipeline(str(path), name, urllib.parse.quote(description))
            ),
            lambda: self.find_pipeline(name),
            unseen=(
                f"pipeline {name!r} is taken on the server but never became visible: the server "
                "keeps an upload in status CREATING until its file is stored, and for good when "
                "storing failed, where the API can neither show nor delete it; remove its row "
                "(Status CREATING) from the pipelines table of the DSP database, or rename the "
                "pipeline"
            ),
        )

    def upload_version(
        self, path: Path, pipeline_id: str, name: str, description: str, *, pipeline_name: str
    ) -> ServerVersion:
        return self._calls.create(
            "upload pipeline version",
            lambda: wire.version(
                _of_pipeline(
                    pipeline_name,
                    lambda: self._kfp.upload_pipeline_version(
                        str(path), name, pipeline_id=pipeline_id, description=description
                    ),
                ),
                pipeline_id,
            ),
            lambda: self.find_version(pipeline_id, name),
            unseen=(
                f"version {name!r} of pipeline {pipeline_name!r} is taken on the server but "
                "never became visible: the server keeps an upload in status CREATING until its "
                "file is stored, and for good when storing failed, where the API can neither "
                f"show nor delete it; delete pipeline {pipeline_name!r} on the server (its "
                "versions go with it) and deploy again"
            ),
        )

    def set_default_version(self, pipeline_id: str, version_id: str) -> bool:
        self._calls.call(
            "set default version",
            lambda: self._kfp.pipelines.update_pipeline_default_version(pipeline_id, version_id),
        )
        return True

    def start_run(
        self,
        *,
        experiment_id: str,
        name: str,
        pipeline_id: str,
        version_id: str,
        params: dict[str, str],
    ) -> ServerRun:
        """Start a run of exactly this version (never 'the default'), once per name."""
        mine = self._calls.create(
            "start run",
            lambda: wire.run(
                _in_experiment(
                    "start run",
                    experiment_id,
                    lambda: self._kfp.run_pipeline(
                        experiment_id,
                        name,
                        params=params,
                        pipeline_id=pipeline_id,
                        version_id=version_id,
                    ),
                )
            ),
            lambda: self.find_runs(experiment_id, [name]).get(name),
        )
        return mine

    def remove_run(self, run_id: str) -> None:
        """Stop and delete a duplicate run; one already gone or not stoppable is logged only."""
        for operation, call in (
            ("terminate duplicate run", self._kfp.runs.terminate_run),
            ("delete duplicate run", self._kfp.runs.delete_run),
        ):
            try:
                self._calls.call(operation, lambda call=call: call(run_id))
            except (NotFoundError, ServerError) as exc:
                logger.info("duplicate_run_cleanup", operation=operation, error=str(exc))

    # promote (runner/promote.py) ---------------------------------------------------------

    def pipeline_file(self, pipeline_id: str, version_id: str) -> str:
        """The templates endpoint: kfp-tekton 1.5 answers with the uploaded file itself, byte
        for byte, from its object store."""
        answer = self._calls.call(
            "get pipeline version template",
            lambda: self._kfp.pipelines.get_pipeline_version_template(version_id),
        )
        return answer.template or ""

    def newest_run_of(self, pipeline_id: str, version_id: str) -> ServerRun | None:
        """One request: DSP 1.x lists runs by their PIPELINE_VERSION reference (single-user
        mode, as DSP runs it), newest first."""
        page = self._calls.call(
            "find newest run of version",
            lambda: self._kfp.runs.list_runs(
                page_size=1,
                sort_by="created_at desc",
                resource_reference_key_type="PIPELINE_VERSION",
                resource_reference_key_id=version_id,
            ),
        )
        return wire.run(page.runs[0]) if page.runs else None

    # The SDK calls the shared rules use (runner.client_base) ---------------------------

    def _create_experiment(self, operation: str, name: str, description: str) -> str:
        return self._calls.create(
            operation,
            lambda: (
                self._kfp.experiments.create_experiment(
                    body=kfp_server_api.ApiExperiment(name=name, description=description)
                ).id
            ),
            lambda: self.find_experiment(name),
        )

    def _archive_experiment(self, experiment_id: str) -> None:
        self._kfp.experiments.archive_experiment(experiment_id)

    def _delete_experiment(self, experiment_id: str) -> None:
        self._kfp.experiments.delete_experiment(experiment_id)

    def _job_switch(self, enabled: bool):
        return self._kfp.jobs.enable_job if enabled else self._kfp.jobs.disable_job

    def _delete_job(self, job_id: str) -> None:
        self._kfp.jobs.delete_job(job_id)

    def _delete_version(self, pipeline_id: str, version_id: str) -> None:
        """v1beta1 deletes a version by its id alone; the server makes the newest remaining
        version the default if this one was."""
        self._kfp.pipelines.delete_pipeline_version(version_id)

    def _named(self, operation: str, field: str, list_call, name: str, **keys) -> Iterator:
        """The objects a list endpoint holds under exactly this name, page by page."""
        return self._calls.filtered_pages(
            operation, field, list_call, {"filter": wire.name_filter(name)}, **keys
        )


class _GuardedTektonClient(TektonClient):
    """TektonClient with a request timeout, no hidden urllib3 retries, and a JSON check.

    Its constructor calls healthz (5 tries, 5 s apart, no timeout); here that call is made once,
    through the guarded transport, and the caller's retry policy owns the retries.
    """

    def __init__(self, *, request_timeout: float, **kwargs):
        self._request_timeout = request_timeout
        super().__init__(**kwargs)
        transport.guard(self._healthz_api.api_client.rest_client, request_timeout, ApiException)

    def _load_config(self, *args, **kwargs):
        config = super()._load_config(*args, **kwargs)
        config.retries = False
        return config

    def get_kfp_healthz(self):
        transport.guard(
            self._healthz_api.api_client.rest_client, self._request_timeout, ApiException
        )
        return self._healthz_api.get_healthz()


_EXPERIMENT_GONE = re.compile(r"Failed to get experiment\.: ResourceNotFoundError: Experiment ")


def _in_experiment(operation: str, experiment_id: str, call: Callable[[], T]) -> T:
    """Run a create of a run or job in an experiment. The server reads the experiment only
    after validating the request, and answers one that was deleted with a 500 that no retry
    will mend: that becomes ExperimentGone (never retried), so the caller can act on it."""
    try:
        return call()
    except ApiException as exc:
        if exc.status == 500 and _EXPERIMENT_GONE.search(exc.body or ""):
            raise ExperimentGone(
                f"{operation}: experiment {experiment_id} was deleted on the server"
            ) from None
        raise


def _of_pipeline(pipeline_name: str, call: Callable[[], T]) -> T:
    """Upload a version of a pipeline that may have been deleted since it was listed: the
    server answers 400 (it cannot read the pipeline's namespace), said here in a user's words."""
    try:
        return call()
    except ApiException as exc:
        if exc.status == 400 and "ResourceNotFoundError: Pipeline " in (exc.body or ""):
            raise NotFoundError(
                f"upload pipeline version: pipeline {pipeline_name!r} was deleted on the server "
                "during this deploy; deploy again to upload it anew"
            ) from None
        raise
