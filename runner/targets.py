"""Per-environment settings: `targets:` in dsp-runner.yaml, one overlay per environment.

One repository ships to several DSP servers (dev, prod); what differs between them (run
arguments, the experiment, schedules) is written once per environment under `targets:`, and
DSP_TARGET picks the one this job ships to. The overlay is laid over the file before anything
reads it, so deploy, plan, trigger and promote in one environment all see the same settings:

    targets:
      prod:
        defaults: {experiment: prod-runs}
        pipelines:
          add-pipeline:
            arguments: {b: "9"}
            schedules: [{name: nightly, cron: "0 0 2 * * *"}]

A target's `defaults` keys replace the file's `defaults` keys; a target's pipeline entry (by
name or slug, whichever the file's own entry uses) replaces that entry key by key, except
`arguments`, which are merged name by name (the target's win). `schedules`, when the target
gives them, replace the entry's schedules whole (an empty list means none in that environment).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.errors import ConfigurationError

NAME_PATTERN = "^[A-Za-z0-9._-]{1,63}$"


def schema(defaults: dict, pipelines: dict) -> dict:
    """`targets:` takes, per name, what the file's top level takes (`defaults`, `pipelines`)."""
    return {
        "type": "object",
        "propertyNames": {"pattern": NAME_PATTERN},
        "additionalProperties": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"defaults": defaults, "pipelines": pipelines},
        },
    }


def overlay(data: dict[str, Any], target: str, path: Path) -> tuple[dict, dict]:
    """The file's `defaults` with the target's laid over them, and the target's pipeline
    entries (matched to pipelines by name or slug, like the file's own, by `merged`). No
    target: the file's defaults and no entries. A target the file does not define is an error
    naming the ones it does: shipping to prod with dev's arguments because of a typo must not
    happen silently."""
    defaults = data.get("defaults") or {}
    if not target:
        return defaults, {}
    targets = data.get("targets") or {}
    if target not in targets:
        known = ", ".join(sorted(targets)) or "none"
        raise ConfigurationError(
            f"DSP_TARGET: {path} defines no target {target!r} (its targets: {known}); add "
            f"`targets: {target}:` to the file or fix DSP_TARGET"
        )
    chosen = targets[target] or {}
    return merged(defaults, chosen.get("defaults") or {}), chosen.get("pipelines") or {}


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over`'s keys replace `base`'s, except arguments, which merge name by name."""
    result = {**base, **over}
    if "arguments" in base or "arguments" in over:
        result["arguments"] = {**base.get("arguments", {}), **over.get("arguments", {})}
    return result


def sections(data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every place pipelines are declared, with its path in the file: the top level and each
    target, so a bad schedule of prod's is found by dev's deploy, before prod's."""
    found = [("", data)]
    for name, target in (data.get("targets") or {}).items():
        found.append((f"targets > {name} > ", target or {}))
    return found
