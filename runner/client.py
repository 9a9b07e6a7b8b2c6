"""The one place that talks to the DSP API server, through kfp_tekton's TektonClient.

What this wrapper adds to the client (see ../shared/reference/kfp-v1-api.md for why):
- every request has a timeout (the generated client sets none) and urllib3's own silent retries
  are off, so tenacity alone decides: connection errors, timeouts, 429 (honouring Retry-After)
  and 5xx are retried with exponential backoff and jitter; other 4xx are not;
- the multipart uploads' 500 "already exist" and the gateway's 409 mean "it exists": they are
  never retried, and a create adopts the existing object instead;
- a create that is retried first looks its object up by name, so a create whose answer was lost
  (the connection dropped after the server committed) is adopted, not duplicated;
- a 2xx answer that is not JSON (a proxy's sign-in page) is an error, not an empty result;
- a 403 (DSP's oauth-proxy page) is retried once, re-reading the token, then is an AuthError.
Nothing else in the project imports kfp_server_api; callers get plain dataclasses.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import kfp_server_api
import structlog
import tenacity
import urllib3
from kfp_server_api.exceptions import ApiException
from kfp_tekton import TektonClient

from runner.errors import (
    AuthError,
    ConflictError,
    ExperimentGone,
    NotFoundError,
    RunnerError,
    ServerError,
    TLSError,
)

logger = structlog.get_logger()
T = TypeVar("T")
PAGE_SIZE = 200
NAMES_PER_FILTER = 50
RETRYABLE_STATUS = {429, 500, 502, 503, 504}
# What a server call may fail with that is the network's or the server's doing, and becomes one
# line; anything else raised in a call (AttributeError, KeyError: a bug, or a model the code did
# not expect) escapes as itself, so the job ends with its traceback and exit code 70.
TRANSPORT_ERRORS = (ApiException, urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)
MAX_RETRY_AFTER = 120.0
_NEVER = datetime.datetime.max.replace(tzinfo=datetime.UTC)


@dataclasses.dataclass(frozen=True)
class ServerVersion:
    id: str
    name: str
    description: str
    pipeline_id: str
    parameters: tuple[tuple[str, str | None], ...] = ()


@dataclasses.dataclass(frozen=True)
class ServerPipeline:
    id: str
    name: str
    default_version: ServerVersion | None


@dataclasses.dataclass(frozen=True)
class ServerRun:
    id: str
    name: str
    status: str
    error: str
    version_id: str
    created_at: datetime.datetime | None = None
    finished_at: datetime.datetime | None = None
    outputs: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ServerJob:
    """A recurring run (KFP v1 'job')."""

    id: str
    name: str
    description: str
    enabled: bool
    experiment_id: str


@dataclasses.dataclass(frozen=True)
class ServerExperiment:
    id: str
    name: str
    description: str


class UnexpectedResponse(ServerError):
    """A 2xx answer whose body is not JSON: the kfp client would read it as an empty result."""


class DSPClient:
    """Typed, retried, idempotent calls to one DSP server."""

    def __init__(
        self,
        *,
        host: str,
        credentials,
        ca_bundle: Path | None,
        verify_tls: bool,
        request_timeout: float,
        retries: int,
        retry_max_wait: float,
    ):
        self.host = host
        self._token_source = credentials.source
        self._retries = retries
        self._backoff = tenacity.wait_exponential_jitter(multiplier=0.5, max=retry_max_wait)
        self._kfp = self._call(
            "connect",
            lambda: _GuardedTektonClient(
                host=host,
                credentials=credentials,
                ssl_ca_cert=str(ca_bundle) if ca_bundle else None,
                verify_ssl=verify_tls,
                request_timeout=request_timeout,
            ),
        )

    # Reads -------------------------------------------------------------------------------

    def list_pipelines(self) -> list[ServerPipeline]:
        """Every pipeline with its default version: one paged listing answers 'what changed?'."""
        pipelines = [
            _pipeline(p)
            for p in self._pages(
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
        version = self._call(
            "get pipeline version", lambda: self._kfp.pipelines.get_pipeline_version(default.id)
        )
        return dataclasses.replace(pipeline, default_version=_version(version, pipeline.id))

    def find_pipeline(self, name: str) -> ServerPipeline | None:
        found = self._named("find pipeline", "pipelines", self._kfp.pipelines.list_pipelines, name)
        return next((_pipeline(p) for p in found), None)

    def find_version(self, pipeline_id: str, name: str) -> ServerVersion | None:
        found = self._named(
            "find pipeline version",
            "versions",
            self._kfp.pipelines.list_pipeline_versions,
            name,
            resource_key_type="PIPELINE",
            resource_key_id=pipeline_id,
        )
        return next((_version(v, pipeline_id) for v in found), None)

    def find_experiment(self, name: str) -> str | None:
        found = self._named(
            "find experiment", "experiments", self._kfp.experiments.list_experiment, name
        )
        return next((e.id for e in found), None)

    def find_runs(self, experiment_id: str, names: Iterable[str]) -> dict[str, ServerRun]:
        """The runs of an experiment with these names (the first of any duplicates)."""
        runs: dict[str, ServerRun] = {}
        for run in self._runs_named(experiment_id, names):
            runs.setdefault(run.name, run)
        return runs

    def _runs_named(self, experiment_id: str, names: Iterable[str]) -> list[ServerRun]:
        """A few filtered listings for any number of names, oldest first."""
        wanted = sorted(set(names))
        runs: list[ServerRun] = []
        for start in range(0, len(wanted), NAMES_PER_FILTER):
            batch = wanted[start : start + NAMES_PER_FILTER]
            for run in self._filtered_pages(
                "find runs",
                "runs",
                self._kfp.runs.list_runs,
                {"filter": _names_filter(batch), "sort_by": "created_at"},
                resource_reference_key_type="EXPERIMENT",
                resource_reference_key_id=experiment_id,
            ):
                runs.append(_run(run))
        return runs

    def get_run(self, run_id: str) -> ServerRun:
        """The run with its task outputs, read from the live PipelineRun the server keeps."""
        detail = self._call("get run", lambda: self._kfp.runs.get_run(run_id))
        manifest = detail.pipeline_runtime.workflow_manifest if detail.pipeline_runtime else None
        return dataclasses.replace(_run(detail.run), outputs=_task_results(manifest))

    def list_jobs(self) -> list[ServerJob]:
        return [
            _job(j)
            for j in self._pages(
                "list recurring runs",
                "jobs",
                lambda token: self._kfp.jobs.list_jobs(page_token=token, page_size=PAGE_SIZE),
            )
        ]

    def find_job(self, name: str) -> ServerJob | None:
        found = self.jobs_named(name)
        return found[0] if found else None

    def jobs_named(self, name: str) -> list[ServerJob]:
        """Every job with this name, lowest id first (job names are not unique on the server)."""
        found = self._named("find recurring run", "jobs", self._kfp.jobs.list_jobs, name)
        return sorted((_job(j) for j in found), key=lambda job: job.id)

    def experiments_containing(self, text: str) -> list[ServerExperiment]:
        """Every experiment, archived or not, whose name contains `text` (one paged listing)."""
        return [
            ServerExperiment(id=e.id, name=e.name, description=e.description or "")
            for e in self._filtered_pages(
                "list fingerprint records",
                "experiments",
                self._kfp.experiments.list_experiment,
                {"filter": _substring_filter(text)},
            )
        ]

    # Writes (idempotent) -----------------------------------------------------------------

    def create_archived_experiment(self, name: str, description: str) -> str:
        """Create (or adopt) an experiment and archive it, out of the dashboard's list: the
        server ignores a storage state given at creation, so this takes two requests."""
        experiment_id = self._create(
            "create fingerprint record",
            lambda: (
                self._kfp.experiments.create_experiment(
                    body=kfp_server_api.ApiExperiment(name=name, description=description)
                ).id
            ),
            lambda: self.find_experiment(name),
        )
        self._call(
            "archive fingerprint record",
            lambda: self._kfp.experiments.archive_experiment(experiment_id),
        )
        return experiment_id

    def delete_experiment(self, experiment_id: str) -> None:
        """Deleting what is already gone (a retried delete, another runner) is success."""
        try:
            self._call(
                "delete fingerprint record",
                lambda: self._kfp.experiments.delete_experiment(experiment_id),
            )
        except NotFoundError:
            pass

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
        return self._create(
            "create recurring run",
            lambda: _job(
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

    def set_job_enabled(self, job_id: str, enabled: bool) -> None:
        """Disabling a job another deploy already deleted is done, not an error."""
        jobs = self._kfp.jobs
        call = jobs.enable_job if enabled else jobs.disable_job
        try:
            self._call(
                "enable recurring run" if enabled else "disable recurring run",
                lambda: call(job_id),
            )
        except NotFoundError:
            if enabled:
                raise

    def delete_job(self, job_id: str) -> None:
        """Deleting what is already gone (a retried delete) is success."""
        try:
            self._call("delete recurring run", lambda: self._kfp.jobs.delete_job(job_id))
        except NotFoundError:
            pass

    def upload_pipeline(self, path: Path, name: str, description: str) -> ServerPipeline:
        """Create the pipeline (and the server's implicit first version named after it). The
        server URL-decodes this description a second time, so it is encoded once more here."""
        return self._create(
            "upload pipeline",
            lambda: _pipeline(
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
        return self._create(
            "upload pipeline version",
            lambda: _version(
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

    def set_default_version(self, pipeline_id: str, version_id: str) -> None:
        self._call(
            "set default version",
            lambda: self._kfp.pipelines.update_pipeline_default_version(pipeline_id, version_id),
        )

    def ensure_experiment(self, name: str, description: str) -> str:
        """Get or create by name; a concurrent creator's 409 means 'adopt theirs'."""
        existing = self.find_experiment(name)
        if existing:
            return existing
        return self._create(
            "create experiment",
            lambda: (
                self._kfp.experiments.create_experiment(
                    body=kfp_server_api.ApiExperiment(name=name, description=description)
                ).id
            ),
            lambda: self.find_experiment(name),
        )

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
        mine = self._create(
            "start run",
            lambda: _run(
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

    def settle_duplicate_runs(self, experiment_id: str, names: list[str]) -> dict[str, ServerRun]:
        """Run names are not unique on the server, so two runners racing (a webhook delivered
        twice) can each start one. After starting its runs, each runner lists their names: the
        oldest run of a name stays and the others are stopped and deleted, by whichever runner
        sees them. Returns the run that stays, by name."""
        by_name: dict[str, list[ServerRun]] = {}
        for run in self._runs_named(experiment_id, names):
            by_name.setdefault(run.name, []).append(run)
        keepers = {}
        for name, same in by_name.items():
            keeper, *extra = sorted(same, key=lambda r: (r.created_at or _NEVER, r.id))
            keepers[name] = keeper
            for run in extra:
                self._remove_run(run.id)
                logger.warning("duplicate_run_removed", run=name, run_id=run.id, kept=keeper.id)
        return keepers

    def _remove_run(self, run_id: str) -> None:
        for operation, call in (
            ("terminate duplicate run", self._kfp.runs.terminate_run),
            ("delete duplicate run", self._kfp.runs.delete_run),
        ):
            try:
                self._call(operation, lambda call=call: call(run_id))
            except (NotFoundError, ServerError) as exc:
                logger.info("duplicate_run_cleanup", operation=operation, error=str(exc))

    # Retry machinery ---------------------------------------------------------------------

    def _create(
        self,
        operation: str,
        create: Callable[[], T],
        find: Callable[[], T | None],
        *,
        unseen: str = "",
    ) -> T:
        """Create once; if a lost answer or a concurrent runner already made it, adopt that.

        `unseen` (uploads) is the error when the name stays taken but the object never shows.
        """
        try:
            return self._call(operation, create, adopt=find)
        except ConflictError:
            lookup = f"{operation}: look up existing"
            existing = self._until_visible(lookup, find) if unseen else self._call(lookup, find)
            if existing is None and unseen:
                raise ConflictError(unseen) from None
            if existing is None:
                raise
            logger.info("adopted_existing", operation=operation)
            return existing

    def _until_visible(self, operation: str, find: Callable[[], T | None]) -> T | None:
        """An upload's name is taken from the moment its row is inserted (CREATING), but get
        and list show it only once its file is stored: a racing upload's object appears a
        little later. Look again with the retry backoff, as often as a failing call is tried."""
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self._retries),
            wait=self._backoff,
            retry=tenacity.retry_if_result(lambda found: found is None),
            retry_error_callback=lambda state: None,
            before_sleep=_log_unseen(operation),
        )
        return retrying(self._call, operation, find)

    def _call(
        self, operation: str, call: Callable[[], T], adopt: Callable[[], T | None] | None = None
    ) -> T:
        """Run `call` under the retry policy; before a retried create, look for its result."""
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self._retries),
            wait=self._wait,
            retry=self._should_retry,
            before_sleep=_log_retry(operation),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    if adopt is not None and attempt.retry_state.attempt_number > 1:
                        existing = adopt()
                        if existing is not None:
                            logger.info("adopted_existing", operation=operation)
                            return existing
                    return call()
        except TRANSPORT_ERRORS as exc:
            raise _translate(operation, self.host, exc, self._token_source) from None
        raise AssertionError("tenacity ended without an outcome")

    def _should_retry(self, state: tenacity.RetryCallState) -> bool:
        exc = state.outcome.exception()
        if _status(exc) == 403:
            return state.attempt_number < 2
        return _is_transient(exc)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        retry_after = _retry_after(state.outcome.exception())
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER)
        return self._backoff(state)

    def _named(self, operation: str, field: str, list_call, name: str, **keys) -> Iterator:
        """The objects a list endpoint holds under exactly this name, page by page."""
        return self._filtered_pages(
            operation, field, list_call, {"filter": _name_filter(name)}, **keys
        )

    def _filtered_pages(
        self, operation: str, field: str, list_call, criteria: dict[str, str], **keys
    ) -> Iterator:
        """A filtered or sorted listing, page by page. The server checks a filter or sort sent
        with a page token against the token's own and refuses what it cannot match (a re-sent
        IN filter never matches), so they go with the first page only; the page size and the
        reference keys are not in the token, so they go with every page."""

        def fetch(token: str):
            first = {} if token else criteria
            return list_call(page_token=token, page_size=PAGE_SIZE, **keys, **first)

        return self._pages(operation, field, fetch)

    def _pages(self, operation: str, field: str, fetch: Callable[[str], object]) -> Iterator:
        token = ""
        while True:
            page = self._call(operation, lambda token=token: fetch(token))
            yield from getattr(page, field) or []
            token = page.next_page_token or ""
            if not token:
                return


