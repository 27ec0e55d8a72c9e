"""Ready-made Prometheus instrumentation of the gateway, for the exercises that build on metrics.

Exercise 02 has students write this instrumentation themselves; later exercises (alerting) need a
gateway that already exposes the same metrics, under the same names and labels:

* ``ml_predictions_total{model_name, model_version, status}`` — Counter;
* ``ml_prediction_duration_seconds{model_name}`` — Histogram with a bucket at the 1 s SLO;
* ``ml_prediction_confidence{model_name}`` — Histogram of the predicted class's probability;
* ``ml_requests_in_flight`` — Gauge.

Example:
    >>> from prometheus_client import CollectorRegistry
    >>> hooks = prometheus_hooks(CollectorRegistry())
    >>> len(hooks.on_prediction), len(hooks.on_create)
    (1, 1)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response

from ml_service.hooks import Hooks, PredictionEvent
from ml_service.model import MODEL_NAME, MODEL_VERSION

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["CONFIDENCE_BUCKETS", "LATENCY_BUCKETS", "prometheus_hooks"]

#: Latency buckets (seconds); 1.0 is the latency SLO, so "share slower than 1 s" is exact.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


#: Buckets of the confidence histogram (the predicted class's probability is at least 0.5).
CONFIDENCE_BUCKETS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


def prometheus_hooks(registry: CollectorRegistry | None = None) -> Hooks:
    """Gateway hooks that count and time every prediction and serve ``registry`` at ``/metrics``."""
    registry = registry if registry is not None else CollectorRegistry()
    predictions = Counter(
        "ml_predictions_total",
        "Predictions answered by the gateway, by model and outcome.",
        ["model_name", "model_version", "status"],
        registry=registry,
    )
    latency = Histogram(
        "ml_prediction_duration_seconds",
        "Time from request to answer of POST /predict, in seconds.",
        ["model_name"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    confidence = Histogram(
        "ml_prediction_confidence",
        "Probability of the predicted class, per answered prediction.",
        ["model_name"],
        buckets=CONFIDENCE_BUCKETS,
        registry=registry,
    )
    in_flight = Gauge(
        "ml_requests_in_flight", "Prediction requests being served now.", registry=registry
    )
    for status in ("success", "client_error", "error"):
        predictions.labels(MODEL_NAME, MODEL_VERSION, status)
    latency.labels(MODEL_NAME)

    def on_prediction(event: PredictionEvent) -> None:
        predictions.labels(event.model_name, event.model_version, event.status).inc()
        latency.labels(event.model_name).observe(event.latency_s)
        if event.prediction is not None:
            confidence.labels(event.model_name).observe(event.prediction.confidence)

    async def count_in_flight(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if request.url.path != "/predict":
            return await call_next(request)
        in_flight.inc()
        try:
            return await call_next(request)
        finally:
            in_flight.dec()

    def serve_metrics(app: FastAPI) -> None:
        async def metrics_endpoint(request: Request) -> Response:
            return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

        app.add_route("/metrics", metrics_endpoint)

    return Hooks(on_prediction=on_prediction, middleware=[count_in_flight], on_create=serve_metrics)
