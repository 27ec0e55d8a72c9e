"""The prediction gateway: validates a transaction, fetches the user's features, scores it.

Routes:

* ``POST /predict`` — body :class:`PredictRequest`; answers :class:`PredictResponse` (200), or
  ``{"status": "client_error", "message": ..., "detail": [...]}`` with 422 for a malformed body,
  502/504 when the feature service fails or times out, 503 when inference fails;
* ``GET /health`` — model name and version, and the feature service URL it calls;
* ``GET /_control`` / ``POST /_control`` — ``{"inference_error": "CUDA out of memory",
  "inference_error_share": 0.3, "reset": true}``: make inference fail (all of it, or the share
  given: the GPU-leak scenario's out-of-memory state) or recover.

The feature service is called with ``requests`` (one module-level ``requests.Session``), so
OpenTelemetry's requests instrumentation and ``inject(headers)`` apply. Every response carries
``X-Request-ID`` (the request's own, or a generated one). Instrumentation plugs in through
:class:`ml_service.hooks.Hooks`; with no hooks the app is uninstrumented.

Example:
    >>> app = create_app(feature_url="http://127.0.0.1:8001")   # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import requests
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from requests.adapters import HTTPAdapter
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from ml_service.errors import FeatureServiceError, InferenceError
from ml_service.hooks import Hooks, PredictionEvent, Status, chain
from ml_service.model import FraudModel, Prediction, load_model

__all__ = [
    "REQUEST_ID_HEADER",
    "SERVICE_NAME",
    "GatewayControl",
    "PredictRequest",
    "PredictResponse",
    "create_app",
    "session",
]

SERVICE_NAME = "prediction-gateway"
REQUEST_ID_HEADER = "X-Request-ID"
_T0 = "ml_service.t0"

#: The HTTP session the gateway calls the feature service with (pool sized for concurrency).
session = requests.Session()
session.mount("http://", HTTPAdapter(pool_connections=4, pool_maxsize=64))


class PredictRequest(BaseModel):
    """A card transaction to score; optional customer fields may carry PII (never needed)."""

    model_config = ConfigDict(extra="ignore")

    user_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    amount: float = Field(gt=0, le=1_000_000, description="transaction amount in EUR")
    merchant_category: str = Field(min_length=1, max_length=64)
    channel: str = Field(min_length=1, max_length=32)
    hour: int = Field(ge=0, le=23, description="local hour of day")
    distance_from_home_km: float = Field(ge=0, le=20_000)
    device_age_days: float = Field(ge=0, le=36_500)
    email: str | None = Field(default=None, max_length=256)
    card_number: str | None = Field(default=None, max_length=32)
    phone: str | None = Field(default=None, max_length=32)
    note: str | None = Field(default=None, max_length=1024)


class PredictResponse(BaseModel):
    """The gateway's answer to a valid transaction."""

    request_id: str
    user_id: str
    is_fraud: bool
    fraud_probability: float
    confidence: float
    model_name: str
    model_version: str
    status: Status = "success"


@dataclass
class GatewayControl:
    """Runtime faults of the gateway itself; ``inference_error`` makes inferences fail (all of
    them, or the share ``inference_error_share``, spread evenly over the requests)."""

    inference_error: str | None = None
    inference_error_share: float = 1.0
    _served: int = 0

    def should_fail(self) -> bool:
        """Count one inference; True when it is one of the failing share."""
        if not self.inference_error:
            return False
        i, self._served = self._served, self._served + 1
        share = min(max(self.inference_error_share, 0.0), 1.0)
        return math.floor((i + 1) * share) > math.floor(i * share)

    def reset(self) -> None:
        """Back to healthy inference."""
        self.inference_error, self.inference_error_share, self._served = None, 1.0, 0


class _ControlUpdate(BaseModel):
    reset: bool = False
    inference_error: str | None = None
    inference_error_share: float | None = Field(default=None, ge=0.0, le=1.0)


