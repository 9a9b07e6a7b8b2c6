"""The image recipe cannot rot: the Containerfile's environment is rebuilt here and run.

No container engine is needed: the integration test reads the Containerfile's ENV, WORKDIR, COPY
and pip RUN instructions, repeats them in a temporary venv (same Python, same requirements file,
same install command) and runs the ENTRYPOINT. hadolint's checks are in test_manifests.py.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CONTAINERFILE = REPO / "Containerfile"
BASE = re.compile(
    r"registry\.access\.redhat\.com/ubi9/python-311:(?P<tag>[\w.-]+)@(?P<digest>sha256:[0-9a-f]{64})"
)
# RUN steps that only set file modes: nothing to repeat outside an image.
MODE_ONLY_RUNS = {"chmod -R g=u /opt/app-root/src"}


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in CONTAINERFILE.read_text().splitlines():
        if not current and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        current += raw.rstrip("\\").rstrip() + " " if raw.endswith("\\") else raw
        if not raw.endswith("\\"):
            lines.append(current)
            current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip()) for line in lines]


def values(kind: str) -> list[str]:
    return [args for instruction, args in instructions() if instruction == kind]


def env() -> dict[str, str]:
    pairs = {}
    for args in values("ENV"):
        for item in shlex.split(args):
            key, _, value = item.partition("=")
            pairs[key] = value
    return pairs


def pip_install() -> list[str]:
    (run,) = [shlex.split(r) for r in values("RUN") if "pip install" in r]
    return run


def test_base_image_is_ubi9_python_311_pinned_by_tag_and_digest():
    (base,) = values("FROM")
    m = BASE.fullmatch(base)
    assert m, (
        f"FROM must pin registry.access.redhat.com/ubi9/python-311:<tag>@sha256:<digest>: {base}"
    )
    assert m["tag"] != "latest"
    labels = " ".join(values("LABEL"))
    assert f'org.opencontainers.image.base.name="{base.split("@")[0]}"' in labels
    assert f'org.opencontainers.image.base.digest="{m["digest"]}"' in labels


def test_image_runs_the_runner_as_uid_1001_with_group_0():
    assert values("USER")[-1] == "1001"
    assert json.loads(values("ENTRYPOINT")[-1]) == ["python", "-m", "runner"]
    assert values("WORKDIR") == ["/opt/app-root/src"]
    for copy in values("COPY"):
        assert copy.startswith("--chown=1001:0 "), copy
    assert "chmod -R g=u /opt/app-root/src" in values("RUN")
    sources = {shlex.split(c)[1].rstrip("/") for c in values("COPY")}
    assert sources == {"requirements.txt", "runner", "pipelines"}


def test_install_uses_the_hashed_requirements_and_leaves_no_cache():
    args = pip_install()
    assert args[:4] == ["python", "-m", "pip", "install"]
    assert {"--require-hashes", "--no-cache-dir"} <= set(args)
    assert args[args.index("-r") + 1] == "requirements.txt"
    assert env()["PIP_NO_CACHE_DIR"] == "1"
    assert not [r for r in values("RUN") if re.search(r"\b(dnf|yum|microdnf|gcc|make)\b", r)]


def test_make_image_copies_what_the_containerfile_needs_into_its_context():
    done = subprocess.run(
        ["make", "-s", "-n", "image", "CONTAINER_TOOL=podman"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    (copy_line,) = [line for line in done.stdout.splitlines() if line.startswith("cp -R ")]
    copied = set(shlex.split(copy_line)[2:-1])
    needed = {shlex.split(c)[1].rstrip("/") for c in values("COPY")} | {"Containerfile"}
    assert needed <= copied
    assert "podman build -f build/image/Containerfile -t dsp-runner:" in done.stdout


def test_make_image_says_so_when_neither_podman_nor_buildah_is_there():
    done = subprocess.run(
        ["make", "-s", "image", "CONTAINER_TOOL="],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "neither podman nor buildah is on PATH" in done.stdout + done.stderr


@pytest.mark.integration
def test_the_image_environment_installs_and_runs_the_runner(tmp_path):
    """Same interpreter version, requirements file and pip command as the image. The one
    difference: pip's cache is allowed here (--no-cache-dir and PIP_NO_CACHE_DIR are dropped),
    so that a second run of the suite reuses built wheels; the result is the same packages."""
    assert sys.version_info[:2] == (3, 11), "the image's Python is 3.11"
    venv = tmp_path / "app-root"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    workdir = tmp_path / "src"
    image_env = {
        key: value.replace("/opt/app-root/src", str(workdir))
        for key, value in env().items()
        if key != "PIP_NO_CACHE_DIR"
    }
    run_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_"))},
        **image_env,
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
    }
    # Repeat the recipe in order: COPY, the pip RUN, nothing else (mode-only RUNs aside).
    workdir.mkdir()
    for instruction, args in instructions():
        if instruction == "COPY":
            _, source, target = shlex.split(args)
            destination = workdir / target
            if (REPO / source).is_dir():
                shutil.copytree(
                    REPO / source, destination, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                shutil.copy(REPO / source, destination)
        elif instruction == "RUN" and "pip install" in args:
            command = [a for a in pip_install() if a != "--no-cache-dir"]
            done = subprocess.run(
                command, cwd=workdir, env=run_env, capture_output=True, text=True, timeout=900
            )
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        elif instruction == "RUN":
            assert args in MODE_ONLY_RUNS, f"a RUN this test does not repeat: {args}"
    entrypoint = json.loads(values("ENTRYPOINT")[-1])
    check = subprocess.run(
        ["python", "-m", "pip", "check"], env=run_env, capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0, check.stdout + check.stderr

    # The Tekton step runs in the user's checkout: a runner/ folder there must not shadow the
    # image's own (PYTHONSAFEPATH).
    checkout = tmp_path / "checkout"
    (checkout / "runner").mkdir(parents=True)
    (checkout / "runner" / "__init__.py").write_text("raise SystemExit('imported the checkout')\n")
    helped = subprocess.run(
        [*entrypoint, "--help"],
        cwd=checkout,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert helped.returncode == 0, helped.stdout + helped.stderr
    assert "usage: dsp-runner" in helped.stdout

    # And kfp-tekton compiles the shipped pipelines in that environment.
    compiled = subprocess.run(
        [*entrypoint, "compile"],
        cwd=workdir,
        env={
            **run_env,
            "DSP_OUTPUT_DIR": str(tmp_path / "out"),
            "DSP_GIT_COMMIT": "0123456789abcdef0123456789abcdef01234567",
            "LOG_FORMAT": "json",
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["counts"]["failed"] == 0
    assert summary["counts"]["pipelines"] >= 1
