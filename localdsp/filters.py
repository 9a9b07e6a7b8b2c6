"""Listing as the v1beta1 list calls do it: the `filter` JSON, `sort_by`, page sizes and tokens.

Quirks kept on purpose, because clients trip over them on the real server:
* `filter` is URL-decoded a second time before it is parsed, so `+` becomes a space and a stray
  `%` is an error;
* the Filter message is parsed like protobuf's jsonpb: camelCase or snake_case field names, enum
  names or numbers, one value field per predicate;
* string comparisons ignore case, like MariaDB's default collation *(inference)*;
* a page token replays its own sort and filter; a request that re-sends a sort or filter is
  refused unless it matches the token's as the server judges it: Go's `reflect.DeepEqual` after
  the token's JSON round trip, which only string scalars survive (an IN list comes back as
  `[]interface{}`, a number as float64), so a re-sent IN or numeric filter never matches;
* a page token does not carry the page size: each request's own `page_size` applies;
* `total_size` counts every match, not just the page.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote_to_bytes

from localdsp.errors import InvalidInput

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 200

OPS = {
    "UNKNOWN": 0,
    "EQUALS": 1,
    "NOT_EQUALS": 2,
    "GREATER_THAN": 3,
    "GREATER_THAN_EQUALS": 5,
    "LESS_THAN": 6,
    "LESS_THAN_EQUALS": 7,
    "IN": 8,
    "IS_SUBSTRING": 9,
}
_OP_NAMES = {number: name for name, number in OPS.items()}
_SCALAR_OPS = {
    "EQUALS",
    "NOT_EQUALS",
    "GREATER_THAN",
    "GREATER_THAN_EQUALS",
    "LESS_THAN",
    "LESS_THAN_EQUALS",
}

# Value fields of a Predicate (snake_case) with the Go type name the server's messages show.
_VALUE_TYPES = {
    "int_value": "*api.Predicate_IntValue",
    "long_value": "*api.Predicate_LongValue",
    "string_value": "*api.Predicate_StringValue",
    "timestamp_value": "*api.Predicate_TimestampValue",
    "int_values": "*api.Predicate_IntValues",
    "long_values": "*api.Predicate_LongValues",
    "string_values": "*api.Predicate_StringValues",
}
_ARRAY_FIELDS = {"int_values", "long_values", "string_values"}


@dataclass(frozen=True)
class Dialect:
    """What differs between the API generations' Filter messages and list errors.

    v1beta1 (kfp-tekton 1.5) names the operator `op` and its Go types live in package `api`;
    v2beta1 (KFP 2.x) names it `operation`, its zero value OPERATION_UNSPECIFIED, its Go types
    live in package `go_client`, and its paging errors end without a period.
    """

    op_field: str
    go_package: str
    filter_type: str
    op_enum: str
    unspecified_op: str
    end: str

    def value_type(self, field: str) -> str:
        """The Go type name the server's messages print for a value field ("<nil>": none)."""
        return _VALUE_TYPES.get(field, "<nil>").replace("*api.", f"*{self.go_package}.")


V1 = Dialect("op", "api", "api.Filter", "api.Predicate_Op", "UNKNOWN", ".")
V2 = Dialect(
    "operation",
    "go_client",
    "v2beta1.Filter",
    "v2beta1.Predicate_Operation",
    "OPERATION_UNSPECIFIED",
    "",
)
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class FilterSyntaxError(ValueError):
    """The filter is not a valid Filter message (jsonpb would not parse it)."""


def go_query_unescape(text: str) -> str:
    """Go's url.QueryUnescape: `+` is a space, `%XX` a byte, a malformed escape an error."""
    bad = _BAD_ESCAPE.search(text)
    if bad:
        raise ValueError(f"invalid URL escape {json.dumps(text[bad.start() : bad.start() + 3])}")
    return unquote_to_bytes(text.replace("+", " ")).decode("utf-8", errors="replace")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


