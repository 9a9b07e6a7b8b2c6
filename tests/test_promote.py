"""promote between two localdsp servers (dev → prod): what each server holds afterwards."""

from __future__ import annotations

import pytest
from conftest import TOKEN, RawApi

from localdsp.server import LocalDSP
from runner_helpers import COMMIT, events

pytestmark = pytest.mark.integration
PROD_TOKEN = "prod-token"
API = "/apis/v1beta1"


@pytest.fixture
def prod(tmp_path):
    """The destination: a second server, with a token of its own."""
    with LocalDSP(tmp_path / "prod-data", tokens=[PROD_TOKEN]) as dsp:
        yield dsp


@pytest.fixture
def dev(project, capsys):
    """The source (the `localdsp` fixture) after a deploy of the example pipelines."""
    result = project.run(capsys)
    assert result.code == 0, result.err
    return RawApi(project.url)


@pytest.fixture
def promoting(project, prod, monkeypatch):
    """The runner's environment turned to promote dev → prod: each server its own token."""
    prod_token = project.root / "prod-token"
    prod_token.write_text(PROD_TOKEN + "\n")
    monkeypatch.setenv("DSP_HOST", prod.url)
    monkeypatch.setenv("DSP_TOKEN_PATH", str(prod_token))
    monkeypatch.setenv("DSP_PROMOTE_FROM_HOST", project.url)
    monkeypatch.setenv("DSP_PROMOTE_FROM_TOKEN_PATH", str(project.token_file))
    return RawApi(prod.url, token=PROD_TOKEN)


def held(api: RawApi) -> dict[str, dict]:
    """Each pipeline's default version as the server returns it: name, description, file."""
    found = {}
    for pipeline in api("GET", f"{API}/pipelines", query={"page_size": 100}).json["pipelines"]:
        default = pipeline["default_version"]
        version = api("GET", f"{API}/pipeline_versions/{default['id']}").json
        template = api("GET", f"{API}/pipeline_versions/{default['id']}/templates")
        found[pipeline["name"]] = {
            "version": default["name"],
            "description": version.get("description", ""),
            "file": template.json["template"],
            "versions": version_names(api, pipeline["id"]),
        }
    return found


def version_names(api: RawApi, pipeline_id: str) -> list[str]:
    query = {"resource_key.type": "PIPELINE", "resource_key.id": pipeline_id, "page_size": 100}
    listed = api("GET", f"{API}/pipeline_versions", query=query).json.get("versions", [])
    return sorted(v["name"] for v in listed)


def uploads(dsp: LocalDSP) -> list[dict]:
    return [r for r in dsp.requests() if r["method"] == "POST" and "/upload" in r["path"]]


def test_promote_gives_prod_dev_s_exact_versions_and_a_second_promote_uploads_nothing(
    project, dev, prod, promoting, capsys
):
    result = project.run(capsys, "promote")
    assert result.code == 0, result.err
    source, destination = held(dev), held(promoting)
    assert (
        set(destination)
        == set(source)
        == {"Add Pipeline", "Data Quality Gate", "Square Numbers", "Train and Evaluate"}
    )
    for name, version in source.items():
        assert destination[name]["version"] == version["version"]
        assert destination[name]["file"] == version["file"], f"{name}: not byte-identical"
        assert destination[name]["description"] == version["description"]
    assert result.summary["counts"]["versions_created"] == 4
    assert result.summary["counts"]["runs_started"] == 4
    runs = promoting("GET", f"{API}/runs", query={"page_size": 100}).json["runs"]
    assert sorted(r["name"] for r in runs) == sorted(
        f"{v['version']}@{COMMIT[:12]}" for v in source.values()
    )

    before = uploads(prod)
    again = project.run(capsys, "promote")
    assert again.code == 0, again.err
    assert again.summary["counts"]["versions_created"] == 0
    assert again.summary["counts"]["runs_started"] == 0
    assert "0 new version(s)" in again.out
    assert uploads(prod) == before
    assert held(promoting) == destination


