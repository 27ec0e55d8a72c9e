"""The ML service's one error family.

Every error ``ml_service`` raises on purpose derives from :class:`MLServiceError`. Messages say
what failed, with which values, and end with ``Hint: ...``.

Tree::

    MLServiceError
    ├── FeatureServiceError   the gateway's call to the feature service failed (status, URL)
    ├── InferenceError        the model could not score a request (e.g. simulated GPU OOM)
    ├── TrafficError          a traffic run was refused (non-loopback target, caps exceeded)
    ├── ScenarioError         a scenario is unknown or cannot run here (e.g. no GPU source)
    └── ServerError           a service did not start or stop in time
"""

from __future__ import annotations

__all__ = [
    "FeatureServiceError",
    "InferenceError",
    "MLServiceError",
    "ScenarioError",
    "ServerError",
    "TrafficError",
]


class MLServiceError(Exception):
    """Root of every error the ML service raises on purpose."""


class FeatureServiceError(MLServiceError):
    """The feature service answered with an error, timed out, or could not be reached."""

    def __init__(self, message: str, *, url: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        #: HTTP status the feature service answered; ``None`` for timeouts / refused connections.
        self.status = status
        #: True when the call timed out (the gateway answers 504 rather than 502).
        self.timed_out = False


class InferenceError(MLServiceError):
    """The model could not score a request (a simulated CUDA out-of-memory, a broken model)."""


class TrafficError(MLServiceError):
    """A traffic run was refused: a non-loopback target or a bound over the hard caps."""


class ScenarioError(MLServiceError):
    """A traffic scenario is unknown, badly parameterised, or cannot run against these services."""


class ServerError(MLServiceError):
    """An in-process or child-process service did not become ready, or did not stop, in time."""
