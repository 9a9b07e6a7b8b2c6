"""Deploy end to end through kfp 2's client against localdsp --api v2: what the server holds."""

import re
import time

import pytest
from v2_helpers import posts, server_state

from runner_helpers import COMMIT, client_for, events, next_second

pytestmark = pytest.mark.integration
UPLOAD = "/apis/v2beta1/pipelines/upload"
UPLOAD_VERSION = "/apis/v2beta1/pipelines/upload_version"
B = "/apis/v2beta1/"
V1_PIPELINES = "/apis/v1beta1/pipelines"


def test_first_deploy_creates_pipelines_content_named_versions_and_runs_of_them(
    project, capsys, kfp_client
):
    result = project.run(capsys)
    assert result.code == 0, result.err
    pipelines, runs = server_state(kfp_client)
    assert set(pipelines) == {"Add Pipeline", "Data Quality Gate", "Train and Evaluate"}
    add = pipelines["Add Pipeline"]
    assert add["newest"].startswith("add-pipeline-")
    assert add["versions"] == [add["newest"]]  # created empty: no version named after it
    assert len(runs) == 3
    add_run = next(r for r in runs if r.display_name == f"{add['newest']}@{COMMIT[:12]}")
    reference = add_run.pipeline_version_reference
    assert reference.pipeline_id == add["id"]
    assert reference.pipeline_version_id == add["version_ids"][add["newest"]]
    assert add_run.runtime_config.parameters == {"a": 7.0, "b": 8.0}
    version = kfp_client.get_pipeline_version(add["id"], reference.pipeline_version_id)
    assert version.description.startswith(
        f"dsp-runner: commit {COMMIT} of https://git.example.com/team/ml.git"
    )
    assert result.summary["counts"]["versions_created"] == 3
    assert "3 pipeline(s): 3 created, 3 new version(s), 0 unchanged, 3 run(s) started" in result.out


def test_second_deploy_uploads_nothing_and_starts_nothing(project, capsys, kfp_client, dsp):
    assert project.run(capsys).code == 0
    before = server_state(kfp_client)
    dsp.clear_requests()
    result = project.run(capsys)
    assert result.code == 0
    assert server_state(kfp_client) == before
    assert posts(dsp, UPLOAD) == posts(dsp, UPLOAD_VERSION) == 0
    assert result.summary["counts"]["versions_created"] == 0
    assert result.summary["counts"]["runs_started"] == 0
    unchanged = [e for e in events(result.err) if e["event"] == "pipeline_unchanged"]
    assert len(unchanged) == 3


def test_a_changed_pipeline_gets_exactly_one_new_version_and_one_run(
    project, capsys, kfp_client, dsp
):
    assert project.run(capsys).code == 0
    before, runs_before = server_state(kfp_client)
    project.edit("add_pipeline.py", "b=4.0", "b=5.0")
    next_second()
    dsp.clear_requests()
    result = project.run(capsys)
    assert result.code == 0
    after, runs_after = server_state(kfp_client)
    assert posts(dsp, UPLOAD) == 0
    assert posts(dsp, UPLOAD_VERSION) == 1
    add_before, add_after = before["Add Pipeline"], after["Add Pipeline"]
    assert add_after["id"] == add_before["id"]
    assert len(add_after["versions"]) == len(add_before["versions"]) + 1
    assert add_after["newest"] != add_before["newest"]
    assert after["Data Quality Gate"] == before["Data Quality Gate"]
    assert len(runs_after) == len(runs_before) + 1
    assert result.summary["counts"]["versions_created"] == 1


def test_a_revert_runs_the_old_version_and_says_the_server_has_no_default(
    project, capsys, kfp_client, dsp
):
    assert project.run(capsys).code == 0
    original = server_state(kfp_client)[0]["Add Pipeline"]
    project.edit("add_pipeline.py", "b=4.0", "b=5.0")
    next_second()
    assert project.run(capsys).code == 0
    project.edit("add_pipeline.py", "b=5.0", "b=4.0")
    dsp.clear_requests()
    result = project.run(capsys, "deploy", "--run-policy", "always")
    assert result.code == 0
    assert posts(dsp, UPLOAD_VERSION) == 0
    (add,) = [p for p in result.summary["pipelines"] if p["pipeline"] == "Add Pipeline"]
    assert add["action"] == "set-default"
    assert add["version_id"] == original["version_ids"][original["newest"]]
    reused = [e for e in events(result.err) if e["event"] == "pipeline_version_reused"]
    assert "DSP 2.x has no default version" in reused[0]["reason"]
    run = kfp_client.get_run(add["run_id"])
    assert run.pipeline_version_reference.pipeline_version_id == add["version_id"]


def test_broken_modules_are_reported_and_the_others_still_ship(project, capsys, kfp_client):
    (project.pipelines / "syntax_error.py").write_text("def broken(:\n")
    (project.pipelines / "import_error.py").write_text("import not_installed_anywhere\n")
    (project.pipelines / "compile_error.py").write_text(
        "from kfp import dsl\n@dsl.pipeline(name='compile-error')\ndef p():\n"
        "    raise ValueError('x')\n"
    )
    result = project.run(capsys)
    assert result.code == 1
    pipelines, _ = server_state(kfp_client)
    assert set(pipelines) == {"Add Pipeline", "Data Quality Gate", "Train and Evaluate"}
    failed = {f["source"].rsplit("/", 1)[-1] for f in result.summary["failures"]}
    assert failed == {"syntax_error.py", "import_error.py", "compile_error.py"}


