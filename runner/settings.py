"""Every setting of the runner, read once from flags and environment into one typed object.

Precedence is flag > environment variable > default, and it lives here only: each environment
variable becomes the argparse default of its flag. `Settings.from_args` validates everything
together and reports every problem at once, each naming the variable or flag.

This module must not import kfp: `--help` and configuration errors have to be fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from runner import flavour, setting_values
from runner.errors import ConfigurationError

POD_SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


def _setting(env: str, flag: str | None, help: str, default: Any = None, factory=None) -> Any:
    """Declare a setting: its environment variable, its flag and its one-line help."""
    metadata = {"env": env, "flag": flag, "help": help}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """The runner's configuration. Field docs are the `help` texts below (and the README table)."""

    host: str = _setting(
        "DSP_HOST",
        "--host",
        "DSP API URL, e.g. https://ds-pipeline-dspa.<ns>.svc:8443 or the route URL. "
        "Required for deploy and trigger.",
        default="",
    )
    token_path: Path = _setting(
        "DSP_TOKEN_PATH",
        "--token-path",
        "File holding the bearer token, re-read before every request "
        "(a mounted service-account token).",
        default=POD_SA_DIR / "token",
    )
    token: str = _setting(
        "DSP_TOKEN",
        None,
        "Bearer token itself, for a laptop (e.g. `oc whoami --show-token`). Environment only, "
        "never a flag, so it cannot show in process listings. Wins over DSP_TOKEN_PATH.",
        default="",
    )
    ca_bundle: Path | None = _setting(
        "DSP_CA_BUNDLE",
        "--ca-bundle",
        "CA bundle (PEM) to verify the server's certificate; replaces the system trust store. "
        "Default: the pod's service-ca.crt when present, else the system store.",
        default=None,
    )
    insecure_skip_tls_verify: bool = _setting(
        "DSP_INSECURE_SKIP_TLS_VERIFY",
        "--insecure-skip-tls-verify",
        "Do not verify the server's TLS certificate. Logged as a warning on every run.",
        default=False,
    )
    pipelines_dir: Path = _setting(
        "DSP_PIPELINES_DIR",
        "--pipelines-dir",
        "Folder whose Python modules define the pipelines. Default: pipelines (v1), "
        "pipelines_v2 (v2, kfp 2 installed).",
        default=flavour.default_pipelines_dir(),
    )
    experiment: str = _setting(
        "DSP_EXPERIMENT",
        "--experiment",
        "Experiment the runs are started in (created when missing).",
        default="dsp-runner",
    )
    run_policy: str = _setting(
        "DSP_RUN_POLICY",
        "--run-policy",
        "When to start a run: on-change (once per new pipeline version), always (once per "
        "commit), never.",
        default="on-change",
    )
    run_args: dict[str, dict[str, str]] = _setting(
        "DSP_RUN_ARGS",
        "--arg",
        "Run argument override PIPELINE.PARAM=VALUE (repeatable). The variable takes JSON: "
        '{"add-pipeline": {"a": "7"}}.',
        factory=dict,
    )
    only: tuple[str, ...] = _setting(
        "DSP_ONLY",
        "--only",
        "Ship or trigger only these pipelines (name or slug; repeatable; the variable takes a "
        "comma-separated list). Default: all.",
        default=(),
    )
    wait: bool = _setting(
        "DSP_WAIT",
        "--wait",
        "Wait for the started runs to finish and fail the job if one fails.",
        default=False,
    )
    wait_timeout: float = _setting(
        "DSP_WAIT_TIMEOUT",
        "--wait-timeout",
        "Seconds to wait for runs in all before giving up (exit code 4).",
        default=3600.0,
    )
    poll_interval: float = _setting(
        "DSP_POLL_INTERVAL",
        "--poll-interval",
        "Seconds between two status polls of the runs being waited for.",
        default=10.0,
    )
    run_key: str = _setting(
        "DSP_RUN_KEY",
        "--run-key",
        "trigger: the schedule slot, so a retried or doubled trigger starts one run per slot "
        "(the CronJob passes its Job name). Default: the current UTC minute.",
        default="",
    )
    ui_host: str = _setting(
        "DSP_UI_HOST",
        "--ui-host",
        "Dashboard URL used for run links in the summary (<ui>/#/runs/details/<id>).",
        default="",
    )
    concurrency: int = _setting(
        "DSP_CONCURRENCY",
        "--concurrency",
        "Pipelines handled at once against the server (bounded thread pool).",
        default=8,
    )
    request_timeout: float = _setting(
        "DSP_REQUEST_TIMEOUT",
        "--request-timeout",
        "Seconds one HTTP request to the server may take.",
        default=30.0,
    )
    retries: int = _setting(
        "DSP_RETRIES",
        "--retries",
        "Attempts per server call on transient errors (connection errors, timeouts, 429, 5xx).",
        default=6,
    )
    retry_max_wait: float = _setting(
        "DSP_RETRY_MAX_WAIT",
        "--retry-max-wait",
        "Longest pause in seconds between two attempts (exponential backoff with jitter).",
        default=30.0,
    )
    compile_timeout: float = _setting(
        "DSP_COMPILE_TIMEOUT",
        "--compile-timeout",
        "Seconds a pipeline module may take to import and compile before it is reported hung.",
        default=120.0,
    )
    output_dir: Path = _setting(
        "DSP_OUTPUT_DIR",
        "--output-dir",
        "Folder for compiled YAML and the summary file (summary.json).",
        default=Path("build/dsp-runner"),
    )
    git_commit: str = _setting(
        "DSP_GIT_COMMIT",
        "--git-commit",
        "Commit SHA the pipelines come from. Default: `git rev-parse HEAD` in the pipelines "
        "folder.",
        default="",
    )
    git_repo: str = _setting(
        "DSP_GIT_REPO",
        "--git-repo",
        "Repository URL the pipelines come from. Default: `git remote get-url origin`.",
        default="",
    )
    log_format: str = _setting(
        "LOG_FORMAT",
        "--log-format",
        "auto (JSON unless stderr is a terminal), json or console.",
        default="auto",
    )
    log_level: str = _setting(
        "LOG_LEVEL", "--log-level", "DEBUG, INFO, WARNING or ERROR.", default="INFO"
    )
    results_dir: Path | None = _setting(
        "DSP_RESULTS_DIR",
        "--results-dir",
        "Folder to write Tekton Task results into (small files; the Task sets it). Default: none.",
        default=None,
    )
    config: Path | None = _setting(
        "DSP_CONFIG",
        "--config",
        "Per-pipeline settings file (YAML). Default: dsp-runner.yaml in the pipelines folder, "
        "when present.",
        default=None,
    )
    # promote (runner/promote.py): the source server, its own credentials, the gate, the target
    promote_from_host: str = _setting(
        "DSP_PROMOTE_FROM_HOST",
        "--from-host",
        "promote: the DSP API URL to promote from (the source, e.g. dev); DSP_HOST is the "
        "destination. Required by promote.",
        default="",
    )
    promote_from_token_path: Path | None = _setting(
        "DSP_PROMOTE_FROM_TOKEN_PATH",
        "--from-token-path",
        "promote: file holding the source server's bearer token, re-read before every request. "
        "promote needs it or DSP_PROMOTE_FROM_TOKEN: the destination's token is never sent to "
        "the source.",
        default=None,
    )
    promote_from_token: str = _setting(
        "DSP_PROMOTE_FROM_TOKEN",
        None,
        "promote: the source server's bearer token itself. Environment only, never a flag. "
        "Wins over DSP_PROMOTE_FROM_TOKEN_PATH.",
        default="",
    )
    promote_from_ca_bundle: Path | None = _setting(
        "DSP_PROMOTE_FROM_CA_BUNDLE",
        "--from-ca-bundle",
        "promote: CA bundle (PEM) that verifies the source server's certificate (always "
        "verified). Default: the pod's service-ca.crt when present, else the system store.",
        default=None,
    )
    require_success: bool = _setting(
        "DSP_PROMOTE_REQUIRE_SUCCESS",
        "--require-success",
        "promote: only versions whose newest run on the source succeeded; the others are "
        "reported as skipped (exit code 1).",
        default=False,
    )
    target: str = _setting(
        "DSP_TARGET",
        "--target",
        "The environment this job ships to: selects `targets: <name>:` of dsp-runner.yaml, "
        "laid over its defaults and pipelines (deploy, plan, trigger and promote).",
        default="",
    )
    # prune (runner/retention.py): how many versions to keep, and for how long a run protects one
    keep_versions: int = _setting(
        "DSP_KEEP_VERSIONS",
        "--keep",
        "prune (and deploy, with retention set): keep this many newest dsp-runner versions of "
        "each pipeline; older unused ones are deleted. 0 keeps only the protected ones.",
        default=10,
    )
    keep_days: float = _setting(
        "DSP_KEEP_DAYS",
        "--keep-days",
        "prune: never delete a version with a run started within this many days (0: off).",
        default=7.0,
    )
    explicit: frozenset[str] = dataclasses.field(default=frozenset(), metadata={})

    def __repr__(self) -> str:
        """Never show the token, even in a test failure or a debug line."""
        shown = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for secret in ("token", "promote_from_token"):
            if shown[secret]:
                shown[secret] = "<hidden>"
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    """Settings given by a flag or variable for this job: they win over the repository file."""

    def given(self, name: str, file_value: Any) -> Any:
        """This job's flag or variable, else the repository file's value, else the default."""
        if name in self.explicit or file_value is None:
            return getattr(self, name)
        return file_value

    @property
    def config_path(self) -> Path:
        return self.config or self.pipelines_dir / "dsp-runner.yaml"

    def selects(self, *names: str) -> bool:
        """Whether --only picks a pipeline known by any of these names."""
        return not self.only or any(name in self.only for name in names)

    @property
    def verify_tls(self) -> bool:
        return not self.insecure_skip_tls_verify

    @classmethod
    def register_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add one flag per setting, its default taken from its environment variable."""
        for field in _declared():
            meta = field.metadata
            if not meta.get("flag"):
                continue
            env = meta["env"]
            help_text = f"{meta['help']} [env {env}]"
            if field.type == "bool":
                parser.add_argument(
                    meta["flag"],
                    dest=field.name,
                    action="store_const",
                    const="true",
                    default=os.environ.get(env),
                    help=help_text,
                )
            elif field.name == "run_args":
                parser.add_argument(
                    meta["flag"],
                    dest=field.name,
                    action="append",
                    metavar="PIPELINE.PARAM=VALUE",
                    help=help_text,
                )
            elif field.name == "only":
                parser.add_argument(
                    meta["flag"],
                    dest=field.name,
                    nargs="+",
                    metavar="NAME",
                    default=os.environ.get(env),
                    help=help_text,
                )
            else:
                parser.add_argument(
                    meta["flag"],
                    dest=field.name,
                    default=os.environ.get(env),
                    metavar=env,
                    help=help_text,
                )

    @classmethod
    def from_args(cls, ns: argparse.Namespace) -> Settings:
        """Parse and validate every value; raise one ConfigurationError listing all problems."""
        problems: list[str] = []
        values: dict[str, Any] = {}
        for field in _declared():
            meta = field.metadata
            raw = getattr(ns, field.name, None) if meta.get("flag") else None
            if raw is None:
                raw = os.environ.get(meta["env"])
            if field.name == "run_args":
                env_raw = os.environ.get(meta["env"])
                try:
                    values[field.name] = setting_values.parse_run_args(
                        env_raw, getattr(ns, field.name, None)
                    )
                except ValueError as exc:
                    problems.append(str(exc))
                continue
            if raw is None or raw == "":
                continue
            parse = setting_values.PARSERS[field.name]
            try:
                values[field.name] = parse(raw)
            except ValueError as exc:
                problems.append(f"{_name_of(meta)}: {exc}")
        settings = None
        if not problems:
            settings = cls(**values, explicit=frozenset(values) - {"run_args"})
            problems.extend(settings._cross_checks())
        if problems:
            raise ConfigurationError("; ".join(problems))
        assert settings is not None
        return _with_pod_defaults(settings)

    @classmethod
    def env_vars(cls) -> dict[str, str]:
        """Map of setting name to environment variable: the README and Tekton Task follow it."""
        return {f.name: f.metadata["env"] for f in _declared()}

    def _cross_checks(self) -> list[str]:
        """Problems that involve more than one setting."""
        problems = []
        if self.host:
            parts = urlsplit(self.host)
            if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
                problems.append(
                    "DSP_HOST: an http:// host would send the bearer token in clear (and DSP "
                    "redirects to https, dropping it); use https://"
                )
        if self.ca_bundle is not None and not os.access(self.ca_bundle, os.R_OK):
            problems.append(f"DSP_CA_BUNDLE: cannot read CA bundle {self.ca_bundle}")
        if self.ca_bundle is not None and self.insecure_skip_tls_verify:
            problems.append("DSP_CA_BUNDLE and DSP_INSECURE_SKIP_TLS_VERIFY contradict each other")
        return problems + self._promote_checks()

    def _promote_checks(self) -> list[str]:
        """The source's URL and CA file, by the destination's rules."""
        problems = []
        parts = urlsplit(self.promote_from_host)
        if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
            problems.append(
                "DSP_PROMOTE_FROM_HOST: an http:// host would send the bearer token in clear; "
                "use https://"
            )
        bundle = self.promote_from_ca_bundle
        if bundle is not None and not os.access(bundle, os.R_OK):
            problems.append(f"DSP_PROMOTE_FROM_CA_BUNDLE: cannot read CA bundle {bundle}")
        return problems


def _declared() -> list[dataclasses.Field]:
    """The fields that are settings (they have an environment variable)."""
    return [f for f in dataclasses.fields(Settings) if "env" in f.metadata]


def _name_of(meta: dict[str, Any]) -> str:
    return meta["env"]


def _with_pod_defaults(settings: Settings) -> Settings:
    """Use the pod's service CA when it is mounted and nothing else was said."""
    service_ca = POD_SA_DIR / "service-ca.crt"
    if settings.ca_bundle is None and settings.verify_tls and service_ca.is_file():
        settings = dataclasses.replace(settings, ca_bundle=service_ca)
    if settings.promote_from_ca_bundle is None and service_ca.is_file():
        settings = dataclasses.replace(settings, promote_from_ca_bundle=service_ca)
    return settings
