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
            "pipelines > P > schedules > a > cron: '0 * * * *' has 5 fields: the server would "
            "read the first as seconds",
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


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        (
            "0 0 22-2 * * *",
            "'0 0 22-2 * * *' is refused by the server (robfig/cron v1): hours field: "
            "Beginning of range (22) beyond end of range (2): 22-2; ranges go upward",
        ),
        (
            "0 0 6 * * FRI-MON",
            "day of week field: Beginning of range (5) beyond end of range (1): FRI-MON",
        ),
        ("0 0 6 * * 7", "day of week field: End of range (7) above maximum (6): 7"),
        ("0 0 6 * * * *", "Expected 5 to 6 fields, found 7: 0 0 6 * * * *; write 6 fields"),
        ("@fortnightly", "Unrecognized descriptor: @fortnightly; write 6 fields"),
        ("0 0 0 30 2 *", "'0 0 0 30 2 *' never fires (no such date in the next 5 years)"),
        (
            "0 0 " + "1," * 130 + "2 * * *",
            "is 271 characters long; the server stores at most 255",
        ),
    ],
)
def test_a_cron_the_server_would_refuse_names_file_pipeline_schedule_and_field(
    tmp_path, cron, message
):
    path = write(
        tmp_path, f"pipelines:\n  P:\n    schedules: [{{name: nightly, cron: '{cron}'}}]\n"
    )
    with pytest.raises(ConfigurationError) as caught:
        config.load(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: pipelines > P > schedules > nightly > cron: ")
    assert message in text
    assert "\n" not in text and caught.value.exit_code == 2


@pytest.mark.parametrize("cron", ["0 30 2 * * MON-FRI", "@daily", "@every 1h30m", "0 0 0 29 2 ?"])
def test_crons_the_server_takes_are_accepted(tmp_path, cron):
    repo = config.load(
        write(tmp_path, f"pipelines:\n  P:\n    schedules: [{{name: a, cron: '{cron}'}}]\n")
    )
    assert repo.for_pipeline("P", "p").schedules[0].cron == cron


def test_every_bad_schedule_is_reported_at_once(tmp_path):
    path = write(
        tmp_path,
        """
        pipelines:
          P:
            schedules: [{name: a, cron: '0 0 22-2 * * *'}, {name: b, cron: '0 0 1 * * *'}]
          Q:
            schedules: [{name: c, cron: '0 0 0 * * FRI-MON'}]
        """,
    )
    with pytest.raises(ConfigurationError) as caught:
        config.load(path)
    text = str(caught.value)
    assert "P > schedules > a > cron" in text and "Q > schedules > c > cron" in text
    assert "schedules > b" not in text


LONG = "e" * 256


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (f"defaults:\n  experiment: {LONG}\n", "defaults > experiment"),
        (f"pipelines:\n  P:\n    experiment: {LONG}\n", "pipelines > P > experiment"),
    ],
)
def test_an_experiment_name_longer_than_the_server_stores_is_refused(tmp_path, text, where):
    path = write(tmp_path, text)
    with pytest.raises(ConfigurationError) as caught:
        config.load(path)
    assert str(caught.value) == (
        f"{path}: {where}: 256 characters long; the server takes experiment names of at most "
        "255: shorten it"
    )


def test_an_experiment_name_of_255_characters_is_accepted(tmp_path):
    repo = config.load(write(tmp_path, f"defaults:\n  experiment: {'e' * 255}\n"))
    assert repo.for_pipeline("P", "p").experiment == "e" * 255


def test_dsp_experiment_longer_than_the_server_stores_is_refused(monkeypatch):
    monkeypatch.setenv("DSP_EXPERIMENT", LONG)
    with pytest.raises(ConfigurationError) as caught:
        settings()
    assert str(caught.value) == (
        "DSP_EXPERIMENT: 256 characters long; the server takes experiment names of at most 255: "
        "shorten it"
    )


def test_unknown_entries_are_listed(tmp_path):
    repo = config.load(write(tmp_path, GOOD))
    assert repo.unknown_entries({"Add Pipeline"}) == ["data-quality-gate"]
