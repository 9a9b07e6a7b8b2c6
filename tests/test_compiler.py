"""Discovery and isolated compilation: broken modules are reported, the others still compile."""

import dataclasses
import os
import random
import re
import shutil
import textwrap
from pathlib import Path

import pytest

from runner import discovery, flavour, harness
from runner.errors import ConfigurationError
from runner.flavour_v1 import compile as v1
from runner.settings import Settings
from runner_helpers import compile_folder, compile_in_a_new_process, write

REPO = Path(__file__).resolve().parent.parent
LOOPS = REPO / "tests" / "pipelines_loops"

GOOD = """
import kfp

def echo(text: str) -> str:
    return text

echo_op = kfp.components.create_component_from_func(echo, base_image="python:3.11")

@kfp.dsl.pipeline(name="{name}", description="test pipeline")
def pipe(text="{default}", required_param: str = None):
    echo_op(text)
"""


def test_the_project_pipelines_compile_with_names_parameters_and_stable_hashes():
    first = compile_folder(REPO / "pipelines")
    second = compile_folder(REPO / "pipelines")
    assert first.failures == []
    by_name = {p.name: p for p in first.pipelines}
    assert {"Add Pipeline", "Data Quality Gate", "Train and Evaluate"} <= set(by_name)
    add = by_name["Add Pipeline"]
    assert add.slug == "add-pipeline"
    assert add.defaults == {"a": "1", "b": "7"}
    assert add.deterministic
    assert "kind: PipelineRun" in add.yaml_text
    assert [p.content_hash for p in first.pipelines] == [p.content_hash for p in second.pipelines]


def test_the_installed_sdk_makes_this_the_v1_flavour_reading_pipelines_not_pipelines_v2():
    assert flavour.current() == "v1"
    assert flavour.compiler() is v1
    assert Settings().pipelines_dir == Path("pipelines")


def test_main_block_never_runs(tmp_path):
    marker = tmp_path / "main-ran"
    write(
        tmp_path,
        "p.py",
        GOOD.format(name="P", default="x")
        + textwrap.dedent(f"""
        if __name__ == "__main__":
            open({str(marker)!r}, "w").write("ran")
        """),
    )
    result = compile_folder(tmp_path)
    assert [p.name for p in result.pipelines] == ["P"]
    assert not marker.exists()


def test_a_parameter_without_default_is_required(tmp_path):
    write(tmp_path, "p.py", GOOD.format(name="P", default="x"))
    (pipeline,) = compile_folder(tmp_path).pipelines
    required = {p.name for p in pipeline.parameters if p.required}
    assert required == {"required_param"}


@pytest.mark.parametrize(
    ("source", "line", "reason"),
    [
        ("import kfp\ndef broken(:\n    pass\n", 2, "import failed: SyntaxError"),
        (
            "import kfp\nimport no_such_module_here\n",
            2,
            "import failed: ModuleNotFoundError: No module named 'no_such_module_here'",
        ),
        ("import sys\nsys.exit(3)\n", 2, "the module called sys.exit(3) at import"),
        (
            "x = 1\nraise RuntimeError('boom\\nsecond line')\n",
            2,
            "import failed: RuntimeError: boom",
        ),
        ("import kfp\n", None, "defines no function decorated with @kfp.dsl.pipeline"),
    ],
)
def test_broken_module_is_reported_with_file_line_and_reason_and_others_still_compile(
    tmp_path, source, line, reason
):
    write(tmp_path, "a_good.py", GOOD.format(name="Good", default="x"))
    broken = write(tmp_path, "b_broken.py", source)
    result = compile_folder(tmp_path)
    assert [p.name for p in result.pipelines] == ["Good"]
    (failure,) = result.failures
    assert failure.source == broken
    assert failure.line == line
    assert reason in failure.reason
    assert "\n" not in failure.describe()


def test_compile_error_names_the_pipeline_function_and_line(tmp_path):
    write(
        tmp_path,
        "p.py",
        """
        import kfp

        @kfp.dsl.pipeline(name="Bad")
        def bad_pipeline(a="1"):
            raise ValueError("cannot build this graph")
        """,
    )
    (failure,) = compile_folder(tmp_path).failures
    assert failure.pipeline == "bad_pipeline"
    assert failure.line == 6
    assert failure.reason == ("compiling bad_pipeline failed: ValueError: cannot build this graph")


