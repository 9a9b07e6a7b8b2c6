"""State and rules of the DSP v1 API server (kfp-tekton 1.5.x in single-user mode).

`Backend` holds the rules (validation, default versions, which manifest a run uses,
terminate/retry) and raises `errors.ApiError`s with the server's wording; it knows nothing of
HTTP. They are split by job: `backend_pipelines` (pipelines and versions), `backend_runs`
(experiments, runs, jobs), over `rules.StoreRules` (what v2's backend shares); the models are in
`models_v1`, the templates in `templates_v1`. Run execution is delegated to an optional
`RunExecutor`. The models and helpers other modules (and tests) import from here stay importable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from localdsp.backend_runs import RunRules
from localdsp.errors import InvalidInput
from localdsp.models import ListRequest, Trigger
from localdsp.models_v1 import (
    IN_PROGRESS,
    TABLES,
    Experiment,
    Job,
    Parameter,
    Pipeline,
    PipelineSpec,
    PipelineVersion,
    Reference,
    Run,
    RunExecutor,
)
from localdsp.pipeline_files import MAX_FILE_SIZE, read_pipeline_file, upload_name
from localdsp.store import Store, StoreClosed
from localdsp.templates_v1 import runtime_pipelinerun

__all__ = [
    "IN_PROGRESS",
    "MAX_FILE_SIZE",
    "Backend",
    "Experiment",
    "InvalidInput",
    "Job",
    "ListRequest",
    "Parameter",
    "Pipeline",
    "PipelineSpec",
    "PipelineVersion",
    "Reference",
    "Run",
    "RunExecutor",
    "StoreClosed",
    "Trigger",
    "read_pipeline_file",
    "runtime_pipelinerun",
    "upload_name",
]


class Backend(RunRules):
    """The server's resource manager: every rule, over a `Store` in `data_dir`."""

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
        super().__init__(Store(data_dir / "localdsp.sqlite", TABLES), clock)
        self.executor = executor
        self.auto_update_default = auto_update_default
        self._default_experiment()

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
