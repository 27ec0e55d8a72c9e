"""Contract suite for Tempo 2.3's HTTP and OTLP APIs (shapes: backend-apis.md section 5).

It talks only HTTP/OTLP to the URLs its fixtures give. By default they start the embedded Tempo on
free ports; set ``LAB_CONTRACT_TEMPO_URL``, ``LAB_CONTRACT_TEMPO_OTLP_HTTP`` and
``LAB_CONTRACT_TEMPO_OTLP_GRPC`` (``host:port``) to judge another Tempo, such as a real 2.3.1.
Every test sends its own uniquely named traces, and polls (``LAB_CONTRACT_TIMEOUT`` seconds,
default 30) where a real Tempo makes data searchable only after a delay.
"""

from __future__ import annotations

import base64
import os
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

T = TypeVar("T")
MS = 1_000_000
TIMEOUT = float(os.environ.get("LAB_CONTRACT_TIMEOUT", "30"))


# -- helpers ---------------------------------------------------------------------------------------


def eventually(fetch: Callable[[], T], ok: Callable[[T], bool]) -> T:
    """Call ``fetch`` until ``ok`` holds on its result or the contract timeout passes."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        result = fetch()
        if ok(result) or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def kv(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


def json_export(service: str, spans: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [kv("service.name", service)]},
                "scopeSpans": [{"scope": {"name": "contract"}, "spans": spans}],
            }
        ]
    }


def json_span(
    trace: str, span_id: str, name: str, start: int, dur_ms: int, **extra: Any
) -> dict[str, Any]:
    return {
        "traceId": trace,
        "spanId": span_id,
        "name": name,
        "kind": extra.pop("kind", 2),
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + dur_ms * MS),
        **extra,
    }


def all_spans(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for b in doc["batches"] for sc in b["scopeSpans"] for s in sc["spans"]]


def emit_tree(exporter: SpanExporter, service: str) -> str:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("contract")
    with tracer.start_as_current_span("handle", kind=SpanKind.SERVER) as root:
        root.set_attribute("http.status_code", 503)
        with tracer.start_as_current_span("call", kind=SpanKind.CLIENT) as child:
            child.add_event("retry", {"attempt": 2})
            child.set_status(Status(StatusCode.ERROR, "upstream down"))
    provider.shutdown()
    return format(root.get_span_context().trace_id, "032x")


def get_trace(tempo_url: str, trace_id: str) -> httpx.Response:
    return eventually(
        lambda: httpx.get(f"{tempo_url}/api/traces/{trace_id}"), lambda r: r.status_code == 200
    )


def check_tree(tempo_url: str, trace_id: str) -> None:
    r = get_trace(tempo_url, trace_id)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert list(doc) == ["batches"]
    spans = {s["name"]: s for s in all_spans(doc)}
    assert set(spans) == {"handle", "call"}
    root, child = spans["handle"], spans["call"]
    assert root["traceId"] == child["traceId"] == b64(trace_id)
    assert len(base64.b64decode(root["spanId"])) == 8
    assert child["parentSpanId"] == root["spanId"] and "parentSpanId" not in root
    assert (root["kind"], child["kind"]) == ("SPAN_KIND_SERVER", "SPAN_KIND_CLIENT")
    assert isinstance(root["startTimeUnixNano"], str) and isinstance(root["endTimeUnixNano"], str)
    assert {"key": "http.status_code", "value": {"intValue": "503"}} in root["attributes"]
    assert child["status"]["code"] == "STATUS_CODE_ERROR"
    assert child["status"]["message"] == "upstream down"
    assert "code" not in root.get("status", {})
    assert child["events"][0]["name"] == "retry"
    assert child["events"][0]["attributes"] == [{"key": "attempt", "value": {"intValue": "2"}}]


# -- OTLP ingest -----------------------------------------------------------------------------------


def test_otlp_http_protobuf_answer(tempo_otlp_http_url: str) -> None:
    """A protobuf export gets 200 and an empty ExportTraceServiceResponse as protobuf."""
    req = trace_service_pb2.ExportTraceServiceRequest()
    span = req.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = uuid.uuid4().bytes, b"\x01" * 8, "pb-ack"
    r = httpx.post(
        f"{tempo_otlp_http_url}/v1/traces",
        content=req.SerializeToString(),
        headers={"content-type": "application/x-protobuf"},
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/x-protobuf")
    answer = trace_service_pb2.ExportTraceServiceResponse.FromString(r.content)
    assert answer.partial_success.rejected_spans == 0


def test_otlp_http_json_answer_and_hex_ids(tempo_url: str, tempo_otlp_http_url: str) -> None:
    """OTLP/JSON with upper-case hex ids is acknowledged with {} and stored under the hex id."""
    trace_hex = uuid.uuid4().hex.upper()
    now = time.time_ns()
    body = json_export(
        f"contract-json-{trace_hex[:8]}", [json_span(trace_hex, "EEE19B7EC3C1B100", "json", now, 3)]
    )
    r = httpx.post(f"{tempo_otlp_http_url}/v1/traces", json=body)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.json().get("partialSuccess", {}).get("rejectedSpans", 0) in (0, "0")
    got = get_trace(tempo_url, trace_hex.lower())
    assert got.status_code == 200
    (span,) = all_spans(got.json())
    assert span["traceId"] == b64(trace_hex)
    assert span["spanId"] == "7uGbfsPBsQA="
    assert span["kind"] == "SPAN_KIND_SERVER"
    assert span["startTimeUnixNano"] == str(now)


def test_http_exporter_tree(tempo_url: str, tempo_otlp_http_url: str) -> None:
    """The SDK's OTLP/HTTP exporter's spans come back as a tree in Tempo's batches JSON."""
    exporter = HttpExporter(endpoint=f"{tempo_otlp_http_url}/v1/traces")
    check_tree(tempo_url, emit_tree(exporter, f"contract-http-{uuid.uuid4().hex[:8]}"))


