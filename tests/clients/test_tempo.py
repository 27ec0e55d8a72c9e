"""Specification of TempoClient against Tempo 2.3's /api paths, and of spans() flattening traces."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import (
    ResourceSpans,
    ScopeSpans,
    Status,
    TracesData,
)
from opentelemetry.proto.trace.v1.trace_pb2 import (
    Span as PbSpan,
)

from lab_stack.clients import Span, SpanEvent, TempoClient, spans
from lab_stack.clients.tempo import attributes, children, roots, trace_ids
from lab_stack.errors import NotFound, QueryError

from ._fake import FakeAPI, params

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
ROOT_ID = "b7ad6b7169203331"
CHILD_ID = "00f067aa0ba902b7"


def b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def tempo_trace() -> dict[str, Any]:
    """A trace in Tempo's /api/traces JSON (jsonpb of tempopb.Trace): base64 ids, enum names."""
    return {
        "batches": [
            {
                "resource": {
                    "attributes": [
                        {"key": "service.name", "value": {"stringValue": "ml-service"}},
                        {"key": "service.version", "value": {"stringValue": "1.2"}},
                    ]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "opentelemetry.instrumentation.fastapi"},
                        "spans": [
                            {
                                "traceId": b64(TRACE_ID),
                                "spanId": b64(CHILD_ID),
                                "parentSpanId": b64(ROOT_ID),
                                "name": "model.predict",
                                "kind": "SPAN_KIND_INTERNAL",
                                "startTimeUnixNano": "1700000000100000000",
                                "endTimeUnixNano": "1700000000300000000",
                                "attributes": [
                                    {"key": "model.version", "value": {"stringValue": "v3"}},
                                    {"key": "batch.size", "value": {"intValue": "32"}},
                                    {"key": "score", "value": {"doubleValue": 0.5}},
                                    {"key": "cached", "value": {"boolValue": True}},
                                    {
                                        "key": "tags",
                                        "value": {
                                            "arrayValue": {
                                                "values": [{"stringValue": "a"}, {"intValue": "2"}]
                                            }
                                        },
                                    },
                                ],
                                "events": [
                                    {
                                        "timeUnixNano": "1700000000200000000",
                                        "name": "exception",
                                        "attributes": [
                                            {
                                                "key": "exception.type",
                                                "value": {"stringValue": "ValueError"},
                                            }
                                        ],
                                    }
                                ],
                                "status": {"code": "STATUS_CODE_ERROR", "message": "bad input"},
                            },
                            {
                                "traceId": b64(TRACE_ID),
                                "spanId": b64(ROOT_ID),
                                "name": "POST /predict",
                                "kind": "SPAN_KIND_SERVER",
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000000400000000",
                                "status": {},
                            },
                        ],
                    }
                ],
            }
        ]
    }


def make(fake: FakeAPI) -> TempoClient:
    return TempoClient("http://tempo.test:3200", transport=fake.transport)


def test_trace_reads_api_traces_id_and_spans_flattens_it() -> None:
    """trace() GETs /api/traces/<id>; spans() gives hex ids, parents, kinds, service, attributes."""
    fake = FakeAPI().on("GET", f"/api/traces/{TRACE_ID}", json_body=tempo_trace())
    found = spans(make(fake).trace(TRACE_ID))
    assert [s.name for s in found] == ["POST /predict", "model.predict"]
    root, child = found
    assert root == Span(
        trace_id=TRACE_ID,
        span_id=ROOT_ID,
        parent_span_id=None,
        name="POST /predict",
        kind="SPAN_KIND_SERVER",
        service_name="ml-service",
        start_ns=1700000000000000000,
        end_ns=1700000000400000000,
        status_code="STATUS_CODE_UNSET",
        resource={"service.name": "ml-service", "service.version": "1.2"},
        scope="opentelemetry.instrumentation.fastapi",
    )
    assert root.is_root and not root.is_error
    assert child.parent_span_id == ROOT_ID
    assert child.kind == "SPAN_KIND_INTERNAL"
    assert child.duration_ns == 200_000_000
    assert child.attributes == {
        "model.version": "v3",
        "batch.size": 32,
        "score": 0.5,
        "cached": True,
        "tags": ["a", 2],
    }
    assert (child.status_code, child.status_message, child.is_error) == (
        "STATUS_CODE_ERROR",
        "bad input",
        True,
    )
    assert child.events == (
        SpanEvent("exception", 1700000000200000000, {"exception.type": "ValueError"}),
    )
    assert roots(found) == [root]
    assert children(found, root) == [child]


def test_spans_accepts_otlp_json_with_hex_ids_and_int_enums() -> None:
    """OTLP/JSON (resourceSpans, hex ids, integer kind and status) flattens the same way."""
    otlp = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]
                },
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": TRACE_ID.upper(),
                                "spanId": ROOT_ID,
                                "parentSpanId": "",
                                "name": "op",
                                "kind": 3,
                                "startTimeUnixNano": 5,
                                "endTimeUnixNano": 9,
                                "status": {"code": 2},
                            }
                        ]
                    }
                ],
            }
        ]
    }
    (span,) = spans(otlp)
    assert (span.trace_id, span.span_id, span.parent_span_id) == (TRACE_ID, ROOT_ID, None)
    assert (span.kind, span.status_code, span.duration_ns) == (
        "SPAN_KIND_CLIENT",
        "STATUS_CODE_ERROR",
        4,
    )


