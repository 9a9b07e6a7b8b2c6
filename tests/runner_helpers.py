"""Run the real runner in-process against a LocalDSP, the way a user's CI would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runner import calls, cli, discovery, flavour, harness

REPO = Path(__file__).resolve().parent.parent
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Result:
    code: int
    out: str
    err: str
    summary: dict | None


class Project:
    """A pipelines folder (a copy of `source`: the v1 examples unless told), a token file and
    an output folder, pointed at one server."""

    def __init__(self, root: Path, url: str, token: str, source: Path = REPO / "pipelines"):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.pipelines = root / "pipelines"
        self.output = root / "out"
        self.token_file = root / "token"
        self.token_file.write_text(token + "\n")
        self.url = url
        shutil.copytree(source, self.pipelines)

    def env(self, monkeypatch, **extra: str) -> None:
        for key, value in self.values(**extra).items():
            monkeypatch.setenv(key, value)

    def values(self, **extra: str) -> dict[str, str]:
        """The runner's environment for this project (also for a runner in a subprocess)."""
        return {
            "DSP_HOST": self.url,
            "DSP_TOKEN_PATH": str(self.token_file),
            "DSP_PIPELINES_DIR": str(self.pipelines),
            "DSP_OUTPUT_DIR": str(self.output),
            "DSP_GIT_COMMIT": COMMIT,
            "DSP_GIT_REPO": "https://git.example.com/team/ml.git",
            "DSP_RETRY_MAX_WAIT": "0.2",
            "DSP_REQUEST_TIMEOUT": "5",
            "LOG_FORMAT": "json",
            **extra,
        }

    def spawn(self, command: str = "deploy", **extra: str) -> subprocess.Popen:
        """`python -m runner COMMAND` in its own process, as CI (or the CronJob) runs it."""
        env = {**os.environ, **self.values(**extra)}
        return subprocess.Popen(
            [sys.executable, "-m", "runner", command],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, capsys, *argv: str) -> Result:
        code = cli.main(list(argv) or ["deploy"])
        captured = capsys.readouterr()
        summary_file = self.output / "summary.json"
        summary = json.loads(summary_file.read_text()) if summary_file.exists() else None
        if summary_file.exists():
            summary_file.unlink()
            assert summary["exit_code"] == code, "summary.json and the process disagree"
        return Result(code, captured.out, captured.err, summary)

    def edit(self, module: str, old: str, new: str) -> None:
        path = self.pipelines / module
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new))


def events(stderr: str) -> list[dict]:
    """The JSON log lines the runner wrote."""
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    """Poll `condition` until it holds; tests wait on what they need, never for a fixed time."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {timeout} s")
        time.sleep(0.02)


def write(folder: Path, name: str, source: str) -> Path:
    """A pipeline module in `folder`, dedented so tests can indent their sources."""
    path = folder / name
    path.write_text(textwrap.dedent(source))
    return path


def compile_folder(folder: Path, timeout: float = 60):
    """Discover and compile `folder` in forked children, as `runner compile` does."""
    return harness.compile_all(discovery.discover(folder), timeout=timeout)


def compile_in_a_new_process(folder: Path | None, output: Path, hash_seed: str):
    """`python -m runner compile` as CI runs it, in a fresh interpreter of this suite's venv
    (the flavour's default folder when `folder` is None): (exit code, log events)."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DSP_")},
        "DSP_OUTPUT_DIR": str(output),
        "LOG_FORMAT": "json",
        "PYTHONHASHSEED": hash_seed,
    }
    if folder is not None:
        env["DSP_PIPELINES_DIR"] = str(folder)
    done = subprocess.run(
        [sys.executable, "-m", "runner", "compile"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.returncode, events(done.stderr)


def client_for(url: str, credentials, **options):
    """This suite's flavour's client, with retries short enough for a test; `options`
    (retries, concurrency, ...) replace the defaults."""
    defaults = {
        "ca_bundle": None,
        "verify_tls": True,
        "request_timeout": 5,
        "retries": 2,
        "retry_max_wait": 0.1,
    }
    return flavour.client().DSPClient(host=url, credentials=credentials, **defaults | options)


def policy(api_exception: type[Exception], *, retries: int = 3, retry_max_wait: float = 0.2):
    """The shared retry policy on its own, for a host it never reaches (`https://dsp`, the
    token from DSP_TOKEN): how a call's failures are judged, retried and worded."""
    return calls.Calls(
        host="https://dsp",
        token_source="DSP_TOKEN",
        retries=retries,
        retry_max_wait=retry_max_wait,
        api_exception=api_exception,
        forbidden_hint="may get the route",
    )


def next_second() -> None:
    """Until the clock enters a new second: the servers keep created_at in whole seconds, so
    only a version uploaded in a later second than another is newer than it."""
    start = int(time.time())
    while int(time.time()) == start:
        time.sleep(0.01)


def deploy_revisions(project, capsys, monkeypatch, pipeline: str, revisions) -> list[str]:
    """Deploy `pipeline` once per revision, each a text edit of its module that the next one
    replaces, each in a later second; its version names, oldest first."""
    monkeypatch.setenv("DSP_ONLY", pipeline)
    names = []
    for old, new in zip(revisions, (*revisions[1:], None), strict=True):
        next_second()
        result = project.run(capsys)
        assert result.code == 0, result.err
        (outcome,) = result.summary["pipelines"]
        names.append(outcome["version_name"])
        if new:
            project.edit("add_pipeline.py", old, new)
    return names
