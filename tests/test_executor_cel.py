"""kfp-tekton's CEL conditions run as the CEL controller runs them: each param a CEL expression,
each result its value as a string; a bad expression fails the Run with the controller's reason."""

import copy

import kfp
import kfp_tekton
import pytest
import yaml
from kfp import dsl
from kfp_tekton.tekton import CEL_ConditionOp

from localdsp.tekton.cel import CelError, Unsupported, evaluate
from localdsp.tekton.run import execute


def number(value: int) -> int:
    return value


def show(msg: str) -> str:
    return msg


number_op = kfp.components.create_component_from_func(number, base_image="python:3.11")
show_op = kfp.components.create_component_from_func(show, base_image="python:3.11")


@dsl.pipeline(name="cel-gate")
def gate_pipeline(value: int = 7):
    got = number_op(value)
    big = CEL_ConditionOp(f"{got.output} > 5")
    with dsl.Condition(big.output == "true"):
        show_op(f"{got.output} is big")
    with dsl.Condition(big.output != "true"):
        show_op(f"{got.output} is small")


@dsl.pipeline(name="cel-broken")
def broken_pipeline(word: str = "x"):
    CEL_ConditionOp(f"'{word}' == 1")


def compiled(pipeline, tmp_path) -> dict:
    path = tmp_path / "pipeline.yaml"
    kfp_tekton.compiler.TektonCompiler().compile(pipeline, str(path))
    return yaml.safe_load(path.read_text())


def run(pipelinerun: dict, tmp_path, **kwargs):
    return execute(copy.deepcopy(pipelinerun), workdir=tmp_path / "work", timeout=60, **kwargs)


@pytest.mark.parametrize(
    ("value", "ran", "skipped"), [("7", "show", "show-2"), ("3", "show-2", "show")]
)
def test_a_cel_condition_picks_the_branch(tmp_path, value, ran, skipped):
    result = run(compiled(gate_pipeline, tmp_path), tmp_path, params={"value": value})

    assert result.reason == "Completed", result.message
    assert result.tasks["condition-cel"].results == {"outcome": str(int(value) > 5).lower()}
    assert result.tasks[ran].reason == "Succeeded"
    assert result.tasks[ran].results["Output"].startswith(f"{value} is")
    assert result.tasks[skipped].reason == "Skipped"


def test_a_cel_type_error_fails_the_run_with_the_controllers_reason(tmp_path):
    result = run(compiled(broken_pipeline, tmp_path), tmp_path)

    assert result.reason == "Failed"
    assert result.tasks["condition-cel"].reason == "SyntaxError"
    assert "CEL expression outcome could not be parsed" in result.tasks["condition-cel"].message


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("'heads' == 'heads'", "true"),
        ("7 > 5 && 'a' != 'b'", "true"),
        ("10 / 4", "2"),
        ("-7 % 3", "-1"),
        ("2.5 * 2.0", "5"),
        ("1.0 / 8.0", "0.125"),
        ("1000000.0", "1e+06"),
        ("size('abc') == 3 ? 'yes' : 'no'", "yes"),
        ("'x' in ['x', 'y']", "true"),
        ("'model-v2'.startsWith('model') && 'v2'.matches('^v[0-9]+$')", "true"),
        ("string(3) + 'u'", "3u"),
        ("18446744073709551615u", "18446744073709551615"),
    ],
)
def test_cel_values_are_written_as_the_controller_writes_them(expression, value):
    assert evaluate(expression) == value


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("1 == 1.0", "SyntaxError"),
        ("'a' < 1", "SyntaxError"),
        ("nope", "SyntaxError"),
        ("1 +", "SyntaxError"),
        ("1 / 0", "EvaluationError"),
        ("[1][3]", "EvaluationError"),
        ("9223372036854775807 + 1", "EvaluationError"),
    ],
)
def test_cel_errors_carry_the_controllers_reasons(expression, reason):
    with pytest.raises(CelError) as caught:
        evaluate(expression)

    assert caught.value.reason == reason


def test_cel_it_does_not_know_is_named_not_guessed():
    with pytest.raises(Unsupported, match="timestamp"):
        evaluate("timestamp('2024-01-01T00:00:00Z')")
