"""The image recipe cannot rot: the Containerfile's environment is rebuilt here and run.

One recipe builds either flavour (`--build-arg BACKEND=v1|v2`): v1 installs requirements.txt and
ships pipelines/, v2 requirements-v2.txt and pipelines_v2/. No container engine is needed: the
integration test runs the build stage's RUN as written, with each BACKEND, into a temporary venv
(same Python, same requirements files, same install commands, no cache), then lays out the final
stage's COPY instructions and runs its ENTRYPOINT with its ENV. The other tests read the recipe:
two stages, a runtime stage that is not an s2i builder, pinned bases, hash-checked installs.
hadolint's checks are in test_manifests.py.
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
# What each flavour installs and ships (the runner reads that pipelines folder by default).
FLAVOURS = {
    "v1": {"requirements": "requirements.txt", "pipelines": "pipelines"},
    "v2": {"requirements": "requirements-v2.txt", "pipelines": "pipelines_v2"},
}
# Where the build stage leaves the flavour's pipelines folder for the final stage.
APP = "/opt/app-root/build/app"
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
    """The Containerfile's stages, continuation lines joined and comments dropped (the global
    ARGs before the first FROM are not a stage's)."""
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
        elif not found:
            assert instruction.upper() == "ARG", f"only a global ARG comes before FROM: {line}"
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


def build_run() -> str:
    (build, _) = stages()
    (run,) = build.values("RUN")
    return run


def flavour_choice() -> dict[str, dict[str, str]]:
    """BACKEND -> the shell variables the build stage's `case` sets for it."""
    case, _ = re.split(r"\s+esac\s+", build_run(), maxsplit=1)
    assert case.startswith('case "$BACKEND" in '), case
    chosen = {}
    for branch in case.removeprefix('case "$BACKEND" in ').split(";;"):
        pattern, _, body = branch.strip().partition(")")
        if pattern in FLAVOURS:
            chosen[pattern] = dict(word.split("=", 1) for word in shlex.split(body))
    return chosen


def build_stage_commands() -> list[list[str]]:
    """The build stage's commands after the flavour is chosen."""
    _, rest = re.split(r"\s+esac\s+", build_run(), maxsplit=1)
    assert rest.startswith("&& "), rest
    return commands(rest.removeprefix("&& "))


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
    assert [shlex.split(c)[-2:] for c in copied_from_build] == [[VENV, VENV], [f"{APP}/", "./"]]


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
    assert sources == {VENV, "runner", APP}
    assert env(runtime)["PATH"].split(":")[0] == f"{VENV}/bin"


def test_each_flavour_installs_its_own_requirements_and_ships_its_own_pipelines():
    """BACKEND=v1 (the default) is today's image; v2 swaps the requirements and the folder."""
    from runner.flavour import PIPELINES_DIR

    assert flavour_choice() == FLAVOURS
    for backend, chosen in FLAVOURS.items():
        assert Path(chosen["pipelines"]) == PIPELINES_DIR[backend], "the runner's default folder"
    assert re.search(r"^ARG BACKEND=v1$", CONTAINERFILE.read_text(), re.M), "v1 is the default"
    build, runtime = stages()
    for stage in (build, runtime):
        assert "BACKEND" in stage.values("ARG"), "each stage that uses it declares it"
    labels = " ".join(runtime.values("LABEL"))
    for label in ("org.opencontainers.image.description", "io.k8s.display-name", "summary"):
        (value,) = re.findall(rf'{re.escape(label)}="([^"]*)"', labels)
        assert "${BACKEND}" in value, f"{label} must say which flavour the image is"
    for copy in build.values("COPY"):
        for source in shlex.split(copy)[1:-1]:
            assert (REPO / source).exists(), source
    after_choice = [" ".join(c) for c in build_stage_commands()]
    assert "mkdir app" in after_choice and "mv $pipelines app/" in after_choice


