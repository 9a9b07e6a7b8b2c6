"""The token: re-read on every request, never leaked, and a clear line when it is missing or
refused."""

import contextlib
import json
import subprocess

import pytest

from runner import auth
from runner.errors import TokenError
from runner_helpers import Project, client_for

CANARY = "sha256~CANARY-7f3a9d1e-do-not-log"


@pytest.mark.integration
def test_a_token_file_rotated_between_requests_is_used_at_once(tmp_path, localdsp):
    token_file = tmp_path / "token"
    token_file.write_text("first-token")
    localdsp.set_tokens(["first-token"])
    client = client_for(localdsp.url, auth.credentials("", token_file))
    assert client.list_pipelines() == []
    token_file.write_text("second-token\n")
    localdsp.set_tokens(["second-token"])
    assert client.list_pipelines() == []


def test_missing_token_file_names_the_path(tmp_path):
    with pytest.raises(
        TokenError,
        match=r"DSP_TOKEN_PATH: cannot read the token file .*/nope "
        r"\(No such file or directory\)",
    ):
        auth.credentials("", tmp_path / "nope")


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "is empty"), ("  \n", "is empty"), ("a b\n", "holds more than one word")],
)
def test_bad_token_file(tmp_path, content, message):
    path = tmp_path / "token"
    path.write_text(content)
    with pytest.raises(TokenError, match=message):
        auth.credentials("", path)


def test_a_token_file_with_a_trailing_newline_is_fine(tmp_path):
    path = tmp_path / "token"
    path.write_text(CANARY + "\n")
    assert auth.credentials("", path)._get_token() == CANARY


def test_credentials_never_show_the_token():
    assert CANARY not in repr(auth.credentials(CANARY, None))


@pytest.mark.integration
def test_missing_token_file_exits_with_the_configuration_code(
    tmp_path, localdsp, capsys, monkeypatch
):
    project = Project(tmp_path, localdsp.url, "unused")
    project.env(monkeypatch, DSP_TOKEN_PATH=str(tmp_path / "missing-token"))
    result = project.run(capsys)
    assert result.code == 2
    (line,) = result.err.strip().splitlines()
    assert line.startswith("dsp-runner: TokenError: DSP_TOKEN_PATH: cannot read the token file")
    assert str(tmp_path / "missing-token") in line


@pytest.mark.integration
def test_a_refused_token_is_one_line_exit_5_and_no_retry_storm(
    tmp_path, localdsp, capsys, monkeypatch
):
    project = Project(tmp_path, localdsp.url, CANARY)
    project.env(monkeypatch, LOG_LEVEL="DEBUG")
    result = project.run(capsys)
    assert result.code == 5
    last = result.err.strip().splitlines()[-1]
    assert last.startswith(
        "dsp-runner: AuthError: connect: the server refused the token (403) from the file "
        f"{project.token_file} (DSP_TOKEN_PATH): check that it is valid"
    )
    assert len([r for r in localdsp.requests() if r["path"].startswith("/apis/")]) == 2
    assert CANARY not in result.err + result.out


@pytest.mark.integration
def test_a_refused_token_from_the_environment_is_named_as_dsp_token(
    tmp_path, localdsp, capsys, monkeypatch
):
    project = Project(tmp_path, localdsp.url, "unused")
    project.env(monkeypatch, DSP_TOKEN=CANARY)
    result = project.run(capsys, "trigger")
    assert result.code == 5
    last = result.err.strip().splitlines()[-1]
    assert last.startswith(
        "dsp-runner: AuthError: connect: the server refused the token (403) from DSP_TOKEN: "
    )
    assert CANARY not in result.err + result.out
    assert CANARY not in json.dumps(result.summary)


@pytest.mark.integration
def test_the_canary_token_never_reaches_logs_summary_or_errors(
    tmp_path, localdsp, capsys, monkeypatch
):
    localdsp.set_tokens([CANARY])
    project = Project(tmp_path, localdsp.url, CANARY)
    (project.pipelines / "broken.py").write_text("raise RuntimeError('import failure')\n")
    project.env(monkeypatch, LOG_LEVEL="DEBUG")
    localdsp.inject(method="POST", path="/apis/v1beta1/runs", action="status", status=503, times=1)
    localdsp.inject(
        method="POST",
        path="/apis/v1beta1/pipelines/upload_version",
        action="drop_after_commit",
        times=1,
    )
    result = project.run(capsys)
    assert result.code == 1
    assert result.summary is not None
    assert CANARY not in result.err
    assert CANARY not in result.out
    assert CANARY not in json.dumps(result.summary)
    for written in project.output.rglob("*"):
        if written.is_file():
            assert CANARY not in written.read_text()


@pytest.mark.integration
def test_the_token_never_appears_in_any_process_arguments(tmp_path, localdsp):
    """/proc/<pid>/cmdline of the runner and of its compile children."""
    from pathlib import Path

    localdsp.set_tokens([CANARY])
    localdsp.inject(method="POST", path="/apis/v1beta1/runs", action="delay", seconds=2, times=1)
    project = Project(tmp_path, localdsp.url, CANARY)
    runner = project.spawn(DSP_TOKEN=CANARY)
    seen = []
    while runner.poll() is None:
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    seen.append((proc / "cmdline").read_bytes())
                except OSError:
                    continue
        with contextlib.suppress(subprocess.TimeoutExpired):
            runner.wait(timeout=0.1)
    assert runner.returncode == 0, runner.stderr.read()
    assert any(b"runner" in cmdline for cmdline in seen)
    assert not any(CANARY.encode() in cmdline for cmdline in seen)
