"""kfp-tekton's kubectl-wrapper (`kubeclient`), for the one resource a run can own locally: a
PersistentVolumeClaim.

A `dsl.VolumeOp` (and any `dsl.ResourceOp`) compiles to a step of image
`quay.io/aipipeline/kubectl-wrapper` running `kubeclient --action=create --manifest=<YAML>
--output=<list of name/valueFrom> --success-condition=... --failure-condition=...`
(kfp-tekton 1.5.x `tekton-catalog/kubectl-wrapper/cmd/client/main.go`). It creates the resource
with kubectl, waits for the conditions (a label selector over the object's fields), then writes one
Tekton result per output: `kubectl get -o jsonpath=<valueFrom>`, bytes as printed.

Here, run as that step's process, a claim is a folder of the run (`$LOCALDSP_CLAIMS/<name>`,
shared by the tasks that mount it, see `localdsp/tekton/volumes.py`), and the object is the one
the API server would hand back: the manifest with its name (a `generateName` completed with five
random characters), namespace, uid, creation time and `volumeMode: Filesystem`, status
`Pending`. A claim only binds when a success condition waits for it: it is then `Bound` with the
capacity it asked for (what a provisioner of exact sizes gives). `delete` removes the folder.
Any other kind or action needs a Kubernetes API server: `refusal` names it, and the executor
refuses the run before it starts.

Standalone (stdlib and PyYAML): the step runs it as a script with the executor's Python.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import string
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import yaml

ACTIONS = ("create", "delete")
KIND = "PersistentVolumeClaim"
_JSONPATH = re.compile(r"\{(\.[\w.-]*)?\}")
_REQUIREMENT = re.compile(
    r"^\s*(?P<neg>!)?\s*(?P<key>[\w./-]+)\s*"
    r"(?:(?P<op>==|=|!=|>|<|\s+in\s+|\s+notin\s+)\s*(?P<value>\([^)]*\)|[\w.-]*))?\s*$"
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The wrapper's flags (Go `flag`: `--name=value` or `--name value`)."""
    parser = argparse.ArgumentParser(prog="kubeclient", allow_abbrev=False)
    parser.add_argument("--action", default="delete")
    parser.add_argument("--merge-strategy", default="strategic")
    parser.add_argument("--manifest", default="")
    parser.add_argument("--success-condition", default="")
    parser.add_argument("--failure-condition", default="")
    parser.add_argument("--output", default="")
    parser.add_argument("--set-ownerreference", default="false")
    return parser.parse_args(argv)


def refusal(argv: list[str]) -> str | None:
    """Why this resource op cannot run locally (it needs a Kubernetes API server), else None."""
    try:
        args = parse_args(argv)
        manifest = yaml.safe_load(args.manifest) or {}
    except (SystemExit, yaml.YAMLError):
        return "its arguments are not the kubectl-wrapper's"
    kind = manifest.get("kind", "") if isinstance(manifest, dict) else ""
    if args.action not in ACTIONS or kind != KIND:
        return (
            f"it would {args.action} a {kind or 'resource'} with kubectl (a resource op): only "
            f"creating and deleting a {KIND} (a VolumeOp) runs locally, anything else needs a "
            "Kubernetes API server"
        )
    if (manifest.get("spec") or {}).get("dataSource") or (manifest.get("spec") or {}).get(
        "dataSourceRef"
    ):
        return "its claim is made from a data source (a volume snapshot), which is cluster state"
    return None


