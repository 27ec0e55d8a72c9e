"""Hook points where an exercise plugs metrics, logging and tracing into the services.

Both apps are uninstrumented by default; ``create_app(..., hooks=Hooks(...))`` changes what is
observed without editing the package:

* ``middleware`` — ASGI middleware, outermost first: ``starlette.middleware.Middleware`` objects,
  or ``async def mw(request, call_next)`` functions (wrapped in ``BaseHTTPMiddleware``);
* ``fetch_features`` — wrappers around the gateway's call to the feature service,
  ``wrapper(fetch, user_id) -> dict`` (call ``fetch(user_id)`` inside, e.g. in a span);
* ``inference`` — wrappers around the model call, ``wrapper(infer, features) -> Prediction``;
* ``outgoing_headers`` — ``fn(headers)`` may add headers to the feature-service request
  (``X-Request-ID``, or ``opentelemetry.propagate.inject(headers)``);
* ``on_prediction`` — ``fn(event: PredictionEvent)`` after every ``POST /predict``, including
  422s (``status="client_error"``) and failures (``status="error"``);
* ``on_create`` — ``fn(app)`` once the app is built (add ``/metrics``, ``FastAPIInstrumentor``);
* ``on_startup`` / ``on_shutdown`` — ``fn()`` in the app's lifespan.

The first wrapper in a list is the outermost. Exceptions raised by hooks propagate: a broken hook
shows up as failed requests, not as silence.

Example:
    >>> from prometheus_client import CollectorRegistry, Counter
    >>> registry = CollectorRegistry()
    >>> total = Counter("ml_predictions", "Predictions.", ["status"], registry=registry)
    >>> hooks = Hooks(on_prediction=lambda e: total.labels(e.status).inc())
    >>> len(hooks.on_prediction)
    1
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import Response

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ml_service.model import Prediction

__all__ = [
    "FetchFn",
    "FetchWrapper",
    "Hooks",
    "InferFn",
    "InferenceWrapper",
    "PredictionEvent",
    "Status",
    "chain",
]

#: The gateway's status label: 2xx success, 4xx client_error, 5xx error.
Status = Literal["success", "client_error", "error"]

FetchFn = Callable[[str], dict[str, Any]]
FetchWrapper = Callable[[FetchFn, str], dict[str, Any]]
InferFn = Callable[[Mapping[str, Any]], "Prediction"]
InferenceWrapper = Callable[[InferFn, Mapping[str, Any]], "Prediction"]
HttpMiddlewareFn = Callable[
    [Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]
]

_T = TypeVar("_T")
_A = TypeVar("_A")


@dataclass(frozen=True)
class PredictionEvent:
    """What happened to one ``POST /predict``, handed to every ``on_prediction`` hook.

    Attributes:
        status: ``success``, ``client_error`` (422) or ``error`` (feature service, model).
        http_status: the status code the gateway answered with.
        latency_s: seconds from the request reaching the app to the response being ready.
        request_id: the ``X-Request-ID`` header, or the id the gateway generated.
        model_name / model_version: the model that served (or would have served) it.
        prediction: the model's output on success, else ``None``.
        user_id: the user in the body, when the body was valid.
        features: the model inputs (transaction + profile), once fetched.
        payload: the validated request body, including optional PII fields (redact before logging).
        error: a one-line description on failure.
    """

    status: Status
    http_status: int
    latency_s: float
    request_id: str
    model_name: str
    model_version: str
    prediction: Prediction | None = None
    user_id: str | None = None
    features: Mapping[str, Any] | None = None
    payload: Mapping[str, Any] | None = None
    error: str | None = None


def _as_list(value: _T | Sequence[_T] | None) -> list[_T]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]  # type: ignore[list-item]


@dataclass
class Hooks:
    """Where instrumentation plugs into the gateway and feature-service ``create_app``.

    Every field accepts one hook or a list of them.
    """

    middleware: Any = field(default_factory=list)
    fetch_features: Any = field(default_factory=list)
    inference: Any = field(default_factory=list)
    outgoing_headers: Any = field(default_factory=list)
    on_prediction: Any = field(default_factory=list)
    on_create: Any = field(default_factory=list)
    on_startup: Any = field(default_factory=list)
    on_shutdown: Any = field(default_factory=list)

    def __post_init__(self) -> None:
        self.middleware: list[Middleware | HttpMiddlewareFn] = _as_list(self.middleware)
        self.fetch_features: list[FetchWrapper] = _as_list(self.fetch_features)
        self.inference: list[InferenceWrapper] = _as_list(self.inference)
        self.outgoing_headers: list[Callable[[MutableMapping[str, str]], None]] = _as_list(
            self.outgoing_headers
        )
        self.on_prediction: list[Callable[[PredictionEvent], None]] = _as_list(self.on_prediction)
        self.on_create: list[Callable[[FastAPI], None]] = _as_list(self.on_create)
        self.on_startup: list[Callable[[], None]] = _as_list(self.on_startup)
        self.on_shutdown: list[Callable[[], None]] = _as_list(self.on_shutdown)

    def asgi_middleware(self) -> list[Middleware]:
        """The middleware list as Starlette ``Middleware`` objects (functions wrapped)."""
        out: list[Middleware] = []
        for item in self.middleware:
            if isinstance(item, Middleware):
                out.append(item)
            else:
                out.append(Middleware(BaseHTTPMiddleware, dispatch=item))
        return out


def chain(
    base: Callable[[_A], _T], wrappers: Sequence[Callable[[Callable[[_A], _T], _A], _T]]
) -> Callable[[_A], _T]:
    """Compose ``base`` with around-wrappers; the first wrapper is the outermost."""
    fn = base
    for wrapper in reversed(wrappers):
        fn = _bind(wrapper, fn)
    return fn


def _bind(
    wrapper: Callable[[Callable[[_A], _T], _A], _T], inner: Callable[[_A], _T]
) -> Callable[[_A], _T]:
    def call(arg: _A) -> _T:
        return wrapper(inner, arg)

    return call
