"""kfp's own local engine runs a compiled IR with a loop and a condition in this venv.

This is what localdsp's v2 runs will execute with: `kfp.local` with the subprocess runner and no
venv per task (`use_venv=False`), so steps import the kfp installed here and need no network.
"""

from pathlib import Path

import sample_pipelines
from kfp import compiler, local
from kfp.components import load_component_from_file


def _run_compiled(pipeline, tmp_path: Path, **arguments):
    """Compile to IR, load the IR back (as localdsp will) and run it locally to its end."""
    ir = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(pipeline, str(ir))
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "root"),
        raise_on_error=True,
    )
    return load_component_from_file(str(ir))(**arguments)


def test_a_parallel_for_and_an_if_run_locally(tmp_path):
    marks = tmp_path / "marks.txt"
    _run_compiled(sample_pipelines.control_flow, tmp_path, path=str(marks), threshold=5)
    assert sorted(marks.read_text().splitlines()) == ["above", "item 1", "item 2", "item 3"]


def test_the_else_branch_runs_when_the_condition_is_false(tmp_path):
    marks = tmp_path / "marks.txt"
    _run_compiled(sample_pipelines.control_flow, tmp_path, path=str(marks), threshold=0)
    assert "below" in marks.read_text().splitlines()
    assert "above" not in marks.read_text().splitlines()


def test_the_add_pipeline_returns_19(tmp_path):
    task = _run_compiled(sample_pipelines.add_pipeline, tmp_path, a=7.0, b=8.0)
    assert task.output == 19.0