@dataclass(frozen=True)
class Predicate:
    """One condition: `key` compared with `value` (a string, a number or a tuple for IN)."""

    key: str
    op: str
    field: str  # which value field was set, e.g. "string_value"; "" when none was
    value: Any = None

    def matches(self, actual: str | int) -> bool:
        """True if an object whose `key` has the value `actual` passes this predicate."""
        if isinstance(self.value, tuple):
            return _comparable(actual) in {_coerce(v, actual) for v in self.value}
        want, have = _coerce(self.value, actual), _comparable(actual)
        if self.op == "IS_SUBSTRING":
            return str(want) in str(have)
        return {
            "EQUALS": have == want,
            "NOT_EQUALS": have != want,
            "GREATER_THAN": have > want,
            "GREATER_THAN_EQUALS": have >= want,
            "LESS_THAN": have < want,
            "LESS_THAN_EQUALS": have <= want,
        }[self.op]

    def as_json(self) -> list:
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return [self.key, self.op, self.field, value]

    @classmethod
    def from_json(cls, item: list) -> Predicate:
        key, op, field, value = item
        return cls(key, op, field, tuple(value) if isinstance(value, list) else value)


def _comparable(value: str | int) -> str | int:
    """Strings compare case-insensitively, like the server's MariaDB collation."""
    return value.casefold() if isinstance(value, str) else value


def _coerce(wanted: Any, actual: str | int) -> str | int | float:
    """The predicate's value converted to the column's type, as SQL would convert it."""
    if isinstance(actual, str):
        return str(wanted).casefold()
    try:
        return float(wanted)
    except (TypeError, ValueError):
        return 0.0


def parse_filter(text: str, keys: Sequence[str], dialect: Dialect = V1) -> tuple[Predicate, ...]:
    """The predicates of a `filter` query value (decoded once by HTTP, once more here).

    `keys` are the API fields this list can filter on. Raises InvalidInput with the server's
    messages.
    """
    if not text:
        return ()
    try:
        predicates = _parse_predicates(go_query_unescape(text), dialect)
    except (ValueError, TypeError) as err:
        raise InvalidInput(f"failed to parse valid filter from {json.dumps(text)}: {err}") from err
    for predicate in predicates:
        if predicate.key not in keys:
            raise InvalidInput(
                f"no support for filtering on unrecognized field {json.dumps(predicate.key)}"
            )
    for predicate in predicates:
        _check_predicate(predicate, dialect)
    return predicates


def _parse_predicates(decoded: str, dialect: Dialect) -> tuple[Predicate, ...]:
    document = json.loads(decoded)
    if not isinstance(document, dict):
        raise FilterSyntaxError("a Filter must be a JSON object")
    unknown = set(document) - {"predicates"}
    if unknown:
        raise FilterSyntaxError(f"unknown field {sorted(unknown)[0]!r} in {dialect.filter_type}")
    items = document.get("predicates") or []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise FilterSyntaxError("predicates must be a list of objects")
    return tuple(_parse_predicate(item, dialect) for item in items)


def _parse_predicate(item: dict, dialect: Dialect) -> Predicate:
    fields = {_snake(name): value for name, value in item.items()}
    unknown = set(fields) - {dialect.op_field, "key", *_VALUE_TYPES}
    if unknown:
        predicate_type = dialect.filter_type.replace("Filter", "Predicate")
        raise FilterSyntaxError(f"unknown field {sorted(unknown)[0]!r} in {predicate_type}")
    values = [name for name in _VALUE_TYPES if fields.get(name) is not None]
    if len(values) > 1:
        raise FilterSyntaxError(f"oneof field already set: {values[0]} and {values[1]}")
    key = fields.get("key", "")
    if not isinstance(key, str):
        raise FilterSyntaxError("key must be a string")
    op = _parse_op(fields.get(dialect.op_field, 0), dialect)
    if not values:
        return Predicate(key, op, "")
    field = values[0]
    return Predicate(key, op, field, _parse_value(field, fields[field]))


def _parse_op(op: Any, dialect: Dialect) -> str:
    if isinstance(op, bool) or not isinstance(op, int | str):
        raise FilterSyntaxError(f"invalid {dialect.op_field} {op!r}")
    names = {dialect.unspecified_op, *(name for name, number in OPS.items() if number)}
    if isinstance(op, str):
        if op not in names:
            raise FilterSyntaxError(f'unknown value "{op}" for enum {dialect.op_enum}')
        return op
    return dialect.unspecified_op if op == 0 else _OP_NAMES.get(op, str(op))


