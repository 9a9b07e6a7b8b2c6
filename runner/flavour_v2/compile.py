"""The v2 flavour's compile: kfp 2's `@dsl.pipeline` objects and `kfp.compiler.Compiler`.

Runs inside `runner.harness`'s forked children. kfp 2 builds a pipeline's graph when the
decorator runs, so a module's pipelines are what its import leaves in its namespace: every
`GraphComponent` (a `@dsl.pipeline` function) defined in the module itself, in the order it
defines them (kfp's own `kfp dsl compile` looks for them the same way). A pipeline imported
from another module is that module's to ship; a sub-pipeline only other pipelines call belongs
in a helper file (`_name.py`), which discovery skips. Because the graph is built at import, an
error in a pipeline's body fails the module's import, named after that pipeline.

`twice` imports the module a second time under another name and compiles again: a graph that
draws on the clock or on chance shows as a different IR. The IR kfp 2.17.3 writes from the
same source is the same in every process (its one random draw, a uuid4 group name, never
reaches the IR), so no generator needs seeding here.

What a version is named after: the IR's data with `sdkVersion` left out, so installing a newer
kfp 2 alone does not make a new version of every pipeline.
"""

# No `from __future__ import annotations`: kfp 2 reads the warm-up component's real types.
import dataclasses
import json
import traceback
from pathlib import Path
from typing import Any

from runner import harness, versions
from runner.harness import CompiledPipeline, ModuleFailure, Parameter

_GRAPH_BUILDER = str(Path("kfp", "dsl", "graph_component.py"))


def warm_up() -> None:
    """Import kfp 2's DSL and compiler and let them load what they load lazily, once, in the
    parent: every forked child then starts warm instead of paying for it again."""
    from kfp import compiler, dsl

    @dsl.component(base_image="python")
    def warm_up(x: str) -> str:
        return x

    @dsl.pipeline(name="warm-up")
    def pipeline(x: str = "x"):
        warm_up(x=x)

    harness.compile_to_text(compiler.Compiler(), pipeline)


def compile_module(path: Path, *, module_name: str, twice: bool = True) -> harness.Outcome:
    """Import one module, compile each pipeline it defines; `twice`: check each is the same
    when the module is imported again."""
    try:
        found = _pipelines(harness.import_module(path, module_name))
    except BaseException as exc:
        return [_import_failure(path, exc)]
    if not found:
        return [ModuleFailure(path, None, "defines no function decorated with @dsl.pipeline")]
    again = _imported_again(path, f"{module_name}_again") if twice else {}
    return [
        _compile_pipeline(path, component, again.get(attribute), checked=twice)
        for attribute, component in found
    ]


def refuse(pipelines: list[CompiledPipeline]):
    """kfp 2 names nothing after the pipeline beyond what the shared rules check."""
    return pipelines, []


def _pipelines(module) -> list[tuple[str, Any]]:
    """(attribute, GraphComponent) for each pipeline the module defines, in definition order;
    an alias of one already found, or a pipeline imported from elsewhere, is not another."""
    from kfp.dsl.graph_component import GraphComponent

    found, seen = [], set()
    for attribute, value in vars(module).items():
        if (
            isinstance(value, GraphComponent)
            and value.pipeline_func.__module__ == module.__name__
            and id(value) not in seen
        ):
            seen.add(id(value))
            found.append((attribute, value))
    return found


def _imported_again(path: Path, module_name: str) -> dict[str, Any]:
    """The module's pipelines from a second import; none when that import fails (a module that
    imports only once is not deterministic either)."""
    try:
        return dict(_pipelines(harness.import_module(path, module_name)))
    except BaseException:
        return {}


def _compile_pipeline(
    path: Path, component, rebuilt, *, checked: bool
) -> CompiledPipeline | ModuleFailure:
    """Compile one pipeline; when `checked`, `rebuilt` is its second build (None: it was lost)
    and the pipeline is deterministic when both compile to the same content hash."""
    from kfp import compiler

    function = component.pipeline_func.__name__
    try:
        text = harness.compile_to_text(compiler.Compiler(), component)
        again = None if rebuilt is None else harness.compile_to_text(compiler.Compiler(), rebuilt)
    except BaseException as exc:
        return harness.failure(path, exc, f"compiling {function} failed", function)
    compiled = describe(path, function, text)
    if not checked:
        return compiled
    same = again is not None and ir_hash(again) == compiled.content_hash
    return dataclasses.replace(compiled, deterministic=same)


def describe(path: Path, function: str, yaml_text: str) -> CompiledPipeline:
    """Read name, description and parameters back from the IR the compiler wrote. The name is
    the `display_name` when the pipeline has one (kfp 2 makes `name` a lower-case k8s name)."""
    spec = versions.load_yaml_documents(yaml_text)[0]
    info = spec.get("pipelineInfo", {})
    slug = info.get("name") or function
    return CompiledPipeline(
        name=info.get("displayName") or slug,
        slug=slug,
        function=function,
        source=path,
        description=info.get("description") or "",
        yaml_text=yaml_text,
        parameters=parameters(spec),
        content_hash=ir_hash(yaml_text),
    )


def parameters(spec: dict) -> tuple[Parameter, ...]:
    """The root's input parameters: name, IR type, default as run-argument text, optional."""
    declared = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    return tuple(
        Parameter(
            name,
            _as_text(entry["defaultValue"], entry.get("parameterType", ""))
            if "defaultValue" in entry
            else None,
            type=entry.get("parameterType", ""),
            optional=bool(entry.get("isOptional")),
        )
        for name, entry in declared.items()
    )


def _as_text(value: Any, kind: str) -> str:
    """A default as the text a run argument would give (settings are text): the IR keeps every
    number as a double (3 is 3.0), booleans as JSON, lists and structs as JSON."""
    if kind == "NUMBER_INTEGER":
        return str(int(value))
    if kind in ("BOOLEAN", "LIST", "STRUCT"):
        return json.dumps(value)
    return str(value)


def ir_hash(yaml_text: str) -> str:
    """The content hash: the IR's data (key order, formatting and the header comment do not
    count) without `sdkVersion`, so an SDK upgrade that writes the same IR is no new version."""
    first, *rest = versions.load_yaml_documents(yaml_text)
    first = {key: value for key, value in first.items() if key != "sdkVersion"}
    return versions.document_hash([first, *rest])


def _import_failure(path: Path, exc: BaseException) -> ModuleFailure:
    """kfp 2 runs a pipeline's body at import: an error there names that pipeline."""
    function = _pipeline_being_built(path, exc)
    if function is None:
        return harness.failure(path, exc, "import failed")
    return harness.failure(path, exc, f"building pipeline {function} failed", function)


def _pipeline_being_built(path: Path, exc: BaseException) -> str | None:
    """The function of the user's file that kfp's graph builder was running when `exc` rose."""
    building = False
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.endswith(_GRAPH_BUILDER):
            building = True
        elif building and frame.filename == str(path):
            return frame.name
    return None