class _GuardedTektonClient(TektonClient):
    """TektonClient with a request timeout, no hidden urllib3 retries, and a JSON check.

    Its constructor calls healthz (5 tries, 5 s apart, no timeout); here that call is made once,
    through the guarded transport, and the caller's retry policy owns the retries.
    """

    def __init__(self, *, request_timeout: float, **kwargs):
        self._request_timeout = request_timeout
        super().__init__(**kwargs)
        _guard_transport(self._healthz_api.api_client.rest_client, request_timeout)

    def _load_config(self, *args, **kwargs):
        config = super()._load_config(*args, **kwargs)
        config.retries = False
        return config

    def get_kfp_healthz(self):
        _guard_transport(self._healthz_api.api_client.rest_client, self._request_timeout)
        return self._healthz_api.get_healthz()


def _guard_transport(rest_client, timeout: float) -> None:
    """Wrap the one method every generated call goes through (idempotent)."""
    if getattr(rest_client, "_dsp_guarded", False):
        return
    original = rest_client.request

    def request(method, url, *args, _request_timeout=None, **kwargs):
        try:
            response = original(
                method,
                url,
                *args,
                _request_timeout=_request_timeout or (timeout, timeout),
                **kwargs,
            )
        except ApiException as exc:
            if exc.status == 0:
                raise _tls_failure(exc.reason) from None
            raise
        if 200 <= response.status < 300 and not _is_json(response):
            path = urllib.parse.urlsplit(url).path
            raise UnexpectedResponse(
                f"{method} {path} answered {response.status} with a non-JSON page: is DSP_HOST "
                "the DSP API route (not the dashboard) and is the token accepted?"
            )
        return response

    rest_client.request = request
    rest_client._dsp_guarded = True