class _StampStart:
    """Pure ASGI middleware recording when a request entered the app (for ``latency_s``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[_T0] = time.perf_counter()
        await self.app(scope, receive, send)


def _request_id(request: Request) -> str:
    rid = request.headers.get(REQUEST_ID_HEADER, "")
    return rid if 0 < len(rid) <= 128 else uuid.uuid4().hex


def _elapsed(request: Request) -> float:
    return time.perf_counter() - float(request.scope.get(_T0, time.perf_counter()))


def _validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for err in errors[:10]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    fields = ", ".join(
        f for f in PredictRequest.model_fields if PredictRequest.model_fields[f].is_required()
    )
    return (
        f"invalid /predict body: {'; '.join(parts)}. "
        f"Hint: POST a JSON object with {fields} (see GET /docs)."
    )


def create_app(
    *,
    feature_url: str,
    model: FraudModel | None = None,
    hooks: Hooks | None = None,
    control: GatewayControl | None = None,
    feature_timeout_s: float = 5.0,
    seed: int = 0,
) -> FastAPI:
    """Build the prediction gateway.

    Args:
        feature_url: base URL of the feature service (``http://127.0.0.1:PORT``).
        model: the model to serve (default :func:`ml_service.model.load_model` with ``seed``).
        hooks: instrumentation hooks (see :mod:`ml_service.hooks`).
        control: shared runtime faults (default: healthy).
        feature_timeout_s: timeout of the feature-service call (then 504).
        seed: model seed when ``model`` is not given.
    """
    mdl = model if model is not None else load_model(seed=seed)
    h = hooks if hooks is not None else Hooks()
    ctl = control if control is not None else GatewayControl()
    base_url = feature_url.rstrip("/")

    def fetch(user_id: str) -> dict[str, Any]:
        url = f"{base_url}/features/{user_id}"
        headers: dict[str, str] = {}
        for add in h.outgoing_headers:
            add(headers)
        try:
            resp = session.get(url, headers=headers, timeout=feature_timeout_s)
        except requests.Timeout as exc:
            err = FeatureServiceError(
                f"feature service timed out after {feature_timeout_s}s: GET {url}. "
                "Hint: check the feature service's latency (GET /_control).",
                url=url,
            )
            err.timed_out = True
            raise err from exc
        except requests.RequestException as exc:
            raise FeatureServiceError(
                f"feature service unreachable: GET {url}: {exc}. Hint: is it running?", url=url
            ) from exc
        if resp.status_code != 200:
            raise FeatureServiceError(
                f"feature service answered {resp.status_code}: GET {url}: {resp.text[:200]}. "
                "Hint: check the feature service's logs and GET /_control.",
                url=url,
                status=resp.status_code,
            )
        features: dict[str, Any] = resp.json()["features"]
        return features

    def infer(features: Mapping[str, Any]) -> Prediction:
        if ctl.should_fail():
            raise InferenceError(
                f"inference failed: {ctl.inference_error}. "
                "Hint: the GPU is out of memory; restart the worker or reset the GPU source."
            )
        return mdl.predict_one(features)

    fetch_chain = chain(fetch, h.fetch_features)
    infer_chain = chain(infer, h.inference)

    def emit(event: PredictionEvent) -> None:
        for fn in h.on_prediction:
            fn(event)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for fn in h.on_startup:
            fn()
        try:
            yield
        finally:
            for fn in h.on_shutdown:
                fn()

    app = FastAPI(
        title=SERVICE_NAME,
        lifespan=lifespan,
        middleware=[Middleware(_StampStart), *h.asgi_middleware()],
    )
    app.state.control = ctl
    app.state.model = mdl
    app.state.feature_url = base_url

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError) -> JSONResponse:
        rid = _request_id(request)
        errors = jsonable_encoder(exc.errors())
        message = _validation_message(errors)
        if request.url.path.rstrip("/").endswith("/predict"):
            emit(
                PredictionEvent(
                    status="client_error",
                    http_status=422,
                    latency_s=_elapsed(request),
                    request_id=rid,
                    model_name=mdl.name,
                    model_version=mdl.version,
                    error=message,
                )
            )
        return JSONResponse(
            {"status": "client_error", "request_id": rid, "message": message, "detail": errors},
            status_code=422,
            headers={REQUEST_ID_HEADER: rid},
        )

    @app.post("/predict", response_model=PredictResponse)
    def predict(body: PredictRequest, request: Request) -> Any:
        rid = _request_id(request)
        payload = body.model_dump()
        features: dict[str, Any] | None = None
        try:
            profile = fetch_chain(body.user_id)
            features = {**payload, **profile}
            prediction = infer_chain(features)
        except Exception as exc:
            code = 500
            if isinstance(exc, FeatureServiceError):
                code = 504 if exc.timed_out else 502
            elif isinstance(exc, InferenceError):
                code = 503
            message = str(exc) or repr(exc)
            emit(
                PredictionEvent(
                    status="error",
                    http_status=code,
                    latency_s=_elapsed(request),
                    request_id=rid,
                    model_name=mdl.name,
                    model_version=mdl.version,
                    user_id=body.user_id,
                    features=features,
                    payload=payload,
                    error=message,
                )
            )
            return JSONResponse(
                {"status": "error", "request_id": rid, "message": message},
                status_code=code,
                headers={REQUEST_ID_HEADER: rid},
            )
        result = PredictResponse(
            request_id=rid,
            user_id=body.user_id,
            is_fraud=prediction.is_fraud,
            fraud_probability=prediction.probability,
            confidence=prediction.confidence,
            model_name=prediction.model_name,
            model_version=prediction.model_version,
        )
        emit(
            PredictionEvent(
                status="success",
                http_status=200,
                latency_s=_elapsed(request),
                request_id=rid,
                model_name=prediction.model_name,
                model_version=prediction.model_version,
                prediction=prediction,
                user_id=body.user_id,
                features=features,
                payload=payload,
            )
        )
        return JSONResponse(result.model_dump(), headers={REQUEST_ID_HEADER: rid})

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "service": SERVICE_NAME,
            "model_name": mdl.name,
            "model_version": mdl.version,
            "feature_url": base_url,
        }

    def control_state() -> dict[str, Any]:
        return {
            "inference_error": ctl.inference_error,
            "inference_error_share": ctl.inference_error_share,
        }

    @app.get("/_control")
    def get_control() -> dict[str, Any]:
        return control_state()

    @app.post("/_control")
    def set_control(update: _ControlUpdate) -> dict[str, Any]:
        if update.reset:
            ctl.reset()
        if update.inference_error is not None:
            ctl.inference_error = update.inference_error or None
        if update.inference_error_share is not None:
            ctl.inference_error_share = update.inference_error_share
        return control_state()

    for fn in h.on_create:
        fn(app)
    return app
