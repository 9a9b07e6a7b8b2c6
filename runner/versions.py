"""Names that make uploads and runs idempotent: derived from content and commit, never random.

A version is named after the content hash of its compiled YAML, so the same source always maps to
the same version name and "is it already on the server?" is a name lookup. The commit and the
repository go in the description, so a version still tells where it came from.
"""

from __future__ import annotations

import hashlib
import json
import re

import yaml

HASH_LENGTH = 12
MAX_NAME = 100
_COMMIT_IN_DESCRIPTION = re.compile(r"\bcommit ([0-9a-f]{7,64})\b")
MARK = "dsp-runner:"


def content_hash(yaml_text: str) -> str:
    """SHA-256 of the YAML's data, not its bytes: key order and formatting do not count."""
    document = yaml.safe_load(yaml_text)
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def version_name(slug: str, digest: str) -> str:
    """`<slug>-<hash12>`: unique per content, never equal to the pipeline's own name."""
    suffix = f"-{digest[:HASH_LENGTH]}"
    return slug[: MAX_NAME - len(suffix)] + suffix


def version_description(digest: str, commit: str, repo: str, source: str) -> str:
    """Where the version came from, readable in the dashboard and parseable by `commit_of`."""
    origin = f"commit {commit}" if commit else "commit unknown"
    if repo:
        origin += f" of {repo}"
    return f"{MARK} {origin}, {source}; sha256 {digest}"


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