def _parse_value(field: str, value: Any) -> Any:
    if field in _ARRAY_FIELDS:
        if not isinstance(value, dict) or not isinstance(value.get("values", []), list):
            raise FilterSyntaxError(f"{field} must be an object with a list of values")
        scalar = field.removesuffix("s")
        return tuple(_parse_value(scalar, v) for v in value.get("values", []))
    if field == "string_value":
        if not isinstance(value, str):
            raise FilterSyntaxError("string_value must be a string")
        return value
    if field == "timestamp_value":
        return _timestamp_seconds(value)
    return _integer(value)


def _integer(value: Any) -> int:
    """jsonpb takes integers as JSON numbers or as strings ("int64 as string")."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise FilterSyntaxError(f"invalid integer {value!r}")
    return int(value)


def _timestamp_seconds(value: Any) -> int:
    if not isinstance(value, str):
        raise FilterSyntaxError("timestamp_value must be an RFC 3339 string")
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except ValueError as err:
        raise FilterSyntaxError(f"invalid timestamp {value!r}") from err


def _check_predicate(predicate: Predicate, dialect: Dialect) -> None:
    """The server's operator/value checks, in its order and with its messages."""
    value_type = dialect.value_type(predicate.field)
    if predicate.op == "IN" and predicate.field and predicate.field not in _ARRAY_FIELDS:
        raise InvalidInput(f"cannot use IN operator with scalar type {value_type}")
    if predicate.op in _SCALAR_OPS and predicate.field in _ARRAY_FIELDS:
        raise InvalidInput(f"cannot use scalar operator {predicate.op} on array type {value_type}")
    if predicate.op == "IS_SUBSTRING" and predicate.field != "string_value":
        raise InvalidInput(
            f"cannot use non string value type {value_type} with operator {predicate.op}"
        )
    if predicate.op not in _SCALAR_OPS | {"IN", "IS_SUBSTRING"}:
        raise InvalidInput(f"invalid predicate operation: {predicate.op}")
    if not predicate.field:
        raise InvalidInput(f"no value set for predicate on key {json.dumps(predicate.key)}")


# --------------------------------------------------------------------------- sorting and pages


class Listable(Protocol):
    """What a listed object needs: its insertion order, the tie-breaker of every sort."""

    seq: int


Fields = Mapping[str, Callable[[Any], str | int]]


@dataclass(frozen=True)
class ListOptions:
    """One page request: sort, filter, page size and where the page starts."""

    sort_key: str
    desc: bool
    predicates: tuple[Predicate, ...]
    page_size: int
    start: tuple[str | int, int] | None = None  # (sort value, seq) of the page's first object
    filtered: bool = False  # a `filter` was sent (even one without predicates)

    def matches_token(self, token: ListOptions) -> bool:
        """Whether this fresh request's criteria equal those a page token carries, as the
        server's `Options.Matches` decides: same sort field and direction, and filters that
        are both absent or both present and deeply equal after the token's JSON round trip."""
        mine, theirs = (
            (self.sort_key, self.desc, self.filtered),
            (
                token.sort_key,
                token.desc,
                token.filtered,
            ),
        )
        if mine != theirs:
            return False
        return self.predicates == token.predicates and all(
            _survives_round_trip(p) for p in self.predicates
        )

    def token_for(self, first_of_next_page: tuple[str | int, int]) -> str:
        document = {
            "sort": self.sort_key,
            "desc": self.desc,
            "filter": [p.as_json() for p in self.predicates] if self.filtered else None,
            "start": list(first_of_next_page),
        }
        return base64.b64encode(json.dumps(document).encode()).decode()


