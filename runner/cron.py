"""Cron as the DSP v1 server reads it: robfig/cron v1.2.0's `cron.Parse`, rule for rule.

The kfp-tekton 1.5.x API server refuses a recurring run whose cron `cron.Parse` refuses (400),
and its ScheduledWorkflow controller computes the fire times with the same library. No PyPI
library reads cron this way (croniter, cronsim and cron-converter are five-field Unix cron with
Sunday as 7 and wrapping ranges), so this module re-states the Go rules, error texts included:
- a spec starting with `@` is a descriptor: `@yearly`/`@annually`, `@monthly`, `@weekly`,
  `@daily`/`@midnight`, `@hourly`, or `@every <Go duration>` (under a second counts as one);
- otherwise 5 or 6 whitespace-separated fields: seconds, minutes, hours, day of month, month and
  an optional day of week (`*` when left out). Five fields are *not* Unix cron: the first is
  the seconds;
- a field is a comma list of `*`, `?`, `N`, `N-M`, each with an optional `/step`; `N/step` runs
  to the field's maximum; months and weekdays take English three-letter names in any case;
  bounds: 0-59, 0-59, 0-23, 1-31, 1-12, 0-6 (Sunday is 0, never 7); a range must not run
  backwards (`22-2`, `FRI-MON` are refused); the step must be positive.
Go quirks kept on purpose, since the server keeps them: empty list items are skipped (`1,,2`),
a `*` or `?` ignores what follows its hyphen (`*-5` is `*`), numbers may carry a `+` sign.

Pure: no kfp, no I/O, so localdsp checks and schedules jobs with exactly these rules.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta

FIELD_NAMES = ("seconds", "minutes", "hours", "day of month", "month", "day of week")
_MONTHS = "jan feb mar apr may jun jul aug sep oct nov dec".split()
_WEEKDAYS = "sun mon tue wed thu fri sat".split()
_BOUNDS = (  # min, max, names: robfig's spec.go
    (0, 59, {}),
    (0, 59, {}),
    (0, 23, {}),
    (1, 31, {}),
    (1, 12, {name: number for number, name in enumerate(_MONTHS, start=1)}),
    (0, 6, {name: number for number, name in enumerate(_WEEKDAYS)}),
)
STAR = 1 << 63  # robfig's starBit: the field was given as `*` or `?`
_INT64_MAX = (1 << 63) - 1
_SECOND_NS = 1_000_000_000
_UNITS = {  # Go's time.ParseDuration units, in nanoseconds
    b"ns": 1,
    b"us": 1_000,
    "µ".encode() + b"s": 1_000,  # U+00B5 micro sign
    "μ".encode() + b"s": 1_000,  # U+03BC Greek mu
    b"ms": 1_000_000,
    b"s": _SECOND_NS,
    b"m": 60 * _SECOND_NS,
    b"h": 3600 * _SECOND_NS,
}
# Go's unicode.IsSpace: strings.Fields splits on these, and Python's str.split on more.
_LATIN1_SPACE = frozenset("\t\n\v\f\r \x85\xa0")


class CronError(ValueError):
    """robfig/cron's error text; `field` names the field it is about ("" for the whole spec)."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.field = field


