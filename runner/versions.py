"""Names that make uploads and runs idempotent: derived from content and commit, never random.

A version is named after the content hash of its compiled YAML, so the same source always maps to
the same version name and "is it already on the server?" is a name lookup. The commit and the
repository go in the description, so a version still tells where it came from; on DSP 2.x also
the version's parameter signature, which a listing that shows no specs can read.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
import urllib.parse
from pathlib import Path

import yaml

from runner import flavour
from runner.harness import Parameter

HASH_LENGTH = 12
MAX_NAME = 100
_COMMIT_IN_DESCRIPTION = re.compile(r"\bcommit ([0-9a-f]{7,64})\b")
MARK = "dsp-runner:"
RECORD_PREFIX = "dsp-runner-fingerprint-"
MAX_DESCRIPTION = 255
_RECORDED = re.compile(r" compiles as module ([0-9a-f]+ of \d+)$")
SIGNATURE = "; parameters "
MAX_SIGNED = 4096
"""The longest description (URL-encoded: it travels as an upload's query parameter) that
carries a parameter signature; a longer one leaves it out."""


# libyaml's C parser when PyYAML has it (ten times faster than pure Python), safe either way.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str):
    """Safe loading: compiled pipelines and server answers are data, never objects."""
    return yaml.load(text, Loader=_LOADER)  # noqa: S506


def load_yaml_documents(text: str) -> list:
    """Every document of a multi-document YAML stream (kfp 2 writes its platform config as a
    second document after the pipeline spec when a pipeline has one)."""
    return list(yaml.load_all(text, Loader=_LOADER))


def content_hash(yaml_text: str) -> str:
    """SHA-256 of the YAML's data, not its bytes: key order and formatting do not count."""
    return document_hash(load_yaml(yaml_text))


def document_hash(document) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def version_name(slug: str, digest: str) -> str:
    """`<slug>-<hash12>`: unique per content, never equal to the pipeline's own name."""
    suffix = f"-{digest[:HASH_LENGTH]}"
    return slug[: MAX_NAME - len(suffix)] + suffix


def version_description(
    digest: str,
    commit: str,
    repo: str,
    source: str,
    module: str = "",
    parameters: tuple[Parameter, ...] | None = None,
) -> str:
    """Where the version came from, readable in the dashboard and parsed back by `commit_of`
    and `read_description`. `module` is the compile fingerprint (see `module_fingerprints`).
    `parameters` (v2) adds the version's parameter signature (`read_signature`), so a listing
    that shows descriptions but no specs still tells what a run of it takes."""
    origin = f"commit {commit}" if commit else "commit unknown"
    if repo:
        origin += f" of {repo}"
    text = f"{MARK} {origin}, file {source}; sha256 {digest}"
    text = f"{text}; module {module}" if module else text
    if parameters is None:
        return text
    signed = text + SIGNATURE + _signature(parameters)
    return signed if len(urllib.parse.quote(signed)) <= MAX_SIGNED else text


def _signature(parameters: tuple[Parameter, ...]) -> str:
    """[[name, IR type, default or null, optional], ...] as compact JSON."""
    rows = [[p.name, p.type, p.default, p.optional] for p in parameters]
    return json.dumps(rows, separators=(",", ":"), ensure_ascii=False)


def read_signature(description: str | None) -> tuple[Parameter, ...] | None:
    """The parameters a dsp-runner version's description records; None when it records none
    (older or hand-made versions, a signature past `MAX_SIGNED`) or one that does not parse."""
    text = description or ""
    if not is_runner_version(text) or SIGNATURE not in text:
        return None
    try:
        rows = json.loads(text.partition(SIGNATURE)[2])
        return tuple(_parameter(row) for row in rows)
    except (ValueError, TypeError):
        return None


def _parameter(row) -> Parameter:
    name, kind, default, optional = row
    if not all((isinstance(name, str), isinstance(kind, str), isinstance(optional, bool))) or not (
        default is None or isinstance(default, str)
    ):
        raise ValueError(row)
    return Parameter(name, default, type=kind, optional=optional)


_DESCRIBED = re.compile(
    r"file (?P<source>\S+); sha256 (?P<digest>[0-9a-f]{64})"
    r"(?:; module (?P<module>[0-9a-f]+ of \d+))?"
)


def read_description(description: str | None) -> dict[str, str]:
    """source, digest and module fingerprint of a version dsp-runner uploaded ({} otherwise)."""
    match = _DESCRIBED.search(description or "")
    return {k: v for k, v in match.groupdict().items() if v} if match else {}


def module_fingerprints(
    folder: Path, modules: list[Path], settings_file: Path | None = None
) -> dict[Path, str]:
    """What compiling a module depends on, as a short hash per module: its own file, every other
    file of the folder that is not a pipeline module (helpers, data), and the versions of the
    flavour's SDK (`flavour.sdk_packages`) and the runner. Equal fingerprints compile to equal
    YAML.

    The settings file is left out although it usually sits in the folder: the compile never
    reads it, and what it sets (arguments, schedules, descriptions) is applied after, to
    compiled and skipped modules alike; so editing a schedule recompiles nothing."""
    shared = hashlib.sha256()
    for package in (*flavour.sdk_packages(), "dsp-runner"):
        shared.update(f"{package}={_installed_version(package)}\n".encode())
    left_out = {path.resolve() for path in [*modules, *([settings_file] if settings_file else [])]}
    for path in sorted(_files(folder)):
        if path.resolve() not in left_out:
            shared.update(_file_digest(path, folder))
    return {
        module: hashlib.sha256(shared.digest() + _file_digest(module, folder)).hexdigest()[:16]
        for module in modules
    }


def record_name(fingerprint: str) -> str:
    """The archived experiment that records what a module fingerprint compiles like (reuse)."""
    return f"{RECORD_PREFIX}{fingerprint}"


def record_description(source: str, module: str) -> str:
    """'<file> compiles as module <mark>': the files with the record's fingerprint compile to
    what the default versions marked `module` hold. Kept under the server's 255 characters."""
    tail = f" compiles as module {module}"
    room = MAX_DESCRIPTION - len(MARK) - 1 - len(tail)
    shown = source if len(source) <= room else "..." + source[-(room - 3) :]
    return f"{MARK} {shown}{tail}"


def record_target(description: str | None) -> str:
    """The module mark ("<fingerprint> of <n>") a record points at, or "" if it is none."""
    match = _RECORDED.search(description or "")
    return match.group(1) if match and is_runner_version(description) else ""


def _files(folder: Path) -> list[Path]:
    return [
        p
        for p in folder.rglob("*")
        if p.is_file()
        and not any(
            part.startswith(".") or part == "__pycache__" for part in p.relative_to(folder).parts
        )
    ]


def _file_digest(path: Path, folder: Path) -> bytes:
    """The file's place in the folder and its bytes: the same checkout fingerprints the same in
    any workspace, and moving a helper to another subfolder counts as a change."""
    name = str(path.relative_to(folder))
    return hashlib.sha256(name.encode() + b"\0" + path.read_bytes()).digest()


def _installed_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def is_runner_version(description: str | None) -> bool:
    """Whether a dsp-runner deploy uploaded this version (the cron mode runs only those)."""
    return (description or "").startswith(MARK)


def slug_of(version: str) -> str:
    """The pipeline slug a content-named version was made from."""
    slug, _, digest = version.rpartition("-")
    return slug if slug and len(digest) == HASH_LENGTH else version


def commit_of(description: str | None) -> str:
    """The commit a version was uploaded from, as written by `version_description`."""
    match = _COMMIT_IN_DESCRIPTION.search(description or "")
    return match.group(1) if match else ""


def run_name(version: str, key: str) -> str:
    """The one run of `version` for `key` (a commit, or a schedule slot): a second job with the
    same key finds it by name instead of starting another."""
    return f"{version}@{key or 'unknown'}"


def short_commit(commit: str) -> str:
    return commit[:HASH_LENGTH]
