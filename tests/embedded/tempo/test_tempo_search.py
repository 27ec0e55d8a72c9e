"""Search, TraceQL and the tag endpoints of the embedded Tempo, on traces with known shapes."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest
from tempo_proc import TempoProcess

MS = 1_000_000


def kv(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


def span(
    trace: str,
    span_id: str,
    name: str,
    start: int,
    dur_ms: int,
    *,
    parent: str = "",
    kind: int = 1,
    status: int = 0,
    attrs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "traceId": trace,
        "spanId": span_id,
        "name": name,
        "kind": kind,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + dur_ms * MS),
        "attributes": [kv(k, v) for k, v in (attrs or {}).items()],
    }
    if parent:
        out["parentSpanId"] = parent
    if status:
        out["status"] = {"code": status}
    return out


class Data:
    """Four traces of one uniquely named service, pushed once per module."""

    def __init__(self, tempo: TempoProcess) -> None:
        self.service = f"search-{uuid.uuid4().hex[:10]}"
        self.a, self.b, self.c = (uuid.uuid4().hex for _ in range(3))
        self.d = "000000000000000000" + uuid.uuid4().hex[:14]
        now = time.time_ns()
        self.t0 = now - 10_000 * MS
        spans = [
            span(
                self.a,
                "a000000000000001",
                "GET /a",
                self.t0,
                50,
                kind=2,
                attrs={"http.status_code": 200},
            ),
            span(
                self.a,
                "a000000000000002",
                "db",
                self.t0 + MS,
                10,
                parent="a000000000000001",
                kind=3,
                attrs={"db.system": "postgres"},
            ),
            span(
                self.b,
                "b000000000000001",
                "POST /b",
                self.t0 + 1000 * MS,
                300,
                kind=2,
                status=2,
                attrs={"http.status_code": 500, "retry": True},
            ),
            span(
                self.b,
                "b000000000000002",
                "score",
                self.t0 + 1001 * MS,
                200,
                parent="b000000000000001",
                status=2,
                attrs={"model.version": "v2"},
            ),
            span(
                self.c,
                "c000000000000002",
                "orphan",
                self.t0 + 2000 * MS,
                5,
                parent="c000000000000001",
            ),
            span(self.d, "d000000000000001", "GET /d", self.t0 + 3000 * MS, 20, kind=2),
        ]
        body = {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [kv("service.name", self.service), kv("env", "lab")]
                    },
                    "scopeSpans": [{"scope": {"name": "test"}, "spans": spans}],
                }
            ]
        }
        httpx.post(f"{tempo.otlp_http_url}/v1/traces", json=body).raise_for_status()
        self.url = tempo.url

    def search(self, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.url}/api/search", params=params)

    def ids(self, **params: Any) -> list[str]:
        r = self.search(**params)
        assert r.status_code == 200, r.text
        return [t["traceID"] for t in r.json()["traces"]]

    def q(self, expr: str, **params: Any) -> list[str]:
        return self.ids(q=f'{{ resource.service.name = "{self.service}" }} && {expr}', **params)


def trimmed(trace_hex: str) -> str:
    return trace_hex.lstrip("0")


@pytest.fixture(scope="module")
def data(tempo: TempoProcess) -> Data:
    return Data(tempo)


def test_traceql_response_shape(data: Data) -> None:
    """A TraceQL hit has Tempo 2.3's fields: trimmed id, root names, spanSet = spanSets[0]."""
    r = data.search(q=f'{{ resource.service.name = "{data.service}" && status = error }}')
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"traces", "metrics"}
    (trace,) = body["traces"]
    assert trace["traceID"] == trimmed(data.b)
    assert trace["rootServiceName"] == data.service
    assert trace["rootTraceName"] == "POST /b"
    assert trace["startTimeUnixNano"] == str(data.t0 + 1000 * MS)
    assert trace["durationMs"] == 300
    assert trace["spanSet"] == trace["spanSets"][0]
    spanset = trace["spanSet"]
    assert spanset["matched"] == 2
    first = spanset["spans"][0]
    assert set(first) == {"spanID", "name", "startTimeUnixNano", "durationNanos", "attributes"}
    assert first["spanID"] in ("b000000000000001", "b000000000000002")
    assert isinstance(first["durationNanos"], str)
    assert {"key": "service.name", "value": {"stringValue": data.service}} in first["attributes"]
    assert {"key": "status", "value": {"stringValue": "error"}} in first["attributes"]
    assert isinstance(body["metrics"], dict)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("{ duration > 100ms }", "b"),
        ("{ duration >= 300ms && kind = server }", "b"),
        ('{ span.db.system = "postgres" }', "a"),
        ("{ .http.status_code = 500 }", "b"),
        ("{ span.http.status_code >= 200 && span.http.status_code < 300 }", "a"),
        ('{ name =~ "GET.*" && duration < 30ms }', "d"),
        ('{ name !~ "GET.*|POST.*|score|db" }', "c"),
        ("{ span.retry = true }", "b"),
        ('{ span.model.version != "v1" }', "b"),
        ("{ kind = client }", "a"),
        ('{ rootName = "GET /a" && name = "db" }', "a"),
        ("{ traceDuration > 250ms }", "b"),
        ('{ (name = "db" || name = "score") && status = error }', "b"),
        ("{ span.db.system != nil }", "a"),
        ('{ resource.env = "lab" && name = "orphan" }', "c"),
        ("{ status = error } | count() > 1", "b"),
        ('{ name = "GET /a" } && { name = "db" }', "a"),
        ('{ statusMessage = "" && name = "GET /d" }', "d"),
    ],
)
def test_traceql_filters(data: Data, expr: str, expected: str) -> None:
    """Each supported TraceQL feature selects exactly the expected trace."""
    assert data.q(expr) == [trimmed(getattr(data, expected))]