def _is_json(response) -> bool:
    """Judge the body, not the header: DSP v1's healthz sends its JSON as text/plain."""
    if "html" in (response.urllib3_response.headers.get("Content-Type") or "").lower():
        return False
    body = (response.data or b"").strip()
    if not body:
        return True
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


class TLSHandshakeDropped(ConnectionError):
    """A TLS connection closed mid-handshake (a router dropping an idle connection): transient."""


def _tls_failure(reason) -> Exception:
    """The generated client turns urllib3's SSLError into ApiException(status=0) and then
    crashes on its empty body; tell a bad certificate (permanent) from a dropped handshake."""
    text = str(reason)
    if any(mark in text for mark in ("CERTIFICATE_VERIFY_FAILED", "hostname", "WRONG_VERSION")):
        return TLSError(
            f"TLS verification failed ({_certificate_problem(text)}); set DSP_CA_BUNDLE to the "
            "CA that signed the server's certificate"
        )
    return TLSHandshakeDropped(f"TLS connection dropped: {text[:200]}")


def _certificate_problem(text: str) -> str:
    match = re.search(r"certificate verify failed: ([^(]+)", text)
    if match:
        return match.group(1).strip()
    return "wrong protocol: is the host really https?" if "WRONG_VERSION" in text else "hostname"


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


