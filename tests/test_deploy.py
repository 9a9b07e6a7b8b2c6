"""Deploy end to end through the real TektonClient against localdsp: what the server holds."""

import itertools
import re

import kfp_tekton
import pytest
from conftest import TOKEN

from runner import stopping
from runner.errors import ServerError
from runner.flavour_v1.client import FORBIDDEN_HINT, DSPClient
from runner_helpers import COMMIT, Project, events

pytestmark = pytest.mark.integration

PROJECT_PIPELINES = {"Add Pipeline", "Data Quality Gate", "Square Numbers", "Train and Evaluate"}


def server_state(client):
    """Pipelines with their version names and the runs' names, as a user would list them."""
    pipelines = {}
    for p in client.list_pipelines(page_size=100).pipelines or []:
        listed = client.list_pipeline_versions(p.id, page_size=100).versions or []
        pipelines[p.name] = {
            "id": p.id,
            "default": p.default_version.name,
            "versions": sorted(v.name for v in listed),
        }
    runs = client.list_runs(page_size=100).runs or []
    return pipelines, runs


def test_first_deploy_creates_pipelines_content_named_versions_and_runs(
    project, capsys, kfp_client
):
    result = project.run(capsys)
    assert result.code == 0, result.err
    pipelines, runs = server_state(kfp_client)
    assert set(pipelines) == PROJECT_PIPELINES
    add = pipelines["Add Pipeline"]
    assert add["default"].startswith("add-pipeline-")
    assert add["versions"] == sorted(["Add Pipeline", add["default"]])
    assert len(runs) == 4
    by_name = {r.name: r for r in runs}
    add_run = by_name[f"{add['default']}@{COMMIT[:12]}"]
    refs = {ref.key.type: ref.key.id for ref in add_run.resource_references}
    version = kfp_client.pipelines.get_pipeline_version(refs["PIPELINE_VERSION"])
    assert version.name == add["default"]
    assert re.fullmatch(
        f"dsp-runner: commit {COMMIT} of https://git.example.com/team/ml.git, "
        "file add_pipeline.py; sha256 [0-9a-f]{64}; module [0-9a-f]{16} of 1",
        version.description,
    ), version.description  # a v1 version records no parameter signature (that is v2's)
    assert result.summary["counts"] == {
        "pipelines": 4,
        "pipelines_created": 4,
        "versions_created": 4,
        "unchanged": 0,
        "runs_started": 4,
        "schedule_changes": 1,
        "runs_succeeded": 0,
        "runs_failed": 0,
        "runs_unfinished": 0,
        "failed": 0,
    }
    assert "4 pipeline(s): 4 created, 4 new version(s), 0 unchanged, 4 run(s) started" in result.out


def test_second_deploy_uploads_nothing_and_says_why(project, capsys, kfp_client, localdsp):
    assert project.run(capsys).code == 0
    before = server_state(kfp_client)
    result = project.run(capsys)
    assert result.code == 0
    assert server_state(kfp_client) == before
    assert result.summary["counts"]["versions_created"] == 0
    assert result.summary["counts"]["runs_started"] == 0
    unchanged = [e for e in events(result.err) if e["event"] == "pipeline_unchanged"]
    assert len(unchanged) == 4
    assert "nothing uploaded" in unchanged[0]["reason"]


def test_a_changed_pipeline_gets_exactly_one_new_version_and_one_run(project, capsys, kfp_client):
    assert project.run(capsys).code == 0
    before, runs_before = server_state(kfp_client)
    project.edit("add_pipeline.py", 'b="7"', 'b="8"')
    result = project.run(capsys)
    assert result.code == 0
    after, runs_after = server_state(kfp_client)
    add_before, add_after = before["Add Pipeline"], after["Add Pipeline"]
    assert add_after["id"] == add_before["id"]
    assert len(add_after["versions"]) == len(add_before["versions"]) + 1
    assert add_after["default"] != add_before["default"]
    assert after["Data Quality Gate"] == before["Data Quality Gate"]
    assert len(runs_after) == len(runs_before) + 1
    assert result.summary["counts"]["versions_created"] == 1


