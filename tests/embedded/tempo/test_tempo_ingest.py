"""OTLP ingest into the embedded Tempo and trace-by-id answers in Tempo's ``batches`` JSON."""

from __future__ import annotations

import base64
import gzip
import json
import time
import uuid
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from tempo_proc import TempoProcess

#: The request body of Tempo 2.3's "pushing spans with HTTP" doc, hex ids in capitals.
TEMPO_DOC_EXAMPLE: dict[str, Any] = {
    "resourceSpans": [
        {
            "resource": {
                "attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]
            },
            "scopeSpans": [
                {
                    "scope": {"name": "my.library", "version": "1.0.0"},
                    "spans": [
                        {
                            "traceId": "5B8EFFF798038103D269B633813FC700",
                            "spanId": "EEE19B7EC3C1B100",
                            "name": "I am a span!",
                            "startTimeUnixNano": 1689969302000000000,
                            "endTimeUnixNano": 1689970000000000000,
                            "kind": 2,
                            "attributes": [
                                {"key": "my.span.attr", "value": {"stringValue": "some value"}}
                            ],
                        }
                    ],
                }
            ],
        }
    ]
}


def b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def spans_by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for batch in doc["batches"]:
        service = next(
            a["value"]["stringValue"]
            for a in batch["resource"]["attributes"]
            if a["key"] == "service.name"
        )
        for scope in batch["scopeSpans"]:
            for span in scope["spans"]:
                out[span["name"]] = {**span, "_service": service}
    return out


def send_tree(exporter: SpanExporter, exporter2: SpanExporter, service: str) -> str:
    """Emit a gateway→features trace across two services; return its hex trace id."""
    gw = TracerProvider(resource=Resource.create({"service.name": f"{service}-gateway"}))
    gw.add_span_processor(SimpleSpanProcessor(exporter))
    fs = TracerProvider(resource=Resource.create({"service.name": f"{service}-features"}))
    fs.add_span_processor(SimpleSpanProcessor(exporter2))
    tracer = gw.get_tracer("gateway", "1.0")
    with tracer.start_as_current_span("POST /predict", kind=SpanKind.SERVER) as root:
        root.set_attribute("http.status_code", 500)
        root.set_attribute("model.version", "v3")
        with tracer.start_as_current_span("GET /features", kind=SpanKind.CLIENT) as client:
            ctx = otel_trace.set_span_in_context(client)
            token = otel_context.attach(ctx)
            try:
                with fs.get_tracer("features").start_as_current_span(
                    "lookup", kind=SpanKind.SERVER
                ) as srv:
                    srv.add_event("cache miss", {"key": "user-7"})
                    srv.set_status(Status(StatusCode.ERROR, "feature store down"))
                    srv.set_attribute("feature.count", 12)
                    srv.set_attribute("ratio", 0.5)
                    srv.set_attribute("cached", False)
            finally:
                otel_context.detach(token)
    gw.shutdown()
    fs.shutdown()
    return format(root.get_span_context().trace_id, "032x")


def check_tree(tempo: TempoProcess, trace_id: str, service: str) -> None:
    r = httpx.get(f"{tempo.url}/api/traces/{trace_id}")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    doc = r.json()
    assert set(doc) == {"batches"}
    spans = spans_by_name(doc)
    assert set(spans) == {"POST /predict", "GET /features", "lookup"}
    root, client, lookup = spans["POST /predict"], spans["GET /features"], spans["lookup"]
    for span in spans.values():
        assert span["traceId"] == b64(trace_id)
        assert isinstance(span["startTimeUnixNano"], str) and int(span["endTimeUnixNano"]) >= int(
            span["startTimeUnixNano"]
        )
        assert "status" in span
    assert "parentSpanId" not in root
    assert client["parentSpanId"] == root["spanId"]
    assert lookup["parentSpanId"] == client["spanId"]
    assert (root["kind"], client["kind"], lookup["kind"]) == (
        "SPAN_KIND_SERVER",
        "SPAN_KIND_CLIENT",
        "SPAN_KIND_SERVER",
    )
    assert root["_service"] == f"{service}-gateway" and lookup["_service"] == f"{service}-features"
    assert {"key": "http.status_code", "value": {"intValue": "500"}} in root["attributes"]
    assert {"key": "model.version", "value": {"stringValue": "v3"}} in root["attributes"]
    assert {"key": "ratio", "value": {"doubleValue": 0.5}} in lookup["attributes"]
    assert {"key": "cached", "value": {"boolValue": False}} in lookup["attributes"]
    assert root["status"] == {}
    assert lookup["status"] == {"code": "STATUS_CODE_ERROR", "message": "feature store down"}
    (event,) = lookup["events"]
    assert event["name"] == "cache miss"
    assert event["attributes"] == [{"key": "key", "value": {"stringValue": "user-7"}}]


