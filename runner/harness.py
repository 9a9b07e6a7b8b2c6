"""Import each pipeline module in isolation and compile it with the flavour's SDK (SDK-free here).

Every module is imported in its own forked child process, so:
- the module's `if __name__ == "__main__":` block never runs (it is imported under another name);
- a module that raises, calls `sys.exit()`, crashes the interpreter or hangs costs only its own
  child: it is reported with file, line and a one-line reason, and every other module still ships;
- the SDK is imported once, in the parent (`warm_up`), and shared by every fork.

What a flavour brings (`runner.flavour_v1.compile`, `runner.flavour_v2.compile`, chosen by
`runner.flavour`) is the `ModuleCompiler` below: how its SDK finds the pipelines of a module,
compiles them and reads name, parameters and content hash back from what it wrote. Everything
else — the children, their timeouts and captured output, the result transport, the server's
naming rules — is here, once, for both.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import importlib.util
import json
import multiprocessing
import multiprocessing.connection
import os
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

MAX_UPLOAD_BYTES = 32 << 20
SERVER_NAME_PATTERN = re.compile(r"[A-Za-z0-9._ -]{1,100}")


@dataclasses.dataclass(frozen=True)
class Parameter:
    """A pipeline parameter. `type` is the kfp 2 IR's parameterType ("" for kfp 1.8, whose
    parameters are all text); `optional` is the IR's isOptional (a `x: str = None`)."""

    name: str
    default: str | None
    type: str = ""
    optional: bool = False

    @property
    def required(self) -> bool:
        return self.default is None and not self.optional

    def typed(self, text: str) -> Any:
        """The run argument `text` as the JSON value the parameter's type takes; ValueError
        naming the parameter when it is not one. Untyped (v1) parameters take text as is."""
        parse, kind = _TYPES.get(self.type, (str, "text"))
        try:
            return parse(text)
        except ValueError:
            raise ValueError(f"run argument {self.name}={text!r} is not {kind}") from None


def _boolean(text: str) -> bool:
    """YAML's `true` reaches the runner as "True" (settings are text): either case is taken."""
    if text.lower() not in ("true", "false"):
        raise ValueError(text)
    return text.lower() == "true"


def _json_of(kind: type) -> Callable[[str], Any]:
    """A parser of JSON text that must decode to `kind` (a list or an object)."""

    def parse(text: str) -> Any:
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, kind):
            raise ValueError(text)
        return value

    return parse


_TYPES: dict[str, tuple[Callable[[str], Any], str]] = {
    "STRING": (str, "text"),
    "NUMBER_INTEGER": (int, "an integer"),
    "NUMBER_DOUBLE": (float, "a number"),
    "BOOLEAN": (_boolean, "true or false"),
    "LIST": (_json_of(list), "a JSON list (quote it in dsp-runner.yaml)"),
    "STRUCT": (_json_of(dict), "a JSON object (quote it in dsp-runner.yaml)"),
}
"""kfp 2 IR parameter types: how a run argument's text becomes the value, and what it must be."""


@dataclasses.dataclass(frozen=True)
class CompiledPipeline:
    """One pipeline, compiled: what every later stage needs to know about it."""

    name: str
    slug: str
    function: str
    source: Path
    description: str
    yaml_text: str
    parameters: tuple[Parameter, ...]
    content_hash: str
    deterministic: bool = True
    fragment: str = ""
    """v1 only: what kfp-tekton puts between the pipeline's name and a custom task's name."""
    module: str = ""
    """The module's compile fingerprint and pipeline count, "<hash> of <n>", when known."""

    @property
    def defaults(self) -> dict[str, str]:
        return {p.name: p.default for p in self.parameters if p.default is not None}


