"""What the shared stages know of a DSP server: plain records, and the calls they make.

Each flavour's client (`runner.flavour_v1.client`, `runner.flavour_v2.client`) implements
`Server` over its own SDK and API generation, and maps its own status vocabulary to the three
outcomes below at the boundary. plan, apply, schedules, wait and reuse use nothing else, so
they read the same for DSP 1.x and DSP 2.x.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import structlog

logger = structlog.get_logger()
SUCCESS, RUNNING, FAILED = "success", "running", "failed"
"""A run's outcome, whatever words its server uses for the state."""


def server_time(value: datetime.datetime | None) -> datetime.datetime | None:
    """A time the server sent; both generations send the zero time (1970) for 'not yet'."""
    if not value or value.year <= 1970:
        return None
    return value


@dataclasses.dataclass(frozen=True)
class ServerVersion:
    id: str
    name: str
    description: str
    pipeline_id: str
    parameters: tuple[tuple[str, str | None], ...] = ()
    created_at: datetime.datetime | None = None


@dataclasses.dataclass(frozen=True)
class ServerPipeline:
    id: str
    name: str
    default_version: ServerVersion | None


@dataclasses.dataclass(frozen=True)
class ServerRun:
    """A run as the server reports it: `status` is the server's own word (a Tekton reason on
    DSP 1.x, a v2beta1 state on DSP 2.x), `outcome` what it means to a waiting job."""

    id: str
    name: str
    status: str
    error: str
    version_id: str
    created_at: datetime.datetime | None = None
    finished_at: datetime.datetime | None = None
    outputs: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    outcome: str = RUNNING
    job_id: str = ""
    """The recurring run that started it, if one did (its version is the job's)."""


@dataclasses.dataclass(frozen=True)
class ServerJob:
    """A recurring run ("job" in KFP v1)."""

    id: str
    name: str
    description: str
    enabled: bool
    experiment_id: str
    version_id: str = ""
    """The version it runs; "" for a DSP 2.x job that follows its pipeline's newest."""


@dataclasses.dataclass(frozen=True)
class ServerExperiment:
    id: str
    name: str
    description: str


class Server(Protocol):
    """The calls of one DSP server that the shared stages make: typed, retried, idempotent."""

    host: str
    default_versions: bool
    """Whether the server keeps a default version per pipeline that `set_default_version`
    changes (DSP 1.x). DSP 2.x has none: its newest version stands in for it, and a deploy
    has nothing to check or set after its uploads."""

    def list_pipelines(self) -> list[ServerPipeline]: ...
    def find_pipeline(self, name: str) -> ServerPipeline | None: ...
    def find_version(self, pipeline_id: str, name: str) -> ServerVersion | None: ...
    def find_experiment(self, name: str) -> str | None: ...
    def find_runs(self, experiment_id: str, names: Iterable[str]) -> dict[str, ServerRun]: ...
    def get_run(self, run_id: str) -> ServerRun: ...
    def list_jobs(self) -> list[ServerJob]: ...
    def find_job(self, name: str) -> ServerJob | None: ...
    def jobs_named(self, name: str) -> list[ServerJob]: ...
    def experiments_containing(self, text: str) -> list[ServerExperiment]: ...
    def create_archived_experiment(self, name: str, description: str) -> str: ...
    def delete_experiment(self, experiment_id: str) -> None: ...
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
    ) -> ServerJob: ...
    def set_job_enabled(self, job_id: str, enabled: bool) -> None: ...
    def delete_job(self, job_id: str) -> None: ...
    def upload_pipeline(self, path: Path, name: str, description: str) -> ServerPipeline: ...
    def upload_version(
        self, path: Path, pipeline_id: str, name: str, description: str, *, pipeline_name: str
    ) -> ServerVersion: ...
    def set_default_version(self, pipeline_id: str, version_id: str) -> bool:
        """Make this version the one the server runs by default; False when the server has
        no such notion (DSP 2.x) and nothing was changed."""
        ...

    def ensure_experiment(self, name: str, description: str) -> str: ...
    def start_run(
        self,
        *,
        experiment_id: str,
        name: str,
        pipeline_id: str,
        version_id: str,
        params: dict[str, str],
    ) -> ServerRun: ...
    def runs_named(self, experiment_id: str, names: Iterable[str]) -> list[ServerRun]: ...
    def remove_run(self, run_id: str) -> None: ...

    # promote (runner/promote.py) ------------------------------------------------------------
    def pipeline_file(self, pipeline_id: str, version_id: str) -> str:
        """The version's compiled pipeline as the server keeps it, as a file to upload
        elsewhere: what promote copies (never a recompile)."""
        ...

    def newest_run_of(self, pipeline_id: str, version_id: str) -> ServerRun | None:
        """The most recently created run of exactly this version, or None when it has none."""
        ...

    # Retention (`prune`) -------------------------------------------------------------------
    def list_versions(self, pipeline_id: str) -> list[ServerVersion]:
        """Every version of the pipeline, with its creation time."""
        ...

    def runs_since(self, since: datetime.datetime) -> list[ServerRun]:
        """Every run created at or after `since`, in any experiment, newest first."""
        ...

    def delete_version(self, pipeline_id: str, version_id: str) -> None:
        """Delete one version; one already gone (a retried delete) is done."""
        ...


_NEVER = datetime.datetime.max.replace(tzinfo=datetime.UTC)


def settle_duplicate_runs(
    server: Server, experiment_id: str, names: list[str]
) -> dict[str, ServerRun]:
    """Run names are not unique on the server, so two runners racing (a webhook delivered
    twice) can each start one. After starting its runs, each runner lists their names: the
    oldest run of a name (then the lowest id) stays and the others are stopped and deleted, by
    whichever runner sees them, so every runner agrees. Returns the run that stays, by name."""
    by_name: dict[str, list[ServerRun]] = {}
    for run in server.runs_named(experiment_id, names):
        by_name.setdefault(run.name, []).append(run)
    keepers = {}
    for name, same in by_name.items():
        keeper, *extra = sorted(same, key=lambda r: (r.created_at or _NEVER, r.id))
        keepers[name] = keeper
        for run in extra:
            server.remove_run(run.id)
            logger.warning("duplicate_run_removed", run=name, run_id=run.id, kept=keeper.id)
    return keepers