def test_http_exporter_trace_tree_round_trips(tempo: TempoProcess) -> None:
    """SDK OTLP/HTTP spans come back as one tree with kinds, attributes, status, events."""
    service = f"svc-{uuid.uuid4().hex[:8]}"
    endpoint = f"{tempo.otlp_http_url}/v1/traces"
    trace_id = send_tree(HttpExporter(endpoint=endpoint), HttpExporter(endpoint=endpoint), service)
    check_tree(tempo, trace_id, service)


def test_grpc_exporter_trace_tree_round_trips(tempo: TempoProcess) -> None:
    """Spans from the SDK's default OTLP/gRPC exporter come back as one tree."""
    service = f"svc-{uuid.uuid4().hex[:8]}"
    trace_id = send_tree(
        GrpcExporter(endpoint=tempo.otlp_grpc_endpoint, insecure=True),
        GrpcExporter(endpoint=tempo.otlp_grpc_endpoint, insecure=True),
        service,
    )
    check_tree(tempo, trace_id, service)


def test_spans_of_one_trace_over_http_and_grpc_are_merged(tempo: TempoProcess) -> None:
    """Parts of one trace arriving in separate exports over both protocols form one trace."""
    service = f"svc-{uuid.uuid4().hex[:8]}"
    trace_id = send_tree(
        HttpExporter(endpoint=f"{tempo.otlp_http_url}/v1/traces"),
        GrpcExporter(endpoint=tempo.otlp_grpc_endpoint, insecure=True),
        service,
    )
    check_tree(tempo, trace_id, service)


def test_tempo_doc_json_example_keeps_hex_ids(tempo: TempoProcess) -> None:
    """The OTLP/JSON example of Tempo's doc is stored under its hex id, not a base64 misreading."""
    r = httpx.post(f"{tempo.otlp_http_url}/v1/traces", json=TEMPO_DOC_EXAMPLE)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {}
    got = httpx.get(f"{tempo.url}/api/traces/5b8efff798038103d269b633813fc700")
    assert got.status_code == 200
    (batch,) = got.json()["batches"]
    assert batch["resource"] == {
        "attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]
    }
    (scope,) = batch["scopeSpans"]
    assert scope["scope"] == {"name": "my.library", "version": "1.0.0"}
    assert scope["spans"] == [
        {
            "traceId": "W47/95gDgQPSabYzgT/HAA==",
            "spanId": "7uGbfsPBsQA=",
            "name": "I am a span!",
            "kind": "SPAN_KIND_SERVER",
            "startTimeUnixNano": "1689969302000000000",
            "endTimeUnixNano": "1689970000000000000",
            "attributes": [{"key": "my.span.attr", "value": {"stringValue": "some value"}}],
            "status": {},
        }
    ]


def json_trace(
    trace_hex: str, spans: list[dict[str, Any]], service: str = "json-svc"
) -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": service}}]
                },
                "scopeSpans": [{"spans": [{"traceId": trace_hex, **s} for s in spans]}],
            }
        ]
    }


