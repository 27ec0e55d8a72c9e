"""Contract of the Loki 2.9 HTTP API the workbook relies on (reference section 5).

Talks HTTP only, to ``loki_url``; each test pushes its own data under a unique ``test`` label, so
the suite runs unchanged against the embedded Loki or a real Loki 2.9.3.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

NS = 1_000_000_000


@pytest.fixture
def client(loki_url: str) -> Iterator[httpx.Client]:
    """An HTTP client bound to the Loki under test."""
    with httpx.Client(base_url=loki_url, timeout=30.0) as c:
        yield c


@pytest.fixture
def base() -> int:
    """A whole minute about ten minutes ago, in seconds: the tests' time origin."""
    return (int(time.time()) - 600) // 60 * 60


@pytest.fixture
def tag() -> str:
    """A label value unique to one test."""
    return uuid.uuid4().hex


def push(client: httpx.Client, streams: list[dict[str, Any]]) -> None:
    r = client.post("/loki/api/v1/push", json={"streams": streams})
    assert r.status_code == 204, r.text
    assert r.content == b""


def sixty_lines(client: httpx.Client, tag: str, base: int) -> None:
    """One JSON line per second at base+1 .. base+60; every 4th is an error; latency_ms = i."""
    values = [
        [
            str((base + i) * NS),
            json.dumps({"level": "error" if i % 4 == 0 else "info", "latency_ms": i}),
        ]
        for i in range(1, 61)
    ]
    push(client, [{"stream": {"test": tag, "app": "api"}, "values": values}])


