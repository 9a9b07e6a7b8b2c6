"""The command line: help, defaults and one-line configuration errors."""

import subprocess
import sys
from pathlib import Path

from runner import cli
from runner.settings import Settings

PIPELINES = Path(__file__).resolve().parent.parent / "pipelines"


def test_help_lists_the_subcommands_and_every_setting(capsys):
    try:
        cli.main(["--help"])
    except SystemExit as stop:
        assert stop.code == 0
    out = capsys.readouterr().out
    for command in ("deploy", "compile"):
        assert command in out
    for env in Settings.env_vars().values():
        assert env in out
    assert "exit codes:" in out


def test_deploy_help_describes_each_flag(capsys):
    try:
        cli.main(["deploy", "--help"])
    except SystemExit:
        pass
    out = " ".join(capsys.readouterr().out.split())
    assert (
        "--pipelines-dir DSP_PIPELINES_DIR Folder whose Python modules define the pipelines. "
        "[env DSP_PIPELINES_DIR]" in out
    )


def test_deploy_without_host_is_a_configuration_error_naming_the_variable(
    capsys, tmp_path, monkeypatch
):
    monkeypatch.setenv("DSP_TOKEN", "x")
    code = cli.main(["--output-dir", str(tmp_path)])
    assert code == 2
    assert capsys.readouterr().err.startswith("dsp-runner: ConfigurationError: DSP_HOST: not set")


def test_bad_setting_exits_2_with_one_line(capsys):
    assert cli.main(["deploy", "--retries", "many"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err == "dsp-runner: configuration error: DSP_RETRIES: expected a whole number, got 'many'"
    )


def test_help_does_not_import_kfp():
    probe = (
        "import sys, runner.cli\n"
        "try:\n    runner.cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'kfp' not in sys.modules, 'kfp imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_compile_writes_yaml_and_a_summary_offline(tmp_path, capsys):
    """The repository's pipelines, from whatever folder pytest was started in."""
    argv = ["compile", "--pipelines-dir", str(PIPELINES), "--output-dir", str(tmp_path)]
    code = cli.main([*argv, "--log-format", "json"])
    assert code == 0
    written = sorted(p.name for p in (tmp_path / "pipelines").iterdir())
    assert written == ["add-pipeline.yaml", "data-quality-gate.yaml", "train-and-evaluate.yaml"]
    assert (tmp_path / "summary.json").exists()


def test_an_unexpected_error_is_a_bug_with_its_traceback_and_exit_70(capsys, monkeypatch, tmp_path):
    from runner import commands

    def broken(settings, *, stdout):
        raise KeyError("something the runner did not expect")

    monkeypatch.setattr(commands, "compile_pipelines", broken)
    assert cli.main(["compile", "--output-dir", str(tmp_path)]) == 70
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.strip().endswith("please report it with the traceback above")