def list_options(
    *,
    kind: str,
    fields: Fields,
    page_token: str = "",
    page_size: str | int = 0,
    sort_by: str = "",
    filter_json: str = "",
    dialect: Dialect = V1,
) -> ListOptions:
    """Validate a list request's paging, sorting and filtering, as the server does.

    `kind` names the listable type in messages ("Pipeline"); `fields` maps each sortable and
    filterable API key to a function reading it from an object.
    """
    size = _page_size(page_size)
    if not page_token:
        return _fresh_options(kind, fields, size, sort_by, filter_json, dialect)
    options = _options_from_token(page_token, size, fields, dialect)
    if (sort_by or filter_json) and not _fresh_options(
        kind, fields, size, sort_by, filter_json, dialect
    ).matches_token(options):
        raise InvalidInput(
            "page token does not match the supplied sort by and/or filtering criteria. Either "
            "specify the same criteria or leave the latter empty if page token is specified"
            + dialect.end
        )
    return options


def _page_size(raw: str | int) -> int:
    try:
        size = int(raw or 0)
    except ValueError as err:
        raise InvalidInput(f'strconv.ParseInt: parsing "{raw}": invalid syntax') from err
    if size < 0:
        # list.validatePageSize formats the int with %q: Go prints a negative number as the
        # quoted replacement character.
        raise InvalidInput("The page size should be greater than 0. Got '\ufffd'")
    return min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _fresh_options(
    kind: str, fields: Fields, size: int, sort_by: str, filter_json: str, dialect: Dialect
) -> ListOptions:
    words = sort_by.lower().split()
    if len(words) > 2 or (len(words) == 2 and words[1] not in ("asc", "desc")):
        raise InvalidInput(
            f"Received invalid sort by format {json.dumps(sort_by)}. Supported format: "
            '"field_name", "field_name desc", or "field_name asc"'
        )
    sort_key = words[0] if words else "created_at"
    if sort_key not in fields:
        raise InvalidInput(f"Invalid sorting field: {json.dumps(sort_key)} on listable type {kind}")
    desc = len(words) == 2 and words[1] == "desc"
    predicates = parse_filter(filter_json, list(fields), dialect)
    return ListOptions(sort_key, desc, predicates, size, filtered=bool(filter_json))


def _survives_round_trip(predicate: Predicate) -> bool:
    """The server keeps a predicate's value as a Go `string`, `int32`/`int64` (numbers and
    timestamps) or typed slice (IN); its token's JSON gives back `string`, `float64` and
    `[]interface{}`, so only a string scalar is still deeply equal to a freshly parsed one."""
    return predicate.field == "string_value"


def _options_from_token(token: str, size: int, fields: Fields, dialect: Dialect) -> ListOptions:
    try:
        document = json.loads(base64.b64decode(token, validate=True))
        filtered = document["filter"] is not None
        predicates = tuple(Predicate.from_json(p) for p in document["filter"] or [])
        value, seq = document["start"]
        start = (value, int(seq))
        options = ListOptions(
            document["sort"], bool(document["desc"]), predicates, size, start, filtered
        )
    except (binascii.Error, ValueError, TypeError, KeyError) as err:
        raise InvalidInput("Invalid package token" + dialect.end) from err
    if options.sort_key not in fields or any(p.key not in fields for p in predicates):
        raise InvalidInput("Invalid package token" + dialect.end)
    return options


T = TypeVar("T", bound=Listable)


def paginate(items: Sequence[T], options: ListOptions, fields: Fields) -> tuple[list[T], int, str]:
    """One page of `items`: (page, total_size of all matches, next_page_token or "")."""
    matching = [i for i in items if all(p.matches(fields[p.key](i)) for p in options.predicates)]

    def sort_key(item: T) -> tuple[str | int, int]:
        return (_comparable(fields[options.sort_key](item)), item.seq)

    ordered = sorted(matching, key=sort_key, reverse=options.desc)
    if options.start is not None:
        start = (_comparable(options.start[0]), options.start[1])
        if options.desc:
            ordered = [i for i in ordered if sort_key(i) <= start]
        else:
            ordered = [i for i in ordered if sort_key(i) >= start]
    page, rest = ordered[: options.page_size], ordered[options.page_size :]
    token = ""
    if rest:
        token = options.token_for((fields[options.sort_key](rest[0]), rest[0].seq))
    return page, len(matching), token
