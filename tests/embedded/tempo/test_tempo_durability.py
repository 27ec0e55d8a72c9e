"""The embedded Tempo keeps every acknowledged export across kill -9, and retention bounds it."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from tempo_proc import TempoProcess


def emit(exporter: SpanExporter, service: str, n: int) -> list[str]:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("durability")
    ids = []
    for i in range(n):
        with tracer.start_as_current_span(f"op-{i}") as root, tracer.start_as_current_span("child"):
            pass
        ids.append(format(root.get_span_context().trace_id, "032x"))
    provider.shutdown()
    return ids


def json_export(trace_hex: str, name: str, size: int = 0) -> dict[str, object]:
    attrs = [{"key": "blob", "value": {"stringValue": "x" * size}}] if size else []
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "ret"}}]
                },
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": trace_hex,
                                "spanId": "00000000000000ff",
                                "name": name,
                                "attributes": attrs,
                            }
                        ]
                    }
                ],
            }
        ]
    }


def test_kill_9_loses_nothing_acknowledged(
    tempo_factory: type[TempoProcess], tmp_path: Path
) -> None:
    """Traces acknowledged over HTTP and gRPC are all served again after kill -9 and a restart."""
    first = tempo_factory(tmp_path / "data")
    first.start()
    service = f"dur-{uuid.uuid4().hex[:8]}"
    ids = emit(HttpExporter(endpoint=f"{first.otlp_http_url}/v1/traces"), service, 15)
    ids += emit(GrpcExporter(endpoint=first.otlp_grpc_endpoint, insecure=True), service, 15)
    first.kill9()

    second = tempo_factory(tmp_path / "data")
    second.start()
    for trace_id in ids:
        r = httpx.get(f"{second.url}/api/traces/{trace_id}")
        assert r.status_code == 200, trace_id
        names = {
            s["name"] for b in r.json()["batches"] for sc in b["scopeSpans"] for s in sc["spans"]
        }
        assert "child" in names and len(names) == 2
    found = httpx.get(
        f"{second.url}/api/search", params={"tags": f"service.name={service}", "limit": 100}
    )
    assert len(found.json()["traces"]) == 30
    # and it keeps accepting writes after the restart, which survive another kill
    more = emit(HttpExporter(endpoint=f"{second.otlp_http_url}/v1/traces"), service, 3)
    second.kill9()
    third = tempo_factory(tmp_path / "data")
    third.start()
    for trace_id in ids + more:
        assert httpx.get(f"{third.url}/api/traces/{trace_id}").status_code == 200


def test_byte_retention_evicts_oldest_traces(
    tempo_factory: type[TempoProcess], tmp_path: Path
) -> None:
    """With a byte bound, the oldest traces go first and the newest stay."""
    proc = tempo_factory(tmp_path / "data", extra_args=["--retention-bytes", "200000"])
    proc.start()
    ids = [uuid.uuid4().hex for _ in range(40)]
    for i, trace_hex in enumerate(ids):
        r = httpx.post(
            f"{proc.otlp_http_url}/v1/traces", json=json_export(trace_hex, f"big-{i}", 10_000)
        )
        assert r.status_code == 200
    assert httpx.get(f"{proc.url}/api/traces/{ids[0]}").status_code == 404
    assert httpx.get(f"{proc.url}/api/traces/{ids[-1]}").status_code == 200
    kept = sum(httpx.get(f"{proc.url}/api/traces/{t}").status_code == 200 for t in ids)
    assert 5 <= kept <= 20


def test_age_retention_drops_expired_traces_at_restart(
    tempo_factory: type[TempoProcess], tmp_path: Path
) -> None:
    """Traces older than the retention period are not replayed."""
    proc = tempo_factory(tmp_path / "data")
    proc.start()
    trace_hex = uuid.uuid4().hex
    httpx.post(
        f"{proc.otlp_http_url}/v1/traces", json=json_export(trace_hex, "old")
    ).raise_for_status()
    proc.stop()
    short = tempo_factory(tmp_path / "data", extra_args=["--retention-seconds", "0.001"])
    short.start()
    assert httpx.get(f"{short.url}/api/traces/{trace_hex}").status_code == 404
