"""Import each pipeline module in isolation and compile its pipelines with kfp_tekton.

Every module is imported in its own forked child process, the way kfp's `dsl-compile` collects
pipelines (its `PipelineCollectorContext` hook), so:
- the module's `if __name__ == "__main__":` block never runs (it is imported under another name);
- a module that raises, calls `sys.exit()`, crashes the interpreter or hangs costs only its own
  child: it is reported with file, line and a one-line reason, and every other module still ships;
- kfp and kfp_tekton are imported once, in the parent, and shared by every fork.

The same source compiles to the same bytes in every process. kfp-tekton draws a random
five-character fragment (`uuid4`) per compile into the names of its custom-task groups (loops,
graph components, add-on groups) and kfp's `use_secret` draws a random volume name for a secret
named at run time; left alone, each such pipeline would be a new version on every deploy. In the
child both draw from a generator seeded with the pipeline's declared name instead (see
`_seeded`). On the cluster nothing changes: the fragment only keeps the custom-task names of two
pipelines apart when their first 40 characters agree, and the name is the pipeline's identity on
the server; every run of one version already shared its fragment, and now versions of one
pipeline do too, which the PipelineRun's own unique name keeps apart.
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
import random
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path

from runner import versions

MAX_UPLOAD_BYTES = 32 << 20
SERVER_NAME_PATTERN = re.compile(r"[A-Za-z0-9._ -]{1,100}")


@dataclasses.dataclass(frozen=True)
class Parameter:
    name: str
    default: str | None

    @property
    def required(self) -> bool:
        return self.default is None


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
    """What kfp-tekton puts between the pipeline's name and a custom task's name (`_seeded`)."""
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


def compile_all(
    modules: list[Path], *, timeout: float, workers: int = 0, twice: bool = True
) -> CompileResult:
    """Compile every module, at most `workers` at a time, each bounded by `timeout` seconds;
    `twice` compiles each pipeline a second time to catch output that is not deterministic."""
    _warm_up()
    gc.freeze()

    workers = workers or os.cpu_count() or 1
    outcomes: dict[int, list[CompiledPipeline | ModuleFailure]] = {}
    for index, outcome in _run_children(list(enumerate(modules)), timeout, workers, twice):
        outcomes[index] = outcome
    ordered = [item for index in sorted(outcomes) for item in outcomes[index]]
    pipelines = [item for item in ordered if isinstance(item, CompiledPipeline)]
    failures = [item for item in ordered if isinstance(item, ModuleFailure)]
    pipelines, rejected = _check_server_rules(pipelines)
    return CompileResult(pipelines=pipelines, failures=failures + rejected)


def _warm_up() -> None:
    """Import kfp and kfp_tekton and let them load what they load lazily, once, in the parent:
    every forked child then starts warm instead of paying for it again."""
    import kfp
    from kfp_tekton.compiler import TektonCompiler

    def warm_up(x: str) -> str:
        return x

    op = kfp.components.create_component_from_func(warm_up, base_image="python")

    @kfp.dsl.pipeline(name="warm-up")
    def pipeline(x: str = "x"):
        op(x)

    _compile_once(TektonCompiler(), pipeline)


def _run_children(jobs, timeout, workers, twice):
    """Fork one child per module and collect each child's answer, or say why there is none."""
    context = multiprocessing.get_context("fork")
    pending = list(jobs)
    running: dict = {}
    while pending or running:
        while pending and len(running) < workers:
            index, path = pending.pop(0)
            reader, writer = context.Pipe(duplex=False)
            process = context.Process(target=_child, args=(writer, path, index, twice), daemon=True)
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
                yield (
                    index,
                    [
                        ModuleFailure(
                            path,
                            None,
                            f"import and compile took longer than {timeout:g} s "
                            "(DSP_COMPILE_TIMEOUT); does the module wait for something at import?",
                        )
                    ],
                )


def _receive(reader, process, path: Path) -> list[CompiledPipeline | ModuleFailure]:
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