def test_grpc_exporter_tree(tempo_url: str, tempo_otlp_grpc_endpoint: str) -> None:
    """The SDK's default OTLP/gRPC exporter's spans come back as a tree in Tempo's batches JSON."""
    exporter = GrpcExporter(endpoint=tempo_otlp_grpc_endpoint, insecure=True)
    check_tree(tempo_url, emit_tree(exporter, f"contract-grpc-{uuid.uuid4().hex[:8]}"))


def test_unknown_trace_is_404(tempo_url: str) -> None:
    """An id nobody sent answers 404 with "trace not found"."""
    r = httpx.get(f"{tempo_url}/api/traces/{uuid.uuid4().hex}")
    assert r.status_code == 404
    assert r.text.strip() == "trace not found"


def test_ready_and_echo(tempo_url: str) -> None:
    """/ready is 200 and /api/echo answers 200 "echo"."""
    assert httpx.get(f"{tempo_url}/ready").status_code == 200
    r = httpx.get(f"{tempo_url}/api/echo")
    assert r.status_code == 200 and r.text.strip() == "echo"


# -- search ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def searchable(tempo_otlp_http_url: str) -> dict[str, Any]:
    """Three traces of a fresh service: fast OK (2 spans), slow error (2 spans), medium (1 span)."""
    service = f"contract-search-{uuid.uuid4().hex[:10]}"
    ids = {
        "fast": "00" + uuid.uuid4().hex[2:],
        "slow": uuid.uuid4().hex,
        "medium": uuid.uuid4().hex,
    }
    t0 = time.time_ns() - 20_000 * MS
    spans = [
        json_span(
            ids["fast"],
            "f000000000000001",
            "GET /fast",
            t0,
            20,
            attributes=[kv("http.status_code", 200)],
        ),
        json_span(
            ids["fast"],
            "f000000000000002",
            "cache",
            t0 + MS,
            5,
            kind=3,
            parentSpanId="f000000000000001",
        ),
        json_span(
            ids["slow"],
            "5000000000000001",
            "POST /slow",
            t0 + 1000 * MS,
            400,
            attributes=[kv("http.status_code", 500)],
            status={"code": 2},
        ),
        json_span(
            ids["slow"],
            "5000000000000002",
            "db",
            t0 + 1001 * MS,
            350,
            kind=3,
            parentSpanId="5000000000000001",
            status={"code": 2},
            attributes=[kv("db.system", "postgres")],
        ),
        json_span(ids["medium"], "3000000000000001", "GET /medium", t0 + 2000 * MS, 120),
    ]
    httpx.post(
        f"{tempo_otlp_http_url}/v1/traces", json=json_export(service, spans)
    ).raise_for_status()
    return {"service": service, "ids": ids, "t0": t0}


def search(tempo_url: str, want: int, **params: Any) -> dict[str, Any]:
    def fetch() -> dict[str, Any]:
        r = httpx.get(f"{tempo_url}/api/search", params=params)
        assert r.status_code == 200, r.text
        return dict(r.json())

    return eventually(fetch, lambda body: len(body["traces"]) >= want)