def created(manifest: dict, namespace: str) -> dict:
    """The object the API server answers a create with."""
    metadata = dict(manifest.get("metadata") or {})
    if not metadata.get("name"):
        suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))  # noqa: S311
        metadata["name"] = f"{metadata.pop('generateName', 'claim-')}{suffix}"
    metadata.pop("generateName", None)
    metadata.update(
        namespace=metadata.get("namespace") or namespace,
        uid=str(uuid.uuid4()),
        resourceVersion="1",
        creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    spec = {"volumeMode": "Filesystem", **(manifest.get("spec") or {})}
    return {**manifest, "metadata": metadata, "spec": spec, "status": {"phase": "Pending"}}


def bound(claim: dict) -> dict:
    """The claim once a volume of the size it asked for is bound to it."""
    spec = claim["spec"]
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    status = {"phase": "Bound", "accessModes": spec.get("accessModes", [])}
    if storage is not None:
        status["capacity"] = {"storage": storage}
    return {**claim, "status": status}


def field(obj: dict, path: str) -> object:
    """A dotted field of the object (gjson's and kubectl's `.a.b`), None when absent."""
    value: object = obj
    for part in [p for p in path.split(".") if p]:
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def text_of(value: object) -> str:
    """How kubectl's jsonpath prints a value: strings raw, the rest as JSON (keys sorted, as
    Go marshals a map)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def jsonpath(obj: dict, template: str) -> str:
    """`kubectl get -o jsonpath=<template>` for templates of plain field paths (`{}`, `{.a.b}`,
    and text around them); a missing field prints nothing."""
    if "{" in template and not _JSONPATH.search(template):
        raise ValueError(f"jsonpath {template!r} is not supported locally")
    return _JSONPATH.sub(lambda m: text_of(field(obj, (m.group(1) or "")[1:])), template)


def matches(obj: dict, selector: str) -> bool:
    """Whether every requirement of a label-selector expression holds over the object's fields
    (`status.phase = Bound`, `!x`, `a in (b,c)`, `n > 1`), as the wrapper evaluates them."""
    for requirement in [r for r in selector.split(",") if r.strip()]:
        found = _REQUIREMENT.match(requirement)
        if found is None:
            raise ValueError(f"condition {requirement.strip()!r} is not a label selector")
        if not _holds(obj, found):
            return False
    return True


def _holds(obj: dict, found: re.Match) -> bool:
    value = field(obj, found["key"])
    text = None if value is None else text_of(value)
    op = (found["op"] or "").strip()
    wanted = (found["value"] or "").strip("()")
    if not op:
        return (text is None) if found["neg"] else (text is not None)
    if op in ("=", "=="):
        return text == wanted
    if op == "!=":
        return text != wanted
    choices = {c.strip() for c in wanted.split(",")}
    if op == "in":
        return text in choices
    if op == "notin":
        return text not in choices
    try:
        number, limit = float(text or ""), float(wanted)
    except ValueError:
        return False
    return number > limit if op == ">" else number < limit


def outputs(spec: str) -> list[tuple[str, str]]:
    """The `--output` list: (result name, jsonpath) pairs with both set."""
    items = yaml.safe_load(spec) or []
    pairs = []
    for item in items:
        name, path = str(item.get("name") or ""), str(item.get("valueFrom") or "").strip()
        if name and path:
            pairs.append((name, path))
    return pairs


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    reason = refusal(argv)
    if reason:
        print(f"kubeclient: {reason}", file=sys.stderr)
        return 1
    claims = Path(os.environ["LOCALDSP_CLAIMS"])
    manifest = yaml.safe_load(args.manifest)
    if args.action == "delete":
        name = str((manifest.get("metadata") or {}).get("name", ""))
        shutil.rmtree(claims / name, ignore_errors=True)
        print(f"persistentvolumeclaim/{name} deleted")
        return 0
    claim = created(manifest, os.environ.get("LOCALDSP_NAMESPACE", "default"))
    name = claim["metadata"]["name"]
    try:
        (claims / name).mkdir(parents=True)
    except FileExistsError:
        print(f'Error from server (AlreadyExists): persistentvolumeclaims "{name}" already exists')
        return 1
    print(f"persistentvolumeclaim/{name} created")
    if args.success_condition or args.failure_condition:
        claim = bound(claim)
        if args.failure_condition and matches(claim, args.failure_condition):
            print(f"Action failed: {claim['metadata']['namespace']}/{name}")
            return 1
        if args.success_condition and not matches(claim, args.success_condition):
            print(f"success condition {args.success_condition!r} never holds for a local claim")
            return 1
    results = Path(os.environ["LOCALDSP_RESULTS"])
    for result, path in outputs(args.output):
        (results / result).write_text(jsonpath(claim, path))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
