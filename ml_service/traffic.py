"""The traffic generator: drives the gateway with a scenario and returns the ground truth.

``run_traffic(gateway_url, scenario=..., rate=..., concurrency=..., duration_s=... | requests=...)``
sends ``POST /predict`` at a fixed rate (open loop: request ``i`` leaves at ``i / rate`` seconds)
from ``concurrency`` worker threads, switches the scenario's effect on and off at the fractions
of the run it names, and returns a :class:`GroundTruth`: every request with its id, status and
client-side latency, counts by HTTP status and by status label, exact latency quantiles, counts
per model version, trace ids found in response headers, the drifted features and when drift
began, the true (delayed) labels, the GPU out-of-memory time.

Scenarios (:data:`SCENARIOS`; parameters in :class:`Scenario`):

* ``steady`` — nothing changes;
* ``latency_spike`` — the feature service sleeps ``delay_s`` per lookup during the effect;
* ``error_burst`` — a share ``error_rate`` of lookups fail (the gateway answers 502);
* ``feature_pipeline_failure`` — the feature service returns nulls (for all lookups, or the
  share ``null_share``) / a constant for some profile features; the gateway still answers 200
  (imputation hides it) — a silent failure;
* ``covariate_drift`` — the transactions sent are drawn from shifted distributions;
* ``concept_drift`` — inputs unchanged, but the true labels follow a different rule, so accuracy
  on the delayed labels drops;
* ``gpu_memory_leak`` — the GPU source's framebuffer grows at ``leak_mib_per_s`` until it is
  full; from then on the gateway's inference fails with a simulated CUDA out-of-memory (503),
  as a real worker would — every inference, or the share ``oom_error_share`` (a worker pool
  where only some workers hold the leaked memory).

Every effect is undone when the run ends (unless ``restore=False``). Runs are bounded (at most
:data:`MAX_DURATION_S` seconds and :data:`MAX_REQUESTS` requests) and only loopback targets are
accepted. A run can be ended early from another thread with ``stop=threading.Event()``.

Example:
    >>> truth = run_traffic(url, scenario="error_burst", rate=50, requests=200)  # doctest: +SKIP
    >>> truth.by_status                                                         # doctest: +SKIP
    {'success': 150, 'error': 50}
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import requests as _http

from ml_service.data import (
    CATEGORICAL_FEATURES,
    PROFILE_FEATURES,
    SHIFT_SIZES,
    TRANSACTION_FEATURES,
    label_fraud,
    sample_features,
    user_id,
    user_profile,
)
from ml_service.errors import ScenarioError, TrafficError

__all__ = [
    "MAX_CONCURRENCY",
    "MAX_DURATION_S",
    "MAX_RATE",
    "MAX_REQUESTS",
    "SCENARIOS",
    "GroundTruth",
    "RequestRecord",
    "Scenario",
    "check_loopback",
    "run_traffic",
]

MAX_DURATION_S = 600.0
MAX_REQUESTS = 100_000
MAX_RATE = 2_000.0
MAX_CONCURRENCY = 64
N_USERS = 1_000

SCENARIOS: tuple[str, ...] = (
    "steady",
    "latency_spike",
    "error_burst",
    "feature_pipeline_failure",
    "covariate_drift",
    "concept_drift",
    "gpu_memory_leak",
)

_TRACE_RE = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_OOM_MESSAGE = "CUDA out of memory (simulated GPU framebuffer full)"


@dataclass(frozen=True)
class Scenario:
    """A named scenario and its parameters; build with :meth:`named`.

    Attributes:
        name: one of :data:`SCENARIOS`.
        start / end: fractions of the run (by request index) between which the effect is on.
        delay_s: latency_spike: seconds added to each feature lookup.
        error_rate: error_burst: share of feature lookups that fail.
        null_features / constant_features: feature_pipeline_failure: profile features returned as
            null / as a constant.
        null_share: feature_pipeline_failure: share of lookups whose ``null_features`` are null.
        shifts: covariate_drift: per transaction feature, ``negligible``/``small``/``large``.
        leak_mib_per_s: gpu_memory_leak: growth rate (``None`` = fill the GPU by 80% of the run).
        oom_error_share: gpu_memory_leak: share of inferences failing once the GPU is full.
    """

    name: str = "steady"
    start: float = 0.0
    end: float = 1.0
    delay_s: float = 1.5
    error_rate: float = 0.5
    null_features: tuple[str, ...] = ()
    constant_features: Mapping[str, float] = field(default_factory=dict)
    shifts: Mapping[str, str] = field(default_factory=dict)
    leak_mib_per_s: float | None = None
    null_share: float = 1.0
    oom_error_share: float = 1.0

    @classmethod
    def named(cls, name: str, **overrides: Any) -> Scenario:
        """The scenario ``name`` with its defaults, changed by ``overrides``."""
        defaults: dict[str, dict[str, Any]] = {
            "steady": {"start": 0.0, "end": 0.0},
            "latency_spike": {"start": 0.25, "end": 0.75},
            "error_burst": {"start": 0.25, "end": 0.75},
            "feature_pipeline_failure": {
                "start": 0.5,
                "end": 1.0,
                "null_features": ("avg_amount_30d",),
                "constant_features": {"txn_count_24h": 0.0},
            },
            "covariate_drift": {
                "start": 0.5,
                "end": 1.0,
                "shifts": {
                    "amount": "large",
                    "distance_from_home_km": "large",
                    "merchant_category": "large",
                },
            },
            "concept_drift": {"start": 0.5, "end": 1.0},
            "gpu_memory_leak": {"start": 0.0, "end": 1.0},
        }
        if name not in defaults:
            raise ScenarioError(
                f"unknown scenario {name!r}. Hint: use one of {', '.join(SCENARIOS)}."
            )
        scenario = cls(name=name, **{**defaults[name], **overrides})
        scenario.validate()
        return scenario

    def validate(self) -> None:
        """Raise :class:`ScenarioError` when a parameter is out of range."""
        if not 0.0 <= self.start <= self.end <= 1.0:
            raise ScenarioError(
                f"scenario {self.name}: start={self.start}, end={self.end} must satisfy "
                "0 <= start <= end <= 1. Hint: they are fractions of the run."
            )
        for what, share in (
            ("null_share", self.null_share),
            ("oom_error_share", self.oom_error_share),
        ):
            if not 0.0 < share <= 1.0:
                raise ScenarioError(
                    f"scenario {self.name}: {what}={share} is not a share in (0, 1]. "
                    "Hint: 0.6 means 60% of the requests."
                )
        for feature, size in self.shifts.items():
            if feature not in TRANSACTION_FEATURES:
                raise ScenarioError(
                    f"scenario {self.name}: cannot shift {feature!r} from the client. "
                    "Hint: shift one "
                    f"of {', '.join(TRANSACTION_FEATURES)}; profile features fail through "
                    "feature_pipeline_failure."
                )
            if size not in SHIFT_SIZES:
                raise ScenarioError(
                    f"scenario {self.name}: shift {size!r} for {feature}. Hint: use one of "
                    f"{', '.join(SHIFT_SIZES)}."
                )
        bad = [
            f for f in (*self.null_features, *self.constant_features) if f not in PROFILE_FEATURES
        ]
        if bad:
            raise ScenarioError(
                f"scenario {self.name}: {bad} are not profile features. Hint: the feature service "
                f"serves {', '.join(PROFILE_FEATURES)}."
            )

    @property
    def drifted_features(self) -> list[str]:
        """The features whose distribution the scenario changes (what a drift check should flag)."""
        if self.name == "covariate_drift":
            return sorted(f for f, s in self.shifts.items() if s in ("small", "large"))
        if self.name == "feature_pipeline_failure":
            return sorted({*self.null_features, *self.constant_features})
        return []


@dataclass
class RequestRecord:
    """One request as the client saw it."""

    index: int
    request_id: str
    sent_at: float
    in_effect: bool
    latency_s: float | None = None
    http_status: int = 0
    status: str = "unreachable"
    model_name: str | None = None
    model_version: str | None = None
    is_fraud: bool | None = None
    fraud_probability: float | None = None
    label: int | None = None
    trace_id: str | None = None
    error: str | None = None


@dataclass
class GroundTruth:
    """What the traffic generator sent and saw; graders compare backends against it."""

    scenario: Scenario
    gateway_url: str
    rate: float
    concurrency: int
    started_at: float
    ended_at: float
    records: list[RequestRecord]
    effect_started_at: float | None = None
    effect_ended_at: float | None = None
    oom_at: float | None = None
    gpu_url: str | None = None

    # --- counts -------------------------------------------------------------------------------
    @property
    def sent(self) -> int:
        """Requests sent."""
        return len(self.records)

    @property
    def by_http_status(self) -> dict[int, int]:
        """Requests per HTTP status code (0 = no response)."""
        return dict(sorted(Counter(r.http_status for r in self.records).items()))

    @property
    def by_status(self) -> dict[str, int]:
        """Requests per gateway status label: success, client_error, error (and unreachable)."""
        return dict(sorted(Counter(r.status for r in self.records).items()))

    @property
    def by_model_version(self) -> dict[str, int]:
        """Successful predictions per model version."""
        return dict(
            sorted(Counter(r.model_version for r in self.records if r.model_version).items())
        )

    @property
    def request_ids(self) -> list[str]:
        """Every ``X-Request-ID`` sent, in order."""
        return [r.request_id for r in self.records]

    @property
    def trace_ids(self) -> list[str]:
        """Trace ids read from the responses' ``traceresponse``/``traceparent``/``X-Trace-ID``."""
        return [r.trace_id for r in self.records if r.trace_id]

    @property
    def error_ratio(self) -> float:
        """Share of answered requests with status ``error``."""
        answered = [r for r in self.records if r.http_status]
        return sum(r.status == "error" for r in answered) / len(answered) if answered else 0.0

    @property
    def achieved_rate(self) -> float:
        """Requests per second actually sent."""
        span = self.ended_at - self.started_at
        return self.sent / span if span > 0 else 0.0

    # --- latency ------------------------------------------------------------------------------
    def latencies(self, *, status: str | None = None, in_effect: bool | None = None) -> np.ndarray:
        """Client-side latencies (s) of answered requests, optionally filtered."""
        return np.array(
            [
                r.latency_s
                for r in self.records
                if r.latency_s is not None
                and r.http_status
                and (status is None or r.status == status)
                and (in_effect is None or r.in_effect == in_effect)
            ]
        )

    @property
    def latencies_s(self) -> list[float]:
        """Every answered request's client-side latency in seconds, in send order."""
        return [float(x) for x in self.latencies()]

    def quantile(
        self, q: float, *, status: str | None = None, in_effect: bool | None = None
    ) -> float:
        """The exact ``q`` quantile of client-side latency (NaN when nothing was answered)."""
        values = self.latencies(status=status, in_effect=in_effect)
        return float(np.quantile(values, q)) if len(values) else math.nan

    @property
    def p50(self) -> float:
        """Median client-side latency (s)."""
        return self.quantile(0.5)

    @property
    def p95(self) -> float:
        """95th percentile client-side latency (s)."""
        return self.quantile(0.95)

    @property
    def p99(self) -> float:
        """99th percentile client-side latency (s)."""
        return self.quantile(0.99)

    # --- drift and labels ---------------------------------------------------------------------
    @property
    def drifted_features(self) -> list[str]:
        """Features whose distribution the scenario changed."""
        return self.scenario.drifted_features

    @property
    def drift_started_at(self) -> float | None:
        """Unix time of the first request sent with drift (``None`` for non-drift scenarios)."""
        if self.scenario.name not in (
            "covariate_drift",
            "concept_drift",
            "feature_pipeline_failure",
        ):
            return None
        return self.effect_started_at

    def labels(self) -> list[dict[str, Any]]:
        """The delayed labels: request id, send time, true label and what the model said."""
        return [
            {
                "request_id": r.request_id,
                "sent_at": r.sent_at,
                "label": r.label,
                "predicted": r.is_fraud,
                "in_effect": r.in_effect,
            }
            for r in self.records
            if r.label is not None and r.is_fraud is not None
        ]

    def accuracy(self, *, in_effect: bool | None = None) -> float:
        """Share of successful predictions equal to the true label (NaN when none)."""
        rows = [
            r
            for r in self.records
            if r.label is not None
            and r.is_fraud is not None
            and (in_effect is None or r.in_effect == in_effect)
        ]
        return (
            sum(int(r.is_fraud is True) == r.label for r in rows) / len(rows) if rows else math.nan
        )

    # --- output -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON-ready data."""
        return {
            "scenario": {
                **asdict(self.scenario),
                "constant_features": dict(self.scenario.constant_features),
                "shifts": dict(self.scenario.shifts),
            },
            "gateway_url": self.gateway_url,
            "rate": self.rate,
            "concurrency": self.concurrency,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "sent": self.sent,
            "by_http_status": {str(k): v for k, v in self.by_http_status.items()},
            "by_status": self.by_status,
            "by_model_version": self.by_model_version,
            "latency_quantiles_s": {"p50": self.p50, "p95": self.p95, "p99": self.p99},
            "error_ratio": self.error_ratio,
            "drifted_features": self.drifted_features,
            "drift_started_at": self.drift_started_at,
            "effect_started_at": self.effect_started_at,
            "effect_ended_at": self.effect_ended_at,
            "oom_at": self.oom_at,
            "accuracy_before": self.accuracy(in_effect=False),
            "accuracy_during": self.accuracy(in_effect=True),
            "records": [asdict(r) for r in self.records],
        }

    def summary(self) -> str:
        """A few human-readable lines."""
        return "\n".join(
            [
                f"scenario {self.scenario.name}: {self.sent} requests in "
                f"{self.ended_at - self.started_at:.1f}s ({self.achieved_rate:.1f}/s)",
                f"by status: {json.dumps(self.by_status)}; by HTTP status: "
                f"{json.dumps({str(k): v for k, v in self.by_http_status.items()})}",
                f"latency p50={self.p50 * 1e3:.1f}ms p95={self.p95 * 1e3:.1f}ms "
                f"p99={self.p99 * 1e3:.1f}ms",
                f"drifted features: {self.drifted_features or 'none'}",
            ]
        )


