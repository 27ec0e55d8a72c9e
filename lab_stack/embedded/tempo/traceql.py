"""The TraceQL subset the embedded Tempo understands: a lexer, a parser and an evaluator.

Supported: spanset filters ``{ ... }`` joined by ``&&`` / ``||`` (inside and between braces) with
parentheses; attributes ``span.x``, ``resource.x`` and unscoped ``.x`` (quoted names too); the
intrinsics ``name``, ``status``, ``statusMessage``, ``duration``, ``kind``, ``rootName``,
``rootServiceName`` and ``traceDuration``; the operators ``= != > >= < <= =~ !~``; string, number,
boolean, ``nil``, status, kind and duration literals; and the pipeline stage ``| count() <op> N``.
Anything else raises :class:`UnsupportedTraceQL`, whose message names the feature.

Example:
    >>> q = parse_traceql('{ resource.service.name = "api" && duration > 100ms }')
    >>> sorted(a.name for a in q.attributes())
    ['service.name']
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "Attribute",
    "Comparison",
    "Constant",
    "CountFilter",
    "FieldOp",
    "Intrinsic",
    "InvalidTraceQL",
    "Query",
    "SpanRow",
    "SpansetFilter",
    "SpansetOp",
    "Static",
    "TraceQLError",
    "TraceRow",
    "UnsupportedTraceQL",
    "evaluate",
    "parse_traceql",
]

_HINT = "not supported by the embedded Tempo; run the docker stack for full TraceQL"

#: ``status`` literal -> OTLP ``Status.code``.
STATUS_CODES = {"unset": 0, "ok": 1, "error": 2}
#: ``kind`` literal -> OTLP ``Span.kind``.
KIND_CODES = {
    "unspecified": 0,
    "internal": 1,
    "server": 2,
    "client": 3,
    "producer": 4,
    "consumer": 5,
}
INTRINSICS = (
    "name",
    "status",
    "statusMessage",
    "duration",
    "kind",
    "rootName",
    "rootServiceName",
    "traceDuration",
)
_DURATION_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9}
_DURATION_UNITS["h"] = 3600 * 10**9


class TraceQLError(ValueError):
    """A TraceQL query was rejected; the message is the 400 body."""


class InvalidTraceQL(TraceQLError):
    """The query is not valid TraceQL (a syntax or type error)."""


class UnsupportedTraceQL(TraceQLError):
    """The query is valid TraceQL but uses a feature the embedded Tempo does not implement."""

    def __init__(self, feature: str) -> None:
        super().__init__(
            f"{feature} is {_HINT}. Hint: use the subset listed in the lab's README "
            "(spanset filters, attributes, intrinsics, comparisons, | count())."
        )
        self.feature = feature


# -- AST ---------------------------------------------------------------------------------------

StaticKind = Literal["string", "int", "float", "bool", "duration", "status", "kind", "nil"]


@dataclass(frozen=True)
class Static:
    """A literal: its kind and Python value (durations in nanoseconds)."""

    kind: StaticKind
    value: str | int | float | bool | None


@dataclass(frozen=True)
class Attribute:
    """An attribute reference: ``span.x``, ``resource.x`` or unscoped ``.x`` (scope ``any``)."""

    scope: Literal["span", "resource", "any"]
    name: str


@dataclass(frozen=True)
class Intrinsic:
    """An intrinsic such as ``name``, ``duration`` or ``rootServiceName``."""

    name: str


Operand = Static | Attribute | Intrinsic


@dataclass(frozen=True)
class Comparison:
    """``left op right`` where ``left`` is an attribute or intrinsic and ``right`` a literal."""

    left: Attribute | Intrinsic
    op: str
    right: Static
    regex: re.Pattern[str] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Constant:
    """A field expression that is always true or always false (``{}``, ``{ true }``)."""

    value: bool


@dataclass(frozen=True)
class FieldOp:
    """``&&`` or ``||`` between two field expressions inside one spanset filter."""

    op: Literal["&&", "||"]
    left: FieldExpr
    right: FieldExpr


FieldExpr = Comparison | Constant | FieldOp


@dataclass(frozen=True)
class SpansetFilter:
    """``{ expr }``: the spans of a trace for which ``expr`` holds."""

    expr: FieldExpr


@dataclass(frozen=True)
class SpansetOp:
    """``{..} && {..}`` (both non-empty, union) or ``{..} || {..}`` (union)."""

    op: Literal["&&", "||"]
    left: SpansetExpr
    right: SpansetExpr


SpansetExpr = SpansetFilter | SpansetOp


@dataclass(frozen=True)
class CountFilter:
    """The pipeline stage ``| count() op N``."""

    op: str
    value: float


@dataclass(frozen=True)
class Query:
    """A parsed query: a spanset expression and its pipeline stages."""

    spanset: SpansetExpr
    pipeline: tuple[CountFilter, ...] = ()

    def attributes(self) -> Iterator[Attribute]:
        """Every attribute the query's conditions name (for the matched-attributes output)."""
        yield from (c.left for c in self._comparisons() if isinstance(c.left, Attribute))

    def intrinsics(self) -> set[str]:
        """Names of the intrinsics the query's conditions use."""
        return {c.left.name for c in self._comparisons() if isinstance(c.left, Intrinsic)}

    def _comparisons(self) -> Iterator[Comparison]:
        def walk_field(node: FieldExpr) -> Iterator[Comparison]:
            if isinstance(node, Comparison):
                yield node
            elif isinstance(node, FieldOp):
                yield from walk_field(node.left)
                yield from walk_field(node.right)

        def walk(node: SpansetExpr) -> Iterator[Comparison]:
            if isinstance(node, SpansetFilter):
                yield from walk_field(node.expr)
            else:
                yield from walk(node.left)
                yield from walk(node.right)

        return walk(self.spanset)