def test_a_deploy_on_prod_after_promote_finds_every_pipeline_unchanged(
    project, dev, prod, promoting, capsys
):
    """The description travels with the version, so prod's own deploy of the same commit
    sees what promote put there as its own and uploads nothing."""
    assert project.run(capsys, "promote").code == 0
    deployed = project.run(capsys, "deploy")
    assert deployed.code == 0, deployed.err
    assert deployed.summary["counts"]["versions_created"] == 0
    assert deployed.summary["counts"]["unchanged"] == 4


def test_a_version_name_prod_holds_with_other_content_is_refused_never_overwritten(
    project, dev, prod, promoting, capsys
):
    source = held(dev)
    add, other = source["Add Pipeline"], source["Data Quality Gate"]
    created = promoting.upload(f"{API}/pipelines/upload", add["file"].encode(), name="Add Pipeline")
    pipeline_id = created.json["id"]
    forged = promoting.upload(
        f"{API}/pipelines/upload_version",
        other["file"].encode(),
        name=add["version"],
        pipelineid=pipeline_id,
    )
    assert forged.status == 200, forged.text
    result = project.run(capsys, "promote", "--only", "add-pipeline")
    assert result.code == 1
    (outcome,) = result.summary["pipelines"]
    error = outcome["error"]
    for part in ("'Add Pipeline'", add["version"], prod.url, project.url, "never overwritten"):
        assert part in error
    after = held(promoting)["Add Pipeline"]
    assert after["file"] == other["file"]
    assert after["versions"] == sorted(["Add Pipeline", add["version"]])


def test_require_success_promotes_only_versions_whose_newest_run_succeeded(
    project, dev, prod, promoting, localdsp, capsys
):
    runs = {r["name"]: r for r in dev("GET", f"{API}/runs", query={"page_size": 100}).json["runs"]}
    add_run = next(r for name, r in runs.items() if name.startswith("add-pipeline-"))
    gate_run = next(r for name, r in runs.items() if name.startswith("data-quality-gate-"))
    localdsp.backend.record_run_status(add_run["id"], "Succeeded", {"status": {}})
    localdsp.backend.record_run_status(gate_run["id"], "Failed", {"status": {}})
    result = project.run(capsys, "promote", "--require-success")
    assert result.code == 1
    by_name = {o["pipeline"]: o for o in result.summary["pipelines"]}
    assert by_name["Add Pipeline"]["error"] == ""
    assert by_name["Add Pipeline"]["action"] == "create"
    assert by_name["Data Quality Gate"]["action"] == "skipped"
    assert "is Failed, not succeeded" in by_name["Data Quality Gate"]["error"]
    assert by_name["Train and Evaluate"]["action"] == "skipped"
    assert "not finished" in by_name["Train and Evaluate"]["error"]
    assert set(held(promoting)) == {"Add Pipeline"}
    skipped = [e for e in events(result.err) if e["event"] == "promotion_skipped"]
    assert len(skipped) == 3


@pytest.mark.parametrize(
    "fault",
    [
        {"action": "status", "status": 503, "times": 2},
        {"action": "drop_after_commit", "times": 1},
    ],
    ids=["503", "drop-after-commit"],
)
def test_a_fault_on_prod_s_upload_uploads_nothing_twice(
    project, dev, prod, promoting, capsys, fault
):
    prod.inject(method="POST", path=f"{API}/pipelines/upload_version", **fault)
    prod.inject(method="POST", path=f"{API}/pipelines/upload", **fault)
    result = project.run(capsys, "promote")
    assert result.code == 0, result.err
    faulted = [r for r in prod.requests() if r["fault"]]
    assert len(faulted) == 2 * fault["times"], "both uploads met their fault"
    destination = held(promoting)
    for name, version in held(dev).items():
        assert destination[name]["versions"] == sorted([name, version["version"]])
        assert destination[name]["file"] == version["file"]
    assert result.summary["counts"]["versions_created"] == 4


