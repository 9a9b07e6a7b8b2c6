"""The command line: help, defaults and one-line configuration errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner import cli
from runner.settings import Settings

REPO = Path(__file__).resolve().parent.parent
PIPELINES = REPO / "pipelines"


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
        "Default: pipelines (v1), pipelines_v2 (v2, kfp 2 installed). [env DSP_PIPELINES_DIR]"
        in out
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
    assert written == [
        "add-pipeline.yaml",
        "data-quality-gate.yaml",
        "square-numbers.yaml",
        "train-and-evaluate.yaml",
    ]
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


def kfp_modules_imported(stderr: str) -> list[str]:
    """The kfp packages `python -X importtime` saw imported."""
    names = [line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines() if "|" in line]
    return [n for n in names if n.split(".")[0] in ("kfp", "kfp_tekton", "kfp_server_api")]


@pytest.mark.parametrize(
    ("command", "broken"),
    [
        ("deploy", {"DSP_HOST": None}),
        ("plan", {"DSP_HOST": None}),
        ("trigger", {"DSP_HOST": None}),
        ("deploy", {"DSP_TOKEN": None, "DSP_TOKEN_PATH": "missing-token"}),
        ("deploy", {"DSP_PIPELINES_DIR": "no-such-folder"}),
        ("deploy", {"DSP_CONFIG": "bad.yaml"}),
        ("trigger", {"DSP_CONFIG": "bad.yaml"}),
        ("compile", {"DSP_PIPELINES_DIR": "no-such-folder"}),
    ],
)
def test_configuration_errors_never_import_kfp(tmp_path, command, broken):
    """Every check that needs no server runs before kfp is imported, in a real process."""
    (tmp_path / "bad.yaml").write_text("pipelines: [not, a, mapping]\n")
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DSP_HOST": "https://dsp.example.com",
        "DSP_TOKEN": "t0k",
        "DSP_PIPELINES_DIR": str(REPO / "pipelines"),
        "DSP_OUTPUT_DIR": "out",
    }
    for name, value in broken.items():
        env.pop(name, None)
        if value is not None:
            env[name] = value
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "runner", command],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert kfp_modules_imported(done.stderr) == []
    assert "import time:" in done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["exit_code"] == 2