def test_traceql_or_of_spansets_and_count(data: Data) -> None:
    """``||`` between spansets unions traces; ``count()`` keeps only traces with enough matches."""
    both = data.q('({ name = "db" } || { name = "orphan" })')
    assert sorted(both) == sorted([trimmed(data.a), trimmed(data.c)])
    counted = data.ids(q=f'{{ resource.service.name = "{data.service}" }} | count() = 2')
    assert sorted(counted) == sorted([trimmed(data.a), trimmed(data.b)])


def test_root_not_received_and_trimmed_ids(data: Data) -> None:
    """A trace without its root says so; ids with leading zeros come back trimmed."""
    traces = data.search(q=f'{{ resource.service.name = "{data.service}" }}').json()["traces"]
    by_id = {t["traceID"]: t for t in traces}
    orphan = by_id[trimmed(data.c)]
    assert orphan["rootServiceName"] == "<root span not yet received>"
    assert orphan["rootTraceName"] == "<root span not yet received>"
    assert trimmed(data.d) in by_id and not trimmed(data.d).startswith("0")
    # most recent first, as Tempo's combiner sorts
    starts = [int(t["startTimeUnixNano"]) for t in traces]
    assert starts == sorted(starts, reverse=True)


def test_spss_and_limit(data: Data) -> None:
    """``spss`` caps the spans per spanset (``matched`` still counts all); ``limit`` caps traces."""
    (trace,) = data.search(
        q=f'{{ resource.service.name = "{data.service}" && status = error }}', spss=1
    ).json()["traces"]
    assert len(trace["spanSets"][0]["spans"]) == 1 and trace["spanSets"][0]["matched"] == 2
    assert len(data.ids(q=f'{{ resource.service.name = "{data.service}" }}', limit=2)) == 2


