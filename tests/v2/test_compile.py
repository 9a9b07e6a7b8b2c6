"""The v2 flavour's compile (kfp 2): the same forked-child guarantees as v1, over kfp 2's IR."""

import json
import sys
import textwrap
from pathlib import Path

import pytest
from google.protobuf import json_format
from kfp import local
from kfp.components import load_component_from_file
from kfp.pipeline_spec import pipeline_spec_pb2
from test_ir_fields import KNOWN_TO_2_5, _fields_set

from runner import config, flavour, harness, settings, versions
from runner.flavour_v2 import compile as v2
from runner.plan import arguments
from runner_helpers import compile_folder, compile_in_a_new_process, write

REPO = Path(__file__).resolve().parents[2]
PIPELINES_V2 = REPO / "pipelines_v2"

GOOD = """
from kfp import dsl

@dsl.component(base_image="python:3.11")
def echo(text: str) -> str:
    return text

@dsl.pipeline(name="{name}", description="test pipeline")
def pipe(text: str = "{default}"):
    echo(text=text)
"""

CONTROL_FLOW = """
from kfp import dsl
from _sub import inner, say

@dsl.component(base_image="python:3.11")
def pick(n: int) -> int:
    return n

@dsl.pipeline(name="control-flow", display_name="Control Flow")
def control(n: int = 2, items: list = [1, 2, 3]):
    cleanup = say(text="bye")
    with dsl.ExitHandler(cleanup, name="guard"):
        chosen = pick(n=n)
        with dsl.If(chosen.output > 1, name="big"):
            a = say(text="big")
        with dsl.Elif(chosen.output == 1):
            b = say(text="one")
        with dsl.Else():
            c = say(text="small")
        with dsl.ParallelFor(items=items, parallelism=2) as item:
            with dsl.ParallelFor(items=[{"a": 1}, {"a": 2}]) as pair:
                pick(n=pair.a)
            inner(text="loop")
        inner(text=dsl.OneOf(a.output, b.output, c.output))
"""

SUB = """
from kfp import dsl

@dsl.component(base_image="python:3.11")
def say(text: str) -> str:
    return text

@dsl.pipeline(name="inner")
def inner(text: str = "x") -> str:
    return say(text=text).output
"""


def test_the_installed_sdk_makes_this_the_v2_flavour_with_its_own_pipelines_folder():
    assert flavour.current() == "v2"
    assert flavour.compiler() is v2
    assert settings.Settings().pipelines_dir == Path("pipelines_v2")
    assert "kfp_tekton" not in sys.modules


def test_runner_compile_builds_the_v2_pipelines_and_a_second_process_gives_the_same_bytes(
    tmp_path,
):
    outputs = [tmp_path / "first", tmp_path / "second"]
    runs = [
        compile_in_a_new_process(None, outputs[0], "1"),
        compile_in_a_new_process(PIPELINES_V2, outputs[1], "2"),
    ]
    for code, logged in runs:
        assert code == 0, logged
        assert not [e for e in logged if e["event"] == "pipeline_nondeterministic"]
    first, second = (sorted((out / "pipelines").iterdir()) for out in outputs)
    assert [p.name for p in first] == [
        "add-pipeline.yaml",
        "data-quality-gate.yaml",
        "train-and-evaluate.yaml",
    ]
    for one, other in zip(first, second, strict=True):
        assert one.read_bytes() == other.read_bytes(), one.name
    summary = json.loads((outputs[0] / "summary.json").read_text())
    assert [p["pipeline"] for p in summary["pipelines"]] == [
        "Add Pipeline",
        "Data Quality Gate",
        "Train and Evaluate",
    ]


def test_the_v2_pipelines_write_only_ir_fields_the_kfp_2_5_server_knows():
    for pipeline in compile_folder(PIPELINES_V2).pipelines:
        document = versions.load_yaml_documents(pipeline.yaml_text)[0]
        spec = json_format.ParseDict(document, pipeline_spec_pb2.PipelineSpec())
        assert _fields_set(spec) - KNOWN_TO_2_5 == set(), pipeline.name
        assert document["schemaVersion"] == "2.1.0"


def test_control_flow_compiles_to_the_same_bytes_in_every_process(tmp_path):
    folder = tmp_path / "pipelines"
    folder.mkdir()
    write(folder, "control.py", CONTROL_FLOW)
    write(folder, "_sub.py", SUB)
    runs = [compile_in_a_new_process(folder, tmp_path / seed, seed) for seed in ("1", "2", "3")]
    for code, logged in runs:
        assert code == 0, logged
        assert not [e for e in logged if e["event"] == "pipeline_nondeterministic"]
    texts = {(tmp_path / s / "pipelines" / "control-flow.yaml").read_bytes() for s in "123"}
    assert len(texts) == 1


