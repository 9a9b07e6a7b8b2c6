"""The part of CEL (Common Expression Language) that kfp-tekton's CEL conditions use, as cel-go
evaluates it.

`kfp_tekton.tekton.CEL_ConditionOp` compiles to a custom task of tektoncd/experimental's CEL
controller: each param is a CEL expression with task results already substituted in
(`'heads' == 'heads'`, `7 > 5 && 'a' != 'b'`). The controller compiles it with cel-go's standard
environment (parse and type-check: a mistake or a type mismatch is a `SyntaxError`), evaluates it
with no variables (`EvaluationError` for division by zero and the like) and writes the value
converted to a string.

Supported here: int, uint, double, string, bool and null literals, lists; `! - * / % + - < <= >
>= == != in && || ?:`; `size`, `contains`, `startsWith`, `endsWith`, `matches`, and the `int`,
`uint`, `double`, `string` conversions. CEL has no implicit numeric conversion, so `1 == 1.0` is
a type error, as in cel-go of the controller's time. Anything else (maps, timestamps, macros)
raises `Unsupported`, naming it, rather than risk a different answer.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

_TOKEN = re.compile(
    r"""\s*(?:
    (?P<double>\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\.\d+(?:[eE][+-]?\d+)?)
    |(?P<uint>(?:0x[0-9a-fA-F]+|\d+)[uU])
    |(?P<int>0x[0-9a-fA-F]+|\d+)
    |(?P<string>[rR]?(?:'''.*?'''|\"\"\".*?\"\"\"|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*"))
    |(?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<op>\|\||&&|==|!=|<=|>=|[-+*/%!<>?:()\[\],.{}])
    )""",
    re.VERBOSE | re.DOTALL,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "a": "\a",
            "b": "\b", "f": "\f", "v": "\v", "`": "`", "?": "?"}  # fmt: skip
_INT_MAX, _INT_MIN, _UINT_MAX = 2**63 - 1, -(2**63), 2**64 - 1


class CelError(Exception):
    """The controller's failure: `reason` is SyntaxError or EvaluationError."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


class Unsupported(Exception):
    """A CEL feature this evaluator does not have."""


class UInt(int):
    """CEL's uint: an int of its own type (CEL never mixes int and uint)."""


def _type(value: object) -> str:
    if value is None:
        return "null_type"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, UInt):
        return "uint"
    return {int: "int", float: "double", str: "string", list: "list"}[type(value)]


def _syntax(detail: str) -> CelError:
    return CelError("SyntaxError", detail)


def _overload(op: str, *values: object) -> CelError:
    types = ", ".join(_type(v) for v in values)
    return _syntax(f"found no matching overload for '{op}' applied to '({types})'")


def tokens(text: str) -> list[tuple[str, str]]:
    """(kind, text) pairs; a character CEL does not know is a syntax error."""
    out, at = [], 0
    while at < len(text.rstrip()):
        found = _TOKEN.match(text, at)
        if found is None or found.end() == at:
            raise _syntax(f"Syntax error: token recognition error at: '{text[at:].strip()[:1]}'")
        kind = found.lastgroup or ""
        out.append((kind, found.group(kind)))
        at = found.end()
    return out


def _string(literal: str) -> str:
    raw = literal[0] in "rR"
    body = literal[1:] if raw else literal
    quote = 3 if body[:3] in ("'''", '"""') else 1
    body = body[quote:-quote]
    if raw:
        return body
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), body)


