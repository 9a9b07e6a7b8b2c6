"""promote: ship exactly what ran in one environment (the source) to another (DSP_HOST).

For each selected pipeline a dsp-runner deploy shipped to the source, the source's default
version (DSP 2.x: its newest) is read back as the file the source server keeps
(`Server.pipeline_file`) and uploaded to the destination under the same content name and the
same description (commit, file, sha256, module fingerprint). Nothing is recompiled: prod gets
the bytes dev ran, and a later deploy of the same commit on the destination finds its version
unchanged. Runs and schedules then come from the destination's own settings: dsp-runner.yaml
with the DSP_TARGET overlay (`runner.targets`), as deploy there reads it.

A version name the destination holds with other content is refused, never overwritten; a
second promote finds every version in place and uploads nothing. Every call goes through the
shared retry policy, whose retried uploads adopt what a lost answer created.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import structlog

from runner import auth, config, gitinfo, versions
from runner.commands import (
    EXPERIMENT_DESCRIPTION,
    _connect,
    _credentials,
    _Job,
    _stop_reason,
    shipped_pipelines,
)
from runner.commands import _wait as wait_for_runs
from runner.errors import (
    AuthError,
    ConfigurationError,
    ConflictError,
    NotFoundError,
    RunnerError,
    TLSError,
)
from runner.server import SUCCESS, Server, ServerPipeline, ServerVersion
from runner.settings import Settings

logger = structlog.get_logger()
SKIPPED = "skipped"


def promote(settings: Settings, *, stdout) -> int:
    """Promote the source's default versions to DSP_HOST, then run and schedule them there."""
    job = _Job(settings, "promote", stdout)
    with job.reporting():
        source_settings, source_credentials = _source(settings)
        credentials = _credentials(settings)
        repo = config.load(
            settings.config_path, required=settings.config is not None, target=settings.target
        )
        job.origin = gitinfo.Origin(settings.git_commit, settings.git_repo)
        from runner import apply

        source = _connect(source_settings, source_credentials)
        destination = _connect(settings, credentials)
        chosen = _chosen(settings, source)
        experiments = apply.Experiments(destination, EXPERIMENT_DESCRIPTION)
        context = _Context(settings, repo, source, destination, experiments)
        planned, halted = [], None
        for pipeline in chosen:
            item, error = _promote_one(context, pipeline, halted)
            planned.append(item)
            halted = halted or error
        outcomes = [outcome for outcome, _, _ in planned]
        if halted is None:
            apply.settle_runs(destination, experiments, [(o, run) for o, run, _ in planned if run])
            waiting = [(o, opts) for o, _, opts in planned if opts is not None]
            halted = wait_for_runs(settings, destination, waiting)
        return job.finish(outcomes, [], halted)


def _source(settings: Settings):
    """The source server as settings of its own (host, CA, always verified) and its token:
    checked before anything is sent, and never the destination's token."""
    if not settings.promote_from_host:
        raise ConfigurationError(
            "DSP_PROMOTE_FROM_HOST: not set; promote needs the DSP API URL to promote from "
            "(--from-host), DSP_HOST being the destination"
        )
    if settings.promote_from_host == settings.host:
        raise ConfigurationError(
            f"DSP_PROMOTE_FROM_HOST and DSP_HOST are both {settings.host}: promote copies from "
            "one server to another"
        )
    if not settings.promote_from_token and settings.promote_from_token_path is None:
        raise ConfigurationError(
            "DSP_PROMOTE_FROM_TOKEN_PATH: not set; promote needs the source server's token "
            "(a file, or DSP_PROMOTE_FROM_TOKEN), the destination's is never sent to it"
        )
    credentials = auth.credentials(
        settings.promote_from_token,
        settings.promote_from_token_path or Path(),
        path_setting="DSP_PROMOTE_FROM_TOKEN_PATH",
    )
    source = dataclasses.replace(
        settings,
        host=settings.promote_from_host,
        ca_bundle=settings.promote_from_ca_bundle,
        insecure_skip_tls_verify=False,
    )
    return source, credentials