def test_the_add_pipeline_reads_its_name_parameters_and_arguments_from_the_ir():
    by_name = {p.name: p for p in compile_folder(PIPELINES_V2).pipelines}
    add = by_name["Add Pipeline"]
    assert (add.slug, add.function, add.deterministic) == ("add-pipeline", "add_pipeline", True)
    assert add.description == "A pipeline that adds numbers together"
    assert add.parameters == (
        harness.Parameter("a", "1.0", "NUMBER_DOUBLE", optional=True),
        harness.Parameter("b", "7.0", "NUMBER_DOUBLE", optional=True),
    )
    assert arguments(add, {"a": "7", "b": "8"}) == {"a": "7", "b": "8"}
    assert [p.typed(v) for p, v in zip(add.parameters, ("7", "8"), strict=True)] == [7.0, 8.0]


PARAMETERS = """
from kfp import dsl

@dsl.component(base_image="python:3.11")
def echo(text: str) -> str:
    return text

@dsl.pipeline(name="typed")
def typed(
    needed: int,
    count: int = 3,
    ratio: float = 0.5,
    label: str = "x",
    on: bool = True,
    items: list = [1, "a"],
    options: dict = {"k": 1},
    maybe: str = None,
):
    echo(text=label)
"""


def test_parameters_carry_their_ir_type_default_and_whether_a_value_is_needed(tmp_path):
    write(tmp_path, "p.py", PARAMETERS)
    (pipeline,) = compile_folder(tmp_path).pipelines
    assert {p.name: (p.type, p.default, p.required) for p in pipeline.parameters} == {
        "needed": ("NUMBER_INTEGER", None, True),
        "count": ("NUMBER_INTEGER", "3", False),
        "ratio": ("NUMBER_DOUBLE", "0.5", False),
        "label": ("STRING", "x", False),
        "on": ("BOOLEAN", "true", False),
        "items": ("LIST", '[1.0, "a"]', False),
        "options": ("STRUCT", '{"k": 1.0}', False),
        "maybe": ("STRING", None, False),
    }
    merged = arguments(pipeline, {"needed": "5", "on": "False", "items": "[2]"})
    assert merged["needed"] == "5" and merged["count"] == "3" and "maybe" not in merged
    typed = {p.name: p.typed(merged[p.name]) for p in pipeline.parameters if p.name in merged}
    assert typed == {
        "needed": 5,
        "count": 3,
        "ratio": 0.5,
        "label": "x",
        "on": False,
        "items": [2],
        "options": {"k": 1.0},
    }
    with pytest.raises(ValueError, match=r"needs a value for needed \(no default\)"):
        arguments(pipeline, {})


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"count": "2.5"}, "run argument count='2.5' is not an integer"),
        ({"ratio": "fast"}, "run argument ratio='fast' is not a number"),
        ({"on": "maybe"}, "run argument on='maybe' is not true or false"),
        ({"items": "{'a': 1}"}, "run argument items=\"{'a': 1}\" is not a JSON list"),
        ({"options": "[1]"}, "run argument options='[1]' is not a JSON object"),
    ],
)
def test_an_argument_not_of_its_parameters_type_is_refused_naming_both(tmp_path, given, expected):
    write(tmp_path, "p.py", PARAMETERS)
    (pipeline,) = compile_folder(tmp_path).pipelines
    with pytest.raises(ValueError, match=r"^pipeline 'typed': ") as refused:
        arguments(pipeline, {"needed": "1", **given})
    assert expected in str(refused.value)


def test_a_new_sdk_version_alone_keeps_the_content_hash(tmp_path):
    write(tmp_path, "p.py", GOOD.format(name="p", default="x"))
    (pipeline,) = compile_folder(tmp_path).pipelines
    assert "sdkVersion: kfp-2.17.3" in pipeline.yaml_text
    upgraded = pipeline.yaml_text.replace("sdkVersion: kfp-2.17.3", "sdkVersion: kfp-2.99.0")
    assert v2.ir_hash(upgraded) == pipeline.content_hash
    changed = pipeline.yaml_text.replace("defaultValue: x", "defaultValue: y")
    assert changed != pipeline.yaml_text
    assert v2.ir_hash(changed) != pipeline.content_hash


