"""Ready-made Prometheus instrumentation of the gateway, for the exercises that build on metrics.

Exercise 02 has students write this instrumentation themselves; later exercises (alerting) need a
gateway that already exposes the same metrics, under the same names and labels:

* ``ml_predictions_total{model_name, model_version, status}`` — Counter;
* ``ml_prediction_duration_seconds{model_name}`` — Histogram with a bucket at the 1 s SLO;
* ``ml_prediction_confidence{model_name}`` — Histogram of the predicted class's probability;
* ``ml_requests_in_flight`` — Gauge.

The hot path stays cheap (``benchmarks/service_overhead.py`` measures it): the label children of
the served model are bound once, not looked up per request, and the in-flight gauge is a pure ASGI
middleware (Starlette's ``BaseHTTPMiddleware`` costs an extra task and stream per request).

Example:
    >>> from prometheus_client import CollectorRegistry
    >>> hooks = prometheus_hooks(CollectorRegistry())
    >>> len(hooks.on_prediction), len(hooks.on_create)
    (1, 1)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ml_service.hooks import Hooks, PredictionEvent
from ml_service.model import MODEL_NAME, MODEL_VERSION

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["CONFIDENCE_BUCKETS", "LATENCY_BUCKETS", "InFlightMiddleware", "prometheus_hooks"]

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
    # Bound once: a `.labels(...)` lookup per observation costs a lock and a dict lookup each.
    bound = {
        status: predictions.labels(MODEL_NAME, MODEL_VERSION, status)
        for status in ("success", "client_error", "error")
    }
    bound_latency = latency.labels(MODEL_NAME)
    bound_confidence = confidence.labels(MODEL_NAME)

    def on_prediction(event: PredictionEvent) -> None:
        if event.model_name == MODEL_NAME and event.model_version == MODEL_VERSION:
            bound[event.status].inc()
            bound_latency.observe(event.latency_s)
            if event.prediction is not None:
                bound_confidence.observe(event.prediction.confidence)
            return
        predictions.labels(event.model_name, event.model_version, event.status).inc()
        latency.labels(event.model_name).observe(event.latency_s)
        if event.prediction is not None:
            confidence.labels(event.model_name).observe(event.prediction.confidence)

    def serve_metrics(app: FastAPI) -> None:
        async def metrics_endpoint(request: Request) -> Response:
            return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

        app.add_route("/metrics", metrics_endpoint)

    return Hooks(
        on_prediction=on_prediction,
        middleware=[Middleware(InFlightMiddleware, gauge=in_flight)],
        on_create=serve_metrics,
    )


class InFlightMiddleware:
    """Pure ASGI middleware: ``gauge`` counts the requests to ``path`` being served now.

    Example:
        >>> from prometheus_client import CollectorRegistry, Gauge
        >>> gauge = Gauge("in_flight", "In flight.", registry=CollectorRegistry())
        >>> Middleware(InFlightMiddleware, gauge=gauge).kwargs["gauge"] is gauge
        True
    """

    def __init__(self, app: ASGIApp, *, gauge: Gauge, path: str = "/predict") -> None:
        self.app = app
        self.gauge = gauge
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        with self.gauge.track_inprogress():
            await self.app(scope, receive, send)