def _status(exc: BaseException | None) -> int | None:
    return exc.status if isinstance(exc, ApiException) else None


def _is_transient(exc: BaseException | None) -> bool:
    if isinstance(exc, ApiException):
        return exc.status in RETRYABLE_STATUS and not _already_exists(exc) and not _invalid(exc)
    return isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError))


def _invalid(exc: ApiException) -> bool:
    """The upload endpoints answer 500 for a file the server will never accept."""
    return exc.status == 500 and "unknown template format" in (exc.body or "")


def _already_exists(exc: ApiException) -> bool:
    return exc.status == 409 or (exc.status == 500 and "already exist" in (exc.body or ""))


def _retry_after(exc: BaseException | None) -> float | None:
    if not isinstance(exc, ApiException) or exc.status not in (429, 503) or not exc.headers:
        return None
    try:
        return max(0.0, float(exc.headers.get("Retry-After")))
    except (TypeError, ValueError):
        return None


def _translate(operation: str, host: str, exc: Exception, token_source: str) -> RunnerError:
    """Every way the network or the server can fail a call, as one typed line that says what to
    check; a 403 names where the token came from (never the token)."""
    if isinstance(exc, ApiException):
        if exc.status == 403:
            return AuthError(
                f"{operation}: the server refused the token (403) from {token_source}: check "
                "that it is valid and that its account may `get` the route ds-pipeline-<dspa> in "
                "the DSP namespace"
            )
        message = _error_message(exc.body) or exc.reason
        if _already_exists(exc):
            return ConflictError(f"{operation}: {message}")
        if exc.status == 404:
            return NotFoundError(f"{operation}: {message}")
        return ServerError(f"{operation}: HTTP {exc.status}: {message}")
    return ServerError(
        f"{operation}: could not reach {host}: {type(exc).__name__}: {_first_line(exc)}"
    )


