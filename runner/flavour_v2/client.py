"""The v2 flavour's server client: kfp 2's generated client, kfp_server_api 2 (DSP 2.x, v2beta1).

What is v2 here: the generated client (`sdk.GuardedClient`) and its healthz (which also says
which generation the server is), the v2beta1 wire shapes (`operation` filters, display names,
version references, `mode`), the run states (`states`), typed run arguments, and what DSP 2.x
has instead of a default version: the newest one. The retry policy is the shared one
(`runner.calls`), the transport guard too (`runner.transport`). Nothing outside this flavour
imports kfp or kfp_server_api; callers get `runner.server` records.

Calls go to the generated service APIs, configured as `kfp.Client` configures them (the token
hook, the CA bundle, the host) but without importing it (`sdk.GuardedClient` says why); its
high-level methods would also print links to stdout, which carries the job's table.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import kfp_server_api
import structlog
from kfp_server_api.exceptions import ApiException

from runner import generation
from runner.calls import PAGE_SIZE
from runner.client_base import ClientBase
from runner.errors import NotFoundError, RunnerError, ServerError
from runner.flavour_v2 import listing, wire
from runner.flavour_v2.sdk import GuardedClient, in_experiment, of_pipeline
from runner.harness import Parameter
from runner.server import (
    ServerExperiment,
    ServerJob,
    ServerPipeline,
    ServerRun,
    ServerVersion,
)

logger = structlog.get_logger()
NAMES_PER_FILTER = 50
NEWEST_PAGE = 5
"""Versions read to find the newest: enough to see every version of a created_at second."""
ORPHAN_FROM = (2, 16)
"""KFP release that takes `propagation_policy=ORPHAN` on a recurring-run delete."""
FORBIDDEN_HINT = (
    "may `get` the route ds-pipeline-<dspa> (OpenShift AI 2.x, oauth-proxy) or use the "
    "`datasciencepipelinesapplications/api` subresource of the DSPA with the request's verb "
    "(OpenShift AI 3.x, kube-rbac-proxy) in the DSP namespace"
)


class DSPClient(ClientBase):
    """Typed, retried, idempotent calls to one DSP 2.x server."""

    API_EXCEPTION = ApiException
    FORBIDDEN_HINT = FORBIDDEN_HINT
    default_versions = False

    def _connect(self, **options):
        return GuardedClient(**options)

    def _check_generation(self) -> None:
        """Also reads what the server can do: a recurring run deleted without its runs
        (ORPHAN, from KFP 2.16) and the user's namespace (multi-user servers)."""
        if self._kfp.server_info is None:
            self._refuse_other_generation()
        release = generation.version_of(str(self._kfp.server_info.get("tag_name", "")))
        self.orphan_delete = release is not None and release >= ORPHAN_FROM
        """Whether a recurring run can be deleted without its runs (detected from healthz)."""
        self._namespace = self._kfp.get_user_namespace() or None
        self._types: dict[str, tuple[Parameter, ...]] = {}

    def _refuse_other_generation(self) -> None:
        """No v2beta1 healthz: a DSP 1.x server answers v1beta1's, anything else neither."""
        api_client = self._kfp._healthz_api.api_client
        found = self._calls.call(
            "connect",
            lambda: generation.healthz(api_client, generation.V1_HEALTHZ, ApiException),
        )
        if found is not None:
            raise generation.refuse_v1_server(self.host)
        raise generation.refuse_unknown(self.host)

    # Reads -------------------------------------------------------------------------------

    def list_pipelines(self) -> list[ServerPipeline]:
        """Every pipeline with its newest version as `default_version`. v2beta1 lists versions
        per pipeline only, so this reads v1beta1's listing, which joins each pipeline to its
        newest version (`listing`), and asks v2beta1 only for the pipelines whose newest
        version carries no parameter signature, a few at a time (DSP_CONCURRENCY); on a
        server without that listing, it asks for every pipeline (README, Performance)."""
        listed = None
        if listing.usable(self._kfp.server_info or {}):
            api_client = self._kfp._pipelines_api.api_client
            listed = listing.read_all(self._calls, api_client, self._namespace)
        if listed is None:
            listed = [
                listing.Listed(p.pipeline_id, wire.name_of(p), None, ())
                for p in self._calls.pages(
                    "list pipelines",
                    "pipelines",
                    lambda token: self._kfp._pipelines_api.pipeline_service_list_pipelines(
                        namespace=self._namespace, page_token=token, page_size=PAGE_SIZE
                    ),
                )
            ]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            found = list(pool.map(self._with_newest, listed))
        return [p for p in found if p is not None]

    def _with_newest(self, listed: listing.Listed) -> ServerPipeline | None:
        """The pipeline with its newest version, asked for unless the listing gave it; None
        when it was deleted since the listing."""
        if listed.version is not None:
            self._types[listed.version.id] = listed.types
            return ServerPipeline(listed.id, listed.name, listed.version)
        try:
            newest = self._newest_version(listed.id, listed.name)
        except NotFoundError:
            return None
        return ServerPipeline(listed.id, listed.name, newest)

    def _newest_version(self, pipeline_id: str, pipeline_name: str) -> ServerVersion | None:
        page = self._calls.call(
            "list pipeline versions",
            lambda: self._kfp._pipelines_api.pipeline_service_list_pipeline_versions(
                pipeline_id, page_size=NEWEST_PAGE, sort_by="created_at desc"
            ),
        )
        newest = wire.newest(page.pipeline_versions or [], pipeline_name)
        return self._version(newest, pipeline_id) if newest is not None else None

    def _version(self, api, pipeline_id: str) -> ServerVersion:
        """A version record; its parameter types are kept for typing run arguments."""
        self._types[api.pipeline_version_id] = wire.typed_parameters(api)
        return wire.version(api, pipeline_id)

    def find_pipeline(self, name: str) -> ServerPipeline | None:
        try:
            api = self._calls.call(
                "find pipeline",
                lambda: self._kfp._pipelines_api.pipeline_service_get_pipeline_by_name(
                    name, namespace=self._namespace
                ),
            )
        except NotFoundError:
            return None
        return wire.pipeline(api, self._newest_version(api.pipeline_id, name))

    def find_version(self, pipeline_id: str, name: str) -> ServerVersion | None:
        found = self._named(
            "find pipeline version",
            "pipeline_versions",
            self._kfp._pipelines_api.pipeline_service_list_pipeline_versions,
            name,
            pipeline_id=pipeline_id,
        )
        return next((self._version(v, pipeline_id) for v in found), None)

    def find_experiment(self, name: str) -> str | None:
        found = self._named(
            "find experiment",
            "experiments",
            self._kfp._experiment_api.experiment_service_list_experiments,
            name,
            namespace=self._namespace,
        )
        return next((e.experiment_id for e in found), None)

    def runs_named(self, experiment_id: str, names: Iterable[str]) -> list[ServerRun]:
        """A few filtered listings for any number of names, oldest first."""
        wanted = sorted(set(names))
        runs: list[ServerRun] = []
        for start in range(0, len(wanted), NAMES_PER_FILTER):
            batch = wanted[start : start + NAMES_PER_FILTER]
            for run in self._calls.filtered_pages(
                "find runs",
                "runs",
                self._kfp._run_api.run_service_list_runs,
                {"filter": wire.names_filter(batch), "sort_by": "created_at"},
                experiment_id=experiment_id,
            ):
                runs.append(wire.run(run))
        return runs

    def get_run(self, run_id: str) -> ServerRun:
        """The run, with the task outputs a server sends beside what the model knows (see
        `wire.task_outputs`): the body is read raw and then made the model."""
        api_client = self._kfp._run_api.api_client

        def read():
            raw = self._kfp._run_api.run_service_get_run(run_id, _preload_content=False)
            return raw, api_client.deserialize(raw, "V2beta1Run")

        raw, run = self._calls.call("get run", read)
        try:
            body = json.loads(raw.data or b"{}")
        except ValueError:
            body = {}
        outputs = wire.task_outputs(body if isinstance(body, dict) else {})
        return dataclasses.replace(wire.run(run), outputs=outputs)

    def list_jobs(self) -> list[ServerJob]:
        return [
            wire.job(j)
            for j in self._calls.pages(
                "list recurring runs",
                "recurring_runs",
                lambda token: (
                    self._kfp._recurring_run_api.recurring_run_service_list_recurring_runs(
                        namespace=self._namespace, page_token=token, page_size=PAGE_SIZE
                    )
                ),
            )
        ]

    def jobs_named(self, name: str) -> list[ServerJob]:
        """Every recurring run with this name, lowest id first (names are not unique)."""
        found = self._named(
            "find recurring run",
            "recurring_runs",
            self._kfp._recurring_run_api.recurring_run_service_list_recurring_runs,
            name,
            namespace=self._namespace,
        )
        return sorted((wire.job(j) for j in found), key=lambda job: job.id)

    def experiments_containing(self, text: str) -> list[ServerExperiment]:
        """Every experiment, archived or not, whose name contains `text` (one paged listing)."""
        return [
            ServerExperiment(
                id=e.experiment_id, name=e.display_name or "", description=e.description or ""
            )
            for e in self._calls.filtered_pages(
                "list fingerprint records",
                "experiments",
                self._kfp._experiment_api.experiment_service_list_experiments,
                {"filter": wire.substring_filter(text)},
                namespace=self._namespace,
            )
        ]

    def list_versions(self, pipeline_id: str) -> list[ServerVersion]:
        """Every version of the pipeline (`prune`), oldest first."""
        return [
            self._version(v, pipeline_id)
            for v in self._calls.filtered_pages(
                "list pipeline versions",
                "pipeline_versions",
                self._kfp._pipelines_api.pipeline_service_list_pipeline_versions,
                {"sort_by": "created_at"},
                pipeline_id=pipeline_id,
            )
        ]

    def _newest_runs(self) -> Iterator[ServerRun]:
        listing = self._calls.filtered_pages(
            "list recent runs",
            "runs",
            self._kfp._run_api.run_service_list_runs,
            {"sort_by": "created_at desc"},
            namespace=self._namespace,
        )
        return map(wire.run, listing)

    # Writes (idempotent) -----------------------------------------------------------------

    def _create_experiment(self, operation: str, name: str, description: str) -> str:
        return self._calls.create(
            operation,
            lambda: (
                self._kfp._experiment_api.experiment_service_create_experiment(
                    kfp_server_api.V2beta1Experiment(
                        display_name=name, description=description, namespace=self._namespace
                    )
                ).experiment_id
            ),
            lambda: self.find_experiment(name),
        )

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
        """A recurring run of exactly this version (a reference to the version, never 'the
        pipeline', which would follow its newest version). Names are not unique on the server,
        so look first: a racing deploy may have made it."""
        existing = self.find_job(name)
        if existing is not None:
            return existing
        body = kfp_server_api.V2beta1RecurringRun(
            display_name=name,
            description=description,
            experiment_id=experiment_id,
            pipeline_version_reference=_reference(pipeline_id, version_id),
            runtime_config=self._runtime_config(pipeline_id, version_id, params),
            trigger=kfp_server_api.V2beta1Trigger(
                cron_schedule=kfp_server_api.V2beta1CronSchedule(cron=cron)
            ),
            max_concurrency=str(max_concurrency),
            no_catchup=not catchup,
            mode="ENABLE" if enabled else "DISABLE",
        )
        api = self._kfp._recurring_run_api
        return self._calls.create(
            "create recurring run",
            lambda: wire.job(
                in_experiment(
                    "create recurring run",
                    experiment_id,
                    lambda: api.recurring_run_service_create_recurring_run(body),
                )
            ),
            lambda: self.find_job(name),
        )

    def _delete_job(self, job_id: str) -> None:
        """Leave the runs a recurring run started alone where the server can (ORPHAN, KFP
        2.16+); an older server gets the plain delete, after the shared schedules code has
        disabled it."""
        policy = {"propagation_policy": "ORPHAN"} if self.orphan_delete else {}
        self._kfp._recurring_run_api.recurring_run_service_delete_recurring_run(job_id, **policy)

    def _delete_version(self, pipeline_id: str, version_id: str) -> None:
        """DSP 2.x keeps no default to move: the newest remaining version is the default."""
        api = self._kfp._pipelines_api
        api.pipeline_service_delete_pipeline_version(pipeline_id, version_id)

    def _archive_experiment(self, experiment_id: str) -> None:
        self._kfp._experiment_api.experiment_service_archive_experiment(experiment_id)

    def _delete_experiment(self, experiment_id: str) -> None:
        self._kfp._experiment_api.experiment_service_delete_experiment(experiment_id)

    def _job_switch(self, enabled: bool):
        api = self._kfp._recurring_run_api
        if enabled:
            return api.recurring_run_service_enable_recurring_run
        return api.recurring_run_service_disable_recurring_run

    def upload_pipeline(self, path: Path, name: str, description: str) -> ServerPipeline:
        """Create the pipeline without a version (v2beta1 CreatePipeline; `path` is uploaded
        by the caller's `upload_version` that follows). An upload would also make a version
        named after the pipeline in the same second as the caller's, a tie the v1beta1
        listing breaks either way. A pipeline whose version upload failed is found without a
        version by the next deploy, which uploads it."""
        body = kfp_server_api.V2beta1Pipeline(
            display_name=name, description=description, namespace=self._namespace
        )
        api = self._kfp._pipelines_api
        return self._calls.create(
            "create pipeline",
            lambda: wire.pipeline(api.pipeline_service_create_pipeline(body), None),
            lambda: self.find_pipeline(name),
            unseen=(  # the server inserts it CREATING, hidden, then marks it READY
                f"pipeline {name!r} is taken on the server but never became visible: rename "
                "the pipeline, or remove the half-made one from the DSP database"
            ),
        )

    def upload_version(
        self, path: Path, pipeline_id: str, name: str, description: str, *, pipeline_name: str
    ) -> ServerVersion:
        upload = self._kfp._upload_api
        return self._calls.create(
            "upload pipeline version",
            lambda: self._version(
                of_pipeline(
                    pipeline_name,
                    lambda: upload.upload_pipeline_version(
                        str(path), name=name, pipelineid=pipeline_id, description=description
                    ),
                ),
                pipeline_id,
            ),
            lambda: self.find_version(pipeline_id, name),
            unseen=(
                f"version {name!r} of pipeline {pipeline_name!r} is taken on the server but "
                "never became visible: an upload stays hidden until its file is stored; delete "
                f"pipeline {pipeline_name!r}'s versions and the pipeline, and deploy again"
            ),
        )

    def set_default_version(self, pipeline_id: str, version_id: str) -> bool:
        """DSP 2.x has no default version: what the dashboard shows first, what a schedule
        naming only the pipeline runs and what `trigger` and the compile skip read is the
        newest version (`list_pipelines`), and no call makes an older one the newest. Runs
        and schedules of this flavour always name their version, so an existing version
        (a revert) is reused as it is: nothing is sent, and False says so."""
        logger.info(
            "default_version_not_set",
            pipeline_id=pipeline_id,
            version_id=version_id,
            reason="DSP 2.x has no default version; runs and schedules name this version, the "
            "pipeline's newest version stays as it is",
        )
        return False

    def start_run(
        self,
        *,
        experiment_id: str,
        name: str,
        pipeline_id: str,
        version_id: str,
        params: dict[str, str],
    ) -> ServerRun:
        """Start a run of exactly this version (never 'the pipeline'), once per name."""
        body = kfp_server_api.V2beta1Run(
            display_name=name,
            experiment_id=experiment_id,
            pipeline_version_reference=_reference(pipeline_id, version_id),
            runtime_config=self._runtime_config(pipeline_id, version_id, params),
        )
        api = self._kfp._run_api
        return self._calls.create(
            "start run",
            lambda: wire.run(
                in_experiment("start run", experiment_id, lambda: api.run_service_create_run(body))
            ),
            lambda: self.find_runs(experiment_id, [name]).get(name),
        )

    def remove_run(self, run_id: str) -> None:
        """Stop and delete a duplicate run; one already gone or not stoppable is logged only."""
        api = self._kfp._run_api
        for operation, call in (
            ("terminate duplicate run", api.run_service_terminate_run),
            ("delete duplicate run", api.run_service_delete_run),
        ):
            try:
                self._calls.call(operation, lambda call=call: call(run_id))
            except (NotFoundError, ServerError) as exc:
                logger.info("duplicate_run_cleanup", operation=operation, error=str(exc))

    # promote (runner/promote.py) ---------------------------------------------------------

    def pipeline_file(self, pipeline_id: str, version_id: str) -> str:
        """The version's `pipeline_spec` (a KFP 2.5 server keeps no upload file: it stores the
        IR it parsed and returns it as a struct) written back as the YAML it uploads as."""
        api = self._calls.call(
            "get pipeline version",
            lambda: self._kfp._pipelines_api.pipeline_service_get_pipeline_version(
                pipeline_id, version_id
            ),
        )
        return wire.spec_file(api.pipeline_spec or {})

    def newest_run_of(self, pipeline_id: str, version_id: str) -> ServerRun | None:
        """KFP 2.5 lists runs by namespace or experiment only (no version filter), so this
        reads the namespace's runs newest first until one of this version shows."""
        runs = self._calls.filtered_pages(
            "find newest run of version",
            "runs",
            self._kfp._run_api.run_service_list_runs,
            {"sort_by": "created_at desc"},
            namespace=self._namespace,
        )
        return next((r for r in map(wire.run, runs) if r.version_id == version_id), None)

    # Helpers -----------------------------------------------------------------------------

    def _runtime_config(self, pipeline_id: str, version_id: str, params: dict[str, str]):
        """Run arguments as the JSON values their IR types take: the driver reads a string
        "7" for a float input as an error, not as 7."""
        types = {p.name: p for p in self._parameters(pipeline_id, version_id)}
        typed = {}
        for name, text in params.items():
            try:
                typed[name] = types[name].typed(text) if name in types else text
            except ValueError as exc:
                raise RunnerError(f"pipeline version {version_id}: {exc}") from None
        return kfp_server_api.V2beta1RuntimeConfig(parameters=typed)

    def _parameters(self, pipeline_id: str, version_id: str) -> tuple[Parameter, ...]:
        if version_id not in self._types:
            api = self._calls.call(
                "get pipeline version",
                lambda: self._kfp._pipelines_api.pipeline_service_get_pipeline_version(
                    pipeline_id, version_id
                ),
            )
            self._version(api, pipeline_id)
        return self._types[version_id]

    def _named(self, operation: str, field: str, list_call, name: str, **keys) -> Iterator:
        """The objects a list endpoint holds under exactly this name, page by page."""
        return self._calls.filtered_pages(
            operation, field, list_call, {"filter": wire.name_filter(name)}, **keys
        )


def _reference(pipeline_id: str, version_id: str):
    return kfp_server_api.V2beta1PipelineVersionReference(
        pipeline_id=pipeline_id, pipeline_version_id=version_id
    )
