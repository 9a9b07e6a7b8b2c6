"""Pipelines as code: how each pipeline is run and scheduled, declared in the repository.

The file (`dsp-runner.yaml` in the pipelines folder, or DSP_CONFIG) has a declared JSON schema;
`load` validates it whole and raises one ConfigurationError naming the file, the pipeline and the
key of every problem. Precedence, most specific first: a flag or environment variable given for
this job, then the pipeline's own entry, then the file's `defaults`, then the built-in default.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import yaml

from runner import targets
from runner.cron import CronError
from runner.cron import fields as cron_fields
from runner.cron import parse as parse_cron
from runner.errors import ConfigurationError
from runner.setting_values import MAX_SERVER_TEXT

_CRON_FORM = (
    "write 6 fields, seconds first (seconds minutes hours day-of-month month day-of-week), "
    "or a descriptor such as @daily or @every 1h"
)
_RANGES = "ranges go upward (22-23,0-2 for 22:00 to 02:00), Sunday is 0, steps are positive"
_ARGUMENTS = {
    "type": "object",
    "additionalProperties": {"type": ["string", "number", "boolean"]},
}
_SCHEDULE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "cron"],
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,40}$"},
        "cron": {
            "type": "string",
            "description": "6 fields, seconds first, or a descriptor: robfig/cron v1, checked by "
            "runner.cron as the server checks it",
        },
        "enabled": {"type": "boolean"},
        "max_concurrency": {"type": "integer", "minimum": 1, "maximum": 10},
        "catchup": {"type": "boolean"},
        "arguments": _ARGUMENTS,
    },
}
_RETENTION = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "keep_versions": {"type": "integer", "minimum": 0},
        "keep_days": {"type": "number", "minimum": 0, "maximum": 36500},
    },
}
_ENTRY = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "display_name": {"type": "string", "pattern": "^[A-Za-z0-9._ -]{1,100}$"},
        "description": {"type": "string"},
        "experiment": {"type": "string", "minLength": 1},  # at most 255: see _check_lengths
        "arguments": _ARGUMENTS,
        "run_policy": {"enum": ["on-change", "always", "never"]},
        "wait": {"type": "boolean"},
        "wait_timeout": {"type": "number", "exclusiveMinimum": 0},
        "schedules": {"type": "array", "items": _SCHEDULE},
        "retention": _RETENTION,
    },
}
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "defaults": {
            **_ENTRY,
            "properties": {
                k: v
                for k, v in _ENTRY["properties"].items()
                if k not in ("display_name", "description", "schedules")
            },
        },
        "pipelines": {"type": "object", "additionalProperties": _ENTRY},
    },
}
SCHEMA["properties"]["targets"] = targets.schema(
    SCHEMA["properties"]["defaults"], SCHEMA["properties"]["pipelines"]
)


@dataclasses.dataclass(frozen=True)
class Schedule:
    name: str
    cron: str
    enabled: bool = True
    max_concurrency: int = 1
    catchup: bool = False
    arguments: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class PipelineSettings:
    """Everything the file can say about one pipeline, already merged with the defaults."""

    display_name: str | None = None
    description: str | None = None
    experiment: str | None = None
    arguments: dict[str, str] = dataclasses.field(default_factory=dict)
    run_policy: str | None = None
    wait: bool | None = None
    wait_timeout: float | None = None
    schedules: tuple[Schedule, ...] = ()
    retention: dict[str, Any] | None = None
    """keep_versions / keep_days (`prune`), the entry's over the defaults'; None: not set."""


@dataclasses.dataclass(frozen=True)
class RepoConfig:
    path: Path | None
    defaults: dict[str, Any]
    entries: dict[str, dict[str, Any]]
    target_entries: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    """The DSP_TARGET overlay's pipeline entries (`runner.targets`), laid over `entries`."""

    def for_pipeline(self, name: str, slug: str) -> PipelineSettings:
        """The pipeline's entry (by name or slug), with the target's over it, over the file's
        defaults (the target's already laid over them)."""
        entry = targets.merged(
            self.entries.get(name) or self.entries.get(slug) or {},
            self.target_entries.get(name) or self.target_entries.get(slug) or {},
        )
        merged = {**self.defaults, **entry}
        merged["arguments"] = {
            **_strings(self.defaults.get("arguments", {})),
            **_strings(entry.get("arguments", {})),
        }
        merged["schedules"] = tuple(
            Schedule(**{**s, "arguments": _strings(s.get("arguments", {}))})
            for s in entry.get("schedules", [])
        )
        if "retention" in merged:
            defaults = self.defaults.get("retention", {})
            merged["retention"] = {**defaults, **entry.get("retention", {})}
        return PipelineSettings(**merged)

    @property
    def renames(self) -> bool:
        """Whether any entry gives a pipeline another name on the server."""
        every = (*self.entries.values(), *self.target_entries.values())
        return any("display_name" in entry for entry in every)

    def unknown_entries(self, known: set[str]) -> list[str]:
        """Entries that name no discovered pipeline: a typo, or a module that failed."""
        return sorted(name for name in {**self.entries, **self.target_entries} if name not in known)