def test_a_revert_reuses_the_old_version_instead_of_uploading(project, capsys, kfp_client):
    assert project.run(capsys).code == 0
    original = server_state(kfp_client)[0]["Add Pipeline"]
    project.edit("add_pipeline.py", 'b="7"', 'b="8"')
    assert project.run(capsys).code == 0
    project.edit("add_pipeline.py", 'b="8"', 'b="7"')
    result = project.run(capsys)
    assert result.code == 0
    reverted = server_state(kfp_client)[0]["Add Pipeline"]
    assert reverted["default"] == original["default"]
    assert len(reverted["versions"]) == 3
    assert result.summary["counts"]["versions_created"] == 0


def test_broken_modules_are_reported_and_the_others_still_ship(project, capsys, kfp_client):
    (project.pipelines / "syntax_error.py").write_text("def broken(:\n")
    (project.pipelines / "import_error.py").write_text("import not_installed_anywhere\n")
    (project.pipelines / "compile_error.py").write_text(
        "import kfp\n@kfp.dsl.pipeline(name='Compile Error')\ndef p():\n    raise ValueError('x')\n"
    )
    result = project.run(capsys)
    assert result.code == 1
    pipelines, _ = server_state(kfp_client)
    assert set(pipelines) == PROJECT_PIPELINES
    failed = {f["source"].rsplit("/", 1)[-1]: f for f in result.summary["failures"]}
    assert set(failed) == {"syntax_error.py", "import_error.py", "compile_error.py"}
    assert failed["syntax_error.py"]["line"] == 1
    assert failed["compile_error.py"]["line"] == 4
    logged = [e for e in events(result.err) if e["event"] == "module_failed"]
    assert {e["file"].rsplit("/", 1)[-1] for e in logged} == set(failed)


def test_run_arguments_are_validated_before_anything_is_uploaded(
    project, capsys, kfp_client, monkeypatch
):
    monkeypatch.setenv("DSP_RUN_ARGS", '{"add-pipeline": {"c": "1"}}')
    result = project.run(capsys)
    assert result.code == 1
    assert "Add Pipeline" not in server_state(kfp_client)[0]
    (add,) = [p for p in result.summary["pipelines"] if p["pipeline"] == "Add Pipeline"]
    assert add["error"].startswith("unknown run argument(s) c for pipeline 'Add Pipeline'")


def test_run_arguments_override_defaults(project, capsys, kfp_client, monkeypatch):
    monkeypatch.setenv("DSP_RUN_ARGS", '{"add-pipeline": {"a": "7", "b": "8"}}')
    assert project.run(capsys).code == 0
    (run,) = [r for r in server_state(kfp_client)[1] if r.name.startswith("add-pipeline-")]
    params = {p.name: p.value for p in run.pipeline_spec.parameters}
    assert params == {"a": "7", "b": "8"}


def test_run_policy_always_starts_one_run_per_commit_and_never_starts_none(
    project, capsys, kfp_client, monkeypatch
):
    monkeypatch.setenv("DSP_RUN_POLICY", "never")
    assert project.run(capsys).code == 0
    assert server_state(kfp_client)[1] == []
    monkeypatch.setenv("DSP_RUN_POLICY", "always")
    assert project.run(capsys).code == 0
    assert project.run(capsys).code == 0
    assert len(server_state(kfp_client)[1]) == 4
    monkeypatch.setenv("DSP_GIT_COMMIT", "fedcba9876543210fedcba9876543210fedcba98")
    assert project.run(capsys).code == 0
    assert len(server_state(kfp_client)[1]) == 8


def test_a_run_lost_by_a_crash_after_upload_is_started_by_the_next_deploy(
    project, capsys, kfp_client, localdsp
):
    localdsp.inject(
        method="POST", path="/apis/v1beta1/runs", action="status", status=400, times=100
    )
    assert project.run(capsys).code == 1
    assert server_state(kfp_client)[1] == []
    localdsp.clear_faults()
    result = project.run(capsys)
    assert result.code == 0
    assert result.summary["counts"]["runs_started"] == 4
    assert result.summary["counts"]["versions_created"] == 0


def test_an_unchanged_module_is_not_compiled_again_a_changed_one_is(project, capsys):
    assert project.run(capsys).code == 0
    second = events(project.run(capsys).err)
    (skipped,) = [e for e in second if e["event"] == "compile_skipped"]
    assert skipped["modules"] == 4
    project.edit("add_pipeline.py", 'b="7"', 'b="8"')
    third = project.run(capsys)
    assert [e["modules"] for e in events(third.err) if e["event"] == "compile_skipped"] == [3]
    assert third.summary["counts"]["versions_created"] == 1