def test_spans_of_a_protobuf_trace_rendered_as_tempo_does() -> None:
    """TracesData rendered by MessageToDict (as Tempo renders JSON) round-trips through spans()."""
    pb = PbSpan(
        trace_id=bytes.fromhex(TRACE_ID),
        span_id=bytes.fromhex(CHILD_ID),
        parent_span_id=bytes.fromhex(ROOT_ID),
        name="db.query",
        kind=PbSpan.SPAN_KIND_CLIENT,
        start_time_unix_nano=10,
        end_time_unix_nano=25,
        attributes=[KeyValue(key="db.rows", value=AnyValue(int_value=7))],
        status=Status(code=Status.STATUS_CODE_OK),
    )
    data = TracesData(
        resource_spans=[
            ResourceSpans(
                resource=Resource(
                    attributes=[KeyValue(key="service.name", value=AnyValue(string_value="db"))]
                ),
                scope_spans=[ScopeSpans(spans=[pb])],
            )
        ]
    )
    rendered = MessageToDict(data)
    tempo_json = {"batches": rendered["resourceSpans"]}
    (span,) = spans(tempo_json)
    assert (span.trace_id, span.span_id, span.parent_span_id) == (TRACE_ID, CHILD_ID, ROOT_ID)
    assert (span.kind, span.status_code, span.service_name) == (
        "SPAN_KIND_CLIENT",
        "STATUS_CODE_OK",
        "db",
    )
    assert span.attributes == {"db.rows": 7}
    assert span.duration_ns == 15


def test_missing_trace_is_not_found_with_a_flush_hint() -> None:
    """A 404 'trace not found' raises NotFound naming the id and suggesting force_flush()."""
    fake = FakeAPI().on("GET", f"/api/traces/{TRACE_ID}", text="trace not found", status=404)
    with pytest.raises(
        NotFound,
        match=rf"Tempo has no trace '{TRACE_ID}' \(HTTP 404\).*: trace not found.*force_flush",
    ):
        make(fake).trace(TRACE_ID)


def test_bad_trace_id_is_query_error() -> None:
    """A 400 for a non-hex id raises QueryError quoting Tempo."""
    fake = FakeAPI().on(
        "GET", "/api/traces/zz", text="invalid TraceID: encoding/hex: invalid byte", status=400
    )
    with pytest.raises(
        QueryError,
        match=r"HTTP 400 for GET .* with query 'zz': invalid TraceID.*Hint: check the TraceQL",
    ):
        make(fake).trace("zz")


def test_search_with_traceql_and_bounds() -> None:
    """search() sends q, minDuration, maxDuration, limit, spss and integer start/end."""
    answer = {
        "traces": [{"traceID": "af7651916cd43dd8448eb211c80319c", "rootServiceName": "ml-service"}],
        "metrics": {},
    }
    fake = FakeAPI().on("GET", "/api/search", json_body=answer)
    found = make(fake).search(
        q='{ resource.service.name = "ml-service" && duration > 100ms }',
        min_duration=0.1,
        max_duration="5s",
        limit=5,
        start=1700000000.9,
        end=1700000600,
        spss=2,
    )
    assert params(fake.last) == {
        "q": ['{ resource.service.name = "ml-service" && duration > 100ms }'],
        "minDuration": ["100ms"],
        "maxDuration": ["5s"],
        "limit": ["5"],
        "start": ["1700000000"],
        "end": ["1700000600"],
        "spss": ["2"],
    }
    assert trace_ids(found) == [TRACE_ID]


def test_search_with_tags_in_logfmt() -> None:
    """A tags mapping is sent as logfmt, quoting values with spaces."""
    fake = FakeAPI().on("GET", "/api/search", json_body={"traces": []})
    make(fake).search(tags={"service.name": "ml-service", "http.route": "/predict now"})
    assert params(fake.last) == {"tags": ['service.name=ml-service http.route="/predict now"']}


def test_search_error_quotes_tempo_and_the_query() -> None:
    """A 400 from /api/search raises QueryError with Tempo's text and the TraceQL."""
    fake = FakeAPI().on(
        "GET", "/api/search", text="invalid TraceQL query: parse error at line 1, col 3", status=400
    )
    with pytest.raises(
        QueryError,
        match=r"with query '\{ x': invalid TraceQL query: parse error at line 1.*Hint: check",
    ):
        make(fake).search(q="{ x")


def test_tags_values_echo_and_ready() -> None:
    """tag_names(), tag_values(), echo() and ready() use their Tempo paths."""
    fake = (
        FakeAPI()
        .on("GET", "/api/search/tags", json_body={"tagNames": ["http.route", "service.name"]})
        .on("GET", "/api/search/tag/service.name/values", json_body={"tagValues": ["ml-service"]})
        .on("GET", "/api/echo", text="echo")
        .on("GET", "/ready", text="ready")
    )
    tempo = make(fake)
    assert tempo.tag_names(scope="resource") == ["http.route", "service.name"]
    assert params(fake.last) == {"scope": ["resource"]}
    assert tempo.tag_values("service.name") == ["ml-service"]
    assert tempo.echo() is True
    assert tempo.ready() is True


def test_attributes_decodes_nested_and_bytes_values() -> None:
    """attributes() decodes kvlist and bytes values, and tolerates None."""
    raw = [
        {
            "key": "k",
            "value": {"kvlistValue": {"values": [{"key": "a", "value": {"stringValue": "b"}}]}},
        },
        {"key": "bin", "value": {"bytesValue": base64.b64encode(b"\x01\x02").decode()}},
        {"key": "none", "value": {}},
    ]
    assert attributes(raw) == {"k": {"a": "b"}, "bin": b"\x01\x02", "none": None}
    assert attributes(None) == {}
