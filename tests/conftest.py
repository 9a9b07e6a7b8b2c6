"""Shared fixtures: a clean environment, a started LocalDSP and a real TektonClient on it."""

from __future__ import annotations

import http.client
import json
import os
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path

import kfp
import kfp_tekton
import pytest

from localdsp.server import LocalDSP

# tests/v2 needs kfp 2: it runs in .venv-v2 (`make test BACKEND=v2`), never with kfp 1.8.
collect_ignore = ["v2"] if kfp.__version__.startswith("1.") else []

TOKEN = "test-token"
PROJECT_ENV_PREFIXES = ("DSP_", "LOCALDSP_", "KF_PIPELINES_")
PROJECT_ENV_NAMES = ("LOG_FORMAT", "LOG_LEVEL")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """The developer's shell settings must not leak into any test."""
    for name in list(os.environ):
        if name.startswith(PROJECT_ENV_PREFIXES) or name in PROJECT_ENV_NAMES:
            monkeypatch.delenv(name)


@pytest.fixture
def localdsp(tmp_path):
    """A started LocalDSP on a fresh data folder, accepting the bearer token TOKEN."""
    with LocalDSP(tmp_path / "localdsp-data", tokens=[TOKEN]) as dsp:
        yield dsp


@pytest.fixture
def project(tmp_path, localdsp, monkeypatch):
    """The repository's pipelines in a temporary folder, the runner's environment pointed at
    `localdsp` (tests that need another environment define their own)."""
    from runner_helpers import Project

    project = Project(tmp_path, localdsp.url, TOKEN)
    project.env(monkeypatch)
    return project


@pytest.fixture
def kfp_client(localdsp):
    """The real kfp-tekton client, as users construct it for DSP (host and token)."""
    return kfp_tekton.TektonClient(host=localdsp.url, existing_token=TOKEN)


@pytest.fixture
def api(localdsp):
    """Plain HTTP to the fixture server, for what the kfp client hides (status, body, headers)."""
    return RawApi(localdsp.url)


@pytest.fixture
def api_for():
    """Plain HTTP to any LocalDSP: `api_for(dsp.url, token="...")`."""
    return RawApi


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    text: str

    @property
    def json(self):
        return json.loads(self.text)


class RawApi:
    """A minimal HTTP client: one request per connection, the token unless told otherwise."""

    def __init__(self, url: str, token: str | None = TOKEN):
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.token = token

    def __call__(self, method, path, *, query=None, body=None, headers=None, token=...):
        token = self.token if token is ... else token
        target = path + ("?" + urllib.parse.urlencode(query) if query else "")
        sent = {"Authorization": f"Bearer {token}"} if token else {}
        if isinstance(body, dict | list):
            body = json.dumps(body)
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            connection.request(method, target, body=body, headers=sent)
            response = connection.getresponse()
            text = response.read().decode()
            return RawResponse(
                response.status, {k.lower(): v for k, v in response.getheaders()}, text
            )
        finally:
            connection.close()

    def upload(self, path, content: bytes, filename="pipeline.yaml", field="uploadfile", **query):
        """A multipart upload the way kfp's generated client sends one."""
        boundary = uuid.uuid4().hex
        body = (
            (
                f"--{boundary}\r\n"
                f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + content
            + f"\r\n--{boundary}--\r\n".encode()
        )
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        return self("POST", path, query=query or None, body=body, headers=headers)


# ---------------------------------------------------------------- compiled test pipelines


def add(a: float, b: float) -> float:
    """Calculate the sum of the two arguments."""
    return a + b


@kfp.dsl.pipeline(name="Add Pipeline", description="Adds numbers")
def add_pipeline(a="1", b="7"):
    add_op = kfp.components.create_component_from_func(add)
    first = add_op(a, 4)
    add_op(first.output, b)


@pytest.fixture(scope="session")
def add_yaml(tmp_path_factory) -> Path:
    """The seed tutorial's add pipeline compiled by TektonCompiler (a Tekton PipelineRun)."""
    path = tmp_path_factory.mktemp("compiled") / "add.yaml"
    kfp_tekton.compiler.TektonCompiler().compile(add_pipeline, str(path))
    return path


@pytest.fixture(scope="session")
def argo_yaml(tmp_path_factory) -> Path:
    """The same pipeline compiled by kfp's own (Argo) compiler: a format DSP v1 refuses."""
    path = tmp_path_factory.mktemp("compiled-argo") / "add_argo.yaml"
    kfp.compiler.Compiler().compile(add_pipeline, str(path))
    return path


@pytest.fixture
def executing_localdsp(tmp_path):
    """A started LocalDSP that really runs its runs (LocalExecutor) and recurring runs."""
    with LocalDSP(tmp_path / "localdsp-data", tokens=[TOKEN], execute=True) as dsp:
        yield dsp