@dataclasses.dataclass(frozen=True)
class ModuleFailure:
    """A module or pipeline that cannot ship, with where and why in one line."""

    source: Path
    line: int | None
    reason: str
    pipeline: str | None = None

    def describe(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else f"{self.source}"
        return f"{where}: {self.reason}"


@dataclasses.dataclass(frozen=True)
class CompileResult:
    pipelines: list[CompiledPipeline]
    failures: list[ModuleFailure]


Outcome = list[CompiledPipeline | ModuleFailure]


class ModuleCompiler(Protocol):
    """What a flavour's compile module provides (module-level functions)."""

    def warm_up(self) -> None:
        """Import the SDK and load what it loads lazily, in the parent, before any fork."""

    def compile_module(self, path: Path, *, module_name: str, twice: bool) -> Outcome:
        """In the child: import `path` as `module_name`, compile each pipeline it defines
        (`twice`: a second time, to flag output that is not deterministic)."""

    def refuse(
        self, pipelines: list[CompiledPipeline]
    ) -> tuple[list[CompiledPipeline], list[ModuleFailure]]:
        """The flavour's own server rules over the pipelines the shared rules accepted."""


def compile_all(
    modules: list[Path],
    *,
    timeout: float,
    workers: int = 0,
    twice: bool = True,
    flavour: ModuleCompiler | None = None,
) -> CompileResult:
    """Compile every module, at most `workers` at a time, each bounded by `timeout` seconds;
    `twice` compiles each pipeline a second time to catch output that is not deterministic.
    `flavour` defaults to the installed SDK's (`runner.flavour`)."""
    if flavour is None:
        from runner import flavour as flavours

        flavour = flavours.compiler()
    flavour.warm_up()
    gc.freeze()

    workers = workers or os.cpu_count() or 1
    jobs = list(enumerate(modules))
    outcomes = dict(_run_children(jobs, flavour, timeout, workers, twice))
    ordered = [item for index in sorted(outcomes) for item in outcomes[index]]
    pipelines = [item for item in ordered if isinstance(item, CompiledPipeline)]
    failures = [item for item in ordered if isinstance(item, ModuleFailure)]
    pipelines, rejected = _check_server_rules(pipelines)
    pipelines, refused = flavour.refuse(pipelines)
    return CompileResult(pipelines=pipelines, failures=failures + rejected + refused)


def _run_children(jobs, flavour: ModuleCompiler, timeout: float, workers: int, twice: bool):
    """Fork one child per module and collect each child's answer, or say why there is none."""
    context = multiprocessing.get_context("fork")
    pending = list(jobs)
    running: dict = {}
    while pending or running:
        while pending and len(running) < workers:
            index, path = pending.pop(0)
            reader, writer = context.Pipe(duplex=False)
            process = context.Process(
                target=_child, args=(writer, flavour, path, index, twice), daemon=True
            )
            process.start()
            writer.close()
            running[reader] = (index, path, process, time.monotonic() + timeout)
        next_deadline = min(deadline for *_, deadline in running.values())
        ready = multiprocessing.connection.wait(
            list(running), timeout=max(0.0, next_deadline - time.monotonic())
        )
        for reader in ready:
            index, path, process, _ = running.pop(reader)
            yield index, _receive(reader, process, path)
        now = time.monotonic()
        for reader, (index, path, process, deadline) in list(running.items()):
            if now >= deadline:
                process.kill()
                process.join()
                del running[reader]
                yield index, [_timed_out(path, timeout)]


def _timed_out(path: Path, timeout: float) -> ModuleFailure:
    return ModuleFailure(
        path,
        None,
        f"import and compile took longer than {timeout:g} s "
        "(DSP_COMPILE_TIMEOUT); does the module wait for something at import?",
    )


def _receive(reader, process, path: Path) -> Outcome:
    """The child's outcome; a child that died before sending one is reported with its exit code."""
    try:
        outcome = reader.recv()
    except EOFError:
        outcome = None
    process.join()
    if outcome is None:
        return [
            ModuleFailure(
                path,
                None,
                f"the module's process died while importing (exit code {process.exitcode})",
            )
        ]
    return outcome


def _child(writer, flavour: ModuleCompiler, path: Path, index: int, twice: bool) -> None:
    """Runs in the fork: import, compile, send the outcome, and leave without running atexit.
    The user's module runs here, so the bearer token is taken out of its environment first.
    The collector stays off: it would touch, and so copy, the whole heap shared with the parent."""
    gc.disable()
    os.environ.pop("DSP_TOKEN", None)
    try:
        with _captured_output():
            outcome = flavour.compile_module(
                path, module_name=f"_dsp_pipeline_{index}_{path.stem}", twice=twice
            )
        writer.send(outcome)
    finally:
        writer.close()
        os._exit(0)


@contextlib.contextmanager
def _captured_output():
    """Keep a module's prints off the runner's log stream (which may be JSON lines)."""
    with open(os.devnull, "w") as sink:
        saved = os.dup(1), os.dup(2)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)


def import_module(path: Path, module_name: str) -> ModuleType:
    """Import the file as `module_name` (never `__main__`), its folder first on sys.path so its
    own helpers import; exceptions are the caller's to report (see `failure`)."""
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compile_to_text(compiler, function) -> str:
    """Both SDKs' compilers write to a file path only: compile into a scratch file, read it."""
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "pipeline.yaml"
        compiler.compile(function, str(target))
        return target.read_text()


def failure(path: Path, exc: BaseException, what: str, pipeline: str | None = None):
    """One line: the innermost line of the user's file involved, and the exception's first line."""
    line = None
    if isinstance(exc, SyntaxError) and exc.filename == str(path):
        line = exc.lineno
    for frame in user_frames(path, exc):
        line = frame.lineno
    if isinstance(exc, SystemExit):
        detail = f"the module called sys.exit({exc.code!r}) at import"
    else:
        message = str(exc).strip().splitlines()
        detail = f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__
    return ModuleFailure(path, line, f"{what}: {detail}", pipeline)


def user_frames(path: Path, exc: BaseException) -> Iterator[traceback.FrameSummary]:
    """The traceback's frames in the user's file, outermost first."""
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == str(path):
            yield frame


def _check_server_rules(pipelines: list[CompiledPipeline]):
    """Refuse what the server would refuse, naming the file, before anything is uploaded."""
    accepted: list[CompiledPipeline] = []
    rejected: list[ModuleFailure] = []
    seen: dict[str, CompiledPipeline] = {}
    for pipeline in pipelines:
        problem = _server_problem(pipeline, seen)
        if problem:
            rejected.append(ModuleFailure(pipeline.source, None, problem, pipeline.function))
            continue
        seen[pipeline.name.lower()] = seen[pipeline.slug] = pipeline
        accepted.append(pipeline)
    return accepted, rejected


def _server_problem(pipeline: CompiledPipeline, seen: dict[str, CompiledPipeline]) -> str:
    """Why the server would refuse this pipeline after those `seen`, or "" when it would not."""
    if not SERVER_NAME_PATTERN.fullmatch(pipeline.name):
        return (
            f"pipeline name {pipeline.name!r} must be 1 to 100 characters of letters, "
            "digits, space, '.', '_' or '-' (the server double-decodes '+' and '%')"
        )
    if pipeline.name.lower() in seen or pipeline.slug in seen:
        other = seen.get(pipeline.name.lower()) or seen[pipeline.slug]
        return (
            f"pipeline name {pipeline.name!r} (file name {pipeline.slug}.yaml) is already "
            f"taken by {other.source}"
        )
    size = len(pipeline.yaml_text.encode())
    if size > MAX_UPLOAD_BYTES:
        return (
            f"compiled pipeline is {size} bytes, over the server's upload limit of "
            f"{MAX_UPLOAD_BYTES}"
        )
    return ""
