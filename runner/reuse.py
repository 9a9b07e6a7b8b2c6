"""Skip compiling a module when the server already holds exactly what it would compile to.

Each version dsp-runner uploads names, in its description, the fingerprint of what compiling
its module depended on (`versions.module_fingerprints`) and how many pipelines the module
defines. When every pipeline of a module is on the server with that same fingerprint as its
default version, compiling again would give the same YAML, so the module is not imported at
all: a deploy where nothing changed compiles nothing. The content hash still decides what is
uploaded; this only saves the work of computing it again.

A fingerprint changes without the YAML changing when a shared file changes in a way that does
not matter (a comment in a helper) or the runner is upgraded. Nothing is uploaded then, and the
v1 API cannot edit a version's description, so the default versions keep the old fingerprint.
`Records` writes the new one down elsewhere, so the next deploy skips the compile again.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import structlog

from runner import versions
from runner.errors import AuthError, ServerError, TLSError
from runner.harness import CompiledPipeline, Parameter
from runner.server import ServerExperiment, ServerPipeline

logger = structlog.get_logger()


class Records:
    """Module fingerprints the default versions cannot carry, each an archived experiment.

    `dsp-runner-fingerprint-<fingerprint>`, described "<file> compiles as module <mark>": the
    files with this fingerprint compile to what the default versions marked <mark> hold. Why an
    experiment: it is the only object the v1 API lets a job create with a free name and text
    that changes neither what runs nor what the dashboard lists (archived, it is out of the
    experiments list), and deleting it costs one recompile at most. Why not fingerprint less:
    a comment inside a component's function is in the compiled YAML, and a runner upgrade may
    change the YAML, so only a compile can tell that nothing changed; the settings file, which
    the compile never reads, is already left out of the fingerprint.

    Read only when some module's fingerprint is on no default version (one paged listing), so a
    deploy where the versions carry every fingerprint sends no extra request. Written by
    `deploy` only, for a module just compiled to exactly its default versions; a record nothing
    can use any more (its mark left the default versions, or a newer record points at the same
    mark) is deleted when the records are next read by a deploy.
    """

    def __init__(self, client):
        self._client = client
        self._listed: dict[str, ServerExperiment] | None = None
        self._asked: set[str] = set()
        self._marks: set[str] = set()
        self._used: set[str] = set()

    def aliases(self, fingerprints: set[str], marks: set[str]) -> dict[str, str]:
        """fingerprint → the module mark it compiles as, for fingerprints on no default version;
        `marks` are the marks the default versions carry."""
        self._asked |= fingerprints
        self._marks = marks
        listed = self._listing()
        found = {}
        for fingerprint in fingerprints:
            record = listed.get(versions.record_name(fingerprint))
            target = versions.record_target(record.description) if record else ""
            if target in marks:
                found[fingerprint] = target
                self._used.add(record.name)
        return found

    def write(self, plans, *, concurrency: int) -> None:
        """After a deploy's uploads: record each module that compiled, under a fingerprint no
        default version carries, to exactly its default versions; delete what is stale."""
        if self._listed is None:
            return
        listed = self._listed
        wanted = _wanted(plans, self._asked)
        keep = set(wanted) | self._used
        kept_targets = {versions.record_target(listed[n].description) for n in self._used}
        kept_targets |= {versions.record_target(d) for d in wanted.values()}
        stale = [
            record
            for name, record in listed.items()
            if name not in keep
            and (
                versions.record_target(record.description) not in self._marks
                or versions.record_target(record.description) in kept_targets
            )
        ]
        new = {
            name: text
            for name, text in wanted.items()
            if name not in listed or listed[name].description != text
        }
        replaced = [listed[name] for name in new if name in listed]
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            list(pool.map(self._delete, stale + replaced))
            list(pool.map(lambda item: self._create(*item), new.items()))

    def _listing(self) -> dict[str, ServerExperiment]:
        if self._listed is None:
            try:
                found = self._client.experiments_containing(versions.RECORD_PREFIX)
            except (AuthError, TLSError):
                raise
            except ServerError as exc:
                logger.warning("fingerprint_records_unread", error=str(exc))
                found = []
            self._listed = {
                e.name: e
                for e in found
                if e.name.startswith(versions.RECORD_PREFIX)
                and versions.record_target(e.description)
            }
        return self._listed

    def _create(self, name: str, description: str) -> None:
        try:
            self._client.create_archived_experiment(name, description)
        except (AuthError, TLSError):
            raise
        except ServerError as exc:
            logger.warning("fingerprint_not_recorded", record=name, error=str(exc))
            return
        logger.info("fingerprint_recorded", record=name, description=description)

    def _delete(self, record: ServerExperiment) -> None:
        try:
            self._client.delete_experiment(record.id)
        except (AuthError, TLSError):
            raise
        except ServerError as exc:
            logger.warning("fingerprint_record_kept", record=record.name, error=str(exc))


def split(
    modules: list[Path],
    fingerprints: dict[Path, str],
    server: list[ServerPipeline],
    folder: Path,
    records: Records | None = None,
) -> tuple[list[CompiledPipeline], list[Path]]:
    """(pipelines rebuilt from the server, modules that must be compiled)."""
    by_fingerprint: dict[str, list[ServerPipeline]] = defaultdict(list)
    marks: set[str] = set()
    for pipeline in server:
        marked = versions.read_description(
            pipeline.default_version.description if pipeline.default_version else ""
        )
        if "module" in marked:
            by_fingerprint[marked["module"].split(" of ")[0]].append(pipeline)
            marks.add(marked["module"])
    missing = {fingerprints[m] for m in modules if fingerprints[m] not in by_fingerprint}
    aliases = records.aliases(missing, marks) if records and missing else {}
    reused: list[CompiledPipeline] = []
    to_compile: list[Path] = []
    for module in modules:
        fingerprint = fingerprints[module]
        if fingerprint in aliases:
            fingerprint = aliases[fingerprint].split(" of ")[0]
        group = by_fingerprint.get(fingerprint, [])
        if group and all(_count(p) == len(group) for p in group):
            reused.extend(_rebuilt(p, folder) for p in group)
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


def _wanted(plans, asked: set[str]) -> dict[str, str]:
    """record name → description, for each module compiled under a fingerprint no default
    version carries (`asked`) whose every pipeline is unchanged and whose default versions all
    carry one mark for the same number of pipelines."""
    from runner.plan import UNCHANGED

    by_source = defaultdict(list)
    for plan in plans:
        if plan.pipeline.function and plan.pipeline.module:
            by_source[plan.pipeline.source].append(plan)
    wanted = {}
    for group in by_source.values():
        fingerprint, count = group[0].pipeline.module.split(" of ")
        if fingerprint not in asked or len(group) != int(count):
            continue
        if any(p.action != UNCHANGED for p in group):
            continue
        olds = {_mark(p.server_pipeline) for p in group}
        old = olds.pop() if len(olds) == 1 else ""
        if old and old.split(" of ")[1] == count:
            source = versions.read_description(group[0].version_description)["source"]
            wanted[versions.record_name(fingerprint)] = versions.record_description(source, old)
    return wanted


def _mark(pipeline: ServerPipeline) -> str:
    return versions.read_description(pipeline.default_version.description).get("module", "")


def _count(pipeline: ServerPipeline) -> int:
    module = versions.read_description(pipeline.default_version.description)["module"]
    return int(module.split(" of ")[1])


def _rebuilt(pipeline: ServerPipeline, folder: Path) -> CompiledPipeline:
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
