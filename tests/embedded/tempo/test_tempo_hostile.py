"""Hostile input never crashes the embedded Tempo: every bad request is a 4xx and it stays up."""

from __future__ import annotations

import gzip
import json
import uuid
from typing import Any
from urllib.parse import quote

import grpc
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from tempo_proc import TempoProcess

HOSTILE = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def valid_export() -> bytes:
    req = trace_service_pb2.ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.add(key="service.name").value.string_value = "hostile"
    for i in range(3):
        span = rs.scope_spans.add().spans.add()
        span.trace_id = uuid.uuid4().bytes
        span.span_id = bytes([i + 1]) * 8
        span.name = f"s{i}"
        span.attributes.add(key="k").value.int_value = i
    return req.SerializeToString()


VALID = valid_export()
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=30,
)
otlp_keys = st.sampled_from(
    [
        "resourceSpans",
        "scopeSpans",
        "spans",
        "traceId",
        "spanId",
        "parentSpanId",
        "name",
        "kind",
        "attributes",
        "startTimeUnixNano",
        "status",
        "code",
        "resource",
        "key",
        "value",
        "stringValue",
    ]
)
otlp_like = st.recursive(
    st.none() | st.integers() | st.text(max_size=34) | st.booleans(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(otlp_keys, children, max_size=5)
    ),
    max_leaves=40,
)


def post(
    client: httpx.Client,
    tempo: TempoProcess,
    body: bytes,
    content_type: str,
    encoding: str | None = None,
) -> httpx.Response:
    headers = {"content-type": content_type}
    if encoding:
        headers["content-encoding"] = encoding
    return client.post(f"{tempo.otlp_http_url}/v1/traces", content=body, headers=headers)


@HOSTILE
@given(
    body=st.binary(max_size=2000),
    content_type=st.sampled_from(["application/x-protobuf", "application/json"]),
)
def test_random_bytes(
    tempo: TempoProcess, client: httpx.Client, body: bytes, content_type: str
) -> None:
    """Random bytes as protobuf or JSON get 200 (if valid by chance) or a 4xx, never a 5xx."""
    r = post(client, tempo, body, content_type)
    assert r.status_code == 200 or 400 <= r.status_code < 500


@HOSTILE
@given(
    cut=st.integers(min_value=1, max_value=len(VALID) - 1),
    flip=st.integers(min_value=0, max_value=255),
)
def test_truncated_and_corrupted_protobuf(
    tempo: TempoProcess, client: httpx.Client, cut: int, flip: int
) -> None:
    """A valid export truncated or with one byte changed is accepted or refused with a 4xx."""
    assert post(client, tempo, VALID[:cut], "application/x-protobuf").status_code < 500
    corrupted = bytearray(VALID)
    corrupted[cut] = flip
    assert post(client, tempo, bytes(corrupted), "application/x-protobuf").status_code < 500


@HOSTILE
@given(doc=st.one_of(json_values, otlp_like))
def test_random_json_documents(tempo: TempoProcess, client: httpx.Client, doc: Any) -> None:
    """Arbitrary JSON documents, including OTLP-shaped ones with wrong types, never give a 5xx."""
    r = post(client, tempo, json.dumps(doc).encode(), "application/json")
    assert r.status_code == 200 or 400 <= r.status_code < 500


@HOSTILE
@given(body=st.binary(max_size=500))
def test_bad_gzip(tempo: TempoProcess, client: httpx.Client, body: bytes) -> None:
    """A body that claims gzip but is not is a 4xx."""
    assert 400 <= post(client, tempo, body, "application/x-protobuf", "gzip").status_code < 500


@HOSTILE
@given(q=st.text(max_size=80), tags=st.text(max_size=40), tid=st.text(max_size=40))
def test_random_queries(
    tempo: TempoProcess, client: httpx.Client, q: str, tags: str, tid: str
) -> None:
    """Random TraceQL, tags and trace ids are answered with 200, 400 or 404, never a 5xx."""
    assert client.get(f"{tempo.url}/api/search", params={"q": q}).status_code in (200, 400)
    assert client.get(f"{tempo.url}/api/search", params={"tags": tags}).status_code in (200, 400)
    if tid.strip("./"):
        r = client.get(f"{tempo.url}/api/traces/{quote(tid, safe='')}")
        assert r.status_code in (200, 400, 404)


@pytest.mark.parametrize(
    ("body", "content_type", "encoding", "status"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "application/json", None, 400),
        (b'{"resourceSpans":' * 5000 + b"1" + b"}" * 5000, "application/json", None, 400),
        (
            b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"\xff\xfe"}]}]}]}',
            "application/json",
            None,
            400,
        ),
        (gzip.compress(b"\0" * (40 * 2**20)), "application/x-protobuf", "gzip", 413),
        (b"x" * (17 * 2**20), "application/x-protobuf", None, 413),
        (VALID, "application/x-protobuf", "br", 415),
    ],
    ids=["deep-array", "deep-object", "invalid-utf8", "gzip-bomb", "oversized", "unknown-encoding"],
)
def test_pathological_bodies(
    tempo: TempoProcess,
    client: httpx.Client,
    body: bytes,
    content_type: str,
    encoding: str | None,
    status: int,
) -> None:
    """Deep JSON, invalid UTF-8, gzip bombs, huge bodies, unknown encodings: the right 4xx."""
    assert post(client, tempo, body, content_type, encoding).status_code == status


def test_deeply_nested_attribute_values(tempo: TempoProcess, client: httpx.Client) -> None:
    """A kvlist nested beyond the protobuf recursion limit is refused over HTTP and gRPC."""
    req = trace_service_pb2.ExportTraceServiceRequest()
    span = (
        req.resource_spans.add()
        .scope_spans.add()
        .spans.add(trace_id=uuid.uuid4().bytes, span_id=b"12345678")
    )
    value = span.attributes.add(key="deep").value
    for _ in range(150):
        value = value.kvlist_value.values.add(key="k").value
    value.string_value = "bottom"
    raw = req.SerializeToString()
    assert 400 <= post(client, tempo, raw, "application/x-protobuf").status_code < 500
    with grpc.insecure_channel(tempo.otlp_grpc_endpoint) as channel:
        export = channel.unary_unary(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            request_serializer=None,
            response_deserializer=None,
        )
        with pytest.raises(grpc.RpcError) as info:
            export(raw, timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_still_up_and_serving_after_the_onslaught(
    tempo: TempoProcess, client: httpx.Client
) -> None:
    """After all the hostile input, the process is alive and still ingests and serves traces."""
    assert tempo.alive(), tempo.logs()
    assert post(client, tempo, VALID, "application/x-protobuf").status_code == 200
    trace_hex = (
        trace_service_pb2.ExportTraceServiceRequest.FromString(VALID)
        .resource_spans[0]
        .scope_spans[0]
        .spans[0]
        .trace_id.hex()
    )
    assert httpx.get(f"{tempo.url}/api/traces/{trace_hex}").status_code == 200
    assert "Traceback" not in tempo.logs()
