"""The v2 suite runs in .venv-v2 (kfp 2) with `make test BACKEND=v2`, apart from tests/conftest.py
(which imports kfp_tekton): tests/v2 is importable for its pipelines module, tests/ for the
runner helpers both suites share (they import no SDK)."""

import os
import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from localdsp.server import LocalDSP
from runner_helpers import REPO, Project

TOKEN = "test-token"
PROJECT_ENV_PREFIXES = ("DSP_", "LOCALDSP_", "KF_PIPELINES_")
PROJECT_ENV_NAMES = ("LOG_FORMAT", "LOG_LEVEL")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """The developer's shell settings (and kfp's ~/.config/kfp) must not leak into any test."""
    for name in list(os.environ):
        if name.startswith(PROJECT_ENV_PREFIXES) or name in PROJECT_ENV_NAMES:
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def dsp(tmp_path):
    """A started DSP 2.x LocalDSP (runs are stored, not executed), accepting TOKEN."""
    with LocalDSP(tmp_path / "localdsp-data", tokens=[TOKEN], api="v2") as server:
        yield server


@pytest.fixture
def executing_dsp(tmp_path):
    """The same, executing each run with kfp.local."""
    with LocalDSP(tmp_path / "localdsp-data", tokens=[TOKEN], api="v2", execute=True) as server:
        yield server


def v2_project(root: Path, url: str, token: str = TOKEN) -> Project:
    return Project(root, url, token, source=REPO / "pipelines_v2")


@pytest.fixture
def project(tmp_path, dsp, monkeypatch):
    """The kfp 2 example pipelines in a temporary folder, the runner pointed at `dsp`."""
    project = v2_project(tmp_path / "project", dsp.url)
    project.env(monkeypatch)
    return project


@pytest.fixture
def kfp_client(dsp):
    """kfp 2's own client, as a user lists what the server holds."""
    import kfp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return kfp.Client(host=dsp.url, existing_token=TOKEN)
