"""The image recipe cannot rot: the Containerfile's environment is rebuilt here and run.

No container engine is needed: the integration test reads the build stage's pip RUN, repeats it
in a temporary venv (same Python, same requirements files, same install commands, no cache), then
lays out the final stage's COPY instructions and runs its ENTRYPOINT with its ENV. The other
tests read the recipe: two stages, a runtime stage that is not an s2i builder, pinned bases,
hash-checked installs. hadolint's checks are in test_manifests.py.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
CONTAINERFILE = REPO / "Containerfile"
BUILDER = re.compile(
    r"registry\.access\.redhat\.com/ubi9/python-311:(?P<tag>[\w.-]+)@(?P<digest>sha256:[0-9a-f]{64})"
)
RUNTIME = re.compile(
    r"registry\.access\.redhat\.com/ubi9/ubi-minimal:(?P<tag>[\w.-]+)@(?P<digest>sha256:[0-9a-f]{64})"
)
VENV = "/opt/app-root/venv"
# The runtime stage installs exactly these RPMs: the venv's interpreter, git and ssh.
RUNTIME_RPMS = {"python3.11", "git-core", "openssh-clients"}
# What makes an image a builder: none of it may reach the runtime stage.
BUILDER_TRAITS = re.compile(r"\b(gcc|g\+\+|make|npm|nodejs|httpd|[\w.+-]+-devel|s2i)\b")


@dataclass
class Stage:
    base: str
    name: str
    steps: list[tuple[str, str]] = field(default_factory=list)

    def values(self, kind: str) -> list[str]:
        return [args for instruction, args in self.steps if instruction == kind]


def stages() -> list[Stage]:
    """The Containerfile's stages, continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in CONTAINERFILE.read_text().splitlines():
        if not current and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        current += raw.rstrip("\\").rstrip() + " " if raw.endswith("\\") else raw
        if not raw.endswith("\\"):
            lines.append(current)
            current = ""
    found: list[Stage] = []
    for line in lines:
        instruction, args = line.split(None, 1)
        if instruction.upper() == "FROM":
            base, _, name = args.partition(" AS ")
            found.append(Stage(base.strip(), name.strip()))
        else:
            found[-1].steps.append((instruction.upper(), args.strip()))
    return found


def env(stage: Stage) -> dict[str, str]:
    pairs = {}
    for args in stage.values("ENV"):
        for item in shlex.split(args):
            key, _, value = item.partition("=")
            pairs[key] = value
    return pairs


def commands(run: str) -> list[list[str]]:
    """The commands of one RUN, split at `&&`."""
    return [shlex.split(part) for part in run.split("&&")]


def build_stage_commands() -> list[list[str]]:
    (build, _) = stages()
    (run,) = build.values("RUN")
    return commands(run)


def pins(path: Path) -> dict[str, tuple[str, frozenset[str]]]:
    """package -> (version, hashes) of a pip-compile'd requirements file."""
    text = path.read_text().replace("\\\n", " ")
    found = {}
    for line in text.splitlines():
        if m := re.match(r"^([A-Za-z0-9_.-]+)==(\S+)\s+(.*)$", line):
            hashes = frozenset(re.findall(r"--hash=(sha256:[0-9a-f]{64})", m.group(3)))
            found[m.group(1).lower()] = (m.group(2), hashes)
    return found


def test_two_stages_on_pinned_ubi9_bases():
    build, runtime = stages()
    assert build.name == "build" and not runtime.name
    m = BUILDER.fullmatch(build.base)
    assert m, f"the build stage must be ubi9/python-311:<tag>@sha256:<digest>: {build.base}"
    r = RUNTIME.fullmatch(runtime.base)
    assert r, f"the final stage must be ubi9/ubi-minimal:<tag>@sha256:<digest>: {runtime.base}"
    assert "latest" not in (m["tag"], r["tag"])
    labels = " ".join(runtime.values("LABEL"))
    assert f'org.opencontainers.image.base.name="{runtime.base.split("@")[0]}"' in labels
    assert f'org.opencontainers.image.base.digest="{r["digest"]}"' in labels


def test_the_final_stage_is_a_runtime_not_an_s2i_builder():
    """No builder base, no compilers or package sources, no s2i labels or port: a job image."""
    _, runtime = stages()
    assert not BUILDER.match(runtime.base) and "s2i" not in runtime.base
    assert runtime.values("EXPOSE") == [] and runtime.values("CMD") == []
    labels = " ".join(runtime.values("LABEL"))
    assert "io.openshift.s2i" not in labels and "io.openshift.expose-services" not in labels
    assert "io.openshift.tags" not in labels, "our own labels only, not the builder's"
    (install,) = runtime.values("RUN")[:1]
    first, *rest = commands(install)
    assert first[:3] == ["microdnf", "install", "-y"]
    assert {"--nodocs", "--setopt=install_weak_deps=0"} <= set(first)
    assert {a for a in first[3:] if not a.startswith("-")} == RUNTIME_RPMS
    assert rest == [["microdnf", "clean", "all"]]
    for run in runtime.values("RUN"):
        assert not BUILDER_TRAITS.search(run), run
    copied_from_build = [c for c in runtime.values("COPY") if c.startswith("--from=build")]
    assert [shlex.split(c)[-2:] for c in copied_from_build] == [[VENV, VENV]]