def test_gzip_json_with_unknown_fields_and_string_ints(tempo: TempoProcess) -> None:
    """Gzipped OTLP/JSON with unknown fields, int enums and 64-bit ints as strings is accepted."""
    trace_hex = uuid.uuid4().hex
    now = time.time_ns()
    body = json_trace(
        trace_hex,
        [
            {
                "spanId": "0102030405060708",
                "name": "gz",
                "kind": 3,
                "startTimeUnixNano": str(now),
                "endTimeUnixNano": str(now + 5_000_000),
                "status": {"code": 2},
                "somethingNew": {"x": 1},
            }
        ],
    )
    body["futureTopLevel"] = True
    r = httpx.post(
        f"{tempo.otlp_http_url}/v1/traces",
        content=gzip.compress(json.dumps(body).encode()),
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert r.status_code == 200, r.text
    (span,) = httpx.get(f"{tempo.url}/api/traces/{trace_hex}").json()["batches"][0]["scopeSpans"][
        0
    ]["spans"]
    assert span["kind"] == "SPAN_KIND_CLIENT"
    assert span["status"] == {"code": "STATUS_CODE_ERROR"}
    assert span["endTimeUnixNano"] == str(now + 5_000_000)


def test_protobuf_gzip_answers_empty_protobuf(tempo: TempoProcess) -> None:
    """A gzipped protobuf export gets 200 with an empty protobuf body as protobuf."""
    trace_hex = uuid.uuid4().hex
    req = trace_service_pb2.ExportTraceServiceRequest()
    span = req.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id = bytes.fromhex(trace_hex)
    span.span_id = bytes.fromhex("1111111111111111")
    span.name = "pb"
    r = httpx.post(
        f"{tempo.otlp_http_url}/v1/traces",
        content=gzip.compress(req.SerializeToString()),
        headers={"content-type": "application/x-protobuf", "content-encoding": "gzip"},
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-protobuf"
    assert r.content == b""
    assert httpx.get(f"{tempo.url}/api/traces/{trace_hex}").status_code == 200


def test_short_trace_ids_are_left_padded(tempo: TempoProcess) -> None:
    """A trace id with leading zeros is found by its full, trimmed and odd-length hex forms."""
    trace_hex = "00000000000000000000000000abcdef"
    r = httpx.post(
        f"{tempo.otlp_http_url}/v1/traces",
        json=json_trace(trace_hex, [{"spanId": "aaaaaaaaaaaaaaaa", "name": "padded"}]),
    )
    assert r.status_code == 200
    for form in (trace_hex, "abcdef", "0abcdef", "ABCDEF"):
        assert httpx.get(f"{tempo.url}/api/traces/{form}").status_code == 200, form


def test_unknown_and_invalid_trace_ids(tempo: TempoProcess) -> None:
    """An unknown id is 404 "trace not found"; a non-hex or too long id is 400."""
    r = httpx.get(f"{tempo.url}/api/traces/{uuid.uuid4().hex}")
    assert (r.status_code, r.text) == (404, "trace not found")
    r = httpx.get(f"{tempo.url}/api/traces/xyz")
    assert r.status_code == 400 and "hex characters" in r.text
    assert httpx.get(f"{tempo.url}/api/traces/{'a' * 33}").status_code == 400


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"\xff\x00garbage", "application/x-protobuf", 400),
        (b"{not json", "application/json", 400),
        (
            json.dumps(json_trace("zz" * 16, [{"spanId": "aa" * 8}])).encode(),
            "application/json",
            400,
        ),
        (
            json.dumps(json_trace("ab" * 8, [{"spanId": "aa" * 8}])).encode(),
            "application/json",
            400,
        ),
        (
            json.dumps(json_trace("ab" * 16, [{"spanId": "aa" * 4}])).encode(),
            "application/json",
            400,
        ),
        (b"hello", "text/plain", 415),
    ],
)
def test_malformed_exports_are_4xx(
    tempo: TempoProcess, body: bytes, content_type: str, status: int
) -> None:
    """Undecodable bodies, non-hex or wrong-length ids and unknown content types get a 4xx."""
    r = httpx.post(
        f"{tempo.otlp_http_url}/v1/traces", content=body, headers={"content-type": content_type}
    )
    assert r.status_code == status, r.text
    if content_type == "application/x-protobuf":
        assert status_pb2.Status.FromString(r.content).code == 3


def test_grpc_garbage_is_invalid_argument(tempo: TempoProcess) -> None:
    """A gRPC Export whose payload is not a valid request fails with INVALID_ARGUMENT."""
    with grpc.insecure_channel(tempo.otlp_grpc_endpoint) as channel:
        export = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=None,
            response_deserializer=None,
        )
        with pytest.raises(grpc.RpcError) as info:
            export(b"\xff\xff\xff\xff", timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        req = trace_service_pb2.ExportTraceServiceRequest()
        req.resource_spans.add().scope_spans.add().spans.add(trace_id=b"short", span_id=b"12345678")
        with pytest.raises(grpc.RpcError) as info:
            stub.Export(req, timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert tempo.alive()


def test_ready_echo_and_metrics(tempo: TempoProcess) -> None:
    """/ready and /api/echo answer like Tempo; /metrics counts received spans."""
    assert httpx.get(f"{tempo.url}/ready").status_code == 200
    r = httpx.get(f"{tempo.url}/api/echo")
    assert (r.status_code, r.text) == (200, "echo")
    httpx.post(
        f"{tempo.otlp_http_url}/v1/traces",
        json=json_trace(uuid.uuid4().hex, [{"spanId": "bbbbbbbbbbbbbbbb", "name": "counted"}]),
    ).raise_for_status()
    text = httpx.get(f"{tempo.url}/metrics").text
    line = next(
        x
        for x in text.splitlines()
        if x.startswith('tempo_distributor_spans_received_total{protocol="http"}')
    )
    assert float(line.split()[-1]) >= 1


def test_sigterm_exits_cleanly(tempo_factory: type[TempoProcess], tmp_path: Any) -> None:
    """SIGTERM stops the process with exit status 0."""
    proc = tempo_factory(tmp_path / "data")
    proc.start()
    assert proc.stop() == 0, proc.logs()
