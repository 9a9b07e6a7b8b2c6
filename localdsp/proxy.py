"""DSP's oauth-proxy in front of both API generations: a bearer-token check, or its sign-in page.

Any request outside `/_localdsp/` without an accepted `Authorization: Bearer` token, healthz
included, gets the proxy's answer: 403 with an HTML sign-in page, never 401 or JSON. Tokens are
compared in constant time and never logged or echoed.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Iterable

from starlette.responses import Response

from localdsp.faults import ADMIN_PREFIX, ASGIApp, Receive, Scope, Send

SIGN_IN_PAGE = """<!DOCTYPE html>
<html lang="en" charset="utf-8">
<head>
<title>Log In</title>
<meta name="viewport" content="width=device-width, initial-scale=1, maximum-scale=1">
</head>
<body>
<div class="signin center">
<form method="GET" action="/oauth/start">
<input type="hidden" name="rd" value="/">
<button type="submit" class="btn">Log in with OpenShift</button><br/>
</form>
</div>
</body>
</html>
"""


class Tokens:
    """The bearer tokens the stand-in oauth-proxy accepts; None switches the check off."""

    def __init__(self, tokens: Iterable[str] | None = None):
        self._lock = threading.Lock()
        self.set(tokens)

    def set(self, tokens: Iterable[str] | None) -> None:
        """Replace the accepted tokens; raises TypeError unless given strings (or None)."""
        accepted = None if tokens is None else tuple(tokens)
        if isinstance(tokens, str) or not all(isinstance(t, str) for t in accepted or ()):
            raise TypeError("tokens must be a list of strings, or None to switch the check off")
        with self._lock:
            self._tokens = accepted

    def allows(self, authorization: str) -> bool:
        with self._lock:
            tokens = self._tokens
        if tokens is None:
            return True
        scheme, _, presented = authorization.partition(" ")
        presented = presented.strip()
        return scheme == "Bearer" and any(hmac.compare_digest(presented, t) for t in tokens)

    def __repr__(self) -> str:
        return "Tokens(<hidden>)"


class AuthMiddleware:
    """DSP's oauth-proxy: a request without an accepted bearer token gets the 403 sign-in page.

    Healthz is no exception: DSP's skip-auth regex never matches (see the fact sheet §3.2).
    """

    def __init__(self, app: ASGIApp, tokens: Tokens):
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(ADMIN_PREFIX):
            headers = dict(scope.get("headers") or [])
            authorization = headers.get(b"authorization", b"").decode("latin-1")
            if not self.tokens.allows(authorization):
                page = Response(SIGN_IN_PAGE, 403, media_type="text/html; charset=utf-8")
                await page(scope, receive, send)
                return
        await self.app(scope, receive, send)
