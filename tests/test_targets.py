"""`targets:` in dsp-runner.yaml: the environment DSP_TARGET picks, laid over the file."""

from __future__ import annotations

import argparse

import pytest

from runner import config
from runner.errors import ConfigurationError
from runner.settings import Settings

FILE = """
defaults: {experiment: dev-runs, run_policy: on-change}
pipelines:
  Add Pipeline:
    arguments: {a: 7, b: 8}
    schedules: [{name: hourly, cron: "@every 1h"}]
targets:
  prod:
    defaults: {experiment: prod-runs}
    pipelines:
      add-pipeline:
        arguments: {b: 9}
        schedules: []
  staging: {}
"""


def load(tmp_path, target: str, text: str = FILE) -> config.RepoConfig:
    path = tmp_path / "dsp-runner.yaml"
    path.write_text(text)
    return config.load(path, target=target)


def test_without_a_target_the_file_reads_as_before(tmp_path):
    entry = load(tmp_path, "").for_pipeline("Add Pipeline", "add-pipeline")
    assert entry.experiment == "dev-runs"
    assert entry.arguments == {"a": "7", "b": "8"}
    assert [s.name for s in entry.schedules] == ["hourly"]


def test_a_target_overrides_defaults_merges_arguments_and_replaces_schedules(tmp_path):
    """The target's entry is keyed by slug, the file's by name: they still meet."""
    entry = load(tmp_path, "prod").for_pipeline("Add Pipeline", "add-pipeline")
    assert entry.experiment == "prod-runs"
    assert entry.run_policy == "on-change"
    assert entry.arguments == {"a": "7", "b": "9"}
    assert entry.schedules == ()


def test_an_empty_target_is_the_file_itself(tmp_path):
    entry = load(tmp_path, "staging").for_pipeline("Add Pipeline", "add-pipeline")
    assert entry.experiment == "dev-runs"
    assert entry.arguments == {"a": "7", "b": "8"}


def test_an_unknown_target_is_refused_naming_the_defined_ones(tmp_path):
    with pytest.raises(ConfigurationError, match=r"defines no target 'prdo' \(its targets: prod, "):
        load(tmp_path, "prdo")


def test_a_target_without_a_settings_file_is_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="DSP_TARGET: 'prod' is set but there is no"):
        config.load(tmp_path / "missing.yaml", target="prod")


def test_a_bad_cron_of_another_target_is_found_by_any_environment(tmp_path):
    text = FILE.replace("schedules: []", 'schedules: [{name: n, cron: "0 2 * * *"}]')
    with pytest.raises(
        ConfigurationError, match=r"targets > prod > pipelines > add-pipeline > schedules > n"
    ):
        load(tmp_path, "", text)


def test_an_unknown_key_in_a_target_is_a_schema_error(tmp_path):
    with pytest.raises(ConfigurationError, match=r"targets > prod"):
        load(tmp_path, "prod", FILE.replace("defaults: {experiment: prod-runs}", "colour: red"))


def test_dsp_target_is_a_setting_with_a_flag(monkeypatch):
    monkeypatch.setenv("DSP_TARGET", "prod")
    assert Settings.from_args(argparse.Namespace()).target == "prod"
    monkeypatch.setenv("DSP_TARGET", "no good")
    with pytest.raises(ConfigurationError, match="DSP_TARGET: expected 1 to 63"):
        Settings.from_args(argparse.Namespace())


def test_deploy_reads_the_target(project, capsys, monkeypatch):
    """deploy in an environment sees the same overlay promote does: an unknown one stops it
    before anything is compiled or sent."""
    monkeypatch.setenv("DSP_TARGET", "nope")
    from runner import cli

    code = cli.main(["deploy"])
    assert code == 2
    assert "defines no target 'nope'" in capsys.readouterr().err
