"""Each setting's text, as a user types it, into its typed value, or a one-line complaint.

The parsers raise ValueError with a message that names no secret; `Settings.from_args` prefixes it
with the variable or flag. Kept apart from `settings` so that the declarations stay readable.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# The server keeps experiment, run and recurring-run names and descriptions in varchar(255)
# columns (gorm's default size): a longer one fails there with a 500, after the run or the
# recurring run was already created in the cluster.
MAX_SERVER_TEXT = 255

RUN_POLICIES = ("on-change", "always", "never")
LOG_FORMATS = ("auto", "json", "console")


def host(raw: str) -> str:
    """Accept what users paste (no scheme, a trailing slash) the way kfp does, but check it."""
    value = raw.strip().rstrip("/")
    if "://" not in value:
        value = "https://" + value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not a URL: {raw!r}")
    if parts.username or parts.password:
        raise ValueError("credentials in the URL are not allowed; use DSP_TOKEN or DSP_TOKEN_PATH")
    return value


def _number(raw: str, cast: Callable[[str], Any], what: str) -> Any:
    """The text as `cast` reads it, or the one-line complaint naming what was expected."""
    try:
        return cast(raw)
    except ValueError:
        raise ValueError(f"expected {what}, got {raw!r}") from None


def positive_float(raw: str) -> float:
    value = _number(raw, float, "a number of seconds")
    if not value > 0:
        raise ValueError(f"must be greater than 0, got {raw!r}")
    return value


def positive_int(raw: str) -> int:
    value = _number(raw, int, "a whole number")
    if value < 1:
        raise ValueError(f"must be at least 1, got {raw!r}")
    return value


def count(raw: str) -> int:
    """A whole number, 0 allowed (`--keep 0`)."""
    value = _number(raw, int, "a whole number")
    if value < 0:
        raise ValueError(f"must be 0 or more, got {raw!r}")
    return value


def days(raw: str) -> float:
    """A number of days, 0 allowed (`--keep-days 0` protects no version for its runs)."""
    value = _number(raw, float, "a number of days")
    if not 0 <= value <= 36500:
        raise ValueError(f"must be between 0 and 36500 days, got {raw!r}")
    return value


def boolean(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {raw!r}")
        return value

    return parse


def log_level(raw: str) -> str:
    value = raw.strip().upper()
    if value not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError(f"expected DEBUG, INFO, WARNING or ERROR, got {raw!r}")
    return value


def token(raw: str) -> str:
    """The token from the environment, trimmed; the value is never echoed in an error."""
    value = raw.strip()
    if not value or any(c.isspace() for c in value):
        raise ValueError("the token is empty or contains whitespace")
    return value


def existing_dir_path(raw: str) -> Path:
    return Path(raw).expanduser()


def git_commit(raw: str) -> str:
    value = raw.strip()
    if not re.fullmatch(r"[0-9a-fA-F]{7,64}", value):
        raise ValueError(f"expected a hexadecimal commit SHA, got {raw!r}")
    return value.lower()


def names(raw: str | list[str]) -> tuple[str, ...]:
    """From the flag (a list) or the variable (comma-separated)."""
    items = raw if isinstance(raw, list) else raw.split(",")
    names = tuple(item.strip() for item in items if item.strip())
    if not names:
        raise ValueError("expected at least one pipeline name")
    return names


def experiment(raw: str) -> str:
    """The server keeps experiment names in a 255-character column: longer fails there (500)."""
    value = raw.strip()
    if len(value) > MAX_SERVER_TEXT:
        raise ValueError(
            f"{len(value)} characters long; the server takes experiment names of at most "
            f"{MAX_SERVER_TEXT}: shorten it"
        )
    return value


def run_key(raw: str) -> str:
    value = raw.strip()
    if not re.fullmatch(r"[A-Za-z0-9._:-]{1,40}", value):
        raise ValueError(f"expected 1 to 40 letters, digits, '.', '_', ':' or '-', got {raw!r}")
    return value


def target(raw: str) -> str:
    """A `targets:` entry of the settings file: the names the file's schema takes."""
    value = raw.strip()
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,63}", value):
        raise ValueError(f"expected 1 to 63 letters, digits, '.', '_' or '-', got {raw!r}")
    return value


def parse_run_args(env_raw: str | None, flags: list[str] | None) -> dict[str, dict[str, str]]:
    """Merge DSP_RUN_ARGS (JSON) with --arg PIPELINE.PARAM=VALUE flags, flags winning."""
    merged: dict[str, dict[str, str]] = {}
    if env_raw:
        try:
            loaded = json.loads(env_raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"DSP_RUN_ARGS: not valid JSON ({exc.msg})") from None
        if not isinstance(loaded, dict) or not all(isinstance(v, dict) for v in loaded.values()):
            raise ValueError('DSP_RUN_ARGS: expected {"pipeline": {"param": "value"}}')
        merged = {str(p): {str(k): arg_value(v) for k, v in a.items()} for p, a in loaded.items()}
    for item in flags or []:
        key, sep, value = item.partition("=")
        pipeline, dot, param = key.rpartition(".")
        if not sep or not dot or not pipeline or not param:
            raise ValueError(f"--arg: expected PIPELINE.PARAM=VALUE, got {item!r}")
        merged.setdefault(pipeline, {})[param] = value
    return merged


def arg_value(value: Any) -> str:
    """Run parameters travel as strings; lists and dicts as JSON, like kfp's run_pipeline."""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


PARSERS: dict[str, Callable[[str], Any]] = {
    "host": host,
    "token_path": existing_dir_path,
    "token": token,
    "ca_bundle": existing_dir_path,
    "insecure_skip_tls_verify": boolean,
    "pipelines_dir": existing_dir_path,
    "experiment": experiment,
    "run_policy": choice(RUN_POLICIES),
    "only": names,
    "wait": boolean,
    "wait_timeout": positive_float,
    "poll_interval": positive_float,
    "run_key": run_key,
    "ui_host": host,
    "concurrency": positive_int,
    "request_timeout": positive_float,
    "retries": positive_int,
    "retry_max_wait": positive_float,
    "compile_timeout": positive_float,
    "output_dir": existing_dir_path,
    "git_commit": git_commit,
    "git_repo": lambda raw: raw.strip(),
    "log_format": choice(LOG_FORMATS),
    "log_level": log_level,
    "config": existing_dir_path,
    "results_dir": existing_dir_path,
    "promote_from_host": host,
    "promote_from_token_path": existing_dir_path,
    "promote_from_token": token,
    "promote_from_ca_bundle": existing_dir_path,
    "require_success": boolean,
    "target": target,
    "keep_versions": count,
    "keep_days": days,
}
