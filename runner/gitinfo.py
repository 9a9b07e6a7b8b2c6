"""Which commit and repository the pipelines come from.

Settings win (the Tekton Task passes git-clone's results); otherwise ask `git` in the pipelines
folder. Without either, versions still work (they are content-named) but cannot name a commit.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


@dataclasses.dataclass(frozen=True)
class Origin:
    commit: str
    repo: str


def origin(folder: Path, commit: str = "", repo: str = "") -> Origin:
    return Origin(
        commit=commit or _git(folder, "rev-parse", "HEAD"),
        repo=_without_credentials(repo or _git(folder, "remote", "get-url", "origin")),
    )


def _git(folder: Path, *args: str) -> str:
    """One git query; any failure (no git, not a checkout, no remote) means 'unknown'."""
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    value = done.stdout.strip() if done.returncode == 0 else ""
    return value if not args[0] == "rev-parse" or re.fullmatch(r"[0-9a-f]{40,64}", value) else ""


def _without_credentials(url: str) -> str:
    """A clone URL may embed a token (https://user:token@host/...): never let it reach a log."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if not (parts.username or parts.password):
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
