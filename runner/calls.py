"""How every server call is made, for both flavours: timeouts aside, this is the retry policy.

Both SDKs' generated clients (`kfp_server_api` 1.8 and 2.x) raise one `ApiException` shape
(`status`, `body`, `headers`), and both servers mean the same by their answers, so one policy
serves both; each flavour passes in its own exception class and what a refused token means there.
- connection errors, timeouts, 429 (honouring Retry-After, capped) and 5xx are retried with
  exponential backoff and jitter; other 4xx are not;
- "it exists" (409, or the v1 uploads' 500 "already exist") is never retried: a create adopts
  the existing object instead, and a retried create first looks for what a lost answer made;
- a 403 (the auth proxy's page) is retried once, the token being re-read, then is an AuthError;
- only the network's and the server's failures become one-line errors: anything else raised in
  a call is a bug and escapes with its traceback.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import TypeVar

import structlog
import tenacity
import urllib3

from runner.errors import AuthError, ConflictError, NotFoundError, RunnerError, ServerError

logger = structlog.get_logger()
T = TypeVar("T")
PAGE_SIZE = 200
RETRYABLE_STATUS = {429, 500, 502, 503, 504}
MAX_RETRY_AFTER = 120.0
"""Longest wait a server's Retry-After may impose (seconds); a longer one waits this long."""


class Calls:
    """Runs server calls under the retry policy, for one server and one token source."""

    def __init__(
        self,
        *,
        host: str,
        token_source: str,
        retries: int,
        retry_max_wait: float,
        api_exception: type[Exception],
        forbidden_hint: str,
    ):
        self.host = host
        self._token_source = token_source
        self._retries = retries
        self._api_exception = api_exception
        self._forbidden_hint = forbidden_hint
        self._transport_errors = (
            api_exception,
            urllib3.exceptions.HTTPError,
            ConnectionError,
            TimeoutError,
        )
        self.backoff = tenacity.wait_exponential_jitter(multiplier=0.5, max=retry_max_wait)

    def call(
        self, operation: str, call: Callable[[], T], adopt: Callable[[], T | None] | None = None
    ) -> T:
        """Run `call` under the retry policy; before a retried create, look for its result."""
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self._retries),
            wait=self._wait,
            retry=self._should_retry,
            before_sleep=_log_retry(operation),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    if adopt is not None and attempt.retry_state.attempt_number > 1:
                        existing = adopt()
                        if existing is not None:
                            logger.info("adopted_existing", operation=operation)
                            return existing
                    return call()
        except self._transport_errors as exc:
            raise self.translate(operation, exc) from None
        raise AssertionError("tenacity ended without an outcome")

    def create(
        self,
        operation: str,
        create: Callable[[], T],
        find: Callable[[], T | None],
        *,
        unseen: str = "",
    ) -> T:
        """Create once; if a lost answer or a concurrent runner already made it, adopt that.

        `unseen` (uploads) is the error when the name stays taken but the object never shows.
        """
        try:
            return self.call(operation, create, adopt=find)
        except ConflictError:
            lookup = f"{operation}: look up existing"
            existing = self._until_visible(lookup, find) if unseen else self.call(lookup, find)
            if existing is None and unseen:
                raise ConflictError(unseen) from None
            if existing is None:
                raise
            logger.info("adopted_existing", operation=operation)
            return existing

    def _until_visible(self, operation: str, find: Callable[[], T | None]) -> T | None:
        """An upload's name is taken from the moment its row is inserted (CREATING), but get
        and list show it only once its file is stored: a racing upload's object appears a
        little later. Look again with the retry backoff, as often as a failing call is tried."""
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self._retries),
            wait=self.backoff,
            retry=tenacity.retry_if_result(lambda found: found is None),
            retry_error_callback=lambda state: None,
            before_sleep=_log_unseen(operation),
        )
        return retrying(self.call, operation, find)

    def pages(self, operation: str, field: str, fetch: Callable[[str], object]) -> Iterator:
        """Every object of a paged listing; `fetch(token)` asks for one page. A page token seen
        before would read the same pages for ever (a server or proxy that drops the token), so it
        ends the listing with an error instead of hanging the job."""
        token, seen = "", set()
        while True:
            page = self.call(operation, lambda token=token: fetch(token))
            yield from getattr(page, field) or []
            token = page.next_page_token or ""
            if not token:
                return
            if token in seen:
                raise ServerError(
                    f"{operation}: {self.host} sent the same page token twice; "
                    "stopping rather than reading the listing for ever"
                )
            seen.add(token)

    def filtered_pages(
        self, operation: str, field: str, list_call, criteria: dict[str, str], **keys
    ) -> Iterator:
        """A filtered or sorted listing, page by page. The server checks a filter or sort sent
        with a page token against the token's own and refuses what it cannot match (a re-sent
        IN filter never matches), so they go with the first page only; the page size and the
        reference keys are not in the token, so they go with every page."""

        def fetch(token: str):
            first = {} if token else criteria
            return list_call(page_token=token, page_size=PAGE_SIZE, **keys, **first)

        return self.pages(operation, field, fetch)

    def status(self, exc: BaseException | None) -> int | None:
        return exc.status if isinstance(exc, self._api_exception) else None

    def is_transient(self, exc: BaseException | None) -> bool:
        if isinstance(exc, self._api_exception):
            return exc.status in RETRYABLE_STATUS and not already_exists(exc) and not invalid(exc)
        return isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError))

    def translate(self, operation: str, exc: Exception) -> RunnerError:
        """Every way the network or the server can fail a call, as one typed line that says
        what to check; a 403 names where the token came from (never the token)."""
        if isinstance(exc, self._api_exception):
            if exc.status == 403:
                return AuthError(
                    f"{operation}: the server refused the token (403) from {self._token_source}: "
                    f"check that it is valid and that its account {self._forbidden_hint}"
                )
            message = error_message(exc.body) or exc.reason
            if already_exists(exc):
                return ConflictError(f"{operation}: {message}")
            if exc.status == 404:
                return NotFoundError(f"{operation}: {message}")
            return ServerError(f"{operation}: HTTP {exc.status}: {message}")
        return ServerError(
            f"{operation}: could not reach {self.host}: {type(exc).__name__}: {_first_line(exc)}"
        )

    def _should_retry(self, state: tenacity.RetryCallState) -> bool:
        exc = state.outcome.exception()
        if self.status(exc) == 403:
            return state.attempt_number < 2
        return self.is_transient(exc)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        retry_after = self._retry_after(state.outcome.exception())
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER)
        return self.backoff(state)

    def _retry_after(self, exc: BaseException | None) -> float | None:
        if self.status(exc) not in (429, 503) or not exc.headers:
            return None
        try:
            return max(0.0, float(exc.headers.get("Retry-After")))
        except (TypeError, ValueError):
            return None