class _Parser:
    """Recursive descent over CEL's grammar, evaluating as it goes (there are no variables)."""

    def __init__(self, text: str):
        self.tokens = tokens(text)
        self.at = 0

    def peek(self) -> str:
        return self.tokens[self.at][1] if self.at < len(self.tokens) else ""

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.at >= len(self.tokens):
            raise _syntax("Syntax error: mismatched input '<EOF>'")
        token = self.tokens[self.at]
        if expected is not None and token[1] != expected:
            raise _syntax(f"Syntax error: mismatched input '{token[1]}' expecting '{expected}'")
        self.at += 1
        return token

    def expression(self) -> object:
        condition = self.or_()
        if self.peek() != "?":
            return condition
        self.take("?")
        then = self.or_()
        self.take(":")
        otherwise = self.expression()
        if not isinstance(condition, bool):
            raise _overload("_?_:_", condition)
        return then if condition else otherwise

    def or_(self) -> object:
        left = self.and_()
        while self.peek() == "||":
            self.take()
            right = self.and_()
            left = _logic("_||_", left, right)
        return left

    def and_(self) -> object:
        left = self.relation()
        while self.peek() == "&&":
            self.take()
            right = self.relation()
            left = _logic("_&&_", left, right)
        return left

    def relation(self) -> object:
        left = self.addition()
        while self.peek() in ("<", "<=", ">", ">=", "==", "!=", "in"):
            op = self.take()[1]
            left = _compare(op, left, self.addition())
        return left

    def addition(self) -> object:
        left = self.multiplication()
        while self.peek() in ("+", "-"):
            op = self.take()[1]
            left = _arithmetic(op, left, self.multiplication())
        return left

    def multiplication(self) -> object:
        left = self.unary()
        while self.peek() in ("*", "/", "%"):
            op = self.take()[1]
            left = _arithmetic(op, left, self.unary())
        return left

    def unary(self) -> object:
        if self.peek() == "!":
            self.take()
            value = self.unary()
            if not isinstance(value, bool):
                raise _overload("!_", value)
            return not value
        if self.peek() == "-":
            self.take()
            if self.tokens[self.at][0] in ("int", "double"):  # a negative literal
                return _literal(*self.take(), negative=True)
            value = self.unary()
            if _type(value) not in ("int", "double"):
                raise _overload("-_", value)
            return _checked_int(-value) if _type(value) == "int" else -value
        return self.member()

    def member(self) -> object:
        value = self.primary()
        while self.peek() in (".", "["):
            if self.take()[1] == "[":
                index = self.expression()
                self.take("]")
                value = _index(value, index)
                continue
            name = self.take()[1]
            self.take("(")
            value = _method(name, value, self.arguments(")"))
        return value

    def arguments(self, closing: str) -> list[object]:
        args = []
        while self.peek() != closing:
            args.append(self.expression())
            if self.peek() != closing:
                self.take(",")
        self.take(closing)
        return args

    def primary(self) -> object:
        kind, text = self.take()
        if kind in ("int", "uint", "double", "string"):
            return _literal(kind, text)
        if text == "(":
            value = self.expression()
            self.take(")")
            return value
        if text == "[":
            return self.arguments("]")
        if kind == "ident":
            constants = {"true": True, "false": False, "null": None}
            if text in constants:
                return constants[text]
            if self.peek() == "(":
                self.take("(")
                return _function(text, self.arguments(")"))
            raise _syntax(f"undeclared reference to '{text}' (in container '')")
        if text == "{":
            raise Unsupported("maps")
        raise _syntax(f"Syntax error: extraneous input '{text}'")


def _literal(kind: str, text: str, negative: bool = False) -> object:
    if kind == "string":
        return _string(text)
    sign = -1 if negative else 1
    if kind == "double":
        return sign * float(text)
    if kind == "uint":
        value = int(text[:-1], 0)
        if value > _UINT_MAX:
            raise _syntax(f"invalid uint literal: {text}")
        return UInt(value)
    value = sign * int(text, 0)
    if not _INT_MIN <= value <= _INT_MAX:
        raise _syntax(f"invalid int literal: {text}")
    return value


def _checked_int(value: int) -> int:
    if not _INT_MIN <= value <= _INT_MAX:
        raise CelError("EvaluationError", "integer overflow")
    return value


def _logic(op: str, left: object, right: object) -> bool:
    if not isinstance(left, bool) or not isinstance(right, bool):
        raise _overload(op, left, right)
    return (left or right) if op == "_||_" else (left and right)


def _compare(op: str, left: object, right: object) -> bool:
    if op == "in":
        if not isinstance(right, list):
            raise _overload("@in", left, right)
        return any(_type(left) == _type(item) and left == item for item in right)
    if _type(left) != _type(right):
        raise _overload(f"_{op}_", left, right)
    if op in ("==", "!="):
        return (left == right) == (op == "==")
    if _type(left) in ("null_type", "list"):
        raise _overload(f"_{op}_", left, right)
    return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]


