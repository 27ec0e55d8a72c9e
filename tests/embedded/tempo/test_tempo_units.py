"""Unit specifications of the embedded Tempo's pure parts: TraceQL, logfmt, Go durations, ids."""

from __future__ import annotations

import pytest

import lab_stack.embedded.tempo as tempo_pkg
from lab_stack.embedded.tempo import (
    BadRequest,
    InvalidTraceQL,
    UnsupportedTraceQL,
    hex_string_to_trace_id,
    parse_traceql,
    trace_id_to_hex_string,
)
from lab_stack.embedded.tempo.server import parse_go_duration, parse_logfmt
from lab_stack.embedded.tempo.traceql import SpanRow, TraceRow, evaluate

MS = 1_000_000


def row(name: str, *, dur_ms: int = 10, status: int = 0, kind: int = 1, **attrs: object) -> SpanRow:
    return SpanRow(
        span_id=b"\x01" * 8,
        name=name,
        kind=kind,
        status=status,
        status_message="",
        start=0,
        end=dur_ms * MS,
        attrs=dict(attrs),
        resource={"service.name": "api"},  # type: ignore[arg-type]
    )


TRACE = TraceRow(
    spans=[
        row("GET /", kind=2, dur_ms=120, **{"http.status_code": 200}),
        row("db", status=2, retries=3),
    ],
    root_name="GET /",
    root_service="api",
    duration=120 * MS,
)


def test_public_names_are_pinned() -> None:
    """The package exports exactly its documented public names."""
    assert sorted(tempo_pkg.__all__) == [
        "BadRequest",
        "InvalidTraceQL",
        "SearchParams",
        "ServerConfig",
        "TraceQLError",
        "TraceStore",
        "UnsupportedTraceQL",
        "create_app",
        "hex_string_to_trace_id",
        "main",
        "parse_traceql",
        "trace_id_to_hex_string",
    ]


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("{}", ["GET /", "db"]),
        ("{ true }", ["GET /", "db"]),
        ('{ resource.service.name = "api" && duration > 100ms }', ["GET /"]),
        ("{ duration >= 0.1s }", ["GET /"]),
        ("{ duration < 120000us }", ["db"]),
        ("{ status = error || kind = server }", ["GET /", "db"]),
        ("{ span.retries > 2.5 }", ["db"]),
        ("{ .retries = -3 || .retries = 3 }", ["db"]),
        ("{ 3 = span.retries }", ["db"]),
        ("{ 100 < span.http.status_code }", ["GET /"]),
        ('{ name =~ "^d" }', ["db"]),
        ("{ name = `GET /` }", ["GET /"]),
        ('{ span."http.status_code" = 200 }', ["GET /"]),
        ("{ span.http.status_code = nil }", ["db"]),
        ('{ span.http.status_code = "200" }', []),
        ('{ rootServiceName = "api" && traceDuration > 1m }', []),
        ("{ status = error } | count() >= 1 | count() < 2", ["db"]),
        ("{ } | count() = 1", []),
        ('({ name = "db" } && { kind = server }) || { name = "none" }', ["db", "GET /"]),
    ],
)
def test_traceql_selects_spans(query: str, names: list[str]) -> None:
    """Each query selects exactly the listed spans of the sample trace."""
    assert [s.name for s in evaluate(parse_traceql(query), TRACE)] == names


@pytest.mark.parametrize(
    ("query", "feature"),
    [
        ("{ .a = 1 } >> { .b = 1 }", "structural operator '>>'"),
        ("{ .a = 1 } ~ { .b = 1 }", "structural operator '~'"),
        ("{ .a = 1 } | max(duration) > 1s", "pipeline stage max()"),
        ("{ .a = 1 } | select(.b)", "pipeline stage select()"),
        ("{ .a = 1 } | { .b = 2 }", "spanset filter after '|'"),
        ("{ .a * 2 = 4 }", "arithmetic"),
        ("{ !(.a = 1) }", "negation"),
        ("{ .a = .b }", "another attribute"),
        ("{ parent.a = 1 }", "'parent.'"),
        ("{ childCount > 1 }", "'childCount'"),
    ],
)
def test_unsupported_features_name_themselves(query: str, feature: str) -> None:
    """Valid TraceQL beyond the subset raises an error naming the feature and the docker stack."""
    with pytest.raises(UnsupportedTraceQL, match="run the docker stack for full TraceQL") as info:
        parse_traceql(query)
    assert feature in str(info.value)


@pytest.mark.parametrize(
    "query",
    [
        "",
        "{",
        "{ .a = }",
        "{ .a == 1 }",
        '{ status = "error" }',
        "{ kind = 2 }",
        '{ duration > "x" }',
        "{ name = 1 }",
        '{ .a =~ "(" }',
        "{ nope = 1 }",
        "{ .a = 1 } |",
        "{ .a = 1 } }",
        "{ .a = 1 } | count()",
    ],
)
def test_invalid_queries_are_rejected(query: str) -> None:
    """Malformed or ill-typed queries raise InvalidTraceQL with a hint."""
    with pytest.raises(InvalidTraceQL, match="Hint:"):
        parse_traceql(query)


def test_logfmt_tags() -> None:
    """Tags are read as logfmt: bare and quoted values, escapes, keys without values."""
    assert parse_logfmt('service.name=api name="GET /x" msg="a \\"b\\"" flag') == [
        ("service.name", "api"),
        ("name", "GET /x"),
        ("msg", 'a "b"'),
        ("flag", ""),
    ]
    with pytest.raises(BadRequest, match="unterminated"):
        parse_logfmt('a="x')


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("100ms", 100 * MS),
        ("1h2m", 3720 * 10**9),
        ("1.5s", 1_500 * MS),
        ("300us", 300_000),
        ("2µs", 2000),
        ("7ns", 7),
    ],
)
def test_go_durations(text: str, ns: int) -> None:
    """``minDuration``/``maxDuration`` accept Go durations."""
    assert parse_go_duration(text) == ns


@pytest.mark.parametrize("text", ["", "10", "ms", "1d", "1.2.3s", "abc"])
def test_bad_go_durations(text: str) -> None:
    """Anything that is not a Go duration is refused."""
    with pytest.raises(ValueError, match="invalid duration"):
        parse_go_duration(text)


def test_trace_id_parsing_matches_tempo() -> None:
    """Trace ids are left-padded to 16 bytes, odd lengths allowed, non-hex and >128 bits refused."""
    assert hex_string_to_trace_id("1") == b"\0" * 15 + b"\x01"
    assert hex_string_to_trace_id("ABC").hex() == "0" * 29 + "abc"
    assert trace_id_to_hex_string(b"\0" * 8 + b"\x0a" * 8) == "a0a0a0a0a0a0a0a"
    with pytest.raises(BadRequest, match="invalid character 'g' at position 2"):
        hex_string_to_trace_id("ag")
    with pytest.raises(BadRequest, match="larger than 128 bits"):
        hex_string_to_trace_id("1" * 33)
