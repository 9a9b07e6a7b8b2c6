"""Tekton's `$(...)` variables: finding and replacing them the way Tekton does.

Pipeline-level fields and step fields are resolved with the same rules, and the references a
pipeline task makes to other tasks' results are what order it after them; one module so the
scheduler, the job builder and custom-task plug-ins all read a reference alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

_REF = re.compile(
    r"\$\((?P<root>params|inputs|outputs|tasks|results|context|workspaces|steps|resources"
    r"|credentials)(?P<rest>(?:\.[\w-]+|\[(?:'[^']*'|\"[^\"]*\"|\*|\d+)\])+)\)"
)
_REF_PART = re.compile(r"\.([\w-]+)|\['([^']*)'\]|\[\"([^\"]*)\"\]|\[(\*|\d+)\]")


class Unresolved(Exception):
    """Tekton `$(...)` references with no value; Tekton rejects the run for these."""

    def __init__(self, references: list[str]):
        super().__init__(", ".join(references))
        self.references = references


def _ref_key(match: re.Match) -> tuple[str, ...]:
    """`$(inputs.params['a'])` → ("params", "a"): one key whatever the spelling."""
    parts = [match.group("root")]
    for part in _REF_PART.finditer(match.group("rest")):
        index = part.group(4)
        parts.append(f"[{index}]" if index else part.group(1) or part.group(2) or part.group(3))
    if parts[:2] == ["inputs", "params"]:
        parts = parts[1:]
    return tuple(parts)


def substitute(text: str, values: Mapping[tuple[str, ...], str]) -> str:
    """Replace Tekton's `$(...)` variables in one pass, like Tekton does.

    Only Tekton's own roots (params, tasks, results, context, ...) are variables; shell syntax
    such as kfp's `$(mktemp)` or `"$@"` is left alone. Unknown variables raise Unresolved.
    """
    missing: list[str] = []

    def replace_one(match: re.Match) -> str:
        value = values.get(_ref_key(match))
        if value is None:
            missing.append(match.group(0))
            return match.group(0)
        return value

    result = _REF.sub(replace_one, text)
    if missing:
        raise Unresolved(missing)
    return result


def result_refs(texts: Iterable[str]) -> set[tuple[str, str]]:
    """(task, result) pairs a pipeline task reads: these order it after the producer."""
    refs = set()
    for text in texts:
        for match in _REF.finditer(text):
            key = _ref_key(match)
            if len(key) >= 4 and key[0] == "tasks" and key[2] == "results":
                refs.add((key[1], key[3]))
    return refs