def test_a_hanging_module_is_stopped_by_the_timeout(tmp_path):
    write(tmp_path, "a_good.py", GOOD.format(name="Good", default="x"))
    write(tmp_path, "hang.py", "import time\ntime.sleep(60)\n")
    result = compile_folder(tmp_path, timeout=3)
    assert [p.name for p in result.pipelines] == ["Good"]
    (failure,) = result.failures
    assert "took longer than 3 s (DSP_COMPILE_TIMEOUT)" in failure.reason


def test_a_module_that_kills_its_interpreter_is_reported(tmp_path):
    write(tmp_path, "crash.py", "import os\nos._exit(9)\n")
    (failure,) = compile_folder(tmp_path).failures
    assert "process died while importing (exit code 9)" in failure.reason


def test_two_pipelines_with_one_name_the_second_is_refused(tmp_path):
    write(tmp_path, "a.py", GOOD.format(name="Same", default="x"))
    second = write(tmp_path, "b.py", GOOD.format(name="Same", default="y"))
    result = compile_folder(tmp_path)
    assert len(result.pipelines) == 1
    (failure,) = result.failures
    assert failure.source == second
    assert "is already taken by" in failure.reason


def test_two_names_with_one_file_name_the_second_is_refused(tmp_path):
    write(tmp_path, "a.py", GOOD.format(name="Add Pipeline", default="x"))
    second = write(tmp_path, "b.py", GOOD.format(name="add_pipeline", default="y"))
    result = compile_folder(tmp_path)
    assert [p.name for p in result.pipelines] == ["Add Pipeline"]
    (failure,) = result.failures
    assert failure.source == second
    assert "(file name add-pipeline.yaml) is already taken by" in failure.reason


@pytest.mark.parametrize("name", ["x" * 101, "a+b", "100%"])
def test_names_the_server_would_reject_are_refused_before_upload(tmp_path, name):
    write(tmp_path, "p.py", GOOD.format(name=name, default="x"))
    result = compile_folder(tmp_path)
    assert result.pipelines == []
    assert "must be 1 to 100 characters" in result.failures[0].reason


def test_nondeterministic_pipeline_is_flagged(tmp_path):
    write(
        tmp_path,
        "p.py",
        GOOD.format(name="Clock", default="x").replace(
            "echo_op(text)", "import time\n    echo_op(str(time.time_ns()))"
        ),
    )
    (pipeline,) = compile_folder(tmp_path).pipelines
    assert not pipeline.deterministic


