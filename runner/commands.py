"""The subcommands: each wires the stages discover → compile → plan → apply → report.

Each returns an exit code, and each writes its summary whichever way it ends (`_Job`), so the
summary's exit code is always the process's. Every check that needs no server (the host, the
token, the pipelines folder, the settings file) runs before kfp is imported: configuration
errors stay fast and never pay for kfp.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import time
from pathlib import Path

import structlog

from runner import auth, config, discovery, gitinfo, report, retention, stopping
from runner.errors import AuthError, ConfigurationError, RunnerError, TLSError, exit_code_of
from runner.settings import Settings

logger = structlog.get_logger()
EXPERIMENT_DESCRIPTION = "Runs started by dsp-runner"


def compile_pipelines(settings: Settings, *, stdout) -> int:
    """Offline: discover and compile into the output folder, for pull-request checks."""
    job = _Job(settings, "compile", stdout)
    with job.reporting():
        inputs = _inputs(settings)
        from runner.apply import Outcome

        result, packages, selected = _compile(settings, inputs, twice=True)
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
        return job.finish(outcomes, result.failures)


def plan(settings: Settings, *, stdout) -> int:
    """Compile and read the server; print what deploy would do; send no write request."""
    job = _Job(settings, "plan", stdout)
    with job.reporting():
        credentials = _credentials(settings)
        inputs = _inputs(settings)
        from runner.apply import Outcome

        client = _connect(settings, credentials)
        result, _, plans, job.origin = _plan(settings, client, inputs, twice=True)
        job.pruned = retention.preview(settings, client, inputs[0], plans)
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
        return job.finish(outcomes, result.failures)


def deploy(settings: Settings, *, stdout) -> int:
    """Compile, upload what changed as new versions, start the runs, wait if asked, report."""
    job = _Job(settings, "deploy", stdout)
    with job.reporting():
        credentials = _credentials(settings)
        inputs = _inputs(settings)
        from runner import apply, reuse

        client = _connect(settings, credentials)
        records = reuse.Records(client)
        result, packages, plans, job.origin = _plan(
            settings, client, inputs, twice=False, records=records
        )
        outcomes, halted = apply.apply(
            plans,
            client=client,
            packages=packages,
            experiments=apply.Experiments(client, EXPERIMENT_DESCRIPTION),
            concurrency=settings.concurrency,
        )
        if halted is None:
            records.write(plans, concurrency=settings.concurrency)
            pairs = [(o, p.options) for o, p in zip(outcomes, plans, strict=True)]
            halted = _wait(settings, client, pairs)
        if halted is None and not stopping.requested():
            job.pruned, halted = retention.after_deploy(
                settings, client, inputs[0], plans, outcomes
            )
        return job.finish(outcomes, result.failures, halted)


def trigger(settings: Settings, *, stdout) -> int:
    """Cron mode: run the deployed default versions, once per schedule slot (DSP_RUN_KEY).

    Nothing is compiled or uploaded: the server's default version is what the last deploy
    shipped. Only pipelines a dsp-runner deploy uploaded are considered. Like deploy, it starts
    nothing after SIGTERM or a refused token, and still reports.
    """
    job = _Job(settings, "trigger", stdout)
    with job.reporting():
        credentials = _credentials(settings)
        repo = config.load(
            settings.config_path, required=settings.config is not None, target=settings.target
        )
        from runner import apply
        from runner.plan import existing_runs

        client = _connect(settings, credentials)
        planned = _trigger_plan(settings, client, repo)
        existing = existing_runs(client, [run for _, run, _ in planned])
        experiments = apply.Experiments(client, EXPERIMENT_DESCRIPTION)
        halted = _start_triggered(client, experiments, planned, existing)
        outcomes = [outcome for outcome, _, _ in planned]
        if halted is None:
            started = [(outcome, run) for outcome, run, _ in planned]
            apply.settle_runs(client, experiments, started)
            halted = _wait(settings, client, [(outcome, opts) for outcome, _, opts in planned])
        return job.finish(outcomes, [], halted)


def shipped_pipelines(settings: Settings, server) -> list:
    """The server's pipelines whose default version a dsp-runner deploy uploaded (content
    named, its description marked), narrowed by --only: what trigger and promote act on;
    pipelines made by hand are left alone."""
    from runner import versions

    return [
        p
        for p in server.list_pipelines()
        if p.default_version
        and versions.is_runner_version(p.default_version.description)
        and settings.selects(p.name, versions.slug_of(p.default_version.name))
    ]


def _trigger_plan(settings: Settings, client, repo):
    """(outcome, run, options) for each default version a dsp-runner deploy shipped."""
    from runner import apply, versions
    from runner.plan import RunPlan

    key = settings.run_key or datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M")
    chosen = shipped_pipelines(settings, client)
    if not chosen:
        logger.warning("nothing_to_trigger", reason="no pipeline deployed by dsp-runner matches")
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
    return planned


def _start_triggered(client, experiments, planned, existing) -> RunnerError | None:
    """Start each planned run in turn; after SIGTERM or a whole-job error (token refused, TLS)
    the rest are reported as not started. Returns that error, if one came."""
    from runner import apply

    halted = None
    for outcome, run, _ in planned:
        log = apply.Recorder(pipeline=outcome.pipeline)
        reason = _stop_reason(halted)
        if reason:
            outcome.error = f"not started: {reason}"
            log.warning("pipeline_skipped", reason=outcome.error)
        else:
            run = dataclasses.replace(run, existing_id=existing.get((run.experiment, run.name), ""))
            try:
                with apply.contained(outcome, log):
                    apply.start_run(client, experiments, outcome, run, log)
            except (AuthError, TLSError, ConfigurationError) as exc:
                outcome.error, halted = str(exc), exc
                log.error("job_halted", error=str(exc))
        log.emit()
    return halted


def _stop_reason(halted) -> str:
    """Why nothing new may start: a stop request, or a whole-job error met earlier."""
    if stopping.requested():
        return "the job was asked to stop (SIGTERM)"
    return f"the job halted: {halted}" if halted else ""


class _Job:
    """One command's report, written exactly once whichever way the command ends (done, halted
    by a whole-job error, a configuration error, Ctrl-C, a bug), so `summary.json` and the
    Tekton results always carry the exit code the process ends with."""

    def __init__(self, settings: Settings, command: str, stdout):
        self.settings, self.command, self.stdout = settings, command, stdout
        self.started = time.monotonic()
        self.origin: gitinfo.Origin | None = None
        self.pruned: list = []
        self._reported = False

    @contextlib.contextmanager
    def reporting(self):
        """Report an error that ends the command before `finish` did, then let it go on to the
        command line, which prints it and exits with the code the summary records."""
        try:
            yield self
        except (Exception, KeyboardInterrupt) as exc:
            if not self._reported:
                self._record(exc)
            raise

    def _record(self, error: BaseException) -> None:
        """Only the files: the command line prints the one error line. A summary that cannot be
        written must not hide the error that ended the job."""
        try:
            self._report([], [], error, announce=False)
        except OSError as exc:
            logger.warning(
                "summary_not_written", folder=str(self.settings.output_dir), error=str(exc)
            )

    def finish(self, outcomes, failures, halted=None) -> int:
        """Report the outcomes; a whole-job error that halted the work is raised after."""
        code = self._report(outcomes, failures, halted)
        if halted is not None:
            raise halted
        return code

    def _report(self, outcomes, failures, error: BaseException | None, announce=True) -> int:
        self._reported = True
        origin = self.origin or _origin(self.settings)
        summary = report.Summary(
            self.command,
            self.settings.host,
            self.settings.experiment,
            origin.commit,
            origin.repo,
            outcomes,
            failures,
            time.monotonic() - self.started,
            error=_error_text(error),
            error_exit_code=exit_code_of(error) if error is not None else 0,
            pruned=self.pruned,
        )
        if announce:
            report.finish(summary, self.settings.output_dir, self.stdout, self.settings.results_dir)
        else:
            report.record(summary, self.settings.output_dir, self.settings.results_dir)
        return summary.exit_code


def _error_text(error: BaseException | None) -> str:
    """The expected errors' own line; for a bug only its type (the traceback is in the log)."""
    if error is None:
        return ""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if isinstance(error, RunnerError):
        return f"{type(error).__name__}: {error}"
    return f"internal error: {type(error).__name__} (traceback in the log)"


