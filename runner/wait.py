"""Wait for runs to finish, reading each run's outcome as its flavour's client maps it.

A poll that fails (after the client's retries) is logged and tried again on the next round, so a
blip or a token rotation does not end the wait; a refused token does, and so do
FAILED_POLLS_LIMIT failed polls of one run in a row: that run's state cannot be read, which is
an error the job reports (exit 1), not a run "still running" at the timeout.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import structlog

from runner import stopping
from runner.errors import AuthError, NotFoundError, ServerError, TLSError
from runner.server import FAILED, RUNNING, Server, ServerRun

logger = structlog.get_logger()

FAILED_POLLS_LIMIT = 5
"""Status reads of one run that may fail in a row, each after the client's own retries
(DSP_RETRIES), before the wait for that run ends as an error."""
UNREADABLE = "unreadable"


@dataclasses.dataclass(frozen=True)
class Finished:
    run: ServerRun
    outcome: str
    duration_s: float | None
    error: str = ""


def wait_for(
    client: Server,
    timeouts: dict[str, float],
    *,
    interval: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    relocate: Callable[[str], ServerRun | None] = lambda run_id: None,
    names: dict[str, str] | None = None,
) -> dict[str, Finished]:
    """Poll until every run is final, unreadable or past its timeout; unfinished runs come back
    'running', runs whose state could not be read 'unreadable' with the last error."""
    start = clock()
    deadlines = {run_id: start + timeout for run_id, timeout in timeouts.items()}
    pending = list(deadlines)
    done: dict[str, Finished] = {}
    last: dict[str, ServerRun] = {}
    failed_polls: dict[str, int] = {}
    names = names or {}
    while pending:
        for run_id in list(pending):
            try:
                run = _poll(client, run_id, relocate)
            except (AuthError, TLSError):
                raise
            except ServerError as exc:
                failed_polls[run_id] = failed_polls.get(run_id, 0) + 1
                logger.warning("run_poll_failed", run_id=run_id, error=str(exc))
                if failed_polls[run_id] >= FAILED_POLLS_LIMIT:
                    pending.remove(run_id)
                    done[run_id] = _unreadable(run_id, names.get(run_id, ""), last, exc)
                continue
            failed_polls.pop(run_id, None)
            last[run_id] = run
            if run.outcome != RUNNING:
                done[run_id] = _finished(run)
                pending.remove(run_id)
                logger.info(
                    "run_finished",
                    run=run.name,
                    run_id=run_id,
                    status=run.status,
                    duration_s=done[run_id].duration_s,
                    error=run.error or None,
                )
        now = clock()
        for run_id in [r for r in pending if now >= deadlines[r] or stopping.requested()]:
            pending.remove(run_id)
            run = last.get(run_id) or ServerRun(run_id, "", "", "", "")
            done[run_id] = Finished(run, RUNNING, None)
            logger.error("run_wait_timed_out", run=run.name, run_id=run_id, status=run.status)
        if not pending:
            break
        sleep(min(interval, max(0.0, min(deadlines[r] for r in pending) - clock())))
    return done


def _poll(client: Server, run_id: str, relocate) -> ServerRun:
    """One status read. A run deleted under us (a racing runner kept the other one of two
    duplicates) is followed to the run that now carries its name."""
    try:
        return client.get_run(run_id)
    except NotFoundError:
        survivor = relocate(run_id)
        if survivor is None:
            return ServerRun(
                run_id, "", "NotFound", "the run no longer exists on the server", "", outcome=FAILED
            )
        logger.info("run_replaced", run_id=run_id, now=survivor.id, run=survivor.name)
        return _poll(client, survivor.id, lambda _: None)


def _unreadable(run_id: str, name: str, last: dict[str, ServerRun], exc: ServerError) -> Finished:
    """The end of the wait for a run whose state the server would not tell, named by run."""
    run = last.get(run_id) or ServerRun(run_id, name, "", "", "")
    error = (
        f"run {run.name or name or run_id}: its state could not be read in "
        f"{FAILED_POLLS_LIMIT} polls in a row; last error: {exc}"
    )
    logger.error("run_status_unreadable", run=run.name or name, run_id=run_id, error=str(exc))
    return Finished(run, UNREADABLE, None, error)


def _finished(run: ServerRun) -> Finished:
    duration = None
    if run.created_at and run.finished_at:
        duration = round((run.finished_at - run.created_at).total_seconds(), 1)
    return Finished(run, run.outcome, duration)
