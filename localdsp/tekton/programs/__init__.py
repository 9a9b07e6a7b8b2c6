"""Local stand-ins for the programs of kfp-tekton's own images, which are not pulled here.

Some steps kfp-tekton writes run a program that exists only in its image: `kubeclient` in
`aipipeline/kubectl-wrapper` (a `dsl.VolumeOp` or `dsl.ResourceOp`), `kubectl` in
`cloud-builders/kubectl` (a VolumeOp's `delete()`) and `any-task` in `aipipeline/any-sequencer`
(`kfp_tekton.tekton.AnySequencer`, `after_any`). Each has a module here that behaves as that
program does, run as the step's process with this Python (so cancel, timeouts and logs work as
for any step). What one of them cannot do locally (a resource op on anything but a claim, any
kubectl command but a claim's deletion) is refused before the run starts, never sent to the
cluster this machine's own kubectl may point at. The executor hands a stand-in what the pod would
have had through variables: `LOCALDSP_RESULTS` (its `/tekton/results`), `LOCALDSP_CLAIMS` (the
claims' folder), `LOCALDSP_NAMESPACE`, `LOCALDSP_PIPELINERUN` (the live PipelineRun with its
status, as JSON, kept current by the scheduler: what a program would watch through the API
server).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from localdsp.tekton.programs import kubeclient, kubectl

_HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Program:
    """A program of kfp-tekton's images: its command, the image it comes in, its stand-in."""

    command: str
    image: str  # a part of the image's name
    script: str

    def argv(self, args: list[str]) -> list[str]:
        return [sys.executable, str(_HERE / self.script), *args]


PROGRAMS = (
    Program("kubeclient", "kubectl-wrapper", "kubeclient.py"),
    Program("any-task", "any-sequencer", "any_task.py"),
    Program("kubectl", "kubectl", "kubectl.py"),
)


def program_for(argv: list[str], image: str) -> Program | None:
    """The stand-in for a step that runs one of these programs from its own image."""
    if not argv:
        return None
    command = Path(argv[0]).name
    return next((p for p in PROGRAMS if p.command == command and p.image in image), None)


def watches_the_run(task_spec: dict) -> bool:
    """Whether a task waits for others to end (an any-sequencer), so it must not hold one of
    the run's task slots: on a cluster every ready task runs at once."""
    steps = [{**(task_spec.get("stepTemplate") or {}), **s} for s in task_spec.get("steps") or []]
    return any(
        (program := program_for(list(s.get("command") or []), str(s.get("image", ""))))
        and program.command == "any-task"
        for s in steps
    )


def refusal(program: Program, args: list[str]) -> str | None:
    """Why this use of the program cannot run locally, else None."""
    if program.command == "kubeclient":
        return kubeclient.refusal(args)
    if program.command == "kubectl":
        return kubectl.refusal(args)
    return None