def _credentials(settings: Settings):
    """The host and the token, checked before anything else (and before kfp is imported)."""
    if not settings.host:
        raise ConfigurationError(
            "DSP_HOST: not set; give the DSP API URL (https://ds-pipeline-<dspa>.<namespace>"
            ".svc:8443 or the route), or use `make run` for the local stand-in"
        )
    return auth.credentials(settings.token, settings.token_path)


def _inputs(settings: Settings) -> tuple[config.RepoConfig, list[Path]]:
    """The settings file and the pipeline modules: checked before kfp is imported."""
    repo = config.load(
        settings.config_path, required=settings.config is not None, target=settings.target
    )
    modules = discovery.discover(settings.pipelines_dir)
    logger.info("pipelines_discovered", folder=str(settings.pipelines_dir), modules=len(modules))
    return repo, modules


def _connect(settings: Settings, credentials):
    """Connect (one healthz call, retried): the first moment kfp is needed."""
    from runner import flavour

    if not settings.verify_tls:
        logger.warning(
            "tls_verification_disabled",
            setting="DSP_INSECURE_SKIP_TLS_VERIFY",
            reason="the server's identity is not checked; the token may leak",
        )
    return flavour.client().DSPClient(
        host=settings.host,
        credentials=credentials,
        ca_bundle=settings.ca_bundle,
        verify_tls=settings.verify_tls,
        request_timeout=settings.request_timeout,
        retries=settings.retries,
        retry_max_wait=settings.retry_max_wait,
        concurrency=settings.concurrency,
    )


