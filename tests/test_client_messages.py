"""The one line a failed server call becomes: what a user reads to decide what to fix."""

import datetime
from pathlib import Path

import pytest
import structlog.testing
from conftest import TOKEN
from kfp_server_api.exceptions import ApiException

from runner import auth, calls, transport
from runner.errors import AuthError, ConflictError, NotFoundError, ServerError, TLSError
from runner.flavour_v1.client import DSPClient
from runner_helpers import client_for, policy

REACH = "create run: could not reach https://dsp: "
POLICY = policy(ApiException)
VERIFY = "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "


def api_error(status: int, body: str | None = None, reason: str = "Reason") -> ApiException:
    error = ApiException(status=status, reason=reason)
    error.body = body
    return error


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (None, ""),
        ("", ""),
        ('{"error_message": "name taken", "message": "m", "error": "e"}', "name taken"),
        ('{"message": "from the gateway", "error": "e"}', "from the gateway"),
        ('{"error": "plain error"}', "plain error"),
        ('{"code": 13}', ""),
        ('{"details": [{"error_message": "in details"}], "error_message": "outer"}', "in details"),
        ('{"details": [{"@type": "x"}], "error_message": "outer"}', "outer"),
        ('{"details": ["text"], "error": "outer"}', "outer"),
        ('["a", "list"]', "['a', 'list']"),
        (
            "<html><body>Application is not available</body></html>",
            "the server answered with a non-JSON page",
        ),
        ("upstream connect error", "upstream connect error"),
        ("x" * 300, "x" * 200),
        ("[" + "1," * 200 + "1]", str([1] * 201)[:200]),
    ],
)
def test_the_error_text_is_read_from_either_shape_the_server_uses(body, message):
    assert calls.error_message(body) == message


@pytest.mark.parametrize(
    ("error", "kind", "text"),
    [
        (
            api_error(403, "<html>sign in</html>"),
            AuthError,
            "create run: the server refused the token (403)",
        ),
        (api_error(409, '{"error": "exists"}'), ConflictError, "create run: exists"),
        (
            api_error(500, '{"error_message": "it already exist"}'),
            ConflictError,
            "create run: it already exist",
        ),
        (
            api_error(404, '{"error_message": "no such run"}'),
            NotFoundError,
            "create run: no such run",
        ),
        (
            api_error(400, '{"error_message": "bad name"}'),
            ServerError,
            "create run: HTTP 400: bad name",
        ),
        (
            api_error(502, None, reason="Bad Gateway"),
            ServerError,
            "create run: HTTP 502: Bad Gateway",
        ),
        (
            ConnectionRefusedError("refused\nmore"),
            ServerError,
            REACH + "ConnectionRefusedError: refused",
        ),
    ],
)
def test_each_failure_becomes_one_typed_line(error, kind, text):
    translated = POLICY.translate("create run", error)
    assert type(translated) is kind
    assert str(translated).startswith(text)
    assert "\n" not in str(translated)


def test_only_the_first_line_of_a_connection_error_is_kept_and_it_is_short():
    assert calls._first_line(OSError("a" * 400 + "\nsecond")) == "a" * 300
    assert calls._first_line(OSError("")) == ""


@pytest.mark.parametrize(
    ("reason", "problem"),
    [
        (
            VERIFY + "self signed certificate in chain (_ssl.c:1006)",
            "self signed certificate in chain",
        ),
        (
            VERIFY + "Hostname mismatch, not valid for 'x'. (_ssl.c:1006)",
            "Hostname mismatch, not valid for 'x'.",
        ),
        ("hostname '127.0.0.1' doesn't match 'dsp.example.com'", "hostname"),
        (
            "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)",
            "wrong protocol: is the host really https?",
        ),
    ],
)
def test_a_certificate_problem_is_a_tls_error_that_says_which(reason, problem):
    error = transport._tls_failure(reason)
    assert isinstance(error, TLSError)
    assert str(error) == (
        f"TLS verification failed ({problem}); set DSP_CA_BUNDLE to the CA that signed the "
        "server's certificate"
    )


def test_a_handshake_cut_short_is_a_transient_drop_not_a_certificate_problem():
    reason = "EOF occurred in violation of protocol " + "x" * 300
    error = transport._tls_failure(reason)
    assert isinstance(error, transport.TLSHandshakeDropped)
    assert POLICY.is_transient(error)
    assert str(error) == "TLS connection dropped: " + reason[:200]


# ---------------------------------------------------------------- each call names itself

BAD = '{"error_message": "refused here"}'


def dsp_client(url: str) -> DSPClient:
    return client_for(url, auth.credentials(TOKEN, Path("/nonexistent")))


def _job(client):
    return client.create_job(
        experiment_id="e1",
        name="nightly",
        description="",
        pipeline_id="p1",
        version_id="v1",
        cron="0 0 2 * * *",
        max_concurrency=1,
        catchup=False,
        enabled=True,
        params={},
    )


