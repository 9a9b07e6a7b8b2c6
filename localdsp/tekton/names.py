"""Names Tekton gives the objects it creates for a PipelineRun: TaskRuns, Runs and pods.

Kubernetes names are at most 63 characters, so Tekton derives a child's name with knative's
`kmeta.ChildName`: the parent's name and a suffix, and when that is too long the parent cut short
with the MD5 of the whole parent name in between. Steps see these names (a pod's
`metadata.name` through the downward API, `$(context.taskRun.name)`), so they are computed the
same way here.
"""

from __future__ import annotations

import hashlib

LONGEST = 63
_MD5_LEN = 32
_HEAD = LONGEST - _MD5_LEN


def child_name(parent: str, suffix: str) -> str:
    """knative's `kmeta.ChildName(parent, suffix)`."""
    if len(parent) <= LONGEST - len(suffix):
        return parent + suffix
    if _HEAD - len(suffix) <= 0:
        digest = hashlib.md5((parent + suffix).encode(), usedforsecurity=False).hexdigest()
        name = parent[:_HEAD] + digest
        name += suffix[: max(0, LONGEST - len(name))]
        return _valid_end(name)
    digest = hashlib.md5(parent.encode(), usedforsecurity=False).hexdigest()
    return parent[: _HEAD - len(suffix)] + digest + suffix


def _valid_end(name: str) -> str:
    """A DNS-1123 name ends with a letter or digit."""
    while name and not name[-1].isalnum():
        name = name[:-1]
    return name


def taskrun_name(pipelinerun: str, task: str) -> str:
    """A pipeline task's TaskRun (or Run): `<pipelinerun>-<task>`, as Tekton 0.41 names it."""
    return child_name(pipelinerun, f"-{task}")


def pod_name(taskrun: str, retry: int = 0) -> str:
    """The pod of a TaskRun's attempt: `<taskrun>-pod`, `<taskrun>-pod-retry1` for the first
    retry (Tekton's `pod.MakePod`)."""
    return child_name(taskrun, f"-pod-retry{retry}" if retry else "-pod")
