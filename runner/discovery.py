"""Which files under the pipelines folder are pipeline modules.

A user adds a pipeline by adding a file, so every `*.py` below the folder counts, in a stable
order, except private helpers (`_name.py`, `__init__.py`), hidden files (`.name.py`) and hidden,
private or cache folders.
"""

from __future__ import annotations

import os
from pathlib import Path

from runner.errors import ConfigurationError


def discover(pipelines_dir: Path) -> list[Path]:
    """The pipeline module files, sorted; a missing or unreadable folder is a setting error."""
    if not pipelines_dir.is_dir():
        raise ConfigurationError(
            f"DSP_PIPELINES_DIR: {pipelines_dir} is not a folder "
            f"(looked at {pipelines_dir.resolve()})"
        )
    if not os.access(pipelines_dir, os.R_OK | os.X_OK):
        raise ConfigurationError(f"DSP_PIPELINES_DIR: cannot read folder {pipelines_dir}")
    modules = sorted(
        path
        for path in pipelines_dir.rglob("*.py")
        if not _skipped(path.relative_to(pipelines_dir))
    )
    if not modules:
        raise ConfigurationError(
            f"DSP_PIPELINES_DIR: no pipeline modules (*.py) in {pipelines_dir}; add one, or point "
            "DSP_PIPELINES_DIR at the folder that has them"
        )
    return modules


def _skipped(relative: Path) -> bool:
    """Private modules (`_x.py`), hidden files (`.x.py`, an editor's or git's) and anything in a
    hidden, private or cache folder are not pipelines."""
    return any(part.startswith((".", "_")) for part in relative.parts)
