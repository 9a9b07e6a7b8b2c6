"""The subcommands: each wires the stages discover → compile → plan → apply → report.

Each returns an exit code. kfp is imported inside the commands only, so `--help` and
configuration errors stay fast.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from pathlib import Path

import structlog

from runner import discovery, gitinfo, report
from runner.errors import ConfigurationError
from runner.settings import Settings

logger = structlog.get_logger()
EXPERIMENT_DESCRIPTION = "Runs started by dsp-runner"


def compile_pipelines(settings: Settings, *, stdout) -> int:
    """Offline: discover and compile into the output folder, for pull-request checks."""
    from runner.apply import Outcome

    started = time.monotonic()
    result, packages = _compile(settings)
    outcomes = [
        Outcome(
            pipeline=p.name,
            source=str(p.source),
            action="compiled",
            version_name=str(packages[p.slug]),
        )
        for p in result.pipelines
    ]
    origin = gitinfo.origin(settings.pipelines_dir, settings.git_commit, settings.git_repo)
    summary = report.Summary(
        "compile",
        "",
        "",
        origin.commit,
        origin.repo,
        outcomes,
        result.failures,
        time.monotonic() - started,
    )
    report.finish(summary, settings.output_dir, stdout)
    return summary.exit_code


def plan(settings: Settings, *, stdout) -> int:
    """Compile and read the server; print what deploy would do; write nothing to the server."""
    from runner.apply import Outcome

    started = time.monotonic()
    client = _client(settings)
    result, _, origin, plans = _plan(settings, client)
    outcomes = [
        Outcome(
            pipeline=p.pipeline.name,
            source=str(p.pipeline.source),
            action=p.action,
            version_name=p.version_name,
            pipeline_id=p.server_pipeline.id if p.server_pipeline else "",
            version_id=p.existing_version.id if p.existing_version else "",
            run_name=p.run.name if p.run else "",
            run_id=p.run.existing_id if p.run else "",
            error=p.error,
        )
        for p in plans
    ]
    summary = report.Summary(
        "plan",
        settings.host,
        settings.experiment,
        origin.commit,
        origin.repo,
        outcomes,
        result.failures,
        time.monotonic() - started,
    )
    report.finish(summary, settings.output_dir, stdout)
    return summary.exit_code


def deploy(settings: Settings, *, stdout) -> int:
    """Compile, upload what changed as new versions, start the runs, wait if asked, report."""
    from runner import apply

    started = time.monotonic()
    client = _client(settings)
    result, packages, origin, plans = _plan(settings, client)
    experiment = apply.Experiment(client, settings.experiment, EXPERIMENT_DESCRIPTION)
    outcomes = apply.apply(
        plans,
        client=client,
        packages=packages,
        experiment=experiment,
        concurrency=settings.concurrency,
    )
    _wait(settings, client, outcomes)
    summary = report.Summary(
        "deploy",
        settings.host,
        settings.experiment,
        origin.commit,
        origin.repo,
        outcomes,
        result.failures,
        time.monotonic() - started,
    )
    report.finish(summary, settings.output_dir, stdout)
    return summary.exit_code


def trigger(settings: Settings, *, stdout) -> int:
    """Cron mode: run the deployed default versions, once per schedule slot (DSP_RUN_KEY).

    Nothing is compiled or uploaded: the server's default version is what the last deploy
    shipped. Only pipelines a dsp-runner deploy uploaded are considered.
    """
    from runner import apply, versions
    from runner import plan as planning

    started = time.monotonic()
    client = _client(settings)
    key = settings.run_key or datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M")
    chosen = [
        p
        for p in client.list_pipelines()
        if p.default_version
        and versions.is_runner_version(p.default_version.description)
        and settings.selects(p.name, versions.slug_of(p.default_version.name))
    ]
    experiment = apply.Experiment(client, settings.experiment, EXPERIMENT_DESCRIPTION)
    names = {p.id: versions.run_name(p.default_version.name, key) for p in chosen}
    existing = client.find_runs(experiment.id(), names.values()) if chosen else {}
    outcomes = []
    for pipeline in chosen:
        version = pipeline.default_version
        outcome = apply.Outcome(
            pipeline=pipeline.name,
            source="",
            action="trigger",
            version_name=version.name,
            pipeline_id=pipeline.id,
            version_id=version.id,
        )
        run = planning.RunPlan(
            names[pipeline.id],
            _overrides(settings, pipeline.name, version),
            existing[names[pipeline.id]].id if names[pipeline.id] in existing else "",
        )
        log = apply.Recorder(pipeline=pipeline.name)
        with apply.contained(outcome, log):
            apply.start_run(client, experiment, outcome, run, log)
        log.emit()
        outcomes.append(outcome)
    if not chosen:
        logger.warning("nothing_to_trigger", reason="no pipeline deployed by dsp-runner matches")
    _wait(settings, client, outcomes)
    summary = report.Summary(
        "trigger",
        settings.host,
        settings.experiment,
        "",
        "",
        outcomes,
        [],
        time.monotonic() - started,
    )
    report.finish(summary, settings.output_dir, stdout)
    return summary.exit_code


def _overrides(settings: Settings, name: str, version) -> dict[str, str]:
    from runner import versions

    return {
        **settings.run_args.get(versions.slug_of(version.name), {}),
        **settings.run_args.get(name, {}),
    }


def _client(settings: Settings):
    """Check everything a server command needs, then connect (one healthz call, retried)."""
    from runner import auth
    from runner.client import DSPClient

    if not settings.host:
        raise ConfigurationError(
            "DSP_HOST: not set; give the DSP API URL (https://ds-pipeline-<dspa>.<namespace>"
            ".svc:8443 or the route), or use `make run` for the local stand-in"
        )
    credentials = auth.credentials(settings.token, settings.token_path)
    if not settings.verify_tls:
        logger.warning(
            "tls_verification_disabled",
            setting="DSP_INSECURE_SKIP_TLS_VERIFY",
            reason="the server's identity is not checked; the token may leak",
        )
    return DSPClient(
        host=settings.host,
        credentials=credentials,
        ca_bundle=settings.ca_bundle,
        verify_tls=settings.verify_tls,
        request_timeout=settings.request_timeout,
        retries=settings.retries,
        retry_max_wait=settings.retry_max_wait,
    )


def _plan(settings: Settings, client):
    from runner import plan as planning

    result, packages = _compile(settings)
    origin = gitinfo.origin(settings.pipelines_dir, settings.git_commit, settings.git_repo)
    if not origin.commit:
        logger.warning(
            "git_commit_unknown", reason="set DSP_GIT_COMMIT or run inside a git checkout"
        )
    plans = planning.make_plan(
        result.pipelines,
        client=client,
        origin=origin,
        experiment=settings.experiment,
        run_policy=settings.run_policy,
        overrides=settings.run_args,
    )
    return result, packages, origin, plans


def _wait(settings: Settings, client, outcomes) -> None:
    """With DSP_WAIT, poll the runs this job started or found, and record how they ended."""
    from runner import wait

    if not settings.wait:
        return
    waiting = [o for o in outcomes if o.run_id and not o.error]
    finished = wait.wait_for(
        client,
        [o.run_id for o in waiting],
        timeout=settings.wait_timeout,
        interval=settings.poll_interval,
    )
    for outcome in waiting:
        done = finished[outcome.run_id]
        outcome.run_status, outcome.run_outcome = done.run.status, done.outcome
        outcome.run_duration_s, outcome.run_outputs = done.duration_s, done.run.outputs
        if settings.ui_host:
            outcome.run_url = f"{settings.ui_host}/#/runs/details/{outcome.run_id}"


def _compile(settings: Settings):
    """Discover and compile, writing each pipeline's YAML where uploads and reviewers find it."""
    from runner import compiler

    modules = discovery.discover(settings.pipelines_dir)
    logger.info("pipelines_discovered", folder=str(settings.pipelines_dir), modules=len(modules))
    result = compiler.compile_all(modules, timeout=settings.compile_timeout)
    if settings.only:
        result = dataclasses.replace(
            result, pipelines=[p for p in result.pipelines if settings.selects(p.name, p.slug)]
        )
    for pipeline in result.pipelines:
        if not pipeline.deterministic:
            logger.warning(
                "pipeline_nondeterministic",
                pipeline=pipeline.name,
                file=str(pipeline.source),
                reason="two compiles gave different YAML (datetime.now()? random?): "
                "every deploy will upload a new version",
            )
    packages = _write_packages(result.pipelines, settings.output_dir / "pipelines")
    logger.info("pipelines_compiled", pipelines=len(result.pipelines), failed=len(result.failures))
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