def test_image_runs_the_runner_as_uid_1001_with_group_0():
    _, runtime = stages()
    assert runtime.values("USER")[-1] == "1001"
    assert json.loads(runtime.values("ENTRYPOINT")[-1]) == ["python", "-m", "runner"]
    assert runtime.values("WORKDIR") == ["/opt/app-root/src"]
    for copy in runtime.values("COPY"):
        assert "--chown=1001:0" in shlex.split(copy), copy
    assert "chmod -R g=u /opt/app-root/src" in runtime.values("RUN")
    assert ["chmod", "-R", "g=u", VENV] in build_stage_commands()
    sources = {shlex.split(c)[-2].rstrip("/") for c in runtime.values("COPY")}
    assert sources == {VENV, "runner", "pipelines"}
    assert env(runtime)["PATH"].split(":")[0] == f"{VENV}/bin"


def test_every_install_is_hash_checked_build_dependencies_first():
    create, build_deps, runtime_deps, _ = build_stage_commands()
    assert create == ["/usr/bin/python3.11", "-m", "venv", VENV]
    build, _ = stages()
    assert env(build)["PATH"].split(":")[0] == f"{VENV}/bin", "`python` is the venv's"
    for install in (build_deps, runtime_deps):
        assert install[:4] == ["python", "-m", "pip", "install"]
        assert {"--require-hashes", "--no-cache-dir"} <= set(install)
    assert build_deps[build_deps.index("-r") + 1] == "requirements-build.txt"
    assert runtime_deps[runtime_deps.index("-r") + 1] == "requirements.txt"
    assert "--no-build-isolation" in runtime_deps, "sdists build with the hashed setuptools"
    assert env(build)["PIP_NO_CACHE_DIR"] == "1"


def test_the_build_requirements_are_the_locked_ones():
    """requirements-build.txt repeats requirements.txt's pins and hashes (made by `make lock`)."""
    build = pins(REPO / "requirements-build.txt")
    locked = pins(REPO / "requirements.txt")
    assert set(build) == {"setuptools"}
    for name, pinned in build.items():
        assert pinned == locked[name], name
        assert pinned[1], f"{name} has no hash"


def make_image_dry_run() -> str:
    done = subprocess.run(
        ["make", "-s", "-n", "image", "CONTAINER_TOOL=podman"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_image_copies_what_the_containerfile_needs_into_its_context():
    out = make_image_dry_run()
    (copy_line,) = [line for line in out.splitlines() if line.startswith("cp -R ")]
    copied = set(shlex.split(copy_line)[2:-1])
    needed = {"Containerfile"}
    for stage in stages():
        for copy in stage.values("COPY"):
            args = shlex.split(copy)
            if not any(a.startswith("--from=") for a in args):
                needed |= {a.rstrip("/") for a in args[:-1] if not a.startswith("--")}
    assert needed == {
        "Containerfile",
        "requirements-build.txt",
        "requirements.txt",
        "runner",
        "pipelines",
    }
    assert needed <= copied
    assert "podman build --platform linux/amd64 -f build/image/Containerfile -t dsp-runner:" in out


def test_make_image_builds_the_platform_the_task_declares():
    """An arm64 laptop still builds the amd64 image the cluster runs."""
    task = yaml.safe_load((REPO / "tekton" / "task-dsp-runner.yaml").read_text())
    declared = task["metadata"]["annotations"]["tekton.dev/platforms"]
    (build_line,) = [line for line in make_image_dry_run().splitlines() if " build " in line]
    args = shlex.split(build_line.rstrip("\\"))
    assert args[args.index("--platform") + 1] == declared == "linux/amd64"


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
    """The build stage's commands, as written (no cache: the sdists really build with the hashed
    setuptools and no build isolation), with the venv in a temporary folder; then the final
    stage's files and ENV around it, and its ENTRYPOINT."""
    assert sys.version_info[:2] == (3, 11), "the image's Python is 3.11"
    venv = tmp_path / "venv"
    build, runtime = stages()
    (build_workdir,) = build.values("WORKDIR")
    context = tmp_path / "build"
    context.mkdir()
    for copy in build.values("COPY"):
        for source in shlex.split(copy)[1:-1]:
            shutil.copy(REPO / source, context / source)
    plain = {
        k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_"))
    }
    base_python = Path(getattr(sys, "_base_executable", sys.executable))

    def local(arg: str) -> str:
        return arg.replace(VENV, str(venv)).replace("/usr/bin/python3.11", str(base_python))

    build_env = {key: local(value) for key, value in env(build).items()}
    build_env["PATH"] = f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"
    for command in build_stage_commands():
        done = subprocess.run(
            [local(a) for a in command],
            cwd=context,
            env={**plain, **build_env},
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert done.returncode == 0, (command, done.stdout[-3000:] + done.stderr[-3000:])
    assert build_workdir.startswith("/opt/app-root/")

    # The final stage: runner/ and pipelines/ in the workdir, the venv first on PATH.
    workdir = tmp_path / "src"
    for copy in runtime.values("COPY"):
        args = shlex.split(copy)
        if any(a.startswith("--from=") for a in args):
            continue
        source, target = args[-2], args[-1]
        shutil.copytree(
            REPO / source, workdir / target, ignore=shutil.ignore_patterns("__pycache__")
        )
    image_env = {
        key: local(value).replace("/opt/app-root/src", str(workdir))
        for key, value in env(runtime).items()
    }
    image_env["PATH"] = image_env["PATH"].replace(
        ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", ":" + os.environ["PATH"]
    )
    run_env = {**plain, **image_env}
    entrypoint = json.loads(runtime.values("ENTRYPOINT")[-1])
    check = subprocess.run(
        ["python", "-m", "pip", "check"], env=run_env, capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0, check.stdout + check.stderr
    located = subprocess.run(
        ["python", "-c", "import sys; print(sys.prefix)"],
        env=run_env,
        capture_output=True,
        text=True,
    )
    assert located.stdout.strip() == str(venv), "ENTRYPOINT's python is the venv's"

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