def test_tag_search(data: Data) -> None:
    """``tags`` (logfmt) match substrings case-insensitively, no spanSets; durations filter."""
    r = data.search(tags=f"service.name={data.service}")
    traces = r.json()["traces"]
    assert len(traces) == 4
    assert all("spanSets" not in t and "spanSet" not in t for t in traces)
    assert data.ids(tags=f"service.name={data.service} http.status_code=500") == [trimmed(data.b)]
    assert data.ids(tags=f'service.name="{data.service}" name="get /"') == [
        trimmed(data.d),
        trimmed(data.a),
    ]
    assert data.ids(tags=f"service.name={data.service}", minDuration="200ms") == [trimmed(data.b)]
    assert data.ids(tags=f"service.name={data.service}", maxDuration="10ms") == [trimmed(data.c)]
    assert data.ids(tags=f"service.name={data.service} status.code=error") == [trimmed(data.b)]


def test_start_end_window(data: Data) -> None:
    """``start``/``end`` (unix seconds) keep only traces overlapping the window."""
    before = data.t0 // 10**9 - 100
    assert data.ids(tags=f"service.name={data.service}", start=before - 100, end=before) == []
    assert (
        len(data.ids(tags=f"service.name={data.service}", start=before, end=int(time.time()) + 10))
        == 4
    )


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"q": "{ span.a = 1 } >> { span.b = 2 }"}, "not supported by the embedded Tempo"),
        ({"q": "{ span.a = 1 } | avg(duration) > 1s"}, "avg() is not supported"),
        ({"q": "{ span.a = 1 } | by(resource.service.name)"}, "by() is not supported"),
        ({"q": "{ span.a + 1 = 2 }"}, "arithmetic"),
        ({"q": "{ parent.a = 1 }"}, "parent."),
        ({"q": "{ span.a = 1 "}, "invalid TraceQL"),
        ({"q": '{ status = "error" }'}, "status"),
        ({"q": "{ foo = 1 }"}, "unknown identifier"),
        ({"q": "{ .a = 1 }", "tags": "a=1"}, "can't specify tags and q"),
        ({"tags": "a=1", "limit": "0"}, "limit"),
        ({"tags": "a=1", "minDuration": "banana"}, "minDuration"),
        ({"tags": "a=1", "minDuration": "2s", "maxDuration": "1s"}, "maxDuration"),
        ({"tags": 'a="unterminated'}, "tags"),
    ],
)
def test_bad_searches_are_400_with_a_reason(
    data: Data, params: dict[str, str], needle: str
) -> None:
    """Unsupported or invalid queries answer 400 naming what is wrong."""
    r = data.search(**params)
    assert r.status_code == 400
    assert needle in r.text


def test_unsupported_feature_says_run_docker(data: Data) -> None:
    """The 400 for an unsupported feature points to the docker stack for full TraceQL."""
    r = data.search(q="{ span.a = 1 } | select(span.b)")
    assert r.status_code == 400
    assert "run the docker stack for full TraceQL" in r.text


def test_tag_names_and_values(data: Data) -> None:
    """Tag names by scope and tag values reflect what was ingested."""
    url = data.url
    names = httpx.get(f"{url}/api/search/tags").json()["tagNames"]
    assert {"http.status_code", "db.system", "service.name", "env"} <= set(names)
    resource = httpx.get(f"{url}/api/search/tags", params={"scope": "resource"}).json()["tagNames"]
    assert "env" in resource and "db.system" not in resource
    span_names = httpx.get(f"{url}/api/search/tags", params={"scope": "span"}).json()["tagNames"]
    assert "db.system" in span_names and "env" not in span_names
    intrinsic = httpx.get(f"{url}/api/search/tags", params={"scope": "intrinsic"}).json()[
        "tagNames"
    ]
    assert {"name", "status", "duration", "kind"} <= set(intrinsic)
    assert httpx.get(f"{url}/api/search/tags", params={"scope": "nope"}).status_code == 400
    values = httpx.get(f"{url}/api/search/tag/service.name/values").json()
    assert set(values) == {"tagValues"} and data.service in values["tagValues"]
    assert httpx.get(f"{url}/api/search/tag/db.system/values").json()["tagValues"] == ["postgres"]