def _arithmetic(op: str, left: object, right: object) -> object:
    kind = _type(left)
    if kind != _type(right) or (op != "+" and kind not in ("int", "uint", "double")):
        raise _overload(f"_{op}_", left, right)
    if kind in ("string", "list") and op == "+":
        return left + right
    if kind in ("bool", "null_type"):
        raise _overload(f"_{op}_", left, right)
    if op in ("/", "%") and kind != "double" and right == 0:
        raise CelError("EvaluationError", "division by zero" if op == "/" else "modulus by zero")
    if op == "%" and kind == "double":
        raise _overload("_%_", left, right)
    result = {
        "+": lambda: left + right,
        "-": lambda: left - right,
        "*": lambda: left * right,
        "/": lambda: left / right if kind == "double" else _truncated(left, right),
        "%": lambda: left - right * _truncated(left, right),
    }[op]()
    if kind == "uint":
        if not 0 <= result <= _UINT_MAX:
            raise CelError("EvaluationError", "unsigned integer overflow")
        return UInt(result)
    return _checked_int(result) if kind == "int" else result


def _truncated(left: int, right: int) -> int:
    """Go's integer division rounds toward zero."""
    quotient = abs(left) // abs(right)
    return quotient if (left >= 0) == (right >= 0) else -quotient


def _index(value: object, index: object) -> object:
    if not isinstance(value, list) or _type(index) not in ("int", "uint"):
        raise _overload("_[_]", value, index)
    if not 0 <= index < len(value):
        raise CelError(
            "EvaluationError", f"index '{index}' out of range in list size '{len(value)}'"
        )
    return value[index]


def _method(name: str, target: object, args: list[object]) -> object:
    if name == "size" and not args:
        return _function("size", [target])
    if name in ("contains", "startsWith", "endsWith", "matches"):
        if not isinstance(target, str) or len(args) != 1 or not isinstance(args[0], str):
            raise _overload(name, target, *args)
        if name == "matches":
            return re.search(args[0], target) is not None
        return {"contains": args[0] in target, "startsWith": target.startswith(args[0]),
                "endsWith": target.endswith(args[0])}[name]  # fmt: skip
    raise Unsupported(f"the function {name}()")


def _function(name: str, args: list[object]) -> object:
    if len(args) != 1:
        raise Unsupported(f"the function {name}() with {len(args)} arguments")
    value = args[0]
    if name == "size" and isinstance(value, str | list):
        return len(value)
    if name == "string" and _type(value) != "list":
        return to_string(value) if value is not None else _fail_conversion(value, "string")
    if name == "int" and _type(value) in ("int", "uint", "double", "string"):
        return _checked_int(int(value))
    if name == "uint" and _type(value) in ("int", "uint", "double", "string"):
        if int(value) < 0:
            raise CelError("EvaluationError", "unsigned integer overflow")
        return UInt(int(value))
    if name == "double" and _type(value) in ("int", "uint", "double", "string"):
        return float(value)
    if name in ("size", "string", "int", "uint", "double"):
        raise _overload(name, value)
    raise Unsupported(f"the function {name}()")


def _fail_conversion(value: object, target: str) -> str:
    raise Unsupported(f"converting {_type(value)} to {target}")


def to_string(value: object) -> str:
    """`value.ConvertToType(types.StringType)` printed with %s, as the controller writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, int):
        return str(int(value))
    raise Unsupported(f"a {_type(value)} result (the controller writes a conversion error)")


def go_float(value: float) -> str:
    """Go's `%g` (`strconv.FormatFloat(v, 'g', -1, 64)`), which cel-go converts a double with:
    the shortest digits, in %e form when the exponent is below -4 or 6 and above."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1, value) < 0 else "0"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    text = "".join(map(str, digits))
    point = len(text) + int(exponent)  # digits before the decimal point
    minus = "-" if sign else ""
    if not -4 <= point - 1 < 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{minus}{mantissa}e{'-' if point - 1 < 0 else '+'}{abs(point - 1):02d}"
    if point <= 0:
        return f"{minus}0.{'0' * -point}{text}"
    if point >= len(text):
        return f"{minus}{text}{'0' * (point - len(text))}"
    return f"{minus}{text[:point]}.{text[point:]}"


def evaluate(expression: str) -> str:
    """The expression's value as the CEL controller writes it into the Run's result."""
    parser = _Parser(expression)
    if not parser.tokens:
        raise _syntax("Syntax error: mismatched input '<EOF>'")
    value = parser.expression()
    if parser.at != len(parser.tokens):
        raise _syntax(f"Syntax error: extraneous input '{parser.peek()}'")
    return to_string(value)