def invalid(exc) -> bool:
    """The upload endpoints answer 500 for a file the server will never accept."""
    return exc.status == 500 and "unknown template format" in (exc.body or "")


def already_exists(exc) -> bool:
    """409 from the gateway; the v1 multipart uploads say it with a 500 "already exist"."""
    return exc.status == 409 or (exc.status == 500 and "already exist" in (exc.body or ""))


def error_message(body: str | None) -> str:
    """The user-facing text of any error shape the servers use, or a short HTML hint."""
    if not body:
        return ""
    try:
        data = json.loads(body)
    except ValueError:
        return "the server answered with a non-JSON page" if "<" in body else body[:200]
    if not isinstance(data, dict):
        return str(data)[:200]
    details = data.get("details") or []
    if details and isinstance(details[0], dict) and details[0].get("error_message"):
        return details[0]["error_message"]
    return data.get("error_message") or data.get("message") or data.get("error") or ""


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else ""


def _log_retry(operation: str):
    def log(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception()
        logger.warning(
            "server_call_retry",
            operation=operation,
            attempt=state.attempt_number,
            wait_s=round(state.upcoming_sleep, 2),
            error=getattr(exc, "status", None) or type(exc).__name__,
        )

    return log


def _log_unseen(operation: str):
    def log(state: tenacity.RetryCallState) -> None:
        logger.info(
            "upload_not_visible_yet",
            operation=operation,
            attempt=state.attempt_number,
            wait_s=round(state.upcoming_sleep, 2),
        )

    return log
