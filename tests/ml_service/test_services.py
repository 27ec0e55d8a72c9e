"""Specification of the two services over real HTTP: predictions, validation, failures, hooks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

import pytest
import requests
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from ml_service.hooks import Hooks, PredictionEvent
from ml_service.model import FraudModel, Prediction
from ml_service.serve import ServiceProcess, Services, start_services

from .conftest import EventLog, transaction


def test_predict_returns_prediction_confidence_model_and_request_id(healthy: Services) -> None:
    """POST /predict answers 200 with the prediction, probability, confidence, model and request id."""
    resp = requests.post(
        f"{healthy.gateway_url}/predict", json=transaction(), headers={"X-Request-ID": "abc-123"}
    )
    assert resp.status_code == 200
    body = resp.json()
    assert body["request_id"] == "abc-123" == resp.headers["X-Request-ID"]
    assert body["status"] == "success" and isinstance(body["is_fraud"], bool)
    assert 0 <= body["fraud_probability"] <= 1
    assert body["confidence"] == pytest.approx(
        max(body["fraud_probability"], 1 - body["fraud_probability"])
    )
    assert (body["model_name"], body["model_version"]) == ("fraud-detector", "1.0.0")


def test_request_id_is_generated_when_absent(healthy: Services) -> None:
    """Without X-Request-ID the gateway generates one and returns it in body and header."""
    resp = requests.post(f"{healthy.gateway_url}/predict", json=transaction())
    assert (
        len(resp.json()["request_id"]) == 32
        and resp.headers["X-Request-ID"] == resp.json()["request_id"]
    )


def test_health_names_model_and_feature_service(healthy: Services) -> None:
    """GET /health reports the model and the feature service URL the gateway calls."""
    body = requests.get(f"{healthy.gateway_url}/health").json()
    assert body["status"] == "ok" and body["feature_url"] == healthy.feature_url
    assert requests.get(f"{healthy.feature_url}/health").json()["seed"] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (transaction(amount=-5), "amount"),
        ({k: v for k, v in transaction().items() if k != "hour"}, "hour"),
        (transaction(hour="noon"), "hour"),
        (transaction(user_id="bad id with spaces"), "user_id"),
        ("this is not json", "JSON"),
    ],
)
def test_malformed_body_is_422_with_clear_message_and_counted(
    healthy: Services, events: EventLog, body: Any, field: str
) -> None:
    """A malformed body gets 422 naming the field and a hint, and the hook sees a client_error."""
    rid = f"bad-{field}-{len(events.events)}"
    kwargs: dict[str, Any] = {"data": body} if isinstance(body, str) else {"json": body}
    resp = requests.post(
        f"{healthy.gateway_url}/predict",
        headers={"X-Request-ID": rid, "Content-Type": "application/json"},
        **kwargs,
    )
    assert resp.status_code == 422
    payload = resp.json()
    assert payload["status"] == "client_error" and field in payload["message"]
    assert "Hint:" in payload["message"]
    event = events.by_id()[rid]
    assert (event.status, event.http_status) == ("client_error", 422)
    assert event.latency_s >= 0


def test_feature_service_failure_is_502_error(healthy: Services, events: EventLog) -> None:
    """When the feature service fails the gateway answers 502 with status error, never a crash."""
    healthy.feature_control.error_rate = 1.0
    resp = requests.post(
        f"{healthy.gateway_url}/predict", json=transaction(), headers={"X-Request-ID": "fs-fail"}
    )
    assert resp.status_code == 502 and resp.json()["status"] == "error"
    assert "feature service answered 500" in resp.json()["message"]
    assert events.by_id()["fs-fail"].status == "error"


def test_feature_timeout_is_504(healthy: Services) -> None:
    """A feature lookup slower than the gateway's timeout (2 s here) gives 504."""
    healthy.feature_control.delay_s = 2.5
    resp = requests.post(f"{healthy.gateway_url}/predict", json=transaction(), timeout=10)
    assert resp.status_code == 504 and "timed out" in resp.json()["message"]


def test_inference_failure_is_503(healthy: Services) -> None:
    """An inference fault set through POST /_control gives 503 until reset."""
    url = healthy.gateway_url
    requests.post(
        f"{url}/_control", json={"inference_error": "CUDA out of memory"}
    ).raise_for_status()
    assert requests.post(f"{url}/predict", json=transaction()).status_code == 503
    requests.post(f"{url}/_control", json={"reset": True}).raise_for_status()
    assert requests.post(f"{url}/predict", json=transaction()).status_code == 200