# -- lexer -------------------------------------------------------------------------------------

_NAME_CHARS = r"[^\s{}()=!<>~&|^,\"+*/%`]"
_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|`[^`]*`)
  | (?P<attr>(?:span|resource|parent|event|link|instrumentation|trace)?\.(?:"(?:[^"\\]|\\.)*"|"""
    + _NAME_CHARS
    + r"""+))
  | (?P<duration>(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+)(?![A-Za-z0-9_])
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(?![A-Za-z0-9_.])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>!>>|&&|\|\||!=|=~|!~|>=|<=|>>|<<|[{}()=<>!~|,+\-*/%^])
    """,
    re.VERBOSE,
)
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "'": "'"}


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    pos: int


def _unquote(text: str) -> str:
    if text.startswith("`"):
        return text[1:-1]
    out: list[str] = []
    body = text[1:-1]
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append(_SIMPLE_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _parse_duration(text: str) -> int:
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text):
        total += float(number) * _DURATION_UNITS[unit]
    return int(total)


def _tokenize(query: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(query):
        m = _TOKEN_RE.match(query, pos)
        if m is None:
            raise InvalidTraceQL(
                f"invalid TraceQL query {query!r}: unexpected character {query[pos]!r} at "
                f"position {pos + 1}. Hint: check quotes and operators."
            )
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append(_Token(kind, m.group(), pos))
        pos = m.end()
    tokens.append(_Token("eof", "", len(query)))
    return tokens


# -- parser ------------------------------------------------------------------------------------

_COMPARISON_OPS = ("=", "!=", ">", ">=", "<", "<=", "=~", "!~")
_ARITHMETIC = ("+", "-", "*", "/", "%", "^")
_STRUCTURAL = (">>", "<<", "!>>", ">", "<", "~", "!~")
_AGGREGATES = ("avg", "min", "max", "sum", "count")
_FLIPPED = {"=": "=", "!=": "!=", ">": "<", ">=": "<=", "<": ">", "<=": ">="}
_STRING_INTRINSICS = ("name", "statusMessage", "rootName", "rootServiceName")


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens = _tokenize(query)
        self.i = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def next(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def error(self, message: str) -> InvalidTraceQL:
        return InvalidTraceQL(
            f"invalid TraceQL query {self.query!r}: {message} at position {self.tok.pos + 1}. "
            'Hint: a query looks like { resource.service.name = "api" && duration > 100ms }.'
        )

    def expect(self, text: str) -> None:
        if self.tok.text != text or self.tok.kind not in ("op", "ident"):
            found = self.tok.text or "end of query"
            raise self.error(f"expected {text!r}, found {found!r}")
        self.next()

    # query := spansetExpr ('|' stage)*
    def parse(self) -> Query:
        if self.tok.kind == "eof":
            raise self.error("empty query")
        spanset = self.spanset_expr()
        stages: list[CountFilter] = []
        while self.tok.text == "|" and self.tok.kind == "op":
            self.next()
            stages.append(self.stage())
        if self.tok.kind != "eof":
            if self.tok.kind == "op" and self.tok.text in _STRUCTURAL:
                raise UnsupportedTraceQL(f"the structural operator {self.tok.text!r}")
            raise self.error(f"unexpected {self.tok.text!r}")
        return Query(spanset, tuple(stages))

    def spanset_expr(self) -> SpansetExpr:
        left = self.spanset_primary()
        while self.tok.kind == "op" and self.tok.text in ("&&", "||"):
            op: Literal["&&", "||"] = "&&" if self.next().text == "&&" else "||"
            left = SpansetOp(op, left, self.spanset_primary())
        if self.tok.kind == "op" and self.tok.text in _STRUCTURAL:
            raise UnsupportedTraceQL(f"the structural operator {self.tok.text!r}")
        return left

    def spanset_primary(self) -> SpansetExpr:
        if self.tok.text == "(" and self.tok.kind == "op":
            self.next()
            inner = self.spanset_expr()
            self.expect(")")
            return inner
        if self.tok.text == "{" and self.tok.kind == "op":
            self.next()
            if self.tok.text == "}" and self.tok.kind == "op":
                self.next()
                return SpansetFilter(Constant(True))
            expr = self.field_or()
            self.expect("}")
            return SpansetFilter(expr)
        if self.tok.kind == "ident" and self.tok.text in (*_AGGREGATES, "by", "select", "coalesce"):
            raise UnsupportedTraceQL(f"{self.tok.text}() outside a pipeline")
        raise self.error(f"expected '{{' to start a spanset filter, found {self.tok.text!r}")

    def field_or(self) -> FieldExpr:
        left = self.field_and()
        while self.tok.kind == "op" and self.tok.text == "||":
            self.next()
            left = FieldOp("||", left, self.field_and())
        return left

    def field_and(self) -> FieldExpr:
        left = self.field_primary()
        while self.tok.kind == "op" and self.tok.text == "&&":
            self.next()
            left = FieldOp("&&", left, self.field_primary())
        return left

    def field_primary(self) -> FieldExpr:
        tok = self.tok
        if tok.kind == "op" and tok.text == "(":
            self.next()
            inner = self.field_or()
            self.expect(")")
            self.reject_arithmetic()
            return inner
        if tok.kind == "op" and tok.text == "!":
            raise UnsupportedTraceQL("negation with '!'")
        left = self.operand()
        self.reject_arithmetic()
        if self.tok.kind == "op" and self.tok.text in _COMPARISON_OPS:
            op = self.next().text
            right = self.operand()
            self.reject_arithmetic()
            return self.comparison(left, op, right)
        # a bare operand must be boolean
        if isinstance(left, Static) and left.kind == "bool":
            return Constant(bool(left.value))
        if isinstance(left, Attribute):
            return Comparison(left, "=", Static("bool", True))
        raise self.error(f"expected a comparison operator after {tok.text!r}")

    def reject_arithmetic(self) -> None:
        if self.tok.kind == "op" and self.tok.text in _ARITHMETIC:
            raise UnsupportedTraceQL(f"arithmetic with {self.tok.text!r}")

    def operand(self) -> Operand:
        tok = self.next()
        if tok.kind == "string":
            return Static("string", _unquote(tok.text))
        if tok.kind == "duration":
            return Static("duration", _parse_duration(tok.text))
        if tok.kind == "number":
            is_int = re.fullmatch(r"\d+", tok.text) is not None
            return Static("int", int(tok.text)) if is_int else Static("float", float(tok.text))
        if tok.kind == "op" and tok.text == "-":
            inner = self.operand()
            if isinstance(inner, Static) and inner.kind in ("int", "float", "duration"):
                assert isinstance(inner.value, int | float)
                return Static(inner.kind, -inner.value)
            raise UnsupportedTraceQL("arithmetic with '-'")
        if tok.kind == "attr":
            scope_text, _, name = tok.text.partition(".")
            if name.startswith('"'):
                name = _unquote(name)
            if scope_text in ("", "span", "resource"):
                scope: Literal["span", "resource", "any"] = (
                    "any" if scope_text == "" else "span" if scope_text == "span" else "resource"
                )
                if not name:
                    raise self.error("empty attribute name")
                return Attribute(scope, name)
            raise UnsupportedTraceQL(f"the attribute scope {scope_text + '.'!r}")
        if tok.kind == "ident":
            text = tok.text
            if text in ("true", "false"):
                return Static("bool", text == "true")
            if text == "nil":
                return Static("nil", None)
            if text in STATUS_CODES:
                return Static("status", text)
            if text in KIND_CODES:
                return Static("kind", text)
            if text in INTRINSICS:
                return Intrinsic(text)
            if text in (
                "parent",
                "childCount",
                "nestedSetLeft",
                "nestedSetRight",
                "nestedSetParent",
            ):
                raise UnsupportedTraceQL(f"the intrinsic {text!r}")
            if text in (*_AGGREGATES, "by", "select", "coalesce"):
                raise UnsupportedTraceQL(f"{text}() inside a spanset filter")
            raise self.error(
                f"unknown identifier {text!r} (attributes need a scope: span.{text}, .{text})"
            )
        found = tok.text or "end of query"
        self.i -= 1
        raise self.error(f"expected an attribute, intrinsic or value, found {found!r}")

    def comparison(self, left: Operand, op: str, right: Operand) -> FieldExpr:
        if isinstance(left, Static) and isinstance(right, Static):
            raise UnsupportedTraceQL("comparing two literals")
        if isinstance(left, Static):
            if op not in _FLIPPED:
                raise self.error(f"a regex operator needs the attribute on the left, not {op!r}")
            left, right, op = right, left, _FLIPPED[op]
        if not isinstance(right, Static):
            raise UnsupportedTraceQL("comparing an attribute with another attribute")
        assert not isinstance(left, Static)
        self.check_types(left, op, right)
        regex: re.Pattern[str] | None = None
        if op in ("=~", "!~"):
            if right.kind != "string":
                raise self.error(f"the regex operator {op!r} needs a string")
            try:
                regex = re.compile(str(right.value))
            except re.error as exc:
                raise self.error(f"invalid regex {right.value!r} ({exc})") from None
        return Comparison(left, op, right, regex)

    def check_types(self, left: Attribute | Intrinsic, op: str, right: Static) -> None:
        if isinstance(left, Attribute):
            if right.kind in ("status", "kind"):
                raise self.error(
                    f"an attribute cannot be compared with the {right.kind} {right.value!r}"
                )
            return
        name = left.name
        equality_only = op in ("=", "!=")
        if name == "status":
            if right.kind != "status" or not equality_only:
                raise self.error("status compares with = or != to error, ok or unset (no quotes)")
        elif name == "kind":
            if right.kind != "kind" or not equality_only:
                raise self.error(
                    "kind compares with = or != to server, client, producer, consumer, internal "
                    "or unspecified (no quotes)"
                )
        elif name in ("duration", "traceDuration"):
            if right.kind not in ("duration", "int", "float") or op in ("=~", "!~"):
                raise self.error(f"{name} compares with a duration such as 100ms")
        elif name in _STRING_INTRINSICS and right.kind not in ("string", "nil"):
            raise self.error(f"{name} compares with a string in double quotes")

    def stage(self) -> CountFilter:
        tok = self.tok
        if tok.kind == "ident" and tok.text == "count":
            self.next()
            self.expect("(")
            self.expect(")")
            if not (self.tok.kind == "op" and self.tok.text in _COMPARISON_OPS[:6]):
                raise self.error("count() needs a comparison such as > 2")
            op = self.next().text
            value = self.operand()
            if not isinstance(value, Static) or value.kind not in ("int", "float"):
                raise self.error("count() compares with a number")
            assert isinstance(value.value, int | float)
            return CountFilter(op, float(value.value))
        if tok.kind == "ident":
            raise UnsupportedTraceQL(f"the pipeline stage {tok.text}()")
        if tok.kind == "op" and tok.text == "{":
            raise UnsupportedTraceQL("a spanset filter after '|'")
        raise self.error(f"expected a pipeline stage after '|', found {tok.text!r}")


def parse_traceql(query: str) -> Query:
    """Parse ``query``; raise :class:`InvalidTraceQL` or :class:`UnsupportedTraceQL`."""
    if len(query) > 10_000:
        raise InvalidTraceQL(
            f"TraceQL query of {len(query)} characters is too long. Hint: keep it under 10000."
        )
    return _Parser(query).parse()


# -- evaluation --------------------------------------------------------------------------------

Value = str | int | float | bool


@dataclass(slots=True)
class SpanRow:
    """One span, decoded for evaluation."""

    span_id: bytes
    name: str
    kind: int
    status: int
    status_message: str
    start: int
    end: int
    attrs: dict[str, Value]
    resource: dict[str, Value]


@dataclass(slots=True)
class TraceRow:
    """One trace's spans and its trace-level intrinsics."""

    spans: list[SpanRow]
    root_name: str | None
    root_service: str | None
    duration: int


_NUMERIC_OPS: dict[str, Callable[[float, float], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}
_STRING_OPS: dict[str, Callable[[str, str], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}
_STATUS_NAMES = {v: k for k, v in STATUS_CODES.items()}
_KIND_NAMES = {v: k for k, v in KIND_CODES.items()}


def operand_value(operand: Attribute | Intrinsic, span: SpanRow, trace: TraceRow) -> Value | None:
    """The value ``operand`` takes on ``span`` (``None`` when absent)."""
    if isinstance(operand, Attribute):
        if operand.scope == "span":
            return span.attrs.get(operand.name)
        if operand.scope == "resource":
            return span.resource.get(operand.name)
        value = span.attrs.get(operand.name)
        return span.resource.get(operand.name) if value is None else value
    name = operand.name
    if name == "name":
        return span.name
    if name == "duration":
        return span.end - span.start
    if name == "status":
        return _STATUS_NAMES.get(span.status, "unset")
    if name == "kind":
        return _KIND_NAMES.get(span.kind, "unspecified")
    if name == "statusMessage":
        return span.status_message
    if name == "rootName":
        return trace.root_name
    if name == "rootServiceName":
        return trace.root_service
    return trace.duration  # traceDuration


def _compare(node: Comparison, span: SpanRow, trace: TraceRow) -> bool:
    value = operand_value(node.left, span, trace)
    static = node.right
    if static.kind == "nil":
        return (value is None) == (node.op == "=")
    if value is None:
        return False
    if node.regex is not None:
        if not isinstance(value, str):
            return False
        found = node.regex.search(value) is not None
        return found if node.op == "=~" else not found
    if static.kind in ("string", "status", "kind"):
        return isinstance(value, str) and _STRING_OPS[node.op](value, str(static.value))
    if static.kind == "bool":
        if not isinstance(value, bool) or node.op not in ("=", "!="):
            return False
        return (value == static.value) == (node.op == "=")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    assert isinstance(static.value, int | float)
    return _NUMERIC_OPS[node.op](value, static.value)


def _holds(node: FieldExpr, span: SpanRow, trace: TraceRow) -> bool:
    if isinstance(node, Comparison):
        return _compare(node, span, trace)
    if isinstance(node, Constant):
        return node.value
    if node.op == "&&":
        return _holds(node.left, span, trace) and _holds(node.right, span, trace)
    return _holds(node.left, span, trace) or _holds(node.right, span, trace)


def _union(a: Sequence[SpanRow], b: Sequence[SpanRow]) -> list[SpanRow]:
    seen = {id(s) for s in a}
    return [*a, *(s for s in b if id(s) not in seen)]


def _spanset(node: SpansetExpr, trace: TraceRow) -> list[SpanRow]:
    if isinstance(node, SpansetFilter):
        return [s for s in trace.spans if _holds(node.expr, s, trace)]
    left = _spanset(node.left, trace)
    if node.op == "&&":
        if not left:
            return []
        right = _spanset(node.right, trace)
        return _union(left, right) if right else []
    return _union(left, _spanset(node.right, trace))


def evaluate(query: Query, trace: TraceRow) -> list[SpanRow]:
    """The spans of ``trace`` that ``query`` selects (empty: the trace does not match)."""
    spans = _spanset(query.spanset, trace)
    for stage in query.pipeline:
        if not spans or not _NUMERIC_OPS[stage.op](len(spans), stage.value):
            return []
    return spans
