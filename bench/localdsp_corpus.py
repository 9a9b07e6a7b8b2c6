"""How much of a corpus of kfp-tekton pipelines localdsp's executor runs: a table and a figure.

Usage: python bench/localdsp_corpus.py CORPUS_DIR [--timeout 60] [--compile-timeout 60]
       [--only SUBSTRING] [--verbose]

Every `*.py` under CORPUS_DIR (not `__init__.py`) is a pipeline module. Each is imported and
compiled in a forked child by dsp-runner's own compile (`runner.harness` with kfp-tekton's
`TektonCompiler`, as `make compile` does); each pipeline it defines becomes the PipelineRun the
DSP server would create for a run with the pipeline's defaults (`localdsp.templates_v1`), and that
runs through `localdsp.tekton.run.execute` with a short timeout, its steps as local processes. The
corpus used for the figure in docs/localdsp.md is kfp-tekton 1.5.x's compiler test data and
samples (see there for the command that extracts them); nothing of it is kept in this repository.

End states, one per pipeline:
* `Succeeded`: the run ended Succeeded or Completed (some tasks skipped), as on a cluster.
* `Failed`: the run ran and failed (a step exited non-zero, timed out, or a task's result was
  missing): the executor supports what the pipeline uses, the step itself failed here (often a
  package or binary the image has and this machine lacks).
* `unsupported`: the executor refused something the pipeline uses, naming the feature (also
  inside a loop: an iteration PipelineRun it refused, at any depth).
* `needs network`: not run, by the rule below.
* `compile error`: the module did not import or compile (no `@dsl.pipeline`, a missing package,
  a name the server refuses): it never reaches a server either.

"Needs network" rule, applied to the compiled PipelineRun before anything runs: a pipeline needs
the network when one of its steps (command, args, script, env values) calls a network client
(`curl`, `wget`, `gsutil`, `gcloud`, `kubectl`, `oc`, `aws`, `mc`, `yum` where a command starts;
`git clone`, `pip install`, `apt-get`, `apk add`, `npm install` anywhere), opens a URL from
Python (`import requests`, `requests.get`/`post`/..., `urllib`, `urlopen`, `boto3`, `minio`,
`google.cloud`), or when a step or a pipeline parameter default holds a remote location
(`http://`, `https://`, `gs://`, `s3://`). Nothing else is excluded, and
every pipeline is listed whatever its state. The share printed at the end is the unsupported
pipelines among those that ran (Succeeded + Failed + unsupported): the network-free pipelines
that compiled.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import tempfile
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from localdsp.runs import scrubbed_env  # noqa: E402
from localdsp.tekton.run import execute  # noqa: E402
from localdsp.tekton.status import Execution, TaskOutcome  # noqa: E402
from localdsp.templates_v1 import parse_pipelinerun, runtime_pipelinerun  # noqa: E402
from runner import harness  # noqa: E402
from runner.flavour_v1 import compile as compile_v1  # noqa: E402

SUCCEEDED = "Succeeded"
FAILED = "Failed"
UNSUPPORTED = "unsupported"
NETWORK = "needs network"
COMPILE_ERROR = "compile error"
STATES = (SUCCEEDED, FAILED, UNSUPPORTED, NETWORK, COMPILE_ERROR)

# A client program where a command starts (the text's start, a new line, after ; & | ( ` or a
# quote, or as a path's last part); the install commands wherever they stand.
NETWORK_PROGRAM = re.compile(
    r"(?:^|(?<=[\n;&|(`'\"/]))\s*(curl|wget|gsutil|gcloud|kubectl|oc|aws|mc|yum)(?=\s|$)"
    r"|\b(git\s+clone|pip3?\s+install|apt-get|apk\s+add|npm\s+install)\b",
    re.MULTILINE,
)
NETWORK_PYTHON = re.compile(
    r"\b(import\s+requests|from\s+requests|requests\.(get|post|put|head|Session)|urllib"
    r"|urlopen|boto3|minio|google\.cloud)\b"
)
REMOTE_LOCATION = re.compile(r"\b(https?|gs|s3)://")
SEPARATORS = " ;&|(`'\"/"
# The executor names itself in every refusal ("... not supported by the local executor",
# "... not supported locally"); a run it refused, or a task it would not run, says so.
REFUSAL = re.compile(r"local executor|locally")
IMAGES_NOTE = ". Executed locally;"  # what every local PipelineRun's message ends with


@dataclass(frozen=True)
class Row:
    """One pipeline (or one module that yielded none) and how it ended."""

    source: str
    pipeline: str
    state: str
    detail: str = ""


def step_texts(pipelinerun: dict) -> list[str]:
    """Every string a step runs with: command, args, script and env values, over all tasks
    (custom tasks' embedded pipelines included, wherever they nest)."""
    texts: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "image" in node and ("command" in node or "script" in node or "args" in node):
                texts.extend(str(c) for c in node.get("command") or [])
                texts.extend(str(a) for a in node.get("args") or [])
                texts.append(str(node.get("script") or ""))
                texts.extend(str(e.get("value", "")) for e in node.get("env") or [])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(pipelinerun.get("spec") or {})
    return texts


def network_use(pipelinerun: dict) -> str | None:
    """What makes the pipeline need the network (see the module docstring), or None."""
    for text in step_texts(pipelinerun):
        for pattern in (NETWORK_PROGRAM, NETWORK_PYTHON, REMOTE_LOCATION):
            found = pattern.search(text)
            if found:
                return f"a step uses {found.group(0).strip(SEPARATORS)!r}"
    for param in (pipelinerun.get("spec") or {}).get("params") or []:
        value = str(param.get("value", ""))
        if REMOTE_LOCATION.search(value):
            return f"parameter {param.get('name')} is {value[:60]!r}"
    return None


def classify(execution: Execution) -> tuple[str, str]:
    """The end state of one run and a one-line detail."""
    if execution.succeeded:
        return SUCCEEDED, execution.reason
    message = execution.message.replace("\n", " ")
    if not execution.tasks and REFUSAL.search(message):
        return UNSUPPORTED, message
    failed = [t for t in execution.tasks.values() if t.failed]
    for task in failed:
        own = task.message if REFUSAL.search(task.message) else None
        refusal = own or nested_refusal(task.extra_fields)
        if refusal:
            return UNSUPPORTED, f"{task.name}: {refusal}"
    if failed:
        task = failed[0]
        return FAILED, f"{execution.reason}: {task.name}: {task.reason} {_last_log_line(task)}"
    return FAILED, f"{execution.reason}: {message}"


def nested_refusal(extra_fields: dict) -> str | None:
    """A refusal inside a loop: an iteration PipelineRun (in a Run's `extraFields`, at any
    depth) the executor refused, or a task of one it would not run. The loop's own message only
    names the failed PipelineRun."""
    for iteration in (extra_fields.get("pipelineRuns") or {}).values():
        status = iteration.get("status") or {}
        children = [*(status.get("taskRuns") or {}).values(), *(status.get("runs") or {}).values()]
        for child in [{"status": status}, *children]:
            message = _condition_message(child.get("status") or {})
            if REFUSAL.search(message.split(IMAGES_NOTE)[0]):
                return message.split(IMAGES_NOTE)[0].replace("\n", " ")
        for run in (status.get("runs") or {}).values():
            found = nested_refusal((run.get("status") or {}).get("extraFields") or {})
            if found:
                return found
    return None


def _condition_message(status: dict) -> str:
    return str(((status.get("conditions") or [{}])[0]).get("message", ""))


def _last_log_line(task: TaskOutcome) -> str:
    """The last line a failed task's steps printed: usually the error."""
    for path in reversed(list(task.logs.values())):
        try:
            lines = path.read_text(errors="replace").strip().splitlines()
        except OSError:
            continue
        if lines:
            return lines[-1][:160]
    return task.message[:160]


def run_pipeline(yaml_text: str, workdir: Path, timeout: float) -> tuple[str, str]:
    """Run one compiled pipeline as the DSP server would start it, with its defaults."""
    template = parse_pipelinerun(yaml_text)
    reason = network_use(template)
    if reason:
        return NETWORK, reason
    run_id = str(uuid.uuid4())
    pipelinerun = runtime_pipelinerun(template, run_id, "corpus", ())
    execution = execute(
        pipelinerun, workdir=workdir / run_id, timeout=timeout, env=scrubbed_env(os.environ)
    )
    return classify(execution)


def measure(corpus: Path, timeout: float, compile_timeout: float, only: str = "") -> list[Row]:
    """Compile and run every module of the corpus, one row per pipeline."""
    rows = []
    modules = sorted(p for p in corpus.rglob("*.py") if p.name != "__init__.py" and only in str(p))
    with tempfile.TemporaryDirectory(prefix="localdsp-corpus-") as scratch:
        for module in modules:
            source = str(module.relative_to(corpus))
            result = harness.compile_all(
                [module], timeout=compile_timeout, workers=1, twice=False, flavour=compile_v1
            )
            for failure in result.failures:
                rows.append(Row(source, failure.pipeline or "-", COMPILE_ERROR, failure.reason))
            for pipeline in result.pipelines:
                state, detail = run_pipeline(pipeline.yaml_text, Path(scratch), timeout)
                rows.append(Row(source, pipeline.name, state, detail))
                print(f"{state:14} {source} {pipeline.name}", file=sys.stderr, flush=True)
    return rows


def summary(rows: list[Row]) -> str:
    """Counts per state and the share of the pipelines that ran which ended unsupported."""
    counts = Counter(row.state for row in rows)
    ran = counts[SUCCEEDED] + counts[FAILED] + counts[UNSUPPORTED]
    share = counts[UNSUPPORTED] / ran if ran else 0.0
    parts = ", ".join(f"{counts[state]} {state}" for state in STATES)
    return (
        f"{len(rows)} pipelines: {parts}\n"
        f"unsupported: {counts[UNSUPPORTED]} of {ran} network-free pipelines that compiled "
        f"({share:.1%})"
    )


def table(rows: list[Row], verbose: bool) -> str:
    """One line per pipeline; the detail is cut short unless `verbose`."""
    width = max((len(f"{r.source} {r.pipeline}") for r in rows), default=10)
    lines = []
    for row in rows:
        detail = row.detail if verbose else row.detail[:110]
        lines.append(f"{row.state:14} {f'{row.source} {row.pipeline}':{width}}  {detail}")
    return "\n".join(lines)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM as Ctrl-C: the executor then stops the running steps' process groups."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path, help="folder of kfp-tekton DSL modules")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per run")
    parser.add_argument("--compile-timeout", type=float, default=60.0, help="seconds per module")
    parser.add_argument("--only", default="", help="only modules whose path contains this")
    parser.add_argument("--verbose", action="store_true", help="print details in full")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args(argv)
    if not args.corpus.is_dir():
        parser.error(f"{args.corpus} is not a folder of pipeline modules (see docs/localdsp.md)")
    rows = measure(args.corpus, args.timeout, args.compile_timeout, args.only)
    print(table(rows, args.verbose))
    print(summary(rows))
    if args.json:
        args.json.write_text(json.dumps([row.__dict__ for row in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
