"""runner.prune's decisions on plain records: the rules the server tests cannot reach."""

import argparse
import datetime

import pytest

from runner import config
from runner.errors import ConfigurationError
from runner.prune import DELETE, KEEP, Retention, Usage, created_by_runner, decide
from runner.retention import retention_of
from runner.server import ServerJob, ServerPipeline, ServerRun, ServerVersion
from runner.settings import Settings

NOW = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
MARKED = "dsp-runner: commit abc, file add.py; sha256 " + "0" * 64
NAME = "Add Pipeline"


def version(name: str, minutes_ago: float, description: str = MARKED) -> ServerVersion:
    created = NOW - datetime.timedelta(minutes=minutes_ago)
    return ServerVersion(f"id-{name}", name, description, "p", created_at=created)


def history(*names: str) -> list[ServerVersion]:
    """The implicit first version, then dsp-runner versions a day apart, oldest first."""
    first = version(NAME, 10_000, "")
    return [first] + [version(n, 9_999 - i * 1440) for i, n in enumerate(names)]


def verdicts(listed, default=None, keep=1, keep_days=0.0, usage=None) -> dict[str, tuple]:
    pipeline = ServerPipeline("p", NAME, default)
    found = decide(pipeline, listed, Retention(keep, keep_days), usage or Usage({}, {}), now=NOW)
    return {v.version: (v.action, v.reason) for v in found}


def test_keep_0_deletes_all_but_the_default_and_what_is_not_dsp_runner_s():
    listed = history("v1", "v2", "v3")
    found = verdicts(listed, default=listed[2], keep=0)
    assert found == {
        "v3": (DELETE, "older than the 0 newest dsp-runner versions, and unused"),
        "v2": (KEEP, "the pipeline's default version"),
        "v1": (DELETE, "older than the 0 newest dsp-runner versions, and unused"),
        NAME: (KEEP, "not uploaded by dsp-runner"),
    }


def test_the_last_version_is_never_deleted():
    """No default known (a listing racing a delete) and nothing else left: the newest stays."""
    listed = history("v1", "v2")[1:]
    found = verdicts(listed, keep=0)
    assert found == {
        "v2": (KEEP, "the pipeline's last version"),
        "v1": (DELETE, "older than the 0 newest dsp-runner versions, and unused"),
    }


def test_a_run_a_recurring_run_started_protects_the_job_s_version():
    """Runs a schedule starts name the job, not the version: the job says which version ran."""
    listed = history("v1", "v2", "v3")
    job = ServerJob("j", "nightly", "", False, "e", version_id="id-v1")
    run = ServerRun("r", "nightly-1", "", "", "", created_at=NOW, job_id="j")
    found = verdicts(listed, default=listed[3], keep_days=2, usage=Usage.of([job], [run]))
    assert found["v1"] == (KEEP, "run 'nightly-1' started within 2 day(s)")
    assert found["v2"][0] == DELETE


def test_a_run_older_than_keep_days_protects_nothing_a_run_without_a_start_time_does():
    listed = history("v1", "v2", "v3")
    old = ServerRun("r1", "old", "", "", "id-v1", created_at=NOW - datetime.timedelta(days=3))
    pending = ServerRun("r2", "pending", "", "", "id-v2", created_at=None)
    found = verdicts(listed, default=listed[3], keep_days=2, usage=Usage.of([], [old, pending]))
    assert found["v1"][0] == DELETE
    assert found["v2"] == (KEEP, "run 'pending' started within 2 day(s)")


def test_a_pipeline_is_dsp_runner_s_when_its_history_begins_as_a_deploy_begins_it():
    ours = history("v1")
    assert created_by_runner(NAME, ours)
    assert created_by_runner(NAME, ours[1:])  # the implicit first version deleted by hand
    made_by_hand_then_deployed = [version(NAME, 10_000, ""), version("v1", 10_000 - 61)]
    assert not created_by_runner(NAME, made_by_hand_then_deployed)
    hand_upload_first = [version(NAME, 10_000, ""), version("mine", 9_999, "by hand"), *ours[1:]]
    assert not created_by_runner(NAME, hand_upload_first)
    assert not created_by_runner(NAME, [])


def settings(argv=()):
    parser = argparse.ArgumentParser()
    Settings.register_arguments(parser)
    return Settings.from_args(parser.parse_args(list(argv)))


RETENTION = """
defaults:
  retention: {keep_versions: 5, keep_days: 14}
pipelines:
  Add Pipeline:
    retention: {keep_versions: 2}
  Other: {}
"""


def test_retention_comes_from_the_job_then_the_entry_then_the_defaults(tmp_path):
    path = tmp_path / "dsp-runner.yaml"
    path.write_text(RETENTION)
    repo = config.load(path)
    assert retention_of(settings(), repo, NAME, "add-pipeline") == Retention(2, 14)
    assert retention_of(settings(), repo, "Other", "other") == Retention(5, 14)
    given = settings(["--keep", "0", "--keep-days", "1.5"])
    assert retention_of(given, repo, NAME, "add-pipeline") == Retention(0, 1.5)
    empty = config.load(tmp_path / "absent.yaml")
    assert retention_of(settings(), empty, NAME, "add-pipeline") is None  # deploy: no pruning
    assert retention_of(settings(), empty, NAME, "x", required=True) == Retention(10, 7.0)
    assert retention_of(settings(["--keep", "3"]), empty, NAME, "x") == Retention(3, 7.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("defaults: {retention: {keep_versions: -1}}", "defaults > retention > keep_versions"),
        ("pipelines: {p: {retention: {keep: 3}}}", "'keep' was unexpected"),
    ],
)
def test_a_bad_retention_is_refused_naming_the_key(tmp_path, text, message):
    path = tmp_path / "dsp-runner.yaml"
    path.write_text(text)
    with pytest.raises(ConfigurationError, match=message):
        config.load(path)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--keep", "-1"], "DSP_KEEP_VERSIONS: must be 0 or more"),
        (["--keep-days", "soon"], "DSP_KEEP_DAYS: expected a number of days"),
    ],
)
def test_bad_keep_settings_are_refused_naming_the_variable(argv, message):
    with pytest.raises(ConfigurationError, match=message):
        settings(argv)
