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

    def __init__(self, path: Path, setting: str = "DSP_TOKEN_PATH"):
        self.path = Path(path)
        self.setting = setting

    @property
    def source(self) -> str:
        """Where the token was read, for error lines: the setting and the file, never the token."""
        return f"the file {self.path} ({self.setting})"

    def _get_token(self) -> str:
        try:
            text = self.path.read_text()
        except OSError as exc:
            raise TokenError(
                f"{self.setting}: cannot read the token file {self.path} "
                f"({exc.strerror or type(exc).__name__}); mount the service-account token "
                f"there or set {self.setting} / {_VARIABLE_OF.get(self.setting, 'DSP_TOKEN')}"
            ) from None
        token = text.strip()
        if not token:
            raise TokenError(f"{self.setting}: the token file {self.path} is empty")
        if any(character.isspace() for character in token):
            raise TokenError(
                f"{self.setting}: the token file {self.path} holds more than one word; "
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

    def __init__(self, token: str, setting: str = "DSP_TOKEN"):
        self._token = token
        self.source = setting

    def _get_token(self) -> str:
        return self._token

    def refresh_api_key_hook(self, config) -> None:
        config.api_key["authorization"] = self._token

    def __repr__(self) -> str:
        return "StaticTokenCredentials(<hidden>)"


_VARIABLE_OF = {"DSP_PROMOTE_FROM_TOKEN_PATH": "DSP_PROMOTE_FROM_TOKEN"}
"""The token variable that goes with a token-file setting other than DSP_TOKEN_PATH."""


def credentials(
    token: str, token_path: Path, *, path_setting: str = "DSP_TOKEN_PATH"
) -> TokenFileCredentials | StaticTokenCredentials:
    """The environment's token wins; otherwise the token file, checked now so a missing file
    is a configuration error before any work is done. `path_setting` names the settings in
    error lines (the promote source has its own: DSP_PROMOTE_FROM_TOKEN_PATH)."""
    if token:
        return StaticTokenCredentials(token, _VARIABLE_OF.get(path_setting, "DSP_TOKEN"))
    source = TokenFileCredentials(token_path, path_setting)
    source._get_token()
    return source
