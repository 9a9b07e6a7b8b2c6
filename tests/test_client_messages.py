"""The one line a failed server call becomes: what a user reads to decide what to fix."""

import pytest
from kfp_server_api.exceptions import ApiException

from runner import calls, transport
from runner.errors import AuthError, ConflictError, NotFoundError, ServerError, TLSError

REACH = "create run: could not reach https://dsp: "
POLICY = calls.Calls(
    host="https://dsp",
    token_source="DSP_TOKEN",
    retries=3,
    retry_max_wait=0.2,
    api_exception=ApiException,
    forbidden_hint="may get the route",
)
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
