"""The v2 suite runs in .venv-v2 (kfp 2) with `make test BACKEND=v2`, apart from tests/conftest.py
(which imports kfp_tekton): tests/v2 is importable for its pipelines module."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
