"""Which flavour this runner is: v1 (kfp 1.8 + kfp-tekton, DSP 1.x) or v2 (kfp 2, DSP 2.x).

The installed SDK decides, once: kfp 1.8 and kfp 2 cannot share one environment, so the venv or
image a job runs in already says which server generation it serves. Read from the package
metadata, not by importing kfp: settings need it for their defaults, and `--help` or a setting
error should not wait for the SDK to load. The other flavour's modules are never imported.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
from pathlib import Path
from types import ModuleType

from runner.errors import ConfigurationError

V1, V2 = "v1", "v2"
SDK_PACKAGES = {V1: ("kfp", "kfp-tekton"), V2: ("kfp", "kfp-pipeline-spec")}
"""The packages whose versions decide what a module compiles to (module fingerprints)."""
PIPELINES_DIR = {V1: Path("pipelines"), V2: Path("pipelines_v2")}
"""The default pipelines folder: each flavour's pipelines are written for its own SDK."""


@functools.cache
def current() -> str:
    """v1 for kfp 1.x, v2 for kfp 2.x; any other (or none) is a setting-level error."""
    try:
        version = importlib.metadata.version("kfp")
    except importlib.metadata.PackageNotFoundError:
        raise ConfigurationError(
            "kfp is not installed: run in the image, or in the venv `make venv` builds "
            "(BACKEND=v2 for DSP 2.x)"
        ) from None
    major = version.split(".")[0]
    if major not in ("1", "2"):
        raise ConfigurationError(
            f"kfp {version} is installed; dsp-runner supports kfp 1.8 (DSP 1.x) or kfp 2 (DSP 2.x)"
        )
    return V1 if major == "1" else V2


def default_pipelines_dir() -> Path:
    """The flavour's own pipelines folder; v1's when no SDK is installed (`--help` still works)."""
    try:
        return PIPELINES_DIR[current()]
    except ConfigurationError:
        return PIPELINES_DIR[V1]


def sdk_packages() -> tuple[str, ...]:
    """The flavour's SDK packages, whose installed versions go into module fingerprints."""
    return SDK_PACKAGES[current()]


def compiler() -> ModuleType:
    """The flavour's compile module (`runner.harness.ModuleCompiler`), imported on first use."""
    return importlib.import_module(f"runner.flavour_{current()}.compile")


def client() -> ModuleType:
    """The flavour's server client module (its `DSPClient` implements `runner.server.Server`)."""
    return importlib.import_module(f"runner.flavour_{current()}.client")
