"""The guard both flavours put on their generated client's one HTTP method.

`kfp_server_api` (1.8 and 2.x alike) sends every call through `RESTClientObject.request`, sets no
timeout, reads an HTML sign-in page with status 200 as an empty result, and turns a TLS failure
into an ApiException with status 0 that it then trips over. The guard wraps that method so that
every request has a timeout, a 2xx that is not JSON is an error, and a bad certificate is a
TLSError while a dropped handshake is a transient connection error.
"""

from __future__ import annotations

import json
import re
import urllib.parse

from runner.errors import ServerError, TLSError


class UnexpectedResponse(ServerError):
    """A 2xx answer whose body is not JSON: the kfp client would read it as an empty result."""


class TLSHandshakeDropped(ConnectionError):
    """A TLS connection closed mid-handshake (a router dropping an idle connection): transient."""


def guard(rest_client, timeout: float, api_exception: type[Exception]) -> None:
    """Wrap the one method every generated call goes through (idempotent)."""
    if getattr(rest_client, "_dsp_guarded", False):
        return
    original = rest_client.request

    def request(method, url, *args, _request_timeout=None, **kwargs):
        try:
            response = original(
                method,
                url,
                *args,
                _request_timeout=_request_timeout or (timeout, timeout),
                **kwargs,
            )
        except api_exception as exc:
            if exc.status == 0:
                raise _tls_failure(exc.reason) from None
            raise
        if 200 <= response.status < 300 and not _is_json(response):
            path = urllib.parse.urlsplit(url).path
            raise UnexpectedResponse(
                f"{method} {path} answered {response.status} with a non-JSON page: is DSP_HOST "
                "the DSP API route (not the dashboard) and is the token accepted?"
            )
        return response

    rest_client.request = request
    rest_client._dsp_guarded = True


def _is_json(response) -> bool:
    """Judge the body, not the header: DSP v1's healthz sends its JSON as text/plain. A call
    made with `_preload_content=False` gets urllib3's response itself, whose `data` reads and
    keeps the body, so the caller still finds it."""
    raw = getattr(response, "urllib3_response", response)
    if "html" in (raw.headers.get("Content-Type") or "").lower():
        return False
    body = (response.data or b"").strip()
    if not body:
        return True
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def _tls_failure(reason) -> Exception:
    """Tell a bad certificate (permanent) from a dropped handshake (transient)."""
    text = str(reason)
    if any(mark in text for mark in ("CERTIFICATE_VERIFY_FAILED", "hostname", "WRONG_VERSION")):
        return TLSError(
            f"TLS verification failed ({_certificate_problem(text)}); set DSP_CA_BUNDLE to the "
            "CA that signed the server's certificate"
        )
    return TLSHandshakeDropped(f"TLS connection dropped: {text[:200]}")


def _certificate_problem(text: str) -> str:
    match = re.search(r"certificate verify failed: ([^(]+)", text)
    if match:
        return match.group(1).strip()
    return "wrong protocol: is the host really https?" if "WRONG_VERSION" in text else "hostname"
