"""The ready-made gateway metrics: every prediction counted and timed, in-flight requests gauged."""

from __future__ import annotations

import asyncio
from typing import Any

import requests
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from ml_service.model import MODEL_NAME, MODEL_VERSION, FraudModel
from ml_service.serve import start_services
from ml_service.service_metrics import InFlightMiddleware, prometheus_hooks

from .conftest import transaction


def _call(app: Any, method: str, path: str) -> int:
    """Status of one request sent straight through the ASGI interface."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 12345),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return int(sent[0]["status"])


def test_in_flight_gauge_counts_only_the_predict_requests_being_served() -> None:
    """Inside POST /predict the gauge reads 1, inside another route 0, and 0 once answered."""
    registry = CollectorRegistry()
    gauge = Gauge("in_flight", "Requests being served.", registry=registry)
    seen: dict[str, float | None] = {}

    async def predict(request: Request) -> PlainTextResponse:
        seen["predict"] = registry.get_sample_value("in_flight")
        return PlainTextResponse("ok")

    async def health(request: Request) -> PlainTextResponse:
        seen["health"] = registry.get_sample_value("in_flight")
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[Route("/predict", predict, methods=["POST"]), Route("/health", health)],
        middleware=[Middleware(InFlightMiddleware, gauge=gauge)],
    )
    assert _call(app, "POST", "/predict") == 200
    assert _call(app, "GET", "/health") == 200
    assert seen == {"predict": 1.0, "health": 0.0}
    assert registry.get_sample_value("in_flight") == 0.0


def test_every_prediction_is_counted_timed_and_served_at_metrics(model: FraudModel) -> None:
    """Two good predictions and one malformed body show up under their status labels."""
    registry = CollectorRegistry()
    with start_services(model=model, hooks=prometheus_hooks(registry)) as svc:
        for user in ("user-00001", "user-00002"):
            ok = requests.post(f"{svc.gateway_url}/predict", json=transaction(user_id=user))
            assert ok.status_code == 200, ok.text
        bad = requests.post(f"{svc.gateway_url}/predict", json={"user_id": "x"})
        assert bad.status_code == 422
        text = requests.get(f"{svc.gateway_url}/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    labels = {"model_name": MODEL_NAME, "model_version": MODEL_VERSION}

    def predictions(status: str) -> float:
        key = tuple(sorted({**labels, "status": status}.items()))
        return samples[("ml_predictions_total", key)]

    assert predictions("success") == 2.0
    assert predictions("client_error") == 1.0
    assert predictions("error") == 0.0
    count = samples[("ml_prediction_duration_seconds_count", (("model_name", MODEL_NAME),))]
    assert count == 3.0
    confidence = samples[("ml_prediction_confidence_count", (("model_name", MODEL_NAME),))]
    assert confidence == 2.0
    assert samples[("ml_requests_in_flight", ())] == 0.0
