"""The Tekton side of promote: the Pipeline's params and workspace reach the Task, the Task's
step reaches the runner, and tekton/README.md's promote PipelineRun is valid and runs."""

from __future__ import annotations

import re

import pytest
import yaml
from kustomize_helpers import TEKTON, documents, find
from test_manifests import section, step, validate
from test_promote import dev, prod, promoting  # noqa: F401 - fixtures

from runner_helpers import events

PASSED_THROUGH = ("command", "target", "promote-from-host", "require-success")


@pytest.fixture(scope="module")
def task() -> dict:
    return find(documents((TEKTON / "task-dsp-runner.yaml").read_text()), "Task")


@pytest.fixture(scope="module")
def pipeline() -> dict:
    return find(documents((TEKTON / "pipeline-dsp-runner.yaml").read_text()), "Pipeline")


def readme_promote_run() -> dict:
    """The PipelineRun of tekton/README.md's promotion example."""
    usage = section((TEKTON / "README.md").read_text(), "Usage")
    (body,) = [b for b in re.findall(r"```yaml\n(.*?)```", usage, re.S) if "promote" in b]
    return yaml.safe_load(body)


def test_the_pipeline_passes_promote_s_params_and_token_workspace_to_the_task(task, pipeline):
    ship = next(t for t in pipeline["spec"]["tasks"] if t["taskRef"].get("name") == "dsp-runner")
    given = {p["name"]: p["value"] for p in ship["params"]}
    declared = {p["name"]: p for p in pipeline["spec"]["params"]}
    task_params = {p["name"] for p in task["spec"]["params"]}
    for name in PASSED_THROUGH:
        assert given[name] == f"$(params.{name})", name
        assert name in declared and name in task_params, name
    assert declared["command"]["default"] == "deploy", "a push still deploys"
    bound = {w["name"]: w["workspace"] for w in ship["workspaces"]}
    assert bound["promote-token"] == "promote-token"
    (workspace,) = [w for w in pipeline["spec"]["workspaces"] if w["name"] == "promote-token"]
    assert workspace["optional"] is True


def test_the_task_reads_the_source_token_from_its_optional_read_only_workspace(task):
    (workspace,) = [w for w in task["spec"]["workspaces"] if w["name"] == "promote-token"]
    assert workspace["optional"] is True and workspace["readOnly"] is True
    wired = {e["name"]: e.get("value") for e in step(task)["env"]}
    assert wired["DSP_PROMOTE_FROM_TOKEN_PATH"] == "$(workspaces.promote-token.path)/token"
    assert "DSP_PROMOTE_FROM_TOKEN" not in wired, "a secret is never a param"


def test_the_readme_promote_run_is_valid_and_binds_a_secret_for_the_source_token(pipeline):
    run = readme_promote_run()
    assert not validate(run)
    assert run["spec"]["pipelineRef"]["name"] == pipeline["metadata"]["name"]
    params = {p["name"]: p["value"] for p in run["spec"]["params"]}
    assert params["command"] == "promote"
    assert set(params) <= {p["name"] for p in pipeline["spec"]["params"]}
    workspaces = {w["name"]: w for w in run["spec"]["workspaces"]}
    assert set(workspaces) <= {w["name"] for w in pipeline["spec"]["workspaces"]}
    assert "secret" in workspaces["promote-token"]


def test_the_task_s_step_environment_promotes(
    task,
    project,
    dev,  # noqa: F811 - a fixture
    promoting,  # noqa: F811 - a fixture
    monkeypatch,
    capsys,
    tmp_path,
):
    """The step's promote settings, filled in as Tekton would (params, the mounted Secret), run
    promote: the source token comes from the workspace, nothing else."""
    from runner import cli

    token_folder = tmp_path / "promote-token"
    token_folder.mkdir()
    (token_folder / "token").write_text(project.token_file.read_text())
    values = {"promote-from-host": project.url}
    monkeypatch.delenv("DSP_PROMOTE_FROM_TOKEN_PATH")
    monkeypatch.delenv("DSP_PROMOTE_FROM_HOST")
    for item in step(task)["env"]:
        if item["name"].startswith("DSP_PROMOTE_") or item["name"] == "DSP_TARGET":
            value = item["value"].replace("$(workspaces.promote-token.path)", str(token_folder))
            if m := re.fullmatch(r"\$\(params\.([a-z0-9-]+)\)", value):
                value = values.get(m.group(1), "")
            monkeypatch.setenv(item["name"], value)
    code = cli.main(["promote"])
    err = capsys.readouterr().err
    assert code == 0, err
    promoted = [e for e in events(err) if e["event"] == "pipeline_version_promoted"]
    assert len(promoted) == 4
