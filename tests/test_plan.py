"""The plan: which runs a deploy starts (README, per-pipeline settings `run_policy`), and the
run arguments checked against the pipeline's parameters before anything is uploaded."""

from pathlib import Path

import pytest

from runner.harness import CompiledPipeline, Parameter
from runner.plan import arguments
from runner_helpers import COMMIT

LATER = "fedcba9876543210fedcba9876543210fedcba98"


def run_names(kfp_client) -> list[str]:
    return sorted(r.name for r in kfp_client.list_runs(page_size=100).runs or [])


@pytest.mark.integration
def test_on_change_starts_no_run_when_only_the_commit_changed(
    project, capsys, kfp_client, monkeypatch
):
    """on-change: one run per new version, named after the commit that brought the version."""
    assert project.run(capsys).code == 0
    first = run_names(kfp_client)
    assert len(first) == 4 and all(name.endswith(f"@{COMMIT[:12]}") for name in first)

    monkeypatch.setenv("DSP_GIT_COMMIT", LATER)
    result = project.run(capsys)

    assert result.code == 0
    assert result.summary["counts"]["runs_started"] == 0
    assert run_names(kfp_client) == first


@pytest.mark.integration
def test_on_change_starts_a_run_of_a_changed_pipeline_named_after_the_new_commit(
    project, capsys, kfp_client, monkeypatch
):
    assert project.run(capsys).code == 0
    project.edit("add_pipeline.py", 'b="7"', 'b="8"')
    monkeypatch.setenv("DSP_GIT_COMMIT", LATER)
    result = project.run(capsys)

    assert result.summary["counts"]["runs_started"] == 1
    new = [name for name in run_names(kfp_client) if name.endswith(f"@{LATER[:12]}")]
    assert len(new) == 1 and new[0].startswith("add-pipeline-")


def pipeline_with(*parameters: Parameter) -> CompiledPipeline:
    return CompiledPipeline(
        name="Train",
        slug="train",
        function="train",
        source=Path("train.py"),
        description="",
        yaml_text="",
        parameters=parameters,
        content_hash="0" * 64,
    )


TRAIN = pipeline_with(
    Parameter("epochs", "3", type="NUMBER_INTEGER"),
    Parameter("data", None),
    Parameter("note", None, optional=True),
)


def test_the_arguments_are_the_defaults_with_the_given_values_on_top():
    assert arguments(TRAIN, {"data": "s3://d"}) == {"epochs": "3", "data": "s3://d"}
    assert arguments(TRAIN, {"data": "s3://d", "epochs": "5", "note": "n"}) == {
        "epochs": "5",
        "data": "s3://d",
        "note": "n",
    }


@pytest.mark.parametrize(
    ("pipeline", "given", "error"),
    [
        (
            TRAIN,
            {"data": "d", "lr": "1", "batch": "2"},
            "unknown run argument(s) batch, lr for pipeline 'Train'; "
            "its parameters are data, epochs, note",
        ),
        (
            pipeline_with(),
            {"lr": "1"},
            "unknown run argument(s) lr for pipeline 'Train'; its parameters are none",
        ),
        (
            TRAIN,
            {"data": "d", "epochs": "many"},
            "pipeline 'Train': run argument epochs='many' is not an integer",
        ),
        (
            pipeline_with(Parameter("data", None), Parameter("bucket", None)),
            {},
            "pipeline 'Train' needs a value for bucket, data (no default): "
            "set it with --arg, DSP_RUN_ARGS or the settings file",
        ),
    ],
)
def test_a_wrong_argument_is_one_line_naming_pipeline_and_parameter(pipeline, given, error):
    with pytest.raises(ValueError) as raised:
        arguments(pipeline, given)
    assert str(raised.value) == error
