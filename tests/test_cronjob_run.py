"""The CronJob runs with the repository's own settings, not the sample baked into the image.

The pod of the rendered CronJob is replayed on this machine, taken literally from the YAML: its
init container's shell script clones REPO_URL (here a local bare repository whose dsp-runner.yaml
gives other run arguments than the image's sample pipelines/ do) and its main container runs the
image's entrypoint with the container's args, env, envFrom and workingDir, against a LocalDSP.
The only substitutions are what a cluster provides: the volumes become folders, the projected
token becomes a token file, and the ConfigMap carries this test's REPO_URL and DSP_HOST.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import TOKEN
from kustomize_helpers import REPO, find, render_with

pytestmark = pytest.mark.integration

JOB_NAME = "dsp-runner-trigger-29400000"
# The Secret the component git-basic-auth mounts, in git-clone's basic-auth format.
SECRETS = {
    "dsp-runner-git-basic-auth": {
        ".gitconfig": "[credential]\n\thelper = store\n",
        ".git-credentials": "https://dsp-runner:not-a-real-token@git.example.com\n",
    },
}
PLAIN_ENV = {
    k: v
    for k, v in os.environ.items()
    if not k.startswith(("DSP_", "GIT_", "PYTHON", "LOG_", "REPO_"))
}


def bare_repository(tmp_path: Path, branch: str) -> tuple[Path, dict]:
    """A bare repository on `branch` with the sample pipelines and CHANGED run arguments."""
    work = tmp_path / "author"
    shutil.copytree(REPO / "pipelines", work / "pipelines")
    settings_file = work / "pipelines" / "dsp-runner.yaml"
    settings = yaml.safe_load(settings_file.read_text())
    image_args = settings["pipelines"]["Add Pipeline"]["arguments"]
    changed = {"a": 40, "b": 2}
    assert changed != image_args
    settings["pipelines"]["Add Pipeline"]["arguments"] = changed
    settings_file.write_text(yaml.safe_dump(settings))
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    for args in (["init", "-q", "-b", branch], ["add", "-A"], ["commit", "-q", "-m", "settings"]):
        subprocess.run([*git, *args], check=True, env=PLAIN_ENV)
    bare = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    return bare, changed


def container_env(container: dict, configmap: dict, mounts: dict[str, Path]) -> dict[str, str]:
    """The container's environment as the kubelet builds it: envFrom, then env."""
    env = {}
    for source in container.get("envFrom", []):
        assert source["configMapRef"]["name"] == configmap["metadata"]["name"]
        env.update(configmap["data"])
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = on_disk(entry["value"], mounts)
        else:
            field = entry["valueFrom"]["fieldRef"]["fieldPath"]
            assert field == "metadata.labels['batch.kubernetes.io/job-name']"
            env[entry["name"]] = JOB_NAME
    return env


def mounts_of(container: dict, volumes: dict[str, Path]) -> dict[str, Path]:
    return {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}


def on_disk(value: str, mounts: dict[str, Path]) -> str:
    """A path inside the pod, mapped to the folder that stands in for its volume."""
    for mount, folder in mounts.items():
        if value == mount or value.startswith(mount + "/"):
            return str(folder) + value[len(mount) :]
    return value


@pytest.mark.parametrize("components", [(), ("git-basic-auth",)], ids=["base", "git-basic-auth"])
def test_the_cronjob_triggers_with_the_deployed_branchs_settings(
    tmp_path, localdsp, kfp_client, components
):
    docs = render_with(components, tmp_path)
    pod = find(docs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    configmap = find(docs, "ConfigMap", "dsp-runner-settings")
    branch = configmap["data"]["REPO_BRANCH"]
    bare, changed = bare_repository(tmp_path, branch)
    configmap["data"].update(REPO_URL=bare.as_uri(), DSP_HOST=localdsp.url)
    volumes = {v["name"]: tmp_path / "volumes" / v["name"] for v in pod["volumes"]}
    for volume in pod["volumes"]:
        folder = volumes[volume["name"]]
        folder.mkdir(parents=True)
        if "secret" in volume:
            for key, value in SECRETS[volume["secret"]["secretName"]].items():
                (folder / key).write_text(value)
    token = tmp_path / "projected-token"
    token.write_text(TOKEN)

    # Something to trigger: a deploy of that repository (no runs).
    deployed = subprocess.run(
        [sys.executable, "-m", "runner", "deploy"],
        cwd=REPO,
        env={
            **PLAIN_ENV,
            "DSP_HOST": localdsp.url,
            "DSP_TOKEN_PATH": str(token),
            "DSP_PIPELINES_DIR": str(tmp_path / "author" / "pipelines"),
            "DSP_OUTPUT_DIR": str(tmp_path / "deploy-out"),
            "DSP_RUN_POLICY": "never",
            "DSP_ONLY": "Add Pipeline",
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert deployed.returncode == 0, deployed.stderr[-3000:]

    def run(container: dict, command: list[str]) -> subprocess.CompletedProcess:
        mounts = mounts_of(container, volumes)
        env = container_env(container, configmap, mounts)
        if container["name"] == "dsp-runner":  # what the cluster mounts into every pod
            env["DSP_TOKEN_PATH"] = str(token)
        return subprocess.run(
            command,
            cwd=on_disk(container["workingDir"], mounts),
            env={**PLAIN_ENV, "PYTHONPATH": str(REPO), **env},
            capture_output=True,
            text=True,
            timeout=300,
        )

    (clone,) = pod["initContainers"]
    cloned = run(clone, [*clone["command"], *clone["args"]])
    assert cloned.returncode == 0, cloned.stderr
    home = Path(on_disk(container_env(clone, configmap, {})["HOME"], mounts_of(clone, volumes)))
    for secret in SECRETS.values() if components else ():
        for key, value in secret.items():
            assert (home / key).read_text() == value, "git finds the credentials in HOME"
    (main,) = pod["containers"]
    entrypoint = [sys.executable, "-m", "runner"]  # the image's ENTRYPOINT
    triggered = run(main, [*entrypoint, *main["args"]])
    assert triggered.returncode == 0, triggered.stderr[-3000:]

    (started,) = [r for r in kfp_client.list_runs(page_size=100).runs if JOB_NAME in r.name]
    arguments = {p.name: p.value for p in started.pipeline_spec.parameters}
    assert arguments == {k: json.dumps(v) for k, v in changed.items()}