def _plan(settings: Settings, client, inputs, *, twice: bool, records=None):
    """`records` (deploy's, to write after) or a read-only set: see `reuse.Records`."""
    from runner import plan as planning
    from runner import reuse

    server = client.list_pipelines()
    records = records or reuse.Records(client)
    result, packages, selected = _compile(
        settings, inputs, twice=twice, server=server, records=records
    )
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


def _wait(settings: Settings, client, pairs) -> RunnerError | None:
    """Poll the runs whose pipeline waits (DSP_WAIT or the file), and record how they ended.
    Returns the whole-job error (token refused, TLS) that ended the wait, if one did: the
    outcomes are reported with it."""
    from runner import wait

    waiting = [(o, opts) for o, opts in pairs if opts.wait and o.run_id and not o.error]
    if not waiting:
        return None
    names = {o.run_id: (opts.experiment, o.run_name) for o, opts in waiting}

    def relocate(run_id: str):
        experiment, name = names[run_id]
        experiment_id = client.find_experiment(experiment)
        return client.find_runs(experiment_id, [name]).get(name) if experiment_id else None

    try:
        finished = wait.wait_for(
            client,
            {o.run_id: opts.wait_timeout for o, opts in waiting},
            interval=settings.poll_interval,
            relocate=relocate,
            names={o.run_id: o.run_name for o, _ in waiting},
        )
    except (AuthError, TLSError, ConfigurationError) as exc:
        logger.error("job_halted", step="wait for runs", error=str(exc))
        return exc
    for outcome, _ in waiting:
        done = finished[outcome.run_id]
        outcome.run_id = done.run.id or outcome.run_id
        outcome.run_status, outcome.run_outcome = done.run.status, done.outcome
        outcome.run_duration_s, outcome.run_outputs = done.duration_s, done.run.outputs
        outcome.error = done.error
        if settings.ui_host:
            outcome.run_url = f"{settings.ui_host}/#/runs/details/{outcome.run_id}"
    return None


def _compile(settings: Settings, inputs, *, twice: bool = True, server=None, records=None):
    """Compile (or reuse what the server holds) and resolve each pipeline's options; write each
    compiled YAML where the upload and reviewers find it."""
    from runner import harness, reuse, versions

    repo, modules = inputs
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