def load(path: Path, *, required: bool = False, target: str = "") -> RepoConfig:
    """Read and validate the file; a missing optional file means 'all defaults'. `target`
    (DSP_TARGET) lays that environment's overlay over it (see `runner.targets`)."""
    if not path.is_file():
        if required:
            raise ConfigurationError(f"DSP_CONFIG: {path} does not exist")
        if target:
            raise ConfigurationError(
                f"DSP_TARGET: {target!r} is set but there is no settings file {path} to hold "
                "its `targets:` entry; add it, set DSP_CONFIG, or unset DSP_TARGET"
            )
        return RepoConfig(None, {}, {})
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"{path}: cannot read it as YAML: {_first_line(exc)}") from None
    import jsonschema  # only when there is a file to check: it costs a tenth of a second

    problems = sorted(
        jsonschema.Draft202012Validator(SCHEMA).iter_errors(data), key=lambda e: list(e.path)
    )
    if problems:
        raise ConfigurationError("; ".join(f"{path}: {_describe(e)}" for e in problems))
    problems = []
    for prefix, section in targets.sections(data):
        _check_unique_schedules(path, section.get("pipelines", {}), prefix)
        problems += _check_lengths(section, prefix)
        problems += _check_crons(section.get("pipelines", {}), now=time.time(), prefix=prefix)
    if problems:
        raise ConfigurationError("; ".join(f"{path}: {problem}" for problem in problems))
    defaults, target_entries = targets.overlay(data, target, path)
    return RepoConfig(path, defaults, data.get("pipelines", {}), target_entries)


def _describe(error) -> str:
    where = " > ".join(str(part) for part in error.absolute_path) or "(top level)"
    return f"{where}: {error.message}"


def _check_unique_schedules(path: Path, entries: dict, prefix: str = "") -> None:
    for pipeline, entry in entries.items():
        names = [s["name"] for s in entry.get("schedules", [])]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigurationError(
                f"{path}: {prefix}pipelines > {pipeline} > schedules: name "
                f"{duplicates[0]!r} is used twice; schedule names must be unique per pipeline"
            )


def _check_crons(entries: dict, *, now: float, prefix: str = "") -> list[str]:
    """Every schedule as the server will read it (robfig/cron v1), before anything is uploaded:
    the server refuses what robfig cannot parse only when the job is created, mid-deploy."""
    problems = []
    for pipeline, entry in entries.items():
        for schedule in entry.get("schedules", []):
            why = cron_problem(schedule["cron"], now=now)
            if why:
                where = f"{prefix}pipelines > {pipeline} > schedules > {schedule['name']} > cron"
                problems.append(f"{where}: {schedule['cron']!r} {why}")
    return problems


def cron_problem(spec: str, *, now: float) -> str:
    """Why this cron cannot be a schedule ("" when it can): what the server refuses, five
    fields (robfig reads the first as seconds, not as Unix cron's minutes), more than the server's
    column holds, and a date that never comes (robfig gives up after five years; the controller
    then loops or fires at once)."""
    try:
        schedule = parse_cron(spec)
    except CronError as err:
        if err.field:
            return f"is refused by the server (robfig/cron v1): {err.field} field: {err}; {_RANGES}"
        return f"is refused by the server (robfig/cron v1): {err}; {_CRON_FORM}"
    if not spec.startswith("@") and len(cron_fields(spec)) == 5:
        return (
            f"has 5 fields: the server would read the first as seconds, not minutes; {_CRON_FORM}"
        )
    if len(spec) > MAX_SERVER_TEXT:
        return f"is {len(spec)} characters long; the server stores at most {MAX_SERVER_TEXT}"
    if schedule.next(now) is None:
        return (
            "never fires (no such date in the next 5 years), which the server's scheduler "
            "cannot handle; fix the day or the month"
        )
    return ""


def _check_lengths(data: dict, prefix: str = "") -> list[str]:
    """Experiment names the server stores in a 255-character column: a longer one fails there
    with a 500 (MySQL 'Data too long'), so it is refused here before anything is uploaded."""
    entries = {f"{prefix}defaults": data.get("defaults", {})}
    entries |= {
        f"{prefix}pipelines > {name}": entry for name, entry in data.get("pipelines", {}).items()
    }
    return [
        f"{where} > experiment: {len(entry['experiment'])} characters long; the server takes "
        f"experiment names of at most {MAX_SERVER_TEXT}: shorten it"
        for where, entry in entries.items()
        if len(entry.get("experiment", "")) > MAX_SERVER_TEXT
    ]


def _strings(arguments: dict) -> dict[str, str]:
    """Run parameters travel as strings; YAML's true/1.5 become 'True'/'1.5' like kfp does."""
    return {str(k): str(v) for k, v in arguments.items()}


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


@dataclasses.dataclass(frozen=True)
class PipelineOptions:
    """How one pipeline is run this job: the file's entry merged with this job's settings."""

    experiment: str
    run_policy: str
    arguments: dict[str, str]
    wait: bool
    wait_timeout: float
    schedules: tuple[Schedule, ...] = ()


def resolve(settings, repo: RepoConfig, name: str, slug: str):
    """Options for one pipeline, and the display name and description the file may set."""
    entry = repo.for_pipeline(name, slug)
    options = PipelineOptions(
        experiment=settings.given("experiment", entry.experiment),
        run_policy=settings.given("run_policy", entry.run_policy),
        arguments={
            **entry.arguments,
            **settings.run_args.get(slug, {}),
            **settings.run_args.get(name, {}),
        },
        wait=settings.given("wait", entry.wait),
        wait_timeout=settings.given("wait_timeout", entry.wait_timeout),
        schedules=entry.schedules,
    )
    return options, entry.display_name, entry.description
