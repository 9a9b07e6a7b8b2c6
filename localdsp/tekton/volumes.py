"""A task's pod volumes as folders of the run, and its steps' mounts as paths into them.

kfp-tekton mounts volumes into steps: an `emptyDir` (its own artifact folders `/tmp/inputs/<x>`
and `/tmp/outputs/<x>`, or `add_volume`) lives as long as the pod; a `persistentVolumeClaim` (a
`dsl.VolumeOp`'s claim, `add_pvolumes`) outlives it and is shared by every pod that mounts it.
Steps here are local processes, not containers, so nothing can be mounted. Instead each volume is
a folder: an emptyDir one in the task's folder, made empty again for every attempt (a new pod), a
claim `<claims>/<claim name>`, where `<claims>` is the namespace's claims folder (localdsp's
`<data dir>/claims`, so claims outlive runs as on a cluster; `LOCALDSP_CLAIMS`, else the run's
`_claims`). A VolumeOp's emulation (`localdsp/tekton/programs/kubeclient.py`) makes the folder;
a claim made outside the run must already be there, as a pod waits for a claim that does not
exist. Every mount path a step names in its command, args,
script, env values, working dir or params is rewritten to that folder, as `/tekton/results/`
is. A program that puts a mount path together at run time, out of pieces none of which is the
path, is not rewritten: it would reach this machine's own path.

A workspace's volumeClaimTemplate is a new claim per PipelineRun (a folder of the run), except
for a storage class whose claims all show one bucket (`BUCKET_CLASSES`): the bucket's folder.

ConfigMap, Secret and the other volume kinds hold cluster state: they are refused by name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from localdsp.tekton.validation import RunError

LOCAL_KINDS = ("emptyDir", "persistentVolumeClaim")
CLAIMS_FOLDER = "_claims"
CLAIMS_VARIABLE = "LOCALDSP_CLAIMS"  # steps and nested runs learn the claims' folder from it
# Storage classes whose every claim shows the same bucket → the bucket's folder among the claims
# (a name no claim can have). kfp-tekton's install makes `kfp-csi-s3`, its default for big-data
# passing workspaces: datashim's csi-s3 mounting the one bucket its secret names (`mlpipeline`).
# That is why kfp-tekton keeps a run's files under `artifacts/$ORIG_PR_NAME/` and why a loop's
# iterations, each a PipelineRun with a claim of its own, read what the run's tasks wrote.
BUCKET_CLASSES = {"kfp-csi-s3": "_bucket-mlpipeline"}
_MOUNT_KEYS = {"name", "mountPath", "subPath", "readOnly"}


@dataclass(frozen=True)
class Volumes:
    """An attempt's volumes: emptyDir folders to make empty, claim name → folder that must exist,
    and every volume's folder by volume name."""

    empty: tuple[Path, ...]
    claims: dict[str, Path]
    folders: dict[str, Path]


NO_VOLUMES = Volumes((), {}, {})


def check_volumes(task: str, spec: dict) -> None:
    """Refuse what cannot be a local folder, before anything runs: cluster-state volumes by
    name, mounts of undeclared volumes, mount fields with no local meaning."""
    declared = set()
    for volume in spec.get("volumes") or []:
        name = str(volume.get("name", ""))
        kind = next((k for k in volume if k != "name"), "nothing")
        if kind not in LOCAL_KINDS:
            raise RunError(
                "PipelineValidationFailed",
                f'task "{task}" volume "{name}" is a {kind} volume, which holds cluster state '
                "the local executor does not have (it runs emptyDir and persistentVolumeClaim "
                "volumes as folders)",
            )
        declared.add(name)
    for step in [spec.get("stepTemplate") or {}, *(spec.get("steps") or [])]:
        for mount in step.get("volumeMounts") or []:
            _check_mount(task, str(step.get("name") or "stepTemplate"), mount, declared)


def _check_mount(task: str, step: str, mount: dict, declared: set[str]) -> None:
    where = f'task "{task}" step "{step}" volumeMounts "{mount.get("name", "")}"'
    unknown = sorted(set(mount) - _MOUNT_KEYS)
    if unknown:
        raise RunError(
            "PipelineValidationFailed",
            f"{where} uses {', '.join(unknown)}, not supported by the local executor",
        )
    if mount.get("name") not in declared:
        raise RunError("PipelineValidationFailed", f"{where}: the task has no such volume")
    path = str(mount.get("mountPath", ""))
    if not path.startswith("/") or path.rstrip("/") == "":
        raise RunError(
            "PipelineValidationFailed",
            f"{where}: mountPath {path!r} cannot be a folder of the local executor "
            "(it needs an absolute path below /)",
        )


def task_volumes(
    spec: dict, task_dir: Path, claim: Callable[[str], Path], resolve: Callable[[object], str]
) -> Volumes:
    """Each volume's folder: emptyDir in the task's folder, a claim its claim's (`claim`)."""
    empty, claims, folders = [], {}, {}
    for volume in spec.get("volumes") or []:
        name = str(volume["name"])
        if "emptyDir" in volume:
            folders[name] = task_dir / "volumes" / name
            empty.append(folders[name])
        else:
            claim_name = resolve(volume["persistentVolumeClaim"].get("claimName", ""))
            claims[claim_name] = folders[name] = claim(claim_name)
    return Volumes(tuple(empty), claims, folders)


def claim_folder(claims: Path, claim: str) -> Path:
    """Where a PersistentVolumeClaim keeps its files, in the folder of the namespace's claims."""
    return claims / claim


def mount_paths(step: dict, folders: Mapping[str, Path]) -> list[tuple[str, Path]]:
    """The step's (mount path, local folder) pairs, the longest path first so a mount inside
    another wins."""
    mounts = []
    for mount in step.get("volumeMounts") or []:
        folder = folders[str(mount["name"])]
        if mount.get("subPath"):
            folder = folder / str(mount["subPath"])
        mounts.append((str(mount["mountPath"]).rstrip("/"), folder))
    return sorted(mounts, key=lambda m: -len(m[0]))


def rewriter(mounts: list[tuple[str, Path]]) -> Callable[[str], str]:
    """A function that turns the step's mount paths in a text into their local folders.

    A mount path counts where it is a whole path or a path's first part (`/mnt`, `/mnt/x`), not
    inside another path (`/data/mnt`) or name (`/mnt2`).
    """
    if not mounts:
        return lambda text: text
    local = {path: str(folder) for path, folder in mounts}
    pattern = re.compile(
        r"(?<![\w./-])(" + "|".join(re.escape(path) for path, _ in mounts) + r")(?![\w.-])"
    )
    return lambda text: pattern.sub(lambda m: local[m.group(1)], text)


def missing_claim(volumes: Volumes) -> str | None:
    """The first claim the attempt mounts that does not exist (no folder), else None."""
    return next((claim for claim, folder in volumes.claims.items() if not folder.is_dir()), None)


def merge_mounts(template: dict, step: dict) -> list[dict]:
    """stepTemplate and step volumeMounts merged by mountPath, the step's winning (the strategic
    merge Tekton applies)."""
    merged = {m.get("mountPath"): m for m in template.get("volumeMounts") or []}
    merged.update({m.get("mountPath"): m for m in step.get("volumeMounts") or []})
    return list(merged.values())