CALLS = [
    ("list pipelines", "GET", "/apis/v1beta1/pipelines", lambda c: c.list_pipelines()),
    ("find pipeline", "GET", "/apis/v1beta1/pipelines", lambda c: c.find_pipeline("add")),
    (
        "find pipeline version",
        "GET",
        "/apis/v1beta1/pipeline_versions",
        lambda c: c.find_version("p1", "v"),
    ),
    ("find experiment", "GET", "/apis/v1beta1/experiments", lambda c: c.find_experiment("e")),
    (
        "list fingerprint records",
        "GET",
        "/apis/v1beta1/experiments",
        lambda c: c.experiments_containing("fp"),
    ),
    ("find runs", "GET", "/apis/v1beta1/runs", lambda c: c.runs_named("e1", ["r"])),
    ("get run", "GET", "/apis/v1beta1/runs/r1", lambda c: c.get_run("r1")),
    ("list recurring runs", "GET", "/apis/v1beta1/jobs", lambda c: c.list_jobs()),
    ("find recurring run", "GET", "/apis/v1beta1/jobs", lambda c: c.jobs_named("nightly")),
    ("create recurring run", "POST", "/apis/v1beta1/jobs", _job),
    (
        "upload pipeline",
        "POST",
        "/apis/v1beta1/pipelines/upload",
        lambda c: c.upload_pipeline(Path("add.yaml"), "add", ""),
    ),
    (
        "upload pipeline version",
        "POST",
        "/apis/v1beta1/pipelines/upload_version",
        lambda c: c.upload_version(Path("add.yaml"), "p1", "v", "", pipeline_name="add"),
    ),
    (
        "set default version",
        "POST",
        "/apis/v1beta1/pipelines/p1/default_version/v1",
        lambda c: c.set_default_version("p1", "v1"),
    ),
    (
        "start run",
        "POST",
        "/apis/v1beta1/runs",
        lambda c: c.start_run(
            experiment_id="e1", name="r", pipeline_id="p", version_id="v", params={}
        ),
    ),
    (
        "create experiment",
        "POST",
        "/apis/v1beta1/experiments",
        lambda c: c.ensure_experiment("e", ""),
    ),
    (
        "create fingerprint record",
        "POST",
        "/apis/v1beta1/experiments",
        lambda c: c.create_archived_experiment("e", ""),
    ),
    (
        "archive fingerprint record",
        "POST",
        "/apis/v1beta1/experiments/.*:archive",
        lambda c: c.create_archived_experiment("e", ""),
    ),
    (
        "delete fingerprint record",
        "DELETE",
        "/apis/v1beta1/experiments/e1",
        lambda c: c.delete_experiment("e1"),
    ),
    (
        "enable recurring run",
        "POST",
        "/apis/v1beta1/jobs/j1/enable",
        lambda c: c.set_job_enabled("j1", True),
    ),
    (
        "disable recurring run",
        "POST",
        "/apis/v1beta1/jobs/j1/disable",
        lambda c: c.set_job_enabled("j1", False),
    ),
    ("delete recurring run", "DELETE", "/apis/v1beta1/jobs/j1", lambda c: c.delete_job("j1")),
    (
        "list pipeline versions",
        "GET",
        "/apis/v1beta1/pipeline_versions",
        lambda c: c.list_versions("p1"),
    ),
    (
        "list recent runs",
        "GET",
        "/apis/v1beta1/runs",
        lambda c: c.runs_since(datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)),
    ),
    (
        "find newest run of version",
        "GET",
        "/apis/v1beta1/runs",
        lambda c: c.newest_run_of("p1", "v1"),
    ),
    (
        "get pipeline version template",
        "GET",
        "/apis/v1beta1/pipeline_versions/v1/templates",
        lambda c: c.pipeline_file("p1", "v1"),
    ),
    (
        "delete pipeline version",
        "DELETE",
        "/apis/v1beta1/pipeline_versions/v1",
        lambda c: c.delete_version("p1", "v1"),
    ),
]


@pytest.mark.integration
@pytest.mark.parametrize(("operation", "method", "path", "call"), CALLS, ids=[c[0] for c in CALLS])
def test_a_refused_call_s_line_names_what_the_runner_was_doing(
    localdsp, tmp_path, monkeypatch, operation, method, path, call
):
    """The line starts with the operation, the way a user tells a refused lookup from a refused
    upload; the request is the one the operation names."""
    monkeypatch.chdir(tmp_path)
    Path("add.yaml").write_text("apiVersion: tekton.dev/v1beta1\nkind: PipelineRun\n")
    localdsp.inject(method=method, path=path, action="status", status=400, body=BAD, times=None)
    client = dsp_client(localdsp.url)
    with pytest.raises(ServerError) as raised:
        call(client)
    assert str(raised.value) == f"{operation}: HTTP 400: refused here"


@pytest.mark.integration
def test_a_duplicate_run_that_cannot_be_removed_is_logged_naming_each_step(localdsp):
    localdsp.inject(
        method="*",
        path="/apis/v1beta1/runs/r1(/terminate)?",
        action="status",
        status=400,
        body=BAD,
        times=None,
    )
    with structlog.testing.capture_logs() as logged:
        dsp_client(localdsp.url).remove_run("r1")
    assert [e["error"] for e in logged if e["event"] == "duplicate_run_cleanup"] == [
        "terminate duplicate run: HTTP 400: refused here",
        "delete duplicate run: HTTP 400: refused here",
    ]


@pytest.mark.integration
def test_a_refused_read_of_a_default_version_names_it(localdsp, kfp_client, add_yaml):
    """The listing left the default version's description out: the read that completes it."""
    kfp_client.upload_pipeline(str(add_yaml), "Add")
    localdsp.inject(
        method="GET",
        path="/apis/v1beta1/pipeline_versions/.+",
        action="status",
        status=400,
        body=BAD,
        times=None,
    )
    with pytest.raises(ServerError) as raised:
        dsp_client(localdsp.url).list_pipelines()
    assert str(raised.value) == "get pipeline version: HTTP 400: refused here"
