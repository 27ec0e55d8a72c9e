"""Benchmark the embedded Tempo: OTLP ingest rate, trace-by-id latency with 100k traces, RSS.

Run: ``.venv/bin/python benchmarks/tempo_embedded.py [--traces 100000]``. Prints a table.
"""

from __future__ import annotations

import argparse
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import psutil
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

from lab_stack.ports import free_port as _free_port


class _Collect(SpanProcessor):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


def make_traces(
    provider: TracerProvider, collect: _Collect, n: int, spans_per_trace: int
) -> tuple[list[ReadableSpan], list[str]]:
    """Create ``n`` traces of ``spans_per_trace`` spans; return the finished spans and trace ids."""
    tracer = provider.get_tracer("bench")
    collect.spans = []
    ids = []
    for i in range(n):
        with tracer.start_as_current_span(f"GET /item/{i % 50}", kind=SpanKind.SERVER) as root:
            root.set_attribute("http.status_code", 200)
            for j in range(spans_per_trace - 1):
                with tracer.start_as_current_span(f"step-{j}", kind=SpanKind.INTERNAL) as child:
                    child.set_attribute("step", j)
        ids.append(format(root.get_span_context().trace_id, "032x"))
    return collect.spans, ids


def export_all(exporter: SpanExporter, spans: Sequence[ReadableSpan], batch: int = 512) -> float:
    """Export ``spans`` in batches; return the seconds spent in ``export``."""
    spent = 0.0
    for i in range(0, len(spans), batch):
        began = time.perf_counter()
        result = exporter.export(spans[i : i + batch])
        spent += time.perf_counter() - began
        if result is not SpanExportResult.SUCCESS:
            raise RuntimeError("export failed")
    return spent


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--traces", type=int, default=100_000, help="traces stored before the lookups"
    )
    parser.add_argument("--spans-per-trace", type=int, default=3)
    parser.add_argument("--lookups", type=int, default=2000)
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="tempo-bench-"))
    http_port, otlp_http, otlp_grpc = _free_port(), _free_port(), _free_port()
    log = open(tmp / "tempo.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lab_stack.embedded.tempo",
            "--http-port",
            str(http_port),
            "--otlp-http-port",
            str(otlp_http),
            "--otlp-grpc-port",
            str(otlp_grpc),
            "--data-dir",
            str(tmp / "data"),
        ],
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{http_port}"
    rows: list[tuple[str, str]] = []
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        time.sleep(0.3)  # the gRPC port opens with the app's lifespan
        collect = _Collect()
        provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
        provider.add_span_processor(collect)
        http_exp = HttpExporter(endpoint=f"http://127.0.0.1:{otlp_http}/v1/traces")
        grpc_exp = GrpcExporter(endpoint=f"127.0.0.1:{otlp_grpc}", insecure=True)

        # 1. ingest rate through each exporter on a fixed sample
        sample_traces = 5000
        for name, exporter in (("OTLP/HTTP protobuf", http_exp), ("OTLP/gRPC", grpc_exp)):
            spans, _ = make_traces(provider, collect, sample_traces, args.spans_per_trace)
            seconds = export_all(exporter, spans)
            rows.append((f"ingest {name} (batches of 512)", f"{len(spans) / seconds:,.0f} spans/s"))

        # 2. fill up to --traces traces, then time lookups by id
        stored: list[str] = []
        fill_began = time.perf_counter()
        export_time = 0.0
        remaining = args.traces - 2 * sample_traces
        while remaining > 0:
            chunk = min(remaining, 5000)
            spans, ids = make_traces(provider, collect, chunk, args.spans_per_trace)
            export_time += export_all(grpc_exp, spans)
            stored.extend(ids)
            remaining -= chunk
        fill = time.perf_counter() - fill_began
        total_spans = len(stored) * args.spans_per_trace
        rows.append(("fill: spans exported via gRPC", f"{total_spans:,}"))
        rows.append(
            ("fill: export rate (export() time only)", f"{total_spans / export_time:,.0f} spans/s")
        )
        rows.append(
            ("fill: end to end incl. SDK span creation", f"{total_spans / fill:,.0f} spans/s")
        )

        with httpx.Client() as client:
            metrics = client.get(f"{url}/metrics").text
            held = next(
                line for line in metrics.splitlines() if line.startswith("tempo_embedded_traces ")
            )
            rows.append(("traces held", f"{float(held.split()[1]):,.0f}"))
            picks = random.Random(7).sample(stored, min(args.lookups, len(stored)))
            latencies = []
            for tid in picks:
                began = time.perf_counter()
                r = client.get(f"{url}/api/traces/{tid}")
                latencies.append((time.perf_counter() - began) * 1000)
                assert r.status_code == 200, r.text
            rows.append(("trace by id p50", f"{statistics.median(latencies):.2f} ms"))
            rows.append(("trace by id p99", f"{percentile(latencies, 99):.2f} ms"))
            searches = []
            for q in (
                '{ name = "GET /item/7" }',
                "{ span.http.status_code = 200 && duration > 0ms }",
            ):
                began = time.perf_counter()
                r = client.get(f"{url}/api/search", params={"q": q, "limit": 20})
                searches.append((time.perf_counter() - began) * 1000)
                assert r.status_code == 200 and len(r.json()["traces"]) == 20
            rows.append(("TraceQL search, limit 20 (early stop)", f"{max(searches):.0f} ms"))
            began = time.perf_counter()
            r = client.get(
                f"{url}/api/search", params={"q": '{ name = "no such span" }'}, timeout=300
            )
            rows.append(
                (
                    "TraceQL search, no match (full scan)",
                    f"{(time.perf_counter() - began) * 1000:,.0f} ms",
                )
            )
        rss = psutil.Process(proc.pid).memory_info().rss
        rows.append(("server RSS", f"{rss / 2**20:,.0f} MiB"))
        disk = sum(p.stat().st_size for p in (tmp / "data").rglob("*") if p.is_file())
        rows.append(("segment log on disk", f"{disk / 2**20:,.0f} MiB"))
        began = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        restart = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lab_stack.embedded.tempo",
                "--http-port",
                str(http_port),
                "--otlp-http-port",
                str(otlp_http),
                "--otlp-grpc-port",
                str(otlp_grpc),
                "--data-dir",
                str(tmp / "data"),
            ],
            stdout=log,
            stderr=log,
        )
        began = time.perf_counter()
        while True:
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        rows.append(("restart (replay) to ready", f"{time.perf_counter() - began:.1f} s"))
        restart.send_signal(signal.SIGTERM)
        restart.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    width = max(len(k) for k, _ in rows)
    print(f"{'metric':<{width}}  value")
    print(f"{'-' * width}  {'-' * 16}")
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
