"""Where the bearer token comes from. The token itself is never logged, raised or written.

In a pod the token is a mounted service-account token that the kubelet (or a Secret update)
rotates, so it is re-read before every request through the generated client's
`refresh_api_key_hook` (the hook kfp's `Client(credentials=...)` installs), with errors that name
the file. On a laptop `DSP_TOKEN` carries a token from `oc whoami --show-token`.

This module must not import kfp: a missing or unreadable token is a configuration error, and
those are reported before kfp is imported.
"""

from __future__ import annotations

from pathlib import Path

from runner.errors import TokenError


class TokenFileCredentials:
    """Re-reads the token file before every request; a bad file is a one-line TokenError."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def source(self) -> str:
        """Where the token was read, for error lines: the setting and the file, never the token."""
        return f"the file {self.path} (DSP_TOKEN_PATH)"

    def _get_token(self) -> str:
        try:
            text = self.path.read_text()
        except OSError as exc:
            raise TokenError(
                f"DSP_TOKEN_PATH: cannot read the token file {self.path} "
                f"({exc.strerror or type(exc).__name__}); mount the service-account token "
                "there or set DSP_TOKEN_PATH / DSP_TOKEN"
            ) from None
        token = text.strip()
        if not token:
            raise TokenError(f"DSP_TOKEN_PATH: the token file {self.path} is empty")
        if any(character.isspace() for character in token):
            raise TokenError(
                f"DSP_TOKEN_PATH: the token file {self.path} holds more than one word; "
                "it must hold only the token"
            )
        return token

    def refresh_api_key_hook(self, config) -> None:
        """Called by the generated client before each request: the file's current token."""
        config.api_key["authorization"] = self._get_token()

    def __repr__(self) -> str:
        return f"TokenFileCredentials({self.path})"


class StaticTokenCredentials:
    """A token given in the environment (DSP_TOKEN), fixed for the life of the job."""

    source = "DSP_TOKEN"

    def __init__(self, token: str):
        self._token = token

    def _get_token(self) -> str:
        return self._token

    def refresh_api_key_hook(self, config) -> None:
        config.api_key["authorization"] = self._token

    def __repr__(self) -> str:
        return "StaticTokenCredentials(<hidden>)"


def credentials(token: str, token_path: Path) -> TokenFileCredentials | StaticTokenCredentials:
    """The environment's token wins; otherwise the token file, checked now so a missing file
    is a configuration error before any work is done."""
    if token:
        return StaticTokenCredentials(token)
    source = TokenFileCredentials(token_path)
    source._get_token()
    return source