def test_a_shared_file_change_compiles_every_module_again(project, capsys):
    assert project.run(capsys).code == 0
    (project.pipelines / "_shared.py").write_text("THRESHOLD = 1\n")
    result = project.run(capsys)
    assert not any(e["event"] == "compile_skipped" for e in events(result.err))
    assert result.summary["counts"]["versions_created"] == 0


def test_a_broken_module_is_reported_on_every_deploy(project, capsys):
    (project.pipelines / "broken.py").write_text("raise RuntimeError('still broken')\n")
    assert project.run(capsys).code == 1
    again = project.run(capsys)
    assert again.code == 1
    assert [f["reason"] for f in again.summary["failures"]] == [
        "import failed: RuntimeError: still broken"
    ]


def test_on_a_server_that_does_not_auto_update_the_default_the_runner_sets_it(
    tmp_path, capsys, monkeypatch
):
    from localdsp.server import LocalDSP

    with LocalDSP(tmp_path / "data", tokens=["test-token"], auto_update_default=False) as dsp:
        project = Project(tmp_path / "p", dsp.url, "test-token")
        project.env(monkeypatch)
        first = project.run(capsys)
        assert first.code == 0
        project.edit("add_pipeline.py", 'b="7"', 'b="8"')
        second = project.run(capsys)
        assert second.code == 0
        (add,) = [p for p in second.summary["pipelines"] if p["pipeline"] == "Add Pipeline"]
        assert [
            e["pipeline"] for e in events(second.err) if e["event"] == "default_version_set"
        ] == ["Add Pipeline"]
        client = kfp_tekton.TektonClient(host=dsp.url, existing_token="test-token")
        pipeline = client.get_pipeline(add["pipeline_id"])
        assert pipeline.default_version.id == add["version_id"]
        run = client.get_run(add["run_id"]).run
        versions = [r.key.id for r in run.resource_references if r.key.type == "PIPELINE_VERSION"]
        assert versions == [add["version_id"]], "the run names its version, not the old default"
        third = project.run(capsys)
        assert third.summary["counts"]["versions_created"] == 0


def test_a_runs_lookup_spanning_several_pages_finds_every_run(
    project, capsys, kfp_client, localdsp, monkeypatch
):
    """One run per page: the lookup of the existing runs walks four pages, and the
    server refuses a page token sent with the IN filter again, as the real one does."""
    monkeypatch.setattr("runner.calls.PAGE_SIZE", 1)
    monkeypatch.setenv("DSP_RUN_POLICY", "always")
    assert project.run(capsys).code == 0
    localdsp.clear_requests()
    result = project.run(capsys)
    assert result.code == 0, result.err
    assert result.summary["counts"]["runs_started"] == 0
    assert len(server_state(kfp_client)[1]) == 4
    assert len([e for e in events(result.err) if e["event"] == "run_exists"]) == 4
    lookups = [r for r in localdsp.requests() if "resource_reference_key.id" in r["query"]]
    later_pages = [r for r in lookups if re.search(r"page_token=[^&]", r["query"])]
    assert len(later_pages) == 3
    assert all(r["status"] == 200 for r in lookups)


# ---------------------------------------------------------------- halting mid-job