def test_search_traceql_shape(tempo_url: str, searchable: dict[str, Any]) -> None:
    """TraceQL search answers in Tempo 2.3's shape: trimmed ids, spanSet = spanSets[0]."""
    body = search(tempo_url, 3, q=f'{{ resource.service.name = "{searchable["service"]}" }}')
    assert set(body) >= {"traces", "metrics"}
    ids = searchable["ids"]
    by_id = {t["traceID"]: t for t in body["traces"]}
    assert set(by_id) == {ids[k].lstrip("0") for k in ("fast", "slow", "medium")}
    slow = by_id[ids["slow"].lstrip("0")]
    assert slow["rootServiceName"] == searchable["service"]
    assert slow["rootTraceName"] == "POST /slow"
    assert slow["startTimeUnixNano"] == str(searchable["t0"] + 1000 * MS)
    assert slow["durationMs"] == 400
    assert slow["spanSet"] == slow["spanSets"][0]
    assert slow["spanSet"]["matched"] == 2
    for span in slow["spanSet"]["spans"]:
        assert len(span["spanID"]) == 16 and isinstance(span["startTimeUnixNano"], str)
        assert isinstance(span["durationNanos"], str)
    assert not by_id[ids["fast"].lstrip("0")]["traceID"].startswith("0")


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("{ status = error && duration > 300ms }", {"slow"}),
        ('{ span.db.system = "postgres" }', {"slow"}),
        ("{ span.http.status_code = 200 }", {"fast"}),
        ('{ name =~ "GET.*" }', {"fast", "medium"}),
        ("{ kind = client }", {"fast", "slow"}),
        ("{ duration > 100ms && duration < 200ms }", {"medium"}),
    ],
)
def test_search_traceql_answers(
    tempo_url: str, searchable: dict[str, Any], expr: str, expected: set[str]
) -> None:
    """TraceQL filters select exactly the traces they describe."""
    service = searchable["service"]
    q = f'{{ resource.service.name = "{service}" }} && {expr}'
    body = search(tempo_url, len(expected), q=q)
    want = {searchable["ids"][k].lstrip("0") for k in expected}
    assert {t["traceID"] for t in body["traces"]} == want


def test_search_count_pipeline(tempo_url: str, searchable: dict[str, Any]) -> None:
    """``| count() > 1`` keeps only the traces with at least two matching spans."""
    q = f'{{ resource.service.name = "{searchable["service"]}" }} | count() > 1'
    body = search(tempo_url, 2, q=q)
    assert {t["traceID"] for t in body["traces"]} == {
        searchable["ids"][k].lstrip("0") for k in ("fast", "slow")
    }


def test_search_tags_durations_and_limit(tempo_url: str, searchable: dict[str, Any]) -> None:
    """Tag search with minDuration/maxDuration and limit returns the right traces."""
    tags = f"service.name={searchable['service']}"
    ids = searchable["ids"]
    assert len(search(tempo_url, 3, tags=tags)["traces"]) == 3
    slow = search(tempo_url, 1, tags=tags, minDuration="300ms")["traces"]
    assert [t["traceID"] for t in slow] == [ids["slow"].lstrip("0")]
    fast = search(tempo_url, 1, tags=tags, maxDuration="50ms")["traces"]
    assert [t["traceID"] for t in fast] == [ids["fast"].lstrip("0")]
    assert len(search(tempo_url, 2, tags=tags, limit=2)["traces"]) == 2


def test_search_spss(tempo_url: str, searchable: dict[str, Any]) -> None:
    """``spss=1`` returns one span per spanset while ``matched`` counts all of them."""
    q = f'{{ resource.service.name = "{searchable["service"]}" && status = error }}'
    (trace,) = search(tempo_url, 1, q=q, spss=1)["traces"]
    assert len(trace["spanSets"][0]["spans"]) == 1
    assert trace["spanSets"][0]["matched"] == 2


def test_tag_names_and_values(tempo_url: str, searchable: dict[str, Any]) -> None:
    """/api/search/tags lists attribute names and /api/search/tag/<t>/values the service's name."""
    names = eventually(
        lambda: httpx.get(f"{tempo_url}/api/search/tags").json(),
        lambda body: "db.system" in body.get("tagNames", []),
    )
    assert "db.system" in names["tagNames"]
    values = eventually(
        lambda: httpx.get(f"{tempo_url}/api/search/tag/service.name/values").json(),
        lambda body: searchable["service"] in body.get("tagValues", []),
    )
    assert searchable["service"] in values["tagValues"]


def test_invalid_traceql_is_400(tempo_url: str) -> None:
    """A syntactically invalid TraceQL query is a 400."""
    assert httpx.get(f"{tempo_url}/api/search", params={"q": "{ span.a = }"}).status_code == 400


def test_invalid_trace_id_is_400(tempo_url: str) -> None:
    """A trace id with non-hex characters is a 400."""
    assert httpx.get(f"{tempo_url}/api/traces/not-a-hex-id").status_code == 400
