"""The transport: TLS is verified, and a server that is down for a while is waited for."""

import threading
import time

import pytest

from localdsp.server import LocalDSP
from runner_helpers import Project, events

pytestmark = pytest.mark.integration


def test_tls_is_verified_against_the_configured_ca(tmp_path, capsys, monkeypatch):
    with LocalDSP(tmp_path / "data", tokens=["test-token"], tls=True) as dsp:
        assert dsp.url.startswith("https://")
        project = Project(tmp_path / "p", dsp.url, "test-token")
        project.env(monkeypatch)
        refused = project.run(capsys)
        assert refused.code == 5
        assert "TLSError: TLS verification failed" in refused.err.strip().splitlines()[-1]
        assert "set DSP_CA_BUNDLE" in refused.err
        monkeypatch.setenv("DSP_CA_BUNDLE", str(dsp.ca_file))
        assert project.run(capsys).code == 0


def test_turning_verification_off_is_explicit_and_warned_on_every_run(
    tmp_path, capsys, monkeypatch
):
    with LocalDSP(tmp_path / "data", tokens=["test-token"], tls=True) as dsp:
        project = Project(tmp_path / "p", dsp.url, "test-token")
        project.env(monkeypatch, DSP_INSECURE_SKIP_TLS_VERIFY="true")
        for _ in range(2):
            result = project.run(capsys)
            assert result.code == 0
            warned = [e for e in events(result.err) if e["event"] == "tls_verification_disabled"]
            assert warned and warned[0]["level"] == "warning"


def test_a_server_down_for_longer_than_one_backoff_step_is_waited_for(
    tmp_path, capsys, monkeypatch
):
    data = tmp_path / "data"
    with LocalDSP(data, tokens=["test-token"]) as first:
        port = first.port
    project = Project(tmp_path / "p", f"http://127.0.0.1:{port}", "test-token")
    project.env(monkeypatch, DSP_RETRY_MAX_WAIT="1", DSP_RETRIES="8")
    server = LocalDSP(data, tokens=["test-token"], port=port)
    restart = threading.Timer(2.0, server.start)
    restart.start()
    try:
        started = time.monotonic()
        result = project.run(capsys)
        assert result.code == 0, result.err
        assert time.monotonic() - started >= 2.0
        retries = [e for e in events(result.err) if e["event"] == "server_call_retry"]
        assert retries and all(e["operation"] == "connect" for e in retries)
    finally:
        restart.join()
        server.stop()
