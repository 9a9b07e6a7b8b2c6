"""The token on DSP 2.x: re-read on every request through kfp 2's client, never leaked, and a
refusal is one line naming both auth eras' permission; the wrong server generation is refused
before anything is written."""

import json

import pytest
from conftest import v2_project
from v2_helpers import writes

from localdsp.server import LocalDSP
from runner import auth
from runner_helpers import client_for

pytestmark = pytest.mark.integration
CANARY = "sha256~CANARY-7f3a9d1e-do-not-log"
B = "/apis/v2beta1"


def test_a_token_file_rotated_between_requests_is_used_at_once(tmp_path, dsp):
    token_file = tmp_path / "token"
    token_file.write_text("first-token")
    dsp.set_tokens(["first-token"])
    client = client_for(dsp.url, auth.credentials("", token_file))
    assert client.list_pipelines() == []
    token_file.write_text("second-token\n")
    dsp.set_tokens(["second-token"])
    assert client.list_pipelines() == []
    assert client.find_experiment("nothing") is None


def test_a_refused_token_is_one_line_naming_both_auth_eras_and_exit_5(
    tmp_path, dsp, capsys, monkeypatch
):
    project = v2_project(tmp_path / "p", dsp.url, CANARY)
    project.env(monkeypatch, LOG_LEVEL="DEBUG")
    result = project.run(capsys)
    assert result.code == 5
    last = result.err.strip().splitlines()[-1]
    assert last.startswith(
        "dsp-runner: AuthError: connect: the server refused the token (403) from the file "
        f"{project.token_file} (DSP_TOKEN_PATH): check that it is valid"
    )
    assert "route ds-pipeline-<dspa>" in last
    assert "datasciencepipelinesapplications/api" in last
    assert len([r for r in dsp.requests() if r["path"].startswith("/apis/")]) == 2
    assert CANARY not in result.err + result.out


def test_the_canary_token_never_reaches_logs_summary_or_errors(tmp_path, dsp, capsys, monkeypatch):
    dsp.set_tokens([CANARY])
    project = v2_project(tmp_path / "p", dsp.url, CANARY)
    (project.pipelines / "broken.py").write_text("raise RuntimeError('import failure')\n")
    project.env(monkeypatch, LOG_LEVEL="DEBUG")
    dsp.inject(method="POST", path=f"{B}/runs", action="status", status=503, times=1)
    dsp.inject(
        method="POST", path=f"{B}/pipelines/upload_version", action="drop_after_commit", times=1
    )
    dsp.inject(method="POST", path=f"{B}/recurringruns", action="status", status=400, times=1)
    result = project.run(capsys)
    assert result.code == 1
    assert result.summary is not None
    assert CANARY not in result.err + result.out
    assert CANARY not in json.dumps(result.summary)
    for written in project.output.rglob("*"):
        if written.is_file():
            assert CANARY not in written.read_text()


def test_a_dsp_1_server_is_refused_in_one_line_before_anything_is_written(
    tmp_path, capsys, monkeypatch
):
    with LocalDSP(tmp_path / "data", tokens=["test-token"]) as v1_server:
        project = v2_project(tmp_path / "p", v1_server.url)
        project.env(monkeypatch)
        result = project.run(capsys)
        sent = v1_server.requests()
    assert result.code == 2
    line = result.err.strip().splitlines()[-1]
    assert line == (
        f"dsp-runner: ConfigurationError: DSP_HOST {v1_server.url} is a DSP 1.x (kfp-tekton) "
        "server; this is the v2 image (kfp 2, for DSP 2.x): use the v1 image / BACKEND=v1"
    )
    assert [r for r in sent if r["method"] != "GET"] == []
    assert result.summary["exit_code"] == 2


def test_a_url_that_is_no_dsp_server_is_refused_in_one_line(tmp_path, dsp, capsys, monkeypatch):
    dsp.inject(method="GET", path=".*/healthz", action="status", status=404, times=None)
    project = v2_project(tmp_path / "p", dsp.url)
    project.env(monkeypatch)
    result = project.run(capsys)
    assert result.code == 2
    assert "answers 404 on /apis/v2beta1/healthz and /apis/v1beta1/healthz" in result.err
    assert writes(dsp) == []


def test_a_kfp_context_file_on_the_machine_is_neither_read_nor_written(
    tmp_path, dsp, capsys, monkeypatch
):
    """kfp's client reads ~/.config/kfp/context.json (a namespace, cookies, an auth header) and
    writes it in multi-user mode: a CI job must behave the same on every machine."""
    from kfp.client import client as kfp_client_module

    context = tmp_path / "context.json"
    context.write_text('{"namespace": "someone-else", "client_authentication_cookie": "c=1"}')
    monkeypatch.setattr(kfp_client_module.Client, "_LOCAL_KFP_CONTEXT", str(context))
    dsp.inject(
        method="GET",
        path=f"{B}/healthz",
        action="status",
        status=200,
        body='{"multi_user": true}',
        times=None,
    )
    project = v2_project(tmp_path / "p", dsp.url)
    project.env(monkeypatch)
    assert project.run(capsys).code == 0
    assert not any("someone-else" in (r["query"] or "") for r in dsp.requests())
    assert context.read_text().startswith('{"namespace": "someone-else"')
