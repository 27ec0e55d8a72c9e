"""The feature service: a FastAPI app that serves each user's profile features.

``GET /features/{user_id}`` answers ``{"user_id": ..., "features": {...}}`` with the profile of
:func:`ml_service.data.user_profile`. Its behaviour is set by a :class:`FeatureControl` — extra
latency, a share of failing requests, features returned as null or as a constant — which can be
changed at runtime in process (``app.state.control``) or over HTTP:

* ``GET /_control`` — the current settings;
* ``POST /_control`` — ``{"delay_s": 1.5, "error_rate": 0.5, "null_features": [...],
  "null_share": 0.6, "constant_features": {...}, "reset": true}`` (fields left out are
  unchanged; ``reset`` first restores the defaults; ``null_share`` is the share of lookups whose
  ``null_features`` come back null, 1.0 by default);
* ``GET /health`` — ``{"status": "ok", "service": "feature-service", "seed": 0}``.

Failures are deterministic: with ``error_rate=0.25`` exactly every fourth request fails.

Example:
    >>> app = create_app(control=FeatureControl(delay_s=0.01))
    >>> app.state.control.delay_s
    0.01
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ml_service.data import PROFILE_FEATURES, user_profile
from ml_service.hooks import Hooks

__all__ = ["SERVICE_NAME", "ControlUpdate", "FeatureControl", "create_app"]

SERVICE_NAME = "feature-service"


@dataclass
class FeatureControl:
    """How the feature service behaves now; mutate it (or ``POST /_control``) to change it."""

    delay_s: float = 0.0
    error_rate: float = 0.0
    error_status: int = 500
    null_features: list[str] = field(default_factory=list)
    #: share of lookups whose ``null_features`` come back null (spread evenly; 1.0 = all)
    null_share: float = 1.0
    constant_features: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _served: int = field(default=0, repr=False, compare=False)
    _nulled: int = field(default=0, repr=False, compare=False)

    def should_fail(self) -> bool:
        """Count one request; True when it is one of the ``error_rate`` share that fails."""
        with self._lock:
            i = self._served
            self._served += 1
        rate = min(max(self.error_rate, 0.0), 1.0)
        return math.floor((i + 1) * rate) > math.floor(i * rate)

    def should_null(self) -> bool:
        """Count one lookup with null features on; True when it is one of the ``null_share``."""
        with self._lock:
            i = self._nulled
            self._nulled += 1
        share = min(max(self.null_share, 0.0), 1.0)
        return math.floor((i + 1) * share) > math.floor(i * share)

    def as_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready data."""
        return {
            "delay_s": self.delay_s,
            "error_rate": self.error_rate,
            "error_status": self.error_status,
            "null_features": list(self.null_features),
            "null_share": self.null_share,
            "constant_features": dict(self.constant_features),
        }

    def reset(self) -> None:
        """Back to a healthy service with no extra latency."""
        self.delay_s, self.error_rate, self.error_status = 0.0, 0.0, 500
        self.null_features, self.constant_features, self.null_share = [], {}, 1.0


class ControlUpdate(BaseModel):
    """Body of ``POST /_control``; fields left out are not changed."""

    reset: bool = False
    delay_s: float | None = Field(default=None, ge=0.0, le=60.0)
    error_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    error_status: int | None = Field(default=None, ge=400, le=599)
    null_features: list[str] | None = None
    null_share: float | None = Field(default=None, ge=0.0, le=1.0)
    constant_features: dict[str, float] | None = None


def create_app(
    *,
    control: FeatureControl | None = None,
    seed: int = 0,
    hooks: Hooks | None = None,
) -> FastAPI:
    """Build the feature service app.

    Args:
        control: the shared behaviour settings (default: a healthy service).
        seed: seed of the user profiles (the traffic generator must use the same to know labels).
        hooks: instrumentation hooks (``middleware``, ``on_create``, ``on_startup``,
            ``on_shutdown``).
    """
    ctl = control if control is not None else FeatureControl()
    h = hooks if hooks is not None else Hooks()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for fn in h.on_startup:
            fn()
        try:
            yield
        finally:
            for fn in h.on_shutdown:
                fn()

    app = FastAPI(title=SERVICE_NAME, lifespan=lifespan, middleware=h.asgi_middleware())
    app.state.control = ctl
    app.state.seed = seed

    @app.get("/features/{user_id}")
    async def features(user_id: str) -> Any:
        if ctl.delay_s > 0:
            await asyncio.sleep(ctl.delay_s)
        if ctl.should_fail():
            return JSONResponse(
                {"detail": f"feature store lookup failed for user {user_id!r} (simulated)"},
                status_code=ctl.error_status,
            )
        profile: dict[str, float | None] = dict(user_profile(user_id, seed=seed))
        for name, value in ctl.constant_features.items():
            if name in profile:
                profile[name] = value
        for name in ctl.null_features if ctl.null_features and ctl.should_null() else ():
            if name in profile:
                profile[name] = None
        return {"user_id": user_id, "features": profile}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "service": SERVICE_NAME,
            "seed": seed,
            "features": list(PROFILE_FEATURES),
        }

    @app.get("/_control")
    async def get_control() -> dict[str, Any]:
        return ctl.as_dict()

    @app.post("/_control")
    async def set_control(update: ControlUpdate) -> dict[str, Any]:
        if update.reset:
            ctl.reset()
        for name, value in update.model_dump(exclude={"reset"}, exclude_none=True).items():
            setattr(ctl, name, value)
        return ctl.as_dict()

    for fn in h.on_create:
        fn(app)
    return app
