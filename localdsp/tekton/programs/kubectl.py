"""`kubectl delete` of a PersistentVolumeClaim, which `dsl.VolumeOp(...).delete()` compiles to.

kfp-tekton compiles a VolumeOp's `delete()` to a step of image `gcr.io/cloud-builders/kubectl`
running `kubectl delete PersistentVolumeClaim <name> --ignore-not-found --output name
--wait=false`. Here the claim is a folder (see `localdsp/tekton/volumes.py`), so deleting it
removes the folder and prints what kubectl prints (`persistentvolumeclaim/<name>`; nothing for a
missing claim with `--ignore-not-found`, else kubectl's NotFound error). Any other kubectl
command needs a Kubernetes API server: `refusal` names it and the executor refuses the run
before it starts, so a step never reaches the cluster this machine's own kubectl points at.

Standalone (stdlib only): the step runs it as a script with the executor's Python.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

CLAIM_KINDS = {"persistentvolumeclaim", "persistentvolumeclaims", "pvc"}
_FLAGS = {"--ignore-not-found", "--ignore-not-found=true", "--wait=false", "--wait=true"}


def parse(args: list[str]) -> tuple[list[str], set[str], str]:
    """(words, flags, output format) of a kubectl command line."""
    words, flags, output, index = [], set(), "", 0
    while index < len(args):
        arg = args[index]
        if arg in ("--output", "-o") and index + 1 < len(args):
            output, index = args[index + 1], index + 2
            continue
        if arg.startswith(("--output=", "-o=")):
            output = arg.split("=", 1)[1]
        elif arg.startswith("-"):
            flags.add(arg)
        else:
            words.append(arg)
        index += 1
    return words, flags, output


def refusal(args: list[str]) -> str | None:
    """Why this kubectl command cannot run locally, else None."""
    words, flags, output = parse(args)
    if len(words) == 3 and words[0] == "delete" and words[1].lower() in CLAIM_KINDS:
        unknown = sorted(flags - _FLAGS)
        if not unknown and output in ("", "name"):
            return None
        return f"kubectl delete with {', '.join(unknown) or '--output ' + output}"
    return (
        f"kubectl {words[0] if words else '(no command)'} needs a Kubernetes API server; only "
        "deleting a PersistentVolumeClaim (a VolumeOp's delete()) runs locally"
    )


def main(args: list[str]) -> int:
    reason = refusal(args)
    if reason:
        print(f"kubectl: {reason}", file=sys.stderr)
        return 1
    words, flags, output = parse(args)
    name = words[2]
    folder = Path(os.environ["LOCALDSP_CLAIMS"]) / name
    if not folder.is_dir():
        if "--ignore-not-found" in flags or "--ignore-not-found=true" in flags:
            return 0
        print(f'Error from server (NotFound): persistentvolumeclaims "{name}" not found')
        return 1
    shutil.rmtree(folder)
    print(
        f"persistentvolumeclaim/{name}"
        if output == "name"
        else f'persistentvolumeclaim "{name}" deleted'
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
