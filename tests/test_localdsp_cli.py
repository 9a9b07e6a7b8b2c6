"""`python -m localdsp`: exec runs one command against a fresh server; serve runs until SIGTERM."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from localdsp import cli

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent

# Calls healthz with the token it was given, prints the status, keeps the token for the test.
CHILD = """
import os, sys, urllib.error, urllib.request
request = urllib.request.Request(
    os.environ["DSP_HOST"] + "/apis/v1beta1/healthz",
    headers={"Authorization": "Bearer " + os.environ["DSP_TOKEN"]},
)
try:
    print(urllib.request.urlopen(request).status)
except urllib.error.HTTPError as err:
    print(err.code)
open(sys.argv[1], "w").write(os.environ["DSP_TOKEN"])
sys.exit(7)
"""


def test_exec_runs_the_command_against_a_fresh_server_and_returns_its_code(tmp_path, capfd):
    data, token_file = tmp_path / "data", tmp_path / "token"
    command = ["exec", "--data-dir", str(data), "--", sys.executable, "-c", CHILD, str(token_file)]
    assert cli.main(command) == 7
    out, err = capfd.readouterr()
    assert out.strip() == "200"
    (line,) = err.strip().splitlines()
    assert line.startswith(f"localdsp: {sys.executable} ran against http://127.0.0.1:")
    assert f"its data stays in {data}" in line
    token = token_file.read_text()
    assert len(token) >= 32
    assert token not in err
    assert (data / "localdsp.sqlite").exists()


def test_exec_takes_fault_settings_from_the_environment(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("LOCALDSP_ERROR_RATE", "1")
    monkeypatch.setenv("LOCALDSP_ERROR_STATUS", "502")
    command = [
        "exec",
        "--data-dir",
        str(tmp_path / "d"),
        "--",
        sys.executable,
        "-c",
        CHILD,
        "/dev/null",
    ]
    assert cli.main(command) == 7
    assert capfd.readouterr().out.strip() == "502"


def test_a_flag_wins_over_its_environment_variable(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("LOCALDSP_ERROR_RATE", "1")
    command = [
        "exec",
        "--error-rate",
        "0",
        "--data-dir",
        str(tmp_path / "d"),
        "--",
        sys.executable,
        "-c",
        CHILD,
        "/dev/null",
    ]
    assert cli.main(command) == 7
    assert capfd.readouterr().out.strip() == "200"


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["exec", "--"], 2, "localdsp exec: give a command after --"),
        (["exec", "--", "no-such-command-here"], 127, "cannot run no-such-command-here"),
        (["exec", "--error-rate", "2", "--", "true"], 2, "error_rate must be between 0 and 1"),
    ],
)
def test_exec_usage_errors_are_one_line(tmp_path, capfd, argv, code, message):
    argv = [argv[0], "--data-dir", str(tmp_path / "d"), *argv[1:]]
    assert cli.main(argv) == code
    assert message in capfd.readouterr().err


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_checks_the_token_from_the_environment_and_stops_on_sigterm(
    tmp_path, monkeypatch, capfd, api_for
):
    port = _free_port()
    monkeypatch.setenv("LOCALDSP_TOKEN", "from-env")
    monkeypatch.setenv("LOCALDSP_PORT", str(port))
    url = f"http://127.0.0.1:{port}"
    seen: list[int] = []

    def probe_then_terminate():
        try:
            _wait_for(url)
            for token in ("from-env", "other"):
                seen.append(api_for(url, token)("GET", "/apis/v1beta1/healthz").status)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=probe_then_terminate, daemon=True).start()
    assert cli.main(["serve", "--data-dir", str(tmp_path / "d")]) == 0
    assert seen == [200, 403]
    err = capfd.readouterr().err
    assert f"localdsp: serving {url} (bearer token" in err
    assert "from-env" not in err


def _wait_for(url: str, timeout: float = 10) -> None:
    parts = urllib.parse.urlsplit(url)
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((parts.hostname, parts.port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_python_m_localdsp_exec_as_a_process(tmp_path):
    """The one test of the real entry point: a separate interpreter, as `make run` uses it."""
    token_file = tmp_path / "token"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "localdsp",
            "exec",
            "--data-dir",
            str(tmp_path / "d"),
            "--",
            sys.executable,
            "-c",
            CHILD,
            str(token_file),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert result.returncode == 7, result.stderr
    assert result.stdout.strip() == "200"
    assert "ran against http://127.0.0.1:" in result.stderr
    assert token_file.read_text() not in result.stderr
