"""The end of every job: one summary log event, a table for people, `summary.json` for machines.

The table goes to stdout (output, not logging); logs go to stderr.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import structlog

from runner.apply import Outcome
from runner.compiler import ModuleFailure

logger = structlog.get_logger()
SCHEMA = "dsp-runner/summary/v1"
OK, SOME_FAILED = 0, 1


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

    @property
    def counts(self) -> dict[str, int]:
        return {
            "pipelines": len(self.outcomes) + len(self.failures),
            "pipelines_created": sum(o.action == "create" and not o.error for o in self.outcomes),
            "versions_created": sum(bool(o.version_id) and o.action in ("create", "new-version")
                                    for o in self.outcomes),
            "unchanged": sum(o.action in ("unchanged", "set-default") and not o.error
                             for o in self.outcomes),
            "runs_started": sum(o.run_started for o in self.outcomes),
            "failed": len(self.failures) + sum(bool(o.error) for o in self.outcomes),
        }

    @property
    def exit_code(self) -> int:
        return SOME_FAILED if self.counts["failed"] else OK

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
            "counts": self.counts,
            "pipelines": [dataclasses.asdict(o) for o in self.outcomes],
            "failures": [{"source": str(f.source), "line": f.line, "pipeline": f.pipeline,
                          "reason": f.reason} for f in self.failures],
        }


def finish(summary: Summary, output_dir: Path, stream) -> Path:
    """Log, print and write the summary; returns the summary file's path."""
    path = write(summary, output_dir)
    for failure in summary.failures:
        logger.error("module_failed", file=str(failure.source), line=failure.line,
                     reason=failure.reason)
    logger.info(f"{summary.command}_summary", **summary.counts, exit_code=summary.exit_code,
                summary_file=str(path))
    print(table(summary), file=stream)
    return path


def write(summary: Summary, output_dir: Path) -> Path:
    """Write atomically, so a reader never sees half a file."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "summary.json"
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(summary.as_dict(), indent=2) + "\n")
    os.replace(temporary, path)
    return path


def table(summary: Summary) -> str:
    rows = [("PIPELINE", "ACTION", "VERSION", "RUN", "RESULT")]
    for o in summary.outcomes:
        run = o.run_id or (f"{o.run_name} (exists)" if o.run_name else "-")
        rows.append((o.pipeline, o.action, o.version_name, run,
                     f"FAILED: {o.error}" if o.error else "ok"))
    for f in summary.failures:
        rows.append((f.pipeline or f.source.name, "-", "-", "-", f"FAILED: {f.describe()}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[4]
             for row in rows]
    c = summary.counts
    lines.append(
        f"{c['pipelines']} pipeline(s): {c['pipelines_created']} created, "
        f"{c['versions_created']} new version(s), {c['unchanged']} unchanged, "
        f"{c['runs_started']} run(s) started, {c['failed']} failed.")
    return "\n".join(lines)