def test_the_fingerprint_follows_the_kfp_2_sdk_versions(tmp_path, monkeypatch):
    module = write(tmp_path, "p.py", GOOD.format(name="p", default="x"))
    before = versions.module_fingerprints(tmp_path, [module])
    real = versions.importlib.metadata.version
    for package in ("kfp", "kfp-pipeline-spec"):
        with monkeypatch.context() as patched:
            patched.setattr(
                versions.importlib.metadata,
                "version",
                lambda name, package=package: "9.9.9" if name == package else real(name),
            )
            assert versions.module_fingerprints(tmp_path, [module]) != before, package


@pytest.mark.parametrize(
    ("source", "line", "reason"),
    [
        ("from kfp import dsl\ndef broken(:\n    pass\n", 2, "import failed: SyntaxError"),
        (
            "from kfp import dsl\nimport no_such_module_here\n",
            2,
            "import failed: ModuleNotFoundError: No module named 'no_such_module_here'",
        ),
        ("import sys\nsys.exit(3)\n", 2, "the module called sys.exit(3) at import"),
        (
            "from kfp import dsl\n\n@dsl.pipeline(name='bad')\ndef bad(a: str = '1'):\n"
            "    raise ValueError('cannot build this graph')\n",
            5,
            "building pipeline bad failed: ValueError: cannot build this graph",
        ),
        ("from kfp import dsl\n", None, "defines no function decorated with @dsl.pipeline"),
    ],
)
def test_a_broken_module_is_reported_with_file_line_and_reason_and_others_still_compile(
    tmp_path, source, line, reason
):
    write(tmp_path, "a_good.py", GOOD.format(name="good", default="x"))
    broken = write(tmp_path, "b_broken.py", source)
    result = compile_folder(tmp_path)
    assert [p.name for p in result.pipelines] == ["good"]
    (failure,) = result.failures
    assert failure.source == broken
    assert failure.line == line
    assert reason in failure.reason
    assert "\n" not in failure.describe()


def test_a_hanging_module_is_stopped_by_the_timeout(tmp_path):
    write(tmp_path, "a_good.py", GOOD.format(name="good", default="x"))
    write(tmp_path, "hang.py", "import time\ntime.sleep(60)\n")
    result = compile_folder(tmp_path, timeout=3)
    assert [p.name for p in result.pipelines] == ["good"]
    (failure,) = result.failures
    assert "took longer than 3 s (DSP_COMPILE_TIMEOUT)" in failure.reason


def test_a_pipeline_drawing_on_the_clock_is_flagged_as_not_deterministic(tmp_path):
    write(
        tmp_path,
        "p.py",
        GOOD.format(name="clock", default="x").replace(
            "echo(text=text)", "import time\n    echo(text=str(time.time_ns()))"
        ),
    )
    (pipeline,) = compile_folder(tmp_path).pipelines
    assert not pipeline.deterministic


def test_only_pipelines_the_module_defines_are_shipped_once_each_and_main_never_runs(tmp_path):
    marker = tmp_path / "main-ran"
    write(tmp_path, "_sub.py", SUB)
    write(
        tmp_path,
        "p.py",
        GOOD.format(name="outer", default="x")
        + textwrap.dedent(f"""
        from _sub import inner
        alias = pipe

        if __name__ == "__main__":
            open({str(marker)!r}, "w").write("ran")
        """),
    )
    result = compile_folder(tmp_path)
    assert result.failures == []
    assert [p.name for p in result.pipelines] == ["outer"]
    assert not marker.exists()


def _run_locally(pipeline, tmp_path: Path, arguments: dict):
    """Run a compiled IR with kfp's local engine (subprocess, no venv per task) to its end."""
    ir = tmp_path / f"{pipeline.slug}.yaml"
    ir.write_text(pipeline.yaml_text)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "root"),
        raise_on_error=True,
    )
    return load_component_from_file(str(ir))(**arguments)


def test_the_v2_pipelines_run_with_their_settings_files_arguments_and_add_gives_19(tmp_path):
    settings_file = config.load(PIPELINES_V2 / "dsp-runner.yaml", required=True)
    outputs = {}
    for pipeline in compile_folder(PIPELINES_V2).pipelines:
        options, _, _ = config.resolve(
            settings.Settings(), settings_file, pipeline.name, pipeline.slug
        )
        merged = arguments(pipeline, options.arguments)
        typed = {p.name: p.typed(merged[p.name]) for p in pipeline.parameters}
        outputs[pipeline.name] = _run_locally(pipeline, tmp_path, typed)
    assert outputs["Add Pipeline"].output == 19.0
    assert set(outputs) == {"Add Pipeline", "Data Quality Gate", "Train and Evaluate"}
