"""Unit tests of the LogQL parser and evaluator of the embedded Loki (in process, no server)."""

from __future__ import annotations

import json
import math

import pytest

import lab_stack.embedded.loki as loki_pkg
from lab_stack.embedded.loki.engine import Matrix, format_value, run_log_query, run_metric_query
from lab_stack.embedded.loki.logql import (
    LogQLError,
    ParseError,
    Unsupported,
    parse,
    parse_bytes,
    parse_go_duration,
    parse_prom_duration,
)
from lab_stack.embedded.loki.store import LokiStore

NS = 1_000_000_000


def test_public_names_are_pinned() -> None:
    """The package exports exactly its documented names."""
    assert sorted(loki_pkg.__all__) == sorted(
        [
            "LOKI_VERSION",
            "LogQLError",
            "LokiStore",
            "ParseError",
            "Unsupported",
            "create_app",
            "parse",
        ]
    )


@pytest.mark.parametrize(
    ("text", "ns"),
    [("5m", 300 * NS), ("1h30m", 5400 * NS), ("1d", 86400 * NS), ("500ms", NS // 2)],
)
def test_prometheus_durations(text: str, ns: int) -> None:
    """Range durations use Prometheus units, including d and compound forms."""
    assert parse_prom_duration(text) == ns


def test_go_durations_and_bytes() -> None:
    """Label-filter durations follow Go (fractions, us) and sizes follow humanize."""
    assert parse_go_duration("1.5s") == 1_500_000_000
    assert parse_go_duration("250us") == 250_000
    assert parse_go_duration("abc") is None
    assert parse_bytes("20MB") == 20e6
    assert parse_bytes("1KiB") == 1024
    assert parse_bytes("12 parsecs") is None


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ('{app=~".*"}', "empty-compatible value"),
        ('{app!="x"}', "empty-compatible value"),
        ('{app="x"', "parse error at line 1, col 9"),
        ('{app="x"} |= "\\q"', "invalid char escape"),
        ('count_over_time({app="x"} | json [5m]) by (a)', "grouping not allowed"),
        ('sum_over_time({app="x"}[5m])', "without unwrap"),
        ('{app="x"} | unwrap v', "only allowed in metric queries"),
    ],
)
def test_parse_errors(query: str, message: str) -> None:
    """Malformed queries raise ParseError with Loki's wording."""
    with pytest.raises(ParseError, match=message.replace("(", r"\(").replace("\\q", r"\\q")):
        parse(query)


@pytest.mark.parametrize(
    ("query", "feature"),
    [
        ('{a="b"} | pattern "<x>"', "pattern"),
        ('label_replace(count_over_time({a="b"}[1m]), "x", "y", "z", "w")', "label_replace"),
        ('sum(count_over_time({a="b"}[1m])) / on(x) sum(count_over_time({a="b"}[1m]))', "on()"),
        ('{a="b"} | line_format "{{ .x | ToUpper }}"', "template action"),
        ('absent_over_time({a="b"}[1m])', "absent_over_time"),
    ],
)
def test_unsupported_features_are_named(query: str, feature: str) -> None:
    """Features outside the subset raise Unsupported naming the feature and the docker stack."""
    with pytest.raises(Unsupported) as info:
        parse(query)
    assert feature in str(info.value)
    assert "run the docker stack for full LogQL" in str(info.value)


@pytest.fixture
def store() -> LokiStore:
    """A memory-only store with 10 JSON lines at 1..10 s and 5 logfmt lines at 1..5 s."""
    s = LokiStore()
    s.ingest(
        [
            (
                {"app": "api"},
                [
                    (
                        i * NS,
                        json.dumps(
                            {
                                "level": "error" if i % 2 else "info",
                                "ms": i * 10,
                                "req": {"id": f"r{i}"},
                            }
                        ),
                        None,
                    )
                    for i in range(1, 11)
                ],
            ),
            (
                {"app": "fmt"},
                [
                    (i * NS, f'level=warn took={i}s size={i}KB msg="hi there"', None)
                    for i in range(1, 6)
                ],
            ),
        ]
    )
    return s


def test_window_is_exclusive_below_inclusive_above(store: LokiStore) -> None:
    """count_over_time at t counts (t-range, t]."""
    value = run_metric_query(store, parse('count_over_time({app="api"}[3s])'), 5 * NS, 5 * NS, 0)
    assert isinstance(value, Matrix)
    [(labels, values)] = value.series.values()
    assert labels == {"app": "api"} and values.tolist() == [3.0]


