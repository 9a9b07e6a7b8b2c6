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

from runner import config, discovery, gitinfo, report
from runner.errors import ConfigurationError
from runner.settings import Settings

logger = structlog.get_logger()
EXPERIMENT_DESCRIPTION = "Runs started by dsp-runner"


def compile_pipelines(settings: Settings, *, stdout) -> int:
    """Offline: discover and compile into the output folder, for pull-request checks."""
    from runner.apply import Outcome

    started = time.monotonic()
    result, packages, selected = _compile(settings, twice=True)
    outcomes = [
        Outcome(
            pipeline=p.name,
            source=str(p.source),
            action="compiled",
            version_name=str(packages[p.slug]),
            error=_argument_error(p, options),
        )
        for p, options in selected
    ]
    return _finish(settings, "compile", outcomes, result.failures, started, stdout)


def plan(settings: Settings, *, stdout) -> int:
    """Compile and read the server; print what deploy would do; send no write request."""
    from runner.apply import Outcome

    started = time.monotonic()
    client = _client(settings)
    result, _, plans, origin = _plan(settings, client, twice=True)
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
            schedules=p.schedule_changes.describe(),
            error=p.error,
        )
        for p in plans
    ]
    return _finish(settings, "plan", outcomes, result.failures, started, stdout, origin)


def deploy(settings: Settings, *, stdout) -> int:
    """Compile, upload what changed as new versions, start the runs, wait if asked, report."""
    from runner import apply, reuse

    started = time.monotonic()
    client = _client(settings)
    records = reuse.Records(client)
    result, packages, plans, origin = _plan(settings, client, twice=False, records=records)
    outcomes, halted = apply.apply(
        plans,
        client=client,
        packages=packages,
        experiments=apply.Experiments(client, EXPERIMENT_DESCRIPTION),
        concurrency=settings.concurrency,
    )
    if halted is None:
        records.write(plans, concurrency=settings.concurrency)
        _wait(settings, client, [(o, p.options) for o, p in zip(outcomes, plans, strict=True)])
    code = _finish(settings, "deploy", outcomes, result.failures, started, stdout, origin)
    if halted is not None:
        raise halted
    return code


def trigger(settings: Settings, *, stdout) -> int:
    """Cron mode: run the deployed default versions, once per schedule slot (DSP_RUN_KEY).

    Nothing is compiled or uploaded: the server's default version is what the last deploy
    shipped. Only pipelines a dsp-runner deploy uploaded are considered.
    """
    from runner import apply, versions
    from runner.plan import RunPlan, existing_runs

    started = time.monotonic()
    client = _client(settings)
    repo = config.load(settings.config_path, required=settings.config is not None)
    key = settings.run_key or datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M")
    chosen = [
        p
        for p in client.list_pipelines()
        if p.default_version
        and versions.is_runner_version(p.default_version.description)
        and settings.selects(p.name, versions.slug_of(p.default_version.name))
    ]
    if not chosen:
        logger.warning("nothing_to_trigger", reason="no pipeline deployed by dsp-runner matches")
    experiments = apply.Experiments(client, EXPERIMENT_DESCRIPTION)
    planned = []
    for pipeline in chosen:
        version = pipeline.default_version
        options, _, _ = config.resolve(
            settings, repo, pipeline.name, versions.slug_of(version.name)
        )
        run = RunPlan(versions.run_name(version.name, key), options.arguments, options.experiment)
        outcome = apply.Outcome(
            pipeline=pipeline.name,
            source="",
            action="trigger",
            version_name=version.name,
            pipeline_id=pipeline.id,
            version_id=version.id,
        )
        planned.append((outcome, run, options))
    existing = existing_runs(client, [run for _, run, _ in planned])
    for outcome, run, _ in planned:
        log = apply.Recorder(pipeline=outcome.pipeline)
        with apply.contained(outcome, log):
            run = dataclasses.replace(run, existing_id=existing.get((run.experiment, run.name), ""))
            apply.start_run(client, experiments, outcome, run, log)
        log.emit()
    apply.settle_runs(client, experiments, [(outcome, run) for outcome, run, _ in planned])
    outcomes = [outcome for outcome, _, _ in planned]
    _wait(settings, client, [(outcome, options) for outcome, _, options in planned])
    return _finish(settings, "trigger", outcomes, [], started, stdout)


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


def _plan(settings: Settings, client, *, twice: bool, records=None):
    """`records` (deploy's, to write after) or a read-only set: see `reuse.Records`."""
    from runner import plan as planning
    from runner import reuse

    server = client.list_pipelines()
    records = records or reuse.Records(client)
    result, packages, selected = _compile(settings, twice=twice, server=server, records=records)
    origin = _origin(settings)
    plans = planning.make_plan(
        selected,
        client=client,
        origin=origin,
        server=server,
        folder=settings.pipelines_dir,
    )
    return result, packages, plans, origin


def _origin(settings: Settings) -> gitinfo.Origin:
    origin = gitinfo.origin(settings.pipelines_dir, settings.git_commit, settings.git_repo)
    if not origin.commit:
        logger.warning(
            "git_commit_unknown", reason="set DSP_GIT_COMMIT or run inside a git checkout"
        )
    return origin


