"""Overhead of the reference instrumentation on the prediction path, measured in one run.

Starts the embedded Tempo, then the feature service and the gateway as separate processes —
first bare, then with the reference instrumentation (prometheus_client metrics, structlog JSON
logs to a file, OpenTelemetry tracing of both FastAPI apps and the requests client with custom
``fetch_features``/``model_inference`` spans, OTLP/HTTP export with a batch processor to the
embedded Tempo) — and drives each with the same steady traffic at a fixed rate on loopback.
Bare and instrumented rounds alternate so that machine noise hits both.

    .venv/bin/python benchmarks/service_overhead.py [--rate 100] [--requests 1500] [--rounds 2]

Prints p50/p99 latency, achieved throughput at the fixed rate, saturation throughput, the
instrumented/bare p50 ratio (target <= 1.2) and the overhead in microseconds per request.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ml_service.serve import ServiceProcess, free_port, wait_ready  # noqa: E402
from ml_service.traffic import GroundTruth, run_traffic  # noqa: E402


# --------------------------------------------------------------------------- instrumented servers
def serve_instrumented(role: str, port: int, feature_url: str, otlp: str, log_file: str) -> None:
    """Run one service with the reference instrumentation (called in a child process)."""
    import logging

    import structlog
    import uvicorn
    from fastapi import FastAPI
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        Counter,
        Histogram,
        generate_latest,
    )
    from starlette.responses import Response

    from ml_service.features_app import create_app as feature_app
    from ml_service.gateway_app import create_app as gateway_app
    from ml_service.hooks import Hooks, PredictionEvent

    service = "prediction-gateway" if role == "gateway" else "feature-service"
    provider = TracerProvider(
        resource=Resource.create({"service.name": service, "service.version": "1.0.0"})
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp)))
    trace.set_tracer_provider(provider)
    tracer = trace.get_tracer("benchmark")
    RequestsInstrumentor().instrument()

    sink = open(log_file, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.WriteLoggerFactory(file=sink),
        cache_logger_on_first_use=True,
    )
    log = structlog.get_logger(service)
    registry = CollectorRegistry()
    total = Counter(
        "ml_predictions",
        "Predictions.",
        ["model_name", "model_version", "status"],
        registry=registry,
    )
    latency = Histogram(
        "ml_prediction_duration_seconds",
        "Latency.",
        ["model_name"],
        registry=registry,
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    )
    confidence = Histogram(
        "ml_prediction_confidence",
        "Confidence.",
        registry=registry,
        buckets=(0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0),
    )

    def on_prediction(e: PredictionEvent) -> None:
        total.labels(e.model_name, e.model_version, e.status).inc()
        latency.labels(e.model_name).observe(e.latency_s)
        if e.prediction is not None:
            confidence.observe(e.prediction.confidence)
        span = trace.get_current_span().get_span_context()
        log.info(
            "prediction",
            request_id=e.request_id,
            status=e.status,
            latency_ms=e.latency_s * 1e3,
            model_version=e.model_version,
            trace_id=format(span.trace_id, "032x"),
        )

    def fetch_span(fetch: Any, user_id: str) -> Any:
        with tracer.start_as_current_span("fetch_features"):
            return fetch(user_id)

    def infer_span(infer: Any, features: Any) -> Any:
        with tracer.start_as_current_span("model_inference") as span:
            result = infer(features)
            span.set_attribute("prediction.score", result.probability)
            return result

    def metrics(app: FastAPI) -> None:
        app.add_api_route(
            "/metrics", lambda: Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
        )
        FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)

    async def log_requests(request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        log.info(
            "lookup",
            path=request.url.path,
            status=response.status_code,
            request_id=request.headers.get("X-Request-ID"),
        )
        return response

    if role == "gateway":
        app = gateway_app(
            feature_url=feature_url,
            hooks=Hooks(
                on_prediction=on_prediction,
                fetch_features=fetch_span,
                inference=infer_span,
                on_create=metrics,
            ),
        )
    else:
        app = feature_app(hooks=Hooks(middleware=log_requests, on_create=metrics))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --------------------------------------------------------------------------- the measurement
def _child(
    role: str, port: int, feature_url: str, otlp: str, log_file: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    import os

    return subprocess.Popen(
        [sys.executable, __file__, "serve", role, str(port), feature_url, otlp, str(log_file)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _drive(url: str, args: argparse.Namespace) -> tuple[GroundTruth, float]:
    run_traffic(url, rate=200, requests=200, concurrency=args.concurrency, seed=99)  # warm-up
    truth = run_traffic(
        url, rate=args.rate, requests=args.requests, concurrency=args.concurrency, seed=1
    )
    saturated = run_traffic(url, rate=2000, requests=800, concurrency=args.concurrency, seed=2)
    return truth, saturated.achieved_rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="service-overhead-"))
    env = {"LAB_HOME": str(work / "lab")}
    tempo_http, tempo_otlp, tempo_grpc = free_port(), free_port(), free_port()
    tempo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lab_stack.embedded.tempo",
            "--host",
            "127.0.0.1",
            "--http-port",
            str(tempo_http),
            "--otlp-http-port",
            str(tempo_otlp),
            "--otlp-grpc-port",
            str(tempo_grpc),
            "--data-dir",
            str(work / "tempo"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    otlp = f"http://127.0.0.1:{tempo_otlp}/v1/traces"
    results: dict[str, list[tuple[GroundTruth, float]]] = {"bare": [], "instrumented": []}
    try:
        wait_ready(f"http://127.0.0.1:{tempo_http}/ready", timeout_s=30, process=tempo)
        for _ in range(args.rounds):
            # bare: the package's own CLI, no hooks
            with (
                ServiceProcess.features(env=env) as features,
                ServiceProcess.gateway(feature_url=features.url, env=env) as gateway,
            ):
                results["bare"].append(_drive(gateway.url, args))
            # instrumented: the same apps with the reference hooks
            fport, gport = free_port(), free_port()
            procs = [_child("features", fport, "", otlp, work / "features.log", env)]
            try:
                wait_ready(f"http://127.0.0.1:{fport}/health", process=procs[0])
                procs.append(
                    _child(
                        "gateway",
                        gport,
                        f"http://127.0.0.1:{fport}",
                        otlp,
                        work / "gateway.log",
                        env,
                    )
                )
                wait_ready(f"http://127.0.0.1:{gport}/health", timeout_s=30, process=procs[1])
                results["instrumented"].append(_drive(f"http://127.0.0.1:{gport}", args))
            finally:
                for p in procs:
                    p.terminate()
                    p.wait(10)
        time.sleep(2)  # let the batch processor's last export land
        traces = _count_traces(tempo_http)
    finally:
        tempo.terminate()
        tempo.wait(10)

    def agg(kind: str) -> dict[str, float]:
        runs = results[kind]
        return {
            "p50_ms": statistics.median(t.p50 for t, _ in runs) * 1e3,
            "p99_ms": statistics.median(t.p99 for t, _ in runs) * 1e3,
            "rate": statistics.median(t.achieved_rate for t, _ in runs),
            "saturation": statistics.median(s for _, s in runs),
            "errors": sum(t.sent - t.by_status.get("success", 0) for t, _ in runs),
        }

    bare, inst = agg("bare"), agg("instrumented")
    print(
        f"\nservice overhead: {args.rounds} rounds x {args.requests} requests at {args.rate:.0f}/s, "
        f"concurrency {args.concurrency}, loopback, separate processes; OTLP/HTTP to embedded Tempo"
    )
    print(
        f"{'':14s}{'p50 ms':>9s}{'p99 ms':>9s}{'req/s @rate':>13s}{'req/s max':>11s}{'failed':>8s}"
    )
    for name, row in (("bare", bare), ("instrumented", inst)):
        print(
            f"{name:14s}{row['p50_ms']:9.2f}{row['p99_ms']:9.2f}{row['rate']:13.1f}"
            f"{row['saturation']:11.1f}{row['errors']:8.0f}"
        )
    ratio = inst["p50_ms"] / bare["p50_ms"]
    print(
        f"\np50 ratio instrumented/bare: {ratio:.3f} (target <= 1.2) -> {'OK' if ratio <= 1.2 else 'OVER'}"
    )
    print(
        f"overhead per request: {(inst['p50_ms'] - bare['p50_ms']) * 1e3:.0f} us at p50, "
        f"{(inst['p99_ms'] - bare['p99_ms']) * 1e3:.0f} us at p99"
    )
    print(f"saturation throughput ratio: {inst['saturation'] / bare['saturation']:.3f}")
    lines = {
        name: len((work / f"{name}.log").read_text().splitlines())
        for name in ("gateway", "features")
    }
    print(f"traces found in Tempo: {traces}; log lines written: {lines}")


def _count_traces(tempo_http: int) -> str:
    import requests

    try:
        resp = requests.get(
            f"http://127.0.0.1:{tempo_http}/api/search", params={"limit": 100000}, timeout=10
        )
        return str(len(resp.json().get("traces", [])))
    except Exception as exc:  # a figure for the table, not a failure
        return f"unknown ({type(exc).__name__})"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve_instrumented(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6])
    else:
        main()
