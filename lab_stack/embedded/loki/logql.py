"""A hand-written lexer and recursive-descent parser for the LogQL subset the embedded Loki serves.

The grammar follows Loki 2.9's ``pkg/logql/syntax/expr.y``; the precedence of binary operators
is Prometheus's (``or`` < ``and unless`` < comparisons < ``+ -`` < ``* / %`` < ``^``). Parse errors
read like Loki's (``parse error at line 1, col N: ...``); a feature outside the subset raises
:class:`Unsupported`, whose message names it and points at the docker stack.

Example:
    >>> q = parse('sum by (level) (count_over_time({app="api"} |= "error" | json [5m]))')
    >>> type(q).__name__, q.op
    ('VectorAgg', 'sum')
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = [
    "BinOp",
    "Grouping",
    "JsonStage",
    "KeepDrop",
    "LabelFilter",
    "LabelFormat",
    "LineFilter",
    "LineFormat",
    "LogQLError",
    "LogQuery",
    "LogfmtStage",
    "Matcher",
    "NumberLit",
    "ParseError",
    "RangeAgg",
    "RegexpStage",
    "Unsupported",
    "Unwrap",
    "VectorAgg",
    "VectorLit",
    "parse",
    "parse_bytes",
    "parse_go_duration",
    "parse_prom_duration",
    "parse_selector",
]

NS = 1_000_000_000


class LogQLError(ValueError):
    """A query the embedded Loki cannot run; the message is the HTTP 400 body."""


class ParseError(LogQLError):
    """The query is not valid LogQL."""


class Unsupported(LogQLError):
    """The query uses LogQL beyond the embedded subset."""

    def __init__(self, feature: str) -> None:
        super().__init__(
            f"{feature} is not supported by the embedded Loki; run the docker stack for full LogQL"
        )


EMPTY_COMPATIBLE = (
    "queries require at least one regexp or equality matcher that does not have an "
    'empty-compatible value. For instance, app=~".*" does not meet this requirement, '
    'but app=~".+" will'
)

# -- durations and bytes -------------------------------------------------------------------------

_GO_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": NS}
_GO_UNITS |= {"m": 60 * NS, "h": 3600 * NS}
_PROM_UNITS = {"ms": 1_000_000, "s": NS, "m": 60 * NS, "h": 3600 * NS, "d": 86400 * NS}
_PROM_UNITS |= {"w": 7 * 86400 * NS, "y": 365 * 86400 * NS}
_DUR_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([a-zA-Zµμ]+)")
_BYTES = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*$")
_BYTE_UNITS: dict[str, int] = {"": 1, "b": 1}
for _i, _p in enumerate("kmgtpe", start=1):
    _BYTE_UNITS[_p] = _BYTE_UNITS[_p + "b"] = 1000**_i
    _BYTE_UNITS[_p + "ib"] = _BYTE_UNITS[_p + "i"] = 1024**_i


def _parse_units(text: str, units: dict[str, int]) -> int | None:
    if not text:
        return None
    sign = 1
    if text[0] in "+-":
        sign = -1 if text[0] == "-" else 1
        text = text[1:]
    if text == "0":
        return 0
    total, pos = 0.0, 0
    for m in _DUR_PART.finditer(text):
        if m.start() != pos or m.group(2) not in units:
            return None
        total += float(m.group(1)) * units[m.group(2)]
        pos = m.end()
    if pos != len(text) or pos == 0:
        return None
    return sign * round(total)


def parse_go_duration(text: str) -> int | None:
    """Nanoseconds of a Go ``time.ParseDuration`` string (``1.5s``, ``300ms``), or None."""
    return _parse_units(text, _GO_UNITS)


def parse_prom_duration(text: str) -> int | None:
    """Nanoseconds of a Prometheus duration (``5m``, ``1h30m``, ``1d``, ``2w``), or None."""
    if text.startswith(("+", "-")):
        return None
    return _parse_units(text, _PROM_UNITS)


def parse_bytes(text: str) -> float | None:
    """Bytes of a humanize-style size (``20MB``, ``1KiB``, ``512``), or None."""
    m = _BYTES.match(text)
    if not m:
        return None
    unit = m.group(2).lower()
    if unit not in _BYTE_UNITS:
        return None
    return float(m.group(1)) * _BYTE_UNITS[unit]


# -- AST -------------------------------------------------------------------------------------------


@dataclass
class Matcher:
    """A stream or label matcher ``name op "value"``."""

    name: str
    op: str  # = != =~ !~
    value: str
    regex: re.Pattern[str] | None = None

    def matches(self, value: str) -> bool:
        """Whether a label value (``""`` when absent) satisfies the matcher."""
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        assert self.regex is not None
        hit = self.regex.fullmatch(value) is not None
        return hit if self.op == "=~" else not hit


@dataclass
class LineFilter:
    """``|= != |~ !~`` followed by one or more ``or``-ed strings."""

    op: str
    values: list[str]
    regexes: list[re.Pattern[str]] = field(default_factory=list)


@dataclass
class JsonStage:
    """``| json`` with optional ``label="path"`` parameters (path as a list of keys/indexes)."""

    params: list[tuple[str, list[str | int]]]


@dataclass
class LogfmtStage:
    """``| logfmt`` with optional ``label="key"`` parameters."""

    params: list[tuple[str, str]]


@dataclass
class RegexpStage:
    """``| regexp "..."``: named groups become labels."""

    regex: re.Pattern[str]


@dataclass
class LFPred:
    """One label predicate: a string matcher or a numeric/duration/bytes comparison."""

    name: str
    op: str
    kind: str  # string number duration bytes
    value: float | str
    matcher: Matcher | None = None


@dataclass
class LFBinary:
    """Two label filter expressions joined by ``and`` or ``or``."""

    op: str
    left: LFExpr
    right: LFExpr


LFExpr = LFPred | LFBinary


@dataclass
class LabelFilter:
    """``| <label filter expression>``."""

    expr: LFExpr


@dataclass
class LineFormat:
    """``| line_format "template"``, compiled to literal/label parts."""

    parts: list[tuple[bool, str]]  # (is_label, text)


@dataclass
class LabelFormat:
    """``| label_format dst=src, dst="template"``."""

    items: list[tuple[str, str | None, list[tuple[bool, str]] | None]]


@dataclass
class KeepDrop:
    """``| keep a, b`` or ``| drop a, b``."""

    keep: bool
    names: list[str]


Stage = (
    LineFilter
    | JsonStage
    | LogfmtStage
    | RegexpStage
    | LabelFilter
    | LineFormat
    | LabelFormat
    | KeepDrop
)


@dataclass
class Unwrap:
    """``| unwrap [conv(]label[)]`` plus the label filters that follow it."""

    label: str
    conv: str | None
    filters: list[LabelFilter] = field(default_factory=list)


@dataclass
class LogQuery:
    """A stream selector and its pipeline."""

    matchers: list[Matcher]
    stages: list[Stage]

    @property
    def only_line_filters(self) -> bool:
        """Whether every stage is a line filter (the fast path)."""
        return all(isinstance(s, LineFilter) for s in self.stages)


@dataclass
class Grouping:
    """``by (...)`` or ``without (...)``."""

    without: bool
    labels: list[str]


@dataclass
class RangeAgg:
    """A range aggregation such as ``count_over_time({..}[5m])``."""

    op: str
    log: LogQuery
    range_ns: int
    offset_ns: int = 0
    unwrap: Unwrap | None = None
    param: float | None = None
    grouping: Grouping | None = None


@dataclass
class VectorAgg:
    """A vector aggregation such as ``sum by (a) (...)`` or ``topk(3, ...)``."""

    op: str
    expr: Expr
    grouping: Grouping | None = None
    param: float | None = None


@dataclass
class BinOp:
    """``lhs op rhs`` between vectors and/or scalars."""

    op: str
    lhs: Expr
    rhs: Expr
    bool_mod: bool = False


@dataclass
class NumberLit:
    """A scalar literal."""

    value: float


@dataclass
class VectorLit:
    """``vector(n)``: one label-less sample per step."""

    value: float


Expr = LogQuery | RangeAgg | VectorAgg | BinOp | NumberLit | VectorLit

RANGE_OPS = {"count_over_time", "rate", "bytes_over_time", "bytes_rate"}
UNWRAP_OPS = {
    "sum_over_time",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "quantile_over_time",
    "first_over_time",
    "last_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "rate",
}
VECTOR_OPS = {"sum", "avg", "min", "max", "count", "topk", "bottomk", "stddev", "stdvar"}
UNSUPPORTED_FUNCS = {
    "absent_over_time",
    "rate_counter",
    "label_replace",
    "sort",
    "sort_desc",
    "sgn",
}
_BINOP_PREC = {
    "or": 1,
    "and": 2,
    "unless": 2,
    "==": 3,
    "!=": 3,
    ">": 3,
    ">=": 3,
    "<": 3,
    "<=": 3,
    "+": 4,
    "-": 4,
    "*": 5,
    "/": 5,
    "%": 5,
    "^": 6,
}
COMPARISONS = {"==", "!=", ">", ">=", "<", "<="}

# -- lexer ------------------------------------------------------------------------------------


@dataclass
class Token:
    """One lexical token; ``kind`` is the punctuation or STRING/NUMBER/DURATION/BYTES/IDENT."""

    kind: str
    text: str
    pos: int
    value: object = None


_PUNCT = [
    "|=", "|~", "!=", "!~", "=~", "==", ">=", "<=", "|>", "!>",
    "{", "}", "(", ")", "[", "]", ",", "=", ">", "<", "|", "+", "-", "*", "/", "%", "^",
]  # fmt: skip
_NUMBER = re.compile(r"(?:0[xX][0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)")
_UNIT_TAIL = re.compile(r"[a-zA-Zµμ]+(?:(?:\d+(?:\.\d*)?)[a-zA-Zµμ]+)*")
_IDENT = re.compile(r"[a-zA-Z_][a-zA-Z0-9_.]*")
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_ESCAPES |= {"\\": "\\", '"': '"', "'": "'"}


def _error(src: str, pos: int, msg: str) -> ParseError:
    line = src.count("\n", 0, pos) + 1
    col = pos - (src.rfind("\n", 0, pos) + 1) + 1
    return ParseError(f"parse error at line {line}, col {col}: {msg}")


def _read_string(src: str, pos: int) -> tuple[str, int]:
    """Read a Go string literal starting at ``pos``; return (value, end)."""
    quote = src[pos]
    if quote == "`":
        end = src.find("`", pos + 1)
        if end < 0:
            raise _error(src, pos, "literal not terminated")
        return src[pos + 1 : end], end + 1
    out: list[str] = []
    i = pos + 1
    n = len(src)
    while i < n:
        c = src[i]
        if c == quote:
            return "".join(out), i + 1
        if c == "\n":
            break
        if c != "\\":
            out.append(c)
            i += 1
            continue
        if i + 1 >= n:
            break
        e = src[i + 1]
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 2
        elif e in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[e]
            digits = src[i + 2 : i + 2 + width]
            if len(digits) != width or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise _error(src, i, "invalid syntax")
            code = int(digits, 16)
            if code > 0x10FFFF:
                raise _error(src, i, "invalid syntax")
            out.append(chr(code))
            i += 2 + width
        elif e in "01234567":
            digits = src[i + 1 : i + 4]
            if len(digits) != 3 or not all(d in "01234567" for d in digits):
                raise _error(src, i, "invalid syntax")
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            raise _error(src, i, f"invalid char escape \\{e}")
    raise _error(src, pos, "literal not terminated")


def tokenize(src: str) -> list[Token]:
    """Split a LogQL query into tokens."""
    tokens: list[Token] = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c.isspace():
            i += 1
            continue
        if c == "#":  # comment to end of line
            nl = src.find("\n", i)
            i = n if nl < 0 else nl + 1
            continue
        if c in '"`':
            value, end = _read_string(src, i)
            tokens.append(Token("STRING", src[i:end], i, value))
            i = end
            continue
        m = _NUMBER.match(src, i)
        if m and (c.isdigit() or c == "."):
            end = m.end()
            tail = _UNIT_TAIL.match(src, end)
            if tail:
                text = src[i : tail.end()]
                dur = parse_prom_duration(text)
                if dur is None:
                    dur = parse_go_duration(text)
                if dur is not None:
                    tokens.append(Token("DURATION", text, i, dur))
                else:
                    size = parse_bytes(text)
                    if size is None:
                        raise _error(src, i, f"invalid duration or size {text!r}")
                    tokens.append(Token("BYTES", text, i, size))
                i = tail.end()
                continue
            text = src[i:end]
            number = float(int(text, 16)) if text[:2].lower() == "0x" else float(text)
            tokens.append(Token("NUMBER", text, i, number))
            i = end
            continue
        m = _IDENT.match(src, i)
        if m:
            tokens.append(Token("IDENT", m.group(), i, m.group()))
            i = m.end()
            continue
        for p in _PUNCT:
            if src.startswith(p, i):
                tokens.append(Token(p, p, i))
                i += len(p)
                break
        else:
            raise _error(src, i, f"unexpected character {c!r}")
    tokens.append(Token("EOF", "", n))
    return tokens


# -- templates ---------------------------------------------------------------------------------

_TEMPLATE_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)
_TEMPLATE_FIELD = re.compile(r"\.([a-zA-Z_][a-zA-Z0-9_]*)|(__line__|__timestamp__)")


def _compile_template(text: str) -> list[tuple[bool, str]]:
    parts: list[tuple[bool, str]] = []
    pos = 0
    for m in _TEMPLATE_ACTION.finditer(text):
        if m.start() > pos:
            parts.append((False, text[pos : m.start()]))
        action = m.group(1)
        fm = _TEMPLATE_FIELD.fullmatch(action)
        if not fm:
            raise Unsupported(f"the template action {{{{{action}}}}} (only {{{{.label}}}} is)")
        parts.append((True, fm.group(1) or fm.group(2)))
        pos = m.end()
    if "{{" in text[pos:]:
        raise ParseError(f"invalid template {text!r}: unclosed action")
    if pos < len(text):
        parts.append((False, text[pos:]))
    return parts


def _compile_regex(src: str, pattern: str, pos: int) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except (re.error, OverflowError, RecursionError) as exc:
        raise _error(src, pos, f"invalid regexp {pattern!r}: {exc}") from None


_JSON_PATH = re.compile(r'\s*(?:\.?([^.\[\]"]+)|\[\s*(\d+)\s*\]|\[\s*"((?:[^"\\]|\\.)*)"\s*\])')


def _parse_json_path(src: str, path: str, pos: int) -> list[str | int]:
    out: list[str | int] = []
    i = 0
    while i < len(path):
        m = _JSON_PATH.match(path, i)
        if not m or m.end() == i:
            raise _error(src, pos, f"invalid json expression {path!r}")
        if m.group(1) is not None:
            out.append(m.group(1).strip())
        elif m.group(2) is not None:
            out.append(int(m.group(2)))
        else:
            out.append(m.group(3))
        i = m.end()
    if not out:
        raise _error(src, pos, f"invalid json expression {path!r}")
    return out


# -- parser ----------------------------------------------------------------------------------


class _Parser:
    def __init__(self, src: str) -> None:
        self.src = src
        self.toks = tokenize(src)
        self.i = 0

    # token helpers
    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def peek(self, k: int = 1) -> Token:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def next(self) -> Token:
        t = self.toks[self.i]
        if t.kind != "EOF":
            self.i += 1
        return t

    def is_ident(self, *names: str) -> bool:
        return self.tok.kind == "IDENT" and (not names or self.tok.text in names)

    def fail(self, msg: str | None = None, tok: Token | None = None) -> ParseError:
        t = tok or self.tok
        what = "end of input" if t.kind == "EOF" else t.text
        return _error(self.src, t.pos, msg or f"syntax error: unexpected {what}")

    def expect(self, kind: str) -> Token:
        if self.tok.kind != kind:
            raise self.fail()
        return self.next()

    def string(self) -> str:
        t = self.expect("STRING")
        assert isinstance(t.value, str)
        return t.value

    def ident(self) -> str:
        t = self.expect("IDENT")
        return t.text

    def label_name(self) -> str:
        t = self.expect("IDENT")
        if "." in t.text:
            raise self.fail(f"syntax error: invalid label name {t.text!r}", t)
        return t.text

    # top level
    def parse(self) -> Expr:
        expr = self.expr(0)
        if self.tok.kind != "EOF":
            raise self.fail()
        return expr

    def expr(self, min_prec: int) -> Expr:
        lhs = self.unary()
        while True:
            t = self.tok
            op = t.text if t.kind in _BINOP_PREC or self.is_ident("and", "or", "unless") else None
            if op is None or op not in _BINOP_PREC or _BINOP_PREC[op] < min_prec:
                return lhs
            if isinstance(lhs, LogQuery):
                raise self.fail()
            self.next()
            bool_mod = False
            if self.is_ident("bool"):
                if op not in COMPARISONS:
                    raise self.fail("bool modifier can only be used on comparison operators")
                self.next()
                bool_mod = True
            if self.is_ident("on", "ignoring"):
                raise Unsupported(f"vector matching with {self.tok.text}()")
            if self.is_ident("group_left", "group_right"):
                raise Unsupported(self.tok.text)
            prec = _BINOP_PREC[op]
            rhs = self.expr(prec if op == "^" else prec + 1)
            if isinstance(rhs, LogQuery):
                raise self.fail("syntax error: unexpected log query in a binary expression")
            if op in ("and", "or", "unless") and (
                isinstance(lhs, NumberLit) or isinstance(rhs, NumberLit)
            ):
                raise self.fail(f"set operator {op!r} not allowed in binary scalar expression")
            lhs = BinOp(op, lhs, rhs, bool_mod)

    def unary(self) -> Expr:
        if self.tok.kind in ("-", "+"):
            sign = -1.0 if self.next().kind == "-" else 1.0
            inner = self.unary()
            if isinstance(inner, NumberLit):
                return NumberLit(sign * inner.value)
            if isinstance(inner, LogQuery):
                raise self.fail()
            return inner if sign > 0 else BinOp("*", inner, NumberLit(-1.0))
        return self.primary()

    def primary(self) -> Expr:
        t = self.tok
        if t.kind == "(":
            self.next()
            inner = self.expr(0)
            self.expect(")")
            return inner
        if t.kind == "NUMBER":
            self.next()
            assert isinstance(t.value, float)
            return NumberLit(t.value)
        if t.kind == "{":
            return self.log_query()
        if t.kind == "IDENT":
            name = t.text
            if name in ("inf", "Inf", "NaN", "nan"):
                self.next()
                return NumberLit(float(name))
            if name == "vector":
                self.next()
                self.expect("(")
                value = self.signed_number()
                self.expect(")")
                return VectorLit(value)
            if name in RANGE_OPS or name in UNWRAP_OPS:
                return self.range_agg()
            if name in VECTOR_OPS:
                return self.vector_agg()
            if name in UNSUPPORTED_FUNCS:
                raise Unsupported(f"the function {name}()")
        raise self.fail()

    def signed_number(self) -> float:
        sign = 1.0
        if self.tok.kind == "-":
            self.next()
            sign = -1.0
        t = self.expect("NUMBER")
        assert isinstance(t.value, float)
        return sign * t.value

    def grouping(self) -> Grouping | None:
        if not self.is_ident("by", "without"):
            return None
        without = self.next().text == "without"
        self.expect("(")
        labels: list[str] = []
        while self.tok.kind != ")":
            labels.append(self.label_name())
            if self.tok.kind == ",":
                self.next()
            elif self.tok.kind != ")":
                raise self.fail()
        self.next()
        return Grouping(without, labels)

    def vector_agg(self) -> VectorAgg:
        op = self.next().text
        grouping = self.grouping()
        self.expect("(")
        param: float | None = None
        if op in ("topk", "bottomk"):
            param = self.signed_number()
            if param != int(param) or param < 0:
                raise self.fail(f"invalid parameter {param} for {op}: must be a whole number")
            self.expect(",")
        inner = self.expr(0)
        self.expect(")")
        after = self.grouping()
        if grouping and after:
            raise self.fail("syntax error: grouping given twice")
        if isinstance(inner, LogQuery):
            raise self.fail(f"syntax error: {op} needs a metric query, not a log query")
        return VectorAgg(op, inner, grouping or after, param)

    def range_agg(self) -> RangeAgg:
        op_tok = self.next()
        op = op_tok.text
        self.expect("(")
        param: float | None = None
        if op == "quantile_over_time":
            param = self.signed_number()
            self.expect(",")
        matchers = self.selector()
        range_ns: int | None = None
        if self.tok.kind == "[":
            range_ns = self.range_literal()
        stages, unwrap = self.pipeline(allow_unwrap=True)
        if range_ns is None:
            if self.tok.kind != "[":
                raise self.fail()
            range_ns = self.range_literal()
        offset_ns = 0
        if self.is_ident("offset"):
            self.next()
            t = self.expect("DURATION")
            assert isinstance(t.value, int)
            offset_ns = t.value
        self.expect(")")
        grouping = self.grouping()
        log = LogQuery(matchers, stages)
        if unwrap is None and op not in RANGE_OPS:
            raise self.fail(f"invalid aggregation {op} without unwrap", op_tok)
        if unwrap is not None and op not in UNWRAP_OPS:
            raise self.fail(f"invalid aggregation {op} with unwrap", op_tok)
        if grouping is not None and unwrap is None:
            raise self.fail(f"grouping not allowed for {op} aggregation", op_tok)
        return RangeAgg(op, log, range_ns, offset_ns, unwrap, param, grouping)

    def range_literal(self) -> int:
        self.expect("[")
        t = self.expect("DURATION")
        self.expect("]")
        assert isinstance(t.value, int)
        if t.value <= 0:
            raise self.fail("syntax error: range must be positive", t)
        return t.value

    def log_query(self) -> LogQuery:
        matchers = self.selector()
        stages, _ = self.pipeline(allow_unwrap=False)
        return LogQuery(matchers, stages)

    def selector(self, validate: bool = True) -> list[Matcher]:
        self.expect("{")
        matchers: list[Matcher] = []
        while self.tok.kind != "}":
            matchers.append(self.matcher())
            if self.tok.kind == ",":
                self.next()
            elif self.tok.kind != "}":
                raise self.fail()
        self.next()
        if validate and not any(not m.matches("") for m in matchers):
            raise ParseError(f"parse error : {EMPTY_COMPATIBLE}")
        return matchers

    def matcher(self) -> Matcher:
        name = self.label_name()
        op_tok = self.next()
        if op_tok.kind not in ("=", "!=", "=~", "!~"):
            raise self.fail(tok=op_tok)
        value_tok = self.tok
        value = self.string()
        regex = None
        if op_tok.kind in ("=~", "!~"):
            regex = _compile_regex(self.src, value, value_tok.pos)
        return Matcher(name, op_tok.kind, value, regex)

    def pipeline(self, allow_unwrap: bool) -> tuple[list[Stage], Unwrap | None]:
        stages: list[Stage] = []
        unwrap: Unwrap | None = None
        while True:
            t = self.tok
            if t.kind in ("|=", "!=", "|~", "!~"):
                if unwrap is not None:
                    raise self.fail("syntax error: only label filters may follow unwrap")
                stages.append(self.line_filter())
            elif t.kind in ("|>", "!>"):
                raise Unsupported(f"the pattern line filter {t.kind}")
            elif t.kind == "|":
                self.next()
                stage = self.stage(allow_unwrap)
                if isinstance(stage, Unwrap):
                    if unwrap is not None:
                        raise self.fail("syntax error: unwrap given twice")
                    unwrap = stage
                elif unwrap is not None:
                    if not isinstance(stage, LabelFilter):
                        raise self.fail("syntax error: only label filters may follow unwrap")
                    unwrap.filters.append(stage)
                else:
                    stages.append(stage)
            else:
                return stages, unwrap

    def line_filter(self) -> LineFilter:
        op = self.next().kind
        if self.is_ident("ip"):
            raise Unsupported("the ip() line filter")
        values = [self.filter_string()]
        while self.is_ident("or") and self.peek().kind == "STRING":
            self.next()
            values.append(self.filter_string())
        regexes: list[re.Pattern[str]] = []
        if op in ("|~", "!~"):
            regexes = [_compile_regex(self.src, v, self.tok.pos) for v in values]
        return LineFilter(op, values, regexes)

    def filter_string(self) -> str:
        return self.string()

    def stage(self, allow_unwrap: bool) -> Stage | Unwrap:
        t = self.tok
        if t.kind == "(":
            return LabelFilter(self.lf_or())
        if t.kind != "IDENT":
            raise self.fail()
        name = t.text
        nxt = self.peek().kind
        is_pred = nxt in ("=", "!=", "=~", "!~", "==", ">", ">=", "<", "<=")
        if is_pred:
            return LabelFilter(self.lf_or())
        self.next()
        if name == "json":
            return JsonStage(self.json_params())
        if name == "logfmt":
            if self.tok.kind == "-":
                raise Unsupported("logfmt flags (--strict, --keep-empty)")
            return LogfmtStage([(a, b) for a, b in self.extract_params()])
        if name == "regexp":
            pos = self.tok.pos
            regex = _compile_regex(self.src, self.string(), pos)
            if not regex.groupindex:
                raise _error(self.src, pos, "at least one named capture must be supplied")
            return RegexpStage(regex)
        if name == "line_format":
            return LineFormat(_compile_template(self.string()))
        if name == "label_format":
            return self.label_format()
        if name in ("keep", "drop"):
            names = [self.label_name()]
            while self.tok.kind == ",":
                self.next()
                names.append(self.label_name())
            if self.tok.kind in ("=", "!=", "=~", "!~"):
                raise Unsupported(f"{name} with label matchers")
            return KeepDrop(name == "keep", names)
        if name == "unwrap":
            if not allow_unwrap:
                raise self.fail("syntax error: unwrap is only allowed in metric queries", t)
            if self.is_ident("duration", "duration_seconds", "bytes") and self.peek().kind == "(":
                conv = self.next().text
                self.expect("(")
                label = self.label_name()
                self.expect(")")
                return Unwrap(label, "duration" if conv == "duration_seconds" else conv)
            return Unwrap(self.label_name(), None)
        if name in ("pattern", "unpack", "decolorize", "distinct"):
            raise Unsupported(f"the | {name} stage")
        raise self.fail(tok=t)

    def extract_params(self) -> list[tuple[str, str]]:
        params: list[tuple[str, str]] = []
        while self.tok.kind == "IDENT" and self.peek().kind in ("=", ",", "|", ")", "[", "EOF"):
            if self.tok.text in ("or", "and", "offset"):
                break
            label = self.label_name()
            if self.tok.kind == "=":
                self.next()
                params.append((label, self.string()))
            else:
                params.append((label, label))
            if self.tok.kind != ",":
                break
            self.next()
        return params

    def json_params(self) -> list[tuple[str, list[str | int]]]:
        out: list[tuple[str, list[str | int]]] = []
        pos = self.tok.pos
        for label, path in self.extract_params():
            out.append((label, _parse_json_path(self.src, path, pos)))
        return out

    def label_format(self) -> LabelFormat:
        items: list[tuple[str, str | None, list[tuple[bool, str]] | None]] = []
        while True:
            dst = self.label_name()
            self.expect("=")
            if self.tok.kind == "STRING":
                items.append((dst, None, _compile_template(self.string())))
            else:
                items.append((dst, self.label_name(), None))
            if self.tok.kind != ",":
                return LabelFormat(items)
            self.next()

    # label filter expressions: or < and (',' and adjacency mean and)
    def lf_or(self) -> LFExpr:
        left = self.lf_and()
        while self.is_ident("or"):
            self.next()
            left = LFBinary("or", left, self.lf_and())
        return left

    def lf_and(self) -> LFExpr:
        left = self.lf_atom()
        while True:
            if self.is_ident("and") or self.tok.kind == ",":
                self.next()
            elif not (
                self.tok.kind == "("
                or (
                    self.tok.kind == "IDENT"
                    and self.tok.text not in ("or", "offset")
                    and self.peek().kind in ("=", "!=", "=~", "!~", "==", ">", ">=", "<", "<=")
                )
            ):
                return left
            left = LFBinary("and", left, self.lf_atom())

    def lf_atom(self) -> LFExpr:
        if self.tok.kind == "(":
            self.next()
            inner = self.lf_or()
            self.expect(")")
            return inner
        name = self.label_name()
        op_tok = self.next()
        op = op_tok.kind
        if op not in ("=", "!=", "=~", "!~", "==", ">", ">=", "<", "<="):
            raise self.fail(tok=op_tok)
        if self.is_ident("ip"):
            raise Unsupported("the ip() label filter")
        t = self.tok
        if t.kind == "STRING":
            if op not in ("=", "!=", "=~", "!~"):
                raise self.fail(tok=t)
            value = self.string()
            regex = _compile_regex(self.src, value, t.pos) if op in ("=~", "!~") else None
            return LFPred(name, op, "string", value, Matcher(name, op, value, regex))
        if op in ("=~", "!~"):
            raise self.fail(tok=t)
        sign = 1.0
        if t.kind == "-":
            self.next()
            sign = -1.0
            t = self.tok
        if t.kind in ("NUMBER", "DURATION", "BYTES"):
            self.next()
            assert isinstance(t.value, (int, float))
            kind = {"NUMBER": "number", "DURATION": "duration", "BYTES": "bytes"}[t.kind]
            return LFPred(name, "==" if op == "=" else op, kind, sign * float(t.value))
        raise self.fail(tok=t)


def parse_selector(text: str) -> list[Matcher]:
    """Parse a bare stream selector without Loki's empty-compatible check (``/series``)."""
    p = _Parser(text)
    matchers = p.selector(validate=False)
    if p.tok.kind != "EOF":
        raise p.fail()
    return matchers


def parse(query: str) -> Expr:
    """Parse a LogQL query into its AST; raise :class:`LogQLError` (parse error or unsupported)."""
    if not query.strip():
        raise ParseError("parse error : syntax error: unexpected end of input")
    try:
        return _Parser(query).parse()
    except RecursionError:
        raise ParseError("parse error : query nested too deeply") from None