def _wait(settings: Settings, client, pairs) -> None:
    """Poll the runs whose pipeline waits (DSP_WAIT or the file), and record how they ended."""
    from runner import wait

    waiting = [(o, opts) for o, opts in pairs if opts.wait and o.run_id and not o.error]
    if not waiting:
        return
    names = {o.run_id: (opts.experiment, o.run_name) for o, opts in waiting}

    def relocate(run_id: str):
        experiment, name = names[run_id]
        experiment_id = client.find_experiment(experiment)
        return client.find_runs(experiment_id, [name]).get(name) if experiment_id else None

    finished = wait.wait_for(
        client,
        {o.run_id: opts.wait_timeout for o, opts in waiting},
        interval=settings.poll_interval,
        relocate=relocate,
    )
    for outcome, _ in waiting:
        done = finished[outcome.run_id]
        outcome.run_id = done.run.id or outcome.run_id
        outcome.run_status, outcome.run_outcome = done.run.status, done.outcome
        outcome.run_duration_s, outcome.run_outputs = done.duration_s, done.run.outputs
        if settings.ui_host:
            outcome.run_url = f"{settings.ui_host}/#/runs/details/{outcome.run_id}"


def _finish(
    settings: Settings, command: str, outcomes, failures, started: float, stdout, origin=None
) -> int:
    """Report; `origin` is the plan's when there was one (git is asked once per job)."""
    origin = origin or _origin(settings)
    summary = report.Summary(
        command,
        settings.host,
        settings.experiment,
        origin.commit,
        origin.repo,
        outcomes,
        failures,
        time.monotonic() - started,
    )
    report.finish(summary, settings.output_dir, stdout, results_dir=settings.results_dir)
    return summary.exit_code


def _compile(settings: Settings, *, twice: bool = True, server=None, records=None):
    """Discover, compile (or reuse what the server holds) and resolve each pipeline's options;
    write each compiled YAML where the upload and reviewers find it."""
    from runner import harness, reuse, versions

    repo = config.load(settings.config_path, required=settings.config is not None)
    modules = discovery.discover(settings.pipelines_dir)
    logger.info("pipelines_discovered", folder=str(settings.pipelines_dir), modules=len(modules))
    folder = settings.pipelines_dir
    fingerprints = versions.module_fingerprints(folder, modules, settings.config_path)
    reused, to_compile = [], modules
    if server is not None and not repo.renames:
        reused, to_compile = reuse.split(modules, fingerprints, server, folder, records)
    if reused:
        logger.info(
            "compile_skipped",
            modules=len(modules) - len(to_compile),
            reason="the server's default versions were compiled from these exact files",
        )
    result = (
        harness.compile_all(to_compile, timeout=settings.compile_timeout, twice=twice)
        if to_compile
        else harness.CompileResult([], [])
    )
    compiled = reuse.mark(result.pipelines, {f.source for f in result.failures}, fingerprints)
    order = {module: index for index, module in enumerate(modules)}
    result = dataclasses.replace(
        result, pipelines=sorted(reused + compiled, key=lambda p: order.get(p.source, 0))
    )
    names = {p.name for p in result.pipelines} | {p.slug for p in result.pipelines}
    for unknown in repo.unknown_entries(names):
        logger.warning(
            "settings_entry_unused",
            file=str(repo.path),
            pipeline=unknown,
            reason="no discovered pipeline has this name or slug",
        )
    selected = []
    for pipeline in result.pipelines:
        if not settings.selects(pipeline.name, pipeline.slug):
            continue
        options, display_name, description = config.resolve(
            settings, repo, pipeline.name, pipeline.slug
        )
        pipeline = dataclasses.replace(
            pipeline,
            name=display_name or pipeline.name,
            description=description if description is not None else pipeline.description,
        )
        if not pipeline.deterministic:
            logger.warning(
                "pipeline_nondeterministic",
                pipeline=pipeline.name,
                file=str(pipeline.source),
                reason="two compiles gave different YAML (datetime.now()? random?): "
                "every deploy will upload a new version",
            )
        selected.append((pipeline, options))
    packages = _write_packages(
        [p for p, _ in selected if p.yaml_text], settings.output_dir / "pipelines"
    )
    logger.info("pipelines_compiled", pipelines=len(selected), failed=len(result.failures))
    return result, packages, selected


def _argument_error(pipeline, options) -> str:
    """compile checks run arguments too, so a pull request learns of a bad one before merge."""
    from runner.plan import arguments

    try:
        arguments(pipeline, options.arguments)
    except ValueError as exc:
        return str(exc)
    return ""


def _write_packages(pipelines, folder: Path) -> dict[str, Path]:
    """The upload's file name ends in .yaml: the server picks the format by file name. Each file
    is replaced whole, so a second job sharing the folder never uploads a half-written one."""
    folder.mkdir(parents=True, exist_ok=True)
    packages = {}
    for pipeline in pipelines:
        path = folder / f"{pipeline.slug}.yaml"
        report.write_atomically(path, pipeline.yaml_text)
        packages[pipeline.slug] = path
    return packages
