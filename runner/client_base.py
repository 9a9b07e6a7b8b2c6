"""What both flavours' clients do the same way, over SDK calls each flavour supplies.

A flavour's `DSPClient` subclasses `ClientBase` and provides its generated client (`_connect`),
its generation check and the few raw calls below; the rules around them (connect once under the
retry policy, look an experiment up before creating it, treat a second delete as done, the first
of any duplicate names) are written here once.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from runner.calls import Calls
from runner.errors import NotFoundError
from runner.server import ServerJob, ServerRun


class ClientBase:
    """The shared half of `runner.server.Server`; subclasses fill in the SDK calls."""

    API_EXCEPTION: type[Exception]
    """The generated client's HTTP error class."""
    FORBIDDEN_HINT: str
    """What a refused token's account must be allowed, for the 403 line."""

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
        concurrency: int = 1,
    ):
        self.host = host
        self.concurrency = max(1, concurrency)
        """Requests a listing may make at once (DSP_CONCURRENCY), where it needs one per item."""
        self._calls = Calls(
            host=host,
            token_source=credentials.source,
            retries=retries,
            retry_max_wait=retry_max_wait,
            api_exception=self.API_EXCEPTION,
            forbidden_hint=self.FORBIDDEN_HINT,
        )
        self._kfp = self._calls.call(
            "connect",
            lambda: self._connect(
                host=host,
                credentials=credentials,
                ssl_ca_cert=str(ca_bundle) if ca_bundle else None,
                verify_ssl=verify_tls,
                request_timeout=request_timeout,
            ),
        )
        self._check_generation()

    # The flavour's part ------------------------------------------------------------------

    def _connect(self, **options):
        """The guarded generated client (its constructor calls healthz once)."""
        raise NotImplementedError

    def _check_generation(self) -> None:
        """Refuse a server of the other API generation, before anything is written."""
        raise NotImplementedError

    def _create_experiment(self, operation: str, name: str, description: str) -> str:
        raise NotImplementedError

    def _archive_experiment(self, experiment_id: str) -> None:
        raise NotImplementedError

    def _delete_experiment(self, experiment_id: str) -> None:
        raise NotImplementedError

    def _job_switch(self, enabled: bool) -> Callable[[str], object]:
        """The raw call that enables (or disables) a recurring run by id."""
        raise NotImplementedError

    def _delete_job(self, job_id: str) -> None:
        raise NotImplementedError

    def _delete_version(self, pipeline_id: str, version_id: str) -> None:
        raise NotImplementedError

    def _newest_runs(self) -> Iterator[ServerRun]:
        """Every run of any experiment, newest first, fetched page by page as it is read."""
        raise NotImplementedError

    def runs_named(self, experiment_id: str, names: Iterable[str]) -> list[ServerRun]:
        raise NotImplementedError

    def jobs_named(self, name: str) -> list[ServerJob]:
        raise NotImplementedError

    def find_experiment(self, name: str) -> str | None:
        raise NotImplementedError

    # Written once ------------------------------------------------------------------------

    def find_runs(self, experiment_id: str, names: Iterable[str]) -> dict[str, ServerRun]:
        """The runs of an experiment with these names (the first of any duplicates)."""
        runs: dict[str, ServerRun] = {}
        for run in self.runs_named(experiment_id, names):
            runs.setdefault(run.name, run)
        return runs

    def find_job(self, name: str) -> ServerJob | None:
        found = self.jobs_named(name)
        return found[0] if found else None

    def ensure_experiment(self, name: str, description: str) -> str:
        """Get or create by name; a concurrent creator's 409 means 'adopt theirs'."""
        existing = self.find_experiment(name)
        if existing:
            return existing
        return self._create_experiment("create experiment", name, description)

    def create_archived_experiment(self, name: str, description: str) -> str:
        """Create (or adopt) an experiment and archive it, out of the dashboard's list: the
        servers ignore a storage state given at creation, so this takes two requests."""
        experiment_id = self._create_experiment("create fingerprint record", name, description)
        self._calls.call(
            "archive fingerprint record", lambda: self._archive_experiment(experiment_id)
        )
        return experiment_id

    def delete_experiment(self, experiment_id: str) -> None:
        """Deleting what is already gone (a retried delete, another runner) is success."""
        self._gone_is_done(
            "delete fingerprint record", lambda: self._delete_experiment(experiment_id)
        )

    def set_job_enabled(self, job_id: str, enabled: bool) -> None:
        """Disabling a recurring run another deploy already deleted is done, not an error."""
        call = self._job_switch(enabled)
        try:
            self._calls.call(
                "enable recurring run" if enabled else "disable recurring run",
                lambda: call(job_id),
            )
        except NotFoundError:
            if enabled:
                raise

    def delete_job(self, job_id: str) -> None:
        """Deleting what is already gone (a retried delete) is success."""
        self._gone_is_done("delete recurring run", lambda: self._delete_job(job_id))

    def runs_since(self, since: datetime.datetime) -> list[ServerRun]:
        """Runs created at or after `since`, newest first: the listing is read only as far back
        as `since` (`prune` asks for the last few days); a run not yet timed counts as new."""
        found = []
        for run in self._newest_runs():
            if run.created_at is not None and run.created_at < since:
                break
            found.append(run)
        return found

    def delete_version(self, pipeline_id: str, version_id: str) -> None:
        """`prune`: a delete whose answer was lost is retried and then meets the server's 404,
        which means the first try did it; another runner's delete, too."""
        self._gone_is_done(
            "delete pipeline version", lambda: self._delete_version(pipeline_id, version_id)
        )

    def _gone_is_done(self, operation: str, call: Callable[[], object]) -> None:
        try:
            self._calls.call(operation, call)
        except NotFoundError:
            pass
