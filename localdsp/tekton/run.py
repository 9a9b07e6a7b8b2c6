"""Entry point: execute a kfp-tekton PipelineRun on this machine, its steps as local subprocesses.

localdsp has no cluster, yet a created run should really run: `execute` checks the PipelineRun
that kfp_tekton compiled, plans it, and hands it to the scheduler, reporting progress and the end
as the PipelineRun with a Tekton v1beta1 `status`. A run Tekton would reject ends with Tekton's
reason before any task starts; what cannot be emulated faithfully fails the run with a message
naming the feature, never a silent success.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

from localdsp.tekton.jobs import dry_run
from localdsp.tekton.plan import Identity, identity_of, make_plan
from localdsp.tekton.scheduler import Scheduler
from localdsp.tekton.status import FAILED, Execution, now, pipelinerun_with_status
from localdsp.tekton.validation import RunError
from localdsp.tekton.volumes import CLAIMS_VARIABLE

log = logging.getLogger(__name__)


def execute(
    pipelinerun: dict,
    *,
    workdir: Path,
    params: dict[str, str] | None = None,
    timeout: float | None = None,
    cancel: threading.Event | None = None,
    on_update: Callable[[dict], None] | None = None,
    max_parallel: int = 2,
    env: Mapping[str, str] | None = None,
) -> Execution:
    """Run a kfp-tekton PipelineRun locally and return how it ended.

    Blocks until the run ends; call it from a worker thread and set `cancel` to stop it.
    `params` override the run's spec.params; `timeout` (seconds) caps the run's own timeout.
    `on_update` gets the live PipelineRun (with `status`) whenever a task starts or ends.
    `env` is the steps' base environment (default: this process's), so a server can keep its
    credentials out of the steps; its `LOCALDSP_CLAIMS`, when set, is the folder of the
    namespace's PersistentVolumeClaims (claims outlive runs), else `<workdir>/_claims`.
    Never raises for a bad manifest or a failing step: those end the run with a reason.
    """
    started = now()
    identity = identity_of(pipelinerun if isinstance(pipelinerun, dict) else {})
    try:
        workdir = Path(workdir).resolve()  # steps run in their own folders: no relative paths
        workdir.mkdir(parents=True, exist_ok=True)
        base_env = os.environ if env is None else env
        claims = Path(base_env[CLAIMS_VARIABLE]) if base_env.get(CLAIMS_VARIABLE) else None
        plan = make_plan(pipelinerun, identity, workdir, params, timeout, claims)
        dry_run(plan)
        run = Scheduler(
            plan,
            pipelinerun,
            cancel=cancel,
            on_update=on_update,
            max_parallel=max_parallel,
            env=base_env,
        )
    except RunError as err:
        return _rejected(pipelinerun, identity, started, err.reason, err.message, on_update)
    except Exception as exc:
        log.exception("local executor: could not start run %s", identity.name)
        return _rejected(
            pipelinerun, identity, started, FAILED, f"executor error: {exc!r}", on_update
        )
    return run.run()


def _rejected(
    pipelinerun: dict,
    identity: Identity,
    started: datetime,
    reason: str,
    message: str,
    on_update: Callable[[dict], None] | None,
) -> Execution:
    """The Execution of a run that never started a task (validation, setup)."""
    execution = Execution(
        name=identity.name,
        uid=identity.uid,
        reason=reason,
        message=message,
        started=started,
        finished=now(),
    )
    if on_update is not None and isinstance(pipelinerun, dict):
        try:
            on_update(pipelinerun_with_status(pipelinerun, execution))
        except Exception:
            log.exception("local executor: on_update failed for run %s", identity.name)
    return execution