def test_discovery_skips_private_and_cache_files(tmp_path):
    for name in (
        "b.py",
        "a.py",
        "_helpers.py",
        "__init__.py",
        "sub/c.py",
        "__pycache__/x.py",
        ".hidden/y.py",
        "notes.txt",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    found = [p.relative_to(tmp_path).as_posix() for p in discovery.discover(tmp_path)]
    assert found == ["a.py", "b.py", "sub/c.py"]


def test_missing_pipelines_folder_is_a_configuration_error_naming_it(tmp_path):
    with pytest.raises(ConfigurationError, match=r"DSP_PIPELINES_DIR: .*nope is not a folder"):
        discovery.discover(tmp_path / "nope")


def test_an_empty_pipelines_folder_is_a_configuration_error(tmp_path):
    (tmp_path / "README.md").write_text("no pipelines here")
    with pytest.raises(ConfigurationError, match=r"DSP_PIPELINES_DIR: no pipeline modules"):
        discovery.discover(tmp_path)


def test_a_compiled_pipeline_over_the_upload_limit_is_refused(tmp_path):
    write(tmp_path, "p.py", GOOD.format(name="Big", default="x"))
    (pipeline,) = compile_folder(tmp_path).pipelines
    huge = dataclasses.replace(pipeline, yaml_text="x" * (harness.MAX_UPLOAD_BYTES + 1))
    accepted, rejected = harness._check_server_rules([huge])
    assert accepted == []
    assert "over the server's upload limit of 33554432" in rejected[0].reason


def test_pipelines_with_loops_compile_to_the_same_bytes_in_every_process(tmp_path):
    outputs = [tmp_path / "first", tmp_path / "second"]
    runs = [
        compile_in_a_new_process(LOOPS, outputs[0], "1"),
        compile_in_a_new_process(LOOPS, outputs[1], "2"),
    ]
    for code, logged in runs:
        assert code == 0, logged
        assert not [e for e in logged if e["event"] == "pipeline_nondeterministic"]
    first, second = (sorted((out / "pipelines").iterdir()) for out in outputs)
    assert [p.name for p in first] == [
        "condition-in-loop.yaml",
        "graph-component.yaml",
        "loop-over-literal-list.yaml",
        "loop-over-parameter.yaml",
        "loop-over-task-output.yaml",
        "nested-loops.yaml",
        "tekton-loops.yaml",
    ]
    assert [p.name for p in second] == [p.name for p in first]
    for one, other in zip(first, second, strict=True):
        assert one.read_bytes() == other.read_bytes(), one.name


def generated_names(pipeline) -> set[str]:
    """The names kfp-tekton made for this pipeline's custom tasks (loops, graphs, add-ons)."""
    prefix = v1.custom_task_prefix(pipeline)
    return (
        set(re.findall(re.escape(prefix) + r"[-a-z0-9]+", pipeline.yaml_text)) if prefix else set()
    )


def test_two_pipelines_with_loops_never_share_a_generated_name(tmp_path):
    shutil.copytree(LOOPS, tmp_path, dirs_exist_ok=True)
    source = (LOOPS / "literal_loop.py").read_text()
    for region in ("north", "south"):
        write(
            tmp_path,
            f"churn_{region}.py",
            source.replace(
                "Loop Over Literal List", f"Customer churn model training pipeline for {region}"
            ),
        )
    result = compile_folder(tmp_path)
    assert result.failures == []
    names = {p.name: generated_names(p) for p in result.pipelines}
    assert all(names.values()), names
    north = names["Customer churn model training pipeline for north"]
    south = names["Customer churn model training pipeline for south"]
    assert {n[:40] for n in north} == {n[:40] for n in south}
    every = [name for group in names.values() for name in group]
    assert len(every) == len(set(every))


def test_a_generated_name_two_pipelines_would_share_is_refused_naming_both(tmp_path):
    start = "Customer churn model training pipeline for region "
    source = (LOOPS / "literal_loop.py").read_text()
    write(tmp_path, "a.py", source.replace("Loop Over Literal List", start + "522"))
    second = write(tmp_path, "b.py", source.replace("Loop Over Literal List", start + "1005"))
    write(tmp_path, "_components.py", (LOOPS / "_components.py").read_text())
    result = compile_folder(tmp_path)
    assert [p.name for p in result.pipelines] == [start + "522"]
    (failure,) = result.failures
    assert failure.source == second
    assert failure.reason == (
        f"pipeline name '{start}1005' gives its loops the same names as '{start}522' in "
        f"{tmp_path / 'a.py'} (customer-churn-model-training-pipeline-f-3be6b-...): change the "
        "first 40 characters of one name"
    )


def test_seeding_gives_kfp_its_random_module_back():
    from kfp.dsl.extensions import kubernetes

    with v1._drawing_from(random.Random("x")):
        assert kubernetes.random is not random
    assert kubernetes.random is random


def test_a_module_never_sees_the_bearer_token(tmp_path, monkeypatch):
    """User code runs in the compile child; a module that reads its environment at import (to
    log it, to pick a base image) must not find DSP_TOKEN there."""
    monkeypatch.setenv("DSP_TOKEN", "sekret-canary")
    monkeypatch.setenv("DSP_OTHER_SETTING", "visible")
    nosy = "import os\nassert os.environ['DSP_OTHER_SETTING'] == 'visible'\n"
    nosy += (
        "if 'DSP_TOKEN' in os.environ:\n    raise RuntimeError('the token reached the module')\n"
    )
    write(tmp_path, "nosy.py", nosy + GOOD.format(name="Nosy", default="x"))
    result = compile_folder(tmp_path)
    assert result.failures == []
    assert [p.name for p in result.pipelines] == ["Nosy"]
    assert os.environ["DSP_TOKEN"] == "sekret-canary"
