"""Skip compiling a module when the server already holds exactly what it would compile to.

Each version dsp-runner uploads names, in its description, the fingerprint of what compiling
its module depended on (`versions.module_fingerprints`) and how many pipelines the module
defines. When every pipeline of a module is on the server with that same fingerprint as its
default version, compiling again would give the same YAML, so the module is not imported at
all: a deploy where nothing changed compiles nothing. The content hash still decides what is
uploaded; this only saves the work of computing it again.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path

from runner import versions
from runner.client import ServerPipeline
from runner.compiler import CompiledPipeline, Parameter


def split(
    modules: list[Path], fingerprints: dict[Path, str], server: list[ServerPipeline], folder: Path
) -> tuple[list[CompiledPipeline], list[Path]]:
    """(pipelines rebuilt from the server, modules that must be compiled)."""
    by_fingerprint: dict[str, list[ServerPipeline]] = defaultdict(list)
    for pipeline in server:
        marked = versions.read_description(
            pipeline.default_version.description if pipeline.default_version else ""
        )
        if "module" in marked:
            by_fingerprint[marked["module"].split(" of ")[0]].append(pipeline)
    reused: list[CompiledPipeline] = []
    to_compile: list[Path] = []
    for module in modules:
        group = by_fingerprint.get(fingerprints[module], [])
        if group and all(_count(p) == len(group) for p in group):
            reused.extend(_rebuilt(p, folder, fingerprints[module]) for p in group)
        else:
            to_compile.append(module)
    return reused, to_compile


def mark(
    pipelines: list[CompiledPipeline], failed: set[Path], fingerprints: dict[Path, str]
) -> list[CompiledPipeline]:
    """Give each compiled pipeline its module's mark, "<fingerprint> of <pipelines>". A module
    with a pipeline that failed gets none, so it is compiled (and reported) again next time."""
    count: dict[Path, int] = defaultdict(int)
    for pipeline in pipelines:
        count[pipeline.source] += 1
    return [
        p
        if p.source in failed
        else dataclasses.replace(p, module=f"{fingerprints[p.source]} of {count[p.source]}")
        for p in pipelines
    ]


def _count(pipeline: ServerPipeline) -> int:
    module = versions.read_description(pipeline.default_version.description)["module"]
    return int(module.split(" of ")[1])


def _rebuilt(pipeline: ServerPipeline, folder: Path, fingerprint: str) -> CompiledPipeline:
    """What the compile would have said, from the server: enough to plan an unchanged deploy."""
    version = pipeline.default_version
    marked = versions.read_description(version.description)
    return CompiledPipeline(
        name=pipeline.name,
        slug=versions.slug_of(version.name),
        function="",
        source=folder / marked["source"],
        description="",
        yaml_text="",
        parameters=tuple(Parameter(name, value) for name, value in version.parameters),
        content_hash=marked["digest"],
        module=marked["module"],
    )
