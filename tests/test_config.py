"""The repository's per-pipeline settings file: schema, clear errors, precedence."""

import argparse
import textwrap

import pytest

from runner import config
from runner.errors import ConfigurationError
from runner.settings import Settings


def settings(argv=()):
    parser = argparse.ArgumentParser()
    Settings.register_arguments(parser)
    return Settings.from_args(parser.parse_args(list(argv)))


def write(tmp_path, text):
    path = tmp_path / "dsp-runner.yaml"
    path.write_text(textwrap.dedent(text))
    return path


GOOD = """
defaults:
  experiment: nightly
  run_policy: always
  arguments: {b: 8}
pipelines:
  Add Pipeline:
    description: Adds
    arguments: {a: 7}
    wait: true
    wait_timeout: 600
    schedules:
      - {name: hourly, cron: "0 0 * * * *", arguments: {a: 1}}
  data-quality-gate:
    experiment: quality
    run_policy: never
"""


def test_entry_over_defaults_over_builtins(tmp_path):
    repo = config.load(write(tmp_path, GOOD))
    options, display, description = config.resolve(settings(), repo, "Add Pipeline", "add-pipeline")
    assert options.experiment == "nightly"
    assert options.run_policy == "always"
    assert options.arguments == {"a": "7", "b": "8"}
    assert options.wait is True and options.wait_timeout == 600
    assert options.schedules == (config.Schedule("hourly", "0 0 * * * *", arguments={"a": "1"}),)
    assert (display, description) == (None, "Adds")
    by_slug, _, _ = config.resolve(settings(), repo, "Data Quality Gate", "data-quality-gate")
    assert (by_slug.experiment, by_slug.run_policy) == ("quality", "never")


def test_a_flag_or_variable_given_for_this_job_wins_over_the_file(tmp_path, monkeypatch):
    repo = config.load(write(tmp_path, GOOD))
    monkeypatch.setenv("DSP_EXPERIMENT", "override")
    job = settings(["--arg", "add-pipeline.a=9"])
    options, _, _ = config.resolve(job, repo, "Add Pipeline", "add-pipeline")
    assert options.experiment == "override"
    assert options.arguments == {"a": "9", "b": "8"}
    assert options.run_policy == "always"


def test_missing_file_means_defaults(tmp_path):
    repo = config.load(tmp_path / "absent.yaml")
    options, _, _ = config.resolve(settings(), repo, "P", "p")
    assert (options.experiment, options.run_policy, options.wait) == (
        "dsp-runner",
        "on-change",
        False,
    )


def test_a_required_file_that_is_missing_is_named(tmp_path):
    with pytest.raises(ConfigurationError, match=r"DSP_CONFIG: .*absent\.yaml does not exist"):
        config.load(tmp_path / "absent.yaml", required=True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "pipelines:\n  Add Pipeline:\n    run_policy: sometimes\n",
            "pipelines > Add Pipeline > run_policy: 'sometimes' is not one of",
        ),
        (
            "pipelines:\n  P:\n    colour: red\n",
            "pipelines > P: Additional properties are not allowed ('colour' was unexpected)",
        ),
        (
            "pipelines:\n  P:\n    schedules: [{name: a, cron: '0 * * * *'}]\n",
            "pipelines > P > schedules > 0 > cron: '0 * * * *' does not match",
        ),
        (
            "pipelines:\n  P:\n    schedules:\n"
            "      [{name: a, cron: '0 0 * * * *', max_concurrency: 11}]\n",
            "pipelines > P > schedules > 0 > max_concurrency: 11 is greater than the maximum of 10",
        ),
        (
            "pipelines:\n  P:\n    schedules: [{name: a, cron: '0 0 * * * *'}, "
            "{name: a, cron: '0 0 1 * * *'}]\n",
            "pipelines > P > schedules: name 'a' is used twice",
        ),
        ("defaults: [1, 2\n", "cannot read it as YAML"),
    ],
)
def test_errors_name_file_pipeline_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigurationError) as caught:
        config.load(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_every_problem_is_reported_at_once(tmp_path):
    path = write(tmp_path, "pipelines:\n  P:\n    wait: maybe\n    experiment: ''\n")
    with pytest.raises(ConfigurationError) as caught:
        config.load(path)
    assert "P > experiment" in str(caught.value) and "P > wait" in str(caught.value)


def test_unknown_entries_are_listed(tmp_path):
    repo = config.load(write(tmp_path, GOOD))
    assert repo.unknown_entries({"Add Pipeline"}) == ["data-quality-gate"]