def after_first_call(monkeypatch, method: str, action, **only) -> None:
    """Something happens to the job (a token revoked, SIGTERM) right after the runner's first
    call of `DSPClient.method` whose keyword arguments include `only`."""
    original = getattr(DSPClient, method)
    pending = [action]

    def wrapper(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        if pending and only.items() <= kwargs.items():
            pending.pop()()
        return result

    monkeypatch.setattr(DSPClient, method, wrapper)


def test_a_token_refused_mid_job_halts_it_the_pipelines_after_it_never_start(
    project, capsys, kfp_client, localdsp, monkeypatch
):
    monkeypatch.setenv("DSP_CONCURRENCY", "1")
    after_first_call(monkeypatch, "upload_version", lambda: localdsp.set_tokens(["not-yours"]))
    result = project.run(capsys)
    localdsp.set_tokens([TOKEN])
    assert result.code == 5
    refused = (
        f"find experiment: the server refused the token (403) from the file {project.token_file} "
        f"(DSP_TOKEN_PATH): check that it is valid and that its account {FORBIDDEN_HINT}"
    )
    assert result.err.strip().splitlines()[-1] == f"dsp-runner: AuthError: {refused}"
    assert {p["pipeline"]: p["error"] for p in result.summary["pipelines"]} == {
        "Add Pipeline": refused,
        "Data Quality Gate": f"not started: the job halted: {refused}",
        "Square Numbers": f"not started: the job halted: {refused}",
        "Train and Evaluate": f"not started: the job halted: {refused}",
    }
    pipelines, runs = server_state(kfp_client)
    assert list(pipelines) == ["Add Pipeline"] and runs == []


def test_sigterm_mid_pipeline_starts_none_of_its_steps_and_no_pipeline_after_it(
    project, capsys, kfp_client, monkeypatch
):
    """Stopped right after Data Quality Gate's version is uploaded: its run and its schedule
    are not made, Train and Evaluate is not started; what was done is kept and reported."""
    stop = []
    monkeypatch.setattr(stopping, "requested", lambda: bool(stop))
    monkeypatch.setenv("DSP_CONCURRENCY", "1")
    after_first_call(
        monkeypatch, "upload_version", lambda: stop.append(1), pipeline_name="Data Quality Gate"
    )
    result = project.run(capsys)
    assert result.code == 143
    skipped = [e for e in events(result.err) if e["event"] == "step_skipped"]
    assert [(e["pipeline"], e["version"], e["step"], e["reason"]) for e in skipped] == [
        (
            "Data Quality Gate",
            result.summary["pipelines"][1]["version_name"],
            step,
            "the job was asked to stop (SIGTERM)",
        )
        for step in ("start run", "reconcile schedules")
    ]
    errors = {p["pipeline"]: p["error"] for p in result.summary["pipelines"]}
    assert errors["Train and Evaluate"] == "not started: the job was asked to stop (SIGTERM)"
    pipelines, runs = server_state(kfp_client)
    assert sorted(pipelines) == ["Add Pipeline", "Data Quality Gate"]
    assert [r.name.split("@")[0] for r in runs] == [pipelines["Add Pipeline"]["default"]]
    assert kfp_client.list_recurring_runs(page_size=100).jobs is None


def test_where_the_server_made_the_new_version_the_default_nothing_more_is_sent(
    project, capsys, localdsp
):
    """localdsp, like DSP, makes an uploaded version the default: the one listing after the
    uploads finds that, and no pipeline's default is set again."""
    assert project.run(capsys).code == 0
    project.edit("add_pipeline.py", 'b="7"', 'b="8"')
    assert project.run(capsys).code == 0
    set_default = [r for r in localdsp.requests() if "/default_version/" in r["path"]]
    assert set_default == []


def test_a_run_a_racing_runner_started_first_is_the_one_kept_and_reported(
    project, capsys, kfp_client, localdsp, monkeypatch
):
    """Another runner (the same webhook delivered twice) starts Add Pipeline's run just before
    this one does: this runner removes its own newer copy and reports the other's run."""
    ticks = itertools.count(1_700_000_000, 10)
    localdsp.backend._clock = lambda: next(ticks)
    rival = []
    original = DSPClient.start_run

    def racing(self, **run):
        if run["name"].startswith("add-pipeline-") and not rival:
            rival.append(
                kfp_client.run_pipeline(
                    run["experiment_id"], run["name"], version_id=run["version_id"]
                ).id
            )
        return original(self, **run)

    monkeypatch.setattr(DSPClient, "start_run", racing)
    result = project.run(capsys)
    assert result.code == 0, result.err
    (add,) = [p for p in result.summary["pipelines"] if p["pipeline"] == "Add Pipeline"]
    assert add["run_id"] == rival[0]
    runs = server_state(kfp_client)[1]
    assert len(runs) == 4 and rival[0] in {r.id for r in runs}
    removed = [e for e in events(result.err) if e["event"] == "duplicate_run_removed"]
    assert [(e["run"], e["kept"]) for e in removed] == [(add["run_name"], rival[0])]


def test_a_run_that_exists_is_reported_by_its_id_and_not_started_again(
    project, capsys, kfp_client, monkeypatch
):
    monkeypatch.setenv("DSP_RUN_POLICY", "always")
    first = project.run(capsys)
    again = project.run(capsys)
    assert again.code == 0

    def runs(result):
        return {p["pipeline"]: (p["run_name"], p["run_id"]) for p in result.summary["pipelines"]}

    assert runs(again) == runs(first)
    on_server = {(r.name, r.id) for r in server_state(kfp_client)[1]}
    assert on_server == set(runs(first).values())
    assert [p["run_started"] for p in again.summary["pipelines"]] == [False] * 4


def test_a_duplicate_check_that_fails_in_one_experiment_still_settles_the_others(
    project, capsys, kfp_client, localdsp, monkeypatch
):
    """Add Pipeline runs in experiment "first", whose runs cannot be listed after the runs are
    started; Data Quality Gate's run, which a racing runner also started, is still settled."""
    settings = project.pipelines / "dsp-runner.yaml"
    settings.write_text(
        settings.read_text().replace(
            "  Add Pipeline:\n", "  Add Pipeline:\n    experiment: first\n"
        )
    )
    ticks = itertools.count(1_700_000_000, 10)
    localdsp.backend._clock = lambda: next(ticks)
    rival = []
    start_run, runs_named = DSPClient.start_run, DSPClient.runs_named

    def racing(self, **run):
        if run["name"].startswith("data-quality-gate-") and not rival:
            rival.append(
                kfp_client.run_pipeline(
                    run["experiment_id"], run["name"], version_id=run["version_id"]
                ).id
            )
        return start_run(self, **run)

    def failing(self, experiment_id, names):
        names = list(names)
        if rival and any(n.startswith("add-pipeline-") for n in names):
            raise ServerError("find runs: HTTP 500: database is locked")
        return runs_named(self, experiment_id, names)

    monkeypatch.setattr(DSPClient, "start_run", racing)
    monkeypatch.setattr(DSPClient, "runs_named", failing)
    result = project.run(capsys)
    assert result.code == 0, result.err
    failed = [e for e in events(result.err) if e["event"] == "duplicate_run_check_failed"]
    assert [(e["experiment"], e["error"]) for e in failed] == [
        ("first", "find runs: HTTP 500: database is locked")
    ]
    (gate,) = [p for p in result.summary["pipelines"] if p["pipeline"] == "Data Quality Gate"]
    assert gate["run_id"] == rival[0]
    assert [r.id for r in server_state(kfp_client)[1] if r.name == gate["run_name"]] == rival


def test_on_such_a_server_a_pipeline_left_without_a_default_gets_the_new_version_as_it(
    tmp_path, capsys, monkeypatch
):
    """Every version of Add Pipeline was deleted by hand, so the server lists it without a
    default; the new version is uploaded and made the default."""
    from localdsp.server import LocalDSP

    with LocalDSP(tmp_path / "data", tokens=[TOKEN], auto_update_default=False) as dsp:
        project = Project(tmp_path / "p", dsp.url, TOKEN)
        project.env(monkeypatch)
        assert project.run(capsys).code == 0
        client = kfp_tekton.TektonClient(host=dsp.url, existing_token=TOKEN)
        add_id = client.get_pipeline_id("Add Pipeline")
        for version in client.list_pipeline_versions(add_id, page_size=100).versions:
            client.delete_pipeline_version(version.id)
        assert client.get_pipeline(add_id).default_version is None
        project.edit("add_pipeline.py", 'b="7"', 'b="8"')
        result = project.run(capsys)
        assert result.code == 0, result.err
        (add,) = [p for p in result.summary["pipelines"] if p["pipeline"] == "Add Pipeline"]
        assert client.get_pipeline(add_id).default_version.id == add["version_id"]


def test_the_summary_names_each_source_a_run_its_pipeline_its_experiment_who_made_it(
    project, capsys, kfp_client
):
    """The summary names the module each pipeline came from; in the dashboard, the run links to
    its pipeline, and the experiment the runner made says it holds dsp-runner's runs."""
    result = project.run(capsys)
    assert result.code == 0
    for shipped in result.summary["pipelines"]:
        run = kfp_client.get_run(shipped["run_id"]).run
        assert run.pipeline_spec.pipeline_id == shipped["pipeline_id"]
    experiment = kfp_client.get_experiment(experiment_name="dsp-runner")
    assert experiment.description == "Runs started by dsp-runner"
    assert {p["pipeline"]: p["source"] for p in result.summary["pipelines"]} == {
        "Add Pipeline": str(project.pipelines / "add_pipeline.py"),
        "Data Quality Gate": str(project.pipelines / "data_quality_gate.py"),
        "Square Numbers": str(project.pipelines / "square_numbers.py"),
        "Train and Evaluate": str(project.pipelines / "train_evaluate.py"),
    }