def check_loopback(url: str) -> None:
    """Raise :class:`TrafficError` unless ``url`` points at this machine's loopback interface."""
    host = urlsplit(url).hostname or ""
    ok = host == "localhost"
    if not ok:
        try:
            ok = ipaddress.ip_address(host).is_loopback
        except ValueError:
            ok = False
    if not ok:
        raise TrafficError(
            f"refusing to send traffic to {url!r}: host {host!r} is not a loopback address. "
            "Hint: the generator only drives services on 127.0.0.1 / localhost."
        )


def _trace_id(headers: Mapping[str, str]) -> str | None:
    for name in ("traceresponse", "traceparent"):
        m = _TRACE_RE.match(headers.get(name, "").strip().lower())
        if m:
            return m.group(1)
    raw = headers.get("x-trace-id", "").strip().lower()
    return raw if re.fullmatch(r"[0-9a-f]{32}", raw) else None


class _Plan:
    """The bodies and true labels of every request of a run, generated up front."""

    def __init__(
        self, scenario: Scenario, n: int, seed: int, profile_seed: int, bad_request_ratio: float
    ) -> None:
        rng = np.random.default_rng(seed)
        self.start_idx = math.ceil(scenario.start * n)
        self.end_idx = math.ceil(scenario.end * n)
        idx = np.arange(n)
        self.in_effect = (idx >= self.start_idx) & (idx < self.end_idx)
        rows = sample_features(rng, n)
        if scenario.name == "covariate_drift":
            k = {
                f: SHIFT_SIZES[s][0]
                for f, s in scenario.shifts.items()
                if f not in CATEGORICAL_FEATURES
            }
            mass = {
                f: SHIFT_SIZES[s][1]
                for f, s in scenario.shifts.items()
                if f in CATEGORICAL_FEATURES
            }
            shifted = sample_features(rng, n, shifts=k, category_mass=mass)
            rows.loc[self.in_effect] = shifted.loc[self.in_effect]
        users = [user_id(int(u)) for u in rng.integers(0, N_USERS, n)]
        profiles = {u: user_profile(u, seed=profile_seed) for u in set(users)}
        for name in PROFILE_FEATURES:
            rows[name] = [profiles[u][name] for u in users]
        labels = label_fraud(rows, rng)
        if scenario.name == "concept_drift":
            shifted_labels = label_fraud(rows, rng, concept="shifted")
            labels = np.where(self.in_effect, shifted_labels, labels)
        self.bad = rng.random(n) < bad_request_ratio
        self.bodies: list[dict[str, Any]] = []
        tx = rows[list(TRANSACTION_FEATURES)]
        for i, rec in enumerate(tx.to_dict("records")):
            body: dict[str, Any] = {"user_id": users[i], **rec}
            body["hour"] = int(body["hour"])
            if self.bad[i]:
                # a malformed body: a negative amount and a missing field
                body["amount"] = -abs(float(body["amount"]))
                del body["hour"]
            self.bodies.append(body)
        self.labels = labels
        self.rows: pd.DataFrame = rows