def test_trigger_runs_each_deployed_newest_version_once_per_slot(
    project, capsys, kfp_client, monkeypatch
):
    monkeypatch.setenv("DSP_RUN_POLICY", "never")
    assert project.run(capsys).code == 0
    monkeypatch.setenv("DSP_RUN_KEY", "slot-1")
    first = project.run(capsys, "trigger")
    assert first.code == 0, first.err
    second = project.run(capsys, "trigger")
    assert second.code == 0
    runs = server_state(kfp_client)[1]
    assert len(runs) == 3
    assert all(r.display_name.endswith("@slot-1") for r in runs)


def test_plan_sends_no_write_request_and_imports_nothing_of_the_v1_flavour(project, dsp):
    """In its own process, as CI runs it: the v2 image has no kfp_tekton to import."""
    import os
    import subprocess
    import sys

    from v2_helpers import writes

    from runner_helpers import REPO

    check = (
        "import sys; from runner import cli; code = cli.main(['plan']); "
        "print(sorted(m for m in sys.modules if m.startswith(('kfp_tekton', 'runner.flavour_v1'))))"
        "; sys.exit(code)"
    )
    done = subprocess.run(
        [sys.executable, "-c", check],
        cwd=REPO,
        env={**os.environ, **project.values()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert writes(dsp) == []
    assert "create" in done.stdout


def test_a_deploy_where_nothing_changed_imports_no_kfp_only_its_generated_client(project, capsys):
    """Every module's fingerprint is on the server, so nothing is compiled, and the server
    client is kfp_server_api alone: no part of kfp (which costs as long as the rest of a
    no-op) is imported, measured with `python -X importtime` in the runner's own process."""
    import os
    import subprocess
    import sys

    from runner_helpers import REPO

    assert project.run(capsys).code == 0
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "runner", "deploy"],
        cwd=REPO,
        env={**os.environ, **project.values()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "0 new version(s), 3 unchanged" in done.stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line]
    assert "kfp_server_api" in imported
    assert [name for name in imported if name.split(".")[0] == "kfp"] == []


def test_a_deploy_where_nothing_changed_sends_five_requests_whatever_the_pipelines(
    project, capsys, dsp
):
    """The README's Performance sentence for DSP 2.x: every pipeline's newest version comes
    from the one v1beta1 listing (its signature carries the parameters), so no request is
    made per pipeline."""
    assert project.run(capsys).code == 0
    dsp.clear_requests()
    assert project.run(capsys).code == 0
    assert _api_requests(dsp) == [
        ("GET", V1_PIPELINES),
        ("GET", "experiments"),
        ("GET", "healthz"),
        ("GET", "recurringruns"),
        ("GET", "runs"),
    ]


def _api_requests(dsp) -> list[tuple[str, str]]:
    """(method, path below /apis/v2beta1/ with ids as ID) of every API request, sorted."""
    return sorted(
        (
            r["method"],
            re.sub(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", "ID", r["path"]).removeprefix(B),
        )
        for r in dsp.requests()
        if r["path"].startswith("/apis/")
    )


def test_a_deploy_that_uploads_lists_no_version_after_its_uploads(project, capsys, dsp):
    """DSP 2.x has no default version to check or set after an upload, so a deploy that
    uploads does not list the pipelines and each one's versions again (that cost a request
    per pipeline): an all-new deploy lists no version at all, and a one-change deploy reads
    every pipeline's newest version from the one v1beta1 listing and looks the changed one's
    new version up by name."""
    assert project.run(capsys).code == 0
    assert _api_requests(dsp) == [
        ("GET", V1_PIPELINES),
        *[("GET", "experiments")] * 3,  # fingerprint records, the run experiment (twice)
        ("GET", "healthz"),
        *[("GET", "recurringruns")] * 3,  # owned schedules; the new one looked up twice
        ("GET", "runs"),  # the runs just started, for racing duplicates
        ("POST", "experiments"),
        *[("POST", "pipelines")] * 3,
        *[("POST", "pipelines/upload_version")] * 3,
        ("POST", "recurringruns"),
        ("POST", "recurringruns/ID:enable"),
        *[("POST", "runs")] * 3,
    ]

    project.edit("add_pipeline.py", "b=4.0", "b=5.0")
    next_second()
    dsp.clear_requests()
    assert project.run(capsys).code == 0
    assert _api_requests(dsp) == [
        ("GET", V1_PIPELINES),
        *[("GET", "experiments")] * 3,
        ("GET", "healthz"),
        ("GET", "pipelines/ID/versions"),  # the changed one's new name, looked up
        ("GET", "recurringruns"),
        *[("GET", "runs")] * 2,
        ("POST", "pipelines/upload_version"),
        ("POST", "runs"),
    ]


def test_the_newest_version_lookups_take_dsp_concurrency_at_a_time(project, capsys, dsp):
    """DSP_CONCURRENCY bounds the per-pipeline version lookups (a server without the v1beta1
    listing) as it bounds every other per-pipeline call: with 1, three lookups held 0.4 s
    each take at least 1.2 s."""
    from runner import auth

    assert project.run(capsys).code == 0
    dsp.inject(method="GET", path=V1_PIPELINES, action="status", status=404, times=1)
    dsp.inject(
        method="GET",
        path="/apis/v2beta1/pipelines/[^/]+/versions",
        action="delay",
        seconds=0.4,
        times=3,
    )
    client = client_for(dsp.url, auth.credentials("", project.token_file), retries=0, concurrency=1)
    started = time.monotonic()
    assert len(client.list_pipelines()) == 3
    assert time.monotonic() - started >= 1.2