def test_feature_control_endpoint_changes_behaviour(healthy: Services) -> None:
    """POST /_control on the feature service sets nulls and constants; reset restores them."""
    url = healthy.feature_control and healthy.feature_url
    requests.post(
        f"{url}/_control",
        json={"null_features": ["avg_amount_30d"], "constant_features": {"txn_count_24h": 0}},
    )
    features = requests.get(f"{url}/features/user-00001").json()["features"]
    assert features["avg_amount_30d"] is None and features["txn_count_24h"] == 0
    state = requests.post(f"{url}/_control", json={"reset": True}).json()
    assert (
        state["null_features"] == []
        and requests.get(f"{url}/features/user-00001").json()["features"]["avg_amount_30d"] > 0
    )
    assert requests.post(f"{url}/_control", json={"error_rate": 2}).status_code == 422


def test_error_rate_fails_an_exact_share(healthy: Services) -> None:
    """error_rate=0.25 fails exactly one lookup in four."""
    healthy.feature_control.error_rate = 0.25
    codes = [requests.get(f"{healthy.feature_url}/features/u{i}").status_code for i in range(40)]
    assert codes.count(500) == 10


def test_hooks_change_what_is_observed(model: FraudModel) -> None:
    """Middleware, fetch and inference wrappers, outgoing headers, on_create and lifespan hooks all run."""
    seen: dict[str, Any] = {
        "fetch": [],
        "infer": [],
        "startup": 0,
        "shutdown": 0,
        "mw": 0,
        "fs_headers": [],
    }

    async def middleware(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        seen["mw"] += 1
        response = await call_next(request)
        response.headers["X-Instrumented"] = "yes"
        return response

    async def feature_mw(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        seen["fs_headers"].append(request.headers.get("X-Request-ID"))
        return await call_next(request)

    def fetch_wrapper(fetch: Callable[[str], dict[str, Any]], user_id: str) -> dict[str, Any]:
        seen["fetch"].append(user_id)
        return fetch(user_id)

    def infer_wrapper(
        infer: Callable[[Mapping[str, Any]], Prediction], features: Mapping[str, Any]
    ) -> Prediction:
        result = infer(features)
        seen["infer"].append(result.probability)
        return result

    def add_route(app: FastAPI) -> None:
        app.add_api_route("/metrics", lambda: {"ok": True})

    def forward(headers: MutableMapping[str, str]) -> None:
        headers["X-Request-ID"] = "forwarded"

    hooks = Hooks(
        middleware=middleware,
        fetch_features=fetch_wrapper,
        inference=[infer_wrapper],
        outgoing_headers=forward,
        on_create=add_route,
        on_startup=lambda: seen.__setitem__("startup", seen["startup"] + 1),
        on_shutdown=lambda: seen.__setitem__("shutdown", seen["shutdown"] + 1),
    )
    with start_services(
        model=model, hooks=hooks, feature_hooks=Hooks(middleware=feature_mw)
    ) as svc:
        resp = requests.post(f"{svc.gateway_url}/predict", json=transaction(user_id="user-00042"))
        assert resp.headers["X-Instrumented"] == "yes"
        assert requests.get(f"{svc.gateway_url}/metrics").json() == {"ok": True}
        assert seen["startup"] == 1
    assert seen["shutdown"] == 1
    assert seen["fetch"] == ["user-00042"]
    assert seen["infer"] == [pytest.approx(resp.json()["fraud_probability"])]
    assert seen["fs_headers"] == ["forwarded"]


def test_prediction_event_carries_features_and_payload(healthy: Services, events: EventLog) -> None:
    """on_prediction gets the status, latency, model inputs and the raw payload (with any PII)."""
    requests.post(
        f"{healthy.gateway_url}/predict",
        json=transaction(email="ann@example.com"),
        headers={"X-Request-ID": "evt-1"},
    )
    event: PredictionEvent = events.by_id()["evt-1"]
    assert event.status == "success" and event.prediction is not None and event.latency_s > 0
    assert event.features is not None and "avg_amount_30d" in event.features
    assert event.payload is not None and event.payload["email"] == "ann@example.com"


def test_services_run_as_separate_processes(tmp_path: Any) -> None:
    """`python -m ml_service features|gateway` serve the same API from child processes."""
    env = {"LAB_HOME": str(tmp_path / "lab")}
    with (
        ServiceProcess.features(log_path=tmp_path / "features.log", env=env) as features,
        ServiceProcess.gateway(
            feature_url=features.url, log_path=tmp_path / "gateway.log", env=env
        ) as gateway,
    ):
        resp = requests.post(f"{gateway.url}/predict", json=transaction())
        assert resp.status_code == 200, (tmp_path / "gateway.log").read_text()
        pid = gateway.process.pid if gateway.process else None
    assert list((tmp_path / "lab").rglob("*.joblib"))  # the child's cache lived under LAB_HOME
    assert pid is not None and gateway.process is not None and gateway.process.poll() is not None