def get(client: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
    r = client.get(path, params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    doc = r.json()
    assert doc["status"] == "success"
    return doc


def test_ready_says_ready(client: httpx.Client) -> None:
    """/ready answers 200 with the body 'ready' and a newline."""
    r = client.get("/ready")
    assert (r.status_code, r.text) == (200, "ready\n")


def test_push_malformed_is_400_plain_text(client: httpx.Client) -> None:
    """A malformed JSON push is refused with 400 and a plain-text reason."""
    r = client.post(
        "/loki/api/v1/push", content=b'{"streams": [', headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert r.text.strip()
    assert not r.headers["content-type"].startswith("application/json")


def test_log_query_range_shape_and_window(client: httpx.Client, tag: str, base: int) -> None:
    """query_range of a log query returns streams with [ns string, line] entries in [start, end)."""
    sixty_lines(client, tag, base)
    doc = get(
        client,
        "/loki/api/v1/query_range",
        query=f'{{test="{tag}"}}',
        start=str((base + 10) * NS),
        end=str((base + 20) * NS),
    )
    data = doc["data"]
    assert data["resultType"] == "streams"
    assert set(data["stats"]) >= {"summary", "querier", "ingester", "cache"}
    [stream] = data["result"]
    assert stream["stream"] == {"test": tag, "app": "api"}
    stamps = [int(v[0]) for v in stream["values"]]
    assert all(isinstance(v[0], str) and isinstance(v[1], str) for v in stream["values"])
    assert stamps == [(base + i) * NS for i in range(19, 9, -1)]  # newest first, end exclusive


def test_direction_and_limit(client: httpx.Client, tag: str, base: int) -> None:
    """limit caps the entries; forward returns the oldest first, backward (default) the newest."""
    sixty_lines(client, tag, base)
    q = {"query": f'{{test="{tag}"}}', "start": str(base), "end": str(base + 61), "limit": 3}
    fwd = get(client, "/loki/api/v1/query_range", direction="forward", **q)["data"]["result"][0]
    bwd = get(client, "/loki/api/v1/query_range", **q)["data"]["result"][0]
    assert [int(v[0]) // NS - base for v in fwd["values"]] == [1, 2, 3]
    assert [int(v[0]) // NS - base for v in bwd["values"]] == [60, 59, 58]


def test_line_filters_chain(client: httpx.Client, tag: str, base: int) -> None:
    """|= and != and |~ combine: only lines passing all of them come back."""
    sixty_lines(client, tag, base)
    doc = get(
        client,
        "/loki/api/v1/query_range",
        query=f'{{test="{tag}"}} |= "error" != "latency_ms\\": 8}}" |~ "latency_ms.: [0-9]}}"',
        start=str(base),
        end=str(base + 61),
        limit=100,
    )
    lines = [v[1] for s in doc["data"]["result"] for v in s["values"]]
    assert sorted(json.loads(x)["latency_ms"] for x in lines) == [4]


def test_json_parser_and_label_filter(client: httpx.Client, tag: str, base: int) -> None:
    """| json adds fields as labels, which label filters (string and number) select on."""
    sixty_lines(client, tag, base)
    doc = get(
        client,
        "/loki/api/v1/query_range",
        query=f'{{test="{tag}"}} | json | level="error" and latency_ms >= 50',
        start=str(base),
        end=str(base + 61),
    )
    got = sorted(int(s["stream"]["latency_ms"]) for s in doc["data"]["result"])
    assert got == [52, 56, 60]
    assert all(s["stream"]["level"] == "error" for s in doc["data"]["result"])


def test_logfmt_duration_filter_and_line_format(client: httpx.Client, tag: str, base: int) -> None:
    """| logfmt, a duration filter and line_format rewrite the returned lines."""
    values = [
        [str((base + i) * NS), f"method=GET took={i * 100}ms path=/p{i}"] for i in range(1, 11)
    ]
    push(client, [{"stream": {"test": tag}, "values": values}])
    doc = get(
        client,
        "/loki/api/v1/query_range",
        query=f'{{test="{tag}"}} | logfmt | took > 750ms'
        ' | line_format "{{.path}} {{.method}}"',
        start=str(base),
        end=str(base + 61),
        direction="forward",
    )
    lines = [v[1] for s in doc["data"]["result"] for v in s["values"]]
    assert sorted(lines) == ["/p10 GET", "/p8 GET", "/p9 GET"]


def test_json_parse_error_sets_error_label(client: httpx.Client, tag: str, base: int) -> None:
    """A line | json cannot parse is kept with __error__="JSONParserErr"."""
    push(client, [{"stream": {"test": tag}, "values": [[str((base + 1) * NS), "not json"]]}])
    doc = get(
        client,
        "/loki/api/v1/query_range",
        query=f'{{test="{tag}"}} | json',
        start=str(base),
        end=str(base + 61),
    )
    [stream] = doc["data"]["result"]
    assert stream["stream"]["__error__"] == "JSONParserErr"


def test_count_over_time_instant_window(client: httpx.Client, tag: str, base: int) -> None:
    """An instant count_over_time at t counts entries in (t-range, t] and answers a vector."""
    sixty_lines(client, tag, base)
    doc = get(
        client,
        "/loki/api/v1/query",
        query=f'count_over_time({{test="{tag}"}}[30s])',
        time=str(base + 60),
    )
    data = doc["data"]
    assert data["resultType"] == "vector"
    [sample] = data["result"]
    assert sample["metric"] == {"test": tag, "app": "api"}
    t, value = sample["value"]
    assert t == base + 60 and value == "30"


def test_query_range_matrix_steps(client: httpx.Client, tag: str, base: int) -> None:
    """A metric query_range returns a matrix with a point per step, start and end included."""
    sixty_lines(client, tag, base)
    doc = get(
        client,
        "/loki/api/v1/query_range",
        query=f'sum(count_over_time({{test="{tag}"}}[10s]))',
        start=str(base + 10),
        end=str(base + 60),
        step="10",
    )
    data = doc["data"]
    assert data["resultType"] == "matrix"
    [series] = data["result"]
    assert series["metric"] == {}
    assert series["values"] == [[base + k, "10"] for k in range(10, 61, 10)]


def test_rate_and_error_ratio(client: httpx.Client, tag: str, base: int) -> None:
    """rate is entries per second; a ratio of two sums gives the error fraction."""
    sixty_lines(client, tag, base)
    t = str(base + 60)
    rate = get(client, "/loki/api/v1/query", query=f'sum(rate({{test="{tag}"}}[1m]))', time=t)
    assert rate["data"]["result"][0]["value"][1] == "1"
    ratio = get(
        client,
        "/loki/api/v1/query",
        time=t,
        query=f'sum(rate({{test="{tag}"}} |= "error" [1m])) / sum(rate({{test="{tag}"}}[1m]))',
    )
    assert ratio["data"]["result"][0]["value"][1] == "0.25"
    bytes_ = get(
        client, "/loki/api/v1/query", time=t, query=f'sum(bytes_over_time({{test="{tag}"}}[1m]))'
    )
    expected = sum(
        len(json.dumps({"level": "error" if i % 4 == 0 else "info", "latency_ms": i}))
        for i in range(1, 61)
    )
    assert bytes_["data"]["result"][0]["value"][1] == str(expected)


def test_sum_by_level(client: httpx.Client, tag: str, base: int) -> None:
    """sum by (level) of count_over_time over | json splits the 60 lines 15 / 45."""
    sixty_lines(client, tag, base)
    doc = get(
        client,
        "/loki/api/v1/query",
        time=str(base + 60),
        query=f'sum by (level) (count_over_time({{test="{tag}"}} | json [1m]))',
    )
    got = {s["metric"]["level"]: s["value"][1] for s in doc["data"]["result"]}
    assert got == {"error": "15", "info": "45"}


def test_unwrap_quantile_avg_max(client: httpx.Client, tag: str, base: int) -> None:
    """Unwrapped aggregations over latency_ms 1..60 give the known median, mean and max."""
    sixty_lines(client, tag, base)
    t = str(base + 60)

    def one(q: str) -> str:
        result = get(client, "/loki/api/v1/query", query=q, time=t)["data"]["result"]
        assert len(result) == 1, result
        return str(result[0]["value"][1])

    sel = f'{{test="{tag}"}} | json | unwrap latency_ms'
    assert one(f"quantile_over_time(0.5, {sel} [1m]) by (app)") == "30.5"
    assert one(f"avg_over_time({sel} [1m]) by (test)") == "30.5"
    assert one(f"max_over_time({sel} [1m]) by (test)") == "60"
    assert one(f"sum(sum_over_time({sel} [1m]))") == "1830"


def test_topk_and_scalar_arithmetic(client: httpx.Client, tag: str, base: int) -> None:
    """topk keeps the largest series; arithmetic with a scalar applies to every sample."""
    sixty_lines(client, tag, base)
    doc = get(
        client,
        "/loki/api/v1/query",
        time=str(base + 60),
        query=f'topk(1, sum by (level) (count_over_time({{test="{tag}"}} | json [1m]))) * 2',
    )
    [sample] = doc["data"]["result"]
    assert sample["metric"] == {"level": "info"} and sample["value"][1] == "90"


def test_labels_values_and_series(client: httpx.Client, tag: str, base: int) -> None:
    """labels, label values and series list what was pushed."""
    sixty_lines(client, tag, base)
    window = {"start": str(base), "end": str(base + 61)}
    assert {"test", "app"} <= set(get(client, "/loki/api/v1/labels", **window)["data"])
    values = get(client, "/loki/api/v1/label/test/values", **window)["data"]
    assert tag in values
    series = get(client, "/loki/api/v1/series", **{"match[]": f'{{test="{tag}"}}'}, **window)
    assert series["data"] == [{"test": tag, "app": "api"}]


def test_label_values_without_data_omit_the_key(client: httpx.Client, tag: str) -> None:
    """Label values of a name no stream carries come back without a 'data' key."""
    doc = get(client, f"/loki/api/v1/label/never_{tag}/values")
    assert doc == {"status": "success"}


def test_empty_compatible_selector_rejected(client: httpx.Client) -> None:
    """A selector whose matchers all match the empty string is a 400 naming the rule."""
    r = client.get("/loki/api/v1/query_range", params={"query": '{app=~".*"}'})
    assert r.status_code == 400
    assert "empty-compatible value" in r.text


def test_parse_error_is_400_text(client: httpx.Client) -> None:
    """A syntax error answers 400 with Loki's 'parse error' text."""
    r = client.get("/loki/api/v1/query", params={"query": '{app="x"'})
    assert r.status_code == 400
    assert r.text.startswith("parse error")


def test_timestamp_formats_agree(client: httpx.Client, tag: str, base: int) -> None:
    """Seconds, nanoseconds, float seconds and RFC3339 name the same instant."""
    sixty_lines(client, tag, base)
    rfc = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(base + 60))
    answers = set()
    for t in (str(base + 60), str((base + 60) * NS), f"{base + 60}.0", rfc):
        doc = get(
            client,
            "/loki/api/v1/query",
            query=f'sum(count_over_time({{test="{tag}"}}[1m]))',
            time=t,
        )
        answers.add(doc["data"]["result"][0]["value"][1])
    assert answers == {"60"}


def test_legacy_push_shape(client: httpx.Client, tag: str, base: int) -> None:
    """The legacy /api/prom/push body (labels string, RFC3339 ts) is accepted and queryable."""
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(base + 5)) + ".5Z"
    body = {
        "streams": [
            {"labels": f'{{test="{tag}", kind="legacy"}}', "entries": [{"ts": ts, "line": "hello"}]}
        ]
    }
    r = client.post("/api/prom/push", json=body)
    assert r.status_code == 204, r.text
    doc = get(
        client,
        "/loki/api/v1/query_range",
        query=f'{{test="{tag}"}}',
        start=str(base),
        end=str(base + 61),
    )
    [stream] = doc["data"]["result"]
    assert stream["stream"] == {"test": tag, "kind": "legacy"}
    assert stream["values"] == [[str((base + 5) * NS + NS // 2), "hello"]]


def test_gzip_push(client: httpx.Client, tag: str, base: int) -> None:
    """A gzip-encoded JSON push is accepted."""
    import gzip

    body = json.dumps(
        {"streams": [{"stream": {"test": tag}, "values": [[str((base + 1) * NS), "zipped"]]}]}
    )
    r = client.post(
        "/loki/api/v1/push",
        content=gzip.compress(body.encode()),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert r.status_code == 204, r.text
    doc = get(
        client,
        "/loki/api/v1/query_range",
        query=f'{{test="{tag}"}}',
        start=str(base),
        end=str(base + 61),
    )
    assert doc["data"]["result"][0]["values"][0][1] == "zipped"