def test_log_query_range_is_start_inclusive_end_exclusive(store: LokiStore) -> None:
    """A log query returns start <= ts < end."""
    [(_, entries)] = run_log_query(store, parse('{app="api"}'), 2 * NS, 4 * NS, 100, "forward")
    assert [ts // NS for ts, _, _ in entries] == [2, 3]


def test_json_flattens_nested_keys(store: LokiStore) -> None:
    """| json flattens nested objects with underscores."""
    result = run_log_query(
        store, parse('{app="api"} | json | req_id="r3"'), 0, 11 * NS, 100, "forward"
    )
    [(labels, entries)] = result
    assert labels == {"app": "api", "level": "error", "ms": "30", "req_id": "r3"}
    assert len(entries) == 1


def test_json_named_fields(store: LokiStore) -> None:
    """| json name="path" extracts only the named fields."""
    [(labels, _)] = run_log_query(
        store, parse('{app="api"} | json rid="req.id" | rid="r4"'), 0, 11 * NS, 100, "forward"
    )
    assert labels == {"app": "api", "rid": "r4"}


def test_logfmt_duration_and_bytes_filters(store: LokiStore) -> None:
    """Duration and bytes label filters compare converted values."""
    q = parse('{app="fmt"} | logfmt | took >= 2s and size < 4KB')
    [(labels, entries)] = [
        r for r in run_log_query(store, q, 0, 10 * NS, 100, "forward") if r[0]["took"] == "3s"
    ]
    assert labels["msg"] == "hi there" and len(entries) == 1
    total = sum(len(e) for _, e in run_log_query(store, q, 0, 10 * NS, 100, "forward"))
    assert total == 2


def test_unwrap_error_requires_a_filter(store: LokiStore) -> None:
    """A metric query over lines failing to unwrap errors until __error__ is filtered."""
    with pytest.raises(LogQLError, match="pipeline error: 'SampleExtractionErr'"):
        run_metric_query(
            store,
            parse('sum_over_time({app="fmt"} | logfmt | unwrap msg [10s])'),
            10 * NS,
            10 * NS,
            0,
        )
    ok = run_metric_query(
        store,
        parse('sum(sum_over_time({app="fmt"} | logfmt | unwrap msg | __error__="" [10s]))'),
        10 * NS,
        10 * NS,
        0,
    )
    assert isinstance(ok, Matrix) and ok.series == {}


def test_unwrap_duration_and_quantile(store: LokiStore) -> None:
    """unwrap duration() converts to seconds; quantile interpolates like Prometheus."""
    q = parse(
        'quantile_over_time(0.25, {app="fmt"} | logfmt | unwrap duration(took) [10s]) by (app)'
    )
    value = run_metric_query(store, q, 10 * NS, 10 * NS, 0)
    assert isinstance(value, Matrix)
    [(labels, values)] = value.series.values()
    assert labels == {"app": "fmt"} and values.tolist() == [2.0]


def test_or_vector_fills_missing_steps(store: LokiStore) -> None:
    """`or vector(0)` supplies a zero where the left side has no sample."""
    q = parse('sum(count_over_time({app="api"} |= "nothing-matches" [1s])) or vector(0)')
    value = run_metric_query(store, q, 1 * NS, 3 * NS, NS)
    assert isinstance(value, Matrix)
    assert [v.tolist() for _, v in value.series.values()] == [[0.0, 0.0, 0.0]]


def test_comparison_filters_and_bool(store: LokiStore) -> None:
    """Comparisons filter series; with bool they yield 0 or 1."""
    base = 'sum by (level) (count_over_time({app="api"} | json [10s]))'
    kept = run_metric_query(store, parse(f"{base} > 4"), 10 * NS, 10 * NS, 0)
    flags = run_metric_query(store, parse(f"{base} > bool 5"), 10 * NS, 10 * NS, 0)
    assert isinstance(kept, Matrix) and isinstance(flags, Matrix)
    assert sorted(v[0]["level"] for v in kept.series.values()) == ["error", "info"]
    assert sorted(float(v[1][0]) for v in flags.series.values()) == [0.0, 0.0]


def test_out_of_order_and_duplicate_entries() -> None:
    """Out-of-order entries are sorted in; an exact duplicate (ts and line) is dropped."""
    s = LokiStore()
    assert (
        s.ingest([({"a": "b"}, [(3, "c", None), (1, "a", None), (2, "b", None), (1, "a", None)])])
        == 3
    )
    [(_, entries)] = run_log_query(s, parse('{a="b"}'), 0, 10, 100, "forward")
    assert [line for _, line, _ in entries] == ["a", "b", "c"]


def test_regex_filter_over_joined_text_matches_per_line_semantics() -> None:
    """Anchored and multi-token regex filters give the same answer as line-by-line matching."""
    s = LokiStore()
    lines = ["alpha beta", "beta alpha", "gamma", "alphabet", "x alpha"]
    s.ingest([({"a": "b"}, [(i + 1, line, None) for i, line in enumerate(lines)])])
    for pattern, expected in [("^alpha", 2), ("alpha$", 2), ("a.*b", 2), ("^gamma$", 1)]:
        q = parse(f'{{a="b"}} |~ "{pattern}"')
        got = sum(len(e) for _, e in run_log_query(s, q, 0, 10, 100, "forward"))
        assert got == expected, pattern


def test_retention_bounds_bytes() -> None:
    """Byte retention drops the oldest entries first until the store fits."""
    s = LokiStore(retention_s=10**9, retention_bytes=50_000)
    for k in range(10):
        s.ingest([({"a": "b"}, [(k * 10_000 + i + 1, "x" * 100, None) for i in range(100)])])
        for stream in s.streams.values():
            stream.seal()
    s.enforce_retention(now_ns=10**6)
    assert s.nbytes <= 50_000
    [(_, entries)] = run_log_query(s, parse('{a="b"}'), 0, 10**6, 5000, "forward")
    assert entries[-1][0] == 9 * 10_000 + 100 and entries[0][0] > 10_000


def test_format_value_matches_go() -> None:
    """Values print like Go's FormatFloat('f', -1)."""
    assert [format_value(x) for x in (1.0, 0.25, 1e-7, math.inf, -math.inf, math.nan)] == [
        "1",
        "0.25",
        "0.0000001",
        "+Inf",
        "-Inf",
        "NaN",
    ]