@dataclasses.dataclass(frozen=True)
class SpecSchedule:
    """One bit per allowed value of each field, plus STAR when it was written as `*` or `?`."""

    second: int
    minute: int
    hour: int
    dom: int
    month: int
    dow: int

    def next(self, after: float) -> float | None:
        """The first fire time strictly after `after` (epoch seconds, UTC), or None when there is
        none within five years: robfig returns Go's zero time then (30 February, 31 April)."""
        t = datetime.fromtimestamp(math.floor(after) + 1, UTC)
        limit = t.year + 5
        added = False
        while t.year <= limit:
            t, added, wrapped = self._settle(t, added)
            if not wrapped:
                return t.timestamp()
        return None

    def _settle(self, t: datetime, added: bool) -> tuple[datetime, bool, bool]:
        """One pass of robfig's `Next`: move each field forward to an allowed value, coarsest
        first; True when a field wrapped around and the coarser ones must be checked again."""
        while not _has(self.month, t.month):
            if not added:
                added, t = True, t.replace(day=1, hour=0, minute=0, second=0)
            t = t.replace(year=t.year + t.month // 12, month=t.month % 12 + 1)
            if t.month == 1:
                return t, added, True
        while not self._day_matches(t):
            if not added:
                added, t = True, t.replace(hour=0, minute=0, second=0)
            t += timedelta(days=1)
            if t.day == 1:
                return t, added, True
        for unit, attribute, bits, finer in (
            (timedelta(hours=1), "hour", self.hour, ("minute", "second")),
            (timedelta(minutes=1), "minute", self.minute, ("second",)),
            (timedelta(seconds=1), "second", self.second, ()),
        ):
            while not _has(bits, getattr(t, attribute)):
                if not added:
                    added, t = True, t.replace(**dict.fromkeys(finer, 0))
                t += unit
                if getattr(t, attribute) == 0:
                    return t, added, True
        return t, added, False

    def _day_matches(self, t: datetime) -> bool:
        """With `*` in day of month or day of week both must match, otherwise either one."""
        dom, dow = _has(self.dom, t.day), _has(self.dow, (t.weekday() + 1) % 7)
        return dom and dow if (self.dom | self.dow) & STAR else dom or dow


@dataclasses.dataclass(frozen=True)
class EverySchedule:
    """`@every <duration>`: a fixed delay in whole seconds, at least one."""

    delay: int

    def next(self, after: float) -> float:
        """robfig's ConstantDelaySchedule: the delay after `after`, on a whole second."""
        return float(math.floor(after) + self.delay)


Schedule = SpecSchedule | EverySchedule


def parse(spec: str) -> Schedule:
    """robfig/cron v1.2.0 `cron.Parse(spec)`; raises CronError with the library's message."""
    if not spec:
        raise CronError("Empty spec string")
    if spec[0] == "@":
        return _descriptor(spec)
    given = fields(spec)
    if not 5 <= len(given) <= 6:
        raise CronError(f"Expected 5 to 6 fields, found {len(given)}: {spec}")
    bits = []
    for index, text in enumerate([*given, "*"][:6]):
        try:
            bits.append(_field(text, *_BOUNDS[index]))
        except CronError as err:
            raise CronError(str(err), FIELD_NAMES[index]) from None
    return SpecSchedule(*bits)


def fields(spec: str) -> list[str]:
    """The spec's fields as Go's strings.Fields splits them (on Unicode white space as Go
    defines it: Python's str.split also splits on the ASCII separators 0x1C to 0x1F)."""
    marked = "".join(" " if _go_space(c) else c for c in spec)
    return [part for part in marked.split(" ") if part]


def _go_space(char: str) -> bool:
    return char in _LATIN1_SPACE if ord(char) <= 0xFF else char.isspace()


def _field(text: str, low: int, high: int, names: dict[str, int]) -> int:
    """A comma list of ranges (empty items skipped, as Go's FieldsFunc does)."""
    bits = 0
    for expr in (part for part in text.split(",") if part):
        bits |= _range(expr, low, high, names)
    return bits


def _range(expr: str, low: int, high: int, names: dict[str, int]) -> int:
    """`*`, `?`, `N` or `N-M`, with an optional `/step`: robfig's getRange, checks in its order."""
    range_and_step = expr.split("/")
    low_and_high = range_and_step[0].split("-")
    extra = 0
    if low_and_high[0] in ("*", "?"):
        start, end, extra = low, high, STAR
    else:
        start = _int_or_name(low_and_high[0], names)
        if len(low_and_high) == 1:
            end = start
        elif len(low_and_high) == 2:
            end = _int_or_name(low_and_high[1], names)
        else:
            raise CronError(f"Too many hyphens: {expr}")
    if len(range_and_step) == 1:
        step = 1
    elif len(range_and_step) == 2:
        step = _go_uint(range_and_step[1])
        if len(low_and_high) == 1:  # "N/step" means "N-max/step"
            end = high
    else:
        raise CronError(f"Too many slashes: {expr}")
    if start < low:
        raise CronError(f"Beginning of range ({start}) below minimum ({low}): {expr}")
    if end > high:
        raise CronError(f"End of range ({end}) above maximum ({high}): {expr}")
    if start > end:
        raise CronError(f"Beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise CronError(f"Step of range should be a positive number: {expr}")
    return sum(1 << value for value in range(start, end + 1, step)) | extra


def _int_or_name(expr: str, names: dict[str, int]) -> int:
    return names[expr.lower()] if expr.lower() in names else _go_uint(expr)


def _go_uint(expr: str) -> int:
    """robfig's mustParseInt: Go's strconv.Atoi, then no negatives."""
    number = _atoi(expr)
    if number < 0:
        raise CronError(f"Negative number ({number}) not allowed: {expr}")
    return number


def _atoi(text: str) -> int:
    """strconv.Atoi on a 64-bit machine: an optional sign, then ASCII digits read one by one
    (a bad character or an unsigned 64-bit overflow ends the reading, whichever comes first),
    within int64."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not digits:
        raise CronError(_atoi_error(text, "invalid syntax"))
    number = 0
    for char in digits:
        if not "0" <= char <= "9":
            raise CronError(_atoi_error(text, "invalid syntax"))
        number = number * 10 + ord(char) - 48
        if number >= 1 << 64:
            break
    if number > _INT64_MAX + (text[0] == "-"):
        raise CronError(_atoi_error(text, "value out of range"))
    return -number if text[0] == "-" else number


def _atoi_error(text: str, why: str) -> str:
    return f"Failed to parse int from {text}: strconv.Atoi: parsing {_strconv_quote(text)}: {why}"


def _strconv_quote(text: str) -> str:
    """Go's strconv.Quote for the characters a cron field can hold."""
    escapes = {"\a": r"\a", "\b": r"\b", "\f": r"\f", "\n": r"\n", "\r": r"\r", "\t": r"\t"}
    escapes |= {"\v": r"\v", '"': r"\"", "\\": r"\\"}
    out = []
    for char in text:
        if char in escapes:
            out.append(escapes[char])
        elif char.isprintable():
            out.append(char)
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(f"\\u{ord(char):04x}" if ord(char) < 0x10000 else f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


# --------------------------------------------------------------------------- descriptors

_DESCRIPTORS = {  # second, minute, hour, dom, month, dow as robfig's parseDescriptor sets them
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}


def _descriptor(spec: str) -> Schedule:
    """The exact descriptor names, or `@every ` (one space) and a Go duration."""
    if spec in _DESCRIPTORS:
        return parse(_DESCRIPTORS[spec])
    if spec.startswith("@every "):
        try:
            nanoseconds = go_duration(spec[len("@every ") :])
        except CronError as err:
            raise CronError(f"Failed to parse duration {spec}: {err}") from None
        return EverySchedule(max(nanoseconds, _SECOND_NS) // _SECOND_NS)
    raise CronError(f"Unrecognized descriptor: {spec}")


def go_duration(text: str) -> int:
    """Go 1.19's time.ParseDuration, in nanoseconds: `[-+]?([0-9]*(\\.[0-9]*)?[a-z]+)+`."""
    rest = text.encode()
    negative = rest[:1] == b"-"
    if rest[:1] in (b"-", b"+"):
        rest = rest[1:]
    if rest == b"0":
        return 0
    if not rest:
        raise CronError(f"time: invalid duration {_time_quote(text)}")
    total = 0
    while rest:
        value, rest = _duration_term(rest, text)
        total = (total + value) % (1 << 64)  # Go adds in uint64
        if total > 1 << 63:
            raise CronError(f"time: invalid duration {_time_quote(text)}")
    if negative:
        return -total
    if total > _INT64_MAX:
        raise CronError(f"time: invalid duration {_time_quote(text)}")
    return total


def _duration_term(rest: bytes, text: str) -> tuple[int, bytes]:
    """One `<number><unit>` of a duration: its nanoseconds and what follows it."""
    invalid = CronError(f"time: invalid duration {_time_quote(text)}")
    if not (rest[:1] == b"." or rest[:1].isdigit()):
        raise invalid
    whole, digits = _leading_digits(rest)
    rest = rest[len(digits) :]
    if whole is None:
        raise invalid
    fraction, scale, decimals = 0, 1.0, b""
    if rest[:1] == b".":
        decimals = _leading_digits(rest[1:])[1]
        fraction, scale = _fraction(decimals)
        rest = rest[1 + len(decimals) :]
    if not digits and not decimals:
        raise invalid
    length = next((i for i, c in enumerate(rest) if c == ord(".") or 48 <= c <= 57), len(rest))
    if length == 0:
        raise CronError(f"time: missing unit in duration {_time_quote(text)}")
    unit_text, rest = rest[:length], rest[length:]
    if unit_text not in _UNITS:
        unit_quoted = _time_quote(unit_text.decode(errors="surrogateescape"))
        raise CronError(f"time: unknown unit {unit_quoted} in duration {_time_quote(text)}")
    unit = _UNITS[unit_text]
    if whole > (1 << 63) // unit:
        raise invalid
    value = whole * unit
    if fraction > 0:
        value += int(float(fraction) * (float(unit) / scale))
        if value > 1 << 63:
            raise invalid
    return value, rest


def _leading_digits(data: bytes) -> tuple[int | None, bytes]:
    """Go's leadingInt: the digits at the start and their value, None past 1<<63."""
    length = next((i for i, c in enumerate(data) if not 48 <= c <= 57), len(data))
    digits = data[:length]
    value = 0
    for c in digits:
        if value > (1 << 63) // 10:
            return None, digits
        value = value * 10 + c - 48
        if value > 1 << 63:
            return None, digits
    return value, digits


def _fraction(digits: bytes) -> tuple[int, float]:
    """Go's leadingFraction: the digits after the point that fit, and 10 to their count."""
    value, scale = 0, 1.0
    for c in digits:
        if value > _INT64_MAX // 10:
            break
        following = value * 10 + c - 48
        if following > 1 << 63:
            break
        value, scale = following, scale * 10
    return value, scale


def _time_quote(text: str) -> str:
    """The time package's quote: ASCII kept, other bytes as \\xNN."""
    out = []
    for char in text:
        if " " <= char < "\x80":
            out.append("\\" + char if char in '"\\' else char)
        else:
            raw = char.encode(errors="surrogateescape")
            out.append("".join(f"\\x{b:02x}" for b in raw))
    return '"' + "".join(out) + '"'


def _has(bits: int, value: int) -> bool:
    return bool(bits >> value & 1)
