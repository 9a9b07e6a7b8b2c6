"""The runner's expected failures: each one a single line telling the user what to do next.

Anything else that escapes is a bug and keeps its traceback.
"""


class RunnerError(Exception):
    """A failure the user can fix; printed as one line, no traceback."""

    exit_code = 1


class ConfigurationError(RunnerError):
    """A setting is missing or invalid, or a file it names cannot be read."""

    exit_code = 2


class TokenError(ConfigurationError):
    """The bearer token cannot be read; the message names where it looked."""


class ServerError(RunnerError):
    """The server failed a call after every retry, or answered something unusable."""


class AuthError(ServerError):
    """The server (DSP's oauth-proxy) refused the token: 403 with its sign-in page."""

    exit_code = 5


class TLSError(ServerError):
    """The server's certificate could not be verified."""

    exit_code = 5


class ConflictError(ServerError):
    """The server already holds an object with this name (500 'already exist' or 409)."""


class NotFoundError(ServerError):
    """The server does not know the object (404)."""


class ExperimentGone(NotFoundError):
    """A run or job was refused because its experiment was deleted (the server's 500)."""


INTERNAL_ERROR = 70
INTERRUPTED = 130


def exit_code_of(exc: BaseException) -> int:
    """The process's exit code for an error that ends a command: its own for the expected ones,
    130 for Ctrl-C, 70 for anything else (a bug). The command line and the summary both use it."""
    if isinstance(exc, RunnerError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    return INTERNAL_ERROR