class _Effects:
    """Switches a scenario's service-side effect on and off over HTTP, and undoes it."""

    def __init__(
        self,
        scenario: Scenario,
        gateway_url: str,
        feature_url: str,
        gpu_url: str | None,
        rate: float,
        planned_s: float,
    ) -> None:
        self.s = scenario
        self.gateway_url, self.feature_url, self.gpu_url = gateway_url, feature_url, gpu_url
        self.rate, self.planned_s = rate, planned_s
        self.oom_at: float | None = None
        self._stop = threading.Event()
        self._watch: threading.Thread | None = None

    def _post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            resp = _http.post(url, json=body, timeout=5.0)
            resp.raise_for_status()
            out: dict[str, Any] = resp.json()
            return out
        except _http.RequestException as exc:
            raise ScenarioError(
                f"scenario {self.s.name}: POST {url} {body} failed: {exc}. "
                "Hint: is the service running, and is it an ml_service app?"
            ) from exc

    def begin_run(self) -> None:
        if self.gpu_url:
            self._post(f"{self.gpu_url}/simulate", {"load_rps": self.rate})

    def on(self) -> None:
        s = self.s
        if s.name == "latency_spike":
            self._post(f"{self.feature_url}/_control", {"delay_s": s.delay_s})
        elif s.name == "error_burst":
            self._post(f"{self.feature_url}/_control", {"error_rate": s.error_rate})
        elif s.name == "feature_pipeline_failure":
            self._post(
                f"{self.feature_url}/_control",
                {
                    "null_features": list(s.null_features),
                    "constant_features": dict(s.constant_features),
                    **({"null_share": s.null_share} if s.null_share != 1.0 else {}),
                },
            )
        elif s.name == "gpu_memory_leak":
            assert self.gpu_url is not None
            state = self._post(f"{self.gpu_url}/simulate", {})
            leak = s.leak_mib_per_s
            if leak is None:
                room = float(state["total_mib"]) - float(state["used_mib"])
                leak = room / max(0.8 * self.planned_s * (s.end - s.start), 0.1)
            self._post(f"{self.gpu_url}/simulate", {"leak_mib_per_s": leak})
            self._watch = threading.Thread(
                target=self._watch_oom, name="gpu-oom-watch", daemon=True
            )
            self._watch.start()

    def _watch_oom(self) -> None:
        while not self._stop.wait(0.1):
            try:
                state = _http.get(f"{self.gpu_url}/state", timeout=2.0).json()
            except (_http.RequestException, ValueError):
                continue
            if state.get("oom"):
                self.oom_at = time.time()
                share = self.s.oom_error_share
                self._post(
                    f"{self.gateway_url}/_control",
                    {
                        "inference_error": _OOM_MESSAGE,
                        **({"inference_error_share": share} if share != 1.0 else {}),
                    },
                )
                return

    def off(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.join(5.0)
        s = self.s
        if s.name in ("latency_spike", "error_burst", "feature_pipeline_failure"):
            self._post(f"{self.feature_url}/_control", {"reset": True})
        elif s.name == "gpu_memory_leak":
            assert self.gpu_url is not None
            self._post(f"{self.gpu_url}/simulate", {"reset": True})
            self._post(f"{self.gateway_url}/_control", {"reset": True})

    def end_run(self) -> None:
        if self.gpu_url:
            self._post(f"{self.gpu_url}/simulate", {"load_rps": 0.0})


def _get_json(url: str) -> dict[str, Any]:
    try:
        resp = _http.get(url, timeout=5.0)
        resp.raise_for_status()
        out: dict[str, Any] = resp.json()
        return out
    except (_http.RequestException, ValueError) as exc:
        raise TrafficError(
            f"GET {url} failed: {exc}. "
            "Hint: start the services first (ml_service.serve.start_services)."
        ) from exc


def run_traffic(
    gateway_url: str,
    *,
    scenario: str | Scenario = "steady",
    rate: float = 20.0,
    concurrency: int = 16,
    duration_s: float | None = None,
    requests: int | None = None,
    seed: int = 0,
    gpu_url: str | None = None,
    bad_request_ratio: float = 0.0,
    timeout_s: float = 10.0,
    restore: bool = True,
    headers: Mapping[str, str] | None = None,
    stop: threading.Event | None = None,
) -> GroundTruth:
    """Drive ``gateway_url`` with ``scenario`` and return the ground truth.

    Args:
        gateway_url: the gateway's base URL (loopback only).
        scenario: a name from :data:`SCENARIOS` or a :class:`Scenario`.
        rate: requests per second (open loop).
        concurrency: worker threads (requests in flight at most).
        duration_s: bound in seconds (default 10 s when ``requests`` is not given either).
        requests: bound in number of requests (sets the plan when given).
        seed: seed of the transactions, users and labels.
        gpu_url: the GPU source to drive (load follows ``rate``; required for ``gpu_memory_leak``).
        bad_request_ratio: share of requests sent malformed (expect 422 ``client_error``).
        timeout_s: per-request timeout.
        restore: undo the scenario's effects at the end.
        headers: extra headers on every request.
        stop: when set (from another thread), no further request is sent; the run ends early.

    Raises:
        TrafficError: non-loopback target, a bound over the caps, services not answering.
        ScenarioError: unknown scenario or bad parameters, no GPU source for the leak.
    """
    sc = Scenario.named(scenario) if isinstance(scenario, str) else scenario
    sc.validate()
    for url in (gateway_url, gpu_url):
        if url:
            check_loopback(url)
    if not 0 < rate <= MAX_RATE:
        raise TrafficError(
            f"rate={rate} is outside (0, {MAX_RATE}]. Hint: pick a rate (requests/s) under the cap."
        )
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise TrafficError(
            f"concurrency={concurrency} is outside [1, {MAX_CONCURRENCY}]. Hint: use fewer workers."
        )
    if duration_s is None and requests is None:
        duration_s = 10.0
    if duration_s is not None and not 0 < duration_s <= MAX_DURATION_S:
        raise TrafficError(
            f"duration_s={duration_s} is outside (0, {MAX_DURATION_S}]. Hint: split long runs."
        )
    if requests is not None and not 0 < requests <= MAX_REQUESTS:
        raise TrafficError(
            f"requests={requests} is outside (0, {MAX_REQUESTS}]. Hint: split long runs."
        )
    if not 0.0 <= bad_request_ratio <= 1.0:
        raise TrafficError(f"bad_request_ratio={bad_request_ratio} is not a share in [0, 1].")
    if sc.name == "gpu_memory_leak" and not gpu_url:
        raise ScenarioError(
            "scenario gpu_memory_leak needs gpu_url. "
            "Hint: start `python -m ml_service.gpu --port P` (or use the lab stack's gpu "
            "component) and pass its URL."
        )
    base = gateway_url.rstrip("/")
    health = _get_json(f"{base}/health")
    feature_url = str(health.get("feature_url", "")).rstrip("/")
    if feature_url:
        check_loopback(feature_url)
    profile_seed = int(_get_json(f"{feature_url}/health").get("seed", 0)) if feature_url else 0
    if gpu_url:
        _get_json(f"{gpu_url.rstrip('/')}/state")

    n = requests if requests is not None else math.ceil(rate * float(duration_s or 0.0))
    n = (
        min(n, math.ceil(rate * duration_s))
        if (requests is not None and duration_s is not None)
        else n
    )
    plan = _Plan(sc, n, seed, profile_seed, bad_request_ratio)
    planned_s = n / rate
    effects = _Effects(
        sc, base, feature_url, gpu_url.rstrip("/") if gpu_url else None, rate, planned_s
    )
    run_id = uuid.uuid4().hex[:12]
    records: list[RequestRecord] = []
    local = threading.local()
    extra = dict(headers or {})

    def send(i: int, record: RequestRecord) -> None:
        sess: _http.Session | None = getattr(local, "session", None)
        if sess is None:
            sess = local.session = _new_session(concurrency)
        t = time.perf_counter()
        record.sent_at = time.time()
        try:
            resp = sess.post(
                f"{base}/predict",
                json=plan.bodies[i],
                headers={"X-Request-ID": record.request_id, **extra},
                timeout=timeout_s,
            )
        except Exception as exc:
            record.latency_s = time.perf_counter() - t
            record.error = f"{type(exc).__name__}: {exc}"
            return
        record.latency_s = time.perf_counter() - t
        record.http_status = resp.status_code
        record.trace_id = _trace_id(resp.headers)
        try:
            data = resp.json()
        except ValueError:
            data = {}
        code = resp.status_code
        default = "success" if code < 400 else "client_error" if code < 500 else "error"
        record.status = str(data.get("status", default)) if isinstance(data, dict) else default
        if code == 200 and isinstance(data, dict):
            record.model_name = data.get("model_name")
            record.model_version = data.get("model_version")
            record.is_fraud = data.get("is_fraud")
            record.fraud_probability = data.get("fraud_probability")
        elif isinstance(data, dict):
            record.error = str(data.get("message", ""))[:300] or None

    started = time.time()
    effect_started: float | None = None
    effect_ended: float | None = None
    effect_on = False
    try:
        effects.begin_run()
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="traffic") as pool:
            t0 = time.perf_counter()
            for i in range(n):
                due = t0 + i / rate
                now = time.perf_counter()
                if duration_s is not None and now - t0 >= duration_s:
                    break
                if stop is not None and stop.is_set():
                    break
                if due > now:
                    time.sleep(due - now)
                if i == plan.start_idx and plan.start_idx < plan.end_idx:
                    effects.on()
                    effect_on, effect_started = True, time.time()
                if i == plan.end_idx and effect_on:
                    effects.off()
                    effect_on, effect_ended = False, time.time()
                record = RequestRecord(
                    index=i,
                    request_id=f"{run_id}-{i:06d}",
                    sent_at=time.time(),
                    in_effect=bool(plan.in_effect[i]),
                    label=None if plan.bad[i] else int(plan.labels[i]),
                )
                records.append(record)
                pool.submit(send, i, record)
    finally:
        if effect_on and restore:
            effects.off()
            effect_ended = time.time()
        if restore:
            effects.end_run()
    return GroundTruth(
        scenario=sc,
        gateway_url=base,
        rate=rate,
        concurrency=concurrency,
        started_at=started,
        ended_at=time.time(),
        records=records,
        effect_started_at=effect_started,
        effect_ended_at=effect_ended,
        oom_at=effects.oom_at,
        gpu_url=gpu_url,
    )


def _new_session(pool: int) -> _http.Session:
    sess = _http.Session()
    sess.mount("http://", _http.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=max(pool, 1)))
    return sess