def test_the_source_is_read_with_its_own_token_and_the_destination_s_is_never_sent_to_it(
    project, dev, prod, promoting, localdsp, capsys
):
    localdsp.clear_requests()
    assert project.run(capsys, "promote").code == 0
    assert localdsp.requests(), "the source was read"
    localdsp.set_tokens([PROD_TOKEN])  # dev now takes only prod's token: promote must fail
    result = project.run(capsys, "promote")
    assert result.code == 5
    assert "DSP_PROMOTE_FROM_TOKEN_PATH" in result.err
    assert PROD_TOKEN not in result.err + result.out
    assert TOKEN not in result.err + result.out


def test_promote_without_a_source_token_is_a_configuration_error(
    project, promoting, monkeypatch, capsys
):
    monkeypatch.delenv("DSP_PROMOTE_FROM_TOKEN_PATH")
    result = project.run(capsys, "promote")
    assert result.code == 2
    assert "DSP_PROMOTE_FROM_TOKEN_PATH: not set" in result.err


def test_promote_runs_and_schedules_from_the_destination_s_target(
    project, dev, prod, promoting, monkeypatch, capsys
):
    """prod's arguments and schedule come from `targets: prod:` of dsp-runner.yaml."""
    settings = project.pipelines / "dsp-runner.yaml"
    settings.write_text(
        settings.read_text() + "targets:\n"
        "  prod:\n"
        "    defaults: {experiment: prod-runs}\n"
        "    pipelines:\n"
        "      add-pipeline:\n"
        "        arguments: {b: '9'}\n"
        "        schedules: [{name: nightly, cron: '0 0 2 * * *'}]\n"
    )
    monkeypatch.setenv("DSP_TARGET", "prod")
    result = project.run(capsys, "promote", "--only", "add-pipeline")
    assert result.code == 0, result.err
    (run,) = promoting("GET", f"{API}/runs", query={"page_size": 100}).json["runs"]
    params = {p["name"]: p.get("value") for p in run["pipeline_spec"]["parameters"]}
    assert params["b"] == "9"
    experiments = promoting("GET", f"{API}/experiments", query={"page_size": 100}).json
    assert "prod-runs" in {e["name"] for e in experiments["experiments"]}
    jobs = promoting("GET", f"{API}/jobs", query={"page_size": 100}).json["jobs"]
    assert [j["trigger"]["cron_schedule"]["cron"] for j in jobs] == ["0 0 2 * * *"]


def test_an_argument_the_promoted_version_does_not_take_fails_that_pipeline_before_upload(
    project, dev, prod, promoting, monkeypatch, capsys
):
    monkeypatch.setenv("DSP_RUN_ARGS", '{"add-pipeline": {"c": "1"}}')
    result = project.run(capsys, "promote", "--only", "add-pipeline")
    assert result.code == 1
    (outcome,) = result.summary["pipelines"]
    assert "unknown run argument(s) c for pipeline 'Add Pipeline'" in outcome["error"]
    assert uploads(prod) == []


def test_on_a_server_that_keeps_the_old_default_promote_makes_its_version_the_default(
    project, dev, tmp_path, monkeypatch, capsys
):
    """A DSPA with autoUpdatePipelineDefaultVersion off: the upload alone changes nothing."""
    with LocalDSP(tmp_path / "fixed", tokens=[PROD_TOKEN], auto_update_default=False) as fixed:
        token = project.root / "fixed-token"
        token.write_text(PROD_TOKEN)
        monkeypatch.setenv("DSP_HOST", fixed.url)
        monkeypatch.setenv("DSP_TOKEN_PATH", str(token))
        monkeypatch.setenv("DSP_PROMOTE_FROM_HOST", project.url)
        monkeypatch.setenv("DSP_PROMOTE_FROM_TOKEN_PATH", str(project.token_file))
        assert project.run(capsys, "promote").code == 0
        destination = held(RawApi(fixed.url, token=PROD_TOKEN))
    for name, version in held(dev).items():
        assert destination[name]["version"] == version["version"]
