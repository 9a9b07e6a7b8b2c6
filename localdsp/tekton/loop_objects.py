"""The PipelineLoop objects of a namespace, for loops named by `taskRef` (graph components).

kfp-tekton compiles a recursive graph component to a PipelineLoop object that refers to itself,
shipped in the run's `tekton.dev/resource_templates` annotation; the DSP API server creates each
object when it creates the run, or merge-patches it when it exists, and the loop controller
writes its recursion budget (`maxNestedStackDepth`) onto it. Those objects outlive the run, so
they live here, per namespace, for the life of the process.
"""

from __future__ import annotations

import copy
import json
import threading

from localdsp.tekton.custom import RunContext

TEMPLATES = "tekton.dev/resource_templates"

# Loops named by taskRef: the PipelineLoop objects of each namespace, as the DSP API server
# applies them from a run's resource_templates (created, or merge-patched when they exist) and
# the controller changes them (the stack depth annotation). They outlive the run, as on the
# cluster: a recursive pipeline's depth budget is used up across its runs in this process.
_OBJECTS: dict[tuple[str, str], dict] = {}
LOCK = threading.Lock()


def get(context: RunContext, name: str) -> dict | None:
    """The namespace's PipelineLoop object `name`, with the template this run carries in its
    `tekton.dev/resource_templates` applied as the API server applies it (a merge patch)."""
    key = (context.namespace, name)
    with LOCK:
        for template in _templates(context.annotations.get(TEMPLATES, "")):
            if template.get("kind") == "PipelineLoop" and (
                (template.get("metadata") or {}).get("name") == name
            ):
                found = _OBJECTS.setdefault(key, {})
                merged = _merge_patch(found, template)
                found.clear()
                found.update(merged)  # in place: running Runs hold this object
        return _OBJECTS.get(key)


def _merge_patch(target: dict, patch: dict) -> dict:
    """RFC 7386: the patch's fields replace the target's, objects merge, null removes."""
    merged = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge_patch(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _templates(text: str) -> list[dict]:
    try:
        templates = json.loads(text) if text else []
    except ValueError:
        return []
    return [t for t in templates if isinstance(t, dict)] if isinstance(templates, list) else []
