"""kfp-tekton's any-sequencer (`any-task`): go on when any of the watched tasks succeeds.

`kfp_tekton.tekton.AnySequencer` / `after_any` compile to a step of image
`quay.io/aipipeline/any-sequencer` running `any-task --namespace N --prName P [--taskList a,b]
[--statusPath F] [--skippingPolicy skipOnNoMatch|errorOnNoMatch] [--errorPolicy
continueOnError|failOnError] [-c 'results_<task>_<result> <op> <operand>' ...]`. The program
(kfp-tekton 1.5.x `tekton-catalog/any-sequencer/cmd/root.go`) watches the PipelineRun: the first
watched TaskRun or Run that succeeds, with every condition on its results holding, ends it with
`Completed` (exit 0); a watched task that fails, is skipped or whose condition does not hold
counts against it, and when all have, it ends with `Skipped` (exit 1). With a status path the
status is written there and the policies decide the exit code.

Here the PipelineRun it watches is the file the scheduler keeps current
(`$LOCALDSP_PIPELINERUN`, the live PipelineRun with its Tekton status); it is read every 0.2 s.
Conditions are govaluate expressions of three words; a result that reads as an integer is a
number, anything else a string, as the program's `sanitize_task_result` does.

Standalone (stdlib only): the step runs it as a script with the executor's Python.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

COMPLETED, FAILED, SKIPPED = "Completed", "Failed", "Skipped"
POLL = 0.2
_RESULT = re.compile(r"results_([^_]*)_([^_]+)")
_INT = re.compile(r"[+-]?\d+")


class Done(Exception):
    """The program ends: with this status, and this exit code before the policies apply."""

    def __init__(self, status: str, code: int):
        super().__init__(status)
        self.status, self.code = status, code


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="any-task", allow_abbrev=False)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--prName", required=True)
    parser.add_argument("--taskList", default="")
    parser.add_argument("-c", "--condition", action="append", default=[])
    parser.add_argument("--statusPath", default="")
    parser.add_argument("--skippingPolicy", default="")
    parser.add_argument("--errorPolicy", default="")
    args = parser.parse_args(argv)
    # pflag's string slices split each value on commas too.
    args.condition = [c for value in args.condition for c in value.split(",")]
    return args


def watched(args: argparse.Namespace) -> tuple[list[str], dict[str, list[tuple[str, list[str]]]]]:
    """The tasks to watch and, per task, its conditions with the results each reads."""
    tasks = [t for t in args.taskList.split(",") if t] if args.taskList else []
    conditions: dict[str, list[tuple[str, list[str]]]] = {}
    for condition in args.condition:
        operands = re.split(" +", condition)
        if len(operands) != 3:
            print("The conditon must be as format 'operand1 operator operand2'.")
            raise Done(FAILED, 1)
        found = [m for side in (operands[0], operands[2]) for m in _RESULT.findall(side)[:1]]
        if not found:
            print("Must at least contain one result and at most two in one condition for a task.")
            raise Done(FAILED, 1)
        if len({task for task, _ in found}) > 1:
            print("The conditon can only contain results in one task, here's two.")
            raise Done(FAILED, 1)
        task = found[0][0]
        if task not in [t.strip() for t in tasks]:
            tasks.append(task)
        conditions.setdefault(task, []).append((condition, [r for _, r in found]))
    return tasks, conditions


def operand(text: str, values: dict[str, object]) -> object:
    """A govaluate operand: a parameter, a quoted string or a number."""
    if text in values:
        return values[text]
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    try:
        return float(text)
    except ValueError:
        return None


def holds(condition: str, results: dict[str, str], task: str, names: list[str]) -> bool:
    """Evaluate `a op b` over the task's results, as govaluate does (numbers as float64; a
    type mismatch or unknown operator is an evaluation error, which does not hold)."""
    values: dict[str, object] = {}
    for name in names:
        if name not in results:
            print(f"The result {name} does not exist in taskrun {task}.")
            return False
        text = results[name].strip()
        values[f"results_{task}_{name}"] = float(text) if _INT.fullmatch(text) else text
    left, op, right = re.split(" +", condition)
    a, b = operand(left, values), operand(right, values)
    if op == "==":
        return a == b and type(a) is type(b)
    if op == "!=":
        return not (a == b and type(a) is type(b))
    if op in ("<", "<=", ">", ">=") and type(a) is type(b) and a is not None:
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
    print(f"evaluate error: cannot evaluate {condition!r}")
    return False


def _entries(status: dict) -> list[tuple[str, dict, list[dict]]]:
    """(pipeline task, condition, results) of every TaskRun and Run in the status."""
    entries = []
    for entry in (status.get("taskRuns") or {}).values():
        own = entry.get("status") or {}
        entries.append((entry.get("pipelineTaskName", ""), own, own.get("taskResults") or []))
    for entry in (status.get("runs") or {}).values():
        own = entry.get("status") or {}
        entries.append((entry.get("pipelineTaskName", ""), own, own.get("results") or []))
    return entries


def observe(status: dict, tasks: list[str], conditions: dict, counted: set[str]) -> None:
    """One look at the PipelineRun: Done on a success; failed or skipped tasks into `counted`."""
    names = {t.strip() for t in tasks}
    for task, own, results in _entries(status):
        if task not in names or task in counted:
            continue
        condition = ((own.get("conditions") or [{}])[0]).get("status")
        if condition == "True":
            print(f"The TaskRun of {task} succeeded.")
            values = {r.get("name"): str(r.get("value", "")) for r in results}
            failed = next(
                (c for c, n in conditions.get(task, []) if not holds(c, values, task, n)), None
            )
            if failed is None:
                raise Done(COMPLETED, 0)
            print(f"The condition {failed} for the task {task} does not meet.")
        if condition in ("True", "False"):
            print(f"The taskrun or run failed/skipped, or condition unmatched of task: {task}.")
            counted.add(task)
    for skipped in status.get("skippedTasks") or []:
        name = skipped.get("name", "")
        if name in names and name not in counted:
            print(f"The taskrun or run failed/skipped, or condition unmatched of task: {name}.")
            counted.add(name)
    if len(counted) >= len(tasks):
        print("All specified TaskRun(s) or Run(s) failed or skipped.")
        raise Done(SKIPPED, 1)


def finish(args: argparse.Namespace, done: Done) -> int:
    """`exitWithStatus`: write the status where asked and apply the policies."""
    if not args.statusPath:
        print(f"Program exit status is {done.code}.")
        return done.code
    path = Path(args.statusPath)
    if done.status == SKIPPED:
        print("All the tasks or conditions to watch does not meet, skipping.")
        if args.skippingPolicy in ("skipOnNoMatch", "errorOnNoMatch"):
            path.write_text(SKIPPED)
            return 0 if args.skippingPolicy == "skipOnNoMatch" else 1
    if args.errorPolicy in ("continueOnError", "failOnError"):
        path.write_text(done.status)
        print(f"Wrote {done.status} to file {path}.")
        return 0 if args.errorPolicy == "continueOnError" else done.code
    return done.code


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.statusPath:
        args.skippingPolicy = args.skippingPolicy or "skipOnNoMatch"
        args.errorPolicy = args.errorPolicy or "continueOnError"
        if args.skippingPolicy not in ("skipOnNoMatch", "errorOnNoMatch") or (
            args.errorPolicy not in ("continueOnError", "failOnError")
        ):
            print("skippingPolicy or errorPolicy has a value the any-sequencer does not know.")
            return finish(args, Done(FAILED, 1))
    try:
        if not args.taskList and not args.condition:
            print("Should provide either taskList or conditions to watch.")
            raise Done(FAILED, 1)
        tasks, conditions = watched(args)
        print(
            f"Starting to watch taskrun or run of '{args.taskList}' and conditions in "
            f"{args.namespace}/{args.prName}."
        )
        source, counted = Path(os.environ["LOCALDSP_PIPELINERUN"]), set()
        while True:
            try:
                status = json.loads(source.read_text()).get("status") or {}
            except (OSError, ValueError):
                status = {}
            observe(status, tasks, conditions, counted)
            time.sleep(POLL)
    except Done as done:
        return finish(args, done)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
