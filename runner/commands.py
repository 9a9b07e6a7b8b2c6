"""The subcommands: each wires the stages discover → compile → plan → apply → report.

Each returns an exit code. kfp is imported here only, so `--help` and configuration errors stay
fast.
"""

from __future__ import annotations

import time
from pathlib import Path

import structlog

from runner import discovery, gitinfo, report
from runner.errors import ConfigurationError
from runner.settings import Settings

logger = structlog.get_logger()


def compile_pipelines(settings: Settings, *, stdout) -> int:
    """Offline: discover and compile into the output folder, for pull-request checks."""
    from runner.apply import Outcome

    started = time.monotonic()
    result, packages = _compile(settings)
    outcomes = [Outcome(pipeline=p.name, source=str(p.source), action="compiled",
                        version_name=str(packages[p.slug])) for p in result.pipelines]
    origin = gitinfo.origin(settings.pipelines_dir, settings.git_commit, settings.git_repo)
    summary = report.Summary("compile", "", "", origin.commit, origin.repo, outcomes,
                             result.failures, time.monotonic() - started)
    report.finish(summary, settings.output_dir, stdout)
    return summary.exit_code


def deploy(settings: Settings, *, stdout) -> int:
    """Compile, upload what changed as new versions, start the runs, report."""
    from runner import apply, auth, plan
    from runner.client import DSPClient

    started = time.monotonic()
    if not settings.host:
        raise ConfigurationError(
            "DSP_HOST: not set; give the DSP API URL (https://ds-pipeline-<dspa>.<namespace>"
            ".svc:8443 or the route), or use `make run` for the local stand-in")
    credentials = auth.credentials(settings.token, settings.token_path)
    if not settings.verify_tls:
        logger.warning("tls_verification_disabled", setting="DSP_INSECURE_SKIP_TLS_VERIFY",
                       reason="the server's identity is not checked; the token may leak")
    result, packages = _compile(settings)
    origin = gitinfo.origin(settings.pipelines_dir, settings.git_commit, settings.git_repo)
    if not origin.commit:
        logger.warning("git_commit_unknown",
                       reason="set DSP_GIT_COMMIT or run inside a git checkout")
    client = DSPClient(host=settings.host, credentials=credentials,
                       ca_bundle=settings.ca_bundle, verify_tls=settings.verify_tls,
                       request_timeout=settings.request_timeout, retries=settings.retries,
                       retry_max_wait=settings.retry_max_wait)
    plans = plan.make_plan(result.pipelines, client=client, origin=origin,
                           experiment=settings.experiment, run_policy=settings.run_policy,
                           overrides=settings.run_args)
    outcomes = apply.apply(plans, client=client, packages=packages,
                           experiment=settings.experiment)
    summary = report.Summary("deploy", settings.host, settings.experiment, origin.commit,
                             origin.repo, outcomes, result.failures, time.monotonic() - started)
    report.finish(summary, settings.output_dir, stdout)
    return summary.exit_code


def _compile(settings: Settings):
    """Discover and compile, writing each pipeline's YAML where uploads and reviewers find it."""
    from runner import compiler

    modules = discovery.discover(settings.pipelines_dir)
    logger.info("pipelines_discovered", folder=str(settings.pipelines_dir), modules=len(modules))
    result = compiler.compile_all(modules, timeout=settings.compile_timeout)
    for pipeline in result.pipelines:
        if not pipeline.deterministic:
            logger.warning("pipeline_nondeterministic", pipeline=pipeline.name,
                           file=str(pipeline.source),
                           reason="two compiles gave different YAML (datetime.now()? random?): "
                                  "every deploy will upload a new version")
    packages = _write_packages(result.pipelines, settings.output_dir / "pipelines")
    logger.info("pipelines_compiled", pipelines=len(result.pipelines),
                failed=len(result.failures))
    return result, packages


def _write_packages(pipelines, folder: Path) -> dict[str, Path]:
    """The upload's file name ends in .yaml: the server picks the format by file name."""
    folder.mkdir(parents=True, exist_ok=True)
    packages = {}
    for pipeline in pipelines:
        path = folder / f"{pipeline.slug}.yaml"
        path.write_text(pipeline.yaml_text)
        packages[pipeline.slug] = path
    return packages