def _chosen(settings: Settings, source: Server) -> list[ServerPipeline]:
    """What `shipped_pipelines` finds on the source, or a warning that nothing matches."""
    chosen = shipped_pipelines(settings, source)
    if not chosen:
        logger.warning(
            "nothing_to_promote",
            source=source.host,
            reason="no pipeline deployed by dsp-runner on the source matches",
        )
    return chosen


@dataclasses.dataclass(frozen=True)
class _Context:
    settings: Settings
    repo: config.RepoConfig
    source: Server
    destination: Server
    experiments: object


def _promote_one(context: _Context, pipeline: ServerPipeline, halted):
    """((outcome, run, options), whole-job error): one pipeline's failure stays its own; a
    refused token or TLS failure halts the rest, which are reported as not started."""
    from runner import apply

    version = pipeline.default_version
    outcome = apply.Outcome(
        pipeline=pipeline.name,
        source=context.source.host,
        action="promote",
        version_name=version.name,
    )
    log = apply.Recorder(pipeline=pipeline.name, version=version.name)
    options, run, error = None, None, None
    reason = _stop_reason(halted)
    if reason:
        outcome.error = f"not started: {reason}"
        log.warning("pipeline_skipped", reason=outcome.error)
    else:
        try:
            with apply.contained(outcome, log):
                options, run = _carry_out(context, pipeline, outcome, log)
        except (AuthError, TLSError, ConfigurationError) as exc:
            outcome.error, error = str(exc), exc
            log.error("job_halted", error=str(exc))
    log.emit()
    return (outcome, run, options), error


def _carry_out(context: _Context, pipeline: ServerPipeline, outcome, log):
    """Gate, copy, run, schedule; returns (options, run plan) for settling and waiting."""
    from runner import apply
    from runner.plan import RunPlan, existing_runs

    version = pipeline.default_version
    slug = versions.slug_of(version.name)
    if context.settings.require_success:
        why = _not_proven(context.source, pipeline, version)
        if why:
            outcome.action, outcome.error = SKIPPED, why
            log.warning("promotion_skipped", reason=why)
            return None, None
    options, _, description = config.resolve(context.settings, context.repo, pipeline.name, slug)
    params = _arguments(pipeline.name, version, options.arguments)
    _ship(context, pipeline, description or "", outcome, log)
    run = None
    if options.run_policy != "never":
        commit = versions.short_commit(versions.commit_of(version.description))
        run = RunPlan(versions.run_name(version.name, commit), params, options.experiment)
        found = existing_runs(context.destination, [run])
        run = dataclasses.replace(run, existing_id=found.get((run.experiment, run.name), ""))
        apply.start_run(context.destination, context.experiments, outcome, run, log)
    _schedule(context, slug, version.name, params, options, outcome, log)
    return options, run


def _not_proven(source: Server, pipeline: ServerPipeline, version: ServerVersion) -> str:
    """Why --require-success holds this version back ("" when its newest run succeeded)."""
    run = source.newest_run_of(pipeline.id, version.id)
    if run is None:
        return f"skipped: version {version.name!r} has no run on {source.host} (--require-success)"
    if run.outcome != SUCCESS:
        return (
            f"skipped: the newest run of version {version.name!r} on {source.host}, "
            f"{run.name!r}, is {run.status or 'not finished'}, not succeeded (--require-success)"
        )
    return ""


def _arguments(name: str, version: ServerVersion, given: dict[str, str]) -> dict[str, str]:
    """The version's own defaults with the destination's arguments on top; an argument the
    version has no parameter for is this pipeline's error, before anything is uploaded."""
    known = dict(version.parameters)
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise RunnerError(
            f"unknown run argument(s) {', '.join(unknown)} for pipeline {name!r} (version "
            f"{version.name}); its parameters are {', '.join(sorted(known)) or 'none'}: fix "
            "the destination's dsp-runner.yaml (targets) or DSP_RUN_ARGS"
        )
    return {**{k: v for k, v in known.items() if v is not None}, **given}


