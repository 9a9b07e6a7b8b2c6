"""The v1 flavour's compile: kfp 1.8's collector hook and kfp-tekton's `TektonCompiler`.

Runs inside `runner.harness`'s forked children. A module's pipelines are the functions it
decorates with `@kfp.dsl.pipeline` while it is imported, as kfp's `dsl-compile` collects them
(its `PipelineCollectorContext` hook); each is compiled by calling it, so `twice` compiles it
twice to catch a pipeline body that draws on the clock or on chance.

The same source compiles to the same bytes in every process. kfp-tekton draws a random
five-character fragment (`uuid4`) per compile into the names of its custom-task groups (loops,
graph components, add-on groups) and kfp's `use_secret` draws a random volume name for a secret
named at run time; left alone, each such pipeline would be a new version on every deploy. In the
child both draw from a generator seeded with the pipeline's declared name instead (see
`_compile_seeded`). On the cluster nothing changes: the fragment only keeps the custom-task names
of two pipelines apart when their first 40 characters agree, and the name is the pipeline's
identity on the server; every run of one version already shared its fragment, and now versions
of one pipeline do too, which the PipelineRun's own unique name keeps apart.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
from pathlib import Path

from runner import harness, versions
from runner.harness import CompiledPipeline, ModuleFailure, Parameter


def warm_up() -> None:
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

    harness.compile_to_text(TektonCompiler(), pipeline)


def compile_module(path: Path, *, module_name: str, twice: bool = True) -> harness.Outcome:
    """Import one module with kfp's collector hook and compile each pipeline it defines."""
    from kfp.compiler.main import PipelineCollectorContext

    try:
        with PipelineCollectorContext() as functions, _drawing_from(_generator(path.name)):
            harness.import_module(path, module_name)
    except BaseException as exc:
        return [harness.failure(path, exc, "import failed")]
    if not functions:
        return [ModuleFailure(path, None, "defines no function decorated with @kfp.dsl.pipeline")]
    return [_compile_function(path, function, twice) for function in functions]


def _compile_function(path: Path, function, twice: bool) -> CompiledPipeline | ModuleFailure:
    name = function.__name__
    seed = getattr(function, "_component_human_name", None) or name
    try:
        first, fragment = _compile_seeded(function, seed)
        second = _compile_seeded(function, seed)[0] if twice else first
    except BaseException as exc:
        return harness.failure(path, exc, f"compiling {name} failed", name)
    deterministic = first == second or versions.content_hash(first) == versions.content_hash(second)
    compiled = _describe(path, name, first, deterministic=deterministic)
    return dataclasses.replace(compiled, fragment=fragment)


def _compile_seeded(function, seed: str) -> tuple[str, str]:
    """Compile with every random draw of kfp and kfp-tekton taken from a generator seeded with
    `seed` (the pipeline's declared name): (YAML, the custom-task name fragment it used)."""
    from kfp_tekton.compiler import TektonCompiler

    generator = _generator(seed)
    compiler = TektonCompiler()
    compiler.uuid = _fragment(generator)
    with _drawing_from(generator):
        return harness.compile_to_text(compiler, function), compiler.uuid


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


def refuse(pipelines: list[CompiledPipeline]):
    """Refuse a pipeline whose custom tasks would take the names of another's: kfp-tekton names
    them after the first 40 characters of the pipeline's name and the fragment."""
    accepted: list[CompiledPipeline] = []
    rejected: list[ModuleFailure] = []
    loops: dict[str, CompiledPipeline] = {}
    for pipeline in pipelines:
        prefix = custom_task_prefix(pipeline)
        if prefix in loops:
            rejected.append(
                ModuleFailure(
                    pipeline.source,
                    None,
                    f"pipeline name {pipeline.name!r} gives its loops the same names as "
                    f"{loops[prefix].name!r} in {loops[prefix].source} ({prefix}...): change "
                    "the first 40 characters of one name",
                    pipeline.function,
                )
            )
            continue
        if prefix:
            loops[prefix] = pipeline
        accepted.append(pipeline)
    return accepted, rejected


def custom_task_prefix(pipeline: CompiledPipeline) -> str | None:
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