def test_an_unknown_backend_fails_the_build_in_one_line(tmp_path):
    """The build stage's RUN, run as written with BACKEND=v3: it stops before installing."""
    done = subprocess.run(
        ["/bin/sh", "-c", build_run()],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"], "BACKEND": "v3"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr == "BACKEND must be v1 (DSP 1.x) or v2 (DSP 2.x), not 'v3'\n"
    assert list(tmp_path.iterdir()) == []


def test_every_install_is_hash_checked_build_dependencies_first():
    create, build_deps, runtime_deps, *_ = build_stage_commands()
    assert create == ["/usr/bin/python3.11", "-m", "venv", VENV]
    build, _ = stages()
    assert env(build)["PATH"].split(":")[0] == f"{VENV}/bin", "`python` is the venv's"
    for install in (build_deps, runtime_deps):
        assert install[:4] == ["python", "-m", "pip", "install"]
        assert {"--require-hashes", "--no-cache-dir"} <= set(install)
    assert build_deps[build_deps.index("-r") + 1] == "requirements-build.txt"
    assert runtime_deps[runtime_deps.index("-r") + 1] == "$requirements"
    assert "--no-build-isolation" in runtime_deps, "sdists build with the hashed setuptools"
    assert env(build)["PIP_NO_CACHE_DIR"] == "1"


@pytest.mark.parametrize("backend", FLAVOURS)
def test_the_build_requirements_are_the_locked_ones(backend):
    """requirements-build.txt repeats each flavour's setuptools pin and hashes (`make lock`):
    both flavours build their sdists with it."""
    build = pins(REPO / "requirements-build.txt")
    locked = pins(REPO / FLAVOURS[backend]["requirements"])
    assert set(build) == {"setuptools"}
    for name, pinned in build.items():
        assert pinned == locked[name], name
        assert pinned[1], f"{name} has no hash"


def make_image_dry_run(*args: str) -> str:
    done = subprocess.run(
        ["make", "-s", "-n", "image", "CONTAINER_TOOL=podman", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def build_command(out: str) -> list[str]:
    (build_line,) = re.findall(r"^podman build .*?(?<!\\)$", out, re.M | re.S)
    return shlex.split(build_line.replace("\\\n", " "))


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
        "requirements-v2.txt",
        "runner",
        "pipelines",
        "pipelines_v2",
    }
    assert needed <= copied
    assert "podman build --platform linux/amd64 -f build/image/Containerfile -t dsp-runner:" in out


@pytest.mark.parametrize(("backend", "suffix"), [("v1", ""), ("v2", "-v2")])
def test_make_image_builds_the_chosen_flavour_under_its_own_tag(backend, suffix):
    """`make image BACKEND=v2` passes the build arg and tags dsp-runner:<version>-v2, so the two
    flavours never overwrite each other; plain `make image` stays dsp-runner:<version>."""
    from runner import __version__

    args = build_command(make_image_dry_run(f"BACKEND={backend}"))
    assert args[args.index("-t") + 1] == f"dsp-runner:{__version__}{suffix}"
    build_args = [args[i + 1] for i, a in enumerate(args) if a == "--build-arg"]
    assert f"BACKEND={backend}" in build_args
    if backend == "v1":
        assert build_command(make_image_dry_run()) == args, "v1 is the default"


def test_make_image_builds_the_platform_the_task_declares():
    """An arm64 laptop still builds the amd64 image the cluster runs."""
    task = yaml.safe_load((REPO / "tekton" / "task-dsp-runner.yaml").read_text())
    declared = task["metadata"]["annotations"]["tekton.dev/platforms"]
    args = build_command(make_image_dry_run())
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
@pytest.mark.parametrize("backend", FLAVOURS)
def test_the_image_environment_installs_and_runs_the_runner(tmp_path, backend):
    """The build stage's RUN, as written and with this BACKEND (no cache: the sdists really build
    with the hashed setuptools and no build isolation), with the venv in a temporary folder; then
    the final stage's files and ENV around it, and its ENTRYPOINT compiling the flavour's own
    pipelines. v2 takes about 20 s more than v1 here (measured: its install alone is 18 s)."""
    assert sys.version_info[:2] == (3, 11), "the image's Python is 3.11"
    venv = tmp_path / "venv"
    build, runtime = stages()
    (build_workdir,) = build.values("WORKDIR")
    assert build_workdir.startswith("/opt/app-root/")
    context = tmp_path / "build"
    context.mkdir()
    for copy in build.values("COPY"):
        args = shlex.split(copy)
        for source in args[1:-1]:
            if (REPO / source).is_dir():
                shutil.copytree(
                    REPO / source, context / source, ignore=shutil.ignore_patterns("__pycache__")
                )
            else:
                shutil.copy(REPO / source, context / source)
    plain = {
        k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_"))
    }
    base_python = Path(getattr(sys, "_base_executable", sys.executable))

    def local(arg: str) -> str:
        return arg.replace(VENV, str(venv)).replace("/usr/bin/python3.11", str(base_python))

    build_env = {key: local(value) for key, value in env(build).items()}
    build_env["PATH"] = f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"
    done = subprocess.run(
        ["/bin/sh", "-c", local(build_run())],
        cwd=context,
        env={**plain, **build_env, "BACKEND": backend},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    # The final stage: runner/ and the flavour's pipelines folder in the workdir, the venv first
    # on PATH.
    workdir = tmp_path / "src"
    for copy in runtime.values("COPY"):
        args = shlex.split(copy)
        source, target = args[-2], args[-1]
        if "--from=build" in args and source.rstrip("/") == APP:
            source_dir = context / Path(APP).relative_to(build_workdir)
        elif any(a.startswith("--from=") for a in args):
            continue
        else:
            source_dir = REPO / source
        shutil.copytree(
            source_dir,
            workdir / target,
            ignore=shutil.ignore_patterns("__pycache__"),
            dirs_exist_ok=True,
        )
    assert sorted(p.name for p in workdir.iterdir()) == sorted(
        ["runner", FLAVOURS[backend]["pipelines"]]
    ), "the flavour's pipelines folder only"
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
        ["python", "-c", "import sys, kfp; print(sys.prefix); print(kfp.__version__)"],
        env=run_env,
        capture_output=True,
        text=True,
    )
    prefix, kfp_version = located.stdout.split()
    assert prefix == str(venv), "ENTRYPOINT's python is the venv's"
    assert kfp_version.split(".")[0] == backend.removeprefix("v"), "the flavour's kfp"

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

    # And the flavour's SDK compiles the image's own pipelines (its default folder).
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
    assert summary["counts"]["pipelines"] >= 3