def _ship(context: _Context, pipeline: ServerPipeline, description: str, outcome, log) -> None:
    """The version on the destination: found (same content) or uploaded, and the default."""
    from runner import plan as planning

    version, destination = pipeline.default_version, context.destination
    text = context.source.pipeline_file(pipeline.id, version.id)
    there = destination.find_pipeline(pipeline.name)
    existing = _existing(destination, there, version.name)
    if existing is not None:
        _same_content(context, pipeline, text, existing)
        outcome.pipeline_id, outcome.version_id = there.id, existing.id
        if there.default_version and there.default_version.id == existing.id:
            outcome.action = planning.UNCHANGED
            log.info("pipeline_unchanged", reason="the destination already runs this version")
            return
        outcome.action = planning.SET_DEFAULT
        made = destination.set_default_version(there.id, existing.id)
        log.info("pipeline_version_reused", version_id=existing.id, made_default=made)
        return
    with tempfile.TemporaryDirectory(prefix="dsp-runner-promote-") as folder:
        path = Path(folder) / f"{versions.slug_of(version.name)}.yaml"
        path.write_text(text)
        if there is None:
            there = destination.upload_pipeline(path, pipeline.name, description)
            outcome.action = planning.CREATE
            log.info("pipeline_created", pipeline_id=there.id)
        else:
            outcome.action = planning.NEW_VERSION
        uploaded = destination.upload_version(
            path, there.id, version.name, version.description, pipeline_name=pipeline.name
        )
    outcome.pipeline_id, outcome.version_id = there.id, uploaded.id
    log.info("pipeline_version_promoted", version_id=uploaded.id, source_version_id=version.id)
    _make_default(destination, pipeline.name, uploaded)


def _existing(destination: Server, there: ServerPipeline | None, name: str):
    if there is None:
        return None
    try:
        return destination.find_version(there.id, name)
    except NotFoundError:  # the pipeline was deleted since it was found
        return None


def _same_content(context: _Context, pipeline: ServerPipeline, text: str, existing) -> None:
    """A content name on both servers must name the same content: compared as data (what the
    servers parse), and refused otherwise, naming both sides."""
    theirs = context.destination.pipeline_file(existing.pipeline_id, existing.id)
    if versions.load_yaml_documents(theirs) != versions.load_yaml_documents(text):
        raise ConflictError(
            f"pipeline {pipeline.name!r}: version {existing.name!r} on {context.destination.host} "
            f"holds other content than version {existing.name!r} on {context.source.host}; a "
            "version is never overwritten: delete the destination's version if it is wrong, "
            "or deploy a new version to the source and promote that"
        )


def _make_default(destination: Server, name: str, uploaded: ServerVersion) -> None:
    """DSP 1.x makes an upload the default unless auto-update is off; look, and set it then.
    (DSP 2.x: the upload is the newest version, which is what stands for the default.)"""
    found = destination.find_pipeline(name)
    default = found.default_version if found else None
    if found and (default is None or default.id != uploaded.id):
        destination.set_default_version(found.id, uploaded.id)


def _schedule(context: _Context, slug, version_name, params, options, outcome, log) -> None:
    """The destination's declared schedules, on the promoted version (as deploy does)."""
    from runner import schedules

    want = schedules.desired(slug, version_name, options.experiment, params, options.schedules)
    owned = schedules.owned_by(slug, context.destination.list_jobs())
    if not schedules.changes(want, owned):
        return
    done = context.experiments.within(
        options.experiment,
        lambda experiment_id: schedules.reconcile(
            context.destination,
            experiment_id=experiment_id,
            pipeline_id=outcome.pipeline_id,
            version_id=outcome.version_id,
            want=want,
            owned=owned,
            log=log,
        ),
    )
    outcome.schedules = done.describe()
