"""The end of every job: one summary log event, a table for people, `summary.json` for machines.

The table goes to stdout (output, not logging); logs go to stderr.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from runner import stopping

if TYPE_CHECKING:  # a configuration error is reported too, before kfp (and apply) is imported
    from runner.apply import Outcome
    from runner.harness import ModuleFailure

logger = structlog.get_logger()
SCHEMA = "dsp-runner/summary/v1"
OK, SOME_FAILED, RUN_FAILED, WAIT_TIMED_OUT = 0, 1, 3, 4
RUN_IDS_BYTES = 2048


@dataclasses.dataclass
class Summary:
    command: str
    host: str
    experiment: str
    commit: str
    repo: str
    outcomes: list[Outcome]
    failures: list[ModuleFailure]
    duration_s: float = 0.0
    error: str = ""
    """The error that ended the job early (token refused, TLS, configuration, a bug)."""
    error_exit_code: int = 0

    @property
    def counts(self) -> dict[str, int]:
        return {
            "pipelines": len(self.outcomes) + len(self.failures),
            "pipelines_created": sum(o.action == "create" and not o.error for o in self.outcomes),
            "versions_created": sum(
                bool(o.version_id) and o.action in ("create", "new-version") for o in self.outcomes
            ),
            "unchanged": sum(
                o.action in ("unchanged", "set-default") and not o.error for o in self.outcomes
            ),
            "runs_started": sum(o.run_started for o in self.outcomes),
            "schedule_changes": sum(len(o.schedules) for o in self.outcomes),
            "runs_succeeded": sum(o.run_outcome == "success" for o in self.outcomes),
            "runs_failed": sum(o.run_outcome == "failed" for o in self.outcomes),
            "runs_unfinished": sum(o.run_outcome == "running" for o in self.outcomes),
            "failed": len(self.failures) + sum(bool(o.error) for o in self.outcomes),
        }

    @property
    def exit_code(self) -> int:
        """Worst first: the error that ended the job, a stop request, a failed run, a wait that
        timed out, a failed pipeline. The process exits with exactly this code."""
        counts = self.counts
        if self.error_exit_code:
            return self.error_exit_code
        if stopping.requested():
            return stopping.EXIT_CODE
        if counts["runs_failed"]:
            return RUN_FAILED
        if counts["runs_unfinished"]:
            return WAIT_TIMED_OUT
        return SOME_FAILED if counts["failed"] else OK

    def as_dict(self) -> dict:
        return {
            "schema": SCHEMA,
            "command": self.command,
            "host": self.host,
            "experiment": self.experiment,
            "commit": self.commit,
            "repo": self.repo,
            "duration_s": round(self.duration_s, 3),
            "exit_code": self.exit_code,
            "error": self.error,
            "counts": self.counts,
            "pipelines": [dataclasses.asdict(o) for o in self.outcomes],
            "failures": [
                {
                    "source": str(f.source),
                    "line": f.line,
                    "pipeline": f.pipeline,
                    "reason": f.reason,
                }
                for f in self.failures
            ],
        }


def finish(summary: Summary, output_dir: Path, stream, results_dir: Path | None = None) -> Path:
    """Log, print and write the summary (and the Tekton results); returns the summary's path."""
    path = record(summary, output_dir, results_dir)
    for failure in summary.failures:
        logger.error(
            "module_failed", file=str(failure.source), line=failure.line, reason=failure.reason
        )
    logger.info(
        f"{summary.command}_summary",
        **summary.counts,
        exit_code=summary.exit_code,
        summary_file=str(path),
    )
    print(table(summary), file=stream)
    return path


def record(summary: Summary, output_dir: Path, results_dir: Path | None = None) -> Path:
    """Write `summary.json` and the Tekton results only: for a job that ended before it had
    anything to show, whose one error line is all a person needs."""
    path = write(summary, output_dir)
    if results_dir is not None:
        write_results(summary, path, results_dir)
    return path


def write(summary: Summary, output_dir: Path) -> Path:
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "summary.json"
    write_atomically(path, json.dumps(summary.as_dict(), indent=2) + "\n")
    return path


def write_atomically(path: Path, text: str) -> None:
    """Replace the file whole: a reader, or a second job sharing the folder, never sees half."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as file:
        file.write(text)
    os.replace(temporary, path)


def write_results(summary: Summary, summary_path: Path, results_dir: Path) -> None:
    """Tekton Task results: tiny files, all of them together well under Tekton's 4 KiB."""
    run_ids: list[str] = []
    for outcome in summary.outcomes:
        if outcome.run_id and len(json.dumps([*run_ids, outcome.run_id])) <= RUN_IDS_BYTES:
            run_ids.append(outcome.run_id)
    results = {
        "versions-created": str(summary.counts["versions_created"]),
        "run-ids": json.dumps(run_ids),
        "summary-path": str(summary_path),
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    for name, value in results.items():
        (results_dir / name).write_text(value)


def table(summary: Summary) -> str:
    rows = [("PIPELINE", "ACTION", "VERSION", "RUN", "RESULT")]
    for o in summary.outcomes:
        rows.append((o.pipeline, o.action, o.version_name, o.run_id or "-", _result(o)))
    for f in summary.failures:
        rows.append((f.pipeline or f.source.name, "-", "-", "-", f"FAILED: {f.describe()}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[4]
        for row in rows
    ]
    c = summary.counts
    lines.append(
        f"{c['pipelines']} pipeline(s): {c['pipelines_created']} created, "
        f"{c['versions_created']} new version(s), {c['unchanged']} unchanged, "
        f"{c['runs_started']} run(s) started, {c['failed']} failed."
    )
    if c["runs_succeeded"] or c["runs_failed"] or c["runs_unfinished"]:
        lines.append(
            f"runs: {c['runs_succeeded']} succeeded, {c['runs_failed']} failed, "
            f"{c['runs_unfinished']} still running when the wait ended."
        )
    if summary.error:
        lines.append(f"the job ended early: {summary.error}")
    return "\n".join(lines)


def _result(o: Outcome) -> str:
    """One cell: the error, else the run's final state with duration, outputs and link."""
    if o.error:
        return f"FAILED: {o.error}"
    if not o.run_outcome:
        return "run started" if o.run_started else ("run exists" if o.run_id else "ok")
    parts = [o.run_status or "unfinished"]
    if o.run_duration_s is not None:
        parts.append(f"{o.run_duration_s:g}s")
    if o.run_outputs:
        parts.extend(_last_outputs(o.run_outputs))
    if o.run_url:
        parts.append(o.run_url)
    return " ".join(parts)


def _last_outputs(outputs: dict[str, dict[str, str]]) -> list[str]:
    """The results of the last task that reported any; of each of its iterations when it ran
    in a loop (`square[1]`, `square[2]`, ...)."""
    last = list(outputs)[-1]
    base = last.split("[", 1)[0]
    tasks = [t for t in outputs if t == last or ("[" in last and t.split("[", 1)[0] == base)]
    return [f"{task}.{k}={v}" for task in tasks for k, v in outputs[task].items()]
