"""What a PipelineLoop iterates over and the params each iteration's PipelineRun gets.

A port of the PipelineLoop controller's `computeIterations` and `getParameters` (kfp-tekton 1.5.x,
tekton-catalog/pipeline-loops), quirks included, since a pipeline's behaviour on the cluster is
whatever they do: a string is read as a JSON list of strings, of integers, or of dicts (whose
keys become `<param>-subvar-<key>` params), else split at a separator or at commas; a numeric
range (`from`/`to`/`step`) is inclusive; an array param is iterated as it is. Pure functions, so
they are tested without running anything.
"""

from __future__ import annotations

import json
import re

DEFAULT_SEPARATOR = ","
_GO_INT = re.compile(r"[+-]?[0-9]+")
_RANGE_PARAMS = ("from", "step", "to")


class IterationError(ValueError):
    """The controller cannot tell what to iterate over (its "Cannot determine..." failure)."""


def iterations(params: dict, spec: dict) -> tuple[int, list]:
    """(number of iterations, their items) as `computeIterations` finds them; -1 when the loop
    names no iterate param the Run has (then it runs no iteration)."""
    iterate = spec.get("iterateParam") or ""
    separator_param = spec.get("iterateParamStringSeparator") or ""
    count, items = -1, []
    start, step, stop, start_given, stop_given = 0, 1, 0, False, False
    text, separator, error = "", "", None
    for name, value in params.items():
        if name == "from":
            start, start_given, error = _go_int(name, value, start, start_given, error)
        if name == "step":
            step, _, step_error = _go_int(name, value, step, False, None)
            if step_error:
                raise step_error
        if name == "to":
            stop, stop_given, error = _go_int(name, value, stop, stop_given, error)
        if name == iterate:
            if isinstance(value, list):
                count, items = len(value), list(value)
                break
            text = value
        if separator_param and name == separator_param and isinstance(value, str):
            separator = value
    if text:
        error = None
        items = text.split(separator) if separator else _items_of(text, iterate)
        count = len(items)
    if start != stop and start_given and stop_given:
        return _numeric_range(start, stop, step, items)
    if start == stop and step != 0 and start_given and stop_given:
        count, items = 1, [*items, start]
    if error:
        raise error
    return count, items


def _go_int(name: str, value: object, current: int, given: bool, error):
    """strconv.Atoi of a trimmed param, as the controller reads from/to/step."""
    text = value.rstrip("\n").strip(" ") if isinstance(value, str) else ""
    if _GO_INT.fullmatch(text):
        return int(text), True, error
    return 0, given, IterationError(f'input "{name}" is not a number')


def _numeric_range(start: int, stop: int, step: int, items: list) -> tuple[int, list]:
    if step == 0:
        raise IterationError(f"invalid values step: {step} found in runs")
    if (stop - start < step and step > 0) or (stop - start > step and step < 0):
        # the controller's "python enumerate" case; it also takes every backwards range, so
        # its "invalid values for from/to" refusal is never reached
        return 1, [*items, start]
    numbers = list(range(start, stop + (1 if step > 0 else -1), step))
    return len(numbers), [*items, *numbers]


def _items_of(text: str, iterate: str) -> list:
    decoded = _decoded(text)
    if decoded is not None:
        return decoded[1]
    if DEFAULT_SEPARATOR in text:
        return text.split(DEFAULT_SEPARATOR)
    raise IterationError(
        f'the value of the iterate parameter "{iterate}" can not transfer to array'
    )


def _decoded(text: str) -> tuple[str, list] | None:
    """Go's json.Unmarshal tried into []string, []int, []map[string]string, []map[string]int,
    in that order: (which one took it, the items), or None when none did."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if data is None:
        return "strings", []
    if not isinstance(data, list):
        return None
    if all(isinstance(x, str) for x in data):
        return "strings", data
    if all(_is_int(x) for x in data):
        return "ints", data
    if all(isinstance(x, dict) and all(isinstance(v, str) for v in x.values()) for x in data):
        return "string dicts", data
    if all(isinstance(x, dict) and all(_is_int(v) for v in x.values()) for x in data):
        return "int dicts", data
    return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def iteration_params(params: dict, spec: dict, iteration: int, item: object) -> list[dict]:
    """The params of iteration `iteration` (1-based), as `getParameters` builds them."""
    iterate = spec.get("iterateParam") or ""
    separator_param = spec.get("iterateParamStringSeparator") or ""
    out: list[dict] = []
    if iterate:
        text, separator = None, ""
        for name, value in params.items():
            if name == iterate:
                if isinstance(value, list):
                    out.append({"name": name, "value": value[iteration - 1]})
                else:
                    text = value
            elif separator_param and name == separator_param:
                separator = value if isinstance(value, str) else ""
            else:
                out.append({"name": name, "value": value})
        if text is not None:
            out.extend(_item_params(iterate, text, separator, iteration))
    else:
        out = [{"name": k, "value": v} for k, v in params.items() if k not in _RANGE_PARAMS]
    if spec.get("iterationNumberParam"):
        out.append({"name": spec["iterationNumberParam"], "value": str(iteration)})
    if spec.get("iterateNumeric"):
        out.append({"name": spec["iterateNumeric"], "value": go_json(item)})
    return out


def _item_params(iterate: str, text: str, separator: str, iteration: int) -> list[dict]:
    if separator:
        return [{"name": iterate, "value": text.split(separator)[iteration - 1]}]
    decoded = _decoded(text)
    if decoded is None:
        if DEFAULT_SEPARATOR in text:
            return [{"name": iterate, "value": text.split(DEFAULT_SEPARATOR)[iteration - 1]}]
        return []
    kind, items = decoded
    item = items[iteration - 1]
    if kind in ("strings", "ints"):
        return [{"name": iterate, "value": str(item)}]
    return [{"name": f"{iterate}-subvar-{k}", "value": str(v)} for k, v in item.items()]


def go_json(value: object) -> str:
    """Go's json.Marshal: compact, map keys sorted, <, > and & escaped."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def go_text(value: object) -> str:
    """Go's fmt "%s" of a decoded item, as the controller writes the `last-elem` result
    (an integer prints as `%!s(int=3)`: that is what the cluster shows)."""
    if isinstance(value, str):
        return value
    if _is_int(value):
        return f"%!s(int={value})"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_text(value[k])}" for k in sorted(value)) + "]"
    return str(value)