def _error_message(body: str | None) -> str:
    """The user-facing text of either error shape the server uses, or a short HTML hint."""
    if not body:
        return ""
    try:
        data = json.loads(body)
    except ValueError:
        return "the server answered with a non-JSON page" if "<" in body else body[:200]
    if not isinstance(data, dict):
        return str(data)[:200]
    details = data.get("details") or []
    if details and isinstance(details[0], dict) and details[0].get("error_message"):
        return details[0]["error_message"]
    return data.get("error_message") or data.get("message") or data.get("error") or ""


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""


def _log_retry(operation: str):
    def log(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception()
        logger.warning(
            "server_call_retry",
            operation=operation,
            attempt=state.attempt_number,
            wait_s=round(state.upcoming_sleep, 2),
            error=_status(exc) or type(exc).__name__,
        )

    return log


def _log_unseen(operation: str):
    def log(state: tenacity.RetryCallState) -> None:
        logger.info(
            "upload_not_visible_yet",
            operation=operation,
            attempt=state.attempt_number,
            wait_s=round(state.upcoming_sleep, 2),
        )

    return log


def _name_filter(name: str) -> str:
    return json.dumps({"predicates": [{"op": "EQUALS", "key": "name", "string_value": name}]})


def _substring_filter(text: str) -> str:
    return json.dumps({"predicates": [{"op": "IS_SUBSTRING", "key": "name", "string_value": text}]})


def _names_filter(names: list[str]) -> str:
    return json.dumps(
        {"predicates": [{"op": "IN", "key": "name", "string_values": {"values": names}}]}
    )


def _pipeline(api) -> ServerPipeline:
    default = api.default_version
    return ServerPipeline(
        id=api.id, name=api.name, default_version=_version(default, api.id) if default else None
    )


def _version(api, pipeline_id: str) -> ServerVersion:
    return ServerVersion(
        id=api.id,
        name=api.name,
        description=api.description or "",
        pipeline_id=pipeline_id,
        parameters=tuple((p.name, p.value) for p in api.parameters or []),
    )


def _reference(api, kind: str) -> str:
    """The id an object's resource references give for `kind` (EXPERIMENT, PIPELINE_VERSION)."""
    return next(
        (ref.key.id for ref in api.resource_references or [] if ref.key and ref.key.type == kind),
        "",
    )


def _run(api) -> ServerRun:
    return ServerRun(
        id=api.id,
        name=api.name,
        status=api.status or "",
        error=api.error or "",
        version_id=_reference(api, "PIPELINE_VERSION"),
        created_at=_timestamp(api.created_at),
        finished_at=_timestamp(api.finished_at),
    )


def _job(api) -> ServerJob:
    return ServerJob(
        id=api.id,
        name=api.name,
        description=api.description or "",
        enabled=bool(api.enabled),
        experiment_id=_reference(api, "EXPERIMENT"),
    )


def _timestamp(value) -> datetime.datetime | None:
    """The server sends the zero time (1970) for 'not yet'."""
    if not value or value.year <= 1970:
        return None
    return value


def _task_results(manifest: str | None) -> dict[str, dict[str, str]]:
    """{task: {result: value}} from a PipelineRun status (embedded taskRuns)."""
    try:
        status = json.loads(manifest or "{}").get("status") or {}
    except (ValueError, AttributeError):
        return {}
    outputs = {}
    for task_run in (status.get("taskRuns") or {}).values():
        results = (task_run.get("status") or {}).get("taskResults") or []
        if results:
            outputs[task_run.get("pipelineTaskName", "?")] = {
                r["name"]: r.get("value", "") for r in results if "name" in r
            }
    return outputs