def _child(writer, path: Path, index: int, twice: bool) -> None:
    """Runs in the fork: import, compile, send the outcome, and leave without running atexit.
    The user's module runs here, so the bearer token is taken out of its environment first.
    The collector stays off: it would touch, and so copy, the whole heap shared with the parent."""
    gc.disable()
    os.environ.pop("DSP_TOKEN", None)
    try:
        with _captured_output():
            outcome = compile_module(
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


def compile_module(
    path: Path, *, module_name: str, twice: bool = True
) -> list[CompiledPipeline | ModuleFailure]:
    """Import one module with kfp's collector hook and compile each pipeline it defines."""
    from kfp.compiler.main import PipelineCollectorContext

    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        with PipelineCollectorContext() as functions, _drawing_from(_generator(path.name)):
            spec.loader.exec_module(module)
    except BaseException as exc:
        return [_failure(path, exc, "import failed")]
    if not functions:
        return [ModuleFailure(path, None, "defines no function decorated with @kfp.dsl.pipeline")]
    return [_compile_function(path, function, twice) for function in functions]


def _compile_function(path: Path, function, twice: bool) -> CompiledPipeline | ModuleFailure:
    seed = getattr(function, "_component_human_name", None) or function.__name__
    try:
        first, fragment = _compile_seeded(function, seed)
        second = _compile_seeded(function, seed)[0] if twice else first
    except BaseException as exc:
        return _failure(path, exc, f"compiling {function.__name__} failed", function.__name__)
    deterministic = first == second or versions.content_hash(first) == versions.content_hash(second)
    compiled = _describe(path, function.__name__, first, deterministic=deterministic)
    return dataclasses.replace(compiled, fragment=fragment)


def _compile_seeded(function, seed: str) -> tuple[str, str]:
    """Compile with every random draw of kfp and kfp-tekton taken from a generator seeded with
    `seed` (the pipeline's declared name): (YAML, the custom-task name fragment it used)."""
    from kfp_tekton.compiler import TektonCompiler

    generator = _generator(seed)
    compiler = TektonCompiler()
    compiler.uuid = _fragment(generator)
    with _drawing_from(generator):
        return _compile_once(compiler, function), compiler.uuid


def _generator(seed: str) -> random.Random:
    """A generator that draws the same names from the same seed in every process (a string seed
    is hashed with SHA-512, not with the per-process `hash()`). Names, not secrets."""
    return random.Random(seed)  # noqa: S311


def _fragment(generator: random.Random) -> str:
    """Five lowercase hex characters, the shape of kfp-tekton's own `uuid4().hex[:5]`, so
    generated names keep their length limits (40 + 1 + 5 + 1 + 16 = 63)."""
    return f"{generator.getrandbits(20):05x}"


@contextlib.contextmanager
def _drawing_from(generator: random.Random):
    """kfp's `use_secret` names the volume of a secret named at run time with the `random`
    module's `choices`: let it draw from `generator` while the module is imported or compiled,
    and give the module back its `random` after (nothing leaks, even outside a fork)."""
    from kfp.dsl.extensions import kubernetes

    saved = kubernetes.random
    kubernetes.random = generator
    try:
        yield
    finally:
        kubernetes.random = saved


def _compile_once(compiler, function) -> str:
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "pipeline.yaml"
        compiler.compile(function, str(target))
        return target.read_text()


def _describe(path: Path, function_name: str, yaml_text: str, *, deterministic: bool):
    """Read name, description and parameters back from what the compiler wrote."""
    document = versions.load_yaml(yaml_text)
    metadata = document.get("metadata", {})
    spec = json.loads(
        metadata.get("annotations", {}).get("pipelines.kubeflow.org/pipeline_spec", "{}")
    )
    parameters = tuple(
        Parameter(p["name"], None if p.get("default") is None else str(p["default"]))
        for p in document.get("spec", {}).get("pipelineSpec", {}).get("params", [])
    )
    return CompiledPipeline(
        name=spec.get("name") or function_name,
        slug=metadata.get("name") or function_name,
        function=function_name,
        source=path,
        description=spec.get("description") or "",
        yaml_text=yaml_text,
        parameters=parameters,
        content_hash=versions.document_hash(document),
        deterministic=deterministic,
    )


def _failure(path: Path, exc: BaseException, what: str, pipeline: str | None = None):
    """One line: the innermost line of the user's file involved, and the exception's first line."""
    line = None
    if isinstance(exc, SyntaxError) and exc.filename == str(path):
        line = exc.lineno
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == str(path):
            line = frame.lineno
    if isinstance(exc, SystemExit):
        detail = f"the module called sys.exit({exc.code!r}) at import"
    else:
        message = str(exc).strip().splitlines()
        detail = f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__
    return ModuleFailure(path, line, f"{what}: {detail}", pipeline)


def _check_server_rules(pipelines: list[CompiledPipeline]):
    """Refuse what the server would refuse, naming the file, before anything is uploaded."""
    accepted: list[CompiledPipeline] = []
    rejected: list[ModuleFailure] = []
    seen: dict[str, CompiledPipeline] = {}
    loops: dict[str, CompiledPipeline] = {}
    for pipeline in pipelines:
        problem = None
        prefix = _custom_task_prefix(pipeline)
        if not SERVER_NAME_PATTERN.fullmatch(pipeline.name):
            problem = (
                f"pipeline name {pipeline.name!r} must be 1 to 100 characters of letters, "
                "digits, space, '.', '_' or '-' (the server double-decodes '+' and '%')"
            )
        elif pipeline.name.lower() in seen or pipeline.slug in seen:
            other = seen.get(pipeline.name.lower()) or seen[pipeline.slug]
            problem = (
                f"pipeline name {pipeline.name!r} (file name {pipeline.slug}.yaml) is already "
                f"taken by {other.source}"
            )
        elif len(pipeline.yaml_text.encode()) > MAX_UPLOAD_BYTES:
            problem = (
                f"compiled pipeline is {len(pipeline.yaml_text.encode())} bytes, over the "
                f"server's upload limit of {MAX_UPLOAD_BYTES}"
            )
        elif prefix in loops:
            problem = (
                f"pipeline name {pipeline.name!r} gives its loops the same names as "
                f"{loops[prefix].name!r} in {loops[prefix].source} ({prefix}...): change the "
                "first 40 characters of one name"
            )
        if problem:
            rejected.append(ModuleFailure(pipeline.source, None, problem, pipeline.function))
            continue
        seen[pipeline.name.lower()] = seen[pipeline.slug] = pipeline
        if prefix:
            loops[prefix] = pipeline
        accepted.append(pipeline)
    return accepted, rejected


def _custom_task_prefix(pipeline: CompiledPipeline) -> str | None:
    """How kfp-tekton starts the names of this pipeline's custom tasks (loops, graph components):
    its name cut to 40 characters and the fragment; None when it has none. Two different names
    cut to the same 40 characters get the same fragment once in a million: refused, not shipped."""
    from kfp_tekton.compiler._k8s_helper import sanitize_k8s_name
    from kfp_tekton.tekton import LOOP_PIPELINE_NAME_LENGTH

    if not pipeline.fragment:
        return None
    start = sanitize_k8s_name(pipeline.slug, max_length=LOOP_PIPELINE_NAME_LENGTH)
    prefix = f"{start}-{pipeline.fragment}-"
    return prefix if prefix in pipeline.yaml_text else None
